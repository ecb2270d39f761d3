"""Side by side: the daemon on pushes (`actors`), the daemon polling REST only (`actors-rest`,
BYBIT_STREAMS=false) and the old per-monitor polling (`baseline`), on one simulated exchange.

    python -m benchmarks [--positions 32,100,1000,2500] [--latency-ms 150] [--duration 60] [--json FILE] [--chart FILE]
    python -m benchmarks --designs actors --positions 2500 --duration 300      # a longer scale run
    python -m benchmarks --designs actors --positions 1000 --idle              # prices frozen: the idle floor

For each book size (positions per account, main and mirror) and design, a fresh simulator with
the same seed, price steps and latency; the design under test runs as its own process (so its
CPU and memory are its own): `benchmarks/baseline.py`, or the real daemon (`main.py`) with its
normal settings. Figures: cycle (baseline) or wave (actors) time, API calls per minute by
endpoint, 10006/403 answers, cache hit rate, TP1-to-breakeven reaction, CPU seconds per minute,
peak RSS, persistence writes per hour, and the ratios actors/baseline. For the daemon also the
steady state (the second half of the run, or from adoption's end if that is later): CPU seconds
per minute, late checks, TP1-to-breakeven p95 (from the daemon's event journal), threads; and
adoption: the seconds until every open position on the exchange has a stop, against its floor
(the orders written until then over what Bybit allows one account per second: 10 single plus 10
batched).
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import requests

from messages.endpoints import Api
from runtime.stats import percentile
from settings import PARSERS
from simulator import Simulator

ROOT = Path(__file__).resolve().parents[1]
WRITES = (
    Api.PLACE_ORDER,
    Api.AMEND_ORDER,
    Api.CANCEL_ORDER,
    Api.CANCEL_ALL,
    Api.PLACE_BATCH,
    Api.AMEND_BATCH,
    Api.CANCEL_BATCH,
)


WRITES_PER_SECOND = 20  # one account: 10 single orders plus 10 in batches (bybit-v5.md section 2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    """The process's user + system CPU so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _threads(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))


def _steady_reactions(state_db: Path, since_ms: int, until_ms: int = 2**62) -> list[float]:
    """TP1 -> breakeven reactions (ms) of the breakevens recorded from `since_ms` to `until_ms`
    (wall clock), from the daemon's own event journal."""
    with sqlite3.connect(f"file:{state_db}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT payload FROM events WHERE event = 'breakeven' AND time_ms >= ? AND time_ms < ?",
            (since_ms, until_ms),
        )
        reactions = [orjson.loads(payload).get("reaction_ms") for (payload,) in rows]
    return [float(r) for r in reactions if r is not None]


def _metric_lines(port: int) -> list[str] | None:
    """The daemon's /metrics, line by line (None: it does not answer)."""
    try:
        return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text.splitlines()
    except requests.RequestException:
        return None


def _late_checks(port: int) -> float | None:
    lines = _metric_lines(port)
    if lines is None:
        return None
    return next((float(line.split()[1]) for line in lines if line.startswith("guardian_late_checks_total ")), None)


def _all_stopped(sim: Simulator) -> bool:
    """Every open position on the exchange has a stop (the daemon's or the trader's)."""
    with sim.exchange.lock:
        for name in sim.credentials:
            account = sim.account(name)
            for row in account.all_positions():
                if row.size > 0 and not any(
                    o.is_conditional for o in account.open_orders(row.symbol, row.position_idx)
                ):
                    return False
    return True


def _written(stats: dict) -> int:
    """The most orders one account wrote (each batched order counts, as Bybit counts it)."""
    return max(
        (
            sum(n for endpoint, n in endpoints.items() if endpoint in WRITES and "batch" not in endpoint)
            + stats.get("batched_orders", {}).get(account, 0)
            for account, endpoints in stats["requests"].items()
            if account in ("main", "mirror")
        ),
        default=0,
    )


