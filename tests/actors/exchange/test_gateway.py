"""ExchangeGateway against the simulator over real HTTP (pybit inside the gateway)."""

from __future__ import annotations

import logging
import math
import time
from decimal import Decimal

import pykka
import pytest

from actors.asks import ask_with_reply
from actors.exchange._formats import HttpOk
from actors.exchange._handshakes import HandshakeBudget
from actors.exchange._rate_limiter import RateLimiter
from actors.exchange._transport import BybitTransport
from actors.exchange.gateway import ExchangeGateway
from messages.endpoints import Api
from messages.gateway import (
    Accepted,
    AmendOrder,
    CancelOrder,
    GatewayTick,
    GetAccountSnapshot,
    GetGatewayStats,
    GetMarket,
    GetPositionView,
    PlaceOrder,
    Priority,
    Rejected,
    SendBatch,
    SetLeverage,
    Unavailable,
    Unresolved,
)
from messages.models import OrderLink, Role
from messages.persistence import account_subject
from runtime.clock import SystemClock
from runtime.ticker import Every, Ticker
from simulator import Simulator
from tests.e2e.harness import wait_until
from tests.factory import closing_factory
from tests.stubs.recorder import Recorder, recorded


class Rig:
    def __init__(self, positions: int = 32, symbols: int = 64, timeout: float = 5.0, **gateway_options):
        self.sim = Simulator(seed=5, symbols=symbols)
        self.book = self.sim.load_demo_book(positions) if positions else []
        self.sim.start()
        accounts = {name: (c.api_key, c.api_secret) for name, c in self.sim.credentials.items()}
        self.gateway = ExchangeGateway.start(
            BybitTransport(accounts, self.sim.url, timeout=timeout), SystemClock(), **gateway_options
        )
        self.ticker = Ticker(SystemClock(), [Every(0.02, self.gateway, GatewayTick)]).start()
        self.stats()  # instruments requested at start

    def view(self, symbol: str, account: str = "main", max_age: float = 2.0, **kw):
        return ask_with_reply(
            self.gateway, lambda reply: GetPositionView(account, symbol, 0, max_age, reply=reply, **kw), 15
        )

    def snapshot(self, account: str = "main", max_age: float = 15.0):
        return ask_with_reply(self.gateway, lambda reply: GetAccountSnapshot(account, max_age, reply=reply), 15)

    def send(self, make):
        return ask_with_reply(self.gateway, make, 15)

    def stats(self):
        return self.gateway.ask(GetGatewayStats(), timeout=5)

    def close(self):
        self.ticker.stop()
        self.gateway.stop()
        self.sim.stop()


@pytest.fixture
def rig():
    with closing_factory(Rig) as make:
        yield make


def orders_on(sim: Simulator, account: str) -> int:
    return sum(len(o) for o in sim.account(account).open_by_symbol.values())


def test_200_requests_on_a_cold_cache_cost_exactly_the_pages_needed(rig):
    r = rig()
    r.sim.stats.reset()
    symbols = [e.symbol for e in r.book if e.account == "main"]
    futures = []
    for n in range(200):
        account = "main" if n % 2 == 0 else "mirror"
        future = pykka.ThreadingFuture()
        r.gateway.tell(GetPositionView(account, symbols[n % len(symbols)], 0, 2.0, reply=future))
        futures.append((account, future))
    views = [(account, f.get(timeout=15)) for account, f in futures]
    stats = r.sim.stats.snapshot()["requests"]
    for account in ("main", "mirror"):
        assert stats[account] == {Api.POSITIONS: 1, Api.OPEN_ORDERS: math.ceil(orders_on(r.sim, account) / 50)}
        ids = {v.snapshot_id for a, v in views if a == account}
        assert len(ids) == 1  # everyone got the same snapshot
    assert all(v.position is not None and not v.stale for _, v in views)


