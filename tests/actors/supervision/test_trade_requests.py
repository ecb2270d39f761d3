"""The trader's commands as pure functions (actors/supervision/_trade_requests.py): reading a request, sizing an open,
checking new targets. One line per problem, nothing decided on a bad request."""

from __future__ import annotations

from decimal import Decimal

import pytest

from actors.position.rules import RulesConfig
from actors.supervision._trade_requests import (
    CopyRule,
    check_targets,
    describe,
    read_request,
    resolve_accounts,
    size_follower,
    size_open,
)
from messages.gateway import Market
from messages.models import Instrument, Position
from runtime.trade_desk import TradeDesk

D = Decimal
BTC = Instrument("BTCUSDT", D("0.1"), D("0.001"), D("0.001"), D("100"), max_leverage=D("50"))
MARKET = Market("main", "BTCUSDT", BTC, D("65000"), D("10000"))
CONFIG = RulesConfig()
OPEN = {
    "command": "open",
    "symbol": "BTCUSDT",
    "side": "long",
    "approach": "conservative",
    "qty": "0.3",
    "tps": "66000,67000,68000,69000",
    "stop": "63000",
    "limits": "64500,64000",
}


def opened(**changes):
    request, problems = read_request({**OPEN, **changes})
    assert problems == [] and request is not None
    return request


@pytest.mark.parametrize(
    "changes, problem",
    [
        ({"symbol": "btc-usdt"}, "SYMBOL 'btc-usdt' is not a contract name like BTCUSDT"),
        ({"side": "up"}, "side 'up' must be long or short"),
        ({"approach": "yolo"}, "--approach yolo must be conservative or fast"),
        ({"stop": "-1"}, "--stop -1 must be greater than 0"),
        ({"tps": "66000,abc"}, "--tps 'abc' is not a number"),
        ({"tps": "1,2,3,4,5"}, "--tps gives 5 prices; the ladder has at most 4"),
        ({"margin": "100"}, "give exactly one of --qty, --margin, --margin-percent (got --qty, --margin)"),
        ({"qty": None, "margin_percent": "5"}, "--margin-percent needs --leverage"),
        ({"qty": None, "margin_percent": "150", "leverage": "5"}, "--margin-percent 150 must be at most 100"),
        ({"limits": None}, "--limits P2,P3 is required for the conservative approach"),
        ({"limits": "64000"}, "--limits gives 1 prices; the conservative approach needs 2"),
        ({"approach": "fast", "tps": "66000"}, "--limits is only for the conservative approach"),
        (
            {"account": "main mirror"},
            "--account main mirror must be leader, all or NAME[,NAME] (names of A-Z a-z 0-9 _ -)",
        ),
        ({"stop_after": "tp1"}, "--stop-after tp1 must be one of breakeven|previous_tp|two_back"),
        ({"trigger_by": "LastPrice"}, "--trigger-by LastPrice must be one of last|mark|index"),
        ({"time_limit": "0"}, "--time-limit 0 must be greater than 0"),
        ({"time_limit": "soon"}, "--time-limit 'soon' is not a number"),
        ({"time_limit": "600000"}, "--time-limit 600000 must be at most 525600 minutes"),
        ({"trail": "0"}, "--trail 0 must be greater than 0"),
        ({"trail": "60"}, "--trail 60 must be a percent below 50"),
        ({"trail_after": "tp9"}, "--trail-after tp9 must be off, tp1 to tp4, or profit:<percent> (e.g. profit:1.5)"),
    ],
)
def test_each_malformed_open_is_one_line_naming_it(changes, problem):
    request, problems = read_request({k: v for k, v in {**OPEN, **changes}.items() if v is not None})
    assert request is None and problem in problems


def test_every_problem_is_reported_at_once():
    _, problems = read_request({"command": "open", "symbol": "x", "side": "up", "approach": "fast"})
    assert len(problems) >= 5  # symbol, side, --tps, --stop, sizing


def test_conservative_legs_are_a_third_each_and_the_plan_uses_the_ladder():
    plan, problems = size_open(opened(), "main", MARKET, CONFIG)
    assert problems == []
    assert plan.legs == (D("0.1"),) * 3 and plan.limits == (D("64500"), D("64000"))
    assert plan.percents == CONFIG.ladder_percents and plan.stop_price == D("63000")
    assert describe(plan).startswith("conservative long 0.3: 0.1 at market, 0.1 at 64500, 0.1 at 64000")


