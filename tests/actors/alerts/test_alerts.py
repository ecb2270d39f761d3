"""Alerts: which events become which messages (pure), the Notifier delivering through real Apprise
to a loopback receiver, and Persistence queuing them with the events they report."""

from __future__ import annotations

import sqlite3
from decimal import Decimal

import pytest

from actors.alerts._alert_rules import AlertRules, compose
from actors.alerts.notifier import Channel, Notifier
from actors.asks import ask_with_reply, journal, record
from actors.storage import open_store
from actors.storage.persistence import Persistence
from messages.models import MonitorId
from messages.notifier import AlertsQueued, Drain, NotifierTick, QueuedAlert
from messages.persistence import DAEMON, AlertsSent, AttachNotifier, Record, account_subject
from runtime.clock import FakeClock
from tests.e2e.harness import wait_until
from tests.factory import closing_factory
from tests.stubs.receiver import Receiver
from tests.stubs.recorder import Recorder, recorded

BTC, ETH = MonitorId("main", "BTCUSDT"), MonitorId("mirror", "ETHUSDT")
TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


def entry(monitor, event, **payload):
    return journal(1_700_000_000_000, monitor, event, **payload)


@pytest.mark.parametrize(
    "event, payload, title, words",
    [
        (
            "entry_filled",
            {"side": "Buy", "level_filled": 2, "qty": "0.033", "price": "64000", "size": "0.066"},
            "MAIN BTCUSDT Buy: ENTRY FILLED",
            ["0.033", "64000", "0.066"],
        ),
        (
            "tp_filled",
            {
                "side": "Buy",
                "level_filled": 1,
                "qty": "0.085",
                "price": "65650",
                "remaining": "0.015",
                "realised_pnl": Decimal("55.125"),
            },
            "MAIN BTCUSDT Buy: TP1 FILLED",
            ["0.085", "65650", "+55.13 USDT"],
        ),
        (
            "breakeven",
            {"side": "Buy", "trigger": "64557.4", "qty": "0.015"},
            "MAIN BTCUSDT Buy: STOP AT BREAKEVEN",
            ["64557.4", "0.015"],
        ),
        ("stop_hit", {"side": "Buy", "realised_pnl": "-20.5"}, "MAIN BTCUSDT Buy: STOP HIT", ["-20.50 USDT"]),
        (
            "position_closed",
            {"side": "Buy", "reason": "take_profits", "realised_pnl": "70", "duration_s": 7260, "tps_hit": 4, "tps": 4},
            "MAIN BTCUSDT Buy: POSITION CLOSED (take_profits)",
            ["+70.00 USDT", "2h 1m", "4/4"],
        ),
        ("emergency_close", {"side": "Sell", "qty": "0.1"}, "MAIN BTCUSDT Sell: EMERGENCY CLOSE", ["0.1", "market"]),
        ("unprotected", {"side": "Buy", "size": "0.1", "seconds": 3}, "MAIN BTCUSDT Buy: UNPROTECTED", ["0.1", "3s"]),
        ("entry_refused", {"side": "Buy", "code": 110007}, "MAIN BTCUSDT Buy: ENTRY REFUSED", ["110007", "nothing"]),
    ],
)
def test_each_trade_event_names_account_symbol_and_side(event, payload, title, words):
    alert = AlertRules().alert_for(entry(BTC, event, **payload))
    assert alert.title == title and alert.account == "main" and alert.kind == event
    assert all(word in alert.body for word in words), alert.body


def test_account_and_daemon_events_and_what_is_not_an_alert():
    rules = AlertRules()
    assert (
        rules.alert_for(entry(account_subject("mirror"), "account_unreadable", seconds=95, reason="http 503")).title
        == "MIRROR: ACCOUNT UNREADABLE"
    )
    assert rules.alert_for(entry(account_subject("main"), "account_readable")).title == "MAIN: ACCOUNT READABLE AGAIN"
    started = rules.alert_for(entry(DAEMON, "daemon_started", monitors=64, accounts=["main", "mirror"]))
    assert started.title == "GUARDIAN STARTED" and "64 positions on main, mirror" in started.body
    assert rules.alert_for(entry(BTC, "command_settled", action="place")) is None
    assert rules.alert_for(entry(BTC, "tp_filled", side="Buy", level_filled=2, before_watch=True)) is None
    assert rules.alert_for(entry(BTC, "position_closed", side="Buy", reason="entry_refused")) is None


def test_mirror_alerts_can_be_silenced():
    event = entry(ETH, "stop_hit", side="Sell", realised_pnl="-3")
    assert AlertRules().alert_for(event).title == "MIRROR ETHUSDT Sell: STOP HIT"
    assert AlertRules(frozenset({"mirror"})).alert_for(event) is None
    assert AlertRules(frozenset({"mirror"})).alert_for(entry(BTC, "stop_hit", side="Buy")) is not None


