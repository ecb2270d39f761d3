"""A recorder: an actor that keeps every message told to it (e.g. a stub Supervisor)."""

from __future__ import annotations

from typing import Any

import pykka


class GetRecorded:
    pass


class Recorder(pykka.ThreadingActor):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[Any] = []

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, GetRecorded):
            return list(self.messages)
        self.messages.append(message)
        return None


def recorded(ref) -> list[Any]:
    return ref.ask(GetRecorded(), timeout=5)
