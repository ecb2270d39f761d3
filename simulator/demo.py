"""The demo book: positions in every phase, so every TP/SL rule has something to act on.

Each symbol gets one position per account (the mirror holds half the main size) of one kind:
- building:    conservative, leg 1 filled, legs 2-3 resting, TP ladder on the filled size;
- monitoring:  conservative, all three legs filled;
- tp1_near:    like monitoring with TP1 a hair away from the price (fills within seconds);
- after_tp1:   TP1 filled, stop at breakeven for the remaining size (phase PROFIT_TAKING);
- fast:        one market entry, one TP for 100 %, one stop;
- unguarded:   a position with no orders at all (the adoption policy decides);
- external:    a position protected only by an order the daemon did not place.
Every order goes through the exchange's own validation, with the daemon's `orderLinkId`s, and
the book's times are then moved 15 minutes into the past (positions opened a while ago).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal

from messages.models import Instrument, OrderLink, Role
from simulator.exchange import DEFAULT_LEVERAGE, Exchange, SimAccount

LADDER = (Decimal(85), Decimal(5), Decimal(5), Decimal(5))
TP_DISTANCES = (Decimal("0.01"), Decimal("0.02"), Decimal("0.03"), Decimal("0.04"))
ENTRY_STEPS = (Decimal(0), Decimal("0.008"), Decimal("0.016"))
STOP_DISTANCE = Decimal("0.03")
BREAKEVEN_OFFSET = Decimal("0.0012")
KIND_CYCLE = (
    "building",
    "monitoring",
    "after_tp1",
    "fast",
    "tp1_near",
    "building",
    "monitoring",
    "after_tp1",
    "fast",
    "unguarded",
    "monitoring",
    "building",
    "after_tp1",
    "tp1_near",
    "fast",
    "external",
)
MIRROR_SCALE = Decimal("0.5")


@dataclass(frozen=True, slots=True)
class DemoPosition:
    account: str
    symbol: str
    side: str
    kind: str
    position_id: str


def _position_id(rng: random.Random, taken: set[str]) -> str:
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
    while True:
        pid = "".join(rng.choice(alphabet) for _ in range(8))
        if pid not in taken:
            taken.add(pid)
            return pid


class _Placer:
    """Places one demo position's orders on one account."""

    def __init__(self, exchange: Exchange, account: SimAccount, instrument: Instrument, side: str, pid: str):
        self.exchange, self.account, self.instrument = exchange, account, instrument
        self.symbol, self.side, self.pid = instrument.symbol, side, pid
        self.sign = Decimal(1) if side == "Buy" else Decimal(-1)

    def link(self, role: Role, level: int, generation: int = 0) -> str:
        return OrderLink(self.pid, role, level, generation).build()

    def price(self, base: Decimal, move: Decimal) -> Decimal:
        """`base` moved by `move` in the position's favour, snapped to tick towards the long side's
        benefit (a stop then sits closer, a breakeven covers its fees)."""
        return self.instrument.snap_price(base * (1 + self.sign * move), up=self.side == "Buy")

    def create(self, **params) -> str:
        params = {"category": "linear", "symbol": self.symbol, **params}
        return self.exchange.create_order(self.account, params)["orderId"]

    def entries(self, target: Decimal, fill_limits: bool) -> None:
        leg = self.instrument.round_qty(target / 3)
        last = self.exchange.last_price(self.symbol)
        self.create(side=self.side, orderType="Market", qty=str(leg), orderLinkId=self.link(Role.ENTRY, 1))
        for level in (2, 3):
            price = self.price(last, -ENTRY_STEPS[level - 1])
            order_id = self.create(
                side=self.side,
                orderType="Limit",
                qty=str(leg),
                price=str(price),
                timeInForce="GTC",
                orderLinkId=self.link(Role.ENTRY, level),
            )
            if fill_limits:
                self.exchange.fill_order(self.account, order_id)

    def take_profits(self, percents: tuple[Decimal, ...], first_distance: Decimal | None = None) -> Decimal:
        position = self.account.positions[self.symbol]
        quantities = self.instrument.split_qty(position.size, percents)
        last = self.exchange.last_price(self.symbol)
        # Take-profits rest beyond the market: measured from the average or the last price,
        # whichever is further in the position's favour.
        base = max(position.avg_price, last) if self.side == "Buy" else min(position.avg_price, last)
        first_price = Decimal(0)
        for level, qty in enumerate(quantities, 1):
            distance = first_distance if level == 1 and first_distance is not None else TP_DISTANCES[level - 1]
            price = self.price(base, distance)
            first_price = first_price or price
            if qty > 0:
                self.create(
                    side="Sell" if self.side == "Buy" else "Buy",
                    orderType="Limit",
                    qty=str(qty),
                    price=str(price),
                    reduceOnly=True,
                    timeInForce="GTC",
                    orderLinkId=self.link(Role.TAKE_PROFIT, level),
                )
        return first_price

    def stop(self, qty: Decimal, link_id: str | None = None) -> None:
        position = self.account.positions[self.symbol]
        trigger = self.price(position.avg_price, -STOP_DISTANCE)
        self.create(
            side="Sell" if self.side == "Buy" else "Buy",
            orderType="Market",
            qty=str(qty),
            triggerPrice=str(trigger),
            triggerDirection=2 if self.side == "Buy" else 1,
            triggerBy="LastPrice",
            reduceOnly=True,
            closeOnTrigger=True,
            orderLinkId=link_id if link_id is not None else self.link(Role.STOP, 0),
        )

    def move_stop_to_breakeven(self) -> None:
        position = self.account.positions[self.symbol]
        trigger = self.price(position.avg_price, BREAKEVEN_OFFSET)
        self.exchange.amend_order(
            self.account,
            {
                "category": "linear",
                "symbol": self.symbol,
                "orderLinkId": self.link(Role.STOP, 0),
                "triggerPrice": str(trigger),
                "qty": str(position.size),
            },
        )


