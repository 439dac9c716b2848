"""Replay captures out of an interface: the IP packets of pcap/pcapng files, read in
batches by `read_pcap`, sent by a `Transmitter` behind a fresh Ethernet header, as fast
as possible or paced (`fasttcp.capture.pacing`). The command line is `fasttcp replay`
(fasttcp/cli/replay.py).

What is sent: every packet whose link layer `read_pcap` recognised (Ethernet, VLAN and
MPLS stripped, raw IP, Linux SLL, ...) as its IP packet, as captured -- a packet the
capture's snap length cut is sent cut (counted `snapped`). Frames that carry no IP
packet are skipped (counted `skipped`).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from fasttcp.capture.pacing import CaptureClock, RateLimit
from fasttcp.capture.reader import CaptureBatch, read_pcap
from fasttcp.capture.transmit import Transmitter
from fasttcp.enums import Verdict

__all__ = ["ReplayStats", "replay", "TOP_CHUNK"]

TOP_CHUNK = 16384
"""Packets per send at top speed: large enough that one system call carries many,
small enough that progress (and Ctrl-C) is seen every few milliseconds."""
TX_COUNTERS = ("too_big", "not_ip", "dropped", "retried", "would_block", "wrong_format", "syscalls")


@dataclass
class ReplayStats:
    """What a replay did. `packets`/`bytes`: handed to the kernel (bytes with the
    Ethernet header); `seconds` from the first send to the last flush; the transmitter's
    counters; `skipped` (no IP packet), `snapped` (sent cut short, as captured)."""

    packets: int = 0
    bytes: int = 0
    seconds: float = 0.0
    loops: int = 0
    skipped: int = 0
    snapped: int = 0
    method: str = ""
    tx: dict[str, int] = field(default_factory=dict)

    @property
    def pps(self) -> float:
        return self.packets / self.seconds if self.seconds > 0 else 0.0

    @property
    def gbps(self) -> float:
        """Gbit/s of frames (Ethernet header included, no preamble or gap)."""
        return self.bytes * 8 / self.seconds / 1e9 if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        tx = d.pop("tx")
        d.update({k: tx.get(k, 0) for k in TX_COUNTERS})
        d["pps"], d["gbps"] = round(self.pps, 1), round(self.gbps, 6)
        return d

    def format(self) -> str:
        tx = self.tx
        return (f"replayed {self.packets} packets ({self.bytes} bytes) in {self.seconds:.3f} s: "
                f"{self.pps:,.0f} packets/s, {self.gbps:.3f} Gbit/s ({self.method}, {self.loops} loop(s))\n"
                f"skipped {self.skipped} without IP, {tx.get('not_ip', 0)} not IPv4/IPv6, "
                f"{tx.get('too_big', 0)} too big; {self.snapped} sent cut short as captured; "
                f"kernel dropped {tx.get('dropped', 0)}, not taken {tx.get('would_block', 0)}")


def _sendable(batch: CaptureBatch) -> tuple[np.ndarray, np.ndarray, int, int]:
    """The offsets and lengths of a batch's IP packets; how many were skipped, snapped."""
    ok = batch.verdicts == int(Verdict.OK)
    off, ln = batch.offsets[ok], batch.lengths[ok]
    return off, ln, int(len(batch) - off.shape[0]), int(np.count_nonzero(batch.snapped & ok))


def replay(captures: Iterable[str | Path], tx: Transmitter, *, pps: float | None = None,
           speed: float | None = None, loops: int = 1,
           progress: Callable[[ReplayStats], None] | None = None,
           clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> ReplayStats:
    """Send the IP packets of `captures` (read one after another, `loops` times) through
    `tx`: at most `pps` packets a second (a token bucket), or at `speed` times the
    capture's timing (each file's own, the files back to back), or (neither) as fast as
    the transmitter takes them. `progress` is called with the running stats after each
    send. Returns the stats (also when interrupted: a KeyboardInterrupt carries them as
    ``.stats``).

    Raises UsageError for bad pacing or a loop count below 1, and what read_pcap and
    the transmitter raise."""
    from fasttcp.errors import UsageError

    if pps is not None and speed is not None:
        raise UsageError("pace by pps or by speed, not both")
    if isinstance(loops, bool) or not isinstance(loops, int) or loops < 1:
        raise UsageError(f"loops must be an int >= 1, got {loops!r}")
    limit = RateLimit(pps, clock=clock, sleep=sleep) if pps is not None else None
    timing = CaptureClock(speed, clock=clock, sleep=sleep) if speed is not None else None
    paths = list(captures)
    stats = ReplayStats(method=tx.method)
    base = tx.stats
    start = clock()
    try:
        for _ in range(loops):
            for path in paths:
                if timing is not None:
                    # each file on its own timing, the files back to back: captures taken
                    # years apart must not wait years between them
                    timing.restart()
                for batch in read_pcap(path, buffers=2):
                    _send_batch(batch, tx, stats, limit, timing, progress, base, start, clock)
            stats.loops += 1
        tx.flush()
    except KeyboardInterrupt as e:
        _account(stats, tx, base, start, clock)
        e.stats = stats        # type: ignore[attr-defined]
        raise
    _account(stats, tx, base, start, clock)
    return stats


def _send_batch(batch: CaptureBatch, tx: Transmitter, stats: ReplayStats, limit: RateLimit | None,
                timing: CaptureClock | None, progress: Callable[[ReplayStats], None] | None,
                base: dict[str, int], start: float, clock: Callable[[], float]) -> None:
    off, ln, skipped, snapped = _sendable(batch)
    stats.skipped += skipped
    stats.snapped += snapped
    due = timing.due(batch.ts_ns[batch.verdicts == int(Verdict.OK)]) if timing is not None else None
    i, n = 0, off.shape[0]
    while i < n:
        if limit is not None:
            end = i + limit.take(min(n - i, TOP_CHUNK))
        elif timing is not None and due is not None:
            end = min(timing.ready(due, i), i + TOP_CHUNK)
        else:
            end = min(n, i + TOP_CHUNK)
        tx.send_packets(batch.buffer, off[i:end], ln[i:end])
        i = end
        if progress is not None:
            _account(stats, tx, base, start, clock)
            progress(stats)


def _account(stats: ReplayStats, tx: Transmitter, base: dict[str, int], start: float,
             clock: Callable[[], float]) -> None:
    now = tx.stats
    stats.tx = {k: now[k] - base.get(k, 0) for k in now}
    stats.packets, stats.bytes = stats.tx["sent"], stats.tx["bytes"]
    stats.seconds = clock() - start
