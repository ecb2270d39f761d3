"""The protocol helpers every actor shares: asking with a reply future, recording with
Persistence, and telling upward during shutdown. Importing this pulls in no exchange client."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pykka

from messages.models import MonitorId
from messages.persistence import JournalEntry, Record

log = logging.getLogger(__name__)

Ref = pykka.ActorRef[Any]  # a reference to any actor (messages are typed, refs are not)


def ask_with_reply(actor: Ref, make: Callable[..., object], timeout: float) -> Any:
    """Send the request `make(reply=future)` builds and wait for its answer (raises pykka.Timeout):
    whatever the request's `reply` is typed to carry. The actor may answer much later, from
    another message's handler."""
    future: pykka.ThreadingFuture[Any] = pykka.ThreadingFuture()
    actor.tell(make(reply=future))
    return future.get(timeout=timeout)


def record(persistence: Ref, message: Record, timeout: float = 10.0) -> None:
    """Send a record and, when it is critical, wait until it is committed (raises on failure or
    timeout). The one place a sender waits on Persistence."""
    if not (message.critical or message.retire):
        persistence.tell(message)
        return
    future: pykka.ThreadingFuture[bool] = pykka.ThreadingFuture()
    persistence.tell(
        Record(message.monitor, message.state, message.events, message.critical, message.retire, reply=future)
    )
    future.get(timeout=timeout)


def journal(time_ms: int, monitor: MonitorId, event: str, **payload: Any) -> JournalEntry:
    return JournalEntry(time_ms, monitor, str(event), payload)


def tell_upward(ref: Ref | None, message: object) -> bool:
    """A notification to an actor above this one (scheduler, supervisor). During shutdown that
    actor may already be gone, which is no error: there is nobody left to tell. False then."""
    if ref is None:
        return False
    try:
        ref.tell(message)
        return True
    except pykka.ActorDeadError:
        log.debug("not told (already stopped): %r", message)
        return False


def has_reply(message: object) -> bool:
    """Does a request carry a future to answer? One without is a bug in its sender: the actor
    logs it at ERROR and drops it instead of failing on it."""
    reply = getattr(message, "reply", None)
    return reply is not None and callable(getattr(reply, "set", None))
