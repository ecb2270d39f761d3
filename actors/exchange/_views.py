"""How the gateway answers views and snapshots: it gathers the facts, asks the pure policy
(_view_policy.py) and acts on its answer: from the cache, parked until a fill's position push
comes, joining a read in flight or starting one, or the last good data marked stale. It runs
inside the gateway actor, on state the gateway owns (caches, reads, failing accounts), and
starts reads through the gateway's `start_read`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import replace

from actors.exchange._cache import AccountCache
from actors.exchange._counters import GatewayCounters
from actors.exchange._instruments import InstrumentBook
from actors.exchange._reads import Failing, Read, ReadKey, Scope
from actors.exchange._streams import Streams
from actors.exchange._view_policy import Answer, ViewFacts, answer_view
from messages.gateway import GetAccountSnapshot, GetPositionView, Unavailable
from messages.models import Order
from runtime.clock import Clock

log = logging.getLogger(__name__)

HISTORY_EVERY_S = 5.0  # while fresh, a symbol's order history is read at most this often
SETTLE_WAIT_S = 1.0  # a fill's position push not here by then: read the symbol by REST

Query = GetPositionView | GetAccountSnapshot
StartRead = Callable[..., Read]


class Views:
    def __init__(
        self,
        caches: dict[str, AccountCache],
        instruments: InstrumentBook,
        streams: Streams,
        reads: dict[ReadKey, Read],
        failing: dict[str, Failing],
        queued_links: set[str],
        counters: GatewayCounters,
        clock: Clock,
        start_read: StartRead,
        *,
        stale_limit: float,
        read_share: float,
    ):
        """`reads`, `failing` and `queued_links` are the gateway's own (read here, never changed);
        `start_read(account, symbol, with_closed, closed_only=False)` starts a read."""
        self._caches, self._instruments, self._streams = caches, instruments, streams
        self._reads, self._failing, self._queued_links = reads, failing, queued_links
        self._counters, self._clock, self._start_read = counters, clock, start_read
        self._stale_limit, self._read_share = stale_limit, read_share
        self._parked: dict[tuple[str, str], list[GetPositionView]] = {}  # views waiting for a fill to settle
        self._history_at: dict[tuple[str, str], float] = {}  # last order-history read per symbol

    def parked(self) -> list[GetPositionView]:
        return [r for requests in self._parked.values() for r in requests]

    def on_view(self, request: GetPositionView) -> None:
        cache = self._caches.get(request.account)
        if cache is None:
            request.reply.set(Unavailable(request.account, "unknown account"))
            return
        now, symbol = self._clock.monotonic(), request.symbol
        if request.prices:
            self._streams.watch_prices(symbol, now)
        symbol_read = self._reads.get(ReadKey(request.account, Scope.SYMBOL, symbol))
        facts = replace(
            self._facts(request, cache, now, symbol_read, symbol=symbol, wants_closed=request.include_closed),
            must_read=request.fresh,
            doubtful=cache.doubtful(symbol),
            unsettled=cache.unsettled_since(symbol) is not None,
            symbol_read_cheaper=self._symbol_read_is_cheaper(cache, request.max_age),
        )
        self._act(request, cache, now, answer_view(facts), symbol_read)

    def on_snapshot(self, request: GetAccountSnapshot) -> None:
        cache = self._caches.get(request.account)
        if cache is None:
            request.reply.set(Unavailable(request.account, "unknown account"))
            return
        now = self._clock.monotonic()
        self._act(request, cache, now, answer_view(self._facts(request, cache, now, None)), None)

    def _facts(
        self,
        request: Query,
        cache: AccountCache,
        now: float,
        symbol_read: Read | None,
        *,
        symbol: str | None = None,
        wants_closed: bool = False,
    ) -> ViewFacts:
        """What the policy needs to know (a view adds its symbol's own facts)."""
        account = request.account
        fresh_at = cache.symbol_read_at(symbol) if symbol else cache.full_at
        failing = self._failing.get(account)
        return ViewFacts(
            symbol=symbol,
            wants_closed=wants_closed,
            must_read=False,
            stream_fresh=self._streams.fresh_since(account, now) is not None,
            doubtful=False,
            unsettled=False,
            cache_fresh=cache.has_data and now - fresh_at <= request.max_age,
            backing_off=failing is not None and now < failing.retry_at and not self._reads_of(account),
            full_read=ReadKey(account, Scope.FULL) in self._reads or ReadKey(account, Scope.RESYNC) in self._reads,
            symbol_read=None if symbol_read is None else symbol_read.with_closed,
            symbol_read_cheaper=False,
        )

    def _act(self, request: Query, cache: AccountCache, now: float, answer: Answer, symbol_read: Read | None) -> None:
        account = request.account
        match answer:
            case Answer.PARK:
                assert isinstance(request, GetPositionView)
                self._parked.setdefault((account, request.symbol), []).append(request)  # its position push is due
            case Answer.PUSHED:
                self._answer_pushed(request, cache, now)
            case Answer.CACHED:
                self._counters.lookup(hit=True)
                self.answer(request, cache)
            case Answer.CLOSED_ONLY:
                assert isinstance(request, GetPositionView)
                self._wait_for_closed(request)  # fresh data: only the finished orders are missing
            case Answer.STALE:
                self._counters.lookup(hit=True)
                self.answer_stale(request, cache, self._failing[account].reason)  # backing off: no new read yet
            case Answer.JOIN_FULL:
                self._counters.lookup(hit=True)
                full = self._reads.get(ReadKey(account, Scope.FULL)) or self._reads[ReadKey(account, Scope.RESYNC)]
                full.waiters.append(request)
            case Answer.JOIN_SYMBOL:
                assert symbol_read is not None
                self._counters.lookup(hit=True)
                symbol_read.waiters.append(request)
            case Answer.READ_SYMBOL:
                assert isinstance(request, GetPositionView)
                self._counters.lookup(hit=False)
                self._start_read(account, request.symbol, request.include_closed).waiters.append(request)
            case Answer.READ_FULL:
                self._counters.lookup(hit=False)
                self._start_read(account, None, False).waiters.append(request)

    def _answer_pushed(self, request: Query, cache: AccountCache, now: float) -> None:
        """From the pushed cache; a view's finished orders from the pushes when they tell the
        fate of every link asked about, else from one read of the order history."""
        heard = self._streams.fresh_since(request.account, now)
        closed: tuple[Order, ...] | None = ()
        if isinstance(request, GetPositionView) and request.include_closed:
            closed = self._closed_by_push(request, cache, now)
            if closed is None:
                self._history_at[(request.account, request.symbol)] = now
                self._wait_for_closed(request)  # an order the pushes never explained: ask the history
                return
        self._counters.lookup(hit=True)
        self.answer(request, cache, closed=closed or (), heard=heard)

    def _closed_by_push(self, request: GetPositionView, cache: AccountCache, now: float) -> tuple[Order, ...] | None:
        """The symbol's finished orders as pushed, when they tell the fate of every link asked
        about (a command still in our own queue has no fate yet); None when only the order
        history can, unless it was read for this symbol moments ago (then what is known)."""
        explain = request.explain - self._queued_links
        closed = cache.closed_for(request.symbol, explain)
        last_history = self._history_at.get((request.account, request.symbol), -math.inf)
        if closed is None and now - last_history < HISTORY_EVERY_S:
            return cache.closed_for(request.symbol, frozenset())
        return closed

    def _wait_for_closed(self, request: GetPositionView) -> None:
        """One request for the symbol's finished orders (shared by everyone asking meanwhile)."""
        key = ReadKey(request.account, Scope.CLOSED, request.symbol)
        self._counters.lookup(hit=key in self._reads)
        read = self._reads.get(key) or self._start_read(request.account, request.symbol, True, closed_only=True)
        read.waiters.append(request)

    def _reads_of(self, account: str) -> list[Read]:
        return [r for key, r in self._reads.items() if key.account == account]

    def _symbol_read_is_cheaper(self, cache: AccountCache, max_age: float) -> bool:
        """A full refresh at this request's pace would spend more than our share of the read
        budget, and the symbol reads in flight (two requests each) still cost less than one."""
        if cache.full_pages <= 0:
            return False
        symbol_reads = sum(1 for key in self._reads if key.account == cache.account and key.scope is Scope.SYMBOL)
        return cache.full_pages / max(max_age, 0.1) > self._read_share and 2 * (symbol_reads + 1) < cache.full_pages

    def answer(
        self,
        request: Query,
        cache: AccountCache,
        *,
        stale: bool = False,
        throttled: bool = False,
        closed: tuple[Order, ...] = (),
        heard: float | None = None,
    ) -> None:
        now = self._clock.monotonic()
        if isinstance(request, GetAccountSnapshot):
            request.reply.set(cache.snapshot(now, stale=stale, heard=heard))
            return
        view = cache.view(
            request.symbol,
            request.position_idx,
            now,
            self._instruments.get(request.symbol),
            stale=stale,
            throttled=throttled,
            closed=closed,
            heard=heard,
        )
        request.reply.set(view)

    def answer_stale(self, request: Query, cache: AccountCache, reason: str) -> None:
        now = self._clock.monotonic()
        if cache.has_data and now - cache.last_good <= self._stale_limit:
            self.answer(request, cache, stale=True)
        elif cache.has_data:
            request.reply.set(Unavailable(request.account, f"no good data for {now - cache.last_good:.0f}s: {reason}"))
        else:
            request.reply.set(Unavailable(request.account, f"no data yet: {reason}"))

    def unpark(self, now: float) -> None:
        """Answer the views that waited for a fill's position push: from the cache once it came,
        by a REST read of the symbol when it is late (or the stream is no longer healthy)."""
        for (account, symbol), requests in list(self._parked.items()):
            since = self._caches[account].unsettled_since(symbol)
            late = since is not None and now - since > SETTLE_WAIT_S
            if since is not None and not late and self._streams.fresh_since(account, now) is not None:
                continue
            del self._parked[(account, symbol)]
            if late:
                log.info("Stream %s: the position push after a fill of %s is late; reading it by REST", account, symbol)
                read = self._reads.get(ReadKey(account, Scope.SYMBOL, symbol)) or self._start_read(
                    account, symbol, True
                )
                read.waiters.extend(requests)
                continue
            for request in requests:
                self.on_view(request)
