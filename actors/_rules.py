"""The TP/SL rules (../shared/tpsl-rules.md) as pure functions over frozen values.

    reconcile(state, view, now_ms, config) -> Decision(state, commands, events)
    settle(state, command, outcome, view, now_ms, config) -> Decision   (one command's outcome)
    classify_urgency(state, view, now_ms) -> Urgency

A monitor owns one position (account, symbol, positionIdx) and the daemon's orders for it: those
whose orderLinkId parses as `tg-<position id>-...`. Every other order is external: read, never
amended or cancelled. Commands reserve their orderLinkId generation in the returned state before
they are sent, so an id is never reused and the same intent after a crash rebuilds the same id.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import StrEnum
from typing import Any

from messages.codes import Meaning, meaning
from messages.gateway import Accepted, Outcome, PositionView, Priority, Rejected, Unresolved
from messages.models import (Instrument, Intent, MonitorId, Order, OrderLink, OrderStatus, Position,
                             PositionStatus, Role, Side, Urgency)


class Phase(StrEnum):
    BUILDING = "BUILDING"               # entry limits resting
    MONITORING = "MONITORING"           # no entry limit resting
    PROFIT_TAKING = "PROFIT_TAKING"     # TP1 filled
    CLOSED = "CLOSED"                   # position gone; leftovers being cancelled


class Action(StrEnum):
    PLACE = "place"
    AMEND = "amend"
    CANCEL = "cancel"


class Approach(StrEnum):
    CONSERVATIVE = "conservative"
    FAST = "fast"
    ADOPTED = "adopted"
    PLANNED = "planned"                 # a position the daemon did not open, given its targets by the trader


class CloseReason(StrEnum):
    STOP_LOSS = "stop_loss"
    TAKE_PROFITS = "take_profits"
    MANUAL = "manual"
    LIQUIDATION = "liquidation"
    EMERGENCY_CLOSE = "emergency_close"
    FLIPPED = "flipped"                 # R11: the side changed; the new position is adopted anew
    NO_POSITION = "no_position"         # nothing to guard was found (never created)
    ENTRY_REFUSED = "entry_refused"     # the exchange refused a planned trade's first entry: nothing opened


class EventKind(StrEnum):
    """Journal event kinds (critical unless noted) and the log lines they go with."""
    MONITOR_CREATED = "monitor_created"
    MONITOR_RETIRED = "monitor_retired"
    ENTRY_FILLED = "entry_filled"
    COMMAND_SETTLED = "command_settled"
    STOP_PLACED = "stop_placed"
    STOP_RESTORED = "stop_restored"
    BREAKEVEN = "breakeven"
    TP_FILLED = "tp_filled"
    STOP_HIT = "stop_hit"
    PHASE_CHANGED = "phase_changed"
    EMERGENCY_CLOSE = "emergency_close"
    POSITION_CLOSED = "position_closed"
    UNPROTECTED = "unprotected"                  # critical when it lasts (alerted), else logged every check
    TRADE_PLANNED = "trade_planned"
    ENTRY_SENT = "entry_sent"
    ENTRY_REFUSED = "entry_refused"
    CLOSE_REQUESTED = "close_requested"
    PLAN_CHANGED = "plan_changed"
    UNKNOWN_STATUS = "unknown_status"            # not critical
    FOLLOW_UP_DEFERRED = "follow_up_deferred"    # not critical


STOP_KEY, EMERGENCY_KEY = Intent(Role.STOP, 0), Intent(Role.EMERGENCY_CLOSE, 0)
FIRST_ENTRY = Intent(Role.ENTRY, 1)
CONFIRMING_SNAPSHOTS = 2          # R6 and R10: fresh snapshots needed to believe an absence
RECENT_CHANGE_MS = 60_000
IDLE_AFTER_MS = 600_000
LIQUIDATION_CANCELS = {"CancelByPrepareLiq", "CancelAllBeforeLiq", "CancelByPrepareAdl", "CancelAllBeforeAdl"}


@dataclass(frozen=True, slots=True)
class RulesConfig:
    ladder_percents: tuple[Decimal, ...] = (Decimal(85), Decimal(5), Decimal(5), Decimal(5))
    tp_distance_percents: tuple[Decimal, ...] = (Decimal(1), Decimal(2), Decimal(3), Decimal(4))
    stop_distance_percent: Decimal = Decimal(3)
    breakeven_offset: Decimal = Decimal("0.0012")
    adoption_policy: str = "protect"

    @classmethod
    def from_settings(cls, settings: Any) -> "RulesConfig":
        return cls(settings.tp_ladder_percents, settings.default_tp_distance_percents,
                   settings.default_stop_distance_percent, settings.breakeven_offset, settings.adoption_policy)


# --- values --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Plan:
    approach: Approach
    side: str                           # Buy | Sell
    percents: tuple[Decimal, ...]       # take-profit shares (add up to 100)
    tp_prices: tuple[Decimal, ...]
    stop_price: Decimal
    legs: tuple[Decimal, ...] = ()      # a trade the daemon opens: leg 1 at market, the others limits
    limits: tuple[Decimal, ...] = ()    # the limit prices of legs 2, 3, ...


@dataclass(frozen=True, slots=True)
class Pending:
    """A command whose outcome is not known yet (R10), or not yet confirmed by a snapshot."""
    action: Action
    link_id: str
    qty: Decimal | None = None
    trigger_price: Decimal | None = None
    sent_snapshot: int = 0
    sent_size: Decimal = Decimal(0)
    absent: int = 0                     # fresh snapshots since sending that did not show it done
    seen_snapshot: int = 0
    price: Decimal | None = None        # an amend's new limit price


@dataclass(frozen=True, slots=True)
class MonitorState:
    monitor: MonitorId
    position_id: str
    plan: Plan
    phase: Phase
    created_ms: int
    generations: dict[Intent, int] = field(default_factory=dict)   # latest generation reserved
    pending: dict[Intent, Pending] = field(default_factory=dict)   # one command per intent at a time
    cleanup: dict[str, Pending] = field(default_factory=dict)      # cancellations of duplicates and
                                                                   # leftovers, by orderLinkId
    filled_tps: frozenset[int] = frozenset()
    filled_entries: frozenset[int] = frozenset()    # entry limit levels seen Filled
    tp1_done: bool = False
    breakeven_done: bool = False
    ladder_size: Decimal = Decimal(0)
    last_size: Decimal = Decimal(0)
    peak_size: Decimal = Decimal(0)
    avg_price: Decimal = Decimal(0)
    open_links: frozenset[str] = frozenset()
    gone_snapshots: tuple[int, ...] = ()
    last_snapshot: int = 0
    last_change_ms: int = 0
    last_check_ms: int = 0
    tp1_fill_ms: int = 0                # the exchange's time of the TP1 fill (for reaction times)
    opened_ms: int = 0                  # the exchange's creation time of the position
    realised_start: Decimal | None = None   # the position row's cumRealisedPnl when first seen
    realised_seen: Decimal | None = None    # ... and when last seen (the difference: this position's)
    urgency: Urgency = Urgency.CRITICAL
    closing: CloseReason | None = None  # closure reason while leftovers are cancelled
    retired: CloseReason | None = None  # closure reason once done
    orphan: bool = False                # built from orders that outlived their position (no plan)
    retarget: bool = False              # the trader changed the plan's prices: move the stop and TPs to them
    close_requested: bool = False       # the trader asked to close at market
    refusal: str = ""                   # why the exchange refused the first entry (for the trader)

    def link(self, intent: Intent, generation: int | None = None) -> str:
        gen = self.generations.get(intent, 0) if generation is None else generation
        return OrderLink.of(self.position_id, intent, gen).build()

    @property
    def awaiting(self) -> bool:
        """Is any command still waiting for its outcome to be seen?"""
        return bool(self.pending or self.cleanup)


@dataclass(frozen=True, slots=True)
class Command:
    action: Action
    key: Intent | None                  # the intent; None for a cleanup cancellation (by link_id)
    link_id: str
    priority: Priority
    side: str = ""
    order_type: str = ""
    qty: Decimal | None = None
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    trigger_direction: int | None = None
    reduce_only: bool = True
    close_on_trigger: bool = False


@dataclass(frozen=True, slots=True)
class Event:
    kind: EventKind
    line: str                           # the operational log line (stable prefix)
    critical: bool = True
    level: int = logging.INFO
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Decision:
    state: MonitorState
    commands: tuple[Command, ...] = ()
    events: tuple[Event, ...] = ()


# --- small helpers -------------------------------------------------------------------------

def _sign(side: str) -> int:
    return 1 if side == Side.BUY else -1


def closing_side(side: str) -> str:
    return Side.SELL.value if side == Side.BUY else Side.BUY.value


def stop_direction(side: str) -> int:
    """A long's stop fires on a fall (2), a short's on a rise (1)."""
    return 2 if side == Side.BUY else 1


def more_protective(side: str, new: Decimal, old: Decimal) -> bool:
    return new > old if side == Side.BUY else new < old


def breakeven_price(side: str, avg_price: Decimal, offset: Decimal, instrument: Instrument) -> Decimal:
    """avg x (1 + offset) for a long (rounded up), x (1 - offset) for a short (rounded down):
    fees stay covered after snapping to tick."""
    if side == Side.BUY:
        return instrument.snap_price(avg_price * (1 + offset), up=True)
    return instrument.snap_price(avg_price * (1 - offset), up=False)


def _ours(state: MonitorState, orders: tuple[Order, ...]) -> dict[str, list[Order]]:
    """The daemon's open orders for this position, by intent, newest generation first."""
    mine: dict[str, list[Order]] = {}
    for order in orders:
        link = order.link
        if link is None or link.position_id != state.position_id or order.position_idx != state.monitor.position_idx:
            continue
        if order.is_open:
            mine.setdefault(link.intent, []).append(order)
    for key in mine:
        mine[key].sort(key=lambda o: o.link.generation, reverse=True)
    return mine


