"""`fasttcp.analyze(paths, workers=N)`: N worker processes, one shard of the flows each,
give the same rows and the same traffic counts as one process.

The reference is the one-process run of the same capture (itself checked against Zeek
and tshark in tests/cli/test_analyze.py); the captures are every bundled public
capture plus synthetic ones whose shape is known. A failing shard is a real
exception raised in a shard's tracker thread.
"""
from __future__ import annotations

import contextlib
import errno
import io
import ipaddress
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import fasttcp
from fasttcp.analysis import MAX_WORKERS, RUN_FIELDS, AnalyzeConfig, analyze, default_workers
from fasttcp.analysis import shards as shards_mod
from fasttcp.bench.tracker import synth_capture
from fasttcp.capture.reader import read_pcap
from fasttcp.errors import CaptureError, UsageError, WorkerError
from fasttcp.tracker.tracker import FLOW_DTYPE, ShardPlan
from tests import linklayer

# every field but `id` (the row's slot in its own tracker's table)
ROW_FIELDS = [f for f in FLOW_DTYPE.names if f not in ("id", "_pad")]
CAPTURES = linklayer.list_captures(linklayer.CAPTURES)


def _canonical(rows: np.ndarray) -> list[tuple]:
    """Rows as a sorted list of plain tuples (the set, independent of order)."""
    return sorted(tuple(np.asarray(r[f]).tobytes() for f in ROW_FIELDS) for r in rows)


def _traffic(summary) -> dict:
    d = summary.as_dict()
    for k in RUN_FIELDS:
        d.pop(k)
    return d


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """4000 interleaved connections of each shape, one capture."""
    folder = tmp_path_factory.mktemp("synth")
    path = folder / "short.pcap"
    synth_capture(path, 40_000, 400, shape="short")
    bulk = folder / "bulk.pcap"
    synth_capture(bulk, 24_000, 300)
    return path, bulk


# payload sizes of the segments below: most larger than a 4 KiB batch, as TSO/GRO
# captures (tcpdump-bigtcp-ipv4.pcap) and jumbo frames are
_SEGMENT_SIZES = (10, 1400, 8000, 30000, 60000)


def _large_segment_capture(path, conns: int) -> None:
    """`conns` connections, 0.3 ms apart, each a handshake, data segments of every
    size in `_SEGMENT_SIZES` (each ACKed) and a FIN exchange: raw IP, one pcap."""
    packets = []
    for k in range(conns):
        c, s, port, t = f"10.1.{k >> 8}.{k & 255}", "10.200.0.2", 10_000 + k, 1.7e9 + k * 3e-4
        seq = 1001

        def add(dt, src, dst, sport, dport, t=t, **kw):
            packets.append((t + dt, fasttcp.build(src, dst, sport, dport, **kw)))

        add(0, c, s, port, 80, seq=1000, flags=0x002)
        add(1e-4, s, c, 80, port, seq=5000, ack=1001, flags=0x012)
        add(2e-4, c, s, port, 80, seq=1001, ack=5001, flags=0x010)
        for j, size in enumerate(_SEGMENT_SIZES[k % 2:]):
            add(3e-4 + j * 1e-4, c, s, port, 80, seq=seq, ack=5001, flags=0x018, payload=bytes(size))
            seq += size
            add(3.5e-4 + j * 1e-4, s, c, 80, port, seq=5001, ack=seq, flags=0x010)
        add(0.01, c, s, port, 80, seq=seq, ack=5001, flags=0x011)
        add(0.011, s, c, 80, port, seq=5001, ack=seq + 1, flags=0x011)
        add(0.012, c, s, port, 80, seq=seq + 1, ack=5002, flags=0x010)
    packets.sort(key=lambda p: p[0])
    fasttcp.write_pcap(path, [p for _, p in packets], [t for t, _ in packets])


@pytest.fixture(scope="module")
def large_segments(tmp_path_factory):
    path = tmp_path_factory.mktemp("large") / "large-segments.pcap"
    _large_segment_capture(path, 300)
    return path


@pytest.mark.parametrize("cap", CAPTURES, ids=[c.name for c in CAPTURES])
def test_bundled_capture_same_rows_and_counts_with_2_workers(cap):
    one = analyze(cap, workers=1, keep_rows=True)
    two = analyze(cap, workers=2, keep_rows=True)
    assert two.workers == 2
    assert _canonical(two.rows) == _canonical(one.rows)
    assert _traffic(two) == _traffic(one)


@pytest.mark.parametrize("workers", [2, 3, 4])
def test_synthetic_captures_same_rows_with_n_workers(synthetic, workers):
    for path in synthetic:
        one = analyze(path, workers=1, keep_rows=True)
        many = analyze(path, workers=workers, keep_rows=True)
        assert len(one.rows) in (4000, 2000)
        assert _canonical(many.rows) == _canonical(one.rows)
        assert _traffic(many) == _traffic(one)


