"""R18, the trader's hand on the daemon's own orders: a take-profit the trader cancelled leaves
the plan (its share stays covered by the stop); a price the trader moved becomes the plan's price
(quantities stay the daemon's; after TP1 the stop is never looser than its breakeven level, which
`protect` restores)."""

from __future__ import annotations

from dataclasses import replace

from actors.position.rules._orders import OwnOrders
from actors.position.rules._state import STOP_KEY, Event, EventKind, MonitorState, new_event
from messages.models import OrderStatus, Role

BY_HAND = "CancelByUser"  # an API or web cancel; the exchange's own cancels name themselves


def removed_by_hand(state: MonitorState, closed: OwnOrders) -> tuple[MonitorState, list[Event]]:
    """Take-profits of this position cancelled by someone other than the daemon."""
    events = []
    for key, orders in sorted(closed.items()):
        if key.role is not Role.TAKE_PROFIT or key.level in state.removed_tps | state.filled_tps:
            continue
        if any(
            o.status == OrderStatus.CANCELLED and o.cancel_type == BY_HAND and o.link_id not in state.cancelled
            for o in orders
        ):
            state = replace(state, removed_tps=state.removed_tps | {key.level})
            events.append(
                new_event(
                    EventKind.TP_REMOVED,
                    f"TP REMOVED {state.monitor}: TP{key.level} was cancelled by hand; it leaves the plan and the "
                    "stop keeps covering its share",
                    level_removed=key.level,
                )
            )
    return state, events


def edited_by_hand(state: MonitorState, ours: OwnOrders) -> tuple[MonitorState, list[Event]]:
    """Prices of the daemon's resting orders that differ from the plan with no amend of ours on the
    way: the trader moved them, and the plan follows (before TP1 for the stop)."""
    if state.retarget:
        return state, []  # the daemon is moving them to the trader's `plan` itself
    plan, tps, stop, moved = state.plan, list(state.plan.tp_prices), state.plan.stop_price, []
    for key, orders in sorted(ours.items()):
        order = orders[0]
        if key in state.pending:
            continue
        if key.role is Role.TAKE_PROFIT and key.level <= len(tps) and order.price and order.price != tps[key.level - 1]:
            tps[key.level - 1] = order.price
            moved.append(f"TP{key.level} {order.price}")
        elif (
            key == STOP_KEY
            and not state.tp1_done
            and state.trail_extreme is None  # while trailing, the daemon moves it (R14)
            and order.trigger_price
            and order.trigger_price != stop
        ):
            stop = order.trigger_price
            moved.append(f"stop {stop}")
    if not moved:
        return state, []
    state = replace(state, plan=replace(plan, tp_prices=tuple(tps), stop_price=stop))
    line = f"PLAN EDITED {state.monitor}: moved by hand on the exchange: {', '.join(moved)}; the plan follows"
    return state, [new_event(EventKind.PLAN_EDITED, line, critical=False, moved=moved)]