def test_fresh_enough_answers_come_from_the_cache(rig):
    r = rig()
    r.view("BTCUSDT")
    before = r.sim.stats.requests()
    for _ in range(20):
        view = r.view("ETHUSDT", max_age=10)
        assert view.position is not None
    assert r.sim.stats.requests() == before
    assert r.stats().cache_hits == 20 and r.stats().cache_misses == 1


def test_view_holds_position_orders_and_instrument(rig):
    r = rig()
    entry = next(e for e in r.book if e.account == "main" and e.kind == "monitoring")
    view = r.view(entry.symbol)
    links = {OrderLink.parse(o.link_id) for o in view.orders}
    assert OrderLink(entry.position_id, Role.STOP, 0, 0) in links
    assert view.instrument is not None and view.instrument.symbol == entry.symbol
    assert view.position.size == r.sim.account("main").positions[entry.symbol].size


def test_mirror_slow_or_hung_does_not_delay_main_cache_hits(rig):
    r = rig()
    r.view("BTCUSDT")  # main cache warm
    r.sim.add_fault(kind="hang", account="mirror", seconds=3)
    mirror_future = pykka.ThreadingFuture()
    r.gateway.tell(GetPositionView("mirror", "BTCUSDT", 0, 2.0, reply=mirror_future))
    started = time.monotonic()
    for _ in range(10):
        assert r.view("BTCUSDT", max_age=60).position is not None
    main_seconds = time.monotonic() - started
    with pytest.raises(pykka.Timeout):
        mirror_future.get(timeout=0)  # the mirror is still hanging
    assert main_seconds < 1.0
    print(f"10 main cache hits while the mirror hangs: {main_seconds * 1000:.1f} ms")


def test_mirror_latency_does_not_slow_main_reads(rig):
    r = rig()
    r.sim.add_fault(kind="latency", account="mirror", ms=500)
    mirror_future = pykka.ThreadingFuture()
    r.gateway.tell(GetPositionView("mirror", "BTCUSDT", 0, 2.0, reply=mirror_future))
    assert r.view("BTCUSDT").position is not None
    with pytest.raises(pykka.Timeout):
        mirror_future.get(timeout=0)
    assert mirror_future.get(timeout=10).position is not None


def test_thirty_amends_at_once_meet_no_10006_and_stops_go_first(rig):
    r = rig(positions=40, symbols=48)
    r.view("BTCUSDT")
    guarded = [e for e in r.book if e.account == "main" and e.kind in ("building", "monitoring", "tp1_near", "fast")]
    assert len(guarded) >= 15
    commands = []
    for entry in guarded[:15]:
        account = r.sim.account("main")
        stop = account.by_link[OrderLink(entry.position_id, Role.STOP, 0, 0).build()]
        tp1 = account.by_link[OrderLink(entry.position_id, Role.TAKE_PROFIT, 1, 0).build()]
        commands.append(
            lambda reply, e=entry, q=stop.qty: AmendOrder(
                "main",
                e.symbol,
                OrderLink(e.position_id, Role.STOP, 0, 0).build(),
                qty=q,
                priority=Priority.PROTECT,
                reply=reply,
            )
        )
        commands.append(
            lambda reply, e=entry, q=tp1.qty: AmendOrder(
                "main",
                e.symbol,
                OrderLink(e.position_id, Role.TAKE_PROFIT, 1, 0).build(),
                qty=q,
                priority=Priority.RESIZE,
                reply=reply,
            )
        )
    r.sim.stats.reset()
    started = time.monotonic()
    futures = []
    for make in reversed(commands):  # resizes queued first: priority must still win
        future = pykka.ThreadingFuture()
        r.gateway.tell(make(future))
        futures.append(future)
    outcomes = [f.get(timeout=15) for f in futures]
    seconds = time.monotonic() - started
    assert all(isinstance(o, Accepted) for o in outcomes), outcomes
    assert r.sim.stats.snapshot()["rate_limited_10006"] == 0
    account = r.sim.account("main")
    targets = {
        OrderLink(e.position_id, role, level, 0).build()
        for e in guarded[:15]
        for role, level in ((Role.STOP, 0), (Role.TAKE_PROFIT, 1))
    }
    amended = sorted((account.by_link[link] for link in targets), key=lambda o: (o.updated_ms, o.seq))
    roles = [OrderLink.parse(o.link_id).role for o in amended]
    assert max(i for i, role in enumerate(roles) if role is Role.STOP) < 20  # stops in the first two windows
    assert seconds >= 2.0  # three windows of ten: paced, not burst
    print(f"30 amends at 10/s: {seconds:.2f} s, no 10006")


