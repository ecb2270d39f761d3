"""Persistence: the single writer of state, on SQLite."""

from actors.storage._store import StateError, open_read_only, open_store
from actors.storage.persistence import Persistence

__all__ = ["Persistence", "StateError", "open_read_only", "open_store"]
