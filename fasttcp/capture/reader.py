"""Read and write capture files: pcap and pcapng in, segment batches out (an edge).

``for batch in fasttcp.read_pcap(path): ...`` streams a capture of any size in
batches of at most `batch_packets` packets / about `batch_bytes` bytes, so memory is
bounded by the batch, not the file. Each `CaptureBatch` is the project's segment
batch -- one buffer plus numpy offsets/lengths/timestamps -- with the link layer
already stripped: offsets point at IP headers, and ``verdicts`` says, per packet,
whether the link layer was understood (`fasttcp.Verdict.OK`) or why not (NOT_IP,
UNSUPPORTED_LINK, LINK_TRUNCATED). Pass a batch straight to `Tracker.feed_batch` or
`parse_batch(batch.buffer, batch.offsets, batch.lengths)`.

Formats: pcap in both byte orders with micro- or nanosecond timestamps; pcapng with
any number of sections (either byte order), interfaces with their own link types and
timestamp resolutions (if_tsresol, if_tsoffset), Enhanced, Simple and the obsolete
Packet blocks. The record walk is C (fasttcp/capture/scanner.pyx) because it sits on
the `fasttcp analyze` hot path; this module only reads the file into buffers.
"""
from __future__ import annotations

import errno
import os
import select
import stat
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from io import BufferedReader
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np

from fasttcp.capture.chunks import HEADROOM, Chunk, FileChunks
from fasttcp.capture.mapped import FaultTally, guard
from fasttcp.capture.scanner import MAX_PACKETS, MAX_RECORD, CaptureScanner, scan_arrays, strip_link
from fasttcp.capture.writer import (
    LINKTYPE_ETHERNET,
    LINKTYPE_RAW,
    PcapWriter,
    check_linktype,
    check_ns,
    check_snaplen,
    seconds_to_ns,
)
from fasttcp.errors import CaptureError, UsageError
from fasttcp.wire.rss import RssShards

__all__ = [
    "CaptureBatch",
    "CaptureError",
    "CaptureReader",
    "read_pcap",
    "write_pcap",
    "strip_link",
    "LINKTYPE_ETHERNET",
    "LINKTYPE_RAW",
]

# batch_bytes: a batch's buffer is allocated whole (and may grow by MAX_RECORD twice);
# a gigabyte is more than any batch needs
MAX_BATCH_BYTES = 1 << 30
# buffers kept for reuse: each is a batch's worth of memory, held for the reader's life
MAX_BUFFERS = 16

_PCAP_MAGICS = {
    # magic as read little-endian -> (big-endian file?, nanosecond?)
    0xA1B2C3D4: (False, False),
    0xA1B23C4D: (False, True),
    0xD4C3B2A1: (True, False),
    0x4D3CB2A1: (True, True),
}
_PCAPNG_SHB = 0x0A0D0D0A

# With shards (several trackers on other threads), the first batches are smaller:
# RAMP_BATCHES of them, 1/2**RAMP_BATCHES of batch_packets first, doubling, and never
# below RAMP_MIN_PACKETS (where a batch's own costs start to show)
RAMP_BATCHES = 3
RAMP_MIN_PACKETS = 1024

# With shards, a file is read in chunks of at most 1/SHARDED_MIN_BATCHES of its size
# (halving batch_bytes, down to SHARDED_MIN_CHUNK): see sharded_chunk_bytes
SHARDED_MIN_BATCHES = 32
SHARDED_MIN_CHUNK = 1 << 20

_SCAN_MORE, _SCAN_FULL, _SCAN_CORRUPT = 0, 1, 2


def sharded_chunk_bytes(batch_bytes: int, size: int) -> int:
    """The chunk a file of `size` bytes is read in when its batches are tracked on other
    threads (a reader with ``shards``): `batch_bytes`, halved while the file would be
    fewer than SHARDED_MIN_BATCHES chunks, never below SHARDED_MIN_CHUNK (nor above
    `batch_bytes`). Why: a run pays a batch read and scanned before any tracking
    starts, a few batches tracked after the reading ends, and fresh zeroed memory for
    every buffer (`shards.BUFFERS` batches); a file of a few batches pays them in full
    (measured on the 97 MB short-connection capture of `fasttcp bench`, 2 workers
    against 1: 8 MiB chunks 1.42x, 2 MiB 1.51x), while in one of many they vanish and
    the larger chunk's lower per-batch cost wins (the 1 GiB capture: 8 MiB 1.58x, 2 MiB
    1.30x)."""
    chunk = batch_bytes
    while chunk > SHARDED_MIN_CHUNK and chunk * SHARDED_MIN_BATCHES > size:
        chunk //= 2
    return max(chunk, min(batch_bytes, SHARDED_MIN_CHUNK))
