"""Standalone simulator: `python -m simulator [--port 0] [--seed N] [--accounts N] [--demo-positions N] ...`.

Prints one JSON line with the URL, the stream URLs and each account's credentials (main and
mirror, or `--accounts N`: acct01 ... acctNN, the per-IP limits shared by all of them as on Bybit),
then serves until SIGINT or SIGTERM (exit 0). Point the daemon at it with BYBIT_BASE_URL and the
keys (BYBIT_API_KEY..., or an ACCOUNTS_FILE naming variables that hold them).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

import orjson

from simulator import MAX_ACCOUNTS, Simulator, account_names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the price walks and the demo book")
    parser.add_argument(
        "--accounts", type=int, default=0, metavar="N", help="N accounts acct01... (default: main and mirror)"
    )
    parser.add_argument("--demo-positions", type=int, default=0, help="demo positions per account")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="fixed latency per request")
    parser.add_argument("--jitter-ms", type=float, default=0.0, help="random extra latency per request")
    parser.add_argument(
        "--step-interval",
        type=float,
        default=0.25,
        help="seconds between price steps (0: prices move only by /sim/ endpoints)",
    )
    args = parser.parse_args(argv)
    if not 0 <= args.accounts <= MAX_ACCOUNTS:
        parser.error(f"--accounts must be from 1 to {MAX_ACCOUNTS} (0, the default: main and mirror)")

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    sim = Simulator(
        seed=args.seed,
        accounts=account_names(args.accounts) if args.accounts else ("main", "mirror"),
        symbols=max(64, args.demo_positions + 8),
        latency_ms=args.latency_ms,
        jitter_ms=args.jitter_ms,
    )
    if args.demo_positions:
        sim.load_demo_book(args.demo_positions)
    sim.start(port=args.port, step_interval=args.step_interval or None, oracle_interval=0.2)
    accounts = {name: {"api_key": c.api_key, "api_secret": c.api_secret} for name, c in sim.credentials.items()}
    sys.stdout.write(
        orjson.dumps(
            {"url": sim.url, "ws_private": sim.ws_private, "ws_public": sim.ws_public, "accounts": accounts}
        ).decode()
        + "\n"
    )
    sys.stdout.flush()
    while not stop.wait(1.0):
        pass
    sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
