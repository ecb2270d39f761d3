"""The trader's commands end to end: `python main.py trade ...` as a process, talking to the
daemon (a process) over its socket, the daemon talking to the simulator; the oracle watching the
invariants throughout."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from decimal import Decimal

import pytest

from messages.models import OrderLink
from runtime.control import socket_path
from settings import PARSERS
from tests.e2e.harness import ROOT
from tests.reliability.harness import Rig, assert_invariants

pytestmark = pytest.mark.slow


def trade(r: Rig, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in PARSERS}
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "trade", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, **r.env},
    )


def free_symbols(r: Rig) -> list[str]:
    """Symbols the demo book left without a position."""
    taken = {entry.symbol for entry in r.book}
    return [s for s in r.sim.exchange.specs if s not in taken]


def prices(r: Rig, symbol: str, *factors: str) -> str:
    last = r.sim.exchange.last_price(symbol)
    return ",".join(str(last * Decimal(f)) for f in factors)


def ours(r: Rig, symbol: str, account: str = "main", *, every: bool = False) -> dict[str, object]:
    orders = r.sim.account(account).orders.values() if every else r.sim.account(account).open_orders(symbol)
    return {o.link_id: o for o in orders if o.symbol == symbol and OrderLink.parse(o.link_id)}


def role_of(link_id: str) -> tuple[str, int]:
    link = OrderLink.parse(link_id)
    return link.role.value, link.level


def test_open_a_conservative_long_and_a_fast_short_fill_and_watch_breakeven_then_close(rig):
    r = rig(seed=140)
    daemon = r.process().start()
    assert stat.S_IMODE(os.stat(socket_path(r.env["STATE_PATH"])).st_mode) == 0o600
    long_symbol, short_symbol = free_symbols(r)[:2]
    step = r.sim.exchange.specs[long_symbol].instrument().min_qty
    done = trade(
        r,
        "open",
        long_symbol,
        "long",
        "--approach",
        "conservative",
        "--qty",
        str(step * 60),
        "--tps",
        prices(r, long_symbol, "1.01", "1.02", "1.03", "1.04"),
        "--stop",
        prices(r, long_symbol, "0.95"),
        "--limits",
        prices(r, long_symbol, "0.99", "0.98"),
        "--leverage",
        "5",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"main: opened {long_symbol} Buy {step * 20}")
    orders = ours(r, long_symbol)
    roles = sorted(role_of(link) for link in orders)
    assert roles == [("E", 2), ("E", 3), ("S", 0), ("T", 1), ("T", 2), ("T", 3), ("T", 4)]
    assert all(OrderLink.parse(link).position_id.startswith("t") for link in orders)
    stop = next(o for link, o in orders.items() if role_of(link) == ("S", 0))
    assert stop.qty == step * 60  # the full target from the start
    assert r.sim.account("main").leverage[long_symbol] == Decimal(5)

    entry2 = next(link for link in orders if role_of(link) == ("E", 2))
    r.sim.fill("main", entry2)
    tp1 = lambda: next(o for link, o in ours(r, long_symbol).items() if role_of(link) == ("T", 1))
    r.wait(lambda: tp1().qty > step * 20 * Decimal("0.85"), 15, "TP1 resized to the filled size")
    position = r.sim.account("main").positions[long_symbol]
    r.sim.set_price(long_symbol, tp1().price * Decimal("1.001"))
    breakeven = lambda: [
        o
        for link, o in ours(r, long_symbol).items()
        if role_of(link) == ("S", 0) and o.trigger_price >= position.avg_price
    ]
    r.wait(breakeven, 15, "the stop at breakeven after TP1")
    r.wait(
        lambda: not [link for link in ours(r, long_symbol) if role_of(link)[0] == "E"], 15, "the last limit cancelled"
    )

    done = trade(
        r,
        "open",
        short_symbol,
        "short",
        "--approach",
        "fast",
        "--qty",
        str(step * 20),
        "--tps",
        prices(r, short_symbol, "0.97"),
        "--stop",
        prices(r, short_symbol, "1.05"),
    )
    assert done.returncode == 0, done.stderr
    assert sorted(role_of(link) for link in ours(r, short_symbol)) == [("S", 0), ("T", 1)]

    done = trade(r, "close", short_symbol)
    assert done.returncode == 0 and f"main: {short_symbol} closed (manual); no order left" in done.stdout, done.stderr
    assert ours(r, short_symbol) == {} and r.sim.account("main").positions[short_symbol].size == 0
    listed = trade(r, "list", "--json")
    assert listed.returncode == 0 and long_symbol in listed.stdout and short_symbol not in listed.stdout
    assert daemon.stop() == 0
    assert_invariants(r.oracle())


def test_r13_r15_r16_a_trades_exits_are_carried_out_from_the_plan(rig):
    """`trade open` with --stop-after, --trigger-by mark and a time limit of 3 s: the stop triggers on
    the mark price on the exchange, `trade list` shows the exits, and once the time is up the rest is
    closed at market with reason time_limit, the stop kept until the position is gone."""
    r = rig(seed=142)
    daemon = r.process().start()
    symbol = free_symbols(r)[0]
    step = r.sim.exchange.specs[symbol].instrument().min_qty
    exits = ("--stop-after", "previous_tp", "--trigger-by", "mark", "--time-limit", "0.05")
    done = trade(
        r,
        "open",
        symbol,
        "long",
        "--approach",
        "fast",
        "--qty",
        str(step * 20),
        "--tps",
        prices(r, symbol, "1.03"),
        "--stop",
        prices(r, symbol, "0.95"),
        *exits,
    )
    assert done.returncode == 0, done.stderr
    assert "stop after TPs: previous_tp; stops trigger on MarkPrice; time limit 0.05 min" in done.stdout
    stop = next(o for link, o in ours(r, symbol).items() if role_of(link) == ("S", 0))
    assert stop.trigger_by == "MarkPrice"
    listed = trade(r, "list")
    assert "stop after TPs: previous_tp  trigger MarkPrice  time limit 0.05 min" in listed.stdout, listed.stdout
    daemon.wait_for(lambda line: f"CLOSED main:{symbol}:0: time_limit" in line, 20, "the time limit closing it")
    assert r.sim.account("main").positions[symbol].size == 0 and ours(r, symbol) == {}
    assert any("TIME LIMIT main:" in line for line in daemon.messages())
    assert daemon.stop() == 0
    assert_invariants(r.oracle())


def test_plan_gives_an_adopted_position_its_targets_without_an_unprotected_moment(rig):
    r = rig(seed=141, positions=12)
    daemon = r.process().start()
    entry = r.entry("unguarded")
    r.wait(lambda: r.protected(entry), 15, "the adopted position protected")
    position = r.sim.account("main").positions[entry.symbol]
    long = entry.side == "Buy"
    tps = ("1.02", "1.04") if long else ("0.98", "0.96")
    stop_factor = "0.97" if long else "1.03"
    instrument = r.sim.exchange.specs[entry.symbol].instrument()
    stop_before = r.stop_of(entry).order_id
    done = trade(
        r,
        "plan",
        entry.symbol,
        "--tps",
        ",".join(str(position.avg_price * Decimal(f)) for f in tps),
        "--stop",
        str(position.avg_price * Decimal(stop_factor)),
    )
    assert done.returncode == 0, done.stderr
    wanted_stop = instrument.snap_price(position.avg_price * Decimal(stop_factor), up=long)
    wanted_tps = [instrument.snap_price(position.avg_price * Decimal(f), up=long) for f in tps]
    r.wait(lambda: r.stop_of(entry) is not None and r.stop_of(entry).trigger_price == wanted_stop, 15, "the stop moved")
    r.wait(
        lambda: (
            sorted(o.price for link, o in ours(r, entry.symbol).items() if role_of(link)[0] == "T")
            == sorted(wanted_tps)
        ),
        15,
        "the take-profits moved",
    )
    assert r.stop_of(entry).order_id == stop_before  # amended in place: never a moment without it
    assert daemon.stop() == 0
    assert_invariants(r.oracle())


def test_bad_requests_exit_2_with_their_line_and_send_nothing_refusals_exit_1(rig):
    r = rig(seed=142)
    r.process()
    not_running = trade(r, "list")
    assert not_running.returncode == 1 and "the daemon is not running" in not_running.stderr
    daemon = r.daemon.start()
    free = free_symbols(r)[0]
    held = r.entry("monitoring").symbol
    step = str(r.sim.exchange.specs[free].instrument().min_qty * 10)
    fast = ("--approach", "fast", "--qty", step)
    cases = [
        (("open", "FOOUSDT", "long", *fast, "--tps", "2", "--stop", "1"), "Bybit lists no such linear contract"),
        (
            ("open", free, "long", *fast, "--tps", prices(r, free, "1.02"), "--stop", prices(r, free, "1.01")),
            "is not below the market price",
        ),
        (
            (
                "open",
                free,
                "long",
                "--approach",
                "fast",
                "--qty",
                "0.0000001",
                "--tps",
                prices(r, free, "1.02"),
                "--stop",
                prices(r, free, "0.9"),
                "--account",
                "all",  # the leader's problem is the request's: one line, none for its follower
            ),
            "minOrderQty",
        ),
        (
            ("open", free, "long", *fast, "--tps", prices(r, free, "1.02"), "--stop", "0"),
            "--stop 0 must be greater than 0",
        ),
        (
            ("open", held, "long", *fast, "--tps", prices(r, held, "1.02"), "--stop", prices(r, held, "0.9")),
            "already has a position",
        ),
        (("plan", free, "--tps", prices(r, free, "1.02"), "--stop", prices(r, free, "0.9")), "has no open position"),
        (("open", free, "sideways", *fast, "--tps", "2", "--stop", "1"), "side 'sideways' must be long or short"),
    ]
    for args, line in cases:
        done = trade(r, *args)
        assert done.returncode == 2 and line in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    dry = trade(
        r,
        "open",
        free,
        "long",
        *fast,
        "--leverage",
        "3",
        "--tps",
        prices(r, free, "1.02"),
        "--stop",
        prices(r, free, "0.9"),
        "--dry-run",
        "--account",
        "both",
    )
    assert dry.returncode == 0 and dry.stdout.splitlines()[-1] == "dry run: nothing was sent", dry.stderr
    assert ours(r, free, every=True) == {} and free not in r.sim.account("main").leverage

    refused = trade(
        r,
        "open",
        free,
        "long",
        "--approach",
        "fast",
        "--qty",
        str(r.sim.exchange.specs[free].max_qty),
        "--tps",
        prices(r, free, "1.02"),
        "--stop",
        prices(r, free, "0.9"),
        "--account",
        "both",
    )
    assert refused.returncode == 1, refused.stderr
    assert refused.stderr.splitlines() == [
        "trade open: main: Bybit refused the entry: 110007 ab not enough for new order; nothing was opened",
        "trade open: mirror: not opened, because main was not",
    ]
    assert (ours(r, free) == {} and free not in r.sim.account("main").positions) or r.sim.account("main").positions[
        free
    ].size == 0
    assert daemon.stop() == 0
    assert_invariants(r.oracle())


def test_a_kill_between_the_plans_record_and_its_first_order_resumes_it_once(rig):
    r = rig(seed=143)
    first = r.process(GUARDIAN_KILL_AT="plan_recorded:1").start()
    symbol = free_symbols(r)[0]
    step = str(r.sim.exchange.specs[symbol].instrument().min_qty * 10)
    cut = trade(
        r,
        "open",
        symbol,
        "short",
        "--approach",
        "fast",
        "--qty",
        step,
        "--tps",
        prices(r, symbol, "0.97"),
        "--stop",
        prices(r, symbol, "1.05"),
    )
    assert cut.returncode == 1
    first.process.wait(timeout=30)
    assert first.process.returncode == -signal.SIGKILL
    assert ours(r, symbol, every=True) == {}  # recorded, nothing sent
    second = r.process().start()
    r.wait(lambda: ("S", 0) in [role_of(link) for link in ours(r, symbol)], 20, "the resumed trade guarded")
    entries = [link for link in ours(r, symbol, every=True) if role_of(link) == ("E", 1)]
    assert len(entries) == 1 and r.sim.account("main").positions[symbol].size == Decimal(step)
    assert second.stop() == 0
    assert_invariants(r.oracle(), unprotected_limit=30)


def test_a_leader_and_its_followers_trade_from_one_accounts_file(rig):
    """An ACCOUNTS_FILE with a leader, a follower at half its size and one so small its leg falls
    below minOrderQty: `--account all` opens on the leader and the half follower, refuses the tiny
    one alone with one line; `plan` and `close` fan out to the accounts named; the default
    account is the leader."""
    accounts = {
        "lead": "",
        "half": 'role = "follower"\nleader = "lead"\nsizing = "ratio"\nratio = "0.5"',
        "tiny": 'role = "follower"\nleader = "lead"\nsizing = "ratio"\nratio = "0.001"',
    }
    r = rig(seed=146, positions=2, accounts=accounts)
    daemon = r.process().start()
    symbol = free_symbols(r)[0]
    step = r.sim.exchange.specs[symbol].instrument().min_qty
    fast = ("--approach", "fast", "--qty", str(step * 40), "--tps", prices(r, symbol, "1.03"))
    done = trade(r, "open", symbol, "long", *fast, "--stop", prices(r, symbol, "0.95"), "--account", "all")
    assert done.returncode == 1, done.stderr  # one account refused: the others' trades stand
    lines = done.stderr.splitlines()
    assert lines[0].startswith(f"trade open: lead: opened {symbol} Buy {step * 40}"), lines
    assert lines[1].startswith(f"trade open: half: opened {symbol} Buy {step * 20}"), lines
    assert lines[2].startswith("trade open: tiny: each of 1 legs would be "), lines
    assert lines[2].endswith(f", below {symbol}'s minOrderQty {step}; not opened"), lines
    assert len(lines) == 3
    sizes = {a: r.sim.account(a).positions.get(symbol) for a in accounts}
    assert sizes["lead"].size == step * 40 and sizes["half"].size == step * 20 and sizes["tiny"] is None
    for account in ("lead", "half"):
        assert sorted(role_of(link) for link in ours(r, symbol, account)) == [("S", 0), ("T", 1)]

    new_stop = prices(r, symbol, "0.96")
    done = trade(r, "plan", symbol, "--tps", prices(r, symbol, "1.04"), "--stop", new_stop, "--account", "half")
    assert done.returncode == 0 and done.stdout.startswith(f"half: {symbol} now targets"), done.stderr
    done = trade(r, "plan", symbol, "--tps", prices(r, symbol, "1.04"), "--stop", new_stop)  # the leader
    assert done.returncode == 0 and done.stdout.startswith(f"lead: {symbol} now targets"), done.stderr
    for account in ("lead", "half"):
        r.wait(
            lambda a=account: any(
                role_of(link) == ("S", 0) and o.trigger_price == Decimal(new_stop).quantize(o.trigger_price)
                for link, o in ours(r, symbol, a).items()
            ),
            15,
            f"{account}'s stop moved",
        )

    done = trade(r, "close", symbol, "--account", "lead,half")
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == [
        f"half: {symbol} closed (manual); no order left",
        f"lead: {symbol} closed (manual); no order left",
    ]
    assert all(r.sim.account(a).positions[symbol].size == 0 and ours(r, symbol, a) == {} for a in ("lead", "half"))
    refused = trade(r, "close", symbol, "--account", "nobody")
    assert refused.returncode == 2 and "the nobody account is not configured" in refused.stderr
    assert daemon.stop() == 0
    assert_invariants(r.oracle())
