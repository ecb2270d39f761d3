"""The Supervisor with stub actors around it: start-up reconciliation (resume, adopt, gone,
dropped) and discovery (new positions, orphaned orders), one row per case."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pykka
import pytest

from actors.position.rules import MonitorState, Phase, RulesConfig, state_to_dict
from actors.supervision.supervisor import Supervisor
from messages.gateway import AccountSnapshot, GetAccountSnapshot, GetPositionView, PositionView
from messages.models import Approach, MonitorId, Order, Plan, Position, Urgency
from messages.monitor import GetMonitorState
from messages.persistence import LoadedState, LoadState, Record
from messages.scheduler import RegisterMonitor, UnregisterMonitor, Wake
from messages.supervisor import GetSupervisorReport, MonitorRetired, StartSupervision, SupervisorTick
from runtime.clock import FakeClock
from tests.stubs.recorder import Recorder, recorded

INTERVALS = {"critical": 2.0, "active": 5.0, "standard": 12.0, "inactive": 30.0, "idle": 60.0}
BTC, ETH = MonitorId("main", "BTCUSDT"), MonitorId("main", "ETHUSDT")


def position(monitor: MonitorId, side: str = "Buy", size: str = "1") -> Position:
    row = {"symbol": monitor.symbol, "side": side, "size": size, "avgPrice": "100", "positionIdx": 0}
    return Position.from_v5({**row, "side": side if size != "0" else ""})


def our_stop(monitor: MonitorId, position_id: str = "p1") -> Order:
    return Order.from_v5(
        {
            "orderId": f"o-{monitor.symbol}",
            "orderLinkId": f"tg-{position_id}-S0-0",
            "symbol": monitor.symbol,
            "side": "Sell",
            "orderType": "Market",
            "orderStatus": "Untriggered",
            "qty": "1",
            "triggerPrice": "90",
            "reduceOnly": True,
            "positionIdx": 0,
        }
    )


def stored(monitor: MonitorId, side: str = "Buy", urgency: Urgency = Urgency.ACTIVE) -> dict[str, Any]:
    plan = Plan(Approach.ADOPTED, side, (Decimal(100),), (Decimal(110),), Decimal(90))
    state = MonitorState(monitor, "p1", plan, Phase.MONITORING, 0, last_size=Decimal(1), urgency=urgency)
    return state_to_dict(state)


def snapshot(positions: tuple[Position, ...] = (), orders: tuple[Order, ...] = ()) -> AccountSnapshot:
    return AccountSnapshot("main", positions, orders, taken_ms=0, age=0.0, snapshot_id=1)


class StoredStates(pykka.ThreadingActor):
    """Persistence that has these states stored, and acknowledges every record."""

    def __init__(self, states: dict[MonitorId, dict[str, Any]]):
        super().__init__()
        self.states = states

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, LoadState):
            return LoadedState(dict(self.states), {})
        if isinstance(message, Record) and message.reply is not None:
            message.reply.set(True)
        return None


class Snapshots(pykka.ThreadingActor):
    """A gateway that answers every account snapshot with the one it was given, and a position's
    view with that position's row in it."""

    def __init__(self, answer: AccountSnapshot):
        super().__init__()
        self.answer = answer

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, GetAccountSnapshot):
            message.reply.set(self.answer)
        elif isinstance(message, GetPositionView):
            key = (message.symbol, message.position_idx)
            row = next((p for p in self.answer.positions if (p.symbol, p.position_idx) == key), None)
            message.reply.set(
                PositionView(message.account, message.symbol, message.position_idx, row, (), None, 0, 0.0, 1)
            )
        return None


class Rig:
    def __init__(self, states: dict[MonitorId, dict[str, Any]], gateway_snapshot: AccountSnapshot | None = None):
        self.clock = FakeClock()
        self.scheduler = Recorder.start()
        self.gateway = Snapshots.start(gateway_snapshot or snapshot())
        self.persistence = StoredStates.start(states)
        self.supervisor = Supervisor.start(
            gateway=self.gateway,
            persistence=self.persistence,
            clock=self.clock,
            accounts=("main",),
            intervals=INTERVALS,
            config=RulesConfig(),
            discovery_interval=15.0,
        )

    def start(self, live: AccountSnapshot) -> int:
        count: int = self.supervisor.ask(StartSupervision(self.scheduler, {"main": live}), timeout=5)
        return count

    def registered(self) -> dict[MonitorId, RegisterMonitor]:
        return {m.monitor: m for m in recorded(self.scheduler) if isinstance(m, RegisterMonitor)}

    def started_with(self, monitor: MonitorId) -> MonitorState | None:
        state: MonitorState | None = self.registered()[monitor].ref.ask(GetMonitorState(), timeout=5)
        return state

    def stop(self) -> None:
        self.supervisor.stop()
        for ref in (self.scheduler, self.gateway, self.persistence):
            ref.stop()


