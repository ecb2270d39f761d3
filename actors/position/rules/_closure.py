"""R6 (position gone, confirmed) and R11 (a new position on the key): leftovers cancelled, then the
monitor retires. A new position is handed over: the old stop that still protects it stays until the
new position's own stop is live (`release_inherited`, in the successor's monitor)."""

from __future__ import annotations

import logging
from dataclasses import replace
from decimal import Decimal

from actors.position.rules._delisting import delivered
from actors.position.rules._orders import OwnOrders, cleanup_cancel
from actors.position.rules._prices import closing_side
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
    Position,
    PositionStatus,
    Side,
)


def successor_of(
    state: MonitorState, view: PositionView, position: Position | None
) -> tuple[MonitorState, Position | None]:
    """R11: the open row when it is no longer this monitor's position (the side flipped, or the
    position went flat and opened again: the gateway counted a renewal, or the row's openTime
    changed), else None, having learned the row's identity. A monitor that never saw its position
    open (a planned trade still opening) has nothing to be replaced."""
    if position is None:
        return replace(state, renewals_seen=view.renewals), None
    flipped = position.side != state.plan.side
    reopened = state.last_size > 0 and (
        0 <= state.renewals_seen < view.renewals
        or bool(state.open_time_ms and position.opened_ms and position.opened_ms != state.open_time_ms)
    )
    if flipped or reopened or state.successor:
        return state, position
    return replace(state, renewals_seen=view.renewals, open_time_ms=state.open_time_ms or position.opened_ms), None


def release_inherited(
    state: MonitorState, view: PositionView, ours: OwnOrders, observing: bool
) -> tuple[MonitorState, list[Command]]:
    """R11, in the new position's monitor: the previous position's stops it inherited are
    cancelled once its own stop is live on the exchange (never before: they may be all that
    protects it), or at once when it only observes (no stop of its own will come)."""
    if not state.inherited:
        return state, []
    still_open = {o.link_id: o for o in view.orders if o.is_open and o.link_id in state.inherited}
    if not observing and not any(o.is_open for o in ours.get(STOP_KEY, [])):
        return replace(state, inherited=frozenset(still_open)), []
    commands = []
    for order in still_open.values():
        state, command = cleanup_cancel(state, order, view.snapshot_id)
        commands += [command] if command else []
    return replace(state, inherited=frozenset()), commands


def close_out(
    state: MonitorState,
    view: PositionView,
    ours: OwnOrders,
    closed: OwnOrders,
    successor: Position | None,
    fresh: bool,
    now_ms: int,
) -> tuple[MonitorState, list[Command], list[Event]]:
    """R6 (position gone, confirmed) and R11 (`successor`: a new position on the key, which
    confirms the old one is gone): cancel the daemon's leftovers, then retire."""
    events: list[Event] = []
    if not state.closing:
        stop_hit = any(o.status == OrderStatus.FILLED for o in closed.get(STOP_KEY, []))
        last_level = len(state.plan.percents)
        last_tp = last_level in state.filled_tps
        if successor is not None and successor.side != state.plan.side:
            reason = CloseReason.FLIPPED
        else:
            gone = state.gone_snapshots
            if fresh and view.snapshot_id not in gone:
                gone = (*gone, view.snapshot_id)
            state = replace(state, gone_snapshots=gone)
            # A flat row pushed by the stream is the exchange saying so, not a row missing from a
            # read: it confirms on its own, like a filled stop or our own market close filled.
            closed_at_market = any(o.status == OrderStatus.FILLED for o in closed.get(EMERGENCY_KEY, []))
            settled = delivered(closed, view.instrument)  # R19: the settlement is the exchange saying so
            confirmed = successor is not None or settled or view.flat_pushed or len(gone) >= CONFIRMING_SNAPSHOTS
            if not (stop_hit or last_tp or closed_at_market or confirmed):
                return state, [], []  # wait for a second snapshot; change nothing meanwhile
            liquidated = any(o.cancel_type in LIQUIDATION_CANCELS for orders in closed.values() for o in orders) or (
                successor is None
                and view.position is not None
                and view.position.status in (PositionStatus.LIQ, PositionStatus.ADL)
            )
            trailed_out = state.trailed and (stop_hit or EMERGENCY_KEY in state.generations)
            reason = (
                CloseReason.DELIVERY
                if settled
                else CloseReason.LIQUIDATION
                if liquidated
                else CloseReason.TRAILING_STOP
                if trailed_out
                else CloseReason.STOP_LOSS
                if stop_hit
                else CloseReason.TAKE_PROFITS
                if last_tp
                else CloseReason.TIME_LIMIT
                if state.time_limit_hit
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
    if successor is not None and not state.successor:
        protecting = closing_side(Side(successor.side))
        handover = frozenset(
            o.link_id for o in ours.get(STOP_KEY, []) if o.side == protecting and o.link_id not in state.cleanup
        )
        state = replace(state, successor=True, handover=handover)
    commands = []
    for orders in ours.values():
        for order in orders:
            if order.link_id in state.handover:
                continue
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
