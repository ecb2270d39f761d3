"""Every fault knob, observed from a pybit client (and the control endpoints that set them)."""

from __future__ import annotations

import time

import pytest
import requests
from pybit.exceptions import FailedRequestError, InvalidRequestError

from messages.endpoints import Api
from simulator.faults import Fault
from tests.conftest import pybit_client

POSITIONS = Api.POSITIONS
CREATE = Api.PLACE_ORDER


def place(client, link_id: str):
    return client.place_order(
        category="linear",
        symbol="BTCUSDT",
        side="Buy",
        orderType="Limit",
        qty="0.001",
        price="60000",
        orderLinkId=link_id,
    )


def test_http_5xx_is_a_failed_request_and_nothing_is_applied(sim, main_client):
    sim.add_fault(kind="http_5xx", endpoint=CREATE, status=503, count=1)
    with pytest.raises(FailedRequestError) as info:
        place(main_client, "tg-f-E1-0")
    assert info.value.status_code == 503
    assert "tg-f-E1-0" not in sim.account("main").by_link
    assert place(main_client, "tg-f-E1-0")["retCode"] == 0  # count=1: gone after one use


def test_retcode_10016_is_a_business_error(sim, main_client):
    sim.add_fault(kind="retcode", endpoint=POSITIONS, code=10016)
    with pytest.raises(InvalidRequestError) as info:
        main_client.get_positions(category="linear", settleCoin="USDT")
    assert info.value.status_code == 10016


def test_injected_10006_carries_a_future_reset_time(sim, main_client):
    sim.add_fault(kind="retcode", endpoint=POSITIONS, code=10006, message="Too many visits!")
    with pytest.raises(InvalidRequestError) as info:
        main_client.get_positions(category="linear", settleCoin="USDT")
    assert int(info.value.resp_headers["X-Bapi-Limit-Reset-Timestamp"]) > time.time() * 1000


def test_hang_runs_into_the_client_timeout(sim):
    client = pybit_client(sim, timeout=0.3)
    sim.add_fault(kind="hang", endpoint=POSITIONS, seconds=5, count=1)
    with pytest.raises(requests.exceptions.ReadTimeout):
        client.get_positions(category="linear", settleCoin="USDT")
    assert client.get_positions(category="linear", settleCoin="USDT")["retCode"] == 0


