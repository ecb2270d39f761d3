"""The real transport to Bybit: the only module that imports pybit.

Every account's pybit `HTTP` client gets the same `requests` HTTPAdapter mounted, so all share one
urllib3 pool (`pool_block=True`: a thread waits for a free connection instead of opening and
discarding extra ones, so "Connection pool is full" cannot happen). pybit's own sleeping retries
are off (`retry_codes={-1}`, one attempt, no `force_retry`): the gateway decides retries.
A call never raises: it returns `HttpOk` or `HttpFail` with a kind the gateway can act on.

Streams are `StreamClient`s on websocket-client (actors/exchange/_websocket.py), not pybit's stream manager.
The gateway is given a transport (this one, or an in-process one in tests) and never builds
clients itself.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any, Protocol

import requests
from pybit.exceptions import FailedRequestError, InvalidRequestError
from pybit.unified_trading import HTTP
from requests.adapters import HTTPAdapter

from actors.exchange._formats import PRIVATE_TOPICS, Failure, HttpFail, HttpOk
from actors.exchange._websocket import StreamClient, StreamEvent

log = logging.getLogger(__name__)


class Stream(Protocol):
    """One stream connection as the gateway's streams drive it (a `StreamClient`, or a fake)."""

    name: str
    connects: int
    last_heard: float
    topics: tuple[str, ...]

    def tick(self, now: float) -> None: ...
    def set_topics(self, topics: tuple[str, ...]) -> None: ...
    def restart(self, reason: str) -> None: ...
    def stop(self) -> None: ...


class Transport(Protocol):
    """What the gateway is given: HTTP calls per account and, when `streams`, stream clients."""

    accounts: tuple[str, ...]
    pool_size: int

    @property
    def streams(self) -> bool: ...

    def call(self, account: str, method: str, params: dict[str, Any]) -> HttpOk | HttpFail: ...

    def private_stream(
        self,
        account: str,
        deliver: Callable[[StreamEvent], None],
        *,
        heartbeat: float,
        clock: Callable[[], float],
        may_connect: Callable[[float], bool],
    ) -> Stream: ...

    def public_stream(
        self,
        name: str,
        topics: tuple[str, ...],
        deliver: Callable[[StreamEvent], None],
        *,
        heartbeat: float,
        clock: Callable[[], float],
        may_connect: Callable[[float], bool],
    ) -> Stream | None: ...


class BybitTransport:
    """HTTP through pybit (one shared pool) and streams through websocket-client.
    `ws_private`/`ws_public`: the stream URLs; None: no streams (REST polling only)."""

    def __init__(
        self,
        accounts: dict[str, tuple[str, str]],
        base_url: str,
        *,
        pool_size: int = 10,
        timeout: float = 10.0,
        recv_window: int = 5000,
        ws_private: str | None = None,
        ws_public: str | None = None,
        hosts: dict[str, tuple[str, str]] | None = None,
    ):
        """`hosts`: account -> its own REST base URL and private stream URL, for accounts not on
        `base_url` (a demo account beside real ones)."""
        self.accounts = tuple(accounts)
        self.pool_size = pool_size
        self.ws_private, self.ws_public = ws_private, ws_public
        self._hosts = hosts or {}
        self._credentials = dict(accounts)
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, pool_block=True, max_retries=0)
        self._clients = {
            name: _client(
                key, secret, self._hosts.get(name, (base_url,))[0], adapter, timeout=timeout, recv_window=recv_window
            )
            for name, (key, secret) in accounts.items()
        }

    @property
    def streams(self) -> bool:
        return bool(self.ws_private)

    def call(self, account: str, method: str, params: dict[str, Any]) -> HttpOk | HttpFail:
        """One request; runs on a gateway worker thread."""
        return call(self._clients[account], method, params)

    def private_stream(
        self,
        account: str,
        deliver: Callable[[StreamEvent], None],
        *,
        heartbeat: float,
        clock: Callable[[], float],
        may_connect: Callable[[float], bool],
    ) -> StreamClient:
        assert self.ws_private is not None, "no private stream URL: `streams` is False"
        return StreamClient(
            account,
            self._hosts[account][1] if account in self._hosts else self.ws_private,
            deliver,
            topics=PRIVATE_TOPICS,
            credentials=self._credentials[account],
            heartbeat=heartbeat,
            clock=clock,
            may_connect=may_connect,
        )

    def public_stream(
        self,
        name: str,
        topics: tuple[str, ...],
        deliver: Callable[[StreamEvent], None],
        *,
        heartbeat: float,
        clock: Callable[[], float],
        may_connect: Callable[[float], bool],
    ) -> StreamClient | None:
        if not self.ws_public:
            return None
        return StreamClient(
            name, self.ws_public, deliver, topics=topics, heartbeat=heartbeat, clock=clock, may_connect=may_connect
        )


def _client(
    api_key: str, api_secret: str, base_url: str, adapter: HTTPAdapter, *, timeout: float, recv_window: int
) -> HTTP:
    client = HTTP(
        api_key=api_key,
        api_secret=api_secret,
        timeout=timeout,
        recv_window=recv_window,
        retry_codes={-1},
        max_retries=1,
        force_retry=False,
        return_response_headers=True,
        log_requests=False,
    )
    client.endpoint = base_url.rstrip("/")
    session = client.client
    # The environment is read once here, not on every request (requests scans proxies, no_proxy
    # and netrc per request when trust_env is on: a measurable share of each call at scale).
    session.proxies.update(requests.utils.get_environ_proxies(client.endpoint))
    session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    session.trust_env = False
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return client


def call(client: HTTP, method: str, params: dict[str, Any]) -> HttpOk | HttpFail:
    started = time.monotonic()
    try:
        body, _elapsed, headers = getattr(client, method)(**params)
        return HttpOk(body, headers, time.monotonic() - started)
    except InvalidRequestError as exc:
        return HttpFail(
            Failure.BUSINESS, str(exc.message), exc.status_code, exc.resp_headers or {}, time.monotonic() - started
        )
    except FailedRequestError as exc:
        kind = Failure.MALFORMED if exc.status_code == 409 else Failure.HTTP
        code = None if exc.status_code == 400 else exc.status_code  # 400: pybit's "retries exceeded"
        return HttpFail(kind, str(exc.message), code, exc.resp_headers or {}, time.monotonic() - started)
    except requests.exceptions.Timeout as exc:
        return HttpFail(Failure.TIMEOUT, type(exc).__name__, seconds=time.monotonic() - started)
    except requests.exceptions.RequestException as exc:
        return HttpFail(Failure.CONNECTION, type(exc).__name__, seconds=time.monotonic() - started)
    except Exception as exc:
        return HttpFail(Failure.UNEXPECTED, f"{type(exc).__name__}: {exc}"[:200], seconds=time.monotonic() - started)
