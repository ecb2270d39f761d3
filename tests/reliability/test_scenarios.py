"""The reliability plan (../shared/reference/reliability-anchors.md, section 3.2): one named
test per scenario, each with its seed, the oracle watching the invariants throughout.
The daemon runs on pushes here as by default; the stream scenarios (S15, S15b, S16, S25-S28)
are in test_streams.py. S24 (the seeded soak) runs with `make soak`."""

from __future__ import annotations

import logging
import signal
import sqlite3
import subprocess
import sys
import time
from decimal import Decimal

import pytest

from actors.position import command_message
from actors.position.rules import STOP_KEY
from messages.endpoints import Api
from messages.gateway import Rejected
from messages.models import Intent, MonitorId, OrderLink, Role
from simulator import Simulator
from tests.e2e.harness import ROOT, holds_throughout
from tests.reliability.harness import CRITICAL_S, STANDARD_S, UNPROTECTED_LIMIT_S, Rig, assert_invariants
from tests.rules_driver import Driver
from tests.stubs.book import apply, open_conservative

pytestmark = pytest.mark.slow


def cancel_by_hand(r: Rig, entry, link_id: str) -> None:
    r.sim.exchange.cancel_order(
        r.sim.account(entry.account), {"category": "linear", "symbol": entry.symbol, "orderLinkId": link_id}
    )


def test_s01_stop_create_applied_but_answer_lost_is_found_not_duplicated(rig):
    r = rig(seed=101).start()
    entry = r.entry("tp1_near")  # critical (near TP1): checked every 2 s
    r.sim.add_fault(kind="lost_response", endpoint=Api.PLACE_ORDER, account="main", count=1)
    cancel_by_hand(r, entry, r.link(entry, "S", 0))
    r.wait(lambda: r.protected(entry), 15, "the stop back")
    stops = [
        o
        for o in r.sim.account("main").orders.values()
        if (link := OrderLink.parse(o.link_id)) and link.position_id == entry.position_id and link.role is Role.STOP
    ]
    assert len([o for o in stops if o.is_open]) == 1 and len(stops) == 2  # the cancelled one and one new
    r.stop()
    # Detecting the hand-made cancel takes up to one interval; the lost answer is then settled
    # by the immediate re-read (found): one more round trip.
    assert_invariants(r.oracle(), unprotected_limit=CRITICAL_S * 2 + 1)


def test_s01b_stop_create_not_applied_10000_is_issued_again_after_two_snapshots(rig):
    r = rig(seed=102).start()
    entry = r.entry("tp1_near")
    r.sim.add_fault(
        kind="retcode", code=10000, message="Server Timeout", endpoint=Api.PLACE_ORDER, account="main", count=1
    )
    cancel_by_hand(r, entry, r.link(entry, "S", 0))
    r.wait(lambda: r.protected(entry), 20, "a stop of the next generation")
    assert r.stop_of(entry).link_id == r.link(entry, "S", 0, 2)  # gen 1 never landed; gen 2 did
    r.stop()
    report = r.oracle()
    assert report["duplicate_live_orders"] == 0
    # Detection (one interval) + R10's two fresh snapshots (the immediate re-read, then one more
    # check) before re-issuing: about three critical intervals; the price of never duplicating.
    assert report["longest_unprotected_s"] <= 3 * CRITICAL_S + 1.5


def test_s02_a_resend_answered_110072_is_settled_by_lookup():
    sim = Simulator(seed=103, symbols=4)
    sim.exchange.set_price("BTCUSDT", Decimal("65000"))
    open_conservative(sim.exchange, "main", "BTCUSDT", "Buy", Decimal("0.100"), entries_filled=3)
    monitor = MonitorId("main", "BTCUSDT")
    driver = Driver(sim.exchange, monitor)
    driver.check()
    sim.exchange.cancel_order(
        sim.account("main"), {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "tg-pos1-S0-0"}
    )

    def duplicate(command):  # the order landed earlier; this send is told "duplicate"
        if command.key != STOP_KEY:
            return None
        apply(sim.exchange, "main", "BTCUSDT", command_message(monitor, command))
        return Rejected(110072, "OrderLinkedID is duplicate")

    driver.override = duplicate
    driver.check()
    assert STOP_KEY in driver.state.pending
    driver.override = None
    commands, _ = driver.check()
    assert commands == [] and STOP_KEY not in driver.state.pending
    assert [o.link_id for o in sim.account("main").open_orders("BTCUSDT") if o.is_conditional] == ["tg-pos1-S0-1"]


