"""Ladder diagrams (`fasttcp.diagram`) of the slowest handshakes' connections, for the
report.

The rows say which connections (4-tuple, first and last packet time) but not their
packets, and keeping every packet in case its connection turns out among the slowest
would cost memory that grows with the capture. So the captures are read a second
time, once for all of them: each batch is parsed (`parse_batch`, C) and the packets of
those few connections within their lifetimes are kept, at most `LADDER_PACKETS` each
(the handshake and what follows: a ladder longer than that is not read at a glance),
in a small temporary pcap that `fasttcp.diagram.ladders_from_capture` then draws from.
"""
from __future__ import annotations

import ipaddress
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fasttcp.capture.reader import CaptureError, CaptureReader, read_pcap, write_pcap
from fasttcp.enums import Verdict
from fasttcp.errors import UsageError
from fasttcp.wire.batch import parse_batch

__all__ = ["draw_slowest", "LADDER_PACKETS"]

#: packets drawn per connection, from its first
LADDER_PACKETS = 12
# rows whose header fields parse_batch filled in (the ladder marks a bad checksum)
_PARSED = (Verdict.OK, Verdict.BAD_CHECKSUM)
_VERDICT_OK = int(Verdict.OK)     # a plain int against arrays: see fasttcp.load.generator


def _address(family: int, raw: np.ndarray) -> str:
    b = bytes(raw)
    return str(ipaddress.IPv4Address(b[:4]) if family == 4 else ipaddress.IPv6Address(b))


def _side(seg: np.ndarray, addr: np.ndarray, port: int, which: str) -> np.ndarray:
    return (seg[which] == addr).all(axis=1) & (seg[f"{which}_port"] == port)


def _matches(seg: np.ndarray, ts_ns: np.ndarray, row: np.ndarray) -> np.ndarray:
    """Packets of `seg` (parse_batch rows) in either direction of `row`'s connection,
    within its first and last packet times."""
    family = 4 if int(row["family"]) == 4 else 6
    o, r = row["orig_h"], row["resp_h"]
    op, rp = int(row["orig_p"]), int(row["resp_p"])
    fwd = _side(seg, o, op, "src") & _side(seg, r, rp, "dst")
    rev = _side(seg, r, rp, "src") & _side(seg, o, op, "dst")
    live = (ts_ns >= int(row["start_us"]) * 1000) & (ts_ns <= (int(row["end_us"]) + 1) * 1000)
    return (fwd | rev) & live & (seg["version"] == family) & np.isin(seg["verdict"], _PARSED)


def extract(captures: Sequence[str | Path], rows: np.ndarray, out: Path) -> list[int]:
    """Write the first LADDER_PACKETS packets of each of `rows`' connections, read
    from `captures` in one pass, to the pcap `out`; returns how many each got."""
    frames: list[bytes] = []
    times: list[float] = []
    got = [0] * len(rows)
    ports = np.union1d(rows["orig_p"], rows["resp_p"])
    last_ns = (int(rows["end_us"].max()) + 1) * 1000
    for path in captures:
        with read_pcap(path) as reader:
            for batch in reader:
                ts = np.asarray(batch.ts_ns)
                if all(n >= LADDER_PACKETS for n in got) or (len(ts) and ts.min() > last_ns):
                    break               # all found, or past every connection's end (a capture in time order)
                seg = parse_batch(batch.buffer, batch.offsets, batch.lengths)
                # the ports first (a cheap test that leaves few packets), then the full match
                near = np.flatnonzero(np.isin(seg["src_port"], ports) & np.isin(seg["dst_port"], ports)
                                      & (np.asarray(batch.verdicts) == _VERDICT_OK))
                seg, ts_near = seg[near], ts[near]
                keep = np.zeros(len(seg), bool)
                for i, row in enumerate(rows):
                    hits = np.flatnonzero(_matches(seg, ts_near, row))[:LADDER_PACKETS - got[i]]
                    got[i] += len(hits)
                    keep[hits] = True
                for j in near[keep]:
                    frames.append(batch.packet(int(j)))
                    times.append(int(ts[j]) / 1e9)
    write_pcap(out, frames, times, nanosecond=True)
    return got


def _rereadable(capture: object) -> Path | None:
    """The path to read `capture` from again: a path, or an open reader's file if it
    is a regular file (not a pipe, which can be read once)."""
    if isinstance(capture, CaptureReader):
        capture = capture.path
    if isinstance(capture, (str, Path)) and Path(capture).is_file():
        return Path(capture)
    return None


def draw_slowest(captures: Sequence[object], rows: np.ndarray | None) -> list[str | None]:
    """An SVG ladder for each of `rows` (None where it cannot be drawn: a capture
    read from a pipe cannot be read twice; a connection whose packets do not parse)."""
    if rows is None or not len(rows):
        return []
    paths = [_rereadable(c) for c in captures]
    if not paths or None in paths:
        return [None] * len(rows)
    from fasttcp.diagram import ladders_from_capture

    with tempfile.TemporaryDirectory(prefix="fasttcp-report-") as tmp:
        small = Path(tmp) / "slowest.pcap"
        try:
            got = extract(paths, rows, small)       # type: ignore[arg-type]  # no None, checked above
            drawn = ladders_from_capture(small, [(_flow(row), int(row["start_us"]) / 1e6) for row in rows])
        except (OSError, CaptureError, UsageError):  # the capture changed or went away since
            return [None] * len(rows)
    return [ladder.render("svg") if n else None for ladder, n in zip(drawn, got, strict=True)]


def _flow(row: np.ndarray) -> tuple[str, int, str, int]:
    fam = int(row["family"])
    return _address(fam, row["orig_h"]), int(row["orig_p"]), _address(fam, row["resp_h"]), int(row["resp_p"])
