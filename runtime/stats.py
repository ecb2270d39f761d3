"""Small figure helpers shared by the actors' stats, the run summary and the benchmarks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def percentile(values: Sequence[float], fraction: float, empty: float = 0.0) -> float:
    """The value at `fraction` (0.5 = median) of `values` (nearest rank); `empty` when none."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else empty
