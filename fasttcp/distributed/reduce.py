"""Reduce: one shard's tracker over its pieces of every chunk, in capture order.

Each piece file is mapped and the shard's segment of it read in place, one at a time
(memory: a segment's merged arrays plus the shard's live connections; the segment's
bytes are the shuffle directory's pages, not copied), its clocks corrected with the
clock the chunks before it left (`carry`), the whole stream's tick instants merged in
as packets of another shard, and fed to one `Tracker`: it finishes the rows one
tracker fed the whole capture finishes for this shard's connections
(fasttcp/distributed/clock.py says why).
"""
from __future__ import annotations

import mmap
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from fasttcp.analysis.config import AnalyzeConfig
from fasttcp.analysis.summary import Summary
from fasttcp.capture.reader import CaptureBatch
from fasttcp.capture.records import RECORD_HEADER_BYTES
from fasttcp.distributed.clock import carry_clock, carry_instants
from fasttcp.distributed.split import SEGMENT_FIELDS, UNIT_FIELDS, ChunkPieces, read_at
from fasttcp.tracker.tracker import FLOW_DTYPE

__all__ = ["ShardResult", "track_shard"]


@dataclass
class ShardResult:
    """A shard's rows (FLOW_DTYPE, in the order its tracker finished them) and counts;
    `rows_summary` holds its rows folded (`Summary.add_rows`), here, in parallel with
    the other shards, rather than in the client after them."""

    shard: int
    rows: np.ndarray
    packets: int = 0
    verdicts: Counter = field(default_factory=Counter)
    memory_bytes: int = 0
    rows_summary: Summary = field(default_factory=Summary)


def _cut_short(path: str) -> OSError:
    return OSError(f"{path}: piece file cut short (a shuffle directory not shared by all workers?)")


def _corrupt(path: str, what: str) -> OSError:
    return OSError(f"{path}: piece file corrupt ({what})")


def _segment(piece: np.ndarray, path: str, offset: int, n: int, nbytes: int) -> tuple[np.ndarray, ...]:
    """A segment's (records, lengths, clocks, verdicts, snapped): views of the mapped
    piece file."""
    if offset < 0 or n < 0 or nbytes < 0:
        # the split writes none: a negative one would slice from the map's end
        raise _corrupt(path, f"segment at {offset}: {n} packets, {nbytes} bytes")
    size = nbytes + n * (8 + 8 + 1 + 1)
    if offset + size > len(piece):
        raise _cut_short(path)
    raw = piece[offset: offset + size]
    at = nbytes
    lengths = raw[at: at + 8 * n].view(np.int64)
    clocks = raw[at + 8 * n: at + 16 * n].view(np.int64)
    verdicts = raw[at + 16 * n: at + 17 * n]
    snapped = raw[at + 17 * n: at + 18 * n].view(np.bool_)
    # the records' bytes are where the lengths say (`_merged_batch` derives the offsets
    # from them): a mismatch is a changed file, named here rather than as a tracker's
    # span error on a packet of the merged batch
    if n and (int(lengths.min()) < 0 or int(lengths.sum()) + RECORD_HEADER_BYTES * n != nbytes):
        raise _corrupt(path, f"segment at {offset}: its lengths do not add up to its {nbytes} record bytes")
    return raw[:nbytes], lengths, clocks, verdicts, snapped


