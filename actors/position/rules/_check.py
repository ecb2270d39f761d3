"""One check (`reconcile`): what the view says, in the order the rules apply."""

from __future__ import annotations

import logging
from dataclasses import replace
from decimal import Decimal

from actors.position.rules._closure import close_out, release_inherited, successor_of
from actors.position.rules._delisting import delisting
from actors.position.rules._hand import edited_by_hand, removed_by_hand
from actors.position.rules._orders import (
    OwnOrders,
    cancelling,
    cleanup_cancel,
    own_finished,
    own_link,
    own_orders,
    refusal_basis,
    size_of,
)
from actors.position.rules._outcomes import settle_from_snapshot
from actors.position.rules._plans import (
    close_at_market,
    open_trade,
    opening,
    place_limits,
    refused,
    time_limit,
)
from actors.position.rules._state import (
    FIRST_ENTRY,
    ROOM_CANCEL,
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
    RulesConfig,
    new_event,
    with_pending,
)
from actors.position.rules._stop import observing, protect
from actors.position.rules._take_profits import take_profits
from actors.position.rules._trailing import trail
from messages.gateway import (
    PositionView,
    Priority,
)
from messages.models import (
    Order,
    OrderStatus,
    Position,
    Role,
)


def needs_closed(state: MonitorState, view: PositionView) -> bool:
    """Should the monitor ask again with the symbol's finished orders? Yes when the position is
    gone, one of its known orders is no longer open (did it fill?), or a command is pending (it
    may have landed and filled already)."""
    if view.stale or view.closed:
        return False
    _, size = size_of(state, view)
    open_now = {o.link_id for o in view.orders if o.is_open}
    return size == 0 or bool(state.open_links - open_now) or state.awaiting


def links_to_explain(state: MonitorState) -> frozenset[str]:
    """The link ids whose fate a view's finished orders must tell: every order the monitor saw
    open, and every command still waiting for its outcome."""
    return state.open_links | {p.link_id for p in state.pending.values()} | frozenset(state.cleanup)


def reconcile(state: MonitorState, view: PositionView, now_ms: int, config: RulesConfig) -> Decision:
    state = replace(state, last_check_ms=now_ms)
    if view.stale or state.retired:  # R0; a retired monitor decides nothing
        return Decision(state)
    unknown = _unknown_status(state, view)
    if unknown is not None:
        return Decision(state, (), (unknown,))
    events: list[Event] = []
    position, size = size_of(state, view)
    state, successor = successor_of(state, view, position)
    if successor is not None:  # R11: for this monitor its position is gone; the new one is not its own
        position, size = None, Decimal(0)
    if state.orphan and size > 0:  # not gone after all: leave it to a monitor that adopts it
        return Decision(replace(state, retired=CloseReason.NO_POSITION))
    ours = own_orders(state, view.orders)
    closed = own_finished(state, view.closed)
    fresh = view.snapshot_id != state.last_snapshot
    state, settle_events = settle_from_snapshot(
        state, ours, closed, size, view.snapshot_id, fresh, now_ms, cancelling(state, view)
    )
    events += settle_events
    state, realised = _track_realised(state, view.position)
    state, fill_events = _detect_fills(state, closed, size, realised, now_ms)
    events += fill_events
    state, removed = removed_by_hand(state, closed)  # R18
    events += removed
    entry_filled = any(o.cum_exec_qty > 0 for o in closed.get(FIRST_ENTRY, []))
    state, delisting_events = delisting(state, view.instrument)  # R19
    events += delisting_events
    if opening(state) and size == 0 and not entry_filled:  # once filled, a flat position is R6's
        if state.delisting and FIRST_ENTRY not in state.generations:  # R19: no entry on a contract leaving Trading
            status = view.instrument.status if view.instrument else "not trading"
            return _decided(refused(state, f"{state.monitor.symbol} is {status}"), view, [], events)
        state, open_commands, open_events = open_trade(state, closed, view.snapshot_id)
        return _decided(state, view, open_commands, events + open_events)

    # R6, R11: the position is gone, or it is no longer the position this monitor guards.
    if size == 0 or state.closing:
        state, close_commands, close_events = close_out(state, view, ours, closed, successor, fresh, now_ms)
        return _decided(state, view, close_commands, events + close_events)
    state = replace(state, gone_snapshots=())
    instrument = view.instrument
    if position is None or instrument is None:
        return _decided(state, view, [], events)
    room_made = _closing_order_on_its_way(state, closed, size)
    state = _track_size(state, size, position.avg_price, now_ms)
    if not state.entered_ms:
        state = replace(state, entered_ms=now_ms)  # the daemon's clock, as the limit is counted on it
    state, expired = time_limit(state, now_ms)  # R16
    events += expired
    state, edited = edited_by_hand(state, ours)  # R18
    events += edited
    basis = refusal_basis(state, view)  # R17: a refusal stands only while what it depended on is unchanged
    state = replace(state, refused={k: r for k, r in state.refused.items() if r.basis == basis})
    blocked = frozenset(k for k, r in state.refused.items() if r.waits(now_ms))
    state, commands, entries, placing = _entries(state, view, ours)
    state, phase_events = _advance_phase(state, bool(entries or placing), now_ms)
    events += phase_events
    state, duplicates = _cancel_duplicates(state, ours, view.snapshot_id)
    commands += duplicates

    resting = sum((o.leaves_qty for o in entries), Decimal(0)) + placing
    state, stop_commands, stop_events = protect(state, view, ours, size, resting, instrument, config, blocked)
    commands = stop_commands + commands
    events += stop_events
    state, released = release_inherited(state, view, ours, observing(state, config))
    commands += released
    if state.close_requested:
        state, close_commands = close_at_market(state, size, view.snapshot_id, blocked)
        commands += close_commands
    elif not observing(state, config) and not room_made:
        state, tp_commands = take_profits(state, view, ours, size, instrument, blocked)
        commands += tp_commands
    if state.retarget and not _moving_targets(state, commands):
        state = replace(state, retarget=False)  # the orders are where the plan says
    if not commands and not state.awaiting and not state.close_requested and STOP_KEY not in blocked:  # R14: last
        state, trail_commands, trail_events = trail(state, view, ours, instrument, config, now_ms)
        commands += trail_commands
        events += trail_events
    state = replace(state, open_links=frozenset(o.link_id for orders in ours.values() for o in orders))
    return _decided(state, view, commands, events)


