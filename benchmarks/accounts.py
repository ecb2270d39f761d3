"""Many accounts: one daemon guarding N accounts, and the same accounts split over shards.

    python -m benchmarks.accounts [--accounts 50] [--positions 40] [--shards 1,2] [--latency-ms 150]
                                  [--duration 120] [--reference-accounts 5] [--seed 1]

For each shard count a fresh simulator serves every account (one IP: the per-IP limits shared as on
Bybit) with a demo book of `--positions` per account, prices moving as in the main benchmark; the
accounts are groups of a leader and four followers in one ACCOUNTS_FILE; each shard is `main.py
--shard I/N` as its own process with IP_BUDGET_SHARE 1/N. Figures: adoption (every position on
the exchange with a stop), then over the steady state (the second half of the run): TP1 ->
breakeven p95 from the daemons' journals, late checks, 10006 and 403 answers, stream handshakes
per 5 minutes, CPU s/min and peak RSS per process. A reference run with `--reference-accounts`
gives the cost of each extra account (CPU and RSS over the difference in accounts). Then, after
the steady state of the one-process run, every stream is dropped at once and handshakes are refused for 15 s while TP1
fills on one symbol every account holds: the breakevens come by REST meanwhile; then the time until
every account's stream is healthy again and the handshakes spent.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import orjson

from benchmarks.__main__ import (
    _all_stopped,
    _cpu_seconds,
    _free_port,
    _late_checks,
    _metric_lines,
    _steady_reactions,
)
from messages.models import OrderLink, Role
from runtime.stats import percentile
from settings import PARSERS
from simulator import Simulator, account_names

ROOT = Path(__file__).resolve().parents[1]
GROUP = 5  # a leader and four followers
REFUSE_S = 15.0
DROP_PHASE_S = 60.0  # after the steady state: the drop, 15 s of refused handshakes, the way back


def accounts_file(path: Path, sim: Simulator) -> dict[str, str]:
    """An ACCOUNTS_FILE of the simulator's accounts in groups of a leader and four followers (same
    qty); returns the variables it names, holding each account's key and secret."""
    names, tables, variables = tuple(sim.credentials), [], {}
    for index, name in enumerate(names):
        leader = names[index - index % GROUP]
        role = "" if name == leader else f'role = "follower"\nleader = "{leader}"\nsizing = "same_qty"\n'
        tables.append(f'[accounts.{name}]\napi_key_env = "KEY_{name}"\napi_secret_env = "SECRET_{name}"\n{role}')
        variables[f"KEY_{name}"] = sim.credentials[name].api_key
        variables[f"SECRET_{name}"] = sim.credentials[name].api_secret
    path.write_text("\n".join(tables))
    return variables


def healthy_streams(port: int) -> int | None:
    lines = _metric_lines(port)
    if lines is None:
        return None
    return sum(1 for line in lines if line.startswith("guardian_stream_healthy{") and line.endswith(" 1.0"))


def handshakes(sim: Simulator) -> int:
    stats = sim.ws_stats
    return sum(n for key, n in stats.items() if key.startswith(("connections:", "handshakes_")))


def at_breakeven(sim: Simulator, account: str, symbol: str) -> bool:
    position = sim.account(account).positions.get(symbol)
    if position is None or position.size == 0:
        return False
    sign = 1 if position.side == "Buy" else -1
    return any(
        (link := OrderLink.parse(o.link_id)) is not None
        and link.role is Role.STOP
        and o.qty >= position.size
        and (o.trigger_price - position.avg_price) * sign > 0
        for o in sim.account(account).open_orders(symbol)
    )


def tp1_through(sim: Simulator, account: str, symbol: str) -> bool:
    """Move the price through the account's TP1 on `symbol` (False: it has none resting)."""
    tp1 = next(
        (
            o
            for o in sim.account(account).open_orders(symbol)
            if (link := OrderLink.parse(o.link_id)) is not None and link.role is Role.TAKE_PROFIT and link.level == 1
        ),
        None,
    )
    if tp1 is None:
        return False
    sim.set_price(symbol, tp1.price * (Decimal("1.002") if tp1.side == "Sell" else Decimal("0.998")))
    return True


