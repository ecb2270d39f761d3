"""Parsing real-shaped Bybit V5 rows into value types, and the orderLinkId codec."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from messages.models import (
    Instrument,
    ModelError,
    Order,
    OrderLink,
    OrderStatus,
    OrderType,
    Position,
    PositionStatus,
    Role,
    Side,
)

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded"


def recorded_rows(name: str) -> list[dict]:
    return json.loads((RECORDED / name).read_text())["result"]["list"]


def position_row(**changes) -> dict:
    row = {
        "positionIdx": 0,
        "symbol": "BTCUSDT",
        "side": "Buy",
        "size": "0.010",
        "avgPrice": "65000.5",
        "positionStatus": "Normal",
        "markPrice": "65010",
        "takeProfit": "",
        "stopLoss": "0.00",
        "cumRealisedPnl": "-1.5",
        "createdTime": "1700000000000",
        "updatedTime": "1700000001000",
    }
    row.update(changes)
    return row


def order_row(**changes) -> dict:
    row = {
        "orderId": "abc",
        "orderLinkId": "tg-k3j9x2-T1-0",
        "symbol": "BTCUSDT",
        "side": "Sell",
        "orderType": "Limit",
        "orderStatus": "New",
        "qty": "0.008",
        "price": "66000",
        "triggerPrice": "",
        "triggerDirection": 0,
        "reduceOnly": True,
        "closeOnTrigger": False,
        "cumExecQty": "0",
        "leavesQty": "0.008",
        "avgPrice": "",
        "positionIdx": 0,
        "stopOrderType": "",
        "cancelType": "UNKNOWN",
        "timeInForce": "GTC",
        "createdTime": "1700000000000",
        "updatedTime": "1700000000000",
    }
    row.update(changes)
    return row


class TestPosition:
    def test_recorded_linear_long_parses_with_empty_tp_sl(self):
        position = Position.from_v5(recorded_rows("position_list_1.json")[0])
        assert position.symbol == "LTCUSDT"
        assert position.side is Side.BUY
        assert position.size == Decimal("1.2")
        assert position.take_profit is None and position.stop_loss is None
        assert position.is_open

    def test_recorded_flat_row_has_no_side_and_is_not_open(self):
        position = Position.from_v5(recorded_rows("position_list_2.json")[0])
        assert position.side is Side.NONE
        assert position.size == 0
        assert not position.is_open

    def test_recorded_inverse_docs_example_parses(self):
        position = Position.from_v5(recorded_rows("position_list_3.json")[0])
        assert position.side is Side.SELL

    @pytest.mark.parametrize("unset", ["", "0", "0.00", None])
    def test_unset_take_profit_and_stop_loss_become_none(self, unset):
        position = Position.from_v5(position_row(takeProfit=unset, stopLoss=unset))
        assert position.take_profit is None and position.stop_loss is None

    def test_numbers_may_arrive_as_ints_or_strings(self):
        position = Position.from_v5(position_row(positionIdx="0", size=3, avgPrice=100))
        assert position.position_idx == 0 and position.size == Decimal(3) and position.avg_price == 100

    def test_money_is_decimal_even_from_a_17_digit_float(self):
        position = Position.from_v5(position_row(avgPrice=65000.123456789012))
        assert isinstance(position.avg_price, Decimal)
        assert position.avg_price == Decimal("65000.12345678901")

    def test_unknown_status_is_kept_as_raw_string(self):
        position = Position.from_v5(position_row(positionStatus="Frozen"))
        assert position.status == "Frozen" and not isinstance(position.status, PositionStatus)

    def test_websocket_rows_use_entry_price(self):
        row = position_row()
        row["entryPrice"] = row.pop("avgPrice")
        assert Position.from_v5(row).avg_price == Decimal("65000.5")

    @pytest.mark.parametrize("field", ["symbol", "side", "size", "positionIdx"])
    def test_missing_required_field_is_named(self, field):
        row = position_row()
        del row[field]
        with pytest.raises(ModelError, match=f"'{field}'"):
            Position.from_v5(row)

    @pytest.mark.parametrize("bad", ["", "abc", "NaN", "Infinity", True])
    def test_unreadable_size_is_rejected_naming_the_field(self, bad):
        with pytest.raises(ModelError, match="'size'"):
            Position.from_v5(position_row(size=bad))

    def test_negative_size_is_rejected(self):
        with pytest.raises(ModelError, match="negative"):
            Position.from_v5(position_row(size="-1"))


class TestOrder:
    @pytest.mark.parametrize("name", ["order_realtime_1.json", "order_realtime_2.json", "order_realtime_3.json"])
    def test_recorded_rows_parse(self, name):
        for row in recorded_rows(name):
            order = Order.from_v5(row)
            assert order.order_id and isinstance(order.qty, Decimal)

    def test_synthetic_untriggered_legs_are_conditional(self):
        orders = [Order.from_v5(row) for row in recorded_rows("order_realtime_3.json")]
        assert all(o.is_conditional and o.status is OrderStatus.UNTRIGGERED and o.is_open for o in orders)

    def test_plain_limit_is_not_conditional(self):
        order = Order.from_v5(order_row())
        assert not order.is_conditional and order.trigger_price is None
        assert order.order_type is OrderType.LIMIT and order.reduce_only
        assert order.link == OrderLink("k3j9x2", Role.TAKE_PROFIT, 1, 0)

    def test_unknown_enum_values_are_kept_not_crashed_on(self):
        order = Order.from_v5(order_row(orderStatus="Parked", orderType="Twap", side="Both"))
        assert (order.status, order.order_type, order.side) == ("Parked", "Twap", "Both")
        assert not order.is_open

    def test_booleans_may_arrive_as_strings(self):
        assert Order.from_v5(order_row(reduceOnly="true")).reduce_only
        assert not Order.from_v5(order_row(reduceOnly="false")).reduce_only

    def test_leaves_qty_defaults_to_qty_minus_filled(self):
        row = order_row(cumExecQty="0.003")
        del row["leavesQty"]
        assert Order.from_v5(row).leaves_qty == Decimal("0.005")

    def test_external_orders_have_no_link(self):
        assert Order.from_v5(order_row(orderLinkId="")).link is None
        assert Order.from_v5(order_row(orderLinkId="BOT_TPSL_BTCUSDT_1")).link is None

    @pytest.mark.parametrize("field", ["orderId", "symbol", "side", "orderType", "orderStatus", "qty"])
    def test_missing_required_field_is_named(self, field):
        row = order_row()
        del row[field]
        with pytest.raises(ModelError, match=f"'{field}'"):
            Order.from_v5(row)


class TestInstrument:
    def test_parses_filters(self):
        row = {
            "symbol": "BTCUSDT",
            "priceFilter": {"tickSize": "0.10"},
            "lotSizeFilter": {"qtyStep": "0.001", "minOrderQty": "0.001", "maxOrderQty": "100"},
        }
        instrument = Instrument.from_v5(row)
        assert instrument.tick_size == Decimal("0.10") and instrument.qty_step == Decimal("0.001")

    def test_missing_filter_is_named(self):
        with pytest.raises(ModelError, match="'lotSizeFilter'"):
            Instrument.from_v5({"symbol": "X", "priceFilter": {"tickSize": "1"}})

    def test_qty_rounds_down_and_price_snaps_in_the_asked_direction(self):
        btc = Instrument("BTCUSDT", Decimal("0.1"), Decimal("0.001"), Decimal("0.001"), Decimal("100"))
        assert btc.round_qty(Decimal("0.0129")) == Decimal("0.012")
        assert btc.snap_price(Decimal("65000.01"), up=True) == Decimal("65000.1")
        assert btc.snap_price(Decimal("65000.09"), up=False) == Decimal("65000.0")

    def test_split_folds_levels_below_min_qty_into_the_one_before(self):
        coin = Instrument("XUSDT", Decimal("0.01"), Decimal("1"), Decimal("1"), Decimal("1000"))
        ladder = (Decimal(85), Decimal(5), Decimal(5), Decimal(5))
        assert coin.split_qty(Decimal(100), ladder) == (85, 5, 5, 5)
        # 5 % of 30 is 1.5 -> 1 (fits). Of 15 it is 0.75: TP4 folds into TP3 (10 % -> 1 fits),
        # TP2 folds into TP1 (90 % -> 13).
        assert coin.split_qty(Decimal(30), ladder) == (25, 1, 1, 1)
        assert coin.split_qty(Decimal(15), ladder) == (13, 0, 1, 0)
        assert coin.split_qty(Decimal(4), ladder) == (4, 0, 0, 0)
        assert coin.split_qty(Decimal("0.5"), ladder) == (0, 0, 0, 0)


class TestOrderLink:
    def test_example_round_trips(self):
        link = OrderLink("k3j9x2", Role.STOP, 0, 3)
        assert link.build() == "tg-k3j9x2-S0-3"
        assert OrderLink.parse("tg-k3j9x2-S0-3") == link
        assert link.next_generation().build() == "tg-k3j9x2-S0-4"

    @pytest.mark.parametrize(
        "text",
        [
            "",
            "tg-",
            "tg-abc-T1",
            "tg-abc-Q1-0",
            "xtg-abc-T1-0",
            "tg-abc-T1-0-extra",
            "TG-abc-T1-0",
            "tg-abc-T01-0",
            "tg-abc-T1-00",
            "tg-ab_c-T1-0",
            "tg-" + "a" * 17 + "-T1-0",
            "BOT_CONS_TP1_SL",
        ],
    )
    def test_anything_else_is_external(self, text):
        assert OrderLink.parse(text) is None

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"position_id": "", "role": Role.ENTRY, "level": 1, "generation": 0},
            {"position_id": "a-b", "role": Role.ENTRY, "level": 1, "generation": 0},
            {"position_id": "a" * 17, "role": Role.ENTRY, "level": 1, "generation": 0},
            {"position_id": "abc", "role": Role.ENTRY, "level": 100, "generation": 0},
            {"position_id": "abc", "role": Role.ENTRY, "level": 1, "generation": -1},
        ],
    )
    def test_out_of_range_parts_are_refused(self, kwargs):
        with pytest.raises(ValueError):
            OrderLink(**kwargs)

    @given(
        position_id=st.text(
            alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=16
        ),
        role=st.sampled_from(list(Role)),
        level=st.integers(0, 99),
        generation=st.integers(0, 9_999_999),
    )
    def test_every_link_round_trips_within_bybit_limits(self, position_id, role, level, generation):
        link = OrderLink(position_id, role, level, generation)
        text = link.build()
        assert len(text) <= 36
        assert all(c.isalnum() or c in "-_" for c in text)
        assert OrderLink.parse(text) == link

    @given(st.text(max_size=40))
    def test_parse_never_crashes_and_accepts_only_canonical_ids(self, text):
        link = OrderLink.parse(text)
        assert link is None or link.build() == text
