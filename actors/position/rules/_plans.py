"""The trader's plans: a trade the daemon opens (leg 1 at market, then the limits), new targets, the
trader's close, and the plan's time limit (R16).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal
from typing import Any

from actors.position.rules._orders import OwnOrders
from actors.position.rules._prices import closing_side
from actors.position.rules._state import (
    EMERGENCY_KEY,
    FIRST_ENTRY,
    Action,
    CloseReason,
    Command,
    Event,
    EventKind,
    MonitorState,
    Pending,
    Phase,
    RulesConfig,
    new_event,
    next_link,
    with_pending,
)
from messages.gateway import (
    Priority,
)
from messages.models import (
    Approach,
    Intent,
    MonitorId,
    OrderType,
    Plan,
    Role,
)


def ladder_for(levels: int, config: RulesConfig) -> tuple[Decimal, ...]:
    """Take-profit shares for a ladder of `levels`: the configured ladder when it has as many,
    all of it for one, else equal shares."""
    if levels == len(config.ladder_percents) and levels > 1:
        return config.ladder_percents
    return (Decimal(100),) if levels == 1 else tuple(Decimal(100) / levels for _ in range(levels))


def planned(monitor: MonitorId, position_id: str, plan: Plan, now_ms: int) -> MonitorState:
    """The state of a trade the daemon opens, recorded before its first order is sent: its
    monitor places leg 1 at market, then the limits, the stop and the take-profits."""
    return MonitorState(monitor, position_id, plan, Phase.BUILDING, now_ms, last_change_ms=now_ms)


def retarget(
    state: MonitorState,
    tp_prices: tuple[Decimal, ...],
    stop_price: Decimal,
    now_ms: int,
    config: RulesConfig,
    exits: Mapping[str, Any] | None = None,
) -> tuple[MonitorState, Event]:
    """The trader's new targets for a guarded position: its monitor amends its own stop and
    take-profits to them (never cancelling the stop), places what is missing and cancels the
    take-profits beyond the new ladder. `exits`: the plan's exit fields the trader gave (R13-R16)."""
    plan = state.plan
    approach = Approach.PLANNED if plan.approach is Approach.ADOPTED else plan.approach
    plan = replace(
        plan, approach=approach, percents=ladder_for(len(tp_prices), config), tp_prices=tp_prices, stop_price=stop_price
    )
    plan = replace(plan, **(exits or {}))
    line = (
        f"PLAN {state.monitor}: take-profits {', '.join(map(str, tp_prices))}, stop {stop_price} "
        f"(was {', '.join(map(str, state.plan.tp_prices))}, stop {state.plan.stop_price})"
    )
    return replace(state, plan=plan, retarget=True, last_change_ms=now_ms), new_event(
        EventKind.PLAN_CHANGED, line, tp_prices=[str(p) for p in tp_prices], stop=str(stop_price)
    )


def request_close(state: MonitorState, now_ms: int) -> tuple[MonitorState, Event]:
    """The trader's close: resting entries cancelled, the rest closed at market (reduce-only),
    then clean-up as R6 with reason manual. The stop stays until the position is gone."""
    return replace(state, close_requested=True, last_change_ms=now_ms), new_event(
        EventKind.CLOSE_REQUESTED, f"CLOSE REQUESTED {state.monitor}: closing {state.last_size} at market"
    )


def time_limit(state: MonitorState, now_ms: int) -> tuple[MonitorState, list[Event]]:
    """R16: once the plan's time limit has passed since the first entry fill, the trader's close
    (resting entries cancelled, the rest at market); the stop stays until the position is gone."""
    limit = state.plan.time_limit_seconds
    if not limit or not state.entered_ms or state.close_requested or now_ms < state.entered_ms + limit * 1000:
        return state, []
    state = replace(state, close_requested=True, time_limit_hit=True, last_change_ms=now_ms)
    event = new_event(
        EventKind.TIME_LIMIT,
        f"TIME LIMIT {state.monitor}: {limit / 60:g} min since the first entry fill; "
        f"closing {state.last_size} at market",
        level=logging.WARNING,
        seconds=limit,
    )
    return state, [event]


def time_limit_due_ms(state: MonitorState) -> int | None:
    """When the plan's time limit expires (R16), or None."""
    if not state.plan.time_limit_seconds or not state.entered_ms or state.time_limit_hit:
        return None
    return state.entered_ms + state.plan.time_limit_seconds * 1000


