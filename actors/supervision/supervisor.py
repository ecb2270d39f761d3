"""The Supervisor: exactly one monitor per (account, symbol, positionIdx).

At start-up it matches persisted monitors to the first snapshot of every account (the exchange
wins on conflict): a state whose position is open on the same side is resumed; an open position
without one gets a new monitor (which adopts it); a state whose position is gone is resumed too,
so its monitor confirms the closure by two fresh snapshots, cancels leftovers and retires.
Later it discovers new positions from account snapshots every 15 s (at the next tick when a push
told of a position nobody guards) and the daemon's orders left on a flat position nobody guards (a
monitor's life ended in a crash before its clean-up: a new monitor confirms and cancels them). It
restarts failed monitors from their last persisted state, with backoff.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections import Counter
from collections.abc import Mapping
from functools import partial
from typing import Any

import pykka

from actors.asks import Ref, ask_with_reply, journal, record, tell_upward
from actors.position import (
    EventKind,
    Monitor,
    MonitorState,
    RulesConfig,
    planned,
    resumed,
    state_from_dict,
    stored,
)
from actors.supervision._trade_requests import describe
from messages.gateway import AccountSnapshot, GetAccountSnapshot, GetPositionView, PositionView
from messages.models import MonitorId, Plan, Urgency
from messages.monitor import ChangePlan, ClosePosition
from messages.persistence import LoadState, Record
from messages.scheduler import RegisterMonitor, UnregisterMonitor, Wake
from messages.supervisor import (
    CheckUnanswered,
    GetMonitors,
    GetSupervisorReport,
    Instruct,
    MonitorFailed,
    MonitorRetired,
    OpenTrade,
    PositionSeen,
    StartSupervision,
    StopMonitors,
    SupervisorReport,
    SupervisorTick,
    TradeOpened,
    TradeOutcome,
    TradeStarted,
)
from runtime.backoff import Backoff
from runtime.clock import Clock
from runtime.hooks import NO_HOOKS, Hooks
from runtime.metrics import Metrics

log = logging.getLogger(__name__)

MONITORS_STOP_S = 20.0  # at shutdown: each monitor finishes its check (a write may wait on the rate limiter)

RESTART_BACKOFF_START, RESTART_BACKOFF_MAX = 1.0, 60.0
UNRESPONSIVE_LIMIT = 2  # consecutive unanswered checks before a monitor is restarted


class Supervisor(pykka.ThreadingActor):
    def __init__(
        self,
        *,
        gateway: Ref,
        persistence: Ref,
        clock: Clock,
        accounts: tuple[str, ...],
        intervals: dict[str, float],
        config: RulesConfig,
        dry_run: bool = False,
        discovery_interval: float = 15.0,
        snapshot_max_age: float = 15.0,
        ask_timeout: float = 10.0,
        hooks: Hooks = NO_HOOKS,
        metrics: Metrics | None = None,
    ):
        super().__init__()
        self._hooks = hooks
        self._metrics = metrics or Metrics(clock)
        self._gateway, self._persistence = gateway, persistence
        self._scheduler: Ref | None = None
        self._clock = clock
        self._accounts = accounts
        self._intervals = intervals
        self._config = config
        self._dry_run = dry_run
        self._discovery_interval = discovery_interval
        self._snapshot_max_age = snapshot_max_age
        self._timeout = ask_timeout
        self._monitors: dict[MonitorId, Any] = {}
        self._restart_at: dict[MonitorId, float] = {}
        self._backoff: dict[MonitorId, Backoff] = {}
        self._unresponsive: Counter[MonitorId] = Counter()
        self._last_discovery = clock.monotonic()
        self._peak = self._started = self._retired = self._restarts = 0
        self._reasons: Counter[str] = Counter()
        self._outcomes: dict[
            MonitorId, list[pykka.Future[TradeOutcome]]
        ] = {}  # the trader's futures, set by the next outcome

    def on_receive(self, message: Any) -> Any:
        match message:
            case StartSupervision(scheduler=scheduler, snapshots=snapshots):
                self._scheduler = scheduler
                return self._reconcile(snapshots)
            case PositionSeen(monitor=monitor):
                if self._unguarded(monitor):
                    self._adopt_if_open(monitor)
            case SupervisorTick(now=now):
                self._on_tick(now)
            case MonitorRetired():
                self._on_retired(message)
            case MonitorFailed(monitor=monitor, error=error):
                self._schedule_restart(monitor, f"failed ({error})")
            case CheckUnanswered(monitor=monitor):
                self._on_unresponsive(monitor)
            case OpenTrade(monitor=monitor, plan=plan, outcome=outcome):
                return self._open_trade(monitor, plan, outcome)
            case TradeOpened(monitor=monitor, size=size):
                self._settle(monitor, TradeOutcome("opened", size))
            case Instruct(monitor=monitor, instruction=instruction, outcome=outcome):
                self._instruct(monitor, instruction, outcome)
            case GetMonitors():
                return dict(self._monitors)
            case StopMonitors():
                self._stop_monitors()
            case GetSupervisorReport():
                return SupervisorReport(
                    len(self._monitors), self._peak, self._started, self._retired, self._restarts, dict(self._reasons)
                )
            case _:
                log.error("Supervisor: unknown message %r", message)
        return None

    def on_stop(self) -> None:
        self._stop_monitors()

    def _on_tick(self, now: float) -> None:
        self._restart_due(now)
        if now - self._last_discovery >= self._discovery_interval:
            self._last_discovery = now
            self._discover()

    def _on_retired(self, retired: MonitorRetired) -> None:
        monitor, reason = retired.monitor, retired.reason
        self._monitors.pop(monitor, None)
        self._settle(monitor, TradeOutcome(str(reason), detail=retired.detail))
        tell_upward(self._scheduler, UnregisterMonitor(monitor))  # the supervisor registered it
        self._retired += 1
        self._reasons[str(reason)] += 1
        if retired.successor and self._unguarded(monitor):  # R11: the new position is adopted now
            log.info("Supervisor: a new position is open on %s; starting its monitor", monitor)
            self._start_monitor(monitor, None, inherited=retired.handover, at_once=True)
        else:  # a position opened on the key meanwhile (its push found the old monitor) is adopted now
            self._adopt_if_open(monitor)

    def _on_unresponsive(self, monitor: MonitorId) -> None:
        self._unresponsive[monitor] += 1
        if self._unresponsive[monitor] >= UNRESPONSIVE_LIMIT:
            self._schedule_restart(monitor, f"did not answer {UNRESPONSIVE_LIMIT} checks in a row")

    def _stop_monitors(self) -> None:
        """Each monitor finishes the check it is in (telling the scheduler, which is still alive),
        then stops; none is restarted after this."""
        self._restart_at.clear()
        monitors, self._monitors = list(self._monitors.values()), {}
        stopping = [ref.stop(block=False) for ref in monitors]
        with contextlib.suppress(pykka.Timeout):  # one wait for all, not one per monitor
            pykka.get_all(stopping, timeout=MONITORS_STOP_S)
        late = sum(not ref.actor_stopped.is_set() for ref in monitors)
        if late:
            log.error("Supervisor: %d monitors did not stop within %.0f s", late, MONITORS_STOP_S)

    # --- start-up -------------------------------------------------------------------------

    def _reconcile(self, snapshots: Mapping[str, AccountSnapshot]) -> int:
        loaded = self._persistence.ask(LoadState(), block=True, timeout=self._timeout)
        live = {
            MonitorId(account, p.symbol, p.position_idx): p
            for account, snapshot in snapshots.items()
            for p in snapshot.positions
            if p.is_open
        }
        kept = adopted = gone = dropped = 0
        for monitor, data in sorted(loaded.states.items()):
            if monitor.account not in self._accounts:
                continue  # e.g. the mirror was switched off: its states stay stored, untouched
            state = self._decode(monitor, data)
            position = live.get(monitor)
            if state is None:
                dropped += 1
                continue
            if position is not None and str(position.side) != state.plan.side:
                log.warning(
                    "Supervisor: %s is %s on the exchange but was %s when stored; the exchange wins",
                    monitor,
                    position.side,
                    state.plan.side,
                )
                dropped += 1
                continue
            self._start_monitor(monitor, resumed(state))
            if position is None:
                gone += 1
            else:
                kept += 1
        for monitor in sorted(set(live) - set(self._monitors)):
            self._start_monitor(monitor, None)
            adopted += 1
        log.info(
            "Supervisor: %d monitors resumed, %d positions adopted, %d stored monitors whose positions "
            "are gone (to confirm and clean up), %d stored states dropped",
            kept,
            adopted,
            gone,
            dropped,
        )
        return len(self._monitors)

    def _settle(self, monitor: MonitorId, outcome: TradeOutcome) -> None:
        for future in self._outcomes.pop(monitor, []):
            future.set(outcome)

    def _open_trade(self, monitor: MonitorId, plan: Plan, outcome: pykka.Future[TradeOutcome]) -> TradeStarted | str:
        """The plan is durable before its monitor sends anything: a crash in between resumes it
        (the monitor reserves each order's id before sending it), and the position it opens is
        never adopted with the default ladder meanwhile (its monitor already guards it)."""
        if not self._unguarded(monitor):
            return f"{monitor} already has a monitor"
        if self._scheduler is None:
            return "the daemon is still starting"
        position_id = "t" + secrets.token_hex(5)
        state = planned(monitor, position_id, self._config.with_exits(plan), self._clock.wall_ms())
        line = f"TRADE PLANNED {monitor}: position {position_id}, {describe(plan)}"
        try:
            record(
                self._persistence,
                Record(
                    monitor,
                    stored(state),
                    (journal(self._clock.wall_ms(), monitor, EventKind.TRADE_PLANNED, line=line, side=plan.side),),
                    critical=True,
                ),
                timeout=self._timeout,
            )
        except Exception as exc:
            log.error("Supervisor: the plan for %s was not recorded (%s); nothing sent", monitor, exc)
            return f"the plan could not be recorded ({type(exc).__name__}); nothing was sent"
        log.info(
            line,
            extra={
                "account": monitor.account,
                "symbol": monitor.symbol,
                "monitor": str(monitor),
                "event": "trade_planned",
            },
        )
        self._hooks.reached("plan_recorded")
        self._outcomes.setdefault(monitor, []).append(outcome)
        self._start_monitor(monitor, state)
        return TradeStarted(monitor, position_id)

    def _instruct(
        self,
        monitor: MonitorId,
        instruction: ChangePlan | ClosePosition,
        outcome: pykka.Future[TradeOutcome] | None,
    ) -> None:
        """Handed on: the monitor answers on the instruction's reply (this mailbox never waits)."""
        ref = self._monitors.get(monitor)
        try:
            if ref is None:
                raise pykka.ActorDeadError(str(monitor))
            if outcome is not None:
                self._outcomes.setdefault(monitor, []).append(outcome)
            ref.tell(instruction)
        except pykka.ActorDeadError:
            instruction.reply.set("no monitor guards it")

    def _decode(self, monitor: MonitorId, data: dict) -> MonitorState | None:
        try:
            return state_from_dict(data)
        except ValueError as exc:
            log.error("Supervisor: the stored state of %s is unreadable (%s); it will be adopted afresh", monitor, exc)
            return None

    # --- monitors -------------------------------------------------------------------------

    def _start_monitor(
        self,
        monitor: MonitorId,
        state: MonitorState | None,
        inherited: frozenset[str] = frozenset(),
        at_once: bool = False,
    ) -> None:
        """`at_once`: its first check now, not at the scheduler's next tick (a position found
        while running may be naked; at start-up the monitors start together as one wave)."""
        if monitor in self._monitors:
            log.error("Supervisor: %s already has a monitor; not starting a second", monitor)
            return
        ref = Monitor.start(
            monitor,
            gateway=self._gateway,
            persistence=self._persistence,
            scheduler=self._scheduler,
            supervisor=self.actor_ref,
            clock=self._clock,
            intervals=self._intervals,
            config=self._config,
            state=state,
            dry_run=self._dry_run,
            ask_timeout=self._timeout,
            hooks=self._hooks,
            metrics=self._metrics,
            inherited=inherited,
        )
        self._monitors[monitor] = ref
        self._started += 1
        self._peak = max(self._peak, len(self._monitors))
        urgency = Urgency(state.urgency) if state else Urgency.CRITICAL
        assert self._scheduler is not None, "monitors start after StartSupervision"
        self._scheduler.tell(RegisterMonitor(monitor, ref, urgency))
        if at_once:
            self._scheduler.tell(Wake(monitor))

    def _adopt_if_open(self, monitor: MonitorId) -> None:
        """A push or a retirement says this key may hold a position no monitor guards: that key alone
        is looked at (from the pushed cache while the stream is fresh: no read, and no snapshot of
        the whole account) and its monitor started now if it does; the rest is discovery's."""
        try:
            view = ask_with_reply(
                self._gateway,
                lambda reply: GetPositionView(
                    monitor.account,
                    monitor.symbol,
                    monitor.position_idx,
                    self._snapshot_max_age,
                    False,
                    frozenset(),
                    False,
                    reply=reply,
                ),
                self._timeout,
            )
        except pykka.Timeout:
            return
        if not isinstance(view, PositionView) or view.stale or view.position is None or not view.position.is_open:
            return
        if self._unguarded(monitor):
            log.info(
                "Supervisor: new position %s %s %s; starting its monitor",
                monitor,
                view.position.side,
                view.position.size,
            )
            self._start_monitor(monitor, None, at_once=True)

    def _discover(self) -> None:
        for account in self._accounts:
            try:
                snapshot = ask_with_reply(
                    self._gateway,
                    partial(GetAccountSnapshot, account, self._snapshot_max_age),
                    self._timeout,
                )
            except pykka.Timeout:
                continue
            if not isinstance(snapshot, AccountSnapshot) or snapshot.stale:
                continue  # a failed snapshot proves nothing: never start or stop anything on it
            # Keys, not monitors, and the daemon's ids parsed only where no position explains them:
            # at thousands of positions this runs every 15 s over every row of the account.
            known = {(m.symbol, m.position_idx) for m in (*self._monitors, *self._restart_at) if m.account == account}
            open_rows = {(p.symbol, p.position_idx): p for p in snapshot.positions if p.is_open}
            for symbol, idx in sorted(open_rows.keys() - known):
                position, monitor = open_rows[(symbol, idx)], MonitorId(account, symbol, idx)
                log.info(
                    "Supervisor: new position %s %s %s; starting its monitor", monitor, position.side, position.size
                )
                self._start_monitor(monitor, None, at_once=True)
            flat = {
                MonitorId(account, o.symbol, o.position_idx)
                for o in snapshot.orders
                if (o.symbol, o.position_idx) not in open_rows and o.link is not None
            }
            for monitor in sorted(m for m in flat if self._unguarded(m)):
                log.warning(
                    "Supervisor: the daemon's orders on %s outlived its position; starting a monitor to "
                    "confirm it is gone and cancel them",
                    monitor,
                )
                self._start_monitor(monitor, None)

    def _unguarded(self, monitor: MonitorId) -> bool:
        return monitor not in self._monitors and monitor not in self._restart_at

    def _schedule_restart(self, monitor: MonitorId, why: str) -> None:
        ref = self._monitors.pop(monitor, None)
        if ref is None and monitor not in self._restart_at:
            return
        if ref is not None:
            tell_upward(self._scheduler, UnregisterMonitor(monitor))
            ref.stop(block=False)
        delay = self._backoff.setdefault(monitor, Backoff(RESTART_BACKOFF_START, RESTART_BACKOFF_MAX)).next()
        self._restart_at[monitor] = self._clock.monotonic() + delay
        self._unresponsive.pop(monitor, None)
        log.error("Supervisor: monitor %s %s; restarting it from its stored state in %.0fs", monitor, why, delay)

    def _restart_due(self, now: float) -> None:
        due = [m for m, at in self._restart_at.items() if at <= now]
        if not due:
            return
        loaded = self._persistence.ask(LoadState(), block=True, timeout=self._timeout)
        for monitor in due:
            del self._restart_at[monitor]
            data = loaded.states.get(monitor)
            state = self._decode(monitor, data) if data is not None else None
            self._restarts += 1
            self._start_monitor(monitor, resumed(state) if state else None)
