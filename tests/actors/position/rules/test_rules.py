"""The TP/SL rules, one named scenario per rule (tpsl-rules.md R0-R12) and per urgency tier.
The world is the simulator's exchange engine in-process; the monitor is the pure rules driven
synchronously (tests/rules_driver.py)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from actors.position import rules
from actors.position.rules import EMERGENCY_KEY, STOP_KEY, Phase, RulesConfig
from messages.gateway import Priority, Rejected, Unresolved
from messages.models import Approach, Intent, MonitorId, OrderLink, Plan, Role, Side, StopAfter, Urgency
from simulator import Simulator
from tests.rules_driver import Driver
from tests.stubs.book import open_conservative, view_of

BTC = MonitorId("main", "BTCUSDT")
D = Decimal


def link(role: str, level: int, generation: int = 0, position: str = "pos1") -> str:
    return OrderLink(position, Role(role), level, generation).build()


class World:
    def __init__(self, entries_filled: int = 1, side: str = "Buy", config: RulesConfig | None = None, open_plan=True):
        self.sim = Simulator(seed=1, symbols=4)
        self.ex = self.sim.exchange
        self.ex.set_price("BTCUSDT", D("65000"))
        if open_plan:
            open_conservative(self.ex, "main", "BTCUSDT", side, D("0.100"), entries_filled=entries_filled)
        self.driver = Driver(self.ex, BTC, config)

    @property
    def account(self):
        return self.ex.accounts["main"]

    def order(self, link_id: str):
        return self.account.by_link[link_id]

    def size(self) -> Decimal:
        position = self.account.positions.get("BTCUSDT")
        return position.size if position else D(0)

    def check(self, **kw):
        return self.driver.check(**kw)

    def price(self, value: str) -> None:
        self.ex.set_price("BTCUSDT", D(value))


def kinds(events) -> list[str]:
    return [e.kind for e in events]


def test_a_well_placed_position_needs_no_command():
    world = World()
    assert world.check()[0] == []
    assert world.check()[0] == []
    assert world.driver.state.phase == "BUILDING" and world.driver.state.position_id == "pos1"


def test_r0_a_stale_view_changes_nothing():
    world = World()
    world.check()
    world.ex.fill_order(world.account, link("E", 2))
    before = world.driver.state
    commands, events = world.check(stale=True)
    assert commands == [] and events == []
    assert world.driver.state.ladder_size == before.ladder_size and world.driver.state.phase == before.phase


def test_r1_entry_fills_resize_take_profits_and_the_stop_keeps_the_full_target():
    world = World()
    world.check()
    world.ex.fill_order(world.account, link("E", 2))
    commands, _ = world.check()
    assert {(c.link_id, c.qty) for c in commands} == {
        (link("T", 1), D("0.170")),
        (link("T", 2), D("0.010")),
        (link("T", 3), D("0.010")),
        (link("T", 4), D("0.010")),
    }
    assert world.order(link("S", 0)).qty == D("0.300")
    world.ex.fill_order(world.account, link("E", 3))
    commands, events = world.check()
    assert world.order(link("T", 1)).qty == D("0.255") and world.driver.state.phase == "MONITORING"
    assert "phase_changed" in kinds(events)
    assert world.order(link("S", 0)).qty == D("0.300")


def test_r2_tp1_partially_filled_is_not_a_hit():
    world = World(entries_filled=3)
    world.check()
    world.ex.fill_order(world.account, link("T", 1), D("0.100"))
    _commands, events = world.check()
    assert "tp_filled" not in kinds(events) and not world.driver.state.tp1_done
    stop = world.order(link("S", 0))
    assert stop.trigger_price == D("62545.6")  # avg 64480 - 3 %: not at breakeven
    assert stop.qty == D("0.200")  # R4: the remaining size (no entry rests)


def test_r2_tp1_filled_moves_the_stop_to_breakeven_and_remaining_size_in_one_amend_and_cancels_entries():
    world = World(entries_filled=1)
    world.check()
    world.price("65700")  # TP1 (65650) fills
    commands, events = world.check()
    stop_moves = [c for c in commands if c.key == STOP_KEY]
    assert len(stop_moves) == 1 and stop_moves[0].action == "amend"
    assert stop_moves[0].trigger_price == D("65078.0") and stop_moves[0].qty == D("0.015")
    assert sorted(c.link_id for c in commands if c.action == "cancel") == [link("E", 2), link("E", 3)]
    assert commands[0].key == STOP_KEY  # protecting first
    assert kinds(events)[:2] == ["tp_filled", "phase_changed"] and "breakeven" in kinds(events)
    assert world.driver.state.phase == Phase.PROFIT_TAKING and world.driver.state.breakeven_done
    assert not world.account.by_link[link("E", 2)].is_open
    assert world.check()[0] == []  # once per position


def test_r3_a_later_tp_shrinks_the_stop_to_what_is_left():
    world = World(entries_filled=3)
    world.check()
    world.price("65700")
    world.check()
    world.price("66350")  # TP2 (66300) fills
    commands, events = world.check()
    assert [(c.key, c.qty, c.trigger_price) for c in commands] == [(STOP_KEY, D("0.030"), None)]
    assert "tp_filled" in kinds(events)


def test_r4_manual_partial_reduce_shrinks_stop_and_take_profits_within_the_position():
    world = World(entries_filled=3)
    world.check()
    world.sim.place("main", symbol="BTCUSDT", side="Sell", orderType="Market", qty="0.120")  # by hand
    world.check()
    size = world.size()
    assert size == D("0.180")
    ours = [o for o in world.account.open_orders("BTCUSDT") if o.reduce_only and not o.is_conditional]
    assert sum(o.leaves for o in ours) <= size
    assert world.order(link("S", 0)).qty == size


def test_take_profit_shrinks_go_before_growths_and_never_in_their_batch():
    """New shares for the ladder: TP1 shrinks, the others grow into the room it frees. Commands of
    one priority go as one batch, whose orders Bybit may apply in any order, so shrinks carry the
    clean-up's priority and are sent (and answered) first."""
    world = World(entries_filled=3)
    world.check()
    state = world.driver.state
    world.driver.state = replace(state, plan=replace(state.plan, percents=(D(25),) * 4))
    sent, _ = world.check()
    amends = {c.link_id: c for c in sent if c.key is not None and c.key.role is Role.TAKE_PROFIT}
    assert amends[link("T", 1)].priority is Priority.CLEANUP
    assert {amends[link("T", n)].priority for n in (2, 3, 4)} == {Priority.RESIZE}
    assert [c.link_id for c in sent].index(link("T", 1)) < [c.link_id for c in sent].index(link("T", 2))
    assert all(world.order(link("T", n)).qty == D("0.075") for n in (1, 2, 3, 4))