def _sparse_capture(path, conns: int) -> dict:
    """`conns` connections a wheel's turn (67 s) and more apart: each a handshake, then
    a data segment and its ACK 200 s later (within Zeek's 300 s of inactivity) or 400 s
    later (past it: the connection ended, the segment starts another); every third
    also an attempt nobody answers (Zeek: over 5 s after its SYN). Returns what each
    4-tuple's rows must be: [(start s, packets, ends by timeout)] in start order."""
    packets, expect = [], {}
    t_end = 1.7e9 + conns * 71.3 + 400.5
    for k in range(conns):
        c, s, port, t = f"198.18.{k >> 8}.{k & 255}", "198.19.0.2", 20_000 + k, 1.7e9 + k * 71.3
        gap = 200.0 if k % 2 else 400.0
        packets += [(t, fasttcp.build(c, s, port, 80, seq=1000, flags=0x002)),
                    (t + 1e-3, fasttcp.build(s, c, 80, port, seq=5000, ack=1001, flags=0x012)),
                    (t + 2e-3, fasttcp.build(c, s, port, 80, seq=1001, ack=5001, flags=0x010)),
                    (t + gap, fasttcp.build(c, s, port, 80, seq=1001, ack=5001, flags=0x018, payload=b"x" * 20)),
                    (t + gap + 1e-3, fasttcp.build(s, c, 80, port, seq=5001, ack=1021, flags=0x010))]
        last = t + gap + 1e-3
        if gap > 300:
            expect[(c, port)] = [(t, 3, True), (t + gap, 2, t_end - last > 300)]
        else:
            expect[(c, port)] = [(t, 5, t_end - last > 300)]
        if k % 3 == 0:
            a = f"198.18.200.{k % 250}"
            packets.append((t + 30.0, fasttcp.build(a, s, 40_000 + k, 443, seq=7, flags=0x002)))
            expect[(a, 40_000 + k)] = [(t + 30.0, 1, True)]
    packets.append((t_end, fasttcp.build("198.18.255.1", s, 1, 80, seq=1, flags=0x002)))
    expect[("198.18.255.1", 1)] = [(t_end, 1, False)]
    packets.sort(key=lambda p: p[0])
    fasttcp.write_pcap(path, [p for _, p in packets], [t for t, _ in packets])
    return expect


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_connections_minutes_apart_time_out_on_time_in_every_shard(tmp_path, workers):
    """Each shard tracker walks its timer wheel over every gap of the capture, its own
    connections or not: gaps longer than the wheel's turn must still end each
    connection when its inactivity runs out, and no sooner."""
    expect = _sparse_capture(tmp_path / "sparse.pcap", 300)
    summary = analyze(tmp_path / "sparse.pcap", workers=workers, keep_rows=True)
    got: dict = {}
    for r in summary.rows:
        key = (str(ipaddress.ip_address(bytes(r["orig_h"][:4]))), int(r["orig_p"]))
        got.setdefault(key, []).append((round(int(r["start_us"]) / 1e6, 3), int(r["orig_pkts"] + r["resp_pkts"]),
                                        int(r["end_reason"]) == fasttcp.EndReason.TIMEOUT))
    assert {k: sorted(v) for k, v in got.items()} == \
        {k: [(round(t, 3), n, to) for t, n, to in v] for k, v in expect.items()}


@pytest.mark.parametrize("workers", [129, 200])
def test_more_workers_than_a_nic_table_has_entries(synthetic, workers):
    """MAX_WORKERS is 1024 and the default is the CPUs available, but the shards came
    from a 128-entry indirection table: above 128 workers every run raised UsageError
    (on a 192-CPU machine, by default). The table now grows with the shards."""
    one = analyze(synthetic[1], workers=1, keep_rows=True)
    many = analyze(synthetic[1], workers=workers, keep_rows=True)
    assert _canonical(many.rows) == _canonical(one.rows)
    assert _traffic(many) == _traffic(one)


def test_every_worker_tracks_a_share(synthetic):
    """The shards really split the work: the packets each shard tracks add up, and
    neither gets almost all of them."""
    from fasttcp.capture.reader import read_pcap
    from fasttcp.wire.rss import shard_of_batch

    counts = [0, 0]
    for b in read_pcap(synthetic[0]):
        ids = shard_of_batch(b, 2)
        for k in range(2):
            counts[k] += int(np.count_nonzero(ids == k))
    assert sum(counts) == 40_000 and min(counts) > 40_000 * 0.3
    assert analyze(synthetic[0], workers=2).packets == 40_000