# room for at least this much new data in a batch's buffer beyond the bytes carried over
_MIN_READ = 4096


@dataclass(frozen=True)
class CaptureBatch:
    """A batch of captured packets: one buffer plus a row per packet.

    ``buffer[offsets[i] : offsets[i] + lengths[i]]`` is packet i's IP packet as
    captured (link layer stripped; it may be shorter than the wire length when the
    capture's snap length cut it). Arrays:

    - ``offsets``, ``lengths`` (int64): where each IP packet sits in `buffer`.
    - ``ts_ns`` (int64): capture time in nanoseconds since the epoch (0 where the
      format has none, e.g. pcapng Simple Packet Blocks).
    - ``wire_lengths`` (uint32): the frame's length on the wire, link layer included.
    - ``verdicts`` (uint8): `fasttcp.Verdict` of the link layer (OK, NOT_IP,
      UNSUPPORTED_LINK, LINK_TRUNCATED); IP/TCP verdicts come from parsing.
    - ``interfaces`` (uint16): pcapng interface index (0 for pcap).
    - ``frames`` (int64): 1-based frame number in the file, as Wireshark counts.
    - ``snapped`` (bool): the capture's snap length cut the frame (captured < wire
      length). A packet shorter than its IP length that was *not* snapped was short on
      the wire: its length fields lie.
    - ``shards`` (uint16, or None): each packet's shard, when the reader was given a
      sharding (``read_pcap(..., shards=RssShards(n))``): what `shard_of_batch` gives.

    Read with ``buffers=0`` (`read_pcap`'s default) the batch owns its buffer and
    arrays: keeping it alive keeps them. With ``buffers=k`` both are the reader's,
    written again k batches later, or once released (`CaptureReader.release`): `copy`
    keeps a batch beyond that.
    """

    buffer: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    ts_ns: np.ndarray
    wire_lengths: np.ndarray
    verdicts: np.ndarray
    interfaces: np.ndarray
    frames: np.ndarray
    snapped: np.ndarray
    shards: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.offsets.shape[0])

    @property
    def timestamps(self) -> np.ndarray:
        """Capture times in float seconds (microsecond precision survives until ~2255)."""
        return self.ts_ns / 1e9

    def packet(self, i: int) -> bytes:
        """Packet i's bytes (IP header onwards)."""
        o = int(self.offsets[i])
        return self.buffer[o: o + int(self.lengths[i])].tobytes()

    def copy(self) -> CaptureBatch:
        """A batch with a compact buffer and arrays of its own: for keeping a batch whose
        buffer is borrowed (a live capture's ring view is valid until its next batch)."""
        lengths = np.asarray(self.lengths, dtype=np.int64)
        offsets = np.zeros(len(lengths), np.int64)
        np.cumsum(lengths[:-1], out=offsets[1:])
        buf = np.empty(int(lengths.sum()), np.uint8)
        for i in range(len(lengths)):
            o, n = int(self.offsets[i]), int(lengths[i])
            buf[int(offsets[i]): int(offsets[i]) + n] = self.buffer[o: o + n]
        return CaptureBatch(buf, offsets, lengths.copy(), self.ts_ns.copy(), self.wire_lengths.copy(),
                            self.verdicts.copy(), self.interfaces.copy(), self.frames.copy(),
                            self.snapped.copy(), None if self.shards is None else self.shards.copy())


@dataclass
class CaptureStats:
    """What a reader has seen so far."""

    packets: int = 0
    bytes: int = 0                    # file bytes consumed
    link_verdicts: dict[int, int] = field(default_factory=dict)
    truncated_tail: int = 0           # bytes of an incomplete last record (0 = none)
    blocks_skipped: int = 0           # pcapng blocks fasttcp has no use for (statistics, names, ...)
    bad_interface: int = 0            # pcapng packets naming an undescribed interface (or one
                                      # past the 65535 a section may describe)
    bad_timestamp: int = 0            # packets whose time is not in 0..2**63-1 ns (ts_ns 0 instead)


class _Window:
    """What is left to scan of a regular file's buffer: ``buf[pos:end]``, where
    ``buf[0]`` is file offset `base`; `eof`: the file ends at `end`. `chunk` is the
    chunk whose buffer it is (None: a buffer of its own)."""

    __slots__ = ("base", "buf", "chunk", "end", "eof", "pos")

    def __init__(self, chunk: Chunk | None, buf: np.ndarray, pos: int, end: int, base: int, eof: bool) -> None:
        self.chunk = chunk
        self.buf = buf
        self.pos = pos
        self.end = end
        self.base = base
        self.eof = eof


