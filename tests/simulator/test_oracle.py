"""The reliability oracle's own judgement: it must be able to fail."""

from __future__ import annotations

from decimal import Decimal

from simulator import Simulator


def test_an_emergency_close_reaching_a_reentered_position_is_counted():
    sim = Simulator(seed=3, symbols=4)
    sim.set_price("BTCUSDT", "65000")
    place = lambda **params: sim.place("main", symbol="BTCUSDT", **params)
    place(side="Buy", orderType="Market", qty="0.010")
    place(
        side="Sell",
        orderType="Market",
        qty="0.010",
        triggerPrice="60000",
        triggerDirection=2,
        reduceOnly=True,
        orderLinkId="tg-old-S0-0",
    )
    place(side="Sell", orderType="Market", qty="0", reduceOnly=True, closeOnTrigger=True)
    place(side="Buy", orderType="Market", qty="0.020")  # the trader's re-entry
    assert sim.oracle.report()["closes_of_another_position"] == 0
    place(side="Sell", orderType="Market", qty="0.020", reduceOnly=True, orderLinkId="tg-old-X0-0")
    report = sim.oracle.report()
    assert report["closes_of_another_position"] == 1
    assert sim.account("main").positions["BTCUSDT"].size == Decimal(0)


def test_an_order_the_client_does_not_own_amended_or_cancelled_over_the_api_is_counted(sim, main_client):
    sim.set_price("BTCUSDT", "65000")
    for link in ("tg-p1-T1-0", "traders-own"):
        main_client.place_order(
            category="linear",
            symbol="BTCUSDT",
            side="Buy",
            orderType="Limit",
            qty="0.001",
            price="60000",
            orderLinkId=link,
        )
    main_client.cancel_order(category="linear", symbol="BTCUSDT", orderLinkId="tg-p1-T1-0")
    assert sim.oracle.report()["foreign_orders_touched"] == 0
    main_client.amend_order(category="linear", symbol="BTCUSDT", orderLinkId="traders-own", price="60100")
    assert sim.oracle.report()["foreign_orders_touched"] == 1
