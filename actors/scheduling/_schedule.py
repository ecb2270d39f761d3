"""Pure scheduling arithmetic for the Scheduler: due times, dispatch order, adaptive concurrency.

Due times of the slower tiers (5 s and more) sit on a wave grid (1 s by default): a monitor's next
check is its last dispatch plus its tier's interval, rounded *up* to the grid, so monitors due in
the same grid slot are checked in one wave and none before its interval has passed. Critical
monitors (2 s) are not rounded: for them reaction time matters more than fewer log lines.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from messages.models import MonitorId, Urgency

WAVE_GRID_S = 1.0
# Concurrency: monitors mostly wait on the gateway, which answers cached views without network,
# so more checks than pooled connections may be in flight. Start at 20 (the old bot's peak),
# halve when the gateway's rate limiter made checks wait (the real brake: writes are 10/s per
# account), double while due checks queue for a slot (a burst of monitors due in one wave is
# served within a second), within 4..64.
MIN_CONCURRENCY, START_CONCURRENCY, MAX_CONCURRENCY = 4, 20, 64
# On pushes a check reads nothing (its view comes from the pushed state) and takes milliseconds:
# every due check may go out at once. A check slower than SLOW_CHECK_S whose view was read by REST
# (the stream is down) brakes like a throttled one, so the limit falls back within ticks; one slow
# on a pushed view waited for the write budget, which the gateway's queue orders, and does not.
STREAM_CONCURRENCY = (MIN_CONCURRENCY, 64, 512)
SLOW_CHECK_S = 1.0


GRID_FROM_INTERVAL_S = 5.0  # the critical tier (2 s) is not rounded: reaction time matters more


def next_due(dispatched_at: float, interval: float, grid: float = WAVE_GRID_S) -> float:
    due = dispatched_at + interval
    if interval < GRID_FROM_INTERVAL_S:
        return due
    return math.ceil(round(due / grid, 9)) * grid


QUIET_SPREAD = 0.5  # quiet safety checks spread over half their interval more


def quiet_interval(monitor: MonitorId, interval: float) -> float:
    """A quiet monitor's safety-net interval (its data is pushed; pushes and resyncs wake it on
    every change): `interval` plus a share of it fixed per monitor, so monitors adopted together
    are not checked again together (no wave of checks that read nothing)."""
    share = zlib.crc32(str(monitor).encode()) / 2**32
    return interval * (1 + QUIET_SPREAD * share)


@dataclass(frozen=True, slots=True)
class Candidate:
    monitor: MonitorId
    urgency: Urgency
    due: float


def dispatch_order(candidates: Iterable[Candidate], now: float, grid: float = WAVE_GRID_S) -> list[MonitorId]:
    """The monitors due at `now`, most urgent first. A monitor already overdue by a whole grid
    step (it waited a wave for a free slot) goes before everything else, so no tier starves."""
    due = [c for c in candidates if c.due <= now]
    due.sort(key=lambda c: (now - c.due < grid, c.urgency.rank, c.due, c.monitor))
    return [c.monitor for c in due]


def adapt_concurrency(
    current: int, *, throttled: bool, waiting: int, low: int = MIN_CONCURRENCY, high: int = MAX_CONCURRENCY
) -> int:
    """Halve when checks were throttled (or slow); while `waiting` due checks found no slot, grow
    at least twofold and at once to what would have served them; else unchanged."""
    if throttled:
        return max(low, current // 2)
    if waiting > 0:
        return min(high, max(current * 2, current + waiting))
    return current
