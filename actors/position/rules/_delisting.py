"""R19: an instrument leaving `Trading` (delivery, delisting): told once, the stop stays, no new
entry; once the exchange settles it, the position closes with reason `delivery`."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime

from actors.position.rules._orders import OwnOrders
from actors.position.rules._state import SETTLE_CANCEL, Event, EventKind, MonitorState, new_event
from messages.models import Instrument


def delisting(state: MonitorState, instrument: Instrument | None) -> tuple[MonitorState, list[Event]]:
    """The first view whose instrument is no longer `Trading` marks the monitor and tells it once."""
    if state.delisting or instrument is None or instrument.trading:
        return state, []
    when = (
        datetime.fromtimestamp(instrument.delivery_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
        if instrument.delivery_ms
        else "not announced"
    )
    event = new_event(
        EventKind.DELISTING,
        f"DELISTING {state.monitor}: {instrument.symbol} is {instrument.status} (delivery {when}); "
        "the stop stays, no new entry is placed",
        level=logging.WARNING,
        status=instrument.status,
        delivery=when,
    )
    return replace(state, delisting=True), [event]


def delivered(closed: OwnOrders, instrument: Instrument | None) -> bool:
    """Did the exchange settle the position (its orders cancelled by the settlement, or the
    instrument closed)?"""
    settled = any(o.cancel_type == SETTLE_CANCEL for orders in closed.values() for o in orders)
    return settled or (instrument is not None and instrument.status == "Closed")
