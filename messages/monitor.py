"""Messages a Monitor receives."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Check:
    """From the Scheduler: run one check now; answer with `Checked(seq=seq)`."""
    now: float
    seq: int


@dataclass(frozen=True, slots=True)
class GetMonitorState:
    """Ask: the monitor's current `MonitorState` (None before its first check)."""
