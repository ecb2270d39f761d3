"""Scheduler: due times, ordering, the in-flight limit, slow and dead monitors, no starvation.
Deterministic: a fake clock, ticks sent by the test, stub monitors answering on command."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict

import pytest

from actors.scheduling._schedule import Candidate, adapt_concurrency, dispatch_order, next_due, quiet_interval
from actors.scheduling.scheduler import Scheduler
from messages.models import MonitorId, Urgency
from messages.scheduler import (
    AccountWentStale,
    Checked,
    GetSchedule,
    RegisterMonitor,
    SchedulerTick,
    UnregisterMonitor,
    Wake,
)
from messages.supervisor import CheckUnanswered, PositionSeen
from runtime.clock import FakeClock
from tests.stubs.monitors import StubMonitors
from tests.stubs.recorder import Recorder, recorded

INTERVALS = {"critical": 2.0, "active": 5.0, "standard": 12.0, "inactive": 30.0, "idle": 60.0}


class Harness:
    def __init__(self, concurrency=(4, 20, 64), check_timeout=30.0):
        self.clock = FakeClock(start=1000.0)
        self.supervisor = Recorder.start()
        self.scheduler = Scheduler.start(
            self.clock, INTERVALS, self.supervisor, check_timeout=check_timeout, concurrency=concurrency
        )
        self.monitors = StubMonitors(self.scheduler)

    def add(self, name: str, urgency=Urgency.STANDARD, mode="answer", account="main") -> MonitorId:
        """Register a monitor (it is checked by the next tick)."""
        monitor = MonitorId(account, name)
        self.monitors.configure(monitor, urgency, mode)
        self.scheduler.tell(RegisterMonitor(monitor, self.monitors.ref_for(monitor), urgency))
        self.scheduler.tell(SchedulerTick(self.clock.monotonic()))
        self.settle()
        return monitor

    def settle(self):
        """Every message in flight has been handled: checks told, answered and recorded."""
        self.scheduler.ask(GetSchedule(), timeout=5)
        self.monitors.ping()
        return self.scheduler.ask(GetSchedule(), timeout=5)

    def tick(self, seconds: float = 0.25):
        now = self.clock.advance(seconds)
        self.scheduler.tell(SchedulerTick(now))
        return self.settle()

    def run(self, seconds: float, step: float = 0.25) -> None:
        for _ in range(round(seconds / step)):
            self.tick(step)

    def check_times(self) -> dict[MonitorId, list[float]]:
        times = defaultdict(list)
        for monitor, now, _ in self.monitors.checks():
            times[monitor].append(now)
        return times


@pytest.fixture
def harness():
    return Harness()


# --- pure arithmetic ---------------------------------------------------------------------


@pytest.mark.parametrize("tier, interval", INTERVALS.items())
def test_next_due_is_dispatch_plus_interval_for_every_tier(tier, interval):
    assert next_due(1000.0, interval) == 1000.0 + interval


@pytest.mark.parametrize(
    "dispatched, interval, due",
    [(1000.25, 5, 1006.0), (1000.0, 5.5, 1006.0), (999.999999999, 12, 1012.0), (1000.25, 2, 1002.25)],
)
def test_next_due_rounds_up_to_the_wave_grid_never_early_except_critical(dispatched, interval, due):
    assert next_due(dispatched, interval) == due
    assert next_due(dispatched, interval) >= dispatched + interval - 1e-6


def test_dispatch_order_is_most_urgent_first_but_overdue_goes_first():
    a, b, c, d = (MonitorId("main", s) for s in "ABCD")
    candidates = [
        Candidate(a, Urgency.STANDARD, 100.0),
        Candidate(b, Urgency.CRITICAL, 100.0),
        Candidate(c, Urgency.IDLE, 98.0),
        Candidate(d, Urgency.CRITICAL, 101.0),
    ]
    assert dispatch_order(candidates, now=100.0) == [c, b, a]  # d is not due; c waited a wave


@pytest.mark.parametrize(
    "current, throttled, waiting, expected",
    [
        (20, True, 5, 10),
        (20, False, 5, 40),
        (20, False, 0, 20),
        (5, True, 0, 4),
        (40, False, 5, 64),
        (64, False, 3000, 3064),
    ],
)
def test_concurrency_adapts(current, throttled, waiting, expected):
    assert (
        adapt_concurrency(current, throttled=throttled, waiting=waiting, high=8192 if waiting > 1000 else 64)
        == expected
    )


# --- the actor ---------------------------------------------------------------------------


def test_a_new_monitor_is_checked_by_the_next_tick_with_the_others_registered_meanwhile(harness, caplog):
    caplog.set_level(logging.INFO, logger="actors.scheduling.scheduler")
    monitors = [MonitorId("main", f"S{n}USDT") for n in range(3)]
    for monitor in monitors:
        harness.scheduler.tell(RegisterMonitor(monitor, harness.monitors.ref_for(monitor)))
    harness.settle()
    assert harness.check_times() == {}
    harness.tick(0.0)
    assert dict(harness.check_times().items()) == {m: [1000.0] for m in monitors}
    assert [r.getMessage()[:22] for r in caplog.records] == ["Processed 3 monitors i"]


@pytest.mark.parametrize("tier", list(Urgency))
def test_next_check_is_last_check_plus_the_tier_interval(harness, tier):
    monitor = harness.add("BTCUSDT", urgency=tier)
    interval = INTERVALS[tier.value]
    harness.run(interval - 0.25)
    assert len(harness.check_times()[monitor]) == 1
    harness.tick()
    assert harness.check_times()[monitor] == [1000.0, 1000.0 + interval]


def test_a_tier_change_takes_effect_at_the_next_check(harness):
    monitor = harness.add("BTCUSDT", urgency=Urgency.CRITICAL)
    harness.run(2.0)  # second check, still critical
    harness.monitors.configure(monitor, urgency=Urgency.ACTIVE)
    harness.run(2.0)  # third check answers "active"
    harness.run(5.0)
    assert harness.check_times()[monitor] == [1000.0, 1002.0, 1004.0, 1009.0]


def test_most_urgent_first_when_slots_are_short():
    h = Harness(concurrency=(1, 1, 1))
    blocker = h.add("BLOCKUSDT", mode="held")
    standard = h.add("STDUSDT", urgency=Urgency.STANDARD)
    idle = h.add("IDLEUSDT", urgency=Urgency.IDLE)
    critical = h.add("CRITUSDT", urgency=Urgency.CRITICAL)
    h.monitors.release(blocker)
    h.monitors.configure(blocker, mode="answer")
    h.settle()
    for _ in range(3):
        h.tick()
    order = [m for m, _, _ in h.monitors.checks()]
    assert order == [blocker, critical, standard, idle]


def test_in_flight_never_exceeds_the_limit_with_slow_monitors():
    h = Harness(concurrency=(5, 5, 5))
    for n in range(30):
        h.add(f"S{n}USDT", mode="held")
    for step in range(40):
        report = h.tick()
        assert report.in_flight <= 5
        if step % 3 == 0:
            h.monitors.release()
    assert report.concurrency_limit == 5
    assert len({m for m, _, _ in h.monitors.checks()}) == 30  # everyone got its turn


def test_limit_halves_when_checks_report_throttling_and_grows_when_saturated():
    h = Harness(concurrency=(4, 20, 64))
    monitor = h.add("BTCUSDT", urgency=Urgency.CRITICAL, mode="held")
    h.scheduler.tell(Checked(monitor, seq=1, urgency=Urgency.CRITICAL, duration=0.1, throttled=True))
    assert h.tick().concurrency_limit == 10
    for n in range(30):  # registered together, then one tick: 30 due, 9 slots
        monitor = MonitorId("main", f"S{n}USDT")
        h.monitors.configure(monitor, Urgency.STANDARD, "held")
        h.scheduler.tell(RegisterMonitor(monitor, h.monitors.ref_for(monitor)))
    report = h.tick()
    assert report.concurrency_limit == 30 and report.in_flight == 10  # grown at once to serve them all


def test_each_account_has_its_own_concurrency_so_one_throttled_account_never_holds_back_another():
    """R12: the brake follows an account's own rate limits. The mirror's checks are in flight and
    throttled: its limit halves; main's four due checks all go out at the same tick."""
    h = Harness(concurrency=(2, 4, 64))
    busy = [h.add(f"B{n}USDT", urgency=Urgency.CRITICAL, mode="held", account="mirror") for n in range(2)]
    mains = [MonitorId("main", f"M{n}USDT") for n in range(4)]
    for monitor in mains:
        h.monitors.configure(monitor, Urgency.STANDARD, "held")
        h.scheduler.tell(RegisterMonitor(monitor, h.monitors.ref_for(monitor)))
    h.scheduler.tell(Checked(busy[0], seq=1, urgency=Urgency.CRITICAL, duration=0.1, throttled=True))
    report = h.tick()
    assert sorted(m for m, _, _ in h.monitors.checks() if m.account == "main") == mains
    assert report.in_flight == 5  # the mirror's answered check left one of its two in flight