@pytest.fixture
def make() -> Iterator[Any]:
    rigs: list[Rig] = []

    def build(*args: Any, **kw: Any) -> Rig:
        rigs.append(Rig(*args, **kw))
        return rigs[-1]

    yield build
    for rig in rigs:
        rig.stop()


@pytest.mark.parametrize(
    ("case", "states", "live", "expected"),
    [
        # expected: monitor -> "resumed" (from its stored state) or "adopted" (no state: adopts the position)
        ("same side: resumed", {BTC: stored(BTC)}, (position(BTC),), {BTC: "resumed"}),
        ("no state: adopted", {}, (position(BTC),), {BTC: "adopted"}),
        ("position gone: resumed to confirm and clean up", {BTC: stored(BTC)}, (), {BTC: "resumed"}),
        ("flipped while down: dropped, the new side adopted", {BTC: stored(BTC, "Sell")}, (position(BTC),),
         {BTC: "adopted"}),
        ("unreadable state: dropped, the position adopted", {BTC: {"monitor": "main:BTCUSDT:0"}}, (position(BTC),),
         {BTC: "adopted"}),
        ("unreadable state of a gone position: nothing", {BTC: {"monitor": "main:BTCUSDT:0"}}, (), {}),
        ("an account not guarded: its state untouched", {MonitorId("mirror", "BTCUSDT"): stored(BTC)}, (), {}),
        ("a flat row is no position", {}, (position(BTC, size="0"),), {}),
        ("several at once", {BTC: stored(BTC)}, (position(BTC), position(ETH, "Sell")),
         {BTC: "resumed", ETH: "adopted"}),
    ],
)  # fmt: skip
def test_start_up_reconciliation(make, case, states, live, expected):
    rig = make(states)
    assert rig.start(snapshot(live)) == len(expected), case
    registered = rig.registered()
    assert set(registered) == set(expected), case
    for monitor, how in expected.items():
        state = rig.started_with(monitor)
        if how == "resumed":
            assert state is not None and state.position_id == "p1", case
            assert registered[monitor].urgency is Urgency.ACTIVE, case  # its stored tier
        else:
            assert state is None, case  # it adopts at its first check
            assert registered[monitor].urgency is Urgency.CRITICAL, case


@pytest.mark.parametrize(
    ("case", "later", "expected"),
    [
        ("a position opened by hand", snapshot((position(BTC), position(ETH))), {ETH}),
        ("the daemon's orders on a flat position nobody guards", snapshot((position(BTC),), (our_stop(ETH),)), {ETH}),
        ("the daemon's orders on a guarded position", snapshot((position(BTC),), (our_stop(BTC),)), set()),
        ("a stale snapshot proves nothing", AccountSnapshot("main", (position(ETH),), (), 0, 0.0, 2, stale=True),
         set()),
    ],
)  # fmt: skip
def test_discovery_starts_monitors_for_what_nobody_guards(make, case, later, expected):
    rig = make({}, gateway_snapshot=later)
    rig.start(snapshot((position(BTC),)))
    started = rig.clock.monotonic()
    rig.supervisor.ask(SupervisorTick(started + 14.0), timeout=5)
    assert set(rig.registered()) == {BTC}, case  # not before the discovery interval
    rig.supervisor.ask(SupervisorTick(started + 15.0), timeout=5)
    assert set(rig.registered()) == {BTC} | expected, case


def test_a_retired_monitor_is_unregistered_by_the_supervisor_that_registered_it(make):
    rig = make({})
    rig.start(snapshot())
    rig.supervisor.tell(MonitorRetired(BTC, "take_profits"))
    report = rig.supervisor.ask(GetSupervisorReport(), timeout=5)
    assert report.retired == 1 and report.retired_reasons == {"take_profits": 1}
    assert recorded(rig.scheduler) == [UnregisterMonitor(BTC)]  # its key is flat: nothing to adopt


def test_a_position_opened_on_a_retired_monitors_key_is_adopted_at_once(make):
    """The old monitor retired after the re-entry's push had found it still there: the key is
    looked at once more, and the new position's monitor starts and is checked without waiting."""
    rig = make({}, snapshot((position(BTC),)))
    rig.start(snapshot())
    rig.supervisor.tell(MonitorRetired(BTC, "manual"))
    rig.supervisor.ask(GetSupervisorReport(), timeout=5)
    told = recorded(rig.scheduler)
    assert told[0] == UnregisterMonitor(BTC)
    assert [type(m).__name__ for m in told[1:]] == ["RegisterMonitor", "Wake"] and told[2] == Wake(BTC)
