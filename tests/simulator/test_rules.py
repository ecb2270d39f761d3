"""The rules Bybit enforces, observed from pybit: each answer as Bybit gives it."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pybit.exceptions import InvalidRequestError


def error_code(call, **params) -> int:
    with pytest.raises(InvalidRequestError) as info:
        call(category="linear", **params)
    return info.value.status_code


def open_long(sim, client, symbol="BTCUSDT", qty="0.010", price="65000"):
    sim.set_price(symbol, price)
    client.place_order(category="linear", symbol=symbol, side="Buy", orderType="Market", qty=qty)


def test_duplicate_order_link_id_is_110072_even_after_the_first_is_gone(sim, main_client):
    params = {
        "symbol": "BTCUSDT",
        "side": "Buy",
        "orderType": "Limit",
        "qty": "0.001",
        "price": "60000",
        "orderLinkId": "tg-dup-E1-0",
    }
    first = main_client.place_order(category="linear", **params)
    assert error_code(main_client.place_order, **params) == 110072
    main_client.cancel_order(category="linear", symbol="BTCUSDT", orderId=first["result"]["orderId"])
    assert error_code(main_client.place_order, **params) == 110072


def test_link_ids_are_unique_per_account_not_across_accounts(sim, main_client):
    from tests.conftest import pybit_client

    params = {
        "category": "linear",
        "symbol": "BTCUSDT",
        "side": "Buy",
        "orderType": "Limit",
        "qty": "0.001",
        "price": "60000",
        "orderLinkId": "tg-same-E1-0",
    }
    main_client.place_order(**params)
    assert pybit_client(sim, "mirror").place_order(**params)["retCode"] == 0


@pytest.mark.parametrize("link_id", ["x" * 37, "has space", "semi;colon", "tg-é-E1-0"])
def test_malformed_order_link_id_is_10001(sim, main_client, link_id):
    assert (
        error_code(
            main_client.place_order,
            symbol="BTCUSDT",
            side="Buy",
            orderType="Limit",
            qty="0.001",
            price="60000",
            orderLinkId=link_id,
        )
        == 10001
    )


def test_amend_or_cancel_of_unknown_or_finished_order_is_110001(sim, main_client):
    assert error_code(main_client.amend_order, symbol="BTCUSDT", orderLinkId="tg-none-S0-0", qty="0.001") == 110001
    assert error_code(main_client.cancel_order, symbol="BTCUSDT", orderId="no-such-id") == 110001
    placed = main_client.place_order(
        category="linear", symbol="BTCUSDT", side="Buy", orderType="Limit", qty="0.001", price="60000"
    )["result"]
    main_client.cancel_order(category="linear", symbol="BTCUSDT", orderId=placed["orderId"])
    assert error_code(main_client.cancel_order, symbol="BTCUSDT", orderId=placed["orderId"]) == 110001
    assert error_code(main_client.amend_order, symbol="BTCUSDT", orderId=placed["orderId"], qty="0.002") == 110001


def test_reduce_only_on_a_flat_position_is_110017(sim, main_client):
    assert (
        error_code(
            main_client.place_order,
            symbol="BTCUSDT",
            side="Sell",
            orderType="Limit",
            qty="0.001",
            price="70000",
            reduceOnly=True,
        )
        == 110017
    )


def test_reduce_only_on_the_wrong_side_is_110017(sim, main_client):
    open_long(sim, main_client)
    assert (
        error_code(
            main_client.place_order,
            symbol="BTCUSDT",
            side="Buy",
            orderType="Limit",
            qty="0.001",
            price="60000",
            reduceOnly=True,
        )
        == 110017
    )


def test_active_reduce_only_is_truncated_to_what_is_left_then_110017(sim, main_client):
    open_long(sim, main_client, qty="0.010")
    tp = {"symbol": "BTCUSDT", "side": "Sell", "orderType": "Limit", "reduceOnly": True}
    first = main_client.place_order(category="linear", qty="0.008", price="66000", **tp)["result"]
    second = main_client.place_order(category="linear", qty="0.005", price="67000", **tp)["result"]
    assert sim.account("main").orders[first["orderId"]].qty == Decimal("0.008")
    assert sim.account("main").orders[second["orderId"]].qty == Decimal("0.002")  # truncated
    assert error_code(main_client.place_order, qty="0.001", price="68000", **tp) == 110017


def test_amending_an_active_reduce_only_beyond_the_position_is_110017(sim, main_client):
    open_long(sim, main_client, qty="0.010")
    tp = main_client.place_order(
        category="linear", symbol="BTCUSDT", side="Sell", orderType="Limit", qty="0.005", price="66000", reduceOnly=True
    )["result"]
    assert error_code(main_client.amend_order, symbol="BTCUSDT", orderId=tp["orderId"], qty="0.011") == 110017
    assert (
        main_client.amend_order(category="linear", symbol="BTCUSDT", orderId=tp["orderId"], qty="0.010")["retCode"] == 0
    )


def test_conditional_reduce_only_may_exceed_the_position(sim, main_client):
    open_long(sim, main_client, qty="0.010")
    answer = main_client.place_order(
        category="linear",
        symbol="BTCUSDT",
        side="Sell",
        orderType="Market",
        qty="0.030",
        triggerPrice="63000",
        triggerDirection=2,
        reduceOnly=True,
        closeOnTrigger=True,
        orderLinkId="tg-cond-S0-0",
    )
    assert answer["retCode"] == 0
    assert sim.account("main").by_link["tg-cond-S0-0"].qty == Decimal("0.030")


def test_trigger_on_the_wrong_side_of_the_price_is_110092_or_110093(sim, main_client):
    open_long(sim, main_client)
    stop = {"symbol": "BTCUSDT", "side": "Sell", "orderType": "Market", "qty": "0.010", "reduceOnly": True}
    assert error_code(main_client.place_order, triggerPrice="66000", triggerDirection=2, **stop) == 110093
    assert error_code(main_client.place_order, triggerPrice="64000", triggerDirection=1, **stop) == 110092
    placed = main_client.place_order(category="linear", triggerPrice="64000", triggerDirection=2, **stop)["result"]
    # Moving the stop to breakeven after the price fell below it: also refused.
    sim.set_price("BTCUSDT", "64500")
    assert (
        error_code(main_client.amend_order, symbol="BTCUSDT", orderId=placed["orderId"], triggerPrice="65100") == 110093
    )


@pytest.mark.parametrize("qty, price", [("0.0015", "60000"), ("0", "60000"), ("0.001", "60000.05")])
def test_qty_off_step_or_price_off_tick_is_10001(sim, main_client, qty, price):
    assert (
        error_code(main_client.place_order, symbol="BTCUSDT", side="Buy", orderType="Limit", qty=qty, price=price)
        == 10001
    )


def test_more_than_ten_conditional_orders_per_symbol_is_110009(sim, main_client):
    open_long(sim, main_client)
    for n in range(10):  # out of band: eleven creates in one second would meet the 10/s limit first
        sim.place(
            "main",
            symbol="BTCUSDT",
            side="Sell",
            orderType="Market",
            qty="0.001",
            triggerPrice=str(60000 + n),
            triggerDirection=2,
            reduceOnly=True,
        )
    assert (
        error_code(
            main_client.place_order,
            symbol="BTCUSDT",
            side="Sell",
            orderType="Market",
            qty="0.001",
            triggerPrice="59000",
            triggerDirection=2,
            reduceOnly=True,
        )
        == 110009
    )


def test_hedge_mode_leg_gets_bybits_position_mode_error(sim, main_client):
    with pytest.raises(InvalidRequestError) as info:
        main_client.place_order(
            category="linear", symbol="BTCUSDT", side="Buy", orderType="Market", qty="0.001", positionIdx=1
        )
    assert info.value.status_code == 10001 and "position idx not match position mode" in info.value.message


def test_unknown_symbol_and_category_are_10001(sim, main_client):
    assert error_code(main_client.get_positions, symbol="NOPEUSDT") == 10001
    with pytest.raises(InvalidRequestError):
        main_client.get_positions(category="inverse", settleCoin="USDT")


def test_cancel_all_touches_only_the_asked_symbol_and_filter(sim, main_client):
    open_long(sim, main_client)
    main_client.place_order(
        category="linear",
        symbol="BTCUSDT",
        side="Sell",
        orderType="Market",
        qty="0.010",
        triggerPrice="60000",
        triggerDirection=2,
        reduceOnly=True,
        orderLinkId="tg-ca-S0-0",
    )
    main_client.place_order(
        category="linear",
        symbol="BTCUSDT",
        side="Buy",
        orderType="Limit",
        qty="0.001",
        price="60000",
        orderLinkId="tg-ca-E2-0",
    )
    main_client.place_order(
        category="linear",
        symbol="ETHUSDT",
        side="Buy",
        orderType="Limit",
        qty="0.1",
        price="3000",
        orderLinkId="tg-eth-E2-0",
    )
    result = main_client.cancel_all_orders(category="linear", symbol="BTCUSDT", orderFilter="Order")["result"]
    assert [r["orderLinkId"] for r in result["list"]] == ["tg-ca-E2-0"]
    account = sim.account("main")
    assert account.by_link["tg-ca-S0-0"].is_open and account.by_link["tg-eth-E2-0"].is_open


def test_batch_create_reports_each_order(sim, main_client):
    answer = main_client.place_batch_order(
        category="linear",
        request=[
            {
                "symbol": "BTCUSDT",
                "side": "Buy",
                "orderType": "Limit",
                "qty": "0.001",
                "price": "60000",
                "orderLinkId": "tg-b-E1-0",
            },
            {
                "symbol": "BTCUSDT",
                "side": "Buy",
                "orderType": "Limit",
                "qty": "0.001",
                "price": "60000",
                "orderLinkId": "tg-b-E1-0",
            },
        ],
    )
    assert [c["code"] for c in answer["retExtInfo"]["list"]] == [0, 110072]
    assert answer["result"]["list"][0]["orderId"] and not answer["result"]["list"][1]["orderId"]


def test_batch_amend_and_cancel(sim, main_client):
    for n in (1, 2):
        main_client.place_order(
            category="linear",
            symbol="BTCUSDT",
            side="Buy",
            orderType="Limit",
            qty="0.001",
            price="60000",
            orderLinkId=f"tg-ba-E{n}-0",
        )
    amended = main_client.amend_batch_order(
        category="linear",
        request=[
            {"symbol": "BTCUSDT", "orderLinkId": "tg-ba-E1-0", "qty": "0.002"},
            {"symbol": "BTCUSDT", "orderLinkId": "tg-ba-E9-0", "qty": "0.002"},
        ],
    )
    assert [c["code"] for c in amended["retExtInfo"]["list"]] == [0, 110001]
    cancelled = main_client.cancel_batch_order(
        category="linear",
        request=[
            {"symbol": "BTCUSDT", "orderLinkId": "tg-ba-E1-0"},
            {"symbol": "BTCUSDT", "orderLinkId": "tg-ba-E2-0"},
        ],
    )
    assert [c["code"] for c in cancelled["retExtInfo"]["list"]] == [0, 0]
    assert not sim.account("main").open_by_symbol


def test_set_leverage_answers_as_bybit_and_sets_the_positions_leverage(sim, main_client):
    set_leverage = main_client.set_leverage
    assert error_code(set_leverage, symbol="BTCUSDT", buyLeverage="5", sellLeverage="6") == 10001  # one-way mode
    assert error_code(set_leverage, symbol="BTCUSDT", buyLeverage="51", sellLeverage="51") == 10001  # above maxLeverage
    assert error_code(set_leverage, symbol="BTCUSDT", buyLeverage="10", sellLeverage="10") == 110043  # not modified
    assert set_leverage(category="linear", symbol="BTCUSDT", buyLeverage="5", sellLeverage="5")["retCode"] == 0
    open_long(sim, main_client)
    row = main_client.get_positions(category="linear", symbol="BTCUSDT")["result"]["list"][0]
    assert row["leverage"] == "5" and Decimal(row["positionIM"]) == Decimal("130")  # 0.010 x 65000 / 5


def test_an_entry_beyond_the_available_balance_is_110007_and_resting_entries_reserve_margin(sim, main_client):
    sim.set_price("BTCUSDT", "65000")
    wallet = lambda: Decimal(
        main_client.get_wallet_balance(accountType="UNIFIED")["result"]["list"][0]["totalAvailableBalance"]
    )
    assert wallet() == Decimal(100_000)
    main_client.place_order(
        category="linear", symbol="BTCUSDT", side="Buy", orderType="Limit", qty="10", price="60000"
    )  # reserves 60,000 at 10x
    assert wallet() == Decimal(40_000)
    assert error_code(main_client.place_order, symbol="BTCUSDT", side="Buy", orderType="Market", qty="7") == 110007
    main_client.place_order(category="linear", symbol="BTCUSDT", side="Buy", orderType="Market", qty="6")
    assert wallet() < Decimal(1_000)


def test_a_reentry_is_a_new_position_by_its_open_time_and_created_time_stays(sim, main_client):
    open_long(sim, main_client)
    first = main_client.get_positions(category="linear", symbol="BTCUSDT")["result"]["list"][0]
    main_client.place_order(
        category="linear",
        symbol="BTCUSDT",
        side="Sell",
        orderType="Market",
        qty="0",
        reduceOnly=True,
        closeOnTrigger=True,
    )
    flat = main_client.get_positions(category="linear", symbol="BTCUSDT")["result"]["list"][0]
    open_long(sim, main_client)
    again = main_client.get_positions(category="linear", symbol="BTCUSDT")["result"]["list"][0]
    assert flat["size"] == "0" and flat["openTime"] == 0
    assert first["openTime"] > 0 and again["openTime"] > first["openTime"]
    assert again["createdTime"] == first["createdTime"]
