"""Bybit's V5 wire formats, both ways, as plain data: no I/O, no pybit.

What the gateway sends (request parameters for each command, each page of a read, each stream
subscription) and what it makes of the answers (outcomes of writes, pages, pushes). The REST rows
and the pushed rows go through the same parsers (`Order.from_v5`, `Position.from_v5`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any, assert_never

from messages.codes import outcome_unknown
from messages.gateway import (
    Accepted,
    AmendOrder,
    CancelAll,
    CancelOrder,
    OrderCommand,
    Outcome,
    PlaceOrder,
    Rejected,
    Unresolved,
)
from messages.models import Execution, ModelError, Order, Position, TriggerBy


class PrivateTopic(StrEnum):
    POSITION = "position"
    ORDER = "order"
    EXECUTION = "execution"


PRIVATE_TOPICS = tuple(topic.value for topic in PrivateTopic)
ARGS_LIMIT = 21_000  # Bybit refuses a subscribe whose args exceed this many characters


@dataclass(frozen=True, slots=True)
class HttpOk:
    body: dict[str, Any]
    headers: Mapping[str, str]
    seconds: float


class Failure(StrEnum):
    """Why an HTTP job failed."""

    BUSINESS = "business"  # a retCode other than 0
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    HTTP = "http"  # a status other than 200
    MALFORMED = "malformed"  # not JSON
    UNEXPECTED = "unexpected"
    NOT_SENT = "not_sent"  # refused before sending (an IP ban, the write budget, a stop)


class ReadPhase(StrEnum):
    ORDERS = "orders"  # open orders
    POSITIONS = "positions"
    CLOSED = "closed"  # finished orders (the order history)


@dataclass(frozen=True, slots=True)
class HttpFail:
    kind: Failure
    message: str
    code: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def uncertain(self) -> bool:
        """For a write: might the exchange have acted?"""
        if self.kind is Failure.BUSINESS:
            return outcome_unknown(self.code)
        if self.kind is Failure.HTTP:
            return self.code is None or self.code >= 500 or self.code == 403
        return self.kind is not Failure.NOT_SENT


# --- writes -----------------------------------------------------------------------------------


def _decimal_text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def place_params(command: PlaceOrder) -> dict[str, Any]:
    params = {
        "symbol": command.symbol,
        "side": command.side,
        "orderType": command.order_type,
        "qty": _decimal_text(command.qty),
        "orderLinkId": command.link_id,
        "positionIdx": command.position_idx,
        "reduceOnly": command.reduce_only,
    }
    if command.order_type == "Limit":
        params.update(price=_decimal_text(command.price), timeInForce=command.time_in_force)
    if command.trigger_price is not None:
        params.update(
            triggerPrice=_decimal_text(command.trigger_price),
            triggerDirection=command.trigger_direction,
            triggerBy=command.trigger_by,
        )
    if command.close_on_trigger:
        params["closeOnTrigger"] = True
    return params


def amend_params(command: AmendOrder) -> dict[str, Any]:
    params = {
        "symbol": command.symbol,
        "orderLinkId": command.link_id,
        "qty": _decimal_text(command.qty),
        "price": _decimal_text(command.price),
        "triggerPrice": _decimal_text(command.trigger_price),
        "triggerBy": command.trigger_by,
    }
    return {k: v for k, v in params.items() if v is not None}


def cancel_params(command: CancelOrder) -> dict[str, Any]:
    return {"symbol": command.symbol, "orderLinkId": command.link_id}


def command_request(command: OrderCommand) -> tuple[str, dict[str, Any]]:
    """The pybit method and its parameters for one command."""
    match command:
        case PlaceOrder():
            method, params = "place_order", place_params(command)
        case AmendOrder():
            method, params = "amend_order", amend_params(command)
        case CancelOrder():
            method, params = "cancel_order", cancel_params(command)
        case CancelAll():
            method, params = "cancel_all_orders", {"symbol": command.symbol}
        case _:
            assert_never(command)
    return method, {"category": "linear", **params}


BATCHES: dict[type, tuple[str, Callable[[Any], dict[str, Any]]]] = {
    PlaceOrder: ("place_batch_order", place_params),
    AmendOrder: ("amend_batch_order", amend_params),
    CancelOrder: ("cancel_batch_order", cancel_params),
}


def batch_request(commands: tuple[OrderCommand, ...]) -> tuple[str, dict[str, Any]]:
    """The pybit method and parameters for a batch of commands of one kind (the caller checked)."""
    method, build = BATCHES[type(commands[0])]
    return method, {"category": "linear", "request": [build(c) for c in commands]}


def outcome_of(result: HttpOk | HttpFail) -> Outcome:
    if isinstance(result, HttpOk):
        body = result.body.get("result") or {}
        return Accepted(str(body.get("orderId", "")), str(body.get("orderLinkId", "")))
    if result.kind is Failure.NOT_SENT:
        return Rejected(result.code or 0, result.message)
    if result.uncertain:
        return Unresolved(f"{result.kind} {result.code or ''}: {result.message}".replace(" :", ":")[:200])
    return Rejected(result.code or 0, result.message)


def batch_outcomes(result: HttpOk | HttpFail, count: int) -> list[Outcome]:
    """One outcome per command of a batch, in order (a missing item is unresolved)."""
    if isinstance(result, HttpFail):
        return [outcome_of(result)] * count
    rows = (result.body.get("result") or {}).get("list") or []
    codes = (result.body.get("retExtInfo") or {}).get("list") or []
    outcomes: list[Outcome] = []
    for index in range(count):
        code: dict[str, Any] = codes[index] if index < len(codes) else {"code": -1, "msg": "missing from the answer"}
        row = rows[index] if index < len(rows) else {}
        if code.get("code") == 0:
            outcomes.append(Accepted(str(row.get("orderId", "")), str(row.get("orderLinkId", ""))))
        elif outcome_unknown(code.get("code")) or code.get("code") == -1:
            outcomes.append(Unresolved(f"batch item: {code.get('code')} {code.get('msg')}"))
        else:
            outcomes.append(Rejected(int(code.get("code") or 0), str(code.get("msg") or "")))
    return outcomes


# --- reads ------------------------------------------------------------------------------------


def page_request(phase: ReadPhase, symbol: str | None, cursor: str | None) -> tuple[str, dict[str, Any]]:
    """One page of a read: `phase` orders (open), positions or closed (finished orders)."""
    scope = {"symbol": symbol} if symbol else {"settleCoin": "USDT"}
    method, params = {
        "orders": ("get_open_orders", {"category": "linear", "limit": 50, **scope}),
        "positions": ("get_positions", {"category": "linear", "limit": 200, **scope}),
        "closed": ("get_order_history", {"category": "linear", "limit": 50, **scope}),
    }[phase]
    if cursor:
        params["cursor"] = cursor
    return method, params


def page_of(body: Mapping[str, Any]) -> tuple[list[dict], str]:
    """The rows and the next cursor of one page; ModelError when the answer has no list."""
    result = body.get("result")
    if not isinstance(result, dict) or not isinstance(result.get("list"), list):
        raise ModelError("malformed answer: no result list")
    return result["list"], str(result.get("nextPageCursor") or "")


# --- streams ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PrivatePush:
    """One private push, parsed whole: `kind` is position, order or execution."""

    kind: PrivateTopic
    positions: tuple[Position, ...] = ()
    orders: tuple[Order, ...] = ()
    executions: tuple[Execution, ...] = ()


def private_push(topic: str, data: Any) -> PrivatePush | None:
    """Parse a private push (`position`, `order.linear`, ...); None for a topic we do not use.
    ModelError when any row is malformed: the message is rejected whole."""
    try:
        kind = PrivateTopic(topic.split(".", 1)[0])
    except ValueError:
        return None
    return _private_rows(topic, kind, data)


def _private_rows(topic: str, kind: PrivateTopic, data: Any) -> PrivatePush:
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise ModelError(f"{topic} push: data is not a list of rows")
    rows = [row for row in data if row.get("category", "linear") == "linear"]
    try:
        match kind:
            case PrivateTopic.POSITION:
                return PrivatePush(kind, positions=tuple(Position.from_v5(row) for row in rows))
            case PrivateTopic.ORDER:
                return PrivatePush(kind, orders=tuple(Order.from_v5(row) for row in rows))
            case PrivateTopic.EXECUTION:
                return PrivatePush(kind, executions=tuple(Execution.from_v5(row) for row in rows))
            case _:
                assert_never(kind)
    except (TypeError, AttributeError) as exc:
        raise ModelError(f"{topic} push: {exc}") from None


TICKER_PRICES = {"lastPrice": TriggerBy.LAST, "markPrice": TriggerBy.MARK, "indexPrice": TriggerBy.INDEX}


def ticker_prices(topic: str, data: Any) -> tuple[str, dict[TriggerBy, Decimal]]:
    """The symbol and the prices a ticker push carries (a delta may leave some out), keyed by the
    trigger price type each one is (R15)."""
    if not isinstance(data, dict):
        raise ModelError(f"{topic} push: data is not an object")
    symbol = str(data.get("symbol") or topic.removeprefix("tickers."))
    prices = {}
    for name, kind in TICKER_PRICES.items():
        raw = data.get(name)
        if raw in (None, ""):
            continue
        try:
            price = Decimal(str(raw))
        except ArithmeticError:
            raise ModelError(f"{topic} push: {name} {raw!r} is not a number") from None
        if not price.is_finite() or price <= 0:
            raise ModelError(f"{topic} push: {name} {raw!r} is not a price")
        prices[kind] = price
    return symbol, prices


def _positive(what: str, raw: Any) -> Decimal:
    try:
        value = Decimal(str(raw))
    except ArithmeticError:
        raise ModelError(f"{what} {str(raw)[:40]!r} is not a number") from None
    if not value.is_finite() or value < 0:
        raise ModelError(f"{what} {str(raw)[:40]!r} is not a positive number")
    return value


def last_price(body: Mapping[str, Any], symbol: str) -> Decimal:
    """The last price in a `/v5/market/tickers` answer for one symbol; ModelError when absent."""
    rows = (body.get("result") or {}).get("list") or []
    row = next((r for r in rows if isinstance(r, dict) and r.get("symbol") == symbol), None)
    if row is None:
        raise ModelError(f"tickers: no row for {symbol}")
    return _positive("tickers: lastPrice", row.get("lastPrice"))


def available_balance(body: Mapping[str, Any]) -> Decimal:
    """totalAvailableBalance of a unified account's `/v5/account/wallet-balance` answer."""
    rows = (body.get("result") or {}).get("list") or []
    if not rows or not isinstance(rows[0], dict):
        raise ModelError("wallet-balance: no account row")
    return _positive("wallet-balance: totalAvailableBalance", rows[0].get("totalAvailableBalance"))


def leverage_params(symbol: str, leverage: Decimal) -> dict[str, str]:
    text = format(leverage.normalize(), "f")
    return {"category": "linear", "symbol": symbol, "buyLeverage": text, "sellLeverage": text}


def ticker_topics(symbols: list[str], limit: int = ARGS_LIMIT) -> list[tuple[str, ...]]:
    """`tickers.<SYMBOL>` topics, split into groups whose subscribe args stay under `limit`
    characters (one connection each)."""
    groups: list[list[str]] = [[]]
    size = 0
    for symbol in sorted(symbols):
        topic = f"tickers.{symbol}"
        cost = len(topic) + 3  # quotes and a comma in the JSON args
        if groups[-1] and size + cost > limit:
            groups.append([])
            size = 0
        groups[-1].append(topic)
        size += cost
    return [tuple(g) for g in groups if g]