def test_margin_percent_sizes_on_the_available_balance_and_the_average_entry():
    request = opened(qty=None, margin_percent="10", leverage="5")  # 1000 USDT x 5 over (65000+64500+64000)/3
    plan, _ = size_open(request, "main", MARKET, CONFIG)
    assert plan.legs == (D("0.025"),) * 3  # 0.0775... / 3 rounded down to 0.001


def test_a_fast_trade_is_one_market_leg_one_take_profit():
    plan, _ = size_open(opened(approach="fast", limits=None, tps="66000", qty="0.2"), "main", MARKET, CONFIG)
    assert plan.legs == (D("0.2"),) and plan.limits == () and plan.percents == (D(100),)


@pytest.mark.parametrize(
    "changes, problem",
    [
        ({"stop": "65500"}, "--stop 65500 is not below the market price 65000 (a long's stop must be below it)"),
        ({"tps": "64000,67000,68000,69000"}, "--tps 64000 is not above the market price 65000"),
        ({"side": "short"}, "--stop 63000 is not above the market price 65000 (a short's stop must be above it)"),
        ({"limits": "62000,64000"}, "--limits 62000 is not between the stop 63000 and the market price 65000"),
        ({"qty": "0.002"}, "main: each of 3 legs would be 0.000, below BTCUSDT's minOrderQty 0.001"),
        ({"qty": None, "margin": "100", "leverage": "60"}, "--leverage 60 is above BTCUSDT's maximum 50"),
    ],
)
def test_prices_and_sizes_that_do_not_fit_the_market_are_refused(changes, problem):
    request = read_request({k: v for k, v in {**OPEN, **changes}.items() if v is not None})[0]
    plan, problems = size_open(request, "main", MARKET, CONFIG)
    assert plan is None and any(problem in p for p in problems), problems


def test_an_unknown_symbol_is_refused():
    plan, problems = size_open(opened(symbol="FOOUSDT"), "main", Market("main", "FOOUSDT", None, None, D(1)), CONFIG)
    assert plan is None and problems == ["SYMBOL FOOUSDT: Bybit lists no such linear contract"]


def test_plan_targets_are_checked_against_the_entry_and_the_mark():
    position = Position("BTCUSDT", "Buy", D("0.3"), D("65000"), 0, "Normal", D("64000"), None, None, D(0), 0, 0)
    request = read_request({"command": "plan", "symbol": "BTCUSDT", "tps": "66000,67000", "stop": "64500"})[0]
    _, _, problems = check_targets(request, position, BTC)
    assert problems == ["--stop 64500 is already crossed by the mark price 64000; it would fire at once"]
    request = read_request({"command": "plan", "symbol": "BTCUSDT", "tps": "66000.04", "stop": "63000.01"})[0]
    tps, stop, problems = check_targets(request, position, BTC)
    assert problems == [] and tps == (D("66000.1"),) and stop == D("63000.1")  # snapped towards the long's side


def test_an_account_that_is_not_configured_is_refused_before_anything_is_asked():
    desk = TradeDesk(gateway=None, supervisor=None, roles={"main": None}, config=CONFIG, timeout=1.0)
    assert desk.handle({**OPEN, "account": "main,mirror"}) == {
        "exit": 2,
        "lines": ["--account main,mirror: the mirror account is not configured"],
    }
    assert desk.handle({**OPEN, "stop": "x"})["exit"] == 2  # a malformed request asks nothing either


def test_an_open_carries_its_exits_into_the_plan():
    request, problems = read_request({**OPEN, "stop_after": "two_back", "trigger_by": "mark", "time_limit": "90"})
    assert problems == [] and request is not None
    plan, problems = size_open(request, "main", MARKET, CONFIG)
    assert problems == [] and plan is not None
    assert (plan.stop_after, plan.trigger_by, plan.time_limit_seconds) == ("two_back", "MarkPrice", 5400)
    assert describe(plan).endswith("stop after TPs: two_back; stops trigger on MarkPrice; time limit 90 min")
    request, _ = read_request({**OPEN, "trail": "0.8"})
    plan, _ = size_open(request, "main", MARKET, CONFIG)
    assert (plan.trail_percent, plan.trail_after) == (Decimal("0.8"), "tp1")  # --trail alone: from TP1


