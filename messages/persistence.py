"""Messages the Persistence actor receives."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pykka

from messages.models import MonitorId

# Journal subjects that are not positions: the daemon itself, and an account as a whole.
DAEMON = MonitorId("daemon", "-")


def account_subject(account: str) -> MonitorId:
    return MonitorId(account, "-")


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One critical event in the append-only journal (payload: JSON-able, money as Decimal)."""

    time_ms: int
    monitor: MonitorId
    event: str
    payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Record:
    """A monitor's state and events. Critical records are committed (with any others arriving
    close together) before `reply` is set to True; non-critical ones only replace the monitor's
    pending state, written at the next flush (their events are not journaled)."""

    monitor: MonitorId
    state: Mapping[str, Any] | None = None
    events: tuple[JournalEntry, ...] = ()
    critical: bool = False
    retire: bool = False  # the monitor is gone: delete its state (always critical)
    reply: pykka.Future[bool] | None = None  # set once a critical record is committed


@dataclass(frozen=True, slots=True)
class AlertsSent:
    """From the Notifier: these outbox rows were delivered to every alert URL."""

    ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class AttachNotifier:
    """From the system at start-up: hand queued alerts to this Notifier after each commit."""

    notifier: pykka.ActorRef[Any]


@dataclass(frozen=True, slots=True)
class PersistenceTick:
    """From the ticker: write the coalesced non-critical states now."""

    now: float


@dataclass(frozen=True, slots=True)
class LoadState:
    """Ask: `LoadedState` (every monitor state and its last journal entry)."""


@dataclass(frozen=True, slots=True)
class LoadedState:
    states: Mapping[MonitorId, Mapping[str, Any]]
    last_events: Mapping[MonitorId, JournalEntry]
    moved_aside: str | None = None


@dataclass(frozen=True, slots=True)
class GetPersistenceStats:
    """Ask: `PersistenceStats`."""


@dataclass(frozen=True, slots=True)
class PersistenceStats:
    critical_commits: int
    batched_flushes: int
    rows_written: int
    bytes_written: int
    commit_ms_p50: float
    commit_ms_p99: float
    pending_states: int
    records_received: int = 0