def _merged_batch(segment: tuple[np.ndarray, ...], instants: np.ndarray, carry: int) -> tuple[CaptureBatch, np.ndarray]:
    """The segment's packets with the instants merged in before the first packet at or
    past each (the clock is monotone), and the select mask that leaves the instants out."""
    records, lengths, clocks, verdicts, snapped = segment
    n = len(lengths)
    offsets = np.empty(n, np.int64)
    if n:
        # record i's data follows i+1 record headers and the data of records 0..i-1
        offsets[0] = RECORD_HEADER_BYTES
        np.cumsum(lengths[:-1] + RECORD_HEADER_BYTES, out=offsets[1:])
        offsets[1:] += RECORD_HEADER_BYTES
    clock = carry_clock(clocks, carry)
    at = np.searchsorted(clock, instants, side="left")
    ts_ns = np.insert(clock, at, instants) * 1000
    m = n + len(instants)
    batch = CaptureBatch(records, np.insert(offsets, at, 0), np.insert(lengths, at, 0), ts_ns,
                         np.zeros(m, np.uint32), np.insert(verdicts, at, 0), np.zeros(m, np.uint16),
                         np.zeros(m, np.int64), np.insert(snapped, at, False))
    return batch, np.insert(np.ones(n, np.bool_), at, False)


def _int64(piece: np.ndarray, path: str, offset: int, count: int) -> np.ndarray:
    if offset < 0 or count < 0:
        raise _corrupt(path, f"{count} values at {offset}")
    if offset + 8 * count > len(piece):
        raise _cut_short(path)
    return piece[offset: offset + 8 * count].view(np.int64)


def _map_piece(path: str) -> np.ndarray:
    """The piece file, mapped read-only: the reduce reads its segments where the split
    wrote them (the shuffle directory's page cache, /dev/shm's memory by default)
    rather than copying each into fresh buffers. A piece file is the run's own,
    complete (written aside and renamed) and never cut while the run lasts. In a
    shuffle directory that cannot map files the piece is read whole instead (a chunk's
    worth of memory)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if not size:
            return np.empty(0, np.uint8)
        try:
            return np.frombuffer(mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ), np.uint8)
        except OSError:
            buf = np.empty(size, np.uint8)
            return buf[: read_at(f.fileno(), buf, 0)]     # cut short since: _cut_short later


def _units(piece_map: np.ndarray, piece: ChunkPieces, k: int) -> Iterator[tuple[list[int], np.ndarray, int]]:
    """Each unit's (segment row of shard k, instants, last clock), from the footer."""
    table = _int64(piece_map, piece.path, piece.footer, piece.units * UNIT_FIELDS).reshape(-1, UNIT_FIELDS)
    segments = _int64(piece_map, piece.path, piece.footer + table.nbytes, piece.units * piece.shards * SEGMENT_FIELDS)
    rows = segments.reshape(piece.units, piece.shards, SEGMENT_FIELDS)[:, k].tolist()
    for u, (at, count, last) in enumerate(table.tolist()):
        yield rows[u], _int64(piece_map, piece.path, at, count), last


def track_shard(k: int, pieces: list[ChunkPieces], cfg: AnalyzeConfig, capacity: int) -> ShardResult:
    """Shard `k`'s tracker over its segments of `pieces` (in capture order)."""
    from fasttcp.analysis.run import make_tracker

    tracker = make_tracker(cfg, capacity)
    rows: list[np.ndarray] = []
    carry = 0
    for piece in pieces:
        piece_map = _map_piece(piece.path)
        for (offset, n, nbytes), local_instants, last in _units(piece_map, piece, k):
            instants = carry_instants(local_instants, carry)
            if n or len(instants):
                segment = _segment(piece_map, piece.path, offset, n, nbytes) if n else _empty_segment()
                batch, select = _merged_batch(segment, instants, carry)
                tracker.feed_batch(batch, select=select)
                rows.append(tracker.finished())
            carry = max(carry, last)
    rows.append(tracker.close())
    st = tracker.stats
    out = np.concatenate(rows) if rows else np.empty(0, FLOW_DTYPE)
    folded = Summary()
    folded.add_rows(out)
    return ShardResult(k, out, st["packets"], Counter(st["verdicts"]), tracker.memory_bytes, folded)


def _empty_segment() -> tuple[np.ndarray, ...]:
    return (np.zeros(1, np.uint8), np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.uint8),
            np.empty(0, np.bool_))
