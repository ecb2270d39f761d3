"""What the trader is told, as pure functions: which journal entries become alerts and how they
read (`alert_for`), and how waiting alerts become messages (`compose`: one alert alone, a burst as
one list, alerts that waited too long as one digest).

Every alert names the account (MAIN / MIRROR), the symbol and the side. P&L figures are the
exchange's own (the position's cumRealisedPnl, fees included), never estimated from a price.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from messages.notifier import AlertText, QueuedAlert
from messages.persistence import DAEMON, JournalEntry

PER_MESSAGE = 20  # alerts listed in one message (a burst becomes a few messages)
DIGEST_LISTED = 40  # lines of a digest; the rest are counted


def _money(value: Any) -> str:
    if value is None:
        return "not known yet"
    amount = Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return f"{'+' if amount > 0 else ''}{amount} USDT"


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, int) or seconds < 0:
        return "unknown"
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h {rest // 60}m" if hours else f"{rest // 60}m {rest % 60}s"


def _entry_filled(p: Mapping[str, Any]) -> tuple[str, str]:
    return (
        "ENTRY FILLED",
        f"Limit {p.get('level_filled')} filled: {p.get('qty')} at {p.get('price')}. Size now {p.get('size')}.",
    )


def _tp_filled(p: Mapping[str, Any]) -> tuple[str, str]:
    return (
        f"TP{p.get('level_filled')} FILLED",
        (
            f"{p.get('qty')} at {p.get('price')}. Realised P&L (exchange): "
            f"{_money(p.get('realised_pnl'))}. Remaining size {p.get('remaining')}."
        ),
    )


def _breakeven(p: Mapping[str, Any]) -> tuple[str, str]:
    return "STOP AT BREAKEVEN", f"Stop moved to {p.get('trigger')} for {p.get('qty')} (entry plus fees)."


def _stop_hit(p: Mapping[str, Any]) -> tuple[str, str]:
    return "STOP HIT", f"The stop closed the position. Realised P&L (exchange): {_money(p.get('realised_pnl'))}."


def _closed(p: Mapping[str, Any]) -> tuple[str, str]:
    return (
        f"POSITION CLOSED ({p.get('reason')})",
        (
            f"Realised P&L (exchange): {_money(p.get('realised_pnl'))}. "
            f"Open for {_duration(p.get('duration_s'))}. Take-profits hit: {p.get('tps_hit')}/{p.get('tps')}."
        ),
    )


def _entry_refused(p: Mapping[str, Any]) -> tuple[str, str]:
    return "ENTRY REFUSED", f"Bybit refused the trade's first entry ({p.get('code')}): nothing was opened."


def _emergency(p: Mapping[str, Any]) -> tuple[str, str]:
    return "EMERGENCY CLOSE", f"The stop's trigger was already crossed: closing {p.get('qty')} at market."


def _unprotected(p: Mapping[str, Any]) -> tuple[str, str]:
    return "UNPROTECTED", (
        f"No live stop on an open position of {p.get('size')} for {p.get('seconds')}s, and the "
        "guardian cannot or may not place one. Protect it by hand."
    )


def _unreadable(p: Mapping[str, Any]) -> tuple[str, str]:
    return "ACCOUNT UNREADABLE", (
        f"No good data for {p.get('seconds')}s ({p.get('reason')}): positions on this account "
        "are not being adjusted until it can be read again."
    )


def _readable(p: Mapping[str, Any]) -> tuple[str, str]:
    return "ACCOUNT READABLE AGAIN", "Reads work again; guarding resumes."


def _started(p: Mapping[str, Any]) -> tuple[str, str]:
    return "GUARDIAN STARTED", f"Guarding {p.get('monitors')} positions on {', '.join(p.get('accounts') or [])}."


def _stopped(p: Mapping[str, Any]) -> tuple[str, str]:
    return "GUARDIAN STOPPED", "The guardian stopped: positions are not guarded until it runs again."


def _tp_blocked(p: Mapping[str, Any]) -> tuple[str, str]:
    level = p.get("level_blocked")
    body = (
        f"The exchange refused take-profit {level} ({p.get('code')}): reduce-only orders the guardian does not "
        "own leave no room for it. It is placed again once they or the position change; the stop still covers "
        "the whole position."
    )
    return f"TP{level} BLOCKED", body


def _tp_removed(p: Mapping[str, Any]) -> tuple[str, str]:
    level = p.get("level_removed")
    body = f"Take-profit {level} was cancelled by hand: it leaves the plan, and the stop keeps covering its share."
    return f"TP{level} REMOVED", body


def _delisting(p: Mapping[str, Any]) -> tuple[str, str]:
    body = (
        f"The contract is {p.get('status')} (delivery {p.get('delivery')}): the stop stays, no new entry is placed, "
        "and the position is closed as delivered when the exchange settles it."
    )
    return "DELISTING", body


def _trail_active(p: Mapping[str, Any]) -> tuple[str, str]:
    return "TRAIL ACTIVE", f"The stop now trails {p.get('distance')} % behind the best price (from {p.get('price')})."


RENDERERS: dict[str, Callable[[Mapping[str, Any]], tuple[str, str]]] = {
    "entry_filled": _entry_filled,
    "tp_filled": _tp_filled,
    "breakeven": _breakeven,
    "stop_hit": _stop_hit,
    "position_closed": _closed,
    "emergency_close": _emergency,
    "unprotected": _unprotected,
    "entry_refused": _entry_refused,
    "tp_blocked": _tp_blocked,
    "tp_removed": _tp_removed,
    "delisting": _delisting,
    "trail_active": _trail_active,
    "account_unreadable": _unreadable,
    "account_readable": _readable,
    "daemon_started": _started,
    "daemon_stopped": _stopped,
}


@dataclass(frozen=True, slots=True)
class AlertRules:
    silenced: frozenset[str] = frozenset()  # accounts whose alerts are off (ENABLE_MIRROR_ALERTS, the accounts file)

    def alert_for(self, entry: JournalEntry) -> AlertText | None:
        render = RENDERERS.get(entry.event)
        account = entry.monitor.account
        if (
            render is None
            or account in self.silenced
            or entry.payload.get("before_watch")
            or entry.payload.get("reason") == "entry_refused"
        ):  # told as ENTRY REFUSED: nothing was open
            return None
        title, body = render(entry.payload)
        if entry.monitor == DAEMON:
            return AlertText(account, entry.event, title, body)
        subject = (
            account.upper()
            if entry.monitor.symbol == "-"
            else f"{account.upper()} {entry.monitor.symbol} {entry.payload.get('side') or ''}".rstrip()
        )
        return AlertText(account, entry.event, f"{subject}: {title}", body)


@dataclass(frozen=True, slots=True)
class Message:
    ids: tuple[int, ...]
    title: str
    body: str


def compose(waiting: list[QueuedAlert], now_ms: int, max_age_ms: int) -> Message | None:
    """The next message for the alerts waiting, oldest first: alerts older than `max_age_ms` as
    one digest; else one alert alone, or up to PER_MESSAGE listed in one message."""
    if not waiting:
        return None
    old = [a for a in waiting if now_ms - a.time_ms > max_age_ms]
    if old:
        lines = [f"{_stamp(a.time_ms)}  {a.title} — {a.body}" for a in old[:DIGEST_LISTED]]
        if len(old) > DIGEST_LISTED:
            lines.append(f"... and {len(old) - DIGEST_LISTED} more (main.py status --events shows the journal)")
        return Message(
            tuple(a.id for a in old),
            f"Digest: {len(old)} alerts delayed since {_stamp(old[0].time_ms)}",
            "\n".join(lines),
        )
    batch = waiting[:PER_MESSAGE]
    if len(batch) == 1:
        return Message((batch[0].id,), batch[0].title, batch[0].body)
    return Message(
        tuple(a.id for a in batch), f"{len(batch)} alerts", "\n".join(f"{a.title} — {a.body}" for a in batch)
    )


def _stamp(time_ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(time_ms / 1000))
