"""Fault injection: knobs set from Python or from `POST /sim/faults`.

A fault applies to requests matching its endpoint (None: every endpoint) and account (None: any
account; "public" for unsigned market-data requests). `count` is how many requests it affects
(None: until cleared), `skip` how many matching requests pass untouched first.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, fields
from typing import Any

KINDS = {
    "latency": "add `ms` (plus up to `jitter_ms`) before answering",
    "http_5xx": "answer HTTP `status` (default 502) with an HTML error page; nothing applied",
    "retcode": "answer retCode `code` (default 10016) with `message`; nothing applied",
    "hang": "never answer: hold the connection for `seconds` (default 60), then drop it",
    "lost_response": "apply the request, then drop the connection without an answer",
    "drop_connection": "drop the connection without applying the request",
    "malformed_json": "answer HTTP 200 with a truncated JSON body; nothing applied",
    "stuck_cursor": "list endpoints: the returned cursor never advances",
    "last_page_cursor": "list endpoints: the last page still carries a cursor (as real Bybit may)",
    "corrupt_rows": "list endpoints: set `field` to `value` in every row (value null: remove the field)",
    "clock_skew": "the exchange's clock runs `ms` ahead (negative: behind) when checking timestamps",
    # WebSockets (endpoint: the path, /v5/private or /v5/public/linear; account: the authenticated one)
    "ws_refuse": "answer the WebSocket handshake with HTTP 502 (`count` handshakes)",
    "ws_auth_fail": "answer the next auth `Params Error` whatever its signature",
    "ws_drop": "drop the connection without a close frame",
    "ws_close": "close the connection with close `code` (1000, 1001, 1011...)",
    "ws_lose_push": "lose the next `count` pushes of `topic` (any topic when empty)",
    "ws_duplicate_push": "send the next `count` pushes of `topic` twice",
    "ws_corrupt_push": "set `field` to `value` in every row of the next `count` pushes of `topic`",
    "ws_stall": "withhold every push (sent once cleared) while JSON and protocol pongs are still answered",
    "ws_black_hole": "answer nothing at all: no pongs, acks or pushes (until cleared)",
    "ws_reorder_fill": "push the next `count` fills' execution rows before their order's row",
    "ws_late_triggered": "push the next `count` stops' Triggered row after their Filled row",
}

# Kinds that replace the answer; at most one applies to a request (the first set).
ANSWER_KINDS = frozenset({"http_5xx", "retcode", "hang", "lost_response", "drop_connection", "malformed_json"})


@dataclass
class Fault:
    kind: str
    endpoint: str | None = None
    account: str | None = None
    count: int | None = None
    skip: int = 0
    ms: float = 0.0
    jitter_ms: float = 0.0
    status: int = 502
    code: int = 10016
    message: str = "System error. Please try again later."
    seconds: float = 60.0
    field: str = ""
    value: Any = None
    topic: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; known: {', '.join(sorted(KINDS))}")
        if self.count is not None and self.count < 1:
            raise ValueError("count must be at least 1 (or null for until cleared)")
        if self.endpoint is not None and not self.endpoint.startswith("/v5/"):
            raise ValueError("endpoint must be a /v5/ path, e.g. /v5/order/create")
        if self.kind == "corrupt_rows" and not self.field:
            raise ValueError("corrupt_rows needs a field")

    @classmethod
    def from_json(cls, data: dict) -> Fault:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        if "kind" not in data:
            raise ValueError("a fault needs a kind")
        return cls(**data)

    def matches(self, endpoint: str, account: str | None, topic: str = "") -> bool:
        return (
            (self.endpoint is None or self.endpoint == endpoint)
            and (self.account is None or self.account == account)
            and (not self.topic or self.topic == topic)
        )


class FaultBook:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self.applied = 0

    def add(self, fault: Fault | None = None, /, **knobs) -> Fault:
        fault = fault or Fault(**knobs)
        with self._lock:
            self._faults.append(fault)
        return fault

    def active(self, kind: str, endpoint: str, account: str | None) -> Fault | None:
        """A standing fault of this kind (not consumed), e.g. a stall until cleared."""
        with self._lock:
            return next((f for f in self._faults if f.kind == kind and f.matches(endpoint, account)), None)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def list(self) -> list[dict]:
        with self._lock:
            return [asdict(f) for f in self._faults]

    def take(
        self, endpoint: str, account: str | None, *, kinds: tuple[str, ...] | None = None, topic: str = ""
    ) -> list[Fault]:
        """The faults that apply to this request, consuming their counts. At most one of the
        answer-replacing kinds is returned. HTTP requests see no WebSocket kinds, and the other
        way round (a WebSocket connection names the `kinds` it asks about)."""
        taken: list[Fault] = []
        answered = False
        with self._lock:
            for fault in list(self._faults):
                wanted = fault.kind in kinds if kinds is not None else not fault.kind.startswith("ws_")
                if not wanted or not fault.matches(endpoint, account, topic):
                    continue
                if fault.kind in ANSWER_KINDS and answered:
                    continue
                if fault.skip > 0:
                    fault.skip -= 1
                    continue
                taken.append(fault)
                answered = answered or fault.kind in ANSWER_KINDS
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count == 0:
                        self._faults.remove(fault)
            self.applied += len(taken)
        return taken
