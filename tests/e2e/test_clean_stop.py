"""A clean stop logs no error: the whole actor system in-process against a simulator, stopped
while a wave of checks is in flight, twenty times."""

from __future__ import annotations

import logging
import threading

import pykka
import pytest

from messages.scheduler import GetSchedule
from runtime.hooks import NO_HOOKS
from runtime.system import System
from settings import Settings
from simulator import Simulator
from tests.e2e.harness import wait_until


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name}: {record.getMessage()}")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_stopping_mid_wave_twenty_times_logs_no_error(tmp_path):
    errors = _Errors()
    logging.getLogger().addHandler(errors)
    sim = Simulator(seed=7, symbols=40, latency_ms=5)
    sim.load_demo_book(16)
    sim.start(step_interval=0.25)
    accounts = {name: (c.api_key, c.api_secret) for name, c in sim.credentials.items()}
    stopped_mid_wave = 0
    try:
        for _ in range(20):
            settings = Settings(state_path=str(tmp_path / "state.db"), http_timeout_seconds=2)
            system = System(settings, accounts, sim.url, hooks=NO_HOOKS)
            assert system.start(threading.Event())
            in_flight = wait_until(
                lambda: system.scheduler.ask(GetSchedule(), timeout=5).in_flight,
                10,
                "a wave of checks in flight",
                interval=0.005,
            )
            stopped_mid_wave += bool(in_flight)
            system.stop()
            assert pykka.ActorRegistry.get_all() == []
    finally:
        logging.getLogger().removeHandler(errors)
        sim.stop()
    assert stopped_mid_wave == 20
    assert errors.lines == []