@pytest.mark.parametrize(
    "fault, seed",
    [({"kind": "retcode", "code": 10006, "message": "Too many visits!"}, 104), ({"kind": "drop_connection"}, 105)],
    ids=["10006", "connection-reset"],
)
def test_s03_breakeven_move_failing_once_is_retried_and_never_leaves_the_position_naked(rig, fault, seed):
    r = rig(seed=seed).start()
    entry = r.entry("tp1_near")
    r.sim.add_fault(endpoint=Api.AMEND_ORDER, account="main", count=1, **fault)
    r.through(entry, "T", 1)
    r.wait(
        lambda: (
            (s := r.stop_of(entry)) is not None
            and s.qty == r.size(entry)
            and (s.trigger_price - r.sim.account("main").positions[entry.symbol].avg_price)
            * (1 if entry.side == "Buy" else -1)
            > 0
        ),
        20,
        "the stop at breakeven",
    )
    r.stop()
    assert f"main:{entry.symbol}" not in r.sim.oracle.longest_unprotected
    report = r.oracle()
    # While the unresolved amend is settled (R10: two fresh snapshots), the stop still carries the
    # pre-TP1 size: harmless (a stop is clipped to the position when it fires), and bounded.
    assert report["longest_oversized_stop_s"] <= 3 * CRITICAL_S + 1.5
    assert_invariants({**report, "longest_oversized_stop_s": 0})


def test_s03a_breakeven_already_crossed_closes_at_market(rig):
    r = rig(seed=106).start()
    entry = r.entry("tp1_near")
    r.sim.add_fault(
        kind="retcode",
        code=110093 if entry.side == "Buy" else 110092,
        message="expect crossed",
        endpoint=Api.AMEND_ORDER,
        account="main",
        count=1,
    )
    r.through(entry, "T", 1)
    r.wait(lambda: r.size(entry) == 0 and not r.ours(entry), 20, "an emergency close and clean-up")
    r.stop()
    assert_invariants(r.oracle())


def test_s04_the_stop_is_amended_in_place_never_missing(rig):
    r = rig(seed=107).start()
    entries = [r.entry("tp1_near"), r.entry("tp1_near", account="mirror")]
    r.through(entries[0], "T", 1)
    r.wait(lambda: all(r.stop_of(e) is not None and r.stop_of(e).qty == r.size(e) for e in entries), 20, "stops moved")
    r.stop()
    for e in entries:
        assert f"{e.account}:{e.symbol}" not in r.sim.oracle.longest_unprotected
        assert r.stop_of(e).link_id == r.link(e, "S", 0)  # the same order, amended
    assert_invariants(r.oracle())


def test_s05_stop_hit_leftovers_cleaned_even_when_a_cancel_times_out(rig):
    r = rig(seed=108).start()
    entry = r.entry("building")
    r.sim.add_fault(kind="hang", endpoint=Api.CANCEL_ORDER, account="main", seconds=3, count=1)
    r.through(entry, "S", 0, beyond="0.002")
    r.wait(lambda: r.size(entry) == 0 and not r.ours(entry), 25, "orphans cancelled")
    r.stop()
    assert_invariants(r.oracle())


def test_s06_partial_take_profit_fills_shrink_the_stop(rig):
    r = rig(seed=109).start()
    entry = r.entry("monitoring")
    r.through(entry, "T", 1, beyond="-0.002")  # the price just short of TP1 (where partial fills happen)
    # One check sees it and the monitor turns critical; the position stays guarded meanwhile.
    holds_throughout(lambda: r.protected(entry), CRITICAL_S + 1, "the stop")
    for qty in ("0.25", "0.25"):
        tp1 = r.sim.account("main").by_link[r.link(entry, "T", 1)]
        r.sim.fill(
            "main", tp1.order_id, str(r.sim.exchange.specs[entry.symbol].instrument().round_qty(tp1.qty * Decimal(qty)))
        )
        r.wait(lambda: r.stop_of(entry) is not None and r.stop_of(entry).qty == r.size(entry), 15, "the stop shrunk")
    r.stop()
    assert_invariants(r.oracle())


def test_s07_manual_close_is_cleaned_up_and_nothing_new_is_placed(rig):
    r = rig(seed=110).start()
    entry = r.entry("monitoring")
    r.sim.place(
        "main",
        symbol=entry.symbol,
        side="Sell" if entry.side == "Buy" else "Buy",
        orderType="Market",
        qty=str(r.size(entry)),
    )
    r.wait(lambda: not r.ours(entry), 20, "leftovers cancelled")
    orders_before = {o.order_id for o in r.sim.account("main").orders.values() if o.symbol == entry.symbol}
    holds_throughout(
        lambda: (
            not [
                o
                for o in r.sim.account("main").orders.values()
                if o.symbol == entry.symbol and o.order_id not in orders_before
            ]
        ),
        2 * CRITICAL_S,
        "nothing placed after the close",
    )
    placed_after = [
        o for o in r.sim.account("main").orders.values() if o.symbol == entry.symbol and o.order_id not in orders_before
    ]
    assert placed_after == []  # nothing re-created for the closed position
    r.stop()
    assert_invariants(r.oracle())