def test_row_order_is_deterministic_for_a_worker_count(synthetic):
    outs = []
    for _ in range(3):
        buf = io.BytesIO()
        analyze(synthetic[0], AnalyzeConfig(batch_bytes=1 << 16), workers=2, fmt="json", out=buf)
        outs.append(buf.getvalue())
    assert outs[0] == outs[1] == outs[2]
    assert outs[0].count(b"\n") == 4000


def test_row_order_is_batch_by_batch_in_shard_order(synthetic):
    """Documented order: per capture batch, shard 0's rows then shard 1's."""
    from fasttcp.capture.reader import read_pcap
    from fasttcp.tracker.tracker import Tracker
    from fasttcp.wire.rss import shard_of_batch

    cfg = AnalyzeConfig(batch_bytes=1 << 16)
    s = analyze(synthetic[0], cfg, workers=2, keep_rows=True)
    trackers = [Tracker(-(-cfg.capacity // 2), timeouts="zeek") for _ in range(2)]
    expect = []
    for b in read_pcap(synthetic[0], batch_bytes=cfg.batch_bytes):
        ids = shard_of_batch(b, 2)
        for k, tr in enumerate(trackers):
            tr.feed_batch(b, select=ids == k)
            expect.append(tr.finished())
    expect += [tr.close() for tr in trackers]
    expect = np.concatenate(expect)
    assert len(s.rows) == len(expect)
    for f in ROW_FIELDS:
        assert (s.rows[f] == expect[f]).all(), f


def test_records_larger_than_the_batch_are_tracked_as_with_one_worker(large_segments):
    """The reader grows its buffer for a record larger than the batch; with N workers
    the batch before is still being tracked, so the growing must not reuse its buffer
    (it did: a third of the packets turned into other packets' bytes)."""
    cfg = AnalyzeConfig(batch_bytes=4096)
    one = analyze(large_segments, cfg, workers=1, keep_rows=True)
    assert one.verdicts == {"OK": one.packets} and one.conn_states == {"SF": 300}
    for _ in range(3):
        two = analyze(large_segments, cfg, workers=2, keep_rows=True)
        assert _traffic(two) == _traffic(one)
        assert _canonical(two.rows) == _canonical(one.rows)


def test_an_open_reader_reusing_one_buffer_is_refused_with_workers(large_segments):
    """N trackers read batch i while batch i+1 is read: a reader that reuses a single
    buffer would overwrite the batch they read (silently wrong rows), so it is refused;
    one with no reuse, or two buffers, gives the rows of one worker."""
    one = analyze(large_segments, workers=1, keep_rows=True)
    assert analyze(read_pcap(large_segments, buffers=1), workers=1).packets == one.packets
    reader = read_pcap(large_segments, buffers=1)
    # (the least that works: the reader then runs one batch ahead)
    with pytest.raises(UsageError, match=r"needs buffers=0 or at least 2 .*got buffers=1"):
        analyze(reader, workers=2)
    reader.close()
    for buffers in (0, 2, 3):
        two = analyze(read_pcap(large_segments, batch_bytes=4096, buffers=buffers), workers=2, keep_rows=True)
        assert _canonical(two.rows) == _canonical(one.rows)


def test_several_captures_are_one_capture(tmp_path, synthetic):
    """A trace rotated into files gives the rows of the whole trace."""
    data = synthetic[0].read_bytes()
    # cut after record 17_777 (mid-connection for many of them)
    off, n = 24, 0
    while n < 17_777:
        off += 16 + struct.unpack_from("<I", data, off + 8)[0]
        n += 1
    a, b = tmp_path / "a.pcap", tmp_path / "b.pcap"
    a.write_bytes(data[:off])
    b.write_bytes(data[:24] + data[off:])
    whole = analyze(synthetic[0], workers=1, keep_rows=True)
    for w in (1, 2):
        parts = analyze([a, b], workers=w, keep_rows=True)
        assert _canonical(parts.rows) == _canonical(whole.rows)
        assert parts.packets == whole.packets
        assert parts.file_bytes == len(data) + 24


def test_corrupt_capture_behaves_as_with_one_worker(tmp_path, synthetic):
    data = bytearray(synthetic[0].read_bytes())
    off, n = 24, 0
    while n < 25_000:
        off += 16 + struct.unpack_from("<I", data, off + 8)[0]
        n += 1
    struct.pack_into("<I", data, off + 8, 0x7FFFFFFF)
    f = tmp_path / "corrupt.pcap"
    f.write_bytes(bytes(data))
    one = analyze(f, workers=1, keep_rows=True)
    two = analyze(f, workers=2, keep_rows=True)
    assert one.error and "corrupt" in one.error
    assert two.error == one.error
    assert one.packets == two.packets == 25_000
    assert _canonical(two.rows) == _canonical(one.rows)
    assert _traffic(two) == _traffic(one)


@pytest.mark.parametrize("workers", [1, 2])
def test_open_readers_left_unread_are_closed(tmp_path, synthetic, workers):
    """analyze closes the open readers it is given, also those a corrupt capture
    before them left unread (their descriptors stayed open)."""
    data = bytearray(synthetic[1].read_bytes())
    struct.pack_into("<I", data, 24 + 8, 0x7FFFFFFF)          # the first record's length
    corrupt = tmp_path / "corrupt.pcap"
    corrupt.write_bytes(bytes(data))
    later = read_pcap(synthetic[1])
    s = analyze([corrupt, later], workers=workers)
    assert "corrupt" in s.error and s.packets == 0
    with pytest.raises(UsageError, match="closed"):
        later.read_batch()


def test_pipe_is_read_once_by_n_trackers(tmp_path, synthetic):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    data = synthetic[1].read_bytes()

    def feed():
        with open(fifo, "wb") as w:
            w.write(data)

    t = threading.Thread(target=feed)
    t.start()
    s = analyze(str(fifo), workers=2, keep_rows=True)
    t.join(30)
    assert s.workers == 2 and s.packets == 24_000
    assert _canonical(s.rows) == _canonical(analyze(synthetic[1], workers=1, keep_rows=True).rows)


def test_idle_helpers_sleep_until_there_is_work_not_poll(tmp_path, synthetic, monkeypatch):
    """A slow pipe (a live capture piped in) leaves the helpers idle most of the time:
    they must sleep until a batch or a freed buffer comes, not wake on a timer (they
    once looked for a chunk to read ahead every millisecond, ~1000 wake-ups a second
    each, taking the GIL every time)."""
    data = synthetic[1].read_bytes()
    fifo = tmp_path / "slow-fifo"
    os.mkfifo(fifo)
    looks = [0]
    real_init = shards_mod._Shards.__init__

    def init(self, cfg, n, fill=None):
        def counted():
            looks[0] += 1
            return fill()
        real_init(self, cfg, n, None if fill is None else counted)

    monkeypatch.setattr(shards_mod._Shards, "__init__", init)
    writes = 12

    def feed():
        with open(fifo, "wb", buffering=0) as w:
            step = -(-len(data) // writes)
            for i in range(writes):
                w.write(data[i * step:(i + 1) * step])
                time.sleep(0.05)

    t = threading.Thread(target=feed)
    t.start()
    batches = [0]

    def progress(done, total):
        batches[0] += 1

    s = analyze(str(fifo), AnalyzeConfig(batch_bytes=1 << 20), workers=2, progress=progress)
    t.join(30)
    assert s.packets == 24_000
    # each batch read and each batch collected may wake the helper once; 0.6 s of
    # polling every millisecond looked ~600 times
    assert looks[0] <= 3 * batches[0] + 10, (looks[0], batches[0])


@pytest.mark.parametrize("workers", [2, 3])
def test_an_error_reading_ahead_ends_reading_ahead_not_the_helper(synthetic, monkeypatch, workers):
    """Reading ahead is only a help: an error there that is not the read's own (a
    buffer that cannot be allocated) must not kill the helper thread -- which left the
    reading thread to track every batch alone, and printed a thread's traceback."""
    calls = [0]
    real_init = shards_mod._Shards.__init__

    def init(self, cfg, n, fill=None):
        def failing():
            calls[0] += 1
            raise MemoryError("no buffer to read ahead into")
        real_init(self, cfg, n, failing)

    monkeypatch.setattr(shards_mod._Shards, "__init__", init)
    died: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: died.append(args.exc_value))
    tracked: dict[str, int] = {}
    real_track = shards_mod._Shards._track

    def track(self, k, plan):
        name = threading.current_thread().name
        tracked[name] = tracked.get(name, 0) + 1
        return real_track(self, k, plan)

    monkeypatch.setattr(shards_mod._Shards, "_track", track)
    path = synthetic[0]
    cfg = AnalyzeConfig(batch_bytes=64 << 10)
    many = analyze(path, cfg, workers=workers, keep_rows=True)
    one = analyze(path, cfg, workers=1, keep_rows=True)
    # (each helper may have called it before the first error ended it)
    assert died == [] and 1 <= calls[0] <= workers - 1
    assert all(tracked.get(f"fasttcp-shard{k}", 0) > 0 for k in range(1, workers))
    assert _canonical(many.rows) == _canonical(one.rows) and _traffic(many) == _traffic(one)


@pytest.mark.parametrize("given", ["path", "reader without shards", "reader with other shards",
                                   "reader with these shards"])
def test_the_shards_come_from_the_scan_when_the_reader_has_them(monkeypatch, synthetic, given):
    """A capture analyze opens is sharded by its scanner as each record is read; one
    given open is sharded in a pass of its own unless its reader computes the very
    sharding analyze needs. The rows are the same either way."""
    import fasttcp.wire.rss as rss
    from fasttcp.wire.rss import RssShards

    passes = [0]
    real = rss.shard_of_batch

    def counted(*a, **kw):
        passes[0] += 1
        return real(*a, **kw)

    monkeypatch.setattr(rss, "shard_of_batch", counted)
    path = synthetic[0]
    cfg = AnalyzeConfig(batch_bytes=1 << 16)
    spec = {"path": None, "reader without shards": None, "reader with other shards": RssShards(3),
            "reader with these shards": shards_mod.sharding(2)}[given]
    src = path if given == "path" else read_pcap(path, batch_bytes=1 << 16, buffers=shards_mod.BUFFERS,
                                                 shards=spec)
    got = analyze(src, cfg, workers=2, keep_rows=True)
    assert (passes[0] == 0) == (given in ("path", "reader with these shards")), passes[0]
    assert _canonical(got.rows) == _canonical(analyze(path, cfg, workers=1, keep_rows=True).rows)


def test_counts_wait_for_a_batch_a_helper_is_still_tracking(synthetic):
    """Ctrl-C pressed again while the run stops its threads can leave a helper tracking
    a batch when the counts are folded: they wait for it (they once raised "Tracker is
    in use" in place of the KeyboardInterrupt). Here it is shard 1's first batch, whose
    task makes the tracker first (slowly): the counts wait for that too, rather than
    finding no tracker and counting none."""
    from fasttcp.analysis.summary import Summary
    from fasttcp.wire.rss import shard_of_batch

    (batch,) = list(read_pcap(synthetic[0], batch_bytes=1 << 26, batch_packets=1 << 20))
    shards = shards_mod._Shards(AnalyzeConfig(), 2)
    make = shards.make

    def slow_make():
        time.sleep(0.2)
        return make()

    shards.make = slow_make
    shard = shard_of_batch(batch, 2, reta_size=shards_mod.reta_size(2))
    plan = ShardPlan(batch, shard, 2, 0)
    started = threading.Event()

    def task():
        with shards.cv:
            shards.busy[1] = threading.get_ident()
        started.set()
        shards._track(1, plan)
        with shards.cv:
            shards.busy[1] = None

    t = threading.Thread(target=task)
    t.start()
    try:
        assert started.wait(30)
        summary = Summary()
        shards.fold(summary)
        assert summary.packets == shards.trackers[1].stats["packets"] > 0
    finally:
        t.join(30)
        shards.close()
    assert _shard_threads() == []


@pytest.mark.parametrize("workers", [2, 4, 8])
@pytest.mark.parametrize("capture", [b"", b"\0" * 100], ids=["empty", "zeros"])
def test_memory_is_what_was_configured_however_early_the_run_ends(tmp_path, synthetic, workers, capture):
    """A run that ends before its first batch (a capture that is not one, Ctrl-C while a
    pipe is empty) has made shard 0's tracker only: the summary still counts every
    shard's, as a run that read the capture does."""
    cfg = AnalyzeConfig(capacity=100_000)
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(capture)
    with pytest.raises(CaptureError) as e:
        analyze(bad, cfg, workers=workers)
    assert e.value.summary.memory_bytes == analyze(synthetic[1], cfg, workers=workers).memory_bytes


def _shard_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("fasttcp-shard")]


@pytest.mark.parametrize("error", [MemoryError("cannot allocate"), UsageError("bad batch")])
def test_a_failing_shard_stops_the_run_naming_it(monkeypatch, synthetic, error):
    real = shards_mod._Shards._track
    calls = [0]

    def track(self, k, plan):
        if k == 1:
            calls[0] += 1
            if calls[0] == 3:
                raise error
        return real(self, k, plan)

    monkeypatch.setattr(shards_mod._Shards, "_track", track)
    with pytest.raises(WorkerError) as e:
        analyze(synthetic[0], AnalyzeConfig(batch_bytes=1 << 14), workers=2)
    assert e.value.shard == 1 and e.value.shards == 2
    assert str(e.value).startswith("shard 1 of 2: ") and type(error).__name__ in str(e.value)
    assert e.value.__cause__ is error
    partial = e.value.summary
    assert 0 < partial.packets < 40_000          # what was counted, not a full report
    assert _shard_threads() == []


def test_a_shard_tracker_that_cannot_be_made_stops_the_run_naming_it(monkeypatch, synthetic):
    """Shard 0's tracker is made before the capture is read, the others by the thread
    that first tracks for them: one that cannot be made (out of memory) fails as a
    tracker that raised does, naming its shard."""
    from fasttcp.analysis import run as run_mod

    real = run_mod.make_tracker
    made = []

    def make(cfg, capacity):
        made.append(threading.current_thread().name)
        if len(made) == 3:
            raise MemoryError("cannot allocate a table")
        return real(cfg, capacity)

    monkeypatch.setattr(run_mod, "make_tracker", make)
    with pytest.raises(WorkerError) as e:
        analyze(synthetic[0], AnalyzeConfig(batch_bytes=1 << 14), workers=3)
    assert e.value.shard == 2 and e.value.shards == 3
    assert "MemoryError: cannot allocate a table" in str(e.value)
    assert made[0] == threading.current_thread().name    # shard 0's, before the capture is read
    assert e.value.summary.packets < 40_000
    assert _shard_threads() == []


def test_ctrl_c_stops_the_trackers_and_keeps_the_counts(synthetic):
    sent = []

    def progress(done, total):
        if not sent:
            sent.append(done)
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt) as e:
        analyze(synthetic[0], AnalyzeConfig(batch_bytes=1 << 14), workers=2, progress=progress)
    s = e.value.summary
    assert s.interrupted and 0 < s.packets < 40_000
    assert "interrupted" in s.format()
    assert _shard_threads() == []


@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_before_the_capture_is_open_still_gives_a_summary(synthetic, monkeypatch, workers):
    """An interrupt while the capture is being opened (before a packet is read) carries
    a summary too, of nothing and marked interrupted, as every interrupt does."""
    from fasttcp.analysis import run as run_mod

    def opening(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_mod, "CaptureChain", opening)
    with pytest.raises(KeyboardInterrupt) as e:
        analyze([synthetic[0], synthetic[1]], workers=workers)
    s = e.value.summary
    assert s.interrupted and s.packets == 0 and s.connections == 0
    assert s.path == f"{synthetic[0]}, {synthetic[1]}"
    assert s.workers == workers
    assert "interrupted" in s.format()


@pytest.mark.parametrize("paths, name", [(b"/tmp/x.pcap", "b'/tmp/x.pcap'"), ("/tmp/y.pcap", "/tmp/y.pcap"),
                                         ({"a": 1}, "{'a': 1}"), (("p", "q"), "p, q")])
def test_ctrl_c_before_the_arguments_are_checked_names_them_as_given(monkeypatch, paths, name):
    """The summary of an interrupt before anything was checked names the captures as the
    arguments gave them, never a list of a bytes path's byte values."""
    from fasttcp.analysis import run as run_mod

    def checking(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_mod, "_check_config", checking)
    with pytest.raises(KeyboardInterrupt) as e:
        analyze(paths)
    assert e.value.summary.path == name and e.value.summary.packets == 0


def test_ctrl_c_while_the_report_is_set_up_closes_the_capture(synthetic, monkeypatch, tmp_path):
    """An interrupt between opening the capture and reading it (the report's aggregate
    being made) closes the capture and carries the run's summary."""
    from fasttcp.analysis import run as run_mod

    chains, closed = [], []
    real = run_mod.CaptureChain

    def chain(*args, **kwargs):
        c = real(*args, **kwargs)
        close = c.close
        c.close = lambda: (closed.append(c), close())[1]
        chains.append(c)
        return c

    def aggregate(report, chain):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_mod, "CaptureChain", chain)
    monkeypatch.setattr(run_mod, "_report_aggregate", aggregate)
    with pytest.raises(KeyboardInterrupt) as e:
        analyze(synthetic[0], workers=2, report=tmp_path / "r.html")
    s = e.value.summary
    assert s.interrupted and s.packets == 0 and s.workers == 2
    assert s.path == str(synthetic[0])
    assert len(chains) == 1 and closed == chains


