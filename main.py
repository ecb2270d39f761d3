"""The TP/SL guardian daemon: `python main.py [--config FILE] [--duration S] ...`.

With no API keys it runs against the embedded Bybit simulator with a demo book of positions.
Exit codes: 0 after a clean stop (SIGINT, SIGTERM or --duration), 2 for invalid settings.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time

from runtime import signals
from runtime.logging import setup_logging
from settings import Settings, SettingsError, load_settings

log = logging.getLogger("main")

SUMMARY_INTERVAL_S = 10.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python main.py", description="Guards TP/SL orders of open Bybit positions.")
    parser.add_argument("command", nargs="?", choices=("run", "status"), default="run",
                        help="run the daemon (default), or print the monitors from the state database")
    parser.add_argument("--events", type=int, default=0, metavar="N", help="status: also print the last N journal entries")
    parser.add_argument("--config", help="KEY=value settings file (the environment overrides it)")
    parser.add_argument("--duration", type=float, help="stop cleanly after this many seconds")
    parser.add_argument("--positions", type=int, default=32, help="simulator: demo positions per account")
    parser.add_argument("--seed", type=int, default=0, help="simulator: seed of prices and demo book")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="simulator: latency per request")
    parser.add_argument("--log-format", choices=("human", "json"), help="overrides LOG_FORMAT")
    args = parser.parse_args(argv)
    if args.duration is not None and args.duration <= 0:
        parser.error("--duration must be greater than 0")
    if args.positions < 0:
        parser.error("--positions must be 0 or more")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = load_settings(os.environ, args.config)
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"invalid setting: {problem}", file=sys.stderr)
        return 2
    if args.command == "status":
        return print_status(settings, args.events)
    secrets = [s.reveal() for s in (settings.bybit_api_key, settings.bybit_api_secret,
                                    settings.bybit_api_key_2, settings.bybit_api_secret_2)]
    setup_logging(settings.log_level, args.log_format or settings.log_format, secrets)
    if settings.live:
        print("invalid setting: BYBIT_API_KEY: guarding a live account is not available in this "
              "version yet; unset the keys to run against the embedded simulator", file=sys.stderr)
        return 2
    return run_simulated(settings, args)


def print_status(settings: Settings, events: int) -> int:
    from actors._store import StateError
    from runtime.status import render
    try:
        print(render(settings.state_path, events))
    except StateError as exc:
        print(f"status: {exc}", file=sys.stderr)
        return 1
    return 0


def run_simulated(settings: Settings, args: argparse.Namespace) -> int:
    from simulator import Simulator  # only needed without keys

    stop = threading.Event()
    signals.install(stop.set)
    sim = Simulator(seed=args.seed, symbols=max(64, args.positions + 8), latency_ms=args.latency_ms)
    sim.load_demo_book(args.positions)
    sim.start(step_interval=0.25)
    log.info("Running against the embedded Bybit simulator at %s: %d demo positions per account "
             "(main, mirror), seed %d", sim.url, args.positions, args.seed)
    deadline = time.monotonic() + args.duration if args.duration else None
    try:
        while True:
            wait = SUMMARY_INTERVAL_S if deadline is None else min(SUMMARY_INTERVAL_S, deadline - time.monotonic())
            if stop.wait(max(wait, 0)) or (deadline is not None and time.monotonic() >= deadline):
                break
            log_book(sim)
    finally:
        sim.stop()
        log.info("Stopped cleanly")
    return 0


def log_book(sim) -> None:
    state = sim.exchange.snapshot()
    parts = [f"{name} {len(a['positions'])} positions, {len(a['orders'])} open orders, "
             f"wallet {a['balance'][:12]} USDT" for name, a in state["accounts"].items()]
    log.info("Book: %s", "; ".join(parts))


if __name__ == "__main__":
    sys.exit(main())
