"""What `fasttcp.analyze` counted, and how it reads to a person."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fasttcp.tracker.vocabulary import ConnState

__all__ = ["Summary", "RUN_FIELDS"]

_RTT_UNSET = 0xFFFFFFFF

#: `Summary.as_dict` keys that describe the run rather than the traffic: they differ
#: between runs (and worker counts) over the same capture; every other key does not.
RUN_FIELDS = ("seconds", "packets_per_s", "tracker_memory_bytes", "workers")


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
    rtt1: list = field(default_factory=list)        # arrays of seconds, one per batch of rows
    rtt2: list = field(default_factory=list)
    verdicts: Counter = field(default_factory=Counter)
    truncated_tail: int = 0
    truncated: list = field(default_factory=list)   # (capture, bytes) of each cut-short last record
    error: str | None = None
    memory_bytes: int = 0
    workers: int = 1
    interrupted: bool = False
    rows: np.ndarray | None = field(default=None, repr=False)   # every FLOW_DTYPE row, when asked to keep them

    def add_rows(self, rows: np.ndarray) -> None:
        """Fold finished connections (FLOW_DTYPE rows) into the counts."""
        if not len(rows):
            return
        self.connections += len(rows)
        for code, n in zip(*np.unique(rows["conn_state"], return_counts=True), strict=True):
            self.conn_states[ConnState(int(code)).name] += int(n)
        hist = rows["history"]
        self.resets += int(np.count_nonzero((np.char.find(hist, b"R") >= 0) | (np.char.find(hist, b"r") >= 0)))
        self.retransmissions += int(rows["orig_retrans"].sum() + rows["resp_retrans"].sum())
        for src, dst in ((rows["rtt_syn_synack"], self.rtt1), (rows["rtt_synack_ack"], self.rtt2)):
            got = src[src != _RTT_UNSET]
            if len(got):
                dst.append(got / 1e6)

    @staticmethod
    def _percentiles(chunks: list) -> dict[str, float] | None:
        if not chunks:
            return None
        v = np.concatenate(chunks)
        p = np.percentile(v, [50, 90, 99])
        return {"n": len(v), "p50": float(p[0]), "p90": float(p[1]), "p99": float(p[2]),
                "max": float(v.max())}

    def as_dict(self) -> dict[str, Any]:
        """The summary as plain JSON-able values (`RUN_FIELDS` describe the run)."""
        return {
            "capture": self.path,
            "packets": self.packets,
            "file_bytes": self.file_bytes,
            "seconds": round(self.seconds, 6),
            "packets_per_s": round(self.packets / self.seconds) if self.seconds > 0 else None,
            "connections": self.connections,
            "conn_states": dict(sorted(self.conn_states.items())),
            "connections_with_reset": self.resets,
            "retransmitted_segments": self.retransmissions,
            "rtt_syn_synack_s": self._percentiles(self.rtt1),
            "rtt_synack_ack_s": self._percentiles(self.rtt2),
            "verdicts": dict(sorted(self.verdicts.items())),
            "truncated_tail_bytes": self.truncated_tail,
            "tracker_memory_bytes": self.memory_bytes,
            "workers": self.workers,
            "interrupted": self.interrupted,
            "error": self.error,
        }

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
        if self.truncated_tail:
            lines.append(f"note: the last record is cut short ({self.truncated_tail} bytes left unread)")
        if self.interrupted:
            lines.append("interrupted: the counts above cover the packets read before the interrupt")
        if self.error:
            lines.append(f"error: {self.error}")
        return "\n".join(lines)
