"""Persistence: durable, batched, crash-safe state in SQLite."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
import threading
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from actors.asks import journal, record
from actors.storage._store import SCHEMA_VERSION, StateError, open_store
from actors.storage.persistence import Persistence
from messages.models import MonitorId
from messages.persistence import GetPersistenceStats, LoadState, PersistenceTick, Record
from runtime.clock import FakeClock

ROOT = Path(__file__).resolve().parents[3]
BTC = MonitorId("main", "BTCUSDT")


def start(path: Path, clock: FakeClock | None = None, flush_interval: float = 30.0):
    store, states, moved = open_store(path)
    clock = clock or FakeClock()
    ref = Persistence.start(
        store, states, clock, flush_interval=flush_interval, moved_aside=str(moved) if moved else None
    )
    return ref, clock


def stats(ref):
    return ref.ask(GetPersistenceStats(), timeout=5)


def rows(path: Path, sql: str) -> list[tuple]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


def test_critical_event_is_readable_from_another_connection_when_record_returns(tmp_path):
    path = tmp_path / "state.db"
    ref, clock = start(path)
    state = {"phase": "PROFIT_TAKING", "stop": Decimal("65078.1")}
    record(
        ref,
        Record(
            BTC, state, (journal(clock.wall_ms(), BTC, "breakeven_moved", trigger=Decimal("65078.1")),), critical=True
        ),
    )
    stored = rows(path, "SELECT state FROM monitor_state")
    assert orjson.loads(stored[0][0]) == {"phase": "PROFIT_TAKING", "stop": "65078.1"}
    events = rows(path, "SELECT monitor, event, payload FROM events")
    assert events == [("main:BTCUSDT:0", "breakeven_moved", b'{"trigger":"65078.1"}')]


def test_a_thousand_non_critical_updates_become_one_row_per_flush(tmp_path):
    path = tmp_path / "state.db"
    ref, clock = start(path)
    for n in range(1000):
        record(ref, Record(BTC, {"size": str(n)}))
    assert stats(ref).rows_written == 0
    ref.tell(PersistenceTick(clock.monotonic() + 10))  # too early: nothing written
    assert stats(ref).rows_written == 0
    ref.tell(PersistenceTick(clock.advance(30)))
    after = stats(ref)
    assert (after.rows_written, after.batched_flushes) == (1, 1)
    assert rows(path, "SELECT state FROM monitor_state") == [(b'{"size":"999"}',)]


def test_fifteen_busy_monitors_for_an_hour_cost_at_most_120_writes(tmp_path):
    ref, clock = start(tmp_path / "state.db")
    monitors = [MonitorId("main", f"S{n}USDT") for n in range(15)]
    for second in range(0, 3600, 2):  # every monitor updates every 2 s
        for monitor in monitors:
            ref.tell(Record(monitor, {"at": second}))
        if second % 30 == 0:
            ref.tell(PersistenceTick(clock.monotonic()))
        clock.advance(2)
    assert stats(ref).batched_flushes <= 120


def test_burst_of_critical_records_is_group_committed(tmp_path):
    path = tmp_path / "state.db"
    ref, _clock = start(path)
    barrier = threading.Barrier(100)

    def send(n: int) -> None:
        monitor = MonitorId("main", f"S{n}USDT")
        barrier.wait()
        record(ref, Record(monitor, {"n": n}, (journal(1, monitor, "tp_filled", level=1),), critical=True))

    threads = [threading.Thread(target=send, args=(n,)) for n in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert rows(path, "SELECT COUNT(*) FROM events") == [(100,)]
    assert rows(path, "SELECT COUNT(*) FROM monitor_state") == [(100,)]
    assert stats(ref).critical_commits < 100


def test_pending_states_are_flushed_on_stop(tmp_path):
    path = tmp_path / "state.db"
    ref, _ = start(path)
    record(ref, Record(BTC, {"size": "1"}))
    ref.stop()
    assert rows(path, "SELECT state FROM monitor_state") == [(b'{"size":"1"}',)]


def test_retire_deletes_the_state_and_journals_the_reason(tmp_path):
    path = tmp_path / "state.db"
    ref, _ = start(path)
    record(ref, Record(BTC, {"size": "1"}, critical=True))
    record(ref, Record(BTC, events=(journal(5, BTC, "closed", reason="stop_loss"),), retire=True))
    assert rows(path, "SELECT COUNT(*) FROM monitor_state") == [(0,)]
    assert rows(path, "SELECT event FROM events") == [("closed",)]


def test_states_and_last_events_load_after_a_restart(tmp_path):
    path = tmp_path / "state.db"
    ref, _ = start(path)
    record(
        ref,
        Record(BTC, {"phase": "MONITORING"}, (journal(1, BTC, "created"), journal(2, BTC, "tp_filled")), critical=True),
    )
    ref.stop()
    ref, _ = start(path)
    loaded = ref.ask(LoadState(), timeout=5)
    assert loaded.states == {BTC: {"phase": "MONITORING"}}
    assert loaded.last_events[BTC].event == "tp_filled" and loaded.moved_aside is None


def test_a_newer_schema_refuses_to_start_and_leaves_the_file_alone(tmp_path):
    path = tmp_path / "state.db"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    connection.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION + 1),))
    connection.commit()
    connection.close()
    before = path.read_bytes()
    with pytest.raises(StateError, match=f"schema version {SCHEMA_VERSION + 1}.*refusing to start"):
        open_store(path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["state.db"]


def _not_sqlite(path: Path) -> None:
    path.write_bytes(b"this is not a database at all, just text" * 100)


def _truncated(path: Path) -> None:
    store, _, _ = open_store(path)
    with store.transaction():
        store.put({MonitorId("main", f"S{n}USDT"): {"pad": "x" * 500} for n in range(200)}, (), (), 1)
    store.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _bad_page(path: Path) -> None:
    store, _, _ = open_store(path)
    with store.transaction():
        store.put({MonitorId("main", f"S{n}USDT"): {"pad": "x" * 500} for n in range(200)}, (), (), 1)
    store.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    data = bytearray(path.read_bytes())
    for offset in range(4096 * 3, 4096 * 3 + 64):  # scribble over a b-tree page header
        data[offset] = 0xFF
    path.write_bytes(bytes(data))


def _undecodable_row(path: Path) -> None:
    store, _, _ = open_store(path)
    store.connection.execute(
        "INSERT INTO monitor_state VALUES ('main:BTCUSDT:0', 'main', 'BTCUSDT', 0, ?, 1, 1)", (b"\x80\x04pickled?",)
    )
    store.connection.commit()
    store.close()


def _foreign(path: Path) -> None:
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE trades (id INTEGER PRIMARY KEY, pair TEXT)")
    connection.commit()
    connection.close()


@pytest.mark.parametrize(
    "spoil",
    [_not_sqlite, _truncated, _bad_page, _undecodable_row, _foreign],
    ids=["not-sqlite", "truncated", "bad-page", "undecodable-row", "foreign"],
)
def test_an_unusable_database_is_moved_aside_and_reported(tmp_path, caplog, spoil):
    path = tmp_path / "state.db"
    spoil(path)
    original = path.read_bytes()
    caplog.set_level(logging.ERROR)
    store, states, moved = open_store(path)
    store.close()
    assert states == {} and moved is not None and moved.name.startswith("state.db.corrupt-")
    assert moved.read_bytes() == original  # kept for forensics, never rewritten
    assert any(str(moved) in r.getMessage() and "moved aside" in r.getMessage() for r in caplog.records)
    reopened, _, again = open_store(path)  # the fresh database is sound
    reopened.close()
    assert again is None


def test_flush_line_reports_the_batch(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="actors.storage.persistence")
    ref, clock = start(tmp_path / "state.db")
    record(ref, Record(MonitorId("main", "AUSDT"), {"x": 1}))
    record(ref, Record(MonitorId("main", "BUSDT"), {"x": 1}, critical=True))
    ref.tell(PersistenceTick(clock.advance(30)))
    stats(ref)
    lines = [r.getMessage() for r in caplog.records if r.name == "actors.storage.persistence"]
    assert len(lines) == 1
    assert lines[0].startswith(
        "Persistence: flushed 1 monitors (batched), 1 critical commits in the last 30s, commit p99 "
    )


def test_status_prints_monitors_and_events_while_the_daemon_writes(tmp_path):
    path = tmp_path / "state.db"
    ref, clock = start(path)
    summary = {
        "side": "Buy",
        "phase": "PROFIT_TAKING",
        "size": "0.004",
        "avg_price": "65000",
        "next_tp": "67000",
        "stop": "65078",
        "urgency": "active",
        "last_check_ms": clock.wall_ms(),
    }
    record(
        ref, Record(BTC, {"summary": summary}, (journal(clock.wall_ms(), BTC, "tp_filled", level=1),), critical=True)
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BYBIT")} | {
        "STATE_PATH": str(path),
        "METRICS_ADDRESS": "",
    }
    result = subprocess.run(
        [sys.executable, "main.py", "status", "--events", "5"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"1 monitors in {path}"
    assert lines[1].split() == [
        "account",
        "symbol",
        "side",
        "phase",
        "size",
        "avg",
        "price",
        "next",
        "TP",
        "stop",
        "urgency",
        "last",
        "check",
    ]
    assert lines[2].split()[:9] == [
        "main",
        "BTCUSDT",
        "Buy",
        "PROFIT_TAKING",
        "0.004",
        "65000",
        "67000",
        "65078",
        "active",
    ]
    assert "main:BTCUSDT:0  tp_filled  level=1" in result.stdout
    record(ref, Record(BTC, {"summary": summary}, critical=True))  # the daemon still writes


def test_status_without_a_database_says_so(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BYBIT")} | {
        "STATE_PATH": str(tmp_path / "none.db"),
        "METRICS_ADDRESS": "",
    }
    result = subprocess.run(
        [sys.executable, "main.py", "status"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1 and "no state database" in result.stderr
    assert not (tmp_path / "none.db").exists()


def test_unknown_message_is_logged(tmp_path, caplog):
    ref, _ = start(tmp_path / "state.db")
    ref.tell("nonsense")
    stats(ref)
    assert any("unknown message" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)


@pytest.mark.slow  # a real daemon process, or seconds of real time
def test_sigkill_at_random_moments_loses_no_acknowledged_event(tmp_path):
    import random
    import signal

    path = tmp_path / "state.db"
    rng = random.Random(20)
    acknowledged: set[int] = set()
    first = 0
    for _ in range(20):
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "kill_writer.py"), str(path), str(first)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(rng.randint(1, 60)):
            line = process.stdout.readline()
            assert line, process.stderr.read()
            acknowledged.add(int(line))
        process.send_signal(signal.SIGKILL)
        rest, _ = process.communicate(timeout=10)
        acknowledged.update(int(n) for n in rest.split())
        first = max(acknowledged) + 1000
        connection = sqlite3.connect(path)
        try:
            assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            stored = {orjson.loads(p)["n"] for (p,) in connection.execute("SELECT payload FROM events")}
        finally:
            connection.close()
        assert acknowledged <= stored
    assert len(acknowledged) >= 20


def test_the_mid_flush_hook_is_reached_inside_the_flush_before_its_commit(tmp_path):
    """The hook is injected (no environment read inside the daemon); at `mid_flush` the rows are
    written but not committed: another connection still sees none."""
    path = tmp_path / "state.db"
    seen: list[tuple[str, int]] = []

    class Recording:
        def reached(self, point: str) -> None:
            seen.append((point, len(rows(path, "SELECT monitor FROM monitor_state"))))

    store, states, _ = open_store(path)
    clock = FakeClock()
    ref = Persistence.start(store, states, clock, flush_interval=30.0, hooks=Recording())
    for n in range(3):
        record(ref, Record(MonitorId("main", f"S{n}USDT"), {"n": n}))
    ref.tell(PersistenceTick(clock.advance(30)))
    assert stats(ref).batched_flushes == 1
    assert seen == [("mid_flush", 0)]
    assert len(rows(path, "SELECT monitor FROM monitor_state")) == 3
    ref.stop()
