"""Views and command outcomes straight from the simulator's exchange engine, in-process (no
HTTP): the world behind the stub gateway and the property tests, with Bybit's real semantics."""

from __future__ import annotations

from decimal import Decimal

from messages.gateway import Accepted, PositionView, Rejected
from messages.models import Order, Position, Role
from simulator.demo import LADDER, _Placer
from simulator.exchange import BybitError, Exchange


def view_of(
    exchange: Exchange,
    account: str,
    symbol: str,
    snapshot_id: int,
    *,
    include_closed: bool = False,
    stale: bool = False,
    taken_ms: int = 0,
) -> PositionView:
    acct = exchange.accounts[account]
    spec = exchange.specs[symbol]
    with exchange.lock:
        raw = acct.positions.get(symbol)
        position = Position.from_v5(raw.to_v5(exchange.last_price(symbol), spec.tick_size)) if raw else None
        orders = tuple(Order.from_v5(o.to_v5()) for o in acct.open_orders(symbol))
        closed = (
            tuple(Order.from_v5(o.to_v5()) for o in acct.orders.values() if o.symbol == symbol and not o.is_open)
            if include_closed
            else ()
        )
    if position is not None and not position.is_open:
        position = None
    return PositionView(
        account, symbol, 0, position, orders, spec.instrument(), taken_ms, 0.0, snapshot_id, stale=stale, closed=closed
    )


def apply(exchange: Exchange, account: str, symbol: str, message) -> Accepted | Rejected:
    """Apply a gateway command message (PlaceOrder, AmendOrder, CancelOrder) to the exchange."""
    acct = exchange.accounts[account]
    text = lambda d: None if d is None else format(d, "f")
    try:
        match type(message).__name__:
            case "PlaceOrder":
                params = {
                    "category": "linear",
                    "symbol": symbol,
                    "side": message.side,
                    "orderType": message.order_type,
                    "qty": text(message.qty),
                    "orderLinkId": message.link_id,
                    "reduceOnly": message.reduce_only,
                    "closeOnTrigger": message.close_on_trigger,
                }
                if message.price is not None:
                    params["price"] = text(message.price)
                if message.trigger_price is not None:
                    params.update(triggerPrice=text(message.trigger_price), triggerDirection=message.trigger_direction)
                result = exchange.create_order(acct, params)
            case "AmendOrder":
                params = {"category": "linear", "symbol": symbol, "orderLinkId": message.link_id}
                for name, value in (
                    ("qty", message.qty),
                    ("price", message.price),
                    ("triggerPrice", message.trigger_price),
                ):
                    if value is not None:
                        params[name] = text(value)
                result = exchange.amend_order(acct, params)
            case "CancelOrder":
                result = exchange.cancel_order(
                    acct, {"category": "linear", "symbol": symbol, "orderLinkId": message.link_id}
                )
            case other:
                raise AssertionError(f"unexpected command {other}")
    except BybitError as exc:
        return Rejected(exc.code, exc.message)
    return Accepted(result["orderId"], result["orderLinkId"])


def open_conservative(
    exchange: Exchange,
    account: str,
    symbol: str,
    side: str,
    legs: Decimal,
    position_id: str = "pos1",
    entries_filled: int = 1,
) -> None:
    """A conservative position as the daemon opens it: leg 1 market, legs 2-3 resting limits
    (the first `entries_filled` legs filled), the 85/5/5/5 ladder on the filled size, one stop
    for the full target."""
    placer = _Placer(exchange, exchange.accounts[account], exchange.specs[symbol].instrument(), side, position_id)
    placer.entries(legs * 3, fill_limits=False)
    for level in range(2, entries_filled + 1):
        exchange.fill_order(exchange.accounts[account], placer.link(Role.ENTRY, level))
    placer.take_profits(LADDER)
    placer.stop(legs * 3)
