"""Notifications the Supervisor receives (tells, flowing upward)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pykka

from messages.gateway import AccountSnapshot
from messages.models import MonitorId, Plan
from messages.monitor import ChangePlan, ClosePosition


@dataclass(frozen=True, slots=True)
class PositionSeen:
    """From the Scheduler: a push concerned a position no monitor guards (opened by hand, say):
    discover at the next tick instead of waiting for the discovery interval."""

    monitor: MonitorId


@dataclass(frozen=True, slots=True)
class CheckUnanswered:
    """The Scheduler's check of this monitor did not finish within its timeout."""

    monitor: MonitorId
    seconds: float


@dataclass(frozen=True, slots=True)
class MonitorRetired:
    """The monitor's position is closed and cleaned up; it has stopped itself. `detail`: why the
    exchange refused a planned trade's entry. `successor`: a new position is open on the key (R11),
    to adopt at once; `handover`: the old stops left protecting it, for its monitor to cancel once
    its own stop is live."""

    monitor: MonitorId
    reason: str
    detail: str = ""
    successor: bool = False
    handover: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class MonitorFailed:
    """A monitor stopped on an unexpected exception; restart it from its persisted state."""

    monitor: MonitorId
    error: str


@dataclass(frozen=True, slots=True)
class StartSupervision:
    """Ask (from the system at start-up): reconcile persisted monitors with the first snapshots
    of every account and start the monitors. `scheduler` is the Scheduler's ref."""

    scheduler: pykka.ActorRef[Any]
    snapshots: Mapping[str, AccountSnapshot]


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
    retired_reasons: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class TradeOpened:
    """From a monitor: the position of the trade it opened exists now (its first sight)."""

    monitor: MonitorId
    size: Decimal


@dataclass(frozen=True, slots=True)
class TradeOutcome:
    """Set on a trader's `outcome` future: the trade opened (`reason` "opened", with its size), or
    its monitor retired (`reason` the closure reason, `detail` why an entry was refused)."""

    reason: str
    size: Decimal | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class OpenTrade:
    """Ask (from the trader's channel): record a planned trade's state (critical) and start its
    monitor, which sends the entry. `TradeStarted`, or a string saying why not. `outcome` (a
    future) is set once the trade opened or its monitor retired."""

    monitor: MonitorId
    plan: Plan
    outcome: pykka.Future[TradeOutcome] = field(kw_only=True)


@dataclass(frozen=True, slots=True)
class TradeStarted:
    monitor: MonitorId
    position_id: str


@dataclass(frozen=True, slots=True)
class Instruct:
    """From the trader's channel: hand a `ChangePlan` or `ClosePosition` to the position's
    monitor (it answers on the instruction's reply), or answer that nobody guards it. `outcome`
    (a future, optional) is set when that monitor retires."""

    monitor: MonitorId
    instruction: ChangePlan | ClosePosition
    outcome: pykka.Future[TradeOutcome] | None = None


@dataclass(frozen=True, slots=True)
class GetMonitors:
    """Ask: the running monitors' refs, by MonitorId."""