def cut_message(tally: FaultTally) -> str | None:
    """What a reader's `fault_tally` says of its file: None if it was not found cut."""
    if not tally.pages and not tally.shrunk:
        return None
    gone = f"{tally.pages} pages past its new end mapped as zeros" if tally.pages else "read past its new end"
    return f"the file was cut shorter while it was read ({gone}: the packets read there are not to be trusted)"


class CaptureReader:
    """Iterate a capture file as `CaptureBatch` objects; see `read_pcap`."""

    def __init__(self, path: str | Path, *, batch_packets: int = 65536,
                 batch_bytes: int = 8 << 20, buffers: int = 0, shards: RssShards | None = None,
                 mapped: bool = True) -> None:
        # both size allocations made up front (41 bytes of arrays per packet, the buffer)
        if isinstance(batch_packets, bool) or not isinstance(batch_packets, int) \
                or not 1 <= batch_packets <= MAX_PACKETS:
            raise UsageError(f"batch_packets must be an int in 1..{MAX_PACKETS}, got {batch_packets!r}")
        if isinstance(batch_bytes, bool) or not isinstance(batch_bytes, int) \
                or not 4096 <= batch_bytes <= MAX_BATCH_BYTES:
            raise UsageError(f"batch_bytes must be an int in 4096..{MAX_BATCH_BYTES}, got {batch_bytes!r}")
        if isinstance(path, str) and not path:
            # as open("") says: Path("") would be ".", a directory, named as if given
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        self.path = Path(path)
        self.batch_packets = batch_packets
        self.batch_bytes = batch_bytes
        if isinstance(buffers, bool) or not isinstance(buffers, int) or not 0 <= buffers <= MAX_BUFFERS:
            raise UsageError(f"buffers must be an int in 0..{MAX_BUFFERS}, got {buffers!r}")
        self.buffers = buffers
        if not isinstance(mapped, bool):
            raise UsageError(f"mapped must be a bool, got {mapped!r}")
        if shards is not None and not isinstance(shards, RssShards):
            raise UsageError(f"shards must be a fasttcp.wire.rss.RssShards or None, got {type(shards).__name__}")
        #: the sharding the scanner computes for every packet (`CaptureBatch.shards`), or None
        self.shards = shards
        self._ring: list[np.ndarray | None] = [None] * buffers
        self._turn = 0
        # the sets of arrays the scanner writes each batch's rows into (`_scan_set`),
        # kept for the next batches: new ones for every batch cost page faults on every
        # batch -- glibc hands back the memory of the last ones before the next are
        # allocated (about 40% of the faults of an analyze run). Each [the batch,
        # counted from 1, whose rows it holds; its arrays; its shards or None], one list
        # so that a Ctrl-C can never leave a set half added
        self._scan_sets: list[list] = []
        self._released = 0               # batches the consumer said it is done with
        self._batch_shards: np.ndarray | None = None
        self._batches = 0
        self.stats = CaptureStats()
        self._f: BufferedReader = open(self.path, "rb")  # noqa: SIM115  -- owned until close(); errors propagate as is
        try:
            st = os.fstat(self._f.fileno())
            self.size = st.st_size
            self._scanner = CaptureScanner()
            self._start()
        except BaseException:
            self._f.close()
            raise
        self._eof = False
        self._error: CaptureError | None = None
        # a regular file is read at known offsets (other threads may read ahead: see
        # fill_ahead); a pipe, FIFO or device in order, as it comes
        self._chunks: FileChunks | None = None
        if stat.S_ISREG(st.st_mode):
            chunk = batch_bytes if shards is None else sharded_chunk_bytes(batch_bytes, st.st_size)
            self._chunks = FileChunks(self._f.fileno(), self._file_pos + len(self._pending), chunk, buffers,
                                      mapped=mapped)
            self._carry = self._pending
            self._window: _Window | None = None

    def _start(self) -> None:
        head = self._f.read(24)
        self._magic = head[:4]           # (read again to see that the file was not cut and rewritten)
        if not head:
            raise CaptureError("empty file (no capture header)", path=self.path)
        if len(head) < 4:
            raise CaptureError(f"file too short for a capture header ({len(head)} bytes)", path=self.path)
        magic = struct.unpack("<I", head[:4])[0]
        if magic == _PCAPNG_SHB:
            self.format = "pcapng"
            self._scanner.start_pcapng()
            self._pending = head
            self._file_pos = 0
            return
        if magic not in _PCAP_MAGICS:
            raise CaptureError(f"not a pcap or pcapng file (magic 0x{magic:08x})", path=self.path, offset=0)
        if len(head) < 24:
            raise CaptureError(f"pcap header cut short ({len(head)} of 24 bytes)", path=self.path)
        big, nano = _PCAP_MAGICS[magic]
        _, major, minor, _, _, snaplen, linktype = struct.unpack(">IHHiIII" if big else "<IHHiIII", head)
        if major != 2:
            raise CaptureError(f"unsupported pcap version {major}.{minor}", path=self.path, offset=4)
        self.format = "pcap"
        self.nanosecond = nano
        self.big_endian = big
        self.snaplen = snaplen
        self._scanner.start_pcap(big, nano, linktype, snaplen)
        self._pending = b""
        self._file_pos = 24

    @property
    def linktypes(self) -> list[int]:
        """Link type per interface (pcap: one; pcapng: those described so far)."""
        return self._scanner.linktypes()

    def __iter__(self) -> Iterator[CaptureBatch]:
        return self

    def __next__(self) -> CaptureBatch:
        batch = self.read_batch()
        if batch is None:
            raise StopIteration
        return batch

    def read_batch(self) -> CaptureBatch | None:
        """The next batch, or None at the end of the file. Raises CaptureError for a
        corrupt record (after delivering the packets before it) or a file cut shorter
        while its mapped chunks were read (`cut_pages`), and UsageError once the reader
        is closed."""
        if self._f.closed:
            raise UsageError(f"{self.path}: read from a closed CaptureReader")
        if self._error is not None:
            self._eof = True
            err, self._error = self._error, None
            raise err
        if self._chunks is not None:
            self._check_unchanged()
        if self._eof:
            return None
        if self._chunks is not None:
            return self._read_file_batch()
        carry = self._pending
        # one buffer per batch, taken once: with ``buffers=k`` the other k-1 may still
        # be read by whoever holds the last batches (analyze's tracker threads)
        buf = self._buffer(max(self.batch_bytes, len(carry) + _MIN_READ))
        buf[: len(carry)] = np.frombuffer(carry, dtype=np.uint8)
        end = len(carry)
        while True:
            got = self._fill(buf.data[end:])
            end += got
            at_eof = not got
            status, n, pos, need, arrays = self._scan(buf, 0, end)
            if status == _SCAN_CORRUPT:
                # deliver the good packets before the corruption; raise on the next call
                self._error = CaptureError(
                    f"corrupt record (length field reads {self._field_at(buf, pos, need)})",
                    path=self.path, offset=self._file_pos + pos + need)
                if n == 0:
                    # the stats count the blocks skipped up to the corrupt record, as a
                    # file read in chunks counts them: not up to where a batch had ended
                    self.stats.bytes = self._file_pos + pos
                    self._scanned_stats()
                    self._eof = True
                    raise self._error
            elif n == 0 and status == _SCAN_MORE and not at_eof:
                # no whole record yet: drop the blocks read (pcapng blocks without
                # packets, whose effect the scanner has kept), then read more -- into
                # this buffer, grown only if the record cannot fit (a pipe may simply
                # not have the rest of it yet)
                if pos:
                    buf[: end - pos] = buf[pos:end].copy()
                    end -= pos
                    self._file_pos += pos
                if end == len(buf):
                    buf = self._grow(buf, end, max(2 * len(buf), need + _MIN_READ))
                continue
            break
        self._pending = buf[pos:end].tobytes()
        self._file_pos += pos
        self.stats.bytes = self._file_pos
        if at_eof and status == _SCAN_MORE:
            self._eof = True
            self.stats.truncated_tail = end - pos
        self._scanned_stats()
        if n == 0:
            self._eof = True
            return None
        return self._batch(buf[:end], n, arrays)

    def release(self, batches: int) -> None:
        """Say that the first `batches` batches read are no longer used: their arrays
        may take the next batches' rows, and their buffers the bytes `fill_ahead` reads
        (before that, a batch stays valid until `buffers` more are read). For a consumer
        that tracks batches on other threads. UsageError for a count that is not an
        int >= 0."""
        if isinstance(batches, bool) or not isinstance(batches, int) or batches < 0:
            raise UsageError(f"release takes a count of batches read (an int >= 0), got {batches!r}")
        self._released = max(self._released, min(batches, self._batches))
        if self._chunks is not None:
            self._chunks.release(batches)

    def fill_ahead(self, limit: int = 2) -> bool:
        """Read the file's next chunk (a batch's worth of bytes) into a buffer released by
        `release`, in the calling thread, so that `read_batch` in another thread only
        scans it; at most `limit` chunks ahead. A file read through mappings has no
        bytes to copy: the page tables of its next chunk are filled instead, so that
        the scan takes no page faults there. False when there is nothing to do now: a
        pipe, ``buffers`` < 2 (copies), no buffer free, `limit` reached, or the end of
        the file. An error reading is raised by the `read_batch` that reaches it.
        UsageError for a `limit` that is not an int in 1..MAX_BUFFERS."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_BUFFERS:
            raise UsageError(f"fill_ahead's limit must be an int in 1..{MAX_BUFFERS}, got {limit!r}")
        if self._chunks is None or self._f.closed:
            return False
        return self._chunks.fill_ahead(limit)

    def _read_file_batch(self) -> CaptureBatch | None:
        """`read_batch` for a regular file: scan the current chunk's buffer from where the
        last batch ended; move to the next chunk (carrying the incomplete record this
        one ends with into its headroom) when nothing whole is left."""
        assert self._chunks is not None
        while True:
            w = self._window
            if w is None:
                w = self._window = self._next_window()
                if w is None:
                    self._check_unchanged()
                    return None
            status, n, pos, need, arrays = self._scan(w.buf, w.pos, w.end)
            self.stats.bytes = w.base + pos
            self._scanned_stats()
            self._check_unchanged()
            if status == _SCAN_CORRUPT:
                # deliver the good packets before the corruption; raise on the next call
                self._error = CaptureError(
                    f"corrupt record (length field reads {self._field_at(w.buf, pos, need)})",
                    path=self.path, offset=w.base + pos + need)
                if n == 0:
                    self._eof = True
                    raise self._error
            elif n == 0:
                # nothing whole in what is left of this buffer
                if w.eof:
                    self._eof = True
                    self.stats.truncated_tail = w.end - pos
                    return None
                if need > HEADROOM:
                    self._window = self._huge_window(w, pos, need)
                else:
                    self._carry = w.buf[pos:w.end].tobytes()
                    self._window = None
                    if w.chunk is not None:
                        self._chunks.done_with(w.chunk)
                continue
            w.pos = pos
            self._chunks.batch_from(w.chunk)
            return self._batch(w.buf[:w.end], n, arrays)

    @property
    def cut_pages(self) -> int:
        """Pages of the file's mappings found past its end -- the file was cut shorter
        while read -- and mapped as zeros: from the first page read there (scanned, or by
        whoever held the batch) to the end of its mapping, which may hold chunks not yet
        read. 0 for a file read whole, a pipe, or a reader with ``mapped=False``."""
        return self._chunks.tally.pages if self._chunks is not None else 0

    @property
    def fault_tally(self) -> FaultTally | None:
        """What the SIGBUS guard and the size checks found of this file being cut while
        its chunks were mapped (None for a pipe): for a consumer that goes on reading
        the batches after the reader is closed (`CaptureChain.check_unchanged`)."""
        return self._chunks.tally if self._chunks is not None else None

    def _check_unchanged(self) -> None:
        """CaptureError, now and at every later read, if the file was cut shorter while
        its mapped chunks were read: what was read past the cut was zeros, not packets --
        pages faulted past its end (`cut_pages`), or the file now shorter than what was
        mapped of it (a cut inside a page reads zeros without a fault)."""
        chunks = self._chunks
        if chunks is None or not chunks.mapped_end:
            return
        guard()                          # (another handler may have taken SIGBUS since)
        tally = chunks.tally
        if not tally.shrunk and self._cut_since_mapped():
            tally.shrunk = True
        message = cut_message(tally)
        if message is not None:
            self._eof = True
            raise CaptureError(message, path=self.path)

    def _cut_since_mapped(self) -> bool:
        """Whether the file was cut since its chunks were mapped, seen without a fault:
        shorter now than what was mapped of it (a cut inside a page reads zeros without
        one), or its first bytes no longer its format's magic number -- cut to nothing
        and written again past where it was cut by a writer that kept its offset (a
        `copytruncate` under tcpdump), which leaves a hole of zeros where the mapped
        pages were and the file no shorter."""
        if self._f.closed or self._chunks is None:
            return False
        try:
            fd = self._f.fileno()
            return os.fstat(fd).st_size < self._chunks.mapped_end or os.pread(fd, 4, 0) != self._magic
        except OSError:
            return False

    def _next_window(self) -> _Window | None:
        """The next chunk, with the carried incomplete record put before its bytes."""
        assert self._chunks is not None
        carry = self._carry
        ch = self._chunks.take()
        if ch is None:
            self._eof = True
            self.stats.truncated_tail = len(carry)
            return None
        self._carry = b""
        head = ch.pos - ch.base          # where the chunk's bytes start in its buffer
        if ch.mapped:
            # the file mapped from up to HEADROOM bytes before the chunk: the carried
            # record is there already (the file's bytes just before the chunk)
            return _Window(ch, ch.buf, head - len(carry), head + ch.got, ch.base, ch.eof)
        start = head - len(carry)
        ch.buf[start:head] = np.frombuffer(carry, dtype=np.uint8)
        return _Window(ch, ch.buf, start, head + ch.got, ch.base, ch.eof)

    def _huge_window(self, w: _Window, pos: int, need: int) -> _Window:
        """A record longer than a chunk's headroom (`need` bytes from `pos`): read it
        into a buffer of its own, here, and go on with the chunks after it."""
        assert self._chunks is not None
        if need > 2 * MAX_RECORD + self.batch_bytes:
            # (the scanner refuses a record over MAX_RECORD: a guard against one that did not)
            raise CaptureError("record larger than any real packet", path=self.path, offset=w.base + pos)
        have = w.end - pos
        big = np.empty(need, dtype=np.uint8)
        big[:have] = w.buf[pos:w.end]
        start = w.base + pos
        eof = False
        fd = self._f.fileno()
        while have < need:
            got = os.preadv(fd, [big.data[have:]], start + have)
            if not got:
                eof = True
                break
            have += got
        self._chunks.restart(start + have)
        if w.chunk is not None:
            # only now may other threads read into its buffer: interrupted (Ctrl-C)
            # before, the next read_batch starts this record from it again
            self._chunks.done_with(w.chunk)
        return _Window(None, big, 0, have, start, eof)

    def _scan(self, buf: np.ndarray, pos: int, end: int) -> tuple:
        """The scanner's scan of ``buf[pos:end]``, into the next batch's set of arrays (a
        batch with ``buffers=k`` is valid until k more are read: so are its arrays)."""
        out = sh = None
        if self.buffers:
            out, sh = self._scan_set()
        elif self.shards is not None:
            sh = np.empty(self.batch_packets, np.uint16)
        self._batch_shards = sh
        if sh is None:
            return self._scanner.scan(buf, pos, end, self.batch_packets, out=out)
        return self._scanner.scan(buf, pos, end, self._ramp_packets(), out=out, shards=self.shards, shard_out=sh)

    def _scan_set(self) -> tuple[tuple, np.ndarray | None]:
        """The arrays the next batch's rows go into (and its shards, when sharded): a set
        kept whose batch is `released` or `buffers` batches old (the contract of
        `read_pcap`), else a new one. A consumer that releases its batches (`analyze`
        with N workers: a batch in flight until collected) so keeps as many sets as it
        holds batches, not `buffers`, which also counts the chunk buffers read ahead
        into: two sets fewer, of every batch's first-touched pages, in each run."""
        b = self._batches + 1
        entry = free = None
        for e in self._scan_sets:
            if e[0] == b:
                entry = e                # a scan that found nothing whole, retried for b
                break
            if free is None and (e[0] <= self._released or e[0] <= b - self.buffers):
                free = e
        entry = entry or free
        if entry is None:
            entry = [0, scan_arrays(self.batch_packets), None]
            self._scan_sets.append(entry)
        if self.shards is not None and entry[2] is None:
            entry[2] = np.empty(self.batch_packets, np.uint16)
        entry[0] = b
        return entry[1], entry[2]

    def _ramp_packets(self) -> int:
        """The packets of the next sharded batch: the first RAMP_BATCHES are smaller,
        half as large as the one after each, so that the threads tracking the shards
        start after a fraction of a batch is scanned rather than a whole one; the rest
        `batch_packets`."""
        ramp = RAMP_BATCHES - self._batches
        if ramp <= 0:
            return self.batch_packets
        return max(min(RAMP_MIN_PACKETS, self.batch_packets), self.batch_packets >> ramp)

    def _scanned_stats(self) -> None:
        self.stats.blocks_skipped = self._scanner.blocks_skipped
        self.stats.bad_interface = self._scanner.bad_interface
        self.stats.bad_timestamp = self._scanner.bad_timestamp

    def _batch(self, buf: np.ndarray, n: int, arrays: tuple) -> CaptureBatch:
        """The batch of the `n` packets `arrays` describe, counted in the stats."""
        off, ln, ts, wl, vd, ifc, fr, snapped = arrays
        self._batches += 1
        self.stats.packets += n
        lv = self.stats.link_verdicts
        if not vd.any():
            # the common batch, every link layer fine: one vector test, where bincount
            # first widened the codes to an intp copy (2% of one worker's analyze)
            if len(vd):
                lv[0] = lv.get(0, 0) + len(vd)
        else:
            # (bincount: one pass over the uint8 codes; np.unique sorts them)
            counts = np.bincount(vd, minlength=1)
            for v in np.flatnonzero(counts):
                lv[int(v)] = lv.get(int(v), 0) + int(counts[v])
        sh = self._batch_shards
        return CaptureBatch(buf, off, ln, ts, wl, vd, ifc, fr, snapped, None if sh is None else sh[:n])

    def _fill(self, view: memoryview) -> int:
        """Read into `view`: as much as the file has now, at least one byte unless at its
        end. A regular file fills the view; a pipe gives what its writer has written so
        far, so a batch is tracked (and Ctrl-C has something to report) without waiting
        for a whole batch's worth of a slow live capture."""
        got = self._f.readinto1(view)
        if not got:
            return 0
        total = got
        if total == len(view):
            return total
        ready = select.poll()            # (poll, not select: any descriptor number)
        ready.register(self._f.fileno(), select.POLLIN)
        while total < len(view) and ready.poll(0):
            got = self._f.readinto1(view[total:])
            if not got:
                break
            total += got
        return total

    def _buffer(self, size: int) -> np.ndarray:
        """The buffer the next batch is read into: a fresh one (``buffers=0``), so a
        batch stays valid after the next one is read; or the next of `buffers` kept
        buffers in turn. Reusing saves the kernel zeroing new pages for every batch --
        about as much time as the read itself -- for a stream done with each batch
        `buffers` batches later."""
        if not self.buffers:
            return np.empty(size, dtype=np.uint8)
        self._turn = (self._turn + 1) % self.buffers
        buf = self._ring[self._turn]
        if buf is None or len(buf) < size:
            buf = self._ring[self._turn] = np.empty(size, dtype=np.uint8)
        return buf

    def _grow(self, buf: np.ndarray, end: int, size: int) -> np.ndarray:
        """A larger buffer in `buf`'s place (the same slot of the ring), holding its
        first `end` bytes: a record larger than the batch. The scanner refuses a record
        over MAX_RECORD, so this is a guard against a scanner that did not."""
        if size > 2 * MAX_RECORD + self.batch_bytes:
            raise CaptureError("record larger than any real packet", path=self.path, offset=self._file_pos)
        new = np.empty(size, dtype=np.uint8)
        new[:end] = buf[:end]
        if self.buffers:
            self._ring[self._turn] = new
        return new

    def _field_at(self, buf: np.ndarray, pos: int, rel: int) -> str:
        """The 32-bit length field that cannot be right, as the number it encodes."""
        b = buf[pos + rel: pos + rel + 4].tobytes()
        if len(b) < 4:
            return "nothing"
        return f"{int.from_bytes(b, 'big' if self._scanner.big_endian else 'little'):#x}"

    def close(self) -> None:
        if self._chunks is not None:
            self._chunks.close()         # (reads ahead under way end before the descriptor)
            if self._chunks.mapped_end and self._cut_since_mapped():
                # a last look, for `fault_tally` (the batches may be read on)
                self._chunks.tally.shrunk = True
            self._window = None          # (its chunk's buffer or mapping goes with it)
        self._f.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def read_pcap(path: str | Path, *, batch_packets: int = 65536, batch_bytes: int = 8 << 20,
              buffers: int = 0, shards: RssShards | None = None, mapped: bool = True) -> CaptureReader:
    """Open a pcap or pcapng file for streaming: iterate it for `CaptureBatch` objects.

    The format is detected from the first bytes. Raises `UsageError` for a
    batch_packets outside 1..MAX_PACKETS or a batch_bytes outside
    4096..MAX_BATCH_BYTES, `FileNotFoundError` (and the other `OSError`s, e.g.
    `IsADirectoryError`) as `open` does, and `CaptureError` for an empty file, an
    unknown magic number or a corrupt length field (with its file offset). An
    incomplete last record -- a capture cut off mid-write -- is not an error: the
    packets before it are delivered and ``reader.stats.truncated_tail`` says how many
    bytes were left. A packet whose timestamp is not a time in 0..2**63-1 ns (a pcapng
    field overflowing) gets ts_ns 0 and is counted in ``reader.stats.bad_timestamp``.

    Each batch has a buffer of its own, valid for as long as it is kept. With
    ``buffers=k`` the batches are read into k buffers in turn, so a batch is valid only
    until k more have been read -- for a loop done with each batch by then (as
    `fasttcp.analyze` is); it saves the time the kernel takes to give every batch fresh
    zeroed pages. A consumer that says which batches it is done with
    (`CaptureReader.release`) ends their validity sooner, and their arrays take the
    next batches' rows. Raises UsageError for a `buffers` outside 0..MAX_BUFFERS.

    ``shards``: a `fasttcp.wire.rss.RssShards`; each batch then carries every packet's
    shard (``batch.shards``), computed as the scanner reads its record -- its headers
    in the cache -- rather than in a pass of its own (`shard_of_batch`, the same values).
    Such a reader is one whose batches are tracked on other threads, so its first
    RAMP_BATCHES batches are smaller (1/8, 1/4, 1/2 of `batch_packets`, at least
    RAMP_MIN_PACKETS) and a regular file is read in chunks of at most 1/32 of its size
    (`sharded_chunk_bytes`): the threads start, and end, sooner.

    ``mapped``: a regular file's chunks are mapped from the page cache rather than
    copied out of it (`fasttcp.capture.mapped`), the buffers then the file itself
    (private: writing to one never changes the file), several chunks to a mapping
    (`fasttcp.capture.chunks.WINDOW_BYTES`: a batch held keeps that much of the file
    mapped). Where a chunk cannot be mapped it is copied. A file cut shorter while
    mapped does not crash the process: the pages gone read as zeros
    (``reader.cut_pages``), and the next `read_batch` -- which also compares the file's
    size with what was mapped of it -- raises CaptureError saying so. A file rewritten
    in place while read is read as it is at each moment, and a batch held meanwhile sees
    the new bytes; ``mapped=False`` copies every chunk, and a copy taken before such a
    change holds the bytes as they were.
    """
    return CaptureReader(path, batch_packets=batch_packets, batch_bytes=batch_bytes, buffers=buffers,
                         shards=shards, mapped=mapped)


