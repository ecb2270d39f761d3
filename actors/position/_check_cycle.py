"""One check of one position, in order: the daemon's check cycle as a plain object.

    view -> (adopt) -> (re-read with finished orders) -> reconcile -> record -> send, settle
    (follow-ups) -> (settle pending from an immediate re-read) -> finish -> urgency -> record

It is pure given its answers: every view and every command outcome comes through `CycleIO`, and
every record goes out through it. The Monitor actor drives it with the real gateway and
persistence (actors/position/monitor.py); the rule scenarios and property tests drive the same object
with the simulator's exchange engine in-process (tests/rules_driver.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol, assert_never

from actors.asks import journal
from actors.position import rules
from actors.position.rules import Action, CloseReason, Command, Event, EventKind, MonitorState, RulesConfig
from messages.endpoints import BATCH_LIMIT
from messages.gateway import (
    AmendOrder,
    CancelOrder,
    Outcome,
    PlaceOrder,
    PositionView,
    Priority,
    Rejected,
    Unavailable,
    Unresolved,
)
from messages.models import MonitorId, TriggerBy, Urgency
from messages.persistence import JournalEntry
from runtime.clock import Clock
from runtime.hooks import NO_HOOKS, Hooks

log = logging.getLogger(__name__)

MAX_FOLLOW_UPS = 5  # follow-ups (R8, R9) sent within one check; the rest go first next check
UNPROTECTED_REPEAT_S = 300.0  # an UNPROTECTED alert repeats at most this often while it lasts


class CycleIO(Protocol):
    """What a check needs from the world."""

    def view(
        self, max_age: float, closed_for: frozenset[str] | None = None, fresh: bool = False
    ) -> PositionView | Unavailable | None:
        """The position view no older than `max_age` s; with `closed_for`, also the symbol's
        finished orders that tell the fate of those link ids; `fresh`: from a snapshot read now
        even while pushes keep the cache fresh (R10 counts snapshots). None when no answer came
        in time."""

    def send(self, group: list[Command]) -> list[Outcome]:
        """One request: one command, or a batch of commands of one kind (`command_message` each);
        an outcome each, in order."""

    def save(self, state: dict | None, entries: tuple[JournalEntry, ...], *, critical: bool, retire: bool) -> None:
        """Record the state (and journal entries); a critical record returns once committed."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    urgency: Urgency
    data_age: float = 0.0
    throttled: bool = False
    retired: CloseReason | None = None
    sent: tuple[Command, ...] = ()
    events: tuple[Event, ...] = ()
    unprotected: bool | None = None  # an open position without a live stop; None: not known
    quiet: bool = False  # the view was pushed and nothing awaits: pushes will wake it
    pushed: bool = False  # its view came from the pushed state (slowness was the write budget's)


def command_message(monitor: MonitorId, command: Command, reply: Any = None) -> PlaceOrder | AmendOrder | CancelOrder:
    """The gateway message for one command (`reply=None` inside a batch)."""
    account, symbol = monitor.account, monitor.symbol
    match command.action:
        case Action.PLACE:
            assert command.qty is not None and command.order_type is not None  # a placement says what
            return PlaceOrder(
                account,
                symbol,
                command.side,
                command.order_type,
                command.qty,
                command.link_id,
                price=command.price,
                trigger_price=command.trigger_price,
                trigger_direction=command.trigger_direction,
                trigger_by=command.trigger_by or TriggerBy.LAST,
                reduce_only=command.reduce_only,
                close_on_trigger=command.close_on_trigger,
                position_idx=monitor.position_idx,
                priority=command.priority,
                reply=reply,
            )
        case Action.AMEND:
            return AmendOrder(
                account,
                symbol,
                command.link_id,
                qty=command.qty,
                price=command.price,
                trigger_price=command.trigger_price,
                trigger_by=command.trigger_by,
                priority=command.priority,
                reply=reply,
            )
        case Action.CANCEL:
            return CancelOrder(account, symbol, command.link_id, priority=command.priority, reply=reply)
        case _:
            assert_never(command.action)


