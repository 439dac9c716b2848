"""The replay's pacing on a fake clock: the token bucket never allows more than one
burst above the rate over any span, and holds the rate over a long run; the capture
clock scales the capture's timing and keeps its order."""
from __future__ import annotations

import math

import numpy as np
import pytest

from fasttcp import UsageError
from fasttcp.capture.pacing import MAX_BURST, CaptureClock, RateLimit


class FakeClock:
    """Time that moves only when someone sleeps (or `advance` is called)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        assert s >= 0
        self.now += s
        self.slept += s


@pytest.mark.parametrize("pps,want", [(100, 1), (10_000, 64), (1e6, 1024), (1e7, 5000), (0.5, 3)])
def test_rate_limit_never_exceeds_burst_plus_rate_times_elapsed(pps, want):
    clock = FakeClock()
    limit = RateLimit(pps, clock=clock, sleep=clock.sleep)
    start, sent = clock.now, 0
    history = []
    for _ in range(2000):
        got = limit.take(want)
        assert 1 <= got <= want
        sent += got
        history.append((clock.now - start, sent))
    for t, n in history:
        assert n <= limit.burst + pps * t + 1e-6
    t, n = history[-1]
    # and it keeps the rate: over the whole run within one burst of pps * t
    assert n >= pps * t - 1e-6
    assert limit.burst == min(MAX_BURST, max(1, math.floor(pps / 1000)))


def test_rate_limit_takes_nothing_for_nothing():
    clock = FakeClock()
    assert RateLimit(10, clock=clock, sleep=clock.sleep).take(0) == 0 and clock.slept == 0


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), 2e9, True, "10", None, 10**400])
def test_rate_limit_refuses_rates_that_are_not_rates(bad):
    with pytest.raises(UsageError):
        RateLimit(bad)


def test_capture_clock_scales_the_capture_timing():
    clock = FakeClock()
    cc = CaptureClock(2.0, clock=clock, sleep=clock.sleep)
    ts = np.array([10, 10, 11, 13], dtype=np.int64) * 1_000_000_000
    due = cc.due(ts)
    assert due.tolist() == [0.0, 0.0, 0.5, 1.5]
    assert cc.ready(due, 0) == 2 and clock.slept == 0         # the first two are due at once
    assert cc.ready(due, 2) == 3 and clock.slept == pytest.approx(0.5)
    assert cc.ready(due, 3) == 4 and clock.slept == pytest.approx(1.5)
    # the next batch continues the same run; a timestamp going back counts as the last one
    due2 = cc.due(np.array([12, 14], dtype=np.int64) * 1_000_000_000)
    assert due2.tolist() == [1.5, 2.0]
    cc.restart()
    assert cc.due(np.array([50], dtype=np.int64) * 1_000_000_000).tolist() == [0.0]


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), False, "1", 10**400])
def test_capture_clock_refuses_speeds_that_are_not_speeds(bad):
    with pytest.raises(UsageError):
        CaptureClock(bad)
