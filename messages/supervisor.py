"""Notifications the Supervisor receives (tells, flowing upward)."""

from __future__ import annotations

from dataclasses import dataclass, field
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
    """The monitor's position is closed and cleaned up; it has stopped itself. `detail`: why the
    exchange refused a planned trade's entry."""
    monitor: MonitorId
    reason: str
    detail: str = ""


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


@dataclass(frozen=True, slots=True)
class OpenTrade:
    """Ask (from the trader's channel): record a planned trade's state (critical) and start its
    monitor, which sends the entry. `TradeStarted`, or a string saying why not."""
    monitor: MonitorId
    plan: Any                           # actors._rules.Plan


@dataclass(frozen=True, slots=True)
class TradeStarted:
    monitor: MonitorId
    position_id: str
    ref: Any


@dataclass(frozen=True, slots=True)
class Instruct:
    """From the trader's channel: hand a `ChangePlan` or `ClosePosition` to the position's
    monitor (it answers on the instruction's reply), or answer that nobody guards it."""
    monitor: MonitorId
    instruction: Any


@dataclass(frozen=True, slots=True)
class GetMonitors:
    """Ask: `Monitors`, the running monitors' refs and how recently retired ones ended."""


@dataclass(frozen=True, slots=True)
class Monitors:
    running: dict[MonitorId, Any]
    retired: dict[MonitorId, tuple[str, str]] = field(default_factory=dict)   # (reason, detail)