def run(accounts: int, positions: int, shards: int, latency_ms: float, duration: float, seed: int, drop: bool) -> dict:
    names = account_names(accounts)
    sim = Simulator(seed=seed, accounts=names, symbols=positions + 8, latency_ms=latency_ms, jitter_ms=latency_ms / 10)
    book = sim.load_demo_book(positions)
    sim.start(step_interval=0.25)
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-accounts-{accounts}x{positions}-{shards}-"))
    env = {k: v for k, v in os.environ.items() if k not in PARSERS}
    env.update(accounts_file(workdir / "accounts.toml", sim))
    env.update(
        {
            "ACCOUNTS_FILE": str(workdir / "accounts.toml"),
            "BYBIT_BASE_URL": sim.url,
            "BYBIT_WS_PRIVATE_URL": sim.ws_private,
            "BYBIT_WS_PUBLIC_URL": sim.ws_public,
            "STATE_PATH": str(workdir / "state.db"),
            "IP_BUDGET_SHARE": str(round(1 / shards, 4)),
        }
    )
    ports = [_free_port() for _ in range(shards)]
    processes, logs = [], []
    lifetime = duration + (DROP_PHASE_S if drop else 0)  # the drop comes after the steady state
    try:
        sim.stats.reset()
        for index, port in enumerate(ports):
            logs.append(open(workdir / f"log{index}.txt", "w"))  # noqa: SIM115 (closed below)
            command = [sys.executable, "main.py", "--shard", f"{index}/{shards}", "--duration", str(lifetime)]
            command += ["--summary-json", str(workdir / f"summary{index}.json")]
            processes.append(
                subprocess.Popen(
                    command,
                    cwd=ROOT,
                    env={**env, "METRICS_ADDRESS": f"127.0.0.1:{port}"},
                    stdout=logs[-1],
                    stderr=logs[-1],
                )
            )
        started = time.monotonic()
        adopted_at = None
        while adopted_at is None or time.monotonic() - started < duration / 2:
            if any(p.poll() is not None for p in processes):
                raise RuntimeError(f"a shard ended early: see {workdir}")
            if adopted_at is None and _all_stopped(sim):
                adopted_at = time.monotonic() - started
            time.sleep(0.25)
        since_ms, warm_at = int(time.time() * 1000), time.monotonic()
        cpu = [_cpu_seconds(p.pid) for p in processes]
        late = [_late_checks(port) for port in ports]
        shakes = handshakes(sim)
        warm = sim.stats.snapshot()
        time.sleep(max(0.0, duration - (time.monotonic() - started) - 1.5))
        minutes = (time.monotonic() - warm_at) / 60
        until_ms = int(time.time() * 1000)
        cpu = [_cpu_seconds(p.pid) - c for p, c in zip(processes, cpu, strict=True)]
        late_after = [_late_checks(port) for port in ports]
        shakes_per_5min = (handshakes(sim) - shakes) / minutes * 5
        steady_stats = sim.stats.snapshot()
        dropped = drop_all_streams(sim, ports, book) if drop else None
        for process in processes:
            if process.wait(timeout=lifetime + 300) != 0:
                raise RuntimeError(f"a shard did not stop cleanly: see {workdir}")
        stats = sim.stats.snapshot()
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
        for log in logs:
            log.close()
        sim.stop()
    summaries = [orjson.loads((workdir / f"summary{i}.json").read_bytes()) for i in range(shards)]
    reactions = [
        r
        for i in range(shards)
        for r in _steady_reactions(workdir / f"state-shard{i}of{shards}.db", since_ms, until_ms)
    ]
    steady_calls = steady_stats["total"] - warm["total"]
    return {
        "accounts": accounts,
        "positions": positions,
        "monitors": accounts * positions,
        "shards": shards,
        "adoption_s": adopted_at,
        "react_p95_steady": percentile(reactions, 0.95, None),
        "reactions": len(reactions),
        "late_steady": sum((b or 0) - (a or 0) for a, b in zip(late, late_after, strict=True)),
        "late_whole_run": sum(s.get("late_checks", 0) for s in summaries),
        "rate_limited_10006": stats["rate_limited_10006"],
        "ip_banned_403": stats["ip_banned_403"],
        "handshakes_steady_per_5min": shakes_per_5min,
        "calls_per_min_steady": steady_calls / minutes,
        "cpu_s_per_min": [c / minutes for c in cpu],
        "peak_rss_mb": [s["process"]["peak_rss_mb"] for s in summaries],
        "drop": dropped,
        "workdir": str(workdir),
    }


