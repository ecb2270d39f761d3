"""The gateway's one-off account requests, rare and never cached: the key check at start-up,
what opening a trade needs (the instrument, the last price, the available balance) and setting a
symbol's leverage. Each queues its requests through the gateway's `enqueue` (so they share its
rate limiter and workers) and sets the request's reply from the results; the gateway only routes
the messages here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from actors.exchange import _formats
from actors.exchange._formats import Failure, HttpFail, HttpOk
from messages.codes import RetCode
from messages.gateway import (
    Accepted,
    Access,
    CheckAccess,
    GetMarket,
    Market,
    Priority,
    Rejected,
    SetLeverage,
    Unavailable,
)
from messages.models import Instrument, ModelError

OnDone = Callable[[HttpOk | HttpFail], None]
Enqueue = Callable[[str, str, dict[str, Any], Priority, OnDone], None]


def check_access(request: CheckAccess, enqueue: Enqueue) -> None:
    def done(result: HttpOk | HttpFail) -> None:
        if isinstance(result, HttpFail):
            request.reply.set(
                Access(
                    request.account,
                    False,
                    False,
                    f"{result.code or result.kind}: {result.message}",
                    transient=result.uncertain or result.kind is Failure.NOT_SENT,
                )
            )
            return
        info = result.body.get("result") or {}
        trade = (info.get("permissions") or {}).get("ContractTrade") or []
        can_trade = str(info.get("readOnly")) == "0" and "Order" in trade
        request.reply.set(
            Access(
                request.account,
                True,
                can_trade,
                "can trade" if can_trade else "the key is read-only or lacks Contract - Orders",
            )
        )

    enqueue(request.account, "get_api_key_information", {}, Priority.READ, done)


def market(request: GetMarket, instrument: Instrument | None, enqueue: Enqueue) -> None:
    """Two reads (tickers, wallet) answered together, or Unavailable when either failed."""
    got: dict[str, Any] = {}

    def done(name: str, parse: Callable[[dict], Any], result: HttpOk | HttpFail) -> None:
        if "failed" in got:
            return
        try:
            if isinstance(result, HttpFail):
                raise ModelError(f"{result.code or result.kind}: {result.message}")
            got[name] = parse(result.body)
        except ModelError as exc:
            got["failed"] = True
            request.reply.set(Unavailable(request.account, f"{name}: {exc}"))
            return
        if len(got) == 2:
            request.reply.set(
                Market(request.account, request.symbol, instrument, got["last_price"], got["available_balance"])
            )

    if instrument is None:  # not listed: no tickers read (Bybit would answer 10001)
        got["last_price"] = None
    else:
        enqueue(
            request.account,
            "get_tickers",
            {"category": "linear", "symbol": request.symbol},
            Priority.READ,
            lambda r: done("last_price", lambda body: _formats.last_price(body, request.symbol), r),
        )
    enqueue(
        request.account,
        "get_wallet_balance",
        {"accountType": "UNIFIED"},
        Priority.READ,
        lambda r: done("available_balance", _formats.available_balance, r),
    )


def set_leverage(request: SetLeverage, enqueue: Enqueue) -> None:
    """Bybit's "not modified" (110043) is success: the leverage is what was asked."""

    def done(result: HttpOk | HttpFail) -> None:
        not_modified = isinstance(result, HttpFail) and result.code == RetCode.LEVERAGE_NOT_MODIFIED
        request.reply.set(Accepted("", "") if not_modified else _formats.outcome_of(result))

    enqueue(
        request.account,
        "set_leverage",
        _formats.leverage_params(request.symbol, request.leverage),
        Priority.PROTECT,
        done,
    )


def unknown_account(request: CheckAccess | GetMarket | SetLeverage) -> None:
    match request:
        case CheckAccess():
            request.reply.set(Access(request.account, False, False, "unknown account"))
        case GetMarket():
            request.reply.set(Unavailable(request.account, "unknown account"))
        case SetLeverage():
            request.reply.set(Rejected(0, "unknown account"))
