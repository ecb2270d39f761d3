"""End to end: the daemon as a subprocess, pybit over real HTTP, the simulator as the exchange."""

from __future__ import annotations

import signal
from decimal import Decimal

import pytest

from messages.endpoints import Api
from messages.models import OrderLink, Role
from tests.e2e.harness import holds_throughout, wait_until
from tests.e2e.harness import world as e2e_world

pytestmark = pytest.mark.slow


@pytest.fixture
def world(tmp_path):
    with e2e_world(tmp_path, seed=11, positions=16) as made:
        yield made


def entry_of(book, kind, account="main", index=0):
    return [e for e in book if e.kind == kind and e.account == account][index]


def ours(sim, entry):
    return [
        o
        for o in sim.account(entry.account).open_orders(entry.symbol)
        if (link := OrderLink.parse(o.link_id)) and link.position_id == entry.position_id
    ]


def stop_of(sim, entry):
    stops = [o for o in ours(sim, entry) if OrderLink.parse(o.link_id).role is Role.STOP]
    return stops[0] if len(stops) == 1 else None


def size_of(sim, entry):
    position = sim.account(entry.account).positions.get(entry.symbol)
    return position.size if position else Decimal(0)


def push_price(sim, entry, move: str):
    """Move the entry's symbol by `move` (a fraction) in the position's favour (negative: against)."""
    sign = 1 if entry.side == "Buy" else -1
    last = sim.exchange.last_price(entry.symbol)
    sim.set_price(entry.symbol, last * (1 + sign * Decimal(move)))


def test_every_rule_shows_its_effect_on_the_exchange(world):
    sim, book, daemon = world
    d = daemon().start()
    near, after, stop_loss, building, manual, cancel = (
        entry_of(book, "tp1_near"),
        entry_of(book, "after_tp1"),
        entry_of(book, "monitoring"),
        entry_of(book, "building"),
        entry_of(book, "fast"),
        entry_of(book, "monitoring", index=1),
    )

    # TP1 fills -> the stop goes to breakeven for the remaining size (once the monitor is in
    # charge: a fill before it adopts the position is a fact, not an event).
    d.wait_for(lambda m: m.startswith(f"MONITOR STARTED main:{near.symbol}"), 10, "the monitor in charge")
    tp1 = sim.account("main").by_link[OrderLink(near.position_id, Role.TAKE_PROFIT, 1, 0).build()]
    push_price(sim, near, str(abs(tp1.price / sim.exchange.last_price(near.symbol) - 1) + Decimal("0.001")))
    wait_until(
        lambda: (
            (s := stop_of(sim, near)) is not None
            and s.qty == size_of(sim, near)
            and (s.trigger_price - sim.account("main").positions[near.symbol].avg_price)
            * (1 if near.side == "Buy" else -1)
            > 0
        ),
        20,
        "the stop at breakeven after TP1",
    )
    # A later TP fills -> the stop shrinks to what is left.
    tp2 = sim.account("main").by_link[OrderLink(after.position_id, Role.TAKE_PROFIT, 2, 0).build()]
    push_price(sim, after, str(abs(tp2.price / sim.exchange.last_price(after.symbol) - 1) + Decimal("0.001")))
    wait_until(
        lambda: (s := stop_of(sim, after)) is not None and s.qty == size_of(sim, after) and tp2.status == "Filled",
        20,
        "the stop shrunk after TP2",
    )
    # An entry fills -> the take-profits grow with the position.
    sim.fill("main", OrderLink(building.position_id, Role.ENTRY, 2, 0).build())
    instrument = sim.exchange.specs[building.symbol].instrument()
    wait_until(
        lambda: any(
            o.qty == instrument.split_qty(size_of(sim, building), (Decimal(85), Decimal(5), Decimal(5), Decimal(5)))[0]
            for o in ours(sim, building)
            if OrderLink.parse(o.link_id).role is Role.TAKE_PROFIT and OrderLink.parse(o.link_id).level == 1
        ),
        20,
        "TP1 resized after an entry fill",
    )
    # A stop cancelled by hand is restored.
    cancelled = stop_of(sim, cancel)
    sim.exchange.cancel_order(
        sim.account("main"), {"category": "linear", "symbol": cancel.symbol, "orderId": cancelled.order_id}
    )
    wait_until(
        lambda: (s := stop_of(sim, cancel)) is not None and s.order_id != cancelled.order_id, 20, "the stop restored"
    )
    # A stop hit -> closed, leftovers cancelled.
    stop = stop_of(sim, stop_loss)
    sim.set_price(
        stop_loss.symbol, stop.trigger_price * (Decimal("0.99") if stop_loss.side == "Buy" else Decimal("1.01"))
    )
    wait_until(lambda: size_of(sim, stop_loss) == 0 and not ours(sim, stop_loss), 20, "closure after the stop hit")
    # A manual close -> retired, its orders cancelled.
    sim.place(
        "main",
        symbol=manual.symbol,
        side="Sell" if manual.side == "Buy" else "Buy",
        orderType="Market",
        qty=str(size_of(sim, manual)),
        reduceOnly=True,
        closeOnTrigger=True,
    )
    wait_until(lambda: not ours(sim, manual), 20, "the manual close cleaned up")
    messages = d.messages()
    for prefix in ("TP1 FILLED", "BREAKEVEN", "TP2 FILLED", "STOP RESTORED", "STOP HIT", "CLOSED", "Processed"):
        assert any(m.startswith(prefix) for m in messages), prefix
    assert d.stop() == 0
    summary = d.summary()
    stats = sim.stats.snapshot()["requests"]
    for account in ("main", "mirror"):
        gateway_calls = {
            k: v for k, v in summary["api_calls"]["by_account"][account].items() if not k.startswith("/v5/market")
        }
        assert gateway_calls == stats[account]
    assert summary["rate_limit_answers"] == {"10006": 0, "403": 0}
    assert summary["tp1_to_breakeven_ms"]["count"] >= 1
    assert summary["events"]["monitor_retired"] >= 2
    print(f"TP1 -> breakeven: {summary['tp1_to_breakeven_ms']}, API calls {summary['api_calls']['per_minute']}/min")


