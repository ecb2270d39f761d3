"""The ticker: the only code in the daemon that sleeps.

One thread tells each target its message on its own period, e.g. the Scheduler `SchedulerTick(now)` every
250 ms and Persistence `PersistenceTick(now)` every 30 s. It stops within one wait of being asked.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka

from runtime.clock import Clock

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Every:
    """Tell `target` the message `make(now)` every `seconds`."""

    seconds: float
    target: Any  # a Pykka ActorRef
    make: Callable[[float], Any]


class Ticker:
    def __init__(self, clock: Clock, schedule: list[Every], resolution: float = 0.05):
        if not schedule:
            raise ValueError("a ticker needs something to tell")
        self._clock = clock
        self._lock = threading.Lock()
        self._schedule = list(schedule)
        self._next_at = [clock.monotonic()] * len(schedule)
        self._resolution = min([resolution] + [e.seconds for e in schedule])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="Ticker", daemon=True)

    def add(self, every: Every) -> None:
        """Tell one more target (first at once), e.g. actors started after the ticker."""
        with self._lock:
            self._schedule.append(every)
            self._next_at.append(self._clock.monotonic())
            self._resolution = min(self._resolution, every.seconds)

    def start(self) -> Ticker:
        self._thread.start()
        return self

    def stop(self, timeout: float = 1.0) -> bool:
        """Ask the thread to stop and wait for it; True when it has stopped."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            now = self._clock.monotonic()
            with self._lock:
                due = []
                for index, every in enumerate(self._schedule):
                    if now >= self._next_at[index]:
                        # Keep the cadence (no drift), but never fire a backlog after a stall.
                        self._next_at[index] += every.seconds
                        if self._next_at[index] <= now:
                            self._next_at[index] = now + every.seconds
                        due.append(every)
                wait = min(min(self._next_at) - now, self._resolution)
            for every in due:
                try:
                    every.target.tell(every.make(now))
                except pykka.ActorDeadError:
                    log.debug("Ticker: %s is gone", every.target)
            self._stop.wait(max(0.0, wait))
