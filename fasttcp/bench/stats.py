"""How the benchmarks summarise repeated measurements on a noisy machine."""
from __future__ import annotations

import statistics
from collections.abc import Sequence

__all__ = ["median_spread", "paired_ratio"]


def median_spread(xs: Sequence[float]) -> tuple[float, float]:
    """The median of `xs` and their spread, (max - min) / median (0 for a zero median)."""
    m = statistics.median(xs)
    return m, (max(xs) - min(xs)) / m if m else 0.0


def paired_ratio(base: Sequence[float], other: Sequence[float]) -> tuple[float, float]:
    """The median of other[i] / base[i], each pair measured side by side, and the
    spread of those ratios (range / median). A ratio of medians mixes rounds the host
    slowed with rounds it did not: on a shared 2-vCPU machine the same command moves
    0.6-1.9x between minutes, which a pair measured seconds apart mostly cancels.
    Pairs whose base is not positive measured nothing and are skipped."""
    if len(base) != len(other) or not base:
        raise ValueError(f"paired_ratio needs pairs, got {len(base)} and {len(other)} values")
    ratios = [b / a for a, b in zip(base, other, strict=True) if a > 0]
    if not ratios:
        return 0.0, 0.0
    return median_spread(ratios)