def load_demo_book(
    exchange: Exchange, positions: int, seed: int, accounts: tuple[str, ...] = ("main", "mirror")
) -> list[DemoPosition]:
    """Open `positions` positions on each of `accounts`; returns what was opened."""
    rng = random.Random(f"demo:{seed}")
    symbols = list(exchange.specs)  # real names first, then SIM0040USDT ...
    if positions > len(symbols):
        raise ValueError(f"the simulator lists {len(symbols)} symbols; {positions} positions need as many")
    taken: set[str] = set()
    book: list[DemoPosition] = []
    exchange.margin_checks = False  # each position is funded as it is opened (below)
    try:
        _load(exchange, symbols[:positions], rng, taken, accounts, book)
    finally:
        exchange.margin_checks = True
    _backdate(exchange, BOOK_AGE_MS)
    return book


def _load(
    exchange: Exchange,
    symbols: list[str],
    rng: random.Random,
    taken: set[str],
    accounts: tuple[str, ...],
    book: list[DemoPosition],
) -> None:
    for index, symbol in enumerate(symbols):
        kind = KIND_CYCLE[index % len(KIND_CYCLE)]
        side = rng.choice(("Buy", "Sell"))
        instrument = exchange.specs[symbol].instrument()
        steps = Decimal(rng.randint(60, 300))
        placers = []
        for name in accounts:
            scale = Decimal(1) if name == accounts[0] else MIRROR_SCALE
            target = instrument.round_qty(instrument.qty_step * steps * scale * 3) or instrument.qty_step * 3
            placer = _Placer(exchange, exchange.accounts[name], instrument, side, _position_id(rng, taken))
            # The book is funded on top of the account's balance: what stays free is the trader's.
            exchange.accounts[name].balance += target * exchange.last_price(symbol) * 2 / DEFAULT_LEVERAGE
            _open(placer, kind, target)
            placers.append(placer)
            book.append(DemoPosition(name, symbol, side, kind, placer.pid))
        if kind == "after_tp1":
            # Move the market through TP1 (both accounts' TP1 fill), then stops go to breakeven.
            first = placers[0]
            tp1 = first.account.by_link[first.link(Role.TAKE_PROFIT, 1)]
            exchange.set_price(symbol, tp1.price * (1 + first.sign * Decimal("0.002")))
            for placer in placers:
                placer.move_stop_to_breakeven()


BOOK_AGE_MS = 15 * 60 * 1000


def _backdate(exchange: Exchange, age_ms: int) -> None:
    """The book stands for positions opened a while ago: its times move `age_ms` into the past
    (otherwise every position would look freshly filled to whoever guards it)."""
    with exchange.lock:
        for account in exchange.accounts.values():
            for position in account.positions.values():
                position.created_ms -= age_ms
                position.updated_ms -= age_ms
            for order in account.orders.values():
                order.created_ms -= age_ms
                order.updated_ms -= age_ms
            for execution in account.executions:
                execution["execTime"] = str(int(execution["execTime"]) - age_ms)


def _open(placer: _Placer, kind: str, target: Decimal) -> None:
    if kind == "fast":
        placer.create(side=placer.side, orderType="Market", qty=str(target), orderLinkId=placer.link(Role.ENTRY, 1))
        placer.take_profits((Decimal(100),), first_distance=Decimal("0.015"))
        placer.stop(target)
    elif kind in ("unguarded", "external"):
        placer.create(side=placer.side, orderType="Market", qty=str(target))
        if kind == "external":  # a stop somebody set by hand: never the daemon's to touch
            placer.stop(target, link_id=f"manual-sl-{placer.pid}")
    else:
        placer.entries(target, fill_limits=kind != "building")
        near = Decimal("0.002") if kind == "tp1_near" else None
        placer.take_profits(LADDER, first_distance=near)
        placer.stop(placer.instrument.round_qty(target / 3) * 3)  # the full target
