"""Instruments and prices of the simulated linear USDT perpetual market.

Each symbol's last price follows its own seeded random walk, so a symbol's path depends only on
the seed and the steps taken, not on how many other symbols exist. The walk advances only when
`step()` is called (by a test, or by the simulator's own stepper thread in real-time mode).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from messages.models import Instrument

# Real names first so the demo book reads naturally; more symbols are synthetic (SIM0001USDT ...).
_REAL_SYMBOLS = [
    ("BTCUSDT", "65000"),
    ("ETHUSDT", "3200"),
    ("SOLUSDT", "150"),
    ("XRPUSDT", "0.52"),
    ("DOGEUSDT", "0.15"),
    ("ADAUSDT", "0.45"),
    ("AVAXUSDT", "35"),
    ("LINKUSDT", "14"),
    ("DOTUSDT", "7"),
    ("LTCUSDT", "80"),
    ("BCHUSDT", "450"),
    ("TRXUSDT", "0.12"),
    ("NEARUSDT", "6"),
    ("ATOMUSDT", "9"),
    ("UNIUSDT", "8"),
    ("APTUSDT", "9"),
    ("ARBUSDT", "1.1"),
    ("OPUSDT", "2.4"),
    ("FILUSDT", "6"),
    ("ETCUSDT", "27"),
    ("XLMUSDT", "0.11"),
    ("HBARUSDT", "0.09"),
    ("INJUSDT", "25"),
    ("SUIUSDT", "1.2"),
    ("SEIUSDT", "0.5"),
    ("TIAUSDT", "10"),
    ("AAVEUSDT", "95"),
    ("MKRUSDT", "2800"),
    ("RUNEUSDT", "5"),
    ("1000PEPEUSDT", "0.009"),
    ("WIFUSDT", "2.5"),
    ("JUPUSDT", "1"),
    ("BNBUSDT", "580"),
    ("TONUSDT", "6.5"),
    ("ORDIUSDT", "40"),
    ("STXUSDT", "2"),
    ("IMXUSDT", "2.1"),
    ("GRTUSDT", "0.28"),
    ("ALGOUSDT", "0.18"),
    ("SANDUSDT", "0.45"),
]


@dataclass(frozen=True, slots=True)
class InstrumentSpec:
    symbol: str
    base_price: Decimal
    tick_size: Decimal
    qty_step: Decimal
    min_qty: Decimal
    max_qty: Decimal
    max_leverage: Decimal = Decimal(50)
    status: str = "Trading"  # Trading, then Delivering (reduce-only), then Closed (settled)
    delivery_ms: int = 0  # a perpetual's delisting time, once announced

    def instrument(self) -> Instrument:
        return Instrument(
            self.symbol, self.tick_size, self.qty_step, self.min_qty, self.max_qty, self.status, None, self.delivery_ms
        )

    @property
    def base_coin(self) -> str:
        return self.symbol[: -len("USDT")]

    def to_v5(self) -> dict:
        return {
            "symbol": self.symbol,
            "contractType": "LinearPerpetual",
            "status": self.status,
            "baseCoin": self.base_coin,
            "quoteCoin": "USDT",
            "settleCoin": "USDT",
            "launchTime": "1585526400000",
            "deliveryTime": str(self.delivery_ms),
            "deliveryFeeRate": "",
            "priceScale": str(-self.tick_size.as_tuple().exponent),
            "leverageFilter": {
                "minLeverage": "1",
                "maxLeverage": format(self.max_leverage, ".2f"),
                "leverageStep": "0.01",
            },
            "priceFilter": {
                "minPrice": format(self.tick_size, "f"),
                "maxPrice": format(self.base_price * 100, "f"),
                "tickSize": format(self.tick_size, "f"),
            },
            "lotSizeFilter": {
                "maxOrderQty": format(self.max_qty, "f"),
                "minOrderQty": format(self.min_qty, "f"),
                "qtyStep": format(self.qty_step, "f"),
                "postOnlyMaxOrderQty": format(self.max_qty, "f"),
                "maxMktOrderQty": format(self.max_qty, "f"),
                "minNotionalValue": "5",
            },
            "unifiedMarginTrade": True,
            "fundingInterval": 480,
            "copyTrading": "both",
            "upperFundingRate": "0.005",
            "lowerFundingRate": "-0.005",
            "isPreListing": False,
        }


def _power_of_ten(exponent: int) -> Decimal:
    return Decimal(10) ** exponent  # Decimal('100'), not Decimal('1E+2')


def make_spec(symbol: str, base_price: Decimal) -> InstrumentSpec:
    magnitude = math.floor(math.log10(float(base_price)))
    tick = _power_of_ten(magnitude - 5)
    # One qty step is worth roughly 5-50 USDT, as on Bybit's real contracts.
    step = _power_of_ten(min(3, math.ceil(math.log10(50 / float(base_price)))))
    return InstrumentSpec(symbol, base_price.quantize(tick), tick, step, step, step * 10_000_000)


def universe(count: int) -> list[InstrumentSpec]:
    specs = [make_spec(s, Decimal(p)) for s, p in _REAL_SYMBOLS[:count]]
    rng = random.Random("sim-universe")
    for n in range(len(specs), count):
        price = Decimal(str(round(10 ** rng.uniform(-2, 3), 4)))
        specs.append(make_spec(f"SIM{n:04d}USDT", price))
    return specs


class Market:
    """Last, mark and index prices and their seeded random walks. The mark follows the last price
    at a seeded spread (up to 0.02 %, widened with `set_spread`); the index equals the mark. A
    wick (`Exchange.wick`) moves only the last price. Not thread-safe on its own: the Exchange
    calls it under its lock."""

    def __init__(self, specs: list[InstrumentSpec], seed: int, volatility: float):
        self._specs = {s.symbol: s for s in specs}
        self._rngs = {s.symbol: random.Random(f"{seed}:{s.symbol}") for s in specs}
        self.volatility = volatility  # standard deviation of log-returns per sqrt(second)
        self.last = {s.symbol: s.base_price for s in specs}
        spreads = random.Random(f"{seed}:spreads")
        self.spread = {s.symbol: Decimal(str(round(spreads.uniform(-0.0002, 0.0002), 6))) for s in specs}
        self.mark = {s.symbol: self._marked(s.symbol, s.base_price) for s in specs}

    def _marked(self, symbol: str, last: Decimal) -> Decimal:
        tick = self._specs[symbol].tick_size
        return max(tick, (last * (1 + self.spread[symbol])).quantize(tick, ROUND_HALF_EVEN))

    def price(self, symbol: str, trigger_by: str) -> Decimal:
        """The price a conditional order triggers on: LastPrice, MarkPrice or IndexPrice."""
        return self.last[symbol] if trigger_by == "LastPrice" else self.mark[symbol]

    def set_spread(self, symbol: str, fraction: Decimal) -> None:
        self.spread[symbol] = fraction
        self.mark[symbol] = self._marked(symbol, self.last[symbol])

    def set_price(self, symbol: str, price: Decimal, *, mark_follows: bool = True) -> Decimal:
        tick = self._specs[symbol].tick_size
        self.last[symbol] = max(tick, price.quantize(tick, ROUND_HALF_EVEN))
        if mark_follows:
            self.mark[symbol] = self._marked(symbol, self.last[symbol])
        return self.last[symbol]

    def step(self, seconds: float) -> None:
        scale = self.volatility * math.sqrt(max(seconds, 0.0))
        for symbol, rng in self._rngs.items():
            move = Decimal(str(math.exp(scale * rng.gauss(0.0, 1.0))))
            self.set_price(symbol, self.last[symbol] * move)