def test_10006_makes_the_command_unresolved_and_blocks_the_key_until_reset(rig):
    r = rig()
    r.sim.add_fault(kind="retcode", endpoint=Api.PLACE_ORDER, code=10006, message="Too many visits!", count=1)
    place = lambda reply, n: PlaceOrder(
        "main",
        "BTCUSDT",
        "Buy",
        "Limit",
        Decimal("0.001"),
        f"tg-rl{n}-E2-0",
        price=Decimal("50000"),
        reduce_only=False,
        reply=reply,
    )
    assert isinstance(r.send(lambda reply: place(reply, 1)), Unresolved)
    started = time.monotonic()
    assert isinstance(r.send(lambda reply: place(reply, 2)), Accepted)
    assert time.monotonic() - started >= 0.5  # waited for the reset time (about 1 s ahead)
    assert r.stats().rate_limited_10006 == 1


def test_http_403_stops_every_request_to_the_host(rig):
    r = rig()
    r.view("BTCUSDT")
    r.sim.add_fault(kind="http_5xx", endpoint=Api.PLACE_ORDER, status=403, count=1)
    place = lambda reply, n: PlaceOrder(
        "main",
        "BTCUSDT",
        "Buy",
        "Limit",
        Decimal("0.001"),
        f"tg-ban{n}-E2-0",
        price=Decimal("50000"),
        reduce_only=False,
        reply=reply,
    )
    assert isinstance(r.send(lambda reply: place(reply, 1)), Unresolved)
    before = r.sim.stats.requests()
    second = r.send(lambda reply: place(reply, 2))
    assert isinstance(second, Rejected) and "403" in second.message  # never sent
    view = r.view("BTCUSDT", max_age=0.01)
    assert view.stale and view.position is not None  # the last good data, marked stale
    assert r.sim.stats.requests() == before
    assert r.stats().banned_403 == 1


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "http_5xx", "status": 502},
        {"kind": "retcode", "code": 10016},
        {"kind": "malformed_json"},
        {"kind": "hang", "seconds": 3},
        {"kind": "stuck_cursor"},
        {"kind": "drop_connection"},
    ],
    ids=["5xx", "10016", "malformed", "timeout", "stuck-cursor", "dropped"],
)
def test_a_failed_refresh_keeps_the_last_good_snapshot_marked_stale(rig, fault):
    r = rig(positions=60, timeout=1.0)
    good = r.snapshot()
    assert len(good.positions) == 60
    r.sim.add_fault(endpoint=Api.OPEN_ORDERS, **fault)
    stale = r.snapshot(max_age=0.01)
    assert stale.stale and len(stale.positions) == 60 and stale.snapshot_id == good.snapshot_id
    view = r.view("BTCUSDT", max_age=0.01)
    assert view.stale and view.position is not None
    assert r.stats().stale_accounts == ("main",)
    r.sim.clear_faults()
    deadline = time.monotonic() + 10  # the backoff is 1 s: a request after it reads again
    while time.monotonic() < deadline:
        fresh = r.snapshot(max_age=0.01)
        if not fresh.stale:
            break
    assert not fresh.stale and fresh.snapshot_id > good.snapshot_id


