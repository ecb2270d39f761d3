"""The stream client (actors/exchange/_websocket.py) against the simulator's WebSockets: its own clock is a fake
one the test moves (heartbeats, liveness, backoff), the sockets are real (loopback)."""

from __future__ import annotations

import random
import threading
from decimal import Decimal

import pytest

from actors.exchange._websocket import Kind, StreamClient, StreamEvent, StreamState
from messages.models import Order
from runtime.clock import FakeClock
from simulator import Simulator
from tests.e2e.harness import wait_until


class Rig:
    def __init__(
        self,
        sim: Simulator,
        *,
        private: bool = True,
        topics=("order", "execution", "position"),
        secret: str | None = None,
    ):
        self.sim = sim
        self.clock = FakeClock()
        self.events: list[StreamEvent] = []
        self._lock = threading.Lock()
        creds = sim.credentials["main"]
        self.client = StreamClient(
            "main" if private else "tickers",
            sim.ws_private if private else sim.ws_public,
            self._deliver,
            topics=topics,
            heartbeat=10.0,
            clock=self.clock.monotonic,
            credentials=(creds.api_key, secret or creds.api_secret) if private else None,
            rng=random.Random(1),
        )

    def _deliver(self, event: StreamEvent) -> None:
        with self._lock:
            self.events.append(event)

    def kinds(self) -> list[Kind]:
        with self._lock:
            return [e.kind for e in self.events]

    def tick(self, advance: float = 0.0) -> None:
        self.client.tick(self.clock.advance(advance))

    def until(self, kind: Kind, count: int = 1, what: str = "") -> None:
        wait_until(lambda: self.kinds().count(kind) >= count, 10, what or f"{count} x {kind}", interval=0.02)

    def pushes(self, topic: str) -> list[StreamEvent]:
        with self._lock:
            return [e for e in self.events if e.kind is Kind.PUSH and e.topic == topic]


@pytest.fixture
def sim():
    simulator = Simulator(seed=9, symbols=6)
    simulator.exchange.set_price("BTCUSDT", Decimal("65000"))
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture
def rig(sim):
    made: list[Rig] = []

    def make(**kw) -> Rig:
        made.append(Rig(sim, **kw))
        return made[-1]

    yield make
    for r in made:
        r.client.stop()


def test_it_connects_authenticates_subscribes_and_delivers_pushes(sim, rig):
    r = rig()
    r.tick()
    r.until(Kind.SUBSCRIBED)
    assert r.kinds()[:3] == [Kind.CONNECTED, Kind.AUTHENTICATED, Kind.SUBSCRIBED]
    assert r.client.state is StreamState.SUBSCRIBED
    sim.place(
        "main", symbol="BTCUSDT", side="Buy", orderType="Limit", qty="0.001", price="60000", orderLinkId="tg-s1-E2-0"
    )
    wait_until(lambda: r.pushes("order"), 5, "the order push")
    order = Order.from_v5(r.pushes("order")[0].data[0])
    assert order.link_id == "tg-s1-E2-0" and order.status == "New"


def test_a_json_heartbeat_keeps_it_alive_and_a_black_hole_is_found_within_two_heartbeats(sim, rig):
    r = rig()
    r.tick()
    r.until(Kind.SUBSCRIBED)
    r.tick(10.0)  # a heartbeat is due: JSON ping
    wait_until(lambda: r.client.last_heard == r.clock.monotonic(), 5, "the pong")
    sim.add_fault(kind="ws_black_hole")
    r.tick(10.0)  # ping unanswered
    r.tick(10.5)  # 20.5 s without a word: dead
    assert r.kinds()[-1] is Kind.DOWN and "nothing heard" in r.events[-1].reason
    assert r.client.state is StreamState.DOWN and 0.8 <= r.client.retry_at - r.clock.monotonic() <= 1.2
    sim.clear_faults()
    r.tick(1.2)  # the backoff passed: reconnect
    r.until(Kind.SUBSCRIBED, 2, "subscribed again")
    assert r.client.connects == 2


