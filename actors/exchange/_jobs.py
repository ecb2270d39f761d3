"""The gateway's HTTP jobs: queued per account by priority, released by the rate limiter and
each account's share of the workers. Trailing moves (Priority.TRAIL) go last and may use only
their share of an account's writes per second, so breakeven moves, restores and clean-ups always
find room. Plain bookkeeping with time passed in; the gateway runs what is released on its
worker threads and answers what is refused.

A release costs what it sends, not what waits: each (account, endpoint) has its own heap, kept in
order as jobs arrive; a release looks at the heads only, and at the rate limiter once per
(account, endpoint): an endpoint out of budget is passed over for the rest of that release.
Queued jobs that can never be sent are swept out at most once a second. `changed` says whether a
release could send anything the last one did not (a job came or a worker came free); the gateway
also releases on its tick, when time has given the limiter room.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from actors.exchange._formats import Failure, HttpFail, HttpOk
from actors.exchange._rate_limiter import RateLimiter
from actors.exchange._reads import Read
from messages.endpoints import WRITE_PATHS, WRITES_PER_SECOND, for_pybit
from messages.gateway import Priority

WRITE_QUEUE_S = 8.0  # a write not sent within this (Bybit's 10/s per account) is answered "not sent"
SWEEP_S = 1.0  # queued jobs that can never be sent are looked for this often

Result = HttpOk | HttpFail


@dataclass
class Job:
    id: int
    account: str
    method: str  # the pybit method
    params: dict[str, Any]
    priority: Priority
    on_done: Callable[[Result], None]
    units: int = 1  # orders in a batch: each spends one unit of its endpoint's budget
    read: Read | None = None  # the read this page belongs to
    queued_at: float = 0.0
    endpoint: str = field(init=False)

    def __post_init__(self) -> None:
        self.endpoint = for_pybit(self.method).path.value


@dataclass(frozen=True, slots=True)
class Released:
    sent: list[Job]  # to run now (already counted against the limiter and the worker share)
    refused: list[tuple[Job, HttpFail]]  # never to be sent: answer them with this failure


class JobQueue:
    def __init__(self, accounts: tuple[str, ...], limiter: RateLimiter, per_account: int, trail_share: float = 0.5):
        # account -> endpoint -> heap of (priority, id, job)
        self._queues: dict[str, dict[str, list[tuple[int, int, Job]]]] = {name: {} for name in accounts}
        self._swept = -math.inf
        self.changed = False
        self._trail_per_second = max(1, int(WRITES_PER_SECOND * trail_share))  # R14's TRAIL_WRITE_SHARE
        self._trail_sent: dict[str, deque[float]] = {name: deque() for name in accounts}
        self._trail_waits: Counter[str] = Counter()  # trailing moves held back by their share, since taken
        self._limiter = limiter
        self._per_account = per_account  # workers one account may hold (a hung account cannot starve another)
        self._ids = itertools.count(1)
        self._running: dict[int, Job] = {}
        self.busy: Counter[str] = Counter()

    def add(
        self,
        account: str,
        method: str,
        params: dict[str, Any],
        priority: Priority,
        on_done: Callable[[Result], None],
        now: float,
        *,
        units: int = 1,
        read: Read | None = None,
    ) -> None:
        job = Job(next(self._ids), account, method, params, priority, on_done, units, read, now)
        heapq.heappush(self._queues[account].setdefault(job.endpoint, []), (job.priority, job.id, job))
        self.changed = True

    def release(self, now: float) -> Released:
        """Every queued job the limiter and the worker share allow, by priority; the jobs that
        can never be sent (an IP ban, a write that waited too long) refused."""
        self.changed = False
        sent: list[Job] = []
        refused: list[tuple[Job, HttpFail]] = []
        if now - self._swept >= SWEEP_S:
            self._swept = now
            self._sweep(now, refused)
        for account, heaps in self._queues.items():
            passed: set[str] = set()  # endpoints out of budget in this release
            while self.busy[account] < self._per_account:
                heads = [heap[0] for endpoint, heap in heaps.items() if heap and endpoint not in passed]
                if not heads:
                    break
                job = min(heads)[2]
                heap = heaps[job.endpoint]
                refusal = self._refusal(job, now)
                if refusal is not None:
                    heapq.heappop(heap)
                    refused.append((job, refusal))
                elif job.priority is Priority.TRAIL and not self._trail_room(account, now):
                    self._trail_waits[account] += len(heap)  # the lowest priority: the rest are trailing too
                    passed.add(job.endpoint)
                elif not self._limiter.take(account, job.endpoint, now, job.units):
                    if job.read is not None:
                        job.read.throttled = True
                    passed.add(job.endpoint)
                else:
                    heapq.heappop(heap)
                    self.busy[account] += 1
                    self._running[job.id] = job
                    sent.append(job)
                    if job.priority is Priority.TRAIL:
                        self._trail_sent[account].append(now)
        return Released(sent, refused)

    def _sweep(self, now: float, refused: list[tuple[Job, HttpFail]]) -> None:
        for heaps in self._queues.values():
            for endpoint, heap in heaps.items():
                keep = []
                for item in heap:
                    refusal = self._refusal(item[2], now)
                    if refusal is None:
                        keep.append(item)
                    else:
                        refused.append((item[2], refusal))
                if len(keep) < len(heap):
                    heapq.heapify(keep)
                    heaps[endpoint] = keep

    def take_trail_waits(self) -> Counter[str]:
        """Trailing moves held back by their share since last asked, per account."""
        waits, self._trail_waits = self._trail_waits, Counter()
        return waits

    def _trail_room(self, account: str, now: float) -> bool:
        sent = self._trail_sent[account]
        while sent and sent[0] <= now - 1.0:
            sent.popleft()
        return len(sent) < self._trail_per_second

    def _refusal(self, job: Job, now: float) -> HttpFail | None:
        if now < self._limiter.banned_until:
            return HttpFail(Failure.NOT_SENT, "not sent: the exchange banned this IP (HTTP 403)", 403)
        if job.endpoint in WRITE_PATHS and now - job.queued_at > WRITE_QUEUE_S:
            # A definite "not sent" the monitor can act on next check, rather than its ask timing
            # out (an unresolved write that would cost snapshots to settle).
            return HttpFail(Failure.NOT_SENT, f"not sent: waited {WRITE_QUEUE_S:.0f} s for the write budget")
        return None

    def finished(self, job_id: int) -> Job | None:
        """The job whose answer came back (None when it is not ours: the gateway restarted)."""
        job = self._running.pop(job_id, None)
        if job is not None:
            self.busy[job.account] -= 1
            self.changed = True
        return job

    def drain(self) -> list[Job]:
        """Every job still queued, removed (at stop: each is answered "not sent")."""
        jobs = [item[2] for heaps in self._queues.values() for heap in heaps.values() for item in sorted(heap)]
        for heaps in self._queues.values():
            heaps.clear()
        return jobs

    @property
    def in_use(self) -> int:
        return sum(self.busy.values())
