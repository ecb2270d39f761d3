"""Alerts: which journal entries reach the trader, how they read, and the Notifier that sends them."""

from actors.alerts._alert_rules import AlertRules
from actors.alerts.notifier import Channel, Notifier

__all__ = ["AlertRules", "Channel", "Notifier"]
