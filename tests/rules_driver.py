"""The daemon's own check cycle (actors/position/_check_cycle.py) driven synchronously over the simulator's
exchange engine in-process: used by the rule scenarios and the property tests, so they prove the
code the Monitor actor runs, batching, follow-ups and the immediate re-read included."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from actors.position import CheckCycle, command_message
from actors.position.rules import Command, Event, MonitorState, RulesConfig
from messages.models import MonitorId, Urgency
from messages.persistence import JournalEntry
from runtime.clock import FakeClock
from simulator.exchange import Exchange
from tests.stubs.book import apply, view_of

INTERVALS = dict(zip(Urgency, (2.0, 5.0, 12.0, 30.0, 60.0), strict=False))


class Driver:
    """Knobs: `override(command) -> outcome | None` answers a command instead of the exchange;
    `check(stale=True)` answers the views of that check stale. Keeps every command sent, every
    event and every record (`records`: (critical, retire, journal entries))."""

    def __init__(
        self,
        exchange: Exchange,
        monitor: MonitorId,
        config: RulesConfig | None = None,
        state: MonitorState | None = None,
        inherited: frozenset[str] = frozenset(),
    ):
        self.exchange, self.monitor = exchange, monitor
        self.config = config or RulesConfig()
        self.clock = FakeClock()
        self.snapshot = 0
        self.sent: list[Command] = []
        self.events: list[Event] = []
        self.records: list[tuple[bool, bool, tuple[JournalEntry, ...]]] = []
        self.requests = 0
        self.override: Callable[[Command], Any] | None = None
        self._stale = False
        self.cycle = CheckCycle(monitor, self, self.clock, INTERVALS, self.config, state=state, inherited=inherited)

    @property
    def state(self) -> MonitorState | None:
        return self.cycle.state

    @state.setter
    def state(self, value: MonitorState | None) -> None:
        self.cycle.state = value

    @property
    def now_ms(self) -> int:
        return self.clock.wall_ms()

    def check(self, stale: bool = False, advance_ms: int = 2_000) -> tuple[list[Command], list[Event]]:
        self.clock.advance(advance_ms / 1000)
        self._stale = stale
        result = self.last_result = self.cycle.run()
        self.sent += result.sent
        self.events += result.events
        return list(result.sent), list(result.events)

    # --- CycleIO over the exchange engine -----------------------------------------------------

    def view(self, max_age: float, closed_for: frozenset[str] | None = None, fresh: bool = False):
        self.snapshot += 1
        return view_of(
            self.exchange,
            self.monitor.account,
            self.monitor.symbol,
            self.snapshot,
            include_closed=closed_for is not None,
            stale=self._stale,
            taken_ms=self.now_ms,
        )

    def send(self, group: list[Command]) -> list[Any]:
        self.requests += 1
        return [self.outcome(command) for command in group]

    def outcome(self, command: Command) -> Any:
        """The override's answer, else the exchange's."""
        outcome = self.override(command) if self.override else None
        if outcome is None:
            outcome = apply(
                self.exchange, self.monitor.account, self.monitor.symbol, command_message(self.monitor, command)
            )
        return outcome

    def save(self, state: dict | None, entries: tuple[JournalEntry, ...], *, critical: bool, retire: bool) -> None:
        self.records.append((critical, retire, entries))
