"""The simulator's WebSockets, as Bybit's: tried with pybit's own `WebSocket` client, unchanged
(only pointed at loopback, ../shared/reference/bybit-ws.md 4.1), and with a raw websocket-client
connection where the wire itself is the point."""

from __future__ import annotations

import hashlib
import hmac
import time
from decimal import Decimal

import orjson
import pytest
import websocket
from pybit.unified_trading import WebSocket

from messages.models import Order, Position
from simulator import Simulator
from tests.e2e.harness import wait_until


class LocalWebSocket(WebSocket):
    """pybit's client, connecting (and reconnecting) to the simulator instead of Bybit."""

    def __init__(self, url: str, **kwargs):
        self._local_url = url
        super().__init__(**kwargs)

    def _connect(self, url):
        super()._connect(self._local_url)


@pytest.fixture
def sim():
    simulator = Simulator(seed=4, symbols=8)
    simulator.exchange.set_price("BTCUSDT", Decimal("65000"))
    simulator.start()
    yield simulator
    simulator.stop()


def private(sim: Simulator, account: str = "main", secret: str | None = None) -> LocalWebSocket:
    creds = sim.credentials[account]
    return LocalWebSocket(
        sim.ws_private,
        channel_type="private",
        testnet=False,
        api_key=creds.api_key,
        api_secret=secret or creds.api_secret,
        private_auth_expire=5,
    )


def auth_message(sim: Simulator, account: str = "main", expires_in_ms: int = 5000, secret: str | None = None) -> dict:
    creds = sim.credentials[account]
    expires = int(time.time() * 1000) + expires_in_ms
    signature = hmac.new((secret or creds.api_secret).encode(), f"GET/realtime{expires}".encode(), hashlib.sha256)
    return {"op": "auth", "req_id": 7, "args": [creds.api_key, expires, signature.hexdigest()]}


