"""One read walked page by page (actors/exchange/_reads.py): a small state machine, no I/O."""

from __future__ import annotations

import pytest

from actors.exchange._reads import Read, ReadFailed, ReadKey, Scope


def page(rows: list, cursor: str = "") -> dict:
    return {"retCode": 0, "result": {"list": rows, "nextPageCursor": cursor}}


def test_a_full_read_walks_orders_then_positions_by_cursor():
    read = Read("main", None, False, started=1.0, started_ms=1)
    assert read.request() == ("get_open_orders", {"category": "linear", "limit": 50, "settleCoin": "USDT"})
    assert read.on_page(page([{"x": 1}], "c1")) is False and read.request()[1]["cursor"] == "c1"
    assert read.on_page(page([], "")) is False and read.request()[0] == "get_positions"
    assert read.on_page(page([])) is True and read.pages == 3


def test_a_cursor_that_repeats_or_a_page_without_a_list_fails_the_read():
    read = Read("main", "BTCUSDT", True, started=1.0, started_ms=1)
    read.on_page(page([{"x": 1}], "c1"))
    with pytest.raises(ReadFailed, match="stopped advancing"):
        read.on_page(page([{"x": 1}], "c1"))
    with pytest.raises(ReadFailed, match="no result list"):
        Read("main", None, False, 1.0, 1).on_page({"retCode": 0, "result": None})


def test_a_closed_only_read_is_one_page_of_the_history():
    read = Read("main", "BTCUSDT", True, started=1.0, started_ms=1, closed_only=True)
    assert read.request()[0] == "get_order_history" and read.key == ReadKey("main", Scope.CLOSED, "BTCUSDT")
    assert read.on_page(page([], "more")) is True
