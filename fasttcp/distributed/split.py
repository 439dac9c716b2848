"""Split (the map step): read one chunk and write its packets, shard by shard, to a
piece file in the shuffle directory.

A piece file holds, for each batch of the chunk (a "unit": a pcap chunk is one batch;
a pcapng file is read in batches) and each shard k, a segment: shard k's packets of
the batch as pcap records (packed in C by `pack_records`, the 16-byte record header
kept as a separator the reduce skips), then their lengths and clocks (int64), link
verdicts and snapped flags (uint8); after each unit's segments, its instants (int64).
The footer: a unit table (int64 per unit: instants offset, instants count, last
clock) and a segment table (int64 per unit and shard: offset, packets, record
bytes), so a reduce reads its own row of each. The shard of a packet is the symmetric flow hash's
(`shard_of_batch`), so both directions of a connection land in one shard. Each
packet's timestamp is replaced by the whole stream's clock at it, and the batch's
instants go with it (fasttcp/distributed/clock.py): what the reduce needs to expire
exactly as one tracker does.

A task's own memory is its scan arrays (41 bytes a packet) and the sort's (about as
much again), and the block records are packed into: a pcap chunk is mapped from
the page cache, not copied, and the pieces are written a block at a time. The file
is written under a temporary name and renamed, so a task that Dask runs again (its
worker died) leaves the same file, and a reader never sees half one.
"""
from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from fasttcp.capture.reader import CaptureBatch, CaptureError, read_pcap
from fasttcp.capture.records import RECORD_HEADER_BYTES, pack_records
from fasttcp.capture.scanner import MAX_PACKETS, MAX_RECORD, CaptureScanner
from fasttcp.distributed.clock import local_clock
from fasttcp.distributed.index import MIN_RECORD_BYTES, Chunk

__all__ = ["ChunkPieces", "split_chunk", "piece_path", "SEGMENT_FIELDS", "UNIT_FIELDS"]

#: per segment: (file offset, packets, packed record bytes)
SEGMENT_FIELDS = 3
#: per unit: (file offset of its instants, their count, its last clock)
UNIT_FIELDS = 3
#: pcapng batches of a split task: its memory, with the pieces
PCAPNG_BATCH_BYTES = 64 << 20
_SCAN_CORRUPT = 2


@dataclass
class ChunkPieces:
    """What a split task returns: where its piece file is (its tables in the file's
    footer, see `split_chunk`, so that what every reduce receives stays small: a few
    numbers a chunk, not a row per shard); for a chunk that is a whole file (not
    indexed), also how reading it ended, as `FileIndex` says it for an indexed one."""

    chunk: Chunk
    path: str
    units: int                       # batches of the chunk
    shards: int
    footer: int                      # file offset of the unit table
    packets: int
    piece_bytes: int                 # bytes written: the chunk's share of the shuffle
    bytes: int = 0                   # file bytes consumed (a whole-file chunk)
    truncated_tail: int = 0
    error: str | None = None


@dataclass
class _ReadEnd:
    """How the batches of a chunk ended."""

    bytes: int = 0
    truncated_tail: int = 0
    error: str | None = None


def piece_path(shuffle_dir: str, chunk: Chunk) -> str:
    """The piece file of `chunk` (one name per chunk of a run: a rerun overwrites it)."""
    return os.path.join(shuffle_dir, f"{chunk.file_no:06d}-{chunk.seq:08d}.pieces")


