"""The rules' vocabulary and values: phases, actions, close reasons, event kinds, a monitor's state, commands,
events, and the small helpers that reserve ids and track pending commands.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import StrEnum
from typing import Any

from messages.gateway import (
    Priority,
)
from messages.models import (
    Intent,
    MonitorId,
    OrderLink,
    OrderType,
    Plan,
    Role,
    Side,
    StopAfter,
    TriggerBy,
    Urgency,
)


class Phase(StrEnum):
    BUILDING = "BUILDING"  # entry limits resting
    MONITORING = "MONITORING"  # no entry limit resting
    PROFIT_TAKING = "PROFIT_TAKING"  # TP1 filled
    CLOSED = "CLOSED"  # position gone; leftovers being cancelled


class Action(StrEnum):
    PLACE = "place"
    AMEND = "amend"
    CANCEL = "cancel"


class CloseReason(StrEnum):
    STOP_LOSS = "stop_loss"
    TAKE_PROFITS = "take_profits"
    MANUAL = "manual"
    LIQUIDATION = "liquidation"
    EMERGENCY_CLOSE = "emergency_close"
    FLIPPED = "flipped"  # R11: the side changed; the new position is adopted anew
    DELIVERY = "delivery"  # R19: the exchange settled the position when the instrument closed
    TIME_LIMIT = "time_limit"  # R16: the plan's time limit expired; the rest was closed at market
    TRAILING_STOP = "trailing_stop"  # R14: the trailed stop filled, or a trailing move found the price past it
    NO_POSITION = "no_position"  # nothing to guard was found (never created)
    ENTRY_REFUSED = "entry_refused"  # the exchange refused a planned trade's first entry: nothing opened


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
    UNPROTECTED = "unprotected"  # critical when it lasts (alerted), else logged every check
    TRADE_PLANNED = "trade_planned"
    ENTRY_SENT = "entry_sent"
    ENTRY_REFUSED = "entry_refused"
    CLOSE_REQUESTED = "close_requested"
    PLAN_CHANGED = "plan_changed"
    UNKNOWN_STATUS = "unknown_status"  # not critical
    FOLLOW_UP_DEFERRED = "follow_up_deferred"  # not critical
    TP_BLOCKED = "tp_blocked"  # R17: a take-profit refused for lack of room; it waits
    TP_REMOVED = "tp_removed"  # R18: the trader cancelled one of the daemon's take-profits by hand
    PLAN_EDITED = "plan_edited"  # R18: the trader moved a price of one of the daemon's orders by hand
    DELISTING = "delisting"  # R19: the instrument left Trading (delivery or delisting)
    TIME_LIMIT = "time_limit"  # R16: the plan's time limit expired
    TRAIL_ACTIVE = "trail_active"  # R14: trailing started
    TRAIL_MOVED = "trail_moved"  # R14: a trailing amend (not critical: coalesced, no alert)


STOP_KEY, EMERGENCY_KEY = Intent(Role.STOP, 0), Intent(Role.EMERGENCY_CLOSE, 0)


FIRST_ENTRY = Intent(Role.ENTRY, 1)


CONFIRMING_SNAPSHOTS = 2  # R6 and R10: fresh snapshots needed to believe an absence


RECENT_CHANGE_MS = 60_000


IDLE_AFTER_MS = 600_000


SETTLE_CANCEL = "CancelBySettle"  # the exchange cancelled the order when it settled the instrument (R19)
ROOM_CANCEL = "CancelByReduceOnly"  # the exchange cancelled an active reduce-only order to make room
LIQUIDATION_CANCELS = {"CancelByPrepareLiq", "CancelAllBeforeLiq", "CancelByPrepareAdl", "CancelAllBeforeAdl"}


@dataclass(frozen=True, slots=True)
class RulesConfig:
    ladder_percents: tuple[Decimal, ...] = (Decimal(85), Decimal(5), Decimal(5), Decimal(5))
    tp_distance_percents: tuple[Decimal, ...] = (Decimal(1), Decimal(2), Decimal(3), Decimal(4))
    stop_distance_percent: Decimal = Decimal(3)
    breakeven_offset: Decimal = Decimal("0.0012")
    adoption_policy: str = "protect"
    stop_after: StopAfter = StopAfter.BREAKEVEN  # R13, for plans that do not say
    trigger_by: TriggerBy = TriggerBy.LAST  # R15, for plans that do not say
    trail_activate: str = "off"  # R14, for plans that do not say: off | tp1..tp4 | profit:<percent>
    trail_percent: Decimal = Decimal(1)  # R14: the distance, for plans that do not say
    trail_step_percent: Decimal | None = None  # R14: None: a quarter of the distance (never below a tick)
    trail_min_interval_ms: int = 1000  # R14: at most one trailing amend per position this often

    @classmethod
    def from_settings(cls, settings: Any) -> RulesConfig:
        return cls(
            settings.tp_ladder_percents,
            settings.default_tp_distance_percents,
            settings.default_stop_distance_percent,
            settings.breakeven_offset,
            settings.adoption_policy,
            StopAfter(settings.stop_after_tp),
            TriggerBy(settings.stop_trigger_by),
            settings.trail_activate,
            settings.trail_distance_percent,
            settings.trail_step_percent,
            int(settings.trail_min_interval_seconds * 1000),
        )

    def with_exits(self, plan: Plan) -> Plan:
        """The plan with these defaults where it does not say (fixed when a monitor takes charge, so
        a position's exits do not change under it when the settings do)."""
        return replace(
            plan,
            stop_after=plan.stop_after or self.stop_after,
            trigger_by=plan.trigger_by or self.trigger_by,
            trail_after=plan.trail_after or self.trail_activate,
            trail_percent=plan.trail_percent or self.trail_percent,
        )


@dataclass(frozen=True, slots=True)
class Refusal:
    """R17: the exchange refused this intent's command (a definite no). It is not sent again while
    what it depends on (`basis`, see `refusal_basis`) is unchanged. A refusal whose cause the basis
    cannot see (a key's permission, the exchange's maintenance) is also tried again, ever more
    rarely (`retry_ms`: one critical interval after the first, doubling to 5 minutes), so it never
    stays refused for good."""

    code: int
    basis: str
    count: int = 1  # refusals in a row on this basis
    retry_ms: int = 0

    def waits(self, now_ms: int) -> bool:
        return now_ms < self.retry_ms


REFUSAL_RETRY_MS, REFUSAL_RETRY_MAX_MS = 2_000, 300_000  # one critical interval, doubling to 5 minutes
NEVER_MS = 2**62  # a refusal only a change ends


@dataclass(frozen=True, slots=True)
class Pending:
    """A command whose outcome is not known yet (R10), or not yet confirmed by a snapshot."""

    action: Action
    link_id: str
    qty: Decimal | None = None
    trigger_price: Decimal | None = None
    sent_snapshot: int = 0
    sent_size: Decimal = Decimal(0)
    absent: int = 0  # fresh snapshots since sending that did not show it done
    seen_snapshot: int = 0
    price: Decimal | None = None  # an amend's new limit price


@dataclass(frozen=True, slots=True)
class MonitorState:
    monitor: MonitorId
    position_id: str
    plan: Plan
    phase: Phase
    created_ms: int
    generations: dict[Intent, int] = field(default_factory=dict)  # latest generation reserved
    pending: dict[Intent, Pending] = field(default_factory=dict)  # one command per intent at a time
    cleanup: dict[str, Pending] = field(default_factory=dict)  # cancellations of duplicates and
    # leftovers, by orderLinkId
    filled_tps: frozenset[int] = frozenset()
    filled_entries: frozenset[int] = frozenset()  # entry limit levels seen Filled
    removed_tps: frozenset[int] = frozenset()  # R18: take-profit levels the trader cancelled by hand
    cancelled: frozenset[str] = frozenset()  # orderLinkIds the daemon itself cancelled (R18 tells them apart)
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
    tp1_fill_ms: int = 0  # the exchange's time of the TP1 fill (for reaction times)
    opened_ms: int = 0  # the exchange's creation time of the position
    open_time_ms: int = 0  # R11: the position row's openTime when first seen open (0: not told)
    # R11: the gateway's renewal count for this key, last seen; a running daemon's count, so not stored
    renewals_seen: int = field(default=-1, compare=False)
    successor: bool = False  # R11: a new position took this key; its monitor starts when this one retires
    handover: frozenset[str] = frozenset()  # R11: stops of ours left protecting the successor
    inherited: frozenset[str] = frozenset()  # R11: the previous position's stops, cancelled once ours is live
    realised_start: Decimal | None = None  # the position row's cumRealisedPnl when first seen
    realised_seen: Decimal | None = None  # ... and when last seen (the difference: this position's)
    urgency: Urgency = Urgency.CRITICAL
    closing: CloseReason | None = None  # closure reason while leftovers are cancelled
    retired: CloseReason | None = None  # closure reason once done
    orphan: bool = False  # built from orders that outlived their position (no plan)
    retarget: bool = False  # the trader changed the plan's prices: move the stop and TPs to them
    close_requested: bool = False  # the trader asked to close at market
    refusal: str = ""  # why the exchange refused the first entry (for the trader)
    refused: dict[Intent, Refusal] = field(default_factory=dict)  # R17: intents waiting for a change
    delisting: bool = False  # R19: the instrument left Trading (told once; no new entry from then on)
    entered_ms: int = 0  # R16: when the position was first seen open (the first entry fill)
    time_limit_hit: bool = False  # R16: the plan's time limit expired; closing at market
    trail_extreme: Decimal | None = None  # R14: the best price since trailing started (None: not active)
    trail_last_ms: int = 0  # R14: the last trailing amend
    trail_stop: Decimal | None = None  # R14: the trigger it moved the stop to (a restored stop goes there)
    trailed: bool = False  # R14: the stop was trailed beyond its ladder level (its fill: trailing_stop)

    def link(self, intent: Intent, generation: int | None = None) -> str:
        gen = self.generations.get(intent, 0) if generation is None else generation
        return OrderLink.of(self.position_id, intent, gen).build()

    @property
    def retrying(self) -> bool:
        """Does a refused command wait for its retry time (R17), rather than for a change?"""
        return any(r.retry_ms < NEVER_MS for r in self.refused.values())

    @property
    def awaiting(self) -> bool:
        """Is any command still waiting for its outcome to be seen?"""
        return bool(self.pending or self.cleanup)


@dataclass(frozen=True, slots=True)
class Command:
    action: Action
    key: Intent | None  # the intent; None for a cleanup cancellation (by link_id)
    link_id: str
    priority: Priority
    side: Side = Side.NONE
    order_type: OrderType | None = None
    qty: Decimal | None = None
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    trigger_direction: int | None = None
    trigger_by: TriggerBy | None = None  # a stop's (R15); a placement without one triggers on LastPrice
    reduce_only: bool = True
    close_on_trigger: bool = False


@dataclass(frozen=True, slots=True)
class Event:
    kind: EventKind
    line: str  # the operational log line (stable prefix)
    critical: bool = True
    level: int = logging.INFO
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Decision:
    state: MonitorState
    commands: tuple[Command, ...] = ()
    events: tuple[Event, ...] = ()


def new_event(kind: EventKind, line: str, *, level: int = logging.INFO, critical: bool = True, **payload: Any) -> Event:
    return Event(kind, line, critical, level, payload)


def next_link(state: MonitorState, intent: Intent) -> tuple[MonitorState, str]:
    """Reserve the next generation of an intent (never reuse an id)."""
    generation = state.generations.get(intent, -1) + 1
    return replace(state, generations={**state.generations, intent: generation}), state.link(intent, generation)


def _updated(mapping: dict[Any, Pending], key: Any, pending: Pending | None) -> dict[Any, Pending]:
    """A copy with `key` set to `pending`, or removed when it is None."""
    updated = {k: v for k, v in mapping.items() if k != key}
    return updated if pending is None else {**updated, key: pending}


def with_pending(state: MonitorState, intent: Intent, pending: Pending | None) -> MonitorState:
    return replace(state, pending=_updated(state.pending, intent, pending))


def with_cleanup(state: MonitorState, link_id: str, pending: Pending | None) -> MonitorState:
    return replace(state, cleanup=_updated(state.cleanup, link_id, pending))
