"""Collects every scenario's oracle figures; with RELIABILITY_FIGURES=FILE they are written there
(as JSON) at the end of the session, for docs/reliability.md."""

from __future__ import annotations

import os

import orjson
import pytest

FIGURES: dict[str, dict] = {}


@pytest.fixture(autouse=True)
def _figures(request):
    yield
    rig = getattr(request.node, "_rig", None)
    if rig is not None:
        FIGURES[request.node.name] = rig.sim.oracle.report()


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("RELIABILITY_FIGURES")
    if path and FIGURES:
        with open(path, "wb") as handle:
            handle.write(orjson.dumps(FIGURES, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
