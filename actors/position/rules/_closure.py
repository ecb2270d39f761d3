"""R6 (position gone, confirmed) and R11 (side flipped): leftovers cancelled, then the monitor retires."""

from __future__ import annotations

import logging
from dataclasses import replace
from decimal import Decimal

from actors.position.rules._orders import OwnOrders, cleanup_cancel
from actors.position.rules._state import (
    CONFIRMING_SNAPSHOTS,
    EMERGENCY_KEY,
    LIQUIDATION_CANCELS,
    STOP_KEY,
    CloseReason,
    Command,
    Event,
    EventKind,
    MonitorState,
    Phase,
    new_event,
)
from messages.gateway import (
    PositionView,
)
from messages.models import (
    OrderStatus,
    PositionStatus,
)


def close_out(
    state: MonitorState,
    view: PositionView,
    ours: OwnOrders,
    closed: OwnOrders,
    size: Decimal,
    flipped: bool,
    fresh: bool,
    now_ms: int,
) -> tuple[MonitorState, list[Command], list[Event]]:
    """R6 (position gone, confirmed) and R11 (side flipped): cancel the daemon's leftovers,
    then retire."""
    events: list[Event] = []
    if not state.closing:
        stop_hit = any(o.status == OrderStatus.FILLED for o in closed.get(STOP_KEY, []))
        last_level = len(state.plan.percents)
        last_tp = last_level in state.filled_tps
        if flipped:
            reason = CloseReason.FLIPPED
        else:
            gone = state.gone_snapshots
            if fresh and view.snapshot_id not in gone:
                gone = (*gone, view.snapshot_id)
            state = replace(state, gone_snapshots=gone)
            # A flat row pushed by the stream is the exchange saying so, not a row missing from a
            # read: it confirms on its own, like a filled stop or our own market close filled.
            closed_at_market = any(o.status == OrderStatus.FILLED for o in closed.get(EMERGENCY_KEY, []))
            if not (stop_hit or last_tp or closed_at_market or view.flat_pushed or len(gone) >= CONFIRMING_SNAPSHOTS):
                return state, [], []  # wait for a second snapshot; change nothing meanwhile
            liquidated = any(o.cancel_type in LIQUIDATION_CANCELS for orders in closed.values() for o in orders) or (
                view.position is not None and view.position.status in (PositionStatus.LIQ, PositionStatus.ADL)
            )
            reason = (
                CloseReason.LIQUIDATION
                if liquidated
                else CloseReason.STOP_LOSS
                if stop_hit
                else CloseReason.TAKE_PROFITS
                if last_tp
                else CloseReason.MANUAL
                if state.close_requested
                else CloseReason.EMERGENCY_CLOSE
                if EMERGENCY_KEY in state.generations
                else CloseReason.MANUAL
            )
            if stop_hit:
                events.append(
                    new_event(
                        EventKind.STOP_HIT,
                        f"STOP HIT {state.monitor}: position closed by its stop",
                        level=logging.WARNING,
                        realised_pnl=_realised_total(state),
                    )
                )
        state = replace(state, closing=reason, phase=Phase.CLOSED, last_change_ms=now_ms)
    commands = []
    for orders in ours.values():
        for order in orders:
            state, command = cleanup_cancel(state, order, view.snapshot_id)
            commands += [command] if command else []
    return state, commands, events


def finish(state: MonitorState, now_ms: int) -> tuple[MonitorState, tuple[Event, ...]]:
    """After a check's commands settled: a closing monitor with nothing left pending retires."""
    if state.closing and not state.retired and not state.awaiting:
        line = f"CLOSED {state.monitor}: {state.closing}"
        duration = (now_ms - state.opened_ms) // 1000 if state.opened_ms else None
        return replace(state, retired=state.closing), (
            new_event(
                EventKind.POSITION_CLOSED,
                line,
                reason=state.closing,
                realised_pnl=_realised_total(state),
                duration_s=duration,
                tps_hit=len(state.filled_tps),
                tps=len(state.plan.percents),
            ),
        )
    return state, ()


def _realised_total(state: MonitorState) -> Decimal | None:
    """This position's realised P&L as the exchange reported it, up to the last row seen."""
    if state.realised_start is None or state.realised_seen is None:
        return None
    return state.realised_seen - state.realised_start
