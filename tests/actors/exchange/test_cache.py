"""The gateway's cache merge (actors/exchange/_cache.py): REST rows and pushes, one set of rules, no I/O."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

from actors.exchange._cache import AccountCache
from messages.gateway import PlaceOrder
from messages.models import Execution, Order, Position


def order(
    status: str = "New",
    updated: int = 100,
    cum: str = "0",
    qty: str = "1",
    oid: str = "o1",
    link: str = "tg-p1-T1-0",
    symbol: str = "A",
    trigger: str = "",
) -> Order:
    return Order.from_v5(
        {
            "orderId": oid,
            "orderLinkId": link,
            "symbol": symbol,
            "side": "Sell",
            "orderType": "Limit",
            "orderStatus": status,
            "qty": qty,
            "price": "10",
            "cumExecQty": cum,
            "triggerPrice": trigger,
            "updatedTime": str(updated),
            "positionIdx": 0,
        }
    )


def position(symbol: str = "A", size: str = "1", seq: int = 5, side: str = "Buy", opened: int = 0) -> Position:
    return Position.from_v5(
        {
            "symbol": symbol,
            "side": side if size != "0" else "",
            "size": size,
            "avgPrice": "1",
            "positionIdx": 0,
            "seq": seq,
            "openTime": opened,
        }
    )


def execution(exec_id: str = "e1", oid: str = "o1", leaves: str = "0", seq: int = 6) -> Execution:
    return Execution.from_v5(
        {
            "execId": exec_id,
            "symbol": "A",
            "orderId": oid,
            "orderLinkId": "tg-p1-T1-0",
            "execQty": "1",
            "execPrice": "10",
            "leavesQty": leaves,
            "execTime": "200",
            "seq": seq,
        }
    )


def cache_with(*orders: Order, positions: tuple[Position, ...] = ()) -> AccountCache:
    cache = AccountCache("main")
    cache.apply_full(list(positions), list(orders), started=10.0, started_ms=1, pages=1)
    return cache


def open_orders(cache: AccountCache, symbol: str = "A") -> dict[str, Order]:
    return dict(cache.orders.get(symbol, {}))


# --- REST reads (the rules they always had) ---------------------------------------------------


def test_a_full_refresh_never_overwrites_a_newer_symbol_read():
    cache = AccountCache("main")
    cache.apply_full([position("A"), position("B")], [], started=10.0, started_ms=1, pages=1)
    cache.apply_symbol("A", [position("A", "3", seq=6)], [], started=12.0, started_ms=2)
    cache.apply_full([position("A", "2", seq=5), position("B", "5", seq=6)], [], started=11.0, started_ms=3, pages=1)
    assert cache.positions[("A", 0)].size == 3 and cache.positions[("B", 0)].size == 5


def test_a_symbol_missing_from_a_full_refresh_is_flat():
    cache = AccountCache("main")
    cache.apply_full([position("A"), position("B")], [], started=10.0, started_ms=1, pages=1)
    cache.apply_full([position("B")], [], started=11.0, started_ms=2, pages=1)
    assert ("A", 0) not in cache.positions and cache.view("A", 0, 11.0, None).position is None


def test_a_dirty_symbol_is_not_fresh_until_read_again():
    cache = AccountCache("main")
    cache.apply_full([position("A")], [], started=10.0, started_ms=1, pages=1)
    cache.mark_dirty("A", 10.5)
    assert cache.symbol_read_at("A") == -math.inf and cache.symbol_read_at("B") == 10.0
    cache.apply_symbol("A", [position("A")], [], started=10.6, started_ms=2)
    assert cache.symbol_read_at("A") == 10.6


def test_after_an_unresolved_write_two_rest_reads_are_owed():
    cache = cache_with(order())
    cache.mark_dirty("A", 11.0, unresolved=True)
    assert cache.doubtful("A")
    cache.apply_symbol("A", [], [order()], started=10.5, started_ms=2)  # started before the write
    assert cache.doubtful("A")
    cache.apply_symbol("A", [], [order()], started=11.5, started_ms=3)
    assert cache.doubtful("A")
    cache.apply_full([], [order()], started=12.0, started_ms=4, pages=1)
    assert not cache.doubtful("A")


# --- one merge for pushes and rows --------------------------------------------------------------


@pytest.mark.parametrize(
    "cached, pushed, kept",
    [
        (order("New", 100), order("New", 100), "same"),  # a duplicate: nothing changes
        (order("New", 100), order("PartiallyFilled", 150, cum="0.5"), "pushed"),  # newer
        (order("PartiallyFilled", 150, cum="0.5"), order("New", 100), "cached"),  # an older push, late
        (order("New", 100), order("New", 100, qty="2"), "pushed"),  # amended within the same ms
    ],
    ids=["duplicate", "newer", "older", "same-ms-amend"],
)
def test_order_pushes_apply_by_update_time(cached, pushed, kept):
    cache = cache_with(cached)
    changed = cache.push_orders([pushed], now=20.0)
    assert open_orders(cache)["o1"] == (pushed if kept == "pushed" else cached)
    assert bool(changed) == (kept == "pushed")


def test_a_finished_order_is_final_a_late_open_push_does_not_reopen_it():
    cache = cache_with(order("New", 100))
    cache.push_orders([order("Filled", 200, cum="1")], now=20.0)
    cache.push_orders([order("Untriggered", 250, trigger="9")], now=21.0)  # a late "Triggered"-era row
    assert open_orders(cache) == {} and cache.finished["A"]["o1"].status == "Filled"


def test_an_execution_is_counted_once_and_finishes_its_order_when_nothing_is_left():
    cache = cache_with(order("New", 100), positions=(position(seq=5),))
    assert cache.push_executions([execution()], now=20.0) == {("A", 0)}
    assert cache.push_executions([execution()], now=20.1) == set()  # the same execId again
    assert cache.finished["A"]["o1"].status == "Filled" and open_orders(cache) == {}


def test_a_fill_leaves_the_symbol_unsettled_until_its_position_push():
    cache = cache_with(order("New", 100), positions=(position(size="2", seq=5),))
    cache.push_orders([order("Filled", 200, cum="1")], now=20.0)
    assert cache.unsettled_since("A") == 20.0  # the old size must not be used
    cache.push_executions([execution(seq=6)], now=20.01)
    cache.push_positions([position(size="1", seq=5)], now=20.02)  # a create/amend push: same seq
    assert cache.unsettled_since("A") == 20.0
    cache.push_positions([position(size="1", seq=6)], now=20.03)
    assert cache.unsettled_since("A") is None and cache.positions[("A", 0)].size == 1


def test_an_execution_whose_position_came_first_settles_at_once():
    cache = cache_with(order("New", 100), positions=(position(size="2", seq=5),))
    cache.push_positions([position(size="1", seq=6)], now=20.0)
    cache.push_executions([execution(seq=6)], now=20.01)
    assert cache.unsettled_since("A") is None


def test_positions_apply_by_seq_and_a_pushed_flat_row_is_told():
    cache = cache_with(positions=(position(size="2", seq=5),))
    cache.push_positions([position(size="1", seq=4)], now=20.0)  # older
    assert cache.positions[("A", 0)].size == 2
    cache.push_positions([position(size="0", seq=6)], now=20.1)
    view = cache.view("A", 0, 20.2, None)
    assert view.position is None and view.flat_pushed
    cache.apply_full([], [], started=21.0, started_ms=2, pages=1)  # a later read: nothing to tell
    assert not cache.view("A", 0, 21.1, None).flat_pushed


@pytest.mark.parametrize(
    ("rows", "renewals"),
    [
        ([position(size="2", seq=6), position(size="3", seq=7)], 0),  # an add: the same position
        ([position(size="0", seq=6), position(size="1", seq=7)], 1),  # flat, then open again
        ([position(size="1", seq=6, side="Sell")], 1),  # the side flipped
        ([position(size="2", seq=6, opened=111)], 0),  # openTime learned, not changed
        ([position(size="2", seq=6, opened=111), position(size="2", seq=7, opened=222)], 1),  # openTime changed
    ],
)
def test_r11_a_new_position_on_a_known_key_is_counted_from_the_pushes_in_order(rows, renewals):
    cache = cache_with(positions=(position(size="1", seq=5),))
    for row in rows:
        cache.push_positions([row], now=20.0)
    assert cache.view("A", 0, 20.1, None).renewals == renewals


def test_r11_a_read_whose_open_time_changed_counts_a_new_position_too():
    cache = cache_with(positions=(position(size="1", seq=5, opened=111),))
    cache.apply_symbol("A", [position(size="1", seq=9, opened=333)], [], started=30.0, started_ms=3)
    assert cache.view("A", 0, 30.1, None).renewals == 1


def test_pushes_never_advance_the_snapshot_id():
    cache = cache_with(order(), positions=(position(),))
    before = cache.view("A", 0, 11.0, None).snapshot_id
    cache.push_orders([order("New", 300, qty="3")], now=20.0)
    cache.push_positions([position(size="3", seq=9)], now=20.0)
    assert cache.view("A", 0, 20.1, None).snapshot_id == before


# --- our own patches ------------------------------------------------------------------------------


def place(link: str = "tg-p1-S0-0") -> PlaceOrder:
    return PlaceOrder(
        "main", "A", "Sell", "Market", Decimal("1"), link, trigger_price=Decimal("9"), trigger_direction=2, reply=None
    )


def test_a_patched_order_is_replaced_by_its_push_and_survives_an_older_read():
    cache = cache_with()
    cache.patch_placed(place(), "o9", now=20.0, now_ms=5)
    cache.apply_full([], [], started=19.0, started_ms=4, pages=1)  # a read from before the place
    assert "o9" in open_orders(cache)
    cache.push_orders([order("Untriggered", 300, oid="o9", link="tg-p1-S0-0", trigger="9")], now=20.1)
    assert open_orders(cache)["o9"].updated_ms == 300 and "o9" not in cache.provisional


def test_a_cancel_we_made_is_not_reopened_by_a_push_on_its_way():
    cache = cache_with(order("New", 100))
    cache.patch_cancelled("A", "tg-p1-T1-0")
    cache.push_orders([order("New", 150, qty="2")], now=20.0)  # the amend push, late
    assert open_orders(cache) == {}
    cache.push_orders([order("Cancelled", 160)], now=20.1)  # the real one replaces ours
    assert cache.finished["A"]["o1"].status == "Cancelled" and "o1" not in cache.provisional


# --- resyncs ------------------------------------------------------------------------------------


def test_a_resync_finds_what_no_push_told_and_the_snapshot_wins():
    cache = cache_with(order("New", 100), order("New", 100, oid="o2", link="tg-p1-T2-0"), positions=(position(seq=5),))
    differences = cache.apply_full(
        [position(size="0.5", seq=6)], [order("PartiallyFilled", 200, cum="0.5")], started=30.0, started_ms=2, pages=1
    )
    assert {d.ref for d in differences} == {("order", "o1"), ("order", "o2"), ("position", ("A", 0))}
    assert cache.missed(differences, since=30.0) and len(cache.missed(differences, since=30.0)) == 3
    assert open_orders(cache)["o1"].cum_exec_qty == Decimal("0.5") and "o2" not in open_orders(cache)


def test_a_difference_a_push_told_after_the_read_began_is_not_a_missed_push():
    cache = cache_with(order("New", 100))
    differences = cache.apply_full([], [order("PartiallyFilled", 200, cum="0.5")], started=30.0, started_ms=2, pages=1)
    cache.push_orders([order("PartiallyFilled", 200, cum="0.5")], now=30.05)  # on its way during the read
    assert cache.missed(differences, since=30.0) == []


def test_a_read_older_than_a_push_does_not_undo_it():
    cache = cache_with(order("New", 100))
    cache.push_orders([order("Filled", 200, cum="1")], now=30.5)
    cache.push_orders([order("New", 210, oid="o3", link="tg-p1-T3-0")], now=30.6)
    differences = cache.apply_full([], [order("New", 100)], started=30.0, started_ms=2, pages=1)
    assert differences == [] and set(open_orders(cache)) == {"o3"}


def test_closed_for_answers_only_when_every_asked_link_is_explained():
    cache = cache_with(order("New", 100), order("New", 100, oid="o2", link="tg-p1-S0-0"))
    cache.push_orders([order("Filled", 200, cum="1")], now=20.0)
    assert [o.link_id for o in cache.closed_for("A", frozenset({"tg-p1-T1-0", "tg-p1-S0-0"}))] == ["tg-p1-T1-0"]
    assert cache.closed_for("A", frozenset({"tg-p1-T2-0"})) is None  # never seen: ask the history


def test_an_order_in_a_status_this_version_does_not_know_stays_in_the_view():
    cache = cache_with(order("New", 100))
    cache.apply_full([], [order("Frozen", 200)], started=30.0, started_ms=2, pages=1)
    assert [o.status for o in cache.view("A", 0, 30.1, None).orders] == ["Frozen"]
