"""The check cycle (actors/position/_check_cycle.py) and its typed vocabulary: the one order of a check that the
Monitor actor and the rule tests share."""

from __future__ import annotations

import logging
from dataclasses import replace
from decimal import Decimal

import pytest

from actors.position import rules
from actors.position._check_cycle import CheckCycle
from actors.position.rules import EMERGENCY_KEY, STOP_KEY, Action, CloseReason, EventKind, Phase, RulesConfig
from messages.codes import Meaning, RetCode, meaning, outcome_unknown
from messages.gateway import Rejected, Unresolved
from messages.models import Approach, Intent, MonitorId, OrderLink, Role, Urgency
from runtime.backoff import Backoff
from simulator import Simulator
from tests.rules_driver import INTERVALS, Driver
from tests.stubs.book import open_conservative

BTC = MonitorId("main", "BTCUSDT")
D = Decimal


def world(entries_filled: int = 3) -> tuple[Simulator, Driver]:
    sim = Simulator(seed=5, symbols=4)
    sim.exchange.set_price("BTCUSDT", D("65000"))
    open_conservative(sim.exchange, "main", "BTCUSDT", "Buy", D("0.100"), entries_filled=entries_filled)
    return sim, Driver(sim.exchange, BTC)


def test_the_rules_driver_runs_the_daemons_own_cycle():
    _, driver = world()
    assert type(driver.cycle) is CheckCycle


def test_follow_ups_over_the_limit_are_kept_and_sent_first_at_the_next_check(caplog):
    """A stop found gone (R8) whose replacement finds the trigger crossed (R9): two follow-ups.
    With a limit of one, the second is not dropped: logged, then sent at the next check."""
    caplog.set_level(logging.WARNING)
    sim, driver = world()
    driver.cycle = CheckCycle(BTC, driver, driver.clock, INTERVALS, driver.config, max_follow_ups=1)
    driver.check()
    sim.exchange.set_price("BTCUSDT", D("65700"))  # TP1: the stop moves to breakeven
    answers = {
        Action.AMEND: Rejected(RetCode.ORDER_DOES_NOT_EXIST, "Order does not exist."),
        Action.PLACE: Rejected(RetCode.EXPECT_FALLING, "expect Falling"),
    }
    driver.override = lambda c: answers.get(c.action) if c.key == STOP_KEY else None
    sent, events = driver.check()
    assert [c.key for c in sent if c.key in (STOP_KEY, EMERGENCY_KEY)] == [STOP_KEY, STOP_KEY]
    assert EventKind.FOLLOW_UP_DEFERRED in [e.kind for e in events]
    assert EMERGENCY_KEY in driver.state.pending  # its id stays reserved
    assert any(r.getMessage().startswith("FOLLOW-UP DEFERRED") for r in caplog.records)
    driver.override = None
    sent, _ = driver.check()
    assert sent[0].key == EMERGENCY_KEY and sent[0].link_id == OrderLink("pos1", Role.EMERGENCY_CLOSE, 0, 0).build()


def test_intents_are_typed_and_round_trip():
    assert str(Intent(Role.TAKE_PROFIT, 2)) == "T2" and Intent.parse("S0") == STOP_KEY
    assert OrderLink.parse("tg-pos1-T3-4").intent == Intent(Role.TAKE_PROFIT, 3)
    for bad in ("", "T", "Q1", "T100", "dup:tg-pos1-T1-0"):
        with pytest.raises(ValueError):
            Intent.parse(bad)


def test_a_state_round_trips_with_its_types():
    _, driver = world()
    driver.check()
    state = driver.state
    again = rules.state_from_dict(rules.state_to_dict(state))
    assert again == state
    assert again.phase is Phase.MONITORING and again.plan.approach is Approach.CONSERVATIVE
    assert again.urgency is Urgency.CRITICAL and all(isinstance(k, Intent) for k in again.generations)


def test_an_older_state_with_cleanup_keys_in_pending_is_read_into_cleanup():
    _, driver = world()
    driver.check()
    data = rules.state_to_dict(driver.state)
    pending = {"action": "cancel", "link_id": "tg-pos1-T2-0", "qty": None, "trigger_price": None}
    data["pending"] = {"close:tg-pos1-T2-0": pending, "S0": {**pending, "action": "place", "link_id": "tg-pos1-S0-1"}}
    data.pop("cleanup")
    data["closing"] = "manual"
    state = rules.state_from_dict(data)
    assert set(state.cleanup) == {"tg-pos1-T2-0"} and set(state.pending) == {STOP_KEY}
    assert state.closing is CloseReason.MANUAL and state.awaiting


def test_every_named_code_says_what_it_means_to_us():
    assert meaning(RetCode.ORDER_DOES_NOT_EXIST) is Meaning.GONE
    assert meaning(RetCode.EXPECT_RISING) is meaning(RetCode.EXPECT_FALLING) is Meaning.TRIGGER_CROSSED
    assert meaning(RetCode.DUPLICATE_ORDER_LINK_ID) is Meaning.ALREADY_EXISTS
    assert outcome_unknown(RetCode.TOO_MANY_VISITS) and outcome_unknown(10016)
    assert meaning(110007) is Meaning.REFUSED and meaning(None) is Meaning.REFUSED and not outcome_unknown(110017)