def _pcap_batches(chunk: Chunk, header: tuple[bool, bool, int, int], end: _ReadEnd) -> Iterator[CaptureBatch]:
    """The records of a pcap chunk, read whole and scanned in C. An indexed chunk is
    whole records; a whole-file chunk may end in a corrupt or cut-short record, which
    `end` tells as one process would (a corrupt one re-read by `read_pcap`, whose
    message is the one process's)."""
    size = chunk.end - chunk.start
    buf = _map_chunk(chunk) if size else np.empty(0, np.uint8)
    scanner = CaptureScanner()
    scanner.start_pcap(*header)
    pos = 0
    while pos < size:
        status, n, new, _need, arrays = scanner.scan(buf, pos, size, min(MAX_PACKETS, size // MIN_RECORD_BYTES + 1))
        if n:
            off, ln, ts, wl, vd, ifc, fr, snapped = arrays
            yield CaptureBatch(buf, off, ln, ts, wl, vd, ifc, fr, snapped)
            pos = new
        if (status == _SCAN_CORRUPT or n == 0) and not chunk.whole:
            raise CaptureError(f"changed while read (no record at chunk byte {pos})", path=chunk.path)
        if status == _SCAN_CORRUPT:
            end.bytes, end.error = _reader_error(chunk.path)
            return
        if n == 0:
            end.truncated_tail = size - pos            # the file's last record is cut short
            break
    end.bytes = chunk.start + pos


def _map_chunk(chunk: Chunk) -> np.ndarray:
    """The chunk's bytes, mapped from the file (read-only) rather than read into a
    buffer: the page cache's pages, with no copy and no fresh memory. A fresh 128 MiB
    buffer a task costs the kernel zeroed pages (and, in a virtual machine that hands
    freed memory back to its host, the host's faults: 0.3-0.7 s a buffer where reused
    memory takes 0.03, docs/distributed.md), more than the copy itself. The file is
    checked long enough first; a file cut shorter while mapped would fault (SIGBUS) the
    worker, which Dask restarts and whose task it reruns -- and the rerun then finds
    it short."""
    with open(chunk.path, "rb") as f:
        if os.fstat(f.fileno()).st_size < chunk.end:
            raise CaptureError(f"changed while read (chunk {chunk.start}..{chunk.end} is short)", path=chunk.path)
        at = chunk.start - chunk.start % mmap.ALLOCATIONGRANULARITY
        try:
            # MAP_POPULATE (Linux): the pages mapped in one call, not a fault per 64 KiB
            m = mmap.mmap(f.fileno(), chunk.end - at, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0),
                          prot=mmap.PROT_READ, offset=at)
        except OSError:                              # a file system that cannot map files: read it
            buf = np.empty(chunk.end - chunk.start, np.uint8)
            if read_at(f.fileno(), buf, chunk.start) != len(buf):
                raise CaptureError(f"changed while read (chunk {chunk.start}..{chunk.end} is short)",
                                   path=chunk.path) from None
            return buf
    return np.frombuffer(m, np.uint8, chunk.end - chunk.start, chunk.start - at)


def read_at(fd: int, buf: np.ndarray, offset: int) -> int:
    """Read file `fd` from `offset` into `buf` until it is full or the file ends; the
    bytes read. One read may return fewer than asked short of the end: Linux's cut at
    0x7ffff000 bytes (a pcapng file's piece, one chunk however large, passes it), and
    a network or FUSE file system's -- the ones that cannot map files."""
    view, got = buf.data.cast("B"), 0
    while got < len(view):
        n = os.preadv(fd, [view[got:]], offset + got)
        if not n:
            break
        got += n
    return got


def _reader_error(path: str) -> tuple[int, str | None]:
    """(bytes consumed, message) where `read_pcap` stops at a corrupt record."""
    with read_pcap(path, batch_bytes=PCAPNG_BATCH_BYTES) as reader:
        try:
            while reader.read_batch() is not None:
                pass
        except CaptureError as e:
            return reader.stats.bytes, str(e)
        return reader.stats.bytes, None


def _pcapng_batches(chunk: Chunk, end: _ReadEnd) -> Iterator[CaptureBatch]:
    """A pcapng file's batches, up to a corrupt record."""
    with read_pcap(chunk.path, batch_bytes=PCAPNG_BATCH_BYTES) as reader:
        while True:
            try:
                batch = reader.read_batch()
            except CaptureError as e:
                end.error = str(e)
                batch = None
            if batch is None:
                end.bytes, end.truncated_tail = reader.stats.bytes, reader.stats.truncated_tail
                return
            yield batch


#: records packed at a time, into one block the task reuses: still in the cache when
#: it is written, where an array of the chunk's records is fresh memory every task --
#: page faults and zeroed pages, every task in a Dask worker: its nanny sets
#: MALLOC_TRIM_THRESHOLD_, which pins glibc's mmap threshold at 128 KiB, so every
#: larger block is mapped afresh and unmapped when freed
PACK_BLOCK_BYTES = 1 << 20


def _write_unit(f: BinaryIO, batch: CaptureBatch, shard: np.ndarray, shards: int, clock: np.ndarray,
                block: np.ndarray) -> np.ndarray:
    """Append each shard's segment of `batch` to `f`; their (offset, packets, bytes).
    The packets are ordered by shard once (a stable sort keeps each shard's in capture
    order) and packed into `block` (at least `PACK_BLOCK_BYTES` + a record) at a time."""
    segments = np.zeros((shards, SEGMENT_FIELDS), np.int64)
    order = np.argsort(shard, kind="stable")
    counts = np.bincount(shard, minlength=shards)
    lengths = np.asarray(batch.lengths, np.int64)[order]
    offsets = np.asarray(batch.offsets)[order]
    record_ends = np.cumsum(lengths + RECORD_HEADER_BYTES)
    # where each block starts: a packet index, cut at every shard's first packet too
    shard_starts = np.concatenate([[0], np.cumsum(counts)])
    block_starts = np.searchsorted(record_ends, np.arange(0, int(record_ends[-1]) if len(order) else 0,
                                                          PACK_BLOCK_BYTES), side="right")
    cuts = np.union1d(block_starts, shard_starts)
    parts = (lengths, clock[order], np.asarray(batch.verdicts)[order], np.asarray(batch.snapped)[order].view(np.uint8))
    zeros = np.zeros(min(len(order), int(np.diff(cuts).max()) if len(cuts) > 1 else 0), np.int64)
    for k in range(shards):
        first, last = int(shard_starts[k]), int(shard_starts[k + 1])
        n = last - first
        lo = int(record_ends[first - 1]) if first else 0
        hi = int(record_ends[last - 1]) if n else lo
        segments[k] = (f.tell(), n, hi - lo)
        if not n:
            continue
        bounds = cuts[(cuts >= first) & (cuts <= last)]
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            records, _ = pack_records(batch.buffer, offsets[a:b], lengths[a:b], zeros[: b - a], lengths[a:b],
                                      snaplen=MAX_RECORD, out=block)
            f.write(records.data)
        for part in parts:
            f.write(np.ascontiguousarray(part[first:last]).data)
    return segments


def split_chunk(chunk: Chunk, pcap_header: tuple[bool, bool, int, int] | None, shards: int, reta: int,
                shuffle_dir: str) -> ChunkPieces:
    """Read `chunk`, shard its packets into `shards` (indirection table of `reta`
    entries, as `fasttcp.analyze` with that many workers) and write its piece file."""
    from fasttcp.wire.rss import shard_of_batch

    path = piece_path(shuffle_dir, chunk)
    tmp = f"{path}.{os.getpid()}.tmp"
    unit_rows, segment_rows, packets, before = [], [], 0, 0
    end = _ReadEnd()
    # a block holds up to PACK_BLOCK_BYTES and the record that crosses it; the pages
    # beyond what the records use are never touched, so never allocated
    block = np.empty(PACK_BLOCK_BYTES + RECORD_HEADER_BYTES + MAX_RECORD, np.uint8)
    batches = _pcap_batches(chunk, pcap_header, end) if pcap_header is not None else _pcapng_batches(chunk, end)
    try:
        with open(tmp, "wb") as f:
            for batch in batches:
                clock, instants = local_clock(batch.ts_ns, before)
                shard = np.asarray(shard_of_batch(batch, shards, reta_size=reta))
                segment_rows.append(_write_unit(f, batch, shard, shards, clock, block))
                before = int(clock[-1]) if len(clock) else before
                unit_rows.append((f.tell(), len(instants), before))
                f.write(np.ascontiguousarray(instants, np.int64).data)
                packets += len(batch)
            footer = f.tell()
            f.write(np.array(unit_rows, np.int64).reshape(-1, UNIT_FIELDS).data)
            f.write(np.array(segment_rows, np.int64).reshape(-1, shards, SEGMENT_FIELDS).data)
            size = f.tell()
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return ChunkPieces(chunk, path, len(unit_rows), shards, footer, packets, size, end.bytes, end.truncated_tail,
                       end.error)