class Raw:
    """A raw client: send JSON, read JSON, with timeouts."""

    def __init__(self, url: str):
        self.socket = websocket.create_connection(url, timeout=5)

    def send(self, message: dict) -> None:
        self.socket.send(orjson.dumps(message).decode())

    def recv(self, timeout: float = 3.0) -> dict:
        self.socket.settimeout(timeout)
        return orjson.loads(self.socket.recv())

    def until(self, predicate, timeout: float = 5.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.recv(max(0.05, deadline - time.monotonic()))
            if predicate(message):
                return message
        raise AssertionError("no such message")

    def close(self) -> None:
        self.socket.close()


def test_pybit_authenticates_subscribes_and_receives_every_private_topic(sim):
    got: dict[str, list] = {"order": [], "execution": [], "position": [], "wallet": []}
    ws = private(sim)
    try:
        for topic, stream in (
            ("order", ws.order_stream),
            ("execution", ws.execution_stream),
            ("position", ws.position_stream),
            ("wallet", ws.wallet_stream),
        ):
            stream(lambda message, t=topic: got[t].append(message))
        wait_until(lambda: sim.ws_stats.get("subscriptions:main") == 4, 5, "four subscriptions")
        sim.place("main", symbol="BTCUSDT", side="Buy", orderType="Market", qty="0.010", orderLinkId="tg-ws1-E1-0")
        wait_until(lambda: all(got.values()), 5, "a push on every topic")
    finally:
        ws.exit()
    orders = [Order.from_v5(row) for m in got["order"] for row in m["data"]]  # the daemon's own parsers
    assert [o.status for o in orders] == ["New", "Filled"] and orders[-1].link_id == "tg-ws1-E1-0"
    positions = [Position.from_v5(row) for m in got["position"] for row in m["data"]]
    assert positions[-1].size == Decimal("0.010") and positions[-1].avg_price > 0  # from `entryPrice`
    execution = got["execution"][0]["data"][0]
    assert execution["execQty"] == "0.010" and execution["seq"] == got["position"][-1]["data"][0]["seq"]
    assert {m["topic"] for m in got["order"]} == {"order"} and all("creationTime" in m for m in got["order"])
    assert got["wallet"][0]["data"][0]["accountType"] == "UNIFIED"


def test_a_bad_signature_is_refused_and_pybit_shows_it_only_as_exited(sim):
    ws = private(sim, secret="not-the-secret")
    wait_until(lambda: ws.exited, 5, "pybit's stream to give up")
    assert sim.ws_stats.get("auth_failures") == 1
    raw = Raw(sim.ws_private)
    try:
        raw.send(auth_message(sim, expires_in_ms=-1000))  # expired
        reply = raw.recv()
        assert (reply["op"], reply["success"], reply["ret_msg"], reply["req_id"]) == (
            "auth",
            False,
            "Params Error",
            "7",
        )
    finally:
        raw.close()


def test_acks_echo_req_id_as_a_string_and_refuse_what_bybit_refuses(sim):
    raw = Raw(sim.ws_private)
    try:
        raw.send({"op": "subscribe", "req_id": 1, "args": ["order"]})
        early = raw.recv()
        assert (early["success"], early["req_id"]) == (False, "1") and "needs auth" in early["ret_msg"]
        raw.send(auth_message(sim))
        auth = raw.recv()
        assert (auth["op"], auth["success"], auth["req_id"], auth["ret_msg"]) == ("auth", True, "7", "")
        raw.send({"op": "subscribe", "req_id": 2, "args": ["order", "position.linear"]})
        assert raw.recv()["success"] is False  # all-in-one and .linear mixed
        raw.send({"op": "subscribe", "req_id": 3, "args": ["order.linear", "execution.linear"]})
        ack = raw.recv()
        assert (ack["op"], ack["success"], ack["req_id"], ack["ret_msg"]) == ("subscribe", True, "3", "")
        raw.send({"op": "subscribe", "req_id": 4, "args": ["publicTrade.BTCUSDT"]})
        assert raw.recv()["ret_msg"].startswith("error:handler not found")
        sim.place("main", symbol="BTCUSDT", side="Buy", orderType="Market", qty="0.001")
        first, second = raw.recv(), raw.recv()
        assert first["topic"] == "order.linear" and [r["orderStatus"] for r in first["data"]] == ["New", "Filled"]
        assert second["topic"] == "execution.linear"  # and never position: not subscribed
        with pytest.raises(websocket.WebSocketTimeoutException):
            raw.recv(timeout=0.3)
    finally:
        raw.close()


def test_json_and_protocol_pings_are_answered_in_each_streams_shape(sim):
    raw_private, raw_public = Raw(sim.ws_private), Raw(sim.ws_public)
    try:
        raw_private.send({"op": "ping", "args": [123]})  # extra fields tolerated
        pong = raw_private.recv()
        assert pong["op"] == "pong" and pong["args"][0].isdigit() and "conn_id" in pong
        raw_public.send({"op": "ping", "req_id": "x"})
        reply = raw_public.recv()
        assert (reply["success"], reply["ret_msg"], reply["op"], reply["req_id"]) == (True, "pong", "ping", "x")
        raw_private.socket.ping("hi")
        opcode, frame = raw_private.socket.recv_data_frame(True)
        assert opcode == websocket.ABNF.OPCODE_PONG and frame.data == b"hi"
    finally:
        raw_private.close()
        raw_public.close()


def test_a_ticker_subscription_starts_with_a_snapshot_then_changed_fields_only(sim):
    raw = Raw(sim.ws_public)
    try:
        raw.send({"op": "subscribe", "req_id": "t", "args": ["tickers.BTCUSDT"]})
        assert raw.recv()["success"] is True
        snapshot = raw.recv()
        assert (snapshot["topic"], snapshot["type"]) == ("tickers.BTCUSDT", "snapshot")
        assert Decimal(snapshot["data"]["lastPrice"]) == 65000 and "markPrice" in snapshot["data"]
        sim.set_price("BTCUSDT", Decimal("65100"))
        delta = raw.recv()
        assert delta["type"] == "delta" and delta["data"]["symbol"] == "BTCUSDT"
        assert Decimal(delta["data"]["lastPrice"]) == 65100 and "fundingRate" not in delta["data"]  # unchanged: absent
        sim.set_price("ETHUSDT", Decimal("3100"))  # not subscribed: nothing
        sim.set_price("BTCUSDT", Decimal("65200"))
        assert Decimal(raw.recv()["data"]["lastPrice"]) == 65200
    finally:
        raw.close()


def test_pybit_keeps_its_ticker_state_from_snapshot_and_deltas(sim):
    seen: list[dict] = []
    ws = LocalWebSocket(sim.ws_public, channel_type="linear", testnet=False)
    try:
        ws.ticker_stream(symbol="BTCUSDT", callback=lambda m: seen.append(dict(m["data"])))  # copied: pybit mutates it
        wait_until(lambda: seen, 5, "the snapshot")
        sim.set_price("BTCUSDT", Decimal("64900"))
        wait_until(lambda: Decimal(seen[-1]["lastPrice"]) == 64900, 5, "the delta applied")
        mark = sim.exchange.market.mark["BTCUSDT"]  # the last price at the symbol's seeded spread
        assert Decimal(seen[-1]["markPrice"]) == mark and abs(mark - 64900) / 64900 <= Decimal("0.0002")
        assert "fundingRate" in seen[-1]
    finally:
        ws.exit()


def authed(sim: Simulator, *topics: str) -> Raw:
    raw = Raw(sim.ws_private)
    raw.send(auth_message(sim))
    assert raw.recv()["success"] is True
    raw.send({"op": "subscribe", "req_id": "s", "args": list(topics)})
    assert raw.recv()["success"] is True
    return raw


def place(sim: Simulator, link: str) -> None:
    sim.place("main", symbol="BTCUSDT", side="Buy", orderType="Limit", qty="0.001", price="60000", orderLinkId=link)


def test_fault_handshakes_refused_with_502_then_accepted(sim):
    sim.add_fault(kind="ws_refuse", endpoint="/v5/private", count=2)
    for _ in range(2):
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(sim.ws_private, timeout=5)
        assert refused.value.status_code == 502
    Raw(sim.ws_private).close()
    assert sim.ws_stats["handshakes_refused"] == 2


def test_fault_auth_failure_answers_params_error_to_a_good_signature(sim):
    sim.add_fault(kind="ws_auth_fail", count=1)
    raw = Raw(sim.ws_private)
    try:
        raw.send(auth_message(sim))
        assert raw.recv()["ret_msg"] == "Params Error"
        raw.send(auth_message(sim))
        assert raw.recv()["success"] is True
    finally:
        raw.close()


def test_fault_abrupt_drop_and_close_codes(sim):
    dropped = authed(sim, "order")
    sim.add_fault(kind="ws_drop", account="main", count=1)
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
        dropped.recv(timeout=3)
    closed = authed(sim, "order")
    sim.add_fault(kind="ws_close", code=1011, count=1)
    opcode, frame = closed.socket.recv_data_frame(True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE and int.from_bytes(frame.data[:2], "big") == 1011
    assert sim.ws_stats["dropped"] == 1 and sim.ws_stats["closed:1011"] == 1


def test_fault_lost_and_duplicated_pushes(sim):
    raw = authed(sim, "order")
    try:
        sim.add_fault(kind="ws_lose_push", topic="order", count=1)
        place(sim, "tg-lost-E2-0")
        place(sim, "tg-kept-E2-0")
        assert raw.recv()["data"][0]["orderLinkId"] == "tg-kept-E2-0"  # the first push never came
        sim.add_fault(kind="ws_duplicate_push", topic="order", count=1)
        place(sim, "tg-twice-E2-0")
        assert [raw.recv()["data"][0]["orderLinkId"] for _ in range(2)] == ["tg-twice-E2-0"] * 2
        assert sim.ws_stats["pushes_lost:main:order"] == 1
    finally:
        raw.close()


def test_fault_a_data_stall_keeps_answering_pings_and_withholds_pushes_until_cleared(sim):
    raw = authed(sim, "order")
    try:
        sim.add_fault(kind="ws_stall", endpoint="/v5/private")
        place(sim, "tg-stall-E2-0")
        raw.send({"op": "ping"})
        assert raw.recv()["op"] == "pong"  # alive, as far as pings tell
        with pytest.raises(websocket.WebSocketTimeoutException):
            raw.recv(timeout=0.5)  # but no push
        sim.clear_faults()
        assert raw.recv()["data"][0]["orderLinkId"] == "tg-stall-E2-0"
    finally:
        raw.close()


def test_fault_a_black_hole_answers_nothing(sim):
    raw = authed(sim, "order")
    try:
        sim.add_fault(kind="ws_black_hole")
        raw.send({"op": "ping"})
        raw.socket.ping("anyone?")
        with pytest.raises(websocket.WebSocketTimeoutException):
            raw.socket.settimeout(0.7)
            raw.socket.recv_data_frame(True)
    finally:
        raw.close()


def test_pybit_reconnects_after_a_drop_and_receives_pushes_again(sim):
    got: list[str] = []
    ws = private(sim)
    try:
        ws.order_stream(lambda m: got.extend(row["orderLinkId"] for row in m["data"]))
        wait_until(lambda: sim.ws_stats.get("subscriptions:main") == 1, 5, "the subscription")
        sim.add_fault(kind="ws_drop", count=1)
        wait_until(
            lambda: sim.ws_stats.get("connections:private") == 2 and sim.ws_stats.get("subscriptions:main") == 2,
            10,
            "pybit to reconnect, re-auth and resubscribe",
        )
        place(sim, "tg-after-E2-0")
        wait_until(lambda: "tg-after-E2-0" in got, 5, "a push on the new connection")
    finally:
        ws.exit()


def fills(raw: Raw, count: int) -> list[tuple[str, str]]:
    """(topic, order status or exec) per row, over the next `count` rows."""
    rows: list[tuple[str, str]] = []
    while len(rows) < count:
        message = raw.recv()
        rows += [(message["topic"], row.get("orderStatus", "exec")) for row in message["data"]]
    return rows


def test_fault_an_execution_before_its_orders_filled_row_and_a_late_triggered(sim):
    raw = authed(sim, "order", "execution")
    try:
        sim.add_fault(kind="ws_reorder_fill", count=1)
        sim.place("main", symbol="BTCUSDT", side="Buy", orderType="Market", qty="0.002")
        assert fills(raw, 3) == [("order", "New"), ("execution", "exec"), ("order", "Filled")]
        sim.place(
            "main",
            symbol="BTCUSDT",
            side="Sell",
            orderType="Market",
            qty="0.001",
            reduceOnly=True,
            triggerPrice="64000",
            triggerDirection=2,
            orderLinkId="tg-late-S0-0",
        )
        assert fills(raw, 1) == [("order", "Untriggered")]
        sim.add_fault(kind="ws_late_triggered", count=1)
        sim.set_price("BTCUSDT", Decimal("63900"))
        assert fills(raw, 3) == [("order", "Filled"), ("order", "Triggered"), ("execution", "exec")]
    finally:
        raw.close()


def test_a_silent_private_stream_is_cut_and_max_active_time_is_checked():
    sim = Simulator(seed=4, symbols=4, ws_idle_seconds=0.5).start()
    try:
        quiet = authed(sim, "order")
        with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
            quiet.recv(timeout=3)  # nothing sent for 0.5 s: cut
        assert sim.ws_stats["idle_cuts"] == 1
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(sim.ws_private + "?max_active_time=10s", timeout=5)
        assert refused.value.status_code == 400  # below Bybit's 30 s
        Raw(sim.ws_private + "?max_active_time=1m").close()
    finally:
        sim.stop()


def test_past_the_handshake_budget_connections_are_refused():
    sim = Simulator(seed=4, symbols=4, ws_handshakes_per_5min=3).start()
    try:
        for _ in range(3):
            Raw(sim.ws_public).close()
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(sim.ws_public, timeout=5)
        assert refused.value.status_code == 429 and sim.ws_stats["handshakes_over_budget"] == 1
    finally:
        sim.stop()


def test_a_reader_that_never_reads_stalls_nothing_and_pushes_wait_half_the_latency():
    sim = Simulator(seed=4, symbols=4, latency_ms=200).start()
    try:
        stuck = authed(sim, "order", "position")  # subscribed, never reads again
        started = time.monotonic()
        for n in range(300):  # about 1 MB of pushes queued for it
            sim.exchange.create_order(
                sim.account("main"),
                {
                    "category": "linear",
                    "symbol": "BTCUSDT",
                    "side": "Buy",
                    "orderType": "Limit",
                    "qty": "0.001",
                    "price": "30000",
                    "orderLinkId": f"tg-q{n}-E2-0",
                },
            )
        assert time.monotonic() - started < 10  # matching never waited on the socket
        reader = authed(sim, "order")
        sent = time.monotonic()
        place(sim, "tg-late-E2-0")
        assert reader.until(lambda m: m["data"][0]["orderLinkId"] == "tg-late-E2-0")
        assert time.monotonic() - sent >= 0.1  # half of the 200 ms latency
        stuck.close()
        reader.close()
    finally:
        sim.stop()
