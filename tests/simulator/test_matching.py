"""Market and matching: fills change size, average price and PnL; triggers; reduce-only clean-up."""

from __future__ import annotations

from decimal import Decimal

import pytest

from simulator import Simulator
from simulator.exchange import BybitError


def position(sim, account="main", symbol="BTCUSDT"):
    return sim.account(account).positions.get(symbol)


def test_market_order_fills_at_the_last_price(sim, main_client):
    sim.set_price("BTCUSDT", "65000")
    main_client.place_order(category="linear", symbol="BTCUSDT", side="Buy", orderType="Market", qty="0.010")
    row = main_client.get_positions(category="linear", symbol="BTCUSDT")["result"]["list"][0]
    assert (row["side"], row["size"], Decimal(row["avgPrice"])) == ("Buy", "0.010", Decimal(65000))


def test_resting_limit_fills_when_the_price_crosses_and_averages_in(sim, main_client):
    sim.set_price("BTCUSDT", "65000")
    main_client.place_order(category="linear", symbol="BTCUSDT", side="Buy", orderType="Market", qty="0.010")
    main_client.place_order(
        category="linear",
        symbol="BTCUSDT",
        side="Buy",
        orderType="Limit",
        qty="0.010",
        price="64000",
        orderLinkId="tg-m-E2-0",
    )
    sim.set_price("BTCUSDT", "64500")
    assert position(sim).size == Decimal("0.010")
    sim.set_price("BTCUSDT", "63990")
    assert position(sim).size == Decimal("0.020")
    assert position(sim).avg_price == Decimal(64500)
    order = main_client.get_open_orders(category="linear", orderLinkId="tg-m-E2-0")["result"]["list"][0]
    assert order["orderStatus"] == "Filled" and order["avgPrice"] == "64000"


def test_take_profit_fill_realises_pnl_and_produces_an_execution(sim, main_client):
    sim.set_price("BTCUSDT", "65000")
    main_client.place_order(category="linear", symbol="BTCUSDT", side="Buy", orderType="Market", qty="0.010")
    main_client.place_order(
        category="linear",
        symbol="BTCUSDT",
        side="Sell",
        orderType="Limit",
        qty="0.004",
        price="66000",
        reduceOnly=True,
        orderLinkId="tg-m-T1-0",
    )
    sim.set_price("BTCUSDT", "66000")
    assert position(sim).size == Decimal("0.006")
    execution = main_client.get_executions(category="linear", orderLinkId="tg-m-T1-0")["result"]["list"][0]
    assert execution["execQty"] == "0.004" and execution["closedSize"] == "0.004"
    assert Decimal(execution["execPrice"]) == 66000
    realised = Decimal(4) - Decimal(execution["execFee"]) - Decimal("0.3575")  # 4 USDT gain, both fees paid
    assert position(sim).cum_realised == realised


def test_stop_triggers_and_is_clipped_to_the_position(sim, main_client):
    sim.set_price("BTCUSDT", "65000")
    main_client.place_order(category="linear", symbol="BTCUSDT", side="Buy", orderType="Market", qty="0.010")
    main_client.place_order(
        category="linear",
        symbol="BTCUSDT",
        side="Sell",
        orderType="Market",
        qty="0.030",
        triggerPrice="64000",
        triggerDirection=2,
        reduceOnly=True,
        closeOnTrigger=True,
        orderLinkId="tg-m-S0-0",
    )
    stop = sim.account("main").by_link["tg-m-S0-0"]
    assert stop.status == "Untriggered"
    sim.set_price("BTCUSDT", "63950")
    assert position(sim).size == 0 and position(sim).side == ""
    assert stop.status == "Filled" and stop.cum_qty == Decimal("0.010")


def test_stop_survives_the_position_closing_and_is_cancelled_if_it_triggers_flat(sim, main_client):
    """A reduce-only conditional order is not tied to the position (ccxt#23913)."""
    sim.set_price("BTCUSDT", "65000")
    main_client.place_order(category="linear", symbol="BTCUSDT", side="Buy", orderType="Market", qty="0.010")
    main_client.place_order(
        category="linear",
        symbol="BTCUSDT",
        side="Sell",
        orderType="Market",
        qty="0.010",
        triggerPrice="64000",
        triggerDirection=2,
        reduceOnly=True,
        orderLinkId="tg-o-S0-0",
    )
    main_client.place_order(
        category="linear", symbol="BTCUSDT", side="Sell", orderType="Market", qty="0.010", reduceOnly=True
    )  # closed by hand
    stop = sim.account("main").by_link["tg-o-S0-0"]
    assert stop.status == "Untriggered"  # an orphan the daemon must clean up
    sim.set_price("BTCUSDT", "63000")
    assert stop.status == "Cancelled" and stop.cancel_type == "CancelByReduceOnly"
    assert position(sim).size == 0


