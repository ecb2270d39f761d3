"""Bybit's request limits as the simulator enforces them.

Per account and endpoint: a rolling 1 s window (messages/endpoints.py: writes 10/s,
reads 50/s), answered with retCode
10006 and a reset time in the future. Per client IP (all loopback traffic is one client): more
than 600 requests in 5 s bans every request with HTTP 403 for `ip_ban_seconds`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

from messages.endpoints import endpoint as endpoint_of


@dataclass(frozen=True, slots=True)
class Quota:
    """What one request got: `granted` units (0 means 10006), and the header values."""

    granted: int
    limit: int
    remaining: int
    reset_ms: int


class RateLimits:
    def __init__(
        self,
        ip_limit: int = 600,
        ip_window_s: float = 5.0,
        ip_ban_seconds: float = 600.0,
        monotonic=time.monotonic,
        wall_ms=lambda: int(time.time() * 1000),
    ):
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, str], deque[float]] = {}
        self._ip_window: deque[float] = deque()
        self.ip_limit = ip_limit
        self.ip_window_s = ip_window_s
        self.ip_ban_seconds = ip_ban_seconds
        self.limits: dict[str, int] = {}  # per-endpoint overrides (fault knob "limit")
        self._banned_until = 0.0
        self._monotonic = monotonic
        self._wall_ms = wall_ms

    def ip_allows(self) -> bool:
        """Count one request against the IP limit; False while banned (answer HTTP 403)."""
        with self._lock:
            now = self._monotonic()
            if now < self._banned_until:
                return False
            while self._ip_window and self._ip_window[0] <= now - self.ip_window_s:
                self._ip_window.popleft()
            if len(self._ip_window) >= self.ip_limit:
                self._banned_until = now + self.ip_ban_seconds
                self._ip_window.clear()
                return False
            self._ip_window.append(now)
            return True

    def lift_ban(self) -> None:
        with self._lock:
            self._banned_until = 0.0
            self._ip_window.clear()

    def take(self, account: str, endpoint: str, units: int = 1) -> Quota | None:
        """Take up to `units` from the (account, endpoint) window. None for unmetered endpoints.
        A batch gets as many units as remain (its later orders fail); 0 means 10006."""
        limit = self.limits.get(endpoint) or endpoint_of(endpoint).per_second
        if limit is None:
            return None
        with self._lock:
            now = self._monotonic()
            window = self._windows.setdefault((account, endpoint), deque())
            while window and window[0] <= now - 1.0:
                window.popleft()
            granted = min(units, limit - len(window))
            window.extend([now] * max(granted, 0))
            remaining = limit - len(window)
            if granted <= 0 or remaining == 0:
                # When the oldest request leaves the window, in wall-clock ms (always in the future).
                reset_ms = self._wall_ms() + max(1, int((window[0] + 1.0 - now) * 1000))
            else:
                reset_ms = self._wall_ms()
            return Quota(max(granted, 0), limit, remaining, reset_ms)
