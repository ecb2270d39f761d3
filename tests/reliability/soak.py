"""The seeded soak (S24): `python -m tests.reliability.soak [--minutes 10] [--seed N] [--positions 16]`.

The daemon runs as a process against the simulator (prices stepping in real time, a little more
volatile than the demo) while a seeded random mix of faults, out-of-band trading and SIGKILLs at
random moments and at the named kill points happens every few seconds; the daemon runs on pushes,
so the faults include the streams' (drops, closes, lost, duplicated, reordered and corrupt pushes,
stalls, black holes, refused handshakes and auths). The oracle watches the
whole time. Prints the seed, what happened and the invariant figures; exits 1 if one is broken.
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path

from messages.endpoints import Api
from simulator import Simulator
from tests.e2e.harness import Daemon

FAULTS = [
    {"kind": "http_5xx", "status": 502},
    {"kind": "http_5xx", "status": 503},
    {"kind": "retcode", "code": 10016},
    {"kind": "retcode", "code": 10006, "message": "Too many visits!"},
    {"kind": "malformed_json"},
    {"kind": "hang", "seconds": 4},
    {"kind": "lost_response", "endpoint": Api.PLACE_ORDER},
    {"kind": "lost_response", "endpoint": Api.AMEND_ORDER},
    {"kind": "drop_connection"},
    {"kind": "latency", "ms": 800},
    {"kind": "stuck_cursor", "endpoint": Api.OPEN_ORDERS},
    {"kind": "corrupt_rows", "field": "qty", "value": ""},
    {"kind": "clock_skew", "ms": -7000},
    # The streams (the daemon runs on pushes).
    {"kind": "ws_drop"},
    {"kind": "ws_close", "code": 1011},
    {"kind": "ws_lose_push", "topic": "order"},
    {"kind": "ws_lose_push", "topic": "execution"},
    {"kind": "ws_lose_push", "topic": "position"},
    {"kind": "ws_duplicate_push"},
    {"kind": "ws_reorder_fill"},
    {"kind": "ws_late_triggered"},
    {"kind": "ws_stall"},
    {"kind": "ws_black_hole"},
    {"kind": "ws_refuse", "endpoint": "/v5/private", "account": None},
    {"kind": "ws_auth_fail"},
    {"kind": "ws_corrupt_push", "topic": "order", "field": "qty", "value": ""},
]
KILL_POINTS = ["after_send", "mid_flush", "between_closure_snapshots", None]  # None: a random moment


def soak(minutes: float, seed: int, positions: int) -> int:
    rng = random.Random(seed)
    sim = Simulator(seed=seed, symbols=positions + 16, volatility=0.002)
    sim.load_demo_book(positions)
    sim.start(step_interval=0.25, oracle_interval=0.1)
    state = Path(tempfile.mkdtemp(prefix="soak-")) / "state.db"
    counts: dict[str, int] = {}
    pause = threading.Event()

    def count(what: str) -> None:
        counts[what] = counts.get(what, 0) + 1

    def start(**env: str) -> Daemon:
        daemon = Daemon(sim, state, **env, FLUSH_INTERVAL_SECONDS="5", HTTP_TIMEOUT_SECONDS="2")
        daemon.start()
        return daemon

    daemon = start()
    end = time.monotonic() + minutes * 60
    try:
        while time.monotonic() < end:
            pause.wait(rng.uniform(2, 6))
            action = rng.choice(["fault", "fault", "trade", "trade", "kill", "none"])
            if action == "fault":
                fault = dict(rng.choice(FAULTS))
                fault.setdefault("account", rng.choice(["main", "mirror", None]))
                fault["count"] = rng.choice([1, 3, 10, None])
                sim.add_fault(**fault)
                count(f"fault {fault['kind']}")
                threading.Timer(rng.uniform(2, 10), sim.clear_faults).start()
            elif action == "trade":
                count(trade(sim, rng))
            elif action == "kill" and daemon.process.poll() is None:
                point = rng.choice(KILL_POINTS)
                if point is None:
                    daemon.process.send_signal(signal.SIGKILL)
                else:
                    daemon.stop()  # restart armed at a kill point; it dies there, or stops at the next kill
                daemon.process.wait(timeout=30)
                count(f"kill {point or 'random'}")
                sim.clear_faults()
                daemon = start(**({"GUARDIAN_KILL_AT": f"{point}:{rng.randint(1, 5)}"} if point else {}))
            if daemon.process.poll() is not None:  # died at its kill point: restart plainly
                sim.clear_faults()
                daemon = start()
                count("restart after a kill point")
        sim.clear_faults()
        pause.wait(15)  # quiet time: every monitor settles, leftovers are cleaned
        daemon.stop()
    finally:
        daemon.kill()
    report = sim.oracle.report()
    orphaned = sim.oracle.orphaned()
    sim.stop()
    print(f"soak seed {seed}: {minutes:.1f} min, {positions} positions per account")
    for what, n in sorted(counts.items()):
        print(f"  {n:4d} x {what}")
    for key, value in report.items():
        print(f"  {key}: {value}")
    broken = [
        k
        for k in (
            "duplicate_live_orders",
            "duplicate_accepted_link_ids",
            "oversized_active_reduce_only",
            "ip_banned_403",
            "orphans_at_end",
            "closes_of_another_position",
            "foreign_orders_touched",
        )
        if report[k]
    ]
    for account, symbol in orphaned:  # what the daemon said about each orphan
        print(f"  orphaned {account}:{symbol}; the daemon's last lines about it:")
        for line in [m for m in daemon.messages() if f"{account}:{symbol}" in m or f"{symbol}" in m][-12:]:
            print(f"    {line[:200]}")
    print("invariants: " + ("BROKEN: " + ", ".join(broken) if broken else "all held"))
    return 1 if broken else 0


def trade(sim: Simulator, rng: random.Random) -> str:
    """Something a person (or the market) does on the exchange."""
    account = rng.choice(["main", "mirror"])
    acct = sim.account(account)
    open_positions = [p for p in acct.all_positions() if p.size > 0]
    kind = rng.choice(["close", "reduce", "cancel_stop", "open", "jump", "reenter", "room", "hedge"])
    try:
        if kind == "hedge":
            return open_hedge_legs(sim, account, rng)
        if kind == "open" or not open_positions:
            symbol = rng.choice(
                [s for s in sim.exchange.specs if s not in acct.hedged and not any(r.size for r in acct.rows_of(s))]
            )
            sim.place(
                account,
                symbol=symbol,
                side=rng.choice(["Buy", "Sell"]),
                orderType="Market",
                qty=str(sim.exchange.specs[symbol].qty_step * rng.randint(20, 80)),
            )
            return "open a position by hand"
        position = rng.choice(open_positions)
        closing = "Sell" if position.side == "Buy" else "Buy"
        spec = sim.exchange.specs[position.symbol]
        leg = {"symbol": position.symbol, "positionIdx": position.position_idx}
        reducing = {**leg, "side": closing, "reduceOnly": True}
        if kind == "close":
            sim.place(account, **reducing, orderType="Market", qty=str(position.size))
        elif kind == "reduce":
            qty = spec.instrument().round_qty(position.size * Decimal(rng.randint(10, 60)) / 100)
            if qty > 0:
                sim.place(account, **reducing, orderType="Market", qty=str(qty))
        elif kind == "reenter":  # the close button, a gap, the same side again (R11)
            gap = rng.choice([0.0, 0.2, 1.0])
            side = position.side  # read before the close: a flat row has no side
            sim.place(account, **reducing, orderType="Market", qty="0", closeOnTrigger=True)
            time.sleep(gap)
            sim.place(account, **leg, side=side, orderType="Market", qty=str(spec.qty_step * rng.randint(20, 80)))
            return f"re-enter by hand after {gap} s"
        elif kind == "room":  # the trader's own take-profit for the whole position (R17: 110017 for ours)
            up = position.side == "Buy"
            price = sim.exchange.last_price(position.symbol) * (Decimal("1.05") if up else Decimal("0.95"))
            price = spec.instrument().snap_price(price, up=up)
            sim.place(account, **reducing, orderType="Limit", qty=str(position.size), price=str(price))
        elif kind == "cancel_stop":
            for order in acct.open_orders(position.symbol, position.position_idx):
                if order.is_conditional:
                    sim.exchange.cancel_order(
                        acct, {"category": "linear", "symbol": position.symbol, "orderId": order.order_id}
                    )
        else:
            last = sim.exchange.last_price(position.symbol)
            sim.set_price(position.symbol, last * (1 + Decimal(rng.uniform(-0.03, 0.03)).quantize(Decimal("0.0001"))))
    except Exception as exc:
        return f"{kind} refused ({type(exc).__name__})"
    return f"{kind} by hand"


def open_hedge_legs(sim: Simulator, account: str, rng: random.Random) -> str:
    """A free symbol switched to hedge mode, both legs opened by hand."""
    acct = sim.account(account)
    free = [s for s in sim.exchange.specs if not any(r.size for r in acct.rows_of(s)) and not acct.open_orders(s)]
    symbol = rng.choice(free)
    if symbol not in acct.hedged:
        sim.exchange.switch_mode(acct, {"category": "linear", "symbol": symbol, "mode": 3})
    qty = str(sim.exchange.specs[symbol].qty_step * rng.randint(20, 80))
    sim.place(account, symbol=symbol, side="Buy", orderType="Market", qty=qty, positionIdx=1)
    sim.place(account, symbol=symbol, side="Sell", orderType="Market", qty=qty, positionIdx=2)
    return "open hedge legs by hand"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100_000)
    parser.add_argument("--positions", type=int, default=16)
    args = parser.parse_args()
    sys.exit(soak(args.minutes, args.seed, args.positions))


if __name__ == "__main__":
    main()
