"""What `fasttcp.analyze` counted, and how it reads to a person."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fasttcp.rows.tally import tally_rows
from fasttcp.tracker.vocabulary import ConnState

__all__ = ["Summary", "RUN_FIELDS"]

# samples buffered before they are folded into the histogram: the buffer's memory
# (8 bytes a sample) against the cost of a fold (a sort of the distinct values)
_FOLD_EVERY = 1 << 20

#: `Summary.as_dict` keys that describe the run rather than the traffic: they differ
#: between runs (and worker counts) over the same capture; every other key does not.
RUN_FIELDS = ("seconds", "packets_per_s", "tracker_memory_bytes", "workers")


class Samples:
    """Samples (RTTs: uint32 microseconds) kept as a histogram: exact percentiles in
    memory that grows with the distinct values seen -- at most the largest RTT in
    microseconds, in practice far fewer -- not with the connections in the capture."""

    __slots__ = ("_new", "_pending", "counts", "values")

    def __init__(self) -> None:
        self.values = np.empty(0, np.uint32)     # distinct samples, ascending
        self.counts = np.empty(0, np.int64)      # how many times each
        self._new: list[np.ndarray] = []         # samples not yet folded in
        self._pending = 0

    def add(self, samples: np.ndarray) -> None:
        """Count `samples` (uint32)."""
        if len(samples):
            self._new.append(np.asarray(samples, dtype=np.uint32))
            self._pending += len(samples)
            if self._pending >= _FOLD_EVERY:
                self._fold()

    @property
    def nbytes(self) -> int:
        """Bytes of samples held: the histogram and the samples not yet folded in."""
        return self.values.nbytes + self.counts.nbytes + sum(a.nbytes for a in self._new)

    def _fold(self) -> None:
        """Fold the new samples into the histogram: sort them (~30 ns a sample, about
        what a percentile over every sample costs), count the runs, merge."""
        if not self._new:
            return
        new_values, new_counts = _runs(np.sort(np.concatenate(self._new)))
        values = np.concatenate([self.values, new_values])
        counts = np.concatenate([self.counts, new_counts])
        order = np.argsort(values, kind="stable")
        self.values, self.counts = _runs(values[order], counts[order])
        self._new, self._pending = [], 0

    def merge(self, other: Samples) -> None:
        """Count `other`'s samples too (histograms add: the percentiles are those of
        every sample of both, exactly)."""
        other._fold()
        if not len(other.values):
            return
        self._fold()
        values = np.concatenate([self.values, other.values])
        counts = np.concatenate([self.counts, other.counts])
        order = np.argsort(values, kind="stable")
        self.values, self.counts = _runs(values[order], counts[order])

    def percentiles(self, unit: float) -> dict[str, float] | None:
        """n, p50, p90, p99 and max of the samples divided by `unit` -- the percentiles
        exactly as `numpy.percentile` computes them over every sample (its default,
        linear between the two nearest ranks) -- or None if there are none."""
        self._fold()
        n = int(self.counts.sum())
        if n == 0:
            return None
        ends = np.cumsum(self.counts)            # rank r is values[first index with ends > r]

        def ranked(r: int) -> float:
            return float(self.values[np.searchsorted(ends, r, side="right")]) / unit

        out: dict[str, Any] = {"n": n}
        for name, q in (("p50", 50), ("p90", 90), ("p99", 99)):
            # numpy's virtual index and interpolation, step for step, so that the figures
            # do not move in the last digit against a percentile of all the samples
            h = (n - 1) * (q / 100)
            lo = int(h)
            a, b, t = ranked(lo), ranked(min(lo + 1, n - 1)), h - lo
            out[name] = b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t
        out["max"] = float(self.values[-1]) / unit
        return out


def _runs(ascending: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of a sorted array and how many times (or what total
    weight) each has."""
    starts = np.flatnonzero(np.concatenate(([True], ascending[1:] != ascending[:-1])))
    if weights is None:
        return ascending[starts], np.diff(np.append(starts, len(ascending)))
    return ascending[starts], np.add.reduceat(weights, starts)


