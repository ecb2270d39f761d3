"""Value types shared by every actor: positions, orders, instruments and order identity.

Parsers (`from_v5`) accept real Bybit V5 rows: numbers arrive as strings (sometimes ints),
unset prices arrive as "", "0" or "0.00", a flat position has side "". An enum value we do not
know is kept as its raw string; a missing or unreadable required field raises `ModelError`
naming the field, so a malformed row is rejected whole instead of half-applied.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, TypeVar


class ModelError(ValueError):
    """A V5 row could not be parsed; the message names the type and the field."""


class Side(StrEnum):
    BUY = "Buy"
    SELL = "Sell"
    NONE = ""  # a flat position row

    @property
    def opposite(self) -> Side:
        return {Side.BUY: Side.SELL, Side.SELL: Side.BUY}.get(self, Side.NONE)


class OrderStatus(StrEnum):
    NEW = "New"
    PARTIALLY_FILLED = "PartiallyFilled"
    UNTRIGGERED = "Untriggered"
    TRIGGERED = "Triggered"
    FILLED = "Filled"
    CANCELLED = "Cancelled"
    REJECTED = "Rejected"
    DEACTIVATED = "Deactivated"
    PARTIALLY_FILLED_CANCELED = "PartiallyFilledCanceled"


OPEN_STATUSES = frozenset(
    {OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.UNTRIGGERED, OrderStatus.TRIGGERED}
)


class OrderType(StrEnum):
    MARKET = "Market"
    LIMIT = "Limit"


class PositionStatus(StrEnum):
    NORMAL = "Normal"
    LIQ = "Liq"
    ADL = "Adl"


E = TypeVar("E", bound=StrEnum)


def parse_enum(enum: type[E], raw: Any) -> E | str:
    """The enum member for `raw`, or `raw` itself (as a string) when the exchange sent a value
    this version does not know. Never raises: a new Bybit enum value must not crash a cycle."""
    text = "" if raw is None else str(raw)
    try:
        return enum(text)
    except ValueError:
        return text


# --- field readers -------------------------------------------------------------------------

_UNSET = {"", "0", "0.0", "0.00"}


def _field(kind: str, row: Mapping[str, Any], name: str) -> Any:
    if name not in row or row[name] is None:
        raise ModelError(f"{kind}: missing required field '{name}'")
    return row[name]


def _to_decimal(kind: str, name: str, raw: Any) -> Decimal:
    if isinstance(raw, bool):
        raise ModelError(f"{kind}: field '{name}' is not a number: {raw!r}")
    try:
        value = Decimal(str(raw).strip()) if not isinstance(raw, Decimal) else raw
    except InvalidOperation:
        raise ModelError(f"{kind}: field '{name}' is not a number: {str(raw)[:40]!r}") from None
    if not value.is_finite():
        raise ModelError(f"{kind}: field '{name}' is not a finite number: {str(raw)[:40]!r}")
    return value


def _decimal(kind: str, row: Mapping[str, Any], name: str) -> Decimal:
    """A required number; "" is not a number."""
    return _to_decimal(kind, name, _field(kind, row, name))


def _optional_leverage(leverage_filter: Any) -> Decimal | None:
    """The instrument's maxLeverage when its leverageFilter gives one."""
    if not isinstance(leverage_filter, Mapping):
        return None
    return _price("Instrument", leverage_filter, "maxLeverage")


def _price(kind: str, row: Mapping[str, Any], name: str) -> Decimal | None:
    """An optional price: absent, "", "0" or "0.00" mean unset."""
    raw = row.get(name)
    if raw is None or str(raw).strip() in _UNSET:
        return None
    value = _to_decimal(kind, name, raw)
    return value if value != 0 else None


def _int(kind: str, row: Mapping[str, Any], name: str, default: int | None = None) -> int:
    raw = row.get(name, default) if default is not None else _field(kind, row, name)
    if raw is None or raw == "":
        if default is None:
            raise ModelError(f"{kind}: missing required field '{name}'")
        return default
    try:
        return int(str(raw))
    except ValueError:
        raise ModelError(f"{kind}: field '{name}' is not an integer: {str(raw)[:40]!r}") from None


