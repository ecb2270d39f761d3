"""The simulated exchange: accounts, orders, positions, matching, and the rules Bybit enforces.

Everything here runs under one lock and raises `BybitError(code, message)` for a business error,
which the HTTP layer turns into Bybit's envelope. A symbol is in one-way mode (positionIdx 0)
until the trader switches it to hedge mode (`switch_mode`, mode 3): then each side is its own
position, the long leg positionIdx 1 and the short leg 2, each with its own orders and rules, and
asking for the other mode's positionIdx gets Bybit's own error.

Semantics the TP/SL rules rely on (../shared/tpsl-rules.md, "Exchange semantics"):
- a conditional reduce-only order (a stop) reserves nothing and may carry more than the position;
  when it triggers, the fill is clipped to the position; it survives the position going flat;
- an active reduce-only order (limit or market) is truncated on creation to what is left to reduce
  (position minus the other active reduce-only orders on that side); nothing left gives 110017;
  when the position shrinks, the excess active reduce-only orders are cancelled by the exchange
  (newest first, cancelType CancelByReduceOnly);
- a reduce-only order on a flat position, or on the wrong side, gives 110017;
- a reduce-only order with closeOnTrigger (a closing order) first cancels other active
  reduce-only orders on its side, newest first, until it fits;
- a reduce-only market order never rests, so it holds no room and needs none: it is clipped to
  the position only, fills, and the resting reduce-only orders that no longer fit are then
  cancelled (CancelByReduceOnly). A manual "close half" closes half.
"""

from __future__ import annotations

import random
import re
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any

from simulator.market import InstrumentSpec, Market

TAKER_FEE = Decimal("0.00055")
MAKER_FEE = Decimal("0.0002")
MAX_CONDITIONAL_PER_SYMBOL = 10
DEFAULT_LEVERAGE = Decimal(10)
RECENT_CLOSED_KEPT = 500
_LINK_ID_RE = re.compile(r"[0-9A-Za-z_-]{1,36}")

OPEN = ("New", "PartiallyFilled", "Untriggered")
TRIGGER_BY = ("LastPrice", "MarkPrice", "IndexPrice")


class BybitError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


def _fmt(value: Decimal | None) -> str:
    return "" if value is None else format(value, "f")


def _opposite(side: str) -> str:
    return {"Buy": "Sell", "Sell": "Buy"}.get(side, "")


@dataclass
class SimOrder:
    order_id: str
    link_id: str
    symbol: str
    side: str
    order_type: str
    qty: Decimal
    price: Decimal | None
    trigger_price: Decimal | None
    trigger_direction: int
    trigger_by: str
    reduce_only: bool
    close_on_trigger: bool
    time_in_force: str
    status: str
    created_ms: int
    seq: int
    last_price_on_created: Decimal
    updated_ms: int = 0
    cum_qty: Decimal = Decimal(0)
    cum_value: Decimal = Decimal(0)
    cum_fee: Decimal = Decimal(0)
    cancel_type: str = "UNKNOWN"
    reject_reason: str = "EC_NoError"
    position_opened_ms: int = 0  # the openTime of the position when the order came (for the oracle)
    position_idx: int = 0  # 0 one-way; hedge mode: 1 the long leg, 2 the short leg

    @property
    def is_open(self) -> bool:
        return self.status in OPEN

    @property
    def is_conditional(self) -> bool:
        return self.trigger_price is not None

    @property
    def is_active_reduce_only(self) -> bool:
        """Rests on the book reserving position: reduce-only and not (or no longer) conditional."""
        return self.reduce_only and self.status in ("New", "PartiallyFilled")

    @property
    def leaves(self) -> Decimal:
        return self.qty - self.cum_qty if self.is_open else Decimal(0)

    def to_v5(self) -> dict[str, Any]:
        avg = self.cum_value / self.cum_qty if self.cum_qty else None
        return {
            "orderId": self.order_id,
            "orderLinkId": self.link_id,
            "blockTradeId": "",
            "parentOrderLinkId": "",
            "symbol": self.symbol,
            "price": _fmt(self.price or Decimal(0)),
            "qty": _fmt(self.qty),
            "side": self.side,
            "isLeverage": "",
            "positionIdx": self.position_idx,
            "orderStatus": self.status,
            "createType": "CreateByUser",
            "cancelType": self.cancel_type,
            "rejectReason": self.reject_reason,
            "avgPrice": _fmt(avg.normalize()) if avg else "",
            "leavesQty": _fmt(self.leaves),
            "leavesValue": _fmt(self.leaves * (self.price or Decimal(0))),
            "cumExecQty": _fmt(self.cum_qty),
            "cumExecValue": _fmt(self.cum_value),
            "cumExecFee": _fmt(self.cum_fee),
            "timeInForce": self.time_in_force,
            "orderType": self.order_type,
            "stopOrderType": "Stop" if self.is_conditional else "",
            "orderIv": "",
            "marketUnit": "",
            "triggerPrice": _fmt(self.trigger_price),
            "takeProfit": "",
            "stopLoss": "",
            "tpslMode": "",
            "ocoTriggerBy": "",
            "tpLimitPrice": "",
            "slLimitPrice": "",
            "tpTriggerBy": "",
            "slTriggerBy": "",
            "triggerDirection": self.trigger_direction,
            "triggerBy": self.trigger_by if self.is_conditional else "",
            "lastPriceOnCreated": _fmt(self.last_price_on_created),
            "reduceOnly": self.reduce_only,
            "closeOnTrigger": self.close_on_trigger,
            "placeType": "",
            "smpType": "None",
            "smpGroup": 0,
            "smpOrderId": "",
            "createdTime": str(self.created_ms),
            "updatedTime": str(self.updated_ms or self.created_ms),
            "cumFeeDetail": {"USDT": _fmt(self.cum_fee)} if self.cum_fee else {},
        }


