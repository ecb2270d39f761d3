"""The take-profit ladder: R1/R5 quantities from the ladder size, R4 scaled down to the position."""

from __future__ import annotations

from decimal import Decimal

from actors.position.rules._orders import OwnOrders, newest
from actors.position.rules._prices import closing_side
from actors.position.rules._state import (
    Action,
    Command,
    MonitorState,
    Pending,
    next_link,
    with_pending,
)
from messages.gateway import (
    PositionView,
    Priority,
)
from messages.models import (
    Instrument,
    Intent,
    OrderType,
    Role,
)


def take_profits(
    state: MonitorState,
    view: PositionView,
    ours: OwnOrders,
    size: Decimal,
    instrument: Instrument,
    blocked: frozenset[Intent] = frozenset(),
) -> tuple[MonitorState, list[Command]]:
    """R1/R5: TP quantities = share x the ladder size (the filled size before TP1); R4: scaled
    down so the active reduce-only orders together never exceed the position (no 110017), a
    level below minOrderQty folded into the level before (as the ladder's first split does)."""
    if not state.plan.tp_prices:
        return state, []
    levels = range(1, len(state.plan.percents) + 1)
    prices = {level: state.plan.tp_prices[level - 1] for level in levels if level - 1 < len(state.plan.tp_prices)}
    split = instrument.split_qty(state.ladder_size, state.plan.percents)
    orders = {level: newest(ours, Intent(Role.TAKE_PROFIT, level)) for level in levels}
    done = state.filled_tps | state.removed_tps  # R18: a level the trader removed leaves the plan
    wanted = {level: split[level - 1] for level in levels if level not in done}
    filled_part = {level: (o.cum_exec_qty if (o := orders[level]) is not None else Decimal(0)) for level in wanted}
    leaves = {level: max(Decimal(0), wanted[level] - filled_part[level]) for level in wanted}
    total = sum(leaves.values(), Decimal(0))
    if total > size:  # R4: rescaled to the position, a level below minOrderQty folded into the one before
        shares = tuple(q * 100 / total for q in leaves.values())
        leaves = dict(zip(leaves, instrument.split_qty(size, shares), strict=True))
    shrinking: list[Command] = []  # sent first: room is freed before it is used
    growing: list[Command] = []
    for key, beyond in ours.items():  # levels a new plan no longer has
        if key.role is Role.TAKE_PROFIT and key.level > len(state.plan.percents) and key not in state.pending:
            state = with_pending(state, key, Pending(Action.CANCEL, beyond[0].link_id, sent_snapshot=view.snapshot_id))
            shrinking.append(Command(Action.CANCEL, key, beyond[0].link_id, Priority.CLEANUP))
    for level in wanted:
        key = Intent(Role.TAKE_PROFIT, level)
        if key in state.pending or key in blocked:  # R17: a refused level waits for a change
            continue
        order = orders[level]
        qty = filled_part[level] + leaves[level]
        if order is not None:
            if leaves[level] <= 0 and order.cum_exec_qty == 0:
                state = with_pending(state, key, Pending(Action.CANCEL, order.link_id, sent_snapshot=view.snapshot_id))
                shrinking.append(Command(Action.CANCEL, key, order.link_id, Priority.CLEANUP))
            elif leaves[level] > 0 and (order.qty != qty or (state.retarget and order.price != prices.get(level))):
                price = prices.get(level) if state.retarget and order.price != prices.get(level) else None
                new_qty = qty if order.qty != qty else None
                state = with_pending(
                    state, key, Pending(Action.AMEND, order.link_id, new_qty, None, view.snapshot_id, size, price=price)
                )
                # A shrink frees room and goes with the clean-up: never in one batch with a growth
                # that needs that room (a batch's orders may be applied in any order).
                shrinks = qty < order.qty
                (shrinking if shrinks else growing).append(
                    Command(
                        Action.AMEND,
                        key,
                        order.link_id,
                        Priority.CLEANUP if shrinks else Priority.RESIZE,
                        qty=new_qty,
                        price=price,
                    )
                )
        elif leaves[level] > 0 and level - 1 < len(state.plan.tp_prices):
            state, link_id = next_link(state, key)
            state = with_pending(
                state, key, Pending(Action.PLACE, link_id, leaves[level], None, view.snapshot_id, size)
            )
            growing.append(
                Command(
                    Action.PLACE,
                    key,
                    link_id,
                    Priority.RESIZE,
                    side=closing_side(state.plan.side),
                    order_type=OrderType.LIMIT,
                    qty=leaves[level],
                    price=state.plan.tp_prices[level - 1],
                )
            )
    return state, shrinking + growing
