"""Start and stop the actor system in order.

Start: persistence, gateway, key check (live), first snapshots of every account (retried with
backoff until they succeed or a stop is asked for: never trade on guesses), supervisor and
scheduler (the supervisor reconciles and registers monitors with the scheduler), ticker.
Stop: upstream first (ticker, monitors, supervisor, scheduler, gateway), the final persistence flush
last; any actor still alive after that is a bug.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import threading
import time
from functools import partial
from typing import Any

import orjson
import pykka

from actors.alerts import AlertRules, Channel, Notifier
from actors.asks import Ref, ask_with_reply, journal, record
from actors.exchange import BybitTransport, ExchangeGateway
from actors.position import Monitor, RulesConfig
from actors.scheduling import STREAM_CONCURRENCY, Scheduler
from actors.storage import Persistence, open_read_only, open_store
from actors.supervision import CopyRule, Supervisor
from messages.gateway import (
    Access,
    AccountSnapshot,
    AttachScheduler,
    CheckAccess,
    GatewayTick,
    GetAccountSnapshot,
    GetGatewayStats,
    ReportStats,
)
from messages.notifier import Drain, NotifierTick
from messages.persistence import DAEMON, AttachNotifier, GetPersistenceStats, PersistenceTick, Record
from messages.scheduler import GetSchedule, SchedulerTick, StopDispatching
from messages.supervisor import GetSupervisorReport, StartSupervision, StopMonitors, SupervisorTick
from runtime.backoff import Backoff
from runtime.clock import Clock, SystemClock
from runtime.control import ControlServer, SocketInUse, socket_path
from runtime.hooks import Hooks
from runtime.hooks import from_environment as hooks_from_environment
from runtime.metrics import Metrics
from runtime.stats import percentile
from runtime.ticker import Every, Ticker
from runtime.trade_desk import TradeDesk, answer
from settings import Account, Settings

log = logging.getLogger(__name__)

SNAPSHOT_BACKOFF_START, SNAPSHOT_BACKOFF_MAX = 1.0, 30.0
ALERT_DRAIN_S = 5.0
# On pushes a quiet monitor is woken by every change (a push, a resync's difference): its timer
# check is a safety net only, every 10 resyncs (10 minutes by default), spread per monitor.
QUIET_RESYNCS = 10
# Pooled connections (and HTTP workers) per account at least: each account may hold only its
# share of the pool, and with one worker a burst of an account's writes (a breakeven, the
# take-profits' resizes, a symbol read) goes one round trip after another. At 50 accounts of 40
# positions one shared pool of 10 made TP1 -> breakeven p95 21 s (docs/benchmarks.md).
WORKERS_PER_ACCOUNT = 3


def copy_rule(account: Account | None) -> CopyRule | None:
    """How a follower copies its leader's trades; None for a leader."""
    if account is None or account.leader is None:
        return None
    return CopyRule(account.leader, account.sizing, account.ratio)


class StartupError(Exception):
    """The daemon must not start (e.g. a read-only key); the message says why."""