def test_s07b_orders_that_outlived_a_lost_state_are_found_and_cancelled(rig):
    """The daemon is down when a position is closed by hand, and its state is lost: the stop it
    left is found by discovery on a flat position nobody guards, confirmed and cancelled."""
    r = rig(seed=116)
    first = r.process().start()
    entry = r.entry("monitoring")
    r.wait(lambda: r.protected(entry), 15, "protection")
    assert first.stop() == 0
    for path in r.tmp_path.glob("state.db*"):
        path.unlink()
    r.sim.place(
        "main",
        symbol=entry.symbol,
        side="Sell" if entry.side == "Buy" else "Buy",
        orderType="Market",
        qty=str(r.size(entry)),
    )
    assert r.ours(entry), "the stop outlives the position on the exchange"
    second = r.process().start()
    r.wait(lambda: not r.ours(entry), 40, "the orphaned stop cancelled")
    assert second.stop() == 0
    assert any("outlived its position" in m for m in second.messages())
    # The daemon was down at the closure: clean-up time is not the point.
    assert_invariants(r.oracle(), unprotected_limit=30, cleanup_limit=60)


def test_s08_manual_partial_reduce_shrinks_the_stop(rig):
    r = rig(seed=111).start()
    entry = r.entry("monitoring")
    reduce = r.sim.exchange.specs[entry.symbol].instrument().round_qty(r.size(entry) * Decimal("0.4"))
    r.sim.place(
        "main", symbol=entry.symbol, side="Sell" if entry.side == "Buy" else "Buy", orderType="Market", qty=str(reduce)
    )
    r.wait(lambda: r.stop_of(entry) is not None and r.stop_of(entry).qty == r.size(entry), 15, "the stop shrunk")
    r.stop()
    assert_invariants(r.oracle())


def test_s09_sigkill_between_send_and_record_then_restart_places_nothing_twice(rig):
    r = rig(seed=112, positions=12)
    first = r.process(GUARDIAN_KILL_AT="after_send:1").start()
    entry = r.entry("unguarded")  # its adoption is the first command sent
    first.process.wait(timeout=30)
    assert first.process.returncode == -signal.SIGKILL
    second = r.process().start()
    r.wait(lambda: r.protected(entry), 20, "the position protected after the restart")
    assert second.stop() == 0
    assert_invariants(r.oracle(), unprotected_limit=30)  # the daemon was dead for a while: time is not the point


def test_s10_sigkill_in_the_middle_of_a_flush_keeps_the_database_sound(rig):
    r = rig(seed=113)
    first = r.process(GUARDIAN_KILL_AT="mid_flush:1", FLUSH_INTERVAL_SECONDS="1").start()
    first.process.wait(timeout=30)
    assert first.process.returncode == -signal.SIGKILL
    connection = sqlite3.connect(r.env["STATE_PATH"])
    assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    connection.close()
    second = r.process().start()
    resumed = second.wait_for(lambda m: m.startswith("Supervisor:"), 10, "reconciliation")
    assert "0 stored states dropped" in resumed
    assert second.stop() == 0
    assert_invariants(r.oracle(), unprotected_limit=30)