def test_a_plan_may_change_the_exits_and_leaves_out_what_it_does_not_give():
    request, problems = read_request(
        {"command": "plan", "symbol": "BTCUSDT", "tps": "66000", "stop": "64000", "trail": "0.7", "trigger_by": "mark"}
    )
    assert problems == [] and request is not None
    assert request.exits() == {"trigger_by": "MarkPrice", "trail_percent": Decimal("0.7"), "trail_after": "tp1"}
    _, problems = read_request({"command": "plan", "symbol": "BTCUSDT", "tps": "1", "stop": "1", "stop_after": "x"})
    assert problems == ["--stop-after x must be one of breakeven|previous_tp|two_back"]


ROLES = {
    "f1": CopyRule("lead", "ratio", D("0.5")),
    "lead": None,
    "f2": CopyRule("lead", "balance_percent"),
    "solo": None,
}


@pytest.mark.parametrize(
    "spec, accounts, problems",
    [
        ("all", ("lead", "solo", "f1", "f2"), []),  # leaders first: a follower is sized from its leader
        ("both", ("lead", "solo", "f1", "f2"), []),
        ("f2,lead", ("lead", "f2"), []),
        ("f1,f1", ("f1",), []),
        ("leader", (), ["--account leader: this daemon guards several leaders (lead, solo); name one"]),
        ("f1,nobody", (), ["--account f1,nobody: the nobody account is not configured"]),
    ],
)
def test_account_names_resolve_to_the_daemons_accounts_leaders_first(spec, accounts, problems):
    assert resolve_accounts(spec, ROLES) == (accounts, problems)
    assert resolve_accounts("leader", {"main": None, "mirror": CopyRule("main")}) == (("main",), [])


@pytest.mark.parametrize(
    "rule, request_changes, follower_balance, legs",
    [
        (CopyRule("lead", "same_qty"), {}, D("10000"), (D("0.100"),) * 3),
        (CopyRule("lead", "ratio", D("0.5")), {}, D("10000"), (D("0.050"),) * 3),
        (CopyRule("lead", "ratio", D("0.25")), {}, D("10000"), (D("0.025"),) * 3),
        (CopyRule("lead", "balance_percent"), {}, D("2500"), (D("0.025"),) * 3),  # a quarter of the balance
        # --margin-percent: the same share of its own balance (5 % of 2500 x 10 over the average entry)
        (
            CopyRule("lead", "balance_percent"),
            {"qty": None, "margin_percent": "5", "leverage": "10"},
            D("2500"),
            (D("0.006"),) * 3,
        ),
    ],
)
def test_a_follower_is_sized_from_its_leaders_trade_by_its_rule(rule, request_changes, follower_balance, legs):
    request = read_request({k: v for k, v in {**OPEN, **request_changes}.items() if v is not None})[0]
    leader_plan, problems = size_open(request, "lead", MARKET, CONFIG)
    assert problems == [] and leader_plan is not None
    market = Market("f", "BTCUSDT", BTC, D("65000"), follower_balance)
    plan, problems = size_follower(request, "f", rule, market, leader_plan, MARKET, CONFIG)
    assert problems == [] and plan is not None
    assert plan.legs == legs
    assert (plan.tp_prices, plan.stop_price, plan.limits) == (
        leader_plan.tp_prices,
        leader_plan.stop_price,
        leader_plan.limits,
    )


def test_a_follower_below_the_minimum_qty_is_refused_alone_with_one_line():
    request = opened()
    leader_plan, _ = size_open(request, "lead", MARKET, CONFIG)
    plan, problems = size_follower(
        request, "tiny", CopyRule("lead", "ratio", D("0.005")), MARKET, leader_plan, MARKET, CONFIG
    )
    assert plan is None
    assert problems == ["tiny: each of 3 legs would be 0.000, below BTCUSDT's minOrderQty 0.001"]
