"""`python main.py trade open|plan|close|list ...`: the trader's commands, sent to the running
daemon over its socket (runtime/control.py). Every problem in the request is one line and exit 2
before anything is sent; no daemon is one line and exit 1; otherwise the daemon's answer lines
and exit code.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

from actors.supervision import read_request
from runtime.control import ask

USAGE = """python main.py trade open SYMBOL long|short --approach conservative|fast
        (--qty Q | --margin USDT --leverage L | --margin-percent P --leverage L)
        --tps T1[,T2,T3,T4] --stop S [--limits P2,P3] [--account leader|all|NAME[,NAME]] [--dry-run]
        [--stop-after breakeven|previous_tp|two_back] [--trigger-by last|mark|index] [--time-limit MINUTES]
        [--trail PERCENT] [--trail-after tp1|tp2|tp3|tp4|profit:PERCENT]
    python main.py trade plan SYMBOL --tps T1[,...] --stop S [--account ...] [the exits of open]
    python main.py trade close SYMBOL [--account ...]
    (--account: the leader by default; `all` (or `both`) is every account of the daemon, followers
    sized by their rule; --shard I/N talks to that shard's daemon)
    python main.py trade list [--json]"""


def parse(argv: list[str]) -> argparse.Namespace:
    """Shape only (argparse exits 2 on an unknown option); values are checked by read_request."""
    parser = argparse.ArgumentParser(prog="python main.py trade", usage=USAGE)
    commands = parser.add_subparsers(dest="command", required=True)
    opened = commands.add_parser("open", usage=USAGE)
    opened.add_argument("symbol")
    opened.add_argument("side")
    for name in ("--approach", "--qty", "--margin", "--margin-percent", "--leverage", "--tps", "--stop", "--limits"):
        opened.add_argument(name)
    for name in ("--stop-after", "--trigger-by", "--time-limit", "--trail", "--trail-after"):
        opened.add_argument(name)
    opened.add_argument("--account")
    opened.add_argument("--dry-run", action="store_true")
    planned = commands.add_parser("plan", usage=USAGE)
    planned.add_argument("symbol")
    for name in ("--tps", "--stop", "--stop-after", "--trigger-by", "--time-limit", "--trail", "--trail-after"):
        planned.add_argument(name)
    planned.add_argument("--account")
    closed = commands.add_parser("close", usage=USAGE)
    closed.add_argument("symbol")
    closed.add_argument("--account")
    listed = commands.add_parser("list", usage=USAGE)
    listed.add_argument("--json", action="store_true")
    for sub in (opened, planned, closed, listed):
        sub.add_argument("--config", help="KEY=value settings file (to find the daemon's state path)")
        sub.add_argument("--shard", metavar="I/N", help="the daemon of this shard (as it was started)")
    return parser.parse_args(argv)


def request_of(args: argparse.Namespace) -> dict:
    fields = (
        "symbol",
        "side",
        "approach",
        "qty",
        "margin",
        "margin_percent",
        "leverage",
        "tps",
        "stop",
        "limits",
        "account",
        "dry_run",
        "stop_after",
        "trigger_by",
        "time_limit",
        "trail",
        "trail_after",
    )
    return {"command": args.command, **{f: getattr(args, f) for f in fields if getattr(args, f, None) is not None}}


def run(args: argparse.Namespace, socket: Path, ladder_levels: int) -> int:
    request = request_of(args)
    _, problems = read_request(request, ladder_levels)
    if problems:
        for problem in problems:
            print(f"trade {args.command}: {problem}", file=sys.stderr)
        return 2
    reply = ask(socket, request)
    if reply is None:
        print(
            f"trade {args.command}: the daemon is not running (nothing listens on {socket}); nothing was sent",
            file=sys.stderr,
        )
        return 1
    code = int(reply.get("exit", 1))
    if args.command == "list" and getattr(args, "json", False) and code == 0:
        print(orjson.dumps(reply.get("plans", []), option=orjson.OPT_INDENT_2).decode())
        return 0
    for line in reply.get("lines", []):
        print(line if code == 0 else f"trade {args.command}: {line}", file=sys.stdout if code == 0 else sys.stderr)
    return code
