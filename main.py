"""The TP/SL guardian daemon: `python main.py [run|status] [--config FILE] [--duration S] ...`.

With no API keys it runs against the embedded Bybit simulator with a demo book of positions.
Exit codes: 0 after a clean stop (SIGINT, SIGTERM or --duration), 2 when it must not start
(invalid settings, a key that cannot trade, a state database of a newer version), 1 for status
without a database.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson

from runtime import signals
from runtime.logging import setup_logging
from settings import Settings, SettingsError, load_settings, read_config_file, state_path_problem

log = logging.getLogger("main")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python main.py", description="Guards TP/SL orders of open Bybit positions.")
    parser.add_argument("command", nargs="?", choices=("run", "status"), default="run",
                        help="run the daemon (default), or print the monitors from the state database")
    parser.add_argument("--events", type=int, default=0, metavar="N", help="status: also print the last N journal entries")
    parser.add_argument("--config", help="KEY=value settings file (the environment overrides it)")
    parser.add_argument("--duration", type=float, help="stop cleanly after this many seconds")
    parser.add_argument("--dry-run", action="store_true", help="read and decide, but send no order (logged as DRY-RUN)")
    parser.add_argument("--summary-json", metavar="FILE", help="write the run's figures as one JSON object at exit")
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
    return run(settings, args)


def print_status(settings: Settings, events: int) -> int:
    from actors._store import StateError
    from runtime.status import render
    try:
        print(render(settings.state_path, events))
    except StateError as exc:
        print(f"status: {exc}", file=sys.stderr)
        return 1
    return 0


def run(settings: Settings, args: argparse.Namespace) -> int:
    from actors._store import StateError
    from runtime.system import StartupError, System

    explicit_state_path = "STATE_PATH" in os.environ or _in_config(args.config, "STATE_PATH")
    if settings.live or explicit_state_path:
        problem = state_path_problem(settings.state_path)
        if problem:
            print(f"invalid setting: {problem}", file=sys.stderr)
            return 2
    stop = threading.Event()
    signals.install(stop.set)
    sim = None
    if settings.live:
        accounts = {a.name: (a.api_key.reveal(), a.api_secret.reveal()) for a in settings.accounts()}
        base_url = settings.base_url
        log.info("Running against %s (%s)", base_url, ", ".join(accounts))
    else:
        from simulator import Simulator
        sim = Simulator(seed=args.seed, symbols=max(64, args.positions + 8), latency_ms=args.latency_ms)
        sim.load_demo_book(args.positions)
        sim.start(step_interval=0.25, oracle_interval=0.2)
        accounts = {name: (c.api_key, c.api_secret) for name, c in sim.credentials.items()}
        base_url = sim.url
        if not explicit_state_path:
            # The simulator's world is new every run: state from an earlier run means nothing.
            settings = settings.replace(state_path=str(Path(tempfile.mkdtemp(prefix="guardian-")) / "guardian.db"))
        log.info("Running against the embedded Bybit simulator at %s: %d demo positions per account "
                 "(main, mirror), seed %d, state in %s", sim.url, args.positions, args.seed, settings.state_path)
    try:
        system = System(settings, accounts, base_url, dry_run=args.dry_run)
    except ValueError as exc:  # a malformed GUARDIAN_KILL_AT (tests only)
        print(f"invalid environment: {exc}", file=sys.stderr)
        if sim is not None:
            sim.stop()
        return 2
    code = 0
    figures: dict = {}
    try:
        if system.start(stop):
            deadline = time.monotonic() + args.duration if args.duration else None
            while not stop.wait(_remaining(deadline)):
                if deadline is not None and time.monotonic() >= deadline:
                    break
            figures = system.collect()
    except StateError as exc:
        print(f"state database: {exc}", file=sys.stderr)
        code = 2
    except StartupError as exc:
        print(f"refusing to start: {exc}", file=sys.stderr)
        code = 2
    finally:
        system.stop()
        sim_stats = {**sim.stats.snapshot(), "oracle": sim.oracle.report()} if sim is not None else None
        if sim is not None:
            sim.stop()
        if args.summary_json and code == 0:
            Path(args.summary_json).write_bytes(orjson.dumps(system.summary(figures, sim_stats), option=orjson.OPT_INDENT_2))
        log.info("Stopped cleanly" if code == 0 else "Stopped")
    return code


def _remaining(deadline: float | None) -> float:
    return 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))


def _in_config(path: str | None, name: str) -> bool:
    return bool(path) and name in read_config_file(path)


if __name__ == "__main__":
    sys.exit(main())
