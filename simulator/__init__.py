"""The embedded Bybit V5 exchange: a real HTTP server on loopback that pybit can use as Bybit.

    with Simulator(seed=7).start() as sim:
        session = pybit.unified_trading.HTTP(api_key=sim.credentials["main"].api_key, ...)
        session.endpoint = sim.url
        sim.set_price("BTCUSDT", Decimal("65000"))

Prices move only when `step()` is called, unless `start(step_interval=...)` runs the simulator's
own stepper thread (real-time mode, used by `make run`). Control endpoints: docs/simulator.md.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass
from decimal import Decimal

from simulator.demo import DemoPosition, load_demo_book
from simulator.exchange import BybitError, Exchange, Liquidity, SimAccount
from simulator.faults import Fault, FaultBook
from simulator.limits import RateLimits
from simulator.market import universe
from simulator.oracle import Oracle
from simulator.server import SimHTTPServer, Stats

__all__ = ["MAX_ACCOUNTS", "BybitError", "Credentials", "DemoPosition", "Fault", "Simulator", "account_names"]

MAX_ACCOUNTS = 999


def account_names(count: int) -> tuple[str, ...]:
    """`count` accounts named acct01, acct02, ... (the width grows past 99)."""
    width = max(2, len(str(count)))
    return tuple(f"acct{n:0{width}d}" for n in range(1, count + 1))


log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Credentials:
    api_key: str
    api_secret: str

    def __repr__(self) -> str:
        return f"Credentials(api_key={self.api_key!r}, api_secret='***')"


class Simulator:
    def __init__(
        self,
        *,
        seed: int = 0,
        accounts: tuple[str, ...] = ("main", "mirror"),
        symbols: int = 64,
        latency_ms: float = 0.0,
        jitter_ms: float = 0.0,
        volatility: float = 0.001,
        ip_ban_seconds: float = 600.0,
        balance: Decimal = Decimal(100_000),
        ws_idle_seconds: float = 600.0,
        ws_handshakes_per_5min: int = 500,
        partial_fills: bool = False,
    ):
        """`ws_idle_seconds`: a private stream silent this long is cut (Bybit: 10 minutes, or the
        URL's max_active_time); `ws_handshakes_per_5min`: WebSocket connections allowed per 5 min;
        `partial_fills`: a crossed limit fills only what the price level holds each time the price
        moves (seeded), not all at once."""
        self.seed = seed
        self.ws_options = {"ws_idle_seconds": ws_idle_seconds, "ws_handshakes_per_5min": ws_handshakes_per_5min}
        self.exchange = Exchange(universe(symbols), seed, volatility, lambda: int(time.time() * 1000))
        self.exchange.liquidity = Liquidity(seed) if partial_fills else None
        self.credentials: dict[str, Credentials] = {}
        for name in accounts:
            creds = Credentials(f"SIM{name.upper()}{secrets.token_hex(6).upper()}", secrets.token_hex(18))
            self.credentials[name] = creds
            self.exchange.add_account(name, creds.api_key, creds.api_secret, balance)
        self.limits = RateLimits(ip_ban_seconds=ip_ban_seconds)
        self.faults = FaultBook()
        self.stats = Stats()
        self.latency_ms = latency_ms
        self.jitter_ms = jitter_ms
        self.oracle = Oracle(self.exchange, self.stats.snapshot)
        self._server: SimHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    # --- life cycle -----------------------------------------------------------------------

    def start(
        self, port: int = 0, step_interval: float | None = None, oracle_interval: float | None = None
    ) -> Simulator:
        """Serve on 127.0.0.1; optionally step prices in real time and run the oracle's checks."""
        self._server = SimHTTPServer(
            ("127.0.0.1", port),
            self.exchange,
            self.limits,
            self.faults,
            self.stats,
            self.latency_ms,
            self.jitter_ms,
            self.seed,
            **self.ws_options,
        )
        self._server.oracle = self.oracle
        serve = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="sim-http", daemon=True
        )
        self._threads = [serve]
        if step_interval:
            self._threads.append(
                threading.Thread(target=self._step_loop, args=(step_interval,), name="sim-market", daemon=True)
            )
        if oracle_interval:
            self._threads.append(
                threading.Thread(target=self._oracle_loop, args=(oracle_interval,), name="sim-oracle", daemon=True)
            )
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.stopping.set()  # wakes handlers held by latency or hang faults
            self._server.ws.close_all()  # upgraded sockets outlive shutdown() otherwise
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> Simulator:
        return self if self._server else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _step_loop(self, interval: float) -> None:
        # The exchange's own clock in real-time mode; the daemon never sleeps like this.
        while not self._stop.wait(interval):
            self.exchange.step(interval)

    def _oracle_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.oracle.observe()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the simulator is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def ws_private(self) -> str:
        """Bybit's private stream (`/v5/private`) on the same port."""
        return self.url.replace("http://", "ws://") + "/v5/private"

    @property
    def ws_public(self) -> str:
        """Bybit's linear public stream (tickers) on the same port."""
        return self.url.replace("http://", "ws://") + "/v5/public/linear"

    def drop_streams(self) -> None:
        """Close every WebSocket connection at once (1001 going away), as a restart of Bybit's
        stream servers would: each client must reconnect."""
        if self._server is not None:
            self._server.ws.close_all()

    @property
    def ws_stats(self) -> dict[str, int]:
        return self._server.ws.stats.snapshot() if self._server else {}

    # --- market and book ------------------------------------------------------------------

    def account(self, name: str) -> SimAccount:
        return self.exchange.accounts[name]

    def set_price(self, symbol: str, price: Decimal | str) -> None:
        self.exchange.set_price(symbol, Decimal(price))

    def step(self, seconds: float = 1.0) -> None:
        self.exchange.step(seconds)

    def load_demo_book(self, positions: int = 32) -> list[DemoPosition]:
        return load_demo_book(self.exchange, positions, self.seed, tuple(self.credentials))

    def place(self, account: str, **params) -> dict:
        """An order placed out of band (as a person on Bybit's web page would)."""
        return self.exchange.create_order(self.account(account), {"category": "linear", **params})

    def fill(self, account: str, order_ref: str, qty: Decimal | str | None = None) -> None:
        """Fill a resting order, fully or `qty` of it (order id or orderLinkId)."""
        self.exchange.fill_order(self.account(account), order_ref, Decimal(qty) if qty is not None else None)

    def add_fault(self, **knobs) -> Fault:
        return self.faults.add(Fault(**knobs))

    def clear_faults(self) -> None:
        self.faults.clear()
        self.limits.lift_ban()
