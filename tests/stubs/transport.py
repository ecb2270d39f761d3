"""An in-process transport for the gateway: the simulator's exchange engine answered directly (no
HTTP, no latency, no rate limits) and streams that push its changes when the test says so. With a
FakeClock the gateway's freshness, resyncs and judgments then run on the test's time."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson

from actors.exchange import PRIVATE_TOPICS, Failure, HttpFail, HttpOk, StreamEvent, StreamKind
from messages.endpoints import for_pybit
from simulator.exchange import BybitError, Change, Exchange
from simulator.server import BATCH, PRIVATE, PUBLIC


class InProcessTransport:
    streams = True

    def __init__(self, exchange: Exchange, accounts: tuple[str, ...] = ("main", "mirror")):
        self.accounts = accounts
        self.pool_size = 2
        self.exchange = exchange
        self.calls: Counter[str] = Counter()
        self.down: set[str] = set()  # accounts whose every request answers HTTP 503
        self.private: dict[str, FakeStream] = {}
        self._lock = threading.Lock()

    def call(self, account: str, method: str, params: dict[str, Any]) -> HttpOk | HttpFail:
        path = for_pybit(method).path.value
        with self._lock:
            self.calls[path] += 1
        if account in self.down:
            return HttpFail(Failure.HTTP, "HTTP status code is not 200.", 503)
        params = orjson.loads(orjson.dumps(params))  # what the wire would carry
        sim_account = self.exchange.accounts[account]
        try:
            if path in BATCH:
                operation = BATCH[path](self.exchange)
                rows, codes = [], []
                for item in params["request"]:
                    try:
                        rows.append(operation(sim_account, {"category": "linear", **item}))
                        codes.append({"code": 0, "msg": "OK"})
                    except BybitError as exc:
                        rows.append({})
                        codes.append({"code": exc.code, "msg": exc.message})
                result, ext = {"list": rows}, {"list": codes}
            elif path in PUBLIC:
                result, ext = PUBLIC[path](self.exchange, params, {}), {}
            else:
                result, ext = PRIVATE[path](self.exchange, sim_account, params, {}), {}
        except BybitError as exc:
            return HttpFail(Failure.BUSINESS, exc.message, exc.code)
        if isinstance(result, tuple):
            result, ext = result
        return HttpOk({"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": ext}, {}, 0.0)

    def private_stream(
        self,
        account: str,
        deliver: Callable[[StreamEvent], None],
        *,
        heartbeat: float,
        clock: Callable[[], float],
        may_connect: Callable[[float], bool],
    ) -> FakeStream:
        self.private[account] = FakeStream(account, self.exchange, deliver, clock, may_connect)
        return self.private[account]

    def public_stream(
        self,
        name: str,
        topics: tuple[str, ...],
        deliver: Callable[[StreamEvent], None],
        *,
        heartbeat: float,
        clock: Callable[[], float],
        may_connect: Callable[[float], bool],
    ) -> None:
        return None  # no tickers in-process


class FakeStream:
    """A private stream that connects at its first tick the handshake budget allows, hears a pong
    at every tick unless `silent`, and pushes each engine change (unless told to lose the next
    ones)."""

    def __init__(
        self,
        name: str,
        exchange: Exchange,
        deliver: Callable[[StreamEvent], None],
        clock: Callable[[], float],
        may_connect: Callable[[float], bool] = lambda now: True,
    ):
        self.name, self._exchange, self._deliver, self._clock = name, exchange, deliver, clock
        self._may_connect = may_connect
        self.topics = PRIVATE_TOPICS
        self.connects = 0
        self.last_heard = 0.0
        self.silent = False
        self.lose = 0
        self._up = False
        exchange.listeners.append(self._on_changes)

    def tick(self, now: float) -> None:
        if not self._up:
            if not self._may_connect(now):
                return
            self._up, self.connects, self.last_heard = True, self.connects + 1, now
            for kind in (StreamKind.CONNECTED, StreamKind.AUTHENTICATED, StreamKind.SUBSCRIBED):
                self._deliver(StreamEvent(self.name, kind, data=list(self.topics)))
        elif not self.silent:
            self.last_heard = now

    def _on_changes(self, changes: list[Change]) -> None:
        for change in changes:
            if change.account != self.name or change.topic not in self.topics or not self._up:
                continue
            if self.lose:
                self.lose -= 1
                continue
            self._deliver(StreamEvent(self.name, StreamKind.PUSH, topic=change.topic, data=[dict(change.row)]))

    def set_topics(self, topics: tuple[str, ...]) -> None:
        self.topics = topics

    def restart(self, reason: str) -> None:
        self._up = False
        self._deliver(StreamEvent(self.name, StreamKind.DOWN, reason=reason))

    def stop(self) -> None:
        self._up = False
        if self._on_changes in self._exchange.listeners:
            self._exchange.listeners.remove(self._on_changes)
