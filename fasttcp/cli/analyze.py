"""`fasttcp analyze CAPTURE`: track every TCP connection of a capture file and report.

Streams the file through `read_pcap` and `Tracker.feed_batch` (memory is bounded by
the tracker's table, not by the file), writes each connection as it ends -- a table,
JSON lines, CSV or a Zeek conn.log, by `fasttcp.rows.RowWriter` in C -- and ends with a
summary: connections by conn_state, handshake RTT percentiles, resets, retransmissions
and packet verdicts.
"""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from fasttcp.capture.reader import CaptureError, CaptureReader, read_pcap
from fasttcp.errors import UsageError
from fasttcp.rows.writer import CSV_FIELDS, FORMATS, ZEEK_FIELDS, RowWriter
from fasttcp.tracker.tracker import Tracker
from fasttcp.tracker.vocabulary import ConnState

__all__ = ["AnalyzeConfig", "Summary", "analyze", "OutputError", "FORMATS", "ZEEK_FIELDS", "CSV_FIELDS"]


class OutputError(OSError):
    """Writing the connections failed (a full disk, a closed pipe): the output's fault,
    not the capture's. Carries the errno and strerror of the OSError behind it."""


def _to_output(call: Callable[..., Any], *args: Any) -> Any:
    try:
        return call(*args)
    except OutputError:
        raise
    except OSError as e:
        raise OutputError(e.errno, e.strerror) from e


@dataclass
class AnalyzeConfig:
    """How to run the tracker over a capture (see `fasttcp analyze --help`)."""

    verify_checksum: bool = True
    timeouts: str = "zeek"
    capacity: int = 1_000_000
    server_ports: bool = True
    batch_bytes: int = 8 << 20


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
    error: str | None = None
    memory_bytes: int = 0

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
            got = src[src != 0xFFFFFFFF]
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
            "error": self.error,
        }

    def format(self) -> str:
        """Human-readable summary block."""
        d = self.as_dict()
        lines = [f"# {self.path}: {self.packets:,} packets, {self.file_bytes:,} bytes in {self.seconds:.2f} s"
                 + (f" ({d['packets_per_s']:,} packets/s)" if d["packets_per_s"] else ""),
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
        if self.error:
            lines.append(f"error: {self.error}")
        return "\n".join(lines)


def analyze(path: str | Path | CaptureReader, cfg: AnalyzeConfig | None = None, *, fmt: str = "table",
            out: IO[str] | IO[bytes] | None = None, progress: Callable[[int, int], None] | None = None,
            community_id: bool | None = None, community_id_seed: int = 0) -> Summary:
    """Track every TCP connection of the capture at `path` (or of a `CaptureReader`
    already open on it, which this call reads to the end and closes); write each connection to
    `out` (a text or binary stream; None: only summarise) as it ends, in `fmt`, with
    `community_id` and `community_id_seed` as `fasttcp.rows.RowWriter` takes them.
    `progress(done, total)` is called with file bytes after each batch. Raises
    UsageError (a ValueError) for an unknown format or option, FileNotFoundError/
    CaptureError for a file that cannot be read at all, OutputError (an OSError) when
    `out` cannot be written; a corrupt record later in the file ends the run with
    ``summary.error`` set (what was read is still reported)."""
    if fmt not in FORMATS:
        raise UsageError(f"format must be one of {FORMATS}, got {fmt!r}")
    writer = RowWriter(out, fmt, community_id=community_id, community_id_seed=community_id_seed) \
        if out is not None else None
    cfg = cfg or AnalyzeConfig()
    reader = path if isinstance(path, CaptureReader) else None
    if reader is not None:
        path = reader.path
    summary = Summary(path=str(path))
    tracker = Tracker(cfg.capacity, timeouts=cfg.timeouts, verify_checksum=cfg.verify_checksum,
                      server_ports=None if cfg.server_ports else ())
    t0 = time.perf_counter()
    if reader is None:
        assert not isinstance(path, CaptureReader)
        reader = read_pcap(path, batch_bytes=cfg.batch_bytes)
    if writer is not None:
        _to_output(writer.header)

    def emit(rows: np.ndarray) -> None:
        summary.add_rows(rows)
        if writer is not None:
            _to_output(writer.write, rows)

    try:
        with reader:
            while True:
                try:
                    batch = reader.read_batch()
                except CaptureError as e:
                    summary.error = str(e)
                    break
                if batch is None:
                    break
                tracker.feed_batch(batch)
                emit(tracker.finished())
                if progress is not None:
                    progress(reader.stats.bytes, reader.size)
        emit(tracker.close())
    finally:
        summary.seconds = time.perf_counter() - t0
    st = tracker.stats
    summary.packets = st["packets"]
    summary.verdicts.update(st["verdicts"])
    summary.file_bytes = reader.stats.bytes
    summary.truncated_tail = reader.stats.truncated_tail
    summary.memory_bytes = tracker.memory_bytes
    if writer is not None:
        _to_output(writer.footer)
    return summary