def test_after_the_stale_limit_requests_get_unavailable(rig):
    r = rig(stale_limit=0.2)
    r.snapshot()
    r.sim.add_fault(kind="http_5xx", endpoint=Api.OPEN_ORDERS)
    deadline = time.monotonic() + 5
    answer = None
    while time.monotonic() < deadline:
        answer = r.snapshot(max_age=0.01)
        if isinstance(answer, Unavailable):
            break
    assert isinstance(answer, Unavailable) and "no good data" in answer.reason


def test_no_data_at_all_is_unavailable_not_an_empty_book(rig):
    r = rig()
    r.sim.add_fault(kind="retcode", code=10016, endpoint=Api.POSITIONS)
    answer = r.snapshot()
    assert isinstance(answer, Unavailable)


def test_lost_response_is_unresolved_and_the_next_snapshot_shows_the_order(rig):
    r = rig()
    r.view("BTCUSDT")
    r.sim.add_fault(kind="lost_response", endpoint=Api.PLACE_ORDER, count=1)
    outcome = r.send(
        lambda reply: PlaceOrder(
            "main",
            "BTCUSDT",
            "Buy",
            "Limit",
            Decimal("0.001"),
            "tg-lost-E2-0",
            price=Decimal("50000"),
            reduce_only=False,
            priority=Priority.PROTECT,
            reply=reply,
        )
    )
    assert isinstance(outcome, Unresolved)
    view = r.view("BTCUSDT", max_age=60)  # marked dirty: read again despite the generous max_age
    assert "tg-lost-E2-0" in {o.link_id for o in view.orders}
    assert r.sim.stats.snapshot()["requests"]["main"][Api.PLACE_ORDER] == 1  # never re-sent


def test_accepted_commands_are_reflected_before_the_next_answer(rig):
    r = rig()
    entry = next(e for e in r.book if e.account == "main" and e.kind == "monitoring")
    stop_link = OrderLink(entry.position_id, Role.STOP, 0, 0).build()
    tp4_link = OrderLink(entry.position_id, Role.TAKE_PROFIT, 4, 0).build()
    r.view(entry.symbol)
    before = r.sim.stats.requests()
    stop = next(o for o in r.view(entry.symbol, max_age=60).orders if o.link_id == stop_link)
    moved = stop.trigger_price + (1 if entry.side == "Sell" else -1) * stop.trigger_price / 100
    moved = r.view(entry.symbol).instrument.snap_price(moved, up=entry.side == "Sell")
    assert isinstance(
        r.send(
            lambda reply: AmendOrder(
                "main", entry.symbol, stop_link, trigger_price=moved, priority=Priority.PROTECT, reply=reply
            )
        ),
        Accepted,
    )
    assert isinstance(r.send(lambda reply: CancelOrder("main", entry.symbol, tp4_link, reply=reply)), Accepted)
    view = r.view(entry.symbol, max_age=60)
    assert next(o for o in view.orders if o.link_id == stop_link).trigger_price == moved
    assert tp4_link not in {o.link_id for o in view.orders}
    assert r.sim.stats.requests() == before + 2  # two writes, no extra reads


def test_batch_commands_answer_per_item(rig):
    r = rig()
    make = lambda n: PlaceOrder(
        "main",
        "BTCUSDT",
        "Buy",
        "Limit",
        Decimal("0.001"),
        f"tg-bat{n}-E2-0",
        price=Decimal("50000"),
        reduce_only=False,
        reply=None,
    )
    outcomes = r.send(lambda reply: SendBatch("main", (make(1), make(1), make(2)), reply=reply))
    assert [type(o) for o in outcomes] == [Accepted, Rejected, Accepted]
    assert outcomes[1].code == 110072


