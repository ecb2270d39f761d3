"""Messages the Persistence actor receives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Record:
    """A monitor's state and events. Critical records are committed (with any others arriving
    close together) before `reply` is set to True; non-critical ones only replace the monitor's
    pending state, written at the next flush (their events are not journaled)."""

    monitor: MonitorId
    state: dict[str, Any] | None = None
    events: tuple[JournalEntry, ...] = ()
    critical: bool = False
    retire: bool = False  # the monitor is gone: delete its state (always critical)
    reply: Any = None  # a pykka.ThreadingFuture the sender waits on


@dataclass(frozen=True, slots=True)
class AlertsSent:
    """From the Notifier: these outbox rows were delivered to every alert URL."""

    ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class AttachNotifier:
    """From the system at start-up: hand queued alerts to this Notifier after each commit."""

    notifier: Any


@dataclass(frozen=True, slots=True)
class FlushDue:
    """From the ticker: write the coalesced non-critical states now."""

    now: float


@dataclass(frozen=True, slots=True)
class LoadState:
    """Ask: `LoadedState` (every monitor state and its last journal entry)."""


@dataclass(frozen=True, slots=True)
class LoadedState:
    states: dict[MonitorId, dict[str, Any]]
    last_events: dict[MonitorId, JournalEntry]
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
