"""The instrument rules (tick size, qty step, min qty, status) of every linear contract: read at start
and every `INSTRUMENTS_REFRESH_SECONDS` (a contract leaving `Trading` is seen that soon: R19), page by
page; a failed read is tried again soon, since monitors cannot act without them."""

from __future__ import annotations

import logging
from typing import Any

from actors.exchange._formats import HttpFail, HttpOk
from messages.models import Instrument, ModelError

log = logging.getLogger(__name__)

RETRY_S = 2.0


class InstrumentBook:
    def __init__(self, read_every: float = 300.0) -> None:
        self._by_symbol: dict[str, Instrument] = {}
        self._read_every = read_every
        self._read_at = -read_every
        self._reading = False
        self._changed: set[str] = set()  # symbols whose status changed since the last take

    def get(self, symbol: str) -> Instrument | None:
        return self._by_symbol.get(symbol)

    def due(self, now: float) -> bool:
        return now - self._read_at >= self._read_every

    def begin(self) -> bool:
        """Start a read unless one is under way."""
        if self._reading:
            return False
        self._reading = True
        return True

    def take_changed(self) -> set[str]:
        """Symbols whose status or delivery time changed since last asked (their monitors are woken)."""
        changed, self._changed = self._changed, set()
        return changed

    @staticmethod
    def request(cursor: str | None) -> dict[str, Any]:
        return {"category": "linear", "limit": 1000, **({"cursor": cursor} if cursor else {})}

    def on_page(self, result: HttpOk | HttpFail, now: float) -> str | None:
        """Take one page; the cursor of the next page to read, or None when done (or failed)."""
        if isinstance(result, HttpFail):
            log.warning("Gateway: instrument rules could not be read (%s); retrying", result.message)
            self._reading = False
            self._read_at = now - self._read_every + RETRY_S
            return None
        body = result.body.get("result") or {}
        for row in body.get("list") or []:
            try:
                instrument = Instrument.from_v5(row)
            except ModelError as exc:
                log.warning("Gateway: instrument row rejected: %s", exc)
                continue
            known = self._by_symbol.get(instrument.symbol)
            if known is not None and (known.status, known.delivery_ms) != (instrument.status, instrument.delivery_ms):
                self._changed.add(instrument.symbol)
            self._by_symbol[instrument.symbol] = instrument
        cursor = body.get("nextPageCursor")
        if cursor and body.get("list"):
            return str(cursor)
        self._reading = False
        self._read_at = now
        return None