@pytest.mark.parametrize(
    "content",
    [b"\x00" * 4096, b"SQLite format 3\x00" + b"\xff" * 100, b"{not a database}"],
    ids=["nul-bytes", "torn-header", "json"],
)
def test_s11_a_corrupt_state_file_is_moved_aside_and_the_book_rebuilt(rig, content):
    r = rig(seed=114)
    from pathlib import Path

    Path(r.env["STATE_PATH"]).write_bytes(content)
    r.start()
    entry = r.entry("monitoring")
    r.wait(lambda: r.protected(entry), 10, "protection")
    moved = list(Path(r.env["STATE_PATH"]).parent.glob("state.db.corrupt-*"))
    assert len(moved) == 1 and moved[0].read_bytes() == content
    r.stop()
    assert_invariants(r.oracle())


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"URGENCY_CRITICAL_SECONDS": "-1"}, "URGENCY_CRITICAL_SECONDS"),
        ({"HTTP_POOL_SIZE": "many"}, "HTTP_POOL_SIZE"),
        ({"BYBIT_API_SECRET_2": ""}, "BYBIT_API_SECRET_2"),
        ({"BYBIT_API_KEY_2": "SAME"}, "BYBIT_API_KEY_2"),
    ],
    ids=["negative-interval", "wrong-type", "mirror-without-keys", "same-key"],
)
def test_s12_malformed_settings_fail_fast_before_any_request(rig, env, expected):
    r = rig(seed=115)
    full = dict(r.process().env)
    full.update(env)
    if env.get("BYBIT_API_KEY_2") == "SAME":
        full["BYBIT_API_KEY_2"] = full["BYBIT_API_KEY"]
    result = subprocess.run([sys.executable, "main.py"], cwd=ROOT, env=full, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and expected in result.stderr
    assert r.sim.stats.snapshot()["total"] == 0


def test_s13_a_rate_limit_storm_is_backed_off_and_protection_holds(rig):
    r = rig(seed=116, positions=12).start()
    r.sim.limits.limits.update({Api.AMEND_ORDER: 2, Api.PLACE_ORDER: 2, Api.CANCEL_ORDER: 2})
    for entry in [e for e in r.book if e.kind == "tp1_near"]:
        r.through(entry, "T", 1)
    r.wait(
        lambda: all(
            r.stop_of(e) is not None and r.stop_of(e).qty == r.size(e)
            for e in r.book
            if e.kind == "tp1_near" and r.size(e) > 0
        ),
        40,
        "every stop moved despite the storm",
    )
    r.stop()
    report = r.oracle()
    assert report["ip_banned_403"] == 0 and report["duplicate_live_orders"] == 0
    assert report["longest_unprotected_s"] <= CRITICAL_S + 1


def test_s14_clock_skew_is_survived_and_work_resumes(rig):
    r = rig(seed=117).start()
    entry = r.entry("tp1_near")
    r.sim.add_fault(kind="clock_skew", ms=-7000)  # our timestamps look 7 s in the future
    r.through(entry, "T", 1)
    holds_throughout(lambda: r.stop_of(entry) is not None, 3, "the stop while our requests are refused")
    r.sim.clear_faults()
    r.wait(lambda: (s := r.stop_of(entry)) is not None and s.qty == r.size(entry), 30, "breakeven after the skew")
    r.stop()
    assert_invariants(r.oracle())


def test_s17_a_hanging_endpoint_does_not_stall_the_other_account(rig, caplog):
    caplog.set_level(logging.WARNING)
    r = rig(seed=118).start()
    r.sim.add_fault(kind="hang", account="mirror", seconds=30)
    entry = r.entry("tp1_near")
    r.through(entry, "T", 1)
    r.wait(
        lambda: (s := r.stop_of(entry)) is not None and s.qty == r.size(entry), 20, "main breakeven while mirror hangs"
    )
    r.sim.clear_faults()
    r.stop()
    assert not [rec for rec in caplog.records if "Connection pool is full" in rec.getMessage()]
    assert_invariants(r.oracle(), unprotected_limit=60)


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "http_5xx", "status": 502},
        {"kind": "malformed_json"},
        {"kind": "corrupt_rows", "field": "qty", "value": ""},
        {"kind": "corrupt_rows", "field": "side", "value": None},
        {"kind": "corrupt_rows", "field": "orderStatus", "value": "Frozen"},
        {"kind": "corrupt_rows", "field": "cumRealisedPnl", "value": 0.30000000000000004},
    ],
    ids=["html-502", "truncated-json", "empty-number", "missing-field", "unknown-enum", "17-digit-float"],
)
def test_s18_malformed_exchange_data_changes_nothing_while_it_lasts(rig, fault):
    r = rig(seed=119, BYBIT_STREAMS="false").start()  # REST data is the only data here (pushes: test_streams.py)
    entry = r.entry("monitoring")
    writes_before = sum(r.sim.stats.requests(endpoint=e) for e in (Api.PLACE_ORDER, Api.AMEND_ORDER, Api.CANCEL_ORDER))
    r.sim.add_fault(account="main", **dict(fault.items()))
    cancel_by_hand(r, entry, r.link(entry, "S", 0))  # a reason to act, if the data were believed

    def main_writes() -> int:
        requests = r.sim.stats.snapshot()["requests"].get("main", {})
        return sum(
            n for endpoint, n in requests.items() if endpoint in (Api.PLACE_ORDER, Api.AMEND_ORDER, Api.CANCEL_ORDER)
        )

    believed = fault.get("field") == "cumRealisedPnl"  # a 17-digit float is a valid number: that one is believed
    # Two critical intervals: a monitor that believed the data would have written within one.
    holds_throughout(lambda: believed or main_writes() <= writes_before, 2 * CRITICAL_S, "no write on malformed data")
    r.sim.clear_faults()
    r.wait(lambda: r.protected(entry), 20, "protection once the data is sound")
    r.stop()
    report = r.oracle()
    assert report["duplicate_live_orders"] == 0 and report["oversized_active_reduce_only"] == 0


def test_s19_maintenance_at_start_is_waited_out(rig):
    r = rig(seed=120, positions=12)
    r.sim.add_fault(kind="retcode", code=10016)
    import threading

    release = threading.Timer(4.0, r.sim.clear_faults)
    release.start()
    r.start(timeout=40)
    entry = r.entry("unguarded")
    r.wait(lambda: r.protected(entry), 15, "protection after maintenance")
    r.stop()
    report = r.oracle()
    assert report["duplicate_live_orders"] == 0 and report["orphans_at_end"] == 0


def test_s20_a_key_losing_trade_permission_mid_run_does_not_storm(rig):
    r = rig(seed=121).start()
    r.sim.account("main").read_only = True
    entries = [e for e in r.book if e.account == "main" and e.kind == "monitoring"]
    for e in entries:
        cancel_by_hand(r, e, r.link(e, "S", 0))
    created = r.sim.stats.requests(endpoint=Api.PLACE_ORDER, account="main")
    holds_throughout(  # about one try per position per check: no storm
        lambda: r.sim.stats.requests(endpoint=Api.PLACE_ORDER, account="main") - created <= len(entries) * 6,
        4 * CRITICAL_S,
        "no storm of refused orders",
    )
    r.sim.account("main").read_only = False
    r.wait(lambda: all(r.protected(e) for e in entries), 15, "protection once the key may trade")
    r.stop()


