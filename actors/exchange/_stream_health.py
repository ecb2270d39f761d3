"""Is an account's pushed state fresh? The stream health rules, as a plain object.

An account's cache is fresh while its private stream is healthy: connected, authenticated,
subscribed, resynced by a REST snapshot since that connection was subscribed, and heard from
(a push, an ack or a pong) within two heartbeats. While healthy, a resync is due every
`resync_every` seconds; a failed resync is tried again after a backoff (1 s doubling to 15 s),
also the first one of a connection, which nothing else would retry; a resync whose differences
no push explained counts against the connection, and two such resyncs in a row make it suspect
(the gateway reconnects it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

RESYNC_RETRY_MAX_S = 15.0


@dataclass
class StreamHealth:
    account: str
    heartbeat: float
    resync_every: float
    connection: int = 0  # the subscribed connection's number (grows with each one)
    subscribed: bool = False
    resynced: bool = False  # for this connection
    resync_at: float = math.inf
    resyncing: bool = False
    differing: int = 0  # resyncs in a row that found missed pushes
    failures: int = 0  # resyncs in a row that failed
    was_healthy: bool = False

    def on_subscribed(self, connection: int) -> bool:
        """A connection's subscription was acknowledged; True when it is a new connection (a
        resync is due at once: pushes from before it are lost)."""
        if self.subscribed and connection == self.connection:
            return False
        self.connection, self.subscribed, self.resynced, self.differing = connection, True, False, 0
        self.resync_at = 0.0
        return True

    def on_down(self) -> None:
        self.subscribed = self.resynced = False

    def healthy(self, now: float, last_heard: float) -> bool:
        return self.subscribed and self.resynced and now - last_heard <= 2 * self.heartbeat

    def resync_due(self, now: float, healthy: bool) -> bool:
        """The periodic resync of a healthy stream, or the retry of a connection's first one."""
        return self.subscribed and (healthy or not self.resynced) and not self.resyncing and now >= self.resync_at

    def on_resync_failed(self, now: float) -> float:
        """A resync read failed: the seconds until the next try."""
        self.resyncing = False
        self.failures += 1
        delay = min(RESYNC_RETRY_MAX_S, 2.0 ** (self.failures - 1))
        self.resync_at = now + delay
        return delay

    def on_resynced(self, connection: int, now: float) -> bool:
        """A resync read taken on `connection` was merged; True when it made the stream fresh
        (the first resync of its connection)."""
        self.resyncing, self.failures = False, 0
        if connection != self.connection or not self.subscribed:
            return False  # taken on a connection that is gone: the next one resyncs again
        first = not self.resynced
        self.resynced, self.resync_at = True, now + self.resync_every
        return first

    def on_checked(self, missed: int) -> bool:
        """The differences of a periodic resync were judged; True when the stream is suspect."""
        self.differing = self.differing + 1 if missed else 0
        return self.differing >= 2