@dataclass
class SimPosition:
    symbol: str
    side: str = ""
    size: Decimal = Decimal(0)
    avg_price: Decimal = Decimal(0)
    cum_realised: Decimal = Decimal(0)
    cur_realised: Decimal = Decimal(0)
    status: str = "Normal"
    created_ms: int = 0  # the row's first position (Bybit's createdTime)
    updated_ms: int = 0
    opened_ms: int = 0  # when the current position opened (openTime; 0 while flat)
    seq: int = -1
    position_idx: int = 0

    def to_v5(self, mark: Decimal, tick: Decimal, leverage: Decimal = Decimal(10)) -> dict[str, Any]:
        direction = {"Buy": 1, "Sell": -1}.get(self.side, 0)
        unrealised = (mark - self.avg_price) * self.size * direction
        value = self.avg_price * self.size
        return {
            "positionIdx": self.position_idx,
            "riskId": 1,
            "riskLimitValue": "2000000",
            "symbol": self.symbol,
            "side": self.side,
            "size": _fmt(self.size) if self.size else "0",
            "avgPrice": _fmt(self.avg_price.quantize(tick / 1000)),
            "positionValue": _fmt(value),
            "tradeMode": 0,
            "autoAddMargin": 0,
            "positionStatus": self.status,
            "leverage": _fmt(leverage),
            "markPrice": _fmt(mark),
            "liqPrice": "",
            "bustPrice": "",
            "positionIM": _fmt((value / leverage).quantize(Decimal("0.00000001"))),
            "positionMM": _fmt((value / 200).quantize(Decimal("0.00000001"))),
            "positionBalance": "",
            "takeProfit": "",
            "stopLoss": "",
            "trailingStop": "0",
            "sessionAvgPrice": "",
            "delta": "",
            "gamma": "",
            "vega": "",
            "theta": "",
            "unrealisedPnl": _fmt(unrealised.quantize(Decimal("0.00000001"))),
            "curRealisedPnl": _fmt(self.cur_realised.quantize(Decimal("0.00000001"))),
            "cumRealisedPnl": _fmt(self.cum_realised.quantize(Decimal("0.00000001"))),
            "adlRankIndicator": 2 if self.size else 0,
            "createdTime": str(self.created_ms),
            "updatedTime": str(self.updated_ms),
            "seq": self.seq,
            "openTime": self.opened_ms,
            "isReduceOnly": False,
            "mmrSysUpdatedTime": "",
            "leverageSysUpdatedTime": "",
            "breakEvenPrice": _fmt(self.avg_price),
        }


@dataclass
class SimAccount:
    name: str
    api_key: str
    api_secret: str
    balance: Decimal
    positions: dict[str, SimPosition] = field(default_factory=dict)  # one-way rows (positionIdx 0), by symbol
    legs: dict[tuple[str, int], SimPosition] = field(default_factory=dict)  # hedge-mode rows (1 long, 2 short)
    hedged: set[str] = field(default_factory=set)  # symbols in hedge mode
    orders: dict[str, SimOrder] = field(default_factory=dict)  # every order, by id
    open_by_symbol: dict[str, dict[str, SimOrder]] = field(default_factory=dict)
    by_link: dict[str, SimOrder] = field(default_factory=dict)
    recent_closed: deque = field(default_factory=lambda: deque(maxlen=RECENT_CLOSED_KEPT))
    executions: list[dict[str, Any]] = field(default_factory=list)
    read_only: bool = False  # a key without trade permission (orders answer 10005)
    leverage: dict[str, Decimal] = field(default_factory=dict)  # by symbol; DEFAULT_LEVERAGE
    entries: dict[str, SimOrder] = field(default_factory=dict)  # resting entry limits (they hold margin)

    def open_orders(self, symbol: str, position_idx: int | None = None) -> list[SimOrder]:
        """The symbol's open orders (of one positionIdx when given), oldest first."""
        orders = self.open_by_symbol.get(symbol, {}).values()
        return sorted((o for o in orders if position_idx in (None, o.position_idx)), key=lambda o: o.seq)

    def position(self, symbol: str, position_idx: int = 0) -> SimPosition | None:
        return self.positions.get(symbol) if position_idx == 0 else self.legs.get((symbol, position_idx))

    def position_row(self, symbol: str, position_idx: int = 0) -> SimPosition:
        """The row, created (flat) when the symbol never had one."""
        rows: dict[Any, SimPosition] = self.positions if position_idx == 0 else self.legs
        key = symbol if position_idx == 0 else (symbol, position_idx)
        return rows.setdefault(key, SimPosition(symbol, position_idx=position_idx))

    def all_positions(self) -> list[SimPosition]:
        return [*self.positions.values(), *self.legs.values()]

    def rows_of(self, symbol: str) -> list[SimPosition]:
        """The symbol's rows as Bybit lists them: one in one-way mode, both legs in hedge mode."""
        if symbol in self.hedged:
            return [self.position_row(symbol, 1), self.position_row(symbol, 2)]
        return [self.positions.get(symbol) or SimPosition(symbol)]

    def __repr__(self) -> str:  # never print the secret
        return f"SimAccount(name={self.name!r}, positions={len(self.positions)}, orders={len(self.orders)})"


class Liquidity:
    """What a price level holds when a resting limit is crossed: a seeded share (25-100 %) of
    what the order still wants, so a take-profit can fill over several price moves."""

    def __init__(self, seed: int):
        self._rng = random.Random(seed)

    def available(self, order: SimOrder, step: Decimal) -> Decimal:
        share = Decimal(str(round(self._rng.uniform(0.25, 1.0), 2)))
        qty = (order.leaves * share / step).to_integral_value(rounding=ROUND_DOWN) * step
        return qty if qty > 0 else order.leaves


# --- request parameter readers --------------------------------------------------------------


def _require(params: dict, name: str) -> Any:
    value = params.get(name)
    if value is None or value == "":
        raise BybitError(10001, f"Param error: {name} is required")
    return value


def _decimal_param(params: dict, name: str, required: bool = False) -> Decimal | None:
    value = _require(params, name) if required else params.get(name)
    if value is None or value == "":
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise BybitError(10001, f"Param error: {name} is not a number") from None
    if not number.is_finite():
        raise BybitError(10001, f"Param error: {name} is not a number")
    return number


def _bool_param(params: dict, name: str) -> bool:
    value = params.get(name, False)
    if isinstance(value, str):
        return value.lower() == "true"
    return bool(value)


def _check_category(params: dict) -> None:
    category = _require(params, "category")
    if category != "linear":
        raise BybitError(10001, f"Param error: category {category} is not supported by this simulator")


def _position_idx(account: SimAccount, symbol: str, params: dict, side: str, reduce_only: bool) -> int:
    """The order's positionIdx, checked against the symbol's mode: 0 in one-way mode; in hedge
    mode 1 (the long leg: Buy opens, Sell must be reduce-only) or 2 (the short leg)."""
    raw = str(params.get("positionIdx", 0) or 0)
    if raw not in ("0", "1", "2"):
        raise BybitError(10001, "Param error: positionIdx must be 0, 1 or 2")
    idx = int(raw)
    if (idx == 0) == (symbol in account.hedged):
        raise BybitError(10001, "position idx not match position mode")
    if idx and side != ("Buy" if idx == 1 else "Sell") and not reduce_only:
        raise BybitError(10001, "position idx not match position mode")
    return idx