def test_s21_the_mirror_failing_leaves_main_whole(rig):
    r = rig(seed=122).start()
    r.sim.add_fault(kind="retcode", code=10001, message="position idx not match position mode", account="mirror")
    entry = r.entry("tp1_near")
    r.through(entry, "T", 1)
    r.wait(lambda: (s := r.stop_of(entry)) is not None and s.qty == r.size(entry), 20, "main breakeven")
    r.sim.clear_faults()
    r.stop()
    report = r.oracle()
    assert report["duplicate_live_orders"] == 0 and report["oversized_active_reduce_only"] == 0


def test_s22_a_flip_and_a_liquidation(rig):
    r = rig(seed=123).start()
    flipped, liquidated = r.entry("monitoring"), r.entry("fast")
    old = OrderLink.parse(r.stop_of(flipped).link_id).position_id
    r.sim.place(
        "main",
        symbol=flipped.symbol,
        side="Sell" if flipped.side == "Buy" else "Buy",
        orderType="Market",
        qty=str(r.size(flipped) * 2),
    )
    r.sim.exchange.liquidate(r.sim.account("main"), liquidated.symbol)
    r.wait(
        lambda: (
            not [o for o in r.ours(flipped) if OrderLink.parse(o.link_id).position_id == old] and not r.ours(liquidated)
        ),
        25,
        "old orders cancelled",
    )
    new_side = r.sim.account("main").positions[flipped.symbol]
    r.wait(
        lambda: any(
            o.is_conditional and o.side == ("Buy" if new_side.side == "Sell" else "Sell")
            for o in r.sim.account("main").open_orders(flipped.symbol)
        ),
        25,
        "the new side adopted and protected",
    )
    r.stop()
    assert_invariants(r.oracle())  # the flipped side is adopted at once (R11), not at the next discovery


def test_s23_decisions_use_data_no_older_than_the_tier_allows():
    import pykka

    from tests.actors.position.test_monitor import INTERVALS
    from tests.actors.position.test_monitor import Rig as MonitorRig

    rig = MonitorRig()  # its stub gateway records every view request in the ledger
    from actors.position.monitor import Monitor
    from actors.position.rules import RulesConfig

    monitor = Monitor.start(
        MonitorId("main", "ETHUSDT"),
        gateway=rig.gateway,
        persistence=rig.persistence,
        scheduler=rig.scheduler,
        supervisor=rig.supervisor,
        clock=rig.clock,
        intervals=INTERVALS,
        config=RulesConfig(),
    )
    rig.monitors["main"] = monitor
    rig.check()
    asked = [m.max_age for kind, m in rig.ledger if kind == "view" and not m.include_closed]
    assert asked and all(age <= INTERVALS["critical"] for age in asked)
    pykka.ActorRegistry.stop_all()


def test_s29_r17_a_take_profit_without_room_is_refused_once_then_waits_for_the_room(rig):
    """The trader opens a position by hand with his own reduce-only take-profit for all of it: the
    daemon adopts it, places its stop, and its ladder is refused (110017) once, told once (TP
    BLOCKED), never resent while nothing changes; when the trader cancels his, the ladder goes in."""
    r = rig(seed=124).start()
    symbol = next(s for s in sorted(r.sim.exchange.specs) if s not in {e.symbol for e in r.book})
    price = r.sim.exchange.last_price(symbol)
    spec = r.sim.exchange.specs[symbol].instrument()
    qty = spec.round_qty(Decimal(2000) / price)
    r.sim.place("main", symbol=symbol, side="Buy", orderType="Market", qty=str(qty))
    theirs = r.sim.place(
        "main", symbol=symbol, side="Sell", orderType="Limit", qty=str(qty), price=str(price * 2), reduceOnly=True
    )
    ours = lambda: [o for o in r.sim.account("main").open_orders(symbol) if OrderLink.parse(o.link_id)]
    r.wait(lambda: any(o.is_conditional for o in ours()), 20, "the adopted position's stop")
    creates = lambda: sum(r.sim.stats.requests(endpoint=e, account="main") for e in (Api.PLACE_ORDER, Api.PLACE_BATCH))
    r.settle()
    before = creates()
    holds_throughout(lambda: creates() == before, 4 * CRITICAL_S, "no refused take-profit sent again")
    assert not [o for o in ours() if not o.is_conditional]  # no take-profit of ours: no room for one
    r.sim.exchange.cancel_order(
        r.sim.account("main"), {"category": "linear", "symbol": symbol, "orderId": theirs["orderId"]}
    )
    ladder = spec.split_qty(qty, tuple(Decimal(p) for p in (85, 5, 5, 5)))  # the default ladder
    placed = lambda: sorted(o.leaves for o in ours() if not o.is_conditional)
    r.wait(lambda: placed() == sorted(ladder), 15, "the ladder placed once the room is back")
    r.stop()
    assert_invariants(r.oracle())


