"""The gateway's streams: each account's private stream and its health (actors/exchange/_stream_health.py),
the ticker streams of the guarded symbols, and what their events mean (log lines, metrics,
resyncs, missed pushes).

It lives inside the ExchangeGateway actor: every method runs on the gateway's thread except
`deliver_ticker`, which runs on a ticker stream's thread and touches only the marks inbox. It acts
through what the gateway gives it: the account caches, `resync(account, connection)` to start a
resync read (False when one is in flight), `stale(account)` to tell the Scheduler an account is no
longer fresh, and `deliver(event)` to hand a private stream's event to the gateway's mailbox.
Merging a private push into the cache stays with the gateway (`on_event` says when to).
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from actors.exchange import _formats
from actors.exchange._cache import AccountCache, Difference
from actors.exchange._handshakes import HandshakeBudget
from actors.exchange._reads import Read
from actors.exchange._stream_health import StreamHealth
from actors.exchange._transport import Stream, Transport
from actors.exchange._websocket import Kind, StreamEvent
from messages.models import ModelError, TriggerBy
from runtime.clock import Clock
from runtime.metrics import Metrics

log = logging.getLogger(__name__)

MISSED_GRACE_S = 2.0  # a resync's difference is a missed push only if no push told it by then
TICKER_SYNC_S = 1.0  # how often the ticker subscriptions follow the monitors that use prices
# A symbol's ticker stays subscribed this long after a monitor last asked for its prices (longer
# than the slowest tier, so a monitor waiting for a profit on the idle tier keeps it).
WATCH_PRICES_S = 300.0


@dataclass(frozen=True, slots=True)
class _Judge:
    """A periodic resync's differences, judged after a grace (pushes on their way are not missed)."""

    due: float
    account: str
    connection: int
    since: float
    differences: tuple[Difference, ...]


