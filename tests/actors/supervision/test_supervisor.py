"""The Supervisor with stub actors around it."""

from __future__ import annotations

from actors.position.rules import RulesConfig
from actors.supervision.supervisor import Supervisor
from messages.models import MonitorId
from messages.scheduler import UnregisterMonitor
from messages.supervisor import GetSupervisorReport, MonitorRetired, StartSupervision
from runtime.clock import FakeClock
from tests.stubs.persistence import StubPersistence
from tests.stubs.recorder import Recorder, recorded

INTERVALS = {"critical": 2.0, "active": 5.0, "standard": 12.0, "inactive": 30.0, "idle": 60.0}


def test_a_retired_monitor_is_unregistered_by_the_supervisor_that_registered_it():
    scheduler, gateway, persistence = Recorder.start(), Recorder.start(), StubPersistence.start()
    supervisor = Supervisor.start(
        gateway=gateway,
        persistence=persistence,
        clock=FakeClock(),
        accounts=("main",),
        intervals=INTERVALS,
        config=RulesConfig(),
    )
    try:
        supervisor.ask(StartSupervision(scheduler, {}), timeout=5)
        monitor = MonitorId("main", "BTCUSDT")
        supervisor.tell(MonitorRetired(monitor, "take_profits"))
        report = supervisor.ask(GetSupervisorReport(), timeout=5)
        assert report.retired == 1 and report.retired_reasons == {"take_profits": 1}
        assert recorded(scheduler) == [UnregisterMonitor(monitor)]
    finally:
        for ref in (supervisor, scheduler, gateway, persistence):
            ref.stop()