def test_s30_r18_the_traders_hand_is_followed_not_fought(rig, caplog):
    """The trader cancels one of the daemon's take-profits (it stays cancelled, told once), moves
    the stop's trigger, then cancels the stop: it is restored at once, at the trader's trigger."""
    caplog.set_level(logging.INFO)
    r = rig(seed=125).start()
    entry = r.entry("monitoring")
    account = r.sim.account("main")
    cancel_by_hand(r, entry, r.link(entry, "T", 2))
    holds_throughout(
        lambda: not [o for o in r.ours(entry) if OrderLink.parse(o.link_id).intent == Intent(Role.TAKE_PROFIT, 2)],
        3 * CRITICAL_S,
        "the take-profit the trader cancelled stays cancelled",
    )
    assert sum("TP REMOVED main:" in rec.getMessage() for rec in caplog.records) == 1
    stop = r.stop_of(entry)
    assert stop is not None
    moved = stop.trigger_price * (Decimal("0.99") if entry.side == "Buy" else Decimal("1.01"))
    moved = r.sim.exchange.specs[entry.symbol].instrument().snap_price(moved, up=entry.side != "Buy")
    r.sim.exchange.amend_order(
        account, {"category": "linear", "symbol": entry.symbol, "orderLinkId": stop.link_id, "triggerPrice": str(moved)}
    )
    r.wait(lambda: any("PLAN EDITED main:" in rec.getMessage() for rec in caplog.records), 15, "the edit taken")
    cancel_by_hand(r, entry, stop.link_id)
    r.wait(lambda: (s := r.stop_of(entry)) is not None and s.link_id != stop.link_id, 10, "the stop restored")
    assert r.stop_of(entry).trigger_price == moved and r.protected(entry)
    r.stop()
    assert_invariants(r.oracle())


def close_and_reenter(r: Rig, entry, gap: float) -> tuple[str, Decimal]:
    """The trader's close button, `gap` seconds, then a new position on the same side (larger).
    Returns the old position id and the new size."""
    old = OrderLink.parse(r.stop_of(entry).link_id).position_id
    spec = r.sim.exchange.specs[entry.symbol].instrument()
    qty = spec.round_qty(r.size(entry) * Decimal("1.5") + spec.min_qty)
    closing = "Sell" if entry.side == "Buy" else "Buy"
    r.sim.place(
        entry.account,
        symbol=entry.symbol,
        side=closing,
        orderType="Market",
        qty="0",
        reduceOnly=True,
        closeOnTrigger=True,
    )
    time.sleep(gap)
    r.sim.place(entry.account, symbol=entry.symbol, side=entry.side, orderType="Market", qty=str(qty))
    return old, qty


def own_stop_of_new_position(r: Rig, entry, old: str, qty: Decimal) -> bool:
    return any(
        (link := OrderLink.parse(o.link_id)) is not None
        and link.role is Role.STOP
        and link.position_id != old
        and o.qty >= qty
        for o in r.ours(entry)
    )


@pytest.mark.parametrize(("streams", "naked_limit"), [("true", 1.0), ("false", UNPROTECTED_LIMIT_S + STANDARD_S)])
def test_s31_r11_a_same_side_reentry_is_a_new_position_never_closed_by_the_daemon(rig, streams, naked_limit):
    """The trader closes a guarded position and opens the same side again, back to back, 0.2 s and
    1 s apart: each time the new position gets its own stop (the old stop stays until then), keeps
    its size, and the old plan's orders never touch it. Pushes: covered within 1 s (the target is
    0.5 s; benchmarks/reentry.py measures it). REST only: within one standard interval."""
    r = rig(seed=131, BYBIT_STREAMS=streams).start()
    entries = [r.entry("monitoring"), r.entry("fast"), r.entry("monitoring", index=1)]
    gaps = (0.0, 0.2, 1.0) if streams == "true" else (0.0, 1.0)  # REST only: each one waits for the polls
    for entry, gap in zip(entries, gaps, strict=False):
        old, qty = close_and_reenter(r, entry, gap)
        r.wait(lambda: own_stop_of_new_position(r, entry, old, qty), 30, f"{entry.symbol}'s new position protected")
        r.wait(
            lambda: not [o for o in r.ours(entry) if OrderLink.parse(o.link_id).position_id == old],
            20,
            "the old position's orders gone",
        )
        assert r.size(entry) == qty, "the daemon closed or reduced the trader's new position"
    time.sleep(2 * CRITICAL_S)
    assert all(r.size(e) > 0 and r.protected(e) for e in entries[: len(gaps)])
    r.stop()
    assert_invariants(r.oracle(), unprotected_limit=naked_limit)


