"""R14: the trailing stop. Once active, the best price since then (the high for a long, the low for
a short) is kept in the state (so a restart resumes from it), and the one stop is amended (never
cancelled and replaced) toward it at the plan's distance: only more protective, by at least the
step, at most once per interval, and only in a check that has nothing more urgent to send."""

from __future__ import annotations

import logging
from dataclasses import replace
from decimal import Decimal

from actors.position.rules._orders import OwnOrders, newest
from actors.position.rules._prices import more_protective, side_sign
from actors.position.rules._state import (
    STOP_KEY,
    Action,
    Command,
    Event,
    EventKind,
    MonitorState,
    Pending,
    RulesConfig,
    new_event,
    with_pending,
)
from messages.gateway import PositionView, Priority
from messages.models import Instrument, OrderStatus, Side


def activated(state: MonitorState, price: Decimal) -> bool:
    """Does the plan's `trail_after` say trailing starts now (tpN filled, or profit:P reached)?"""
    start = state.plan.trail_after or "off"
    if start == "off":
        return False
    if start.startswith("tp"):
        return int(start[2:]) in state.filled_tps
    threshold = Decimal(start.removeprefix("profit:")) / 100
    if not state.avg_price:
        return False
    gain = (price - state.avg_price) / state.avg_price * side_sign(Side(state.plan.side))
    return gain >= threshold


def waits_on_price(state: MonitorState) -> bool:
    """Trailing starts at a profit and has not yet: only the price tells when, and a price moves no
    order and no position, so no push wakes the monitor for it (its check cannot be quiet)."""
    return state.trail_extreme is None and (state.plan.trail_after or "").startswith("profit:")


def uses_prices(state: MonitorState) -> bool:
    """Does this monitor act on live prices (a trailing stop, or a profit that starts one)?"""
    return state.trail_extreme is not None or waits_on_price(state)


def trail(
    state: MonitorState,
    view: PositionView,
    ours: OwnOrders,
    instrument: Instrument,
    config: RulesConfig,
    now_ms: int,
) -> tuple[MonitorState, list[Command], list[Event]]:
    """Track the extreme, activate, and move the stop when the candidate beats it by the step."""
    price = view.price(state.plan.triggers_on) if view.position is not None else None  # R15
    stop = newest(ours, STOP_KEY)
    if price is None or stop is None or stop.trigger_price is None or stop.status != OrderStatus.UNTRIGGERED:
        return state, [], []
    side = Side(state.plan.side)
    events: list[Event] = []
    if state.trail_extreme is None:
        if not activated(state, price):
            return state, [], []
        state = replace(state, trail_extreme=price)
        events.append(
            new_event(
                EventKind.TRAIL_ACTIVE,
                f"TRAIL ACTIVE {state.monitor}: trailing the stop {state.plan.trail_percent} % behind {price} "
                f"({state.plan.trail_after})",
                price=price,
                distance=state.plan.trail_percent,
            )
        )
    extreme = state.trail_extreme
    assert extreme is not None
    if more_protective(side, price, extreme):  # a new high for a long, a new low for a short
        state = replace(state, trail_extreme=price)
        extreme = price
    percent = state.plan.trail_percent or config.trail_percent
    candidate = _candidate(side, extreme, price, instrument, percent)
    step = _step(extreme, instrument, percent, config)
    gain = (candidate - stop.trigger_price) * side_sign(side)
    if gain < step or now_ms - state.trail_last_ms < config.trail_min_interval_ms:
        return state, [], events
    state = with_pending(
        state, STOP_KEY, Pending(Action.AMEND, stop.link_id, None, candidate, view.snapshot_id, stop.qty)
    )
    state = replace(state, trail_last_ms=now_ms, trailed=True, trail_stop=candidate)
    events.append(
        new_event(
            EventKind.TRAIL_MOVED,
            f"TRAIL {state.monitor}: stop {stop.link_id} {stop.trigger_price} -> {candidate} (best {extreme})",
            level=logging.DEBUG,
            critical=False,
            trigger=candidate,
        )
    )
    return state, [Command(Action.AMEND, STOP_KEY, stop.link_id, Priority.TRAIL, trigger_price=candidate)], events


def _candidate(side: Side, extreme: Decimal, price: Decimal, instrument: Instrument, percent: Decimal) -> Decimal:
    """extreme x (1 -/+ distance), snapped protectively, and at least one tick inside the price."""
    sign = side_sign(side)
    raw = instrument.snap_price(extreme * (1 - sign * percent / 100), up=side == Side.BUY)
    inside = price - sign * instrument.tick_size
    return raw if more_protective(side, inside, raw) else inside


def _step(extreme: Decimal, instrument: Instrument, percent: Decimal, config: RulesConfig) -> Decimal:
    """The least move worth an amend: TRAIL_STEP_PERCENT (a quarter of the distance by default) of the
    price, never below one tick."""
    step_percent = config.trail_step_percent if config.trail_step_percent is not None else percent / 4
    return max(instrument.tick_size, extreme * step_percent / 100)
