"""The ExchangeGateway: the only code that talks to the exchange, and the only cache.

Its mailbox never waits on the network. Every HTTP request is a job: queued per account by
priority, released by the rate limiter, run on a worker thread (as many as pooled connections,
at most an equal share per account, so a hung account cannot starve the other), and its result
comes back as a message. Requesters pass a future (`reply`) that is set when the answer is ready.

Reads: a position view is answered from the cache when it is fresh enough (`max_age`); else one
read is started and every request arriving meanwhile waits for that same read (single flight).
A read is either a full refresh of the account (every open order, then every position, walked by
cursor) or, when a full refresh costs more pages than the urgent requests justify, a read of just
the requested symbols. Orders are read before positions, so the position is the newest fact.
A failed read keeps the last good data (served marked stale, up to `stale_limit`).
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import pykka

from actors import _bybit
from actors._asks import has_reply, journal, tell_upward
from actors._bybit import HttpFail, HttpOk
from actors._cache import AccountCache, is_market
from actors._rate_limit import IP_BAN_SECONDS, RateLimiter
from messages.codes import Meaning, RetCode, meaning, outcome_unknown
from messages.gateway import (Accepted, Access, AmendOrder, Batch, CancelAll, CancelOrder, CheckAccess,
                              GatewayStats, GatewayTick, GetAccountSnapshot, GetGatewayStats, GetPositionView,
                              Outcome, PlaceOrder, Rejected, ReportStats, Unavailable, Unresolved)
from messages.models import Instrument, ModelError, Order, Position
from messages.persistence import Record, account_subject
from runtime.backoff import Backoff
from runtime.clock import Clock
from runtime.metrics import Metrics
from runtime.stats import percentile

log = logging.getLogger(__name__)

REQUESTS = (GetPositionView, GetAccountSnapshot, PlaceOrder, AmendOrder, CancelOrder, CancelAll, Batch, CheckAccess)
READ_PRIORITY = 0.5            # between protecting a position and cleaning up
MAX_PAGES = 1000               # a cursor walk longer than this is a broken cursor
BACKOFF_START, BACKOFF_MAX = 1.0, 15.0
INSTRUMENTS_EVERY = 3600.0
INSTRUMENTS_RETRY_S = 2.0
REFRESH_KEPT = 1000


@dataclass
class _Job:
    id: int
    account: str
    method: str
    params: dict[str, Any]
    priority: float
    on_done: Callable[[HttpOk | HttpFail], None]
    units: int = 1
    read: "_Read | None" = None  # the read this page belongs to

    @property
    def endpoint(self) -> str:
        return _bybit.ENDPOINTS[self.method]


@dataclass
class _Read:
    """A read in progress: a full refresh (symbol None), one symbol's data, or (closed_only) just
    one symbol's finished orders."""
    account: str
    symbol: str | None
    with_closed: bool
    started: float
    started_ms: int
    closed_only: bool = False
    waiters: list[Any] = field(default_factory=list)
    rows: dict[str, list[dict]] = field(default_factory=lambda: {"orders": [], "positions": [], "closed": []})
    pages: int = 0
    throttled: bool = False


@dataclass
class _Failing:
    """An account whose reads fail: since when, why, and when to try again."""
    since: float
    reason: str
    backoff: Backoff = field(default_factory=lambda: Backoff(BACKOFF_START, BACKOFF_MAX))
    retry_at: float = 0.0


@dataclass(frozen=True, slots=True)
class _Done:
    job_id: int
    result: HttpOk | HttpFail


def _decimal_text(value) -> str | None:
    return None if value is None else format(value, "f")


