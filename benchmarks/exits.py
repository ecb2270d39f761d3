"""Exits under load (R14 trailing, R15 trigger price type), from the exchange's side.

    python -m benchmarks.exits [--positions 32] [--duration 60] [--latency-ms 150] [--seed 7]

Two runs of the daemon (`main.py`, pushes) on a simulator with 150 ms latency, each guarding a demo
book of `--positions` per account with `TRAIL_ACTIVATE=tp1` and `TRAIL_DISTANCE_PERCENT=0.5`:

1. Trend (STOP_TRIGGER_BY=LastPrice): every 0.5 s each guarded symbol moves 0.04 % in its
   position's favour (a seeded jitter on top), so every position trails at once and take-profits
   fill on the way. Printed: amends per minute per account (trailing's and the rest) against
   trailing's budget (TRAIL_WRITE_SHARE of Bybit's 10 writes/s), the lag of each trailing stop (one
   beyond its entry) behind the ideal level (0.5 % behind the best price so far) in ticks and in
   percent (p50 / p95, sampled every 0.25 s),
   and TP1 -> breakeven (from the TP1 fill to the stop at or beyond entry, polled every 5 ms) p50 /
   p95 while trailing keeps the same accounts busy.
2. Wick: the same book, settled, then a wick in the last price 1 % through every guarded stop;
   once with STOP_TRIGGER_BY=LastPrice and once with MarkPrice. Printed: positions stopped out.
Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import random
import threading
import time
from decimal import Decimal

from benchmarks.manual import _stop, guarding
from messages.endpoints import WRITES_PER_SECOND, Api
from messages.models import OrderLink, Role
from runtime.stats import percentile
from simulator import Simulator

TRAIL = {"TRAIL_ACTIVATE": "tp1", "TRAIL_DISTANCE_PERCENT": "0.5"}
DISTANCE = Decimal("0.005")
WARMUP_S = 10.0


def _book(positions: int, latency_ms: float, seed: int) -> tuple[Simulator, list]:
    sim = Simulator(seed=seed, symbols=positions + 8, latency_ms=latency_ms, jitter_ms=latency_ms / 10)
    book = sim.load_demo_book(positions)
    sim.start()
    guarded = [e for e in book if e.account == "main" and e.kind in ("monitoring", "fast", "after_tp1", "tp1_near")]
    return sim, guarded


def trend(positions: int, duration: float, latency_ms: float, seed: int) -> dict:
    sim, guarded = _book(positions, latency_ms, seed)
    rng = random.Random(seed)
    signs = {e.symbol: Decimal(1) if e.side == "Buy" else Decimal(-1) for e in guarded}
    best = {e.symbol: sim.exchange.last_price(e.symbol) for e in guarded}
    lag_ticks: list[float] = []
    lag_percent: list[float] = []
    tp1_filled: dict[str, float] = {}
    reactions: list[float] = []
    stop = threading.Event()

    def watch_breakeven() -> None:  # 5 ms polling: the TP1 fill, then the stop at or beyond entry
        while not stop.is_set():
            account = sim.account("main")
            for entry in guarded:
                symbol = entry.symbol
                tp1 = account.by_link.get(OrderLink(entry.position_id, Role.TAKE_PROFIT, 1, 0).build())
                position = account.positions.get(symbol)
                order = _stop(sim, symbol)
                if tp1 is not None and tp1.status == "Filled" and symbol not in tp1_filled:
                    tp1_filled[symbol] = time.monotonic()
                waiting = symbol in tp1_filled and tp1_filled[symbol] > 0 and order is not None and position
                if waiting and (order.trigger_price - position.avg_price) * signs[symbol] >= 0:
                    reactions.append(time.monotonic() - tp1_filled[symbol])
                    tp1_filled[symbol] = -1.0  # measured once
            time.sleep(0.005)

    with guarding(sim, "actors", guarded, "exits", extra=TRAIL):
        sim.stats.reset()
        watcher = threading.Thread(target=watch_breakeven, daemon=True)
        watcher.start()
        started = time.monotonic()
        next_sample = started + WARMUP_S
        while time.monotonic() - started < duration:
            for entry in guarded:
                last = sim.exchange.last_price(entry.symbol)
                move = Decimal("0.0004") + Decimal(str(round(rng.uniform(-0.0002, 0.0002), 6)))
                sim.set_price(entry.symbol, last * (1 + signs[entry.symbol] * move))
                price = sim.exchange.last_price(entry.symbol)
                if (price - best[entry.symbol]) * signs[entry.symbol] > 0:
                    best[entry.symbol] = price
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline:
                if time.monotonic() >= next_sample:
                    next_sample += 0.25
                    for entry in guarded:
                        order = _stop(sim, entry.symbol)
                        position = sim.account("main").positions.get(entry.symbol)
                        if order is None or not position or position.size == 0:
                            continue
                        if (order.trigger_price - position.avg_price) * signs[entry.symbol] <= 0:
                            continue  # not trailing yet (before TP1)
                        ideal = best[entry.symbol] * (1 - signs[entry.symbol] * DISTANCE)
                        lag = (ideal - order.trigger_price) * signs[entry.symbol]
                        if lag >= 0:
                            tick = sim.exchange.specs[entry.symbol].tick_size
                            lag_ticks.append(float(lag / tick))
                            lag_percent.append(float(lag / best[entry.symbol] * 100))
                time.sleep(0.01)
        minutes = (time.monotonic() - started) / 60
        amends = {a: sim.stats.requests(account=a, endpoint=Api.AMEND_ORDER) for a in ("main", "mirror")}
        stop.set()
    return {
        "amends_per_minute": {a: n / minutes for a, n in amends.items()},
        "budget_per_minute": WRITES_PER_SECOND * 0.5 * 60,
        "lag_ticks": (percentile(lag_ticks, 0.5, 0.0), percentile(lag_ticks, 0.95, 0.0)),
        "lag_percent": (percentile(lag_percent, 0.5, 0.0), percentile(lag_percent, 0.95, 0.0)),
        "tp1_to_breakeven_ms": (
            1000 * percentile(reactions, 0.5, float("nan")),
            1000 * percentile(reactions, 0.95, float("nan")),
            len(reactions),
        ),
    }


def wick(positions: int, latency_ms: float, seed: int, trigger_by: str) -> tuple[int, int]:
    """(positions stopped out, positions wicked) by a wick 1 % through every guarded stop."""
    sim, guarded = _book(positions, latency_ms, seed)
    with guarding(sim, "actors", guarded, "exits-wick", extra={"STOP_TRIGGER_BY": trigger_by}):
        time.sleep(2.0)
        wicked = 0
        for entry in guarded:
            order = _stop(sim, entry.symbol)
            if order is None or order.trigger_by != trigger_by:
                continue
            beyond = Decimal("0.99") if entry.side == "Buy" else Decimal("1.01")
            sim.exchange.wick(entry.symbol, order.trigger_price * beyond)
            wicked += 1
        stopped = sum(1 for e in guarded if (p := sim.account("main").positions.get(e.symbol)) is None or p.size == 0)
    return stopped, wicked


def main() -> None:
    parser = argparse.ArgumentParser(description="trailing stops and trigger price types under load")
    parser.add_argument("--positions", type=int, default=32)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--latency-ms", type=float, default=150.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    figures = trend(args.positions, args.duration, args.latency_ms, args.seed)
    per_minute = figures["amends_per_minute"]
    print(
        f"trend ({args.positions} positions per account, {args.latency_ms:.0f} ms, {args.duration:.0f} s, "
        "TRAIL_ACTIVATE=tp1, 0.5 %):"
    )
    print(
        f"  amends per minute (all): main {per_minute['main']:.0f}, mirror {per_minute['mirror']:.0f} "
        f"(trailing's budget: {figures['budget_per_minute']:.0f} per account)"
    )
    ticks, percents = figures["lag_ticks"], figures["lag_percent"]
    print(f"  stop lag behind the ideal level: p50 {ticks[0]:.0f} / p95 {ticks[1]:.0f} ticks, ", end="")
    print(f"p50 {percents[0]:.3f} % / p95 {percents[1]:.3f} %")
    p50, p95, count = figures["tp1_to_breakeven_ms"]
    print(f"  TP1 -> breakeven with trailing busy: p50 {p50:.0f} ms / p95 {p95:.0f} ms ({count} positions)")
    for trigger_by in ("LastPrice", "MarkPrice"):
        stopped, wicked = wick(args.positions, args.latency_ms, args.seed, trigger_by)
        print(f"wick 1 % through the stop, STOP_TRIGGER_BY={trigger_by}: {stopped} of {wicked} positions stopped out")


if __name__ == "__main__":
    main()
