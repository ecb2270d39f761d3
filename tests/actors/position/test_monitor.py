"""Monitor actors wired to a stub gateway (the simulator's exchange engine in-process), a stub
persistence and recording scheduler and supervisor."""

from __future__ import annotations

import logging
from decimal import Decimal

import pykka
import pytest

from actors.position.monitor import Monitor
from actors.position.rules import RulesConfig
from messages.gateway import AmendOrder, CancelOrder, PlaceOrder, Rejected, Unresolved
from messages.models import MonitorId, OrderLink, Role, Urgency
from messages.monitor import Check, GetMonitorState
from messages.scheduler import Checked, UnregisterMonitor
from messages.supervisor import MonitorRetired
from runtime.clock import FakeClock
from simulator import Simulator
from tests.stubs.book import open_conservative
from tests.stubs.gateway import Script, StubGateway, recorded_commands
from tests.stubs.persistence import StubPersistence, records
from tests.stubs.recorder import Recorder, recorded

INTERVALS = {"critical": 2.0, "active": 5.0, "standard": 12.0, "inactive": 30.0, "idle": 60.0}
D = Decimal


class Rig:
    def __init__(self, accounts=("main",), entries_filled=1, dry_run=False, ask_timeout=5.0, config=None):
        self.sim = Simulator(seed=1, symbols=4)
        self.ex = self.sim.exchange
        self.ex.set_price("BTCUSDT", D("65000"))
        for account in accounts:
            open_conservative(
                self.ex,
                account,
                "BTCUSDT",
                "Buy",
                D("0.100") if account == "main" else D("0.050"),
                position_id=f"p{account}",
                entries_filled=entries_filled,
            )
        self.ledger: list = []
        self.gateway = StubGateway.start(self.ex, self.ledger)
        self.persistence = StubPersistence.start(self.ledger)
        self.scheduler = Recorder.start()
        self.supervisor = Recorder.start()
        self.clock = FakeClock()
        self.monitors = {
            account: Monitor.start(
                MonitorId(account, "BTCUSDT"),
                gateway=self.gateway,
                persistence=self.persistence,
                scheduler=self.scheduler,
                supervisor=self.supervisor,
                clock=self.clock,
                intervals=INTERVALS,
                config=config or RulesConfig(),
                dry_run=dry_run,
                ask_timeout=ask_timeout,
            )
            for account in accounts
        }
        self.seq = 0

    def check(self, account="main") -> Checked | None:
        """One check, waited for: answered with Checked, or the monitor retired."""
        self.seq += 1
        self.clock.advance(2.0)
        monitor = self.monitors[account]
        monitor.tell(Check(self.clock.monotonic(), self.seq))
        try:
            monitor.ask(GetMonitorState(), timeout=10)  # answered after the Check was handled
        except pykka.ActorDeadError:
            return None
        answers = [m for m in recorded(self.scheduler) if isinstance(m, Checked) and m.seq == self.seq]
        return answers[0] if answers else None

    def link(self, role: str, level: int, generation: int = 0, account: str = "main") -> str:
        return OrderLink(f"p{account}", Role(role), level, generation).build()

    def order(self, link_id: str, account: str = "main"):
        return self.ex.accounts[account].by_link[link_id]

    def price(self, value: str) -> None:
        self.ex.set_price("BTCUSDT", D(value))


@pytest.fixture
def rig():
    made = []

    def make(**kw) -> Rig:
        made.append(Rig(**kw))
        return made[-1]

    return make


def test_a_whole_conservative_life(rig, caplog):
    caplog.set_level(logging.INFO)
    r = rig()
    first = r.check()
    assert first.urgency is Urgency.CRITICAL  # just started: a change less than a minute ago
    r.ex.fill_order(r.ex.accounts["main"], r.link("E", 2))
    r.check()
    assert r.order(r.link("T", 1)).qty == D("0.170")
    r.ex.fill_order(r.ex.accounts["main"], r.link("E", 3))
    r.check()
    assert r.order(r.link("T", 1)).qty == D("0.255")
    r.price("65700")  # TP1
    r.check()
    stop = r.order(r.link("S", 0))
    assert stop.trigger_price == D("64557.4") and stop.qty == D("0.045")
    for price in ("66350", "67000"):  # TP2, TP3
        r.price(price)
        r.check()
        assert r.order(r.link("S", 0)).qty == r.ex.accounts["main"].positions["BTCUSDT"].size
    r.price("67650")  # TP4: closed
    assert r.check() is None  # retired instead of answering
    assert MonitorRetired(MonitorId("main", "BTCUSDT"), "take_profits") in recorded(r.supervisor)
    # Retirement is announced once, to the supervisor, which owns the scheduler's registration.
    assert not [m for m in recorded(r.scheduler) if isinstance(m, UnregisterMonitor)]
    assert not r.ex.accounts["main"].open_by_symbol  # nothing left behind
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "actors.position._check_cycle"]
    for prefix in ("MONITOR STARTED", "PHASE", "TP1 FILLED", "BREAKEVEN", "TP2 FILLED", "CLOSED", "MONITOR RETIRED"):
        assert any(line.startswith(prefix) for line in lines), prefix
    assert records(r.persistence)[-1].retire