def test_refused_handshakes_cost_a_handful_of_attempts_a_minute(sim, rig):
    sim.add_fault(kind="ws_refuse", endpoint="/v5/private")  # refused until cleared
    r = rig()
    for _ in range(60):  # one simulated minute, a tick a second
        r.tick(1.0)
        wait_until(lambda: r.client.state is StreamState.DOWN, 5, "the attempt to fail", interval=0.01)
    assert 4 <= r.client.connects <= 7  # 1, 2, 4, 8, 16, 32 s apart (jittered)
    assert Kind.SUBSCRIBED not in r.kinds()
    sim.clear_faults()
    for _ in range(70):
        r.tick(1.0)
        if Kind.SUBSCRIBED in r.kinds():
            break
        wait_until(lambda: r.client.state in (StreamState.DOWN, StreamState.SUBSCRIBED), 5, "settled", interval=0.01)
    r.until(Kind.SUBSCRIBED, what="back once the exchange accepts again")


def test_a_refused_key_is_one_clear_event_and_no_tight_loop(sim, rig):
    r = rig(secret="revoked")
    for _ in range(30):
        r.tick(1.0)
        wait_until(
            lambda: r.client.state is StreamState.DOWN or Kind.AUTH_REFUSED in r.kinds(), 5, "an answer", interval=0.01
        )
    refusals = r.kinds().count(Kind.AUTH_REFUSED)
    assert 1 <= refusals <= r.client.connects <= 5  # 30 s: attempts 1, 2, 4, 8 s apart
    assert sim.ws_stats["auth_failures"] == refusals


def test_after_a_drop_it_reconnects_resubscribes_and_pushes_resume(sim, rig):
    r = rig(topics=("order",))
    r.tick()
    r.until(Kind.SUBSCRIBED)
    sim.add_fault(kind="ws_drop", count=1)
    r.until(Kind.DOWN, what="the drop noticed")
    r.tick(1.3)
    r.until(Kind.SUBSCRIBED, 2, "subscribed again")
    sim.place(
        "main", symbol="BTCUSDT", side="Buy", orderType="Limit", qty="0.001", price="60000", orderLinkId="tg-s2-E2-0"
    )
    wait_until(lambda: any(e.data[0]["orderLinkId"] == "tg-s2-E2-0" for e in r.pushes("order")), 5, "a push")


def test_the_public_ticker_stream_needs_no_auth_and_starts_with_a_snapshot(sim, rig):
    r = rig(private=False, topics=("tickers.BTCUSDT",))
    r.tick()
    r.until(Kind.SUBSCRIBED)
    wait_until(lambda: r.pushes("tickers.BTCUSDT"), 5, "the snapshot")
    sim.set_price("BTCUSDT", Decimal("65050"))
    wait_until(lambda: len(r.pushes("tickers.BTCUSDT")) >= 2, 5, "a delta")
    snapshot, delta = r.pushes("tickers.BTCUSDT")[:2]
    assert snapshot.message["type"] == "snapshot" and delta.message["type"] == "delta"
    assert Decimal(delta.data["lastPrice"]) == Decimal("65050") and Kind.AUTHENTICATED not in r.kinds()


def test_topics_follow_the_owner_on_the_live_connection(sim, rig):
    sim.exchange.set_price("ETHUSDT", Decimal("3000"))
    r = rig(private=False, topics=("tickers.BTCUSDT",))
    r.tick()
    r.until(Kind.SUBSCRIBED)
    wait_until(lambda: r.pushes("tickers.BTCUSDT"), 5, "the BTC snapshot")
    r.client.set_topics(("tickers.ETHUSDT",))  # one subscribe, one unsubscribe
    wait_until(lambda: r.pushes("tickers.ETHUSDT"), 5, "the ETH snapshot")
    r.until(Kind.SUBSCRIBED, 3, "both acks")
    btc = len(r.pushes("tickers.BTCUSDT"))
    sim.set_price("BTCUSDT", Decimal("65100"))
    sim.set_price("ETHUSDT", Decimal("3001"))
    wait_until(lambda: len(r.pushes("tickers.ETHUSDT")) >= 2, 5, "an ETH delta")
    assert len(r.pushes("tickers.BTCUSDT")) == btc and r.client.connects == 1
