"""Notifications the Supervisor receives (tells, flowing upward)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from messages.models import MonitorId


@dataclass(frozen=True, slots=True)
class PositionSeen:
    """From the Scheduler: a push concerned a position no monitor guards (opened by hand, say):
    discover at the next tick instead of waiting for the discovery interval."""
    monitor: MonitorId


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


@dataclass(frozen=True, slots=True)
class MonitorFailed:
    """A monitor stopped on an unexpected exception; restart it from its persisted state."""
    monitor: MonitorId
    error: str


@dataclass(frozen=True, slots=True)
class StartSupervision:
    """Ask (from the system at start-up): reconcile persisted monitors with the first snapshots
    of every account and start the monitors. `scheduler` is the Scheduler's ref."""
    scheduler: Any
    snapshots: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SupervisorTick:
    """From the ticker (every second): restarts that are due, and discovery every 15 s."""
    now: float


@dataclass(frozen=True, slots=True)
class StopMonitors:
    """Ask (from the system when stopping): stop every monitor, each after its current check,
    while the scheduler they report to is still alive."""


@dataclass(frozen=True, slots=True)
class GetSupervisorReport:
    """Ask: `SupervisorReport`."""


@dataclass(frozen=True, slots=True)
class SupervisorReport:
    monitors: int
    peak: int
    started: int
    retired: int
    restarts: int
    retired_reasons: dict[str, int]