def write_pcap(path: str | Path, packets: Iterable[bytes] | CaptureBatch, timestamps: Iterable[float] | None = None,
               *, linktype: int = LINKTYPE_RAW, nanosecond: bool = False, snaplen: int = 262144) -> int:
    """Write packets to a classic little-endian pcap file; returns how many.

    `packets` is an iterable of frames of `linktype` (raw IP by default) or a
    `CaptureBatch`, whose IP packets (rows with link verdict OK) are written as raw IP
    with their timestamps. `timestamps` are float seconds, one per packet (default:
    0, 1 µs, 2 µs, ...); with `nanosecond` the file uses the nanosecond magic. Written
    through `fasttcp.capture.writer.PcapWriter`.

    Raises `UsageError` before the file is opened for a snaplen outside 1..2**31-1, a
    linktype outside 0..2**32-1 or a timestamp that is negative, NaN, infinite or
    beyond the 32-bit seconds field; and for fewer timestamps than packets or a packet
    that is not bytes-like. On any error once the file was opened -- those, an
    exception from `packets`, a full disk -- the partial file is removed.
    """
    check_snaplen(snaplen)
    check_linktype(linktype)
    if isinstance(packets, CaptureBatch):
        batch = packets
        keep = np.flatnonzero(np.asarray(batch.verdicts) == 0)
        frames: Iterable[bytes] = (batch.packet(int(i)) for i in keep)
        ns_list: list[int] | None = [check_ns(int(t)) for t in np.asarray(batch.ts_ns)[keep]]
        linktype = LINKTYPE_RAW
    else:
        frames = packets
        # all of them now, before the file exists: a bad one must not leave half a capture
        ns_list = [seconds_to_ns(t, nanosecond) for t in timestamps] if timestamps is not None else None
    w = PcapWriter(path, snaplen=snaplen, linktype=linktype, nanosecond=nanosecond)
    try:
        for pkt in frames:
            if ns_list is None:
                ns = w.count * 1000
            elif w.count < len(ns_list):
                ns = ns_list[w.count]
            else:
                raise UsageError(f"write_pcap: {len(ns_list)} timestamps for more packets")
            w.write_ns(pkt, ns)
        w.close()
    except BaseException:
        w.discard()
        raise
    return w.count
