"""The figures the actors publish, for Prometheus (`/metrics`), the health probe (`/healthz`) and the
live status (`/status`), all served by runtime/ops_server.py on its own thread.

Actors publish as they work (a counter incremented, a histogram observed, a monitor's row
updated); a scrape only reads what was published: it never asks an actor and never reaches the
exchange. Every method is thread-safe. Labels are bounded: account, endpoint, tier, phase, an
error kind or a retCode, never an order or a symbol.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily

from messages.models import MonitorId, Urgency
from runtime.clock import Clock, SystemClock

HEALTHY_TICK_AGE_S = 5.0
CALL_WINDOW_S = 60.0
QUICK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
REACTION_BUCKETS = (0.1, 0.25, 0.35, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0)
COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


@dataclass
class _Row:
    """One monitor as the status shows it."""

    tier: str = Urgency.CRITICAL.value
    phase: str = "-"
    side: str = "-"
    size: str = "-"
    due: float | None = None
    last_check: float | None = None
    unprotected_since: float | None = None


class Metrics:
    def __init__(self, clock: Clock | None = None, accounts: Iterable[str] = (), stale_limit: float = 90.0):
        self.clock = clock or SystemClock()
        self.accounts = tuple(accounts)
        self.stale_limit = stale_limit
        self.registry = CollectorRegistry()
        r = self.registry
        self.checks = Counter("guardian_checks", "Monitor checks finished", ["account"], registry=r)
        self.check_seconds = Histogram(
            "guardian_check_duration_seconds", "Time of one monitor check", buckets=QUICK_BUCKETS, registry=r
        )
        self.late_checks = Counter(
            "guardian_late_checks", "Checks dispatched a whole wave after their due time", registry=r
        )
        self.wave_seconds = Histogram(
            "guardian_wave_duration_seconds",
            "Time from a wave's dispatch to its last answer",
            buckets=QUICK_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "guardian_exchange_requests", "Exchange requests sent", ["account", "endpoint"], registry=r
        )
        self.errors = Counter(
            "guardian_exchange_errors", "Failed exchange requests by kind", ["account", "kind"], registry=r
        )
        self.retcodes = Counter(
            "guardian_exchange_retcodes", "Non-zero Bybit retCodes answered", ["account", "code"], registry=r
        )
        self.rate_limited = Counter(
            "guardian_rate_limited", "10006 answers (per-UID rate limit)", ["account"], registry=r
        )
        self.banned = Counter("guardian_ip_banned", "HTTP 403 answers (IP rate limit)", registry=r)
        self.cache = Counter(
            "guardian_cache_lookups",
            "Gateway views answered without (hit) or with (miss) a read of their own",
            ["result"],
            registry=r,
        )
        self.tp1_to_breakeven = Histogram(
            "guardian_tp1_to_breakeven_seconds",
            "From a TP1 fill (exchange time) to the stop accepted at breakeven",
            buckets=REACTION_BUCKETS,
            registry=r,
        )
        self.commits = Counter("guardian_persistence_commits", "Critical commits (fsync'd transactions)", registry=r)
        self.flushes = Counter("guardian_persistence_flushes", "Batched flushes of non-critical states", registry=r)
        self.commit_seconds = Histogram(
            "guardian_persistence_commit_seconds", "Time of one critical commit", buckets=COMMIT_BUCKETS, registry=r
        )
        self.alert_outbox = Gauge("guardian_alert_outbox_depth", "Alerts waiting to be delivered", registry=r)
        self.alerts_sent = Counter("guardian_alerts_sent", "Alerts delivered to every alert URL", registry=r)
        self.alert_failures = Counter(
            "guardian_alert_send_failures",
            "Alert messages that failed on at least one URL (retried with backoff)",
            registry=r,
        )
        self.stream_healthy = Gauge(
            "guardian_stream_healthy",
            "1 while an account's private stream keeps its cache "
            "fresh (connected, authenticated, subscribed, resynced, heard from)",
            ["account"],
            registry=r,
        )
        self.stream_pushes = Counter(
            "guardian_stream_pushes", "Push messages received", ["account", "topic"], registry=r
        )
        self.stream_rejected = Counter(
            "guardian_stream_rejected", "Malformed push messages rejected whole", ["account"], registry=r
        )
        self.stream_missed = Counter(
            "guardian_stream_missed_pushes", "Differences a resync found that no push told", ["account"], registry=r
        )
        self.stream_resyncs = Counter(
            "guardian_stream_resyncs", "REST resyncs of a streamed account", ["account"], registry=r
        )
        self.stream_connects = Counter("guardian_stream_connects", "Stream connection attempts", ["stream"], registry=r)
        self.handshakes_held = Counter(
            "guardian_stream_handshakes_held",
            "Ticks at which a stream due to connect waited for the process's handshake budget (Bybit's per-IP limit)",
            registry=r,
        )
        self.wakes = Counter("guardian_wakes", "Monitors woken by a push", ["account"], registry=r)
        self.trail_amends = Counter("guardian_trail_amends", "Trailing stop moves sent (R14)", ["account"], registry=r)
        self.trail_waits = Counter(
            "guardian_trail_budget_waits", "Trailing moves held back by TRAIL_WRITE_SHARE", ["account"], registry=r
        )
        Gauge("guardian_threads", "Threads of the process", registry=r).set_function(threading.active_count)
        ProcessCollector(registry=r)
        r.register(_Derived(self))
        self._lock = threading.Lock()
        self._rows: dict[MonitorId, _Row] = {}
        self._last_tick: float | None = None
        self._last_read: dict[str, float] = {}
        self._calls: deque[tuple[float, str]] = deque()

    # --- published by the actors ------------------------------------------------------------

    def request(self, account: str, endpoint: str) -> None:
        self.requests.labels(account, endpoint).inc()
        now = self.clock.monotonic()
        with self._lock:
            self._calls.append((now, account))
            self._trim_calls(now)

    def failed(self, account: str, kind: str, code: int | None) -> None:
        self.errors.labels(account, kind).inc()
        if code is not None and kind == "business":
            self.retcodes.labels(account, str(code)).inc()

    def account_read(self, account: str) -> None:
        with self._lock:
            self._last_read[account] = self.clock.monotonic()

    def ticked(self, now: float) -> None:
        with self._lock:
            self._last_tick = now

    def scheduled(self, monitor: MonitorId, tier: Urgency, due: float, checked: bool) -> None:
        with self._lock:
            row = self._rows.setdefault(monitor, _Row())
            row.tier, row.due = tier.value, due
            if checked:
                row.last_check = self.clock.monotonic()

    def monitor_seen(self, monitor: MonitorId, *, phase: str, side: str, size: str, unprotected: bool) -> None:
        now = self.clock.monotonic()
        with self._lock:
            row = self._rows.setdefault(monitor, _Row())
            row.phase, row.side, row.size = phase, side, size
            if not unprotected:
                row.unprotected_since = None
            elif row.unprotected_since is None:
                row.unprotected_since = now

    def forget(self, monitor: MonitorId) -> None:
        with self._lock:
            self._rows.pop(monitor, None)

    # --- read by the server -----------------------------------------------------------------

    def health(self) -> tuple[bool, str]:
        """Healthy when the scheduler ticked within 5 s and every account was read within its
        stale limit; otherwise the first reason it is not."""
        now = self.clock.monotonic()
        with self._lock:
            last_tick, last_read = self._last_tick, dict(self._last_read)
        if last_tick is None:
            return False, "the scheduler has not started"
        if now - last_tick > HEALTHY_TICK_AGE_S:
            return False, f"the scheduler last ticked {now - last_tick:.0f}s ago"
        for account in self.accounts:
            if account not in last_read:
                return False, f"{account} has not been read yet"
            if now - last_read[account] > self.stale_limit:
                return (
                    False,
                    f"{account} was last read {now - last_read[account]:.0f}s ago (limit {self.stale_limit:.0f}s)",
                )
        return True, "ok"

    def status(self) -> dict[str, Any]:
        """What `main.py status` shows while the daemon runs (JSON-able)."""
        now = self.clock.monotonic()
        healthy, reason = self.health()
        with self._lock:
            self._trim_calls(now)
            calls = {a: sum(1 for _, account in self._calls if account == a) for a in self.accounts}
            accounts = {
                a: {"last_read_age_s": _age(self._last_read.get(a), now), "api_calls_last_minute": calls[a]}
                for a in self.accounts
            }
            monitors = [
                {
                    "account": m.account,
                    "symbol": m.symbol,
                    "position_idx": m.position_idx,
                    "side": row.side,
                    "phase": row.phase,
                    "size": row.size,
                    "tier": row.tier,
                    "due_in_s": None if row.due is None else round(max(0.0, row.due - now), 1),
                    "last_check_age_s": _age(row.last_check, now),
                    "unprotected_s": _age(row.unprotected_since, now),
                }
                for m, row in sorted(self._rows.items())
            ]
        return {"healthy": healthy, "health": reason, "accounts": accounts, "monitors": monitors}

    def _trim_calls(self, now: float) -> None:
        while self._calls and now - self._calls[0][0] > CALL_WINDOW_S:
            self._calls.popleft()

    def _derived(self) -> tuple[dict[tuple[str, str, str], int], int, float, dict[str, float]]:
        now = self.clock.monotonic()
        with self._lock:
            by_label: dict[tuple[str, str, str], int] = {}
            unprotected = [
                now - row.unprotected_since for row in self._rows.values() if row.unprotected_since is not None
            ]
            for monitor, row in self._rows.items():
                key = (monitor.account, row.tier, row.phase)
                by_label[key] = by_label.get(key, 0) + 1
            read_ages = {a: now - t for a, t in self._last_read.items()}
        return by_label, len(unprotected), max(unprotected, default=0.0), read_ages


def _age(then: float | None, now: float) -> float | None:
    return None if then is None else round(max(0.0, now - then), 1)


class _Derived:
    """Gauges computed at scrape time from the published rows (never by asking an actor)."""

    def __init__(self, metrics: Metrics):
        self._metrics = metrics

    def collect(self):
        by_label, unprotected, longest, read_ages = self._metrics._derived()
        monitors = GaugeMetricFamily(
            "guardian_monitors", "Monitors by account, urgency tier and phase", labels=["account", "tier", "phase"]
        )
        for (account, tier, phase), count in sorted(by_label.items()):
            monitors.add_metric([account, tier, phase], count)
        yield monitors
        yield GaugeMetricFamily(
            "guardian_unprotected_positions", "Open positions whose last check saw no live stop", value=unprotected
        )
        yield GaugeMetricFamily(
            "guardian_unprotected_longest_seconds",
            "How long the longest-unprotected open position has been so",
            value=longest,
        )
        ages = GaugeMetricFamily(
            "guardian_account_read_age_seconds", "Seconds since an account was last read", labels=["account"]
        )
        for account, age in sorted(read_ages.items()):
            ages.add_metric([account], age)
        yield ages

    def describe(self):
        return []
