"""The TP/SL guardian daemon: `python main.py [run|status] [--config FILE] [--duration S] ...`, and
the trader's commands to the running daemon: `python main.py trade open|plan|close|list ...`.

With no API keys it runs against the embedded Bybit simulator with a demo book of positions.
Exit codes: 0 after a clean stop (SIGINT, SIGTERM or --duration), 2 when it must not start
(invalid settings, a key that cannot trade, a state database of a newer version), 1 for status
without a database. `trade`: 2 for a request with problems (nothing sent), 1 when the daemon is not
running or the exchange refused, 0 when done.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from runtime import signals
from runtime.clock import SystemClock
from runtime.logging import setup_logging
from runtime.metrics import Metrics
from runtime.ops_server import OpsServer
from settings import Settings, SettingsError, load_settings, read_config_file, state_path_problem

log = logging.getLogger("main")

DEMO_STATE_PATH = "state/demo.db"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python main.py", description="Guards TP/SL orders of open Bybit positions.")
    parser.add_argument(
        "command",
        nargs="?",
        choices=("run", "status", "alerts"),
        default="run",
        help="run the daemon (default); print the monitors; `alerts test`: send a test alert",
    )
    parser.add_argument("action", nargs="?", choices=("test",), help="alerts: test sends one message to every URL")
    parser.add_argument(
        "--events", type=int, default=0, metavar="N", help="status: also print the last N journal entries"
    )
    parser.add_argument("--json", action="store_true", help="status: print one JSON object (for scripts)")
    parser.add_argument("--config", help="KEY=value settings file (the environment overrides it)")
    parser.add_argument("--duration", type=float, help="stop cleanly after this many seconds")
    parser.add_argument("--dry-run", action="store_true", help="read and decide, but send no order (logged as DRY-RUN)")
    parser.add_argument("--summary-json", metavar="FILE", help="write the run's figures as one JSON object at exit")
    parser.add_argument("--positions", type=int, default=32, help="simulator: demo positions per account")
    parser.add_argument("--seed", type=int, default=0, help="simulator: seed of prices and demo book")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="simulator: latency per request")
    parser.add_argument("--log-format", choices=("human", "json"), help="overrides LOG_FORMAT")
    parser.add_argument(
        "--shard",
        type=_shard,
        metavar="I/N",
        help="run shard I (0 to N-1) of N: its share of the accounts, its own state database",
    )
    args = parser.parse_args(argv)
    if args.duration is not None and args.duration <= 0:
        parser.error("--duration must be greater than 0")
    if args.positions < 0:
        parser.error("--positions must be 0 or more")
    return args


def _shard(text: str) -> tuple[int, int]:
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit() and 0 <= int(index) < int(count)):
        raise argparse.ArgumentTypeError(f"{text!r} must be I/N with 0 <= I < N, e.g. 0/2")
    return int(index), int(count)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["trade"]:
        return trade(argv[1:])
    args = parse_args(argv)
    settings = _settings(args.config, args.shard)
    if settings is None:
        return 2
    if args.command == "status":
        return print_status(settings, args)
    credentials = [(a.api_key, a.api_secret) for a in settings.accounts()]
    secrets = [
        s.reveal()
        for s in (
            settings.bybit_api_key,
            settings.bybit_api_secret,
            settings.bybit_api_key_2,
            settings.bybit_api_secret_2,
            *(part for pair in credentials for part in pair),
            *settings.alert_urls,
        )
    ]
    secrets += [
        part for url in settings.alert_urls for part in re.split(r"[/:@?&=,]+", url.reveal()) if len(part) >= 12
    ]
    setup_logging(settings.log_level, args.log_format or settings.log_format, secrets)
    channels = alert_channels(settings)
    if channels is None:
        return 2
    if args.command == "alerts":
        return test_alerts(channels)
    return run(settings, args, channels)


def _settings(config: str | None, shard: tuple[int, int] | None = None) -> Settings | None:
    """The settings (of the shard, if one is given), or None after one line per problem."""
    try:
        settings = load_settings(os.environ, config)
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"invalid setting: {problem}", file=sys.stderr)
        return None
    if shard is None:
        return settings
    if not settings.live:
        print("invalid setting: --shard: shards split an accounts file (ACCOUNTS_FILE) or keys", file=sys.stderr)
        return None
    settings = settings.shard(*shard)
    if not settings.account_specs:
        print(
            f"invalid setting: --shard {shard[0]}/{shard[1]}: no account falls to this shard (the accounts "
            "file has fewer leader groups than shards)",
            file=sys.stderr,
        )
        return None
    return settings


def trade(argv: list[str]) -> int:
    from runtime import trade_cli
    from runtime.control import socket_path

    args = trade_cli.parse(argv)
    try:
        shard = _shard(args.shard) if args.shard else None
    except argparse.ArgumentTypeError as exc:
        print(f"trade {args.command}: --shard {exc}", file=sys.stderr)
        return 2
    settings = _settings(args.config, shard)
    if settings is None:
        return 2
    return trade_cli.run(args, socket_path(_state_path(settings, args.config)), len(settings.tp_ladder_percents))


def alert_channels(settings: Settings) -> list | None:
    """One Channel per ALERT_URLS entry; None (after one line per bad URL) when Apprise knows one
    not. A URL is never printed: it carries a token."""
    from actors.alerts import Channel

    channels, bad = [], []
    for number, url in enumerate(settings.alert_urls, 1):
        try:
            channels.append(Channel(url.reveal()))
        except ValueError:
            bad.append(
                f"invalid setting: ALERT_URLS: URL {number} ({url.reveal().split('://')[0]}://...) is not "
                "a URL Apprise knows"
            )
    for line in bad:
        print(line, file=sys.stderr)
    return None if bad else channels


def test_alerts(channels: list) -> int:
    """`main.py alerts test`: one test message to every URL; a line per URL; 0 when all were sent."""
    if not channels:
        print("alerts: ALERT_URLS is not set; nothing to send", file=sys.stderr)
        return 1
    sent = 0
    for channel in channels:
        ok = channel.send("TP/SL guardian: test alert", "If you read this, the guardian's alerts reach you.")
        sent += ok
        print(f"{channel.name}: {'sent' if ok else 'failed (the service refused it or did not answer)'}")
    return 0 if sent == len(channels) else 1


def print_status(settings: Settings, args: argparse.Namespace) -> int:
    """The running daemon's live figures when it answers on METRICS_ADDRESS, else the state
    database (the demo's when no keys are set). No exchange call either way."""
    from actors.storage import StateError
    from runtime import status

    path = _state_path(settings, args.config)
    try:
        report = status.live(settings.metrics_bind) or status.from_database(path, args.events)
        if report.get("source") == "live" and args.events:
            report["events"] = status.journal(path, args.events)
    except StateError as exc:
        print(f"status: {exc}", file=sys.stderr)
        return 1
    print(
        orjson.dumps(report, default=str, option=orjson.OPT_INDENT_2).decode() if args.json else status.render(report)
    )
    return 0


def run(settings: Settings, args: argparse.Namespace, channels: list) -> int:
    from actors.storage import StateError
    from runtime.system import StartupError, System

    if _state_path(settings, args.config) == DEMO_STATE_PATH:
        # The simulator's world is new every run: so is its state (at a fixed path, for `status`).
        settings = settings.replace(state_path=DEMO_STATE_PATH)
        for suffix in ("", "-wal", "-shm"):
            Path(DEMO_STATE_PATH + suffix).unlink(missing_ok=True)
    problem = state_path_problem(settings.state_path)
    if problem:
        print(f"invalid setting: {problem}", file=sys.stderr)
        return 2
    names = [a.name for a in settings.accounts()] if settings.live else ["main", "mirror"]
    metrics = Metrics(SystemClock(), names, float(settings.stale_limit_seconds))
    try:
        server = OpsServer(settings.metrics_bind, metrics) if settings.metrics_bind is not None else None
    except OSError as exc:
        print(
            f"invalid setting: METRICS_ADDRESS: cannot listen on {settings.metrics_address} ({exc.strerror or exc})",
            file=sys.stderr,
        )
        return 2
    stop = threading.Event()
    signals.install(stop.set)
    accounts, base_url, streams, sim, hosts = _exchange(settings, args)
    try:
        system = System(
            settings,
            accounts,
            base_url,
            streams=streams,
            hosts=hosts,
            dry_run=args.dry_run,
            metrics=metrics,
            channels=tuple(channels),
        )
    except ValueError as exc:  # a malformed GUARDIAN_KILL_AT (tests only)
        print(f"invalid environment: {exc}", file=sys.stderr)
        for part in (sim, server):
            if part is not None:
                part.stop()
        return 2
    if server is not None:
        server.start()
    code = 0
    figures: dict = {}
    try:
        if system.start(stop):
            _wait_for_stop(stop, args.duration)
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
        if server is not None:
            server.stop()
        if args.summary_json and code == 0:
            Path(args.summary_json).write_bytes(
                orjson.dumps(system.summary(figures, sim_stats), option=orjson.OPT_INDENT_2)
            )
        log.info("Stopped cleanly" if code == 0 else "Stopped")
    return code


def _exchange(
    settings: Settings, args: argparse.Namespace
) -> tuple[dict[str, tuple[str, str]], str, Any, Any, dict[str, tuple[str, str]]]:
    """The accounts' credentials, the REST base URL and the stream URLs: Bybit's with keys, else
    those of the embedded simulator, started here with its demo book (returned to be stopped);
    last, the REST and private stream URLs of the accounts on another host (demo beside real)."""
    if settings.live:
        accounts = {a.name: (a.api_key.reveal(), a.api_secret.reveal()) for a in settings.accounts()}
        base_url = settings.base_url
        streams = settings.stream_urls(base_url)
        hosts = {
            a.name: (settings.base_url_of(a), (settings.stream_urls(settings.base_url_of(a)) or ("",))[0])
            for a in settings.accounts()
            if settings.base_url_of(a) != base_url
        }
        log.info(
            "Running against %s (%s)%s",
            base_url,
            ", ".join(accounts),
            f", streams {streams[0]} and {streams[1] or '(no public stream)'}" if streams else ", REST polling only",
        )
        if settings.bybit_streams and streams is None:
            log.warning("Streams are off: BYBIT_BASE_URL is not a Bybit host and BYBIT_WS_PRIVATE_URL is not set")
        return accounts, base_url, streams, None, hosts
    from simulator import Simulator

    sim = Simulator(seed=args.seed, symbols=max(64, args.positions + 8), latency_ms=args.latency_ms)
    sim.load_demo_book(args.positions)
    sim.start(step_interval=0.25, oracle_interval=0.2)
    sim_streams = (sim.ws_private, sim.ws_public) if settings.bybit_streams else None
    log.info(
        "Running against the embedded Bybit simulator at %s (%s): %d demo positions per account "
        "(main, mirror), seed %d, state in %s%s",
        sim.url,
        "pushes on its streams" if sim_streams else "REST polling only",
        args.positions,
        args.seed,
        settings.state_path,
        " (recreated at every start)" if settings.state_path == DEMO_STATE_PATH else "",
    )
    return {name: (c.api_key, c.api_secret) for name, c in sim.credentials.items()}, sim.url, sim_streams, sim, {}


def _wait_for_stop(stop: threading.Event, duration: float | None) -> None:
    """Until a signal (or --duration): the main thread only waits, so signals are handled at once."""
    deadline = time.monotonic() + duration if duration else None
    while not stop.wait(_remaining(deadline)):
        if deadline is not None and time.monotonic() >= deadline:
            return


def _remaining(deadline: float | None) -> float:
    return 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))


def _state_path(settings: Settings, config: str | None) -> str:
    """STATE_PATH, except in demo mode (no keys) without an explicit one: state/demo.db."""
    explicit = "STATE_PATH" in os.environ or (config is not None and "STATE_PATH" in read_config_file(config))
    return settings.state_path if settings.live or explicit else DEMO_STATE_PATH


EXIT_CLOSED_PIPE = 141  # as a shell reports a command ended by SIGPIPE


def guarded_main() -> int:
    """main(), ending quietly when the reader of our output goes away (`main.py trade list | head`):
    no traceback, the remaining output discarded, exit 141 as for any command cut off by a pipe."""
    try:
        code = main()
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the flush at exit must not fail again
        return EXIT_CLOSED_PIPE


if __name__ == "__main__":
    sys.exit(guarded_main())