def test_s32_r19_a_delisting_is_told_once_and_the_settled_position_closes_as_delivered(rig, caplog):
    """A guarded contract goes Delivering (seen at the next instrument read), then Closed and
    settled by the exchange: DELISTING once, the stop kept until the settlement, no new entry,
    the position closed with reason delivery and nothing of the daemon's left."""
    caplog.set_level(logging.INFO)
    r = rig(seed=132, INSTRUMENTS_REFRESH_SECONDS="1").start()
    entry = r.entry("monitoring")
    r.sim.exchange.set_instrument_status(entry.symbol, "Delivering", delivery_ms=1_900_000_000_000)
    r.wait(lambda: any("DELISTING main:" in rec.getMessage() for rec in caplog.records), 10, "the delisting told")
    holds_throughout(lambda: r.protected(entry), 2 * CRITICAL_S, "the stop stays while the contract is delivering")
    r.sim.exchange.set_instrument_status(entry.symbol, "Closed")
    r.wait(
        lambda: any(f"CLOSED main:{entry.symbol}:0: delivery" in rec.getMessage() for rec in caplog.records),
        15,
        "the settled position closed as delivered",
    )
    assert sum("DELISTING main:" in rec.getMessage() for rec in caplog.records) == 1
    assert not r.ours(entry)
    r.stop()
    assert_invariants(r.oracle())


def test_s33_hedge_legs_are_two_positions_each_guarded_on_its_own(rig):
    """The trader switches a free symbol to hedge mode and opens both legs by hand: each leg is
    adopted and given its own stop with its own positionIdx; the long leg's TP1 moves only the
    long leg's stop to breakeven, and the short leg keeps its own."""
    r = rig(seed=133).start()
    account = r.sim.account("main")
    symbol = next(s for s in sorted(r.sim.exchange.specs) if s not in {e.symbol for e in r.book})
    spec = r.sim.exchange.specs[symbol].instrument()
    qty = spec.round_qty(Decimal(2000) / r.sim.exchange.last_price(symbol))
    r.sim.exchange.switch_mode(account, {"category": "linear", "symbol": symbol, "mode": 3})
    r.sim.place("main", symbol=symbol, side="Buy", orderType="Market", qty=str(qty), positionIdx=1)
    r.sim.place("main", symbol=symbol, side="Sell", orderType="Market", qty=str(qty), positionIdx=2)

    def stop_of(idx: int):
        stops = [
            o
            for o in account.open_orders(symbol, idx)
            if (link := OrderLink.parse(o.link_id)) is not None and link.role is Role.STOP
        ]
        return stops[0] if len(stops) == 1 else None

    r.wait(lambda: stop_of(1) is not None and stop_of(2) is not None, 15, "both legs protected")
    assert (stop_of(1).side, stop_of(2).side) == ("Sell", "Buy")
    assert all(o.position_idx in (1, 2) for o in account.open_orders(symbol))
    short_stop = stop_of(2).trigger_price
    long_tp1 = next(
        o
        for o in account.open_orders(symbol, 1)
        if (link := OrderLink.parse(o.link_id)) is not None and link.role is Role.TAKE_PROFIT and link.level == 1
    )
    r.sim.set_price(symbol, long_tp1.price * Decimal("1.001"))
    long_avg = account.position(symbol, 1).avg_price
    r.wait(lambda: (s := stop_of(1)) is not None and s.trigger_price > long_avg, 15, "the long leg at breakeven")
    assert stop_of(2).trigger_price == short_stop and account.position(symbol, 2).size == qty
    r.stop()
    assert_invariants(r.oracle())


def test_s34_take_profit_one_filling_in_parts_as_the_price_moves(rig):
    """With partial fills on (a price level holds only part of an order), TP1 fills over several
    price moves: each part shrinks the stop to what is left (R4) and is no TP1 hit; the last part
    is, and the stop goes to breakeven once."""
    r = rig(seed=134, sim_options={"partial_fills": True}).start()
    entry = r.entry("monitoring")
    tp1 = r.sim.account("main").by_link[r.link(entry, "T", 1)]
    avg = r.sim.account("main").positions[entry.symbol].avg_price
    up = entry.side == "Buy"
    step = r.sim.exchange.specs[entry.symbol].tick_size
    moves = 0
    while tp1.status != "Filled" and moves < 20:
        r.sim.set_price(entry.symbol, tp1.price + (step if up else -step) * (moves + 1))
        moves += 1
        if tp1.status == "PartiallyFilled":
            r.wait(
                lambda: r.stop_of(entry) is not None and r.stop_of(entry).qty == r.size(entry), 15, "the stop shrunk"
            )
            stop = r.stop_of(entry)
            assert (stop.trigger_price < avg) if up else (stop.trigger_price > avg), "a part is no TP1 hit"
    assert tp1.status == "Filled" and moves > 1
    r.wait(
        lambda: (s := r.stop_of(entry)) is not None and ((s.trigger_price > avg) if up else (s.trigger_price < avg)),
        15,
        "the stop at breakeven",
    )
    r.stop()
    assert_invariants(r.oracle())