def _bool(row: Mapping[str, Any], name: str) -> bool:
    raw = row.get(name, False)
    if isinstance(raw, str):
        return raw.strip().lower() in {"true", "1"}
    return bool(raw)


# --- order identity ------------------------------------------------------------------------

LINK_PREFIX = "tg"
LINK_MAX_LENGTH = 36
_ROLES = "ETSX"  # entry, take-profit, stop, emergency close
_LINK_RE = re.compile(r"tg-([A-Za-z0-9]{1,16})-([ETSX])([0-9]{1,2})-([0-9]{1,7})")


class Role(StrEnum):
    ENTRY = "E"
    TAKE_PROFIT = "T"
    STOP = "S"
    EMERGENCY_CLOSE = "X"


@dataclass(frozen=True, slots=True, order=True)
class Intent:
    """One order's purpose within a position, across its generations: a role and a level
    (`S0` the stop, `T2` the second take-profit, `E3` the third entry, `X0` the emergency close)."""

    role: Role
    level: int

    def __str__(self) -> str:
        return f"{Role(self.role).value}{self.level}"

    @staticmethod
    def parse(text: str) -> Intent:
        match = _INTENT_RE.fullmatch(text)
        if match is None:
            raise ValueError(f"not an intent: {text[:20]!r}")
        return Intent(Role(match.group(1)), int(match.group(2)))


_INTENT_RE = re.compile(r"([ETSX])([0-9]{1,2})")


@dataclass(frozen=True, slots=True)
class OrderLink:
    """The structured `orderLinkId` of an order the daemon placed:
    `tg-<position id>-<role><level>-<generation>`, e.g. `tg-k3j9x2-T1-0`.

    The position id is unique per opened position; the generation grows with every replacement,
    so an id is never reused and the same intent after a crash rebuilds the same id."""

    position_id: str
    role: Role
    level: int
    generation: int

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9]{1,16}", self.position_id):
            raise ValueError("position id must be 1-16 characters of [A-Za-z0-9]")
        if not 0 <= self.level <= 99:
            raise ValueError("level must be 0-99")
        if not 0 <= self.generation <= 9_999_999:
            raise ValueError("generation must be 0-9999999")

    def build(self) -> str:
        text = f"{LINK_PREFIX}-{self.position_id}-{Role(self.role).value}{self.level}-{self.generation}"
        assert len(text) <= LINK_MAX_LENGTH  # guaranteed by the field limits above
        return text

    def next_generation(self) -> OrderLink:
        return OrderLink(self.position_id, self.role, self.level, self.generation + 1)

    @staticmethod
    def of(position_id: str, intent: Intent, generation: int) -> OrderLink:
        return OrderLink(position_id, intent.role, intent.level, generation)

    @property
    def intent(self) -> Intent:
        """What the order is for within its position, the same across generations."""
        return Intent(self.role, self.level)

    @staticmethod
    def parse(text: str | None) -> OrderLink | None:
        """The link of one of the daemon's orders, or None for an external order. By parsing the
        whole id, never by substring: `BOT_TPSL_...` or `my-tg-...` are external."""
        return _parse_link(text or "")


@functools.lru_cache(maxsize=1 << 16)
def _parse_link(text: str) -> OrderLink | None:
    """Pure and asked about the same ids at every check (tens per check): remembered."""
    match = _LINK_RE.fullmatch(text)
    if match is None:
        return None
    position_id, role, level, generation = match.groups()
    # Leading zeros would give two spellings of one id; only the canonical one is ours.
    if str(int(level)) != level or str(int(generation)) != generation:
        return None
    return OrderLink(position_id, Role(role), int(level), int(generation))


