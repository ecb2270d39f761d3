"""The state database: SQLite (WAL, synchronous=FULL) with monitor states and an event journal.

Only the Persistence actor writes; `python main.py status` reads through `open_read_only`.
States are orjson-encoded JSON objects (money as decimal strings), never pickle. A database we
cannot trust (not SQLite, truncated, failing integrity_check, foreign tables, undecodable rows)
is moved aside to a timestamped name, never overwritten or deleted; a newer schema refuses.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from messages.models import MonitorId
from messages.notifier import AlertText, QueuedAlert
from messages.persistence import JournalEntry

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: the alerts outbox
SENT_ALERTS_KEPT_MS = 7 * 24 * 3600 * 1000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS monitor_state (
    monitor TEXT PRIMARY KEY, account TEXT NOT NULL, symbol TEXT NOT NULL, position_idx INTEGER NOT NULL,
    state BLOB NOT NULL, schema_version INTEGER NOT NULL, updated_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time_ms INTEGER NOT NULL, account TEXT NOT NULL,
    symbol TEXT NOT NULL, monitor TEXT NOT NULL, event TEXT NOT NULL, payload BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_monitor ON events (monitor, id);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time_ms INTEGER NOT NULL, account TEXT NOT NULL, kind TEXT NOT NULL,
    title TEXT NOT NULL, body TEXT NOT NULL, sent_ms INTEGER);
CREATE INDEX IF NOT EXISTS alerts_unsent ON alerts (sent_ms, id);
"""
_OUR_TABLES = {"meta", "monitor_state", "events", "alerts", "sqlite_sequence"}


class StateError(Exception):
    """The state database cannot be used and must not be touched (e.g. a newer schema)."""


class CorruptState(Exception):
    """The state database is unreadable or not ours; it will be moved aside."""


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__}")


def encode(value: Any) -> bytes:
    return orjson.dumps(value, default=_default, option=orjson.OPT_SORT_KEYS)


class Store:
    def __init__(self, connection: sqlite3.Connection, path: Path):
        self.connection = connection
        self.path = path

    def close(self) -> None:
        self.connection.close()

    def transaction(self) -> sqlite3.Connection:
        """`with store.transaction(): store.put(...)` commits (fsync) or rolls back as a whole."""
        return self.connection

    def put(
        self,
        states: Mapping[MonitorId, Mapping[str, Any]],
        events: Iterable[JournalEntry],
        retired: Iterable[MonitorId],
        now_ms: int,
    ) -> tuple[int, int]:
        """Upsert states, append events, delete retired monitors' states, inside a transaction the
        caller holds. Returns (rows written, bytes written)."""
        rows = 0
        size = 0
        for monitor, state in states.items():
            blob = encode(state)
            self.connection.execute(
                "INSERT INTO monitor_state (monitor, account, symbol, position_idx, state, schema_version,"
                " updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(monitor) DO UPDATE SET"
                " state = excluded.state, schema_version = excluded.schema_version,"
                " updated_ms = excluded.updated_ms",
                (str(monitor), monitor.account, monitor.symbol, monitor.position_idx, blob, SCHEMA_VERSION, now_ms),
            )
            rows += 1
            size += len(blob)
        for entry in events:
            blob = encode(entry.payload)
            self.connection.execute(
                "INSERT INTO events (time_ms, account, symbol, monitor, event, payload) VALUES (?, ?, ?, ?, ?, ?)",
                (entry.time_ms, entry.monitor.account, entry.monitor.symbol, str(entry.monitor), entry.event, blob),
            )
            rows += 1
            size += len(blob)
        for monitor in retired:
            self.connection.execute("DELETE FROM monitor_state WHERE monitor = ?", (str(monitor),))
            rows += 1
        return rows, size

    def put_alerts(self, alerts: Iterable[AlertText], now_ms: int) -> tuple[QueuedAlert, ...]:
        """Queue alerts in the outbox, inside a transaction the caller holds (the one that journals
        the events they report)."""
        queued = []
        for alert in alerts:
            cursor = self.connection.execute(
                "INSERT INTO alerts (time_ms, account, kind, title, body) VALUES (?, ?, ?, ?, ?)",
                (now_ms, alert.account, alert.kind, alert.title, alert.body),
            )
            queued.append(
                QueuedAlert(int(cursor.lastrowid or 0), now_ms, alert.account, alert.kind, alert.title, alert.body)
            )
        return tuple(queued)

    def unsent_alerts(self) -> tuple[QueuedAlert, ...]:
        rows = self.connection.execute(
            "SELECT id, time_ms, account, kind, title, body FROM alerts WHERE sent_ms IS NULL ORDER BY id"
        )
        return tuple(QueuedAlert(*row) for row in rows)

    def mark_sent(self, ids: Iterable[int], now_ms: int) -> None:
        """Mark rows delivered; rows delivered more than a week ago are dropped (the journal keeps
        the events they reported)."""
        with self.transaction():
            self.connection.executemany("UPDATE alerts SET sent_ms = ? WHERE id = ?", [(now_ms, i) for i in ids])
            self.connection.execute("DELETE FROM alerts WHERE sent_ms < ?", (now_ms - SENT_ALERTS_KEPT_MS,))

    def load_states(self) -> dict[MonitorId, dict]:
        states = {}
        for monitor, blob in self.connection.execute("SELECT monitor, state FROM monitor_state"):
            try:
                state = orjson.loads(blob)
                key = MonitorId.parse(monitor)
            except (orjson.JSONDecodeError, ValueError) as exc:
                raise CorruptState(f"state of {monitor!r} cannot be decoded ({exc})") from None
            if not isinstance(state, dict):
                raise CorruptState(f"state of {monitor!r} is not an object")
            states[key] = state
        return states

    def last_events(self) -> dict[MonitorId, JournalEntry]:
        rows = self.connection.execute(
            "SELECT time_ms, monitor, event, payload FROM events WHERE id IN"
            " (SELECT MAX(id) FROM events GROUP BY monitor)"
        )
        return {entry.monitor: entry for entry in map(_entry, rows)}

    def recent_events(self, count: int) -> list[JournalEntry]:
        rows = self.connection.execute(
            "SELECT time_ms, monitor, event, payload FROM events ORDER BY id DESC LIMIT ?", (count,)
        )
        return [_entry(row) for row in rows][::-1]