def _in_thread(call):
    """Run `call` on a thread and return what it raised; None if it is still running
    after two minutes (a hang: the run is left behind, a daemon)."""
    out = []

    def target():
        try:
            call()
        except BaseException as e:       # what the run raised, for the test to check
            out.append(e)
        else:
            out.append(None)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(120)
    return out[0] if out else "hung"


@pytest.mark.parametrize("where", ["claim", "bookkeeping"])
@pytest.mark.parametrize("workers", [2, 3, 8])
def test_ctrl_c_between_a_task_and_its_bookkeeping_does_not_hang(monkeypatch, synthetic, where, workers):
    # Ctrl-C lands between two bytecodes of the reading thread: here just after it took
    # a task, or after it tracked one and before it marked it done. That task stays
    # marked running; finishing the batches in hand must not wait for it for ever.
    real_claim, real_run = shards_mod._Shards._claim, shards_mod._Shards._run
    reader, calls = [], [0]

    def claim(self):
        if threading.current_thread() not in reader and calls[0] < 5:
            # the helpers hold back until then, so that the reading thread takes the
            # tasks (idle helpers would otherwise take them all first: the reading
            # thread has its reads to do between them, and nothing else runs then)
            return None
        task = real_claim(self)
        if where == "claim" and task is not None and threading.current_thread() in reader:
            calls[0] += 1
            if calls[0] == 5:
                raise KeyboardInterrupt
        return task

    def run(self, b, k):
        # (a tracker's task: a batch's checksums, k = -1, have no bookkeeping)
        if where == "bookkeeping" and k >= 0 and threading.current_thread() in reader:
            calls[0] += 1
            if calls[0] == 5:
                self._track(k, b.plan)
                raise KeyboardInterrupt
        return real_run(self, b, k)

    monkeypatch.setattr(shards_mod._Shards, "_claim", claim)
    monkeypatch.setattr(shards_mod._Shards, "_run", run)

    def call():
        reader.append(threading.current_thread())
        analyze(synthetic[0], AnalyzeConfig(batch_bytes=1 << 12), workers=workers)

    e = _in_thread(call)
    assert isinstance(e, KeyboardInterrupt), e
    assert e.summary.interrupted and 0 < e.summary.packets < 40_000
    assert _shard_threads() == []


