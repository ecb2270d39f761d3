"""The process's WebSocket handshake budget: Bybit allows 500 connections per 5 minutes from one
IP, and asks not to connect and disconnect often. Every stream of the process (each account's
private stream, the public tickers) asks here before it connects, so N accounts that all drop at
once come back staggered (PER_SECOND), and a stream that keeps failing cannot spend the IP's
budget for the others. `share` is this process's part of the IP (IP_BUDGET_SHARE); a fifth of it
is left for restarts and other clients. Pure bookkeeping, time passed in.
"""

from __future__ import annotations

import itertools
from collections import deque

HANDSHAKES_PER_WINDOW, WINDOW_S = 500, 300.0  # Bybit: 500 connections per 5 minutes per IP
HEADROOM = 0.8
PER_SECOND = 5  # connects started per second at most: 50 accounts back within about 10 s


class HandshakeBudget:
    def __init__(self, share: float = 1.0, per_second: int = PER_SECOND):
        self.limit = max(1, int(HANDSHAKES_PER_WINDOW * share * HEADROOM))
        self.per_second = per_second
        self._spent: deque[float] = deque()  # when each handshake was allowed, oldest first
        self.held = 0  # connects told to wait, since start

    def take(self, now: float) -> bool:
        """May a stream connect now? Yes spends one handshake."""
        while self._spent and self._spent[0] <= now - WINDOW_S:
            self._spent.popleft()
        recent = sum(1 for _ in itertools.takewhile(lambda at: at > now - 1.0, reversed(self._spent)))
        if len(self._spent) >= self.limit or recent >= self.per_second:
            self.held += 1
            return False
        self._spent.append(now)
        return True
