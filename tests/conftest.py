"""Shared fixtures: a started simulator (prices move only when a test says so) and pybit clients
talking to it over real HTTP on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pykka
import pytest
from pybit.unified_trading import HTTP

from simulator import Simulator
from tests.reliability.harness import Rig


def pybit_client(sim: Simulator, account: str = "main", *, timeout: float = 5, **overrides) -> HTTP:
    """A pybit session for one simulator account, with pybit's own retries off (as the gateway
    uses it), pointed at the simulator."""
    creds = sim.credentials[account]
    session = HTTP(
        api_key=overrides.pop("api_key", creds.api_key),
        api_secret=overrides.pop("api_secret", creds.api_secret),
        retry_codes={-1},
        max_retries=1,
        timeout=timeout,
        **overrides,
    )
    session.endpoint = sim.url
    return session


@pytest.fixture
def sim():
    simulator = Simulator(seed=7, symbols=48).start()
    yield simulator
    simulator.stop()


@pytest.fixture
def main_client(sim):
    return pybit_client(sim, "main")


@pytest.fixture(autouse=True)
def _stop_all_actors():
    """No actor outlives its test (Pykka's own test-suite convention)."""
    yield
    pykka.ActorRegistry.stop_all()


@pytest.fixture
def rig(tmp_path: Path, request: Any) -> Iterator[Callable[..., Rig]]:
    """A factory of rigs (not started), each closed at the end; its oracle's figures are
    collected (tests/reliability/conftest.py)."""
    made: list[Rig] = []

    def make(seed: int, **kw: Any) -> Rig:
        made.append(Rig(tmp_path, seed, **kw))
        request.node._rig = made[-1]
        return made[-1]

    yield make
    for r in made:
        r.close()
