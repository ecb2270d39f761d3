"""One fixture shape many test modules share: a factory of rigs, each closed at the end."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


@contextmanager
def closing_factory(build: Callable[..., T]) -> Iterator[Callable[..., T]]:
    """Yield `make(**kw)`, which builds a rig; every rig made is closed on exit."""
    made: list[T] = []

    def make(**kw) -> T:
        made.append(build(**kw))
        return made[-1]

    try:
        yield make
    finally:
        for rig in made:
            rig.close()