@pytest.mark.parametrize("left", ["0.005", "0.002", "0.001"])
def test_r4_a_rescaled_level_below_the_minimum_is_folded_into_the_level_before(left):
    """A 7-level ladder reduced by hand: every share of what is left keeps its take-profit."""
    ladder = tuple(D(p) for p in ("40", "10", "10", "10", "10", "10", "10"))
    config = RulesConfig(ladder_percents=ladder, tp_distance_percents=tuple(D(n) for n in range(1, 8)))
    world = World(open_plan=False, config=config)
    world.sim.place("main", symbol="BTCUSDT", side="Buy", orderType="Market", qty="0.100")
    world.check()  # adopted: the stop and seven take-profits
    world.sim.place("main", symbol="BTCUSDT", side="Sell", orderType="Market", qty=str(D("0.100") - D(left)))
    for _ in range(3):
        world.check()
    take_profits = [o for o in world.account.open_orders("BTCUSDT") if o.reduce_only and not o.is_conditional]
    assert sum(o.leaves for o in take_profits) == D(left)
    assert all(o.leaves >= D("0.001") for o in take_profits)
    assert world.order(link("S", 0, position=world.driver.state.position_id)).qty == D(left)


def test_r17_a_take_profit_refused_for_room_waits_is_blocked_once_and_returns_when_the_room_does():
    """The trader's own reduce-only take-profit holds the whole position: the daemon's levels are
    refused once (TP BLOCKED), never resent while nothing changes, placed once the room is back."""
    world = World(open_plan=False)
    world.sim.place("main", symbol="BTCUSDT", side="Buy", orderType="Market", qty="0.100")
    theirs = world.sim.place(
        "main", symbol="BTCUSDT", side="Sell", orderType="Limit", qty="0.100", price="70000", reduceOnly=True
    )
    _, events = world.check()  # adopted: the stop placed, the take-profits refused (110017)
    assert kinds(events).count("tp_blocked") == 4
    tp_sent = lambda: sum(1 for c in world.driver.sent if c.key is not None and c.key.role is Role.TAKE_PROFIT)
    refused = tp_sent()
    for _ in range(30):  # a minute: no loop of refused orders, no alert again
        _, events = world.check()
        assert "tp_blocked" not in kinds(events)
    assert tp_sent() == refused
    world.ex.cancel_order(world.account, {"category": "linear", "symbol": "BTCUSDT", "orderId": theirs["orderId"]})
    world.check()  # the room is back: placed at once
    take_profits = [o for o in world.account.open_orders("BTCUSDT") if o.reduce_only and not o.is_conditional]
    assert sum(o.leaves for o in take_profits) == D("0.100") and len(take_profits) == 4