def test_restart_in_the_middle_resumes_every_monitor_once_and_places_nothing_twice(world):
    sim, book, daemon = world
    first = daemon().start()
    guarded = sum(1 for e in book if size_of(sim, e) > 0)
    # Every monitor recorded once (on pushes the rest of this test takes a second or so).
    wait_until(lambda: sum(m.startswith("MONITOR STARTED") for m in first.messages()) == guarded, 20, "every monitor")
    near = entry_of(book, "tp1_near")
    tp1 = sim.account("main").by_link[OrderLink(near.position_id, Role.TAKE_PROFIT, 1, 0).build()]
    push_price(sim, near, str(abs(tp1.price / sim.exchange.last_price(near.symbol) - 1) + Decimal("0.001")))
    for account in ("main", "mirror"):  # the mirror holds the same symbol: its TP1 fills too
        first.wait_for(lambda m: m.startswith(f"BREAKEVEN {account}:{near.symbol}"), 20, "breakeven before the restart")
    assert first.stop() == 0
    creates_before = sim.stats.requests(endpoint=Api.PLACE_ORDER)
    second = daemon().start()
    resumed = second.wait_for(lambda m: m.startswith("Supervisor:"), 10, "the reconciliation line")
    open_positions = sum(1 for e in book if size_of(sim, e) > 0)
    assert resumed.startswith(f"Supervisor: {open_positions} monitors resumed, 0 positions adopted")
    second.wait_for(lambda m: m.startswith("Processed"), 10, "a wave")
    holds_throughout(  # three critical intervals of the resumed monitors
        lambda: (
            not [m for m in second.messages() if m.startswith(("BREAKEVEN", "MONITOR STARTED", "STOP RESTORED"))]
            and sim.stats.requests(endpoint=Api.PLACE_ORDER) == creates_before
        ),
        6,
        "nothing done twice after the restart",
    )
    assert second.stop() == 0
    for account in ("main", "mirror"):
        intents = [
            (OrderLink.parse(o.link_id).position_id, OrderLink.parse(o.link_id).intent)
            for sym in sim.account(account).open_by_symbol
            for o in sim.account(account).open_orders(sym)
            if OrderLink.parse(o.link_id)
        ]
        assert len(intents) == len(set(intents))  # one live order per intent


