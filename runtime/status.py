"""`python main.py status [--json] [--events N]`: the monitors, from the running daemon when it
answers on METRICS_ADDRESS (live: tier, due in, last check, unprotected time, API calls a minute),
else from the state database (read-only, WAL). No exchange call either way.

Each stored monitor state carries a `summary` object written by its monitor: side, phase, size,
avg_price, next_tp, stop, urgency, last_check_ms.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from typing import Any

import orjson

from actors.storage import open_read_only

LIVE_TIMEOUT_S = 2.0
STORED_KEYS = ("side", "phase", "size", "avg_price", "next_tp", "stop", "urgency")
STORED_COLUMNS = ("account", "symbol", "side", "phase", "size", "avg price", "next TP", "stop", "urgency", "last check")
LIVE_COLUMNS = ("account", "symbol", "side", "phase", "size", "tier", "due in", "last check", "unprotected")


def live(bind: tuple[str, int] | None) -> dict[str, Any] | None:
    """The running daemon's `/status`, or None when no daemon answers there."""
    if bind is None or bind[1] == 0:
        return None
    host = "127.0.0.1" if bind[0] in ("", "0.0.0.0") else "::1" if bind[0] == "::" else bind[0]
    url = f"http://{host if ':' not in host else f'[{host}]'}:{bind[1]}/status"
    try:
        with urllib.request.urlopen(url, timeout=LIVE_TIMEOUT_S) as answer:
            report = orjson.loads(answer.read())
    except (urllib.error.URLError, OSError, orjson.JSONDecodeError):
        return None
    return {"source": "live", "url": url, **report} if isinstance(report, dict) else None


def from_database(path: str, events: int = 0, now_ms: int | None = None) -> dict[str, Any]:
    """Raises StateError when there is no readable database at `path`."""
    store = open_read_only(path)
    try:
        now_ms = now_ms if now_ms is not None else time.time_ns() // 1_000_000
        monitors = []
        for monitor, state in sorted(store.load_states().items()):
            summary = state.get("summary") or {}
            last = summary.get("last_check_ms")
            monitors.append(
                {
                    "account": monitor.account,
                    "symbol": monitor.symbol,
                    "position_idx": monitor.position_idx,
                    **{k: summary.get(k) for k in STORED_KEYS},
                    "last_check_age_s": (now_ms - last) / 1000 if isinstance(last, int) and last > 0 else None,
                }
            )
        return {
            "source": "database",
            "path": path,
            "monitors": monitors,
            "events": _entries(store, events) if events else [],
        }
    finally:
        store.close()


def journal(path: str, count: int) -> list[dict[str, Any]]:
    """The last `count` journal entries, or none when the database cannot be read."""
    try:
        store = open_read_only(path)
    except Exception:
        return []
    try:
        return _entries(store, count)
    finally:
        store.close()


def _entries(store: Any, count: int) -> list[dict[str, Any]]:
    return [
        {"time_ms": e.time_ms, "monitor": str(e.monitor), "event": e.event, **e.payload}
        for e in store.recent_events(count)
    ]


def render(report: dict[str, Any]) -> str:
    monitors = report["monitors"]
    if report["source"] == "live":
        rows = [LIVE_COLUMNS] + [
            (
                m["account"],
                m["symbol"],
                m["side"],
                m["phase"],
                m["size"],
                m["tier"],
                _seconds(m["due_in_s"]),
                _ago(m["last_check_age_s"]),
                _seconds(m["unprotected_s"]),
            )
            for m in monitors
        ]
        health = "healthy" if report["healthy"] else "UNHEALTHY"
        out = [f"{len(monitors)} monitors, live from {report['url']} ({health}: {report['health']})"]
        out += [
            f"{name}: last read {_ago(a['last_read_age_s'])}, {a['api_calls_last_minute']} API calls in the last minute"
            for name, a in report["accounts"].items()
        ]
    else:
        rows = [STORED_COLUMNS] + [
            (m["account"], m["symbol"], *(_text(m[k]) for k in STORED_KEYS), _ago(m["last_check_age_s"]))
            for m in monitors
        ]
        out = [f"{len(monitors)} monitors in {report['path']}"]
    out.append(_table(rows))
    if report.get("events"):
        out += ["", f"last {len(report['events'])} journal entries:"]
        for entry in report["events"]:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(entry["time_ms"] / 1000))
            detail = " ".join(f"{k}={v}" for k, v in sorted(entry.items()) if k not in ("time_ms", "monitor", "event"))
            out.append(f"{stamp}  {entry['monitor']}  {entry['event']}  {detail}".rstrip())
    return "\n".join(out)


def _text(value: Any) -> str:
    return "-" if value is None else str(value)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.0f}s ago" if seconds < 120 else f"{seconds // 60:.0f}m ago"


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip() for row in rows
    )
