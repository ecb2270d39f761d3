"""The gateway's HTTP jobs: queued per account by priority, released by the rate limiter and
each account's share of the workers. Trailing moves (Priority.TRAIL) go last and may use only
their share of an account's writes per second, so breakeven moves, restores and clean-ups always
find room. Plain bookkeeping with time passed in; the gateway runs what is released on its
worker threads and answers what is refused.
"""

from __future__ import annotations

import itertools
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
        self._queues: dict[str, list[Job]] = {name: [] for name in accounts}
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
        self._queues[account].append(Job(next(self._ids), account, method, params, priority, on_done, units, read, now))

    def release(self, now: float) -> Released:
        """Every queued job the limiter and the worker share allow, by priority; the jobs that
        can never be sent (an IP ban, a write that waited too long) refused."""
        sent: list[Job] = []
        refused: list[tuple[Job, HttpFail]] = []
        for account, queue in self._queues.items():
            if not queue:
                continue
            queue.sort(key=lambda j: (j.priority, j.id))
            waiting = []
            for job in queue:
                refusal = self._refusal(job, now)
                if refusal is not None:
                    refused.append((job, refusal))
                elif self.busy[account] >= self._per_account:
                    waiting.append(job)
                elif job.priority is Priority.TRAIL and not self._trail_room(account, now):
                    self._trail_waits[account] += 1
                    waiting.append(job)
                elif not self._limiter.take(account, job.endpoint, now, job.units):
                    if job.read is not None:
                        job.read.throttled = True
                    waiting.append(job)
                else:
                    self.busy[account] += 1
                    self._running[job.id] = job
                    sent.append(job)
                    if job.priority is Priority.TRAIL:
                        self._trail_sent[account].append(now)
            queue[:] = waiting
        return Released(sent, refused)

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
        return job

    def drain(self) -> list[Job]:
        """Every job still queued, removed (at stop: each is answered "not sent")."""
        jobs = [job for queue in self._queues.values() for job in queue]
        for queue in self._queues.values():
            queue.clear()
        return jobs

    @property
    def in_use(self) -> int:
        return sum(self.busy.values())