def run(design: str, positions: int, latency_ms: float, duration: float, seed: int = 1, idle: bool = False) -> dict:
    sim = Simulator(seed=seed, symbols=positions + 8, latency_ms=latency_ms, jitter_ms=latency_ms / 10)
    sim.load_demo_book(positions)
    sim.start(step_interval=None if idle else 0.25)
    metrics_port = _free_port()
    creds = sim.credentials
    env = {k: v for k, v in os.environ.items() if k not in PARSERS}
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{design}-"))
    out = workdir / "result.json"
    try:
        sim.stats.reset()
        if design == "baseline":
            env["BENCH_KEYS"] = ",".join(f"{n}:{c.api_key}:{c.api_secret}" for n, c in creds.items())
            command = [
                sys.executable,
                "-m",
                "benchmarks.baseline",
                "--url",
                sim.url,
                "--duration",
                str(duration),
                "--out",
                str(out),
            ]
        else:
            env.update(
                {
                    "BYBIT_API_KEY": creds["main"].api_key,
                    "BYBIT_API_SECRET": creds["main"].api_secret,
                    "ENABLE_MIRROR_TRADING": "true",
                    "BYBIT_API_KEY_2": creds["mirror"].api_key,
                    "BYBIT_API_SECRET_2": creds["mirror"].api_secret,
                    "BYBIT_BASE_URL": sim.url,
                    "STATE_PATH": str(workdir / "state.db"),
                    "METRICS_ADDRESS": f"127.0.0.1:{metrics_port}",
                    **(
                        {"BYBIT_STREAMS": "false"}
                        if design == "actors-rest"
                        else {"BYBIT_WS_PRIVATE_URL": sim.ws_private, "BYBIT_WS_PUBLIC_URL": sim.ws_public}
                    ),
                }
            )
            command = [sys.executable, "main.py", "--duration", str(duration), "--summary-json", str(out)]
        steady: dict = {}
        with open(workdir / "log.txt", "w") as log:
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
            started = time.monotonic()
            adopted_at = adopted_writes = None
            # The steady state: the second half of the run, or from adoption's end if that is later.
            while process.poll() is None and (adopted_at is None or time.monotonic() - started < duration / 2):
                if adopted_at is None and design != "baseline" and _all_stopped(sim):
                    adopted_at, adopted_writes = time.monotonic() - started, _written(sim.stats.snapshot())
                elif design == "baseline" and time.monotonic() - started >= duration / 2:
                    break
                time.sleep(0.25)
            warm, warm_at = sim.stats.snapshot(), time.monotonic()
            if design != "baseline" and process.poll() is None:
                steady = {"cpu": _cpu_seconds(process.pid), "late": _late_checks(metrics_port)}
                steady["since_ms"] = int(time.time() * 1000)
                steady["threads"] = _threads(process.pid)
                # Sample again just before the daemon's own end (it exits after --duration).
                remaining = duration - (time.monotonic() - started) - 1.0
                if remaining > 0 and process.poll() is None:
                    time.sleep(remaining)
                    steady["minutes"] = (time.monotonic() - warm_at) / 60
                    steady["cpu"] = _cpu_seconds(process.pid) - steady["cpu"]
                    late = _late_checks(metrics_port)
                    steady["late"] = None if late is None or steady["late"] is None else late - steady["late"]
            pages = sum(
                math.ceil(sum(len(o) for o in sim.account(a).open_by_symbol.values()) / 50)
                + math.ceil(len(sim.account(a).positions) / 200)
                for a in creds
            )
            ended = process.wait(timeout=duration * 3 + 300)
            steady_minutes = (time.monotonic() - warm_at) / 60
            if ended != 0:
                raise subprocess.CalledProcessError(ended, command)
        stats = sim.stats.snapshot()
    finally:
        sim.stop()
    result = orjson.loads(out.read_bytes())
    steady_reactions = _steady_reactions(workdir / "state.db", steady["since_ms"]) if "since_ms" in steady else []
    minutes = duration / 60
    by_endpoint: dict[str, float] = {}
    for endpoints in stats["requests"].values():
        for endpoint, n in endpoints.items():
            by_endpoint[endpoint] = by_endpoint.get(endpoint, 0) + n / minutes
    steady_writes = sum(
        n - warm["requests"].get(account, {}).get(endpoint, 0)
        for account, endpoints in stats["requests"].items()
        for endpoint, n in endpoints.items()
        if endpoint in WRITES
    )
    row = {
        "design": design,
        "positions": positions,
        "monitors": 2 * positions,
        "api_calls_per_min": stats["total"] / minutes,
        "by_endpoint_per_min": by_endpoint,
        "steady_calls_per_min": (stats["total"] - warm["total"]) / steady_minutes,
        "steady_commands_per_min": steady_writes / steady_minutes,
        "snapshot_pages": pages,
        "rate_limited_10006": stats["rate_limited_10006"],
        "ip_banned_403": stats["ip_banned_403"],
    }
    if design == "baseline":
        cycles, reactions = result["cycles"], result["reactions_ms"]
        row.update(
            cycle_p50=percentile(cycles, 0.5, None),
            cycle_p95=percentile(cycles, 0.95, None),
            cycles=len(cycles),
            hit_rate=0.0,
            reaction_p50=percentile(reactions, 0.5, None),
            reaction_p95=percentile(reactions, 0.95, None),
            reaction_max=max(reactions, default=None),
            reactions=len(reactions),
            cpu_s_per_min=result["cpu_s"] / minutes,
            peak_rss_mb=result["peak_rss_mb"],
            persistence_writes_per_hour=None,
            pool_full_warnings=result["pool_full_warnings"],
            errors=result["errors"],
            late_checks=None,
        )
    else:
        waves, reaction = result.get("waves", {}), result.get("tp1_to_breakeven_ms", {})
        persistence = result.get("persistence", {})
        row.update(
            cycle_p50=waves.get("seconds_p50"),
            cycle_p95=waves.get("seconds_p95"),
            cycles=waves.get("count"),
            hit_rate=result.get("cache", {}).get("hit_rate"),
            reaction_p50=reaction.get("p50") if reaction.get("count") else None,
            reaction_p95=reaction.get("p95") if reaction.get("count") else None,
            reaction_max=reaction.get("max") if reaction.get("count") else None,
            reactions=reaction.get("count"),
            cpu_s_per_min=result["process"]["cpu_s"] / minutes,
            peak_rss_mb=result["process"]["peak_rss_mb"],
            persistence_writes_per_hour=(persistence.get("critical_commits", 0) + persistence.get("batched_flushes", 0))
            * 60
            / minutes,
            pool_full_warnings=0,
            errors=sum(sum(e.values()) for e in result.get("errors", {}).values()),
            late_checks=result.get("late_checks"),
            checks=result.get("checks"),
            first_snapshots_s=result.get("first_snapshots_s"),
            pushes=result.get("streams", {}).get("pushes"),
            adoption_s=adopted_at,
            adoption_floor_s=None if adopted_writes is None else adopted_writes / WRITES_PER_SECOND,
            steady_cpu_s_per_min=steady["cpu"] / steady["minutes"] if "minutes" in steady else None,
            steady_late_checks=steady.get("late"),
            steady_reaction_p95=percentile(steady_reactions, 0.95, None),
            threads=steady.get("threads"),
        )
    return row