def test_r17_a_refused_stop_is_tried_again_rarely_not_at_every_check():
    """A refusal the rules cannot explain (a key that lost its trade permission) is tried again
    after 2 s, then 4, 8, 16, 32 s: never a loop at the pace of checks, never refused for good."""
    world = World(entries_filled=3)
    world.check()
    world.ex.cancel_order(world.account, {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": link("S", 0)})
    world.driver.override = lambda c: Rejected(10005, "Permission denied") if c.key == STOP_KEY else None
    stops_sent = lambda: sum(1 for c in world.driver.sent if c.key == STOP_KEY)
    for _ in range(30):  # a minute of checks every 2 s
        world.check()
    assert 5 <= stops_sent() <= 6  # at 0, 2, 6, 14, 30 s (62 s would be next): not one per check (30)
    world.driver.override = None
    for _ in range(30):
        world.check()
    stops = [o for o in world.account.open_orders("BTCUSDT") if o.is_conditional and o.reduce_only]
    assert len(stops) == 1 and stops[0].qty == world.size()  # placed once the key may trade again


def hand(world, action: str, link_id: str, **params):
    """The trader, on the exchange's web page."""
    getattr(world.ex, f"{action}_order")(
        world.account, {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": link_id, **params}
    )


def test_r18_a_take_profit_cancelled_by_hand_leaves_the_plan_and_is_told_once():
    world = World(entries_filled=3)
    world.check()
    before = {o.link_id: o.qty for o in world.account.open_orders("BTCUSDT")}
    hand(world, "cancel", link("T", 2))
    events = []
    for _ in range(5):
        events += world.check()[1]
    assert kinds(events).count("tp_removed") == 1
    now = {o.link_id: o.qty for o in world.account.open_orders("BTCUSDT")}
    assert link("T", 2) not in now and not any(k.startswith("tg-pos1-T2") for k in now)  # not put back
    assert {k: v for k, v in before.items() if k != link("T", 2)} == now  # the rest as it was
    assert now[link("S", 0)] == world.size()  # the stop covers its share


def test_r18_a_price_moved_by_hand_becomes_the_plans_and_a_stop_cancelled_after_is_restored_there():
    world = World(entries_filled=3)
    world.check()
    hand(world, "amend", link("T", 3), price="68500")
    hand(world, "amend", link("S", 0), triggerPrice="63100")
    world.check()
    assert world.order(link("T", 3)).price == D("68500") and world.order(link("S", 0)).trigger_price == D("63100")
    assert world.driver.state.plan.tp_prices[2] == D("68500") and world.driver.state.plan.stop_price == D("63100")
    world.sim.place("main", symbol="BTCUSDT", side="Sell", orderType="Market", qty="0.030")  # a partial reduce
    world.check()
    assert world.order(link("T", 3)).price == D("68500")  # the quantities stay the daemon's, the price the trader's
    hand(world, "cancel", link("S", 0))
    world.check()
    stop = world.order(link("S", 0, 1))
    assert stop.trigger_price == D("63100") and stop.qty == world.size()  # R7 at the trader's last edit


def test_r18_after_tp1_a_stop_loosened_by_hand_is_moved_back_to_breakeven():
    world = World(entries_filled=3)
    world.check()
    world.sim.fill("main", link("T", 1))
    world.check()
    breakeven = world.order(link("S", 0)).trigger_price
    hand(world, "amend", link("S", 0), triggerPrice="60000")
    world.check()
    assert world.order(link("S", 0)).trigger_price == breakeven


def test_r5_size_grown_beyond_the_target_moves_stop_and_take_profits_up():
    world = World(entries_filled=3)
    world.check()
    world.sim.place("main", symbol="BTCUSDT", side="Buy", orderType="Market", qty="0.100")  # manual add
    world.check()
    assert world.order(link("S", 0)).qty == D("0.400")
    assert world.order(link("T", 1)).qty == D("0.340")


def test_r5_an_add_after_tp1_grows_the_ladder_by_the_added_quantity_and_keeps_breakeven():
    world = World(entries_filled=3)
    world.check()
    world.ex.fill_order(world.account, link("T", 1))  # 0.255 of 0.300: 0.045 left
    world.check()
    breakeven = world.order(link("S", 0)).trigger_price
    world.sim.place("main", symbol="BTCUSDT", side="Buy", orderType="Market", qty="0.100")  # manual add at 65000
    world.check()
    world.check()
    state = world.driver.state
    assert state.ladder_size == D("0.400") and world.size() == D("0.145")
    assert world.order(link("S", 0)).qty == D("0.145")
    # TP2-TP4 rescale to their shares (5 % each) of the grown ladder: 0.020 each, 0.060 together.
    tps = [
        o
        for o in world.account.open_orders("BTCUSDT")
        if (lk := OrderLink.parse(o.link_id)) and lk.role is Role.TAKE_PROFIT
    ]
    assert sorted(o.qty for o in tps) == [D("0.020")] * 3
    assert world.order(link("S", 0)).trigger_price >= breakeven  # at least breakeven of the new average


@pytest.mark.parametrize(
    ("stop_after", "expected"),
    [
        ("breakeven", ("breakeven", "breakeven", "breakeven")),
        ("previous_tp", ("breakeven", "TP1", "TP2")),
        ("two_back", ("plan", "breakeven", "TP1")),
    ],
)
def test_r13_the_stop_follows_its_ladder_as_take_profits_fill(stop_after, expected):
    world = World(entries_filled=3, config=RulesConfig(stop_after=StopAfter(stop_after)))
    world.check()
    instrument = world.ex.specs["BTCUSDT"].instrument()
    avg = world.account.positions["BTCUSDT"].avg_price
    levels = {
        "plan": world.order(link("S", 0)).trigger_price,
        "breakeven": rules.breakeven_price(Side.BUY, avg, RulesConfig().breakeven_offset, instrument),
        **{f"TP{n}": world.order(link("T", n)).price for n in range(1, 5)},
    }
    seen = []
    for level in (1, 2, 3):
        world.price(str(levels[f"TP{level}"]))  # the price reaches the level: its take-profit fills
        world.check()
        world.check()
        seen.append(world.order(link("S", 0)).trigger_price)
        assert world.order(link("S", 0)).qty == world.size()
    assert tuple(seen) == tuple(levels[name] for name in expected)
    moves = kinds(world.driver.events).count("breakeven")
    assert moves == 1  # BREAKEVEN told once, whichever TP moved it there


def test_r13_two_back_a_stop_restored_after_tp1_is_no_breakeven():
    """Found by the properties: under two_back, a stop cancelled by hand after TP1 is restored at the
    plan's price; that placement is not the breakeven move (told once, when TP2 fills)."""
    world = World(entries_filled=3, config=RulesConfig(stop_after=StopAfter.TWO_BACK))
    world.check()
    plan_stop = world.order(link("S", 0)).trigger_price
    world.price(str(world.order(link("T", 1)).price))
    world.check()
    world.ex.cancel_order(world.account, {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": link("S", 0)})
    world.check()
    world.check()
    assert world.order(link("S", 0, 1)).trigger_price == plan_stop
    assert "breakeven" not in kinds(world.driver.events) and not world.driver.state.breakeven_done
    world.price(str(world.order(link("T", 2)).price))
    world.check()
    world.check()
    assert kinds(world.driver.events).count("breakeven") == 1


def test_r13_two_back_keeps_a_monitor_calm_after_tp1_until_its_stop_is_due():
    world = World(entries_filled=3, config=RulesConfig(stop_after=StopAfter.TWO_BACK))
    world.check()
    world.ex.fill_order(world.account, link("T", 1))
    world.check()
    assert not rules.ladder_move_due(world.driver.state)
    world.ex.fill_order(world.account, link("T", 2))
    world.driver.state = replace(world.driver.state, filled_tps=frozenset({1, 2}))
    assert rules.ladder_move_due(world.driver.state)


def test_r16_a_time_limit_cancels_resting_entries_closes_at_market_and_keeps_the_stop_until_gone():
    world = World(entries_filled=1)
    world.check()
    state = world.driver.state
    world.driver.state = replace(state, plan=replace(state.plan, time_limit_seconds=120))
    commands, events = world.check(advance_ms=60_000)
    assert "time_limit" not in kinds(events) and world.size() > 0
    assert rules.classify_urgency(world.driver.state, None, world.driver.now_ms) is Urgency.CRITICAL  # due soon
    commands, events = world.check(advance_ms=61_000)
    assert kinds(events).count("time_limit") == 1
    closes = [c for c in commands if c.key == EMERGENCY_KEY]
    assert len(closes) == 1 and {c.link_id for c in commands if c.action == "cancel"} == {link("E", 2), link("E", 3)}
    assert link("S", 0) not in {c.link_id for c in commands if c.action == "cancel"}  # the stop stays
    world.check()
    world.check()
    assert world.size() == 0 and world.driver.state.retired == "time_limit"


def trailing_world(**config) -> World:
    """TP1 at 65650 has filled (TP2 rests at 66300); trailing 0.5 % behind the high from TP1 on."""
    world = World(entries_filled=3, config=RulesConfig(trail_activate="tp1", trail_percent=D("0.5"), **config))
    world.check()
    world.price(str(world.order(link("T", 1)).price))  # TP1 fills: breakeven first, then trailing starts
    world.check()
    world.check()
    return world


def test_r14_trailing_starts_at_tp1_follows_the_high_and_never_loosens():
    world = trailing_world()
    assert kinds(world.driver.events).count("trail_active") == 1
    breakeven = world.order(link("S", 0)).trigger_price
    for price, trigger in (("65900", "65570.5"), ("66200", "65869.0")):  # 0.5 % behind, snapped up to the tick
        world.price(price)
        commands, _ = world.check()
        assert [(c.action, c.priority) for c in commands] == [("amend", Priority.TRAIL)]
        assert world.order(link("S", 0)).trigger_price == D(trigger)
    world.price("66000")  # the price falls back: the stop stays where it is
    commands, _ = world.check()
    assert commands == [] and world.order(link("S", 0)).trigger_price == D("65869.0") > breakeven
    assert world.driver.state.trail_extreme == D("66200")
    again = rules.state_from_dict(rules.state_to_dict(world.driver.state))  # a restart resumes from the high
    assert again.trail_extreme == D("66200") and again.trailed


def test_r14_a_trailing_move_waits_for_the_step_and_the_interval():
    world = trailing_world(trail_step_percent=D("0.2"), trail_min_interval_ms=10_000)
    world.price("65900")
    assert len(world.check(advance_ms=10_000)[0]) == 1
    world.price("65990")  # about 0.14 % higher: less than the step
    assert world.check(advance_ms=2_000)[0] == []
    world.price("66200")  # beyond the step, but within the interval of the last move
    assert world.check(advance_ms=2_000)[0] == []
    assert len(world.check(advance_ms=10_000)[0]) == 1


def test_r14_a_trailing_move_the_price_already_passed_closes_at_market_as_trailing_stop():
    world = trailing_world()
    world.price("65900")
    world.driver.override = lambda c: Rejected(110093, "expect Falling") if c.priority is Priority.TRAIL else None
    _, events = world.check()
    assert "emergency_close" in kinds(events)
    world.driver.override = None
    world.check()
    world.check()
    assert world.driver.state.retired == "trailing_stop"


def test_r14_profit_activation_and_off():
    world = World(entries_filled=3, config=RulesConfig(trail_activate="profit:0.5", trail_percent=D("0.5")))
    avg = world.account.positions["BTCUSDT"].avg_price
    world.price(str(avg.quantize(D("0.1"))))
    world.check()
    world.price(str((avg * D("1.003")).quantize(D("0.1"))))  # 0.3 % in favour: not yet
    world.check()
    assert world.driver.state.trail_extreme is None
    world.price(str((avg * D("1.006")).quantize(D("0.1"))))  # 0.6 % in favour
    world.check()
    assert world.driver.state.trail_extreme is not None and "trail_active" in kinds(world.driver.events)
    quiet = World(entries_filled=3)
    quiet.check()
    quiet.price("66000")
    for _ in range(3):
        quiet.check()
    assert quiet.driver.state.trail_extreme is None and "trail_active" not in kinds(quiet.driver.events)


def test_a_plan_change_may_give_new_exits_and_keeps_the_others():
    world = World(entries_filled=3)
    world.check()
    state = world.driver.state
    exits = {"stop_after": StopAfter.PREVIOUS_TP, "trail_after": "tp2", "trail_percent": D("0.7")}
    changed, _ = rules.retarget(state, state.plan.tp_prices, state.plan.stop_price, 0, RulesConfig(), exits)
    plan = changed.plan
    assert (plan.stop_after, plan.trail_after, plan.trail_percent) == ("previous_tp", "tp2", D("0.7"))
    assert plan.trigger_by == state.plan.trigger_by and plan.time_limit_seconds == 0


def test_r6_a_flat_position_needs_two_fresh_snapshots_before_closing():
    world = World(entries_filled=3)
    world.check()
    world.sim.place("main", symbol="BTCUSDT", side="Sell", orderType="Market", qty="0.300")  # closed by hand
    commands, events = world.check()
    assert commands == [] and not world.driver.state.closing
    commands, events = world.check()
    assert [c.link_id for c in commands] == [link("S", 0)]  # the orphan stop; TPs the exchange cancelled
    assert world.driver.state.retired == "manual" and "position_closed" in kinds(events)
    assert not world.account.by_link[link("S", 0)].is_open


def test_r6_orders_that_outlived_a_monitor_are_confirmed_gone_then_cancelled_by_a_new_one():
    world = World(entries_filled=3)
    world.check()
    world.sim.place("main", symbol="BTCUSDT", side="Sell", orderType="Market", qty="0.300")  # closed by hand ...
    orphan = Driver(world.ex, BTC)  # ... while the daemon was down, its state lost
    commands, events = orphan.check()
    assert commands == [] and orphan.state.orphan and orphan.state.position_id == "pos1"
    assert "orphaned orders" in events[0].line and orphan.state.gone_snapshots
    commands, events = orphan.check()
    assert [c.link_id for c in commands] == [link("S", 0)] and orphan.state.retired == "manual"
    assert not world.account.by_link[link("S", 0)].is_open


def test_an_orphan_state_whose_position_is_open_after_all_retires_without_a_command():
    world = World(entries_filled=3)
    state = replace(rules.adopt(BTC, view_of(world.ex, "main", "BTCUSDT", 1), 0, RulesConfig()), orphan=True)
    driver = Driver(world.ex, BTC, state=state)
    commands, _ = driver.check()
    assert commands == [] and driver.state.retired == "no_position"
    assert rules.state_from_dict(rules.state_to_dict(state)).orphan


def test_r6_a_filled_stop_closes_at_once_with_reason_stop_loss():
    world = World(entries_filled=3)
    world.check()
    world.price("62500")  # below the stop at 62545.6
    _commands, events = world.check()
    assert world.driver.state.retired == "stop_loss"
    assert "stop_hit" in kinds(events)
    assert not [o for o in world.account.open_orders("BTCUSDT") if OrderLink.parse(o.link_id)]


def test_r6_the_last_take_profit_closes_with_reason_take_profits():
    world = World(entries_filled=3)
    world.check()
    for price in ("65700", "66350", "67000", "67650"):
        world.price(price)
        world.check()
    assert world.driver.state.retired == "take_profits"
    assert not world.account.open_orders("BTCUSDT")


def test_r7_a_missing_stop_is_restored_at_the_plan_price_then_at_breakeven():
    world = World(entries_filled=3)
    world.check()
    world.sim.exchange.cancel_order(
        world.account, {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": link("S", 0)}
    )
    commands, events = world.check()
    assert [(c.action, c.link_id, c.trigger_price, c.qty) for c in commands] == [
        ("place", link("S", 0, 1), D("62545.6"), D("0.300"))
    ]
    assert "stop_restored" in kinds(events)
    world.price("65700")
    world.check()
    world.ex.cancel_order(world.account, {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": link("S", 0, 1)})
    commands, _ = world.check()
    assert [(c.link_id, c.trigger_price) for c in commands] == [(link("S", 0, 2), D("64557.4"))]  # 64480 x 1.0012, up


def test_r7_observe_policy_logs_unprotected_and_sends_nothing():
    world = World(open_plan=False, config=RulesConfig(adoption_policy="observe"))
    world.sim.place("main", symbol="BTCUSDT", side="Buy", orderType="Market", qty="0.100")
    commands, events = world.check()
    assert commands == [] and "unprotected" in kinds(events)
    assert next(e for e in events if e.kind == "unprotected").line.startswith("UNPROTECTED main:BTCUSDT:0")


def test_protect_policy_adopts_a_bare_position_with_the_default_ladder_and_stop():
    world = World(open_plan=False)
    world.sim.place("main", symbol="BTCUSDT", side="Sell", orderType="Market", qty="0.100")
    commands, _ = world.check()
    stop = next(c for c in commands if c.key == STOP_KEY)
    assert stop.trigger_price == D("66950.0") and stop.qty == D("0.100") and stop.trigger_direction == 1
    assert sorted(c.qty for c in commands if c.key is not None and c.key.role is Role.TAKE_PROFIT) == [
        D("0.005")
    ] * 3 + [D("0.085")]


def test_r8_stop_amend_answered_110001_places_a_new_stop_with_the_next_generation():
    world = World(entries_filled=3)
    world.check()
    world.price("65700")
    world.driver.override = lambda c: (
        Rejected(110001, "Order does not exist.") if c.action == "amend" and c.key == STOP_KEY else None
    )
    commands, _events = world.check()
    places = [c for c in commands if c.key == STOP_KEY and c.action == "place"]
    assert [(c.link_id, c.trigger_price, c.qty) for c in places] == [(link("S", 0, 1), D("64557.4"), D("0.045"))]
    assert not [c for c in commands if c.key == STOP_KEY and c.action == "cancel"]  # never naked


def test_r9_breakeven_refused_as_already_crossed_closes_at_market():
    world = World(entries_filled=3)
    world.check()
    world.price("65700")
    world.driver.override = lambda c: Rejected(110093, "expect Falling") if c.key == STOP_KEY else None
    commands, events = world.check()
    emergency = [c for c in commands if c.key == EMERGENCY_KEY]
    assert len(emergency) == 1
    assert (emergency[0].order_type, emergency[0].reduce_only, emergency[0].close_on_trigger, emergency[0].qty) == (
        "Market",
        True,
        True,
        D("0.045"),
    )
    assert "emergency_close" in kinds(events)
    assert world.size() == 0
    world.driver.override = None
    world.check()
    world.check()
    assert world.driver.state.retired == "emergency_close"


def test_r10_a_breakeven_move_found_done_records_breakeven_once():
    """The breakeven amend's answer is lost (a crash, a dropped connection) but the exchange applied
    it: the snapshot that finds it done records BREAKEVEN (so it is alerted), once."""
    world = World(entries_filled=3)
    world.check()
    from actors.position import command_message
    from tests.stubs.book import apply

    def lost(command):
        if command.key != STOP_KEY:
            return None
        apply(world.ex, "main", "BTCUSDT", command_message(BTC, command))
        return Unresolved("lost answer")

    world.driver.override = lost
    world.sim.fill("main", link("T", 1))
    world.check()
    world.driver.override = None
    for _ in range(3):
        world.check()
    breakevens = [e for e in world.driver.events if e.kind == "breakeven"]
    assert len(breakevens) == 1 and world.driver.state.breakeven_done
    assert world.order(link("S", 0)).trigger_price == breakevens[0].payload["trigger"]


def test_r10_an_unresolved_place_is_found_by_its_link_id_and_not_sent_twice():
    world = World(entries_filled=3)
    world.check()
    world.ex.cancel_order(world.account, {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": link("S", 0)})
    from actors.position._check_cycle import command_message
    from tests.stubs.book import apply

    def lost(command):
        if command.key != STOP_KEY:
            return None
        apply(world.ex, "main", "BTCUSDT", command_message(BTC, command))
        return Unresolved("lost answer")

    world.driver.override = lost
    commands, events = world.check()
    assert [c.link_id for c in commands] == [link("S", 0, 1)]
    # The check re-reads at once after an unresolved outcome and finds the stop by its id.
    assert STOP_KEY not in world.driver.state.pending
    assert [e.payload["outcome"] for e in events if e.kind == "command_settled"] == ["Unresolved", "found"]
    world.driver.override = None
    commands, events = world.check()
    assert commands == []
    assert sum(1 for c in world.driver.sent if c.key == STOP_KEY and c.action == "place") == 1


def test_r10_an_unresolved_place_absent_from_two_fresh_snapshots_is_issued_again():
    world = World(entries_filled=3)
    world.check()
    world.ex.cancel_order(world.account, {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": link("S", 0)})
    world.driver.override = lambda c: Unresolved("timeout") if c.key == STOP_KEY else None
    commands, _ = world.check()  # absent from the immediate re-read: wait
    assert [c.link_id for c in commands] == [link("S", 0, 1)] and STOP_KEY in world.driver.state.pending
    world.driver.override = None
    commands, _events = world.check()  # absent twice: not done, issued again
    assert [c.link_id for c in commands if c.key == STOP_KEY] == [link("S", 0, 2)]
    assert world.account.by_link[link("S", 0, 2)].is_open


def test_external_orders_are_never_touched():
    world = World(entries_filled=1)
    world.sim.place(
        "main", symbol="BTCUSDT", side="Buy", orderType="Limit", qty="0.001", price="60000", orderLinkId="my-own-tp"
    )  # an order of the trader's own (an entry limit)
    world.sim.place(
        "main",
        symbol="BTCUSDT",
        side="Sell",
        orderType="Market",
        qty="0.001",
        triggerPrice="60000",
        triggerDirection=2,
        reduceOnly=True,
        orderLinkId="tg-other-S0-0",
    )  # another position's id
    for action in (
        lambda: world.ex.fill_order(world.account, link("E", 2)),
        lambda: world.price("65700"),
        lambda: world.price("66350"),
    ):
        action()
        world.check()
    touched = {c.link_id for c in world.driver.sent}
    assert not touched & {"my-own-tp", "tg-other-S0-0"}
    assert world.account.by_link["my-own-tp"].is_open and world.account.by_link["tg-other-S0-0"].is_open


def test_r11_a_flipped_position_retires_after_cancelling_the_old_orders():
    world = World(entries_filled=3)
    world.check()
    world.sim.place("main", symbol="BTCUSDT", side="Sell", orderType="Market", qty="0.600")
    world.check()
    assert world.driver.state.retired == "flipped"
    assert not [o for o in world.account.open_orders("BTCUSDT") if OrderLink.parse(o.link_id)]


def close_and_reenter(world: World, qty: str = "0.050") -> None:
    """The trader's close button (qty 0, reduce-only, close-on-trigger), then a new long at once."""
    world.sim.place(
        "main", symbol="BTCUSDT", side="Sell", orderType="Market", qty="0", reduceOnly=True, closeOnTrigger=True
    )
    world.sim.place("main", symbol="BTCUSDT", side="Buy", orderType="Market", qty=qty)


def test_r11_a_same_side_reentry_is_a_new_position_whose_own_stop_comes_before_the_old_one_goes():
    world = World(entries_filled=3)
    world.check()
    old_stop = link("S", 0)
    close_and_reenter(world)
    commands, events = world.check()
    old = world.driver.state
    assert old.retired == "manual" and old.successor and old.handover == {old_stop}
    assert {c.link_id for c in commands} <= {link("T", n) for n in range(1, 5)} | {link("E", n) for n in (2, 3)}
    assert world.order(old_stop).is_open, "the old stop still protects the new position"
    assert "position_closed" in kinds(events)

    successor = Driver(world.ex, BTC, inherited=old.handover)
    commands, _ = successor.check()
    assert successor.state.position_id != "pos1" and successor.state.ladder_size == D("0.050")
    stop = [c for c in commands if c.key == STOP_KEY]
    assert len(stop) == 1 and stop[0].qty == D("0.050")
    assert old_stop not in {c.link_id for c in commands}, "not cancelled before the new stop is live"
    commands, _ = successor.check()
    assert [c.link_id for c in commands if c.action == "cancel"] == [old_stop]
    assert not world.order(old_stop).is_open and world.order(stop[0].link_id).is_open
    assert successor.check()[0] == [] and not successor.state.inherited


def test_take_profits_the_exchange_cancelled_for_a_closing_order_are_not_raced_back():
    """The close button's order first makes room (the exchange cancels the take-profits), then
    fills: a check in between does not place the ladder again."""
    world = World(entries_filled=3)
    world.check()
    with world.ex.lock:
        for level in range(1, 5):
            world.ex._close(world.account, world.order(link("T", level)), "CancelByReduceOnly")
    commands, _ = world.check()
    assert not [c for c in commands if c.key is not None and c.key.role is Role.TAKE_PROFIT]
    commands, _ = world.check()  # no fill came after all: the ladder is put back
    assert len([c for c in commands if c.key is not None and c.key.role is Role.TAKE_PROFIT]) == 4


def test_r11_a_successor_that_only_observes_cancels_the_old_stop_at_once():
    world = World(entries_filled=3)
    world.check()
    close_and_reenter(world)
    world.check()
    successor = Driver(world.ex, BTC, RulesConfig(adoption_policy="observe"), inherited=world.driver.state.handover)
    commands, _ = successor.check()
    assert [(c.action, c.link_id) for c in commands] == [("cancel", link("S", 0))]


def test_r11_after_tp1_a_reentry_gets_no_breakeven_and_no_close_from_the_old_plan():
    """The old monitor, past TP1, never takes the new position for its own: no breakeven moved to
    the new average (above the market), no emergency close of the trader's brand-new position."""
    world = World(entries_filled=3)
    world.check()
    world.ex.fill_order(world.account, link("T", 1))
    world.check()
    assert world.driver.state.breakeven_done
    world.price("66000")
    close_and_reenter(world, qty="0.200")
    commands, _ = world.check()
    assert world.driver.state.retired and world.driver.state.successor
    assert all(c.action == "cancel" for c in commands)
    assert world.size() == D("0.200")


def test_r11_a_reentry_seen_only_by_its_open_time_between_two_reads():
    """REST-only: the flat moment fell between two reads; the row's openTime tells."""
    world = World(entries_filled=3)
    world.check()
    assert world.driver.state.open_time_ms > 0
    close_and_reenter(world, qty="0.300")  # the same size as before: only openTime differs
    world.check()
    assert world.driver.state.retired == "manual" and world.driver.state.successor


def test_r11_an_entry_filling_later_is_the_same_position():
    world = World(entries_filled=1)
    world.check()
    world.ex.fill_order(world.account, link("E", 2))
    world.check()
    assert not world.driver.state.successor and not world.driver.state.retired


def test_r19_a_delisting_is_told_once_keeps_the_stop_places_no_entry_and_closes_as_delivered():
    world = World(entries_filled=1)
    world.check()
    world.ex.set_instrument_status("BTCUSDT", "Delivering", delivery_ms=1_900_000_000_000)
    commands, events = world.check()
    assert kinds(events).count("delisting") == 1 and world.driver.state.delisting
    assert "2030-03-17" in next(e.line for e in events if e.kind == "delisting")
    assert {(c.action, c.link_id) for c in commands} == {
        ("cancel", link("E", 2)),
        ("cancel", link("E", 3)),
        ("amend", link("S", 0)),  # no entry rests any more: the stop covers the size (R1)
    }
    assert world.order(link("S", 0)).is_open and world.order(link("S", 0)).qty == world.size()
    commands, events = world.check()
    assert "delisting" not in kinds(events)
    world.ex.set_instrument_status("BTCUSDT", "Closed", price=D("64000"))
    world.check()
    assert world.driver.state.retired == "delivery"


def test_r19_a_planned_trade_on_a_contract_leaving_trading_sends_nothing():
    world = World(open_plan=False)
    world.ex.set_instrument_status("BTCUSDT", "Delivering")
    plan = Plan(Approach.FAST, "Buy", (D(100),), (D("66000"),), D("64000"), (D("0.010"),))
    world.driver.state = rules.planned(BTC, "p9", plan, world.driver.now_ms)
    commands, _ = world.check()
    assert commands == [] and world.driver.state.retired == "entry_refused"
    assert "Delivering" in world.driver.state.refusal


def test_an_older_generation_left_open_is_cancelled_keeping_the_newest():
    world = World(entries_filled=3)
    world.check()
    world.sim.place(
        "main",
        symbol="BTCUSDT",
        side="Sell",
        orderType="Market",
        qty="0.300",
        triggerPrice="63000",
        triggerDirection=2,
        reduceOnly=True,
        orderLinkId=link("S", 0, 1),
    )
    commands, _ = world.check()
    assert [(c.action, c.link_id) for c in commands] == [("cancel", link("S", 0, 0))]


def test_short_positions_mirror_the_rules():
    world = World(entries_filled=3, side="Sell")
    world.check()
    world.price("64300")  # TP1 of a short (64350) fills
    commands, _ = world.check()
    stop = next(c for c in commands if c.key == STOP_KEY)
    assert stop.trigger_price == D("65441.3")  # avg 65520 x (1 - 0.0012), rounded down
    assert world.order(link("S", 0)).trigger_direction == 1


def test_rebuilt_state_recognises_phase_tp1_and_breakeven_from_the_exchange():
    sim = Simulator(seed=4, symbols=64)
    book = sim.load_demo_book(16)
    for entry in book:
        if entry.kind in ("unguarded", "external"):
            continue
        view = view_of(sim.exchange, entry.account, entry.symbol, 1)
        state = rules.adopt(MonitorId(entry.account, entry.symbol), view, 1, RulesConfig())
        assert state.position_id == entry.position_id
        expected_phase = {"building": "BUILDING", "after_tp1": "PROFIT_TAKING"}.get(entry.kind, "MONITORING")
        assert state.phase == expected_phase, entry
        assert state.tp1_done == state.breakeven_done == (entry.kind == "after_tp1")
        assert state.plan.approach == ("fast" if entry.kind == "fast" else "conservative")
        decision = rules.reconcile(state, view, 2, RulesConfig())
        assert decision.commands == (), (entry, decision.commands)


def test_state_survives_a_round_trip_through_its_stored_form():
    world = World(entries_filled=1)
    world.check()
    world.price("65700")
    world.driver.override = lambda c: Unresolved("timeout") if c.action == "cancel" else None
    world.check()
    state = world.driver.state
    assert state.pending
    assert rules.state_from_dict(rules.state_to_dict(state)) == state
    with pytest.raises(ValueError):
        rules.state_from_dict({"monitor": "main:BTCUSDT:0"})


# --- urgency ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def calm():
    world = World(entries_filled=3)
    world.check()
    return world, world.driver.state


def view_at(world, price: str):
    world.price(price)
    return view_of(world.ex, "main", "BTCUSDT", 99)


# Stop 62545.6 and TP1 65650: at 64100 the mark is 2.4 % from both (neither near nor far).
@pytest.mark.parametrize(
    "name, change, price, expected",
    [
        (
            "pending command",
            lambda s: replace(s, pending={STOP_KEY: rules.Pending(rules.Action.PLACE, "x")}),
            "64100",
            Urgency.CRITICAL,
        ),
        ("tp1 filled, stop not at breakeven", lambda s: replace(s, tp1_done=True), "64100", Urgency.CRITICAL),
        ("mark within 0.5% of the next TP", lambda s: s, "65400", Urgency.CRITICAL),
        ("mark within 0.5% of the stop", lambda s: s, "62800", Urgency.CRITICAL),
        (
            "a fill less than 60 s ago",
            lambda s: replace(s, last_change_ms=10_000_000 - 30_000),
            "64100",
            Urgency.CRITICAL,
        ),
        (
            "profit taking",
            lambda s: replace(s, phase=Phase.PROFIT_TAKING, tp1_done=True, breakeven_done=True),
            "64100",
            Urgency.ACTIVE,
        ),
        ("mark within 2% of a trigger", lambda s: s, "64900", Urgency.ACTIVE),
        (
            "90% of the target closed",
            lambda s: replace(s, peak_size=D("1.0"), last_size=D("0.09")),
            "64100",
            Urgency.INACTIVE,
        ),
        (
            "quiet for 10 minutes and far from triggers",
            lambda s: replace(s, plan=replace(s.plan, stop_price=D("60000"), tp_prices=(D("70000"),) * 4)),
            "64100",
            Urgency.IDLE,
        ),
        ("otherwise", lambda s: s, "64100", Urgency.STANDARD),
        (
            "a take-profit blocked for room (R17)",
            lambda s: replace(s, refused={Intent(Role.TAKE_PROFIT, 2): rules.Refusal(110017, "b", 1, 2**62)}),
            "64100",
            Urgency.STANDARD,
        ),
    ],
)
def test_urgency_tiers(calm, name, change, price, expected):
    world, state = calm
    state = change(replace(state, last_change_ms=0))
    view = view_at(world, price)
    if name == "quiet for 10 minutes and far from triggers":
        view = replace(view, orders=())  # no live stop trigger nearer than the plan's
    assert rules.classify_urgency(state, view, 10_000_000) is expected


# --- a trade the daemon opens (the trader's plan) ------------------------------------------------


def planned_world(approach="conservative", side="Buy"):
    world = World(open_plan=False)
    legs, limits = ((D("0.100"),) * 3, (D("64500"), D("64000"))) if approach == "conservative" else ((D("0.300"),), ())
    tps = (D("66000"), D("67000"), D("68000"), D("69000")) if approach == "conservative" else (D("66000"),)
    plan = Plan(Approach(approach), side, rules.ladder_for(len(tps), RulesConfig()), tps, D("63000"), legs, limits)
    world.driver.state = rules.planned(BTC, "pos1", plan, 0)
    return world


def test_a_planned_trade_opens_at_market_then_places_its_limits_stop_and_ladder():
    world = planned_world()
    commands, events = world.check()
    assert [(c.link_id, c.order_type, c.reduce_only) for c in commands] == [(link("E", 1), "Market", False)]
    assert world.size() == D("0.100") and "entry_sent" in kinds(events)
    commands, _ = world.check()
    placed = {c.link_id: c for c in commands}
    assert placed[link("S", 0)].qty == D("0.300") and placed[link("S", 0)].trigger_price == D(
        "63000"
    )  # the full target
    assert (placed[link("E", 2)].price, placed[link("E", 3)].price) == (D("64500"), D("64000"))
    assert [placed[link("T", n)].qty for n in (1, 2, 3, 4)] == [D("0.085"), D("0.005"), D("0.005"), D("0.005")]
    assert world.driver.state.phase == "BUILDING"
    world.ex.fill_order(world.account, link("E", 2))
    world.check()
    assert world.order(link("T", 1)).qty == D("0.170")  # R1: the ladder follows the filled size


def test_a_refused_first_entry_opens_nothing_and_retires_with_the_exchanges_answer():
    world = planned_world(approach="fast")
    world.driver.override = lambda c: (
        Rejected(110007, "ab not enough for new order") if c.link_id == link("E", 1) else None
    )
    commands, events = world.check()
    assert [c.link_id for c in commands] == [link("E", 1)] and "entry_refused" in kinds(events)
    assert world.driver.state.retired == "entry_refused"
    assert world.driver.state.refusal == "110007 ab not enough for new order"
    assert world.account.open_orders("BTCUSDT") == []


def test_new_targets_amend_the_stop_and_take_profits_and_cancel_levels_beyond_the_ladder():
    world = World(entries_filled=3)
    world.check()
    state, event = rules.retarget(world.driver.state, (D("66500"), D("67500")), D("63500"), 0, RulesConfig())
    world.driver.state = state
    assert event.line.startswith("PLAN main:BTCUSDT:0: take-profits 66500, 67500, stop 63500")
    commands, _ = world.check()
    assert world.order(link("S", 0)).trigger_price == D("63500") and world.order(link("S", 0)).is_open
    assert (world.order(link("T", 1)).price, world.order(link("T", 2)).price) == (D("66500"), D("67500"))
    assert not world.order(link("T", 3)).is_open and not world.order(link("T", 4)).is_open
    assert all(c.action != "cancel" or c.key.role is Role.TAKE_PROFIT for c in commands)  # the stop is amended only
    world.check()
    assert world.driver.state.retarget is False and world.driver.state.plan.approach == "conservative"


def test_the_traders_close_cancels_entries_closes_at_market_and_retires_manual():
    world = World(entries_filled=1)
    world.check()
    world.driver.state, _ = rules.request_close(world.driver.state, 0)
    world.check()
    world.check()
    assert world.size() == 0 and world.driver.state.retired == "manual"
    assert not [o for o in world.account.open_orders("BTCUSDT") if OrderLink.parse(o.link_id)]