@pytest.mark.parametrize("workers", [2, 5])
def test_ctrl_c_that_leaves_the_lock_held_does_not_hang(monkeypatch, synthetic, workers):
    # Condition.__enter__ and __exit__ are Python code: a Ctrl-C landing in one, just
    # after the lock's acquire or just before its release, leaves the reading thread
    # holding the lock when the exception propagates. (Seen sending SIGINT at random
    # times: the reading thread joined helpers that waited for the lock for ever.)
    real_collect = shards_mod._Shards.collect
    calls = [0]

    def collect(self):
        calls[0] += 1
        if calls[0] == 3:
            self.cv.acquire()
            raise KeyboardInterrupt
        return real_collect(self)

    monkeypatch.setattr(shards_mod._Shards, "collect", collect)
    e = _in_thread(lambda: analyze(synthetic[0], AnalyzeConfig(batch_bytes=1 << 12), workers=workers))
    assert isinstance(e, KeyboardInterrupt), e
    assert e.summary.interrupted and 0 < e.summary.packets < 40_000
    assert _shard_threads() == []


def test_ctrl_c_while_the_helpers_are_joined_keeps_the_counts_and_joins_them(monkeypatch, synthetic):
    # the run is over and its helpers are being joined when Ctrl-C lands
    real_join = threading.Thread.join
    sent = []

    def join(self, timeout=None):
        if self.name.startswith("fasttcp-shard") and not sent:
            sent.append(self.name)
            raise KeyboardInterrupt
        return real_join(self, timeout)

    monkeypatch.setattr(threading.Thread, "join", join)
    with pytest.raises(KeyboardInterrupt) as e:
        analyze(synthetic[0], AnalyzeConfig(batch_bytes=1 << 14), workers=3)
    assert sent and e.value.summary.packets == 40_000
    assert _shard_threads() == []


