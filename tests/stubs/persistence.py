"""A stub Persistence: acknowledges every record at once and keeps them; nothing is stored."""

from __future__ import annotations

from typing import Any

import pykka

from messages.persistence import LoadedState, LoadState, Record


class GetRecords:
    pass


class StubPersistence(pykka.ThreadingActor):
    def __init__(self, ledger: list | None = None) -> None:
        super().__init__()
        self.records: list[Record] = []
        self.ledger = ledger if ledger is not None else []

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, GetRecords):
            return list(self.records)
        if isinstance(message, LoadState):
            return LoadedState({}, {})
        if isinstance(message, Record):
            self.records.append(message)
            self.ledger.append(("record", message))
            if message.reply is not None:
                message.reply.set(True)
        return None


def records(ref) -> list[Record]:
    return ref.ask(GetRecords(), timeout=5)
