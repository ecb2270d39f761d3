"""The daemon's own orders of one position in a view: by intent, finished, the size, clean-up cancels."""

from __future__ import annotations

from decimal import Decimal

from actors.position.rules._prices import closing_side
from actors.position.rules._state import (
    Action,
    Command,
    MonitorState,
    Pending,
    with_cleanup,
)
from messages.gateway import (
    PositionView,
    Priority,
)
from messages.models import Intent, Order, OrderLink, Position

OwnOrders = dict[Intent, list[Order]]  # the daemon's orders of one position, by intent


def own_link(order: Order) -> OrderLink:
    """The link of one of the daemon's own orders (sorted here by it, so never None)."""
    assert order.link is not None, order.link_id
    return order.link


def own_orders(state: MonitorState, orders: tuple[Order, ...]) -> OwnOrders:
    """The daemon's open orders for this position, by intent, newest generation first."""
    mine: OwnOrders = {}
    for order in orders:
        link = order.link
        if link is None or link.position_id != state.position_id or order.position_idx != state.monitor.position_idx:
            continue
        if order.is_open:
            mine.setdefault(link.intent, []).append(order)
    for key in mine:
        mine[key].sort(key=lambda o: own_link(o).generation, reverse=True)
    return mine


def newest(ours: OwnOrders, intent: Intent) -> Order | None:
    """The newest generation of an intent's open orders (older ones are duplicates)."""
    orders = ours.get(intent)
    return orders[0] if orders else None


def own_finished(state: MonitorState, closed: tuple[Order, ...]) -> OwnOrders:
    done: OwnOrders = {}
    for order in closed:
        link = order.link
        if link is not None and link.position_id == state.position_id:
            done.setdefault(link.intent, []).append(order)
    return done


def cancelling(state: MonitorState, view: PositionView) -> dict[str, Order]:
    """The open orders this monitor is cancelling, by link id: its own and those it inherited (R11)."""
    return {o.link_id: o for o in view.orders if o.is_open and o.link_id in state.cleanup}


def size_of(state: MonitorState, view: PositionView) -> tuple[Position | None, Decimal]:
    position = view.position
    if position is None or not position.is_open or position.position_idx != state.monitor.position_idx:
        return None, Decimal(0)
    return position, position.size


def refusal_basis(state: MonitorState, view: PositionView) -> str:
    """What a refused command depends on (R17): the position's size, the active reduce-only orders
    on its closing side (the room a take-profit needs), and the plan's prices. A refusal stands
    while this is unchanged."""
    _, size = size_of(state, view)
    closing = closing_side(state.plan.side)
    room = sorted(
        f"{o.order_id}:{o.leaves_qty}"
        for o in view.orders
        if o.is_open
        and o.reduce_only
        and not o.is_conditional
        and o.side == closing
        and o.position_idx == state.monitor.position_idx
    )
    plan = ",".join(str(p) for p in (*state.plan.tp_prices, state.plan.stop_price))
    return f"{size}|{';'.join(room)}|{plan}"


def cleanup_cancel(state: MonitorState, order: Order, snapshot_id: int) -> tuple[MonitorState, Command | None]:
    """Cancel one of the daemon's orders outside its intent's normal life (an older duplicate, a
    leftover of a closed position); nothing when that cancellation is already pending."""
    if order.link_id in state.cleanup:
        return state, None
    state = with_cleanup(state, order.link_id, Pending(Action.CANCEL, order.link_id, sent_snapshot=snapshot_id))
    return state, Command(Action.CANCEL, None, order.link_id, Priority.CLEANUP)
