"""A synchronous stand-in for one Monitor's check loop (no actors), over the simulator's exchange
engine in-process: used by the rule scenarios and the property tests."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

from actors import _rules
from actors._rules import Command, Event, MonitorState, RulesConfig
from messages.gateway import AmendOrder, CancelOrder, PlaceOrder
from messages.models import MonitorId
from simulator.exchange import Exchange
from tests.stubs.book import apply, view_of


def to_message(monitor: MonitorId, command: Command):
    if command.action == "place":
        return PlaceOrder(monitor.account, monitor.symbol, command.side, command.order_type, command.qty, command.link_id,
                          price=command.price, trigger_price=command.trigger_price,
                          trigger_direction=command.trigger_direction, reduce_only=command.reduce_only,
                          close_on_trigger=command.close_on_trigger)
    if command.action == "amend":
        return AmendOrder(monitor.account, monitor.symbol, command.link_id, qty=command.qty,
                          trigger_price=command.trigger_price)
    return CancelOrder(monitor.account, monitor.symbol, command.link_id)


class Driver:
    def __init__(self, exchange: Exchange, monitor: MonitorId, config: RulesConfig | None = None,
                 state: MonitorState | None = None):
        self.exchange, self.monitor = exchange, monitor
        self.config = config or RulesConfig()
        self.state = state
        self.snapshot = 0
        self.now_ms = 1_000_000
        self.sent: list[Command] = []
        self.events: list[Event] = []
        # Outcome override for the next commands: a function (command) -> outcome or None.
        self.override: Callable[[Command], Any] | None = None

    def view(self, include_closed: bool = False, stale: bool = False):
        self.snapshot += 1
        return view_of(self.exchange, self.monitor.account, self.monitor.symbol, self.snapshot,
                       include_closed=include_closed, stale=stale)

    def check(self, stale: bool = False, advance_ms: int = 2_000) -> tuple[list[Command], list[Event]]:
        self.now_ms += advance_ms
        view = self.view(stale=stale)
        if self.state is None:
            self.state = _rules.adopt(self.monitor, view, self.now_ms, self.config)
        if _rules.needs_closed(self.state, view):
            view = self.view(include_closed=True)
        decision = _rules.reconcile(self.state, view, self.now_ms, self.config)
        self.state = decision.state
        sent, events = [], list(decision.events)
        queue = sorted(decision.commands, key=lambda c: c.priority)
        while queue:
            command = queue.pop(0)
            sent.append(command)
            outcome = self.override(command) if self.override else None
            if outcome is None:
                outcome = apply(self.exchange, self.monitor.account, self.monitor.symbol, to_message(self.monitor, command))
            settled = _rules.settle(self.state, command, outcome, view, self.now_ms, self.config)
            self.state = settled.state
            events += settled.events
            queue = sorted(list(settled.commands) + queue, key=lambda c: c.priority)
        self.state, closing = _rules.finish(self.state)
        events += closing
        self.state = replace(self.state, urgency=_rules.classify_urgency(self.state, view, self.now_ms).value)
        self.sent += sent
        self.events += events
        return sent, events