def test_position_shrinking_cancels_excess_active_reduce_only_orders(sim, main_client):
    sim.set_price("BTCUSDT", "65000")
    main_client.place_order(category="linear", symbol="BTCUSDT", side="Buy", orderType="Market", qty="0.010")
    for level, (qty, price) in enumerate([("0.006", "66000"), ("0.004", "67000")], 1):
        main_client.place_order(
            category="linear",
            symbol="BTCUSDT",
            side="Sell",
            orderType="Limit",
            qty=qty,
            price=price,
            reduceOnly=True,
            orderLinkId=f"tg-r-T{level}-0",
        )
    # A manual partial close of 0.005 leaves 0.005: neither TP fits any more.
    main_client.place_order(category="linear", symbol="BTCUSDT", side="Sell", orderType="Market", qty="0.005")
    account = sim.account("main")
    assert account.by_link["tg-r-T2-0"].cancel_type == "CancelByReduceOnly"
    assert account.by_link["tg-r-T1-0"].cancel_type == "CancelByReduceOnly"  # 0.006 > 0.005
    assert not [o for o in account.open_orders("BTCUSDT") if o.reduce_only]


def test_partial_fill_by_hand_leaves_the_order_partially_filled(sim, main_client):
    sim.set_price("BTCUSDT", "65000")
    main_client.place_order(category="linear", symbol="BTCUSDT", side="Buy", orderType="Market", qty="0.010")
    main_client.place_order(
        category="linear",
        symbol="BTCUSDT",
        side="Sell",
        orderType="Limit",
        qty="0.008",
        price="66000",
        reduceOnly=True,
        orderLinkId="tg-p-T1-0",
    )
    sim.fill("main", "tg-p-T1-0", "0.003")
    row = main_client.get_open_orders(category="linear", symbol="BTCUSDT")["result"]["list"][0]
    assert (row["orderStatus"], row["cumExecQty"], row["leavesQty"]) == ("PartiallyFilled", "0.003", "0.005")
    assert position(sim).size == Decimal("0.007")


def test_non_reduce_only_order_larger_than_the_position_flips_it(sim, main_client):
    sim.set_price("BTCUSDT", "65000")
    main_client.place_order(category="linear", symbol="BTCUSDT", side="Buy", orderType="Market", qty="0.010")
    sim.set_price("BTCUSDT", "66000")
    main_client.place_order(category="linear", symbol="BTCUSDT", side="Sell", orderType="Market", qty="0.015")
    assert (position(sim).side, position(sim).size, position(sim).avg_price) == ("Sell", Decimal("0.005"), 66000)


def test_random_walk_is_deterministic_for_a_seed():
    paths = []
    for _ in range(2):
        sim = Simulator(seed=11, symbols=5)
        prices = []
        for _ in range(20):
            sim.step(1.0)
            prices.append(sim.exchange.last_price("ETHUSDT"))
        paths.append(prices)
    assert paths[0] == paths[1] and len(set(paths[0])) > 10
    other = Simulator(seed=12, symbols=5)
    other.step(1.0)
    assert other.exchange.last_price("ETHUSDT") != paths[0][0]


def test_a_symbols_path_does_not_depend_on_how_many_symbols_exist():
    small, large = Simulator(seed=5, symbols=3), Simulator(seed=5, symbols=40)
    for sim in (small, large):
        sim.step(2.0)
    assert small.exchange.last_price("BTCUSDT") == large.exchange.last_price("BTCUSDT")


def test_liquidation_closes_with_status_liq(sim, main_client):
    sim.set_price("BTCUSDT", "65000")
    main_client.place_order(category="linear", symbol="BTCUSDT", side="Buy", orderType="Market", qty="0.010")
    sim.exchange.liquidate(sim.account("main"), "BTCUSDT")
    row = main_client.get_positions(category="linear", symbol="BTCUSDT")["result"]["list"][0]
    assert (row["size"], row["positionStatus"]) == ("0", "Liq")


@pytest.mark.parametrize("account", ["main", "mirror"])
def test_wallet_balance_reflects_realised_pnl(sim, account):
    from tests.conftest import pybit_client

    client = pybit_client(sim, account)
    before = Decimal(client.get_wallet_balance(accountType="UNIFIED")["result"]["list"][0]["totalWalletBalance"])
    sim.set_price("ETHUSDT", "3000")
    client.place_order(category="linear", symbol="ETHUSDT", side="Buy", orderType="Market", qty="1.0")
    sim.set_price("ETHUSDT", "3100")
    client.place_order(category="linear", symbol="ETHUSDT", side="Sell", orderType="Market", qty="1.0", reduceOnly=True)
    after = Decimal(client.get_wallet_balance(accountType="UNIFIED")["result"]["list"][0]["totalWalletBalance"])
    assert after - before == Decimal(100) - Decimal("1.65") - Decimal("1.705")  # gain minus two taker fees


