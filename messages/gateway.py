"""Messages the ExchangeGateway receives, and what it answers.

Requests carry a `reply` future (a `pykka.ThreadingFuture`) that the gateway sets when the answer
is ready, possibly much later: its mailbox never waits on the network. `ask_with_reply()` in
actors/asks.py is the helper that makes one and waits with a timeout. `reply` is required; a
command inside a `SendBatch` passes `reply=None` (the batch is answered as a whole).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import IntEnum
from typing import Any

import pykka

from messages.models import Instrument, Order, OrderType, Position, Side, TriggerBy


class Priority(IntEnum):
    """Queued requests go out in this order."""

    PROTECT = 0  # place or move a stop, emergency close
    READ = 1  # reads: after protecting a position, before cleaning up
    CLEANUP = 2  # cancellations, and take-profit shrinks (they free room before a growth uses it)
    RESIZE = 3  # take-profit placement and resizing
    TRAIL = 4  # R14: trailing moves, last, and only within their share of an account's write budget


# --- queries -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GetMarket:
    """What opening a trade needs to size and check it: the symbol's instrument rules (from the
    gateway's instrument list), its last price (a tickers read) and the account's available
    balance (a wallet read). Answered with `Market`, or `Unavailable` when a read failed."""

    account: str
    symbol: str
    reply: pykka.Future[Market | Unavailable] = field(kw_only=True)


@dataclass(frozen=True, slots=True)
class Market:
    account: str
    symbol: str
    instrument: Instrument | None  # None: the exchange lists no such symbol
    last_price: Decimal | None
    available_balance: Decimal


@dataclass(frozen=True, slots=True)
class SetLeverage:
    """A write: the symbol's leverage on this account (both sides, one-way mode). Answered with an
    Outcome; Bybit's "not modified" (110043) is `Accepted`."""

    account: str
    symbol: str
    leverage: Decimal
    reply: pykka.Future[Outcome] = field(kw_only=True)


@dataclass(frozen=True, slots=True)
class GetPositionView:
    """One position and this account's open orders for its symbol, no older than `max_age` s.
    `include_closed` adds the symbol's recent finished orders (one extra read) for a monitor
    that saw a known order vanish and must learn whether it filled. While the account's stream is
    healthy a view comes from the pushed state whatever `max_age` says, and the finished orders
    too when they explain every link in `explain` (else the order history is read)."""

    account: str
    symbol: str
    position_idx: int = 0
    max_age: float = 2.0
    include_closed: bool = False
    explain: frozenset[str] = frozenset()  # with include_closed: the link ids whose fate is asked
    fresh: bool = False  # a snapshot read now, even while the stream keeps the cache fresh
    prices: bool = False  # the asker acts on live prices (R14): its symbol's ticker is kept subscribed
    reply: pykka.Future[PositionView | Unavailable] = field(kw_only=True)


@dataclass(frozen=True, slots=True)
class GetAccountSnapshot:
    """Every open position and open order of an account, no older than `max_age` s."""

    account: str
    max_age: float = 15.0
    reply: pykka.Future[AccountSnapshot | Unavailable] = field(kw_only=True)


@dataclass(frozen=True, slots=True)
class PositionView:
    account: str
    symbol: str
    position_idx: int
    position: Position | None  # None: no open position (flat or no row)
    orders: tuple[Order, ...]  # open orders of this symbol (every positionIdx)
    instrument: Instrument | None
    taken_ms: int  # exchange-clock-ish wall time the data was read
    age: float  # seconds, when answered
    snapshot_id: int  # grows with every read that covered this symbol
    stale: bool = False  # the last refreshes failed; this is the last good data
    throttled: bool = False  # the answer waited on the rate limiter
    closed: tuple[Order, ...] = ()  # with include_closed: recent finished orders
    flat_pushed: bool = False  # the private stream said this position is flat (size 0)
    pushed: bool = False  # answered from the pushed state (the account's stream is healthy)
    renewals: int = 0  # new positions the cache saw open on this key (R11); grows, never resets while running
    prices: Mapping[TriggerBy, Decimal] = field(default_factory=dict)  # the ticker's last, mark, index (R15)

    def price(self, trigger_by: TriggerBy) -> Decimal | None:
        """The price a stop on `trigger_by` triggers on: the ticker's, else the position row's mark."""
        mark = self.position.mark_price if self.position is not None else None
        return self.prices.get(trigger_by) or mark


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    account: str
    positions: tuple[Position, ...]
    orders: tuple[Order, ...]
    taken_ms: int
    age: float
    snapshot_id: int
    stale: bool = False


