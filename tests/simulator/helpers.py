"""A minimal non-pybit client (unsorted queries, compact JSON) for wire-level simulator tests."""

from __future__ import annotations

import time

import orjson
import requests

from simulator import Simulator
from simulator.server import sign


def raw_request(
    sim: Simulator,
    method: str,
    path: str,
    payload: str = "",
    *,
    account: str = "main",
    timestamp: int | None = None,
    recv_window: str = "5000",
    secret: str | None = None,
    api_key: str | None = None,
) -> requests.Response:
    """Sign `payload` (the raw query for GET, the raw body for POST) exactly as given."""
    creds = sim.credentials[account]
    key = api_key or creds.api_key
    ts = str(timestamp if timestamp is not None else int(time.time() * 1000))
    headers = {
        "X-BAPI-API-KEY": key,
        "X-BAPI-TIMESTAMP": ts,
        "X-BAPI-RECV-WINDOW": recv_window,
        "X-BAPI-SIGN": sign(secret or creds.api_secret, ts, key, recv_window, payload),
        "Content-Type": "application/json",
    }
    if method == "GET":
        return requests.get(f"{sim.url}{path}?{payload}", headers=headers, timeout=5)
    return requests.post(f"{sim.url}{path}", data=payload.encode(), headers=headers, timeout=5)


def compact(body: dict) -> str:
    return orjson.dumps(body).decode()