def test_a_helper_thread_that_cannot_start_is_not_left_waiting(monkeypatch, synthetic):
    real_start = threading.Thread.start
    started = []

    def start(self):
        if self.name.startswith("fasttcp-shard"):
            started.append(self.name)
            if len(started) == 2:
                raise RuntimeError("can't start new thread")
        return real_start(self)

    monkeypatch.setattr(threading.Thread, "start", start)
    # (an OSError saying what to do, as running out of threads is the process's limit)
    with pytest.raises(OSError, match=r"cannot start the 2 helper threads of 3 workers .*can't start new "
                                      r"thread.*use fewer workers") as e:
        analyze(synthetic[0], workers=3)
    assert isinstance(e.value.__cause__, RuntimeError) and e.value.errno == errno.EAGAIN
    assert _shard_threads() == []


def test_the_cli_says_when_its_threads_cannot_start(tmp_path, synthetic):
    # a process limited to few threads: `fasttcp analyze -w 64` ends with a message and
    # status 2, not a traceback
    script = ("import resource, sys, re\n"
              "from fasttcp.cli.main import main\n"
              "import fasttcp.analysis.shards, fasttcp.tracker.tracker, fasttcp.capture.reader\n"
              "vm = int(re.search(r'VmSize:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) * 1024\n"
              "resource.setrlimit(resource.RLIMIT_AS, (vm + (96 << 20), vm + (96 << 20)))\n"
              f"sys.exit(main(['analyze', '-q', '-w', '64', '--summary-only', {str(synthetic[1])!r}]))\n")
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert "cannot start the 63 helper threads of 64 workers" in res.stderr and "Traceback" not in res.stderr