def _closed_of(state: MonitorState, closed: tuple[Order, ...]) -> dict[str, list[Order]]:
    done: dict[str, list[Order]] = {}
    for order in closed:
        link = order.link
        if link is not None and link.position_id == state.position_id:
            done.setdefault(link.intent, []).append(order)
    return done


def _size_of(state: MonitorState, view: PositionView) -> tuple[Position | None, Decimal]:
    position = view.position
    if position is None or not position.is_open or position.position_idx != state.monitor.position_idx:
        return None, Decimal(0)
    return position, position.size


def _event(kind: EventKind, line: str, *, level: int = logging.INFO, critical: bool = True, **payload: Any) -> Event:
    return Event(kind, line, critical, level, payload)


def _next_link(state: MonitorState, intent: Intent) -> tuple[MonitorState, str]:
    """Reserve the next generation of an intent (never reuse an id)."""
    generation = state.generations.get(intent, -1) + 1
    return replace(state, generations={**state.generations, intent: generation}), state.link(intent, generation)


def _updated(mapping: dict[Any, Pending], key: Any, pending: Pending | None) -> dict[Any, Pending]:
    """A copy with `key` set to `pending`, or removed when it is None."""
    updated = {k: v for k, v in mapping.items() if k != key}
    return updated if pending is None else {**updated, key: pending}


def _with_pending(state: MonitorState, intent: Intent, pending: Pending | None) -> MonitorState:
    return replace(state, pending=_updated(state.pending, intent, pending))


def _with_cleanup(state: MonitorState, link_id: str, pending: Pending | None) -> MonitorState:
    return replace(state, cleanup=_updated(state.cleanup, link_id, pending))


def _cleanup_cancel(state: MonitorState, order: Order, snapshot_id: int) -> tuple[MonitorState, Command | None]:
    """Cancel one of the daemon's orders outside its intent's normal life (an older duplicate, a
    leftover of a closed position); nothing when that cancellation is already pending."""
    if order.link_id in state.cleanup:
        return state, None
    state = _with_cleanup(state, order.link_id, Pending(Action.CANCEL, order.link_id, sent_snapshot=snapshot_id))
    return state, Command(Action.CANCEL, None, order.link_id, Priority.CLEANUP)


# --- creating a monitor's state ------------------------------------------------------------

def position_id_for(monitor: MonitorId, opened_ms: int) -> str:
    """A position id for a position the daemon did not open: the same after a crash (it depends
    only on the position), different for the next position on the same symbol."""
    digest = hashlib.sha256(f"{monitor}:{opened_ms}".encode()).hexdigest()
    return "a" + digest[:11]


def adopt(monitor: MonitorId, view: PositionView, now_ms: int, config: RulesConfig) -> MonitorState | None:
    """A state for a position found without one: rebuilt from the daemon's own orders (their
    link ids), or a new adopted plan; with no open position, an orphan state when the daemon's
    orders outlived it. None when there is nothing to guard or no instrument yet.
    Its last change is the exchange's own (the position's or its orders' update time): taking
    charge of a position is not a fill, so it does not make the monitor critical by itself."""
    position = view.position
    if position is None or not position.is_open:
        return _orphan(monitor, view, now_ms)
    if view.instrument is None:
        return None
    instrument, side, avg = view.instrument, str(position.side), position.avg_price
    ours_by_position: dict[str, list[Order]] = {}
    for order in view.orders:
        link = order.link
        if link is not None and order.position_idx == monitor.position_idx:
            ours_by_position.setdefault(link.position_id, []).append(order)
    if ours_by_position:
        position_id = max(ours_by_position, key=lambda pid: (any(o.link.role is Role.STOP for o in ours_by_position[pid]),
                                                              len(ours_by_position[pid])))
        return _rebuild(monitor, position_id, ours_by_position[position_id], position, instrument, now_ms, config)
    sign = _sign(side)
    tp_prices = tuple(instrument.snap_price(avg * (1 + sign * d / 100), up=side == Side.BUY)
                      for d in config.tp_distance_percents)
    stop = instrument.snap_price(avg * (1 - sign * config.stop_distance_percent / 100), up=side == Side.BUY)
    plan = Plan(Approach.ADOPTED, side, config.ladder_percents, tp_prices, stop)
    return MonitorState(monitor, position_id_for(monitor, position.created_ms or now_ms), plan, Phase.MONITORING, now_ms,
                        ladder_size=position.size, last_size=position.size, peak_size=position.size,
                        avg_price=avg, last_change_ms=position.updated_ms, opened_ms=position.created_ms,
                        realised_start=position.cum_realised_pnl, realised_seen=position.cum_realised_pnl)


