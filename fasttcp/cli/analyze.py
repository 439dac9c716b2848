"""`fasttcp analyze CAPTURE`: track every TCP connection of a capture file and report.

Streams the file through `read_pcap` and `Tracker.feed_batch` (memory is bounded by
the tracker's table, not by the file), writes each connection as it ends -- a table,
JSON lines, CSV or a Zeek conn.log -- and ends with a summary: connections by
conn_state, handshake RTT percentiles, resets, retransmissions and packet verdicts.
"""
from __future__ import annotations

import csv
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from fasttcp.capture.reader import CaptureError, CaptureReader, read_pcap
from fasttcp.tracker.tracker import Tracker
from fasttcp.tracker.vocabulary import ConnState, flow_records

__all__ = ["AnalyzeConfig", "Summary", "analyze", "FORMATS", "ZEEK_FIELDS"]

FORMATS = ("table", "json", "csv", "zeek")

ZEEK_FIELDS = ("ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "service",
               "duration", "orig_bytes", "resp_bytes", "conn_state", "local_orig", "local_resp",
               "missed_bytes", "history", "orig_pkts", "orig_ip_bytes", "resp_pkts", "resp_ip_bytes",
               "tunnel_parents")
_ZEEK_TYPES = ("time", "string", "addr", "port", "addr", "port", "enum", "string", "interval", "count",
               "count", "string", "bool", "bool", "count", "string", "count", "count", "count", "count",
               "set[string]")
CSV_FIELDS = ("uid", "ts", "orig_h", "orig_p", "resp_h", "resp_p", "proto", "duration", "orig_bytes",
              "resp_bytes", "conn_state", "missed_bytes", "history", "orig_pkts", "orig_ip_bytes",
              "resp_pkts", "resp_ip_bytes", "state", "rtt_syn_synack", "rtt_synack_ack", "orig_retrans",
              "resp_retrans", "end_reason")
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


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


def _uid(n: int) -> str:
    """A Zeek-looking connection id, unique within one run."""
    x = (n * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & ((1 << 64) - 1)
    out = "C"
    while x:
        x, r = divmod(x, 62)
        out += _B62[r]
    return out[:18]


def _dash(v: Any) -> str:
    return "-" if v is None else str(v)


class _Writer:
    """Streams connection records in one of FORMATS."""

    def __init__(self, fmt: str, out: IO[str]) -> None:
        self.fmt = fmt
        self.out = out
        self.n = 0
        self._csv: Any = None

    def header(self, path: str) -> None:
        if self.fmt == "zeek":
            sep = "\t"
            self.out.write("#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n"
                           f"#path\tconn\n#open\t{time.strftime('%Y-%m-%d-%H-%M-%S')}\n"
                           f"#fields{sep}{sep.join(ZEEK_FIELDS)}\n#types{sep}{sep.join(_ZEEK_TYPES)}\n")
        elif self.fmt == "csv":
            self._csv = csv.DictWriter(self.out, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
            self._csv.writeheader()
        elif self.fmt == "table":
            self.out.write(f"{'orig':>41} {'resp':>41} {'conn_state':>6} {'history':<12} {'state':<11} "
                           f"{'pkts o/r':>13} {'bytes o/r':>21} {'rtt ms':>8}\n")

    def rows(self, rows: np.ndarray) -> None:
        for rec in flow_records(rows):
            self.n += 1
            rec["uid"] = _uid(self.n)
            if self.fmt == "json":
                self.out.write(json.dumps(rec, separators=(",", ":")) + "\n")
            elif self.fmt == "csv":
                self._csv.writerow(rec)
            elif self.fmt == "zeek":
                logged = rec["duration"] > 0          # Zeek logs bytes/duration only then
                vals = (f"{rec['ts']:.6f}", rec["uid"], rec["orig_h"], rec["orig_p"], rec["resp_h"], rec["resp_p"],
                        "tcp", "-", f"{rec['duration']:.6f}" if logged else "-",
                        rec["orig_bytes"] if logged else "-", rec["resp_bytes"] if logged else "-",
                        rec["conn_state"], "-", "-", rec["missed_bytes"], rec["history"] or "-",
                        rec["orig_pkts"], rec["orig_ip_bytes"], rec["resp_pkts"], rec["resp_ip_bytes"], "-")
                self.out.write("\t".join(str(v) for v in vals) + "\n")
            else:
                rtt = rec["rtt_syn_synack"]
                orig = f"{rec['orig_h']}:{rec['orig_p']}"
                resp = f"{rec['resp_h']}:{rec['resp_p']}"
                self.out.write(f"{orig:>41} {resp:>41} {rec['conn_state']:>6} {rec['history']:<12} "
                               f"{rec['state']:<11} {rec['orig_pkts']:>6}/{rec['resp_pkts']:<6} "
                               f"{rec['orig_bytes']:>10}/{rec['resp_bytes']:<10} "
                               f"{_dash(None if rtt is None else round(rtt * 1e3, 3)):>8}\n")

    def footer(self) -> None:
        if self.fmt == "zeek":
            self.out.write(f"#close\t{time.strftime('%Y-%m-%d-%H-%M-%S')}\n")


def analyze(path: str | Path | CaptureReader, cfg: AnalyzeConfig | None = None, *, fmt: str = "table",
            out: IO[str] | None = None, progress: Callable[[int, int], None] | None = None) -> Summary:
    """Track every TCP connection of the capture at `path` (or of a `CaptureReader`
    already open on it, which this call reads to the end and closes); write each connection to
    `out` (None: only summarise) as it ends, in `fmt`. `progress(done, total)` is called
    with file bytes after each batch. Raises FileNotFoundError/CaptureError for a file
    that cannot be read at all; a corrupt record later in the file ends the run with
    ``summary.error`` set (what was read is still reported)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    cfg = cfg or AnalyzeConfig()
    reader = path if isinstance(path, CaptureReader) else None
    if reader is not None:
        path = reader.path
    summary = Summary(path=str(path))
    tracker = Tracker(cfg.capacity, timeouts=cfg.timeouts, verify_checksum=cfg.verify_checksum,
                      server_ports=None if cfg.server_ports else ())
    writer = _Writer(fmt, out) if out is not None else None
    t0 = time.perf_counter()
    if reader is None:
        assert not isinstance(path, CaptureReader)
        reader = read_pcap(path, batch_bytes=cfg.batch_bytes)
    if writer is not None:
        writer.header(str(path))

    def emit(rows: np.ndarray) -> None:
        summary.add_rows(rows)
        if writer is not None:
            writer.rows(rows)

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
        writer.footer()
    return summary
