"""A regular capture file read in chunks at fixed offsets, so that other threads can
read ahead into the reader's buffers while it scans (an edge: `CaptureReader` uses it).

A pipe must be read in order by one thread; a regular file need not. Chunk j is the
file's bytes [start + j*size, start + (j+1)*size) whatever the records in it, so which
bytes it holds is known before any of them is scanned: `fill_ahead` reads the next
ones with ``pread`` in whatever thread calls it (the copy from the page cache is most of
a batch's reading cost, and a reading thread alone would cap `fasttcp analyze` on many
cores), while the reader scans, in order, what is already read.

Each buffer is ``headroom + size`` bytes: the chunk's bytes go after the headroom, and
the reader puts the incomplete record the previous chunk ended with just before them,
so the scanner sees one run of bytes without the chunk being copied again.

With ``mapped=True`` a chunk is not copied at all: it is a view of a mapping of the file
from the page cache (`fasttcp.capture.mapped.FileMapping`) that starts up to HEADROOM
bytes before the chunk, so the incomplete record before it is already in place. One
mapping (a window) holds several chunks (CHUNKS_PER_MAPPING): unmapping interrupts every
other CPU the process's threads run on, to flush the pages from its TLB, and under a
hypervisor each such interrupt is a VM exit on both ends. Other threads fill the page
tables of the window's next chunks ahead of the scan (`fill_ahead`), so that its first
reads of them take no page faults. A chunk that cannot be mapped (no slot free, no
SIGBUS guard, a file system without mmap) is copied.
"""
from __future__ import annotations

import os
import threading
from collections import deque

import numpy as np

from fasttcp.capture.mapped import PAGE_BYTES, FaultTally, FileMapping

__all__ = ["CHUNKS_PER_MAPPING", "Chunk", "FileChunks", "HEADROOM", "WINDOW_BYTES"]

#: Room before a chunk's bytes for the incomplete record the chunk before ended with.
#: A record that does not fit (larger than any 64 KiB-snaplen or BIG TCP packet) makes
#: the reader read it into a buffer of its own instead.
HEADROOM = 1 << 18
#: Chunks one mapping covers (`FileChunks` with ``mapped=True``), at most WINDOW_BYTES
#: of the file: a window of chunks, unmapped once the batches of all of them are gone.
#: A mapping a 2 MiB chunk cost two workers on the 1 GiB bench capture 1.2x the time of
#: copied chunks on an AMD EPYC under KVM (512 unmappings a GiB); never unmapping gave
#: back most of it, and windows of 8 and 32 chunks did alike (4 and 8 on short
#: connections). A batch held keeps its whole window mapped -- the file's pages count in
#: the RSS -- so a window is a few chunks, not a size: small batches, small windows.
CHUNKS_PER_MAPPING = 8
WINDOW_BYTES = 16 << 20


class Chunk:
    """One chunk: where it starts in the file, the buffer its bytes are read into (after
    HEADROOM bytes; or the file mapped from `base`), how many were read, and whether
    the file ended inside it."""

    __slots__ = ("base", "buf", "eof", "error", "got", "mapped", "pos", "reading", "slot")

    def __init__(self, pos: int, buf: np.ndarray, slot: int, base: int | None = None) -> None:
        self.pos = pos
        self.buf = buf
        self.slot = slot                 # the ring slot of `buf`, -1 for a buffer of its own
        self.mapped = base is not None   # `buf` is the file itself, mapped
        self.base = pos - HEADROOM if base is None else base     # the file offset of buf[0]
        self.got = 0
        self.eof = False
        self.reading = True              # while a thread reads its bytes
        self.error: OSError | None = None