def opening(state: MonitorState) -> bool:
    """A planned trade whose position has not been seen yet."""
    return bool(state.plan.legs) and state.peak_size == 0 and not state.closing


def open_trade(
    state: MonitorState, closed: OwnOrders, snapshot_id: int
) -> tuple[MonitorState, list[Command], list[Event]]:
    """Leg 1 at market; the limits, the stop and the take-profits follow once the position is
    seen (a reduce-only order needs a position). Until then nothing else is decided."""
    if state.close_requested and FIRST_ENTRY not in state.pending:
        return replace(state, closing=CloseReason.MANUAL, phase=Phase.CLOSED), [], []
    if FIRST_ENTRY in state.pending:
        return state, [], []
    if FIRST_ENTRY not in state.generations:
        qty = state.plan.legs[0]
        state, link_id = next_link(state, FIRST_ENTRY)
        state = with_pending(state, FIRST_ENTRY, Pending(Action.PLACE, link_id, qty, None, snapshot_id))
        event = new_event(
            EventKind.ENTRY_SENT,
            f"ENTRY {state.monitor}: {link_id} {state.plan.side} {qty} at market ({state.plan.approach})",
            link_id=link_id,
            qty=qty,
        )
        return (
            state,
            [
                Command(
                    Action.PLACE,
                    FIRST_ENTRY,
                    link_id,
                    Priority.PROTECT,
                    side=state.plan.side,
                    order_type=OrderType.MARKET,
                    qty=qty,
                    reduce_only=False,
                )
            ],
            [event],
        )
    done = closed.get(FIRST_ENTRY, [])
    if done:  # finished and nothing filled: cancelled by the exchange
        return refused(state, f"{done[0].status} {done[0].cancel_type or ''}".strip()), [], []
    return state, [], []  # not seen finished yet: its fill and the position row are due


def refused(state: MonitorState, why: str) -> MonitorState:
    return replace(state, closing=CloseReason.ENTRY_REFUSED, phase=Phase.CLOSED, refusal=why)


def place_limits(state: MonitorState, snapshot_id: int) -> tuple[MonitorState, list[Command], Decimal]:
    """A planned trade's limit legs, once its position exists (never after TP1 or a close).
    Returns the quantity being placed: the stop covers it from the start."""
    if not state.plan.limits or state.tp1_done or state.close_requested:
        return state, [], Decimal(0)
    commands, placing = [], Decimal(0)
    for level, (qty, price) in enumerate(zip(state.plan.legs[1:], state.plan.limits, strict=False), 2):
        key = Intent(Role.ENTRY, level)
        if key in state.generations:
            continue
        state, link_id = next_link(state, key)
        state = with_pending(state, key, Pending(Action.PLACE, link_id, qty, None, snapshot_id))
        commands.append(
            Command(
                Action.PLACE,
                key,
                link_id,
                Priority.RESIZE,
                side=state.plan.side,
                order_type=OrderType.LIMIT,
                qty=qty,
                price=price,
                reduce_only=False,
            )
        )
        placing += qty
    return state, commands, placing


def close_at_market(
    state: MonitorState, size: Decimal, snapshot_id: int, blocked: frozenset[Intent] = frozenset()
) -> tuple[MonitorState, list[Command]]:
    """The trader's close: what is left, at market, reduce-only (again if a close left some; after a
    refusal, at R17's pace)."""
    if EMERGENCY_KEY in state.pending or EMERGENCY_KEY in blocked or size <= 0:
        return state, []
    state, command = market_close(state, size, snapshot_id)
    return state, [command]


def market_close(state: MonitorState, size: Decimal, snapshot_id: int) -> tuple[MonitorState, Command]:
    """`size` closed at market, reduce-only (role X): the trader's close and R9's emergency close."""
    state, link_id = next_link(state, EMERGENCY_KEY)
    state = with_pending(state, EMERGENCY_KEY, Pending(Action.PLACE, link_id, size, None, snapshot_id, size))
    command = Command(
        Action.PLACE,
        EMERGENCY_KEY,
        link_id,
        Priority.PROTECT,
        side=closing_side(state.plan.side),
        order_type=OrderType.MARKET,
        qty=size,
        reduce_only=True,
        close_on_trigger=True,
    )
    return state, command
