"""The demo book: every phase present, every order valid and consistent with Bybit's rules."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest

from messages.models import OrderLink, Role
from simulator import Simulator


@pytest.fixture(scope="module")
def demo():
    sim = Simulator(seed=2, symbols=72)
    book = sim.load_demo_book(64)
    return sim, book


def orders_of(sim, entry):
    return list(sim.account(entry.account).open_orders(entry.symbol))


def test_every_kind_is_present_on_both_accounts(demo):
    _, book = demo
    kinds = Counter((e.account, e.kind) for e in book)
    for account in ("main", "mirror"):
        for kind in ("building", "monitoring", "tp1_near", "after_tp1", "fast", "unguarded", "external"):
            assert kinds[(account, kind)] >= 1, (account, kind)
    assert len(book) == 128


def test_every_position_is_open_and_the_mirror_holds_about_half(demo):
    sim, book = demo
    for entry in book:
        position = sim.account(entry.account).positions[entry.symbol]
        assert position.size > 0 and position.side == entry.side
    main = {e.symbol: sim.account("main").positions[e.symbol].size for e in book if e.account == "main"}
    mirror = {e.symbol: sim.account("mirror").positions[e.symbol].size for e in book if e.account == "mirror"}
    assert all(mirror[s] < main[s] for s in main)


def test_daemon_orders_carry_parseable_link_ids_of_their_position(demo):
    sim, book = demo
    for entry in book:
        for order in orders_of(sim, entry):
            link = OrderLink.parse(order.link_id)
            if entry.kind == "external":
                assert link is None and order.link_id.startswith("manual-")
            else:
                assert link is not None and link.position_id == entry.position_id
    assert not [o for e in book if e.kind == "unguarded" for o in orders_of(sim, e)]


def test_reduce_only_orders_never_exceed_the_position(demo):
    sim, book = demo
    for entry in book:
        size = sim.account(entry.account).positions[entry.symbol].size
        active = [o for o in orders_of(sim, entry) if o.is_active_reduce_only]
        assert sum(o.leaves for o in active) <= size


def test_guarded_positions_have_one_stop_covering_at_least_the_position(demo):
    sim, book = demo
    for entry in book:
        if entry.kind == "unguarded":
            continue
        size = sim.account(entry.account).positions[entry.symbol].size
        stops = [o for o in orders_of(sim, entry) if o.is_conditional]
        assert len(stops) == 1 and stops[0].qty >= size, entry


def test_after_tp1_stops_sit_at_breakeven_for_the_remaining_size(demo):
    sim, book = demo
    for entry in (e for e in book if e.kind == "after_tp1"):
        account = sim.account(entry.account)
        position = account.positions[entry.symbol]
        stop = account.by_link[OrderLink(entry.position_id, Role.STOP, 0, 0).build()]
        tp1 = account.by_link[OrderLink(entry.position_id, Role.TAKE_PROFIT, 1, 0).build()]
        assert tp1.status == "Filled"
        assert stop.qty == position.size
        beyond = (stop.trigger_price - position.avg_price) * (1 if entry.side == "Buy" else -1)
        assert beyond >= position.avg_price * Decimal("0.0012") - sim.exchange.specs[entry.symbol].tick_size


def test_building_positions_still_have_resting_entries(demo):
    sim, book = demo
    for entry in (e for e in book if e.kind == "building"):
        links = [OrderLink.parse(o.link_id) for o in orders_of(sim, entry)]
        entries = [link for link in links if link and link.role is Role.ENTRY]
        assert len(entries) == 2


def test_same_seed_same_book():
    books = [Simulator(seed=9, symbols=40).load_demo_book(32) for _ in range(2)]
    assert books[0] == books[1]


def test_too_many_positions_for_the_symbols_is_a_clear_error():
    with pytest.raises(ValueError, match="symbols"):
        Simulator(symbols=10).load_demo_book(11)
