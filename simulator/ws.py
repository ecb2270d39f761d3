"""The simulator's WebSockets: Bybit's private stream (`/v5/private`) and the linear ticker stream
(`/v5/public/linear`) on the same port as the REST API (an HTTP upgrade, framed with wsproto, so
every pong is ours to withhold for the stall and black-hole faults).

What a connection does, as Bybit (../shared/reference/bybit-ws.md, sections 2-4 and 8):
- `{"op": "auth", "args": [key, expires, hex HMAC-SHA256 of "GET/realtime" + expires]}` with
  `expires` in the future; a failure answers `Params Error`. `req_id` is echoed as a string.
- `{"op": "subscribe", "args": [...]}`: acked with `success` and the request's `req_id`, never
  sooner than 5 ms after the request (pybit stores its subscription only after sending it);
  private topics `order`, `execution`, `position`, `wallet` (or `.linear` names, not mixed in one
  request) need auth; `tickers.<SYMBOL>` sends a full snapshot, then changed fields only.
- JSON pings get JSON pongs (private and public shapes), protocol pings protocol pongs.
- Every change the exchange engine makes is pushed to the subscribed connections of its account
  (exchange.Change, handed over outside the exchange lock), several rows of a topic in one message,
  each connection through its own queue and writer thread, delayed by half the configured latency.
Faults (the fault book, endpoint = the path): `ws_refuse` (handshake answered 502), `ws_auth_fail`,
`ws_drop` (abrupt), `ws_close` (close frame with `code`), `ws_lose_push`, `ws_duplicate_push` and
`ws_corrupt_push` (`topic`, `count`; the last with `field` and `value`), `ws_stall` (no pushes, pongs still
answered) and `ws_black_hole` (nothing at all: no pongs, acks or pushes), the last two until cleared.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import itertools
import logging
import queue
import socket
import threading
import time
import uuid
from collections import deque
from typing import Any

import orjson
from wsproto.connection import Connection as Framing
from wsproto.connection import ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.utilities import LocalProtocolError, generate_accept_token

from simulator.exchange import Change, Exchange
from simulator.faults import FaultBook

log = logging.getLogger(__name__)

PRIVATE_PATH, PUBLIC_PATH = "/v5/private", "/v5/public/linear"  # WebSocket paths (not REST endpoints)
PRIVATE_TOPICS = ("order", "execution", "position", "wallet")
ACK_DELAY_S = 0.005  # pybit records a subscription only after sending it (bybit-ws.md 4.4)
WRITER_WAKE_S = 0.05  # how often an idle writer looks at the fault book


class WsStats:
    """Connections, auths, subscriptions and pushes, per account and topic (for /sim/stats)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def count(self, *key: Any, n: int = 1) -> None:
        name = ":".join(str(k) for k in key)
        with self._lock:
            self.counts[name] = self.counts.get(name, 0) + n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self.counts.items()))


class WsHub:
    """Every open connection, and the fan-out of the exchange's changes to them."""

    def __init__(
        self,
        exchange: Exchange,
        faults: FaultBook,
        latency_ms: float,
        *,
        idle_seconds: float = 600.0,
        handshakes_per_5min: int = 500,
    ):
        self.exchange = exchange
        self.faults = faults
        self.delay = latency_ms / 2000.0
        self.idle_seconds = idle_seconds  # Bybit cuts a private stream silent this long
        self.handshakes_per_5min = handshakes_per_5min
        self._handshakes: deque[float] = deque()
        self.stats = WsStats()
        self._lock = threading.Lock()
        self._connections: set[Connection] = set()
        self._ids = itertools.count(1)

    def accept(self, handler: Any, path: str, query: str) -> None:
        """Serve one upgraded connection on the HTTP handler's thread until it ends."""
        if self.faults.take(path, None, kinds=("ws_refuse",)):
            handler.send_error(502, "Bad Gateway")
            self.stats.count("handshakes_refused")
            return
        if not self._handshake_allowed():
            handler.send_error(429, "Too many connections: at most 500 per 5 minutes")
            self.stats.count("handshakes_over_budget")
            return
        idle = _max_active_time(query) if path == PRIVATE_PATH else None
        if idle is False:
            handler.send_error(400, "max_active_time must be 30s..600s (e.g. 45s, 1m)")
            return
        key = handler.headers.get("Sec-WebSocket-Key", "")
        handler.send_response(101, "Switching Protocols")
        handler.send_header("Upgrade", "websocket")
        handler.send_header("Connection", "Upgrade")
        handler.send_header("Sec-WebSocket-Accept", generate_accept_token(key.encode()).decode())
        handler.end_headers()
        handler.wfile.flush()
        connection = Connection(
            self,
            handler.connection,
            path,
            next(self._ids),
            idle if idle else self.idle_seconds if path == PRIVATE_PATH else None,
        )
        with self._lock:
            if not self._connections:  # the engine builds push rows only while someone listens
                self.exchange.listeners.append(self.publish)
            self._connections.add(connection)
        self.stats.count("connections", "private" if path == PRIVATE_PATH else "public")
        try:
            connection.run()
        finally:
            with self._lock:
                self._connections.discard(connection)
                if not self._connections and self.publish in self.exchange.listeners:
                    self.exchange.listeners.remove(self.publish)
            handler.close_connection = True

    def _handshake_allowed(self) -> bool:
        """Bybit allows 500 connections per 5 minutes from one IP (all clients here are one IP)."""
        now = time.monotonic()
        with self._lock:
            while self._handshakes and now - self._handshakes[0] > 300:
                self._handshakes.popleft()
            if len(self._handshakes) >= self.handshakes_per_5min:
                return False
            self._handshakes.append(now)
            return True

    def publish(self, changes: list[Change]) -> None:
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection.push(changes)

    def close_all(self) -> None:
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection.close(1001, "going away")


