"""The stop: R1, R3-R5 (it covers size + resting entries), R2 and R13 (its level as take-profits fill),
R7 (restored when missing), R8 (moved by one amend, never cancelled first).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from decimal import Decimal

from actors.position.rules._orders import OwnOrders, newest
from actors.position.rules._prices import (
    breakeven_price,
    closing_side,
    more_protective,
    stop_direction,
)
from actors.position.rules._state import (
    EMERGENCY_KEY,
    STOP_KEY,
    Action,
    Command,
    Event,
    EventKind,
    MonitorState,
    Pending,
    RulesConfig,
    new_event,
    next_link,
    with_pending,
)
from messages.gateway import (
    PositionView,
    Priority,
)
from messages.models import (
    Approach,
    Instrument,
    Intent,
    OrderStatus,
    OrderType,
    StopAfter,
    TriggerBy,
)


def protect(
    state: MonitorState,
    view: PositionView,
    ours: OwnOrders,
    size: Decimal,
    resting: Decimal,
    instrument: Instrument,
    config: RulesConfig,
    blocked: frozenset[Intent] = frozenset(),
) -> tuple[MonitorState, list[Command], list[Event]]:
    """R1, R3, R4, R5: the stop covers size + resting entries; R2: at breakeven after TP1;
    R7: restored when missing; R8: changed by one amend, never cancelled first."""
    side = state.plan.side
    desired_qty = instrument.round_qty(size + resting)
    floor = ladder_level(state, instrument, config)  # R2, R13
    if STOP_KEY in state.pending or EMERGENCY_KEY in state.pending or STOP_KEY in blocked:  # R10, R17
        return state, [], []
    stop = newest(ours, STOP_KEY)
    if stop is not None and stop.status in (OrderStatus.TRIGGERED, OrderStatus.PARTIALLY_FILLED):
        return state, [], []  # firing now: leave it alone
    if stop is None:
        if _externally_protected(state, view, size):
            return state, [], []
        if observing(state, config):
            return (
                state,
                [],
                [
                    new_event(
                        EventKind.UNPROTECTED,
                        f"UNPROTECTED {state.monitor}: no stop on an open position of {size} (adoption policy observe)",
                        level=logging.WARNING,
                        critical=False,
                        size=size,
                    )
                ],
            )
        placed_at = floor if floor is not None else state.plan.stop_price
        if state.trail_stop is not None and more_protective(side, state.trail_stop, placed_at):
            placed_at = state.trail_stop  # R14: a restored stop never loosens what trailing reached
        restored = STOP_KEY in state.generations
        state, link_id = next_link(state, STOP_KEY)
        state = with_pending(
            state, STOP_KEY, Pending(Action.PLACE, link_id, desired_qty, placed_at, view.snapshot_id, size)
        )
        line = (
            f"STOP RESTORED {state.monitor}: no live stop; placing {link_id} at {placed_at} for {desired_qty}"
            if restored
            else f"STOP PLACED {state.monitor}: {link_id} at {placed_at} for {desired_qty}"
        )
        event = new_event(
            EventKind.STOP_RESTORED if restored else EventKind.STOP_PLACED,
            line,
            level=logging.WARNING if restored else logging.INFO,
            link_id=link_id,
            trigger=placed_at,
            qty=desired_qty,
        )
        return state, [stop_place(state, link_id, desired_qty, placed_at)], [event]
    trigger: Decimal | None = None
    if floor is not None and (
        not state.breakeven_done or stop.trigger_price is None or more_protective(side, floor, stop.trigger_price)
    ):
        if stop.trigger_price is None or more_protective(side, floor, stop.trigger_price):
            trigger = floor
        else:
            state = replace(state, breakeven_done=True)  # already at or beyond its level
    if state.retarget:  # the trader's stop; after TP1 never less protective than its ladder level
        wanted = (
            state.plan.stop_price if floor is None or more_protective(side, state.plan.stop_price, floor) else floor
        )
        trigger = wanted if stop.trigger_price != wanted else None
    qty = desired_qty if stop.qty != desired_qty else None
    # R15: a stop of ours on another price type (placed before the setting changed) is moved to the plan's.
    known = stop.trigger_by in {t.value for t in TriggerBy}
    trigger_by = state.plan.triggers_on if known and stop.trigger_by != state.plan.triggers_on else None
    if trigger is None and qty is None and trigger_by is None:
        return state, [], []
    state = with_pending(state, STOP_KEY, Pending(Action.AMEND, stop.link_id, qty, trigger, view.snapshot_id, size))
    command = Command(
        Action.AMEND, STOP_KEY, stop.link_id, Priority.PROTECT, qty=qty, trigger_price=trigger, trigger_by=trigger_by
    )
    return state, [command], []


def has_live_stop(state: MonitorState, view: PositionView) -> bool:
    """Does a live stop guard the position: the daemon's own, or a trader's (any untriggered or
    triggered conditional reduce-only order on the closing side)?"""
    closing = closing_side(state.plan.side)
    return any(
        o.is_open
        and o.is_conditional
        and o.reduce_only
        and o.side == closing
        and o.position_idx == state.monitor.position_idx
        for o in view.orders
    )


def ladder_level(state: MonitorState, instrument: Instrument, config: RulesConfig) -> Decimal | None:
    """R2, R13: where the stop belongs (at least) after the take-profits filled so far, or None
    while it stays at the plan's price. `breakeven`: breakeven from TP1 on; `previous_tp`: TP1 ->
    breakeven, TPk -> TP(k-1)'s price; `two_back`: TP1 -> no move, TP2 -> breakeven, TPk -> TP(k-2)'s
    price. Never below breakeven once it moved."""
    if not state.tp1_done:
        return None
    back = {StopAfter.BREAKEVEN: None, StopAfter.PREVIOUS_TP: 1, StopAfter.TWO_BACK: 2}[state.plan.stop_ladder]
    level = 0 if back is None else max(state.filled_tps) - back  # 0: breakeven; k: TPk's price
    if level < 0:
        return None
    be = breakeven_price(state.plan.side, state.avg_price, config.breakeven_offset, instrument)
    if level == 0 or level > len(state.plan.tp_prices):
        return be
    price = state.plan.tp_prices[level - 1]
    return price if more_protective(state.plan.side, price, be) else be


def ladder_move_due(state: MonitorState) -> bool:
    """Is the stop due at a ladder level (R2, R13) it has not reached yet? Critical until it has."""
    waits_for_tp2 = state.plan.stop_ladder is StopAfter.TWO_BACK and max(state.filled_tps, default=0) < 2
    return state.tp1_done and not state.breakeven_done and not waits_for_tp2


def observing(state: MonitorState, config: RulesConfig) -> bool:
    """An adopted position under policy `observe`: watched, never given orders."""
    return state.plan.approach is Approach.ADOPTED and config.adoption_policy == "observe"


def _externally_protected(state: MonitorState, view: PositionView, size: Decimal) -> bool:
    """An order the daemon did not place already stops the whole position (adopted positions)."""
    closing = closing_side(state.plan.side)
    return any(
        o.link is None
        and o.is_open
        and o.is_conditional
        and o.reduce_only
        and o.side == closing
        and o.qty >= size
        and o.position_idx == state.monitor.position_idx
        for o in view.orders
    )


def stop_place(state: MonitorState, link_id: str, qty: Decimal, trigger: Decimal) -> Command:
    return Command(
        Action.PLACE,
        STOP_KEY,
        link_id,
        Priority.PROTECT,
        side=closing_side(state.plan.side),
        order_type=OrderType.MARKET,
        qty=qty,
        trigger_price=trigger,
        trigger_direction=stop_direction(state.plan.side),
        trigger_by=state.plan.triggers_on,  # R15
        reduce_only=True,
        close_on_trigger=True,
    )
