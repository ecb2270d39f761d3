"""The old bot's design, for comparison only (never part of the daemon).

Every monitor calls pybit directly, on its own 5 s cadence: its position (by symbol) and all open
orders of the account (settleCoin, every page), at most 20 monitors at a time, one default pybit
session per account (pybit's default retries, which sleep on 10006; requests' default pool of
10). After TP1 fills it moves the stop to breakeven, so its reaction time can be measured.

    BENCH_KEYS=main:KEY:SECRET,mirror:KEY:SECRET python -m benchmarks.baseline --url URL --duration 60 --out FILE
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import orjson
from pybit.unified_trading import HTTP

from messages.models import OrderLink, Role

CYCLE_S = 5.0
CONCURRENCY = 20
BREAKEVEN = Decimal("0.0012")


class PoolFullCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "Connection pool is full" in record.getMessage():
            self.count += 1


class Baseline:
    def __init__(self, url: str, keys: dict[str, tuple[str, str]]):
        self.sessions = {}
        for name, (key, secret) in keys.items():
            session = HTTP(api_key=key, api_secret=secret, retry_delay=1)
            session.endpoint = url
            self.sessions[name] = session
        self.monitors: list[tuple[str, str]] = []
        self.reactions: list[float] = []
        self.errors = 0
        self.moved: set[tuple[str, str]] = set()
        self.lock = threading.Lock()
        self.deadline = float("inf")

    def discover(self) -> None:
        for name, session in self.sessions.items():
            rows = session.get_positions(category="linear", settleCoin="USDT", limit=200)["result"]["list"]
            self.monitors += [(name, row["symbol"]) for row in rows if Decimal(row["size"]) > 0]

    def check(self, account: str, symbol: str) -> None:
        """One monitor step, as the old bot did it: no cache, all orders every time."""
        if time.monotonic() >= self.deadline:
            return  # the run is over: a cycle still going is cut short
        session = self.sessions[account]
        try:
            position = session.get_positions(category="linear", symbol=symbol)["result"]["list"][0]
            orders, cursor = [], None
            while True:
                result = session.get_open_orders(
                    category="linear", settleCoin="USDT", limit=50, **({"cursor": cursor} if cursor else {})
                )["result"]
                orders += result["list"]
                cursor = result.get("nextPageCursor")
                if not result["list"] or not cursor:
                    break
            mine = [o for o in orders if o["symbol"] == symbol and OrderLink.parse(o["orderLinkId"])]
            if (account, symbol) in self.moved or Decimal(position["size"]) == 0:
                return
            links = {OrderLink.parse(o["orderLinkId"]): o for o in mine}
            stop = next((o for link, o in links.items() if link.role is Role.STOP), None)
            has_tp1 = any(link.role is Role.TAKE_PROFIT and link.level == 1 for link in links)
            has_later = any(link.role is Role.TAKE_PROFIT and link.level > 1 for link in links)
            if stop is None or has_tp1 or not has_later:
                return
            avg, side = Decimal(position["avgPrice"]), position["side"]
            trigger = Decimal(stop["triggerPrice"])
            tick = Decimal(10) ** Decimal(stop["triggerPrice"]).as_tuple().exponent
            be = (
                (avg * (1 + BREAKEVEN)).quantize(tick, ROUND_CEILING)
                if side == "Buy"
                else (avg * (1 - BREAKEVEN)).quantize(tick, ROUND_FLOOR)
            )
            if (be > trigger) if side == "Buy" else (be < trigger):
                history = session.get_order_history(category="linear", symbol=symbol, limit=50)["result"]["list"]
                tp1 = next(
                    (
                        o
                        for o in history
                        if (link := OrderLink.parse(o["orderLinkId"]))
                        and link.role is Role.TAKE_PROFIT
                        and link.level == 1
                        and o["orderStatus"] == "Filled"
                    ),
                    None,
                )
                session.amend_order(
                    category="linear",
                    symbol=symbol,
                    orderLinkId=stop["orderLinkId"],
                    triggerPrice=str(be),
                    qty=position["size"],
                )
                with self.lock:
                    self.moved.add((account, symbol))
                    if tp1 is not None:
                        self.reactions.append(time.time() * 1000 - int(tp1["updatedTime"]))
        except Exception:
            with self.lock:
                self.errors += 1

    def run(self, duration: float) -> dict:
        counter = PoolFullCounter()
        logging.getLogger("urllib3").addHandler(counter)
        self.discover()
        cycles = []
        end = self.deadline = time.monotonic() + duration
        pause = threading.Event()
        unfinished = None
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            while time.monotonic() < end:
                started = time.monotonic()
                list(pool.map(lambda m: self.check(*m), self.monitors))
                if time.monotonic() >= end:
                    unfinished = time.monotonic() - started  # cut short: not a whole cycle
                    break
                cycles.append(time.monotonic() - started)
                pause.wait(max(0.0, CYCLE_S - cycles[-1]))  # the old loop slept until the next cycle
        if not cycles and unfinished is not None:
            cycles.append(unfinished)  # not one whole cycle in the run: at least this long
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "cycles": cycles,
            "reactions_ms": self.reactions,
            "errors": self.errors,
            "pool_full_warnings": counter.count,
            "monitors": len(self.monitors),
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_mb": usage.ru_maxrss / 1024,
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    keys = {
        name: (key, secret) for name, key, secret in (part.split(":") for part in os.environ["BENCH_KEYS"].split(","))
    }
    logging.basicConfig(level=logging.ERROR)
    result = Baseline(args.url, keys).run(args.duration)
    with open(args.out, "wb") as handle:
        handle.write(orjson.dumps(result))


if __name__ == "__main__":
    main()
