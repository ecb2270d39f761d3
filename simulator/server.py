"""The simulator's HTTP face: Bybit V5 REST on loopback, plus `/sim/` control endpoints.

Auth exactly as Bybit: HMAC-SHA256 hex over `timestamp + api_key + recv_window + payload`, where
the payload is the raw query string or the raw body as received (pybit sends sorted queries and
spaced JSON, other clients unsorted queries and compact JSON). Business errors are HTTP 200 with
Bybit's envelope; every private answer carries the `X-Bapi-Limit*` headers.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import logging
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import orjson

from messages.endpoints import ENDPOINTS, Api
from simulator.exchange import BybitError, Exchange, SimAccount
from simulator.faults import Fault, FaultBook
from simulator.limits import Quota, RateLimits
from simulator.ws import PRIVATE_PATH, PUBLIC_PATH, WsHub

log = logging.getLogger(__name__)

BATCH_MAX = 10
INSTRUMENT_STATUSES = ("Trading", "Settling", "Delivering", "Closed")

Paging = dict[str, bool]
PrivateHandler = Callable[[Exchange, SimAccount, dict, Paging], Any]

PUBLIC: dict[Api, Callable[[Exchange, dict, Paging], Any]] = {
    Api.SERVER_TIME: lambda ex, p, pg: {"timeSecond": str(int(time.time())), "timeNano": str(time.time_ns())},
    Api.TICKERS: lambda ex, p, pg: ex.tickers(p),
    Api.INSTRUMENTS: lambda ex, p, pg: ex.instruments(p, **pg),
}


def _touched(exchange: Exchange, result: dict) -> dict:
    """An order amended or cancelled over the API: noted, so the oracle can tell whether the
    client touched an order it does not own (the trader acts out of band, never through here)."""
    exchange.touched_over_api.append(str(result.get("orderLinkId", "")))
    return result


PRIVATE: dict[Api, PrivateHandler] = {
    Api.POSITIONS: lambda ex, a, p, pg: ex.position_rows(a, p, **pg),
    Api.OPEN_ORDERS: lambda ex, a, p, pg: ex.order_rows(a, p, **pg),
    Api.ORDER_HISTORY: lambda ex, a, p, pg: ex.order_rows(a, p, history=True, **pg),
    Api.EXECUTIONS: lambda ex, a, p, pg: ex.execution_rows(a, p, **pg),
    Api.WALLET_BALANCE: lambda ex, a, p, pg: ex.wallet(a, p),
    Api.API_KEY_INFO: lambda ex, a, p, pg: ex.api_key_info(a),
    Api.PLACE_ORDER: lambda ex, a, p, pg: ex.create_order(a, p),
    Api.AMEND_ORDER: lambda ex, a, p, pg: _touched(ex, ex.amend_order(a, p)),
    Api.CANCEL_ORDER: lambda ex, a, p, pg: _touched(ex, ex.cancel_order(a, p)),
    Api.CANCEL_ALL: lambda ex, a, p, pg: ex.cancel_all(a, p),
    Api.SET_LEVERAGE: lambda ex, a, p, pg: ex.set_leverage(a, p),
    Api.SWITCH_MODE: lambda ex, a, p, pg: ex.switch_mode(a, p),
}

# SendBatch endpoint -> the single-order operation each item goes through.
BATCH: dict[Api, Callable[[Exchange], Callable[[SimAccount, dict], dict]]] = {
    Api.PLACE_BATCH: lambda ex: ex.create_order,
    Api.AMEND_BATCH: lambda ex: lambda a, p: _touched(ex, ex.amend_order(a, p)),
    Api.CANCEL_BATCH: lambda ex: lambda a, p: _touched(ex, ex.cancel_order(a, p)),
}


class Stats:
    """Request counts per account ("public" for market data) and endpoint, and notable answers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._requests: Counter[tuple[str, str]] = Counter()
            self._batched: Counter[str] = Counter()  # orders sent in batch requests, per account
            self._retcodes: Counter[int] = Counter()
            self._http_403 = 0

    def count(self, account: str, endpoint: str) -> None:
        with self._lock:
            self._requests[(account, endpoint)] += 1

    def batched(self, account: str, orders: int) -> None:
        with self._lock:
            self._batched[account] += orders

    def answered(self, ret_code: int | None = None, http_403: bool = False) -> None:
        with self._lock:
            if ret_code:
                self._retcodes[ret_code] += 1
            self._http_403 += http_403

    def requests(self, account: str | None = None, endpoint: str | None = None) -> int:
        with self._lock:
            return sum(
                n
                for (a, e), n in self._requests.items()
                if (account is None or a == account) and (endpoint is None or e == endpoint)
            )

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            by_account: dict[str, dict[str, int]] = {}
            for (account, endpoint), n in sorted(self._requests.items()):
                by_account.setdefault(account, {})[endpoint] = n
            return {
                "total": sum(self._requests.values()),
                "requests": by_account,
                "batched_orders": dict(self._batched),
                "retcodes": {str(code): n for code, n in sorted(self._retcodes.items())},
                "rate_limited_10006": self._retcodes.get(10006, 0),
                "ip_banned_403": self._http_403,
            }


