"""Messages a Monitor receives."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pykka


@dataclass(frozen=True, slots=True)
class Check:
    """From the Scheduler: run one check now; answer with `Checked(seq=seq)`."""

    now: float
    seq: int


@dataclass(frozen=True, slots=True)
class GetMonitorState:
    """Ask: the monitor's current `MonitorState` (None before its first check)."""


@dataclass(frozen=True, slots=True)
class ChangePlan:
    """The trader's new targets (`trade plan`), through the Supervisor: recorded, then the
    monitor is checked at once. Answered on `reply` with "" when recorded, else why not."""

    tp_prices: tuple[Decimal, ...]
    stop_price: Decimal
    exits: Mapping[str, Any] = field(default_factory=dict)  # the Plan's exit fields the trader gave (R13-R16)
    reply: pykka.Future[str] = field(kw_only=True)


@dataclass(frozen=True, slots=True)
class ClosePosition:
    """The trader's close (`trade close`), through the Supervisor; answered like ChangePlan."""

    reply: pykka.Future[str] = field(kw_only=True)
