"""What a trader doing things by hand sees, measured from the exchange's side.

    python -m benchmarks.manual [--designs actors-rest,actors] [--latency-ms 150] [--positions 32] [--tries 4]

The daemon (`main.py`, its normal settings; `actors-rest` with BYBIT_STREAMS=false) guards a demo
book on a simulator whose prices stand still, so nothing but the trader's actions happens. Each
try acts on a different guarded position of the main account, straight on the exchange (no
latency: the trader's click), then polls the exchange every 5 ms until the daemon has answered:
- a stop cancelled by hand: until one of the daemon's stops rests again;
- a manual reduce (40 % at market): until the stop's qty equals the new size;
- a manual full close (market): until none of the daemon's orders on that symbol is left.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import orjson

from messages.models import OrderLink, Role
from runtime.stats import percentile
from settings import PARSERS
from simulator import Simulator

ROOT = Path(__file__).resolve().parents[1]
POLL_S = 0.005


def _ours(sim: Simulator, symbol: str) -> list:
    return [o for o in sim.account("main").open_orders(symbol) if OrderLink.parse(o.link_id)]


def _stop(sim: Simulator, symbol: str):
    stops = [
        o for o in _ours(sim, symbol) if OrderLink.parse(o.link_id).role is Role.STOP and o.status == "Untriggered"
    ]
    return stops[0] if len(stops) == 1 else None


def _size(sim: Simulator, symbol: str) -> Decimal:
    position = sim.account("main").positions.get(symbol)
    return position.size if position else Decimal(0)


def _until(predicate, timeout: float = 30.0) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            return float("inf")
        time.sleep(POLL_S)
    return time.monotonic() - started


def daemon_env(sim: Simulator, design: str, workdir: Path) -> dict[str, str]:
    """The daemon's environment against `sim`: its normal settings, REST only for `actors-rest`."""
    creds = sim.credentials
    env = {k: v for k, v in os.environ.items() if k not in PARSERS}
    env.update(
        {
            "BYBIT_API_KEY": creds["main"].api_key,
            "BYBIT_API_SECRET": creds["main"].api_secret,
            "ENABLE_MIRROR_TRADING": "true",
            "BYBIT_API_KEY_2": creds["mirror"].api_key,
            "BYBIT_API_SECRET_2": creds["mirror"].api_secret,
            "BYBIT_BASE_URL": sim.url,
            "STATE_PATH": str(workdir / "state.db"),
            "METRICS_ADDRESS": "127.0.0.1:0",
            **(
                {"BYBIT_STREAMS": "false"}
                if design == "actors-rest"
                else {"BYBIT_WS_PRIVATE_URL": sim.ws_private, "BYBIT_WS_PUBLIC_URL": sim.ws_public}
            ),
        }
    )
    return env


@contextmanager
def guarding(
    sim: Simulator, design: str, guarded: list, prefix: str, extra: dict[str, str] | None = None
) -> Iterator[Path]:
    """The daemon (`design`) as a process guarding `sim` until every `guarded` position has its
    stop and the start-up work is done; stopped, with the simulator, on the way out. Yields the
    work directory (the daemon's log is `log.txt` there)."""
    workdir = Path(tempfile.mkdtemp(prefix=f"{prefix}-{design}-"))
    with open(workdir / "log.txt", "w") as log:
        daemon = subprocess.Popen(
            [sys.executable, "main.py"],
            cwd=ROOT,
            env={**daemon_env(sim, design, workdir), **(extra or {})},
            stdout=log,
            stderr=log,
        )
        try:
            if _until(lambda: all(_stop(sim, e.symbol) for e in guarded), 120) == float("inf"):
                raise SystemExit(f"the daemon did not protect the book in time (see {workdir / 'log.txt'})")
            time.sleep(3.0)  # start-up work done
            yield workdir
        finally:
            daemon.terminate()
            daemon.wait(timeout=30)
            sim.stop()


def p50_and_max(figures: dict[str, list[float]]) -> dict[str, float]:
    return {
        **{f"{name}_p50": percentile(values, 0.5, None) for name, values in figures.items()},
        **{f"{name}_max": max(values) for name, values in figures.items()},
    }


def run(design: str, positions: int, latency_ms: float, tries: int, seed: int = 3) -> dict:
    sim = Simulator(seed=seed, symbols=positions + 8, latency_ms=latency_ms, jitter_ms=latency_ms / 10)
    book = sim.load_demo_book(positions)
    sim.start()  # no price steps: only the trader acts
    # Positions with no resting entry (the stop then equals the size) and no TP resting on all of it.
    guarded = [e for e in book if e.account == "main" and e.kind in ("monitoring", "fast")]
    needed = 3 * tries
    if len(guarded) < needed:
        raise SystemExit(f"{positions} positions hold {len(guarded)} guarded ones; {needed} are needed")
    figures: dict[str, list[float]] = {"stop_replaced": [], "reduce_followed": [], "close_cleaned": []}
    with guarding(sim, design, guarded, "manual"):
        targets = iter(guarded)
        for _ in range(tries):
            entry = next(targets)
            stop = _stop(sim, entry.symbol)
            sim.exchange.cancel_order(
                sim.account("main"), {"category": "linear", "symbol": entry.symbol, "orderLinkId": stop.link_id}
            )
            figures["stop_replaced"].append(_until(lambda: _stop(sim, entry.symbol) is not None))
            entry = next(targets)
            spec = sim.exchange.specs[entry.symbol].instrument()
            size = _size(sim, entry.symbol)
            sim.place(
                "main",
                symbol=entry.symbol,
                side="Sell" if entry.side == "Buy" else "Buy",
                orderType="Market",
                qty=str(spec.round_qty(size * Decimal("0.4"))),
            )
            figures["reduce_followed"].append(
                _until(lambda: (s := _stop(sim, entry.symbol)) is not None and s.qty == _size(sim, entry.symbol))
            )
            entry = next(targets)
            sim.place(
                "main",
                symbol=entry.symbol,
                side="Sell" if entry.side == "Buy" else "Buy",
                orderType="Market",
                qty=str(_size(sim, entry.symbol)),
            )
            figures["close_cleaned"].append(_until(lambda: not _ours(sim, entry.symbol)))
            time.sleep(1.0)
    return {"design": design, "positions": positions, "latency_ms": latency_ms, **p50_and_max(figures)}


def main() -> None:
    parser = argparse.ArgumentParser(description="reactions to a trader's manual actions, from the exchange's side")
    parser.add_argument("--designs", default="actors-rest,actors")
    parser.add_argument("--positions", type=int, default=32)
    parser.add_argument("--latency-ms", type=float, default=150.0)
    parser.add_argument("--tries", type=int, default=4)
    parser.add_argument("--json", help="write the rows as JSON")
    args = parser.parse_args()
    rows = [run(design, args.positions, args.latency_ms, args.tries) for design in args.designs.split(",")]
    print(
        f"{'design':11} {'stop replaced p50/max (s)':>26} {'reduce followed p50/max (s)':>28} "
        f"{'close cleaned p50/max (s)':>26}"
    )
    for r in rows:
        cells = [
            f"{r[f'{k}_p50']:.2f} / {r[f'{k}_max']:.2f}" for k in ("stop_replaced", "reduce_followed", "close_cleaned")
        ]
        print(f"{r['design']:11} {cells[0]:>26} {cells[1]:>28} {cells[2]:>26}")
    print(f"({args.positions} positions per account, {args.latency_ms:.0f} ms latency, {args.tries} tries each)")
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(rows, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