def page_by_seq(
    items: list, limit: int, cursor: str | None, *, stuck: bool = False, cursor_on_last_page: bool = False
) -> tuple[list, str]:
    """A page of `items` (sorted newest first by their `seq`) after `cursor`. Cursors look like
    Bybit's (percent-encoded `page_args=...&`), are opaque to clients and stable under inserts."""
    if stuck:  # fault: the cursor never advances
        return items[:limit], "page_args%3Dstuck%26"
    match = re.search(r"page_args(?:=|%3D)(\d+)", cursor or "")
    if cursor and match is None:
        raise BybitError(10001, "Param error: cursor is invalid")
    if match:
        before = int(match.group(1))
        items = [i for i in items if _seq(i) < before]
    page = items[:limit]
    more = len(items) > limit
    if page and (more or cursor_on_last_page):
        return page, f"page_args%3D{_seq(page[-1])}%26symbol%3D{len(page)}%26"
    return page, ""


def page_by_symbol(
    rows: list, limit: int, cursor: str | None, *, stuck: bool = False, cursor_on_last_page: bool = False
) -> tuple[list, str]:
    """Like `page_by_seq` for lists sorted by symbol (positions, instruments)."""
    if stuck:
        return rows[:limit], "STUCK%2C0%2C0"
    if cursor:
        parts = cursor.replace("%2C", ",").split(",")
        if not re.fullmatch(r"[A-Z0-9]+", parts[0]) or not parts[-1].isdigit():
            raise BybitError(10001, "Param error: cursor is invalid")
        after = (parts[0], int(parts[-1]))  # symbol, then positionIdx: hedge legs share a symbol
        rows = [r for r in rows if (r["symbol"], r.get("positionIdx", 0)) > after]
    page = rows[:limit]
    if page and (len(rows) > limit or cursor_on_last_page):
        last = page[-1]
        return page, f"{last['symbol']}%2C{last.get('updatedTime', '0')}%2C{last.get('positionIdx', 0)}"
    return page, ""


def _seq(item: Any) -> int:
    return item.seq if hasattr(item, "seq") else int(item["seq"])


def _limit(params: dict, default: int, maximum: int) -> int:
    raw = params.get("limit", default)
    try:
        value = int(str(raw))
    except ValueError:
        raise BybitError(10001, "Param error: limit is not an integer") from None
    if not 1 <= value <= maximum:
        raise BybitError(10001, f"Param error: limit must be between 1 and {maximum}")
    return value


class _FeedLock:
    """The exchange's lock. The changes made while it is held are handed to the listeners when
    its outermost holder releases it: outside the lock, so a slow consumer never stalls matching."""

    def __init__(self, exchange: Exchange):
        self._lock = threading.RLock()
        self._depth = 0
        self._exchange = exchange

    def __enter__(self) -> _FeedLock:
        self._lock.acquire()
        self._depth += 1
        return self

    def __exit__(self, *exc: Any) -> None:
        self._depth -= 1
        changes: list[Change] = []
        if self._depth == 0:
            changes, self._exchange.changes = self._exchange.changes, []
        self._lock.release()
        if changes:
            for listener in list(self._exchange.listeners):
                listener(changes)


@dataclass(frozen=True, slots=True)
class Change:
    """One push-worthy change: `topic` order, execution, position, wallet (private, for
    `account`) or tickers (public: `account` is None, `row` the symbol's changed ticker)."""

    account: str | None
    topic: str
    row: dict[str, Any]