class Streams:
    def __init__(
        self,
        transport: Transport,
        caches: dict[str, AccountCache],
        clock: Clock,
        metrics: Metrics,
        *,
        heartbeat: float,
        resync_every: float,
        deliver: Callable[[StreamEvent], None],
        resync: Callable[[str, int], bool],
        stale: Callable[[str], None],
        handshakes: HandshakeBudget | None = None,
    ):
        self._transport, self._caches, self._clock, self._metrics = transport, caches, clock, metrics
        self._heartbeat, self._resync_every = heartbeat, resync_every
        self._deliver, self._resync, self._stale = deliver, resync, stale
        self.handshakes = handshakes or HandshakeBudget()
        self._private: dict[str, Stream] = {}
        self._health: dict[str, StreamHealth] = {}
        self._tickers: list[Any] = []
        self._judging: list[_Judge] = []
        self._marks_lock = threading.Lock()
        self._marks_inbox: dict[str, dict[TriggerBy, Decimal]] = {}  # latest ticker prices, not yet taken
        self._ticker_pushes = 0  # ticker pushes not yet counted in the metric
        self._ticker_pushes_metric = self._metrics.stream_pushes.labels("public", "tickers")
        self._ticker_synced_at = -math.inf
        self._watched: dict[str, float] = {}  # symbol -> when a monitor last asked for its prices
        self._ticker_symbols: set[str] = set()  # subscribed now
        self._auth_refused: set[str] = set()
        self._connects: Counter[str] = Counter()
        self._held = 0  # handshakes held back, counted in the metric
        self.missed = 0  # differences resyncs found that no push told

    def start(self) -> None:
        if not self._transport.streams:
            return
        for account in self._caches:
            self._private[account] = self._transport.private_stream(
                account,
                self._deliver,
                heartbeat=self._heartbeat,
                clock=self._clock.monotonic,
                may_connect=self.handshakes.take,
            )
            self._health[account] = StreamHealth(account, self._heartbeat, self._resync_every)
        self.tick(self._clock.monotonic())

    def stop(self) -> None:
        for client in [*self._private.values(), *self._tickers]:
            client.stop()

    # --- what the gateway asks ------------------------------------------------------------

    def watches(self, account: str) -> bool:
        """Does this account have a private stream (streams are on)?"""
        return account in self._health

    def fresh_since(self, account: str, now: float) -> float | None:
        """When the account's stream is healthy: when it was last heard from; else None."""
        health, client = self._health.get(account), self._private.get(account)
        if health is None or client is None or not health.healthy(now, client.last_heard):
            return None
        return client.last_heard

    def healthy_accounts(self, now: float) -> tuple[str, ...]:
        return tuple(sorted(a for a in self._health if self.fresh_since(a, now) is not None))

    def connects(self) -> dict[str, int]:
        return {c.name: c.connects for c in [*self._private.values(), *self._tickers]}

    def describe(self, now: float) -> str:
        return (
            ", ".join(f"{a} {'fresh' if self.fresh_since(a, now) is not None else 'not fresh'}" for a in self._health)
            or "off"
        )

    # --- events ---------------------------------------------------------------------------

    def deliver_ticker(self, event: StreamEvent) -> None:
        """On a ticker stream's thread: keep only each symbol's latest mark (taken at the next
        tick). Tickers come many times a second per symbol; one message each would flood the
        mailbox for nothing but urgency."""
        if event.kind is not Kind.PUSH:
            self._deliver(event)
            return
        try:
            symbol, prices = _formats.ticker_prices(event.topic, event.data)
        except ModelError as exc:
            self._metrics.stream_rejected.labels("public").inc()
            log.debug("Stream %s: malformed ticker push rejected: %s", event.stream, exc)
            return
        with self._marks_lock:  # counted here, published per tick: a metric call per push costs more
            self._ticker_pushes += 1
            if prices:
                self._marks_inbox[symbol] = {**self._marks_inbox.get(symbol, {}), **prices}

    def on_event(self, event: StreamEvent) -> bool:
        """A stream's event; True when it is a private push for the gateway to merge."""
        name = event.stream
        health = self._health.get(name)
        client = self._private.get(name)
        match event.kind:
            case Kind.CONNECTED:
                log.info("Stream %s: connected", name)
            case Kind.AUTHENTICATED:
                self._auth_refused.discard(name)
                log.info("Stream %s: authenticated", name)
            case Kind.AUTH_REFUSED:
                if name not in self._auth_refused:
                    self._auth_refused.add(name)
                    log.error(
                        "Stream %s: the exchange refused the key (%s); REST polling guards this account, "
                        "the stream retries with backoff",
                        name,
                        event.reason,
                    )
            case Kind.SUBSCRIBED if health is not None and client is not None:
                if health.on_subscribed(client.connects):
                    log.info("Stream %s: subscribed (%s); resyncing by REST", name, ", ".join(event.data or ()))
                    self._start_resync(name, health)
            case Kind.SUBSCRIBED:
                log.debug("Stream %s: subscribed to %d topics", name, len(event.data or ()))
            case Kind.REFUSED:
                log.error("Stream %s: a subscription was refused: %s", name, event.reason)
            case Kind.DOWN if health is not None:
                if health.subscribed:
                    log.warning("Stream %s: down (%s); REST polling serves until it is back", name, event.reason)
                else:
                    log.info("Stream %s: reconnecting (%s)", name, event.reason)
                if health.was_healthy:
                    self._stale(name)
                health.on_down()
                health.was_healthy = False
                self._metrics.stream_healthy.labels(name).set(0)
            case Kind.DOWN:
                log.info("Stream %s: down (%s)", name, event.reason)
            case Kind.PUSH if health is not None:
                return True
        return False

    # --- every tick -----------------------------------------------------------------------

    def tick(self, now: float) -> None:
        for account, client in self._private.items():
            client.tick(now)
            health = self._health[account]
            healthy = health.healthy(now, client.last_heard)
            if healthy != health.was_healthy:
                health.was_healthy = healthy
                self._metrics.stream_healthy.labels(account).set(1 if healthy else 0)
                if not healthy:
                    self._stale(account)
                if not healthy and health.subscribed:
                    log.warning(
                        "Stream %s: stale (nothing heard for %.0fs); REST polling serves until it is back",
                        account,
                        now - client.last_heard,
                    )
            if healthy:
                self._metrics.account_read(account)
            if health.resync_due(now, healthy):
                self._start_resync(account, health)
        for judge in [j for j in self._judging if now >= j.due]:
            self._judging.remove(judge)
            self._judge(judge)
        self._tick_tickers(now)
        if self.handshakes.held > self._held:
            self._metrics.handshakes_held.inc(self.handshakes.held - self._held)
            self._held = self.handshakes.held
        for client in [*self._private.values(), *self._tickers]:
            if client.connects > self._connects[client.name]:
                self._metrics.stream_connects.labels(client.name).inc(client.connects - self._connects[client.name])
                self._connects[client.name] = client.connects

    def _tick_tickers(self, now: float) -> None:
        """The prices pushed since the last tick into the caches; the subscriptions kept."""
        with self._marks_lock:
            marks, self._marks_inbox = self._marks_inbox, {}
            pushes, self._ticker_pushes = self._ticker_pushes, 0
        if pushes:
            self._ticker_pushes_metric.inc(pushes)
        for symbol, prices in marks.items():
            if symbol not in self._ticker_symbols:
                continue  # unsubscribed meanwhile: its prices would only go stale
            for cache in self._caches.values():
                cache.set_prices(symbol, prices)
        for client in self._tickers:
            client.tick(now)
        if now - self._ticker_synced_at >= TICKER_SYNC_S:
            self._ticker_synced_at = now
            self._sync_tickers()

    def watch_prices(self, symbol: str, now: float) -> None:
        """A monitor acts on this symbol's live prices (R14): keep its ticker subscribed."""
        self._watched[symbol] = now

    def _sync_tickers(self) -> None:
        """One ticker topic per guarded symbol whose prices a monitor acts on, split over
        connections past Bybit's args limit. The others need none: a quiet monitor is woken by
        its orders and position (each position row carries the mark), and REST reads carry it
        while the stream is stale. At 1000 symbols tickers are 3,000-4,000 pushes a second, a
        third of the daemon's CPU when trading (docs/benchmarks.md)."""
        if not self._private:
            return
        now = self._clock.monotonic()
        self._watched = {s: at for s, at in self._watched.items() if now - at <= WATCH_PRICES_S}
        guarded = set().union(*(c.symbols() for c in self._caches.values()))
        symbols = sorted(guarded & self._watched.keys())
        for gone in self._ticker_symbols - set(symbols):
            for cache in self._caches.values():
                cache.forget_prices(gone)  # the position row's mark serves again
        self._ticker_symbols = set(symbols)
        groups = _formats.ticker_topics(symbols)
        for index, topics in enumerate(groups):
            if index < len(self._tickers):
                if set(self._tickers[index].topics) != set(topics):
                    self._tickers[index].set_topics(topics)
                continue
            client = self._transport.public_stream(
                f"tickers-{index}",
                topics,
                self.deliver_ticker,
                heartbeat=self._heartbeat,
                clock=self._clock.monotonic,
                may_connect=self.handshakes.take,
            )
            if client is None:
                return
            self._tickers.append(client)
            client.tick(self._clock.monotonic())
        for client in self._tickers[len(groups) :]:
            if client.topics:
                client.set_topics(())

    # --- resyncs --------------------------------------------------------------------------

    def _start_resync(self, account: str, health: StreamHealth) -> None:
        if self._resync(account, health.connection):
            health.resyncing = True
            self._metrics.stream_resyncs.labels(account).inc()

    def resync_failed(self, account: str, reason: str, now: float) -> None:
        health = self._health.get(account)
        if health is not None:
            delay = health.on_resync_failed(now)
            log.warning("Stream %s: resync failed (%s); trying again in %.0fs", account, reason, delay)

    def after_read(self, read: Read, differences: list[Difference], now: float) -> None:
        """A resync's end: fresh again after a (re)connect, or its differences judged after a
        grace (the periodic ones)."""
        if not read.resync:
            return
        health = self._health[read.account]
        connection = read.connection
        periodic = health.resynced
        if health.on_resynced(connection, now):
            log.info(
                "Stream %s: resynced by REST (%d changes while it was not subscribed); fresh by push",
                read.account,
                len(differences),
            )
        elif periodic and differences and connection == health.connection:
            self._judging.append(
                _Judge(now + MISSED_GRACE_S, read.account, connection, read.started, tuple(differences))
            )
        elif periodic:
            health.on_checked(0)
        self._caches[read.account].forget_pushes(read.started - 10 * self._resync_every)

    def _judge(self, judge: _Judge) -> None:
        health, client = self._health[judge.account], self._private[judge.account]
        if judge.connection != health.connection:
            return
        missed = self._caches[judge.account].missed(list(judge.differences), judge.since)
        if missed:
            self.missed += len(missed)
            self._metrics.stream_missed.labels(judge.account).inc(len(missed))
            log.warning(
                "Stream %s: resync found %d change(s) no push told (the snapshot wins): %s",
                judge.account,
                len(missed),
                "; ".join(missed[:5]) + (" ..." if len(missed) > 5 else ""),
            )
        if health.on_checked(len(missed)):
            log.warning(
                "Stream %s: two resyncs in a row found missed pushes; the stream is suspect: reconnecting",
                judge.account,
            )
            health.on_down()
            client.restart("suspect: missed pushes")