def _place_params(command: PlaceOrder) -> dict[str, Any]:
    params = {"symbol": command.symbol, "side": command.side, "orderType": command.order_type,
              "qty": _decimal_text(command.qty), "orderLinkId": command.link_id,
              "positionIdx": command.position_idx, "reduceOnly": command.reduce_only}
    if command.order_type == "Limit":
        params.update(price=_decimal_text(command.price), timeInForce=command.time_in_force)
    if command.trigger_price is not None:
        params.update(triggerPrice=_decimal_text(command.trigger_price), triggerDirection=command.trigger_direction,
                      triggerBy="LastPrice")
    if command.close_on_trigger:
        params["closeOnTrigger"] = True
    return params


def _amend_params(command: AmendOrder) -> dict[str, Any]:
    params = {"symbol": command.symbol, "orderLinkId": command.link_id, "qty": _decimal_text(command.qty),
              "price": _decimal_text(command.price), "triggerPrice": _decimal_text(command.trigger_price)}
    return {k: v for k, v in params.items() if v is not None}


def outcome_of(result: HttpOk | HttpFail) -> Outcome:
    if isinstance(result, HttpOk):
        body = result.body.get("result") or {}
        return Accepted(str(body.get("orderId", "")), str(body.get("orderLinkId", "")))
    if result.kind == "not_sent":
        return Rejected(result.code or 0, result.message)
    if result.uncertain:
        return Unresolved(f"{result.kind} {result.code or ''}: {result.message}".replace(" :", ":")[:200])
    return Rejected(result.code or 0, result.message)


