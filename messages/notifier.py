"""Messages the Notifier receives, and the alert values it sends."""

from __future__ import annotations

from dataclasses import dataclass, field

import pykka


@dataclass(frozen=True, slots=True)
class AlertText:
    """One alert as the trader reads it (actors/alerts/_alert_rules.py renders it from a journal entry)."""

    account: str  # main | mirror | daemon
    kind: str  # the journal event it reports
    title: str
    body: str


@dataclass(frozen=True, slots=True)
class QueuedAlert:
    """An alert in the outbox (the state database), in order of `id`."""

    id: int
    time_ms: int
    account: str
    kind: str
    title: str
    body: str


@dataclass(frozen=True, slots=True)
class AlertsQueued:
    """From Persistence, after the commit that queued them: deliver these."""

    alerts: tuple[QueuedAlert, ...]


@dataclass(frozen=True, slots=True)
class NotifierTick:
    """From the ticker: send what is due (at most one message per second per service)."""

    now: float


@dataclass(frozen=True, slots=True)
class Drain:
    """Ask (when stopping): answered with the number still waiting once nothing is waiting, or
    when `deadline` (monotonic) passes."""

    deadline: float
    reply: pykka.Future[int] = field(kw_only=True)