def test_closing_order_cancels_other_reduce_only_orders_to_make_room(sim, main_client):
    """An emergency close (reduce-only + closeOnTrigger) is never blocked by resting take-profits."""
    sim.set_price("BTCUSDT", "65000")
    main_client.place_order(category="linear", symbol="BTCUSDT", side="Buy", orderType="Market", qty="0.010")
    for level, price in ((1, "66000"), (2, "67000")):
        main_client.place_order(
            category="linear",
            symbol="BTCUSDT",
            side="Sell",
            orderType="Limit",
            qty="0.005",
            price=price,
            reduceOnly=True,
            orderLinkId=f"tg-c-T{level}-0",
        )
    main_client.place_order(
        category="linear",
        symbol="BTCUSDT",
        side="Sell",
        orderType="Market",
        qty="0.010",
        reduceOnly=True,
        closeOnTrigger=True,
        orderLinkId="tg-c-X0-0",
    )
    account = sim.account("main")
    assert position(sim).size == 0
    assert account.by_link["tg-c-X0-0"].status == "Filled"
    assert {account.by_link[f"tg-c-T{n}-0"].cancel_type for n in (1, 2)} == {"CancelByReduceOnly"}


def test_with_partial_fills_a_crossed_limit_fills_over_several_price_moves():
    sim = Simulator(seed=11, symbols=4, partial_fills=True)
    sim.set_price("BTCUSDT", "65000")
    sim.place("main", symbol="BTCUSDT", side="Buy", orderType="Market", qty="1.000")
    sim.place(
        "main",
        symbol="BTCUSDT",
        side="Sell",
        orderType="Limit",
        qty="1.000",
        price="66000",
        reduceOnly=True,
        orderLinkId="tp",
    )
    order = sim.account("main").by_link["tp"]
    fills = []
    for price in ("66000", "66010", "66020", "66030", "66040", "66050", "66060", "66070"):
        sim.set_price("BTCUSDT", price)
        fills.append(order.cum_qty)
        if order.status == "Filled":
            break
    assert fills[0] < Decimal("1.000") and order.status == "Filled", fills
    assert len(set(fills)) > 2  # several partial fills on the way


def test_without_partial_fills_a_crossed_limit_fills_whole():
    sim = Simulator(seed=11, symbols=4)
    sim.set_price("BTCUSDT", "65000")
    sim.place("main", symbol="BTCUSDT", side="Buy", orderType="Market", qty="1.000")
    sim.place("main", symbol="BTCUSDT", side="Sell", orderType="Limit", qty="1.000", price="66000", reduceOnly=True)
    sim.set_price("BTCUSDT", "66000")
    assert sim.account("main").positions["BTCUSDT"].size == 0


@pytest.mark.parametrize(("trigger_by", "fires"), [("LastPrice", True), ("MarkPrice", False), ("IndexPrice", False)])
def test_a_wick_in_the_last_price_fires_only_stops_that_trigger_on_it(trigger_by, fires):
    sim = Simulator(seed=5, symbols=4)
    sim.set_price("BTCUSDT", "65000")
    sim.place("main", symbol="BTCUSDT", side="Buy", orderType="Market", qty="0.010")
    stop = {"side": "Sell", "orderType": "Market", "qty": "0.010", "triggerDirection": 2, "reduceOnly": True}
    sim.place("main", symbol="BTCUSDT", **stop, triggerPrice="64000", triggerBy=trigger_by, orderLinkId="stop")
    sim.exchange.wick("BTCUSDT", Decimal("63500"))
    order = sim.account("main").by_link["stop"]
    assert (order.status == "Filled") is fires
    assert sim.exchange.last_price("BTCUSDT") == Decimal("65000")  # the wick came back
    sim.exchange.set_spread("BTCUSDT", Decimal("-0.02"))  # the mark itself falls 2 % below the last price
    assert order.status == "Filled"


def test_an_unknown_trigger_by_is_refused():
    sim = Simulator(seed=5, symbols=4)
    sim.set_price("BTCUSDT", "65000")
    sim.place("main", symbol="BTCUSDT", side="Buy", orderType="Market", qty="0.010")
    with pytest.raises(BybitError) as info:
        sim.place(
            "main",
            symbol="BTCUSDT",
            side="Sell",
            orderType="Market",
            qty="0.010",
            triggerPrice="64000",
            triggerDirection=2,
            reduceOnly=True,
            triggerBy="Wick",
        )
    assert info.value.code == 10001
