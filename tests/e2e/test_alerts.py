"""Alerts end to end: the daemon as a subprocess, real Apprise, a loopback chat service."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from decimal import Decimal

import orjson
import pytest

from actors.alerts import AlertRules
from messages.models import MonitorId, OrderLink, Role
from messages.persistence import JournalEntry
from tests.e2e.harness import wait_until
from tests.e2e.harness import world as e2e_world
from tests.e2e.test_daemon import entry_of, push_price
from tests.stubs.receiver import Receiver

pytestmark = pytest.mark.slow


@pytest.fixture
def world(tmp_path):
    receiver = Receiver()
    try:
        with e2e_world(tmp_path, seed=31, positions=10, ALERT_URLS=receiver.url) as (sim, book, daemon):
            yield sim, book, daemon, receiver
    finally:
        receiver.close()


def delivered_titles(receiver: Receiver) -> list[str]:
    """Every alert delivered, in order: a listing message names one alert per line."""
    titles = []
    for message in receiver.received():
        if message["title"].endswith(" alerts"):
            titles += [line.split(" — ")[0] for line in message["message"].splitlines()]
        else:
            titles.append(message["title"])
    return titles


def journal_titles(state_path) -> list[str]:
    connection = sqlite3.connect(state_path)
    rows = connection.execute("SELECT time_ms, monitor, event, payload FROM events ORDER BY id").fetchall()
    connection.close()
    rules = AlertRules()
    alerts = [rules.alert_for(JournalEntry(t, MonitorId.parse(m), e, orjson.loads(p))) for t, m, e, p in rows]
    return [a.title for a in alerts if a is not None]


def test_every_alert_of_a_run_arrives_in_order_as_the_journal_calls_for(world, tmp_path):
    sim, book, daemon, receiver = world
    d = daemon().start()
    near = entry_of(book, "tp1_near")
    # Fills before a monitor takes charge are not news: fill TP1 once it watches the position.
    d.wait_for(lambda m: m.startswith(f"MONITOR STARTED main:{near.symbol}"), 10, "the monitor in charge")
    tp1 = sim.account("main").by_link[OrderLink(near.position_id, Role.TAKE_PROFIT, 1, 0).build()]
    push_price(sim, near, str(abs(tp1.price / sim.exchange.last_price(near.symbol) - 1) + Decimal("0.001")))
    wait_until(
        lambda: any(t.endswith("STOP AT BREAKEVEN") for t in delivered_titles(receiver)), 30, "the breakeven alert"
    )
    assert d.stop() == 0
    expected = journal_titles(tmp_path / "state.db")
    assert expected[0] == "GUARDIAN STARTED" and expected[-1] == "GUARDIAN STOPPED"
    assert f"MAIN {near.symbol} {near.side}: TP1 FILLED" in expected
    assert delivered_titles(receiver) == expected


def test_a_sigkill_between_the_commit_and_the_send_delivers_after_the_restart(world, tmp_path):
    _sim, _book, daemon, receiver = world
    first = daemon(GUARDIAN_KILL_AT="alert_queued:1").start()
    first.process.wait(timeout=30)
    assert first.process.returncode == -signal.SIGKILL
    assert receiver.received() == []  # killed before anything was sent
    connection = sqlite3.connect(tmp_path / "state.db")
    unsent = connection.execute("SELECT title FROM alerts WHERE sent_ms IS NULL").fetchall()
    connection.close()
    assert unsent == [("GUARDIAN STARTED",)]
    second = daemon().start()
    wait_until(lambda: delivered_titles(receiver).count("GUARDIAN STARTED") == 2, 20, "both start alerts")
    assert second.stop() == 0


def test_a_hanging_chat_service_delays_no_check_and_everything_arrives_afterwards(world):
    sim, book, daemon, receiver = world
    receiver.mode, receiver.hang_seconds = "hang", 20
    d = daemon(BYBIT_STREAMS="false").start()  # tier waves (REST polling) are the visible pulse here
    wait_until(lambda: receiver.attempts >= 1, 10, "the first send to hang")
    waves_before = sum(m.startswith("Processed ") for m in d.messages())
    near = entry_of(book, "tp1_near", account="mirror")
    d.wait_for(lambda m: m.startswith(f"MONITOR STARTED mirror:{near.symbol}"), 10, "the monitor in charge")
    tp1 = sim.account("mirror").by_link[OrderLink(near.position_id, Role.TAKE_PROFIT, 1, 0).build()]
    push_price(sim, near, str(abs(tp1.price / sim.exchange.last_price(near.symbol) - 1) + Decimal("0.001")))
    d.wait_for(lambda m: m.startswith(f"BREAKEVEN mirror:{near.symbol}"), 20, "breakeven while alerts hang")
    wait_until(
        lambda: sum(m.startswith("Processed ") for m in d.messages()) > waves_before + 3,
        15,
        "waves of checks going on while the chat service hangs",
    )
    assert not any(t.endswith("STOP AT BREAKEVEN") for t in delivered_titles(receiver))
    receiver.mode = "ok"
    receiver.release.set()
    wait_until(
        lambda: any(t == f"MIRROR {near.symbol} {near.side}: STOP AT BREAKEVEN" for t in delivered_titles(receiver)),
        60,
        "the alerts after the service is back",
    )
    assert delivered_titles(receiver)[0] == "GUARDIAN STARTED"
    assert d.stop() == 0


def test_the_demo_delivers_its_take_profit_and_breakeven_alerts(tmp_path):
    receiver = Receiver()
    try:
        from tests.test_processes import MAIN, clean_env

        result = subprocess.run(
            # The demo's seeded prices cross a TP1 about 2.5 s after the start, every run.
            [sys.executable, MAIN, "--duration", "12"],
            cwd=tmp_path,
            env=clean_env(ALERT_URLS=receiver.url),
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        titles = delivered_titles(receiver)
    finally:
        receiver.close()
    assert titles[0] == "GUARDIAN STARTED" and titles[-1] == "GUARDIAN STOPPED"
    assert any(": TP1 FILLED" in t for t in titles) and any(t.endswith(": STOP AT BREAKEVEN") for t in titles)
