"""One Bybit WebSocket stream kept alive, on websocket-client (pybit's own dependency), instead of
pybit's stream manager (../shared/reference/bybit-ws.md section 4: its subscribe-ack race, its
reconnects without backoff, a failed auth visible only as `exited`, JSON pongs swallowed).

The owner (the gateway) drives it with `tick(now)`; the client never sleeps and keeps no timers:
- down and due: connect (websocket-client runs the socket on its own thread, one per connection,
  protocol pings off: liveness is ours);
- connected: authenticate (private), then subscribe; a JSON ping every `heartbeat` seconds;
- heard nothing (a push, an ack or a pong) for two heartbeats: dead (a black hole, a stalled
  socket); close it and reconnect;
- every reconnect waits a jittered exponential backoff (1 s doubling to 60 s, reset once a
  connection is subscribed), so an exchange refusing handshakes costs a handful of attempts a
  minute, far under Bybit's 500 per 5 minutes.
Every frame received is decoded (a new object: nothing is shared with the library) and handed to
`deliver` as a `StreamEvent`; nothing raises into the library's thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson
import websocket

from runtime.backoff import Backoff

log = logging.getLogger(__name__)

RECONNECT_START_S, RECONNECT_MAX_S = 1.0, 60.0
AUTH_EXPIRE_S = 10.0  # pybit's 1 s window fails on a little clock skew (bybit-ws.md 4.2)


class StreamState(StrEnum):
    DOWN = "down"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    AUTHENTICATED = "authenticated"
    SUBSCRIBED = "subscribed"


class Kind(StrEnum):
    CONNECTED = "connected"
    AUTHENTICATED = "authenticated"
    AUTH_REFUSED = "auth_refused"  # a definite no: the key is wrong or revoked
    SUBSCRIBED = "subscribed"
    REFUSED = "refused"  # a subscribe the exchange refused
    PUSH = "push"  # `topic`, `data` (a list of rows, or a ticker object), `message`
    DOWN = "down"  # the connection ended or was declared dead (`reason`)


@dataclass(frozen=True, slots=True)
class StreamEvent:
    stream: str
    kind: Kind
    topic: str = ""
    data: Any = None
    message: dict[str, Any] = field(default_factory=dict)
    reason: str = ""


class StreamClient:
    def __init__(
        self,
        name: str,
        url: str,
        deliver: Callable[[StreamEvent], None],
        *,
        topics: tuple[str, ...] = (),
        credentials: tuple[str, str] | None = None,
        heartbeat: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        may_connect: Callable[[float], bool] | None = None,
    ):
        """`may_connect(now)`: asked before each connect, once the backoff allows it (the
        process's handshake budget); no: asked again at the next tick."""
        self.name = name
        self.url = url
        self._deliver = deliver
        self._topics = tuple(topics)
        self._credentials = credentials
        self.heartbeat = heartbeat
        self._clock = clock
        self._rng = rng or random.Random()
        self._may_connect = may_connect
        self._backoff = Backoff(RECONNECT_START_S, RECONNECT_MAX_S)
        self._lock = threading.Lock()
        self._app: websocket.WebSocketApp | None = None
        self.state = StreamState.DOWN
        self.retry_at = 0.0
        self.last_heard = 0.0
        self.last_ping = 0.0
        self.connects = 0
        self.stopped = False

    # --- driven by the owner ---------------------------------------------------------------

    def tick(self, now: float) -> None:
        with self._lock:
            state, app = self.state, self._app
        if self.stopped:
            return
        if state is StreamState.DOWN:
            if now >= self.retry_at and (self._may_connect is None or self._may_connect(now)):
                self._connect(now)
            return
        if now - self.last_heard > 2 * self.heartbeat:
            self._lost(app, f"nothing heard for {now - self.last_heard:.0f}s")
            return
        if state is not StreamState.CONNECTING and now - self.last_ping >= self.heartbeat:
            self.last_ping = now
            self._send(app, {"op": "ping", "req_id": f"ping-{int(now * 1000)}"})

    def set_topics(self, topics: tuple[str, ...]) -> None:
        """Subscribe to what is new and unsubscribe from what is gone, on the live connection;
        a (re)connection subscribes to the whole set."""
        with self._lock:
            old, self._topics = set(self._topics), tuple(topics)
            app, state = self._app, self.state
        ready = (
            state is StreamState.SUBSCRIBED
            or (state is StreamState.CONNECTED and self._credentials is None)
            or state is StreamState.AUTHENTICATED
        )
        if app is None or not ready:
            return
        if gone := sorted(old - set(topics)):
            self._send(app, {"op": "unsubscribe", "req_id": f"unsub-{uuid.uuid4().hex[:8]}", "args": gone})
        if new := sorted(set(topics) - old):
            self._send(app, {"op": "subscribe", "req_id": f"sub-{uuid.uuid4().hex[:8]}", "args": new})

    @property
    def topics(self) -> tuple[str, ...]:
        return self._topics

    def restart(self, reason: str) -> None:
        """Drop the connection (e.g. it is suspect) and reconnect after the backoff."""
        with self._lock:
            app = self._app
        if app is not None:
            self._lost(app, reason)

    def stop(self) -> None:
        self.stopped = True
        with self._lock:
            app, self._app, self.state = self._app, None, StreamState.DOWN
        if app is not None:
            app.close()

    # --- connection life -------------------------------------------------------------------

    def _connect(self, now: float) -> None:
        self.connects += 1
        app = websocket.WebSocketApp(
            self.url,
            on_open=self._on_open,
            on_message=self._on_message,
            on_close=self._on_close,
            on_error=self._on_error,
        )
        with self._lock:
            self._app, self.state = app, StreamState.CONNECTING
        self.last_heard = now
        threading.Thread(target=self._run, args=(app,), name=f"stream-{self.name}", daemon=True).start()

    @staticmethod
    def _run(app: websocket.WebSocketApp) -> None:
        with contextlib.suppress(Exception):
            app.run_forever(ping_interval=0, skip_utf8_validation=True, reconnect=0)

    def _lost(self, app: Any, reason: str) -> None:
        """The current connection is over: schedule the next one after the backoff."""
        with self._lock:
            if app is not self._app:
                return  # an older connection's late news
            self._app, self.state = None, StreamState.DOWN
        delay = self._backoff.next() * (0.8 + 0.4 * self._rng.random())
        self.retry_at = self._clock() + delay
        if app is not None:
            threading.Thread(target=app.close, daemon=True).start()  # never wait on a dead socket here
        self._deliver(StreamEvent(self.name, Kind.DOWN, reason=f"{reason}; reconnecting in {delay:.1f}s"))

    # --- the library's callbacks (its thread): never raise ---------------------------------

    def _on_open(self, app: websocket.WebSocketApp) -> None:
        self._guard(app, self._opened, app)

    def _on_message(self, app: websocket.WebSocketApp, text: Any) -> None:
        self._guard(app, self._received, app, text)

    def _on_close(self, app: websocket.WebSocketApp, code: Any, reason: Any) -> None:
        self._guard(app, self._lost, app, f"closed ({code or 'no close frame'}{': ' + str(reason) if reason else ''})")

    def _on_error(self, app: websocket.WebSocketApp, error: Any) -> None:
        self._guard(app, self._lost, app, f"{type(error).__name__}: {error}"[:200])

    def _guard(self, app: Any, handler: Callable, *args: Any) -> None:
        try:
            handler(*args)
        except Exception as exc:
            log.error("Stream %s: %s handling a frame: %s", self.name, type(exc).__name__, exc)

    def _opened(self, app: websocket.WebSocketApp) -> None:
        with self._lock:
            if app is not self._app:
                return
            self.state = StreamState.CONNECTED
        self.last_heard = self._clock()
        self._deliver(StreamEvent(self.name, Kind.CONNECTED))
        if self._credentials is not None:
            key, secret = self._credentials
            expires = int((time.time() + AUTH_EXPIRE_S) * 1000)
            signature = hmac.new(secret.encode(), f"GET/realtime{expires}".encode(), hashlib.sha256).hexdigest()
            self._send(app, {"op": "auth", "req_id": "auth", "args": [key, expires, signature]})
        else:
            self._subscribe(app)

    def _subscribe(self, app: Any) -> None:
        with self._lock:
            topics = list(self._topics)
        if topics:
            self._send(app, {"op": "subscribe", "req_id": f"sub-{uuid.uuid4().hex[:8]}", "args": topics})

    def _received(self, app: Any, text: Any) -> None:
        if app is not self._app:
            return
        self.last_heard = self._clock()
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError:
            self._deliver(StreamEvent(self.name, Kind.PUSH, reason="malformed: not JSON"))
            return
        if not isinstance(message, dict):
            return
        op = message.get("op")
        if op == "auth":
            if message.get("success"):
                self.state = StreamState.AUTHENTICATED
                self._deliver(StreamEvent(self.name, Kind.AUTHENTICATED))
                self._subscribe(app)
            else:
                self._deliver(StreamEvent(self.name, Kind.AUTH_REFUSED, reason=str(message.get("ret_msg"))))
                self._lost(app, f"auth refused ({message.get('ret_msg')})")
        elif op in ("subscribe", "unsubscribe"):
            if message.get("success"):
                self.state = StreamState.SUBSCRIBED
                self._backoff.reset()
                self._deliver(StreamEvent(self.name, Kind.SUBSCRIBED, data=list(self._topics)))
            else:
                self._deliver(StreamEvent(self.name, Kind.REFUSED, reason=str(message.get("ret_msg"))))
        elif op in ("pong", "ping"):
            pass  # heard: liveness is all a pong is for
        elif "topic" in message:
            self._deliver(
                StreamEvent(
                    self.name, Kind.PUSH, topic=str(message["topic"]), data=message.get("data"), message=message
                )
            )

    def _send(self, app: Any, message: dict[str, Any]) -> None:
        try:
            app.send(orjson.dumps(message).decode())
        except Exception as exc:
            log.debug("Stream %s: send failed: %s", self.name, exc)
