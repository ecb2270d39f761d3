"""A stub ExchangeGateway: a real Pykka actor answering views and commands from the simulator's
exchange engine in-process. Knobs: answer the next views stale or unavailable, answer the next
commands for a link-id prefix with a given outcome (Rejected, Unresolved), and record every
command."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pykka

from messages.gateway import (
    AmendOrder,
    CancelOrder,
    GetPositionView,
    PlaceOrder,
    Rejected,
    SendBatch,
    Unavailable,
    Unresolved,
)
from simulator.exchange import Exchange
from tests.stubs.book import apply, view_of


@dataclass(frozen=True)
class Script:
    """Answer the next `count` views or commands matching this script instead of the exchange."""

    kind: str  # "stale", "unavailable" (views) or "outcome" (commands)
    account: str | None = None
    link_prefix: str = ""
    outcome: Any = None
    count: int = 1
    apply: bool = False  # for Unresolved: apply the command anyway (a lost answer)


class GetRecord:
    pass


class StubGateway(pykka.ThreadingActor):
    def __init__(self, exchange: Exchange, ledger: list | None = None):
        super().__init__()
        self.exchange = exchange
        self.ledger = ledger if ledger is not None else []  # shared with other stubs: global order
        self.snapshot = 0
        self.scripts: list[Script] = []
        self.commands: list[Any] = []
        self.views = 0

    def _script(self, kind: str, account: str, link_id: str = "") -> Script | None:
        for index, script in enumerate(self.scripts):
            if script.kind in kind and (script.account in (None, account)) and link_id.startswith(script.link_prefix):
                if script.count <= 1:
                    del self.scripts[index]
                else:
                    self.scripts[index] = Script(
                        script.kind, script.account, script.link_prefix, script.outcome, script.count - 1, script.apply
                    )
                return script
        return None

    def on_receive(self, message: Any) -> Any:
        match message:
            case Script():
                self.scripts.append(message)
            case GetRecord():
                return list(self.commands)
            case GetPositionView():
                self.views += 1
                self.ledger.append(("view", message))
                script = self._script(("stale", "unavailable"), message.account)
                if script is not None and script.kind == "unavailable":
                    message.reply.set(Unavailable(message.account, "scripted"))
                    return None
                self.snapshot += 1
                message.reply.set(
                    view_of(
                        self.exchange,
                        message.account,
                        message.symbol,
                        self.snapshot,
                        include_closed=message.include_closed,
                        stale=script is not None,
                    )
                )
            case PlaceOrder() | AmendOrder() | CancelOrder():
                message.reply.set(self._command(message))
            case SendBatch():
                self.ledger.append(("batch", message))
                message.reply.set(tuple(self._command(command) for command in message.commands))
        return None

    def _command(self, message: Any) -> Any:
        self.commands.append(message)
        self.ledger.append(("command", message))
        script = self._script(("outcome",), message.account, message.link_id)
        if script is None:
            return apply(self.exchange, message.account, message.symbol, message)
        if script.apply:
            apply(self.exchange, message.account, message.symbol, message)
        return script.outcome


def recorded_commands(ref) -> list[Any]:
    return ref.ask(GetRecord(), timeout=5)


__all__ = ["Rejected", "Script", "StubGateway", "Unresolved", "recorded_commands"]
