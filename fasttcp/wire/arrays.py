"""Index and time arrays as the batch calls take them: checked once, at entry.

The batch loops read these arrays as raw int64 in C. numpy would convert almost
anything to int64 on request -- floats truncated, NaN to the most negative number,
strings parsed -- so a float array of offsets or timestamps would be silently taken
as some other integers. Only integer arrays are taken (an empty one of any numeric
type too: ``np.asarray([])`` is float64).
"""
from __future__ import annotations

import numpy as np

from fasttcp.errors import UsageError

__all__ = ["as_int64"]


def as_int64(values: object, name: str) -> np.ndarray:
    """`values` (an integer array or a sequence of ints) as a C-contiguous int64 array:
    the array itself when it already is one, else a converted copy. Unsigned values
    of 2**63 and above become negative (the callers refuse negatives).

    Raises UsageError for anything that is not integers: floats, bools, strings,
    objects, ints beyond 64 bits."""
    try:
        a = np.asarray(values)
    except (TypeError, ValueError, OverflowError) as exc:
        raise UsageError(f"{name} must be an array of integers: {exc}") from None
    if a.dtype.kind not in "iu" and not (a.size == 0 and a.dtype.kind == "f"):
        raise UsageError(f"{name} must be an array of integers, got dtype {a.dtype}")
    # (not ascontiguousarray: it makes a 0-d array 1-D, and a scalar is no index array)
    return np.asarray(a, dtype=np.int64, order="C")
