"""`python main.py status`: the monitors and the journal, read from the state database while the
daemon runs (read-only, WAL), without any exchange call.

Each monitor state carries a `summary` object written by its Monitor: side, phase, size,
avg_price, next_tp, stop, urgency, last_check_ms.
"""

from __future__ import annotations

import time
from typing import Any

from actors._store import open_read_only

COLUMNS = ("account", "symbol", "side", "phase", "size", "avg price", "next TP", "stop", "urgency", "last check")


def _age(last_ms: Any, now_ms: int) -> str:
    if not isinstance(last_ms, int) or last_ms <= 0:
        return "-"
    seconds = max(0, (now_ms - last_ms) // 1000)
    return f"{seconds}s ago" if seconds < 120 else f"{seconds // 60}m ago"


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def render(path: str, events: int = 0, now_ms: int | None = None) -> str:
    store = open_read_only(path)
    try:
        now_ms = now_ms if now_ms is not None else time.time_ns() // 1_000_000
        rows = [COLUMNS]
        for monitor, state in sorted(store.load_states().items()):
            s = state.get("summary") or {}
            rows.append((monitor.account, monitor.symbol, *(str(s.get(k) if s.get(k) is not None else "-") for k in
                         ("side", "phase", "size", "avg_price", "next_tp", "stop", "urgency")),
                         _age(s.get("last_check_ms"), now_ms)))
        out = [f"{len(rows) - 1} monitors in {path}", _table(rows)]
        if events:
            out.append("")
            out.append(f"last {events} journal entries:")
            for entry in store.recent_events(events):
                stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(entry.time_ms / 1000))
                detail = " ".join(f"{k}={v}" for k, v in sorted(entry.payload.items()))
                out.append(f"{stamp}  {entry.monitor}  {entry.event}  {detail}".rstrip())
        return "\n".join(out)
    finally:
        store.close()