@dataclass
class Summary:
    """What `analyze` counted; `format()` renders it."""

    path: str = ""
    packets: int = 0
    file_bytes: int = 0
    seconds: float = 0.0
    connections: int = 0
    conn_states: Counter = field(default_factory=Counter)
    resets: int = 0
    retransmissions: int = 0
    rtt1: Samples = field(default_factory=Samples)  # SYN -> SYN-ACK, microseconds
    rtt2: Samples = field(default_factory=Samples)  # SYN-ACK -> ACK
    verdicts: Counter = field(default_factory=Counter)
    truncated_tail: int = 0
    truncated: list = field(default_factory=list)   # (capture, bytes) of each cut-short last record
    error: str | None = None
    memory_bytes: int = 0
    workers: int = 1
    interrupted: bool = False
    capture: dict | None = None     # a live capture's kernel counters (LiveStats, summed over workers)
    rows: np.ndarray | None = field(default=None, repr=False)   # every FLOW_DTYPE row, when asked to keep them
    report: Any = field(default=None, repr=False)   # the `fasttcp.report.ReportAggregate`, when a report was written

    def add_rows(self, rows: np.ndarray) -> None:
        """Fold finished connections (FLOW_DTYPE rows) into the counts."""
        if not len(rows):
            return
        t = tally_rows(rows)             # (checks the rows before anything is counted)
        self.connections += len(rows)
        for code in np.flatnonzero(t.conn_states):
            self.conn_states[ConnState(int(code)).name] += int(t.conn_states[code])
        self.resets += t.resets
        self.retransmissions += t.retransmissions
        self.rtt1.add(t.rtt_syn_synack)
        self.rtt2.add(t.rtt_synack_ack)

    def as_dict(self) -> dict[str, Any]:
        """The summary as plain JSON-able values (`RUN_FIELDS` describe the run); a live
        capture adds ``capture_stats``, the kernel's counters (`LiveStats`)."""
        d: dict[str, Any] = {
            "capture": self.path,
            "packets": self.packets,
            "file_bytes": self.file_bytes,
            "seconds": round(self.seconds, 6),
            "packets_per_s": round(self.packets / self.seconds) if self.seconds > 0 else None,
            "connections": self.connections,
            "conn_states": dict(sorted(self.conn_states.items())),
            "connections_with_reset": self.resets,
            "retransmitted_segments": self.retransmissions,
            "rtt_syn_synack_s": self.rtt1.percentiles(1e6),
            "rtt_synack_ack_s": self.rtt2.percentiles(1e6),
            "verdicts": dict(sorted(self.verdicts.items())),
            "truncated_tail_bytes": self.truncated_tail,
            "tracker_memory_bytes": self.memory_bytes,
            "workers": self.workers,
            "interrupted": self.interrupted,
            "error": self.error,
        }
        if self.capture is not None:
            d["capture_stats"] = dict(sorted(self.capture.items()))
        return d

    def format(self) -> str:
        """Human-readable summary block."""
        d = self.as_dict()
        workers = f" by {self.workers} workers" if self.workers > 1 else ""
        lines = [f"# {self.path}: {self.packets:,} packets, {self.file_bytes:,} bytes in {self.seconds:.2f} s"
                 + workers + (f" ({d['packets_per_s']:,} packets/s)" if d["packets_per_s"] else ""),
                 f"connections: {self.connections:,}"]
        if self.conn_states:
            lines.append("  by conn_state: " + ", ".join(f"{k} {v:,}" for k, v in sorted(
                self.conn_states.items(), key=lambda kv: -kv[1])))
        lines.append(f"  with a reset: {self.resets:,}; retransmitted segments: {self.retransmissions:,}")
        for name, p in (("SYN -> SYN-ACK", d["rtt_syn_synack_s"]), ("SYN-ACK -> ACK", d["rtt_synack_ack_s"])):
            if p:
                lines.append(f"  handshake RTT {name}: p50 {p['p50'] * 1e3:.3f} ms, p90 {p['p90'] * 1e3:.3f} ms, "
                             f"p99 {p['p99'] * 1e3:.3f} ms (n={p['n']:,})")
            else:
                lines.append(f"  handshake RTT {name}: none measured")
        if self.verdicts:
            lines.append("packet verdicts: " + ", ".join(f"{k} {v:,}" for k, v in sorted(
                self.verdicts.items(), key=lambda kv: -kv[1])))
        if self.capture is not None:
            c = self.capture
            lines.append(f"capture: the kernel passed {c.get('packets', 0):,} packets to the rings, dropped "
                         f"{c.get('drops', 0):,} (freeze_q {c.get('freeze_q', 0):,})")
        return "\n".join(lines + self.caveats())

    def caveats(self) -> list[str]:
        """What limits the counts, a line each: a cut-short last record, an interrupt,
        the error that ended the capture."""
        out = []
        if self.truncated_tail:
            out.append(f"note: the last record is cut short ({self.truncated_tail} bytes left unread)")
        if self.interrupted:
            out.append("interrupted: the counts above cover the packets read before the interrupt")
        if self.error:
            out.append(f"error: {self.error}")
        return out