def test_include_closed_reports_a_filled_take_profit_for_one_request_when_the_data_is_fresh(rig):
    r = rig()
    entry = next(e for e in r.book if e.account == "main" and e.kind == "after_tp1")
    r.view(entry.symbol)
    before = r.sim.stats.requests()
    view = r.view(entry.symbol, include_closed=True)
    tp1 = OrderLink(entry.position_id, Role.TAKE_PROFIT, 1, 0).build()
    assert any(o.link_id == tp1 and o.status == "Filled" for o in view.closed)
    assert r.sim.stats.requests() == before + 1 and r.sim.stats.requests(endpoint=Api.ORDER_HISTORY) == 1
    stale_first = r.view(entry.symbol, include_closed=True, max_age=0.0)  # not fresh: the symbol is read too
    assert stale_first.closed and r.sim.stats.requests() == before + 4


def test_urgent_requests_on_a_big_book_use_symbol_reads(rig):
    r = rig(positions=120, symbols=128)
    r.snapshot()  # learns that a full refresh costs many pages
    r.sim.stats.reset()
    symbols = [e.symbol for e in r.book if e.account == "main"][:3]
    for symbol in symbols:
        assert r.view(symbol, max_age=0.001).position is not None
    requests = r.sim.stats.snapshot()["requests"]["main"]
    assert requests == {Api.OPEN_ORDERS: 3, Api.POSITIONS: 3}


def test_no_pool_full_warning_with_50_concurrent_requests(rig, caplog):
    caplog.set_level(logging.WARNING)
    r = rig(positions=60, symbols=64)
    r.view("BTCUSDT")
    futures = []
    for entry in [e for e in r.book if e.account == "main"][:50]:
        future = pykka.ThreadingFuture()
        r.gateway.tell(GetPositionView("main", entry.symbol, 0, 0.01, include_closed=True, reply=future))
        futures.append(future)
    assert all(f.get(timeout=20).position is not None for f in futures)
    assert not [rec for rec in caplog.records if "Connection pool is full" in rec.getMessage()]
    assert r.stats().pool_in_use == 0


def test_secrets_never_reach_a_log_line(rig, caplog):
    caplog.set_level(logging.DEBUG)
    r = rig()
    r.sim.add_fault(kind="retcode", endpoint=Api.PLACE_ORDER, code=10016, count=1)
    r.view("BTCUSDT")
    r.send(
        lambda reply: PlaceOrder(
            "main",
            "BTCUSDT",
            "Buy",
            "Limit",
            Decimal("0.001"),
            "tg-sec-E2-0",
            price=Decimal("50000"),
            reduce_only=False,
            reply=reply,
        )
    )
    r.stats()
    text = caplog.text + repr(r.gateway) + repr(r.stats())
    for creds in r.sim.credentials.values():
        assert creds.api_key not in text and creds.api_secret not in text


def test_unknown_account_is_unavailable(rig):
    r = rig(positions=1)
    assert isinstance(r.view("BTCUSDT", account="nobody"), Unavailable)


# --- pure parts ----------------------------------------------------------------------------


def test_limiter_paces_to_the_published_limit_with_a_guard():
    limiter = RateLimiter(guard=0.1)
    assert all(limiter.take("main", Api.AMEND_ORDER, 0.0) for _ in range(10))
    limiter.answered("main", Api.AMEND_ORDER, started=0.0, answered=0.15, units=10)
    assert not limiter.take("main", Api.AMEND_ORDER, 0.5)
    assert limiter.delay("main", Api.AMEND_ORDER, 0.5) == pytest.approx(0.6)
    assert limiter.take("main", Api.AMEND_ORDER, 1.1)
    assert limiter.take("mirror", Api.AMEND_ORDER, 0.5)  # per account
    assert limiter.take("main", Api.POSITIONS, 0.5)  # per endpoint


