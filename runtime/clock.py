"""Clocks: actors never read time themselves; they get one of these injected.

`monotonic()` (seconds) is for intervals and due times; `wall_ms()` (epoch milliseconds) for
comparing with exchange timestamps. `FakeClock` moves only when a test advances it.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wall_ms(self) -> int: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000


class FakeClock:
    """A clock tests drive by hand. Thread-safe, because actors read it from their own threads."""

    def __init__(self, start: float = 1000.0, wall_start_ms: int = 1_700_000_000_000):
        self._lock = threading.Lock()
        self._now = start
        self._wall_offset_ms = wall_start_ms - int(start * 1000)

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def wall_ms(self) -> int:
        with self._lock:
            return int(self._now * 1000) + self._wall_offset_ms

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        with self._lock:
            self._now += seconds
            return self._now