def test_lost_response_applies_the_write_and_the_order_is_found_by_link_id(sim, main_client):
    sim.add_fault(kind="lost_response", endpoint=CREATE, count=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        place(main_client, "tg-lost-S0-0")
    found = main_client.get_open_orders(category="linear", orderLinkId="tg-lost-S0-0")["result"]["list"]
    assert [o["orderLinkId"] for o in found] == ["tg-lost-S0-0"]


def test_dropped_connection_applies_nothing(sim, main_client):
    sim.add_fault(kind="drop_connection", endpoint=CREATE, count=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        place(main_client, "tg-drop-S0-0")
    assert "tg-drop-S0-0" not in sim.account("main").by_link


def test_malformed_json_is_pybits_decode_failure(sim, main_client):
    sim.add_fault(kind="malformed_json", endpoint=POSITIONS, count=1)
    with pytest.raises(FailedRequestError) as info:
        main_client.get_positions(category="linear", settleCoin="USDT")
    assert info.value.status_code == 409 and "Could not decode JSON" in info.value.message


def test_stuck_cursor_repeats_itself(sim, main_client):
    sim.load_demo_book(10)
    sim.add_fault(kind="stuck_cursor", endpoint=Api.OPEN_ORDERS)
    first = main_client.get_open_orders(category="linear", settleCoin="USDT", limit=5)["result"]
    again = main_client.get_open_orders(category="linear", settleCoin="USDT", limit=5, cursor=first["nextPageCursor"])[
        "result"
    ]
    assert again["nextPageCursor"] == first["nextPageCursor"]
    assert [o["orderId"] for o in again["list"]] == [o["orderId"] for o in first["list"]]


def test_last_page_cursor_leads_to_an_empty_page(sim, main_client):
    sim.load_demo_book(3)
    sim.add_fault(kind="last_page_cursor", endpoint=POSITIONS)
    first = main_client.get_positions(category="linear", settleCoin="USDT", limit=200)["result"]
    assert len(first["list"]) == 3 and first["nextPageCursor"]
    after = main_client.get_positions(category="linear", settleCoin="USDT", limit=200, cursor=first["nextPageCursor"])[
        "result"
    ]
    assert after["list"] == []


def test_latency_applies_to_its_account_only(sim):
    import threading

    sim.add_fault(kind="latency", account="mirror", ms=400)
    mirror, main = pybit_client(sim, "mirror"), pybit_client(sim, "main")
    done: list[str] = []
    slow = threading.Thread(
        target=lambda: (mirror.get_positions(category="linear", settleCoin="USDT"), done.append("mirror"))
    )
    started = time.monotonic()
    slow.start()
    main.get_positions(category="linear", settleCoin="USDT")
    done.append("main")
    slow.join(5)
    assert done == ["main", "mirror"]  # main was answered while the mirror request was held
    assert time.monotonic() - started >= 0.4


def test_skip_lets_the_first_requests_through(sim, main_client):
    sim.add_fault(kind="retcode", endpoint=POSITIONS, code=10016, skip=2, count=1)
    for _ in range(2):
        assert main_client.get_positions(category="linear", settleCoin="USDT")["retCode"] == 0
    with pytest.raises(InvalidRequestError):
        main_client.get_positions(category="linear", settleCoin="USDT")
    assert main_client.get_positions(category="linear", settleCoin="USDT")["retCode"] == 0


@pytest.mark.parametrize(
    "knobs, message",
    [
        ({"kind": "meteor"}, "unknown fault kind"),
        ({"kind": "hang", "count": 0}, "count must be at least 1"),
        ({"kind": "hang", "endpoint": "order/create"}, "endpoint must be a /v5/ path"),
    ],
)
def test_invalid_faults_are_refused(knobs, message):
    with pytest.raises(ValueError, match=message):
        Fault(**knobs)


def test_fault_from_json_rejects_unknown_fields():
    with pytest.raises(ValueError, match="unknown fault field"):
        Fault.from_json({"kind": "hang", "sekonds": 3})


class TestControlEndpoints:
    def post(self, sim, path, body):
        return requests.post(f"{sim.url}{path}", json=body, timeout=5)

    def test_faults_set_listed_and_cleared_over_http(self, sim, main_client):
        answer = self.post(sim, "/sim/faults", {"kind": "retcode", "endpoint": POSITIONS, "code": 10016})
        assert answer.status_code == 200 and answer.json()["faults"][0]["code"] == 10016
        with pytest.raises(InvalidRequestError):
            main_client.get_positions(category="linear", settleCoin="USDT")
        assert requests.get(f"{sim.url}/sim/faults", timeout=5).json()["faults"]
        self.post(sim, "/sim/faults", {"clear": True})
        assert main_client.get_positions(category="linear", settleCoin="USDT")["retCode"] == 0

    def test_bad_fault_is_http_400_with_the_reason(self, sim):
        answer = self.post(sim, "/sim/faults", {"kind": "meteor"})
        assert answer.status_code == 400 and "unknown fault kind" in answer.json()["error"]

    def test_stats_count_every_request_per_account_and_endpoint(self, sim, main_client):
        for _ in range(3):
            main_client.get_positions(category="linear", settleCoin="USDT")
        pybit_client(sim, "mirror").get_open_orders(category="linear", settleCoin="USDT")
        requests.get(f"{sim.url}/v5/market/tickers?category=linear", timeout=5)
        stats = requests.get(f"{sim.url}/sim/stats", timeout=5).json()
        assert stats["requests"] == {
            "main": {POSITIONS: 3},
            "mirror": {Api.OPEN_ORDERS: 1},
            "public": {Api.TICKERS: 1},
        }
        assert stats["total"] == 5
        self.post(sim, "/sim/stats/reset", {})
        assert requests.get(f"{sim.url}/sim/stats", timeout=5).json()["total"] == 0

    def test_price_order_fill_and_state(self, sim):
        assert self.post(sim, "/sim/price", {"symbol": "BTCUSDT", "price": "65000"}).json()["price"] == "65000.0"
        self.post(
            sim,
            "/sim/order",
            {"account": "mirror", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Market", "qty": "0.010"},
        )
        self.post(
            sim,
            "/sim/order",
            {
                "account": "mirror",
                "symbol": "BTCUSDT",
                "side": "Sell",
                "orderType": "Limit",
                "qty": "0.004",
                "price": "66000",
                "reduceOnly": True,
                "orderLinkId": "tg-c-T1-0",
            },
        )
        self.post(sim, "/sim/fill", {"account": "mirror", "order": "tg-c-T1-0", "qty": "0.001"})
        state = requests.get(f"{sim.url}/sim/state", timeout=5).json()
        mirror = state["accounts"]["mirror"]
        assert mirror["positions"][0]["size"] == "0.009"
        assert mirror["orders"][0]["orderStatus"] == "PartiallyFilled"
        assert state["accounts"]["main"]["positions"] == []
        assert (
            self.post(
                sim, "/sim/cancel", {"account": "mirror", "symbol": "BTCUSDT", "orderLinkId": "tg-c-T1-0"}
            ).status_code
            == 200
        )
        assert self.post(sim, "/sim/step", {"seconds": 2}).status_code == 200

    @pytest.mark.parametrize("status", ["Liq", "Adl"])
    def test_liquidate_closes_the_position_as_the_exchange_would(self, sim, status):
        opened = {"account": "main", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Market", "qty": "0.010"}
        self.post(sim, "/sim/order", opened)
        take_profit = {**opened, "side": "Sell", "orderType": "Limit", "price": "99000", "reduceOnly": True}
        self.post(sim, "/sim/order", {**take_profit, "qty": "0.005", "orderLinkId": "tg-l-T1-0"})
        answer = self.post(sim, "/sim/liquidate", {"account": "main", "symbol": "BTCUSDT", "status": status})
        assert answer.status_code == 200 and answer.json() == {"liquidated": "BTCUSDT", "status": status}
        main = requests.get(f"{sim.url}/sim/state", timeout=5).json()["accounts"]["main"]
        assert main["positions"] == [] and main["orders"] == []
        history = sim.exchange.accounts["main"].by_link["tg-l-T1-0"]
        assert history.status == "Cancelled" and history.cancel_type == "CancelAllBeforeLiq"
        again = self.post(sim, "/sim/liquidate", {"account": "main", "symbol": "BTCUSDT"})
        assert again.status_code == 400 and "110017" in again.json()["error"]  # nothing left to liquidate
        wrong = self.post(sim, "/sim/liquidate", {"account": "main", "symbol": "BTCUSDT", "status": "Boom"})
        assert wrong.status_code == 400

    def test_an_instrument_is_delisted_then_settled_as_the_exchange_would(self, sim, main_client):
        opened = {"account": "main", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Market", "qty": "0.010"}
        self.post(sim, "/sim/order", opened)
        stop = {**opened, "side": "Sell", "triggerPrice": "1000", "triggerDirection": 2, "reduceOnly": True}
        self.post(sim, "/sim/order", {**stop, "orderLinkId": "tg-d-S0-0"})
        delivering = {"symbol": "BTCUSDT", "status": "Delivering", "deliveryTime": 1_900_000_000_000}
        assert self.post(sim, "/sim/instrument", delivering).status_code == 200
        info = main_client.get_instruments_info(category="linear", symbol="BTCUSDT")["result"]["list"][0]
        assert info["status"] == "Delivering" and info["deliveryTime"] == "1900000000000"
        refused = self.post(sim, "/sim/order", opened)  # a new entry: only reducing is allowed now
        assert refused.status_code == 400 and "110042" in refused.json()["error"]
        closed = self.post(sim, "/sim/instrument", {"symbol": "BTCUSDT", "status": "Closed", "price": "64000"})
        assert closed.status_code == 200
        main = requests.get(f"{sim.url}/sim/state", timeout=5).json()["accounts"]["main"]
        assert main["positions"] == [] and main["orders"] == []
        assert sim.exchange.accounts["main"].by_link["tg-d-S0-0"].cancel_type == "CancelBySettle"
        wrong = self.post(sim, "/sim/instrument", {"symbol": "BTCUSDT", "status": "Gone"})
        assert wrong.status_code == 400

    def test_bybit_errors_from_control_actions_are_http_400(self, sim):
        answer = self.post(sim, "/sim/fill", {"account": "main", "order": "nope"})
        assert answer.status_code == 400 and "110001" in answer.json()["error"]

    def test_unknown_control_endpoint_is_404(self, sim):
        assert requests.get(f"{sim.url}/sim/nothing", timeout=5).status_code == 404


def test_control_endpoints_refuse_non_loopback_clients():
    from simulator.server import _is_loopback

    assert _is_loopback("127.0.0.1") and _is_loopback("127.8.0.1") and _is_loopback("::1")
    assert not _is_loopback("10.0.0.5") and not _is_loopback("192.168.1.2") and not _is_loopback("x")