def _fmt(value, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[dict]) -> None:
    header = (
        f"{'design':11} {'pos/acct':>8} {'cycle p50':>9} {'cycle p95':>9} {'calls/min':>9} {'10006':>5} {'403':>4} "
        f"{'hit rate':>8} {'react p50':>9} {'react p95':>9} {'react max':>9} {'cpu s/min':>9} {'rss MB':>7} "
        f"{'writes/h':>8} {'late':>5} {'steady/min':>10} {'floor/min':>9} {'1st snap':>8} "
        f"{'cpu steady':>10} {'late steady':>11} {'react p95 steady':>16} {'threads':>7} {'adopt s':>7} "
        f"{'adopt floor':>11}"
    )
    print(header)
    for r in rows:
        print(
            f"{r['design']:11} {r['positions']:>8} {_fmt(r['cycle_p50']):>9} {_fmt(r['cycle_p95']):>9} "
            f"{_fmt(r['api_calls_per_min'], '.0f'):>9} {r['rate_limited_10006']:>5} {r['ip_banned_403']:>4} "
            f"{_fmt(r['hit_rate'], '.1%'):>8} {_fmt(r['reaction_p50'], '.0f'):>9} {_fmt(r['reaction_p95'], '.0f'):>9} "
            f"{_fmt(r['reaction_max'], '.0f'):>9} {_fmt(r['cpu_s_per_min']):>9} {_fmt(r['peak_rss_mb'], '.0f'):>7} "
            f"{_fmt(r['persistence_writes_per_hour'], '.0f'):>8} {_fmt(r.get('late_checks'), 'd'):>5} "
            f"{_fmt(r['steady_calls_per_min'], '.1f'):>10} {_fmt(floor(r), '.1f'):>9} "
            f"{_fmt(r.get('first_snapshots_s'), '.1f'):>8} {_fmt(r.get('steady_cpu_s_per_min')):>10} "
            f"{_fmt(r.get('steady_late_checks'), '.0f'):>11} {_fmt(r.get('steady_reaction_p95'), '.0f'):>16} "
            f"{_fmt(r.get('threads'), 'd'):>7} "
            f"{_fmt(r.get('adoption_s'), '.1f'):>7} {_fmt(r.get('adoption_floor_s'), '.1f'):>11}",
            flush=True,
        )


