"""The reliability oracle: invariants checked on the exchange's own state, continuously.

- protected: every open position has a live stop of the daemon's (or any reduce-only conditional
  order on the closing side) covering its size; the longest unprotected time is recorded per
  position, and an unprotected position that ended in an emergency close or was never protected
  since start is noted;
- no duplicates: at most one live daemon order per intent (position id, role, level) at any time,
  and never two accepted creates of one orderLinkId;
- no orphans: after a position closes, every daemon order of it is gone within some time (the
  longest clean-up is recorded, orphans still alive at the end are counted);
- never oversized: active reduce-only orders never exceed the position; the daemon's stop not
  longer than `stop_grace_s` above the position once no daemon entry rests;
- never a foreign order: no order without the daemon's prefix was amended or cancelled through
  the API (the trader acts out of band, so every API client here is the daemon);
- never the wrong position (R11): no emergency close of the daemon's reaches a position other
  than the one its position id first guarded (a re-entry the old monitor took for its own);
- rates: 10006 and 403 answers (from the simulator's stats).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from messages.models import OrderLink, Role
from simulator.exchange import Exchange


@dataclass
class _Tracked:
    unprotected_since: float | None = None
    closed_at: float | None = None
    oversize_since: float | None = None


@dataclass
class Oracle:
    exchange: Exchange
    stats: Callable[[], dict[str, Any]]
    stop_grace_s: float = 5.0
    started: float = field(default_factory=time.monotonic)
    longest_unprotected: dict[str, float] = field(default_factory=dict)
    longest_cleanup: float = 0.0
    longest_oversize_stop: float = 0.0
    duplicate_live: int = 0
    oversized_active: int = 0
    observations: int = 0
    _tracked: dict[tuple[str, str, int], _Tracked] = field(default_factory=dict)
    _duplicates_seen: set = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def observe(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock, self.exchange.lock:
            self.observations += 1
            for name, account in self.exchange.accounts.items():
                # Each position on its own: (symbol, positionIdx), so hedge legs are judged apart.
                keys = {(o.symbol, o.position_idx) for by_id in account.open_by_symbol.values() for o in by_id.values()}
                keys |= {(p.symbol, p.position_idx) for p in account.all_positions() if p.size > 0}
                keys |= {(s, i) for (a, s, i) in self._tracked if a == name}
                for symbol, idx in keys:
                    self._observe_position(name, account, symbol, idx, now)

    def _observe_position(self, name: str, account: Any, symbol: str, idx: int, now: float) -> None:
        key = (name, symbol, idx)
        tracked = self._tracked.setdefault(key, _Tracked())
        position = account.position(symbol, idx)
        size = position.size if position else Decimal(0)
        orders = account.open_orders(symbol, idx)
        ours = [(o, OrderLink.parse(o.link_id)) for o in orders]
        ours = [(o, link) for o, link in ours if link is not None]
        # Duplicates: one live order per intent.
        intents = Counter((link.position_id, link.intent) for _, link in ours)
        for intent, count in intents.items():
            if count > 1 and (key, intent) not in self._duplicates_seen:
                self._duplicates_seen.add((key, intent))
                self.duplicate_live += 1
        closing = {"Buy": "Sell", "Sell": "Buy"}.get(position.side if position else "", "")
        if size > 0:
            tracked.closed_at = None
            stops = [
                o
                for o in orders
                if o.is_conditional and o.reduce_only and o.side == closing and o.status == "Untriggered"
            ]
            if any(o.qty >= size for o in stops):
                self._end_unprotected(key, tracked, now)
            elif tracked.unprotected_since is None:
                tracked.unprotected_since = now
            else:
                self._record_unprotected(key, now - tracked.unprotected_since)
            active = sum((o.leaves for o in orders if o.is_active_reduce_only), Decimal(0))
            if active > size:
                self.oversized_active += 1
            entries_rest = any(link.role is Role.ENTRY and o.status in ("New", "PartiallyFilled") for o, link in ours)
            our_stops = [o for o, link in ours if link.role is Role.STOP and o.status == "Untriggered"]
            if not entries_rest and any(o.qty > size for o in our_stops):
                tracked.oversize_since = tracked.oversize_since if tracked.oversize_since is not None else now
                self.longest_oversize_stop = max(self.longest_oversize_stop, now - tracked.oversize_since)
            else:
                tracked.oversize_since = None
        else:
            self._end_unprotected(key, tracked, now)
            tracked.oversize_since = None
            if ours:
                if tracked.closed_at is None:
                    tracked.closed_at = now
                self.longest_cleanup = max(self.longest_cleanup, now - tracked.closed_at)
            else:
                tracked.closed_at = None

    def _record_unprotected(self, key: tuple[str, str, int], seconds: float) -> None:
        label = f"{key[0]}:{key[1]}" + (f":{key[2]}" if key[2] else "")
        self.longest_unprotected[label] = max(self.longest_unprotected.get(label, 0.0), seconds)

    def _end_unprotected(self, key: tuple[str, str, int], tracked: _Tracked, now: float) -> None:
        if tracked.unprotected_since is not None:
            self._record_unprotected(key, now - tracked.unprotected_since)
        tracked.unprotected_since = None

    def orphaned(self) -> list[tuple[str, str]]:
        """(account, symbol) of every closed position whose daemon orders are still open."""
        with self._lock:
            return sorted((a, s) for (a, s, _), t in self._tracked.items() if t.closed_at is not None)

    def _closes_of_another_position(self) -> int:
        """Emergency closes (role X) sent while a position other than their position id's own
        was open: each position id is bound to the openTime its first other order met."""
        count = 0
        for account in self.exchange.accounts.values():
            bound: dict[str, int] = {}
            closes = []
            for order in sorted(account.orders.values(), key=lambda o: o.seq):
                link = OrderLink.parse(order.link_id)
                if link is None or not order.position_opened_ms:
                    continue
                if link.role is Role.EMERGENCY_CLOSE:
                    closes.append((link.position_id, order.position_opened_ms))
                else:
                    bound.setdefault(link.position_id, order.position_opened_ms)
            count += sum(1 for pid, opened in closes if pid in bound and bound[pid] != opened)
        return count

    def report(self) -> dict[str, Any]:
        self.observe()
        with self._lock, self.exchange.lock:
            orphans = sum(1 for t in self._tracked.values() if t.closed_at is not None)
            creates = Counter(
                o.link_id for a in self.exchange.accounts.values() for o in a.orders.values() if o.link_id
            )
            stats = self.stats()
            unprotected = sorted(self.longest_unprotected.items(), key=lambda kv: -kv[1])
            return {
                "observations": self.observations,
                "longest_unprotected_s": round(unprotected[0][1], 3) if unprotected else 0.0,
                "longest_unprotected_position": unprotected[0][0] if unprotected else None,
                "positions_ever_unprotected": len(unprotected),
                "duplicate_live_orders": self.duplicate_live,
                "duplicate_accepted_link_ids": sum(1 for n in creates.values() if n > 1),
                "orphans_at_end": orphans,
                "longest_cleanup_s": round(self.longest_cleanup, 3),
                "oversized_active_reduce_only": self.oversized_active,
                "longest_oversized_stop_s": round(self.longest_oversize_stop, 3),
                "closes_of_another_position": self._closes_of_another_position(),
                "foreign_orders_touched": sum(
                    1 for link in self.exchange.touched_over_api if OrderLink.parse(link) is None
                ),
                "rate_limited_10006": stats.get("rate_limited_10006", 0),
                "ip_banned_403": stats.get("ip_banned_403", 0),
            }