class Connection:
    def __init__(self, hub: WsHub, sock: socket.socket, path: str, number: int, idle_seconds: float | None):
        self.hub = hub
        self.idle_seconds = idle_seconds
        self._heard = time.monotonic()  # the client's last frame
        self.sock = sock
        self.path = path
        self.private = path == PRIVATE_PATH
        self.conn_id = f"sim-{number}-{uuid.uuid4().hex[:8]}"
        self.account: str | None = None
        self.topics: set[str] = set()
        self._tickers: dict[str, dict[str, Any]] = {}  # last ticker state sent, per symbol
        self._ws = Framing(ConnectionType.SERVER)  # framing only: the 101 was written by hand
        self._outbox: queue.Queue = queue.Queue()  # (due, text, is_push), in order
        self._held: list[str] = []  # pushes withheld by a stall
        self._send_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._closed = threading.Event()

    # --- the reader (the HTTP handler's thread) --------------------------------------------

    def run(self) -> None:
        writer = threading.Thread(target=self._write_loop, name=f"ws-writer-{self.conn_id}", daemon=True)
        writer.start()
        try:
            while not self._closed.is_set():
                try:
                    data = self.sock.recv(65536)
                except OSError:
                    break
                if not data:
                    break
                self._heard = time.monotonic()
                self._ws.receive_data(data)
                for event in self._ws.events():
                    self._on_event(event)
        finally:
            self._closed.set()
            with contextlib.suppress(OSError):
                self.sock.close()

    def _on_event(self, event: Any) -> None:
        if isinstance(event, Ping):
            if not self._fault("ws_black_hole"):
                self._transmit(event.response())
        elif isinstance(event, CloseConnection):
            self._transmit(event.response())
            self._closed.set()
        elif isinstance(event, (TextMessage, BytesMessage)):
            try:
                message = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                return
            if isinstance(message, dict) and not self._fault("ws_black_hole"):
                self._on_request(message)

    def _on_request(self, message: dict[str, Any]) -> None:
        op, req_id = message.get("op"), message.get("req_id")
        reply: dict[str, Any] = {"op": op, "conn_id": self.conn_id}
        if req_id is not None:
            reply["req_id"] = str(req_id)
        match op:
            case "ping":
                reply = (
                    {"op": "pong", "args": [str(int(time.time() * 1000))], "conn_id": self.conn_id}
                    if self.private
                    else {"success": True, "ret_msg": "pong", "conn_id": self.conn_id, "op": "ping"}
                )
                if req_id is not None:
                    reply["req_id"] = str(req_id)
                self._queue(reply, 0.0)
            case "auth":
                self._queue({**reply, **self._auth(message.get("args"))}, 0.0)
            case "subscribe" | "unsubscribe":
                ok, why = self._subscribe(message.get("args"), op == "subscribe")
                self._queue({**reply, "success": ok, "ret_msg": why}, ACK_DELAY_S)
                if ok and op == "subscribe":
                    self._snapshots(message.get("args") or [])
            case _:
                self._queue({**reply, "success": False, "ret_msg": f"error:unknown op {op!r}"}, 0.0)

    def _auth(self, args: Any) -> dict[str, Any]:
        self.hub.stats.count("auths")
        failure = {"success": False, "ret_msg": "Params Error"}
        if not self.private or not isinstance(args, list) or len(args) != 3:
            return failure
        key, expires, signature = args
        account = self.hub.exchange.account_for_key(str(key))
        try:
            expires_ms = int(expires)
        except (TypeError, ValueError):
            return failure
        if account is None or expires_ms <= time.time() * 1000 or self._fault("ws_auth_fail", account.name, take=True):
            self.hub.stats.count("auth_failures")
            return failure
        expected = hmac.new(
            account.api_secret.encode(), f"GET/realtime{expires_ms}".encode(), hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(expected, str(signature)):
            self.hub.stats.count("auth_failures")
            return failure
        with self._state_lock:
            self.account = account.name
        return {"success": True, "ret_msg": ""}

    def _subscribe(self, args: Any, subscribe: bool) -> tuple[bool, str]:
        if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
            return False, "error:args must be a list of topics"
        for topic in args:
            if self.private:
                base, _, category = topic.partition(".")
                if base not in PRIVATE_TOPICS or category not in ("", "linear"):
                    return False, f"error:handler not found,topic:{topic}"
            elif not topic.startswith("tickers.") or topic[len("tickers.") :] not in self.hub.exchange.specs:
                return False, f"error:handler not found,topic:{topic}"
        if self.private:
            if self.account is None:
                return False, f"error:topic:{args[0]} needs auth first"
            if len({"." in topic for topic in args}) > 1:
                return False, "error:all-in-one and categorised topics cannot be mixed in one request"
        with self._state_lock:
            (self.topics.update if subscribe else self.topics.difference_update)(args)
            if not subscribe:
                for topic in args:
                    self._tickers.pop(topic[len("tickers.") :], None)
        self.hub.stats.count("subscriptions", self.account or "public", n=len(args))
        return True, ""

    def _snapshots(self, topics: list[str]) -> None:
        """A ticker subscription starts with the full state (pybit needs it before any delta)."""
        for topic in topics:
            if topic.startswith("tickers."):
                symbol = topic[len("tickers.") :]
                with self.hub.exchange.lock:
                    row = self.hub.exchange.ticker_row(symbol)
                with self._state_lock:
                    self._tickers[symbol] = row
                self._queue(_ticker_message(topic, "snapshot", row), ACK_DELAY_S)

    # --- pushes (from the exchange's change feed, outside its lock) ------------------------

    def push(self, changes: list[Change]) -> None:
        if self._closed.is_set():
            return
        messages: list[dict[str, Any]] = []
        changes = self._reordered(changes)
        with self._state_lock:
            for change in changes:
                if change.topic == "tickers":
                    message = self._ticker_delta(change.row)
                else:
                    message = self._private(change)
                if message is None:
                    continue
                last = messages[-1] if messages else None
                if (
                    last is not None
                    and last.get("topic") == message["topic"]
                    and "data" in last
                    and isinstance(last["data"], list)
                ):
                    last["data"].extend(message["data"])  # several rows of one topic in one message
                else:
                    messages.append(message)
        for message in messages:
            topic = message["topic"]
            if self._fault("ws_lose_push", topic=topic, take=True):
                self.hub.stats.count("pushes_lost", self.account or "public", topic)
                continue
            if (corrupt := self._fault("ws_corrupt_push", topic=topic, take=True)) and isinstance(
                message["data"], list
            ):
                message = {**message, "data": [{**row, corrupt.field: corrupt.value} for row in message["data"]]}
            copies = 2 if self._fault("ws_duplicate_push", topic=topic, take=True) else 1
            for _ in range(copies):
                self._queue(message, self.hub.delay, push=True)
            self.hub.stats.count("pushes", self.account or "public", topic, n=copies)

    def _reordered(self, changes: list[Change]) -> list[Change]:
        """The reordering faults: Bybit promises no order between topics (bybit-ws.md section 3)."""
        if not self.private or self.account is None:
            return changes
        changes = list(changes)
        for index, change in enumerate(changes):
            if (
                change.topic == "execution"
                and index > 0
                and changes[index - 1].topic == "order"
                and changes[index - 1].row["orderId"] == change.row["orderId"]
                and self._fault("ws_reorder_fill", take=True)
            ):
                changes[index - 1], changes[index] = change, changes[index - 1]
            elif change.topic == "order" and change.row["orderStatus"] == "Triggered":
                filled = next(
                    (
                        i
                        for i in range(index + 1, len(changes))
                        if changes[i].topic == "order" and changes[i].row["orderId"] == change.row["orderId"]
                    ),
                    None,
                )
                if filled is not None and self._fault("ws_late_triggered", take=True):
                    changes.insert(filled, changes.pop(index))
        return changes

    def _private(self, change: Change) -> dict[str, Any] | None:
        if change.account is None or change.account != self.account:
            return None
        name = next((t for t in (change.topic, f"{change.topic}.linear") if t in self.topics), None)
        if name is None:
            return None
        return {
            "id": f"{self.conn_id}-{uuid.uuid4().hex[:12]}",
            "topic": name,
            "creationTime": int(time.time() * 1000),
            "data": [change.row],
        }

    def _ticker_delta(self, row: dict[str, Any]) -> dict[str, Any] | None:
        symbol = row["symbol"]
        topic = f"tickers.{symbol}"
        if topic not in self.topics or symbol not in self._tickers:
            return None
        last = self._tickers[symbol]
        changed = {k: v for k, v in row.items() if last.get(k) != v}
        if not changed:
            return None
        self._tickers[symbol] = {**last, **changed}
        return _ticker_message(topic, "delta", {"symbol": symbol, **changed})

    # --- the writer ------------------------------------------------------------------------

    def _queue(self, message: dict[str, Any], delay: float, push: bool = False) -> None:
        self._outbox.put((time.monotonic() + delay, orjson.dumps(message).decode(), push))

    def _write_loop(self) -> None:
        """One writer: replies and pushes in order; while a stall or black hole lasts, pushes are
        held (in order, not lost) and replies still go out (a stall answers pings)."""
        while not self._closed.is_set():
            self._apply_connection_faults()
            withholding = bool(self._fault("ws_stall") or self._fault("ws_black_hole"))
            if self._held and not withholding:
                for text in self._held:
                    self._transmit(TextMessage(data=text))
                self._held.clear()
            try:
                due, text, push = self._outbox.get(timeout=WRITER_WAKE_S)
            except queue.Empty:
                continue
            wait = due - time.monotonic()
            if wait > 0 and self._closed.wait(wait):
                return
            if push and (self._held or self._fault("ws_stall") or self._fault("ws_black_hole")):
                self._held.append(text)
            else:
                self._transmit(TextMessage(data=text))

    def _apply_connection_faults(self) -> None:
        if self.idle_seconds is not None and time.monotonic() - self._heard > self.idle_seconds:
            self.hub.stats.count("idle_cuts")  # no ping and no request for too long
            self._abort()
        elif self._fault("ws_drop", take=True):
            self.hub.stats.count("dropped")
            self._abort()
        elif fault := self._fault("ws_close", take=True):
            self.hub.stats.count("closed", fault.code)
            self.close(fault.code, "simulated close")

    def _transmit(self, event: Any) -> None:
        """Frame and send one event; one at a time (the reader answers pings, the writer pushes).
        A connection the client already closed just ends."""
        with self._send_lock:
            try:
                self.sock.sendall(self._ws.send(event))
            except (OSError, LocalProtocolError):
                self._closed.set()

    def close(self, code: int, reason: str) -> None:
        self._transmit(CloseConnection(code=code, reason=reason))
        self._abort()

    def _abort(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def _fault(self, kind: str, account: str | None = None, *, topic: str = "", take: bool = False) -> Any:
        account = account or self.account
        if take:
            taken = self.hub.faults.take(self.path, account, kinds=(kind,), topic=topic)
            return taken[0] if taken else None
        return self.hub.faults.active(kind, self.path, account)


def _max_active_time(query: str) -> float | bool | None:
    """`max_active_time=45s` or `1m` (30 s to 600 s) from the URL; None when absent, False when bad."""
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if name == "max_active_time":
            number, unit = value[:-1], value[-1:]
            if not number.isdigit() or unit not in ("s", "m"):
                return False
            seconds = int(number) * (60 if unit == "m" else 1)
            return float(seconds) if 30 <= seconds <= 600 else False
    return None


def _ticker_message(topic: str, kind: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"topic": topic, "type": kind, "data": data, "cs": int(time.time() * 1000), "ts": int(time.time() * 1000)}