@dataclass(frozen=True, slots=True)
class Unavailable:
    """No answer can be given: the account is unknown, or every refresh failed for longer than
    the stale limit."""

    account: str
    reason: str


# --- commands ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    account: str
    symbol: str
    side: Side
    order_type: OrderType
    qty: Decimal
    link_id: str
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    trigger_direction: int | None = None
    trigger_by: TriggerBy = TriggerBy.LAST  # R15: the price a conditional order triggers on
    reduce_only: bool = True
    close_on_trigger: bool = False
    time_in_force: str = "GTC"
    position_idx: int = 0
    priority: Priority = Priority.RESIZE
    reply: pykka.Future[Outcome] = field(kw_only=True)


@dataclass(frozen=True, slots=True)
class AmendOrder:
    account: str
    symbol: str
    link_id: str
    qty: Decimal | None = None
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    trigger_by: TriggerBy | None = None  # R15: a stop placed on another price type is moved to the plan's
    priority: Priority = Priority.RESIZE
    reply: pykka.Future[Outcome] = field(kw_only=True)


@dataclass(frozen=True, slots=True)
class CancelOrder:
    account: str
    symbol: str
    link_id: str
    priority: Priority = Priority.CLEANUP
    reply: pykka.Future[Outcome] = field(kw_only=True)


@dataclass(frozen=True, slots=True)
class CancelAll:
    """Cancel every open order of a symbol, external ones included: use with care."""

    account: str
    symbol: str
    priority: Priority = Priority.CLEANUP
    reply: pykka.Future[Outcome] = field(kw_only=True)


OrderCommand = PlaceOrder | AmendOrder | CancelOrder | CancelAll  # one order command (a SendBatch holds several)


def link_of(command: OrderCommand) -> str | None:
    """The orderLinkId a command acts on (cancel-all has none)."""
    return None if isinstance(command, CancelAll) else command.link_id


@dataclass(frozen=True, slots=True)
class SendBatch:
    """Up to 10 commands of one kind (all PlaceOrder, all AmendOrder or all CancelOrder) for one
    account, sent as one batch request. Answered with a tuple of outcomes in the same order."""

    account: str
    commands: tuple[OrderCommand, ...]
    priority: Priority = Priority.RESIZE
    reply: pykka.Future[tuple[Outcome, ...]] = field(kw_only=True)


@dataclass(frozen=True, slots=True)
class Accepted:
    order_id: str
    link_id: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """A definite no: the exchange did not act."""

    code: int
    message: str


@dataclass(frozen=True, slots=True)
class Unresolved:
    """The exchange may or may not have acted (timeout, 5xx, 10006, dropped connection, lost
    answer). Settle by looking the orderLinkId up in a fresh snapshot; never resend blindly."""

    reason: str


Outcome = Accepted | Rejected | Unresolved


@dataclass(frozen=True, slots=True)
class CheckAccess:
    """Do this account's keys work, and may they trade? Answered with `Access`."""

    account: str
    reply: pykka.Future[Access] = field(kw_only=True)


@dataclass(frozen=True, slots=True)
class Access:
    account: str
    ok: bool
    can_trade: bool
    message: str
    transient: bool = False  # the check itself failed (timeout, 5xx, 10016): ask again later


# --- operations ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GetGatewayStats:
    """Ask (answered at once): `GatewayStats`."""


@dataclass(frozen=True, slots=True)
class AttachScheduler:
    """Tell (once the Scheduler runs): where `Wake`s for pushed changes go."""

    scheduler: pykka.ActorRef[Any]


@dataclass(frozen=True, slots=True)
class GatewayTick:
    """From the ticker (every 50 ms): send queued requests the rate limiter now allows."""

    now: float


@dataclass(frozen=True, slots=True)
class ReportStats:
    """From the ticker (every 60 s): log the stats line."""

    now: float


@dataclass(frozen=True, slots=True)
class GatewayStats:
    calls: Mapping[str, Mapping[str, int]]  # account -> endpoint -> calls
    errors: Mapping[str, Mapping[str, int]]  # account -> error kind -> count
    cache_hits: int
    cache_misses: int
    refreshes: int
    refresh_seconds: tuple[float, ...]
    pool_in_use: int
    pool_size: int
    limiter_waits: int
    rate_limited_10006: int
    banned_403: int
    stale_accounts: tuple[str, ...] = ()
    streams_healthy: tuple[str, ...] = ()  # accounts whose cache is fresh by push
    pushes: int = 0
    rejected_pushes: int = 0
    missed_pushes: int = 0  # differences resyncs found that no push told
    wakes: int = 0
    stream_connects: Mapping[str, int] = field(default_factory=dict)  # stream -> connection attempts
