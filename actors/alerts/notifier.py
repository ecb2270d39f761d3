"""The Notifier: delivers the alert outbox through Apprise, never on anybody else's thread.

Persistence queues each alert in the same transaction as the critical event it reports and hands
it over (`AlertsQueued`); alerts left unsent by an earlier run are given at start. On each
`NotifierTick` at most one message goes out (about one a second, within Telegram's per-chat
limit): one alert alone, a burst listed in one message, alerts older than `max_age` as one digest
(actors/_alerts.compose). The send runs on the Notifier's own worker thread (Apprise blocks on the
network, with its socket timeouts); its result comes back as a message, so the mailbox never waits.
A failing service is retried with backoff, only for the URLs that failed; delivered rows are
marked sent (`AlertsSent` to Persistence). At least once: a crash between a send and its mark
may repeat one message; none is lost.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pykka

from actors.alerts._alert_rules import Message, compose
from actors.asks import Ref, tell_upward
from messages.notifier import AlertsQueued, Drain, NotifierTick, QueuedAlert
from messages.persistence import AlertsSent
from runtime.backoff import Backoff
from runtime.clock import Clock
from runtime.metrics import Metrics

log = logging.getLogger(__name__)

SEND_INTERVAL_S = 1.0  # one message a second: Telegram's per-chat limit
BACKOFF_START_S, BACKOFF_MAX_S = 2.0, 300.0


class Channel:
    """One alert URL. `name` is Apprise's privacy form (tokens elided): the only form ever logged."""

    def __init__(self, url: str):
        import apprise  # only the Notifier and `main.py alerts test` need it

        plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
        if plugin is None:
            raise ValueError("not a URL Apprise knows")
        self._plugin = plugin
        self.name = plugin.url(privacy=True)

    def send(self, title: str, body: str) -> bool:
        return bool(self._plugin.notify(body=body, title=title))


@dataclass(frozen=True, slots=True)
class _Sent:
    message: Message
    failed: tuple[int, ...]  # indexes of the channels that did not take it


class Notifier(pykka.ThreadingActor):
    def __init__(
        self,
        channels: list[Channel],
        persistence: Ref,
        clock: Clock,
        *,
        unsent: tuple[QueuedAlert, ...] = (),
        max_age_s: float = 3600.0,
        metrics: Metrics | None = None,
    ):
        super().__init__()
        self._channels = channels
        self._persistence = persistence
        self._clock = clock
        self._max_age_ms = int(max_age_s * 1000)
        self._metrics = metrics or Metrics(clock)
        self._waiting: list[QueuedAlert] = list(unsent)
        self._known = {a.id for a in unsent}
        self._in_flight: Message | None = None
        self._todo: set[int] = set(range(len(channels)))  # channels the current message still needs
        self._next_at = 0.0
        self._backoff = Backoff(BACKOFF_START_S, BACKOFF_MAX_S)
        self._failing = False
        self._drains: list[Drain] = []
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="notifier-send")
        self._publish()

    def on_stop(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)
        if self._waiting:
            log.warning(
                "Alerts: %d alerts not delivered yet; they stay in the outbox for the next start", len(self._waiting)
            )

    def on_receive(self, message: Any) -> Any:
        match message:
            case AlertsQueued(alerts=alerts):
                fresh = [a for a in alerts if a.id not in self._known]
                self._known.update(a.id for a in fresh)
                self._waiting.extend(fresh)
                self._publish()
            case NotifierTick(now=now):
                self._send_due(now)
            case _Sent():
                self._on_sent(message)
            case Drain():
                self._drains.append(message)
            case _:
                log.error("Notifier: unknown message %r", message)
        self._answer_drains()
        return None

    def _send_due(self, now: float) -> None:
        if self._in_flight is not None or now < self._next_at or not self._waiting:
            return
        message = compose(self._waiting, self._clock.wall_ms(), self._max_age_ms)
        if message is None:
            return
        self._in_flight = message
        todo = sorted(self._todo)
        self._worker.submit(self._send, message, todo)

    def _send(self, message: Message, todo: list[int]) -> None:
        """On the worker thread: one message to every channel that still needs it."""
        failed = []
        for index in todo:
            try:
                ok = self._channels[index].send(message.title, message.body)
            except Exception:
                ok = False
            if not ok:
                failed.append(index)
        tell_upward(self.actor_ref, _Sent(message, tuple(failed)))

    def _on_sent(self, sent: _Sent) -> None:
        now = self._clock.monotonic()
        self._in_flight = None
        if sent.failed:
            self._todo = set(sent.failed)
            delay = self._backoff.next()
            self._next_at = now + delay
            self._failing = True
            self._metrics.alert_failures.inc()
            log.warning(
                "Alerts: sending to %s failed; retrying in %.0fs (%d alerts waiting)",
                ", ".join(self._channels[i].name for i in sent.failed),
                delay,
                len(self._waiting),
            )
            return
        if self._failing:
            log.info("Alerts: delivery works again")
        self._failing = False
        self._backoff.reset()
        self._todo = set(range(len(self._channels)))
        self._next_at = now + SEND_INTERVAL_S
        delivered = set(sent.message.ids)
        self._waiting = [a for a in self._waiting if a.id not in delivered]
        self._metrics.alerts_sent.inc(len(delivered))
        self._publish()
        tell_upward(self._persistence, AlertsSent(sent.message.ids))
        log.debug("Alerts: sent %r (%d alerts)", sent.message.title, len(delivered))

    def _answer_drains(self) -> None:
        now = self._clock.monotonic()
        for drain in list(self._drains):
            if not self._waiting or now >= drain.deadline:
                drain.reply.set(len(self._waiting))
                self._drains.remove(drain)

    def _publish(self) -> None:
        self._metrics.alert_outbox.set(len(self._waiting))
