"""A read of an account (or of one symbol) walked page by page: a small state machine, no I/O.

A full read is every open order, then every position (so the position is the newest fact), then
with `with_closed` the finished orders; a `closed_only` read is just the finished orders. The
gateway sends `request()`, feeds each answer to `on_page()`, and sends the next request until the
read is done. A cursor that repeats or never ends fails the read: what was read may miss pages,
and applying it could turn missing rows into "no position".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from actors.exchange._formats import ReadPhase, page_of, page_request
from messages.models import ModelError, Order, Position
from runtime.backoff import Backoff

MAX_PAGES = 1000  # a cursor walk longer than this is a broken cursor
_FOLLOWING = {ReadPhase.ORDERS: ReadPhase.POSITIONS, ReadPhase.POSITIONS: ReadPhase.CLOSED, ReadPhase.CLOSED: None}


class Scope(Enum):
    FULL = "full"  # the whole account
    RESYNC = "resync"  # the whole account, checking a stream connection's pushed state
    SYMBOL = "symbol"  # one symbol's positions and open orders (and finished orders)
    CLOSED = "closed"  # one symbol's finished orders only


@dataclass(frozen=True, slots=True)
class ReadKey:
    """What a read covers: one read of each key is in flight at a time (others join it)."""

    account: str
    scope: Scope
    symbol: str | None = None


@dataclass
class Failing:
    """An account whose reads fail: since when, why, and when to try again (`symbol`: what the
    last failed read was of; None: the whole account)."""

    since: float
    reason: str
    backoff: Backoff
    retry_at: float = 0.0
    symbol: str | None = None


class ReadFailed(Exception):
    """The read cannot finish; the message says why."""


@dataclass
class Read:
    account: str
    symbol: str | None  # None: the whole account
    with_closed: bool
    started: float  # monotonic
    started_ms: int
    closed_only: bool = False
    resync: bool = False  # taken to check the pushed state of a stream connection
    connection: int = -1  # ... this one
    waiters: list[Any] = field(default_factory=list)
    pages: int = 0
    throttled: bool = False
    phase: ReadPhase = ReadPhase.ORDERS
    cursor: str | None = None
    _seen: set[str] = field(default_factory=set)
    _rows: dict[str, list[dict]] = field(default_factory=lambda: {"orders": [], "positions": [], "closed": []})

    def __post_init__(self) -> None:
        self.phase = ReadPhase.CLOSED if self.closed_only else ReadPhase.ORDERS

    @property
    def key(self) -> ReadKey:
        if self.resync:
            return ReadKey(self.account, Scope.RESYNC)
        if self.closed_only:
            return ReadKey(self.account, Scope.CLOSED, self.symbol)
        return ReadKey(self.account, Scope.SYMBOL, self.symbol) if self.symbol else ReadKey(self.account, Scope.FULL)

    def request(self) -> tuple[str, dict[str, Any]]:
        """The pybit method and parameters of the next page."""
        return page_request(self.phase, self.symbol, self.cursor)

    def on_page(self, body: dict[str, Any]) -> bool:
        """Take one page; True when the read is complete, False when another page is due.
        ReadFailed when it cannot finish."""
        try:
            rows, next_cursor = page_of(body)
        except ModelError as exc:
            raise ReadFailed(str(exc)) from None
        self.pages += 1
        self._rows[self.phase].extend(rows)
        if rows and next_cursor and self.phase is not ReadPhase.CLOSED:
            if next_cursor in self._seen or self.pages >= MAX_PAGES:
                raise ReadFailed(f"the {self.phase} cursor stopped advancing after {self.pages} pages")
            self._seen.add(next_cursor)
            self.cursor = next_cursor
            return False
        following = _FOLLOWING[self.phase]
        if following == "closed" and not self.with_closed:
            following = None
        if self.closed_only or following is None:
            return True
        self.phase, self.cursor, self._seen = following, None, set()
        return False

    def parsed(self) -> tuple[list[Position], list[Order], tuple[Order, ...]]:
        """Positions, open orders and finished orders; ModelError rejects the read whole."""
        try:
            orders = [Order.from_v5(row) for row in self._rows["orders"]]
            positions = [Position.from_v5(row) for row in self._rows["positions"]]
            closed = tuple(o for o in map(Order.from_v5, self._rows["closed"]) if not o.is_open)
        except (TypeError, AttributeError) as exc:
            raise ModelError(f"malformed row: {exc}") from None
        return positions, orders, closed
