"""How fast a replay sends: a token bucket (`RateLimit`, packets per second, never above)
and the capture's own timing scaled (`CaptureClock`). Both take the clock and the sleep
as arguments, so tests run them on a fake clock instead of timing real sleeps.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

from fasttcp.errors import UsageError

__all__ = ["RateLimit", "CaptureClock", "MAX_PPS", "MAX_SLEEP"]

MAX_PPS = 1e9
MAX_SLEEP = 0.1
"""The longest single sleep (seconds): a paced replay wakes this often to report
progress and to notice Ctrl-C."""
BURST_SECONDS = 0.001
"""A bucket holds up to this many seconds' worth of packets (at least one): sending in
batches needs a burst, and a millisecond of it is below what a receiver's ring holds."""
MAX_BURST = 4096
MIN_SLEEP = 1e-6
"""The shortest sleep: a shorter one could leave a clock reading unchanged (a float
clock's resolution) and the bucket waiting on itself."""


def _as_float(value: float) -> float:
    """`value` as a float; an int beyond a float's range as infinity (float() raises)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf


class RateLimit:
    """A token bucket of `pps` packets per second. Over any span of t seconds from the
    start it allows at most ``burst + pps * t`` packets: never above the rate beyond one
    burst (`burst`: BURST_SECONDS of packets, 1..MAX_BURST). Raises UsageError for a pps
    that is not a number in (0, MAX_PPS]."""

    def __init__(self, pps: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if isinstance(pps, bool) or not isinstance(pps, int | float) or not 0 < pps <= MAX_PPS:
            raise UsageError(f"pps must be a number in (0, {MAX_PPS:.0e}], got {pps!r}")
        self.pps = float(pps)
        self.burst = float(min(MAX_BURST, max(1, math.floor(pps * BURST_SECONDS))))
        self._clock, self._sleep = clock, sleep
        self._tokens = self.burst
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.pps)
        self._last = now

    def take(self, want: int) -> int:
        """Wait until at least one packet may go, then take and return up to `want`
        (at least 1 for want >= 1; 0 for want <= 0)."""
        if want <= 0:
            return 0
        self._refill()
        while self._tokens < 1:
            self._sleep(min(MAX_SLEEP, max(MIN_SLEEP, (1 - self._tokens) / self.pps)))
            self._refill()
        n = min(want, int(self._tokens))
        self._tokens -= n
        return n


class CaptureClock:
    """The capture's timing, `speed` times faster (2: twice as fast): a packet captured
    d seconds after the first of its run is due d / speed seconds after the run began.
    Timestamps that go backwards count as their predecessor's (the capture order is
    kept). Raises UsageError for a speed that is not a finite number > 0."""

    def __init__(self, speed: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if isinstance(speed, bool) or not isinstance(speed, int | float) or not 0 < _as_float(speed) < math.inf:
            raise UsageError(f"speed must be a finite number > 0, got {speed!r}")
        self.speed = float(speed)
        self._clock, self._sleep = clock, sleep
        self._first_ns: int | None = None
        self._start = 0.0
        self._high_ns = 0

    def restart(self) -> None:
        """A new run (the next capture, or the next --loop): the next packet is due at once."""
        self._first_ns = None

    def due(self, ts_ns: np.ndarray) -> np.ndarray:
        """The due times (seconds since the run began) of a batch's packets, in order."""
        ts = np.asarray(ts_ns, dtype=np.int64)
        if ts.size == 0:
            return np.zeros(0)
        if self._first_ns is None:
            self._first_ns, self._start, self._high_ns = int(ts[0]), self._clock(), int(ts[0])
        mono = np.maximum.accumulate(np.maximum(ts, self._high_ns))
        self._high_ns = int(mono[-1])
        return (mono - self._first_ns) / 1e9 / self.speed

    def ready(self, due: np.ndarray, start: int) -> int:
        """Wait until packet `start` is due; return the end of the run of packets due by
        then (> start), as an index into `due`."""
        now = self._clock() - self._start
        while due[start] > now:
            self._sleep(min(MAX_SLEEP, max(MIN_SLEEP, float(due[start]) - now)))
            now = self._clock() - self._start
        return int(np.searchsorted(due, now, side="right"))