def test_a_request_holds_its_place_until_answered_and_counts_from_when_it_can_have_been_sent():
    """A busy interpreter started a window's requests at once but put them on the wire late: the
    next window's must wait a second after the latest moment they can have gone, or Bybit would
    count both within one second. Before the answers, their places are not free at all."""
    limiter = RateLimiter(guard=0.1)
    assert limiter.take("main", Api.AMEND_ORDER, 0.0)
    limiter.answered("main", Api.AMEND_ORDER, started=0.0, answered=0.15)  # a quick round trip: 0.15 s
    assert all(limiter.take("main", Api.AMEND_ORDER, 2.0) for _ in range(10))
    assert not limiter.take("main", Api.AMEND_ORDER, 3.2)  # not answered yet: no room
    limiter.answered("main", Api.AMEND_ORDER, started=2.0, answered=2.55, units=10)  # sent by 2.4 at the latest
    assert not limiter.take("main", Api.AMEND_ORDER, 3.2)  # would have gone at 3.1
    assert limiter.delay("main", Api.AMEND_ORDER, 3.2) == pytest.approx(0.3)
    assert limiter.take("main", Api.AMEND_ORDER, 3.5)
    assert all(limiter.take("main", Api.AMEND_ORDER, 3.6) for _ in range(8))
    limiter.answered("main", Api.AMEND_ORDER, started=3.6, answered=3.75, units=10)  # one more than let go
    assert limiter.take("main", Api.AMEND_ORDER, 3.8)  # the tenth: the extra answer counted nothing


def test_every_account_of_the_process_shares_the_ips_budget_and_a_shard_takes_its_share():
    """Bybit's 600 requests per 5 s per IP bind before any key's limit once accounts are many:
    50 accounts at 20 reads each would be 1000. Market data counts too."""
    limiter = RateLimiter(guard=0.1)
    assert limiter.ip_limit == 540  # a tenth left for everything else on the host
    let_go = sum(limiter.take(f"acct{n:02d}", Api.POSITIONS, 0.0) for n in range(50) for _ in range(20))
    assert let_go == 540
    assert not limiter.take("fresh", Api.TICKERS, 1.0)  # no key limit there, but the IP's
    assert limiter.delay("fresh", Api.POSITIONS, 1.0) == pytest.approx(4.1)
    assert limiter.take("fresh", Api.TICKERS, 5.2)  # the window moved on
    half = RateLimiter(ip_share=0.5)  # two shards behind one egress IP
    assert sum(half.take(f"acct{n}", Api.OPEN_ORDERS, 0.0) for n in range(20) for _ in range(50)) == 270


def test_streams_connect_within_the_handshake_budget_staggered_and_never_past_it():
    """50 streams down at once, each asking at every tick (20 a second) and dropping again at once
    after connecting, for 6 minutes: 5 connects a second at most, 400 per 5 minutes at most."""
    budget = HandshakeBudget()
    assert budget.limit == 400  # Bybit's 500 per 5 minutes per IP, a fifth left for restarts and others
    allowed = [tick / 20 for tick in range(20 * 360) for _ in range(50) if budget.take(tick / 20)]
    assert allowed[49] < 10.0  # all 50 back within 10 s
    assert max(sum(1 for t in allowed if s <= t < s + 1) for s in range(360)) == 5
    assert max(sum(1 for t in allowed if s <= t < s + 300) for s in range(60)) == 400
    assert HandshakeBudget(share=0.5).limit == 200


def test_an_account_on_another_host_is_called_there():
    """A demo account beside real ones: its REST calls (and private stream) go to its own host."""
    with Simulator(seed=1) as real, Simulator(seed=2) as demo:
        main, mirror = real.credentials["main"], demo.credentials["mirror"]
        transport = BybitTransport(
            {"main": (main.api_key, main.api_secret), "mirror": (mirror.api_key, mirror.api_secret)},
            real.url,
            hosts={"mirror": (demo.url, demo.ws_private)},
        )
        params = {"category": "linear", "settleCoin": "USDT"}
        assert isinstance(transport.call("main", "get_positions", params), HttpOk)
        assert isinstance(transport.call("mirror", "get_positions", params), HttpOk)  # demo's key, demo's host
        assert demo.stats.requests(account="mirror") == 1 and real.stats.requests(account="mirror") == 0