def test_backoff_doubles_up_to_its_cap_and_starts_over():
    backoff = Backoff(1.0, 5.0)
    assert [backoff.next() for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    backoff.reset()
    assert backoff.next() == 1.0
    with pytest.raises(ValueError):
        Backoff(0.0, 1.0)


def test_a_position_left_without_a_stop_is_alerted_after_one_critical_interval_then_every_5_minutes():
    sim, driver = world()
    driver.cycle = CheckCycle(BTC, driver, driver.clock, INTERVALS, RulesConfig(adoption_policy="observe"))
    for order in list(sim.account("main").open_orders("BTCUSDT")):  # an adopted position, nothing on it
        sim.exchange.cancel_order(
            sim.account("main"), {"category": "linear", "symbol": "BTCUSDT", "orderId": order.order_id}
        )
    alerts = lambda events: [e for e in events if e.kind is EventKind.UNPROTECTED and e.critical]
    assert alerts(driver.check(advance_ms=1_000)[1]) == []  # just seen: not yet
    assert alerts(driver.check(advance_ms=1_000)[1]) == []  # 1 s: within the critical interval
    first = alerts(driver.check(advance_ms=2_000)[1])
    assert len(first) == 1 and first[0].line.startswith("UNPROTECTED main:BTCUSDT:0: no live stop")
    assert all(not alerts(driver.check(advance_ms=60_000)[1]) for _ in range(4))  # 4 minutes on: quiet
    assert len(alerts(driver.check(advance_ms=60_000)[1])) == 1  # 5 minutes: again
    assert any(c for c, _, entries in driver.records if any(e.event == "unprotected" for e in entries))  # journaled


class PushedViews(Driver):
    """Views as a healthy stream serves them: the same snapshot id until a fresh read is asked."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fresh_reads = 0

    def view(self, max_age: float, closed_for: frozenset[str] | None = None, fresh: bool = False):
        self.fresh_reads += fresh
        self.snapshot += 1 if fresh or self.snapshot == 0 else 0
        self.snapshot -= 1  # Driver.view counts one more
        view = super().view(max_age, closed_for)
        return replace(view, pushed=not fresh)


def test_on_pushed_views_an_uncertain_command_is_settled_by_snapshots_read_for_it():
    """R10 counts fresh snapshots only; pushed views never advance the id, so the cycle asks for
    a fresh read while something awaits its outcome (else it would wait for a resync)."""
    sim, _ = world()
    driver = PushedViews(sim.exchange, BTC)
    driver.check()
    sim.exchange.cancel_order(
        sim.account("main"), {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "tg-pos1-S0-0"}
    )
    driver.override = lambda c: Unresolved("timeout") if c.key == STOP_KEY else None  # it never lands
    driver.check()
    driver.override = None
    for _ in range(3):
        driver.check()
    assert driver.fresh_reads >= 2
    assert [o.link_id for o in sim.account("main").open_orders("BTCUSDT") if o.is_conditional] == ["tg-pos1-S0-2"]


def test_a_check_is_quiet_only_when_pushed_protected_and_nothing_was_sent_or_awaits():
    sim, _ = world()
    driver = PushedViews(sim.exchange, BTC)
    driver.check()  # adoption: nothing to send, stop in place
    assert driver.last_result.quiet
    sim.exchange.cancel_order(
        sim.account("main"), {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "tg-pos1-S0-0"}
    )
    driver.override = lambda c: Rejected(10005, "Permission denied") if c.key == STOP_KEY else None
    driver.check()  # the stop refused: tried again after 2 s, doubling (R17), unprotected meanwhile
    assert not driver.last_result.quiet and driver.last_result.unprotected
    driver.override = None
    driver.check(advance_ms=1_000)  # before its retry time: nothing sent, but not quiet (it waits for a time)
    assert driver.last_result.sent == () and not driver.last_result.quiet
    driver.check(advance_ms=2_000)  # placed: sent something, so not yet quiet
    assert not driver.last_result.quiet
    driver.check()
    assert driver.last_result.quiet


def test_a_check_waiting_for_a_profit_to_start_trailing_is_never_quiet():
    sim, _ = world()
    driver = PushedViews(sim.exchange, BTC)
    driver.check()
    assert driver.last_result.quiet
    state = driver.state
    driver.state = replace(state, plan=replace(state.plan, trail_after="profit:50", trail_percent=Decimal(1)))
    driver.check()  # no push tells it the price reached the profit: it stays on its tier's timer
    assert not driver.last_result.quiet and driver.state.trail_extreme is None


def test_on_pushed_views_a_flat_position_seen_once_is_confirmed_by_a_snapshot_read_for_it():
    """A close the stream did not tell (its flat row lost) is found by a snapshot (a resync):
    the second confirming snapshot is read at the next check, not at the next resync."""
    sim, _ = world()
    driver = PushedViews(sim.exchange, BTC)
    driver.check()
    size = sim.account("main").positions["BTCUSDT"].size
    sim.place("main", symbol="BTCUSDT", side="Sell", orderType="Market", qty=str(size))  # closed by hand
    driver.snapshot += 1  # a resync read it: one fresh snapshot
    driver.check()
    assert driver.state.gone_snapshots and not driver.last_result.quiet
    reads = driver.fresh_reads
    driver.check()
    assert driver.fresh_reads == reads + 1 and driver.state.retired is not None
