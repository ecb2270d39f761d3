"""Prices by side: closing side, stop direction, which of two stops protects more, breakeven."""

from __future__ import annotations

from decimal import Decimal

from messages.models import (
    Instrument,
    Side,
)


def side_sign(side: Side) -> int:
    return 1 if side == Side.BUY else -1


def closing_side(side: Side) -> Side:
    return Side.SELL if side == Side.BUY else Side.BUY


def stop_direction(side: Side) -> int:
    """A long's stop fires on a fall (2), a short's on a rise (1)."""
    return 2 if side == Side.BUY else 1


def more_protective(side: Side, new: Decimal, old: Decimal) -> bool:
    return new > old if side == Side.BUY else new < old


def breakeven_price(side: Side, avg_price: Decimal, offset: Decimal, instrument: Instrument) -> Decimal:
    """avg x (1 + offset) for a long (rounded up), x (1 - offset) for a short (rounded down):
    fees stay covered after snapping to tick."""
    if side == Side.BUY:
        return instrument.snap_price(avg_price * (1 + offset), up=True)
    return instrument.snap_price(avg_price * (1 - offset), up=False)