class CheckCycle:
    def __init__(
        self,
        monitor: MonitorId,
        io: CycleIO,
        clock: Clock,
        intervals: dict[Urgency, float],
        config: RulesConfig,
        *,
        state: MonitorState | None = None,
        dry_run: bool = False,
        hooks: Hooks = NO_HOOKS,
        max_follow_ups: int = MAX_FOLLOW_UPS,
        inherited: frozenset[str] = frozenset(),
    ):
        self.monitor = monitor
        self.state = state
        self._inherited = inherited  # R11: the previous position's stops, for adoption
        self._io = io
        self._clock = clock
        self._intervals = intervals
        self._config = config
        self._dry_run = dry_run
        self._hooks = hooks
        self._max_follow_ups = max_follow_ups
        self._extra = {"account": monitor.account, "symbol": monitor.symbol, "monitor": str(monitor)}
        self._deferred: list[Command] = []  # follow-ups over the limit: sent first next check
        self._last_view: PositionView | None = None
        self._unprotected_since: float | None = None
        self._unprotected_alerted: float | None = None
        self._sent: list[Command] = []
        self._events: list[Event] = []

    @property
    def _current(self) -> MonitorState:
        """The state while a check runs past adoption (never None there)."""
        assert self.state is not None
        return self.state

    def run(self) -> CheckResult:
        self._sent, self._events = [], []
        urgency = self.state.urgency if self.state else Urgency.CRITICAL
        if self._deferred and self._last_view is not None:
            deferred, self._deferred = self._deferred, []
            self._run(deferred, self._last_view, self._clock.wall_ms())
        # A flat position seen once is confirmed by a second snapshot (R6): read one, since the
        # views of a fresh stream are no snapshots.
        view = self._io.view(self._intervals[urgency], fresh=bool(self.state and self.state.gone_snapshots))
        if not isinstance(view, PositionView):
            return self._result(urgency)  # R0: nothing to act on
        if self.state is None:
            self.state = rules.adopt(self.monitor, view, self._clock.wall_ms(), self._config, self._inherited)
            if self.state is None:  # no position: nothing to guard; no instrument yet: next check
                return self._retire(CloseReason.NO_POSITION) if view.position is None else self._result(urgency)
            self._emit((self._created_event(),))
        if rules.needs_closed(self.state, view):
            with_closed = self._io.view(self._intervals[urgency], rules.links_to_explain(self.state))
            view = with_closed if isinstance(with_closed, PositionView) else view
        now_ms = self._clock.wall_ms()
        seen_before = self.state.last_snapshot
        decision = rules.reconcile(self.state, view, now_ms, self._config)
        self.state = decision.state
        if len(self.state.gone_snapshots) == 1 and not self.state.closing:
            self._save(critical=True)
            self._hooks.reached("between_closure_snapshots")
        self._emit(decision.events, force_state=bool(decision.commands))
        unresolved = self._run(decision.commands, view, now_ms)
        # Something still awaits its outcome and this view was no new snapshot (the pushed state):
        # only snapshots settle absence (R10), so read one now rather than wait for a resync.
        if unresolved or (self.state.awaiting and not decision.commands and view.snapshot_id == seen_before):
            view = self._settle_now(view)
        self._last_view = view
        self.state, closing_events = rules.finish(self.state, now_ms)
        urgency = rules.classify_urgency(self.state, view, now_ms)
        self.state = replace(self.state, urgency=urgency)
        self._emit(closing_events)
        if self.state.retired:
            return self._retire(self.state.retired)
        unprotected = self._unprotected(view)
        self._emit(self._unprotected_alert(unprotected))
        self._save(critical=False)
        # Quiet: the view was pushed, the position has its stop, nothing was sent, nothing awaits an
        # outcome or waits to be sent, and no refusal waits for its retry time (R17; one that waits for
        # a change is woken by the push of that change).
        quiet = (
            view.pushed
            and unprotected is False
            and not self._sent
            and not self.state.awaiting
            and not self.state.retrying
            and not self._deferred
            and not self.state.gone_snapshots
            and rules.time_limit_due_ms(self.state) is None  # R16: no push will say the time is up
            and self.state.trail_extreme is None  # R14: trailing follows the price, which wakes no monitor
            and not rules.waits_on_price(self.state)  # R14: nor does a profit that starts trailing
        )
        return replace(
            self._result(urgency, view.age, view.throttled), unprotected=unprotected, quiet=quiet, pushed=view.pushed
        )

    # --- commands -------------------------------------------------------------------------

    def _run(self, commands: tuple[Command, ...] | list[Command], view: PositionView, now_ms: int) -> bool:
        """Send commands, most protective first; settle each group's outcomes (one critical
        record per group), which may add follow-ups. True when one stayed unresolved."""
        queue = sorted(commands, key=lambda c: c.priority)
        follow_ups = 0
        unresolved = False
        while queue:
            group = _next_group(queue)
            outcomes = self._send(group)
            self._hooks.reached("after_send")
            events: list[Event] = []
            new: list[Command] = []
            for command, outcome in zip(group, outcomes, strict=False):
                unresolved = unresolved or isinstance(outcome, Unresolved)
                decision = rules.settle(self._current, command, outcome, view, now_ms, self._config)
                self.state = decision.state
                events += decision.events
                new += decision.commands
            if new and follow_ups >= self._max_follow_ups:
                self._deferred += new
                events.append(
                    rules.Event(
                        EventKind.FOLLOW_UP_DEFERRED,
                        f"FOLLOW-UP DEFERRED {self.monitor}: {len(new)} follow-up commands "
                        f"over the limit of {self._max_follow_ups} per check go first at the next check "
                        f"({', '.join(c.link_id for c in new)})",
                        critical=False,
                        level=logging.WARNING,
                    )
                )
                new = []
            follow_ups += len(new)
            self._emit(tuple(events), force_state=bool(new))
            queue = sorted(new + queue, key=lambda c: c.priority)
        return unresolved

    def _send(self, group: list[Command]) -> list[Outcome]:
        self._sent += group
        for command in group:
            log.info(
                "SENT %s %s %s%s", self.monitor, command.action, command.link_id, _describe(command), extra=self._extra
            )
        if self._dry_run:
            for command in group:
                log.info(
                    "DRY-RUN would %s %s%s", command.action, command.link_id, _describe(command), extra=self._extra
                )
            return [Rejected(0, "dry run: not sent")] * len(group)
        return self._io.send(group)

    def _settle_now(self, view: PositionView) -> PositionView:
        """After an unresolved command, read again at once: the first of the two fresh snapshots
        R10 needs comes now instead of a whole check later. Only settles; sends nothing."""
        fresh = self._io.view(0.0, rules.links_to_explain(self._current), fresh=True)
        if not isinstance(fresh, PositionView):
            return view
        decision = rules.settle_pending(self._current, fresh, self._clock.wall_ms())
        self.state = decision.state
        self._emit(decision.events)
        return fresh

    # --- records --------------------------------------------------------------------------

    def _emit(self, events: tuple[Event, ...], force_state: bool = False) -> None:
        """Log every event's line; journal the critical ones with the state, in one record."""
        self._events += events
        for event in events:
            log.log(event.level, event.line, extra={**self._extra, "event": str(event.kind)})
        critical = [e for e in events if e.critical]
        if critical or force_state:
            now_ms = self._clock.wall_ms()
            side = self.state.plan.side if self.state else ""
            entries = tuple(
                journal(now_ms, self.monitor, e.kind, line=e.line, side=side, **e.payload) for e in critical
            )
            self._save(critical=True, entries=entries)

    def _save(self, *, critical: bool, entries: tuple[JournalEntry, ...] = (), retire: bool = False) -> None:
        data = rules.stored(self.state) if self.state is not None else None
        self._io.save(data, entries, critical=critical, retire=retire)

    def instruct(self, change: Callable[[MonitorState, int], tuple[MonitorState, Event]]) -> str:
        """The trader's instruction (new targets, a close), recorded before a check acts on it.
        "" when done, else why not."""
        if self.state is None or self.state.orphan:
            return "its position is not guarded yet (the monitor has not seen it)"
        if self.state.closing:
            return f"its position is closing ({self.state.closing})"
        self.state, event = change(self.state, self._clock.wall_ms())
        self._emit((event,))
        return ""

    def _created_event(self) -> Event:
        state = self._current
        plan = state.plan
        what = (
            f"orphaned orders {', '.join(sorted(state.open_links))} on a flat position; confirming it is gone"
            if state.orphan
            else f"{plan.approach} {plan.side} {state.last_size} in {state.phase}"
        )
        return Event(
            EventKind.MONITOR_CREATED,
            f"MONITOR STARTED {self.monitor}: {what} (position {state.position_id})",
            payload={"approach": plan.approach, "phase": state.phase},
        )

    def _retire(self, reason: CloseReason) -> CheckResult:
        log.info("MONITOR RETIRED %s: %s", self.monitor, reason, extra={**self._extra, "event": "monitor_retired"})
        entry = journal(self._clock.wall_ms(), self.monitor, EventKind.MONITOR_RETIRED, reason=reason)
        self._save(critical=True, entries=(entry,), retire=True)
        return self._result(Urgency.CRITICAL, retired=reason)

    def _unprotected(self, view: PositionView) -> bool | None:
        """After this check: an open position with no live stop in its view and none accepted by
        this check (a stop placed, or an emergency close sent)."""
        if view.stale or view.position is None or not view.position.is_open:
            return None if view.stale else False
        placed = any(
            c.key in (rules.STOP_KEY, rules.EMERGENCY_KEY)
            and c.action is Action.PLACE
            and c.link_id in self._current.open_links
            for c in self._sent
        )
        return not (placed or rules.has_live_stop(self._current, view))

    def _unprotected_alert(self, unprotected: bool | None) -> tuple[Event, ...]:
        """A critical UNPROTECTED event (journaled, so alerted) once a position has had no live stop
        for longer than one critical interval, repeated at most every 5 minutes while it lasts."""
        now = self._clock.monotonic()
        if unprotected is False:
            self._unprotected_since = self._unprotected_alerted = None
        if not unprotected:
            return ()
        since = self._unprotected_since = now if self._unprotected_since is None else self._unprotected_since
        if now - since <= self._intervals[Urgency.CRITICAL] or (
            self._unprotected_alerted is not None and now - self._unprotected_alerted < UNPROTECTED_REPEAT_S
        ):
            return ()
        self._unprotected_alerted = now
        return (
            Event(
                EventKind.UNPROTECTED,
                f"UNPROTECTED {self.monitor}: no live stop on an open position of "
                f"{self._current.last_size} for {now - since:.0f}s",
                level=logging.WARNING,
                payload={"size": self._current.last_size, "seconds": round(now - since)},
            ),
        )

    def _result(
        self, urgency: Urgency, data_age: float = 0.0, throttled: bool = False, retired: CloseReason | None = None
    ) -> CheckResult:
        return CheckResult(urgency, data_age, throttled, retired, tuple(self._sent), tuple(self._events))


def _next_group(queue: list[Command]) -> list[Command]:
    """Commands of one kind and priority go as one batch request (up to 10 orders, in order): a
    batch has its own budget, so take-profit resizes leave the single endpoints to the stops.
    Protective commands and trailing moves go alone. Takes the group off the front of the queue."""
    group = [queue.pop(0)]
    first = group[0]
    if first.priority not in (Priority.PROTECT, Priority.TRAIL):
        while (
            queue
            and len(group) < BATCH_LIMIT
            and (queue[0].action, queue[0].priority) == (first.action, first.priority)
        ):
            group.append(queue.pop(0))
    return group


def _describe(command: Command) -> str:
    parts = [
        f"{name} {value}"
        for name, value in (
            ("side", command.side),
            ("qty", command.qty),
            ("price", command.price),
            ("trigger", command.trigger_price),
        )
        if value
    ]
    return f" ({', '.join(parts)})" if parts else ""
