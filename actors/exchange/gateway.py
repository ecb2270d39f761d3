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
same jobs; actors/exchange/_account_requests.py builds them and answers from their results.

The parts it acts through: the view-answering policy (_view_policy.py, pure), the HTTP job queue
(_jobs.py), the figures (_counters.py), the reads (_reads.py) and the cache merge (_cache.py).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pykka

from actors.asks import has_reply, journal, tell_upward
from actors.exchange import _account_requests, _formats
from actors.exchange._cache import AccountCache, Difference
from actors.exchange._counters import GatewayCounters
from actors.exchange._formats import Failure, HttpFail
from actors.exchange._handshakes import HandshakeBudget
from actors.exchange._instruments import InstrumentBook
from actors.exchange._jobs import Job, JobQueue, Result
from actors.exchange._rate_limiter import IP_BAN_SECONDS, RateLimiter
from actors.exchange._reads import Failing, Read, ReadFailed, ReadKey, Scope
from actors.exchange._streams import Streams
from actors.exchange._transport import Transport
from actors.exchange._views import Views
from actors.exchange._websocket import StreamEvent
from messages.codes import RetCode
from messages.endpoints import BATCH_LIMIT
from messages.gateway import (
    AmendOrder,
    AttachScheduler,
    CancelAll,
    CancelOrder,
    CheckAccess,
    GatewayStats,
    GatewayTick,
    GetAccountSnapshot,
    GetGatewayStats,
    GetMarket,
    GetPositionView,
    OrderCommand,
    Outcome,
    PlaceOrder,
    Priority,
    Rejected,
    ReportStats,
    SendBatch,
    SetLeverage,
    Unavailable,
    Unresolved,
    link_of,
)
from messages.models import ModelError, MonitorId
from messages.persistence import Record, account_subject
from messages.scheduler import AccountWentStale, Wake
from runtime.backoff import Backoff
from runtime.clock import Clock
from runtime.metrics import Metrics

log = logging.getLogger(__name__)

REQUESTS = (
    GetPositionView,
    GetAccountSnapshot,
    PlaceOrder,
    AmendOrder,
    CancelOrder,
    CancelAll,
    SendBatch,
    CheckAccess,
    GetMarket,
    SetLeverage,
)
BACKOFF_START, BACKOFF_MAX = 1.0, 15.0


@dataclass(frozen=True, slots=True)
class _Done:
    job_id: int
    result: Result
    started: float  # when the worker started the request (monotonic)
    answered: float  # when its answer (or failure) came back