class ExchangeGateway(pykka.ThreadingActor):
    def __init__(self, accounts: dict[str, tuple[str, str]], base_url: str, clock: Clock, *,
                 pool_size: int = 10, timeout: float = 10.0, recv_window: int = 5000,
                 stale_limit: float = 90.0, read_share: float = 20.0, metrics: Metrics | None = None,
                 persistence: Any = None):
        """`persistence` journals an account becoming unreadable past the stale limit and readable
        again (a tell: critical, so it is alerted); None journals nothing."""
        super().__init__()
        self._persistence = persistence
        self._unreadable: set[str] = set()
        self._metrics = metrics or Metrics(clock, accounts)
        if not accounts:
            raise ValueError("the gateway needs at least one account")
        self._clock = clock
        self._adapter = _bybit.make_adapter(pool_size)
        self._clients = {name: _bybit.make_client(key, secret, base_url, self._adapter, timeout=timeout,
                                                  recv_window=recv_window)
                         for name, (key, secret) in accounts.items()}
        self._pool_size = pool_size
        self._cap = max(1, pool_size // len(accounts))
        self._executor = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="gateway-http")
        self._stale_limit = stale_limit
        self._read_share = read_share
        self._limiter = RateLimiter()
        self._caches = {name: AccountCache(name) for name in accounts}
        self._queues: dict[str, list[_Job]] = {name: [] for name in accounts}
        self._busy: Counter[str] = Counter()
        self._jobs: dict[int, _Job] = {}
        self._ids = itertools.count(1)
        self._reads: dict[tuple[str, Any], _Read] = {}
        self._failing: dict[str, _Failing] = {}
        self._instruments: dict[str, Instrument] = {}
        self._instruments_at = -INSTRUMENTS_EVERY
        self._instruments_loading = False
        # Stats.
        self._calls: Counter[tuple[str, str]] = Counter()
        self._errors: Counter[tuple[str, str]] = Counter()
        self._reported_calls: Counter[tuple[str, str]] = Counter()
        self._hits = self._misses = 0
        self._reported_hits = self._reported_misses = 0
        self._refresh_seconds: deque[float] = deque(maxlen=REFRESH_KEPT)
        self._refreshes = 0
        self._rate_limited = self._banned = 0

    # --- life cycle -----------------------------------------------------------------------

    def on_start(self) -> None:
        self._load_instruments()

    def on_stop(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        for read in self._reads.values():
            for request in read.waiters:
                request.reply.set(Unavailable(read.account, "the gateway stopped"))
        for queue in self._queues.values():
            for job in queue:
                job.on_done(HttpFail("not_sent", "the gateway stopped"))

    # --- messages -------------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        answer = None
        if isinstance(message, REQUESTS) and not has_reply(message):
            log.error("Gateway: dropped a request without a reply future (a bug in its sender): %r", message)
            return None
        match message:
            case _Done():
                self._on_done(message)
            case GetPositionView() | GetAccountSnapshot():
                self._on_query(message)
            case PlaceOrder() | AmendOrder() | CancelOrder() | CancelAll():
                self._on_command(message)
            case Batch():
                self._on_batch(message)
            case CheckAccess():
                self._on_check_access(message)
            case GatewayTick():
                if self._clock.monotonic() - self._instruments_at >= INSTRUMENTS_EVERY:
                    self._load_instruments()
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
        fresh_at = cache.symbol_read_at(symbol) if symbol else cache.full_at
        wants_closed = getattr(request, "include_closed", False)
        if cache.has_data and now - fresh_at <= request.max_age:
            if not wants_closed:
                self._lookup(hit=True)
                self._answer(request, cache)
                return
            # Fresh data: only the finished orders are missing (one request, not three).
            key = (request.account, ("closed", symbol))
            self._lookup(hit=key in self._reads)
            read = self._reads.get(key) or self._start_read(request.account, symbol, True, closed_only=True)
            read.waiters.append(request)
            return
        failing = self._failing.get(request.account)
        if failing and now < failing.retry_at and not self._reads_of(request.account):
            self._lookup(hit=True)
            self._answer_stale(request, cache, failing.reason)  # backing off: no new read yet
            return
        # A hit costs no request of its own: answered from the cache, or by a read in flight.
        full = self._reads.get((request.account, None))
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

    def _lookup(self, *, hit: bool) -> None:
        """Count a view: a hit costs no request of its own."""
        if hit:
            self._hits += 1
        else:
            self._misses += 1
        self._metrics.cache.labels("hit" if hit else "miss").inc()

    def _reads_of(self, account: str) -> list[_Read]:
        return [r for (a, _), r in self._reads.items() if a == account]

    def _scoped_is_cheaper(self, cache: AccountCache, max_age: float) -> bool:
        """A full refresh at this request's pace would spend more than our share of the read
        budget, and the symbol reads in flight (two requests each) still cost less than one."""
        if cache.full_pages <= 0:
            return False
        scoped_in_flight = sum(1 for (a, s) in self._reads if a == cache.account and isinstance(s, str))
        return cache.full_pages / max(max_age, 0.1) > self._read_share and \
            2 * (scoped_in_flight + 1) < cache.full_pages

    def _answer(self, request: Any, cache: AccountCache, *, stale: bool = False, throttled: bool = False,
                closed: tuple[Order, ...] = ()) -> None:
        now = self._clock.monotonic()
        if isinstance(request, GetAccountSnapshot):
            request.reply.set(cache.snapshot(now, stale=stale))
        else:
            request.reply.set(cache.view(request.symbol, request.position_idx, now,
                                         self._instruments.get(request.symbol), stale=stale,
                                         throttled=throttled, closed=closed))

    def _answer_stale(self, request: Any, cache: AccountCache, reason: str) -> None:
        now = self._clock.monotonic()
        if cache.has_data and now - cache.last_good <= self._stale_limit:
            self._answer(request, cache, stale=True)
        else:
            request.reply.set(Unavailable(request.account, f"no good data for {now - cache.last_good:.0f}s: {reason}"
                                          if cache.has_data else f"no data yet: {reason}"))

    # --- reads ----------------------------------------------------------------------------

    def _start_read(self, account: str, symbol: str | None, with_closed: bool, closed_only: bool = False) -> _Read:
        read = _Read(account, symbol, with_closed, self._clock.monotonic(), self._clock.wall_ms(), closed_only)
        self._reads[self._key(read)] = read
        self._read_page(read, "closed" if closed_only else "orders", None, set())
        return read

    @staticmethod
    def _key(read: _Read) -> tuple[str, Any]:
        return (read.account, ("closed", read.symbol) if read.closed_only else read.symbol)

    def _read_page(self, read: _Read, phase: str, cursor: str | None, seen: set[str]) -> None:
        scope = {"symbol": read.symbol} if read.symbol else {"settleCoin": "USDT"}
        method, params = {
            "orders": ("get_open_orders", {"category": "linear", "limit": 50, **scope}),
            "positions": ("get_positions", {"category": "linear", "limit": 200, **scope}),
            "closed": ("get_order_history", {"category": "linear", "limit": 50, **scope}),
        }[phase]
        if cursor:
            params["cursor"] = cursor
        self._enqueue(read.account, method, params, READ_PRIORITY,
                      lambda result: self._on_page(read, phase, cursor, seen, result), read=read)

    def _on_page(self, read: _Read, phase: str, cursor: str | None, seen: set[str], result: HttpOk | HttpFail) -> None:
        if isinstance(result, HttpFail):
            self._read_failed(read, f"{result.kind} {result.code or ''} {result.message}".strip())
            return
        body = result.body.get("result")
        if not isinstance(body, dict) or not isinstance(body.get("list"), list):
            self._read_failed(read, "malformed answer: no result list")
            return
        read.pages += 1
        read.rows[phase].extend(body["list"])
        next_cursor = str(body.get("nextPageCursor") or "")
        if body["list"] and next_cursor and phase != "closed":
            if next_cursor in seen or read.pages >= MAX_PAGES:
                # The walk cannot finish: what we have may miss pages, and applying it could turn
                # missing rows into "no position". Fail the read; the last good data stays.
                self._read_failed(read, f"the {phase} cursor stopped advancing after {read.pages} pages")
                return
            self._read_page(read, phase, next_cursor, seen | {next_cursor})
            return
        following = {"orders": "positions", "positions": "closed" if read.with_closed else None, "closed": None}[phase]
        if following:
            self._read_page(read, following, None, set())
        else:
            self._finish_read(read)

    def _finish_read(self, read: _Read) -> None:
        try:
            orders = [Order.from_v5(row) for row in read.rows["orders"]]
            positions = [Position.from_v5(row) for row in read.rows["positions"]]
            closed = tuple(o for o in map(Order.from_v5, read.rows["closed"]) if not o.is_open)
        except (ModelError, TypeError, AttributeError) as exc:
            self._read_failed(read, f"malformed data rejected: {exc}")
            return
        del self._reads[self._key(read)]
        cache = self._caches[read.account]
        now = self._clock.monotonic()
        if read.closed_only:
            pass  # nothing but finished orders was read: the cache is as it was
        elif read.symbol is None:
            cache.apply_full(positions, orders, read.started, read.started_ms, read.pages)
            self._refreshes += 1
            self._refresh_seconds.append(now - read.started)
        else:
            cache.apply_symbol(read.symbol, positions, orders, read.started, read.started_ms)
        self._metrics.account_read(read.account)
        if self._failing.pop(read.account, None):
            log.info("Gateway: %s reads work again", read.account)
        if read.account in self._unreadable:
            self._unreadable.discard(read.account)
            self._journal(read.account, "account_readable")
        for request in read.waiters:
            self._answer(request, cache, throttled=read.throttled, closed=closed)

    def _read_failed(self, read: _Read, reason: str) -> None:
        self._reads.pop(self._key(read), None)
        if read.closed_only:  # only the finished orders are missing: no reason to back off the account
            for request in read.waiters:
                self._answer(request, self._caches[read.account], stale=True)
            return
        now = self._clock.monotonic()
        failing = self._failing.get(read.account)
        if failing is None:
            failing = self._failing[read.account] = _Failing(since=now, reason=reason)
        failing.reason = reason
        backoff = failing.backoff.next()
        failing.retry_at = now + backoff
        cache = self._caches[read.account]
        age = now - cache.last_good if cache.has_data else float("inf")
        log.warning("Gateway: reading %s%s failed (%s); %s", read.account,
                    f" {read.symbol}" if read.symbol else "", reason,
                    f"serving the last good data ({age:.0f}s old), next try in {backoff:.0f}s"
                    if age <= self._stale_limit else "no good data to serve")
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
        account = next(iter(self._clients))
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

    def _on_check_access(self, request: CheckAccess) -> None:
        if request.account not in self._clients:
            request.reply.set(Access(request.account, False, False, "unknown account"))
            return

        def done(result: HttpOk | HttpFail) -> None:
            if isinstance(result, HttpFail):
                request.reply.set(Access(request.account, False, False, f"{result.code or result.kind}: {result.message}",
                                         transient=result.uncertain or result.kind == "not_sent"))
                return
            info = result.body.get("result") or {}
            trade = (info.get("permissions") or {}).get("ContractTrade") or []
            can_trade = str(info.get("readOnly")) == "0" and "Order" in trade
            request.reply.set(Access(request.account, True, can_trade,
                                     "can trade" if can_trade else "the key is read-only or lacks Contract - Orders"))
        self._enqueue(request.account, "get_api_key_information", {}, READ_PRIORITY, done)

    # --- commands -------------------------------------------------------------------------

    def _on_command(self, command: Any) -> None:
        if command.account not in self._clients:
            command.reply.set(Rejected(0, f"unknown account {command.account}"))
            return
        match command:
            case PlaceOrder():
                method, params = "place_order", _place_params(command)
            case AmendOrder():
                method, params = "amend_order", _amend_params(command)
            case CancelOrder():
                method, params = "cancel_order", {"symbol": command.symbol, "orderLinkId": command.link_id}
            case CancelAll():
                method, params = "cancel_all_orders", {"symbol": command.symbol}
        self._enqueue(command.account, method, {"category": "linear", **params}, command.priority,
                      lambda result: self._command_done(command, outcome_of(result)))

    def _on_batch(self, batch: Batch) -> None:
        kinds = {type(c) for c in batch.commands}
        if not batch.commands or len(batch.commands) > 10 or len(kinds) != 1 or \
                kinds - {PlaceOrder, AmendOrder, CancelOrder} or {c.account for c in batch.commands} != {batch.account}:
            batch.reply.set(tuple(Rejected(0, "a batch holds 1-10 commands of one kind for its account")
                                  for _ in batch.commands))
            return
        kind = kinds.pop()
        method, build = {PlaceOrder: ("place_batch_order", _place_params),
                         AmendOrder: ("amend_batch_order", _amend_params),
                         CancelOrder: ("cancel_batch_order",
                                       lambda c: {"symbol": c.symbol, "orderLinkId": c.link_id})}[kind]
        requests = [build(c) for c in batch.commands]
        self._enqueue(batch.account, method, {"category": "linear", "request": requests}, batch.priority,
                      lambda result: self._batch_done(batch, result), units=len(requests))

    def _batch_done(self, batch: Batch, result: HttpOk | HttpFail) -> None:
        if isinstance(result, HttpFail):
            outcomes = [outcome_of(result)] * len(batch.commands)
        else:
            rows = (result.body.get("result") or {}).get("list") or []
            codes = (result.body.get("retExtInfo") or {}).get("list") or []
            outcomes = []
            for index in range(len(batch.commands)):
                code = codes[index] if index < len(codes) else {"code": -1, "msg": "missing from the answer"}
                row = rows[index] if index < len(rows) else {}
                if code.get("code") == 0:
                    outcomes.append(Accepted(str(row.get("orderId", "")), str(row.get("orderLinkId", ""))))
                elif outcome_unknown(code.get("code")) or code.get("code") == -1:
                    outcomes.append(Unresolved(f"batch item: {code.get('code')} {code.get('msg')}"))
                else:
                    outcomes.append(Rejected(int(code.get("code") or 0), str(code.get("msg") or "")))
        for command, outcome in zip(batch.commands, outcomes):
            self._patch_cache(command, outcome)
        batch.reply.set(tuple(outcomes))

    def _command_done(self, command: Any, outcome: Outcome) -> None:
        self._patch_cache(command, outcome)
        if isinstance(outcome, Unresolved):
            log.warning("Gateway: %s %s %s is unresolved (%s); it will be settled from a fresh snapshot",
                        command.account, type(command).__name__, getattr(command, "link_id", command.symbol),
                        outcome.reason)
        command.reply.set(outcome)

    def _patch_cache(self, command: Any, outcome: Outcome) -> None:
        """Make the cache reflect an accepted command before the next answer about its symbol."""
        cache = self._caches[command.account]
        if not isinstance(outcome, Accepted):
            if isinstance(outcome, Rejected) and meaning(outcome.code) is Meaning.GONE and isinstance(command, CancelOrder):
                cache.patch_cancelled(command.symbol, command.link_id)  # it is gone either way
            cache.mark_dirty(command.symbol, self._clock.monotonic())
            return
        match command:
            case PlaceOrder() if is_market(command):
                cache.mark_dirty(command.symbol, self._clock.monotonic())  # it filled: the position moved
            case PlaceOrder():
                cache.patch_placed(command, outcome.order_id, self._clock.wall_ms())
            case AmendOrder():
                cache.patch_amended(command.symbol, command.link_id, command.qty, command.price, command.trigger_price)
            case CancelOrder():
                cache.patch_cancelled(command.symbol, command.link_id)
            case CancelAll():
                cache.patch_cancelled(command.symbol, None)

    # --- the HTTP jobs --------------------------------------------------------------------

    def _enqueue(self, account: str, method: str, params: dict[str, Any], priority: float,
                 on_done: Callable[[HttpOk | HttpFail], None], *, units: int = 1, read: _Read | None = None) -> None:
        self._queues[account].append(_Job(next(self._ids), account, method, params, float(priority), on_done,
                                          units, read))

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
                self._executor.submit(self._run, job, self._clients[account])
            queue[:] = waiting

    def _run(self, job: _Job, client: Any) -> None:
        """On a worker thread: the request, then its result back to the actor as a message."""
        result = _bybit.call(client, job.method, job.params)
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
        self._limiter.observe(job.account, job.endpoint, now, headers.get("X-Bapi-Limit"),
                              headers.get("X-Bapi-Limit-Status"))
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
                log.error("Gateway: the exchange banned this IP (HTTP 403); nothing is sent for %.0f minutes",
                          IP_BAN_SECONDS / 60)
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
        return GatewayStats(
            calls=calls, errors=errors, cache_hits=self._hits, cache_misses=self._misses,
            refreshes=self._refreshes, refresh_seconds=tuple(self._refresh_seconds),
            pool_in_use=sum(self._busy.values()), pool_size=self._pool_size, limiter_waits=self._limiter.waits,
            rate_limited_10006=self._rate_limited, banned_403=self._banned,
            stale_accounts=tuple(sorted(self._failing)))

    def _log_stats(self) -> None:
        hits, misses = self._hits - self._reported_hits, self._misses - self._reported_misses
        recent = self._calls - self._reported_calls
        by_endpoint: Counter[str] = Counter()
        for (_, endpoint), n in recent.items():
            by_endpoint[endpoint.removeprefix("/v5/")] += n
        p50 = percentile(list(self._refresh_seconds)[-100:], 0.5)
        total = hits + misses
        log.info("Gateway: hit rate %.1f%% (%d/%d), API calls %d in 60s (%s), refresh p50 %.2fs, pool %d/%d, stale %s",
                 100.0 * hits / total if total else 100.0, hits, total, sum(recent.values()),
                 ", ".join(f"{e} {n}" for e, n in by_endpoint.most_common()) or "none", p50,
                 sum(self._busy.values()), self._pool_size, ", ".join(sorted(self._failing)) or "none")
        self._reported_hits, self._reported_misses = self._hits, self._misses
        self._reported_calls = Counter(self._calls)