@pytest.mark.parametrize(("pushed", "limit"), [(False, 10), (True, 20)])
def test_a_slow_check_brakes_only_when_reads_made_it_slow(pushed, limit):
    """Slow on a REST view: reads are the bottleneck, fewer checks at once. Slow on a pushed view:
    it waited for the write budget, which the gateway orders; braking would only make others late."""
    h = Harness(concurrency=(4, 20, 64))
    monitor = h.add("BTCUSDT", urgency=Urgency.CRITICAL, mode="held")
    h.scheduler.tell(Checked(monitor, seq=1, urgency=Urgency.CRITICAL, duration=7.0, pushed=pushed))
    assert h.tick().concurrency_limit == limit


def test_a_check_that_overran_its_interval_is_not_late_and_one_kept_waiting_is():
    h = Harness(concurrency=(1, 1, 1))
    slow = h.add("SLOWUSDT", urgency=Urgency.CRITICAL, mode="held")
    h.run(5.0)  # its 2 s tier passed while its check ran
    h.monitors.configure(slow, mode="answer")
    h.monitors.release(slow)
    h.settle()
    report = h.tick()  # free again: checked at the next tick
    assert h.check_times()[slow] == [1000.0, 1005.25] and report.late_checks == 0
    waiting = h.add("WAITUSDT", urgency=Urgency.CRITICAL, mode="held")  # takes the only slot
    h.run(3.0)
    report = h.settle()
    assert len(h.check_times()[slow]) == 2 and report.late_checks == 0  # waiting for a slot...
    h.monitors.release(waiting)
    h.settle()
    report = h.tick()
    assert h.check_times()[slow][-1] == 1008.5 and report.late_checks == 1  # ...a whole wave: late