def queued(n: int, time_ms: int = 1_700_000_000_000, start: int = 1) -> list[QueuedAlert]:
    return [
        QueuedAlert(i, time_ms, "main", "tp_filled", f"MAIN S{i}USDT Buy: TP1 FILLED", f"fill {i}")
        for i in range(start, start + n)
    ]


def test_a_burst_becomes_a_few_listing_messages_and_old_alerts_one_digest():
    waiting = queued(30)
    first = compose(waiting, 1_700_000_001_000, 3_600_000)
    assert first.ids == tuple(range(1, 21)) and first.title == "20 alerts" and first.body.count("\n") == 19
    assert compose(waiting[20:], 1_700_000_001_000, 3_600_000).ids == tuple(range(21, 31))
    single = compose(waiting[:1], 1_700_000_001_000, 3_600_000)
    assert (single.title, single.body) == ("MAIN S1USDT Buy: TP1 FILLED", "fill 1")
    old = queued(50, time_ms=1_700_000_000_000) + queued(2, time_ms=1_700_007_000_000, start=51)
    digest = compose(old, 1_700_007_200_000, 3_600_000)
    assert digest.ids == tuple(range(1, 51)) and digest.title.startswith("Digest: 50 alerts delayed since")
    assert digest.body.splitlines()[-1].startswith("... and 10 more")


def test_a_telegram_url_is_accepted_without_any_network_and_never_shown_whole():
    channel = Channel(f"tgram://{TOKEN}/987654321")
    assert channel.name.startswith("tgram://") and TOKEN not in channel.name
    with pytest.raises(ValueError):
        Channel("nonsense://x")


class Rig:
    def __init__(self, receivers: int = 1):
        self.receivers = [Receiver() for _ in range(receivers)]
        self.clock = FakeClock()
        self.persistence = Recorder.start()
        self.notifier = Notifier.start(
            [Channel(r.url) for r in self.receivers], self.persistence, self.clock, max_age_s=3600
        )

    def queue(self, alerts: list[QueuedAlert]) -> None:
        self.notifier.tell(AlertsQueued(tuple(alerts)))

    def tick(self, seconds: float = 0.25) -> None:
        self.notifier.tell(NotifierTick(self.clock.advance(seconds)))

    def sent_ids(self) -> list[int]:
        return [i for m in recorded(self.persistence) if isinstance(m, AlertsSent) for i in m.ids]

    def until_sent(self, count: int, what: str, timeout: float = 15) -> None:
        """SchedulerTick (fake time) until `count` alerts were marked sent."""

        def done():
            self.tick()
            return len(self.sent_ids()) >= count

        wait_until(done, timeout, what, interval=0.05)

    def close(self) -> None:
        self.notifier.stop()
        self.persistence.stop()
        for receiver in self.receivers:
            receiver.close()


@pytest.fixture
def rig():
    with closing_factory(Rig) as make:
        yield make


def test_alerts_arrive_in_order_and_are_marked_sent(rig):
    r = rig()
    for alert in queued(3):
        r.queue([alert])
        r.until_sent(alert.id, f"alert {alert.id}")
    assert r.receivers[0].titles() == [f"MAIN S{i}USDT Buy: TP1 FILLED" for i in (1, 2, 3)]
    assert r.sent_ids() == [1, 2, 3]


def test_a_burst_stays_within_one_message_a_second(rig):
    r = rig()
    r.queue(queued(30))
    started = r.clock.monotonic()
    r.until_sent(30, "the burst")
    assert r.receivers[0].titles() == ["20 alerts", "10 alerts"]
    assert r.clock.monotonic() - started >= 1.0  # the second message waited its turn


def test_a_failing_service_is_retried_with_backoff_and_nothing_is_lost(rig, caplog):
    r = rig(receivers=2)
    r.receivers[0].mode = "fail"
    r.queue(queued(2))
    wait_until(lambda: (r.tick(), r.receivers[0].attempts >= 1)[1], 10, "a failed attempt", interval=0.05)
    wait_until(lambda: any("failed; retrying" in x.getMessage() for x in caplog.records), 10, "the warning")
    assert r.sent_ids() == [] and len(r.receivers[1].received()) == 1  # the healthy URL got it once
    r.receivers[0].mode = "ok"
    r.until_sent(2, "delivery after the outage", timeout=30)
    assert [m["title"] for m in r.receivers[0].received()] == ["2 alerts"]
    assert len(r.receivers[1].received()) == 1  # not sent twice to the healthy URL
    assert not any(TOKEN in x.getMessage() for x in caplog.records)