# --- exchange rows -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Instrument:
    symbol: str
    tick_size: Decimal
    qty_step: Decimal
    min_qty: Decimal
    max_qty: Decimal
    status: str = "Trading"
    max_leverage: Decimal | None = None
    delivery_ms: int = 0  # deliveryTime: a perpetual's delisting time once announced, else 0

    @classmethod
    def from_v5(cls, row: Mapping[str, Any]) -> Instrument:
        kind = "Instrument"
        price_filter = _field(kind, row, "priceFilter")
        lot = _field(kind, row, "lotSizeFilter")
        if not isinstance(price_filter, Mapping) or not isinstance(lot, Mapping):
            raise ModelError(f"{kind}: priceFilter and lotSizeFilter must be objects")
        instrument = cls(
            symbol=str(_field(kind, row, "symbol")),
            tick_size=_decimal(kind, price_filter, "tickSize"),
            qty_step=_decimal(kind, lot, "qtyStep"),
            min_qty=_decimal(kind, lot, "minOrderQty"),
            max_qty=_decimal(kind, lot, "maxOrderQty"),
            status=str(row.get("status", "Trading")),
            max_leverage=_optional_leverage(row.get("leverageFilter")),
            delivery_ms=_int(kind, row, "deliveryTime", 0),
        )
        if instrument.tick_size <= 0 or instrument.qty_step <= 0:
            raise ModelError(f"{kind}: tickSize and qtyStep must be positive")
        return instrument

    @property
    def trading(self) -> bool:
        """False once the contract leaves `Trading` (R19: delivery or delisting)."""
        return self.status == "Trading"

    def round_qty(self, qty: Decimal) -> Decimal:
        """Down to a multiple of qtyStep (never more than asked for)."""
        return (qty / self.qty_step).to_integral_value(ROUND_DOWN) * self.qty_step

    def split_qty(self, total: Decimal, percents: tuple[Decimal, ...]) -> tuple[Decimal, ...]:
        """`total` split by `percents` (adding up to 100), each part rounded down to qtyStep.
        A part below minOrderQty is folded into the part before it (cascading towards the
        first), so no share is silently dropped; folded parts are 0. All parts are 0 when even
        the first would stay below minOrderQty."""
        shares = list(percents)
        for level in range(len(shares) - 1, 0, -1):
            if self.round_qty(total * shares[level] / 100) < self.min_qty:
                shares[level - 1] += shares[level]
                shares[level] = Decimal(0)
        parts = [self.round_qty(total * share / 100) if share else Decimal(0) for share in shares]
        if parts and parts[0] < self.min_qty:
            return tuple(Decimal(0) for _ in parts)
        return tuple(parts)

    def snap_price(self, price: Decimal, *, up: bool) -> Decimal:
        """To a multiple of tickSize, rounding up or down as the caller's direction needs."""
        steps = (price / self.tick_size).to_integral_value(ROUND_CEILING if up else ROUND_FLOOR)
        return steps * self.tick_size


@dataclass(frozen=True, slots=True)
class Position:
    symbol: str
    side: Side | str
    size: Decimal
    avg_price: Decimal
    position_idx: int
    status: PositionStatus | str
    mark_price: Decimal | None
    take_profit: Decimal | None
    stop_loss: Decimal | None
    cum_realised_pnl: Decimal
    created_ms: int
    updated_ms: int
    seq: int = -1  # grows with every fill on the symbol (REST and push alike)
    opened_ms: int = 0  # openTime: when this position opened (a re-entry is a new one); 0: not told

    @classmethod
    def from_v5(cls, row: Mapping[str, Any]) -> Position:
        kind = "Position"
        size = _decimal(kind, row, "size")
        if size < 0:
            raise ModelError(f"{kind}: field 'size' is negative")
        # WS rows name the entry price entryPrice; REST rows avgPrice.
        avg_name = "avgPrice" if "avgPrice" in row else "entryPrice"
        return cls(
            symbol=str(_field(kind, row, "symbol")),
            side=parse_enum(Side, _field(kind, row, "side")),
            size=size,
            avg_price=_decimal(kind, row, avg_name) if str(row.get(avg_name, "")) != "" else Decimal(0),
            position_idx=_int(kind, row, "positionIdx"),
            status=parse_enum(PositionStatus, row.get("positionStatus", "Normal")),
            mark_price=_price(kind, row, "markPrice"),
            take_profit=_price(kind, row, "takeProfit"),
            stop_loss=_price(kind, row, "stopLoss"),
            cum_realised_pnl=_price(kind, row, "cumRealisedPnl") or Decimal(0),
            created_ms=_int(kind, row, "createdTime", 0),
            updated_ms=_int(kind, row, "updatedTime", 0),
            seq=_int(kind, row, "seq", -1),
            opened_ms=_int(kind, row, "openTime", 0),
        )

    @property
    def is_open(self) -> bool:
        return self.size > 0 and self.side in (Side.BUY, Side.SELL)


