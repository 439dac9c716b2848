"""The tracker's clock, carried from the whole capture to each shard.

A `Tracker` reads time from its packets: its clock is the largest timestamp seen (in
microseconds, never running backwards), and it expires idle connections when the clock
enters a new tick of 2**FT_TICK_SHIFT microseconds (fasttcp/tracker/tracker.pyx,
`_feed_track`). A shard's tracker fed only its own packets would expire at other
moments than one tracker fed everything: later (its next packet may be seconds away),
and, inside a tick, not at all where the full stream had already expired at the tick's
first packet. So each shard piece carries two things from the chunk it came from:

- each own packet's timestamp replaced by the clock of the whole stream at that packet
  (the running maximum over every packet of every shard), and
- the *instants*: the clock values where the whole stream entered a new tick, i.e.
  where one tracker would have expired connections.

The reduce feeds its packets with the instants merged in as packets of another shard
(`feed_batch(select=...)`), which only move the clock: the tracker then expires at
exactly the instants, with exactly the clock, of one tracker fed the whole capture.
A chunk is split without knowing the clock left by the chunks before it (they are
split at the same time on other workers); `carry` corrects its figures in the reduce,
where the chunks are taken in order.
"""
from __future__ import annotations

import numpy as np

__all__ = ["TICK_SHIFT", "local_clock", "carry_clock", "carry_instants"]

#: fasttcp/table/table.pxd FT_TICK_SHIFT: the tracker expires once per tick of
#: 2**10 microseconds (1.024 ms)
TICK_SHIFT = 10


def local_clock(ts_ns: np.ndarray, before: int) -> tuple[np.ndarray, np.ndarray]:
    """The clock (int64 microseconds) at each packet of a stream whose clock was
    `before` before its first packet, and the clock values at which it entered a new
    tick (the instants, ascending). As `_feed_track`: a packet's time is ``ts_ns //
    1000`` (0 for a timestamp of 0), and the clock only moves forward."""
    us = np.asarray(ts_ns, dtype=np.int64) // 1000
    clock = np.maximum.accumulate(np.maximum(us, before)) if len(us) else us
    ticks = clock >> TICK_SHIFT
    prev = np.empty_like(ticks)
    if len(ticks):
        prev[0] = before >> TICK_SHIFT
        prev[1:] = ticks[:-1]
    return clock, clock[ticks != prev]


def carry_clock(clock: np.ndarray, carry: int) -> np.ndarray:
    """A chunk's clock at each packet, given the clock `carry` that the chunks before
    it left (their largest timestamp)."""
    return np.maximum(clock, carry)


def carry_instants(instants: np.ndarray, carry: int) -> np.ndarray:
    """A chunk's instants (`local_clock` from a clock of 0) as the whole stream sees
    them after the clock `carry`: an instant at or behind `carry` moved nothing, and the
    first one past it enters a new tick only if it is not `carry`'s own tick (the
    clock is monotone, so only that one can change: the ticks between are all
    `carry`'s)."""
    later = instants[instants > carry]
    if len(later) and (int(later[0]) >> TICK_SHIFT) == (carry >> TICK_SHIFT):
        later = later[1:]
    return later