def _orphan(monitor: MonitorId, view: PositionView, now_ms: int) -> MonitorState | None:
    """The daemon's orders left on a flat position that no monitor guards (its monitor's life
    ended in a crash before the clean-up): a state that owns them, confirms the position is gone
    as R6 does (two fresh snapshots, or a pushed flat row), cancels them and retires. It has no
    plan to guard with: should the position turn out open it retires at once and is adopted."""
    mine: dict[str, list[Order]] = {}
    for order in view.orders:
        if order.link is not None and order.is_open and order.position_idx == monitor.position_idx:
            mine.setdefault(order.link.position_id, []).append(order)
    if not mine:
        return None
    position_id = max(mine, key=lambda pid: len(mine[pid]))   # others: the next discovery's
    order = mine[position_id][0]
    side = str(order.side) if order.link.role is Role.ENTRY else closing_side(str(order.side))
    plan = Plan(Approach.ADOPTED, side, (Decimal(100),), (), Decimal(0))
    return MonitorState(monitor, position_id, plan, Phase.MONITORING, now_ms, orphan=True,
                        open_links=frozenset(o.link_id for o in mine[position_id]),
                        last_change_ms=max(o.updated_ms for o in mine[position_id]))


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


def retarget(state: MonitorState, tp_prices: tuple[Decimal, ...], stop_price: Decimal, now_ms: int,
             config: RulesConfig) -> tuple[MonitorState, Event]:
    """The trader's new targets for a guarded position: its monitor amends its own stop and
    take-profits to them (never cancelling the stop), places what is missing and cancels the
    take-profits beyond the new ladder."""
    plan = state.plan
    approach = Approach.PLANNED if plan.approach is Approach.ADOPTED else plan.approach
    plan = replace(plan, approach=approach, percents=ladder_for(len(tp_prices), config), tp_prices=tp_prices,
                   stop_price=stop_price)
    line = (f"PLAN {state.monitor}: take-profits {', '.join(map(str, tp_prices))}, stop {stop_price} "
            f"(was {', '.join(map(str, state.plan.tp_prices))}, stop {state.plan.stop_price})")
    return replace(state, plan=plan, retarget=True, last_change_ms=now_ms), _event(
        EventKind.PLAN_CHANGED, line, tp_prices=[str(p) for p in tp_prices], stop=str(stop_price))


def request_close(state: MonitorState, now_ms: int) -> tuple[MonitorState, Event]:
    """The trader's close: resting entries cancelled, the rest closed at market (reduce-only),
    then clean-up as R6 with reason manual. The stop stays until the position is gone."""
    return replace(state, close_requested=True, last_change_ms=now_ms), _event(
        EventKind.CLOSE_REQUESTED, f"CLOSE REQUESTED {state.monitor}: closing {state.last_size} at market")


def _rebuild(monitor: MonitorId, position_id: str, orders: list[Order], position: Position,
             instrument: Instrument, now_ms: int, config: RulesConfig) -> MonitorState:
    side, avg = str(position.side), position.avg_price
    by_key = {}
    generations: dict[str, int] = {}
    for order in orders:
        key = order.link.intent
        generations[key] = max(generations.get(key, 0), order.link.generation)
        if order.is_open:
            by_key[key] = order
    tp_levels = sorted(k.level for k in by_key if k.role is Role.TAKE_PROFIT)
    levels = max(tp_levels) if tp_levels else 1
    percents = ladder_for(levels, config)
    sign = _sign(side)
    tp = {k.level: order for k, order in by_key.items() if k.role is Role.TAKE_PROFIT}
    tp_prices = tuple(tp[n].price if n in tp and tp[n].price else
                      instrument.snap_price(avg * (1 + sign * Decimal(n) / 100), up=side == Side.BUY)
                      for n in range(1, levels + 1))
    stop = by_key.get(STOP_KEY)
    stop_price = stop.trigger_price if stop is not None and stop.trigger_price else \
        instrument.snap_price(avg * (1 - sign * config.stop_distance_percent / 100), up=side == Side.BUY)
    entries_resting = any(k.role is Role.ENTRY for k in by_key)
    later_entries = any(k.role is Role.ENTRY and k.level > 1 for k in generations)
    approach = Approach.FAST if levels == 1 and not later_entries else Approach.CONSERVATIVE
    tp1_done = levels > 1 and 1 not in tp and any(n in tp for n in range(2, levels + 1))
    be = breakeven_price(side, avg, config.breakeven_offset, instrument)
    at_breakeven = stop is not None and stop.trigger_price is not None and not more_protective(side, be, stop.trigger_price)
    filled = frozenset({1}) if tp1_done else frozenset()
    phase = Phase.PROFIT_TAKING if tp1_done else Phase.BUILDING if entries_resting else Phase.MONITORING
    plan = Plan(approach, side, percents, tp_prices, stop_price)
    ladder = position.size
    if tp1_done:  # the ladder was computed on the size before TP1: recover it from the TPs left
        rest = [n for n in range(2, levels + 1) if n in tp]
        share = sum((percents[n - 1] for n in rest), Decimal(0))
        ladder = instrument.round_qty(sum(tp[n].qty for n in rest) * 100 / share)
    return MonitorState(monitor, position_id, plan, phase, now_ms, generations=generations, filled_tps=filled,
                        tp1_done=tp1_done, breakeven_done=tp1_done and at_breakeven, ladder_size=ladder,
                        last_size=position.size, peak_size=ladder, avg_price=avg,
                        open_links=frozenset(o.link_id for o in by_key.values()),
                        last_change_ms=max([position.updated_ms] + [o.updated_ms for o in orders]),
                        opened_ms=position.created_ms, realised_start=position.cum_realised_pnl,
                        realised_seen=position.cum_realised_pnl)


def resumed(state: MonitorState) -> MonitorState:
    """A state loaded after a restart: snapshot ids start again from 1 in a new gateway, so the
    counters relative to them start over (a pending command again needs two fresh snapshots to
    be believed absent; a flat position two snapshots to be believed closed)."""
    restart = lambda p: replace(p, sent_snapshot=0, seen_snapshot=0, absent=0)
    return replace(state, pending={k: restart(p) for k, p in state.pending.items()},
                   cleanup={k: restart(p) for k, p in state.cleanup.items()}, gone_snapshots=(), last_snapshot=0)


# --- one check -----------------------------------------------------------------------------

def needs_closed(state: MonitorState, view: PositionView) -> bool:
    """Should the monitor ask again with the symbol's finished orders? Yes when the position is
    gone, one of its known orders is no longer open (did it fill?), or a command is pending (it
    may have landed and filled already)."""
    if view.stale or view.closed:
        return False
    _, size = _size_of(state, view)
    open_now = {o.link_id for o in view.orders if o.is_open}
    return size == 0 or bool(state.open_links - open_now) or state.awaiting


def links_to_explain(state: MonitorState) -> frozenset[str]:
    """The link ids whose fate a view's finished orders must tell: every order the monitor saw
    open, and every command still waiting for its outcome."""
    return state.open_links | {p.link_id for p in state.pending.values()} | frozenset(state.cleanup)