@dataclass(frozen=True, slots=True)
class Order:
    order_id: str
    link_id: str
    symbol: str
    side: Side | str
    order_type: OrderType | str
    status: OrderStatus | str
    qty: Decimal
    price: Decimal | None
    trigger_price: Decimal | None
    trigger_direction: int
    reduce_only: bool
    close_on_trigger: bool
    cum_exec_qty: Decimal
    leaves_qty: Decimal
    avg_price: Decimal | None
    position_idx: int
    stop_order_type: str
    cancel_type: str
    time_in_force: str
    created_ms: int
    updated_ms: int
    trigger_by: str = ""  # a conditional order's triggerBy (LastPrice, MarkPrice, IndexPrice); "" otherwise

    @classmethod
    def from_v5(cls, row: Mapping[str, Any]) -> Order:
        kind = "Order"
        qty = _decimal(kind, row, "qty")
        cum = _price(kind, row, "cumExecQty") or Decimal(0)
        leaves_raw = row.get("leavesQty")
        leaves = _to_decimal(kind, "leavesQty", leaves_raw) if leaves_raw not in (None, "") else qty - cum
        return cls(
            order_id=str(_field(kind, row, "orderId")),
            link_id=str(row.get("orderLinkId") or ""),
            symbol=str(_field(kind, row, "symbol")),
            side=parse_enum(Side, _field(kind, row, "side")),
            order_type=parse_enum(OrderType, _field(kind, row, "orderType")),
            status=parse_enum(OrderStatus, _field(kind, row, "orderStatus")),
            qty=qty,
            price=_price(kind, row, "price"),
            trigger_price=_price(kind, row, "triggerPrice"),
            trigger_direction=_int(kind, row, "triggerDirection", 0),
            reduce_only=_bool(row, "reduceOnly"),
            close_on_trigger=_bool(row, "closeOnTrigger"),
            cum_exec_qty=cum,
            leaves_qty=leaves,
            avg_price=_price(kind, row, "avgPrice"),
            position_idx=_int(kind, row, "positionIdx", 0),
            stop_order_type=str(row.get("stopOrderType") or ""),
            cancel_type=str(row.get("cancelType") or ""),
            time_in_force=str(row.get("timeInForce") or ""),
            created_ms=_int(kind, row, "createdTime", 0),
            updated_ms=_int(kind, row, "updatedTime", 0),
            trigger_by=str(row.get("triggerBy") or ""),
        )

    @property
    def link(self) -> OrderLink | None:
        return OrderLink.parse(self.link_id)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def is_conditional(self) -> bool:
        return self.trigger_price is not None


@dataclass(frozen=True, slots=True)
class Execution:
    """One fill (an `execution` push row, or a `/v5/execution/list` row)."""

    exec_id: str
    symbol: str
    order_id: str
    link_id: str
    qty: Decimal
    price: Decimal
    leaves_qty: Decimal
    exec_ms: int
    seq: int = -1  # the seq of the position push this fill leads to

    @classmethod
    def from_v5(cls, row: Mapping[str, Any]) -> Execution:
        kind = "Execution"
        return cls(
            exec_id=str(_field(kind, row, "execId")),
            symbol=str(_field(kind, row, "symbol")),
            order_id=str(_field(kind, row, "orderId")),
            link_id=str(row.get("orderLinkId") or ""),
            qty=_decimal(kind, row, "execQty"),
            price=_decimal(kind, row, "execPrice"),
            leaves_qty=_decimal(kind, row, "leavesQty"),
            exec_ms=_int(kind, row, "execTime"),
            seq=_int(kind, row, "seq", -1),
        )


