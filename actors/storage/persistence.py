"""Persistence: the single writer of state (SQLite via actors/storage/_store.py).

Critical records are committed before their sender is answered. Critical records arriving close
together share one transaction (group commit): a commit happens when the mailbox is empty, when
64 records wait, or when the oldest has waited 5 ms. Non-critical states are coalesced per
monitor (the latest wins) and written on `PersistenceTick` at most once per flush interval, and on stop.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping
from typing import Any

import pykka

from actors.alerts import AlertRules
from actors.asks import Ref, tell_upward
from actors.storage._store import Store
from messages.models import MonitorId
from messages.notifier import AlertsQueued
from messages.persistence import (
    AlertsSent,
    AttachNotifier,
    GetPersistenceStats,
    LoadedState,
    LoadState,
    PersistenceStats,
    PersistenceTick,
    Record,
)
from runtime.clock import Clock
from runtime.hooks import NO_HOOKS, Hooks
from runtime.metrics import Metrics
from runtime.stats import percentile

log = logging.getLogger(__name__)

GROUP_MAX = 64
GROUP_WAIT_S = 0.005
LATENCY_KEPT = 10_000


class Persistence(pykka.ThreadingActor):
    def __init__(
        self,
        store: Store,
        loaded: dict[MonitorId, dict],
        clock: Clock,
        *,
        flush_interval: float = 30.0,
        moved_aside: str | None = None,
        hooks: Hooks = NO_HOOKS,
        metrics: Metrics | None = None,
        alerts: AlertRules | None = None,
    ):
        """`alerts`: which journal entries become alerts in the outbox; None (no ALERT_URLS) queues
        none."""
        super().__init__()
        self._alerts = alerts
        self._notifier: Ref | None = None
        self._metrics = metrics or Metrics(clock)
        self._hooks = hooks
        self._store = store
        self._loaded = loaded
        self._moved_aside = moved_aside
        self._clock = clock
        self._flush_interval = flush_interval
        self._last_flush = clock.monotonic()
        self._pending_states: dict[MonitorId, Mapping[str, Any]] = {}  # non-critical, coalesced
        self._group: list[Record] = []  # critical, waiting for the commit
        self._group_since = 0.0
        self._critical_commits = 0
        self._commits_since_flush_line = 0
        self._flushes = 0
        self._rows = 0
        self._bytes = 0
        self._records = 0
        self._commit_ms: deque[float] = deque(maxlen=LATENCY_KEPT)

    # --- messages -------------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        answer: LoadedState | PersistenceStats | None = None
        match message:
            case Record(critical=True) | Record(retire=True):
                self._records += 1
                if not self._group:
                    self._group_since = self._clock.monotonic()
                self._group.append(message)
                self._pending_states.pop(message.monitor, None)  # superseded by this one
            case Record():
                self._records += 1
                if message.state is not None:
                    self._pending_states[message.monitor] = message.state
                if message.reply is not None:
                    message.reply.set(True)
            case AttachNotifier(notifier=notifier):
                self._notifier = notifier
            case AlertsSent(ids=ids):
                self._store.mark_sent(ids, self._clock.wall_ms())
            case PersistenceTick(now=now):
                if now - self._last_flush >= self._flush_interval * 0.99:
                    self._flush(now)
            case LoadState():
                answer = LoadedState(dict(self._loaded), self._store.last_events(), self._moved_aside)
            case GetPersistenceStats():
                answer = self._stats()
            case _:
                log.error("Persistence: unknown message %r", message)
        if self._group and (
            self.actor_inbox.empty()
            or len(self._group) >= GROUP_MAX
            or self._clock.monotonic() - self._group_since >= GROUP_WAIT_S
        ):
            self._commit_group()
        return answer

    def on_stop(self) -> None:
        if self._group:
            self._commit_group()
        self._flush(self._clock.monotonic(), final=True)
        self._store.close()

    def on_failure(self, *args: Any) -> None:
        self._store.close()

    # --- writing --------------------------------------------------------------------------

    def _commit_group(self) -> None:
        group, self._group = self._group, []
        states = {r.monitor: r.state for r in group if r.state is not None and not r.retire}
        retired = [r.monitor for r in group if r.retire]
        for monitor in retired:
            states.pop(monitor, None)
        events = [e for r in group for e in r.events]
        alerts = [a for a in map(self._alerts.alert_for, events) if a is not None] if self._alerts else []
        started = self._clock.monotonic()
        try:
            with self._store.transaction():  # an acknowledged event's alert is as durable as the event
                rows, size = self._store.put(states, events, retired, self._clock.wall_ms())
                queued = self._store.put_alerts(alerts, self._clock.wall_ms())
        except Exception as exc:
            for record in group:
                if record.reply is not None:
                    record.reply.set_exception((type(exc), exc, exc.__traceback__))
            raise  # an unexpected failure stops this actor loudly
        seconds = self._clock.monotonic() - started
        self._commit_ms.append(seconds * 1000)
        self._metrics.commits.inc()
        self._metrics.commit_seconds.observe(seconds)
        self._critical_commits += 1
        self._commits_since_flush_line += 1
        self._rows += rows
        self._bytes += size
        for record in group:
            if record.reply is not None:
                record.reply.set(True)
        if queued:
            self._hooks.reached("alert_queued")
            tell_upward(self._notifier, AlertsQueued(queued))

    def _flush(self, now: float, final: bool = False) -> None:
        self._last_flush = now
        states, self._pending_states = self._pending_states, {}
        if states:
            with self._store.transaction():
                rows, size = self._store.put(states, (), (), self._clock.wall_ms())
                self._hooks.reached("mid_flush")
            self._flushes += 1
            self._metrics.flushes.inc()
            self._rows += rows
            self._bytes += size
        if states or self._commits_since_flush_line:
            log.info(
                "Persistence: flushed %d monitors (batched%s), %d critical commits in the last %.0fs, "
                "commit p99 %.1fms",
                len(states),
                ", final" if final else "",
                self._commits_since_flush_line,
                self._flush_interval,
                percentile(self._commit_ms, 0.99),
            )
        self._commits_since_flush_line = 0

    def _stats(self) -> PersistenceStats:
        return PersistenceStats(
            critical_commits=self._critical_commits,
            batched_flushes=self._flushes,
            rows_written=self._rows,
            bytes_written=self._bytes,
            commit_ms_p50=percentile(self._commit_ms, 0.5),
            commit_ms_p99=percentile(self._commit_ms, 0.99),
            pending_states=len(self._pending_states),
            records_received=self._records,
        )