class System:
    def __init__(
        self,
        settings: Settings,
        accounts: dict[str, tuple[str, str]],
        base_url: str,
        *,
        streams: tuple[str, str] | None = None,
        hosts: dict[str, tuple[str, str]] | None = None,
        clock: Clock | None = None,
        dry_run: bool = False,
        check_access: bool = True,
        hooks: Hooks | None = None,
        metrics: Metrics | None = None,
        channels: tuple[Channel, ...] = (),
    ):
        """`streams`: the private and public stream URLs (None: REST polling only); `channels`: one
        per alert URL (main.py builds them from ALERT_URLS); none: no alerts; `hosts`: the REST
        and private stream URLs of accounts on another host than `base_url` (demo beside real)."""
        self.streams = streams
        self.hosts = hosts or {}
        # Each account's role for the trader's commands, and whether it is alerted; the demo's
        # mirror is the mirror variables' one; an account the settings do not name (a test's) leads.
        known = {a.name: a for a in settings.replace(enable_mirror_trading=True).accounts()}
        self.roles = {name: copy_rule(known.get(name)) for name in accounts}
        self.silenced = frozenset(name for name in accounts if name in known and not known[name].alerts)
        self.settings = settings
        self.channels = channels
        self.hooks = hooks if hooks is not None else hooks_from_environment(os.environ)  # ValueError: bad spec
        self.accounts = accounts
        self.base_url = base_url
        self.clock = clock or SystemClock()
        self.metrics = metrics or Metrics(self.clock, accounts, float(settings.stale_limit_seconds))
        self.dry_run = dry_run
        self.check_access = check_access
        self.persistence: Ref | None = None
        self.gateway: Ref | None = None
        self.supervisor: Ref | None = None
        self.scheduler: Ref | None = None
        self.notifier: Ref | None = None
        self.ticker: Ticker | None = None
        self.control: ControlServer | None = None
        self.desk: TradeDesk | None = None
        self.notifier_ticker: Ticker | None = None
        self.started_at = time.monotonic()
        self.first_snapshots_s: float | None = None  # start to every account read once

    # --- start ----------------------------------------------------------------------------

    def start(self, stop: threading.Event) -> bool:
        """Start everything; False when a stop was asked for before the first snapshots came."""
        s = self.settings
        try:  # first: a second daemon on the same state must not start at all
            self.control = ControlServer(socket_path(s.state_path), self._trade).start()
        except SocketInUse as exc:
            raise StartupError(str(exc)) from None
        store, states, moved = open_store(s.state_path)  # StateError: refuse to start
        channels = list(self.channels)
        unsent = store.unsent_alerts()
        self.persistence = Persistence.start(
            store,
            states,
            self.clock,
            flush_interval=float(s.flush_interval_seconds),
            moved_aside=str(moved) if moved else None,
            hooks=self.hooks,
            metrics=self.metrics,
            alerts=AlertRules(self.silenced) if channels else None,
        )
        if channels:
            self.notifier = Notifier.start(
                channels,
                self.persistence,
                self.clock,
                unsent=unsent,
                max_age_s=float(s.alert_max_age_seconds),
                metrics=self.metrics,
            )
            self.persistence.tell(AttachNotifier(self.notifier))
            self.notifier_ticker = Ticker(self.clock, [Every(0.25, self.notifier, NotifierTick)]).start()
        private_url, public_url = self.streams or (None, None)
        transport = BybitTransport(
            self.accounts,
            self.base_url,
            pool_size=max(s.http_pool_size, WORKERS_PER_ACCOUNT * len(self.accounts)),
            timeout=float(s.http_timeout_seconds),
            recv_window=s.recv_window_ms,
            ws_private=private_url,
            ws_public=public_url,
            hosts=self.hosts,
        )
        self.gateway = ExchangeGateway.start(
            transport,
            self.clock,
            stale_limit=float(s.stale_limit_seconds),
            metrics=self.metrics,
            persistence=self.persistence,
            heartbeat=float(s.stream_heartbeat_seconds),
            resync_every=float(s.resync_seconds),
            instruments_every=float(s.instruments_refresh_seconds),
            trail_share=float(s.trail_write_share),
            ip_share=float(s.ip_budget_share),
        )
        self.ticker = Ticker(self.clock, [Every(0.05, self.gateway, GatewayTick)]).start()
        if self.check_access and not self._check_access(stop):
            return False
        snapshots = self._first_snapshots(stop)
        if snapshots is None:
            return False
        intervals = s.intervals()
        self.supervisor = Supervisor.start(
            gateway=self.gateway,
            persistence=self.persistence,
            clock=self.clock,
            accounts=tuple(self.accounts),
            intervals=intervals,
            config=RulesConfig.from_settings(s),
            dry_run=self.dry_run,
            snapshot_max_age=float(s.cache_ttl_seconds),
            ask_timeout=float(s.http_timeout_seconds) + 5,
            hooks=self.hooks,
            metrics=self.metrics,
        )
        self.scheduler = Scheduler.start(
            self.clock,
            intervals,
            self.supervisor,
            metrics=self.metrics,
            **(
                {"concurrency": STREAM_CONCURRENCY, "quiet_interval": QUIET_RESYNCS * float(s.resync_seconds)}
                if self.streams
                else {}
            ),
        )
        self.gateway.tell(AttachScheduler(self.scheduler))
        monitors = self.supervisor.ask(StartSupervision(self.scheduler, snapshots), timeout=60)
        self.desk = TradeDesk(
            self.gateway,
            self.supervisor,
            self.roles,
            RulesConfig.from_settings(s),
            float(s.http_timeout_seconds) + 5,
        )
        self._journal("daemon_started", monitors=monitors, accounts=list(self.accounts))
        self.ticker.add(Every(0.25, self.scheduler, SchedulerTick))
        self.ticker.add(Every(float(s.flush_interval_seconds), self.persistence, PersistenceTick))
        self.ticker.add(Every(1.0, self.supervisor, SupervisorTick))
        self.ticker.add(Every(60.0, self.gateway, ReportStats))
        log.info("Guarding %s%s", ", ".join(self.accounts), " (DRY-RUN: no order is sent)" if self.dry_run else "")
        return True

    def _trade(self, request: Any) -> dict[str, Any]:
        """The trader's channel: served once every monitor has been started."""
        desk = self.desk
        return desk.handle(request) if desk is not None else answer(1, ["the daemon is still starting; try again"])

    def _check_access(self, stop: threading.Event) -> bool:
        """Refuse to start on a definite no (a wrong or read-only key); wait out transient
        failures (maintenance, timeouts) with backoff. False when a stop was asked for."""
        backoff = Backoff(SNAPSHOT_BACKOFF_START, SNAPSHOT_BACKOFF_MAX)
        gateway = self.gateway
        assert gateway is not None, "the key check runs once the gateway is started"
        for account in self.accounts:
            while True:
                try:
                    access = ask_with_reply(gateway, partial(CheckAccess, account), 60)
                except pykka.Timeout:
                    access = Access(account, False, False, "no answer in time", transient=True)
                if access.ok or not access.transient:
                    break
                delay = backoff.next()
                log.warning(
                    "Start-up: cannot check the %s key yet (%s); retrying in %.0fs", account, access.message, delay
                )
                if stop.wait(delay):
                    return False
            if not access.ok:
                raise StartupError(f"the {account} account's API key does not work: {access.message}")
            if not access.can_trade and not self.dry_run:
                raise StartupError(
                    f"the {account} account's API key cannot trade ({access.message}); "
                    "give it Contract - Orders and Positions permission, or run with --dry-run"
                )
        return True

    def _first_snapshots(self, stop: threading.Event) -> dict[str, AccountSnapshot] | None:
        snapshots: dict[str, AccountSnapshot] = {}
        backoff = Backoff(SNAPSHOT_BACKOFF_START, SNAPSHOT_BACKOFF_MAX)
        while not stop.is_set():
            delay = backoff.next()
            for account in self.accounts:
                if account in snapshots:
                    continue
                assert self.gateway is not None, "snapshots are read once the gateway is started"
                try:
                    answer = ask_with_reply(
                        self.gateway,
                        partial(GetAccountSnapshot, account, 0.0),
                        float(self.settings.http_timeout_seconds) * 4,
                    )
                except pykka.Timeout:
                    answer = "no answer in time"
                if isinstance(answer, AccountSnapshot) and not answer.stale:
                    snapshots[account] = answer
                    log.info(
                        "Start-up: %s has %d open positions and %d open orders",
                        account,
                        len(answer.positions),
                        len(answer.orders),
                    )
                else:
                    log.warning(
                        "Start-up: cannot read %s yet (%s); retrying in %.0fs; nothing is traded until "
                        "every account has been read",
                        account,
                        getattr(answer, "reason", answer),
                        delay,
                    )
            if len(snapshots) == len(self.accounts):
                self.first_snapshots_s = time.monotonic() - self.started_at
                return snapshots
            stop.wait(delay)  # the main thread idles here, still answering signals
        return None

    # --- stop -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Upstream first, so nothing is told to an actor already gone: no more ticks; the
        scheduler told to dispatch nothing more (ticks, pushes' wakes); the monitors stopped,
        each after its check, while the scheduler they report to still listens; then the
        supervisor, the scheduler, the gateway and persistence (its final flush last)."""
        if self.control is not None:
            self.control.stop()  # no new trades while stopping
        self.desk = None
        if self.ticker is not None:
            self.ticker.stop()
        for ref, message in ((self.scheduler, StopDispatching()), (self.supervisor, StopMonitors())):
            if ref is not None:
                try:
                    ref.ask(message, timeout=30)
                except (pykka.Timeout, pykka.ActorDeadError):
                    log.warning("Stopping: %s did not answer in time", message)
        if self.supervisor is not None:  # it started: the trader is told it stops
            self._journal("daemon_stopped")
        self._drain_alerts()
        for name in ("supervisor", "scheduler", "gateway", "notifier", "persistence"):
            if name == "persistence":
                self._wait_for_monitors()  # a monitor still finishing a check records with it
            ref = getattr(self, name)
            if ref is not None:
                try:
                    ref.stop(block=True, timeout=10)
                except pykka.Timeout:
                    log.error("%s did not stop within 10 s", name)
        leftovers = pykka.ActorRegistry.get_all()
        for ref in leftovers:
            log.error("Bug: actor %s still alive after stop; stopping it", ref)
        pykka.ActorRegistry.stop_all(block=True, timeout=5)

    @staticmethod
    def _wait_for_monitors(timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        for ref in pykka.ActorRegistry.get_by_class(Monitor):
            ref.actor_stopped.wait(max(0.0, deadline - time.monotonic()))

    def _journal(self, event: str, **payload: Any) -> None:
        entry = journal(self.clock.wall_ms(), DAEMON, event, **payload)
        if self.persistence is None:
            return
        try:
            record(self.persistence, Record(DAEMON, None, (entry,), critical=True), timeout=10)
        except (pykka.Timeout, pykka.ActorDeadError):
            log.warning("The %s event was not recorded in time", event)

    def _drain_alerts(self) -> None:
        """Give waiting alerts (the stop's own included) a few seconds to go out; the rest stay
        in the outbox for the next start."""
        if self.notifier is None:
            return
        with contextlib.suppress(pykka.Timeout, pykka.ActorDeadError):
            ask_with_reply(
                self.notifier,
                lambda reply: Drain(self.clock.monotonic() + ALERT_DRAIN_S, reply=reply),
                ALERT_DRAIN_S + 5,
            )
        if self.notifier_ticker is not None:
            self.notifier_ticker.stop()

    # --- the run's figures ----------------------------------------------------------------

    def collect(self) -> dict[str, Any]:
        """Live figures; call before stop()."""
        figures: dict[str, Any] = {}
        for key, ref, message in (
            ("gateway", self.gateway, GetGatewayStats()),
            ("schedule", self.scheduler, GetSchedule()),
            ("supervisor", self.supervisor, GetSupervisorReport()),
            ("persistence", self.persistence, GetPersistenceStats()),
        ):
            if ref is not None:
                with contextlib.suppress(pykka.Timeout, pykka.ActorDeadError):
                    figures[key] = ref.ask(message, timeout=10)
        return figures

    def summary(self, figures: dict[str, Any], simulator_stats: dict | None = None) -> dict[str, Any]:
        duration = time.monotonic() - self.started_at
        out: dict[str, Any] = {
            "duration_s": round(duration, 3),
            "dry_run": self.dry_run,
            "first_snapshots_s": None if self.first_snapshots_s is None else round(self.first_snapshots_s, 2),
        }
        gateway, schedule = figures.get("gateway"), figures.get("schedule")
        supervisor, persistence = figures.get("supervisor"), figures.get("persistence")
        if supervisor:
            out["monitors"] = {
                "peak": supervisor.peak,
                "started": supervisor.started,
                "retired": supervisor.retired,
                "restarts": supervisor.restarts,
                "open_at_exit": supervisor.monitors,
                "retired_reasons": supervisor.retired_reasons,
            }
        if schedule:
            waves = list(schedule.wave_seconds)
            out["checks"] = schedule.checks
            out["late_checks"] = schedule.late_checks
            durations = list(schedule.check_seconds)
            out["check_seconds"] = {
                "p50": percentile(durations, 0.5),
                "p95": percentile(durations, 0.95),
                "max": max(durations, default=0.0),
            }
            out["waves"] = {
                "count": schedule.waves,
                "seconds_p50": percentile(waves, 0.5),
                "seconds_p95": percentile(waves, 0.95),
                "seconds_max": max(waves, default=0.0),
            }
        if gateway:
            by_endpoint: dict[str, int] = {}
            for calls in gateway.calls.values():
                for endpoint, n in calls.items():
                    by_endpoint[endpoint] = by_endpoint.get(endpoint, 0) + n
            total = sum(by_endpoint.values())
            lookups = gateway.cache_hits + gateway.cache_misses
            out["api_calls"] = {
                "total": total,
                "by_endpoint": by_endpoint,
                "by_account": gateway.calls,
                "per_minute": round(total * 60 / duration, 1) if duration else 0.0,
            }
            out["cache"] = {
                "hits": gateway.cache_hits,
                "misses": gateway.cache_misses,
                "hit_rate": round(gateway.cache_hits / lookups, 4) if lookups else 1.0,
            }
            out["rate_limit_answers"] = {"10006": gateway.rate_limited_10006, "403": gateway.banned_403}
            out["errors"] = gateway.errors
            out["streams"] = {
                "healthy_at_exit": list(gateway.streams_healthy),
                "pushes": gateway.pushes,
                "rejected": gateway.rejected_pushes,
                "missed": gateway.missed_pushes,
                "wakes": gateway.wakes,
                "connects": gateway.stream_connects,
            }
        if persistence:
            out["persistence"] = {
                "critical_commits": persistence.critical_commits,
                "batched_flushes": persistence.batched_flushes,
                "rows_written": persistence.rows_written,
                "commit_ms_p99": persistence.commit_ms_p99,
            }
        out.update(self._journal_figures())
        usage = resource.getrusage(resource.RUSAGE_SELF)
        out["process"] = {
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        }
        if simulator_stats is not None:
            out["simulator"] = simulator_stats
        return out

    def _journal_figures(self) -> dict[str, Any]:
        try:
            store = open_read_only(self.settings.state_path)
        except Exception:
            return {}
        try:
            rows = store.connection.execute("SELECT event, payload FROM events").fetchall()
        finally:
            store.close()
        events: dict[str, int] = {}
        reactions = []
        for event, payload in rows:
            events[event] = events.get(event, 0) + 1
            if event == "breakeven":
                value = orjson.loads(payload).get("reaction_ms")
                if isinstance(value, (int, float)):
                    reactions.append(float(value))
        return {
            "events": events,
            "tp1_to_breakeven_ms": {
                "count": len(reactions),
                "p50": percentile(reactions, 0.5),
                "p95": percentile(reactions, 0.95),
                "max": max(reactions, default=0.0),
            },
        }
