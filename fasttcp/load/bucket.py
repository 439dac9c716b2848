"""A token bucket: the ceiling on new connections per second."""
from __future__ import annotations

import math

from fasttcp.errors import UsageError

__all__ = ["TokenBucket", "BURST_SECONDS"]

BURST_SECONDS = 0.01     # the bucket holds 10 ms of tokens: any window of T seconds sees at
                         # most rate * (T + 0.01) + 1 connection attempts


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` held (default: 10 ms worth, at least
    one). `take` hands out whole tokens only, so the count of attempts in any interval of
    length T is at most ``rate * T + burst``. ``rate=None`` is no limit."""

    def __init__(self, rate: float | None, *, burst: float | None = None, now: float = 0.0) -> None:
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float))
                                 or not math.isfinite(rate) or rate <= 0):
            raise UsageError(f"rate is connections per second > 0, not {rate!r}")
        self.rate = None if rate is None else float(rate)
        self.burst = max(1.0, self.rate * BURST_SECONDS) if burst is None and self.rate else float(burst or 1.0)
        self.tokens = self.burst if self.rate is not None else math.inf
        self.last = now

    def take(self, now: float, want: int) -> int:
        """Up to ``want`` tokens at time ``now`` (seconds, not decreasing); how many."""
        if want <= 0:
            return 0
        if self.rate is None:
            return want
        if now > self.last:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now
        got = min(want, int(self.tokens))
        self.tokens -= got
        return got
