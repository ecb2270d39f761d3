"""Stub monitors for Scheduler tests: one actor plays any number of monitors.

Each monitor's ref given to the Scheduler is a `_Forward`, which tags the Check with the monitor
id. By default a monitor answers at once with its configured urgency; a `held` monitor answers
only when released (a slow check); a `silent` one never answers (a hung monitor).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pykka

from messages.models import MonitorId, Urgency
from messages.monitor import Check
from messages.scheduler import Checked


@dataclass(frozen=True)
class _Forward:
    monitor: MonitorId
    pool: Any

    def tell(self, message: Any) -> None:
        self.pool.tell((self.monitor, message))


class _Ping:
    pass


@dataclass(frozen=True)
class _Release:
    monitor: MonitorId | None  # None: every held check


@dataclass(frozen=True)
class _Configure:
    monitor: MonitorId
    urgency: Urgency | None = None
    mode: str | None = None  # "answer", "held", "silent"


class _GetChecks:
    pass


class _StubMonitorPool(pykka.ThreadingActor):
    def __init__(self, scheduler: Any):
        super().__init__()
        self.scheduler = scheduler
        self.urgency: dict[MonitorId, Urgency] = {}
        self.mode: dict[MonitorId, str] = {}
        self.held: list[tuple[MonitorId, Check]] = []
        self.checks: list[tuple[MonitorId, float, int]] = []

    def on_receive(self, message: Any) -> Any:
        match message:
            case (MonitorId() as monitor, Check() as check):
                self.checks.append((monitor, check.now, check.seq))
                mode = self.mode.get(monitor, "answer")
                if mode == "answer":
                    self._answer(monitor, check)
                elif mode == "held":
                    self.held.append((monitor, check))
            case _Release(monitor=monitor):
                keep = []
                for held_monitor, check in self.held:
                    if monitor is None or held_monitor == monitor:
                        self._answer(held_monitor, check)
                    else:
                        keep.append((held_monitor, check))
                self.held = keep
            case _Configure(monitor=monitor, urgency=urgency, mode=mode):
                if urgency is not None:
                    self.urgency[monitor] = urgency
                if mode is not None:
                    self.mode[monitor] = mode
            case _GetChecks():
                return list(self.checks)
            case _Ping():
                return True
        return None

    def _answer(self, monitor: MonitorId, check: Check) -> None:
        self.scheduler.tell(Checked(monitor, check.seq, self.urgency.get(monitor, Urgency.STANDARD), 0.01))


class StubMonitors:
    """Test-side handle."""

    def __init__(self, scheduler: Any):
        self.ref = _StubMonitorPool.start(scheduler)

    def ref_for(self, monitor: MonitorId) -> _Forward:
        return _Forward(monitor, self.ref)

    def configure(self, monitor: MonitorId, urgency: Urgency | None = None, mode: str | None = None) -> None:
        self.ref.tell(_Configure(monitor, urgency, mode))

    def release(self, monitor: MonitorId | None = None) -> None:
        self.ref.tell(_Release(monitor))

    def checks(self) -> list[tuple[MonitorId, float, int]]:
        return self.ref.ask(_GetChecks(), timeout=5)

    def ping(self) -> None:
        self.ref.ask(_Ping(), timeout=5)
