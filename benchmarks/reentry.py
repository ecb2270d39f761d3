"""A trader closes a guarded position and opens a new one on the same symbol and side (R11),
measured from the exchange's side.

    python -m benchmarks.reentry [--designs actors,actors-rest] [--tries 24] [--gaps 0,0.2,1] [--latency-ms 150]

The daemon (`main.py`, its normal settings; `actors-rest` with BYBIT_STREAMS=false) guards a demo
book on a simulator whose prices stand still. Each try takes a guarded long or short of the main
account and, straight on the exchange, presses its close button (market, qty 0, reduce-only,
close-on-trigger), waits the gap, and opens the same side again at market with another size.
From that second order it polls the exchange every 5 ms and records:
- covered: until a closing-side stop (any, the old position's included) covers the new size;
- own stop: until a daemon stop of a position id other than the old one covers the new size;
- closed by the daemon: new positions the daemon reduced or closed within 3 s (must be 0).
The tries cycle through the gaps.
"""

from __future__ import annotations

import argparse
import time
from decimal import Decimal

from benchmarks.manual import _size, _stop, _until, guarding, p50_and_max
from messages.models import OrderLink, Role
from simulator import Simulator

HOLD_S = 3.0  # the new position must keep its size this long after its own stop rests


def _covered(sim: Simulator, symbol: str, side: str) -> bool:
    size = _size(sim, symbol)
    closing = "Sell" if side == "Buy" else "Buy"
    return any(
        o.is_conditional and o.reduce_only and o.side == closing and o.status == "Untriggered" and o.qty >= size
        for o in sim.account("main").open_orders(symbol)
    )


def _own_stop(sim: Simulator, symbol: str, old_position_id: str) -> bool:
    """A stop of the daemon's for the new position (the old one may still rest beside it)."""
    size = _size(sim, symbol)
    for order in sim.account("main").open_orders(symbol):
        link = OrderLink.parse(order.link_id)
        if link is not None and link.role is Role.STOP and link.position_id != old_position_id and order.qty >= size:
            return True
    return False


def run(design: str, tries: int, gaps: list[float], latency_ms: float, seed: int = 5, verbose: bool = False) -> dict:
    sim = Simulator(seed=seed, symbols=24, latency_ms=latency_ms, jitter_ms=latency_ms / 10)
    book = sim.load_demo_book(8)
    sim.start()  # no price steps: only the trader acts
    guarded = [e for e in book if e.account == "main" and e.kind in ("monitoring", "fast")]
    first_size = {e.symbol: _size(sim, e.symbol) for e in guarded}
    figures: dict[str, list[float]] = {"covered": [], "own_stop": []}
    closed_by_daemon = 0
    with guarding(sim, design, guarded, "reentry") as workdir:
        for n in range(tries):
            entry = guarded[n % len(guarded)]
            stop = _stop(sim, entry.symbol)
            if stop is None and _until(lambda: _stop(sim, entry.symbol) is not None, 30) == float("inf"):
                raise SystemExit(f"{entry.symbol} lost its stop between tries (see {workdir / 'log.txt'})")
            old_position_id = OrderLink.parse(_stop(sim, entry.symbol).link_id).position_id
            spec = sim.exchange.specs[entry.symbol].instrument()
            qty = spec.round_qty(first_size[entry.symbol] * Decimal(f"1.{1 + n % 5}"))  # the old stop falls short
            closing = "Sell" if entry.side == "Buy" else "Buy"
            close_button = {"orderType": "Market", "qty": "0", "reduceOnly": True, "closeOnTrigger": True}
            sim.place("main", symbol=entry.symbol, side=closing, **close_button)
            time.sleep(gaps[n % len(gaps)])
            sim.place("main", symbol=entry.symbol, side=entry.side, orderType="Market", qty=str(qty))
            started = time.monotonic()
            _until(lambda: _covered(sim, entry.symbol, entry.side), 30)
            figures["covered"].append(time.monotonic() - started)
            _until(lambda: _own_stop(sim, entry.symbol, old_position_id), 30)
            figures["own_stop"].append(time.monotonic() - started)
            time.sleep(HOLD_S)
            closed_by_daemon += _size(sim, entry.symbol) != qty
            if verbose:
                print(
                    f"  {design} {entry.symbol} gap {gaps[n % len(gaps)]:.1f} s: covered "
                    f"{figures['covered'][-1]:.2f} s, own stop {figures['own_stop'][-1]:.2f} s",
                    flush=True,
                )
    return {
        "design": design,
        "tries": tries,
        "latency_ms": latency_ms,
        **p50_and_max(figures),
        "closed_by_daemon": closed_by_daemon,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="a same-side re-entry, from the trader's order to its stop")
    parser.add_argument("--designs", default="actors,actors-rest")
    parser.add_argument("--tries", type=int, default=24)
    parser.add_argument("--gaps", default="0,0.2,1", help="seconds between the close and the new order, cycled")
    parser.add_argument("--latency-ms", type=float, default=150.0)
    parser.add_argument("--verbose", action="store_true", help="print every try")
    args = parser.parse_args()
    gaps = [float(g) for g in args.gaps.split(",")]
    rows = [run(design, args.tries, gaps, args.latency_ms, verbose=args.verbose) for design in args.designs.split(",")]
    print(f"{'design':11} {'covered p50/max (s)':>20} {'own stop p50/max (s)':>21} {'closed by daemon':>17}")
    for r in rows:
        covered = f"{r['covered_p50']:.2f} / {r['covered_max']:.2f}"
        own = f"{r['own_stop_p50']:.2f} / {r['own_stop_max']:.2f}"
        print(f"{r['design']:11} {covered:>20} {own:>21} {r['closed_by_daemon']:>17}")
    print(f"({args.tries} tries each, gaps {args.gaps} s, {args.latency_ms:.0f} ms latency)")


if __name__ == "__main__":
    main()
