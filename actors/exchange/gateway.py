"""The ExchangeGateway: the only code that talks to the exchange, and the only cache.

Its mailbox never waits on the network. It is given a transport (actors/exchange/_transport.py: pybit and
websocket-client; an in-process one in tests). Every HTTP request is a job: queued per account by
priority, released by the rate limiter, run on a worker thread (as many as pooled connections, at
most an equal share per account, so a hung account cannot starve the other), and its result comes
back as a message. Requesters pass a future (`reply`) that is set when the answer is ready.

Freshness comes from two sources:
- Pushes. Each account's private stream (position, order, execution) and the public ticker
  stream (mark prices of the guarded symbols) are run by actors/exchange/_streams.py (connections, health,
  resyncs, missed pushes); private pushes are told to this mailbox and merged into the cache
  (actors/exchange/_cache.py). While an account's stream is healthy (actors/exchange/_stream_health.py) every view is
  answered from the cache at once, whatever `max_age` asks; a REST snapshot resyncs it after each
  (re)connect and every `resync_every` seconds. A push that changes a position or its orders
  wakes that position's monitor (`Wake` to the Scheduler).
- REST polling, while the stream is not healthy (or streams are off): a view is answered from the
  cache when it is fresh enough (`max_age`); else one read is started and every request arriving
  meanwhile waits for that same read (single flight). A read is a full refresh of the account or,
  when that costs more pages than the urgent requests justify, a read of the requested symbols
  (actors/exchange/_reads.py). A failed read keeps the last good data (served marked stale, up to
  `stale_limit`).

Rare one-off requests (the key check, what opening a trade needs, setting leverage) go through the
same jobs; actors/_account_requests.py builds them and answers from their results.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

import pykka

from actors.exchange import _account_requests

from actors.exchange import _formats
from actors.asks import has_reply, journal, tell_upward
from actors.exchange._cache import AccountCache, Difference, is_market
from actors.exchange._reads import Read, ReadFailed
from actors.exchange._rate_limiter import IP_BAN_SECONDS, RateLimiter
from actors.exchange._websocket import StreamEvent
from actors.exchange._streams import Streams
from actors.exchange._formats import HttpFail, HttpOk
from messages.codes import Meaning, RetCode, meaning
from messages.endpoints import BATCH_LIMIT, WRITE_PATHS, for_pybit
from messages.gateway import (
    Accepted,
    AmendOrder,
    AttachScheduler,
    Batch,
    CancelAll,
    CancelOrder,
    CheckAccess,
    GatewayStats,
    GatewayTick,
    GetAccountSnapshot,
    GetGatewayStats,
    GetMarket,
    GetPositionView,
    Outcome,
    PlaceOrder,
    Rejected,
    ReportStats,
    SetLeverage,
    Unavailable,
    Unresolved,
)
from messages.models import Instrument, ModelError, MonitorId
from messages.persistence import Record, account_subject
from messages.scheduler import AccountStale, Wake
from runtime.backoff import Backoff
from runtime.clock import Clock
from runtime.metrics import Metrics
from runtime.stats import percentile

log = logging.getLogger(__name__)

REQUESTS = (
    GetPositionView,
    GetAccountSnapshot,
    PlaceOrder,
    AmendOrder,
    CancelOrder,
    CancelAll,
    Batch,
    CheckAccess,
    GetMarket,
    SetLeverage,
)
READ_PRIORITY = 0.5  # between protecting a position and cleaning up
BACKOFF_START, BACKOFF_MAX = 1.0, 15.0
INSTRUMENTS_EVERY = 3600.0
INSTRUMENTS_RETRY_S = 2.0
REFRESH_KEPT = 1000
HISTORY_EVERY_S = 5.0  # while fresh, a symbol's order history is read at most this often
WRITE_QUEUE_S = 8.0  # a write not sent within this (Bybit's 10/s per account) is answered "not sent"
SETTLE_WAIT_S = 1.0  # a fill's position push not here by then: read the symbol by REST
RESYNC = ("resync",)  # the key of an account's resync read, beside its full (None) and symbol reads


@dataclass
class _Job:
    id: int
    account: str
    method: str
    params: dict[str, Any]
    priority: float
    on_done: Callable[[HttpOk | HttpFail], None]
    units: int = 1
    read: Read | None = None  # the read this page belongs to
    queued_at: float = 0.0

    @property
    def endpoint(self) -> str:
        return for_pybit(self.method).path


@dataclass
class _Failing:
    """An account whose reads fail: since when, why, and when to try again."""

    since: float
    reason: str
    backoff: Backoff
    retry_at: float = 0.0


@dataclass(frozen=True, slots=True)
class _Done:
    job_id: int
    result: HttpOk | HttpFail


class ExchangeGateway(pykka.ThreadingActor):
    def __init__(
        self,
        transport: Any,
        clock: Clock,
        *,
        stale_limit: float = 90.0,
        read_share: float = 20.0,
        metrics: Metrics | None = None,
        persistence: Any = None,
        heartbeat: float = 10.0,
        resync_every: float = 60.0,
    ):
        """`persistence` journals an account becoming unreadable past the stale limit and readable
        again (a tell: critical, so it is alerted); None journals nothing. Streams run when the
        transport has them (`transport.streams`)."""
        super().__init__()
        accounts = transport.accounts
        if not accounts:
            raise ValueError("the gateway needs at least one account")
        self._transport = transport
        self._persistence = persistence
        self._scheduler: Any = None
        self._unreadable: set[str] = set()
        self._metrics = metrics or Metrics(clock, accounts)
        self._clock = clock
        self._pool_size = transport.pool_size
        self._cap = max(1, self._pool_size // len(accounts))
        self._executor = ThreadPoolExecutor(max_workers=self._pool_size, thread_name_prefix="gateway-http")
        self._stale_limit = stale_limit
        self._read_share = read_share
        self._limiter = RateLimiter()
        self._caches = {name: AccountCache(name) for name in accounts}
        self._queues: dict[str, list[_Job]] = {name: [] for name in accounts}
        self._busy: Counter[str] = Counter()
        self._jobs: dict[int, _Job] = {}
        self._ids = itertools.count(1)
        self._reads: dict[tuple[str, Any], Read] = {}
        self._failing: dict[str, _Failing] = {}
        self._instruments: dict[str, Instrument] = {}
        self._instruments_at = -INSTRUMENTS_EVERY
        self._instruments_loading = False
        # Streams (the clients, their health, tickers: actors/exchange/_streams.py); pushes merge here.
        self._streams = Streams(
            transport,
            self._caches,
            clock,
            self._metrics,
            heartbeat=heartbeat,
            resync_every=resync_every,
            deliver=self._deliver,
            resync=self._start_resync,
            stale=lambda account: tell_upward(self._scheduler, AccountStale(account)),
        )
        self._parked: dict[tuple[str, str], list[GetPositionView]] = {}  # views waiting for a fill to settle
        self._history_at: dict[tuple[str, str], float] = {}  # last order-history read per symbol
        self._queued_links: set[str] = set()  # commands not sent or not answered yet
        # Stats.
        self._calls: Counter[tuple[str, str]] = Counter()
        self._errors: Counter[tuple[str, str]] = Counter()
        self._reported_calls: Counter[tuple[str, str]] = Counter()
        self._hits = self._misses = 0
        self._reported_hits = self._reported_misses = 0
        self._refresh_seconds: deque[float] = deque(maxlen=REFRESH_KEPT)
        self._refreshes = 0
        self._rate_limited = self._banned = 0
        self._pushes = self._rejected_pushes = self._wakes = 0

    # --- life cycle -----------------------------------------------------------------------

    def on_start(self) -> None:
        self._load_instruments()
        self._streams.start()

    def on_stop(self) -> None:
        self._streams.stop()
        self._executor.shutdown(wait=False, cancel_futures=True)
        waiting = [r for read in self._reads.values() for r in read.waiters] + [
            r for requests in self._parked.values() for r in requests
        ]
        for request in waiting:
            request.reply.set(Unavailable(request.account, "the gateway stopped"))
        for queue in self._queues.values():
            for job in queue:
                job.on_done(HttpFail("not_sent", "the gateway stopped"))

    def _deliver(self, event: StreamEvent) -> None:
        """On a stream's thread: hand the event to the mailbox (never raise into the library)."""
        try:
            self.actor_ref.tell(event)
        except pykka.ActorDeadError:
            pass

    # --- messages -------------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        answer = None
        if isinstance(message, REQUESTS) and not has_reply(message):
            log.error("Gateway: dropped a request without a reply future (a bug in its sender): %r", message)
            return None
        match message:
            case _Done():
                self._on_done(message)
            case StreamEvent():
                if self._streams.on_event(message):
                    self._on_private_push(message.stream, message)
            case GetPositionView() | GetAccountSnapshot():
                self._on_query(message)
            case PlaceOrder() | AmendOrder() | CancelOrder() | CancelAll():
                self._on_command(message)
            case Batch():
                self._on_batch(message)
            case CheckAccess() | GetMarket() | SetLeverage() if message.account not in self._caches:
                _account_requests.unknown_account(message)
            case CheckAccess():
                _account_requests.check_access(message, self._enqueue, READ_PRIORITY)
            case GetMarket():
                _account_requests.market(message, self._instruments.get(message.symbol), self._enqueue, READ_PRIORITY)
            case SetLeverage():
                _account_requests.set_leverage(message, self._enqueue)
            case GatewayTick():
                now = self._clock.monotonic()
                if now - self._instruments_at >= INSTRUMENTS_EVERY:
                    self._load_instruments()
                self._streams.tick(now)
                self._unpark(now)
            case AttachScheduler(scheduler=scheduler):
                self._scheduler = scheduler
            case ReportStats():
                self._log_stats()
            case GetGatewayStats():
                answer = self._stats()
            case _:
                log.error("Gateway: unknown message %r", message)
        self._pump()
        return answer

    # --- queries --------------------------------------------------------------------------

    def _on_query(self, request: GetPositionView | GetAccountSnapshot) -> None:
        cache = self._caches.get(request.account)
        if cache is None:
            request.reply.set(Unavailable(request.account, "unknown account"))
            return
        now = self._clock.monotonic()
        symbol = getattr(request, "symbol", None)
        wants_closed = getattr(request, "include_closed", False)
        heard = self._streams.fresh_since(request.account, now)
        if heard is not None and not getattr(request, "fresh", False) and not (symbol and cache.doubtful(symbol)):
            if symbol and cache.unsettled_since(symbol) is not None:
                self._parked.setdefault((request.account, symbol), []).append(request)  # its position push is due
                return
            closed = self._closed_by_push(request, cache, now) if symbol and wants_closed else ()
            if closed is not None:
                self._lookup(hit=True)
                self._answer(request, cache, closed=closed, heard=heard)
                return
            self._history_at[(request.account, symbol)] = now
            self._wait_for_closed(request, cache)  # an order the pushes never explained: ask the history
            return
        fresh_at = cache.symbol_read_at(symbol) if symbol else cache.full_at
        if cache.has_data and now - fresh_at <= request.max_age:
            if not wants_closed:
                self._lookup(hit=True)
                self._answer(request, cache)
            else:
                self._wait_for_closed(request, cache)  # fresh data: only the finished orders are missing
            return
        failing = self._failing.get(request.account)
        if failing and now < failing.retry_at and not self._reads_of(request.account):
            self._lookup(hit=True)
            self._answer_stale(request, cache, failing.reason)  # backing off: no new read yet
            return
        # A hit costs no request of its own: answered from the cache, or by a read in flight.
        full = self._reads.get((request.account, None)) or self._reads.get((request.account, RESYNC))
        scoped = self._reads.get((request.account, symbol)) if symbol else None
        if full and not wants_closed:
            self._lookup(hit=True)
            full.waiters.append(request)
        elif scoped and (scoped.with_closed or not wants_closed):
            self._lookup(hit=True)
            scoped.waiters.append(request)
        elif symbol and (wants_closed or self._scoped_is_cheaper(cache, request.max_age)):
            self._lookup(hit=False)
            self._start_read(request.account, symbol, wants_closed).waiters.append(request)
        else:
            self._lookup(hit=False)
            self._start_read(request.account, None, False).waiters.append(request)

    def _closed_by_push(self, request: GetPositionView, cache: AccountCache, now: float) -> tuple | None:
        """The symbol's finished orders as pushed, when they tell the fate of every link asked
        about (a command still in our own queue has no fate yet); None when only the order
        history can, unless it was read for this symbol moments ago (then what is known)."""
        explain = request.explain - self._queued_links
        closed = cache.closed_for(request.symbol, explain)
        if (
            closed is None
            and now - self._history_at.get((request.account, request.symbol), -math.inf) < HISTORY_EVERY_S
        ):
            return cache.closed_for(request.symbol, frozenset())
        return closed

    def _wait_for_closed(self, request: GetPositionView, cache: AccountCache) -> None:
        """One request for the symbol's finished orders (shared by everyone asking meanwhile)."""
        key = (request.account, ("closed", request.symbol))
        self._lookup(hit=key in self._reads)
        read = self._reads.get(key) or self._start_read(request.account, request.symbol, True, closed_only=True)
        read.waiters.append(request)

    def _lookup(self, *, hit: bool) -> None:
        """Count a view: a hit costs no request of its own."""
        if hit:
            self._hits += 1
        else:
            self._misses += 1
        self._metrics.cache.labels("hit" if hit else "miss").inc()

    def _reads_of(self, account: str) -> list[Read]:
        return [r for (a, _), r in self._reads.items() if a == account]

    def _scoped_is_cheaper(self, cache: AccountCache, max_age: float) -> bool:
        """A full refresh at this request's pace would spend more than our share of the read
        budget, and the symbol reads in flight (two requests each) still cost less than one."""
        if cache.full_pages <= 0:
            return False
        scoped_in_flight = sum(1 for (a, s) in self._reads if a == cache.account and isinstance(s, str))
        return cache.full_pages / max(max_age, 0.1) > self._read_share and 2 * (scoped_in_flight + 1) < cache.full_pages

    def _answer(
        self,
        request: Any,
        cache: AccountCache,
        *,
        stale: bool = False,
        throttled: bool = False,
        closed: tuple = (),
        heard: float | None = None,
    ) -> None:
        now = self._clock.monotonic()
        if isinstance(request, GetAccountSnapshot):
            request.reply.set(cache.snapshot(now, stale=stale, heard=heard))
        else:
            request.reply.set(
                cache.view(
                    request.symbol,
                    request.position_idx,
                    now,
                    self._instruments.get(request.symbol),
                    stale=stale,
                    throttled=throttled,
                    closed=closed,
                    heard=heard,
                )
            )

    def _answer_stale(self, request: Any, cache: AccountCache, reason: str) -> None:
        now = self._clock.monotonic()
        if cache.has_data and now - cache.last_good <= self._stale_limit:
            self._answer(request, cache, stale=True)
        else:
            request.reply.set(
                Unavailable(
                    request.account,
                    f"no good data for {now - cache.last_good:.0f}s: {reason}"
                    if cache.has_data
                    else f"no data yet: {reason}",
                )
            )

    # --- reads ----------------------------------------------------------------------------

    def _start_read(
        self, account: str, symbol: str | None, with_closed: bool, closed_only: bool = False, resync: int | None = None
    ) -> Read:
        """`resync`: the stream connection this read checks (None: an ordinary read)."""
        read = Read(
            account,
            symbol,
            with_closed,
            self._clock.monotonic(),
            self._clock.wall_ms(),
            closed_only,
            resync=resync is not None,
            connection=-1 if resync is None else resync,
        )
        self._reads[self._key(read)] = read
        self._read_page(read)
        return read

    def _key(self, read: Read) -> tuple[str, Any]:
        return (read.account, RESYNC) if read.resync else read.key

    def _read_page(self, read: Read) -> None:
        method, params = read.request()
        self._enqueue(
            read.account, method, params, READ_PRIORITY, lambda result: self._on_page(read, result), read=read
        )

    def _on_page(self, read: Read, result: HttpOk | HttpFail) -> None:
        if isinstance(result, HttpFail):
            self._read_failed(read, f"{result.kind} {result.code or ''} {result.message}".strip())
            return
        try:
            done = read.on_page(result.body)
        except ReadFailed as exc:
            self._read_failed(read, str(exc))
            return
        if done:
            self._finish_read(read)
        else:
            self._read_page(read)

    def _finish_read(self, read: Read) -> None:
        try:
            positions, orders, closed = read.parsed()
        except ModelError as exc:
            self._read_failed(read, f"malformed data rejected: {exc}")
            return
        del self._reads[self._key(read)]
        cache = self._caches[read.account]
        now = self._clock.monotonic()
        differences: list[Difference] = []
        cache.apply_closed(list(closed))
        if read.closed_only:
            pass  # nothing but finished orders was read: the rest of the cache is as it was
        elif read.symbol is None:
            differences = cache.apply_full(positions, orders, read.started, read.started_ms, read.pages)
            self._refreshes += 1
            self._refresh_seconds.append(now - read.started)
        else:
            differences = cache.apply_symbol(read.symbol, positions, orders, read.started, read.started_ms)
        self._metrics.account_read(read.account)
        if self._failing.pop(read.account, None):
            log.info("Gateway: %s reads work again", read.account)
        if read.account in self._unreadable:
            self._unreadable.discard(read.account)
            self._journal(read.account, "account_readable")
        if self._streams.watches(read.account):
            self._wake_many(read.account, {d.position for d in differences})
            self._streams.after_read(read, differences, now)
        for request in read.waiters:
            self._answer(request, cache, throttled=read.throttled, closed=closed)

    def _read_failed(self, read: Read, reason: str) -> None:
        self._reads.pop(self._key(read), None)
        if read.resync:
            self._streams.resync_failed(read.account, reason)
        if read.closed_only:  # only the finished orders are missing: no reason to back off the account
            for request in read.waiters:
                self._answer(request, self._caches[read.account], stale=True)
            return
        now = self._clock.monotonic()
        failing = self._failing.get(read.account)
        if failing is None:
            failing = self._failing[read.account] = _Failing(now, reason, Backoff(BACKOFF_START, BACKOFF_MAX))
        failing.reason = reason
        backoff = failing.backoff.next()
        failing.retry_at = now + backoff
        cache = self._caches[read.account]
        age = now - cache.last_good if cache.has_data else float("inf")
        log.warning(
            "Gateway: reading %s%s failed (%s); %s",
            read.account,
            f" {read.symbol}" if read.symbol else "",
            reason,
            f"serving the last good data ({age:.0f}s old), next try in {backoff:.0f}s"
            if age <= self._stale_limit
            else "no good data to serve",
        )
        for request in read.waiters:
            self._answer_stale(request, cache, reason)
        if now - failing.since > self._stale_limit and read.account not in self._unreadable:
            self._unreadable.add(read.account)
            self._journal(read.account, "account_unreadable", seconds=round(now - failing.since), reason=reason[:120])

    def _journal(self, account: str, event: str, **payload: Any) -> None:
        entry = journal(self._clock.wall_ms(), account_subject(account), event, **payload)
        tell_upward(self._persistence, Record(account_subject(account), None, (entry,), critical=True))

    def _load_instruments(self, cursor: str | None = None) -> None:
        if self._instruments_loading and cursor is None:
            return
        self._instruments_loading = True
        params = {"category": "linear", "limit": 1000, **({"cursor": cursor} if cursor else {})}
        account = next(iter(self._caches))
        self._enqueue(account, "get_instruments_info", params, READ_PRIORITY, self._on_instruments)

    def _on_instruments(self, result: HttpOk | HttpFail) -> None:
        if isinstance(result, HttpFail):
            log.warning("Gateway: instrument rules could not be read (%s); retrying", result.message)
            self._instruments_loading = False
            # Monitors cannot act without tick sizes: try this cheap public read again soon.
            self._instruments_at = self._clock.monotonic() - INSTRUMENTS_EVERY + INSTRUMENTS_RETRY_S
            return
        body = result.body.get("result") or {}
        for row in body.get("list") or []:
            try:
                instrument = Instrument.from_v5(row)
            except ModelError as exc:
                log.warning("Gateway: instrument row rejected: %s", exc)
                continue
            self._instruments[instrument.symbol] = instrument
        cursor = body.get("nextPageCursor")
        if cursor and body.get("list"):
            self._load_instruments(cursor)
            return
        self._instruments_loading = False
        self._instruments_at = self._clock.monotonic()

    # --- streams --------------------------------------------------------------------------

    def _start_resync(self, account: str, connection: int) -> bool:
        """A resync read of the account (for the streams), unless one is in flight."""
        if (account, RESYNC) in self._reads:
            return False
        self._start_read(account, None, False, resync=connection)
        return True

    def _on_private_push(self, account: str, event: StreamEvent) -> None:
        kind = event.topic.split(".", 1)[0] or "unknown"
        self._pushes += 1
        self._metrics.stream_pushes.labels(account, kind if kind in _formats.PRIVATE_TOPICS else "other").inc()
        try:
            if event.reason:
                raise ModelError(event.reason)
            push = _formats.private_push(event.topic, event.data)
        except ModelError as exc:
            self._rejected_pushes += 1
            self._metrics.stream_rejected.labels(account).inc()
            log.warning("Stream %s: malformed %s push rejected whole: %s", account, event.topic or "?", exc)
            return
        if push is None:
            return
        cache, now = self._caches[account], self._clock.monotonic()
        touched = (
            cache.push_positions(list(push.positions), now)
            | cache.push_orders(list(push.orders), now)
            | cache.push_executions(list(push.executions), now)
        )
        self._wake_many(account, touched)
        self._unpark(now)

    def _unpark(self, now: float) -> None:
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
                read = self._reads.get((account, symbol)) or self._start_read(account, symbol, True)
                read.waiters.extend(requests)
                continue
            for request in requests:
                self._on_query(request)

    def _wake_many(self, account: str, keys: set[tuple[str, int]]) -> None:
        for key in sorted(keys):
            self._wakes += 1
            self._metrics.wakes.labels(account).inc()
            tell_upward(self._scheduler, Wake(MonitorId(account, key[0], key[1])))

    # --- commands -------------------------------------------------------------------------

    def _on_command(self, command: Any) -> None:
        if command.account not in self._caches:
            command.reply.set(Rejected(0, f"unknown account {command.account}"))
            return
        method, params = _formats.command_request(command)
        self._queue_links((command,))
        self._enqueue(
            command.account,
            method,
            params,
            command.priority,
            lambda result: self._command_done(command, _formats.outcome_of(result)),
        )

    def _on_batch(self, batch: Batch) -> None:
        kinds = {type(c) for c in batch.commands}
        if (
            not batch.commands
            or len(batch.commands) > BATCH_LIMIT
            or len(kinds) != 1
            or kinds - set(_formats.BATCHES)
            or {c.account for c in batch.commands} != {batch.account}
        ):
            batch.reply.set(
                tuple(Rejected(0, "a batch holds 1-10 commands of one kind for its account") for _ in batch.commands)
            )
            return
        method, params = _formats.batch_request(batch.commands)
        self._queue_links(batch.commands)
        self._enqueue(
            batch.account,
            method,
            params,
            batch.priority,
            lambda result: self._batch_done(batch, result),
            units=len(batch.commands),
        )

    def _queue_links(self, commands: tuple[Any, ...]) -> None:
        self._queued_links |= {c.link_id for c in commands if getattr(c, "link_id", None)}

    def _batch_done(self, batch: Batch, result: HttpOk | HttpFail) -> None:
        outcomes = _formats.batch_outcomes(result, len(batch.commands))
        for command, outcome in zip(batch.commands, outcomes):
            self._patch_cache(command, outcome)
        batch.reply.set(tuple(outcomes))

    def _command_done(self, command: Any, outcome: Outcome) -> None:
        self._patch_cache(command, outcome)
        if isinstance(outcome, Unresolved):
            log.warning(
                "Gateway: %s %s %s is unresolved (%s); it will be settled from a fresh snapshot",
                command.account,
                type(command).__name__,
                getattr(command, "link_id", command.symbol),
                outcome.reason,
            )
        command.reply.set(outcome)

    def _patch_cache(self, command: Any, outcome: Outcome) -> None:
        """Make the cache reflect an accepted command before the next answer about its symbol."""
        self._queued_links.discard(getattr(command, "link_id", None))
        cache, now = self._caches[command.account], self._clock.monotonic()
        if not isinstance(outcome, Accepted):
            if (
                isinstance(outcome, Rejected)
                and meaning(outcome.code) is Meaning.GONE
                and isinstance(command, CancelOrder)
            ):
                cache.patch_cancelled(command.symbol, command.link_id)  # it is gone either way
            cache.mark_dirty(command.symbol, now, unresolved=isinstance(outcome, Unresolved))
            return
        match command:
            case PlaceOrder() if is_market(command):
                cache.mark_dirty(command.symbol, now)  # it filled: the position moved
            case PlaceOrder():
                cache.patch_placed(command, outcome.order_id, now, self._clock.wall_ms())
            case AmendOrder():
                cache.patch_amended(
                    command.symbol, command.link_id, command.qty, command.price, command.trigger_price, now
                )
            case CancelOrder():
                cache.patch_cancelled(command.symbol, command.link_id)
            case CancelAll():
                cache.patch_cancelled(command.symbol, None)

    # --- the HTTP jobs --------------------------------------------------------------------

    def _enqueue(
        self,
        account: str,
        method: str,
        params: dict[str, Any],
        priority: float,
        on_done: Callable[[HttpOk | HttpFail], None],
        *,
        units: int = 1,
        read: Read | None = None,
    ) -> None:
        self._queues[account].append(
            _Job(
                next(self._ids), account, method, params, float(priority), on_done, units, read, self._clock.monotonic()
            )
        )

    def _pump(self) -> None:
        """Send every queued job the limiter and the worker share allow, by priority."""
        now = self._clock.monotonic()
        for account, queue in self._queues.items():
            if not queue:
                continue
            queue.sort(key=lambda j: (j.priority, j.id))
            waiting = []
            for job in queue:
                if now < self._limiter.banned_until:
                    job.on_done(HttpFail("not_sent", "not sent: the exchange banned this IP (HTTP 403)", 403))
                    continue
                if job.endpoint in WRITE_PATHS and now - job.queued_at > WRITE_QUEUE_S:
                    # A definite "not sent" the monitor can act on next check, rather than its ask
                    # timing out (an unresolved write that would cost snapshots to settle).
                    job.on_done(HttpFail("not_sent", f"not sent: waited {WRITE_QUEUE_S:.0f} s for the write budget"))
                    continue
                if self._busy[account] >= self._cap:
                    waiting.append(job)
                    continue
                if not self._limiter.take(account, job.endpoint, now, job.units):
                    if job.read is not None:
                        job.read.throttled = True
                    waiting.append(job)
                    continue
                self._busy[account] += 1
                self._jobs[job.id] = job
                self._calls[(account, job.endpoint)] += 1
                self._metrics.request(account, job.endpoint)
                self._executor.submit(self._run, job)
            queue[:] = waiting

    def _run(self, job: _Job) -> None:
        """On a worker thread: the request, then its result back to the actor as a message."""
        result = self._transport.call(job.account, job.method, job.params)
        try:
            self.actor_ref.tell(_Done(job.id, result))
        except pykka.ActorDeadError:
            pass

    def _on_done(self, done: _Done) -> None:
        job = self._jobs.pop(done.job_id, None)
        if job is None:
            return
        self._busy[job.account] -= 1
        result = done.result
        now = self._clock.monotonic()
        headers = result.headers if result.headers else {}
        self._limiter.observe(
            job.account, job.endpoint, now, headers.get("X-Bapi-Limit"), headers.get("X-Bapi-Limit-Status")
        )
        if isinstance(result, HttpFail):
            self._errors[(job.account, f"{result.kind} {result.code}" if result.code else result.kind)] += 1
            self._metrics.failed(job.account, result.kind, result.code)
            if result.code == RetCode.TOO_MANY_VISITS:
                self._rate_limited += 1
                self._metrics.rate_limited.labels(job.account).inc()
                self._limiter.block(job.account, job.endpoint, now + self._reset_in(headers))
            if result.kind == "http" and result.code == 403:
                self._banned += 1
                self._metrics.banned.inc()
                self._limiter.ban(now + IP_BAN_SECONDS)
                log.error(
                    "Gateway: the exchange banned this IP (HTTP 403); nothing is sent for %.0f minutes",
                    IP_BAN_SECONDS / 60,
                )
        job.on_done(result)

    def _reset_in(self, headers: Any) -> float:
        try:
            reset_ms = int(headers.get("X-Bapi-Limit-Reset-Timestamp"))
        except (TypeError, ValueError):
            return 2.0  # pybit's own default when the header is missing
        return min(10.0, max(0.05, (reset_ms - self._clock.wall_ms()) / 1000))

    # --- stats ----------------------------------------------------------------------------

    def _stats(self) -> GatewayStats:
        calls: dict[str, dict[str, int]] = {}
        for (account, endpoint), n in sorted(self._calls.items()):
            calls.setdefault(account, {})[endpoint] = n
        errors: dict[str, dict[str, int]] = {}
        for (account, kind), n in sorted(self._errors.items()):
            errors.setdefault(account, {})[kind] = n
        now = self._clock.monotonic()
        return GatewayStats(
            calls=calls,
            errors=errors,
            cache_hits=self._hits,
            cache_misses=self._misses,
            refreshes=self._refreshes,
            refresh_seconds=tuple(self._refresh_seconds),
            pool_in_use=sum(self._busy.values()),
            pool_size=self._pool_size,
            limiter_waits=self._limiter.waits,
            rate_limited_10006=self._rate_limited,
            banned_403=self._banned,
            stale_accounts=tuple(sorted(self._failing)),
            streams_healthy=self._streams.healthy_accounts(now),
            pushes=self._pushes,
            rejected_pushes=self._rejected_pushes,
            missed_pushes=self._streams.missed,
            wakes=self._wakes,
            stream_connects=self._streams.connects(),
        )

    def _log_stats(self) -> None:
        hits, misses = self._hits - self._reported_hits, self._misses - self._reported_misses
        recent = self._calls - self._reported_calls
        by_endpoint: Counter[str] = Counter()
        for (_, endpoint), n in recent.items():
            by_endpoint[endpoint.removeprefix("/v5/")] += n
        p50 = percentile(list(self._refresh_seconds)[-100:], 0.5)
        total = hits + misses
        now = self._clock.monotonic()
        streams = self._streams.describe(now)
        log.info(
            "Gateway: hit rate %.1f%% (%d/%d), API calls %d in 60s (%s), refresh p50 %.2fs, pool %d/%d, "
            "stale %s, streams %s, pushes %d",
            100.0 * hits / total if total else 100.0,
            hits,
            total,
            sum(recent.values()),
            ", ".join(f"{e} {n}" for e, n in by_endpoint.most_common()) or "none",
            p50,
            sum(self._busy.values()),
            self._pool_size,
            ", ".join(sorted(self._failing)) or "none",
            streams,
            self._pushes,
        )
        self._reported_hits, self._reported_misses = self._hits, self._misses
        self._reported_calls = Counter(self._calls)
