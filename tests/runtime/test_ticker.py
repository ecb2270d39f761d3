"""The ticker: tells on its periods, keeps going past dead targets, stops promptly."""

from __future__ import annotations

import threading
import time

import pykka

from runtime.clock import FakeClock, SystemClock
from runtime.ticker import Every, Ticker


class Counting(pykka.ThreadingActor):
    def __init__(self, wanted: int, done: threading.Event):
        super().__init__()
        self.seen: list = []
        self.wanted, self.done = wanted, done

    def on_receive(self, message):
        if message == "get":
            return list(self.seen)
        self.seen.append(message)
        if len(self.seen) >= self.wanted:
            self.done.set()
        return None


def test_tells_each_target_on_its_own_period_and_stops_within_a_second():
    fast_done, slow_done = threading.Event(), threading.Event()
    fast = Counting.start(20, fast_done)
    slow = Counting.start(2, slow_done)
    ticker = Ticker(
        SystemClock(), [Every(0.01, fast, lambda now: ("tick", now)), Every(0.1, slow, lambda now: ("flush", now))]
    ).start()
    assert fast_done.wait(5) and slow_done.wait(5)
    started = time.monotonic()
    assert ticker.stop(timeout=1.0)
    assert time.monotonic() - started < 1.0
    ticks = fast.ask("get")
    flushes = slow.ask("get")
    assert all(kind == "tick" for kind, _ in ticks) and all(kind == "flush" for kind, _ in flushes)
    assert len(ticks) > len(flushes)
    times = [now for _, now in ticks]
    assert times == sorted(times)


def test_a_dead_target_does_not_stop_the_ticker():
    done = threading.Event()
    dead = Counting.start(1, threading.Event())
    dead.stop()
    alive = Counting.start(5, done)
    ticker = Ticker(SystemClock(), [Every(0.01, dead, lambda now: now), Every(0.01, alive, lambda now: now)]).start()
    assert done.wait(5)
    assert ticker.stop()


def test_stops_promptly_even_when_nothing_is_due():
    ticker = Ticker(FakeClock(), [Every(3600, Counting.start(1, threading.Event()), lambda now: now)]).start()
    started = time.monotonic()
    assert ticker.stop(timeout=1.0)
    assert time.monotonic() - started < 1.0


def test_fake_clock_only_moves_when_advanced():
    clock = FakeClock(start=10.0, wall_start_ms=5_000)
    assert (clock.monotonic(), clock.wall_ms()) == (10.0, 5_000)
    clock.advance(1.5)
    assert (clock.monotonic(), clock.wall_ms()) == (11.5, 6_500)
    import pytest

    with pytest.raises(ValueError):
        clock.advance(-1)
