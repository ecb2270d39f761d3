"""Cursor pagination walked to the end for positions and open orders at several page sizes."""

from __future__ import annotations

import pytest

from simulator import Simulator
from tests.conftest import pybit_client


@pytest.fixture
def book_sim():  # one per test: the 50 reads/s window must not carry over
    sim = Simulator(seed=3, symbols=80)
    sim.load_demo_book(70)
    sim.start()
    yield sim
    sim.stop()


def walk(fetch, limit: int) -> tuple[list[dict], int]:
    rows, cursor, pages, seen = [], None, 0, set()
    while True:
        result = fetch(limit=limit, cursor=cursor)["result"]
        pages += 1
        rows += result["list"]
        cursor = result["nextPageCursor"]
        if not result["list"] or not cursor or cursor in seen:
            return rows, pages
        seen.add(cursor)


@pytest.mark.parametrize("limit", [2, 7, 20, 50, 200])  # under 50 reads/s
def test_positions_walked_to_the_end(book_sim, limit):
    client = pybit_client(book_sim)
    rows, pages = walk(lambda **kw: client.get_positions(category="linear", settleCoin="USDT", **kw), limit)
    symbols = [r["symbol"] for r in rows]
    assert len(symbols) == len(set(symbols)) == 70
    assert pages == -(-70 // limit)  # the last page carries no cursor


@pytest.mark.parametrize("limit", [7, 13, 20, 50])  # under 50 reads/s
def test_open_orders_walked_to_the_end(book_sim, limit):
    client = pybit_client(book_sim)
    expected = {
        o.order_id for sym in book_sim.account("main").open_by_symbol for o in book_sim.account("main").open_orders(sym)
    }
    rows, pages = walk(lambda **kw: client.get_open_orders(category="linear", settleCoin="USDT", **kw), limit)
    ids = [r["orderId"] for r in rows]
    assert len(ids) == len(set(ids)) and set(ids) == expected
    assert pages == -(-len(expected) // limit)
    created = [int(r["createdTime"]) for r in rows]
    assert created == sorted(created, reverse=True)  # newest first


def test_cursor_is_stable_when_orders_arrive_between_pages(book_sim):
    client = pybit_client(book_sim, "mirror")
    first = client.get_open_orders(category="linear", settleCoin="USDT", limit=20)["result"]
    book_sim.place("mirror", symbol="BTCUSDT", side="Buy", orderType="Limit", qty="0.001", price="50000")
    second = client.get_open_orders(category="linear", settleCoin="USDT", limit=20, cursor=first["nextPageCursor"])[
        "result"
    ]
    assert not {r["orderId"] for r in first["list"]} & {r["orderId"] for r in second["list"]}


def test_limits_out_of_range_are_refused(book_sim):
    from pybit.exceptions import InvalidRequestError

    client = pybit_client(book_sim)
    with pytest.raises(InvalidRequestError):
        client.get_positions(category="linear", settleCoin="USDT", limit=201)
    with pytest.raises(InvalidRequestError):
        client.get_open_orders(category="linear", settleCoin="USDT", limit=51)


def test_symbol_query_returns_a_flat_row(book_sim):
    client = pybit_client(book_sim)
    row = client.get_positions(category="linear", symbol="SIM0079USDT")["result"]["list"][0]
    assert row["side"] == "" and row["size"] == "0"


def test_position_list_needs_symbol_or_settle_coin(book_sim):
    from pybit.exceptions import InvalidRequestError

    with pytest.raises(InvalidRequestError) as info:
        pybit_client(book_sim).get_positions(category="linear")
    assert info.value.status_code == 10001
