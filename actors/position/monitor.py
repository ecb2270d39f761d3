"""A Monitor: one position (account, symbol, positionIdx), its plan and state.

The actor shell around the check cycle (actors/position/_check_cycle.py): on `Check` it runs one cycle with the
real gateway and persistence behind it, then tells the Scheduler `Checked`, or, once the position
is closed and cleaned up, tells the Supervisor `MonitorRetired` and stops. The trader's
instructions (`ChangePlan`, `ClosePosition`, through the Supervisor) are recorded into its state
and make it ask for a check at once. It never talks to the exchange itself, and every wait has a
timeout.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pykka

from actors.asks import Ref, ask_with_reply, record, tell_upward
from actors.position import rules
from actors.position._check_cycle import CheckCycle, CheckResult, command_message
from actors.position.rules import Command, EventKind, MonitorState, RulesConfig
from messages.gateway import GetPositionView, Outcome, PositionView, SendBatch, Unavailable, Unresolved
from messages.models import MonitorId, Urgency
from messages.monitor import ChangePlan, Check, ClosePosition, GetMonitorState
from messages.persistence import JournalEntry, Record
from messages.scheduler import Checked, Wake
from messages.supervisor import MonitorFailed, MonitorRetired, TradeOpened
from runtime.clock import Clock
from runtime.hooks import NO_HOOKS, Hooks
from runtime.metrics import Metrics

log = logging.getLogger(__name__)


class Monitor(pykka.ThreadingActor):
    def __init__(
        self,
        monitor: MonitorId,
        *,
        gateway: Ref,
        persistence: Ref,
        scheduler: Ref,
        supervisor: Ref,
        clock: Clock,
        intervals: dict[str, float],
        config: RulesConfig,
        state: MonitorState | None = None,
        dry_run: bool = False,
        ask_timeout: float = 10.0,
        hooks: Hooks = NO_HOOKS,
        metrics: Metrics | None = None,
        inherited: frozenset[str] = frozenset(),
    ):
        super().__init__()
        self._metrics = metrics or Metrics(clock)
        self._id = monitor
        self._gateway, self._persistence = gateway, persistence
        self._scheduler, self._supervisor = scheduler, supervisor
        self._clock = clock
        self._timeout = ask_timeout
        self._config = config
        self._extra = {"account": monitor.account, "symbol": monitor.symbol, "monitor": str(monitor)}
        self._cycle = CheckCycle(
            monitor,
            self,
            clock,
            {Urgency(name): s for name, s in intervals.items()},
            config,
            state=state,
            dry_run=dry_run,
            hooks=hooks,
            inherited=inherited,
        )

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        error = f"{getattr(exception_type, '__name__', exception_type)}: {exception_value}"
        log.error("Monitor %s failed: %s", self._id, error, extra=self._extra)
        tell_upward(self._supervisor, MonitorFailed(self._id, error[:300]))

    def on_receive(self, message: Any) -> Any:
        match message:
            case Check():
                self._check(message)
            case GetMonitorState():
                return self._cycle.state
            case ChangePlan(tp_prices=tps, stop_price=stop, exits=exits):
                self._instruct(
                    message.reply,
                    lambda state, now_ms: rules.retarget(state, tps, stop, now_ms, self._config, exits),
                )
            case ClosePosition():
                self._instruct(message.reply, rules.request_close)
            case _:
                log.error("Monitor %s: unknown message %r", self._id, message, extra=self._extra)
        return None

    def _instruct(self, reply: Any, change: Any) -> None:
        """The trader's instruction: recorded, then checked at once (the Scheduler dispatches on
        Wake); the reply says "" or why not."""
        why_not = self._cycle.instruct(change)
        reply.set(why_not)
        if not why_not:
            tell_upward(self._scheduler, Wake(self._id))

    def _check(self, check: Check) -> None:
        started = self._clock.monotonic()
        opening = self._cycle.state is not None and rules.opening(self._cycle.state)
        result = self._cycle.run()
        self._publish(result)
        state = self._cycle.state
        if opening and state is not None and state.peak_size > 0:  # the trade it opened exists now
            tell_upward(self._supervisor, TradeOpened(self._id, state.last_size))
        if result.retired:
            retired = MonitorRetired(self._id, result.retired)
            if state is not None:
                retired = MonitorRetired(self._id, result.retired, state.refusal, state.successor, state.handover)
            tell_upward(self._supervisor, retired)
            self.stop()
            return
        tell_upward(
            self._scheduler,
            Checked(
                self._id,
                check.seq,
                result.urgency,
                self._clock.monotonic() - started,
                result.data_age,
                result.throttled,
                result.quiet,
                result.pushed,
            ),
        )

    def _publish(self, result: CheckResult) -> None:
        for event in result.events:
            reaction_ms = event.payload.get("reaction_ms") if event.kind is EventKind.BREAKEVEN else None
            if reaction_ms is not None:
                self._metrics.tp1_to_breakeven.observe(max(0.0, reaction_ms / 1000))
        state = self._cycle.state
        if state is not None and result.unprotected is not None:
            self._metrics.monitor_seen(
                self._id,
                phase=state.phase,
                side=state.plan.side,
                size=str(state.last_size),
                unprotected=result.unprotected,
            )

    # --- CycleIO: the real gateway and persistence -----------------------------------------

    def view(
        self, max_age: float, closed_for: frozenset[str] | None = None, fresh: bool = False
    ) -> PositionView | Unavailable | None:
        state = self._cycle.state
        try:
            view: PositionView | Unavailable = ask_with_reply(
                self._gateway,
                lambda reply: GetPositionView(
                    self._id.account,
                    self._id.symbol,
                    self._id.position_idx,
                    max_age,
                    closed_for is not None,
                    closed_for or frozenset(),
                    fresh,
                    prices=state is not None and rules.uses_prices(state),
                    reply=reply,
                ),
                self._timeout,
            )
            return view
        except pykka.Timeout:
            log.warning("Monitor %s: no answer from the gateway in %.0fs", self._id, self._timeout, extra=self._extra)
            return None

    def send(self, group: list[Command]) -> list[Outcome]:
        make: Callable[[pykka.Future[Any]], object]
        if len(group) == 1:
            make = lambda reply: command_message(self._id, group[0], reply)
        else:
            messages = tuple(command_message(self._id, c) for c in group)
            make = lambda reply: SendBatch(self._id.account, messages, group[0].priority, reply=reply)
        try:
            answer = ask_with_reply(self._gateway, make, self._timeout)
        except pykka.Timeout:
            return [Unresolved("no answer from the gateway")] * len(group)
        return list(answer) if len(group) > 1 else [answer]

    def save(self, state: dict | None, entries: tuple[JournalEntry, ...], *, critical: bool, retire: bool) -> None:
        try:
            record(
                self._persistence,
                Record(self._id, state, entries, critical=critical, retire=retire),
                timeout=self._timeout,
            )
        except pykka.Timeout:
            log.error(
                "Monitor %s: state was not acknowledged by persistence in %.0fs",
                self._id,
                self._timeout,
                extra=self._extra,
            )
