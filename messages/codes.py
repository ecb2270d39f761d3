"""Bybit V5 retCodes we act on, and what each means to us (../shared/reference/bybit-v5.md §6).

The one table of named codes: the wire (actors/exchange/_formats.py), the gateway and the rules read it
instead of bare numbers. A code not listed here is a plain definite no (`Meaning.REFUSED`).
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Meaning(StrEnum):
    REFUSED = "refused"  # a definite no: the exchange did not act
    UNKNOWN_OUTCOME = "unknown_outcome"  # it may or may not have acted: settle from a snapshot (R10)
    ALREADY_EXISTS = "already_exists"  # the orderLinkId was used: the order is there (or was)
    GONE = "gone"  # the order no longer exists (filled, cancelled)
    TRIGGER_CROSSED = "trigger_crossed"  # a stop's trigger is already on the wrong side (R9)
    TOO_LARGE = "too_large"  # a reduce-only order finds nothing left to reduce
    RATE_LIMITED = "rate_limited"  # per-UID limit: nothing until the reset time


class RetCode(IntEnum):
    SERVER_ERROR = 10000
    PARAMS_ERROR = 10001
    TIMESTAMP_OUTSIDE_WINDOW = 10002
    INVALID_KEY = 10003
    BAD_SIGNATURE = 10004
    TOO_MANY_VISITS = 10006
    AUTHENTICATION_FAILED = 10007
    SERVICE_RESTARTING = 10016
    ORDER_DOES_NOT_EXIST = 110001
    REDUCE_ONLY_NOT_SATISFIED = 110017
    DUPLICATE_ORDER_LINK_ID = 110072
    EXPECT_RISING = 110092
    EXPECT_FALLING = 110093
    LEVERAGE_NOT_MODIFIED = 110043


MEANINGS: dict[int, Meaning] = {
    RetCode.SERVER_ERROR: Meaning.UNKNOWN_OUTCOME,
    RetCode.TOO_MANY_VISITS: Meaning.UNKNOWN_OUTCOME,  # treated as R10 on a write (docs/architecture.md)
    RetCode.AUTHENTICATION_FAILED: Meaning.UNKNOWN_OUTCOME,
    RetCode.SERVICE_RESTARTING: Meaning.UNKNOWN_OUTCOME,
    RetCode.ORDER_DOES_NOT_EXIST: Meaning.GONE,
    RetCode.REDUCE_ONLY_NOT_SATISFIED: Meaning.TOO_LARGE,
    RetCode.DUPLICATE_ORDER_LINK_ID: Meaning.ALREADY_EXISTS,
    RetCode.EXPECT_RISING: Meaning.TRIGGER_CROSSED,
    RetCode.EXPECT_FALLING: Meaning.TRIGGER_CROSSED,
}


def meaning(code: int | None) -> Meaning:
    return MEANINGS.get(code, Meaning.REFUSED) if code is not None else Meaning.REFUSED


def outcome_unknown(code: int | None) -> bool:
    """After this code, might the exchange have acted on a write?"""
    return meaning(code) is Meaning.UNKNOWN_OUTCOME
