"""A regular capture file read in chunks at fixed offsets, other threads reading ahead
(fasttcp.capture.chunks; CaptureReader.fill_ahead and release).

The oracle is the same capture read through a pipe: the reader's in-order path, which
reads what comes as it comes and knows nothing of chunks.
"""
from __future__ import annotations

import os
import signal
import struct
import sys
import threading
import traceback
from pathlib import Path

import numpy as np
import pytest

from fasttcp.capture.chunks import HEADROOM, FileChunks
from fasttcp.capture.reader import (
    RAMP_BATCHES,
    RAMP_MIN_PACKETS,
    CaptureBatch,
    CaptureError,
    read_pcap,
    sharded_chunk_bytes,
)
from fasttcp.errors import UsageError
from fasttcp.wire.rss import RssShards
from tests import linklayer
from tests.capture.test_reader import (
    IP4,
    IP6,
    Pcapng,
    batch_snapshot,
    eth,
    pcap_bytes,
    rows,
    same_as_snapshot,
    write_file,
)

CAPTURES = linklayer.list_captures(linklayer.CAPTURES)


@pytest.fixture(autouse=True, params=["mapped", "copied"])
def chunk_mode(request, monkeypatch):
    """Every test twice: chunks mapped from the page cache (the default), and copied
    (``mapped=False``, and the path a chunk that cannot be mapped takes)."""
    if request.param == "copied":
        init = FileChunks.__init__

        def copied(self, fd, start, size, buffers, mapped=False):
            init(self, fd, start, size, buffers, mapped=False)

        monkeypatch.setattr(FileChunks, "__init__", copied)
    return request.param


def read_through_pipe(path: Path, **kw) -> tuple[list[tuple], object]:
    """The packets (test_reader's `rows`) and stats of `path` read from a pipe."""
    data = Path(path).read_bytes()
    r, w = os.pipe()

    def feed() -> None:
        try:
            with os.fdopen(w, "wb") as f:
                f.write(data)
        except BrokenPipeError:          # the reader stopped at a corrupt record
            pass

    t = threading.Thread(target=feed)
    t.start()
    try:
        with read_pcap(f"/dev/fd/{r}", **kw) as reader:
            return read_rows(reader), reader.stats
    finally:
        os.close(r)
        t.join(60)


def read_rows(reader) -> list[tuple]:
    """The packets of `reader`, each batch's taken as it is read (with ``buffers=k`` a
    batch's buffer is reused k reads later)."""
    out: list[tuple] = []
    for batch in reader:
        out += rows([batch])
    return out


class AheadReaders:
    """Threads calling `reader.fill_ahead` in a loop until stopped; an exception in one
    is kept and raised by `stop`."""

    def __init__(self, reader, threads: int = 2, limit: int = 2) -> None:
        self.reader = reader
        self.done = threading.Event()
        self.errors: list[BaseException] = []
        self.filled = 0
        self.threads = [threading.Thread(target=self._run, args=(limit,)) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self, limit: int) -> None:
        try:
            while not self.done.is_set():
                if self.reader.fill_ahead(limit):
                    self.filled += 1
                else:
                    self.done.wait(0.0002)
        except BaseException as e:       # kept for the test thread
            self.errors.append(e)

    def stop(self) -> None:
        self.done.set()
        for t in self.threads:
            t.join(60)
        if self.errors:
            raise self.errors[0]


def read_ahead(path: Path, *, hold: int = 3, threads: int = 2, **kw) -> tuple[list[tuple], object, int]:
    """Read `path` with `threads` threads reading ahead, the last `hold` batches kept
    unreleased and checked unchanged when released (the buffer contract). Returns the
    packets, the stats and how many chunks the other threads read."""
    kw.setdefault("buffers", hold + 3)
    got: list[tuple] = []
    held: list[tuple[CaptureBatch, bytes]] = []
    with read_pcap(path, **kw) as reader:
        ahead = AheadReaders(reader, threads)
        try:
            count = 0
            while True:
                batch = reader.read_batch()
                if batch is None:
                    break
                count += 1
                got += rows([batch])
                held.append((batch, batch.buffer.tobytes()))
                while len(held) > hold:
                    b, copy = held.pop(0)
                    assert b.buffer.tobytes() == copy, "a batch's buffer changed before it was released"
                    reader.release(count - len(held))
                for b, copy in held:
                    assert b.buffer.tobytes() == copy
        finally:
            ahead.stop()
        return got, reader.stats, ahead.filled


