"""Hedge mode as Bybit shows it, observed from pybit: switch-mode, one row per leg, orders and
reduce-only rules per leg, pushes per leg."""

from __future__ import annotations

import pytest
from pybit.exceptions import InvalidRequestError

from tests.simulator.test_rules import error_code, open_long


def hedge(client, symbol: str = "BTCUSDT") -> None:
    client.switch_position_mode(category="linear", symbol=symbol, mode=3)


def legs(client, symbol: str = "BTCUSDT") -> dict[int, dict]:
    rows = client.get_positions(category="linear", symbol=symbol)["result"]["list"]
    return {row["positionIdx"]: row for row in rows}


def order(client, **params):
    return client.place_order(category="linear", symbol="BTCUSDT", **params)


def test_switch_mode_gives_two_legs_held_at_once(sim, main_client):
    sim.set_price("BTCUSDT", "65000")
    hedge(main_client)
    order(main_client, side="Buy", orderType="Market", qty="0.010", positionIdx=1)
    order(main_client, side="Sell", orderType="Market", qty="0.004", positionIdx=2)
    rows = legs(main_client)
    assert set(rows) == {1, 2}
    assert (rows[1]["side"], rows[1]["size"]) == ("Buy", "0.010") and (rows[2]["side"], rows[2]["size"]) == (
        "Sell",
        "0.004",
    )
    assert error_code(main_client.switch_position_mode, symbol="BTCUSDT", mode=0) == 110024  # positions exist


def test_a_legs_orders_and_reduce_only_rules_are_its_own(sim, main_client):
    sim.set_price("BTCUSDT", "65000")
    hedge(main_client)
    order(main_client, side="Buy", orderType="Market", qty="0.010", positionIdx=1)
    order(main_client, side="Sell", orderType="Market", qty="0.010", positionIdx=2)
    # The long leg's take-profit fits the long leg; the short leg's room is its own.
    order(main_client, side="Sell", orderType="Limit", qty="0.010", price="70000", reduceOnly=True, positionIdx=1)
    order(main_client, side="Buy", orderType="Limit", qty="0.010", price="60000", reduceOnly=True, positionIdx=2)
    assert (
        error_code(
            main_client.place_order,
            symbol="BTCUSDT",
            side="Sell",
            orderType="Limit",
            qty="0.001",
            price="71000",
            reduceOnly=True,
            positionIdx=1,
        )
        == 110017
    )
    # Each leg's positionIdx is checked: one-way's 0 and a closing side that is not reduce-only are refused.
    assert error_code(main_client.place_order, symbol="BTCUSDT", side="Buy", orderType="Market", qty="0.001") == 10001
    assert (
        error_code(
            main_client.place_order, symbol="BTCUSDT", side="Sell", orderType="Market", qty="0.001", positionIdx=1
        )
        == 10001
    )
    open_orders = main_client.get_open_orders(category="linear", symbol="BTCUSDT")["result"]["list"]
    assert sorted(o["positionIdx"] for o in open_orders) == [1, 2]
    sim.set_price("BTCUSDT", "70000")  # the long leg's take-profit fills: the short leg is untouched
    rows = legs(main_client)
    assert rows[1]["size"] == "0" and rows[2]["size"] == "0.010"


def test_one_way_mode_refuses_a_legs_position_idx(sim, main_client):
    sim.set_price("BTCUSDT", "65000")
    with pytest.raises(InvalidRequestError) as info:
        order(main_client, side="Buy", orderType="Market", qty="0.010", positionIdx=1)
    assert info.value.status_code == 10001
    assert error_code(main_client.switch_position_mode, symbol="BTCUSDT", mode=0) == 110025  # not modified


def test_a_reduce_only_market_order_needs_no_room_and_the_resting_ones_that_no_longer_fit_go(sim, main_client):
    """A manual "close half" with take-profits resting for the whole position closes half; the
    exchange then cancels the take-profits that no longer fit (CancelByReduceOnly)."""
    open_long(sim, main_client, qty="0.100")
    for n, price in enumerate(("70000", "71000"), 1):
        order(
            main_client, side="Sell", orderType="Limit", qty="0.050", price=price, reduceOnly=True, orderLinkId=f"tp{n}"
        )
    order(main_client, side="Sell", orderType="Market", qty="0.050", reduceOnly=True)
    assert legs(main_client)[0]["size"] == "0.050"
    account = sim.exchange.accounts["main"]
    assert account.by_link["tp1"].is_open and account.by_link["tp2"].cancel_type == "CancelByReduceOnly"