def test_new_position_is_adopted_and_a_closed_one_retired(world):
    sim, book, daemon = world
    d = daemon().start()
    fresh = list(sim.exchange.specs)[-1]  # a symbol the demo book does not use
    sim.place("mirror", symbol=fresh, side="Buy", orderType="Market", qty=str(sim.exchange.specs[fresh].qty_step * 50))
    d.wait_for(lambda m: m.startswith(f"MONITOR STARTED mirror:{fresh}"), 20, "adoption within 15 s")
    wait_until(
        lambda: any(o.is_conditional for o in sim.account("mirror").open_orders(fresh)),
        10,
        "a stop on the adopted position",
    )
    closed = entry_of(book, "monitoring", account="mirror")
    sim.place(
        "mirror",
        symbol=closed.symbol,
        side="Sell" if closed.side == "Buy" else "Buy",
        orderType="Market",
        qty=str(size_of(sim, closed)),
    )
    d.wait_for(lambda m: m.startswith(f"MONITOR RETIRED mirror:{closed.symbol}"), 20, "retirement")
    assert not ours(sim, closed)
    assert d.stop() == 0


def test_mirror_down_leaves_main_guarded_and_the_mirror_resumes(world):
    sim, book, daemon = world
    d = daemon().start()
    sim.add_fault(kind="http_5xx", account="mirror", status=503)
    main_near, mirror_near = entry_of(book, "tp1_near"), entry_of(book, "tp1_near", account="mirror")
    assert main_near.symbol == mirror_near.symbol
    tp1 = sim.account("main").by_link[OrderLink(main_near.position_id, Role.TAKE_PROFIT, 1, 0).build()]
    push_price(sim, main_near, str(abs(tp1.price / sim.exchange.last_price(main_near.symbol) - 1) + Decimal("0.001")))
    d.wait_for(lambda m: m.startswith(f"BREAKEVEN main:{main_near.symbol}"), 20, "main breakeven during the outage")
    assert not [m for m in d.messages() if m.startswith("BREAKEVEN mirror:")]
    sim.clear_faults()
    d.wait_for(
        lambda m: m.startswith(f"BREAKEVEN mirror:{mirror_near.symbol}"), 30, "mirror breakeven after it is back"
    )
    # Under load the breakeven can come by the stream before the retry of a failed read: wait for it.
    d.wait_for(lambda m: "reads work again" in m, 20, "the mirror's reads working again")
    assert d.stop() == 0


def test_sigint_stops_cleanly_too(world):
    _sim, _book, daemon = world
    d = daemon().start()
    assert d.stop(signal.SIGINT) == 0
    assert any(m == "Stopped cleanly" for m in d.messages())


def test_a_read_only_key_is_refused_at_start(world):
    import subprocess
    import sys

    from tests.e2e.harness import ROOT

    sim, _book, daemon = world
    sim.account("main").read_only = True
    result = subprocess.run(
        [sys.executable, "main.py", "--duration", "5"],
        cwd=ROOT,
        env=daemon().env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "refusing to start: the main account's API key cannot trade" in result.stderr
    assert not sim.stats.requests(endpoint=Api.PLACE_ORDER)


def test_dry_run_sends_no_order(world):
    sim, _book, daemon = world
    d = daemon("--dry-run").start()
    d.wait_for(lambda m: m.startswith("DRY-RUN would"), 15, "a DRY-RUN line")
    assert d.stop() == 0
    assert sim.stats.requests(endpoint=Api.PLACE_ORDER) == 0
    assert sim.stats.requests(endpoint=Api.AMEND_ORDER) == 0
