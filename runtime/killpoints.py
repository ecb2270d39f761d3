"""Named points where a reliability test can make the daemon SIGKILL itself.

Inactive unless the environment says `GUARDIAN_KILL_AT=<point>[:<n>]` (the n-th time the point is
reached, default the first). Points: `after_send` (a command was sent, its outcome not yet
recorded), `mid_flush` (inside a batched state write, before its commit), `between_closure_snapshots`
(a flat position was seen once, the confirming snapshot not yet).
"""

from __future__ import annotations

import os
import signal
import threading

POINTS = ("after_send", "mid_flush", "between_closure_snapshots")
_lock = threading.Lock()
_spec = os.environ.get("GUARDIAN_KILL_AT", "")
_name, _, _nth = _spec.partition(":")
_left = int(_nth) if _nth.isdigit() else 1


def reached(point: str) -> None:
    global _left
    if point != _name:
        return
    with _lock:
        _left -= 1
        if _left == 0:
            os.kill(os.getpid(), signal.SIGKILL)
