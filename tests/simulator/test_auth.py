"""Auth exactly as Bybit: HMAC over timestamp + key + recv_window + raw payload."""

from __future__ import annotations

import time

import pytest
from pybit.exceptions import FailedRequestError, InvalidRequestError

from messages.endpoints import Api
from tests.conftest import pybit_client
from tests.simulator.helpers import compact, raw_request


def test_pybit_signed_get_and_post_are_accepted(sim, main_client):
    assert main_client.get_positions(category="linear", settleCoin="USDT")["retCode"] == 0
    answer = main_client.place_order(
        category="linear",
        symbol="BTCUSDT",
        side="Buy",
        orderType="Limit",
        qty="0.001",
        price="60000",
        orderLinkId="tg-auth1-E1-0",
    )
    assert answer["retCode"] == 0 and answer["result"]["orderLinkId"] == "tg-auth1-E1-0"


def test_wrong_secret_gets_10004(sim):
    client = pybit_client(sim, api_secret="not-the-secret")
    with pytest.raises(InvalidRequestError) as info:
        client.get_positions(category="linear", settleCoin="USDT")
    assert info.value.status_code == 10004


def test_unknown_key_gets_10003(sim):
    client = pybit_client(sim, api_key="NOSUCHKEY")
    with pytest.raises(InvalidRequestError) as info:
        client.get_wallet_balance(accountType="UNIFIED")
    assert info.value.status_code == 10003


def test_10004_message_never_echoes_the_api_key(sim):
    body = raw_request(sim, "GET", Api.POSITIONS, "category=linear&settleCoin=USDT", secret="wrong").json()
    assert body["retCode"] == 10004
    assert sim.credentials["main"].api_key not in body["retMsg"]


@pytest.mark.parametrize(
    "age_ms, recv_window, accepted",
    [
        (0, "5000", True),
        (4000, "5000", True),
        (6000, "5000", False),  # older than the window
        (6000, "10000", True),  # a wider window admits it
        (-900, "5000", True),  # slightly ahead of the server
        (-1500, "5000", False),  # more than 1 s ahead
    ],
)
def test_timestamp_window(sim, age_ms, recv_window, accepted):
    ts = int(time.time() * 1000) - age_ms
    body = raw_request(
        sim, "GET", Api.POSITIONS, "category=linear&settleCoin=USDT", timestamp=ts, recv_window=recv_window
    ).json()
    assert (body["retCode"] == 0) is accepted, body
    if not accepted:
        assert body["retCode"] == 10002 and "recv_window" in body["retMsg"]


def test_unsorted_query_and_compact_json_are_verified_as_sent(sim):
    """Other clients (ccxt) sign unsorted queries and compact JSON: the raw bytes are what count."""
    got = raw_request(sim, "GET", Api.POSITIONS, "settleCoin=USDT&category=linear&limit=5").json()
    assert got["retCode"] == 0
    body = compact(
        {
            "symbol": "ETHUSDT",
            "category": "linear",
            "side": "Buy",
            "orderType": "Limit",
            "qty": "0.1",
            "price": "3000",
            "orderLinkId": "tg-auth2-E1-0",
        }
    )
    assert raw_request(sim, "POST", Api.PLACE_ORDER, body).json()["retCode"] == 0


def test_signature_over_a_reserialised_payload_is_refused(sim):
    """Signing a different serialisation than the one sent must fail (raw bytes, not re-parsed)."""
    import requests

    from simulator.server import sign

    creds = sim.credentials["main"]
    ts = str(int(time.time() * 1000))
    sent = '{"category": "linear", "symbol": "BTCUSDT"}'
    signed_as = '{"category":"linear","symbol":"BTCUSDT"}'
    response = requests.post(
        f"{sim.url}/v5/order/cancel-all",
        data=sent,
        timeout=5,
        headers={
            "X-BAPI-API-KEY": creds.api_key,
            "X-BAPI-TIMESTAMP": ts,
            "X-BAPI-RECV-WINDOW": "5000",
            "X-BAPI-SIGN": sign(creds.api_secret, ts, creds.api_key, "5000", signed_as),
        },
    )
    assert response.json()["retCode"] == 10004


def test_missing_auth_headers_get_http_401(sim):
    import requests

    response = requests.get(f"{sim.url}/v5/position/list?category=linear&settleCoin=USDT", timeout=5)
    assert response.status_code == 401


def test_sign_type_header_is_ignored(sim, main_client):
    """pybit sends X-BAPI-SIGN-TYPE: 2 for HMAC; it must not matter."""
    assert main_client.get_open_orders(category="linear", settleCoin="USDT")["retCode"] == 0


def test_public_market_data_needs_no_signature(sim):
    import requests

    body = requests.get(f"{sim.url}/v5/market/tickers?category=linear&symbol=BTCUSDT", timeout=5).json()
    assert body["retCode"] == 0 and body["result"]["list"][0]["symbol"] == "BTCUSDT"
    assert "timeSecond" in requests.get(f"{sim.url}/v5/market/time", timeout=5).json()["result"]


def test_unknown_path_is_http_404(sim, main_client):
    import requests

    assert requests.get(f"{sim.url}/v5/nothing/here", timeout=5).status_code == 404
    with pytest.raises(FailedRequestError) as info:
        main_client._submit_request(
            method="GET", path=f"{sim.url}/v5/order/nothing", query={"category": "linear"}, auth=True
        )
    assert info.value.status_code == 404
