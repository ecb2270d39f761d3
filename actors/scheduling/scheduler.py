"""The Scheduler: keeps each monitor's urgency and next due time and sends `Check`s in waves.

It never blocks on a monitor: checks go out as tells and come back as `Checked` tells. A check
that does not come back within `check_timeout` is reported to the Supervisor and rescheduled.
A tick costs what is due, not what is scheduled: due times wait in a heap (an entry's `token`
says which of its heap items is current; the others are skipped when they surface), checks in
flight in another, ordered by dispatch time, and their number is counted, not summed.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import pykka

from actors.asks import Ref, tell_upward
from actors.scheduling._schedule import (
    MAX_CONCURRENCY,
    MIN_CONCURRENCY,
    SLOW_CHECK_S,
    START_CONCURRENCY,
    WAVE_GRID_S,
    Candidate,
    adapt_concurrency,
    dispatch_order,
    next_due,
    quiet_interval,
)
from messages.models import MonitorId, Urgency
from messages.monitor import Check
from messages.scheduler import (
    AccountWentStale,
    Checked,
    GetSchedule,
    RegisterMonitor,
    ScheduleReport,
    SchedulerTick,
    StopDispatching,
    UnregisterMonitor,
    Wake,
)
from messages.supervisor import CheckUnanswered, PositionSeen
from runtime.clock import Clock
from runtime.metrics import Metrics

log = logging.getLogger(__name__)

WAVE_HISTORY = 1000  # wave durations kept for the report
CHECK_HISTORY = 10_000  # check durations kept for the report


@dataclass
class _Entry:
    ref: Ref
    urgency: Urgency
    due: float
    seq: int = 0  # of the check in flight (or the last one)
    in_flight: bool = False
    dispatched_at: float = 0.0
    wave: int = 0
    woken: bool = False  # a push came during the check in flight: check again after it
    quiet: bool = False  # its last check was quiet (pushed view, nothing awaiting)
    token: int = -1  # of its current item in the due heap (-1: none, it is in flight)
    idle_at: float = 0.0  # when its last check came back (it cannot be checked before)


@dataclass
class _Wave:
    started: float
    pending: set[MonitorId]
    size: int
    urgency: Counter = field(default_factory=Counter)


class Scheduler(pykka.ThreadingActor):
    def __init__(
        self,
        clock: Clock,
        intervals: dict[str, float],
        supervisor: Ref | None = None,
        *,
        quiet_interval: float = 0.0,
        check_timeout: float = 30.0,
        grid: float = WAVE_GRID_S,
        concurrency: tuple[int, int, int] = (MIN_CONCURRENCY, START_CONCURRENCY, MAX_CONCURRENCY),
        metrics: Metrics | None = None,
    ):
        super().__init__()
        self._metrics = metrics or Metrics(clock)
        self._clock = clock
        self._intervals = {Urgency(name): seconds for name, seconds in intervals.items()}
        # While pushes keep a monitor's data fresh and nothing of it awaits an outcome, a push (or a
        # resync's difference) wakes it on every change: its timer check is only a safety net, this
        # far apart and spread per monitor.
        self._quiet_interval = quiet_interval
        self._supervisor = supervisor
        self._check_timeout = check_timeout
        self._grid = grid
        # Concurrency per account (R12): the brake follows an account's own rate limits and reads,
        # so one throttled or slow account never holds back another's checks.
        self._low, self._start, self._high = concurrency
        self._limits: dict[str, int] = {}
        self._entries: dict[MonitorId, _Entry] = {}
        self._due: list[tuple[float, int, MonitorId]] = []  # (due, token, monitor) of idle entries
        self._flying: list[tuple[float, int, MonitorId]] = []  # (dispatched at, seq, monitor)
        self._in_flight: Counter[str] = Counter()  # per account
        self._tokens = itertools.count()
        self._waves: dict[int, _Wave] = {}
        self._wave_count = 0
        self._wave_seconds: deque[float] = deque(maxlen=WAVE_HISTORY)
        self._check_seconds: deque[float] = deque(maxlen=CHECK_HISTORY)
        self._seq = 0
        self._checks = 0
        self._woken = 0
        self._late = 0
        self._throttled: set[str] = set()  # accounts whose checks were throttled since the last tick
        self._stopping = False  # shutting down: no check is sent any more

    def on_receive(self, message: Any) -> Any:
        match message:
            case SchedulerTick(now=now):
                self._on_tick(now)
            case Checked():
                self._on_checked(message)
            case Wake(monitor=monitor):
                self._on_wake(monitor)
            case AccountWentStale(account=account):
                self._on_stale(account)
            case RegisterMonitor():
                self._on_register(message)
            case UnregisterMonitor(monitor=monitor):
                self._on_unregister(monitor)
            case GetSchedule():
                return self._report()
            case StopDispatching():
                self._stopping = True
                return self._report()
            case _:
                log.error("Scheduler: unknown message %r", message)
        return None

    # --- handlers -------------------------------------------------------------------------

    def _on_register(self, message: RegisterMonitor) -> None:
        now = self._clock.monotonic()
        if message.monitor in self._entries:
            log.error("Scheduler: %s registered twice; keeping the first", message.monitor)
            return
        # Due at once: checked by the next tick (at most 250 ms away), together with every other
        # monitor registered meanwhile, so a start-up of many monitors is one wave, not many.
        self._entries[message.monitor] = entry = _Entry(message.ref, message.urgency, due=now)
        self._schedule(message.monitor, entry)
        self._metrics.scheduled(message.monitor, message.urgency, now, checked=False)

    def _on_unregister(self, monitor: MonitorId) -> None:
        self._metrics.forget(monitor)
        entry = self._entries.pop(monitor, None)
        if entry is not None and entry.in_flight:
            self._in_flight[monitor.account] -= 1
            self._settle_wave(entry.wave, monitor, None)

    def _on_tick(self, now: float) -> None:
        self._metrics.ticked(now)
        self._expire_overdue(now)
        if self._stopping:
            return
        due = dispatch_order(self._pop_due(now), now, self._grid)
        slots = {a: self._limit(a) - self._in_flight[a] for a in {m.account for m in due} | self._throttled}
        sent: list[MonitorId] = []
        kept: list[MonitorId] = []
        for monitor in due:  # most urgent first, each account within its own slots
            free = slots[monitor.account] > 0
            slots[monitor.account] -= 1
            (sent if free else kept).append(monitor)
        for account, left in slots.items():
            self._limits[account] = adapt_concurrency(
                self._limit(account),
                throttled=account in self._throttled,
                waiting=max(0, -left),
                low=self._low,
                high=self._high,
            )
        self._throttled.clear()
        if sent:
            self._dispatch(now, only=sent)
        for monitor in kept:  # no slot this tick: back in the heap, still due
            self._schedule(monitor, self._entries[monitor])

    def _on_checked(self, message: Checked) -> None:
        entry = self._entries.get(message.monitor)
        if entry is None or not entry.in_flight or entry.seq != message.seq:
            log.debug("Scheduler: late or unknown Checked from %s ignored", message.monitor)
            return
        entry.in_flight = False
        self._in_flight[message.monitor.account] -= 1
        entry.idle_at = self._clock.monotonic()
        entry.urgency = message.urgency
        interval = self._intervals[message.urgency]
        if message.quiet and self._quiet_interval:
            interval = max(interval, quiet_interval(message.monitor, self._quiet_interval))
        entry.quiet = message.quiet
        entry.due = next_due(entry.dispatched_at, interval, self._grid)
        self._schedule(message.monitor, entry)
        # A slow check brakes when reads made it slow (REST polling); on pushes it waited for the
        # write budget, which the gateway's queue already orders: fewer checks would only be late.
        slow_read = message.duration > SLOW_CHECK_S and not message.pushed
        if message.throttled or slow_read:
            self._throttled.add(message.monitor.account)
        self._metrics.checks.labels(message.monitor.account).inc()
        self._metrics.check_seconds.observe(message.duration)
        self._check_seconds.append(message.duration)
        self._metrics.scheduled(message.monitor, message.urgency, entry.due, checked=True)
        log.debug(
            "Checked %s in %.3fs (data age %.1fs, urgency %s)",
            message.monitor,
            message.duration,
            message.data_age,
            message.urgency.value,
        )
        self._settle_wave(entry.wave, message.monitor, message.urgency)
        if entry.woken:
            entry.woken = False
            self._dispatch(self._clock.monotonic(), only=[message.monitor], woken=True)

    def _on_stale(self, account: str) -> None:
        """REST polling serves this account again: no monitor of it waits past its tier."""
        now = self._clock.monotonic()
        for monitor, entry in self._entries.items():
            if monitor.account == account and entry.quiet:
                entry.quiet = False
                tier_due = next_due(entry.dispatched_at, self._intervals[entry.urgency], self._grid)
                entry.due = min(entry.due, max(tier_due, now))
                if not entry.in_flight:
                    self._schedule(monitor, entry)

    def _on_wake(self, monitor: MonitorId) -> None:
        """A push touched this monitor's position: check it now, outside the waves (the data is in
        the gateway's cache already, so the check costs no read)."""
        entry = self._entries.get(monitor)
        if entry is None:
            tell_upward(self._supervisor, PositionSeen(monitor))  # not guarded (yet): discovery adopts it
            return
        self._woken += 1
        if entry.in_flight:
            entry.woken = True
        else:
            self._dispatch(self._clock.monotonic(), only=[monitor], woken=True)

    # --- helpers --------------------------------------------------------------------------

    def _limit(self, account: str) -> int:
        return self._limits.get(account, self._start)

    def _schedule(self, monitor: MonitorId, entry: _Entry) -> None:
        """(Re)enter an idle entry's due time into the heap; its older item becomes stale."""
        entry.token = next(self._tokens)
        heapq.heappush(self._due, (entry.due, entry.token, monitor))
        if len(self._due) > 4 * len(self._entries) + 1024:  # mostly stale items (woken early): rebuild
            self._due = [(e.due, e.token, m) for m, e in self._entries.items() if e.token >= 0]
            heapq.heapify(self._due)

    def _current(self, item: tuple[float, int, MonitorId]) -> _Entry | None:
        entry = self._entries.get(item[2])
        return entry if entry is not None and entry.token == item[1] else None

    def _pop_due(self, now: float) -> list[Candidate]:
        due = []
        while self._due and self._due[0][0] <= now:
            item = heapq.heappop(self._due)
            entry = self._current(item)
            if entry is not None:
                entry.token = -1
                due.append(Candidate(item[2], entry.urgency, item[0]))
        return due

    def _next_due(self) -> float | None:
        while self._due and self._current(self._due[0]) is None:
            heapq.heappop(self._due)
        return self._due[0][0] if self._due else None

    def _dispatch(self, now: float, only: list[MonitorId], woken: bool = False) -> None:
        """Send `Check`s as one wave; `woken` ones belong to no wave (they are not late either)."""
        if self._stopping:
            return
        if not woken:
            self._wave_count += 1
        wave = _Wave(started=self._clock.monotonic(), pending=set(), size=0)
        for monitor in only:
            entry = self._entries[monitor]
            if not woken and now - max(entry.due, entry.idle_at) >= self._grid:
                # A tier missed its interval (or a first check its start) by a whole wave, counted
                # from when the monitor was free: a check that overran its interval is slow, not late.
                self._late += 1
                self._metrics.late_checks.inc()
            self._seq += 1
            entry.seq, entry.in_flight, entry.dispatched_at, entry.token = self._seq, True, now, -1
            entry.wave = 0 if woken else self._wave_count
            try:
                entry.ref.tell(Check(now=now, seq=self._seq))
            except pykka.ActorDeadError:
                log.error("Scheduler: monitor %s is dead; unregistering it", monitor)
                del self._entries[monitor]
                self._report_unresponsive(monitor, 0.0)
                continue
            self._in_flight[monitor.account] += 1
            heapq.heappush(self._flying, (now, self._seq, monitor))
            wave.pending.add(monitor)
            wave.size += 1
            self._checks += 1
        if wave.size and not woken:
            self._waves[self._wave_count] = wave

    def _settle_wave(self, wave_id: int, monitor: MonitorId, urgency: Urgency | None) -> None:
        wave = self._waves.get(wave_id)
        if wave is None:
            return
        wave.pending.discard(monitor)
        if urgency is not None:
            wave.urgency[urgency] += 1
        if wave.pending:
            return
        del self._waves[wave_id]
        now = self._clock.monotonic()
        seconds = now - wave.started
        self._wave_seconds.append(seconds)
        self._metrics.wave_seconds.observe(seconds)
        idle_due = self._next_due()
        next_in = max(0.0, idle_due - now) if idle_due is not None else 0.0
        counts = {u.value: wave.urgency[u] for u in Urgency if wave.urgency[u]}
        log.info("Processed %d monitors in %.2fs - urgency %s - next in %.1fs", wave.size, seconds, counts, next_in)

    def _expire_overdue(self, now: float) -> None:
        while self._flying and now - self._flying[0][0] > self._check_timeout:
            dispatched_at, seq, monitor = heapq.heappop(self._flying)
            entry = self._entries.get(monitor)
            if entry is None or not entry.in_flight or entry.seq != seq:
                continue  # answered (or gone) long ago
            waited = now - dispatched_at
            log.warning("Scheduler: %s did not finish its check in %.0fs; rescheduled", monitor, waited)
            entry.in_flight = False
            self._in_flight[monitor.account] -= 1
            entry.idle_at = now
            entry.due = next_due(now, self._intervals[entry.urgency], self._grid)
            self._schedule(monitor, entry)
            self._settle_wave(entry.wave, monitor, None)
            self._report_unresponsive(monitor, waited)

    def _report_unresponsive(self, monitor: MonitorId, seconds: float) -> None:
        if self._supervisor is not None:
            self._supervisor.tell(CheckUnanswered(monitor, seconds))

    def _report(self) -> ScheduleReport:
        counts = Counter(e.urgency.value for e in self._entries.values())
        return ScheduleReport(
            monitors=len(self._entries),
            in_flight=sum(self._in_flight.values()),
            concurrency_limit=max(self._limits.values(), default=self._start),
            urgency=dict(counts),
            waves=len(self._wave_seconds),
            wave_seconds=tuple(self._wave_seconds),
            checks=self._checks,
            late_checks=self._late,
            check_seconds=tuple(self._check_seconds),
            woken=self._woken,
        )
