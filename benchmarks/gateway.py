"""Gateway figures: `python -m benchmarks.gateway [--positions 32,200,1000] [--latency-ms 100] [--duration 60]`.

For each book size (positions per account, main and mirror): the API calls and wall time of one
cold full refresh, then the hit rate and API calls when every position is asked for every 2 s
(max_age 2 s, as critical monitors would) for `--duration` seconds.
"""

from __future__ import annotations

import argparse
import time

import pykka

from actors.asks import ask_with_reply
from actors.exchange import BybitTransport, ExchangeGateway
from messages.gateway import GatewayTick, GetAccountSnapshot, GetGatewayStats, GetPositionView
from runtime.clock import SystemClock
from runtime.ticker import Every, Ticker
from simulator import Simulator


def run(positions: int, latency_ms: float, duration: float) -> dict:
    sim = Simulator(seed=1, symbols=positions + 8, latency_ms=latency_ms)
    book = sim.load_demo_book(positions)
    sim.start()
    accounts = {n: (c.api_key, c.api_secret) for n, c in sim.credentials.items()}
    gateway = ExchangeGateway.start(BybitTransport(accounts, sim.url), SystemClock())
    ticker = Ticker(SystemClock(), [Every(0.02, gateway, GatewayTick)]).start()
    try:
        gateway.ask(GetGatewayStats())
        sim.stats.reset()
        started = time.monotonic()
        ask_with_reply(gateway, lambda reply: GetAccountSnapshot("main", 0.0, reply=reply), 120)
        refresh_s = time.monotonic() - started
        refresh_calls = sim.stats.requests(account="main")
        before = gateway.ask(GetGatewayStats())
        sim.stats.reset()
        end = time.monotonic() + duration
        rounds = 0
        while time.monotonic() < end:
            round_started = time.monotonic()
            futures = []
            for entry in book:
                future = pykka.ThreadingFuture()
                gateway.tell(GetPositionView(entry.account, entry.symbol, 0, 2.0, reply=future))
                futures.append(future)
            for future in futures:
                future.get(timeout=120)
            rounds += 1
            pause = 2.0 - (time.monotonic() - round_started)
            if pause > 0:
                time.sleep(pause)  # the benchmark's own pacing (not daemon code)
        after = gateway.ask(GetGatewayStats())
        hits, misses = after.cache_hits - before.cache_hits, after.cache_misses - before.cache_misses
        calls = sim.stats.snapshot()
        return {
            "positions": positions,
            "refresh_calls": refresh_calls,
            "refresh_s": refresh_s,
            "hit_rate": hits / max(1, hits + misses),
            "requests": hits + misses,
            "rounds": rounds,
            "api_calls_per_min": calls["total"] * 60 / duration,
            "rate_limited_10006": calls["rate_limited_10006"],
        }
    finally:
        ticker.stop()
        pykka.ActorRegistry.stop_all()
        sim.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", default="32,200,1000")
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--duration", type=float, default=60.0)
    args = parser.parse_args()
    print(
        f"{'positions/account':>17} {'calls/refresh':>13} {'refresh s':>9} {'hit rate':>8} "
        f"{'views':>7} {'rounds':>6} {'API calls/min':>13} {'10006':>5}"
    )
    for positions in (int(p) for p in args.positions.split(",")):
        r = run(positions, args.latency_ms, args.duration)
        print(
            f"{r['positions']:>17} {r['refresh_calls']:>13} {r['refresh_s']:>9.2f} {r['hit_rate']:>8.1%} "
            f"{r['requests']:>7} {r['rounds']:>6} {r['api_calls_per_min']:>13.0f} {r['rate_limited_10006']:>5}",
            flush=True,
        )


if __name__ == "__main__":
    main()