def _decided(state: MonitorState, view: PositionView, commands: list[Command], events: list[Event]) -> Decision:
    return Decision(replace(state, last_snapshot=view.snapshot_id), tuple(commands), tuple(events))


def _unknown_status(state: MonitorState, view: PositionView) -> Event | None:
    """An order of ours in a status this version does not know: is it alive? Deciding on a
    guess could duplicate a stop, so nothing is decided until the answer is clear."""
    unknown = [
        o
        for o in view.orders
        if o.link is not None and o.link.position_id == state.position_id and not isinstance(o.status, OrderStatus)
    ]
    if not unknown:
        return None
    return new_event(
        EventKind.UNKNOWN_STATUS,
        f"UNKNOWN STATUS {state.monitor}: {unknown[0].link_id} is {unknown[0].status!r}; nothing is decided this check",
        level=logging.WARNING,
        critical=False,
        status=str(unknown[0].status),
    )


def _track_size(state: MonitorState, size: Decimal, avg_price: Decimal, now_ms: int) -> MonitorState:
    """Size bookkeeping: R1 / R5 grow the ladder (before TP1 to the size; after TP1, when only
    fills shrink the position, by what the trader added); any change is "recent" for urgency."""
    if size != state.last_size:
        state = replace(state, last_change_ms=now_ms)
    if not state.tp1_done and size > state.ladder_size:
        state = replace(state, ladder_size=size)
    elif state.tp1_done and size > state.last_size > 0:
        state = replace(state, ladder_size=state.ladder_size + size - state.last_size)
    return replace(state, last_size=size, peak_size=max(state.peak_size, size, state.ladder_size), avg_price=avg_price)


def _entries(
    state: MonitorState, view: PositionView, ours: OwnOrders
) -> tuple[MonitorState, list[Command], list[Order], Decimal]:
    """A planned trade's limit legs placed; after TP1 (or the trader's close) resting entries are
    cancelled (R2). Returns the entries still resting and the quantity of limits being placed:
    the stop covers both."""
    entries = [
        o
        for key, orders in ours.items()
        if key.role is Role.ENTRY
        for o in orders[:1]
        if o.status in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED) and o.trigger_price is None
    ]
    state, commands, placing = place_limits(state, view.snapshot_id) if not state.delisting else (state, [], Decimal(0))
    if state.tp1_done or state.close_requested or state.delisting:
        for entry in entries:
            key = own_link(entry).intent
            if key not in state.pending:
                state = with_pending(state, key, Pending(Action.CANCEL, entry.link_id, sent_snapshot=view.snapshot_id))
                commands.append(Command(Action.CANCEL, key, entry.link_id, Priority.CLEANUP))
        entries = []
    return state, commands, entries, placing