@pytest.mark.parametrize("batch_bytes", [4096, 65536, 2 << 20])
@pytest.mark.parametrize("path", CAPTURES, ids=[p.name for p in CAPTURES])
def test_reading_ahead_on_other_threads_reads_what_a_pipe_gives(path, batch_bytes):
    want, want_stats = read_through_pipe(path, batch_bytes=batch_bytes)
    got, stats, _ = read_ahead(path, batch_bytes=batch_bytes)
    assert got == want
    assert (stats.packets, stats.bytes, stats.truncated_tail, stats.link_verdicts, stats.blocks_skipped) == \
        (want_stats.packets, want_stats.bytes, want_stats.truncated_tail, want_stats.link_verdicts,
         want_stats.blocks_skipped)


def _mixed_records(big: int, count: int = 12) -> list[tuple[int, bytes]]:
    """Small packets with records of `big` bytes between them (jumbo, BIG TCP, larger
    than a chunk's headroom)."""
    out = []
    for i in range(count):
        out.append((1000 * i, eth(0x0800, IP4)))
        if i % 3 == 1:
            out.append((1000 * i + 1, eth(0x0800, IP4 + bytes([i]) * big)))
        out.append((1000 * i + 2, eth(0x86DD, IP6)))
    return out


@pytest.mark.parametrize("big", [HEADROOM - 100, HEADROOM + 100, 3 * HEADROOM])
@pytest.mark.parametrize("kw", [{"batch_bytes": 4096, "buffers": 0}, {"batch_bytes": 4096, "buffers": 1},
                                {"batch_bytes": 4096, "buffers": 3}, {"batch_bytes": 1 << 20, "buffers": 2},
                                {"batch_bytes": 4096, "batch_packets": 1, "buffers": 2}])
def test_records_larger_than_the_headroom(tmp_path, big, kw):
    """A record that does not fit before the next chunk's bytes is read into a buffer of
    its own, and the chunks after it follow on."""
    recs = _mixed_records(big)
    path = write_file(tmp_path / "big.pcap", pcap_bytes(recs, snaplen=1 << 24))
    want, _ = read_through_pipe(path, **kw)
    assert [r[5] for r in want] == [f[14:] for _, f in recs]
    with read_pcap(path, **kw) as reader:
        assert read_rows(reader) == want
    if kw["buffers"] >= 2:
        got, _, _ = read_ahead(path, hold=1, **kw)
        assert got == want


@pytest.mark.parametrize("big", [100, HEADROOM + 100])
def test_pcapng_blocks_larger_than_the_headroom(tmp_path, big):
    png = Pcapng().section().idb(1)
    for i, (ts, f) in enumerate(_mixed_records(big)):
        png.epb(0, ts + i, f)
    path = write_file(tmp_path / "big.pcapng", png.bytes())
    want, _ = read_through_pipe(path, batch_bytes=4096)
    got, _, _ = read_ahead(path, hold=2, batch_bytes=4096)
    assert got == want and len(got) == len(_mixed_records(big))


@pytest.mark.parametrize("cut", [1, 17, 5000, 40000])
def test_a_capture_cut_short_reads_the_same_as_through_a_pipe(tmp_path, cut):
    recs = [(i * 1000, eth(0x0800, IP4 + bytes(i % 200))) for i in range(600)]
    data = pcap_bytes(recs)
    path = write_file(tmp_path / "cut.pcap", data[:-cut])
    want, want_stats = read_through_pipe(path, batch_bytes=4096)
    got, stats, _ = read_ahead(path, batch_bytes=4096)
    assert got == want
    assert stats.truncated_tail == want_stats.truncated_tail > 0


def test_a_corrupt_record_reads_the_same_as_through_a_pipe(tmp_path):
    recs = [(i * 1000, eth(0x0800, IP4)) for i in range(3000)]
    data = bytearray(pcap_bytes(recs))
    rec = 16 + len(recs[0][1])
    bad = 24 + 2000 * rec + 8
    data[bad: bad + 4] = struct.pack("<I", 0x7FFFFFF0)      # caplen of record 2000
    path = write_file(tmp_path / "corrupt.pcap", bytes(data))
    with pytest.raises(CaptureError) as piped:
        read_through_pipe(path, batch_bytes=4096)
    assert str(piped.value).endswith(f"corrupt record (length field reads 0x7ffffff0) at byte {bad}")
    for read in (lambda: list(read_pcap(path, batch_bytes=4096, buffers=6)),
                 lambda: read_ahead(path, batch_bytes=4096)):
        with pytest.raises(CaptureError) as direct:
            read()
        assert str(direct.value).split(": ", 1)[1] == str(piped.value).split(": ", 1)[1]