def test_a_hanging_service_never_blocks_the_notifiers_mailbox(rig):
    r = rig()
    r.receivers[0].mode = "hang"
    r.queue(queued(1))
    wait_until(lambda: (r.tick(), r.receivers[0].attempts >= 1)[1], 10, "the send to hang", interval=0.05)
    r.queue(queued(1, start=2))
    # Answered at once while the send hangs on the worker: both alerts still wait.
    assert ask_with_reply(r.notifier, lambda reply: Drain(r.clock.monotonic(), reply=reply), 2) == 2
    r.receivers[0].mode = "ok"
    r.receivers[0].release.set()
    r.until_sent(2, "delivery after the hang", timeout=60)
    assert r.sent_ids() == [1, 2]


def test_persistence_queues_an_alert_in_the_same_commit_as_its_event(tmp_path):
    path = tmp_path / "state.db"
    store, states, _ = open_store(path)
    notifier = Recorder.start()
    persistence = Persistence.start(store, states, FakeClock(), alerts=AlertRules())
    persistence.tell(AttachNotifier(notifier))
    record(
        persistence,
        Record(
            BTC,
            {"n": 1},
            (
                journal(1, BTC, "tp_filled", side="Buy", level_filled=1, qty="0.1", price="65000", remaining="0.2"),
                journal(1, BTC, "command_settled", action="place"),
            ),
            critical=True,
        ),
    )
    connection = sqlite3.connect(path)
    rows = connection.execute("SELECT title, sent_ms FROM alerts").fetchall()
    connection.close()
    assert rows == [("MAIN BTCUSDT Buy: TP1 FILLED", None)]  # committed when record() returned
    handed = wait_until(lambda: [m for m in recorded(notifier) if isinstance(m, AlertsQueued)], 5, "the hand-off")
    persistence.tell(AlertsSent(tuple(a.id for a in handed[0].alerts)))
    persistence.stop()
    notifier.stop()
    store, _, _ = open_store(path)
    assert store.unsent_alerts() == ()
    store.close()


def test_without_alert_urls_nothing_is_queued(tmp_path):
    store, states, _ = open_store(tmp_path / "state.db")
    persistence = Persistence.start(store, states, FakeClock())
    record(persistence, Record(BTC, None, (journal(1, BTC, "stop_hit", side="Buy"),), critical=True))
    persistence.stop()
    store, _, _ = open_store(tmp_path / "state.db")
    assert store.unsent_alerts() == ()
    store.close()


@pytest.mark.slow  # a real daemon process, or seconds of real time
def test_alert_urls_never_reach_a_log_line(tmp_path):
    import os
    import subprocess
    import sys

    from tests.test_processes import MAIN, clean_env

    env = clean_env(
        ALERT_URLS=f"tgram://{TOKEN}/987654321,json://127.0.0.1:9/{TOKEN}x",
        STATE_PATH=str(tmp_path / "s.db"),
        LOG_LEVEL="DEBUG",
    )
    result = subprocess.run(
        [sys.executable, MAIN, "--duration", "2", "--positions", "2"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert TOKEN not in result.stderr + result.stdout
    assert os.path.exists(tmp_path / "s.db")
    connection = sqlite3.connect(tmp_path / "s.db")
    stored = b"".join(bytes(str(row), "utf-8") for row in connection.execute("SELECT * FROM alerts"))
    stored += b"".join(bytes(str(row), "utf-8") for row in connection.execute("SELECT * FROM events"))
    connection.close()
    assert TOKEN.encode() not in stored


def test_alerts_test_sends_one_message_per_url_and_says_how_each_went(tmp_path):
    import subprocess
    import sys

    from tests.test_processes import MAIN, clean_env

    good, bad = Receiver(), Receiver()
    bad.mode = "fail"
    try:
        run = lambda urls: subprocess.run(
            [sys.executable, MAIN, "alerts", "test"],
            cwd=tmp_path,
            env=clean_env(ALERT_URLS=urls),
            capture_output=True,
            text=True,
            timeout=60,
        )
        ok = run(good.url)
        both = run(f"{good.url},{bad.url}")
        unset = run("")
    finally:
        good.close()
        bad.close()
    assert ok.returncode == 0 and ok.stdout.strip().endswith(": sent") and len(ok.stdout.splitlines()) == 1
    assert [m["title"] for m in good.received()] == ["TP/SL guardian: test alert"] * 2
    assert both.returncode == 1
    assert [line.rsplit(": ", 1)[1] for line in both.stdout.splitlines()] == [
        "sent",
        "failed (the service refused it or did not answer)",
    ]
    assert unset.returncode == 1 and "ALERT_URLS is not set" in unset.stderr
