"""Do alerts slow the guard? `python -m benchmarks.alerts [--duration 60] [--positions 32] [--seed 0]`.

Runs the demo daemon twice with the same seed, each as its own process: once with no alerts
configured, once with `ALERT_URLS` pointing at a loopback chat service that hangs every request
for the whole run. Prints the monitors' check times and wave times of both runs, and how many
alerts waited in the outbox at the end of the hanging run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson

from settings import PARSERS
from tests.stubs.receiver import Receiver

ROOT = Path(__file__).resolve().parents[1]


def run(label: str, duration: float, positions: int, seed: int, alert_url: str | None) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-alerts-{label}-"))
    env = {k: v for k, v in os.environ.items() if k not in PARSERS}
    env.update(METRICS_ADDRESS="127.0.0.1:0", **({"ALERT_URLS": alert_url} if alert_url else {}))
    summary = workdir / "summary.json"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "main.py"),
            "--duration",
            str(duration),
            "--positions",
            str(positions),
            "--seed",
            str(seed),
            "--summary-json",
            str(summary),
        ],
        cwd=workdir,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=duration + 120,
    )
    figures = orjson.loads(summary.read_bytes())
    return {
        "label": label,
        "checks": figures["checks"],
        "check_p50_ms": 1000 * figures["check_seconds"]["p50"],
        "check_p95_ms": 1000 * figures["check_seconds"]["p95"],
        "wave_p50_s": figures["waves"]["seconds_p50"],
        "wave_p95_s": figures["waves"]["seconds_p95"],
        "late_checks": figures["late_checks"],
        "events": sum(figures.get("events", {}).values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.alerts", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--positions", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    receiver = Receiver()
    receiver.mode, receiver.hang_seconds = "hang", args.duration + 60
    try:
        rows = [
            run("no alerts", args.duration, args.positions, args.seed, None),
            run("hanging alert endpoint", args.duration, args.positions, args.seed, receiver.url),
        ]
    finally:
        receiver.close()
    print(
        f"{args.positions} positions per account, {args.duration:.0f} s each, seed {args.seed}; "
        f"the hanging endpoint was tried {receiver.attempts} times and answered none"
    )
    print("| run | checks | check p50 | check p95 | wave p50 | wave p95 | late checks | journal events |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['label']} | {r['checks']} | {r['check_p50_ms']:.1f} ms | {r['check_p95_ms']:.1f} ms | "
            f"{r['wave_p50_s']:.2f} s | {r['wave_p95_s']:.2f} s | {r['late_checks']} | {r['events']} |"
        )


if __name__ == "__main__":
    main()
