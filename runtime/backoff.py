"""Exponential backoff: the one helper for every retry delay in the daemon."""

from __future__ import annotations


class Backoff:
    """`next()` gives start, 2 x start, 4 x start, ... capped at `maximum`; `reset()` starts over."""

    def __init__(self, start: float, maximum: float):
        if not 0 < start <= maximum:
            raise ValueError("backoff needs 0 < start <= maximum")
        self.start, self.maximum = start, maximum
        self._next = start

    def next(self) -> float:
        delay, self._next = self._next, min(self.maximum, self._next * 2)
        return delay

    def reset(self) -> None:
        self._next = self.start