class ExchangeGateway(pykka.ThreadingActor):
    def __init__(
        self,
        transport: Transport,
        clock: Clock,
        *,
        stale_limit: float = 90.0,
        read_share: float = 20.0,
        metrics: Metrics | None = None,
        persistence: pykka.ActorRef[Any] | None = None,
        heartbeat: float = 10.0,
        resync_every: float = 60.0,
        instruments_every: float = 300.0,
        trail_share: float = 0.5,
        ip_share: float = 1.0,
    ):
        """`persistence` journals an account becoming unreadable past the stale limit and readable
        again (a tell: critical, so it is alerted); None journals nothing. Streams run when the
        transport has them (`transport.streams`)."""
        super().__init__()
        accounts = tuple(transport.accounts)
        if not accounts:
            raise ValueError("the gateway needs at least one account")
        self._transport = transport
        self._persistence = persistence
        self._scheduler: pykka.ActorRef[Any] | None = None
        self._unreadable: set[str] = set()
        self._metrics = metrics or Metrics(clock, accounts)
        self._counters = GatewayCounters(self._metrics)
        self._clock = clock
        self._pool_size = transport.pool_size
        self._executor = ThreadPoolExecutor(max_workers=self._pool_size, thread_name_prefix="gateway-http")
        self._stale_limit = stale_limit
        self._read_share = read_share
        self._limiter = RateLimiter(ip_share=ip_share)
        self._jobs = JobQueue(accounts, self._limiter, max(1, self._pool_size // len(accounts)), trail_share)
        self._caches = {name: AccountCache(name) for name in accounts}
        self._reads: dict[ReadKey, Read] = {}
        self._failing: dict[str, Failing] = {}
        self._instruments = InstrumentBook(instruments_every)
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
            stale=self._account_stale,
            handshakes=HandshakeBudget(ip_share),
        )
        self._queued_links: set[str] = set()  # commands not sent or not answered yet
        self._views = Views(
            self._caches,
            self._instruments,
            self._streams,
            self._reads,
            self._failing,
            self._queued_links,
            self._counters,
            clock,
            self._start_read,
            stale_limit=stale_limit,
            read_share=read_share,
        )

    # --- life cycle -----------------------------------------------------------------------

    def on_start(self) -> None:
        self._load_instruments()
        self._streams.start()

    def on_stop(self) -> None:
        self._streams.stop()
        self._executor.shutdown(wait=False, cancel_futures=True)
        waiting = [r for read in self._reads.values() for r in read.waiters] + self._views.parked()
        for request in waiting:
            request.reply.set(Unavailable(request.account, "the gateway stopped"))
        for job in self._jobs.drain():
            job.on_done(HttpFail(Failure.NOT_SENT, "the gateway stopped"))

    def _account_stale(self, account: str) -> None:
        """Its monitors are due at their tiers again at once (REST serves them)."""
        tell_upward(self._scheduler, AccountWentStale(account))

    def _deliver(self, event: StreamEvent) -> None:
        """On a stream's thread: hand the event to the mailbox (never raise into the library)."""
        with contextlib.suppress(pykka.ActorDeadError):
            self.actor_ref.tell(event)

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
            case GetPositionView():
                self._views.on_view(message)
            case GetAccountSnapshot():
                self._views.on_snapshot(message)
            case PlaceOrder() | AmendOrder() | CancelOrder() | CancelAll():
                self._on_command(message)
            case SendBatch():
                self._on_batch(message)
            case CheckAccess() | GetMarket() | SetLeverage():
                self._on_account_request(message)
            case GatewayTick():
                self._on_tick()
            case AttachScheduler(scheduler=scheduler):
                self._scheduler = scheduler
            case ReportStats():
                self._log_stats()
            case GetGatewayStats():
                answer = self._stats()
            case _:
                log.error("Gateway: unknown message %r", message)
        if self._jobs.changed or isinstance(message, GatewayTick):  # a job came, a worker came free, time passed
            self._pump()
        return answer

    def _on_account_request(self, request: CheckAccess | GetMarket | SetLeverage) -> None:
        if request.account not in self._caches:
            _account_requests.unknown_account(request)
            return
        match request:
            case CheckAccess():
                _account_requests.check_access(request, self._enqueue)
            case GetMarket():
                _account_requests.market(request, self._instruments.get(request.symbol), self._enqueue)
            case SetLeverage():
                _account_requests.set_leverage(request, self._enqueue)

    def _on_tick(self) -> None:
        now = self._clock.monotonic()
        if self._instruments.due(now):
            self._load_instruments()
        self._streams.tick(now)
        self._views.unpark(now)
        self._retry_failing(now)

    def _retry_failing(self, now: float) -> None:
        """A failing account is read again at its retry time even if no monitor asks (on pushes
        none may): its recovery is known, said and shown, not waited for until the next resync."""
        for account, failing in self._failing.items():
            if now >= failing.retry_at and not any(key.account == account for key in self._reads):
                self._start_read(account, failing.symbol, False)

    # --- queries --------------------------------------------------------------------------

    # --- reads ----------------------------------------------------------------------------

    def _start_read(
        self,
        account: str,
        symbol: str | None,
        with_closed: bool,
        closed_only: bool = False,
        resync: int | None = None,
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
        self._reads[read.key] = read
        self._read_page(read)
        return read

    def _read_page(self, read: Read) -> None:
        method, params = read.request()
        self._enqueue(
            read.account, method, params, Priority.READ, lambda result: self._on_page(read, result), read=read
        )

    def _on_page(self, read: Read, result: Result) -> None:
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
        del self._reads[read.key]
        cache = self._caches[read.account]
        now = self._clock.monotonic()
        differences: list[Difference] = []
        cache.apply_closed(list(closed))
        if read.closed_only:
            pass  # nothing but finished orders was read: the rest of the cache is as it was
        elif read.symbol is None:
            differences = cache.apply_full(positions, orders, read.started, read.started_ms, read.pages)
            self._counters.refreshed(now - read.started)
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
            self._views.answer(request, cache, throttled=read.throttled, closed=closed)

    def _read_failed(self, read: Read, reason: str) -> None:
        self._reads.pop(read.key, None)
        if read.resync:
            self._streams.resync_failed(read.account, reason, self._clock.monotonic())
        if read.closed_only:  # only the finished orders are missing: no reason to back off the account
            for request in read.waiters:
                self._views.answer(request, self._caches[read.account], stale=True)
            return
        now = self._clock.monotonic()
        failing = self._failing.get(read.account)
        if failing is None:
            failing = self._failing[read.account] = Failing(now, reason, Backoff(BACKOFF_START, BACKOFF_MAX))
        failing.reason, failing.symbol = reason, read.symbol
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
            self._views.answer_stale(request, cache, reason)
        if now - failing.since > self._stale_limit and read.account not in self._unreadable:
            self._unreadable.add(read.account)
            self._journal(read.account, "account_unreadable", seconds=round(now - failing.since), reason=reason[:120])

    def _journal(self, account: str, event: str, **payload: Any) -> None:
        entry = journal(self._clock.wall_ms(), account_subject(account), event, **payload)
        tell_upward(self._persistence, Record(account_subject(account), None, (entry,), critical=True))

    def _load_instruments(self, cursor: str | None = None) -> None:
        if cursor is None and not self._instruments.begin():
            return
        account = next(iter(self._caches))
        params = self._instruments.request(cursor)
        self._enqueue(account, "get_instruments_info", params, Priority.READ, self._on_instruments)

    def _on_instruments(self, result: Result) -> None:
        cursor = self._instruments.on_page(result, self._clock.monotonic())
        if cursor is not None:
            self._load_instruments(cursor)
        changed = self._instruments.take_changed()
        for account, cache in self._caches.items() if changed else ():  # R19: told at once, not at the next check
            self._wake_many(account, {key for key in cache.positions if key[0] in changed})

    # --- streams --------------------------------------------------------------------------

    def _start_resync(self, account: str, connection: int) -> bool:
        """A resync read of the account (for the streams), unless one is in flight."""
        if ReadKey(account, Scope.RESYNC) in self._reads:
            return False
        self._start_read(account, None, False, resync=connection)
        return True

    def _on_private_push(self, account: str, event: StreamEvent) -> None:
        kind = event.topic.split(".", 1)[0] or "unknown"
        self._counters.pushed(account, kind if kind in _formats.PRIVATE_TOPICS else "other")
        try:
            if event.reason:
                raise ModelError(event.reason)
            push = _formats.private_push(event.topic, event.data)
        except ModelError as exc:
            self._counters.push_rejected(account)
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
        self._views.unpark(now)

    def _wake_many(self, account: str, keys: set[tuple[str, int]]) -> None:
        for key in sorted(keys):
            self._counters.woke(account)
            tell_upward(self._scheduler, Wake(MonitorId(account, key[0], key[1])))

    # --- commands -------------------------------------------------------------------------

    def _on_command(self, command: OrderCommand) -> None:
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

    def _on_batch(self, batch: SendBatch) -> None:
        kinds = {type(c) for c in batch.commands}
        if (
            not batch.commands
            or len(batch.commands) > BATCH_LIMIT
            or len(kinds) != 1
            or kinds - set(_formats.BATCHES)
            or {c.account for c in batch.commands} != {batch.account}
        ):
            refusal = Rejected(0, f"a batch holds 1-{BATCH_LIMIT} commands of one kind for its account")
            batch.reply.set(tuple(refusal for _ in batch.commands))
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

    def _queue_links(self, commands: tuple[OrderCommand, ...]) -> None:
        self._queued_links |= {link for c in commands if (link := link_of(c))}

    def _batch_done(self, batch: SendBatch, result: Result) -> None:
        outcomes = _formats.batch_outcomes(result, len(batch.commands))
        for command, outcome in zip(batch.commands, outcomes, strict=False):
            self._patch_cache(command, outcome)
        batch.reply.set(tuple(outcomes))

    def _command_done(self, command: OrderCommand, outcome: Outcome) -> None:
        self._patch_cache(command, outcome)
        if isinstance(outcome, Unresolved):
            log.warning(
                "Gateway: %s %s %s is unresolved (%s); it will be settled from a fresh snapshot",
                command.account,
                type(command).__name__,
                link_of(command) or command.symbol,
                outcome.reason,
            )
        command.reply.set(outcome)

    def _patch_cache(self, command: OrderCommand, outcome: Outcome) -> None:
        self._queued_links.discard(link_of(command) or "")
        self._caches[command.account].apply_outcome(command, outcome, self._clock.monotonic(), self._clock.wall_ms())

    # --- the HTTP jobs --------------------------------------------------------------------

    def _enqueue(
        self,
        account: str,
        method: str,
        params: dict[str, Any],
        priority: Priority,
        on_done: Callable[[Result], None],
        *,
        units: int = 1,
        read: Read | None = None,
    ) -> None:
        self._jobs.add(account, method, params, priority, on_done, self._clock.monotonic(), units=units, read=read)

    def _pump(self) -> None:
        """Send every queued job the limiter and the worker share allow; answer the refused ones
        (whose answers may queue more jobs: released in the same pump)."""
        while True:
            released = self._jobs.release(self._clock.monotonic())
            for job in released.sent:
                self._counters.request(job.account, job.endpoint, trail=job.priority is Priority.TRAIL)
                self._executor.submit(self._run, job)
            for job, refusal in released.refused:
                job.on_done(refusal)
            for account, waits in self._jobs.take_trail_waits().items():
                self._metrics.trail_waits.labels(account).inc(waits)
            if not released.refused:
                return

    def _run(self, job: Job) -> None:
        """On a worker thread: the request, then its result back to the actor as a message."""
        started = self._clock.monotonic()
        result = self._transport.call(job.account, job.method, job.params)
        with contextlib.suppress(pykka.ActorDeadError):
            self.actor_ref.tell(_Done(job.id, result, started, self._clock.monotonic()))

    def _on_done(self, done: _Done) -> None:
        job = self._jobs.finished(done.job_id)
        if job is None:
            return
        result = done.result
        now = self._clock.monotonic()
        headers = result.headers or {}
        self._limiter.answered(job.account, job.endpoint, done.started, done.answered, job.units)
        self._limiter.observe(
            job.account, job.endpoint, now, headers.get("X-Bapi-Limit"), headers.get("X-Bapi-Limit-Status")
        )
        if isinstance(result, HttpFail):
            self._counters.failed(job.account, result.kind, result.code)
            if result.code == RetCode.TOO_MANY_VISITS:
                self._counters.throttled(job.account)
                self._limiter.block(job.account, job.endpoint, now + self._reset_in(headers))
            if result.kind is Failure.HTTP and result.code == 403:
                self._counters.ip_banned()
                self._limiter.ban(now + IP_BAN_SECONDS)
                log.error(
                    "Gateway: the exchange banned this IP (HTTP 403); nothing is sent for %.0f minutes",
                    IP_BAN_SECONDS / 60,
                )
        job.on_done(result)

    def _reset_in(self, headers: Mapping[str, str]) -> float:
        try:
            reset_ms = int(headers.get("X-Bapi-Limit-Reset-Timestamp", ""))
        except (TypeError, ValueError):
            return 2.0  # pybit's own default when the header is missing
        return min(10.0, max(0.05, (reset_ms - self._clock.wall_ms()) / 1000))

    # --- stats ----------------------------------------------------------------------------

    def _stats(self) -> GatewayStats:
        counters, now = self._counters, self._clock.monotonic()
        return GatewayStats(
            calls=counters.calls_by_account(),
            errors=counters.errors_by_account(),
            cache_hits=counters.hits,
            cache_misses=counters.misses,
            refreshes=counters.refreshes,
            refresh_seconds=tuple(counters.refresh_seconds),
            pool_in_use=self._jobs.in_use,
            pool_size=self._pool_size,
            limiter_waits=self._limiter.waits,
            rate_limited_10006=counters.rate_limited,
            banned_403=counters.banned,
            stale_accounts=tuple(sorted(self._failing)),
            streams_healthy=self._streams.healthy_accounts(now),
            pushes=counters.pushes,
            rejected_pushes=counters.rejected_pushes,
            missed_pushes=self._streams.missed,
            wakes=counters.wakes,
            stream_connects=self._streams.connects(),
        )

    def _log_stats(self) -> None:
        hits, misses, by_endpoint = self._counters.since_last_report()
        total = hits + misses
        log.info(
            "Gateway: hit rate %.1f%% (%d/%d), API calls %d in 60s (%s), refresh p50 %.2fs, pool %d/%d, "
            "stale %s, streams %s, pushes %d",
            100.0 * hits / total if total else 100.0,
            hits,
            total,
            sum(by_endpoint.values()),
            ", ".join(f"{e} {n}" for e, n in by_endpoint.most_common()) or "none",
            self._counters.refresh_p50(),
            self._jobs.in_use,
            self._pool_size,
            ", ".join(sorted(self._failing)) or "none",
            self._streams.describe(self._clock.monotonic()),
            self._counters.pushes,
        )