def reconcile(state: MonitorState, view: PositionView, now_ms: int, config: RulesConfig) -> Decision:
    state = replace(state, last_check_ms=now_ms)
    if view.stale:                                                          # R0
        return Decision(state)
    if state.retired:
        return Decision(state)
    unknown = [o for o in view.orders if o.link is not None and o.link.position_id == state.position_id
               and not isinstance(o.status, OrderStatus)]
    if unknown:  # is it alive? Deciding on a guess could duplicate a stop: wait for a clear answer
        return Decision(state, (), (_event(EventKind.UNKNOWN_STATUS, f"UNKNOWN STATUS {state.monitor}: {unknown[0].link_id} is "
                                           f"{unknown[0].status!r}; nothing is decided this check",
                                           level=logging.WARNING, critical=False, status=str(unknown[0].status)),))
    events: list[Event] = []
    position, size = _size_of(state, view)
    if state.orphan and size > 0:   # not gone after all: leave it to a monitor that adopts it
        return Decision(replace(state, retired=CloseReason.NO_POSITION))
    ours = _ours(state, view.orders)
    closed = _closed_of(state, view.closed)
    fresh = view.snapshot_id != state.last_snapshot
    state, settle_events = _settle_pending(state, ours, closed, size, view.snapshot_id, fresh)
    events += settle_events
    state, realised = _track_realised(state, view.position)
    state, fill_events = _detect_fills(state, closed, size, realised, now_ms)
    events += fill_events
    commands: list[Command] = []
    entry_filled = any(o.cum_exec_qty > 0 for o in closed.get(FIRST_ENTRY, []))
    if opening(state) and size == 0 and not entry_filled:   # once filled, a flat position is R6's
        state, open_commands, open_events = _open(state, closed, view.snapshot_id)
        return Decision(replace(state, last_snapshot=view.snapshot_id), tuple(open_commands), tuple(events + open_events))

    # R6, R11: the position is gone, or it is no longer the position this monitor guards.
    flipped = position is not None and str(position.side) != state.plan.side
    if size == 0 or flipped or state.closing:
        state, close_commands, close_events = _close(state, view, ours, closed, size, flipped, fresh, now_ms)
        return Decision(replace(state, last_snapshot=view.snapshot_id), tuple(close_commands),
                        tuple(events + close_events))
    state = replace(state, gone_snapshots=())
    instrument = view.instrument
    if instrument is None:
        return Decision(replace(state, last_snapshot=view.snapshot_id), (), tuple(events))

    # Size bookkeeping: R1 / R5 grow the ladder; any change is "recent" for urgency.
    if size != state.last_size:
        state = replace(state, last_change_ms=now_ms)
    if not state.tp1_done and size > state.ladder_size:
        state = replace(state, ladder_size=size)
    state = replace(state, last_size=size, peak_size=max(state.peak_size, size, state.ladder_size),
                    avg_price=position.avg_price)

    entries = [o for key, orders in ours.items() if key.role is Role.ENTRY for o in orders[:1]
               if o.status in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED) and o.trigger_price is None]
    state, commands, placing = _place_limits(state, view.snapshot_id)
    # R2: TP1 filled (or the trader's close) -> cancel resting entries, stop to breakeven (below),
    # phase PROFIT_TAKING.
    if state.tp1_done or state.close_requested:
        for entry in entries:
            key = entry.link.intent
            if key not in state.pending:
                state = _with_pending(state, key, Pending(Action.CANCEL, entry.link_id, sent_snapshot=view.snapshot_id))
                commands.append(Command(Action.CANCEL, key, entry.link_id, Priority.CLEANUP))
        entries = []
    if state.tp1_done:
        if state.phase != Phase.PROFIT_TAKING:
            events.append(_event(EventKind.PHASE_CHANGED, f"PHASE {state.monitor}: {state.phase} -> {Phase.PROFIT_TAKING}",
                                 old=state.phase, new=Phase.PROFIT_TAKING))
            state = replace(state, phase=Phase.PROFIT_TAKING, last_change_ms=now_ms)
    elif state.phase == Phase.BUILDING and not entries and not placing and \
            not any(key.role is Role.ENTRY for key in state.pending):
        events.append(_event(EventKind.PHASE_CHANGED, f"PHASE {state.monitor}: {Phase.BUILDING} -> {Phase.MONITORING}",
                             old=Phase.BUILDING, new=Phase.MONITORING))
        state = replace(state, phase=Phase.MONITORING, last_change_ms=now_ms)

    # Duplicates of one intent (older generations still open): keep the newest.
    for orders in ours.values():
        for stale_order in orders[1:]:
            state, command = _cleanup_cancel(state, stale_order, view.snapshot_id)
            commands += [command] if command else []

    resting = sum((o.leaves_qty for o in entries), Decimal(0)) + placing
    state, stop_commands, stop_events = _protect(state, view, ours, size, resting, instrument, config)
    commands = stop_commands + commands
    events += stop_events
    if state.close_requested:
        state, close_commands = _close_at_market(state, size, view.snapshot_id)
        commands += close_commands
    elif not _observing(state, config):
        state, tp_commands = _take_profits(state, view, ours, size, instrument)
        commands += tp_commands
    if state.retarget and not any(c.key is not None and c.key.role in (Role.STOP, Role.TAKE_PROFIT) for c in commands) \
            and not any(key.role in (Role.STOP, Role.TAKE_PROFIT) for key in state.pending):
        state = replace(state, retarget=False)   # the orders are where the plan says
    state = replace(state, last_snapshot=view.snapshot_id,
                    open_links=frozenset(o.link_id for orders in ours.values() for o in orders))
    return Decision(state, tuple(commands), tuple(events))


# --- a trade the daemon opens, and the trader's close ----------------------------------------

def opening(state: MonitorState) -> bool:
    """A planned trade whose position has not been seen yet."""
    return bool(state.plan.legs) and state.peak_size == 0 and not state.closing


def _open(state: MonitorState, closed: dict[Intent, list[Order]],
          snapshot_id: int) -> tuple[MonitorState, list[Command], list[Event]]:
    """Leg 1 at market; the limits, the stop and the take-profits follow once the position is
    seen (a reduce-only order needs a position). Until then nothing else is decided."""
    if state.close_requested and FIRST_ENTRY not in state.pending:
        return replace(state, closing=CloseReason.MANUAL, phase=Phase.CLOSED), [], []
    if FIRST_ENTRY in state.pending:
        return state, [], []
    if FIRST_ENTRY not in state.generations:
        qty = state.plan.legs[0]
        state, link_id = _next_link(state, FIRST_ENTRY)
        state = _with_pending(state, FIRST_ENTRY, Pending(Action.PLACE, link_id, qty, None, snapshot_id))
        event = _event(EventKind.ENTRY_SENT, f"ENTRY {state.monitor}: {link_id} {state.plan.side} {qty} at market "
                       f"({state.plan.approach})", link_id=link_id, qty=qty)
        return state, [Command(Action.PLACE, FIRST_ENTRY, link_id, Priority.PROTECT, side=state.plan.side,
                               order_type="Market", qty=qty, reduce_only=False)], [event]
    done = closed.get(FIRST_ENTRY, [])
    if done:    # finished and nothing filled: cancelled by the exchange
        return _refused(state, f"{done[0].status} {done[0].cancel_type or ''}".strip()), [], []
    return state, [], []   # not seen finished yet: its fill and the position row are due