def test_a_dead_monitor_is_reported_and_others_keep_their_schedule():
    h = Harness(check_timeout=10.0)
    silent = h.add("DEADUSDT", urgency=Urgency.CRITICAL, mode="silent")
    alive = h.add("LIVEUSDT", urgency=Urgency.CRITICAL)
    h.run(12.0)
    assert h.check_times()[alive] == [1000.0 + 2 * n for n in range(7)]
    unresponsive = [m for m in recorded(h.supervisor) if isinstance(m, CheckUnanswered)]
    assert [m.monitor for m in unresponsive] == [silent]
    h.run(2.0)
    assert len(h.check_times()[silent]) == 2  # rescheduled after the timeout


def test_a_late_answer_after_the_timeout_is_ignored():
    h = Harness(check_timeout=5.0)
    slow = h.add("SLOWUSDT", urgency=Urgency.CRITICAL, mode="held")
    h.run(6.0)  # timed out at 1005.25 and rescheduled one interval later
    h.run(3.0)  # the second check went out at 1007.25 and is held too
    assert h.check_times()[slow] == [1000.0, 1007.25]
    h.monitors.release()  # answers both the stale check and the current one
    report = h.settle()
    assert report.in_flight == 0 and len(h.check_times()[slow]) == 2


def test_no_starvation_over_ten_minutes_with_20_critical_and_200_standard():
    h = Harness()  # the production limits: starts at 20, adapts within 4..64
    critical = [h.add(f"C{n}USDT", urgency=Urgency.CRITICAL) for n in range(20)]
    standard = [h.add(f"S{n}USDT", urgency=Urgency.STANDARD) for n in range(200)]
    h.run(600.0)
    times = h.check_times()
    for group, interval in ((critical, 2.0), (standard, 12.0)):
        for monitor in group:
            gaps = [b - a for a, b in zip(times[monitor], times[monitor][1:], strict=False)]
            assert len(gaps) >= 600 / (interval + 1) - 2, monitor
            assert min(gaps) >= interval - 1e-9, monitor  # never more often
            assert max(gaps) <= interval + 1.0 + 1e-9, monitor  # late by at most one wave


def test_unregistering_during_a_wave_completes_the_wave(harness, caplog):
    caplog.set_level(logging.INFO, logger="actors.scheduling.scheduler")
    a = harness.add("AUSDT", urgency=Urgency.CRITICAL, mode="held")
    b = harness.add("BUSDT", urgency=Urgency.CRITICAL, mode="held")
    harness.run(2.0)
    harness.scheduler.tell(UnregisterMonitor(a))
    harness.monitors.release()
    harness.settle()
    assert harness.scheduler.ask(GetSchedule()).monitors == 1
    assert any(r.getMessage().startswith("Processed 1 monitors in") for r in caplog.records)
    harness.run(2.0)
    assert a not in {m for m, t, _ in harness.monitors.checks() if t > 1002.0}
    assert b in {m for m, t, _ in harness.monitors.checks() if t > 1002.0}


def test_one_info_line_per_wave(harness, caplog):
    caplog.set_level(logging.INFO, logger="actors.scheduling.scheduler")
    for n in range(3):
        harness.add(f"C{n}USDT", urgency=Urgency.CRITICAL)
    caplog.clear()
    harness.run(2.0)
    lines = [r.getMessage() for r in caplog.records if r.name == "actors.scheduling.scheduler"]
    assert lines == ["Processed 3 monitors in 0.00s - urgency {'critical': 3} - next in 2.0s"]


