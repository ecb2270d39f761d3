"""The TP/SL rules (../shared/tpsl-rules.md) as pure functions over frozen values.

    reconcile(state, view, now_ms, config) -> Decision(state, commands, events)
    settle(state, command, outcome, view, now_ms, config) -> Decision   (one command's outcome)
    classify_urgency(state, view, now_ms) -> Urgency

A monitor owns one position (account, symbol, positionIdx) and the daemon's orders for it: those
whose orderLinkId parses as `tg-<position id>-...`. Every other order is external: read, never
amended or cancelled. Commands reserve their orderLinkId generation in the returned state before
they are sent, so an id is never reused and the same intent after a crash rebuilds the same id.

The modules follow the rules' seams: `_state` (the vocabulary and a monitor's state), `_prices`,
`_orders` (the position's own orders in a view), `_adoption`, `_plans`, `_check` (`reconcile`),
`_stop` (R1-R5, R7, R8, R13), `_take_profits`, `_closure` (R6, R11), `_outcomes` (`settle`, R10, R17),
`_hand` (R18, the trader's hand), `_delisting` (R19), `_urgency`, and `_codec` (the persistence form).
"""

from actors.position.rules._adoption import adopt, position_id_for, resumed
from actors.position.rules._check import links_to_explain, needs_closed, reconcile
from actors.position.rules._closure import finish
from actors.position.rules._codec import state_from_dict, state_to_dict, stored
from actors.position.rules._outcomes import settle, settle_pending
from actors.position.rules._plans import ladder_for, opening, planned, request_close, retarget, time_limit_due_ms
from actors.position.rules._prices import breakeven_price, closing_side, more_protective, stop_direction
from actors.position.rules._state import (
    CONFIRMING_SNAPSHOTS,
    EMERGENCY_KEY,
    FIRST_ENTRY,
    STOP_KEY,
    Action,
    CloseReason,
    Command,
    Decision,
    Event,
    EventKind,
    MonitorState,
    Pending,
    Phase,
    Refusal,
    RulesConfig,
)
from actors.position.rules._stop import has_live_stop, ladder_move_due
from actors.position.rules._trailing import uses_prices, waits_on_price
from actors.position.rules._urgency import classify_urgency, summary

__all__ = [
    "CONFIRMING_SNAPSHOTS",
    "EMERGENCY_KEY",
    "FIRST_ENTRY",
    "STOP_KEY",
    "Action",
    "CloseReason",
    "Command",
    "Decision",
    "Event",
    "EventKind",
    "MonitorState",
    "Pending",
    "Phase",
    "Refusal",
    "RulesConfig",
    "adopt",
    "breakeven_price",
    "classify_urgency",
    "closing_side",
    "finish",
    "has_live_stop",
    "ladder_for",
    "ladder_move_due",
    "links_to_explain",
    "more_protective",
    "needs_closed",
    "opening",
    "planned",
    "position_id_for",
    "reconcile",
    "request_close",
    "resumed",
    "retarget",
    "settle",
    "settle_pending",
    "state_from_dict",
    "state_to_dict",
    "stop_direction",
    "stored",
    "summary",
    "time_limit_due_ms",
    "uses_prices",
    "waits_on_price",
]