def test_a_reserved_order_link_id_is_durable_before_its_command_is_sent(rig):
    r = rig(entries_filled=3)
    r.check()
    r.ex.cancel_order(r.ex.accounts["main"], {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": r.link("S", 0)})
    r.check()
    ledger = r.ledger
    place = next(i for i, (kind, m) in enumerate(ledger) if kind == "command" and isinstance(m, PlaceOrder))
    assert ledger[place][1].link_id == r.link("S", 0, 1)
    before = [m for kind, m in ledger[:place] if kind == "record" and m.critical]
    assert before and before[-1].state["generations"]["S0"] == 1
    assert before[-1].reply is not None  # and it was acknowledged, not just sent


def test_stop_moves_are_sent_before_take_profit_changes(rig):
    r = rig(entries_filled=1)
    r.check()
    r.price("65700")
    r.check()
    sent = list(recorded_commands(r.gateway))
    assert isinstance(sent[0], AmendOrder) and sent[0].link_id == r.link("S", 0)


def test_take_profit_resizes_go_as_one_batch_and_the_stop_alone(rig):
    """A batch has its own write budget: the ladder's resizes ride it and leave the single endpoint
    to the stops (an entry fill grows the position: every take-profit is resized)."""
    r = rig(entries_filled=1)
    r.check()
    r.ex.fill_order(r.ex.accounts["main"], r.link("E", 2))
    r.check()
    batches = [m for kind, m in r.ledger if kind == "batch"]
    assert len(batches) == 1 and [c.link_id for c in batches[0].commands] == [r.link("T", n) for n in (1, 2, 3, 4)]
    assert all(isinstance(c, AmendOrder) for c in batches[0].commands)
    assert r.order(r.link("T", 1)).qty == D("0.170")
    stop = r.link("S", 0)
    loss_side = r.order(stop).trigger_price
    r.price("65700")  # TP1: the stop moves to breakeven, alone
    r.check()
    assert [m.link_id for kind, m in r.ledger if kind == "command"].count(stop) == 1
    assert all(c.link_id != stop for kind, m in r.ledger if kind == "batch" for c in m.commands)
    assert r.order(stop).trigger_price > loss_side


def test_an_unresolved_command_makes_the_monitor_critical(rig):
    r = rig(entries_filled=3)
    r.check()
    r.ex.cancel_order(r.ex.accounts["main"], {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": r.link("S", 0)})
    r.gateway.tell(Script("outcome", link_prefix=r.link("S", 0, 1), outcome=Unresolved("timeout"), apply=True))
    answer = r.check()
    assert answer.urgency is Urgency.CRITICAL
    r.check()
    places = [m for m in recorded_commands(r.gateway) if isinstance(m, PlaceOrder)]
    assert [m.link_id for m in places] == [r.link("S", 0, 1)]  # found, not sent again


def test_a_mirror_failure_leaves_the_main_monitor_unchanged(rig):
    r = rig(accounts=("main", "mirror"), entries_filled=3)
    r.gateway.tell(Script("unavailable", account="mirror", count=100))
    r.gateway.tell(Script("outcome", link_prefix="tg-pmirror", outcome=Rejected(10016, "System error"), count=100))
    for account in ("main", "mirror"):
        r.check(account)
    r.price("65700")  # TP1 fills on both accounts
    main_answer = r.check("main")
    mirror_answer = r.check("mirror")
    assert r.order(r.link("S", 0)).trigger_price == D("64557.4")
    assert mirror_answer is not None and r.order(r.link("S", 0, account="mirror"), "mirror").trigger_price != D(
        "64557.4"
    )
    assert all(m.account == "main" for m in recorded_commands(r.gateway))
    assert main_answer.urgency in (Urgency.CRITICAL, Urgency.ACTIVE)


def test_dry_run_logs_commands_and_sends_none(rig, caplog):
    caplog.set_level(logging.INFO)
    r = rig(entries_filled=3, dry_run=True)
    r.check()
    r.ex.cancel_order(r.ex.accounts["main"], {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": r.link("S", 0)})
    r.check()
    assert recorded_commands(r.gateway) == []
    assert any(rec.getMessage().startswith("DRY-RUN would place tg-pmain-S0-1") for rec in caplog.records)


def test_a_silent_gateway_costs_one_timeout_and_changes_nothing(rig):
    r = rig(ask_timeout=0.3)

    class Silent(pykka.ThreadingActor):
        def on_receive(self, message):
            return None

    silent = Silent.start()
    monitor = Monitor.start(
        MonitorId("mirror", "ETHUSDT"),
        gateway=silent,
        persistence=r.persistence,
        scheduler=r.scheduler,
        supervisor=r.supervisor,
        clock=r.clock,
        intervals=INTERVALS,
        config=RulesConfig(),
        ask_timeout=0.3,
    )
    monitor.tell(Check(0.0, 999))
    monitor.ask(GetMonitorState(), timeout=5)
    answers = [m for m in recorded(r.scheduler) if isinstance(m, Checked) and m.seq == 999]
    assert len(answers) == 1 and answers[0].urgency is Urgency.CRITICAL


def test_unknown_message_is_logged_as_an_error(rig, caplog):
    r = rig()
    r.monitors["main"].ask("nonsense", timeout=5)
    assert any(rec.levelno == logging.ERROR and "unknown message" in rec.getMessage() for rec in caplog.records)


def test_a_group_of_outcomes_is_one_critical_record_not_one_per_outcome(rig):
    """Closing a position cancels its leftovers as one batch; settling that batch costs one
    acknowledged commit, however many orders it held."""
    r = rig(entries_filled=1)
    r.check()
    position = r.ex.accounts["main"].positions["BTCUSDT"]
    r.sim.place("main", symbol="BTCUSDT", side="Sell", orderType="Market", qty=str(position.size))  # closed by hand
    r.check()  # flat once: wait for a second snapshot
    before = len(records(r.persistence))
    assert r.check() is None  # confirmed: leftovers cancelled, retired
    batches = [m for m in recorded_commands(r.gateway) if isinstance(m, CancelOrder)]
    settled = [rec for rec in records(r.persistence)[before:] if any(e.event == "command_settled" for e in rec.events)]
    assert len(batches) >= 3  # two entry limits and the stop (the exchange cancelled the TPs)
    assert len(settled) == 1 and len([e for e in settled[0].events if e.event == "command_settled"]) == len(batches)


def test_hooks_are_injected_and_the_monitor_reaches_after_send(rig):
    r = rig(entries_filled=3)
    reached: list[str] = []

    class Recording:
        def reached(self, point: str) -> None:
            reached.append(point)

    monitor = Monitor.start(
        MonitorId("main", "BTCUSDT"),
        gateway=r.gateway,
        persistence=r.persistence,
        scheduler=r.scheduler,
        supervisor=r.supervisor,
        clock=r.clock,
        intervals=INTERVALS,
        config=RulesConfig(),
        hooks=Recording(),
    )
    r.ex.cancel_order(r.ex.accounts["main"], {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": r.link("S", 0)})
    monitor.tell(Check(0.0, 1))
    monitor.ask(GetMonitorState(), timeout=10)
    assert "after_send" in reached


def test_a_monitor_that_acts_on_prices_asks_for_them_and_one_that_does_not_never_does(rig):
    """The gateway keeps a symbol's ticker subscribed only for monitors that act on prices (R14)."""
    plain, trailing = rig(), rig(config=RulesConfig(trail_activate="profit:50"))
    for r in (plain, trailing):
        r.check()
        r.check()
    asked = [[m.prices for kind, m in r.ledger if kind == "view"] for r in (plain, trailing)]
    assert asked[0] and not any(asked[0])
    assert asked[1][-1]  # once adopted, waiting for a profit to start trailing: live prices


def test_importing_the_monitor_does_not_import_the_exchange_client():
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys, actors.position, actors.supervision, actors.scheduling, actors.storage; "
        "print(sorted(m for m in sys.modules if m.startswith('pybit')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[3],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