def _advance_phase(state: MonitorState, entries_resting: bool, now_ms: int) -> tuple[MonitorState, list[Event]]:
    """PROFIT_TAKING once TP1 filled (R2); BUILDING -> MONITORING once no entry rests or waits."""
    if state.tp1_done:
        new = Phase.PROFIT_TAKING
        if state.phase == new:
            return state, []
    elif state.phase == Phase.BUILDING and not entries_resting and not any(k.role is Role.ENTRY for k in state.pending):
        new = Phase.MONITORING
    else:
        return state, []
    event = new_event(
        EventKind.PHASE_CHANGED, f"PHASE {state.monitor}: {state.phase} -> {new}", old=state.phase, new=new
    )
    return replace(state, phase=new, last_change_ms=now_ms), [event]


def _cancel_duplicates(state: MonitorState, ours: OwnOrders, snapshot_id: int) -> tuple[MonitorState, list[Command]]:
    """Duplicates of one intent (older generations still open): keep the newest."""
    commands = []
    for orders in ours.values():
        for stale_order in orders[1:]:
            state, command = cleanup_cancel(state, stale_order, snapshot_id)
            commands += [command] if command else []
    return state, commands


def _closing_order_on_its_way(state: MonitorState, closed: OwnOrders, size: Decimal) -> bool:
    """Take-profits the exchange just cancelled to make room while the size is unchanged: a
    closing order (the trader's close button) is filling. Its position push comes next; placing
    them again now would only race it, so they wait for that check."""
    return size == state.last_size and any(
        o.cancel_type == ROOM_CANCEL and o.link_id in state.open_links
        for key, orders in closed.items()
        if key.role is Role.TAKE_PROFIT
        for o in orders
    )


def _moving_targets(state: MonitorState, commands: list[Command]) -> bool:
    """Are the stop or the take-profits still being moved (sent now, or awaiting)?"""
    roles = (Role.STOP, Role.TAKE_PROFIT)
    return any(c.key is not None and c.key.role in roles for c in commands) or any(
        key.role in roles for key in state.pending
    )


def _track_realised(state: MonitorState, row: Position | None) -> tuple[MonitorState, Decimal | None]:
    """The exchange's realised P&L (cumRealisedPnl, fees included) since the last check that saw
    the position's row (a flat row too), or None when this view has no row."""
    if row is None or row.position_idx != state.monitor.position_idx:
        return state, None
    cum = row.cum_realised_pnl
    delta = cum - state.realised_seen if state.realised_seen is not None else None
    start = state.realised_start if state.realised_start is not None else cum
    return replace(state, realised_start=start, realised_seen=cum), delta


def _detect_fills(
    state: MonitorState, closed: OwnOrders, size: Decimal, realised: Decimal | None, now_ms: int
) -> tuple[MonitorState, list[Event]]:
    """TP levels and entry limits whose order reached Filled (PartiallyFilled is not a hit)."""
    events = []
    for key, orders in sorted(closed.items()):
        fills = [o for o in orders if o.status == OrderStatus.FILLED]
        if not fills or key.role not in (Role.TAKE_PROFIT, Role.ENTRY):
            continue
        qty = sum((o.cum_exec_qty for o in fills), Decimal(0))
        price = fills[0].avg_price or fills[0].price
        # A fill from before this monitor took charge is a fact to act on, not news to alert.
        before = max(o.updated_ms for o in fills) < state.created_ms
        if key.role is Role.ENTRY and key.level > 1 and key.level not in state.filled_entries:
            state = replace(state, filled_entries=state.filled_entries | {key.level}, last_change_ms=now_ms)
            events.append(
                new_event(
                    EventKind.ENTRY_FILLED,
                    f"ENTRY FILLED {state.monitor}: limit {key.level} {qty} at {price}; size now {size}",
                    level_filled=key.level,
                    qty=qty,
                    price=price,
                    size=size,
                    before_watch=before,
                )
            )
        elif (
            key.role is Role.TAKE_PROFIT and key.level not in state.filled_tps and key.level <= len(state.plan.percents)
        ):
            state = replace(state, filled_tps=state.filled_tps | {key.level}, last_change_ms=now_ms)
            events.append(
                new_event(
                    EventKind.TP_FILLED,
                    f"TP{key.level} FILLED {state.monitor}: {qty} at {price}, remaining size {size}",
                    level_filled=key.level,
                    qty=qty,
                    price=price,
                    remaining=size,
                    realised_pnl=realised,
                    before_watch=before,
                )
            )
            if key.level == 1:
                state = replace(state, tp1_done=True, tp1_fill_ms=max(o.updated_ms for o in fills))
    return state, events
