"""Notifications the Supervisor receives (tells, flowing upward)."""

from __future__ import annotations

from dataclasses import dataclass

from messages.models import MonitorId


@dataclass(frozen=True, slots=True)
class MonitorUnresponsive:
    """The Scheduler's check of this monitor did not finish within its timeout."""
    monitor: MonitorId
    seconds: float


@dataclass(frozen=True, slots=True)
class MonitorRetired:
    """The monitor's position is closed and cleaned up; it has stopped itself."""
    monitor: MonitorId
    reason: str