def floor(row: dict) -> float | None:
    """The push design's floor in the steady state: the commands it sent plus one full snapshot
    (its pages, both accounts) per RESYNC_SECONDS (60 s), per minute."""
    if row["design"] != "actors":
        return None
    return row["steady_commands_per_min"] + row["snapshot_pages"] * 60 / 60.0


def ratios(rows: list[dict]) -> list[dict]:
    out = []
    for size in sorted({r["positions"] for r in rows}):
        pair = {r["design"]: r for r in rows if r["positions"] == size}
        for design in ("actors-rest", "actors"):
            if {design, "baseline"} <= set(pair):
                a, b = pair[design], pair["baseline"]
                ratio = lambda k: (a[k] / b[k]) if a.get(k) is not None and b.get(k) else None
                out.append(
                    {
                        "design": design,
                        "positions": size,
                        "api_calls": ratio("api_calls_per_min"),
                        "cycle_p95": ratio("cycle_p95"),
                        "cpu": ratio("cpu_s_per_min"),
                        "rss": ratio("peak_rss_mb"),
                        "reaction_p95": ratio("reaction_p95"),
                    }
                )
    return out


def chart(rows: list[dict], path: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no chart", file=sys.stderr)
        return False
    figure, (calls, cycle) = plt.subplots(1, 2, figsize=(11, 4.2))
    for design, marker in (("baseline", "o"), ("actors-rest", "^"), ("actors", "s")):
        mine = sorted((r for r in rows if r["design"] == design), key=lambda r: r["positions"])
        if not mine:
            continue
        sizes = [r["positions"] for r in mine]
        calls.plot(sizes, [r["api_calls_per_min"] for r in mine], marker=marker, label=design)
        cycle.plot(sizes, [r["cycle_p95"] or 0 for r in mine], marker=marker, label=design)
    for axis, title, unit in (
        (calls, "API calls per minute", "calls/min"),
        (cycle, "cycle / wave time p95", "seconds"),
    ):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("positions per account (2 accounts)")
        axis.set_ylabel(unit)
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description="actor design vs the old per-monitor polling")
    parser.add_argument("--positions", default="32,100,1000,2500")
    parser.add_argument("--latency-ms", type=float, default=150.0)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--designs", default="baseline,actors-rest,actors")
    parser.add_argument("--idle", action="store_true", help="prices frozen: nothing trades (the idle floor)")
    parser.add_argument("--json", help="write every row and the ratios as JSON")
    parser.add_argument("--chart", help="write a PNG chart (needs matplotlib: the bench extra)")
    args = parser.parse_args()
    rows = []
    started = time.monotonic()
    for positions in (int(p) for p in args.positions.split(",")):
        for design in args.designs.split(","):
            rows.append(run(design, positions, args.latency_ms, args.duration, idle=args.idle))
            print_table(rows[-1:]) if len(rows) > 1 else print_table(rows)
    print()
    print_table(rows)
    for r in ratios(rows):
        print(
            f"{r['design']}/baseline at {r['positions']} positions/account: API calls x{_fmt(r['api_calls'], '.4f')}, "
            f"cycle p95 x{_fmt(r['cycle_p95'], '.3f')}, CPU x{_fmt(r['cpu'], '.2f')}, RSS x{_fmt(r['rss'], '.2f')}, "
            f"reaction p95 x{_fmt(r['reaction_p95'], '.2f')}"
        )
    print(
        f"({time.monotonic() - started:.0f} s in all; latency {args.latency_ms:.0f} ms, {args.duration:.0f} s per run"
        f"{'; prices frozen' if args.idle else ''})"
    )
    if args.json:
        Path(args.json).write_bytes(
            orjson.dumps(
                {"rows": rows, "ratios": ratios(rows), "latency_ms": args.latency_ms, "duration_s": args.duration},
                option=orjson.OPT_INDENT_2,
            )
        )
    if args.chart:
        chart(rows, args.chart)


if __name__ == "__main__":
    main()
