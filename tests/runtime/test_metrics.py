"""The published figures (runtime/metrics.py): health, derived gauges, and that the dashboard and
docs/operations.md name exactly the metrics that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from messages.models import MonitorId, Urgency
from runtime.clock import FakeClock
from runtime.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
BTC, ETH = MonitorId("main", "BTCUSDT"), MonitorId("mirror", "ETHUSDT")


def families(metrics: Metrics) -> dict[str, list]:
    text = generate_latest(metrics.registry).decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def guardian_names(metrics: Metrics) -> set[str]:
    return {family.name for family in metrics.registry.collect() if family.name.startswith("guardian_")}


def test_health_needs_a_recent_tick_and_every_account_read_within_its_stale_limit():
    clock = FakeClock()
    metrics = Metrics(clock, ("main", "mirror"), stale_limit=90.0)
    assert metrics.health() == (False, "the scheduler has not started")
    metrics.ticked(clock.monotonic())
    assert metrics.health() == (False, "main has not been read yet")
    metrics.account_read("main")
    metrics.account_read("mirror")
    assert metrics.health() == (True, "ok")
    clock.advance(6)
    assert metrics.health() == (False, "the scheduler last ticked 6s ago")
    metrics.ticked(clock.monotonic())
    assert metrics.health()[0]  # reads 6 s old: within the stale limit
    clock.advance(80)
    metrics.ticked(clock.monotonic())
    metrics.account_read("main")
    assert metrics.health()[0]  # mirror's read is 86 s old
    clock.advance(9)
    metrics.ticked(clock.monotonic())
    assert metrics.health() == (False, "mirror was last read 95s ago (limit 90s)")


def test_monitors_and_unprotected_gauges_come_from_the_published_rows():
    clock = FakeClock()
    metrics = Metrics(clock, ("main", "mirror"))
    metrics.scheduled(BTC, Urgency.CRITICAL, clock.monotonic() + 2, checked=True)
    metrics.monitor_seen(BTC, phase="MONITORING", side="Buy", size="0.1", unprotected=True)
    metrics.scheduled(ETH, Urgency.IDLE, clock.monotonic() + 60, checked=True)
    metrics.monitor_seen(ETH, phase="PROFIT_TAKING", side="Sell", size="2", unprotected=False)
    clock.advance(4)
    metrics.monitor_seen(BTC, phase="MONITORING", side="Buy", size="0.1", unprotected=True)  # still: since stays
    found = families(metrics)
    monitors = {tuple(sorted(s.labels.items())): s.value for s in found["guardian_monitors"]}
    assert monitors == {
        (("account", "main"), ("phase", "MONITORING"), ("tier", "critical")): 1.0,
        (("account", "mirror"), ("phase", "PROFIT_TAKING"), ("tier", "idle")): 1.0,
    }
    assert found["guardian_unprotected_positions"][0].value == 1
    assert found["guardian_unprotected_longest_seconds"][0].value == 4.0
    status = metrics.status()
    assert [m["unprotected_s"] for m in status["monitors"]] == [4.0, None]
    metrics.forget(BTC)
    assert families(metrics)["guardian_unprotected_positions"][0].value == 0


def test_the_dashboard_uses_only_metrics_that_exist():
    metrics = Metrics(FakeClock(), ("main",))
    metrics.tp1_to_breakeven.observe(0.3)
    known = guardian_names(metrics) | {"process_cpu_seconds", "process_resident_memory_bytes"}
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    used = {
        re.sub(r"_(bucket|total)$", "", name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\b(?:guardian|process)_[a-z0-9_]+", target["expr"])
    }
    assert used and used <= known, used - known


def test_operations_doc_has_a_line_per_metric():
    doc = (ROOT / "docs" / "operations.md").read_text()
    documented = {re.sub(r"_total$", "", name) for name in re.findall(r"`(guardian_[a-z0-9_]+)`", doc)}
    assert guardian_names(Metrics(FakeClock(), ("main",))) <= documented
