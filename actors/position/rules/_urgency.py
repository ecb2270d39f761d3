"""Urgency (tpsl-rules.md "Urgency") and the summary `status` shows."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from actors.position.rules._orders import newest, own_orders
from actors.position.rules._plans import time_limit_due_ms
from actors.position.rules._state import (
    IDLE_AFTER_MS,
    RECENT_CHANGE_MS,
    STOP_KEY,
    MonitorState,
    Phase,
)
from actors.position.rules._stop import ladder_move_due
from messages.gateway import (
    PositionView,
)
from messages.models import (
    Urgency,
)


def _triggers(state: MonitorState, view: PositionView | None) -> list[Decimal]:
    ours = own_orders(state, view.orders) if view is not None else {}
    stop = newest(ours, STOP_KEY)
    prices = [stop.trigger_price if stop is not None and stop.trigger_price else state.plan.stop_price]
    for level in range(1, len(state.plan.percents) + 1):
        if level not in state.filled_tps and level - 1 < len(state.plan.tp_prices):
            prices.append(state.plan.tp_prices[level - 1])
            break  # the next take-profit only
    return [p for p in prices if p]


def classify_urgency(state: MonitorState, view: PositionView | None, now_ms: int) -> Urgency:
    """tpsl-rules.md "Urgency": first match wins. A position seen flat once (closure not yet
    confirmed) and a closing one count as critical too: their confirmation and clean-up wait."""
    # R15: the price the stops trigger on (the ticker's; else the position row's mark)
    mark = view.price(state.plan.triggers_on) if view is not None and view.position is not None else None
    distances = [abs(mark - p) / mark for p in _triggers(state, view)] if mark else []
    nearest = min(distances) if distances else None
    if (
        state.awaiting
        or ladder_move_due(state)
        or state.trail_extreme is not None  # R14: the stop follows the price
        or ((due := time_limit_due_ms(state)) is not None and due - now_ms <= RECENT_CHANGE_MS)
        or state.closing
        or state.gone_snapshots
        or (nearest is not None and nearest <= Decimal("0.005"))
        or now_ms - state.last_change_ms < RECENT_CHANGE_MS
    ):
        return Urgency.CRITICAL
    if state.phase == Phase.PROFIT_TAKING or (nearest is not None and nearest <= Decimal("0.02")):
        return Urgency.ACTIVE
    if state.peak_size > 0 and (state.peak_size - state.last_size) / state.peak_size >= Decimal("0.9"):
        return Urgency.INACTIVE
    if now_ms - state.last_change_ms >= IDLE_AFTER_MS and (nearest is None or nearest > Decimal("0.03")):
        return Urgency.IDLE
    return Urgency.STANDARD


def summary(state: MonitorState, view: PositionView | None) -> dict[str, Any]:
    """What `main.py status` shows."""
    triggers = _triggers(state, view)
    next_tp = triggers[1] if len(triggers) > 1 else None
    return {
        "side": state.plan.side,
        "phase": state.phase,
        "size": state.last_size,
        "avg_price": state.avg_price,
        "next_tp": next_tp,
        "stop": triggers[0] if triggers else None,
        "urgency": state.urgency,
        "last_check_ms": state.last_check_ms,
    }