def test_limiter_is_corrected_by_headers_and_blocks_on_10006_and_403():
    limiter = RateLimiter()
    limiter.observe("main", Api.PLACE_ORDER, 0.0, "10", "2")  # 8 spent elsewhere
    assert [limiter.take("main", Api.PLACE_ORDER, 0.0) for _ in range(3)] == [True, True, False]
    limiter.block("main", Api.CANCEL_ORDER, until=5.0)
    assert limiter.delay("main", Api.CANCEL_ORDER, 1.0) == 4.0
    limiter.ban(until=100.0)
    assert limiter.delay("mirror", Api.TICKERS, 1.0) == 99.0


def test_a_request_without_a_reply_future_is_logged_and_dropped_not_fatal(rig, caplog):
    r = rig(positions=2)
    entry = r.book[0]
    r.gateway.tell(GetPositionView("main", entry.symbol, 0, 2.0, reply=None))
    r.gateway.tell(CancelOrder("main", entry.symbol, "tg-x-T1-0", reply=None))
    view = r.view(entry.symbol)  # the only gateway is still alive and answers
    assert view.symbol == entry.symbol
    errors = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.ERROR]
    assert len(errors) == 2 and all("without a reply future" in line for line in errors)


@pytest.mark.slow  # a real daemon process, or seconds of real time
def test_an_account_unreadable_past_the_stale_limit_is_journaled_once_and_its_recovery_too(rig):
    journal = Recorder.start()
    r = rig(positions=2, stale_limit=1.0, persistence=journal)
    r.view(r.book[0].symbol, account="mirror", max_age=0.0)
    r.sim.add_fault(kind="http_5xx", account="mirror", status=503)
    events = lambda: [e.event for m in recorded(journal) for e in m.events]
    wait_until(
        lambda: r.view(r.book[0].symbol, account="mirror", max_age=0.0) and "account_unreadable" in events(),
        30,
        "the account journaled unreadable",
        interval=0.3,
    )
    r.sim.clear_faults()
    wait_until(
        lambda: r.view(r.book[0].symbol, account="mirror", max_age=0.0) and "account_readable" in events(),
        30,
        "the account journaled readable again",
        interval=0.3,
    )
    records = recorded(journal)
    assert events() == ["account_unreadable", "account_readable"]
    assert all(m.critical and m.monitor == account_subject("mirror") for m in records)
    journal.stop()


def test_market_reads_the_price_and_balance_and_leverage_not_modified_is_accepted(rig):
    rig = rig()
    wait_until(lambda: rig.view("BTCUSDT").instrument is not None, 10, "instruments loaded")
    market = rig.send(lambda reply: GetMarket("main", "BTCUSDT", reply=reply))
    assert market.instrument.symbol == "BTCUSDT" and market.instrument.max_leverage == Decimal(50)
    assert market.last_price == rig.sim.exchange.last_price("BTCUSDT")
    assert market.available_balance == rig.sim.exchange.available_balance(rig.sim.account("main"))
    unknown = rig.send(lambda reply: GetMarket("main", "FOOUSDT", reply=reply))
    assert unknown.instrument is None and unknown.last_price is None
    assert isinstance(
        rig.send(lambda reply: SetLeverage("main", "BTCUSDT", Decimal(10), reply=reply)), Accepted
    )  # 110043
    assert isinstance(rig.send(lambda reply: SetLeverage("main", "BTCUSDT", Decimal(3), reply=reply)), Accepted)
    refused = rig.send(lambda reply: SetLeverage("main", "BTCUSDT", Decimal(80), reply=reply))
    assert isinstance(refused, Rejected) and refused.code == 10001
    assert rig.sim.account("main").leverage["BTCUSDT"] == Decimal(3)
