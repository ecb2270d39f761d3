"""The gateway on pushes: the simulator's private and ticker streams over real WebSockets
(websocket-client inside the gateway), REST only to resync. Short heartbeats and resyncs keep
these quick; the same code runs with the defaults (10 s, 60 s)."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest

from actors.asks import ask_with_reply
from actors.exchange._transport import BybitTransport
from actors.exchange.gateway import ExchangeGateway
from messages.endpoints import Api
from messages.gateway import AttachScheduler, GatewayTick, GetGatewayStats, GetPositionView, PositionView
from messages.models import MonitorId, OrderLink, Role, TriggerBy
from messages.scheduler import Wake
from runtime.clock import FakeClock, SystemClock
from runtime.metrics import Metrics
from runtime.ticker import Every, Ticker
from simulator import Simulator, account_names
from tests.e2e.harness import wait_until
from tests.factory import closing_factory
from tests.stubs.recorder import Recorder, recorded
from tests.stubs.transport import InProcessTransport

HEARTBEAT_S = 0.5


class StreamRig:
    def __init__(self, positions: int = 6, resync_every: float = 30.0, **sim_options):
        self.sim = Simulator(seed=7, symbols=16, **sim_options)
        self.book = self.sim.load_demo_book(positions)
        self.sim.start()
        accounts = {name: (c.api_key, c.api_secret) for name, c in self.sim.credentials.items()}
        transport = BybitTransport(
            accounts, self.sim.url, timeout=3.0, ws_private=self.sim.ws_private, ws_public=self.sim.ws_public
        )
        self.scheduler = Recorder.start()
        self.gateway = ExchangeGateway.start(transport, SystemClock(), heartbeat=HEARTBEAT_S, resync_every=resync_every)
        self.gateway.tell(AttachScheduler(self.scheduler))
        self.ticker = Ticker(SystemClock(), [Every(0.02, self.gateway, GatewayTick)]).start()

    def stats(self):
        return self.gateway.ask(GetGatewayStats(), timeout=5)

    def fresh(self, *accounts: str) -> None:
        wait_until(
            lambda: set(accounts or ("main", "mirror")) <= set(self.stats().streams_healthy), 15, "the streams fresh"
        )

    def view(self, symbol: str, account: str = "main", max_age: float = 0.0, closed_for=None, prices=False):
        return ask_with_reply(
            self.gateway,
            lambda reply: GetPositionView(
                account,
                symbol,
                0,
                max_age,
                closed_for is not None,
                closed_for or frozenset(),
                prices=prices,
                reply=reply,
            ),
            15,
        )

    def reads(self, account: str = "main") -> int:
        return sum(
            self.sim.stats.requests(account=account, endpoint=e)
            for e in (Api.OPEN_ORDERS, Api.POSITIONS, Api.ORDER_HISTORY)
        )

    def wakes(self) -> list[MonitorId]:
        return [m.monitor for m in recorded(self.scheduler) if isinstance(m, Wake)]

    def woken_after(self, count: int, monitor: MonitorId) -> bool:
        return monitor in self.wakes()[count:]

    def entry(self, kind: str, account: str = "main"):
        return next(e for e in self.book if e.kind == kind and e.account == account)

    def through_tp1(self, entry) -> None:
        order = self.sim.account(entry.account).by_link[OrderLink(entry.position_id, Role.TAKE_PROFIT, 1, 0).build()]
        self.sim.set_price(entry.symbol, order.price * (Decimal("1.001") if order.side == "Sell" else Decimal("0.999")))

    def close(self):
        self.ticker.stop()
        self.gateway.stop()
        self.scheduler.stop()
        self.sim.stop()


@pytest.fixture
def rig():
    with closing_factory(StreamRig) as make:
        yield make


def test_while_fresh_views_cost_no_read_whatever_their_max_age(rig):
    r = rig()
    r.fresh()
    entry = r.entry("tp1_near")
    r.sim.stats.reset()
    views = [r.view(entry.symbol, max_age=0.0) for _ in range(20)]
    assert all(isinstance(v, PositionView) and v.position is not None for v in views)
    assert r.reads() == 0


def test_a_fill_wakes_its_monitor_and_is_known_without_the_order_history(rig):
    r = rig()
    r.fresh()
    entry = r.entry("tp1_near")
    tp1 = OrderLink(entry.position_id, Role.TAKE_PROFIT, 1, 0).build()
    before = r.view(entry.symbol).position.size
    r.sim.stats.reset()
    woken = len(r.wakes())
    r.through_tp1(entry)
    wait_until(lambda: r.woken_after(woken, MonitorId("main", entry.symbol)), 5, "a Wake for the monitor")
    view = r.view(entry.symbol, closed_for=frozenset({tp1}))
    assert [o.status for o in view.closed if o.link_id == tp1] == ["Filled"]
    assert view.position.size < before  # never the filled order with the old size
    assert r.reads() == 0


def test_tickers_follow_the_monitors_that_act_on_prices_and_no_other(rig):
    """3,000-4,000 ticker pushes a second at 1000 symbols: only symbols whose monitor uses live
    prices (trailing) are subscribed; the others' views carry the position row's mark."""
    r = rig()
    r.fresh()
    trailing, quiet = r.entry("monitoring"), r.entry("building")
    r.view(trailing.symbol, prices=True)  # a trailing monitor's check
    for entry in (trailing, quiet):
        r.sim.set_price(entry.symbol, r.sim.exchange.last_price(entry.symbol) * Decimal("1.001"))
    wait_until(lambda: r.view(trailing.symbol, prices=True).prices, 10, "the trailing symbol's ticker prices")
    for entry in (trailing, quiet):
        r.sim.set_price(entry.symbol, r.sim.exchange.last_price(entry.symbol) * Decimal("1.001"))
    wait_until(
        lambda: (
            r.view(trailing.symbol, prices=True).prices.get(TriggerBy.LAST)
            == r.sim.exchange.last_price(trailing.symbol)
        ),
        10,
        "the new price pushed",
    )
    view = r.view(quiet.symbol)
    assert view.prices == {} and view.price(TriggerBy.MARK) == view.position.mark_price  # the row's mark


def test_a_data_stall_hands_over_to_rest_within_two_heartbeats_and_comes_back(rig, caplog):
    r = rig()
    r.fresh()
    entry = r.entry("tp1_near")
    r.sim.add_fault(kind="ws_black_hole", account="main")
    wait_until(lambda: "main" not in r.stats().streams_healthy, 4 * HEARTBEAT_S + 2, "main no longer fresh")
    assert "mirror" in r.stats().streams_healthy
    r.sim.stats.reset()
    assert isinstance(r.view(entry.symbol, max_age=0.0), PositionView) and r.reads() > 0  # REST serves
    r.sim.clear_faults()
    r.fresh("main")
    assert any(
        "Stream main: stale" in rec.getMessage() or "Stream main: down" in rec.getMessage()
        for rec in caplog.records
        if rec.levelno == logging.WARNING
    )


@pytest.mark.slow  # a real daemon process, or seconds of real time
def test_a_lost_push_is_found_by_the_resync_the_snapshot_wins(rig, caplog):
    r = rig(resync_every=2.0)
    r.fresh()
    entry = r.entry("tp1_near")
    r.sim.add_fault(kind="ws_lose_push", account="main", count=100)  # every push of this fill
    r.through_tp1(entry)
    size = r.sim.account("main").positions[entry.symbol].size
    wait_until(lambda: r.stats().missed_pushes > 0, 10, "the resync finding the missed pushes")
    r.sim.clear_faults()
    assert r.view(entry.symbol).position.size == size
    assert any("no push told" in rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING)


def test_duplicated_pushes_are_applied_once(rig):
    r = rig()
    r.fresh()
    entry = r.entry("tp1_near")
    r.sim.add_fault(kind="ws_duplicate_push", account="main", count=100)
    woken = len(r.wakes())
    r.through_tp1(entry)
    wait_until(lambda: r.woken_after(woken, MonitorId("main", entry.symbol)), 5, "a Wake for the monitor")
    wait_until(
        lambda: r.view(entry.symbol).position.size == r.sim.account("main").positions[entry.symbol].size,
        5,
        "the pushed size",
    )
    stats = r.stats()
    assert stats.pushes > 0 and stats.rejected_pushes == 0


def test_a_refused_key_is_one_error_rest_goes_on_and_reconnects_back_off(rig, caplog):
    r = rig()
    r.fresh()
    r.sim.add_fault(kind="ws_auth_fail", account="main", count=1000)
    r.sim.add_fault(kind="ws_drop", account="main", count=1)
    wait_until(lambda: "main" not in r.stats().streams_healthy, 5, "main no longer fresh")
    wait_until(lambda: any("refused the key" in rec.getMessage() for rec in caplog.records), 10, "the ERROR line")
    connects = r.stats().stream_connects["main"]
    entry = r.entry("tp1_near")
    assert isinstance(r.view(entry.symbol, max_age=0.0), PositionView)
    wait_until(lambda: r.stats().stream_connects["main"] >= connects + 1, 10, "a retry")
    errors = [rec for rec in caplog.records if rec.levelno == logging.ERROR and "refused the key" in rec.getMessage()]
    assert len(errors) == 1
    # Backoff doubles from 1 s: a handful of attempts in this test's seconds, never a tight loop.
    assert r.stats().stream_connects["main"] <= connects + 4


# --- deterministic: the in-process transport and the fake clock -------------------------------


class OnFakeTime:
    def __init__(self, accounts: tuple[str, ...] = ("main", "mirror")):
        self.sim = Simulator(seed=7, symbols=16, accounts=accounts)  # its engine only: no server, no threads
        self.book = self.sim.load_demo_book(6)
        self.clock = FakeClock(start=1000.0)
        self.transport = InProcessTransport(self.sim.exchange, accounts)
        self.metrics = Metrics(self.clock, accounts)
        self.gateway = ExchangeGateway.start(
            self.transport, self.clock, heartbeat=10.0, resync_every=60.0, metrics=self.metrics
        )
        self.settle()

    def settle(self):
        wait_until(
            lambda: self.gateway.ask(GetGatewayStats(), timeout=5).pool_in_use == 0, 5, "jobs done", interval=0.01
        )
        return self.gateway.ask(GetGatewayStats(), timeout=5)

    def tick(self, seconds: float = 0.0):
        self.gateway.tell(GatewayTick(self.clock.advance(seconds)))
        return self.settle()

    def view(self, symbol: str, max_age: float = 0.0, fresh: bool = False):
        return ask_with_reply(
            self.gateway, lambda reply: GetPositionView("main", symbol, 0, max_age, fresh=fresh, reply=reply), 5
        )

    def reads(self) -> int:
        return sum(self.transport.calls[e] for e in (Api.OPEN_ORDERS, Api.POSITIONS, Api.ORDER_HISTORY))

    def close(self):
        self.gateway.stop()


@pytest.fixture
def fake():
    made = OnFakeTime()
    yield made
    made.close()


def test_on_fake_time_fresh_until_two_heartbeats_pass_in_silence(fake):
    assert fake.tick().streams_healthy == ("main", "mirror")  # connected, subscribed, resynced
    symbol = fake.book[0].symbol
    before = fake.reads()
    assert fake.view(symbol).position is not None and fake.reads() == before
    fake.transport.private["main"].silent = True  # a black hole: no pong any more
    assert fake.tick(15.0).streams_healthy == ("main", "mirror")
    assert fake.tick(6.0).streams_healthy == ("mirror",)  # 21 s > two heartbeats
    fake.view(symbol)
    assert fake.reads() > before  # REST serves main now


def test_on_fake_time_the_resync_finds_a_lost_push_after_its_grace(fake):
    fake.tick()
    entry = next(e for e in fake.book if e.account == "main" and e.kind == "monitoring")
    stop = next(o for o in fake.sim.account("main").open_orders(entry.symbol) if o.is_conditional)
    fake.transport.private["main"].lose = 2  # the cancel's order and position pushes
    fake.sim.exchange.cancel_order(
        fake.sim.account("main"), {"category": "linear", "symbol": entry.symbol, "orderLinkId": stop.link_id}
    )
    assert any(o.link_id == stop.link_id for o in fake.view(entry.symbol).orders)  # the cache never heard
    fake.tick(59.0)
    assert fake.tick(1.5).missed_pushes == 0  # resync done (the snapshot wins) ...
    assert not any(o.link_id == stop.link_id for o in fake.view(entry.symbol).orders)
    assert fake.tick(2.5).missed_pushes == 1  # ... judged a missed push after the grace


def test_on_fake_time_a_failed_first_resync_is_tried_again_and_the_stream_becomes_fresh(fake):
    fake.close()
    fake.transport.down.add("main")  # down from the start: the first resync of main's stream fails
    fake.gateway = ExchangeGateway.start(fake.transport, fake.clock, heartbeat=10.0, resync_every=60.0)
    assert fake.tick().streams_healthy == ("mirror",)
    fake.transport.down.clear()
    assert fake.tick(0.5).streams_healthy == ("mirror",)  # not before its backoff (1 s)
    assert fake.tick(0.6).streams_healthy == ("main", "mirror")


def test_on_fake_time_a_failing_account_is_read_again_by_the_gateway_itself(fake, caplog):
    fake.tick()
    symbol = fake.book[0].symbol
    fake.transport.down.add("main")
    fake.tick(1.0)
    assert fake.view(symbol, fresh=True).stale  # the read failed: the last good data, marked stale
    fake.transport.down.clear()
    before = fake.reads()
    with caplog.at_level(logging.INFO, logger="actors.exchange.gateway"):
        fake.tick(0.5)
        assert fake.reads() == before  # not before its backoff
        assert fake.tick(0.6).stale_accounts == ()  # no monitor asked: the gateway tried again
    assert fake.reads() == before + 2  # the symbol's orders and position
    assert any("main reads work again" in r.getMessage() for r in caplog.records)


def test_on_fake_time_twelve_streams_down_at_once_connect_five_a_second():
    """The handshake budget staggers every stream of the process (Bybit: 500 per 5 minutes per IP,
    and no bursts): 12 accounts' streams all due at start connect 5, 5 and 2, a second apart."""
    fake = OnFakeTime(account_names(12))
    try:
        connected = lambda: sum(stream.connects for stream in fake.transport.private.values())
        fake.tick()
        assert connected() == 5
        fake.tick(0.5)
        assert connected() == 5
        fake.tick(0.55)
        assert connected() == 10
        fake.tick(1.05)
        assert connected() == 12 and len(fake.tick().streams_healthy) == 12
        assert fake.metrics.registry.get_sample_value("guardian_stream_handshakes_held_total") >= 7 + 2
    finally:
        fake.close()
