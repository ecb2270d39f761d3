"""The Supervisor: one monitor per position, start-up reconciliation, discovery, restarts, and the
trader's requests (read, sized and checked here).
"""

from actors.supervision._trade_requests import (
    CopyRule,
    TradeRequest,
    check_targets,
    describe,
    read_request,
    resolve_accounts,
    size_follower,
    size_open,
)
from actors.supervision.supervisor import Supervisor

__all__ = [
    "CopyRule",
    "Supervisor",
    "TradeRequest",
    "check_targets",
    "describe",
    "read_request",
    "resolve_accounts",
    "size_follower",
    "size_open",
]
