"""The gateway's figures, counted once: each event updates the figures `GatewayStats` reports
and the Prometheus metrics together, and keeps what the periodic log line reports as new.
"""

from __future__ import annotations

from collections import Counter, deque

from runtime.metrics import Metrics
from runtime.stats import percentile

REFRESH_KEPT = 1000


class GatewayCounters:
    def __init__(self, metrics: Metrics):
        self._metrics = metrics
        self.calls: Counter[tuple[str, str]] = Counter()  # (account, endpoint)
        self.errors: Counter[tuple[str, str]] = Counter()  # (account, failure)
        self.hits = self.misses = 0
        self.refreshes = 0
        self.refresh_seconds: deque[float] = deque(maxlen=REFRESH_KEPT)
        self.rate_limited = self.banned = 0
        self.pushes = self.rejected_pushes = self.wakes = 0
        self._reported_calls: Counter[tuple[str, str]] = Counter()
        self._reported_hits = self._reported_misses = 0

    def lookup(self, *, hit: bool) -> None:
        """A view or snapshot asked for: a hit costs no request of its own."""
        if hit:
            self.hits += 1
        else:
            self.misses += 1
        self._metrics.cache.labels("hit" if hit else "miss").inc()

    def request(self, account: str, endpoint: str, *, trail: bool = False) -> None:
        self.calls[(account, endpoint)] += 1
        self._metrics.request(account, endpoint)
        if trail:
            self._metrics.trail_amends.labels(account).inc()

    def failed(self, account: str, kind: str, code: int | None) -> None:
        self.errors[(account, f"{kind} {code}" if code else kind)] += 1
        self._metrics.failed(account, kind, code)

    def throttled(self, account: str) -> None:
        """The exchange answered 10006."""
        self.rate_limited += 1
        self._metrics.rate_limited.labels(account).inc()

    def ip_banned(self) -> None:
        self.banned += 1
        self._metrics.banned.inc()

    def refreshed(self, seconds: float) -> None:
        self.refreshes += 1
        self.refresh_seconds.append(seconds)

    def pushed(self, account: str, topic: str) -> None:
        self.pushes += 1
        self._metrics.stream_pushes.labels(account, topic).inc()

    def push_rejected(self, account: str) -> None:
        self.rejected_pushes += 1
        self._metrics.stream_rejected.labels(account).inc()

    def woke(self, account: str) -> None:
        self.wakes += 1
        self._metrics.wakes.labels(account).inc()

    def calls_by_account(self) -> dict[str, dict[str, int]]:
        return _nested(self.calls)

    def errors_by_account(self) -> dict[str, dict[str, int]]:
        return _nested(self.errors)

    def since_last_report(self) -> tuple[int, int, Counter[str]]:
        """Hits, misses and calls by endpoint since the previous call (for the periodic log line)."""
        hits, misses = self.hits - self._reported_hits, self.misses - self._reported_misses
        by_endpoint: Counter[str] = Counter()
        for (_, endpoint), n in (self.calls - self._reported_calls).items():
            by_endpoint[endpoint.removeprefix("/v5/")] += n
        self._reported_hits, self._reported_misses = self.hits, self.misses
        self._reported_calls = Counter(self.calls)
        return hits, misses, by_endpoint

    def refresh_p50(self) -> float:
        return percentile(list(self.refresh_seconds)[-100:], 0.5)


def _nested(counts: Counter[tuple[str, str]]) -> dict[str, dict[str, int]]:
    nested: dict[str, dict[str, int]] = {}
    for (account, key), n in sorted(counts.items()):
        nested.setdefault(account, {})[key] = n
    return nested
