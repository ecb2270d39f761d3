"""A Monitor: one position (account, symbol, positionIdx), its plan and state.

On `Check` it asks the gateway for a view no older than its urgency interval, runs the pure rules
(actors/_rules.py), records the state and events (critical ones acknowledged before it goes on:
a command's reserved orderLinkId is durable before the command is sent), sends the commands
(stop moves first), settles their outcomes, and tells the Scheduler `Checked`. It never talks to
the exchange itself, and every wait has a timeout.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import pykka

from actors import _rules
from actors._rules import Command, Event, MonitorState, RulesConfig
from actors.gateway import ask_gateway
from actors.persistence import journal, record
from messages.gateway import (AmendOrder, Batch, CancelOrder, GetPositionView, PlaceOrder, PositionView,
                              Priority, Rejected, Unavailable, Unresolved)
from messages.models import MonitorId, Urgency
from messages.monitor import Check, GetMonitorState
from messages.persistence import Record
from messages.scheduler import Checked, UnregisterMonitor
from messages.supervisor import MonitorFailed, MonitorRetired
from runtime import killpoints
from runtime.clock import Clock

log = logging.getLogger(__name__)

MAX_FOLLOW_UPS = 5
BATCHED = ("place", "cancel")


class Monitor(pykka.ThreadingActor):
    def __init__(self, monitor: MonitorId, *, gateway: Any, persistence: Any, scheduler: Any, supervisor: Any,
                 clock: Clock, intervals: dict[str, float], config: RulesConfig,
                 state: MonitorState | None = None, dry_run: bool = False, ask_timeout: float = 10.0):
        super().__init__()
        self._id = monitor
        self._gateway, self._persistence = gateway, persistence
        self._scheduler, self._supervisor = scheduler, supervisor
        self._clock = clock
        self._intervals = {Urgency(name): seconds for name, seconds in intervals.items()}
        self._config = config
        self._state = state
        self._dry_run = dry_run
        self._timeout = ask_timeout
        self._extra = {"account": monitor.account, "symbol": monitor.symbol, "monitor": str(monitor)}

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        log.error("Monitor %s failed: %s: %s", self._id, getattr(exception_type, "__name__", exception_type),
                  exception_value, extra=self._extra)
        if self._supervisor is not None:
            self._supervisor.tell(MonitorFailed(self._id, f"{getattr(exception_type, '__name__', exception_type)}: "
                                                          f"{exception_value}"[:300]))

    def on_receive(self, message: Any) -> Any:
        match message:
            case Check():
                self._check(message)
            case GetMonitorState():
                return self._state
            case _:
                log.error("Monitor %s: unknown message %r", self._id, message, extra=self._extra)
        return None

    # --- one check ------------------------------------------------------------------------

    def _check(self, check: Check) -> None:
        started = self._clock.monotonic()
        urgency = Urgency(self._state.urgency) if self._state else Urgency.CRITICAL
        view = self._view(self._intervals[urgency])
        if not isinstance(view, PositionView):
            self._checked(check, urgency, started, 0.0, False)  # R0: nothing to act on
            return
        if self._state is None and not self._adopt(view):
            return
        if _rules.needs_closed(self._state, view):
            with_closed = self._view(self._intervals[urgency], include_closed=True)
            view = with_closed if isinstance(with_closed, PositionView) else view
        now_ms = self._clock.wall_ms()
        decision = _rules.reconcile(self._state, view, now_ms, self._config)
        self._state = decision.state
        if len(self._state.gone_snapshots) == 1 and not self._state.closing:
            self._save(critical=True)
            killpoints.reached("between_closure_snapshots")
        throttled = view.throttled
        self._emit(decision.events, force_state=bool(decision.commands))
        if self._run(decision.commands, view, now_ms):
            view = self._settle_now(view)
        self._state, closing_events = _rules.finish(self._state)
        urgency = _rules.classify_urgency(self._state, view, now_ms)
        self._state = replace(self._state, urgency=urgency.value)
        self._emit(closing_events)
        if self._state.retired:
            self._retire(self._state.retired)
            return
        self._save(critical=False)
        self._checked(check, urgency, started, view.age, throttled)

    def _view(self, max_age: float, include_closed: bool = False) -> PositionView | Unavailable | None:
        try:
            return ask_gateway(self._gateway, lambda reply: GetPositionView(
                self._id.account, self._id.symbol, self._id.position_idx, max_age, include_closed, reply), self._timeout)
        except pykka.Timeout:
            log.warning("Monitor %s: no answer from the gateway in %.0fs", self._id, self._timeout, extra=self._extra)
            return None

    def _adopt(self, view: PositionView) -> bool:
        state = _rules.adopt(self._id, view, self._clock.wall_ms(), self._config)
        if state is None:
            if view.position is None:
                self._retire("no_position", created=False)
            return False  # no instrument rules yet: try again next check
        self._state = state
        plan = state.plan
        self._emit((Event("monitor_created", f"MONITOR STARTED {self._id}: {plan.approach} {plan.side} "
                          f"{state.last_size} in {state.phase} (position {state.position_id})",
                          payload={"approach": plan.approach, "phase": state.phase}),))
        return True

    def _run(self, commands: tuple[Command, ...], view: PositionView, now_ms: int) -> bool:
        """Send commands, most protective first; settle each outcome, which may add follow-ups.
        True when one stayed unresolved."""
        queue = sorted(commands, key=lambda c: c.priority)
        follow_ups = 0
        unresolved = False
        while queue:
            group = [queue.pop(0)]
            # Placements and cancellations of one kind go as one batch request (up to 10 orders);
            # stop changes and amends go alone, in order.
            if group[0].action in BATCHED and group[0].priority != Priority.PROTECT:
                while queue and len(group) < 10 and (queue[0].action, queue[0].priority) == \
                        (group[0].action, group[0].priority):
                    group.append(queue.pop(0))
            outcomes = self._send(group)
            killpoints.reached("after_send")
            for command, outcome in zip(group, outcomes):
                unresolved = unresolved or isinstance(outcome, Unresolved)
                decision = _rules.settle(self._state, command, outcome, view, now_ms, self._config)
                self._state = decision.state
                self._emit(decision.events, force_state=bool(decision.commands))
                if decision.commands and follow_ups < MAX_FOLLOW_UPS:
                    follow_ups += 1
                    queue = sorted(list(decision.commands) + queue, key=lambda c: c.priority)
        return unresolved

    def _settle_now(self, view: PositionView) -> PositionView:
        """After an unresolved command, read again at once: the first of the two fresh snapshots
        R10 needs comes now instead of a whole check later. Only settles; sends nothing."""
        fresh = self._view(0.0, include_closed=True)
        if not isinstance(fresh, PositionView):
            return view
        decision = _rules.settle_pending(self._state, fresh)
        self._state = decision.state
        self._emit(decision.events)
        return fresh

    def _send(self, group: list[Command]) -> list:
        """One command, or a batch of one kind; the outcome of each, in order."""
        for command in group:
            log.info("SENT %s %s %s%s", self._id, command.action, command.link_id, _describe(command), extra=self._extra)
        if self._dry_run:
            for command in group:
                log.info("DRY-RUN would %s %s%s", command.action, command.link_id, _describe(command), extra=self._extra)
            return [Rejected(0, "dry run: not sent")] * len(group)
        messages = [self._message(command) for command in group]
        if len(group) == 1:
            make = lambda reply: replace(messages[0], reply=reply)
        else:
            make = lambda reply: Batch(self._id.account, tuple(messages), group[0].priority, reply)
        try:
            answer = ask_gateway(self._gateway, make, self._timeout)
        except pykka.Timeout:
            return [Unresolved("no answer from the gateway")] * len(group)
        return list(answer) if len(group) > 1 else [answer]

    def _message(self, command: Command):
        account, symbol = self._id.account, self._id.symbol
        match command.action:
            case "place":
                return PlaceOrder(account, symbol, command.side, command.order_type, command.qty, command.link_id,
                                  price=command.price, trigger_price=command.trigger_price,
                                  trigger_direction=command.trigger_direction, reduce_only=command.reduce_only,
                                  close_on_trigger=command.close_on_trigger, position_idx=self._id.position_idx,
                                  priority=command.priority)
            case "amend":
                return AmendOrder(account, symbol, command.link_id, qty=command.qty,
                                  trigger_price=command.trigger_price, priority=command.priority)
            case _:
                return CancelOrder(account, symbol, command.link_id, priority=command.priority)

    # --- records, logs, and the others ---------------------------------------------------

    def _emit(self, events: tuple[Event, ...], force_state: bool = False) -> None:
        """Log every event's line; journal the critical ones with the state, acknowledged."""
        critical = [e for e in events if e.critical]
        for event in events:
            log.log(event.level, event.line, extra={**self._extra, "event": event.kind})
        if critical or force_state:
            now_ms = self._clock.wall_ms()
            entries = tuple(journal(now_ms, self._id, e.kind, line=e.line, **e.payload) for e in critical)
            self._save(critical=True, entries=entries)

    def _save(self, *, critical: bool, entries: tuple = (), retire: bool = False) -> None:
        state = self._state
        data = None
        if state is not None:
            data = {**_rules.state_to_dict(state), "summary": _rules.summary(state, None)}
        try:
            record(self._persistence, Record(self._id, data, entries, critical=critical, retire=retire),
                   timeout=self._timeout)
        except pykka.Timeout:
            log.error("Monitor %s: state was not acknowledged by persistence in %.0fs", self._id, self._timeout,
                      extra=self._extra)

    def _checked(self, check: Check, urgency: Urgency, started: float, data_age: float, throttled: bool) -> None:
        self._scheduler.tell(Checked(self._id, check.seq, urgency, self._clock.monotonic() - started, data_age, throttled))

    def _retire(self, reason: str, created: bool = True) -> None:
        entries = (journal(self._clock.wall_ms(), self._id, "monitor_retired", reason=reason),)
        log.info("MONITOR RETIRED %s: %s", self._id, reason, extra={**self._extra, "event": "monitor_retired"})
        self._save(critical=True, entries=entries, retire=True)
        self._scheduler.tell(UnregisterMonitor(self._id))
        if self._supervisor is not None:
            self._supervisor.tell(MonitorRetired(self._id, reason))
        self.stop()


def _describe(command: Command) -> str:
    parts = [f"{name} {value}" for name, value in (("side", command.side), ("qty", command.qty),
                                                   ("price", command.price), ("trigger", command.trigger_price))
             if value]
    return f" ({', '.join(parts)})" if parts else ""