def _refused(state: MonitorState, why: str) -> MonitorState:
    return replace(state, closing=CloseReason.ENTRY_REFUSED, phase=Phase.CLOSED, refusal=why)


def _place_limits(state: MonitorState, snapshot_id: int) -> tuple[MonitorState, list[Command], Decimal]:
    """A planned trade's limit legs, once its position exists (never after TP1 or a close).
    Returns the quantity being placed: the stop covers it from the start."""
    if not state.plan.limits or state.tp1_done or state.close_requested:
        return state, [], Decimal(0)
    commands, placing = [], Decimal(0)
    for level, (qty, price) in enumerate(zip(state.plan.legs[1:], state.plan.limits), 2):
        key = Intent(Role.ENTRY, level)
        if key in state.generations:
            continue
        state, link_id = _next_link(state, key)
        state = _with_pending(state, key, Pending(Action.PLACE, link_id, qty, None, snapshot_id))
        commands.append(Command(Action.PLACE, key, link_id, Priority.RESIZE, side=state.plan.side,
                                order_type="Limit", qty=qty, price=price, reduce_only=False))
        placing += qty
    return state, commands, placing


def _close_at_market(state: MonitorState, size: Decimal, snapshot_id: int) -> tuple[MonitorState, list[Command]]:
    """The trader's close: what is left, at market, reduce-only (again if a close left some)."""
    if EMERGENCY_KEY in state.pending or size <= 0:
        return state, []
    state, link_id = _next_link(state, EMERGENCY_KEY)
    state = _with_pending(state, EMERGENCY_KEY, Pending(Action.PLACE, link_id, size, None, snapshot_id, size))
    return state, [Command(Action.PLACE, EMERGENCY_KEY, link_id, Priority.PROTECT, side=closing_side(state.plan.side),
                           order_type="Market", qty=size, reduce_only=True, close_on_trigger=True)]


def settle_pending(state: MonitorState, view: PositionView) -> Decision:
    """Only R10: settle pending commands from a fresh view (no other rule runs, nothing is sent).
    The next check runs every rule on what it then sees."""
    if view.stale:
        return Decision(state)
    _, size = _size_of(state, view)
    fresh = view.snapshot_id != state.last_snapshot
    state, events = _settle_pending(state, _ours(state, view.orders), _closed_of(state, view.closed), size,
                                    view.snapshot_id, fresh)
    return Decision(replace(state, last_snapshot=view.snapshot_id), (), tuple(events))


def _settle_pending(state: MonitorState, ours: dict[Intent, list[Order]], closed: dict[Intent, list[Order]],
                    size: Decimal, snapshot_id: int, fresh: bool) -> tuple[MonitorState, list[Event]]:
    """R10: a pending command is done when a snapshot shows its effect, and not done once
    CONFIRMING_SNAPSHOTS fresh snapshots did not show it (then it may be issued again)."""
    events = []
    open_links = {o.link_id: o for orders in ours.values() for o in orders}
    closed_links = {o.link_id for orders in closed.values() for o in orders}
    waiting = [(key, pending, _with_pending) for key, pending in state.pending.items()] + \
              [(key, pending, _with_cleanup) for key, pending in state.cleanup.items()]
    for key, pending, update in waiting:
        order = open_links.get(pending.link_id)
        if pending.action is Action.PLACE and key == EMERGENCY_KEY:
            done = size < pending.sent_size or pending.link_id in closed_links
        elif pending.action is Action.PLACE:
            done = order is not None or pending.link_id in closed_links
        elif pending.action is Action.AMEND:
            done = order is None or ((pending.qty is None or order.qty == pending.qty) and
                                     (pending.trigger_price is None or order.trigger_price == pending.trigger_price) and
                                     (pending.price is None or order.price == pending.price))
        else:
            done = order is None
        if done:
            state = update(state, key, None)
            events.append(_event(EventKind.COMMAND_SETTLED, f"SETTLED {state.monitor} {pending.action} {pending.link_id}: "
                                 "seen on the exchange", action=pending.action, link_id=pending.link_id, outcome="found"))
            continue
        if fresh and snapshot_id > pending.sent_snapshot and snapshot_id != pending.seen_snapshot:
            pending = replace(pending, absent=pending.absent + 1, seen_snapshot=snapshot_id)
            if pending.absent >= CONFIRMING_SNAPSHOTS:
                state = update(state, key, None)
                events.append(_event(EventKind.COMMAND_SETTLED,
                                     f"SETTLED {state.monitor} {pending.action} {pending.link_id}: not done; will be issued again",
                                     level=logging.WARNING, action=pending.action, link_id=pending.link_id, outcome="absent"))
                continue
            state = update(state, key, pending)
    return state, events


def _track_realised(state: MonitorState, row: Position | None) -> tuple[MonitorState, Decimal | None]:
    """The exchange's realised P&L (cumRealisedPnl, fees included) since the last check that saw
    the position's row (a flat row too), or None when this view has no row."""
    if row is None or row.position_idx != state.monitor.position_idx:
        return state, None
    cum = row.cum_realised_pnl
    delta = cum - state.realised_seen if state.realised_seen is not None else None
    start = state.realised_start if state.realised_start is not None else cum
    return replace(state, realised_start=start, realised_seen=cum), delta


def _detect_fills(state: MonitorState, closed: dict[Intent, list[Order]], size: Decimal, realised: Decimal | None,
                  now_ms: int) -> tuple[MonitorState, list[Event]]:
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
            events.append(_event(EventKind.ENTRY_FILLED, f"ENTRY FILLED {state.monitor}: limit {key.level} "
                                 f"{qty} at {price}; size now {size}", level_filled=key.level, qty=qty, price=price,
                                 size=size, before_watch=before))
        elif key.role is Role.TAKE_PROFIT and key.level not in state.filled_tps and key.level <= len(state.plan.percents):
            state = replace(state, filled_tps=state.filled_tps | {key.level}, last_change_ms=now_ms)
            events.append(_event(EventKind.TP_FILLED, f"TP{key.level} FILLED {state.monitor}: {qty} at {price}, "
                                 f"remaining size {size}", level_filled=key.level, qty=qty, price=price, remaining=size,
                                 realised_pnl=realised, before_watch=before))
            if key.level == 1:
                state = replace(state, tp1_done=True, tp1_fill_ms=max(o.updated_ms for o in fills))
    return state, events


def _close(state: MonitorState, view: PositionView, ours: dict[str, list[Order]], closed: dict[str, list[Order]],
           size: Decimal, flipped: bool, fresh: bool, now_ms: int) -> tuple[MonitorState, list[Command], list[Event]]:
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
                gone = gone + (view.snapshot_id,)
            state = replace(state, gone_snapshots=gone)
            # A flat row pushed by the stream is the exchange saying so, not a row missing from a
            # read: it confirms on its own, like a filled stop or our own market close filled.
            closed_at_market = any(o.status == OrderStatus.FILLED for o in closed.get(EMERGENCY_KEY, []))
            if not (stop_hit or last_tp or closed_at_market or view.flat_pushed or len(gone) >= CONFIRMING_SNAPSHOTS):
                return state, [], []  # wait for a second snapshot; change nothing meanwhile
            liquidated = any(o.cancel_type in LIQUIDATION_CANCELS for orders in closed.values() for o in orders) or \
                (view.position is not None and view.position.status in (PositionStatus.LIQ, PositionStatus.ADL))
            reason = CloseReason.LIQUIDATION if liquidated else CloseReason.STOP_LOSS if stop_hit else \
                CloseReason.TAKE_PROFITS if last_tp else CloseReason.MANUAL if state.close_requested else \
                CloseReason.EMERGENCY_CLOSE if EMERGENCY_KEY in state.generations else CloseReason.MANUAL
            if stop_hit:
                events.append(_event(EventKind.STOP_HIT, f"STOP HIT {state.monitor}: position closed by its stop",
                                     level=logging.WARNING, realised_pnl=_realised_total(state)))
        state = replace(state, closing=reason, phase=Phase.CLOSED, last_change_ms=now_ms)
    commands = []
    for orders in ours.values():
        for order in orders:
            state, command = _cleanup_cancel(state, order, view.snapshot_id)
            commands += [command] if command else []
    return state, commands, events


