"""Alerts: which journal entries reach the trader, how they read, and the Notifier that sends them."""

from actors.alerts.notifier import Channel, Notifier
from actors.alerts._alert_rules import AlertRules

__all__ = ["AlertRules", "Channel", "Notifier"]
