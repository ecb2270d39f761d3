"""The only module that imports pybit: clients and one call wrapper.

Every account's pybit `HTTP` client gets the same `requests` HTTPAdapter mounted, so all share one
urllib3 pool (`pool_block=True`: a thread waits for a free connection instead of opening and
discarding extra ones, so "Connection pool is full" cannot happen). pybit's own sleeping retries
are off (`retry_codes={-1}`, one attempt, no `force_retry`): the gateway decides retries.
A call never raises: it returns `HttpOk` or `HttpFail` with a kind the gateway can act on.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import requests
from pybit.exceptions import FailedRequestError, InvalidRequestError
from pybit.unified_trading import HTTP
from requests.adapters import HTTPAdapter

from messages.codes import outcome_unknown

log = logging.getLogger(__name__)

# Path of each pybit method we use (for rate limiting and stats).
ENDPOINTS = {
    "get_positions": "/v5/position/list",
    "get_open_orders": "/v5/order/realtime",
    "get_order_history": "/v5/order/history",
    "get_instruments_info": "/v5/market/instruments-info",
    "get_wallet_balance": "/v5/account/wallet-balance",
    "get_api_key_information": "/v5/user/query-api",
    "place_order": "/v5/order/create",
    "amend_order": "/v5/order/amend",
    "cancel_order": "/v5/order/cancel",
    "cancel_all_orders": "/v5/order/cancel-all",
    "place_batch_order": "/v5/order/create-batch",
    "amend_batch_order": "/v5/order/amend-batch",
    "cancel_batch_order": "/v5/order/cancel-batch",
}


@dataclass(frozen=True, slots=True)
class HttpOk:
    body: dict[str, Any]
    headers: Mapping[str, str]
    seconds: float


@dataclass(frozen=True, slots=True)
class HttpFail:
    """kind: "business" (a retCode), "timeout", "connection", "http" (non-200 status),
    "malformed" (not JSON), "unexpected"."""
    kind: str
    message: str
    code: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def uncertain(self) -> bool:
        """For a write: might the exchange have acted?"""
        if self.kind == "business":
            return outcome_unknown(self.code)
        if self.kind == "http":
            return self.code is None or self.code >= 500 or self.code == 403
        return True


def make_adapter(pool_size: int) -> HTTPAdapter:
    return HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, pool_block=True, max_retries=0)


def make_client(api_key: str, api_secret: str, base_url: str, adapter: HTTPAdapter, *,
                timeout: float, recv_window: int) -> HTTP:
    client = HTTP(api_key=api_key, api_secret=api_secret, timeout=timeout, recv_window=recv_window,
                  retry_codes={-1}, max_retries=1, force_retry=False, return_response_headers=True,
                  log_requests=False)
    client.endpoint = base_url.rstrip("/")
    client.client.mount("http://", adapter)
    client.client.mount("https://", adapter)
    return client


def call(client: HTTP, method: str, params: dict[str, Any]) -> HttpOk | HttpFail:
    """One request. Runs on a gateway worker thread."""
    started = time.monotonic()
    try:
        body, _elapsed, headers = getattr(client, method)(**params)
        return HttpOk(body, headers, time.monotonic() - started)
    except InvalidRequestError as exc:
        return HttpFail("business", str(exc.message), exc.status_code, exc.resp_headers or {},
                        time.monotonic() - started)
    except FailedRequestError as exc:
        kind = "malformed" if exc.status_code == 409 else "http"
        code = None if exc.status_code == 400 else exc.status_code  # 400: pybit's "retries exceeded"
        return HttpFail(kind, str(exc.message), code, exc.resp_headers or {}, time.monotonic() - started)
    except requests.exceptions.Timeout as exc:
        return HttpFail("timeout", type(exc).__name__, seconds=time.monotonic() - started)
    except requests.exceptions.RequestException as exc:
        return HttpFail("connection", type(exc).__name__, seconds=time.monotonic() - started)
    except Exception as exc:  # noqa: BLE001 - a worker must never die; the gateway logs it
        return HttpFail("unexpected", f"{type(exc).__name__}: {exc}"[:200], seconds=time.monotonic() - started)
