"""Hooks: named points in the daemon a reliability test can act at, injected like the clock.

The daemon calls `hooks.reached(point)` at each point; by default that is a no-op (`NO_HOOKS`).
`runtime/system.py` builds the hooks once: `KillAt` when the environment says
`GUARDIAN_KILL_AT=<point>[:<n>]`, which SIGKILLs the process the n-th time the point is reached
(default the first). Points: `after_send` (a command was sent, its outcome not yet recorded),
`mid_flush` (inside a batched state write, before its commit), `between_closure_snapshots`
(a flat position was seen once, the confirming snapshot not yet), `alert_queued` (an alert was
committed to the outbox, not yet handed to the Notifier), `plan_recorded` (a trader's plan is
durable, its monitor not started: nothing sent for it yet).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Mapping
from typing import Protocol

POINTS = ("after_send", "mid_flush", "between_closure_snapshots", "alert_queued", "plan_recorded")
ENVIRONMENT_NAME = "GUARDIAN_KILL_AT"


class Hooks(Protocol):
    def reached(self, point: str) -> None: ...


class _NoHooks:
    def reached(self, point: str) -> None:
        pass


NO_HOOKS: Hooks = _NoHooks()


class KillAt:
    """SIGKILL this process the `nth` time `point` is reached (from any thread)."""

    def __init__(self, point: str, nth: int = 1):
        if point not in POINTS:
            raise ValueError(f"{ENVIRONMENT_NAME}: unknown point {point!r} (one of {', '.join(POINTS)})")
        self.point = point
        self._left = max(1, nth)
        self._lock = threading.Lock()

    def reached(self, point: str) -> None:
        if point != self.point:
            return
        with self._lock:
            self._left -= 1
            if self._left == 0:
                os.kill(os.getpid(), signal.SIGKILL)


def from_environment(environ: Mapping[str, str]) -> Hooks:
    spec = environ.get(ENVIRONMENT_NAME, "")
    if not spec:
        return NO_HOOKS
    point, _, nth = spec.partition(":")
    return KillAt(point, int(nth) if nth.isdigit() else 1)