# --- monitor identity and urgency ------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class MonitorId:
    """One monitor per (account, symbol, positionIdx), ever."""

    account: str
    symbol: str
    position_idx: int = 0

    def __str__(self) -> str:
        return f"{self.account}:{self.symbol}:{self.position_idx}"

    @staticmethod
    def parse(text: str) -> MonitorId:
        account, symbol, idx = text.split(":")
        return MonitorId(account, symbol, int(idx))


class Urgency(StrEnum):
    """Check tiers, most urgent first (tpsl-rules.md "Urgency")."""

    CRITICAL = "critical"
    ACTIVE = "active"
    STANDARD = "standard"
    INACTIVE = "inactive"
    IDLE = "idle"

    @property
    def rank(self) -> int:
        return _URGENCY_ORDER.index(self)


_URGENCY_ORDER = list(Urgency)


class Approach(StrEnum):
    CONSERVATIVE = "conservative"
    FAST = "fast"
    ADOPTED = "adopted"
    PLANNED = "planned"  # a position the daemon did not open, given its targets by the trader


class StopAfter(StrEnum):
    """R13: where the stop goes as take-profits fill."""

    BREAKEVEN = "breakeven"  # TP1 -> breakeven; later TPs only shrink it
    PREVIOUS_TP = "previous_tp"  # TP1 -> breakeven, TPk -> the price of TP(k-1)
    TWO_BACK = "two_back"  # TP1 -> no move, TP2 -> breakeven, TPk -> TP(k-2)


class TriggerBy(StrEnum):
    """R15: the price a stop triggers on (Bybit's triggerBy)."""

    LAST = "LastPrice"
    MARK = "MarkPrice"
    INDEX = "IndexPrice"


TRAIL_STARTS = ("off", "tp1", "tp2", "tp3", "tp4")


def parse_trail_start(text: str) -> str:
    """R14's TRAIL_ACTIVATE / `--trail-after`: off, tp1 to tp4, or profit:<percent> (profit:1.5 starts
    trailing once the price is 1.5 % in the position's favour). Raises ValueError saying so."""
    value = text.strip().lower()
    if value in TRAIL_STARTS:
        return value
    if value.startswith("profit:"):
        try:
            percent = Decimal(value.removeprefix("profit:"))
        except InvalidOperation:
            percent = Decimal(0)
        if percent.is_finite() and 0 < percent <= 1000:
            return f"profit:{percent}"
    raise ValueError("must be off, tp1 to tp4, or profit:<percent> (e.g. profit:1.5)")


@dataclass(frozen=True, slots=True)
class Plan:
    """A position's targets: take-profit shares and prices, the stop, and for a trade the daemon opens,
    its legs. Carried by `OpenTrade` and kept in every monitor's state."""

    approach: Approach
    side: Side
    percents: tuple[Decimal, ...]  # take-profit shares (add up to 100)
    tp_prices: tuple[Decimal, ...]
    stop_price: Decimal
    legs: tuple[Decimal, ...] = ()  # a trade the daemon opens: leg 1 at market, the others limits
    limits: tuple[Decimal, ...] = ()  # the limit prices of legs 2, 3, ...
    # Exits (R13, R15, R16); None / 0: the settings' defaults (STOP_AFTER_TP, STOP_TRIGGER_BY), no limit.
    stop_after: StopAfter | None = None
    trigger_by: TriggerBy | None = None
    time_limit_seconds: int = 0  # R16: from the first entry fill; 0: none
    trail_after: str | None = None  # R14: when trailing starts (parse_trail_start); None: TRAIL_ACTIVATE
    trail_percent: Decimal | None = None  # R14: the trailing distance; None: TRAIL_DISTANCE_PERCENT

    @property
    def stop_ladder(self) -> StopAfter:
        return self.stop_after or StopAfter.BREAKEVEN

    @property
    def triggers_on(self) -> TriggerBy:
        return self.trigger_by or TriggerBy.LAST