def finish(state: MonitorState, now_ms: int) -> tuple[MonitorState, tuple[Event, ...]]:
    """After a check's commands settled: a closing monitor with nothing left pending retires."""
    if state.closing and not state.retired and not state.awaiting:
        line = f"CLOSED {state.monitor}: {state.closing}"
        duration = (now_ms - state.opened_ms) // 1000 if state.opened_ms else None
        return replace(state, retired=state.closing), (_event(
            EventKind.POSITION_CLOSED, line, reason=state.closing, realised_pnl=_realised_total(state),
            duration_s=duration, tps_hit=len(state.filled_tps), tps=len(state.plan.percents)),)
    return state, ()


def _realised_total(state: MonitorState) -> Decimal | None:
    """This position's realised P&L as the exchange reported it, up to the last row seen."""
    if state.realised_start is None or state.realised_seen is None:
        return None
    return state.realised_seen - state.realised_start


def _protect(state: MonitorState, view: PositionView, ours: dict[str, list[Order]], size: Decimal,
             resting: Decimal, instrument: Instrument, config: RulesConfig) -> tuple[MonitorState, list[Command], list[Event]]:
    """R1, R3, R4, R5: the stop covers size + resting entries; R2: at breakeven after TP1;
    R7: restored when missing; R8: changed by one amend, never cancelled first."""
    side = state.plan.side
    desired_qty = instrument.round_qty(size + resting)
    be = breakeven_price(side, state.avg_price, config.breakeven_offset, instrument) if state.tp1_done else None
    if STOP_KEY in state.pending or EMERGENCY_KEY in state.pending:
        return state, [], []
    stop = (ours.get(STOP_KEY) or [None])[0]
    if stop is not None and stop.status in (OrderStatus.TRIGGERED, OrderStatus.PARTIALLY_FILLED):
        return state, [], []  # firing now: leave it alone
    if stop is None:
        if _externally_protected(state, view, size):
            return state, [], []
        if _observing(state, config):
            return state, [], [_event(EventKind.UNPROTECTED, f"UNPROTECTED {state.monitor}: no stop on an open position of {size} "
                                      "(adoption policy observe)", level=logging.WARNING, critical=False, size=size)]
        trigger = be if be is not None else state.plan.stop_price
        restored = STOP_KEY in state.generations
        state, link_id = _next_link(state, STOP_KEY)
        state = _with_pending(state, STOP_KEY, Pending(Action.PLACE, link_id, desired_qty, trigger, view.snapshot_id, size))
        line = (f"STOP RESTORED {state.monitor}: no live stop; placing {link_id} at {trigger} for {desired_qty}"
                if restored else f"STOP PLACED {state.monitor}: {link_id} at {trigger} for {desired_qty}")
        event = _event(EventKind.STOP_RESTORED if restored else "stop_placed", line, level=logging.WARNING if restored else logging.INFO,
                       link_id=link_id, trigger=trigger, qty=desired_qty)
        return state, [_stop_place(state, link_id, desired_qty, trigger)], [event]
    trigger = None
    if be is not None and (not state.breakeven_done or stop.trigger_price is None
                           or more_protective(side, be, stop.trigger_price)):
        if stop.trigger_price is None or more_protective(side, be, stop.trigger_price):
            trigger = be
        else:
            state = replace(state, breakeven_done=True)  # already at or beyond breakeven
    if state.retarget:   # the trader's stop; after TP1 never less protective than breakeven
        wanted = state.plan.stop_price if be is None or more_protective(side, state.plan.stop_price, be) else be
        trigger = wanted if stop.trigger_price != wanted else None
    qty = desired_qty if stop.qty != desired_qty else None
    if trigger is None and qty is None:
        return state, [], []
    state = _with_pending(state, STOP_KEY, Pending(Action.AMEND, stop.link_id, qty, trigger, view.snapshot_id, size))
    return state, [Command(Action.AMEND, STOP_KEY, stop.link_id, Priority.PROTECT, qty=qty, trigger_price=trigger)], []


def has_live_stop(state: MonitorState, view: PositionView) -> bool:
    """Does a live stop guard the position: the daemon's own, or a trader's (any untriggered or
    triggered conditional reduce-only order on the closing side)?"""
    closing = closing_side(state.plan.side)
    return any(o.is_open and o.is_conditional and o.reduce_only and o.side == closing
               and o.position_idx == state.monitor.position_idx for o in view.orders)


def _observing(state: MonitorState, config: RulesConfig) -> bool:
    """An adopted position under policy `observe`: watched, never given orders."""
    return state.plan.approach is Approach.ADOPTED and config.adoption_policy == "observe"


def _externally_protected(state: MonitorState, view: PositionView, size: Decimal) -> bool:
    """An order the daemon did not place already stops the whole position (adopted positions)."""
    closing = closing_side(state.plan.side)
    return any(o.link is None and o.is_open and o.is_conditional and o.reduce_only and o.side == closing
               and o.qty >= size and o.position_idx == state.monitor.position_idx for o in view.orders)


def _stop_place(state: MonitorState, link_id: str, qty: Decimal, trigger: Decimal) -> Command:
    return Command(Action.PLACE, STOP_KEY, link_id, Priority.PROTECT, side=closing_side(state.plan.side), order_type="Market",
                   qty=qty, trigger_price=trigger, trigger_direction=stop_direction(state.plan.side),
                   reduce_only=True, close_on_trigger=True)