def test_capacity_is_the_total_over_the_shards(synthetic):
    one = analyze(synthetic[1], AnalyzeConfig(capacity=100_000), workers=1)
    two = analyze(synthetic[1], AnalyzeConfig(capacity=100_000), workers=2)
    # the tables hold as many connections in all: memory is what was configured, plus
    # a timer wheel per shard -- not twice the configured
    assert one.memory_bytes < two.memory_bytes <= one.memory_bytes * 1.01


@pytest.mark.parametrize("bad", [0, -1, 1025, 2 ** 64, 2.0, True, "2", float("nan")])
def test_bad_worker_counts_raise(bad, synthetic):
    with pytest.raises(UsageError, match="workers"):
        analyze(synthetic[1], workers=bad)


@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("field, bad", [
    ("capacity", 0), ("capacity", -1), ("capacity", 1.5), ("capacity", float("nan")), ("capacity", True),
    ("capacity", "5"), ("capacity", 2 ** 31 + 1), ("capacity", 2 ** 40),
    ("verify_checksum", "no"), ("server_ports", None), ("timeouts", "linux"),
])
def test_bad_config_raises_naming_the_value_given(synthetic, workers, field, bad):
    """The capacity is the total: with N workers it was split first, so a bad one was
    named by its share ('got 0' for -1), a string raised TypeError, True passed, and a
    total over 2**31 was taken (2**32 as 3 tables of 1.4 G connections)."""
    cfg = AnalyzeConfig(**{field: bad})
    with pytest.raises(UsageError, match=field) as e:
        analyze(synthetic[1], cfg, workers=workers)
    assert f"got {bad!r}" in str(e.value)


