"""What an operator points at the running daemon: `/metrics` (parsed with prometheus-client's own
parser), `/healthz`, and `main.py status` live."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.error
import urllib.request

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import ROOT, Daemon, wait_until
from tests.e2e.harness import world as e2e_world

pytestmark = pytest.mark.slow

FAMILIES = {
    "guardian_monitors",
    "guardian_checks",
    "guardian_check_duration_seconds",
    "guardian_wave_duration_seconds",
    "guardian_exchange_requests",
    "guardian_exchange_errors",
    "guardian_exchange_retcodes",
    "guardian_rate_limited",
    "guardian_ip_banned",
    "guardian_cache_lookups",
    "guardian_tp1_to_breakeven_seconds",
    "guardian_unprotected_positions",
    "guardian_unprotected_longest_seconds",
    "guardian_persistence_commits",
    "guardian_persistence_flushes",
    "guardian_persistence_commit_seconds",
    "guardian_account_read_age_seconds",
    "guardian_late_checks",
    "guardian_threads",
    "process_cpu_seconds",
    "process_resident_memory_bytes",
}


@pytest.fixture
def world(tmp_path):
    with e2e_world(tmp_path, seed=21, positions=12) as made:
        yield made


def server_url(d: Daemon) -> str:
    line = d.wait_for(lambda m: m.startswith("Operations server on "), 10, "the operations server")
    return line.split()[3]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def scrape(url: str) -> dict[str, dict[tuple, float]]:
    status, body = get(url + "/metrics")
    assert status == 200
    families = {}
    for family in text_string_to_metric_families(body.decode()):
        families[family.name] = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}
    return families


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_metrics_are_scraped_and_agree_with_the_summary(world):
    _sim, _book, daemon = world
    d = daemon("--duration", "8").start()
    url = server_url(d)
    wait_until(lambda: scrape(url)["guardian_checks"], 10, "checks counted")
    families = scrape(url)
    assert set(families) >= FAMILIES, FAMILIES - set(families)
    assert d.process.wait(timeout=30) == 0
    summary = d.summary()
    # Counters only grow: the last scrape is at most the final figure, and close to it.
    requests = {dict(labels)["endpoint"]: 0.0 for (name, labels) in families["guardian_exchange_requests"]}
    for (name, labels), value in families["guardian_exchange_requests"].items():
        if name.endswith("_total"):
            requests[dict(labels)["endpoint"]] += value
    for endpoint, scraped in requests.items():
        assert scraped <= summary["api_calls"]["by_endpoint"][endpoint]
    scraped_checks = sum(v for (name, _), v in families["guardian_checks"].items() if name.endswith("_total"))
    assert 0 < scraped_checks <= summary["checks"]
    monitors = sum(families["guardian_monitors"].values())
    assert monitors == summary["monitors"]["open_at_exit"] == 24
    commits = families["guardian_persistence_commits"][("guardian_persistence_commits_total", ())]
    assert 0 < commits <= summary["persistence"]["critical_commits"]


def test_healthz_turns_503_when_reads_fail_past_the_stale_limit_and_200_after(world):
    sim, _book, daemon = world
    d = daemon(STALE_LIMIT_SECONDS="3", BYBIT_STREAMS="false").start()  # REST reads are the freshness here
    url = server_url(d)
    wait_until(lambda: get(url + "/healthz")[0] == 200, 10, "healthy")
    sim.add_fault(kind="http_5xx", account="mirror", status=503)
    _status, body = wait_until(lambda: (a := get(url + "/healthz"))[0] == 503 and a, 20, "unhealthy")
    assert body.decode().startswith("mirror was last read") and body.count(b"\n") == 1
    sim.clear_faults()
    wait_until(lambda: get(url + "/healthz")[0] == 200, 30, "healthy again")
    assert d.stop() == 0


def test_status_shows_the_running_daemons_monitors_live(world):
    _sim, _book, daemon = world
    port = free_port()
    d = daemon(METRICS_ADDRESS=f"127.0.0.1:{port}").start()
    wait_until(lambda: orjson.loads(get(f"http://127.0.0.1:{port}/status")[1])["monitors"], 10, "monitors")
    env = {**d.env, "BYBIT_BASE_URL": "http://127.0.0.1:9"}  # status must not need the exchange
    table = subprocess.run(
        [sys.executable, "main.py", "status"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith("24 monitors, live from http://127.0.0.1:") and "healthy" in lines[0]
    assert lines[3].split()[:9] == ["account", "symbol", "side", "phase", "size", "tier", "due", "in", "last"]
    as_json = subprocess.run(
        [sys.executable, "main.py", "status", "--json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )
    report = orjson.loads(as_json.stdout)
    assert report["source"] == "live" and len(report["monitors"]) == 24
    assert {m["account"] for m in report["monitors"]} == {"main", "mirror"}
    assert all(m["tier"] in ("critical", "active", "standard", "inactive", "idle") for m in report["monitors"])
    assert d.stop() == 0


def test_an_address_already_in_use_is_one_line_and_exit_2(world):
    sim, _book, daemon = world
    assert sim.stats.requests() == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        d = daemon(METRICS_ADDRESS=f"127.0.0.1:{port}")
        result = subprocess.run(
            [sys.executable, "main.py"], cwd=ROOT, env=d.env, capture_output=True, text=True, timeout=30
        )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"invalid setting: METRICS_ADDRESS: cannot listen on 127.0.0.1:{port} (Address already in use)"
    ]
    assert sim.stats.requests() == 0  # refused before anything started
