"""The position side: one Monitor per position, its check cycle, and the TP/SL rules (`rules`).
The check cycle is exported for drivers other than the Monitor (tests/rules_driver.py runs it
in-process over the simulator's engine).
"""

from actors.position._check_cycle import CheckCycle, CycleIO, command_message
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
    "CheckCycle",
    "CloseReason",
    "CycleIO",
    "EventKind",
    "Monitor",
    "MonitorState",
    "RulesConfig",
    "command_message",
    "ladder_for",
    "planned",
    "resumed",
    "state_from_dict",
    "stored",
]