@pytest.mark.parametrize("kw, match", [
    ({"community_id_seed": -1}, "community_id_seed"), ({"community_id_seed": 2 ** 16}, "community_id_seed"),
    ({"community_id_seed": 2 ** 70}, "community_id_seed"), ({"community_id": "yes"}, "community_id"),
    ({"community_id": True}, "table format has no community_id"),
])
@pytest.mark.parametrize("keep_rows", [False, True])
def test_row_options_are_checked_without_an_output_too(synthetic, kw, match, keep_rows):
    """A bad seed is a bad argument whether or not rows are written (it was taken
    silently without `out`)."""
    with pytest.raises(UsageError, match=match):
        analyze(synthetic[1], workers=1, keep_rows=keep_rows, **kw)


def test_cfg_that_is_not_an_analyze_config_raises(synthetic):
    with pytest.raises(UsageError, match="AnalyzeConfig"):
        analyze(synthetic[1], {"capacity": 10}, workers=2)


@pytest.mark.parametrize("bad", [[], b"x.pcap", 3, [None], {"a": 1}])
def test_bad_paths_raise(bad):
    with pytest.raises(UsageError):
        analyze(bad)


def test_default_workers_is_the_affinity_mask():
    assert default_workers() == len(os.sched_getaffinity(0))
    assert fasttcp.analyze is analyze


def test_default_workers_on_a_machine_of_more_cpus_than_max_workers(monkeypatch):
    """The default is the CPUs available, which analyze then refused above MAX_WORKERS
    (a UsageError from workers=None, a traceback from the command line)."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(MAX_WORKERS + 500)))
    assert default_workers() == MAX_WORKERS


@pytest.mark.parametrize("paths", ["", ["", "x.pcap"]])
def test_an_empty_path_is_no_such_file_not_the_current_directory(paths):
    with pytest.raises(FileNotFoundError) as e:
        analyze(paths)
    assert e.value.filename == "" and "directory" not in str(e.value).replace("No such file or directory", "")


def test_missing_first_capture_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        analyze(tmp_path / "nope.pcap", workers=2)


def test_missing_later_capture_ends_the_run_with_an_error(tmp_path, synthetic):
    s = analyze([synthetic[1], tmp_path / "nope.pcap"], workers=2)
    assert s.packets == 24_000 and "nope.pcap" in s.error


def test_summary_json_names_the_workers(synthetic):
    s = analyze(synthetic[1], workers=2)
    d = json.loads(json.dumps(s.as_dict()))
    assert d["workers"] == 2 and d["interrupted"] is False


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("mode", ["wb", "w"])
def test_rows_that_cannot_reach_the_output_are_an_output_error_from_analyze(synthetic, workers, mode):
    # the rows sit in the stream's buffer until it is flushed: analyze flushes it, so a
    # full disk is its OutputError -- not a plain OSError at the caller's close()
    out = open("/dev/full", mode)  # noqa: SIM115  -- closed below, whatever it raises
    try:
        with pytest.raises(fasttcp.errors.OutputError) as e:
            analyze(synthetic[0], fmt="json", out=out, workers=workers)
        assert e.value.errno == errno.ENOSPC
        assert e.value.summary.connections > 0
    finally:
        with contextlib.suppress(OSError):
            out.close()
