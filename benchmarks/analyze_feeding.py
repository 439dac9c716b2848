"""How N analyze workers are best fed, measured on one capture in one run.

(a) page cache: N worker processes each read the whole capture, compute each
    packet's shard and track their own;
(b) one reader: one process reads the capture and computes the shards once, copies
    each batch into a shared-memory ring, and the N workers track their packets from
    there (no second read, no second hash, one more process and one more copy);
(c) threads: one process reads and shards each batch once and N threads track it,
    each its own shard (`feed_batch` releases the GIL), reading the next batch
    meanwhile -- what `fasttcp.analyze(workers=N)` does;
(d) a pipeline, not shards: the reading thread scans batch i+1 while one other
    thread tracks batch i with the one tracker (no flow hash, no plans, rows in the
    one-worker order); with it, one tracker tracking each batch on the reading thread
    right after its scan, to compare the time tracking takes on each thread.

Prints seconds and packets/s of each, and of one process tracking everything:

    python benchmarks/analyze_feeding.py [CAPTURE] [--workers N] [--repeat R]

(without CAPTURE: the short-connection capture of `fasttcp bench`, 1M packets).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import queue
import statistics
import tempfile
import threading
import time
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np

from fasttcp.analysis import AnalyzeConfig, analyze
from fasttcp.analysis.run import make_tracker
from fasttcp.bench.tracker import synth_capture
from fasttcp.capture.reader import CaptureBatch, read_pcap
from fasttcp.wire.rss import shard_of_batch

RING = 4                               # shared-memory blocks in flight
PIPE_AHEAD = 3                         # (d): batches read ahead of the tracker, as analyze's READ_AHEAD
ARRAYS = (("offsets", np.int64), ("lengths", np.int64), ("ts_ns", np.int64), ("wire_lengths", np.uint32),
          ("verdicts", np.uint8), ("interfaces", np.uint16), ("frames", np.int64), ("snapped", np.bool_))


def _layout(nbytes: int, n: int) -> list[tuple[str, int, np.dtype]]:
    out, pos = [], (nbytes + 63) // 64 * 64
    for name, dt in (*ARRAYS, ("shard", np.uint16)):
        out.append((name, pos, np.dtype(dt)))
        pos = (pos + n * np.dtype(dt).itemsize + 63) // 64 * 64
    return out


def _block_bytes(batch_bytes: int, max_packets: int) -> int:
    return batch_bytes + 64 * 12 + max_packets * (8 * 4 + 4 + 1 + 2 + 1 + 2) + 4096


def _views(shm: shared_memory.SharedMemory, nbytes: int, n: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    buf = np.ndarray(nbytes, np.uint8, shm.buf)
    return buf, {name: np.ndarray(n, dt, shm.buf, pos) for name, pos, dt in _layout(nbytes, n)}


def _worker(k: int, n: int, names: list[str], cfg: AnalyzeConfig, conn) -> None:
    blocks = [shared_memory.SharedMemory(name=nm) for nm in names]
    tracker = make_tracker(cfg, -(-cfg.capacity // n))
    rows = 0
    while True:
        msg = conn.recv()
        if msg is None:
            break
        j, nbytes, npk = msg
        buf, a = _views(blocks[j], nbytes, npk)
        batch = CaptureBatch(buf, *(a[name] for name, _ in ARRAYS))
        tracker.feed_batch(batch, select=a["shard"] == k)
        rows += len(tracker.finished())
        del batch, buf, a
        conn.send(j)
    rows += len(tracker.close())
    conn.send(("end", rows, tracker.stats["packets"]))
    for b in blocks:
        b.close()


def one_reader(path: Path, n: int, cfg: AnalyzeConfig) -> tuple[float, int, int]:
    """(b): seconds, rows, packets."""
    t0 = time.perf_counter()
    size = _block_bytes(cfg.batch_bytes + (1 << 20), 1 << 17)
    blocks = [shared_memory.SharedMemory(create=True, size=size) for _ in range(RING)]
    ctx = mp.get_context("fork")
    conns, procs = [], []
    for k in range(n):
        a, b = ctx.Pipe()
        p = ctx.Process(target=_worker, args=(k, n, [s.name for s in blocks], cfg, b), daemon=True)
        p.start()
        conns.append(a)
        procs.append(p)
    busy = [0] * RING                  # workers still holding each block
    j = 0
    for batch in read_pcap(path, batch_bytes=cfg.batch_bytes, batch_packets=1 << 17):
        while busy[j]:
            for c in conns:
                if c.poll(0.0005):
                    busy[c.recv()] -= 1
        nbytes, npk = len(batch.buffer), len(batch)
        buf, a = _views(blocks[j], nbytes, npk)
        buf[:] = batch.buffer
        for name, _ in ARRAYS:
            a[name][:] = getattr(batch, name)
        a["shard"][:] = shard_of_batch(batch, n)
        del buf, a
        busy[j] = n
        for c in conns:
            c.send((j, nbytes, npk))
        j = (j + 1) % RING
    rows = packets = 0
    for c in conns:
        c.send(None)
    for c in conns:
        while True:
            m = c.recv()
            if isinstance(m, tuple):
                rows += m[1]
                packets += m[2]
                break
    for p in procs:
        p.join()
    for s in blocks:
        s.close()
        s.unlink()
    return time.perf_counter() - t0, rows, packets


def _reading_worker(k: int, n: int, path: Path, cfg: AnalyzeConfig, conn) -> None:
    tracker = make_tracker(cfg, -(-cfg.capacity // n))
    rows = 0
    for batch in read_pcap(path, batch_bytes=cfg.batch_bytes, buffers=1):
        tracker.feed_batch(batch, select=shard_of_batch(batch, n) == k)
        rows += len(tracker.finished())
    rows += len(tracker.close())
    conn.send((rows, tracker.stats["packets"]))


def page_cache(path: Path, n: int, cfg: AnalyzeConfig) -> tuple[float, int, int]:
    """(a): seconds, rows, packets."""
    t0 = time.perf_counter()
    ctx = mp.get_context("fork")
    conns, procs = [], []
    for k in range(n):
        a, b = ctx.Pipe()
        p = ctx.Process(target=_reading_worker, args=(k, n, path, cfg, b), daemon=True)
        p.start()
        conns.append(a)
        procs.append(p)
    got = [c.recv() for c in conns]
    for p in procs:
        p.join()
    return time.perf_counter() - t0, sum(g[0] for g in got), sum(g[1] for g in got)


def threads(path: Path, n: int, cfg: AnalyzeConfig) -> tuple[float, int, int]:
    """(c) -- `fasttcp.analyze(workers=n)` -- and one thread for n == 1."""
    s = analyze(path, cfg, workers=n, keep_rows=True)
    return s.seconds, len(s.rows), s.packets


def _timed_feed(tracker, batch, spent: list[float]) -> int:
    t0 = time.perf_counter()
    tracker.feed_batch(batch)
    n = len(tracker.finished())
    spent[0] += time.perf_counter() - t0
    return n


def scan_then_track(path: Path, cfg: AnalyzeConfig, spent: list[float]) -> tuple[float, int, int]:
    """(d), serial: each batch tracked on the reading thread right after its scan;
    `spent` gets the seconds in the tracker."""
    t0 = time.perf_counter()
    tracker, rows = make_tracker(cfg, cfg.capacity), 0
    for batch in read_pcap(path, batch_bytes=cfg.batch_bytes, buffers=PIPE_AHEAD + 1):
        rows += _timed_feed(tracker, batch, spent)
    rows += len(tracker.close())
    return time.perf_counter() - t0, rows, tracker.stats["packets"]


def pipelined(path: Path, cfg: AnalyzeConfig, spent: list[float]) -> tuple[float, int, int]:
    """(d): the reading thread scans, one other thread tracks every batch with the one
    tracker, up to PIPE_AHEAD batches behind; `spent` gets the seconds in the tracker."""
    t0 = time.perf_counter()
    tracker, rows = make_tracker(cfg, cfg.capacity), [0]
    todo: queue.Queue = queue.Queue()
    done: queue.Queue = queue.Queue()
    failed: list[BaseException] = []

    def track() -> None:
        try:
            while (batch := todo.get()) is not None:
                rows[0] += _timed_feed(tracker, batch, spent)
                done.put(None)
            rows[0] += len(tracker.close())
        except BaseException as exc:  # handed to the reading thread, which would wait forever
            failed.append(exc)
            done.put(None)

    th = threading.Thread(target=track)
    th.start()
    in_flight = 0
    try:
        for batch in read_pcap(path, batch_bytes=cfg.batch_bytes, buffers=PIPE_AHEAD + 1):
            if in_flight == PIPE_AHEAD:  # its buffer is read into again after PIPE_AHEAD + 1 reads
                done.get()
                in_flight -= 1
            if failed:
                break
            todo.put(batch)
            in_flight += 1
    finally:
        todo.put(None)
        th.join()
    if failed:
        raise failed[0]
    return time.perf_counter() - t0, rows[0], tracker.stats["packets"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("capture", nargs="?")
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    path = Path(args.capture) if args.capture else Path(tempfile.gettempdir()) / "fasttcp-feeding-short.pcap"
    if not path.exists():
        synth_capture(path, 1_000_000, 10_000, shape="short")
    cfg = AnalyzeConfig(timeouts="conntrack", capacity=100_000)
    ways = {"one tracker (fasttcp.analyze, workers=1)": lambda: threads(path, 1, cfg),
            f"(a) {args.workers} processes, each reading": lambda: page_cache(path, args.workers, cfg),
            f"(b) one reader + shared memory, {args.workers} processes": lambda: one_reader(path, args.workers, cfg),
            f"(c) one reader + {args.workers} tracker threads": lambda: threads(path, args.workers, cfg)}
    tracking = {"scan": [0.0], "pipe": [0.0]}
    ways["(d) the one tracker on the reading thread"] = lambda: scan_then_track(path, cfg, tracking["scan"])
    ways["(d) one reader + the one tracker on a thread"] = lambda: pipelined(path, cfg, tracking["pipe"])
    secs: dict[str, list[float]] = {k: [] for k in ways}
    for r in range(args.repeat + 1):
        for name, fn in ways.items():        # alternated: drift hits every way alike
            dt, rows, packets = fn()
            if r:
                secs[name].append(dt)
        if not r:                        # the warm-up round's tracking is not counted
            for spent in tracking.values():
                spent[0] = 0.0
    base = statistics.median(secs[next(iter(secs))])
    for name, xs in secs.items():
        m = statistics.median(xs)
        print(f"{name:48s} {m:.3f} s  {packets / m / 1e6:5.2f} M packets/s  {base / m:4.2f}x  "
              f"(spread {(max(xs) - min(xs)) / m:.0%}, {rows:,} rows)")
    on_reader, on_helper = tracking["scan"][0] / args.repeat, tracking["pipe"][0] / args.repeat
    print(f"(d) tracking a run's batches: {on_reader:.3f} s on the thread that scanned them, {on_helper:.3f} s "
          f"on another thread meanwhile ({on_helper / on_reader:.2f}x)")


if __name__ == "__main__":
    main()