def _take_profits(state: MonitorState, view: PositionView, ours: dict[str, list[Order]], size: Decimal,
                  instrument: Instrument) -> tuple[MonitorState, list[Command]]:
    """R1/R5: TP quantities = share x the ladder size (the filled size before TP1); R4: scaled
    down so the active reduce-only orders together never exceed the position (no 110017)."""
    if not state.plan.tp_prices:
        return state, []
    levels = range(1, len(state.plan.percents) + 1)
    prices = {level: state.plan.tp_prices[level - 1] for level in levels if level - 1 < len(state.plan.tp_prices)}
    split = instrument.split_qty(state.ladder_size, state.plan.percents)
    orders = {level: (ours.get(Intent(Role.TAKE_PROFIT, level)) or [None])[0] for level in levels}
    wanted = {level: split[level - 1] for level in levels if level not in state.filled_tps}
    filled_part = {level: (orders[level].cum_exec_qty if orders[level] is not None else Decimal(0)) for level in wanted}
    leaves = {level: max(Decimal(0), wanted[level] - filled_part[level]) for level in wanted}
    total = sum(leaves.values(), Decimal(0))
    if total > size:
        leaves = {level: instrument.round_qty(q * size / total) for level, q in leaves.items()}
        leaves = {level: (q if q >= instrument.min_qty else Decimal(0)) for level, q in leaves.items()}
    shrinking, growing = [], []  # sent in this order: room is freed before it is used
    for key, beyond in ours.items():   # levels a new plan no longer has
        if key.role is Role.TAKE_PROFIT and key.level > len(state.plan.percents) and key not in state.pending:
            state = _with_pending(state, key, Pending(Action.CANCEL, beyond[0].link_id, sent_snapshot=view.snapshot_id))
            shrinking.append(Command(Action.CANCEL, key, beyond[0].link_id, Priority.CLEANUP))
    for level in wanted:
        key = Intent(Role.TAKE_PROFIT, level)
        if key in state.pending:
            continue
        order = orders[level]
        qty = filled_part[level] + leaves[level]
        if order is not None:
            if leaves[level] <= 0 and order.cum_exec_qty == 0:
                state = _with_pending(state, key, Pending(Action.CANCEL, order.link_id, sent_snapshot=view.snapshot_id))
                shrinking.append(Command(Action.CANCEL, key, order.link_id, Priority.CLEANUP))
            elif leaves[level] > 0 and (order.qty != qty or (state.retarget and order.price != prices.get(level))):
                price = prices.get(level) if state.retarget and order.price != prices.get(level) else None
                new_qty = qty if order.qty != qty else None
                state = _with_pending(state, key, Pending(Action.AMEND, order.link_id, new_qty, None, view.snapshot_id,
                                                          size, price=price))
                (shrinking if qty < order.qty else growing).append(
                    Command(Action.AMEND, key, order.link_id, Priority.RESIZE, qty=new_qty, price=price))
        elif leaves[level] > 0 and level - 1 < len(state.plan.tp_prices):
            state, link_id = _next_link(state, key)
            state = _with_pending(state, key, Pending(Action.PLACE, link_id, leaves[level], None, view.snapshot_id, size))
            growing.append(Command(Action.PLACE, key, link_id, Priority.RESIZE, side=closing_side(state.plan.side),
                                   order_type="Limit", qty=leaves[level], price=state.plan.tp_prices[level - 1]))
    return state, shrinking + growing


# --- outcomes ------------------------------------------------------------------------------

def settle(state: MonitorState, command: Command, outcome: Outcome, view: PositionView, now_ms: int,
           config: RulesConfig) -> Decision:
    """One command's outcome. May return follow-up commands: R8 (stop gone: place a new one),
    R9 (trigger already crossed: close at market)."""
    events = [_event(EventKind.COMMAND_SETTLED, f"SETTLED {state.monitor} {command.action} {command.link_id}: "
                     f"{type(outcome).__name__.lower()}{_detail(outcome)}",
                     level=logging.INFO if isinstance(outcome, Accepted) else logging.WARNING,
                     action=command.action, link_id=command.link_id, outcome=type(outcome).__name__,
                     detail=_detail(outcome).strip(": "))]
    if isinstance(outcome, Unresolved):
        return Decision(state, (), tuple(events))  # R10: stays pending; settled from snapshots
    if isinstance(outcome, Accepted):
        state = _settled(state, command)
        if command.action is Action.PLACE:  # known from now on: its vanishing must be explained
            state = replace(state, open_links=state.open_links | {command.link_id})
        if command.key == STOP_KEY and command.trigger_price is not None and state.tp1_done:
            state = replace(state, breakeven_done=True, last_change_ms=now_ms)
            reaction = now_ms - state.tp1_fill_ms if state.tp1_fill_ms else None
            events.append(_event(EventKind.BREAKEVEN, f"BREAKEVEN {state.monitor}: stop {command.link_id} at "
                                 f"{command.trigger_price}" + (f" ({reaction} ms after the TP1 fill)" if reaction else ""),
                                 trigger=command.trigger_price, qty=command.qty, reaction_ms=reaction))
        if command.key == EMERGENCY_KEY:
            state = replace(state, last_change_ms=now_ms)
        return Decision(state, (), tuple(events))
    # Rejected: a definite no.
    code = outcome.code
    reason = meaning(code)
    if reason is Meaning.ALREADY_EXISTS and command.action is Action.PLACE:
        return Decision(state, (), tuple(events))  # the id exists already: settled from snapshots
    state = _settled(state, command)
    position, size = _size_of(state, view)
    if command.key == FIRST_ENTRY and opening(state) and size == 0:
        state = _refused(state, f"{code} {outcome.message}")
        events.append(_event(EventKind.ENTRY_REFUSED, f"ENTRY REFUSED {state.monitor}: {command.link_id}: {code} "
                             f"{outcome.message}; nothing was opened", level=logging.WARNING, code=code))
        return Decision(state, (), tuple(events))
    if command.key == STOP_KEY and reason is Meaning.TRIGGER_CROSSED and size > 0:          # R9
        state, link_id = _next_link(state, EMERGENCY_KEY)
        state = _with_pending(state, EMERGENCY_KEY, Pending(Action.PLACE, link_id, size, None, view.snapshot_id, size))
        events.append(_event(EventKind.EMERGENCY_CLOSE, f"EMERGENCY CLOSE {state.monitor}: stop trigger already crossed "
                             f"({code}); closing {size} at market with {link_id}", level=logging.WARNING,
                             link_id=link_id, qty=size))
        return Decision(state, (Command(Action.PLACE, EMERGENCY_KEY, link_id, Priority.PROTECT,
                                        side=closing_side(state.plan.side), order_type="Market", qty=size,
                                        reduce_only=True, close_on_trigger=True),), tuple(events))
    if command.key == STOP_KEY and command.action is Action.AMEND and reason is Meaning.GONE and size > 0:   # R8
        state, link_id = _next_link(state, STOP_KEY)
        qty = command.qty or (view.instrument.round_qty(size) if view.instrument else size)
        old = next((o for o in view.orders if o.link_id == command.link_id), None)
        trigger = command.trigger_price or (old.trigger_price if old and old.trigger_price else state.plan.stop_price)
        state = _with_pending(state, STOP_KEY, Pending(Action.PLACE, link_id, qty, trigger, view.snapshot_id, size))
        events.append(_event(EventKind.STOP_RESTORED, f"STOP RESTORED {state.monitor}: {command.link_id} is gone ({code}); "
                             f"placing {link_id} at {trigger} for {qty}", level=logging.WARNING, link_id=link_id))
        return Decision(state, (_stop_place(state, link_id, qty, trigger),), tuple(events))
    return Decision(state, (), tuple(events))


def _settled(state: MonitorState, command: Command) -> MonitorState:
    if command.key is None:
        return _with_cleanup(state, command.link_id, None)
    return _with_pending(state, command.key, None)


def _detail(outcome: Outcome) -> str:
    if isinstance(outcome, Rejected):
        return f": {outcome.code} {outcome.message}"
    if isinstance(outcome, Unresolved):
        return f": {outcome.reason}"
    return ""


# --- urgency -------------------------------------------------------------------------------

