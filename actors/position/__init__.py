"""The position side: one Monitor per position, its check cycle, and the TP/SL rules (`rules`)."""

from actors.position.monitor import Monitor
from actors.position.rules import (
    CloseReason,
    EventKind,
    MonitorState,
    RulesConfig,
    ladder_for,
    planned,
    resumed,
    state_from_dict,
    stored,
)

__all__ = [
    "CloseReason",
    "EventKind",
    "Monitor",
    "MonitorState",
    "RulesConfig",
    "ladder_for",
    "planned",
    "resumed",
    "state_from_dict",
    "stored",
]