def test_a_file_growing_while_read_is_read_as_far_as_it_had_grown(tmp_path):
    """Read in order, a regular file is read up to where it ends when each chunk is
    read (as a sequential read would be); never a record from a gap."""
    recs = [(i * 1000, eth(0x0800, IP4 + struct.pack("!I", i))) for i in range(4000)]
    data = pcap_bytes(recs)
    half = 24 + 2000 * (16 + len(recs[0][1]))
    path = write_file(tmp_path / "grow.pcap", data[:half])
    got = []
    with read_pcap(path, batch_bytes=4096, buffers=2) as reader:
        got += rows([reader.read_batch()])
        with open(path, "ab") as f:
            f.write(data[half:])
        got += read_rows(reader)
    assert [r[5] for r in got] == [f[14:] for _, f in recs]


@pytest.mark.parametrize("when", [1, 5, 40])
def test_a_file_cut_while_read_ahead_gives_whole_records_only(tmp_path, when):
    """Another program truncating the capture while it is read ahead: the packets read
    are the capture's first ones, whole, then the end (a truncated tail or a short
    read) -- no crash, no bytes from nowhere."""
    recs = [(i * 1000, eth(0x0800, IP4 + struct.pack("!I", i))) for i in range(20000)]
    data = pcap_bytes(recs)
    path = write_file(tmp_path / "cut.pcap", data)
    got = []
    with read_pcap(path, batch_bytes=4096, buffers=6) as reader:
        ahead = AheadReaders(reader, 2)
        try:
            n = 0
            while True:
                batch = reader.read_batch()
                if batch is None:
                    break
                n += 1
                got += rows([batch])
                reader.release(n)
                if n == when:
                    os.truncate(path, len(data) // 3)
        finally:
            ahead.stop()
    payloads = [r[5] for r in got]
    assert payloads == [f[14:] for _, f in recs[: len(payloads)]]
    assert len(payloads) < len(recs)


def test_close_waits_for_reads_ahead_and_ends_them(tmp_path):
    recs = [(i * 1000, eth(0x0800, IP4)) for i in range(5000)]
    path = write_file(tmp_path / "c.pcap", pcap_bytes(recs))
    reader = read_pcap(path, batch_bytes=4096, buffers=6)
    ahead = AheadReaders(reader, 3, limit=5)
    reader.read_batch()
    reader.release(1)
    reader.close()
    assert reader.fill_ahead(2) is False
    ahead.stop()                          # no thread met a closed descriptor
    with pytest.raises(UsageError, match="closed"):
        reader.read_batch()


def test_batches_stay_valid_until_released_or_k_more_are_read(tmp_path, chunk_mode):
    """Threads reading ahead as hard as they can never write into the buffer of a batch
    not released; without releases they read ahead only into buffers never used yet,
    and every batch stays as read until `buffers` more are read."""
    recs = [(i * 1000, eth(0x0800, IP4 + bytes([i % 256]) * (i % 300))) for i in range(3000)]
    path = write_file(tmp_path / "v.pcap", pcap_bytes(recs))
    with read_pcap(path, batch_bytes=4096, buffers=4) as reader:
        ahead = AheadReaders(reader, 2, limit=3)
        try:
            first = reader.read_batch()
            copy = first.buffer.tobytes()
            held = [reader.read_batch() for _ in range(2)]
            assert first.buffer.tobytes() == copy and all(b is not None for b in held)
        finally:
            ahead.stop()
    # a consumer that never releases: at most the never-used buffers are read ahead
    k = 3
    got: list[tuple] = []
    held: list[tuple[CaptureBatch, tuple]] = []
    with read_pcap(path, batch_bytes=4096, buffers=k) as reader:
        ahead = AheadReaders(reader, 2, limit=k)
        try:
            while (batch := reader.read_batch()) is not None:
                got += rows([batch])
                held = [*held, (batch, batch_snapshot(batch))][-k:]
                for b, snap in held:
                    assert same_as_snapshot(b, snap)
        finally:
            ahead.stop()
    assert [r[5] for r in got] == [f[14:] for _, f in recs]
    if chunk_mode == "copied":
        assert ahead.filled <= k
    else:                            # no buffers: each chunk's page tables filled at most once
        assert ahead.filled <= -(-path.stat().st_size // 4096)


def test_threads_do_read_ahead(tmp_path):
    """(The reading-ahead path is the one exercised: other threads read chunks.)"""
    recs = [(i * 1000, eth(0x0800, IP4)) for i in range(20000)]
    path = write_file(tmp_path / "a.pcap", pcap_bytes(recs))
    got, _, filled = read_ahead(path, batch_bytes=4096, hold=1, mapped=False)
    assert len(got) == len(recs) and filled > 0


def test_pipes_are_not_read_ahead(tmp_path):
    path = write_file(tmp_path / "p.pcap", pcap_bytes([(0, eth(0x0800, IP4))]))
    r, w = os.pipe()
    os.write(w, path.read_bytes())
    os.close(w)
    try:
        with read_pcap(f"/dev/fd/{r}", buffers=4) as reader:
            assert reader.fill_ahead(2) is False
            reader.release(0)
            assert len(list(reader)) == 1
    finally:
        os.close(r)


@pytest.mark.parametrize("bad", [-1, 1.5, "2", None, True, np.float64(2.0)])
def test_release_takes_a_count(tmp_path, bad):
    path = write_file(tmp_path / "r.pcap", pcap_bytes([(0, eth(0x0800, IP4))]))
    with read_pcap(path, buffers=2) as reader, pytest.raises(UsageError, match="release"):
        reader.release(bad)


@pytest.mark.parametrize("bad", [0, -3, 17, 10**30, 2.0, "1", None, False])
def test_fill_ahead_takes_a_limit(tmp_path, bad):
    path = write_file(tmp_path / "f.pcap", pcap_bytes([(0, eth(0x0800, IP4))]))
    with read_pcap(path, buffers=2) as reader, pytest.raises(UsageError, match="fill_ahead"):
        reader.fill_ahead(bad)


def test_a_huge_release_count_is_capped_at_the_batches_read(tmp_path):
    """Releasing more than was read does not let a later batch be overwritten early."""
    recs = [(i * 1000, eth(0x0800, IP4 + bytes([i % 256]) * 200)) for i in range(2000)]
    path = write_file(tmp_path / "h.pcap", pcap_bytes(recs))
    with read_pcap(path, batch_bytes=4096, buffers=3) as reader:
        reader.release(10**9)
        ahead = AheadReaders(reader, 2)
        try:
            b = reader.read_batch()
            copy = b.buffer.tobytes()
            for _ in range(20):
                reader.fill_ahead(2)
            assert b.buffer.tobytes() == copy
        finally:
            ahead.stop()



def stats_at_the_error(path: str | Path, **kw) -> tuple:
    """(error text after the path, packets, bytes, blocks_skipped) reading `path` to its end."""
    with read_pcap(path, **kw) as reader:
        try:
            for _ in reader:
                pass
            err = None
        except CaptureError as e:
            err = str(e).split(": ", 1)[1]
        return err, reader.stats.packets, reader.stats.bytes, reader.stats.blocks_skipped


@pytest.mark.parametrize("batch_bytes", [4096, 1 << 20])
def test_the_stats_at_a_corrupt_record_after_skipped_blocks_are_the_same(tmp_path, batch_bytes):
    """The blocks skipped before a corrupt record are counted, and the bytes consumed
    reach it, however the capture is batched and whether it comes from a pipe."""
    png = Pcapng().section().idb(1)
    for i in range(40):
        png.epb(0, i, eth(0x0800, IP4))
    for _ in range(3000):
        png.block(0xBAD, bytes(20))
    good = len(png.bytes())
    png.epb(0, 99, eth(0x0800, IP4))
    data = bytearray(png.bytes())
    data[good + 4: good + 8] = struct.pack("<I", 3)        # a block length below the minimum
    path = write_file(tmp_path / "skip.pcapng", bytes(data))
    want = (f"corrupt record (length field reads 0x3) at byte {good + 4}", 40, good, 3000)
    assert stats_at_the_error(path, batch_bytes=batch_bytes) == want
    r, w = os.pipe()
    feed = threading.Thread(target=lambda: os.fdopen(w, "wb").write(data))
    feed.start()
    try:
        assert stats_at_the_error(f"/dev/fd/{r}", batch_bytes=batch_bytes) == want
    finally:
        os.close(r)
        feed.join(60)



class Interrupted(Exception):
    """What the test's SIGINT handler raises where Ctrl-C raises KeyboardInterrupt (which
    would stop pytest itself if it came late)."""


def test_ctrl_c_while_waiting_for_a_chunk_read_ahead_skips_nothing(tmp_path):
    """Ctrl-C in `take` while another thread reads the chunk it waits for: the chunk is
    still the next one taken (not the one after: a chunk's bytes would be missing
    between the carried record and the next ones), and `close` waits for its read."""
    size = 128 << 20                      # a read long enough for the signal to land in
    path = tmp_path / "sparse.pcap"
    with open(path, "wb") as f:
        f.truncate(3 * size)
    armed = threading.Event()

    def on_sigint(signum, frame):
        if armed.is_set():
            raise Interrupted

    fd = os.open(path, os.O_RDONLY)
    old = signal.signal(signal.SIGINT, on_sigint)
    try:
        for _ in range(5):
            chunks = FileChunks(fd, 0, size, 2)
            helper = threading.Thread(target=chunks.fill_ahead, args=(1,))
            helper.start()
            while not chunks._ahead:      # (the helper's chunk is made; its read starts)
                pass
            first = chunks._ahead[0]
            kill = threading.Timer(0.002, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT))
            armed.set()
            try:
                # (started inside the try: the signal may land before start returns)
                kill.start()
                chunks.take()
                kill.join()
            except Interrupted as e:
                # (one that came after take returned is no test)
                interrupted = any(f.f_code.co_name == "take" for f, _ in traceback.walk_tb(e.__traceback__))
            else:
                interrupted = False
            armed.clear()
            kill.join()
            if interrupted:
                chunks.close()
                assert not first.reading, "close returned while a read into the file was under way"
                helper.join(60)
                assert chunks.take() is first
                break
            helper.join(60)
        else:
            pytest.skip("the read ahead always ended before the signal came")
    finally:
        signal.signal(signal.SIGINT, old)
        os.close(fd)


def test_ctrl_c_while_a_huge_record_is_read_leaves_its_start_unread_ahead(tmp_path):
    """Ctrl-C while the reader reads a record larger than the headroom into a buffer of
    its own: the chunk holding the record's start is not handed to threads reading
    ahead before the record is read, so the next read_batch still finds that start."""
    from fasttcp.capture.scanner import MAX_RECORD

    size = MAX_RECORD - 100
    recs = [(0, eth(0x0800, IP4)), (1000, eth(0x0800, IP4 + b"\xab" * (size - 100)))]
    path = write_file(tmp_path / "huge.pcap", pcap_bytes(recs, snaplen=1 << 24))
    want = [r[5] for r in rows_of(path)]
    armed = threading.Event()

    def on_sigint(signum, frame):
        if armed.is_set():
            raise Interrupted

    old = signal.signal(signal.SIGINT, on_sigint)
    try:
        for attempt in range(40):
            with read_pcap(path, batch_bytes=4096, buffers=2) as reader:
                # (read before it is released: its arrays may then take the next rows)
                first = reader.read_batch().packet(0)
                reader.release(1)
                kill = threading.Timer(attempt % 8 / 2000, signal.pthread_kill,
                                       (threading.main_thread().ident, signal.SIGINT))
                armed.set()
                try:
                    kill.start()
                    second = reader.read_batch()
                    kill.join()
                except Interrupted as e:
                    where = [f.f_code.co_name for f, _ in traceback.walk_tb(e.__traceback__)]
                else:
                    where = []
                armed.clear()
                kill.join()
                if "_huge_window" not in where:
                    continue
                while reader.fill_ahead(2):      # every buffer free is read into
                    pass
                second = reader.read_batch()
                assert [first, second.packet(0)] == want
                return
        pytest.skip("the signal never came while the record was read")
    finally:
        signal.signal(signal.SIGINT, old)


def rows_of(path: Path) -> list[tuple]:
    with read_pcap(path) as reader:
        return read_rows(reader)


def _interrupt_at(n: int, files: tuple[str, ...]):
    """A trace function raising Interrupted (a Ctrl-C) at the `n`-th call or return of
    a function in `files`: where the interpreter handles a signal -- as a function
    starts, and after a call (a lock's acquire) just before the caller returns."""
    count = [0]

    def tick() -> None:
        count[0] += 1
        if count[0] == n:
            raise Interrupted

    def local(frame, event, arg):
        if event == "return":
            tick()
        return local

    def trace(frame, event, arg):
        if not frame.f_code.co_filename.endswith(files):
            return None
        tick()
        return local

    return trace


def test_ctrl_c_anywhere_in_read_batch_leaves_no_lock_held(tmp_path):
    """Ctrl-C landing at any point of a read_batch leaves the read-ahead lock free: a
    thread reading ahead does not wait for it for ever (analyze joins those threads
    before it returns), and the reader closes."""
    recs = [(i * 1000, eth(0x0800, IP4 + bytes(i % 200))) for i in range(3000)]
    path = write_file(tmp_path / "i.pcap", pcap_bytes(recs))
    files = (os.path.join("capture", "chunks.py"), os.path.join("capture", "reader.py"), "threading.py")
    hit = 0
    for n in range(1, 200):
        reader = read_pcap(path, batch_bytes=4096, buffers=4)
        reader.read_batch()
        reader.release(1)
        sys.settrace(_interrupt_at(n, files))
        try:
            reader.read_batch()
        except Interrupted:
            hit += 1
        finally:
            sys.settrace(None)
        ahead = threading.Thread(target=reader.fill_ahead, args=(2,), daemon=True)
        ahead.start()
        ahead.join(30)
        assert not ahead.is_alive(), f"Ctrl-C at step {n}: reading ahead waits for a lock held for ever"
        closing = threading.Thread(target=reader.close, daemon=True)
        closing.start()
        closing.join(30)
        assert not closing.is_alive(), f"Ctrl-C at step {n}: close waits for ever"
    assert hit > 20


# ---- sharded reading: the chunk a file is read in, the first batches ----

@pytest.mark.parametrize("batch_bytes, size, chunk", [
    (8 << 20, 1 << 30, 8 << 20),          # 128 chunks: as given
    (8 << 20, 97_400_024, 2 << 20),       # the short-connection bench capture: 46 chunks
    (8 << 20, 32 << 20, 1 << 20),         # 32 chunks would be 1 MiB: the floor
    (8 << 20, 10_000, 1 << 20),           # never below it
    (3 << 20, 97_400_024, 3 << 19),       # halved, whatever the size given
    (1 << 20, 5, 1 << 20),
    (4096, 10**9, 4096),                  # never above what was given
    (65536, 100, 65536),
])
def test_a_sharded_file_is_read_in_chunks_of_at_most_a_32nd_of_it(batch_bytes, size, chunk):
    assert sharded_chunk_bytes(batch_bytes, size) == chunk


def test_sharded_reading_starts_with_smaller_batches_and_reads_the_same(tmp_path):
    # with shards, the first RAMP_BATCHES batches hold 1/8, 1/4, 1/2 of batch_packets
    # (not below RAMP_MIN_PACKETS), the rest batch_packets: the same packets in order
    recs = [(i * 1000, eth(0x0800, IP4)) for i in range(40_000)]
    path = write_file(tmp_path / "r.pcap", pcap_bytes(recs))
    kw = {"batch_packets": 8192, "batch_bytes": 64 << 20}
    with read_pcap(path, **kw) as plain:
        sizes = [len(b) for b in plain]
    with read_pcap(path, shards=RssShards(2), **kw) as sharded:
        got = list(sharded)
    assert sizes[0] == 8192
    # (the file is read in 1 MiB chunks, sharded_chunk_bytes: a batch also ends where
    # its chunk does)
    assert [len(b) for b in got][:3] == [8192 >> RAMP_BATCHES, 8192 >> 2, 8192 >> 1]
    assert max(len(b) for b in got) == 8192
    assert sum(len(b) for b in got) == len(recs)
    with read_pcap(path) as whole:
        want = np.concatenate([b.ts_ns for b in whole])
    assert np.array_equal(np.concatenate([b.ts_ns for b in got]), want)
    with read_pcap(path, shards=RssShards(2), batch_packets=2048, batch_bytes=64 << 20) as small:
        assert [len(b) for b in small][:4] == [RAMP_MIN_PACKETS, RAMP_MIN_PACKETS, RAMP_MIN_PACKETS, 2048]
