"""Messages the Scheduler receives."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pykka

from messages.models import MonitorId, Urgency


@dataclass(frozen=True, slots=True)
class SchedulerTick:
    """From the ticker: time to dispatch the checks that are due."""

    now: float


@dataclass(frozen=True, slots=True)
class RegisterMonitor:
    """A new monitor to schedule (checked at once). `ref` is its Pykka ActorRef."""

    monitor: MonitorId
    ref: pykka.ActorRef[Any]
    urgency: Urgency = Urgency.CRITICAL


@dataclass(frozen=True, slots=True)
class UnregisterMonitor:
    monitor: MonitorId


@dataclass(frozen=True, slots=True)
class Wake:
    """From the gateway (a push changed this monitor's position or orders) or from the monitor
    itself (the trader's instruction): check it at once (or right after the check in flight)."""

    monitor: MonitorId


@dataclass(frozen=True, slots=True)
class Checked:
    """From a monitor: its check `seq` finished. `throttled` says the gateway's rate limiter made
    it wait; `data_age` is how old the view it acted on was (seconds)."""

    monitor: MonitorId
    seq: int
    urgency: Urgency
    duration: float
    data_age: float = 0.0
    throttled: bool = False
    quiet: bool = False  # its view was pushed and nothing awaits: the next check may wait (see Scheduler)
    pushed: bool = False  # its view was pushed: no read made it slow


@dataclass(frozen=True, slots=True)
class AccountWentStale:
    """From the gateway: this account's stream no longer keeps its cache fresh; its monitors go
    back to their tiers' pace at once (REST polling serves them)."""

    account: str


@dataclass(frozen=True, slots=True)
class StopDispatching:
    """Ask (at shutdown, before the monitors stop): send no more checks, for ticks, wakes or
    anything else; answered with the `ScheduleReport` once everything queued before it is handled."""


@dataclass(frozen=True, slots=True)
class GetSchedule:
    """Ask: a `ScheduleReport` (for tests, status and the summary)."""


@dataclass(frozen=True, slots=True)
class ScheduleReport:
    monitors: int
    in_flight: int
    concurrency_limit: int  # the largest account's (each account has its own)
    urgency: Mapping[str, int]
    waves: int
    wave_seconds: tuple[float, ...]
    checks: int
    late_checks: int
    check_seconds: tuple[float, ...] = ()
    woken: int = 0  # Wakes from pushes for guarded monitors
