"""The persistence form of a monitor's state (orjson-ready dicts, Decimals as strings) and back."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from actors.position.rules._state import (
    Action,
    CloseReason,
    MonitorState,
    Pending,
    Phase,
    Refusal,
)
from actors.position.rules._urgency import summary
from messages.models import (
    Approach,
    Intent,
    MonitorId,
    Plan,
    Side,
    StopAfter,
    TriggerBy,
    Urgency,
)


def stored(state: MonitorState) -> dict[str, Any]:
    """What Persistence keeps for a monitor: its state and the summary `status` reads."""
    return {**state_to_dict(state), "summary": summary(state, None)}


def state_to_dict(state: MonitorState) -> dict[str, Any]:
    plan = state.plan
    return {
        "monitor": str(state.monitor),
        "position_id": state.position_id,
        "phase": state.phase,
        "created_ms": state.created_ms,
        "plan": {
            "approach": plan.approach,
            "side": plan.side,
            "percents": [str(p) for p in plan.percents],
            "tp_prices": [str(p) for p in plan.tp_prices],
            "stop_price": str(plan.stop_price),
            "legs": [str(q) for q in plan.legs],
            "limits": [str(p) for p in plan.limits],
            "stop_after": plan.stop_after,
            "trigger_by": plan.trigger_by,
            "time_limit_seconds": plan.time_limit_seconds,
            "trail_after": plan.trail_after,
            "trail_percent": _text(plan.trail_percent),
        },
        "generations": {str(k): v for k, v in state.generations.items()},
        "pending": {str(k): _pending_to_dict(p) for k, p in state.pending.items()},
        "cleanup": {k: _pending_to_dict(p) for k, p in state.cleanup.items()},
        "filled_tps": sorted(state.filled_tps),
        "filled_entries": sorted(state.filled_entries),
        "removed_tps": sorted(state.removed_tps),
        "cancelled": sorted(state.cancelled),
        "tp1_done": state.tp1_done,
        "breakeven_done": state.breakeven_done,
        "ladder_size": str(state.ladder_size),
        "last_size": str(state.last_size),
        "peak_size": str(state.peak_size),
        "avg_price": str(state.avg_price),
        "open_links": sorted(state.open_links),
        "gone_snapshots": list(state.gone_snapshots),
        "last_snapshot": state.last_snapshot,
        "last_change_ms": state.last_change_ms,
        "last_check_ms": state.last_check_ms,
        "urgency": state.urgency,
        "tp1_fill_ms": state.tp1_fill_ms,
        "opened_ms": state.opened_ms,
        "open_time_ms": state.open_time_ms,
        "successor": state.successor,
        "handover": sorted(state.handover),
        "inherited": sorted(state.inherited),
        "realised_start": _text(state.realised_start),
        "realised_seen": _text(state.realised_seen),
        "closing": state.closing,
        "orphan": state.orphan,
        "retarget": state.retarget,
        "close_requested": state.close_requested,
        "refusal": state.refusal,
        "delisting": state.delisting,
        "entered_ms": state.entered_ms,
        "time_limit_hit": state.time_limit_hit,
        "trail_extreme": _text(state.trail_extreme),
        "trail_last_ms": state.trail_last_ms,
        "trail_stop": _text(state.trail_stop),
        "trailed": state.trailed,
        "refused": {
            str(k): {"code": r.code, "basis": r.basis, "count": r.count, "retry_ms": r.retry_ms}
            for k, r in state.refused.items()
        },
    }


def _pending_to_dict(p: Pending) -> dict[str, Any]:
    return {
        "action": p.action,
        "link_id": p.link_id,
        "qty": _text(p.qty),
        "trigger_price": _text(p.trigger_price),
        "sent_snapshot": p.sent_snapshot,
        "sent_size": str(p.sent_size),
        "absent": p.absent,
        "seen_snapshot": p.seen_snapshot,
        "price": _text(p.price),
    }


def _pending_from_dict(p: dict[str, Any]) -> Pending:
    return Pending(
        Action(p["action"]),
        str(p["link_id"]),
        _dec(p.get("qty")),
        _dec(p.get("trigger_price")),
        int(p.get("sent_snapshot", 0)),
        Decimal(str(p.get("sent_size", "0"))),
        int(p.get("absent", 0)),
        int(p.get("seen_snapshot", 0)),
        _dec(p.get("price")),
    )


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def state_from_dict(data: dict[str, Any]) -> MonitorState:
    """Raises ValueError (or KeyError/TypeError, reported as ValueError) on a malformed state.
    States written before cleanups had their own map kept them in `pending` under `dup:<link>` or
    `close:<link>`: they are read into `cleanup`."""
    try:
        plan = data["plan"]
        pending, cleanup = {}, {k: _pending_from_dict(p) for k, p in data.get("cleanup", {}).items()}
        for key, p in data.get("pending", {}).items():
            kind, _, link_id = str(key).partition(":")
            if link_id and kind in ("dup", "close"):
                cleanup[link_id] = _pending_from_dict(p)
            else:
                pending[Intent.parse(str(key))] = _pending_from_dict(p)
        closing = data.get("closing")
        return MonitorState(
            monitor=MonitorId.parse(data["monitor"]),
            position_id=str(data["position_id"]),
            phase=Phase(data["phase"]),
            created_ms=int(data["created_ms"]),
            plan=Plan(
                Approach(plan["approach"]),
                Side(plan["side"]),
                tuple(Decimal(p) for p in plan["percents"]),
                tuple(Decimal(p) for p in plan["tp_prices"]),
                Decimal(plan["stop_price"]),
                tuple(Decimal(q) for q in plan.get("legs", ())),
                tuple(Decimal(p) for p in plan.get("limits", ())),
                StopAfter(plan["stop_after"]) if plan.get("stop_after") else None,
                TriggerBy(plan["trigger_by"]) if plan.get("trigger_by") else None,
                int(plan.get("time_limit_seconds", 0)),
                plan.get("trail_after"),
                _dec(plan.get("trail_percent")),
            ),
            generations={Intent.parse(str(k)): int(v) for k, v in data.get("generations", {}).items()},
            pending=pending,
            cleanup=cleanup,
            filled_tps=frozenset(int(x) for x in data.get("filled_tps", [])),
            tp1_done=bool(data.get("tp1_done")),
            filled_entries=frozenset(int(x) for x in data.get("filled_entries", [])),
            removed_tps=frozenset(int(x) for x in data.get("removed_tps", [])),
            cancelled=frozenset(str(x) for x in data.get("cancelled", [])),
            opened_ms=int(data.get("opened_ms", 0)),
            open_time_ms=int(data.get("open_time_ms", 0)),
            successor=bool(data.get("successor", False)),
            handover=frozenset(str(x) for x in data.get("handover", [])),
            inherited=frozenset(str(x) for x in data.get("inherited", [])),
            realised_start=_dec(data.get("realised_start")),
            realised_seen=_dec(data.get("realised_seen")),
            breakeven_done=bool(data.get("breakeven_done")),
            ladder_size=Decimal(str(data.get("ladder_size", "0"))),
            last_size=Decimal(str(data.get("last_size", "0"))),
            peak_size=Decimal(str(data.get("peak_size", "0"))),
            avg_price=Decimal(str(data.get("avg_price", "0"))),
            open_links=frozenset(data.get("open_links", [])),
            gone_snapshots=tuple(int(x) for x in data.get("gone_snapshots", [])),
            last_snapshot=int(data.get("last_snapshot", 0)),
            last_change_ms=int(data.get("last_change_ms", 0)),
            last_check_ms=int(data.get("last_check_ms", 0)),
            tp1_fill_ms=int(data.get("tp1_fill_ms", 0)),
            urgency=Urgency(data.get("urgency", "critical")),
            closing=CloseReason(closing) if closing else None,
            orphan=bool(data.get("orphan", False)),
            retarget=bool(data.get("retarget", False)),
            close_requested=bool(data.get("close_requested", False)),
            refusal=str(data.get("refusal", "")),
            delisting=bool(data.get("delisting", False)),
            entered_ms=int(data.get("entered_ms", 0)),
            time_limit_hit=bool(data.get("time_limit_hit", False)),
            trail_extreme=_dec(data.get("trail_extreme")),
            trail_last_ms=int(data.get("trail_last_ms", 0)),
            trail_stop=_dec(data.get("trail_stop")),
            trailed=bool(data.get("trailed", False)),
            refused={
                Intent.parse(str(k)): Refusal(int(r["code"]), str(r["basis"]), int(r["count"]), int(r["retry_ms"]))
                for k, r in data.get("refused", {}).items()
            },
        )
    except (KeyError, TypeError, ArithmeticError) as exc:
        raise ValueError(f"malformed monitor state: {exc!r}") from None
