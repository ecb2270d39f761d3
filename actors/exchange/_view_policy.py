"""How the gateway answers a request for a view or a snapshot: a pure decision over facts the
gateway gathers (actors/exchange/gateway.py acts on it). Table-tested in
tests/actors/exchange/test_view_policy.py.

While the account's stream is fresh the cache is answered at once (a view waits only for a
fill's position push, or reads the finished orders the pushes cannot explain). Otherwise the
cache answers when it is fresh enough for `max_age`; a failing account backing off gets its last
good data marked stale; else the request joins a read in flight or starts one: the symbol alone
when the finished orders are wanted or a full refresh at this pace would cost more.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Answer(Enum):
    PARK = "park"  # a fill's position push is due: wait for it (at most 1 s)
    PUSHED = "pushed"  # from the pushed cache; finished orders from pushes, else the order history
    CACHED = "cached"  # from the cache, fresh enough
    CLOSED_ONLY = "closed_only"  # the cache is fresh enough; only the finished orders are read
    STALE = "stale"  # backing off a failing account: the last good data, marked stale
    JOIN_FULL = "join_full"  # a full read (or resync) in flight answers it
    JOIN_SYMBOL = "join_symbol"  # a read of its symbol in flight answers it
    READ_SYMBOL = "read_symbol"  # start a read of its symbol
    READ_FULL = "read_full"  # start a full read of the account


@dataclass(frozen=True, slots=True)
class ViewFacts:
    symbol: str | None  # None: an account snapshot
    wants_closed: bool  # the symbol's finished orders too
    must_read: bool  # the requester asked for a REST read whatever the stream says
    stream_fresh: bool  # the account's stream makes its cache fresh
    doubtful: bool  # the symbol owes REST reads (an unresolved write)
    unsettled: bool  # a fill of the symbol was pushed before its position
    cache_fresh: bool  # the cache has data no older than the request's max_age
    backing_off: bool  # reads of the account fail, no read in flight, retry not due yet
    full_read: bool  # a full read or resync of the account is in flight
    symbol_read: bool | None  # a read of the symbol in flight: whether it brings finished orders; None: none
    symbol_read_cheaper: bool  # reading the symbol costs less than a full refresh at this pace


def answer_view(f: ViewFacts) -> Answer:
    if f.stream_fresh and not f.must_read and not f.doubtful:
        return Answer.PARK if f.unsettled else Answer.PUSHED
    if f.cache_fresh:
        return Answer.CLOSED_ONLY if f.wants_closed else Answer.CACHED
    if f.backing_off:
        return Answer.STALE
    if f.full_read and not f.wants_closed:
        return Answer.JOIN_FULL
    if f.symbol_read is not None and (f.symbol_read or not f.wants_closed):
        return Answer.JOIN_SYMBOL
    if f.symbol is not None and (f.wants_closed or f.symbol_read_cheaper):
        return Answer.READ_SYMBOL
    return Answer.READ_FULL