class FileChunks:
    """The chunks of the regular file `fd` from offset `start`, read into `buffers`
    buffers in turn (0: a fresh buffer each).

    Buffer reuse follows `read_pcap`'s contract: a batch from chunk j stays valid until
    `buffers` more batches are read, or -- when the consumer says what it is done with
    (`release`) -- until it is released; only the second lets other threads read ahead
    into a buffer (a consumer that never releases gets every chunk read when taken)."""

    def __init__(self, fd: int, start: int, size: int, buffers: int, mapped: bool = False) -> None:
        self.fd = fd
        self.size = size
        self.buffers = buffers
        self.mapped = mapped
        #: pages of this file's mappings found past its end (cut shorter while read)
        self.tally = FaultTally()
        #: the end of what has been mapped of the file (offset): a file found shorter
        #: than that was cut while read
        self.mapped_end = 0
        # the window the next mapped chunks are views of: the mapping, the file offsets
        # it covers, and how many chunks it has given (at most `_chunks_per_mapping`)
        self._mapping: np.ndarray | None = None
        self._mapping_base = 0
        self._mapping_end = 0
        self._mapping_given = 0
        # the window's FileMapping, and the file offset up to which its page tables were
        # filled (or are being filled) ahead of the scan by `fill_ahead`
        self._window: FileMapping | None = None
        self._populated_end = 0
        self._populate = True            # False once the kernel said it cannot
        self._chunks_per_mapping = max(1, min(CHUNKS_PER_MAPPING, WINDOW_BYTES // size))
        self._next = start               # file offset of the next chunk not yet made
        self._index = 0                  # its number
        self._ended = False              # a chunk reached the end of the file: no more
        self._ahead: deque[Chunk] = deque()    # made and not yet taken, in file order
        self._ring: list[np.ndarray | None] = [None] * buffers
        # per ring slot: the batch count when its current chunk's last batch was handed
        # out (0: none yet), and whether a chunk not yet done with holds it
        self._slot_batches = [0] * buffers
        self._slot_held = [False] * buffers
        self._batches = 0                # batches handed out from all chunks
        self._released = 0               # of those, how many the consumer is done with
        # the lock is taken with its own C-level `with`, not the Condition's: a Ctrl-C
        # inside Condition.__enter__ (Python code, just after the acquire) would leave
        # the reading thread holding it, and the threads reading ahead -- which `analyze`
        # joins before it returns -- waiting for it for ever
        self._lock = threading.RLock()
        self._cv = threading.Condition(self._lock)
        self._closed = False

    # ---- the reading thread ----

    def take(self) -> Chunk | None:
        """The next chunk, its bytes read (here if no other thread read it ahead); None
        after the chunk at the end of the file. Raises the OSError its read met, again
        at every later call (the chunk is not skipped).

        A chunk leaves the queue only once its bytes are read: interrupted (Ctrl-C)
        while another thread reads it or while reading it here, it stays first -- the
        next call resumes it rather than go on with the chunk after, whose bytes would
        follow the carried record with a chunk's bytes missing -- and `close` still
        waits for the read under way."""
        with self._lock:
            if not self._ahead:
                if self._ended:
                    return None
                self._ahead.append(self._make(for_reader=True))
            ch = self._ahead[0]
            while ch.reading:
                self._cv.wait()
        if not ch.eof and ch.got < self.size:
            # not read yet: made for this thread, or a read interrupted. Other threads
            # read only the chunks they make, and only this one takes or drops chunks:
            # read it without the lock and without marking it (a mark set and cleared
            # around the read leaves gaps where a Ctrl-C would leave it marked for
            # ever, and `close` waiting for it)
            self._read(ch)
        with self._lock:
            if ch.error is not None:
                raise ch.error
            self._ahead.popleft()
        return ch

    def batch_from(self, ch: Chunk | None) -> None:
        """A batch was handed out from `ch`'s buffer (None: a buffer of the reader's own),
        which it keeps valid."""
        with self._lock:
            self._batches += 1
            if ch is not None and ch.slot >= 0:
                self._slot_batches[ch.slot] = self._batches

    def done_with(self, ch: Chunk) -> None:
        """No more batches come from `ch`: its slot may take a later chunk once they are
        released."""
        with self._lock:
            if ch.slot >= 0:
                self._slot_held[ch.slot] = False

    def restart(self, pos: int) -> None:
        """Continue from file offset `pos` (the reader read a huge record itself): the
        chunks read ahead are dropped, once no thread is still reading into them."""
        with self._lock:
            while any(ch.reading for ch in self._ahead):
                self._cv.wait()
            for ch in self._ahead:
                if ch.slot >= 0:
                    self._slot_held[ch.slot] = False
            self._ahead.clear()
            self._next = pos
            self._ended = False

    def close(self) -> None:
        """Stop reading ahead and wait for the reads under way (the descriptor is closed
        after: a read into a closed, maybe reused, descriptor must not happen)."""
        with self._lock:
            self._closed = True
            # (the window is unmapped once the batches still held let go of it too)
            self._mapping = self._window = None
            while any(ch.reading for ch in self._ahead):
                self._cv.wait()

    # ---- any thread ----

    def release(self, batches: int) -> None:
        """The consumer is done with the first `batches` batches handed out."""
        with self._lock:
            if batches > self._released:
                self._released = min(batches, self._batches)

    def fill_ahead(self, limit: int) -> bool:
        """Read the next chunk into a free buffer, in this thread, if fewer than `limit`
        are read ahead and a buffer is free (its batches released); False if there was
        nothing to do. The GIL is released while reading.

        Mapped chunks have no bytes to read ahead -- the scan reads the page cache
        itself (having another thread read their lines first, to have them wait in the
        shared cache, cost two workers 1.14x the time on the 1 GiB bench capture) --
        but the page tables of the next chunks of the window can be filled ahead of the
        scan, a chunk a call, up to `limit` chunks ahead: the kernel's part of a first
        read (finding each page in the page cache, mapping it) is then done here, not
        in page faults on the scanning thread."""
        if self.mapped:
            return self._populate_ahead(limit)
        with self._lock:
            if self._closed or self._ended or len(self._ahead) >= limit or self.buffers < 2:
                return False
            slot = self._index % self.buffers
            if self._slot_held[slot] or self._released < self._slot_batches[slot]:
                return False
            ch = self._make(for_reader=False)
            self._ahead.append(ch)
        try:
            self._read(ch)
        finally:
            with self._lock:
                ch.reading = False
                self._cv.notify_all()
        return True

    def _populate_ahead(self, limit: int) -> bool:
        """`fill_ahead` for mapped chunks: fill the page tables of the window's next
        chunk not yet filled, if it is at most `limit` chunks past the one being scanned."""
        with self._lock:
            window = self._window
            if self._closed or window is None or not self._populate:
                return False
            # (`_next`: the offset of the chunk after the one the reader took last)
            lo = max(self._populated_end, self._next)
            hi = min(lo + self.size, self._next + limit * self.size, self._mapping_end)
            if lo >= hi:
                return False
            self._populated_end = hi
            base = self._mapping_base
        # (`window` keeps the mapping alive while this runs, whatever the reader drops)
        if not window.populate(lo - base, hi - base):
            # the kernel cannot (before Linux 5.14), or the file was cut (the reader
            # finds out when it reads there): the scan's own faults do it, as before
            self._populate = False
        return True

    # ---- inside ----

    def _make(self, for_reader: bool) -> Chunk:
        """The next chunk with its buffer (call with the lock held)."""
        if self.mapped and for_reader:
            ch = self._map()
            if ch is not None:
                return ch
        slot = self._index % self.buffers if self.buffers else -1
        if slot >= 0 and for_reader and (self._slot_held[slot] or (
                self._released < self._slot_batches[slot]
                and self._batches - self._slot_batches[slot] < self.buffers - 1)):
            # the slot's batches may still be in use (chunks that gave no batch came in
            # between): a buffer of its own rather than break the contract
            slot = -1
        kept = self._ring[slot] if slot >= 0 else None
        buf = kept if kept is not None else np.empty(HEADROOM + self.size, dtype=np.uint8)
        if slot >= 0:
            self._ring[slot] = buf
            self._slot_held[slot] = True
        ch = Chunk(self._next, buf, slot)
        ch.reading = not for_reader      # (the reader's own: read by `take` once queued)
        self._next += self.size
        self._index += 1
        return ch

    def _map(self) -> Chunk | None:
        """The next chunk as a mapping of the file, its bytes there to read (call with the
        lock held); None to copy it instead: the file ends before it (now: the copy finds
        where, as for any chunk), or it cannot be mapped."""
        pos = self._next
        try:
            file_size = os.fstat(self.fd).st_size
        except OSError:
            return None
        end = min(pos + self.size, file_size)
        if end <= pos:
            return None
        base = max(pos - HEADROOM, 0) // PAGE_BYTES * PAGE_BYTES
        window = self._mapping
        if window is None or self._mapping_given >= self._chunks_per_mapping or base < self._mapping_base \
                or end > self._mapping_end:
            # a new window, from this chunk's base over the next chunks the file has now
            # (the chunk after a window's last one starts a window of its own: a file
            # still growing is mapped as far as it had grown)
            wend = min(pos + self._chunks_per_mapping * self.size, file_size)
            try:
                mapping = FileMapping(self.fd, base, wend - base, self.tally)
            except OSError:
                # every slot taken (batches kept by the caller hold their mappings), or
                # no mmap for this file or no SIGBUS guard in this process: copied. The
                # window before is done with: let it go with its batches, not hold it
                # (and its slot, and its pages) until a later window can be mapped
                self._mapping = self._window = None
                return None
            window = np.frombuffer(memoryview(mapping), dtype=np.uint8)
            self._mapping, self._mapping_base, self._mapping_end, self._mapping_given = window, base, wend, 0
            # the reader scans this chunk now: the helpers fill the page tables after it
            self._window, self._populated_end = mapping, end
        self._mapping_given += 1
        self.mapped_end = max(self.mapped_end, end)
        # (a view: the window stays mapped while any chunk's batch holds its bytes)
        ch = Chunk(pos, window[base - self._mapping_base:end - self._mapping_base], -1, base=base)
        ch.got = end - pos
        ch.eof = ch.got < self.size      # (as a short read says: the file ends in it)
        ch.reading = False
        if ch.eof:
            self._ended = True
        self._next += self.size
        self._index += 1
        return ch

    def _read(self, ch: Chunk) -> None:
        """Read `ch`'s bytes: until it is full or a read returns nothing (the end of the
        file at that moment -- no later chunk is made then, so a file still growing is
        read as far as this chunk, as a sequential read would)."""
        view = ch.buf.data[HEADROOM:]
        try:
            while ch.got < self.size:
                n = os.preadv(self.fd, [view[ch.got:]], ch.pos + ch.got)
                if n == 0:
                    ch.eof = True
                    break
                ch.got += n
        except OSError as e:
            ch.error = e
            ch.eof = True
        if ch.eof:
            with self._lock:
                # no chunk is made after the one the file ended in; the reader takes
                # none after it either (it ends there), so one made before this read
                # found the end -- read concurrently into a file still growing -- is
                # never used
                self._ended = True
