"""One account's cached positions and open orders: pure merge logic, no I/O.

Data arrives from full refreshes (every position and open order of the account) and from
symbol-scoped reads. Each symbol remembers when the read that produced its data started; a
merge never replaces newer data with older, and a symbol absent from a full refresh has no
position and no open orders (but only when the refresh succeeded as a whole: a failed refresh
is never merged, so it can never turn into "no positions").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from decimal import Decimal

from messages.gateway import AccountSnapshot, PlaceOrder, PositionView
from messages.models import Instrument, Order, OrderStatus, OrderType, Position

NEVER = -math.inf


@dataclass
class AccountCache:
    account: str
    positions: dict[tuple[str, int], Position] = field(default_factory=dict)
    orders: dict[str, tuple[Order, ...]] = field(default_factory=dict)
    read_at: dict[str, float] = field(default_factory=dict)   # symbol-scoped reads (monotonic start)
    read_ms: dict[str, int] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)
    dirty_at: dict[str, float] = field(default_factory=dict)  # a command made the symbol's data doubtful
    full_at: float = NEVER
    full_ms: int = 0
    full_id: int = 0
    full_pages: int = 0
    last_good: float = NEVER
    next_id: int = 0

    @property
    def has_data(self) -> bool:
        return self.full_at > NEVER

    def symbol_read_at(self, symbol: str) -> float:
        read = max(self.read_at.get(symbol, NEVER), self.full_at)
        return read if read > self.dirty_at.get(symbol, NEVER) else NEVER

    def _symbols(self) -> set[str]:
        return {s for s, _ in self.positions} | set(self.orders)

    def _set_symbol(self, symbol: str, positions: list[Position], orders: list[Order]) -> None:
        for key in [k for k in self.positions if k[0] == symbol]:
            del self.positions[key]
        for position in positions:
            if position.is_open:
                self.positions[(symbol, position.position_idx)] = position
        if orders:
            self.orders[symbol] = tuple(orders)
        else:
            self.orders.pop(symbol, None)

    def apply_full(self, positions: list[Position], orders: list[Order], started: float, started_ms: int,
                   pages: int) -> None:
        self.next_id += 1
        by_symbol_positions: dict[str, list[Position]] = {}
        by_symbol_orders: dict[str, list[Order]] = {}
        for position in positions:
            by_symbol_positions.setdefault(position.symbol, []).append(position)
        for order in orders:
            by_symbol_orders.setdefault(order.symbol, []).append(order)
        for symbol in self._symbols() | set(by_symbol_positions) | set(by_symbol_orders):
            if self.read_at.get(symbol, NEVER) > started:
                continue  # a symbol read that started later is newer
            self._set_symbol(symbol, by_symbol_positions.get(symbol, []), by_symbol_orders.get(symbol, []))
            self.read_at.pop(symbol, None)
            self.read_ms.pop(symbol, None)
            self.ids[symbol] = self.next_id
            if self.dirty_at.get(symbol, NEVER) < started:
                self.dirty_at.pop(symbol, None)
        self.full_at, self.full_ms, self.full_id, self.full_pages = started, started_ms, self.next_id, pages
        self.last_good = max(self.last_good, started)

    def apply_symbol(self, symbol: str, positions: list[Position], orders: list[Order], started: float,
                     started_ms: int) -> None:
        if max(self.read_at.get(symbol, NEVER), self.full_at) > started:
            return  # a read that started later was merged already
        self.next_id += 1
        self._set_symbol(symbol, [p for p in positions if p.symbol == symbol], [o for o in orders if o.symbol == symbol])
        self.read_at[symbol], self.read_ms[symbol], self.ids[symbol] = started, started_ms, self.next_id
        if self.dirty_at.get(symbol, NEVER) < started:
            self.dirty_at.pop(symbol, None)
        self.last_good = max(self.last_good, started)

    # --- after commands -------------------------------------------------------------------

    def mark_dirty(self, symbol: str, now: float) -> None:
        """The next answer about this symbol must come from a read that starts after now."""
        self.dirty_at[symbol] = now

    def patch_placed(self, command: PlaceOrder, order_id: str, now_ms: int) -> None:
        conditional = command.trigger_price is not None
        order = Order(
            order_id=order_id, link_id=command.link_id, symbol=command.symbol, side=command.side,
            order_type=command.order_type, status=OrderStatus.UNTRIGGERED if conditional else OrderStatus.NEW,
            qty=command.qty, price=command.price, trigger_price=command.trigger_price,
            trigger_direction=command.trigger_direction or 0, reduce_only=command.reduce_only,
            close_on_trigger=command.close_on_trigger, cum_exec_qty=Decimal(0), leaves_qty=command.qty,
            avg_price=None, position_idx=command.position_idx, stop_order_type="Stop" if conditional else "",
            cancel_type="UNKNOWN", time_in_force=command.time_in_force, created_ms=now_ms, updated_ms=now_ms)
        self.orders[command.symbol] = self.orders.get(command.symbol, ()) + (order,)

    def patch_amended(self, symbol: str, link_id: str, qty: Decimal | None, price: Decimal | None,
                      trigger_price: Decimal | None) -> None:
        patched = []
        for order in self.orders.get(symbol, ()):
            if order.link_id == link_id:
                new_qty = qty if qty is not None else order.qty
                order = replace(order, qty=new_qty, leaves_qty=new_qty - order.cum_exec_qty,
                                price=price if price is not None else order.price,
                                trigger_price=trigger_price if trigger_price is not None else order.trigger_price)
            patched.append(order)
        self.orders[symbol] = tuple(patched)

    def patch_cancelled(self, symbol: str, link_id: str | None) -> None:
        """Remove one order (by link id), or every order of the symbol (link_id None)."""
        kept = tuple(o for o in self.orders.get(symbol, ()) if link_id is not None and o.link_id != link_id)
        if kept:
            self.orders[symbol] = kept
        else:
            self.orders.pop(symbol, None)

    # --- answers --------------------------------------------------------------------------

    def view(self, symbol: str, position_idx: int, now: float, instrument: Instrument | None, *,
             stale: bool = False, throttled: bool = False, closed: tuple[Order, ...] = ()) -> PositionView:
        read = max(self.read_at.get(symbol, NEVER), self.full_at)
        taken_ms = self.read_ms.get(symbol, self.full_ms) if symbol in self.read_at else self.full_ms
        return PositionView(
            account=self.account, symbol=symbol, position_idx=position_idx,
            position=self.positions.get((symbol, position_idx)), orders=self.orders.get(symbol, ()),
            instrument=instrument, taken_ms=taken_ms, age=max(0.0, now - read),
            snapshot_id=self.ids.get(symbol, self.full_id), stale=stale, throttled=throttled, closed=closed)

    def snapshot(self, now: float, *, stale: bool = False) -> AccountSnapshot:
        return AccountSnapshot(
            account=self.account, positions=tuple(self.positions[k] for k in sorted(self.positions)),
            orders=tuple(o for s in sorted(self.orders) for o in self.orders[s]), taken_ms=self.full_ms,
            age=max(0.0, now - self.full_at), snapshot_id=self.full_id, stale=stale)


def is_market(command: PlaceOrder) -> bool:
    return command.order_type == OrderType.MARKET and command.trigger_price is None
