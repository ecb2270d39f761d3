"""The gateway's rate limiter: pure bookkeeping, time passed in by the caller.

Keyed like Bybit meters: (account, endpoint), rolling windows with the published limits (messages/endpoints.py:
writes 10/s, reads 50/s). The window is kept a little longer than Bybit's second (`guard`), because the
exchange counts arrivals and network jitter can bunch them. A request holds its place in the
window, freeing none, until its answer says when it went (`answered`), and is counted from the
latest moment it can have been put on the wire: its answer minus the quickest round trip seen
lately, or its worker's start if later. So a busy interpreter that sends one window's requests
late (a thread waits for the GIL between starting a request and writing it) cannot have the next
window's land within a second of them. Corrected by the answers' headers:
`X-Bapi-Limit-Status` lower than our own count means someone else spent budget; 10006 blocks the
key until `X-Bapi-Limit-Reset-Timestamp`; HTTP 403 bans every request to the host.

Above the keys, the IP: Bybit allows 600 requests per 5 s from one IP, all accounts and market
data together. Every request of the process is counted there when let go; `ip_share` is this
process's part when several shards share an egress IP (IP_BUDGET_SHARE), and a tenth of it is
left for everything else on the host (an operator's curl, a restart's overlap).
"""

from __future__ import annotations

import bisect
from collections import Counter, deque

from messages.endpoints import endpoint

IP_BAN_SECONDS = 600.0
IP_LIMIT, IP_WINDOW_S = 600, 5.0  # Bybit's per-IP budget (bybit-v5.md section 2)
IP_HEADROOM = 0.9
RTT_SAMPLES = 64  # round trips kept per (account, endpoint): the quickest of them bounds a send


def published_limit(path: str) -> int | None:
    """Bybit's per-UID limit of a path (None: only the IP limit); an unknown path is an error."""
    return endpoint(path).per_second


class RateLimiter:
    def __init__(self, window: float = 1.0, guard: float = 0.1, ip_share: float = 1.0):
        self._span = window + guard
        self._ip_span = IP_WINDOW_S + guard
        self.ip_limit = max(1, int(IP_LIMIT * ip_share * IP_HEADROOM))
        self._ip_sent: deque[float] = deque()  # every request let go, oldest first
        self._sent: dict[tuple[str, str], deque[float]] = {}  # send times, oldest first
        self._unsent: Counter[tuple[str, str]] = Counter()  # let go, not yet answered
        self._round_trips: dict[tuple[str, str], deque[float]] = {}
        self._limits: dict[tuple[str, str], int] = {}
        self._blocked_until: dict[tuple[str, str], float] = {}
        self.banned_until = 0.0
        self.waits = 0

    def _window(self, key: tuple[str, str], now: float) -> deque[float]:
        sent = self._sent.setdefault(key, deque())
        while sent and sent[0] <= now - self._span:
            sent.popleft()
        return sent

    def delay(self, account: str, endpoint: str, now: float, units: int = 1) -> float:
        """Seconds until `units` requests may be sent (0: now)."""
        if now < self.banned_until:
            return self.banned_until - now
        key = (account, endpoint)
        if now < self._blocked_until.get(key, 0.0):
            return self._blocked_until[key] - now
        return max(self._ip_delay(now), self._key_delay(key, endpoint, now, units))

    def _ip_delay(self, now: float) -> float:
        """Seconds until one more request fits the IP's budget (a batch is one request there)."""
        sent = self._ip_sent
        while sent and sent[0] <= now - self._ip_span:
            sent.popleft()
        if len(sent) < self.ip_limit:
            return 0.0
        return sent[len(sent) - self.ip_limit] + self._ip_span - now

    def _key_delay(self, key: tuple[str, str], endpoint: str, now: float, units: int) -> float:
        limit = self._limits.get(key) or published_limit(endpoint)
        if limit is None:
            return 0.0
        sent = self._window(key, now)
        units = min(units, limit)
        counted = len(sent) + self._unsent[key]
        if counted + units <= limit:
            return 0.0
        oldest_needed = counted + units - limit - 1
        if oldest_needed >= len(sent):
            return self._span  # the room is held by requests not answered yet: `answered` frees it
        return sent[oldest_needed] + self._span - now

    def take(self, account: str, endpoint: str, now: float, units: int = 1) -> bool:
        """Let `units` requests go now, if allowed; False (and counted as a wait) if not. Each
        holds its place until `answered` says when it went."""
        if self.delay(account, endpoint, now, units) > 0:
            self.waits += 1
            return False
        self._ip_sent.append(now)
        if published_limit(endpoint) is not None:
            self._unsent[(account, endpoint)] += units
        return True

    def answered(self, account: str, endpoint: str, started: float, answered: float, units: int = 1) -> None:
        """`units` requests let go by `take`, started by a worker at `started`, were answered at
        `answered`: counted from the latest moment they can have gone on the wire."""
        key = (account, endpoint)
        if published_limit(endpoint) is None or self._unsent[key] <= 0:
            return
        round_trips = self._round_trips.setdefault(key, deque(maxlen=RTT_SAMPLES))
        round_trips.append(answered - started)
        at = max(started, answered - min(round_trips))
        units = min(units, self._unsent[key])
        self._unsent[key] -= units
        window = self._sent.setdefault(key, deque())
        for _ in range(units):
            bisect.insort(window, at)

    def observe(self, account: str, endpoint: str, now: float, limit: str | None, remaining: str | None) -> None:
        """Correct our count from an answer's X-Bapi-Limit / X-Bapi-Limit-Status headers."""
        key = (account, endpoint)
        try:
            if limit is not None:
                self._limits[key] = max(1, int(limit))
            if remaining is not None:
                used = (self._limits.get(key) or published_limit(endpoint) or 0) - int(remaining)
                sent = self._window(key, now)
                while len(sent) + self._unsent[key] < used:
                    sent.append(now)  # budget spent elsewhere (another client on this key)
        except ValueError:
            pass  # a malformed header corrects nothing

    def block(self, account: str, endpoint: str, until: float) -> None:
        """After 10006: nothing for this key until the exchange's reset time."""
        key = (account, endpoint)
        self._blocked_until[key] = max(self._blocked_until.get(key, 0.0), until)

    def ban(self, until: float) -> None:
        """After HTTP 403: nothing to the host until `until`."""
        self.banned_until = max(self.banned_until, until)
