"""The one table of Bybit V5 REST endpoints we use: path, HTTP method, read or write, Bybit's
per-UID limit, batch size and the pybit method that calls it (../shared/reference/bybit-v5.md
section 2). The gateway's wire formats and rate limiter, the check cycle's batches, the simulator,
the tests and the benchmarks all read it; a path that is not in it is an error (`endpoint()`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType


class Api(StrEnum):
    """Every path we call or serve. A member compares equal to its path string."""

    SERVER_TIME = "/v5/market/time"
    TICKERS = "/v5/market/tickers"
    INSTRUMENTS = "/v5/market/instruments-info"
    POSITIONS = "/v5/position/list"
    OPEN_ORDERS = "/v5/order/realtime"
    ORDER_HISTORY = "/v5/order/history"
    EXECUTIONS = "/v5/execution/list"
    WALLET_BALANCE = "/v5/account/wallet-balance"
    API_KEY_INFO = "/v5/user/query-api"
    PLACE_ORDER = "/v5/order/create"
    AMEND_ORDER = "/v5/order/amend"
    CANCEL_ORDER = "/v5/order/cancel"
    CANCEL_ALL = "/v5/order/cancel-all"
    PLACE_BATCH = "/v5/order/create-batch"
    AMEND_BATCH = "/v5/order/amend-batch"
    CANCEL_BATCH = "/v5/order/cancel-batch"
    SET_LEVERAGE = "/v5/position/set-leverage"
    TRADING_STOP = "/v5/position/trading-stop"
    SWITCH_MODE = "/v5/position/switch-mode"  # the trader's (hedge mode); the daemon never calls it


class Access(StrEnum):
    PUBLIC = "public"  # market data: only the per-IP limit applies
    READ = "read"
    WRITE = "write"


WRITES_PER_SECOND = 10  # Bybit's per-UID limit of every write endpoint we use (linear)
READS_PER_SECOND = 50  # ... and of every private read
BATCH_LIMIT = 10  # orders in one batch request; each counts as one unit of the batch's budget


@dataclass(frozen=True, slots=True)
class Endpoint:
    path: Api
    http: str  # GET | POST
    access: Access
    per_second: int | None  # Bybit's per-UID, per-endpoint limit (None: only the IP limit)
    pybit: str | None = None  # the pybit HTTP method that calls it (None: we never call it)
    batch: int = 1  # orders one request may carry

    @property
    def is_write(self) -> bool:
        return self.access is Access.WRITE


def _read(path: Api, pybit: str | None) -> Endpoint:
    return Endpoint(path, "GET", Access.READ, READS_PER_SECOND, pybit)


def _write(path: Api, pybit: str | None, batch: int = 1) -> Endpoint:
    return Endpoint(path, "POST", Access.WRITE, WRITES_PER_SECOND, pybit, batch)


def _public(path: Api, pybit: str | None) -> Endpoint:
    return Endpoint(path, "GET", Access.PUBLIC, None, pybit)


ENDPOINTS = MappingProxyType(
    {
        e.path: e
        for e in (
            _public(Api.SERVER_TIME, None),
            _public(Api.TICKERS, "get_tickers"),
            _public(Api.INSTRUMENTS, "get_instruments_info"),
            _read(Api.POSITIONS, "get_positions"),
            _read(Api.OPEN_ORDERS, "get_open_orders"),
            _read(Api.ORDER_HISTORY, "get_order_history"),
            _read(Api.EXECUTIONS, None),
            _read(Api.WALLET_BALANCE, "get_wallet_balance"),
            _read(Api.API_KEY_INFO, "get_api_key_information"),
            _write(Api.PLACE_ORDER, "place_order"),
            _write(Api.AMEND_ORDER, "amend_order"),
            _write(Api.CANCEL_ORDER, "cancel_order"),
            _write(Api.CANCEL_ALL, "cancel_all_orders"),
            _write(Api.PLACE_BATCH, "place_batch_order", BATCH_LIMIT),
            _write(Api.AMEND_BATCH, "amend_batch_order", BATCH_LIMIT),
            _write(Api.CANCEL_BATCH, "cancel_batch_order", BATCH_LIMIT),
            _write(Api.SET_LEVERAGE, "set_leverage"),
            _write(Api.TRADING_STOP, None),
            _write(Api.SWITCH_MODE, "switch_position_mode"),
        )
    }
)
BY_PYBIT = MappingProxyType({e.pybit: e for e in ENDPOINTS.values() if e.pybit})
WRITE_PATHS = frozenset(p for p, e in ENDPOINTS.items() if e.is_write)


class UnknownEndpoint(KeyError):
    """A path or pybit method that is not in the table: a bug, never a guess."""


def endpoint(path: str) -> Endpoint:
    try:
        return ENDPOINTS[Api(path)]
    except ValueError:
        raise UnknownEndpoint(f"unknown Bybit endpoint {path!r}") from None


def for_pybit(method: str) -> Endpoint:
    try:
        return BY_PYBIT[method]
    except KeyError:
        raise UnknownEndpoint(f"no Bybit endpoint for pybit method {method!r}") from None
