"""One account's cached positions and open orders: pure merge logic, no I/O.

Facts arrive from REST reads (full refreshes of the account, reads of one symbol) and from the
private stream's pushes, and every one goes through the same merge:
- an order row replaces the cached one only when it is not older: `(updatedTime, finished,
  cumExecQty)`; a finished order (Filled, Cancelled, ...) is final and never reopened;
- a position row replaces the cached one only when its `seq` is not older;
- executions are counted once by `execId`; one that leaves nothing of a cached open order
  finishes that order even when the order's own push was lost or comes later;
- rows the gateway patched in after an accepted command are provisional: any real row replaces
  them.
A REST read says "absent" too: an order or position the cache holds but the read did not list is
gone, unless the cache learned it after the read had started (monotonic arrival times, so no two
clocks are ever compared). Each merge of a read returns the differences it found against the
cache; while the stream is healthy those are pushes that never arrived.

A failed read is never merged, so it can never turn into "no positions". Only REST reads advance
a symbol's `snapshot_id` (R6, R10 count fresh snapshots); a pushed flat position row is reported
as `flat_pushed` instead: the exchange said so explicitly, it is not an absence.

A position that opens again on the same key is a new position (R11). `renewals` counts, per key,
the open rows that followed a pushed flat row, flipped the side, or carry a different `openTime`:
a monitor that sees the count grow knows its position was replaced, even when it never saw the
flat row in between.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, assert_never

from messages.codes import Meaning, meaning
from messages.gateway import (
    Accepted,
    AccountSnapshot,
    AmendOrder,
    CancelAll,
    CancelOrder,
    OrderCommand,
    Outcome,
    PlaceOrder,
    PositionView,
    Rejected,
    Unresolved,
)
from messages.models import Execution, Instrument, Order, OrderStatus, OrderType, Position, TriggerBy

NEVER = -math.inf
POSITION_IDXS = (0, 1, 2)  # one-way, hedge Buy, hedge Sell: a symbol's possible rows
FINISHED_KEPT = 50  # finished orders remembered per symbol (what a view's `closed` can show)
EXECUTIONS_KEPT = 10_000  # execIds remembered to drop duplicates


@dataclass(frozen=True, slots=True)
class Difference:
    """What a REST read found that the cache did not know: `ref` ("order", orderId) or
    ("position", (symbol, positionIdx))."""

    ref: tuple
    text: str
    position: tuple[str, int]  # whose monitor must look again


def _finished(order: Order) -> bool:
    """Filled, cancelled, rejected...: final. A status this version does not know is not: the
    order stays in the view, where it makes its monitor decide nothing."""
    return isinstance(order.status, OrderStatus) and not order.is_open


def _order_key(order: Order) -> tuple[int, bool, Decimal]:
    return order.updated_ms, _finished(order), order.cum_exec_qty


def _position_key(position: Position) -> tuple[int, int]:
    return position.seq, position.updated_ms


def _renews(known: Position, row: Position) -> bool:
    """Is this open row a new position on the key of `known` (R11)?"""
    if not known.is_open or known.side != row.side:
        return True
    return bool(known.opened_ms and row.opened_ms and known.opened_ms != row.opened_ms)


def _position_facts(position: Position) -> tuple:
    """What a position is, without its mark price (which changes on every read)."""
    return (
        position.side,
        position.size,
        position.avg_price,
        position.status,
        position.cum_realised_pnl,
        position.is_open,
    )


@dataclass
class AccountCache:
    account: str
    positions: dict[tuple[str, int], Position] = field(default_factory=dict)
    orders: dict[str, dict[str, Order]] = field(default_factory=dict)  # symbol -> orderId -> open order
    finished: dict[str, OrderedDict[str, Order]] = field(default_factory=dict)  # symbol -> orderId -> finished
    learned_at: dict[str, float] = field(default_factory=dict)  # orderId -> when learned (monotonic)
    position_learned_at: dict[tuple[str, int], float] = field(default_factory=dict)
    provisional: set[str] = field(default_factory=set)  # orderIds patched in by the gateway
    flat: dict[tuple[str, int], Position] = field(default_factory=dict)  # positions a push reported flat
    renewals: dict[tuple[str, int], int] = field(default_factory=dict)  # new positions on a known key (R11)
    marks: dict[str, Decimal] = field(default_factory=dict)  # from the ticker stream
    tickers: dict[str, dict[TriggerBy, Decimal]] = field(default_factory=dict)  # last, mark, index (R15)
    executions: OrderedDict[str, None] = field(default_factory=OrderedDict)
    pushed_at: dict[tuple, float] = field(default_factory=dict)  # ref -> last push about it
    unsettled: dict[str, tuple[float, int]] = field(default_factory=dict)  # symbol -> (since, position seq due)
    read_at: dict[str, float] = field(default_factory=dict)  # symbol-scoped reads (monotonic start)
    read_ms: dict[str, int] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)
    dirty_at: dict[str, float] = field(default_factory=dict)  # a command made the symbol's data doubtful
    doubt_reads: dict[str, int] = field(default_factory=dict)  # REST reads still owed after an unresolved write
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
        return {s for s, _ in self.positions} | set(self.orders) | {s for s, _ in self.flat}

    # --- REST reads ------------------------------------------------------------------------

    def apply_full(
        self, positions: list[Position], orders: list[Order], started: float, started_ms: int, pages: int
    ) -> list[Difference]:
        """Merge a full refresh; the differences it found against the cache."""
        self.next_id += 1
        by_symbol_positions: dict[str, list[Position]] = {}
        by_symbol_orders: dict[str, list[Order]] = {}
        for position in positions:
            by_symbol_positions.setdefault(position.symbol, []).append(position)
        for order in orders:
            by_symbol_orders.setdefault(order.symbol, []).append(order)
        differences = []
        for symbol in sorted(self._symbols() | set(by_symbol_positions) | set(by_symbol_orders)):
            if self.read_at.get(symbol, NEVER) > started:
                continue  # a symbol read that started later is newer
            differences += self._merge_read(
                symbol, by_symbol_positions.get(symbol, []), by_symbol_orders.get(symbol, []), started
            )
            self.read_at.pop(symbol, None)
            self.read_ms.pop(symbol, None)
            self.ids[symbol] = self.next_id
        self.full_at, self.full_ms, self.full_id, self.full_pages = started, started_ms, self.next_id, pages
        self.last_good = max(self.last_good, started)
        return differences

    def apply_symbol(
        self, symbol: str, positions: list[Position], orders: list[Order], started: float, started_ms: int
    ) -> list[Difference]:
        if max(self.read_at.get(symbol, NEVER), self.full_at) > started:
            return []  # a read that started later was merged already
        self.next_id += 1
        differences = self._merge_read(
            symbol, [p for p in positions if p.symbol == symbol], [o for o in orders if o.symbol == symbol], started
        )
        self.read_at[symbol], self.read_ms[symbol], self.ids[symbol] = started, started_ms, self.next_id
        self.last_good = max(self.last_good, started)
        return differences

    def _merge_read(
        self, symbol: str, positions: list[Position], orders: list[Order], started: float
    ) -> list[Difference]:
        differences = []
        listed = {o.order_id for o in orders}
        for order in orders:
            if self._take_order(order, started, from_read=True):
                differences.append(
                    Difference(
                        ("order", order.order_id),
                        f"order {order.link_id or order.order_id} of {symbol} is {order.status}",
                        (symbol, order.position_idx),
                    )
                )
        for order_id, order in list(self.orders.get(symbol, {}).items()):
            if order_id not in listed and self.learned_at.get(order_id, NEVER) <= started:
                if order_id not in self.provisional:
                    differences.append(
                        Difference(
                            ("order", order_id),
                            f"order {order.link_id or order_id} of {symbol} is no longer open",
                            (symbol, order.position_idx),
                        )
                    )
                self._drop_open(order)
        listed_positions = {(p.symbol, p.position_idx) for p in positions if p.is_open}
        for position in positions:
            key = (position.symbol, position.position_idx)
            if self._take_position(position, started, from_read=True):
                differences.append(
                    Difference(
                        ("position", key),
                        f"position {symbol} is {position.side or 'flat'} {position.size} (seq {position.seq})",
                        key,
                    )
                )
        for key in [k for k in _keys(symbol, self.positions) if k not in listed_positions]:
            if self.position_learned_at.get(key, NEVER) <= started:
                differences.append(Difference(("position", key), f"position {symbol} is gone", key))
                del self.positions[key]
        for key in _keys(symbol, self.flat):
            if self.position_learned_at.get(key, NEVER) <= started:
                del self.flat[key]  # a read after the flat push: it no longer needs telling
        if self.unsettled.get(symbol, (math.inf, 0))[0] <= started:
            del self.unsettled[symbol]  # the read saw the position after the fill
        if self.dirty_at.get(symbol, NEVER) < started:
            self.dirty_at.pop(symbol, None)
            owed = self.doubt_reads.pop(symbol, 0) - 1
            if owed > 0:
                self.doubt_reads[symbol] = owed
        return differences

    def apply_closed(self, orders: list[Order]) -> None:
        """Finished orders read from the order history."""
        for order in orders:
            if _finished(order):
                self._take_order(order, NEVER, from_read=True)

    # --- pushes ----------------------------------------------------------------------------

    def push_orders(self, orders: list[Order], now: float) -> set[tuple[str, int]]:
        """Order rows from the stream; the positions whose orders changed. An order that filled
        more leaves its symbol unsettled until the position push of that fill arrives."""
        touched = set()
        for order in orders:
            self.pushed_at[("order", order.order_id)] = now
            known = self._known(order.symbol, order.order_id)
            filled_more = order.cum_exec_qty > (known.cum_exec_qty if known is not None else 0)
            if self._take_order(order, now):
                touched.add((order.symbol, order.position_idx))
                if filled_more and order.symbol not in self.unsettled:
                    self.unsettled[order.symbol] = (now, self._position_seq(order.symbol) + 1)
        return touched

    def push_positions(self, positions: list[Position], now: float) -> set[tuple[str, int]]:
        touched = set()
        for position in positions:
            self.pushed_at[("position", (position.symbol, position.position_idx))] = now
            if self._take_position(position, now):
                touched.add((position.symbol, position.position_idx))
            due = self.unsettled.get(position.symbol)
            if due is not None and self._position_seq(position.symbol) >= due[1]:
                del self.unsettled[position.symbol]
                touched.add((position.symbol, position.position_idx))
        return touched

    def unsettled_since(self, symbol: str) -> float | None:
        """When a fill of this symbol was pushed whose position push has not come yet (a view
        now would pair the filled order with the old size); None when settled."""
        due = self.unsettled.get(symbol)
        return None if due is None else due[0]

    def _position_seq(self, symbol: str) -> int:
        rows = [rows[k] for rows in (self.positions, self.flat) for k in _keys(symbol, rows)]
        return max((p.seq for p in rows), default=-1)

    def missed(self, differences: list[Difference], since: float) -> list[str]:
        """Of a read's differences (the read started at `since`), those no push has told since:
        pushes that never came, not pushes still on their way when the read was taken."""
        return [d.text for d in differences if self.pushed_at.get(d.ref, NEVER) <= since]

    def forget_pushes(self, before: float) -> None:
        self.pushed_at = {ref: at for ref, at in self.pushed_at.items() if at >= before}

    def push_executions(self, executions: list[Execution], now: float) -> set[tuple[str, int]]:
        """Each fill once (by execId); one that leaves nothing of an open order finishes it."""
        touched = set()
        for execution in executions:
            if execution.exec_id in self.executions:
                continue
            self.executions[execution.exec_id] = None
            if len(self.executions) > EXECUTIONS_KEPT:
                self.executions.popitem(last=False)
            order = self.orders.get(execution.symbol, {}).get(execution.order_id)
            touched.add((execution.symbol, order.position_idx if order is not None else 0))
            if execution.seq > self._position_seq(execution.symbol):  # its position push is due
                since = self.unsettled.get(execution.symbol, (now, 0))[0]
                self.unsettled[execution.symbol] = (since, execution.seq)
            elif execution.seq >= 0:
                self.unsettled.pop(execution.symbol, None)  # it came already
            if order is not None and execution.leaves_qty == 0:
                self._take_order(
                    replace(
                        order,
                        status=OrderStatus.FILLED,
                        cum_exec_qty=order.qty,
                        leaves_qty=Decimal(0),
                        avg_price=order.avg_price or execution.price,
                        updated_ms=max(order.updated_ms, execution.exec_ms),
                    ),
                    now,
                )
        return touched

    def set_prices(self, symbol: str, prices: dict[TriggerBy, Decimal]) -> None:
        """A ticker's prices: the mark replaces the position rows' (urgency), all three are kept for
        the stops that trigger on them (R15)."""
        if TriggerBy.MARK in prices:
            self.marks[symbol] = prices[TriggerBy.MARK]
        self.tickers[symbol] = {**self.tickers.get(symbol, {}), **prices}

    def forget_prices(self, symbol: str) -> None:
        """Its ticker is no longer subscribed: its last prices would go stale."""
        self.marks.pop(symbol, None)
        self.tickers.pop(symbol, None)

    # --- one row ---------------------------------------------------------------------------

    def _take_order(self, order: Order, at: float, *, from_read: bool = False) -> bool:
        """Merge one order row learned at `at` (a push's arrival, a read's start); True when it
        changed what the cache knew."""
        symbol, order_id = order.symbol, order.order_id
        known = self._known(symbol, order_id)
        if known is not None:
            if _finished(known) and not _finished(order):
                return False  # finished is final
            new, old = _order_key(order), _order_key(known)
            superseded = from_read and self.learned_at.get(order_id, NEVER) > at  # learned after the read began
            if order_id in self.provisional:  # our patch: only a newer row, or a later read
                newer = new > old or (from_read and not superseded)
            else:
                newer = new > old or (new == old and order != known and not superseded)
            if not newer:
                return False
        self.provisional.discard(order_id)
        if not _finished(order):
            self.orders.setdefault(symbol, {})[order_id] = order
            self.learned_at[order_id] = at
        else:
            self._drop_open(order)
            kept = self.finished.setdefault(symbol, OrderedDict())
            kept[order_id] = order
            kept.move_to_end(order_id)
            while len(kept) > FINISHED_KEPT:
                kept.popitem(last=False)
        return True

    def _drop_open(self, order: Order) -> None:
        open_orders = self.orders.get(order.symbol, {})
        open_orders.pop(order.order_id, None)
        if not open_orders:
            self.orders.pop(order.symbol, None)
        self.learned_at.pop(order.order_id, None)
        self.provisional.discard(order.order_id)

    def _take_position(self, position: Position, at: float, *, from_read: bool = False) -> bool:
        """Merge one position row; True when its facts (not just its mark price) changed."""
        key = (position.symbol, position.position_idx)
        known = self.positions.get(key) or self.flat.get(key)
        if known is not None:
            new, old = _position_key(position), _position_key(known)
            if new < old or (new == old and from_read and self.position_learned_at.get(key, NEVER) > at):
                return False
        if known is not None and position.is_open and _renews(known, position):
            self.renewals[key] = self.renewals.get(key, 0) + 1
        if position.is_open:
            self.positions[key] = position
            self.flat.pop(key, None)
        else:
            self.positions.pop(key, None)
            if not from_read:
                self.flat[key] = position
        self.position_learned_at[key] = at
        if known is None:
            return position.is_open
        return _position_facts(position) != _position_facts(known)

    # --- after commands -------------------------------------------------------------------

    def _known(self, symbol: str, order_id: str) -> Order | None:
        """The order as the cache knows it, open or finished."""
        open_order = self.orders.get(symbol, {}).get(order_id)
        finished = self.finished.get(symbol)
        return open_order or (finished.get(order_id) if finished is not None else None)

    def apply_outcome(self, command: OrderCommand, outcome: Outcome, now: float, now_ms: int) -> None:
        """Reflect a command's outcome before the next answer about its symbol: an accepted one
        patched in; a market order, a refusal or an unknown outcome makes the symbol dirty."""
        if not isinstance(outcome, Accepted):
            if (
                isinstance(outcome, Rejected)
                and meaning(outcome.code) is Meaning.GONE
                and isinstance(command, CancelOrder)
            ):
                self.patch_cancelled(command.symbol, command.link_id)  # it is gone either way
            self.mark_dirty(command.symbol, now, unresolved=isinstance(outcome, Unresolved))
            return
        match command:
            case PlaceOrder() if is_market(command):
                self.mark_dirty(command.symbol, now)  # it filled: the position moved
            case PlaceOrder():
                self.patch_placed(command, outcome.order_id, now, now_ms)
            case AmendOrder():
                self.patch_amended(
                    command.symbol, command.link_id, command.qty, command.price, command.trigger_price, now
                )
            case CancelOrder():
                self.patch_cancelled(command.symbol, command.link_id)
            case CancelAll():
                self.patch_cancelled(command.symbol, None)
            case _:
                assert_never(command)

    def mark_dirty(self, symbol: str, now: float, *, unresolved: bool = False) -> None:
        """The next answer about this symbol must come from a read that starts after now; after an
        unresolved write two such reads are owed (R10 settles absence on two fresh snapshots)."""
        self.dirty_at[symbol] = now
        if unresolved:
            self.doubt_reads[symbol] = 2

    def doubtful(self, symbol: str) -> bool:
        return symbol in self.doubt_reads

    def patch_placed(self, command: PlaceOrder, order_id: str, now: float, now_ms: int) -> None:
        conditional = command.trigger_price is not None
        order = Order(
            order_id=order_id,
            link_id=command.link_id,
            symbol=command.symbol,
            side=command.side,
            order_type=command.order_type,
            status=OrderStatus.UNTRIGGERED if conditional else OrderStatus.NEW,
            qty=command.qty,
            price=command.price,
            trigger_price=command.trigger_price,
            trigger_direction=command.trigger_direction or 0,
            reduce_only=command.reduce_only,
            close_on_trigger=command.close_on_trigger,
            cum_exec_qty=Decimal(0),
            leaves_qty=command.qty,
            avg_price=None,
            position_idx=command.position_idx,
            stop_order_type="Stop" if conditional else "",
            cancel_type="UNKNOWN",
            time_in_force=command.time_in_force,
            created_ms=now_ms,
            updated_ms=0,
        )
        if order_id in self.orders.get(command.symbol, {}) or order_id in self.finished.get(command.symbol, {}):
            return  # its push came first
        self.orders.setdefault(command.symbol, {})[order_id] = order
        self.learned_at[order_id] = now
        self.provisional.add(order_id)

    def patch_amended(
        self,
        symbol: str,
        link_id: str,
        qty: Decimal | None,
        price: Decimal | None,
        trigger_price: Decimal | None,
        now: float,
    ) -> None:
        for order in list(self.orders.get(symbol, {}).values()):
            if order.link_id == link_id:
                new_qty = qty if qty is not None else order.qty
                amended = replace(
                    order,
                    qty=new_qty,
                    leaves_qty=new_qty - order.cum_exec_qty,
                    price=price if price is not None else order.price,
                    trigger_price=trigger_price if trigger_price is not None else order.trigger_price,
                )
                if amended == order:
                    continue  # its push came first
                self.orders[symbol][order.order_id] = amended
                self.learned_at[order.order_id] = now
                self.provisional.add(order.order_id)

    def patch_cancelled(self, symbol: str, link_id: str | None) -> None:
        """Remove one order (by link id), or every order of the symbol (link_id None); it is
        remembered as finished (provisionally), so a late push cannot reopen it."""
        for order in list(self.orders.get(symbol, {}).values()):
            if link_id is None or order.link_id == link_id:
                self._drop_open(order)
                kept = self.finished.setdefault(symbol, OrderedDict())
                kept[order.order_id] = replace(
                    order, status=OrderStatus.CANCELLED, cancel_type="CancelByUser", leaves_qty=Decimal(0)
                )
                self.provisional.add(order.order_id)

    # --- answers --------------------------------------------------------------------------

    def closed_for(self, symbol: str, links: frozenset[str]) -> tuple[Order, ...] | None:
        """The symbol's finished orders, when they explain every one of `links` that is not open;
        None when one is unknown (only the order history can tell)."""
        finished = tuple(self.finished.get(symbol, {}).values())
        known = {o.link_id for o in finished} | {o.link_id for o in self.orders.get(symbol, {}).values()}
        return finished if links <= known else None

    def view(
        self,
        symbol: str,
        position_idx: int,
        now: float,
        instrument: Instrument | None,
        *,
        stale: bool = False,
        throttled: bool = False,
        closed: tuple[Order, ...] = (),
        heard: float | None = None,
    ) -> PositionView:
        """`heard`: the stream's last message (monotonic) when the answer comes from a healthy stream."""
        read = max(self.read_at.get(symbol, NEVER), self.full_at)
        taken_ms = self.read_ms.get(symbol, self.full_ms) if symbol in self.read_at else self.full_ms
        position = self.positions.get((symbol, position_idx))
        mark = self.marks.get(symbol)
        if position is not None and mark is not None:
            position = replace(position, mark_price=mark)
        return PositionView(
            account=self.account,
            symbol=symbol,
            position_idx=position_idx,
            position=position,
            orders=tuple(self.orders.get(symbol, {}).values()),
            instrument=instrument,
            taken_ms=taken_ms,
            age=max(0.0, now - (heard if heard is not None else read)),
            snapshot_id=self.ids.get(symbol, self.full_id),
            stale=stale,
            throttled=throttled,
            closed=closed,
            flat_pushed=(symbol, position_idx) in self.flat,
            pushed=heard is not None,
            renewals=self.renewals.get((symbol, position_idx), 0),
            prices=self.tickers.get(symbol, {}),
        )

    def snapshot(self, now: float, *, stale: bool = False, heard: float | None = None) -> AccountSnapshot:
        return AccountSnapshot(
            account=self.account,
            positions=tuple(self.positions[k] for k in sorted(self.positions)),
            orders=tuple(o for s in sorted(self.orders) for o in self.orders[s].values()),
            taken_ms=self.full_ms,
            age=max(0.0, now - (heard if heard is not None else self.full_at)),
            snapshot_id=self.full_id,
            stale=stale,
        )

    def symbols(self) -> set[str]:
        """Symbols with an open position (the ticker stream's subscriptions)."""
        return {s for s, _ in self.positions}


def is_market(command: PlaceOrder) -> bool:
    return command.order_type == OrderType.MARKET and command.trigger_price is None


def _keys(symbol: str, rows: dict[tuple[str, int], Any]) -> list[tuple[str, int]]:
    """The keys of a symbol's rows, looked up (not a scan of every symbol's)."""
    return [(symbol, idx) for idx in POSITION_IDXS if (symbol, idx) in rows]
