"""Bybit's request limits: 10006 per account and endpoint with headers, 403 per IP."""

from __future__ import annotations

import time

import pytest
from pybit.exceptions import FailedRequestError, InvalidRequestError

from messages.endpoints import Api
from simulator.limits import RateLimits
from tests.conftest import pybit_client


def limit_order(n: int) -> dict:
    return {
        "category": "linear",
        "symbol": "BTCUSDT",
        "side": "Buy",
        "orderType": "Limit",
        "qty": "0.001",
        "price": "60000",
        "orderLinkId": f"tg-rl-E{n}-0",
    }


def test_eleventh_create_in_one_second_is_10006_with_a_future_reset(sim):
    client = pybit_client(sim, return_response_headers=True)
    statuses = []
    for n in range(10):
        _, _, headers = client.place_order(**limit_order(n))
        statuses.append(int(headers["X-Bapi-Limit-Status"]))
        assert headers["X-Bapi-Limit"] == "10"
    assert statuses == list(range(9, -1, -1))
    with pytest.raises(InvalidRequestError) as info:
        client.place_order(**limit_order(10))
    assert info.value.status_code == 10006 and info.value.message == "Too many visits!"
    headers = info.value.resp_headers
    assert headers["X-Bapi-Limit-Status"] == "0"
    assert int(headers["X-Bapi-Limit-Reset-Timestamp"]) > time.time() * 1000
    assert len(sim.account("main").orders) == 10  # the refused one was not placed
    assert sim.stats.snapshot()["rate_limited_10006"] == 1


def test_limits_are_per_account_and_per_endpoint(sim):
    main, mirror = pybit_client(sim, "main"), pybit_client(sim, "mirror")
    for n in range(10):
        main.place_order(**limit_order(n))
    assert mirror.place_order(**limit_order(0))["retCode"] == 0  # other account
    assert main.get_open_orders(category="linear", settleCoin="USDT")["retCode"] == 0  # other endpoint


def test_reads_carry_the_50_per_second_headers(sim):
    _, _, headers = pybit_client(sim, return_response_headers=True).get_positions(category="linear", settleCoin="USDT")
    assert headers["X-Bapi-Limit"] == "50" and headers["X-Bapi-Limit-Status"] == "49"


def test_batch_past_the_budget_fails_per_order(sim):
    client = pybit_client(sim)
    for n in range(8):
        client.place_batch_order(
            category="linear", request=[{k: v for k, v in limit_order(n).items() if k != "category"}]
        )
    answer = client.place_batch_order(
        category="linear", request=[{k: v for k, v in limit_order(n).items() if k != "category"} for n in range(20, 25)]
    )
    assert [c["code"] for c in answer["retExtInfo"]["list"]] == [0, 0, 10006, 10006, 10006]


def test_more_than_the_ip_limit_in_five_seconds_bans_every_request_with_403(sim):
    sim.limits.ip_limit = 25
    client = pybit_client(sim)
    for _ in range(25):
        client.get_server_time()
    with pytest.raises(FailedRequestError) as info:
        client.get_positions(category="linear", settleCoin="USDT")
    assert info.value.status_code == 403
    with pytest.raises(FailedRequestError):
        client.get_server_time()  # public market data too: the ban is per IP
    assert sim.stats.snapshot()["ip_banned_403"] == 2
    sim.clear_faults()  # lifts the ban
    assert client.get_server_time()["retCode"] == 0


class FakeTime:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_window_rolls_after_one_second():
    clock = FakeTime()
    limits = RateLimits(monotonic=clock, wall_ms=lambda: int(clock.now * 1000))
    assert [limits.take("main", Api.AMEND_ORDER).granted for _ in range(11)] == [1] * 10 + [0]
    refused = limits.take("main", Api.AMEND_ORDER)
    assert refused.reset_ms == 101_000  # when the first request leaves the window
    clock.now += 0.999
    assert limits.take("main", Api.AMEND_ORDER).granted == 0
    clock.now += 0.002
    assert limits.take("main", Api.AMEND_ORDER).granted == 1


def test_unmetered_endpoints_have_no_quota():
    assert RateLimits().take("public", Api.TICKERS) is None


def test_ip_ban_lasts_its_period():
    clock = FakeTime()
    limits = RateLimits(ip_limit=3, ip_ban_seconds=10, monotonic=clock)
    assert [limits.ip_allows() for _ in range(4)] == [True, True, True, False]
    clock.now += 9.9
    assert not limits.ip_allows()
    clock.now += 0.2
    assert limits.ip_allows()