def test_registering_twice_keeps_one_entry(harness, caplog):
    monitor = harness.add("BTCUSDT")
    harness.scheduler.tell(RegisterMonitor(monitor, harness.monitors.ref_for(monitor)))
    assert harness.settle().monitors == 1
    assert any("registered twice" in r.getMessage() for r in caplog.records)


def test_unknown_message_is_logged_as_an_error(harness, caplog):
    harness.scheduler.tell("what is this")
    harness.settle()
    assert any(r.levelno == logging.ERROR and "unknown message" in r.getMessage() for r in caplog.records)


def test_ticks_before_anything_is_due_send_nothing(harness):
    monitor = harness.add("BTCUSDT", urgency=Urgency.IDLE)
    harness.run(59.75)
    assert harness.check_times()[monitor] == [1000.0]
    report = harness.scheduler.ask(GetSchedule())
    assert report.late_checks == 0 and report.checks == 1


# --- wake-ups from pushes ---------------------------------------------------------------------


def test_a_wake_checks_the_monitor_at_once_outside_the_waves_and_late_checks(harness):
    idle = harness.add("BTCUSDT", urgency=Urgency.IDLE)
    other = harness.add("ETHUSDT", urgency=Urgency.IDLE)
    harness.tick(1.0)
    before = len(harness.check_times()[idle])
    waves = harness.settle().waves
    harness.scheduler.tell(Wake(idle))  # no tick needed
    report = harness.settle()
    assert len(harness.check_times()[idle]) == before + 1 and len(harness.check_times()[other]) == 1
    assert report.waves == waves and report.late_checks == 0 and report.woken == 1


def test_a_wake_during_a_check_checks_again_right_after_it():
    h = Harness()
    monitor = h.add("BTCUSDT", urgency=Urgency.IDLE, mode="held")  # its first check is in flight
    h.scheduler.tell(Wake(monitor))
    h.settle()
    assert len(h.check_times()[monitor]) == 1  # not twice at once
    h.monitors.release()
    h.settle()
    assert len(h.check_times()[monitor]) == 2  # at once after it, no tick


def test_a_wake_for_a_position_nobody_guards_is_told_to_the_supervisor(harness):
    harness.scheduler.tell(Wake(MonitorId("main", "NEWUSDT")))
    assert harness.settle().woken == 0
    assert PositionSeen(MonitorId("main", "NEWUSDT")) in recorded(harness.supervisor)


def test_a_quiet_check_waits_the_quiet_interval_and_a_stale_account_brings_it_back():
    h = Harness()
    h.scheduler.stop()
    h.scheduler = Scheduler.start(h.clock, INTERVALS, h.supervisor, quiet_interval=30.0)
    h.monitors = StubMonitors(h.scheduler)
    monitor = h.add("BTCUSDT", urgency=Urgency.CRITICAL, mode="held")
    h.monitors.release()  # answers the first check...
    h.scheduler.tell(Checked(monitor, seq=1, urgency=Urgency.CRITICAL, duration=0.01, quiet=True))  # ...quietly
    h.run(10.0)
    assert len(h.check_times()[monitor]) == 1  # not every 2 s while pushes serve
    h.run(35.0)
    assert len(h.check_times()[monitor]) == 2  # a safety net at 30-45 s (spread per monitor)
    h.monitors.release()
    h.scheduler.tell(Checked(monitor, seq=2, urgency=Urgency.CRITICAL, duration=0.01, quiet=True))
    h.scheduler.tell(AccountWentStale("main"))
    h.run(2.0)
    assert len(h.check_times()[monitor]) == 3  # back to its tier (2 s) at once


def test_quiet_safety_checks_are_spread_per_monitor_over_half_their_interval_more():
    intervals = [quiet_interval(MonitorId("main", f"S{i}USDT"), 600.0) for i in range(2000)]
    assert all(600.0 <= seconds < 900.0 for seconds in intervals)
    assert quiet_interval(MonitorId("main", "S1USDT"), 600.0) == intervals[1]  # the same every time
    per_minute = Counter(int((seconds - 600.0) // 60) for seconds in intervals)
    assert len(per_minute) == 5 and min(per_minute.values()) > 300  # five minutes, none crowded


def test_a_monitor_woken_thousands_of_times_leaves_the_others_on_their_times(harness):
    woken = harness.add("HOTUSDT", urgency=Urgency.IDLE)
    steady = harness.add("CALMUSDT", urgency=Urgency.STANDARD)
    for _ in range(1100):  # each wake checks it at once and leaves a stale due item behind
        harness.scheduler.tell(Wake(woken))
        harness.settle()
    assert harness.settle().in_flight == 0
    harness.run(12.0)
    assert harness.check_times()[steady] == [1000.0, 1012.0]  # its tier, neither early nor late
    assert len(harness.check_times()[woken]) == 1101 and harness.settle().late_checks == 0
