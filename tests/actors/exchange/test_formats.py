"""Bybit's wire formats (actors/exchange/_formats.py): pushes parsed whole or rejected whole, ticker topics."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from actors.exchange._formats import private_push, ticker_prices, ticker_topics
from messages.models import ModelError, TriggerBy


def test_a_malformed_push_is_rejected_whole():
    good = {"orderId": "o1", "symbol": "A", "side": "Sell", "orderType": "Limit", "orderStatus": "New", "qty": "1"}
    assert len(private_push("order", [good, good]).orders) == 2
    with pytest.raises(ModelError):
        private_push("order", [good, {**good, "qty": "lots"}])
    with pytest.raises(ModelError):
        private_push("position.linear", {"not": "a list"})
    assert private_push("wallet", []) is None
    assert ticker_prices("tickers.BTCUSDT", {"symbol": "BTCUSDT", "lastPrice": "1"}) == (
        "BTCUSDT",
        {TriggerBy.LAST: Decimal(1)},
    )
    both = {"symbol": "BTCUSDT", "lastPrice": "2", "markPrice": "2.1", "indexPrice": "2.05"}
    assert ticker_prices("tickers.BTCUSDT", both)[1] == {
        TriggerBy.LAST: Decimal(2),
        TriggerBy.MARK: Decimal("2.1"),
        TriggerBy.INDEX: Decimal("2.05"),
    }
    with pytest.raises(ModelError):
        ticker_prices("tickers.BTCUSDT", {"symbol": "BTCUSDT", "markPrice": "-3"})


def test_ticker_topics_are_split_under_bybits_args_limit():
    symbols = [f"SYM{n:05d}USDT" for n in range(2500)]
    groups = ticker_topics(symbols, limit=21_000)
    assert sorted(t for g in groups for t in g) == sorted(f"tickers.{s}" for s in symbols)
    assert len(groups) > 1 and all(len(orjson.dumps(list(g))) <= 21_000 for g in groups)
