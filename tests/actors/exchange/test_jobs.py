"""The gateway's job queue (actors/exchange/_jobs.py): priorities, and trailing's share of the writes."""

from __future__ import annotations

from actors.exchange._jobs import JobQueue
from actors.exchange._rate_limiter import RateLimiter
from messages.gateway import Priority


def queue(share: float = 0.5) -> tuple[JobQueue, list[str]]:
    return JobQueue(("main", "mirror"), RateLimiter(), per_account=100, trail_share=share), []


def add(jobs: JobQueue, done: list[str], name: str, priority: Priority, account: str = "main") -> None:
    jobs.add(account, "amend_order", {"name": name}, priority, lambda result: done.append(name), now=0.0)


def test_trailing_moves_go_last_and_only_within_their_share_of_the_writes():
    jobs, done = queue(share=0.5)
    for n in range(8):
        add(jobs, done, f"trail{n}", Priority.TRAIL)
    add(jobs, done, "breakeven", Priority.PROTECT)
    sent = [job.params["name"] for job in jobs.release(0.0).sent]
    assert sent[0] == "breakeven" and sent[1:] == [f"trail{n}" for n in range(5)]  # 5 of Bybit's 10/s
    assert jobs.take_trail_waits()["main"] == 3 and not jobs.take_trail_waits()
    add(jobs, done, "restore", Priority.PROTECT)
    assert [job.params["name"] for job in jobs.release(0.5).sent] == ["restore"]  # still in the same second
    assert [job.params["name"] for job in jobs.release(1.2).sent] == ["trail5", "trail6", "trail7"]


def test_one_accounts_trailing_share_is_its_own():
    jobs, done = queue(share=0.1)
    add(jobs, done, "main-trail", Priority.TRAIL)
    add(jobs, done, "main-trail-2", Priority.TRAIL)
    add(jobs, done, "mirror-trail", Priority.TRAIL, account="mirror")
    assert sorted(job.params["name"] for job in jobs.release(0.0).sent) == ["main-trail", "mirror-trail"]