def drop_all_streams(sim: Simulator, ports: list[int], book: list) -> dict:
    """Every stream dropped at once, handshakes refused for REFUSE_S while TP1 fills on one
    symbol every account holds: breakevens by REST; then every stream back."""
    before = handshakes(sim)
    reads_before = sim.stats.requests(endpoint="/v5/position/list")
    sim.add_fault(kind="ws_refuse")
    sim.drop_streams()
    dropped_at = time.monotonic()
    symbol = next((e.symbol for e in book if e.kind == "monitoring" and tp1_through(sim, e.account, e.symbol)), None)
    targets = [(e.account, e.symbol) for e in book if e.symbol == symbol]
    for account, _ in targets:
        tp1_through(sim, account, symbol)  # each account's own TP1 (followers' prices may differ)
    times: dict[tuple[str, str], float] = {}
    while time.monotonic() - dropped_at < REFUSE_S:
        for target in targets:
            if target not in times and at_breakeven(sim, *target):
                times[target] = time.monotonic() - dropped_at
        time.sleep(0.05)
    sim.clear_faults()
    cleared_at = time.monotonic()
    expected = len(sim.credentials)
    while sum(healthy_streams(port) or 0 for port in ports) < expected and time.monotonic() - cleared_at < 300:
        time.sleep(0.1)
    return {
        "breakevens_by_rest": f"{len(times)} of {len(targets)}",
        "breakeven_by_rest_max_s": max(times.values(), default=None),
        "healthy_again_s": time.monotonic() - cleared_at,
        "handshakes_spent": handshakes(sim) - before,
        "position_reads_meanwhile": sim.stats.requests(endpoint="/v5/position/list") - reads_before,
    }


def _f(value, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def print_row(row: dict) -> None:
    print(
        f"{row['accounts']:>8} {row['monitors']:>8} {row['shards']:>6} {_f(row['adoption_s'], '.1f'):>7} "
        f"{_f(row['react_p95_steady'], '.0f'):>10} {row['late_steady']:>11.0f} {row['late_whole_run']:>9} "
        f"{row['rate_limited_10006']:>5} {row['ip_banned_403']:>4} {_f(row['handshakes_steady_per_5min'], '.0f'):>10} "
        f"{row['calls_per_min_steady']:>9.0f} {'/'.join(_f(c) for c in row['cpu_s_per_min']):>13} "
        f"{'/'.join(_f(m, '.0f') for m in row['peak_rss_mb']):>9}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="many accounts: one process, and shards")
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--positions", type=int, default=40, help="per account")
    parser.add_argument("--shards", default="1,2")
    parser.add_argument("--latency-ms", type=float, default=150.0)
    parser.add_argument("--duration", type=float, default=120.0)
    parser.add_argument("--reference-accounts", type=int, default=5, help="0: no reference run (no per-account cost)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="write every row as JSON")
    args = parser.parse_args()
    print(
        f"{'accounts':>8} {'monitors':>8} {'shards':>6} {'adopt s':>7} {'react p95':>10} {'late steady':>11} "
        f"{'late run':>9} {'10006':>5} {'403':>4} {'hs per 5m':>10} {'calls/min':>9} {'cpu s/min':>13} {'rss MB':>9}"
    )
    rows = []
    for shards in (int(s) for s in args.shards.split(",")):
        rows.append(
            run(args.accounts, args.positions, shards, args.latency_ms, args.duration, args.seed, drop=shards == 1)
        )
        print_row(rows[-1])
    if args.reference_accounts:
        reference = run(args.reference_accounts, args.positions, 1, args.latency_ms, args.duration, args.seed, False)
        rows.append(reference)
        print_row(reference)
        whole = next(r for r in rows if r["shards"] == 1 and r["accounts"] == args.accounts)
        extra = args.accounts - args.reference_accounts
        cpu = (whole["cpu_s_per_min"][0] - reference["cpu_s_per_min"][0]) / extra
        rss = (whole["peak_rss_mb"][0] - reference["peak_rss_mb"][0]) / extra
        print(f"each extra account of {args.positions} positions: {cpu:.3f} CPU s/min, {rss:.1f} MB")
    for row in rows:
        if row["drop"]:
            d = row["drop"]
            print(
                f"all {row['accounts']} streams dropped, handshakes refused {REFUSE_S:.0f} s: breakevens by REST "
                f"{d['breakevens_by_rest']} (latest {_f(d['breakeven_by_rest_max_s'])} s after the drop), "
                f"{d['position_reads_meanwhile']} position reads; every stream healthy "
                f"{d['healthy_again_s']:.1f} s after handshakes were allowed again, {d['handshakes_spent']} handshakes"
            )
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(rows, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