def sign(secret: str, timestamp: str, api_key: str, recv_window: str, payload: str) -> str:
    message = f"{timestamp}{api_key}{recv_window}{payload}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


class _Drop(Exception):
    """End the exchange without an answer (the client sees a dropped connection)."""


class SimHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(
        self,
        address,
        exchange: Exchange,
        limits: RateLimits,
        faults: FaultBook,
        stats: Stats,
        latency_ms: float,
        jitter_ms: float,
        seed: int,
        *,
        ws_idle_seconds: float = 600.0,
        ws_handshakes_per_5min: int = 500,
    ):
        super().__init__(address, Handler)
        self.exchange = exchange
        self.limits = limits
        self.faults = faults
        self.stats = stats
        self.latency_ms = latency_ms
        self.jitter_ms = jitter_ms
        self.stopping = threading.Event()
        self.oracle: Any = None
        self.ws = WsHub(
            exchange, faults, latency_ms, idle_seconds=ws_idle_seconds, handshakes_per_5min=ws_handshakes_per_5min
        )
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()

    def delay_seconds(self, extra: list[Fault]) -> float:
        with self._rng_lock:
            total = self.latency_ms + self._rng.uniform(0, self.jitter_ms) if self.jitter_ms else self.latency_ms
            for fault in extra:
                total += fault.ms + (self._rng.uniform(0, fault.jitter_ms) if fault.jitter_ms else 0)
        return total / 1000.0


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as pybit's pooled session expects
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall
    server: SimHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        if self.headers.get("Upgrade", "").lower() == "websocket":
            path, _, query = self.path.partition("?")
            if path in (PRIVATE_PATH, PUBLIC_PATH):
                self.server.ws.accept(self, path, query)
            else:
                self._send(404, b"404 page not found", "text/plain")
            return
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    # --- plumbing -------------------------------------------------------------------------

    def _serve(self, method: str) -> None:
        path, _, raw_query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        try:
            if path.startswith("/sim/"):
                self._control(method, path, body)
            else:
                self._bybit(method, path, raw_query, body)
        except _Drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    def _send(
        self, status: int, body: bytes, content_type: str = "application/json", headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _envelope(
        self, ret_code: int, ret_msg: str, result: Any = None, ext: Any = None, quota: Quota | None = None
    ) -> None:
        self.server.stats.answered(ret_code=ret_code)
        headers = {}
        if quota is not None:
            headers = {
                "X-Bapi-Limit": str(quota.limit),
                "X-Bapi-Limit-Status": str(quota.remaining),
                "X-Bapi-Limit-Reset-Timestamp": str(quota.reset_ms),
            }
        body = orjson.dumps(
            {
                "retCode": ret_code,
                "retMsg": ret_msg,
                "result": result if result is not None else {},
                "retExtInfo": ext if ext is not None else {},
                "time": int(time.time() * 1000),
            }
        )
        self._send(200, body, headers=headers)

    # --- Bybit endpoints ------------------------------------------------------------------

    def _bybit(self, method: str, path: str, raw_query: str, body: str) -> None:
        server = self.server
        served = path in PRIVATE or path in PUBLIC or path in BATCH
        if not served or ENDPOINTS[Api(path)].http != method:
            self._send(404, b"404 page not found", "text/plain")
            return
        key = Api(path)
        private = key not in PUBLIC
        account = server.exchange.account_for_key(self.headers.get("X-BAPI-API-KEY", "")) if private else None
        account_name = account.name if account else ("public" if not private else "unknown")
        server.stats.count(account_name, path)
        if not server.limits.ip_allows():
            server.stats.answered(http_403=True)
            self._send(403, b"access too frequent", "text/plain")
            return
        faults = server.faults.take(path, account_name)
        delay = server.delay_seconds([f for f in faults if f.kind == "latency"])
        if delay > 0:
            server.stopping.wait(delay)
        answer = next((f for f in faults if f.kind != "latency" and f.kind in _ANSWERS), None)
        paging = {
            "stuck": any(f.kind == "stuck_cursor" for f in faults),
            "cursor_on_last_page": any(f.kind == "last_page_cursor" for f in faults),
        }
        if answer is not None and answer.kind != "lost_response":
            _ANSWERS[answer.kind](self, answer)
            return
        try:
            params = dict(parse_qsl(raw_query, keep_blank_values=True)) if method == "GET" else self._json(body)
        except ValueError as exc:
            self._envelope(10001, f"Param error: {exc}")
            return
        corrupt = [f for f in faults if f.kind == "corrupt_rows"]
        if not private:
            self._run(lambda: PUBLIC[key](server.exchange, params, paging), None, answer)
            return
        skew = sum(f.ms for f in faults if f.kind == "clock_skew")
        if not self._authentic(account, raw_query if method == "GET" else body, skew_ms=skew):
            return
        assert account is not None
        units = len(params.get("request") or []) if path in BATCH else 1
        if path in BATCH:
            server.stats.batched(account.name, units)
        quota = server.limits.take(account.name, path, max(units, 1))
        if quota is not None and quota.granted == 0:
            self._envelope(10006, "Too many visits!", quota=quota)
            return
        if account.read_only and method == "POST":
            self._envelope(10005, "Permission denied, please check your API key permissions.", quota=quota)
            return
        if path in BATCH:
            self._run(lambda: self._batch(path, account, params, quota.granted if quota else units), quota, answer)
        else:
            self._run(
                lambda: _corrupted(PRIVATE[key](server.exchange, account, params, paging), corrupt), quota, answer
            )

    def _run(self, call: Callable[[], Any], quota: Quota | None, answer: Fault | None) -> None:
        try:
            outcome = call()
        except BybitError as exc:
            outcome = exc
        if answer is not None:  # lost_response: the exchange acted, the client never hears
            raise _Drop()
        if isinstance(outcome, BybitError):
            self._envelope(outcome.code, outcome.message, quota=quota)
        elif isinstance(outcome, tuple):
            self._envelope(0, "OK", outcome[0], outcome[1], quota=quota)
        else:
            self._envelope(0, "OK", outcome, quota=quota)

    @staticmethod
    def _json(body: str) -> dict:
        try:
            data = orjson.loads(body or "{}")
        except orjson.JSONDecodeError:
            raise ValueError("body is not valid JSON") from None
        if not isinstance(data, dict):
            raise ValueError("body must be a JSON object")
        return data

    def _authentic(self, account: SimAccount | None, payload: str, skew_ms: float = 0) -> bool:
        headers = self.headers
        api_key = headers.get("X-BAPI-API-KEY")
        timestamp = headers.get("X-BAPI-TIMESTAMP")
        signature = headers.get("X-BAPI-SIGN")
        recv_window = headers.get("X-BAPI-RECV-WINDOW") or "5000"
        if not api_key or not timestamp or not signature:
            self._send(401, b"invalid request", "text/plain")
            return False
        if account is None:
            self._envelope(10003, "API key is invalid.")
            return False
        now = int(time.time() * 1000 + skew_ms)
        try:
            ts, window = int(timestamp), int(recv_window)
        except ValueError:
            self._envelope(10002, "invalid request, please check your server timestamp or recv_window param")
            return False
        if not (now - window <= ts < now + 1000):
            self._envelope(
                10002,
                "invalid request, please check your server timestamp or recv_window param. "
                f"req_timestamp[{ts}],server_timestamp[{now}],recv_window[{window}]",
            )
            return False
        expected = sign(account.api_secret, timestamp, api_key, recv_window, payload)
        if not hmac.compare_digest(signature.lower(), expected):
            # Bybit echoes the string it signed; the key is masked so it cannot reach a log.
            self._envelope(
                10004,
                "Error sign, please check your signature generation algorithm: "
                f"origin_string[{timestamp}***{recv_window}{payload[:200]}]",
            )
            return False
        return True

    def _batch(self, path: str, account: SimAccount, params: dict, granted: int) -> tuple[dict, dict]:
        if params.get("category") != "linear":
            raise BybitError(10001, "Param error: category linear is required")
        requests = params.get("request")
        if not isinstance(requests, list) or not 1 <= len(requests) <= BATCH_MAX:
            raise BybitError(10001, f"Param error: request must hold 1 to {BATCH_MAX} orders")
        operation = BATCH[path](self.server.exchange)
        results, codes = [], []
        for index, item in enumerate(requests):
            item = dict(item) if isinstance(item, dict) else {}
            row = {
                "category": "linear",
                "symbol": item.get("symbol", ""),
                "orderId": "",
                "orderLinkId": item.get("orderLinkId", ""),
            }
            try:
                if index >= granted:
                    raise BybitError(10006, "Too many visits!")
                row.update(operation(account, {"category": "linear", **item}))
                codes.append({"code": 0, "msg": "OK"})
            except BybitError as exc:
                codes.append({"code": exc.code, "msg": exc.message})
            if path.endswith("create-batch"):
                row["createAt"] = str(int(time.time() * 1000)) if row["orderId"] else ""
            results.append(row)
        return {"list": results}, {"list": codes}

    # --- control endpoints (/sim/) --------------------------------------------------------

    def _control(self, method: str, path: str, body: str) -> None:
        if not _is_loopback(self.client_address[0]):
            self._send(403, b"control endpoints answer loopback clients only", "text/plain")
            return
        try:
            data = self._json(body) if method == "POST" else {}
            result = self._control_action(method, path, data)
        except (ValueError, KeyError, TypeError, InvalidOperation, BybitError) as exc:
            self._send(400, orjson.dumps({"error": str(exc)}))
            return
        if result is None:
            self._send(404, orjson.dumps({"error": f"no control endpoint {method} {path}"}))
            return
        self._send(200, orjson.dumps(result))

    def _control_action(self, method: str, path: str, data: dict) -> Any:
        server = self.server
        exchange = server.exchange
        match method, path:
            case "GET", "/sim/stats":
                return {**server.stats.snapshot(), "websocket": server.ws.stats.snapshot()}
            case "POST", "/sim/stats/reset":
                server.stats.reset()
                return {"reset": True}
            case "GET", "/sim/state":
                return exchange.snapshot()
            case "GET", "/sim/oracle":
                return server.oracle.report()
            case "POST", "/sim/price":
                exchange.set_price(data["symbol"], Decimal(str(data["price"])))
                return {"symbol": data["symbol"], "price": format(exchange.last_price(data["symbol"]), "f")}
            case "POST", "/sim/step":
                exchange.step(float(data.get("seconds", 1.0)))
                return {"stepped": float(data.get("seconds", 1.0))}
            case "GET", "/sim/faults":
                return {"faults": server.faults.list()}
            case "POST", "/sim/faults":
                if data.get("clear"):
                    server.faults.clear()
                    server.limits.lift_ban()
                    return {"faults": []}
                server.faults.add(Fault.from_json(data))
                return {"faults": server.faults.list()}
        return _out_of_band(exchange, method, path, data)


def _out_of_band(exchange: Exchange, method: str, path: str, data: dict) -> Any:
    """A person on the exchange's web page, or the exchange itself (liquidation, delivery)."""
    match method, path:
        case "POST", "/sim/fill":
            qty = data.get("qty")
            exchange.fill_order(
                exchange.accounts[data["account"]], data["order"], Decimal(str(qty)) if qty is not None else None
            )
            return {"filled": data["order"]}
        case "POST", "/sim/order":
            params = {"category": "linear", **{k: v for k, v in data.items() if k != "account"}}
            return exchange.create_order(exchange.accounts[data["account"]], params)
        case "POST", "/sim/cancel":
            params = {"category": "linear", **{k: v for k, v in data.items() if k != "account"}}
            return exchange.cancel_order(exchange.accounts[data["account"]], params)
        case "POST", "/sim/liquidate":
            status = str(data.get("status", "Liq"))
            if status not in ("Liq", "Adl"):
                raise ValueError(f"status must be Liq or Adl, not {status!r}")
            exchange.liquidate(exchange.accounts[data["account"]], data["symbol"], status)
            return {"liquidated": data["symbol"], "status": status}
        case "POST", "/sim/instrument":
            return _set_instrument(exchange, data)
        case "POST", "/sim/wick":
            exchange.wick(data["symbol"], Decimal(str(data["price"])))
            return {"symbol": data["symbol"], "wick": str(data["price"])}
        case "POST", "/sim/spread":
            exchange.set_spread(data["symbol"], Decimal(str(data["fraction"])))
            return {"symbol": data["symbol"], "mark": format(exchange.market.mark[data["symbol"]], "f")}
    return None


def _set_instrument(exchange: Exchange, data: dict) -> dict[str, str]:
    status = str(data.get("status", ""))
    if status not in INSTRUMENT_STATUSES:
        raise ValueError(f"status must be one of {', '.join(INSTRUMENT_STATUSES)}, not {status!r}")
    if data["symbol"] not in exchange.specs:
        raise ValueError(f"unknown symbol {data['symbol']!r}")
    delivery = int(data["deliveryTime"]) if "deliveryTime" in data else None
    price = Decimal(str(data["price"])) if "price" in data else None
    exchange.set_instrument_status(data["symbol"], status, delivery, price)
    return {"symbol": data["symbol"], "status": status}


def _corrupted(result: Any, faults: list[Fault]) -> Any:
    """The `corrupt_rows` fault: rewrite (or remove) a field in every row of a list answer."""
    if not faults or not isinstance(result, dict) or not isinstance(result.get("list"), list):
        return result
    rows = [dict(row) for row in result["list"]]
    for fault in faults:
        for row in rows:
            if fault.value is None:
                row.pop(fault.field, None)
            else:
                row[fault.field] = fault.value
    return {**result, "list": rows}


# --- answer-replacing faults --------------------------------------------------------------


def _http_5xx(handler: Handler, fault: Fault) -> None:
    page = (
        f"<html><head><title>{fault.status} Bad Gateway</title></head><body><center>"
        f"<h1>{fault.status} Bad Gateway</h1></center><hr><center>cloudfront</center></body></html>"
    )
    handler._send(fault.status, page.encode(), "text/html")


def _retcode(handler: Handler, fault: Fault) -> None:
    quota = None
    if fault.code == 10006:  # pybit sleeps until this time: it must be in the future
        now = int(time.time() * 1000)
        quota = Quota(0, 10, 0, now + 1000)
    handler._envelope(fault.code, fault.message, quota=quota)


def _hang(handler: Handler, fault: Fault) -> None:
    handler.server.stopping.wait(fault.seconds)
    raise _Drop()


def _drop(handler: Handler, fault: Fault) -> None:
    raise _Drop()


def _malformed(handler: Handler, fault: Fault) -> None:
    handler._send(200, b'{"retCode":0,"retMsg":"OK","result":{"category":"linear","list":[{"symbol":"BT')


_ANSWERS: dict[str, Callable[[Handler, Fault], None]] = {
    "http_5xx": _http_5xx,
    "retcode": _retcode,
    "hang": _hang,
    "drop_connection": _drop,
    "malformed_json": _malformed,
    "lost_response": lambda h, f: None,
}
