"""Outcomes: one command's answer (`settle`, with R8 and R9 follow-ups) and R10 (pending commands
settled from snapshots).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from decimal import Decimal
from functools import partial

from actors.position.rules._orders import OwnOrders, cancelling, own_finished, own_orders, refusal_basis, size_of
from actors.position.rules._plans import market_close, opening, refused
from actors.position.rules._state import (
    CONFIRMING_SNAPSHOTS,
    EMERGENCY_KEY,
    FIRST_ENTRY,
    NEVER_MS,
    REFUSAL_RETRY_MAX_MS,
    REFUSAL_RETRY_MS,
    STOP_KEY,
    Action,
    Command,
    Decision,
    Event,
    EventKind,
    MonitorState,
    Pending,
    Refusal,
    RulesConfig,
    new_event,
    next_link,
    with_cleanup,
    with_pending,
)
from actors.position.rules._stop import ladder_move_due, stop_place
from messages.codes import Meaning, meaning
from messages.gateway import (
    Accepted,
    Outcome,
    PositionView,
    Rejected,
    Unresolved,
)
from messages.models import Intent, Order, Role

Update = Callable[..., MonitorState]


def settle_pending(state: MonitorState, view: PositionView, now_ms: int) -> Decision:
    """Only R10: settle pending commands from a fresh view (no other rule runs, nothing is sent).
    The next check runs every rule on what it then sees."""
    if view.stale:
        return Decision(state)
    _, size = size_of(state, view)
    fresh = view.snapshot_id != state.last_snapshot
    state, events = settle_from_snapshot(
        state,
        own_orders(state, view.orders),
        own_finished(state, view.closed),
        size,
        view.snapshot_id,
        fresh,
        now_ms,
        cancelling(state, view),
    )
    return Decision(replace(state, last_snapshot=view.snapshot_id), (), tuple(events))


def settle_from_snapshot(
    state: MonitorState,
    ours: OwnOrders,
    closed: OwnOrders,
    size: Decimal,
    snapshot_id: int,
    fresh: bool,
    now_ms: int,
    being_cancelled: Mapping[str, Order] | None = None,
) -> tuple[MonitorState, list[Event]]:
    """R10: a pending command is done when a snapshot shows its effect, and not done once
    CONFIRMING_SNAPSHOTS fresh snapshots did not show it (then it may be issued again).
    `being_cancelled`: the open orders being cancelled, inherited ones (R11) included."""
    events = []
    open_links = {**(being_cancelled or {}), **{o.link_id: o for orders in ours.values() for o in orders}}
    closed_links = {o.link_id for orders in closed.values() for o in orders}
    # Each waiting command with the way to update its entry (pending by intent, clean-up by link).
    waiting: list[tuple[Intent | None, Pending, Update]] = [
        (key, pending, partial(with_pending, intent=key)) for key, pending in state.pending.items()
    ] + [(None, pending, partial(with_cleanup, link_id=link)) for link, pending in state.cleanup.items()]
    for key, pending, update in waiting:
        order = open_links.get(pending.link_id)
        if pending.action is Action.PLACE and key == EMERGENCY_KEY:
            done = size < pending.sent_size or pending.link_id in closed_links
        elif pending.action is Action.PLACE:
            done = order is not None or pending.link_id in closed_links
        elif pending.action is Action.AMEND:
            done = order is None or (
                (pending.qty is None or order.qty == pending.qty)
                and (pending.trigger_price is None or order.trigger_price == pending.trigger_price)
                and (pending.price is None or order.price == pending.price)
            )
        else:
            done = order is None
        if done:
            state = update(state, pending=None)
            if pending.action is Action.CANCEL:  # ours (R18)
                state = replace(state, cancelled=state.cancelled | {pending.link_id})
            events.append(
                new_event(
                    EventKind.COMMAND_SETTLED,
                    f"SETTLED {state.monitor} {pending.action} {pending.link_id}: seen on the exchange",
                    action=pending.action,
                    link_id=pending.link_id,
                    outcome="found",
                )
            )
            moved = (
                order is not None and pending.trigger_price is not None and order.trigger_price == pending.trigger_price
            )
            if key == STOP_KEY and moved and pending.trigger_price is not None:  # found at its new trigger
                state, implied = _stop_moved(state, pending.link_id, pending.trigger_price, pending.qty, now_ms)
                events += implied
            continue
        if fresh and snapshot_id > pending.sent_snapshot and snapshot_id != pending.seen_snapshot:
            pending = replace(pending, absent=pending.absent + 1, seen_snapshot=snapshot_id)
            if pending.absent >= CONFIRMING_SNAPSHOTS:
                state = update(state, pending=None)
                events.append(
                    new_event(
                        EventKind.COMMAND_SETTLED,
                        f"SETTLED {state.monitor} {pending.action} {pending.link_id}: not done; will be issued again",
                        level=logging.WARNING,
                        action=pending.action,
                        link_id=pending.link_id,
                        outcome="absent",
                    )
                )
                continue
            state = update(state, pending=pending)
    return state, events


def settle(
    state: MonitorState, command: Command, outcome: Outcome, view: PositionView, now_ms: int, config: RulesConfig
) -> Decision:
    """One command's outcome. May return follow-up commands: R8 (stop gone: place a new one),
    R9 (trigger already crossed: close at market)."""
    events = [
        new_event(
            EventKind.COMMAND_SETTLED,
            f"SETTLED {state.monitor} {command.action} {command.link_id}: "
            f"{type(outcome).__name__.lower()}{_detail(outcome)}",
            level=logging.INFO if isinstance(outcome, Accepted) else logging.WARNING,
            action=command.action,
            link_id=command.link_id,
            outcome=type(outcome).__name__,
            detail=_detail(outcome).strip(": "),
        )
    ]
    if isinstance(outcome, Unresolved):
        return Decision(state, (), tuple(events))  # R10: stays pending; settled from snapshots
    if isinstance(outcome, Accepted):
        state = _settled(state, command)
        if command.key in state.refused:  # R17: what was refused is accepted now
            state = replace(state, refused={k: r for k, r in state.refused.items() if k != command.key})
        if command.action is Action.PLACE:  # known from now on: its vanishing must be explained
            state = replace(state, open_links=state.open_links | {command.link_id})
        if command.key == STOP_KEY and command.trigger_price is not None:
            state, implied = _stop_moved(state, command.link_id, command.trigger_price, command.qty, now_ms)
            events += implied
        if command.key == EMERGENCY_KEY:
            state = replace(state, last_change_ms=now_ms)
        return Decision(state, (), tuple(events))
    # Rejected: a definite no.
    code = outcome.code
    reason = meaning(code)
    if reason is Meaning.ALREADY_EXISTS and command.action is Action.PLACE:
        return Decision(state, (), tuple(events))  # the id exists already: settled from snapshots
    state = _settled(state, command)
    _position, size = size_of(state, view)
    if command.key == FIRST_ENTRY and opening(state) and size == 0:
        state = refused(state, f"{code} {outcome.message}")
        events.append(
            new_event(
                EventKind.ENTRY_REFUSED,
                f"ENTRY REFUSED {state.monitor}: {command.link_id}: {code} {outcome.message}; nothing was opened",
                level=logging.WARNING,
                code=code,
            )
        )
        return Decision(state, (), tuple(events))
    if command.key == STOP_KEY and reason is Meaning.TRIGGER_CROSSED and size > 0:  # R9
        state, close = market_close(state, size, view.snapshot_id)
        events.append(
            new_event(
                EventKind.EMERGENCY_CLOSE,
                f"EMERGENCY CLOSE {state.monitor}: stop trigger already crossed "
                f"({code}); closing {size} at market with {close.link_id}",
                level=logging.WARNING,
                link_id=close.link_id,
                qty=size,
            )
        )
        return Decision(state, (close,), tuple(events))
    if command.key == STOP_KEY and command.action is Action.AMEND and reason is Meaning.GONE and size > 0:  # R8
        state, link_id = next_link(state, STOP_KEY)
        qty = command.qty or (view.instrument.round_qty(size) if view.instrument else size)
        old = next((o for o in view.orders if o.link_id == command.link_id), None)
        trigger = command.trigger_price or (old.trigger_price if old and old.trigger_price else state.plan.stop_price)
        state = with_pending(state, STOP_KEY, Pending(Action.PLACE, link_id, qty, trigger, view.snapshot_id, size))
        events.append(
            new_event(
                EventKind.STOP_RESTORED,
                f"STOP RESTORED {state.monitor}: {command.link_id} is gone ({code}); "
                f"placing {link_id} at {trigger} for {qty}",
                level=logging.WARNING,
                link_id=link_id,
            )
        )
        return Decision(state, (stop_place(state, link_id, qty, trigger),), tuple(events))
    if command.key is not None and command.action in (Action.PLACE, Action.AMEND):  # R17
        basis, before = refusal_basis(state, view), state.refused.get(command.key)
        count = before.count + 1 if before is not None and before.basis == basis else 1
        # No room (110017) is fully told by the basis: it waits for a change. Other causes the rules
        # cannot see (a key's permission, maintenance) are tried again, rarely.
        retry_ms = (
            NEVER_MS
            if reason is Meaning.TOO_LARGE
            else now_ms + min(REFUSAL_RETRY_MS * 2 ** (count - 1), REFUSAL_RETRY_MAX_MS)
        )
        state = replace(state, refused={**state.refused, command.key: Refusal(code, basis, count, retry_ms)})
        if command.key.role is Role.TAKE_PROFIT and reason is Meaning.TOO_LARGE and count == 1:
            events.append(
                new_event(
                    EventKind.TP_BLOCKED,
                    f"TP BLOCKED {state.monitor}: TP{command.key.level} refused ({code} {outcome.message}): the room "
                    "is taken by reduce-only orders the daemon does not own; it waits until they or the size change",
                    level=logging.WARNING,
                    level_blocked=command.key.level,
                    code=code,
                )
            )
    return Decision(state, (), tuple(events))


def _stop_moved(
    state: MonitorState, link_id: str, trigger: Decimal, qty: Decimal | None, now_ms: int
) -> tuple[MonitorState, list[Event]]:
    """The events a stop accepted at a new trigger implies: once its ladder move is due (R2/R13),
    BREAKEVEN (once), whether its answer came back or a snapshot showed it done (R10, after a
    restart too). A stop placed while no move is due (two_back before TP2) is no breakeven."""
    if not ladder_move_due(state):
        return state, []
    state = replace(state, breakeven_done=True, last_change_ms=now_ms)
    reaction = now_ms - state.tp1_fill_ms if state.tp1_fill_ms else None
    event = new_event(
        EventKind.BREAKEVEN,
        f"BREAKEVEN {state.monitor}: stop {link_id} at {trigger}"
        + (f" ({reaction} ms after the TP1 fill)" if reaction else ""),
        trigger=trigger,
        qty=qty,
        reaction_ms=reaction,
    )
    return state, [event]


def _settled(state: MonitorState, command: Command) -> MonitorState:
    if command.action is Action.CANCEL:  # ours: never mistaken for the trader's hand (R18)
        state = replace(state, cancelled=state.cancelled | {command.link_id})
    if command.key is None:
        return with_cleanup(state, command.link_id, None)
    return with_pending(state, command.key, None)


def _detail(outcome: Outcome) -> str:
    if isinstance(outcome, Rejected):
        return f": {outcome.code} {outcome.message}"
    if isinstance(outcome, Unresolved):
        return f": {outcome.reason}"
    return ""
