"""Type stubs for fasttcp.tracker.tracker (the passive connection tracker)."""
from collections.abc import Iterable
from typing import Any

import numpy as np
from typing_extensions import disjoint_base

from fasttcp.capture.reader import CaptureBatch
from fasttcp.enums import Verdict
from fasttcp.tracker.vocabulary import TrackerStats, TrackerTimeouts

__all__ = ["Tracker", "ShardPlan", "FLOW_DTYPE", "TRACKER_EVENT_DTYPE"]

FLOW_DTYPE: np.dtype
TRACKER_EVENT_DTYPE: np.dtype
PGO_BUILD: bool
"""True when this module was compiled with a gcc profile (setup.py's profile-guided build)."""
RECORD_BYTES: int
MAX_TIME_S: int
"""The largest time in seconds a Tracker takes: its nanoseconds fit in int64 (2262)."""
MAX_EVENTS: int
MAX_SERVER_PORT_VALUES: int
"""The most values `Tracker`'s ``server_ports`` may give (duplicates included)."""
MAX_CLOCK_US: int
"""The largest clock a ShardPlan takes (microseconds whose nanoseconds fit in int64)."""

@disjoint_base
class ShardPlan:
    """One batch split among N shard trackers once for all of them (checked, each
    shard's visit list written), for `Tracker.feed_plan`."""
    @property
    def batch(self) -> CaptureBatch: ...
    @property
    def shards(self) -> int: ...
    @property
    def packets(self) -> int: ...
    @property
    def lazy(self) -> bool:
        """No visit lists kept (more ticks than packets between them): each tracker
        writes its own from the plan's clocks."""
    @property
    def checksums_verified(self) -> int:
        """Packets whose checksums `verify_checksums` found good: their trackers do not
        verify them again."""
    def verify_checksums(self) -> int:
        """Verify the checksums of the batch's long packets in one pass, in order, for
        the trackers (a plan made with ``checksums=True`` and two shards or more; the
        first call only; without the GIL, on any thread, trackers running meanwhile).
        Returns how many were found good."""
    def __init__(self, batch: CaptureBatch, shard: np.ndarray, shards: int, clock: int = 0, *,
                 checksums: bool = False) -> None:
        """Raises UsageError for a batch that is not a CaptureBatch or not one row per
        packet, spans outside its buffer, times outside 0..2**63-1 ns, bad link
        verdicts, shards outside 1..65535, a shard array that is not uint16 with one
        value below shards per packet, a clock outside 0..MAX_CLOCK_US, or checksums
        not a bool; and for a second call (a plan is made once)."""
    @property
    def clock_before(self) -> int: ...
    @property
    def clock_after(self) -> int: ...
    def visits(self, shard: int) -> tuple[np.ndarray, np.ndarray]: ...

@disjoint_base
class Tracker:
    """Passive connection tracker: conntrack states and window tracking plus Zeek's
    conn_state/history, over a symmetric connection table."""
    timeouts: TrackerTimeouts
    def __init__(self, capacity: int = 1_000_000, *, timeouts: TrackerTimeouts | str | None = None,
                 verify_checksum: bool = True, loose: bool = True, liberal: bool = False,
                 seed: int | None = None, events: bool = False, max_events: int = 1_000_000,
                 server_ports: Iterable[int] | None = None) -> None: ...
    @property
    def capacity(self) -> int: ...
    def __len__(self) -> int: ...
    @property
    def memory_bytes(self) -> int: ...
    def feed(self, packet: bytes | bytearray | memoryview, ts: float) -> Verdict:
        """Raises UsageError for a ts outside 0..MAX_TIME_S seconds."""
    def feed_batch(self, batch: CaptureBatch | Any, offsets: Any = None, lengths: Any = None,
                   ts_ns: Any = None, *, select: Any = None, indices: Any = None) -> np.ndarray:
        """Raises UsageError for arrays that are not 1-D integers of one length, spans
        outside the buffer, timestamps outside 0..2**63-1 ns, bad link verdicts,
        indices that are not strictly ascending batch indices, select with indices."""
    def feed_plan(self, plan: ShardPlan, shard: int) -> None:
        """Raises UsageError for a shard outside the plan's, a tracker whose clock is
        not the plan's clock_before, and while another call is running."""
    def expire(self, now: float) -> np.ndarray: ...
    def finished(self) -> np.ndarray: ...
    def events(self) -> np.ndarray: ...
    def connections(self) -> np.ndarray: ...
    def close(self) -> np.ndarray: ...
    def _raw_records(self) -> tuple[bytes, bytes]: ...
    def _set_fast_path(self, on: bool) -> None: ...
    @property
    def stats(self) -> TrackerStats:
        """Counters; calling it (``stats()``) is deprecated and warns."""