class Exchange:
    """All state of the simulated exchange. Thread-safe: every public method takes the lock."""

    def __init__(self, specs: list[InstrumentSpec], seed: int, volatility: float, clock_ms: Callable[[], int]):
        self.lock = _FeedLock(self)
        self.changes: list[Change] = []  # collected under the lock
        self.listeners: list[Callable[[list[Change]], None]] = []  # e.g. the WebSocket hub
        self.specs = {s.symbol: s for s in specs}
        self.market = Market(specs, seed, volatility)
        self.accounts: dict[str, SimAccount] = {}
        self._by_key: dict[str, SimAccount] = {}
        self._clock_ms = clock_ms
        self._seq = 0
        self.margin_checks = True  # off while the demo book (funded for itself) is loaded: it is O(positions)
        self.liquidity: Liquidity | None = None  # None: a crossed limit fills whole
        self.touched_over_api: list[str] = []  # orderLinkIds amended or cancelled through the API

    # --- accounts -------------------------------------------------------------------------

    def add_account(self, name: str, api_key: str, api_secret: str, balance: Decimal) -> SimAccount:
        with self.lock:
            account = SimAccount(name, api_key, api_secret, balance)
            self.accounts[name] = account
            self._by_key[api_key] = account
            return account

    def account_for_key(self, api_key: str) -> SimAccount | None:
        return self._by_key.get(api_key)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _spec(self, params: dict) -> InstrumentSpec:
        symbol = _require(params, "symbol")
        spec = self.specs.get(symbol)
        if spec is None:
            raise BybitError(10001, f"Not supported symbols: {symbol}")
        return spec

    # --- market ---------------------------------------------------------------------------

    def last_price(self, symbol: str) -> Decimal:
        return self.market.last[symbol]

    def set_price(self, symbol: str, price: Decimal) -> None:
        with self.lock:
            if symbol not in self.specs:
                raise KeyError(symbol)
            self.market.set_price(symbol, price)
            self._ticker_changed(symbol)
            self._match(symbol)

    def set_spread(self, symbol: str, fraction: Decimal) -> None:
        """Widen (or narrow) the mark price's spread to the last price: mark = last x (1 + fraction)."""
        with self.lock:
            self.market.set_spread(symbol, fraction)
            self._ticker_changed(symbol)
            self._match(symbol)

    def wick(self, symbol: str, price: Decimal) -> None:
        """A wick: the last price touches `price` and comes back; the mark and index do not follow
        (so a LastPrice stop may fire where a MarkPrice stop does not)."""
        with self.lock:
            before = self.market.last[symbol]
            for last in (price, before):
                self.market.set_price(symbol, last, mark_follows=False)
                self._ticker_changed(symbol)
                self._match(symbol)

    def step(self, seconds: float) -> None:
        with self.lock:
            self.market.step(seconds)
            for symbol in self.specs:
                self._ticker_changed(symbol)
            for account in self.accounts.values():
                for symbol in list(account.open_by_symbol):
                    self._match_account(account, symbol)

    def _match(self, symbol: str) -> None:
        for account in self.accounts.values():
            self._match_account(account, symbol)

    def _match_account(self, account: SimAccount, symbol: str) -> None:
        last = self.market.last[symbol]
        for order in account.open_orders(symbol):
            if not order.is_open:  # closed earlier in this pass (reduce-only clean-up)
                continue
            if order.status == "Untriggered":
                rising = order.trigger_direction == 1
                price = self.market.price(symbol, order.trigger_by)
                if (rising and price >= order.trigger_price) or (not rising and price <= order.trigger_price):
                    self._trigger(account, order)
            elif order.order_type == "Limit" and self._crosses(order, last):
                qty = self.liquidity.available(order, self.specs[symbol].qty_step) if self.liquidity else order.leaves
                self._execute(account, order, qty, order.price, maker=True)

    @staticmethod
    def _crosses(order: SimOrder, last: Decimal) -> bool:
        return last <= order.price if order.side == "Buy" else last >= order.price

    # --- orders ---------------------------------------------------------------------------

    def create_order(self, account: SimAccount, params: dict) -> dict[str, str]:
        with self.lock:
            _check_category(params)
            spec = self._spec(params)
            side = _require(params, "side")
            if side not in ("Buy", "Sell"):
                raise BybitError(10001, f"Param error: side {side} is invalid")
            order_type = _require(params, "orderType")
            if order_type not in ("Market", "Limit"):
                raise BybitError(10001, f"Param error: orderType {order_type} is invalid")
            link_id = str(params.get("orderLinkId") or "")
            if link_id and not _LINK_ID_RE.fullmatch(link_id):
                raise BybitError(10001, "Param error: orderLinkId must be at most 36 characters of [0-9A-Za-z_-]")
            if link_id and link_id in account.by_link:
                raise BybitError(110072, "OrderLinkedID is duplicate")
            qty = _decimal_param(params, "qty", required=True)
            if spec.status == "Closed":
                raise BybitError(10001, f"Param error: symbol {spec.symbol} is not trading")
            if spec.status != "Trading" and not _bool_param(params, "reduceOnly"):
                raise BybitError(110042, "Currently in pre-delivery status, you can only reduce your position")
            price = _decimal_param(params, "price")
            trigger = _decimal_param(params, "triggerPrice")
            reduce_only = _bool_param(params, "reduceOnly")
            close_on_trigger = _bool_param(params, "closeOnTrigger")
            idx = _position_idx(account, spec.symbol, params, side, reduce_only)
            position = account.position(spec.symbol, idx)
            if qty == 0 and reduce_only and close_on_trigger and position and position.size:
                qty = position.size  # Bybit: qty "0" + reduceOnly + closeOnTrigger closes it all
            self._check_qty(spec, qty)
            if order_type == "Limit":
                if price is None or price <= 0:
                    raise BybitError(10001, "Param error: price is required for a limit order")
                self._check_tick(spec, price, "price")
            last = self.market.last[spec.symbol]
            direction, trigger_by = self._conditional(account, spec, params, trigger)
            if reduce_only:
                qty = self._reduce_only_qty(
                    account,
                    position,
                    side,
                    qty,
                    resting=trigger is None and order_type == "Limit",
                    close_on_trigger=close_on_trigger,
                )
            elif (
                trigger is None
                and self.margin_checks
                and qty * (price or last) / account.leverage.get(spec.symbol, DEFAULT_LEVERAGE)
                > self.available_balance(account)
            ):
                raise BybitError(110007, "ab not enough for new order")
            now = self._clock_ms()
            order = SimOrder(
                order_id=str(uuid.uuid4()),
                link_id=link_id,
                symbol=spec.symbol,
                side=side,
                order_type=order_type,
                qty=qty,
                price=price if order_type == "Limit" else None,
                trigger_price=trigger,
                trigger_direction=direction,
                trigger_by=trigger_by,
                reduce_only=reduce_only,
                close_on_trigger=close_on_trigger,
                time_in_force="IOC" if order_type == "Market" else str(params.get("timeInForce") or "GTC"),
                status="Untriggered" if trigger is not None else "New",
                created_ms=now,
                updated_ms=now,
                seq=self._next_seq(),
                last_price_on_created=last,
                position_opened_ms=position.opened_ms if position is not None else 0,
                position_idx=idx,
            )
            self._add(account, order)
            if trigger is None and (order_type == "Market" or self._crosses(order, last)):
                self._execute(account, order, order.qty, last, maker=False)
            return {"orderId": order.order_id, "orderLinkId": order.link_id}

    def set_leverage(self, account: SimAccount, params: dict) -> dict[str, Any]:
        """Bybit's answers: one-way mode needs buyLeverage == sellLeverage; a leverage outside the
        instrument's filter is 10001; the same leverage again is 110043 "not modified"."""
        with self.lock:
            _check_category(params)
            spec = self._spec(params)
            buy, sell = _decimal_param(params, "buyLeverage", True), _decimal_param(params, "sellLeverage", True)
            if buy != sell:
                raise BybitError(10001, "Param error: buyLeverage must equal sellLeverage in one-way mode")
            if not Decimal(1) <= buy <= spec.max_leverage:
                raise BybitError(10001, f"Param error: leverage must be 1-{_fmt(spec.max_leverage)}")
            if account.leverage.get(spec.symbol, DEFAULT_LEVERAGE) == buy:
                raise BybitError(110043, "Set leverage not modified")
            account.leverage[spec.symbol] = buy
            for row in account.all_positions():
                if row.symbol == spec.symbol:
                    self._position_changed(account, row.symbol, row.position_idx)
            return {}

    def amend_order(self, account: SimAccount, params: dict) -> dict[str, str]:
        with self.lock:
            _check_category(params)
            spec = self._spec(params)
            order = self._find_open(account, spec.symbol, params)
            qty = _decimal_param(params, "qty")
            price = _decimal_param(params, "price")
            trigger = _decimal_param(params, "triggerPrice")
            if qty is not None:
                self._check_qty(spec, qty)
                if qty <= order.cum_qty:
                    raise BybitError(10001, "Param error: qty must be greater than the filled qty")
                if order.is_active_reduce_only:
                    position = account.position(spec.symbol, order.position_idx)
                    if position is None or position.size == 0 or position.side != _opposite(order.side):
                        raise BybitError(110017, "Reduce-only rule not satisfied")
                    others = sum(
                        o.leaves
                        for o in account.open_orders(spec.symbol, order.position_idx)
                        if o.is_active_reduce_only and o.side == order.side and o is not order
                    )
                    if qty - order.cum_qty > position.size - others:
                        raise BybitError(110017, "Reduce-only rule not satisfied")
            if price is not None:
                if order.order_type != "Limit":
                    raise BybitError(10001, "Param error: price can only be amended on a limit order")
                self._check_tick(spec, price, "price")
            trigger_by = str(params.get("triggerBy") or order.trigger_by)
            if trigger_by not in TRIGGER_BY:
                raise BybitError(10001, f"Param error: triggerBy {trigger_by} is invalid")
            if trigger is not None or trigger_by != order.trigger_by:
                if order.status != "Untriggered":
                    raise BybitError(10001, "Param error: a trigger can only be amended before it fires")
                trigger = trigger if trigger is not None else order.trigger_price
                assert trigger is not None  # an untriggered order has one
                self._check_tick(spec, trigger, "triggerPrice")
                self._check_trigger(order.trigger_direction, trigger, self.market.price(spec.symbol, trigger_by))
            order.trigger_by = trigger_by
            order.qty = qty if qty is not None else order.qty
            order.price = price if price is not None else order.price
            order.trigger_price = trigger if trigger is not None else order.trigger_price
            order.updated_ms = self._clock_ms()
            self._order_changed(account, order)
            self._position_changed(account, spec.symbol, order.position_idx)
            if (
                order.status in ("New", "PartiallyFilled")
                and order.order_type == "Limit"
                and self._crosses(order, self.market.last[spec.symbol])
            ):
                self._execute(account, order, order.leaves, self.market.last[spec.symbol], maker=False)
            return {"orderId": order.order_id, "orderLinkId": order.link_id}

    def cancel_order(self, account: SimAccount, params: dict) -> dict[str, str]:
        with self.lock:
            _check_category(params)
            spec = self._spec(params)
            order = self._find_open(account, spec.symbol, params)
            self._close(account, order, "CancelByUser")
            return {"orderId": order.order_id, "orderLinkId": order.link_id}

    def cancel_all(self, account: SimAccount, params: dict) -> dict[str, Any]:
        with self.lock:
            _check_category(params)
            symbol, base, settle = params.get("symbol"), params.get("baseCoin"), params.get("settleCoin")
            if not (symbol or base or settle):
                raise BybitError(10001, "Param error: symbol, baseCoin or settleCoin is required")
            if symbol:
                self._spec(params)
            order_filter = params.get("orderFilter") or ""
            cancelled = []
            for sym in list(account.open_by_symbol):
                if (
                    (symbol and sym != symbol)
                    or (base and self.specs[sym].base_coin != base)
                    or (settle and settle != "USDT")
                ):
                    continue
                for order in account.open_orders(sym):
                    if (order_filter == "Order" and order.is_conditional) or (
                        order_filter == "StopOrder" and not order.is_conditional
                    ):
                        continue
                    self._close(account, order, "CancelByUser")
                    cancelled.append({"orderId": order.order_id, "orderLinkId": order.link_id})
            return {"list": cancelled, "success": "1"}

    def _find_open(self, account: SimAccount, symbol: str, params: dict) -> SimOrder:
        order_id, link_id = params.get("orderId"), params.get("orderLinkId")
        if not order_id and not link_id:
            raise BybitError(10001, "Param error: orderId or orderLinkId is required")
        order = account.orders.get(order_id) if order_id else account.by_link.get(link_id)
        if order is None or order.symbol != symbol or not order.is_open:
            raise BybitError(110001, "Order does not exist.")
        return order

    @staticmethod
    def _check_qty(spec: InstrumentSpec, qty: Decimal) -> None:
        if qty <= 0 or qty % spec.qty_step != 0:
            raise BybitError(10001, f"Qty invalid: must be a positive multiple of qtyStep {_fmt(spec.qty_step)}")
        if qty < spec.min_qty:
            raise BybitError(10001, "The number of contracts exceeds minimum limit allowed")
        if qty > spec.max_qty:
            raise BybitError(10001, "The number of contracts exceeds maximum limit allowed")

    @staticmethod
    def _check_tick(spec: InstrumentSpec, price: Decimal, name: str) -> None:
        if price <= 0 or price % spec.tick_size != 0:
            raise BybitError(
                10001, f"Param error: {name} must be a positive multiple of tickSize {_fmt(spec.tick_size)}"
            )

    def _conditional(
        self, account: SimAccount, spec: InstrumentSpec, params: dict, trigger: Decimal | None
    ) -> tuple[int, str]:
        """A conditional order's triggerDirection and triggerBy, checked against the price it names."""
        trigger_by = str(params.get("triggerBy") or "LastPrice")
        if trigger_by not in TRIGGER_BY:
            raise BybitError(10001, f"Param error: triggerBy {trigger_by} is invalid")
        if trigger is None:
            return 0, trigger_by
        self._check_tick(spec, trigger, "triggerPrice")
        direction = int(str(_require(params, "triggerDirection")))
        self._check_trigger(direction, trigger, self.market.price(spec.symbol, trigger_by))
        untriggered = [o for o in account.open_orders(spec.symbol) if o.status == "Untriggered"]
        if len(untriggered) >= MAX_CONDITIONAL_PER_SYMBOL:
            raise BybitError(110009, "The number of stop orders exceeds maximum limit allowed")
        return direction, trigger_by

    @staticmethod
    def _check_trigger(direction: int, trigger: Decimal, last: Decimal) -> None:
        if direction == 1 and trigger <= last:
            raise BybitError(110092, f"expect Rising, but trigger_price[{_fmt(trigger)}] <= current[{_fmt(last)}]")
        if direction == 2 and trigger >= last:
            raise BybitError(110093, f"expect Falling, but trigger_price[{_fmt(trigger)}] >= current[{_fmt(last)}]")
        if direction not in (1, 2):
            raise BybitError(10001, "Param error: triggerDirection must be 1 or 2")

    def _reduce_only_qty(
        self,
        account: SimAccount,
        position: SimPosition | None,
        side: str,
        qty: Decimal,
        resting: bool,
        close_on_trigger: bool,
    ) -> Decimal:
        """What a new reduce-only order may carry: a conditional one anything (it reserves nothing
        and is clipped when it triggers), a market one up to the position (it never rests, so it
        needs no room), a resting limit what the other resting reduce-only orders leave."""
        if position is None or position.size == 0 or position.side != _opposite(side):
            raise BybitError(110017, "Reduce-only rule not satisfied")
        if not resting:
            return qty
        reserving = [
            o
            for o in account.open_orders(position.symbol, position.position_idx)
            if o.is_active_reduce_only and o.side == side
        ]
        if close_on_trigger:
            # A closing order frees room by cancelling other reduce-only orders, newest first.
            while reserving and position.size - sum(o.leaves for o in reserving) < qty:
                self._close(account, reserving.pop(), "CancelByReduceOnly")
        available = position.size - sum(o.leaves for o in reserving)
        if available <= 0:
            raise BybitError(110017, "Reduce-only rule not satisfied")
        return min(qty, available)

    # --- order life cycle -----------------------------------------------------------------

    def _add(self, account: SimAccount, order: SimOrder) -> None:
        account.orders[order.order_id] = order
        if order.link_id:
            account.by_link[order.link_id] = order
        account.open_by_symbol.setdefault(order.symbol, {})[order.order_id] = order
        if not order.reduce_only and order.trigger_price is None:
            account.entries[order.order_id] = order
        self._order_changed(account, order)
        self._position_changed(account, order.symbol, order.position_idx)  # Bybit pushes it on every create

    # --- the change feed (pushes) ---------------------------------------------------------

    def _order_changed(self, account: SimAccount, order: SimOrder) -> None:
        if self.listeners:  # nobody listening: build nothing
            self.changes.append(
                Change(
                    account.name,
                    "order",
                    {**order.to_v5(), "category": "linear", "closedPnl": "0", "feeCurrency": "USDT"},
                )
            )

    def _position_changed(self, account: SimAccount, symbol: str, position_idx: int = 0) -> None:
        if not self.listeners:
            return
        position = account.position(symbol, position_idx) or SimPosition(symbol, position_idx=position_idx)
        row = self._position_row(account, position)
        row["entryPrice"] = row.pop("avgPrice")  # the push names it so
        self.changes.append(Change(account.name, "position", {**row, "category": "linear"}))

    def _ticker_changed(self, symbol: str) -> None:
        if self.listeners:
            self.changes.append(Change(None, "tickers", self.ticker_row(symbol)))

    def _close(self, account: SimAccount, order: SimOrder, cancel_type: str | None) -> None:
        """Move an order out of the open set: filled (cancel_type None) or cancelled."""
        if cancel_type is not None:
            order.status = "Deactivated" if order.status == "Untriggered" else "Cancelled"
            order.cancel_type = cancel_type
        order.updated_ms = self._clock_ms()
        open_orders = account.open_by_symbol.get(order.symbol, {})
        open_orders.pop(order.order_id, None)
        account.entries.pop(order.order_id, None)
        if not open_orders:
            account.open_by_symbol.pop(order.symbol, None)
        account.recent_closed.append(order)
        self._order_changed(account, order)
        if cancel_type is not None:
            self._position_changed(account, order.symbol, order.position_idx)

    def _trigger(self, account: SimAccount, order: SimOrder) -> None:
        order.status = "Triggered"
        self._order_changed(account, order)
        last = self.market.last[order.symbol]
        if order.order_type == "Limit":
            order.status = "New"
            if self._crosses(order, last):
                self._execute(account, order, order.leaves, last, maker=False)
            return
        self._execute(account, order, order.qty, last, maker=False)

    def _execute(self, account: SimAccount, order: SimOrder, qty: Decimal, price: Decimal, maker: bool) -> None:
        """Fill `qty` of `order` at `price` (clipped to the position for reduce-only orders)."""
        position = account.position_row(order.symbol, order.position_idx)
        if order.reduce_only:
            closable = position.size if position.side == _opposite(order.side) else Decimal(0)
            qty = min(qty, closable)
            if qty <= 0:  # nothing left to reduce: the exchange cancels it
                self._close(account, order, "CancelByReduceOnly")
                return
        fee = (qty * price * (MAKER_FEE if maker else TAKER_FEE)).quantize(Decimal("0.00000001"))
        before = position.cum_realised
        closed_size = self._apply_fill(account, position, order.side, qty, price, fee)
        realised = position.cum_realised - before
        now = self._clock_ms()
        order.cum_qty += qty
        order.cum_value += qty * price
        order.cum_fee += fee
        order.updated_ms = now
        execution = {
            "symbol": order.symbol,
            "orderId": order.order_id,
            "orderLinkId": order.link_id,
            "side": order.side,
            "orderPrice": _fmt(order.price or price),
            "orderQty": _fmt(order.qty),
            "leavesQty": _fmt(order.qty - order.cum_qty),
            "createType": "CreateByUser",
            "orderType": order.order_type,
            "stopOrderType": "Stop" if order.is_conditional else "UNKNOWN",
            "execFee": _fmt(fee),
            "execId": str(uuid.uuid4()),
            "execPrice": _fmt(price),
            "execQty": _fmt(qty),
            "execType": "Trade",
            "execValue": _fmt(qty * price),
            "execTime": str(now),
            "feeCurrency": "USDT",
            "isMaker": maker,
            "feeRate": _fmt(MAKER_FEE if maker else TAKER_FEE),
            "tradeIv": "",
            "markIv": "",
            "markPrice": _fmt(self.market.last[order.symbol]),
            "indexPrice": "",
            "underlyingPrice": "",
            "blockTradeId": "",
            "closedSize": _fmt(closed_size),
            "seq": position.seq,
            "extraFees": "",
        }
        account.executions.append(execution)
        # A market order (or a triggered stop clipped to the position) is done after one fill.
        if order.cum_qty >= order.qty or order.order_type == "Market":
            order.status = "Filled"
            self._close(account, order, None)
        else:
            order.status = "PartiallyFilled"
            self._order_changed(account, order)
        if self.listeners:  # pushed after the order's row (the ws_reorder_fill fault swaps them)
            self.changes.append(
                Change(
                    account.name,
                    "execution",
                    {**execution, "category": "linear", "isLeverage": "0", "execPnl": _fmt(realised), "marketUnit": ""},
                )
            )
        self._position_changed(account, order.symbol, order.position_idx)  # same seq as its execution
        if self.listeners:
            self.changes.append(Change(account.name, "wallet", self._wallet_row(account)))
        self._enforce_reduce_only(account, position)

    def _apply_fill(
        self, account: SimAccount, position: SimPosition, side: str, qty: Decimal, price: Decimal, fee: Decimal
    ) -> Decimal:
        """Update size, average price and realised PnL; returns the size this fill closed."""
        now = self._clock_ms()
        signed = qty if side == "Buy" else -qty
        current = position.size if position.side == "Buy" else -position.size
        closed = Decimal(0)
        realised = Decimal(0)
        if current == 0 or (current > 0) == (signed > 0):
            if current == 0:
                position.created_ms = position.created_ms or now
                position.opened_ms = max(now, position.updated_ms + 1)  # a re-entry is told apart
                position.cur_realised = Decimal(0)
            position.avg_price = (abs(current) * position.avg_price + qty * price) / (abs(current) + qty)
        else:
            closed = min(qty, abs(current))
            realised = (price - position.avg_price) * closed * (1 if current > 0 else -1)
            if qty > abs(current):  # flipped: the rest opens a new position at this price
                position.avg_price = price
                position.opened_ms = max(now, position.updated_ms + 1)
                position.cur_realised = Decimal(0)
        current += signed
        position.side = "Buy" if current > 0 else "Sell" if current < 0 else ""
        position.size = abs(current)
        if position.size == 0:
            position.avg_price = Decimal(0)
            position.opened_ms = 0
        position.cum_realised += realised - fee
        position.cur_realised += realised - fee
        position.updated_ms = now
        position.seq = self._next_seq()
        position.status = "Normal"
        account.balance += realised - fee
        return closed

    def _enforce_reduce_only(self, account: SimAccount, position: SimPosition) -> None:
        """Cancel active reduce-only orders that no longer fit the position (newest first)."""
        size = position.size
        closing_side = _opposite(position.side) if size else ""
        fitting = []
        for order in account.open_orders(position.symbol, position.position_idx):
            if order.is_active_reduce_only:
                if order.side == closing_side:
                    fitting.append(order)
                else:
                    self._close(account, order, "CancelByReduceOnly")
        while fitting and sum(o.leaves for o in fitting) > size:
            self._close(account, fitting.pop(), "CancelByReduceOnly")

    # --- out-of-band actions (a person on the exchange's web page, or the exchange itself) --

    def fill_order(
        self, account: SimAccount, order_ref: str, qty: Decimal | None = None, price: Decimal | None = None
    ) -> None:
        """Fill a resting order (fully, or `qty` of it), e.g. to make a partial fill happen."""
        with self.lock:
            order = account.orders.get(order_ref) or account.by_link.get(order_ref)
            if order is None or not order.is_open or order.status == "Untriggered":
                raise BybitError(110001, "Order does not exist.")
            fill_qty = min(qty if qty is not None else order.leaves, order.leaves)
            self._execute(account, order, fill_qty, price or order.price or self.market.last[order.symbol], maker=True)

    def liquidate(self, account: SimAccount, symbol: str, status: str = "Liq", position_idx: int = 0) -> None:
        """Close a position the way a liquidation (Liq) or auto-deleverage (Adl) does."""
        with self.lock:
            position = account.position(symbol, position_idx)
            if position is None or position.size == 0:
                raise BybitError(110017, "Reduce-only rule not satisfied")
            for order in account.open_orders(symbol, position_idx):
                if not order.is_conditional:
                    self._close(account, order, "CancelAllBeforeLiq")
            self._apply_fill(
                account, position, _opposite(position.side), position.size, self.market.last[symbol], Decimal(0)
            )
            position.status = status
            self._position_changed(account, symbol, position_idx)

    def switch_mode(self, account: SimAccount, params: dict) -> dict[str, Any]:
        """/v5/position/switch-mode: mode 0 one-way, 3 hedge (both sides at once), for a symbol or
        every symbol of a coin. Refused while a position or an open order exists (110024, 110028)."""
        with self.lock:
            _check_category(params)
            mode = str(_require(params, "mode"))
            if mode not in ("0", "3"):
                raise BybitError(10001, "Param error: mode must be 0 or 3")
            if params.get("symbol"):
                symbols = [self._spec(params).symbol]
            elif str(params.get("coin", "")) == "USDT":
                symbols = sorted(self.specs)
            else:
                raise BybitError(10001, "Param error: symbol or coin is required")
            hedge = mode == "3"
            if all((s in account.hedged) == hedge for s in symbols):
                raise BybitError(110025, "Position mode is not modified")
            for symbol in symbols:
                if any(row.size for row in account.rows_of(symbol)):
                    raise BybitError(110024, "You have an existing position, so position mode cannot be switched")
                if account.open_orders(symbol):
                    raise BybitError(110028, "You have open orders, so position mode cannot be switched")
            for symbol in symbols:
                (account.hedged.add if hedge else account.hedged.discard)(symbol)
            return {}

    def set_instrument_status(
        self, symbol: str, status: str, delivery_ms: int | None = None, price: Decimal | None = None
    ) -> None:
        """Delivery or delisting: `Delivering` takes only reduce-only orders; `Closed` settles every
        position at `price` (the last price by default), cancelling its orders (CancelBySettle)."""
        with self.lock:
            spec = self.specs[symbol]
            delivery = spec.delivery_ms if delivery_ms is None else delivery_ms
            self.specs[symbol] = replace(spec, status=status, delivery_ms=delivery)
            if status != "Closed":
                return
            settle_at = price if price is not None else self.market.last[symbol]
            for account in self.accounts.values():
                for order in account.open_orders(symbol):
                    self._close(account, order, "CancelBySettle")
                for position in account.rows_of(symbol):
                    if position.size:
                        self._apply_fill(
                            account, position, _opposite(position.side), position.size, settle_at, Decimal(0)
                        )
                        self._position_changed(account, symbol, position.position_idx)

    # --- queries --------------------------------------------------------------------------

    def position_rows(self, account: SimAccount, params: dict, **paging) -> dict[str, Any]:
        with self.lock:
            _check_category(params)
            limit = _limit(params, 20, 200)
            symbol, settle = params.get("symbol"), params.get("settleCoin")
            if symbol:
                self._spec(params)  # an unknown symbol is 10001
                rows = [self._position_row(account, position) for position in account.rows_of(symbol)]
            elif settle:
                rows = [
                    self._position_row(account, p) for p in account.all_positions() if p.size > 0 and settle == "USDT"
                ]
                rows.sort(key=lambda r: (r["symbol"], r["positionIdx"]))
            else:
                raise BybitError(10001, "Param error: symbol or settleCoin is required")
            page, cursor = page_by_symbol(rows, limit, params.get("cursor"), **paging)
            return {"category": "linear", "list": page, "nextPageCursor": cursor}

    def order_rows(self, account: SimAccount, params: dict, *, history: bool = False, **paging) -> dict[str, Any]:
        with self.lock:
            _check_category(params)
            limit = _limit(params, 20, 50)
            order_id, link_id = params.get("orderId"), params.get("orderLinkId")
            symbol, base, settle = params.get("symbol"), params.get("baseCoin"), params.get("settleCoin")
            if not history and not (symbol or base or settle or order_id or link_id):
                raise BybitError(10001, "Param error: symbol, baseCoin or settleCoin is required")
            if symbol:
                self._spec(params)
            if order_id or link_id:
                found = account.orders.get(order_id) if order_id else account.by_link.get(link_id)
                orders: Iterable[SimOrder] = [found] if found else []
            elif history:
                orders = account.orders.values()
            elif str(params.get("openOnly", "0")) == "1":
                orders = list(account.recent_closed)
            else:
                orders = [
                    o
                    for sym in ([symbol] if symbol else account.open_by_symbol)
                    for o in account.open_by_symbol.get(sym, {}).values()
                ]
            order_filter = params.get("orderFilter") or ""
            status = params.get("orderStatus")
            selected = [
                o
                for o in orders
                if (not symbol or o.symbol == symbol)
                and (not base or self.specs[o.symbol].base_coin == base)
                and (not settle or settle == "USDT")
                and not (order_filter == "Order" and o.is_conditional)
                and not (order_filter == "StopOrder" and not o.is_conditional)
                and (not status or o.status == status)
            ]
            selected.sort(key=lambda o: o.seq, reverse=True)
            page, cursor = page_by_seq(selected, limit, params.get("cursor"), **paging)
            return {"category": "linear", "list": [o.to_v5() for o in page], "nextPageCursor": cursor}

    def execution_rows(self, account: SimAccount, params: dict, **paging) -> dict[str, Any]:
        with self.lock:
            _check_category(params)
            limit = _limit(params, 50, 100)
            filters = {k: params[k] for k in ("symbol", "orderId", "orderLinkId") if params.get(k)}
            start, end = params.get("startTime"), params.get("endTime")
            rows = [
                e
                for e in reversed(account.executions)
                if all(e[k] == v for k, v in filters.items())
                and (not start or int(e["execTime"]) >= int(start))
                and (not end or int(e["execTime"]) <= int(end))
            ]
            page, cursor = page_by_seq(rows, limit, params.get("cursor"), **paging)
            return {"category": "linear", "list": page, "nextPageCursor": cursor}

    def wallet(self, account: SimAccount, params: dict) -> dict[str, Any]:
        with self.lock:
            if params.get("accountType") != "UNIFIED":
                raise BybitError(10001, "Param error: accountType must be UNIFIED")
            return {"list": [self._wallet_row(account)]}

    def _position_row(self, account: SimAccount, position: SimPosition) -> dict[str, Any]:
        symbol = position.symbol
        return position.to_v5(
            self.market.mark[symbol], self.specs[symbol].tick_size, account.leverage.get(symbol, DEFAULT_LEVERAGE)
        )

    def _margins(self, account: SimAccount) -> tuple[Decimal, Decimal, Decimal]:
        """(unrealised P&L, positions' initial margin, resting entry orders' initial margin)."""
        upl = sum(
            (
                (self.market.last[p.symbol] - p.avg_price) * p.size * (1 if p.side == "Buy" else -1)
                for p in account.all_positions()
                if p.size
            ),
            Decimal(0),
        )
        lev = lambda symbol: account.leverage.get(symbol, DEFAULT_LEVERAGE)
        position_im = sum((p.avg_price * p.size / lev(p.symbol) for p in account.all_positions() if p.size), Decimal(0))
        order_im = sum(
            (o.leaves * (o.price or self.market.last[o.symbol]) / lev(o.symbol) for o in account.entries.values()),
            Decimal(0),
        )
        return upl, position_im, order_im

    def available_balance(self, account: SimAccount) -> Decimal:
        upl, position_im, order_im = self._margins(account)
        return account.balance + upl - position_im - order_im

    def _wallet_row(self, account: SimAccount) -> dict[str, Any]:
        upl, im, order_im = self._margins(account)
        cum = sum((p.cum_realised for p in account.all_positions()), Decimal(0))
        equity = account.balance + upl
        q = Decimal("0.00000001")
        coin = {
            "coin": "USDT",
            "equity": _fmt(equity.quantize(q)),
            "usdValue": _fmt(equity.quantize(q)),
            "walletBalance": _fmt(account.balance.quantize(q)),
            "locked": "0",
            "spotHedgingQty": "0",
            "borrowAmount": "0",
            "accruedInterest": "0",
            "totalOrderIM": _fmt(order_im.quantize(q)),
            "totalPositionIM": _fmt(im.quantize(q)),
            "totalPositionMM": _fmt((im / 20).quantize(q)),
            "unrealisedPnl": _fmt(upl.quantize(q)),
            "cumRealisedPnl": _fmt(cum.quantize(q)),
            "bonus": "0",
            "marginCollateral": True,
            "collateralSwitch": True,
            "spotBorrow": "0",
            "free": "",
            "availableToWithdraw": "",
            "availableToBorrow": "",
        }
        return {
            "accountType": "UNIFIED",
            "accountIMRate": "0",
            "accountMMRate": "0",
            "totalEquity": coin["equity"],
            "totalWalletBalance": coin["walletBalance"],
            "totalMarginBalance": coin["equity"],
            "totalAvailableBalance": _fmt((equity - im - order_im).quantize(q)),
            "totalPerpUPL": coin["unrealisedPnl"],
            "totalInitialMargin": coin["totalPositionIM"],
            "totalMaintenanceMargin": coin["totalPositionMM"],
            "accountLTV": "",
            "coin": [coin],
        }

    def tickers(self, params: dict) -> dict[str, Any]:
        with self.lock:
            _check_category(params)
            symbols = [self._spec(params).symbol] if params.get("symbol") else sorted(self.specs)
            return {"category": "linear", "list": [self.ticker_row(symbol) for symbol in symbols]}

    def ticker_row(self, symbol: str) -> dict[str, Any]:
        last = _fmt(self.market.last[symbol])
        mark = _fmt(self.market.mark[symbol])
        base = self.specs[symbol].base_price
        return {
            "symbol": symbol,
            "lastPrice": last,
            "indexPrice": mark,
            "markPrice": mark,
            "prevPrice24h": _fmt(base),
            "price24hPcnt": _fmt(((self.market.last[symbol] - base) / base).quantize(Decimal("0.000001"))),
            "highPrice24h": last,
            "lowPrice24h": last,
            "prevPrice1h": last,
            "openInterest": "0",
            "openInterestValue": "0",
            "turnover24h": "0",
            "volume24h": "0",
            "fundingRate": "0.0001",
            "nextFundingTime": "0",
            "predictedDeliveryPrice": "",
            "basisRate": "",
            "deliveryFeeRate": "",
            "deliveryTime": "0",
            "ask1Size": "1",
            "bid1Price": last,
            "ask1Price": last,
            "bid1Size": "1",
            "basis": "",
            "preOpenPrice": "",
            "preQty": "",
            "curPreListingPhase": "",
        }

    def instruments(self, params: dict, **paging) -> dict[str, Any]:
        with self.lock:
            _check_category(params)
            limit = _limit(params, 500, 1000)
            if params.get("symbol"):
                rows = [self._spec(params).to_v5()]
            else:
                rows = [self.specs[s].to_v5() for s in sorted(self.specs)]
            page, cursor = page_by_symbol(rows, limit, params.get("cursor"), **paging)
            return {"category": "linear", "list": page, "nextPageCursor": cursor}

    def api_key_info(self, account: SimAccount) -> dict[str, Any]:
        """GET /v5/user/query-api: the key's permissions."""
        trade = [] if account.read_only else ["Order", "Position"]
        return {
            "id": "1",
            "note": f"simulator {account.name}",
            "apiKey": account.api_key,
            "readOnly": int(account.read_only),
            "secret": "",
            "permissions": {
                "ContractTrade": trade,
                "Spot": [],
                "Wallet": [],
                "Options": [],
                "Derivatives": [],
                "CopyTrading": [],
                "BlockTrade": [],
                "Exchange": [],
                "NFT": [],
            },
            "ips": ["*"],
            "type": 1,
            "deadlineDay": -2,
            "expiredAt": "",
            "createdAt": "2024-01-01T00:00:00Z",
            "unified": 0,
            "uta": 1,
            "userID": 1,
            "inviterID": 0,
            "vipLevel": "No VIP",
            "mktMakerLevel": "0",
            "affiliateID": 0,
        }

    # --- inspection (GET /sim/state, tests) ------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "prices": {s: _fmt(p) for s, p in self.market.last.items()},
                "accounts": {
                    name: {
                        "balance": _fmt(a.balance),
                        "positions": [self._position_row(a, p) for p in a.all_positions() if p.size > 0],
                        "orders": [o.to_v5() for sym in a.open_by_symbol for o in a.open_orders(sym)],
                    }
                    for name, a in self.accounts.items()
                },
            }