def _triggers(state: MonitorState, view: PositionView | None) -> list[Decimal]:
    ours = _ours(state, view.orders) if view is not None else {}
    stop = (ours.get(STOP_KEY) or [None])[0]
    prices = [stop.trigger_price if stop is not None and stop.trigger_price else state.plan.stop_price]
    for level in range(1, len(state.plan.percents) + 1):
        if level not in state.filled_tps and level - 1 < len(state.plan.tp_prices):
            prices.append(state.plan.tp_prices[level - 1])
            break  # the next take-profit only
    return [p for p in prices if p]


def classify_urgency(state: MonitorState, view: PositionView | None, now_ms: int) -> Urgency:
    """tpsl-rules.md "Urgency": first match wins. A position seen flat once (closure not yet
    confirmed) and a closing one count as critical too: their confirmation and clean-up wait."""
    mark = view.position.mark_price if view is not None and view.position is not None else None
    distances = [abs(mark - p) / mark for p in _triggers(state, view)] if mark else []
    nearest = min(distances) if distances else None
    if state.awaiting or (state.tp1_done and not state.breakeven_done) or state.closing or state.gone_snapshots \
            or (nearest is not None and nearest <= Decimal("0.005")) or now_ms - state.last_change_ms < RECENT_CHANGE_MS:
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
    return {"side": state.plan.side, "phase": state.phase, "size": state.last_size, "avg_price": state.avg_price,
            "next_tp": next_tp, "stop": triggers[0] if triggers else None, "urgency": state.urgency,
            "last_check_ms": state.last_check_ms}


# --- persistence form ----------------------------------------------------------------------

def stored(state: MonitorState) -> dict[str, Any]:
    """What Persistence keeps for a monitor: its state and the summary `status` reads."""
    return {**state_to_dict(state), "summary": summary(state, None)}


def state_to_dict(state: MonitorState) -> dict[str, Any]:
    plan = state.plan
    return {
        "monitor": str(state.monitor), "position_id": state.position_id, "phase": state.phase,
        "created_ms": state.created_ms,
        "plan": {"approach": plan.approach, "side": plan.side, "percents": [str(p) for p in plan.percents],
                 "tp_prices": [str(p) for p in plan.tp_prices], "stop_price": str(plan.stop_price),
                 "legs": [str(q) for q in plan.legs], "limits": [str(p) for p in plan.limits]},
        "generations": {str(k): v for k, v in state.generations.items()},
        "pending": {str(k): _pending_to_dict(p) for k, p in state.pending.items()},
        "cleanup": {k: _pending_to_dict(p) for k, p in state.cleanup.items()},
        "filled_tps": sorted(state.filled_tps), "filled_entries": sorted(state.filled_entries),
        "tp1_done": state.tp1_done, "breakeven_done": state.breakeven_done,
        "ladder_size": str(state.ladder_size), "last_size": str(state.last_size), "peak_size": str(state.peak_size),
        "avg_price": str(state.avg_price), "open_links": sorted(state.open_links),
        "gone_snapshots": list(state.gone_snapshots), "last_snapshot": state.last_snapshot,
        "last_change_ms": state.last_change_ms, "last_check_ms": state.last_check_ms, "urgency": state.urgency,
        "tp1_fill_ms": state.tp1_fill_ms, "opened_ms": state.opened_ms,
        "realised_start": _text(state.realised_start), "realised_seen": _text(state.realised_seen),
        "closing": state.closing, "orphan": state.orphan, "retarget": state.retarget,
        "close_requested": state.close_requested, "refusal": state.refusal,
    }


def _pending_to_dict(p: Pending) -> dict[str, Any]:
    return {"action": p.action, "link_id": p.link_id, "qty": _text(p.qty), "trigger_price": _text(p.trigger_price),
            "sent_snapshot": p.sent_snapshot, "sent_size": str(p.sent_size), "absent": p.absent,
            "seen_snapshot": p.seen_snapshot, "price": _text(p.price)}


def _pending_from_dict(p: dict[str, Any]) -> Pending:
    return Pending(Action(p["action"]), str(p["link_id"]), _dec(p.get("qty")), _dec(p.get("trigger_price")),
                   int(p.get("sent_snapshot", 0)), Decimal(str(p.get("sent_size", "0"))), int(p.get("absent", 0)),
                   int(p.get("seen_snapshot", 0)), _dec(p.get("price")))


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def state_from_dict(data: dict[str, Any]) -> MonitorState:
    """Raises ValueError (or KeyError/TypeError, reported as ValueError) on a malformed state.
    States written before cleanups had their own map kept them in `pending` under `dup:<link>` or
    `close:<link>`: they are read into `cleanup`."""
    try:
        plan = data["plan"]
        pending, cleanup = {}, {k: _pending_from_dict(p) for k, p in data.get("cleanup", {}).items()}
        for key, p in data.get("pending", {}).items():
            kind, _, link_id = str(key).partition(":")
            if link_id and kind in ("dup", "close"):
                cleanup[link_id] = _pending_from_dict(p)
            else:
                pending[Intent.parse(str(key))] = _pending_from_dict(p)
        closing = data.get("closing")
        return MonitorState(
            monitor=MonitorId.parse(data["monitor"]), position_id=str(data["position_id"]), phase=Phase(data["phase"]),
            created_ms=int(data["created_ms"]),
            plan=Plan(Approach(plan["approach"]), str(plan["side"]), tuple(Decimal(p) for p in plan["percents"]),
                      tuple(Decimal(p) for p in plan["tp_prices"]), Decimal(plan["stop_price"]),
                      tuple(Decimal(q) for q in plan.get("legs", ())), tuple(Decimal(p) for p in plan.get("limits", ()))),
            generations={Intent.parse(str(k)): int(v) for k, v in data.get("generations", {}).items()},
            pending=pending, cleanup=cleanup,
            filled_tps=frozenset(int(x) for x in data.get("filled_tps", [])), tp1_done=bool(data.get("tp1_done")),
            filled_entries=frozenset(int(x) for x in data.get("filled_entries", [])),
            opened_ms=int(data.get("opened_ms", 0)), realised_start=_dec(data.get("realised_start")),
            realised_seen=_dec(data.get("realised_seen")),
            breakeven_done=bool(data.get("breakeven_done")), ladder_size=Decimal(str(data.get("ladder_size", "0"))),
            last_size=Decimal(str(data.get("last_size", "0"))), peak_size=Decimal(str(data.get("peak_size", "0"))),
            avg_price=Decimal(str(data.get("avg_price", "0"))), open_links=frozenset(data.get("open_links", [])),
            gone_snapshots=tuple(int(x) for x in data.get("gone_snapshots", [])),
            last_snapshot=int(data.get("last_snapshot", 0)),
            last_change_ms=int(data.get("last_change_ms", 0)), last_check_ms=int(data.get("last_check_ms", 0)),
            tp1_fill_ms=int(data.get("tp1_fill_ms", 0)),
            urgency=Urgency(data.get("urgency", "critical")), closing=CloseReason(closing) if closing else None,
            orphan=bool(data.get("orphan", False)), retarget=bool(data.get("retarget", False)),
            close_requested=bool(data.get("close_requested", False)), refusal=str(data.get("refusal", "")))
    except (KeyError, TypeError, ArithmeticError) as exc:
        raise ValueError(f"malformed monitor state: {exc!r}") from None