def test_s35_r13_previous_tp_moves_the_stop_up_the_ladder(rig):
    """STOP_AFTER_TP=previous_tp: the price runs through TP1 then TP2; the stop goes to breakeven,
    then to TP1's price, by amends of the one stop (never a second one, never naked)."""
    r = rig(seed=135, STOP_AFTER_TP="previous_tp").start()
    entry = r.entry("monitoring")
    account = r.sim.account("main")
    avg = account.positions[entry.symbol].avg_price
    tp1 = account.by_link[r.link(entry, "T", 1)].price
    up = entry.side == "Buy"
    stop_link = r.stop_of(entry).link_id
    r.through(entry, "T", 1)
    r.wait(lambda: (s := r.stop_of(entry)) is not None and (s.trigger_price > avg) == up, 15, "breakeven")
    r.through(entry, "T", 2)
    r.wait(lambda: (s := r.stop_of(entry)) is not None and s.trigger_price == tp1, 15, "the stop at TP1's price")
    assert r.stop_of(entry).link_id == stop_link and r.protected(entry)
    r.stop()
    assert_invariants(r.oracle())


@pytest.mark.parametrize(("trigger_by", "survives"), [("MarkPrice", True), ("LastPrice", False)])
def test_s36_r15_a_stop_on_the_mark_price_survives_a_wick_that_a_last_price_stop_falls_for(rig, trigger_by, survives):
    """STOP_TRIGGER_BY names the price the daemon's stops trigger on, and it is on the exchange
    (triggerBy): a wick in the last price through the stop fires a LastPrice stop only."""
    r = rig(seed=136, STOP_TRIGGER_BY=trigger_by).start()
    entry = r.entry("fast")
    stop = r.stop_of(entry)
    assert stop.trigger_by == trigger_by  # on the exchange, not only in the daemon
    beyond = Decimal("0.99") if entry.side == "Buy" else Decimal("1.01")
    r.sim.exchange.wick(entry.symbol, stop.trigger_price * beyond)
    assert (r.size(entry) > 0) is survives
    if survives:
        holds_throughout(lambda: r.protected(entry), CRITICAL_S, "the mark-price stop in place")
    r.stop()
    assert_invariants(r.oracle())


def test_s37_r14_the_stop_trails_the_high_and_a_sigkill_mid_trail_resumes_from_it(rig):
    """TRAIL_ACTIVATE=tp1, 0.5 %: after TP1 the one stop follows the high by amends (never a second
    stop, never loosened when the price falls back). The daemon is SIGKILLed mid-trail and
    restarted: trailing resumes (no second TRAIL ACTIVE) and follows the next high."""
    r = rig(seed=137, TRAIL_ACTIVATE="tp1", TRAIL_DISTANCE_PERCENT="0.5", TRAIL_MIN_INTERVAL_SECONDS="0.2")
    daemon = r.process().start()
    entry = r.entry("monitoring")
    account = r.sim.account("main")
    sign = Decimal(1) if entry.side == "Buy" else Decimal(-1)
    tp1 = account.by_link[r.link(entry, "T", 1)].price
    tick = r.sim.exchange.specs[entry.symbol].tick_size
    stop_link = r.stop_of(entry).link_id
    r.through(entry, "T", 1)
    daemon.wait_for(lambda line: f"TRAIL ACTIVE main:{entry.symbol}:" in line, 20, "trailing started")

    def trails(best: Decimal) -> bool:
        """0.5 % behind the best price, give or take the step (a quarter of the distance): a move
        smaller than the step is not worth an amend."""
        stop = r.stop_of(entry)
        ideal = best * (1 - sign * Decimal("0.005"))
        return stop is not None and abs(stop.trigger_price - ideal) <= best * Decimal("0.00125") + tick

    high = tp1 * (1 + sign * Decimal("0.004"))  # short of TP2 (1 % further)
    r.sim.set_price(entry.symbol, high)
    r.wait(lambda: trails(high), 15, "the stop 0.5 % behind the high")
    trailed = r.stop_of(entry).trigger_price
    r.sim.set_price(entry.symbol, tp1)  # falls back: the stop stays
    holds_throughout(lambda: r.stop_of(entry).trigger_price == trailed, 1.0, "the stop not loosened")
    daemon.process.send_signal(signal.SIGKILL)
    daemon.process.wait(timeout=30)
    restarted = r.process().start()
    higher = tp1 * (1 + sign * Decimal("0.007"))
    r.sim.set_price(entry.symbol, higher)
    r.wait(lambda: trails(higher), 20, "trailing resumed after the restart")
    assert r.stop_of(entry).link_id == stop_link  # the same order, amended all along
    assert not any("TRAIL ACTIVE" in line for line in restarted.messages())
    assert restarted.stop() == 0
    assert_invariants(r.oracle(), unprotected_limit=30)  # the daemon was dead for a while: time is not the point
