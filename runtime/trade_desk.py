"""The trader's commands inside the daemon: each request read and checked (actors/supervision/_trade_requests.py),
the market asked through the gateway, the plan handed to the Supervisor, and the outcome awaited
for the answer on a future the Supervisor sets (the trade opened, or its monitor retired). Runs on
the control socket's connection thread, never in an actor: it may wait without holding a mailbox.

Answers are `{"exit": 0|1|2, "lines": [...]}`: 2 for a request that cannot be carried out as
given (nothing sent), 1 for a refusal by the exchange or the daemon, 0 when done.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pykka

from actors.asks import Ref, ask_with_reply
from actors.position import MonitorState, RulesConfig
from actors.supervision import (
    CopyRule,
    TradeRequest,
    check_targets,
    describe,
    read_request,
    resolve_accounts,
    size_follower,
    size_open,
)
from messages.gateway import GetMarket, GetPositionView, Market, PositionView, Rejected, SetLeverage, Unresolved
from messages.models import Approach, MonitorId, Plan
from messages.monitor import ChangePlan, ClosePosition, GetMonitorState
from messages.supervisor import GetMonitors, Instruct, OpenTrade, TradeOutcome, TradeStarted

ENTRY_WAIT_S = 20.0  # for the first entry's fate before answering
CLOSE_WAIT_S = 20.0  # for a close to be cleaned up before answering


def answer(code: int, lines: list[str], **extra: Any) -> dict[str, Any]:
    return {"exit": code, "lines": lines, **extra}


class TradeDesk:
    def __init__(
        self, gateway: Ref, supervisor: Ref, roles: dict[str, CopyRule | None], config: RulesConfig, timeout: float
    ):
        """`roles`: every account of the daemon, None for a leader, else how it copies its leader."""
        self._gateway, self._supervisor = gateway, supervisor
        self._roles = roles
        self._config = config
        self._timeout = timeout

    def handle(self, data: Any) -> dict[str, Any]:
        request, problems = read_request(data, len(self._config.ladder_percents))
        if request is None:
            return answer(2, problems)
        if request.command == "list":
            return self._list()
        accounts, problems = resolve_accounts(request.account, self._roles)
        if problems:
            return answer(2, problems)
        try:
            if request.command == "open":
                return self._open(request, accounts)
            if request.command == "plan":
                return self._plans(request, accounts)
            return self._close(request, accounts)
        except pykka.Timeout:
            return answer(1, ["the daemon did not answer in time; check `trade list` before trying again"])
        except pykka.ActorDeadError:
            return answer(1, ["the daemon is stopping; check `trade list` once it runs again"])

    # --- asks -----------------------------------------------------------------------------

    def _ask(self, make: Any) -> Any:
        return ask_with_reply(self._gateway, make, self._timeout)

    def _view(self, account: str, symbol: str) -> PositionView | str:
        view = self._ask(lambda reply: GetPositionView(account, symbol, 0, 0.0, fresh=True, reply=reply))
        if not isinstance(view, PositionView) or view.stale:
            return f"{account}: cannot read {symbol} now ({getattr(view, 'reason', 'stale data')}); nothing was sent"
        return view

    def _monitors(self) -> dict[MonitorId, Any]:
        """The running monitors' refs."""
        monitors: dict[MonitorId, Any] = self._supervisor.ask(GetMonitors(), block=True, timeout=self._timeout)
        return monitors

    def _state(self, ref: Ref) -> MonitorState | None:
        try:
            state: MonitorState | None = ref.ask(GetMonitorState(), block=True, timeout=self._timeout)
            return state
        except pykka.ActorDeadError:
            return None

    # --- open -----------------------------------------------------------------------------

    def _open(self, request: TradeRequest, accounts: tuple[str, ...]) -> dict[str, Any]:
        """Leaders first, each follower sized from its leader's trade. A leader's problem refuses
        the whole request (nothing sent); a follower's refuses that follower alone, one line, and
        never undoes another account's trade."""
        running = self._monitors()
        markets: dict[str, Market] = {}
        plans: dict[str, Plan] = {}
        problems: list[str] = []  # the leaders': nothing is sent
        skipped: list[str] = []  # the followers', each alone
        for account in accounts:
            rule = self._roles[account]
            found = self._market(account, request.symbol, markets)
            if isinstance(found, str):
                if rule is None:
                    return answer(1, [found])
                skipped.append(found)
                continue
            plan, lines = self._size(request, account, rule, markets, plans)
            busy = self._busy(account, request.symbol, found, running)
            lines = lines or busy
            (problems if rule is None else skipped).extend(lines)
            if plan is not None and not lines:
                plans[account] = plan
        if problems or not plans:  # a leader's problem is the request's: its followers' lines add nothing
            return answer(2, list(dict.fromkeys(problems or skipped)))
        if request.dry_run:
            return answer(
                0,
                [f"{a}: would open {request.symbol}: {describe(p)}" for a, p in plans.items()]
                + [f"{line}; not opened" for line in skipped]
                + ["dry run: nothing was sent"],
            )
        done: dict[str, tuple[str, int]] = {}
        for leads in (True, False):  # the leaders' entries, then every follower's at once
            wave = {a: p for a, p in plans.items() if (self._roles[a] is None) == leads}
            for account in list(wave):
                rule = self._roles[account]
                if rule is not None and done.get(rule.leader, ("", 0))[1]:
                    done[account] = (f"{account}: not opened, because {rule.leader} was not", 1)
                    del wave[account]
            done.update(self._open_wave(request, wave))
        code = max([1 if skipped else 0, *(refused for _, refused in done.values())])
        return answer(code, [done[a][0] for a in plans] + [f"{line}; not opened" for line in skipped])

    def _market(self, account: str, symbol: str, markets: dict[str, Market]) -> Market | str:
        """The account's market for `symbol` (asked once per request), or why not."""
        if account not in markets:
            market = self._ask(lambda reply: GetMarket(account, symbol, reply=reply))
            if not isinstance(market, Market):
                return f"{account}: cannot read the market now ({market.reason}); nothing was sent"
            markets[account] = market
        return markets[account]

    def _size(
        self,
        request: TradeRequest,
        account: str,
        rule: CopyRule | None,
        markets: dict[str, Market],
        plans: dict[str, Plan],
    ) -> tuple[Plan | None, list[str]]:
        """A leader's plan from the request; a follower's from its leader's (sized here, without
        opening anything, when the leader is not part of this request)."""
        if rule is None:
            return size_open(request, account, markets[account], self._config)
        leader_market = self._market(rule.leader, request.symbol, markets)
        if isinstance(leader_market, str):
            return None, [leader_market]
        leader_plan = plans.get(rule.leader)
        if leader_plan is None:
            leader_plan, problems = size_open(request, rule.leader, leader_market, self._config)
            if leader_plan is None:
                return None, [f"{account}: not sized, its leader's trade is refused: {p}" for p in problems]
        return size_follower(request, account, rule, markets[account], leader_plan, leader_market, self._config)

    def _busy(self, account: str, symbol: str, market: Market, running: dict[MonitorId, Any]) -> list[str]:
        """Why `open` cannot go on `account` now: a position there, or the daemon at work on it."""
        if market.instrument is None:
            return []
        view = self._view(account, symbol)
        if isinstance(view, str):
            return [view]
        if view.position is not None:
            held = f"{view.position.side} {view.position.size}"
            return [f"{account}: {symbol} already has a position ({held}); `trade plan` gives it targets"]
        if MonitorId(account, symbol) in running:
            return [f"{account}: {symbol} is being opened or closed by the daemon"]
        return []

    def _open_wave(self, request: TradeRequest, plans: dict[str, Plan]) -> dict[str, tuple[str, int]]:
        """Open on every account of `plans` together: each one's leverage asked and its trade
        handed to the Supervisor before any entry is awaited, so their entries go out within a
        round trip of each other. Each account's line, and 1 when it was refused."""
        done: dict[str, tuple[str, int]] = {}
        leverage: dict[str, pykka.ThreadingFuture[Any]] = {}
        if request.leverage is not None:
            for account in plans:
                leverage[account] = pykka.ThreadingFuture()
                self._gateway.tell(SetLeverage(account, request.symbol, request.leverage, reply=leverage[account]))
        entries: dict[str, tuple[TradeStarted, pykka.ThreadingFuture[TradeOutcome]]] = {}
        for account, plan in plans.items():
            if account in leverage:
                answered = leverage[account].get(timeout=self._timeout)
                if isinstance(answered, (Rejected, Unresolved)):
                    detail = (
                        f"{answered.code} {answered.message}" if isinstance(answered, Rejected) else answered.reason
                    )
                    done[account] = (
                        f"{account}: Bybit refused leverage {request.leverage}: {detail}; nothing was opened",
                        1,
                    )
                    continue
            future: pykka.ThreadingFuture[TradeOutcome] = pykka.ThreadingFuture()
            started = self._supervisor.ask(
                OpenTrade(MonitorId(account, request.symbol), plan, outcome=future), timeout=self._timeout
            )
            if not isinstance(started, TradeStarted):
                done[account] = (f"{account}: {started}", 1)
                continue
            entries[account] = (started, future)
        deadline = time.monotonic() + ENTRY_WAIT_S
        for account, (started, future) in entries.items():
            done[account] = self._entry_line(request, account, plans[account], started, future, deadline)
        return done

    @staticmethod
    def _entry_line(
        request: TradeRequest,
        account: str,
        plan: Plan,
        started: TradeStarted,
        future: pykka.ThreadingFuture[TradeOutcome],
        deadline: float,
    ) -> tuple[str, int]:
        try:
            outcome = future.get(timeout=max(0.0, deadline - time.monotonic()))
        except pykka.Timeout:
            return (
                f"{account}: the entry was sent and is not confirmed yet (position {started.position_id}); "
                "the daemon keeps at it: see `trade list`"
            ), 0
        if outcome.reason == "opened":
            return (
                f"{account}: opened {request.symbol} {plan.side} {outcome.size} "
                f"(position {started.position_id}), guarded: {describe(plan)}"
            ), 0
        if outcome.reason == "entry_refused":
            return f"{account}: Bybit refused the entry: {outcome.detail}; nothing was opened", 1
        return f"{account}: {request.symbol} closed at once ({outcome.reason})", 1

    # --- plan, close, list ----------------------------------------------------------------

    def _plans(self, request: TradeRequest, accounts: tuple[str, ...]) -> dict[str, Any]:
        """`plan` on each account in turn; the worst exit code, every account's lines."""
        code, lines = 0, []
        for account in accounts:
            done = self._plan(request, account)
            code = max(code, done["exit"])
            lines += done["lines"]
        return answer(code, lines)

    def _plan(self, request: TradeRequest, account: str) -> dict[str, Any]:
        view = self._view(account, request.symbol)
        if isinstance(view, str):
            return answer(1, [view])
        if view.instrument is None:
            return answer(2, [f"SYMBOL {request.symbol}: Bybit lists no such linear contract"])
        if view.position is None:
            return answer(2, [f"{account}: {request.symbol} has no open position (`trade open` opens one)"])
        tps, stop, problems = check_targets(request, view.position, view.instrument)
        if problems:
            return answer(2, problems)
        why_not: str = ask_with_reply(
            self._supervisor,
            lambda reply: Instruct(
                MonitorId(account, request.symbol), ChangePlan(tps, stop, request.exits(), reply=reply)
            ),
            self._timeout,
        )
        if why_not:
            return answer(1, [f"{account}: {request.symbol}: {why_not}"])
        return answer(
            0,
            [
                (
                    f"{account}: {request.symbol} now targets take-profits {', '.join(map(str, tps))} "
                    f"and stop {stop}; its monitor moves its orders now"
                )
            ],
        )

    def _close(self, request: TradeRequest, accounts: tuple[str, ...]) -> dict[str, Any]:
        lines, code, closing = [], 0, {}
        for account in accounts:
            monitor = MonitorId(account, request.symbol)
            view = self._view(account, request.symbol)
            if isinstance(view, str):
                lines.append(view)
                code = 1
                continue
            if view.position is None and monitor not in self._monitors():
                lines.append(f"{account}: {request.symbol} has no open position")
                code = code or 2
                continue
            future: pykka.ThreadingFuture[TradeOutcome] = pykka.ThreadingFuture()
            why_not: str = ask_with_reply(
                self._supervisor,
                lambda reply: Instruct(monitor, ClosePosition(reply=reply), outcome=future),  # noqa: B023 (called at once)
                self._timeout,
            )
            if why_not:
                lines.append(f"{account}: {request.symbol}: {why_not}")
                code = 1
            else:
                closing[account] = future
        deadline = time.monotonic() + CLOSE_WAIT_S
        for account, future in closing.items():
            try:
                outcome = future.get(timeout=max(0.0, deadline - time.monotonic()))
                lines.append(f"{account}: {request.symbol} closed ({outcome.reason}); no order left")
            except pykka.Timeout:
                lines.append(f"{account}: {request.symbol} is closing; the daemon finishes it")
        return answer(code, lines)

    def _list(self) -> dict[str, Any]:
        plans: list[dict[str, Any]] = []
        for monitor, ref in sorted(self._monitors().items()):
            state = self._state(ref)
            if state is None or state.plan.approach is Approach.ADOPTED:
                continue
            plans.append(
                {
                    "account": monitor.account,
                    "symbol": monitor.symbol,
                    "position_id": state.position_id,
                    "approach": state.plan.approach,
                    "side": state.plan.side,
                    "phase": state.phase,
                    "size": str(state.last_size),
                    "tps": [str(p) for p in state.plan.tp_prices],
                    "stop": str(state.plan.stop_price),
                    "target": str(sum(state.plan.legs, Decimal(0))),
                    "stop_after": state.plan.stop_ladder,
                    "trigger_by": state.plan.triggers_on,
                    "time_limit_seconds": state.plan.time_limit_seconds,
                    "trail_after": state.plan.trail_after or "off",
                    "trail_percent": str(state.plan.trail_percent or ""),
                }
            )
        width = max((len(p["account"]) for p in plans), default=0)  # account names up to 32 characters
        lines = [
            f"{p['account']:{width}} {p['symbol']:12} {p['approach']:12} {p['side']:4} {p['phase']:13}"
            f" size {p['size']:>10}  TPs {', '.join(p['tps'])}  stop {p['stop']}  stop after TPs: {p['stop_after']}"
            f"  trigger {p['trigger_by']}"
            + (f"  time limit {p['time_limit_seconds'] / 60:g} min" if p["time_limit_seconds"] else "")
            + (f"  trailing {p['trail_percent']} % from {p['trail_after']}" if p["trail_after"] != "off" else "")
            for p in plans
        ]
        return answer(0, lines or ["no plans: every guarded position is adopted"], plans=plans)