def _entry(row: tuple) -> JournalEntry:
    time_ms, monitor, event, payload = row
    return JournalEntry(time_ms, MonitorId.parse(monitor), event, orjson.loads(payload))


def _check(connection: sqlite3.Connection) -> None:
    """Raise CorruptState unless this is a sound database of ours (or an empty one)."""
    result = connection.execute("PRAGMA integrity_check").fetchone()
    if not result or result[0] != "ok":
        raise CorruptState(f"integrity_check says {result[0] if result else 'nothing'}")
    tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if tables and "meta" not in tables:
        raise CorruptState(f"not a guardian state database (tables: {', '.join(sorted(tables))})")
    if tables - _OUR_TABLES:
        raise CorruptState(f"unexpected tables {', '.join(sorted(tables - _OUR_TABLES))}")
    if "meta" in tables:
        row = connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row and str(row[0]).isdigit() else None
        if version is None:
            raise CorruptState("no schema version")
        if version > SCHEMA_VERSION:
            raise StateError(
                f"the state database has schema version {version}; this version of the daemon "
                f"understands up to {SCHEMA_VERSION}; refusing to start (use a newer daemon)"
            )


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level="DEFERRED", check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    return connection


def move_aside(path: Path, reason: str, now: float | None = None) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now if now is not None else time.time()))
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    counter = 1
    while target.exists():
        counter += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{counter}")
    os.replace(path, target)
    for suffix in ("-wal", "-shm"):  # the WAL belongs with its database
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.replace(side, target.with_name(target.name + suffix))
    log.error(
        "State database %s is unusable (%s); moved aside to %s; starting from the exchange alone", path, reason, target
    )
    return target


def _inspect(path: Path) -> dict[MonitorId, dict]:
    """Judge an existing file through a read-only connection (opening it for writing would
    already change its header) and load its states."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        _check(connection)
        has_states = connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'monitor_state'"
        ).fetchone()
        return Store(connection, path).load_states() if has_states else {}
    finally:
        connection.close()


def open_store(path: str | Path) -> tuple[Store, dict[MonitorId, dict], Path | None]:
    """Open (or create) the database and load every monitor state. Returns the store, the states
    and where an unusable database was moved (None when it was fine). Raises StateError when the
    database must be left alone (a newer schema)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    states: dict[MonitorId, dict] = {}
    moved = None
    if path.exists():
        try:
            states = _inspect(path)
        except (sqlite3.DatabaseError, CorruptState) as exc:
            moved = move_aside(path, str(exc))
    connection = _connect(path)
    connection.executescript(_SCHEMA)
    # Version 1 databases gain the outbox table above; nothing else changed.
    connection.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    connection.commit()
    return Store(connection, path), states, moved


def open_read_only(path: str | Path) -> Store:
    """For `main.py status`: reads while the daemon writes (WAL), never writes."""
    path = Path(path)
    if not path.exists():
        raise StateError(f"no state database at {path}")
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    try:
        _check(connection)
    except (sqlite3.DatabaseError, CorruptState) as exc:
        connection.close()
        raise StateError(f"the state database {path} is unreadable: {exc}") from None
    return Store(connection, path)
