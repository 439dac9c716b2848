"""`fasttcp.distributed.analyze`: index, split and reduce a capture on a Dask cluster
and merge the shards' rows and counts into one `Summary`."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from fasttcp.analysis.config import AnalyzeConfig
from fasttcp.analysis.summary import Summary
from fasttcp.capture.reader import CaptureError, read_pcap
from fasttcp.distributed.client import require_distributed
from fasttcp.distributed.index import PCAP_HEADER_BYTES, Chunk, index_file
from fasttcp.distributed.reduce import ShardResult, track_shard
from fasttcp.distributed.split import split_chunk
from fasttcp.errors import UsageError, WorkerError
from fasttcp.tracker.tracker import FLOW_DTYPE

__all__ = ["analyze", "DEFAULT_CHUNK_BYTES", "MIN_CHUNK_BYTES", "MAX_CHUNK_BYTES", "MAX_SHARDS"]

#: a split task's chunk: large enough that a task's fixed cost (scheduling, a file
#: open, one piece file) is small against reading it, small enough that a worker holds
#: a few at once
DEFAULT_CHUNK_BYTES = 128 << 20
MIN_CHUNK_BYTES = 1 << 16
#: `read_pcap`'s largest batch
MAX_CHUNK_BYTES = 1 << 30
#: shards (reduce tasks) at most: each chunk writes a segment for each
MAX_SHARDS = 4096
#: shards per worker thread by default: a straggling shard leaves the others' threads
#: work to do, and a rerun after a lost worker repeats less
SHARDS_PER_THREAD = 2
#: the default shuffle directory's root when it has room (a tmpfs on Linux)
SHM_DIR = "/dev/shm"


def _check_paths(paths: str | Path | Sequence[str | Path]) -> list[str]:
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if isinstance(paths, (bytes, bytearray)) or not isinstance(paths, Sequence):
        raise UsageError(f"analyze takes a capture path or a list of them, got {type(paths).__name__}")
    out = []
    for p in paths:
        if not isinstance(p, (str, Path)):
            raise UsageError(f"not a capture path: {p!r} (the workers open the files themselves)")
        out.append(str(p))
    if not out:
        raise UsageError("analyze needs at least one capture")
    return out


def _check_int(value: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise UsageError(f"{name} must be an int in {lo}..{hi}, got {value!r}")
    return value


PcapHeader = tuple[bool, bool, int, int]


def _headers(paths: list[str]) -> tuple[list[PcapHeader | None], tuple[int, str] | None]:
    """Open every capture's header here, before any work: each pcap's header (None for
    a pcapng), and where the run ends early. The first capture that cannot be opened
    raises (as `fasttcp.analyze` does); a later one that opens but is not a capture
    ends the run there, as it ends `CaptureChain`: ``(its number, the error)``. A later
    file that cannot be opened at all raises too: missing files are told before the
    cluster spends anything."""
    headers: list[PcapHeader | None] = []
    for i, p in enumerate(paths):
        try:
            with read_pcap(p, batch_bytes=MIN_CHUNK_BYTES) as r:
                pcap = r.format == "pcap"
                headers.append((r.big_endian, r.nanosecond, r.linktypes[0], r.snaplen) if pcap else None)
        except CaptureError as e:
            if i == 0:
                raise
            return headers, (i, f"{p}: {e}")
    return headers, None


def _default_shuffle_root(total_bytes: int) -> str | None:
    """Where the run's shuffle directory goes by default: /dev/shm (memory) when it
    can hold twice the captures -- the pieces are about the captures' size, and a disk
    under a page cache that the pieces push out costs the split 4x (docs/distributed.md)
    -- else the temporary directory."""
    try:
        st = os.statvfs(SHM_DIR)
    except OSError:
        return None
    return SHM_DIR if st.f_bavail * st.f_frsize >= 2 * total_bytes else None


def _default_shards(client: Any) -> int:
    threads = sum(client.nthreads().values()) or 1
    return min(MAX_SHARDS, SHARDS_PER_THREAD * threads)


def analyze(paths: str | Path | Sequence[str | Path], cfg: AnalyzeConfig | None = None, *, client: Any = None,
            shards: int | None = None, chunk_bytes: int = DEFAULT_CHUNK_BYTES, shuffle_dir: str | None = None,
            progress: Callable[[int, int], None] | None = None, report: dict | None = None) -> Summary:
    """Track every TCP connection of the capture(s) at `paths` (files in time order,
    read as one capture, as `fasttcp.analyze` reads them) on a Dask cluster, and
    return the summary with every row in ``summary.rows`` (FLOW_DTYPE, shard 0's
    first, each shard's in its tracker's order).

    The rows are the set, and the summary's traffic counts are the counts, that
    `fasttcp.analyze(paths, cfg)` gives in one process. ``client``: a
    `distributed.Client` (default: the current one). ``shards``: reduce tasks, each one
    tracker over its flows (default: two per worker thread). ``chunk_bytes``: bytes
    of records a split task reads (its memory). ``shuffle_dir``: where the pieces go,
    a directory every worker can read and write (default: /dev/shm if it can hold
    twice the captures, else the system's temporary directory -- right for a
    `LocalCluster`, not for workers on other machines).
    ``progress(done, total)`` counts split chunks. ``report``: a dict filled with the
    run's own figures (``chunks``, ``shards``, ``shuffle_bytes``: the pieces written).

    Raises UsageError for bad arguments, ImportError without Dask (naming the extra),
    FileNotFoundError/CaptureError (before any work) for a capture that cannot be
    opened, `fasttcp.errors.WorkerError` naming a shard whose task failed. A corrupt
    record ends the capture there, as in one process: ``summary.error``."""
    distributed = require_distributed()
    names = _check_paths(paths)
    from fasttcp.analysis.run import _check_config
    from fasttcp.analysis.shards import reta_size

    cfg = _check_config(cfg)
    chunk_bytes = _check_int(chunk_bytes, "chunk_bytes", MIN_CHUNK_BYTES, MAX_CHUNK_BYTES)
    if shards is not None:
        shards = _check_int(shards, "shards", 1, MAX_SHARDS)
    if shuffle_dir is not None and not os.path.isdir(shuffle_dir):
        raise UsageError(f"shuffle_dir must be an existing directory, got {shuffle_dir!r}")
    if progress is not None and not callable(progress):
        raise UsageError(f"progress must be callable, got {progress!r}")
    for p in names:
        os.stat(p)                                   # FileNotFoundError, PermissionError, ...
    headers, bad = _headers(names)
    if client is None:
        client = distributed.get_client()          # ValueError when there is none
    elif not isinstance(client, distributed.Client):
        raise UsageError(f"client must be a distributed.Client, got {type(client).__name__}")
    n = shards if shards is not None else _default_shards(client)
    summary = Summary(path=", ".join(names), workers=len(client.nthreads()) or 1)
    if shuffle_dir is None:
        shuffle_dir = _default_shuffle_root(sum(os.path.getsize(p) for p in names))
    run_dir = tempfile.mkdtemp(prefix="fasttcp-shuffle-", dir=shuffle_dir)
    t0 = time.perf_counter()
    removal = None
    try:
        results = _run(client, names[: bad[0]] if bad else names, headers, cfg, n, reta_size(n), chunk_bytes,
                       run_dir, summary, progress, report)
        # every reduce is done with the pieces: delete them while the rows are folded
        # (both serial work after the cluster's, on cores the workers have left idle)
        removal = threading.Thread(target=_remove_run_dir, args=(run_dir,), name="fasttcp-cleanup")
        removal.start()
        if bad and summary.error is None:
            summary.error = bad[1]
        _fold(summary, results)
    finally:
        if removal is None:
            _remove_run_dir(run_dir)
        else:
            removal.join()
    summary.seconds = time.perf_counter() - t0
    return summary


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):               # rmtree below has the last word
        os.unlink(path)


def _remove_run_dir(run_dir: str) -> None:
    """Delete the run's piece files, several at once, then the folder. Freeing the
    pages of a GiB of pieces in /dev/shm costs the kernel ~0.14 s of CPU, serial time
    at the end of every run when done file by file (9% of a 2-worker run of the 1 GiB
    bench capture); `unlink` releases the GIL, so threads spread it over the cores."""
    try:
        names = [os.path.join(run_dir, name) for name in os.listdir(run_dir)]
    except OSError:
        names = []
    threads = min(len(names), len(os.sched_getaffinity(0)))
    if threads > 1:
        with ThreadPoolExecutor(threads, thread_name_prefix="fasttcp-cleanup") as pool:
            list(pool.map(_unlink_quietly, names))
    shutil.rmtree(run_dir, ignore_errors=True)


def _run(client: Any, names: list[str], headers: list[PcapHeader | None], cfg: AnalyzeConfig, n: int, reta: int,
         chunk_bytes: int, run_dir: str, summary: Summary, progress: Callable[[int, int], None] | None,
         report: dict | None) -> list[ShardResult]:
    """Index the pcaps larger than a chunk and split every other file whole, all at
    once; split each indexed file's chunks as its index arrives; take the files in
    order up to the first corrupt record; reduce every shard over their pieces."""
    distributed = require_distributed()
    token = uuid.uuid4().hex[:12]
    started: list[tuple[Any, list[Any]]] = []       # per file: its index, or its one split
    for i, p in enumerate(names):
        size = os.path.getsize(p)
        if headers[i] is not None and size - PCAP_HEADER_BYTES > chunk_bytes:
            started.append((client.submit(index_file, p, i, chunk_bytes, key=f"fasttcp-index-{token}-{i}",
                                          pure=False), []))
        else:
            whole = Chunk(p, i, 0, PCAP_HEADER_BYTES if headers[i] is not None else 0, size, -1, whole=True)
            started.append((None, [client.submit(split_chunk, whole, headers[i], n, reta, run_dir,
                                                 key=f"fasttcp-split-{token}-{i}-0", pure=False)]))
    splits: list[Any] = []
    try:
        for i, (index_future, file_splits) in enumerate(started):
            if index_future is not None:
                end: Any = index_future.result()
                file_splits += [client.submit(split_chunk, c, headers[i], n, reta, run_dir,
                                              key=f"fasttcp-split-{token}-{c.file_no}-{c.seq}", pure=False)
                                for c in end.chunks]
            else:
                end = file_splits[0].result()        # a whole file's split tells how it ended
            splits += file_splits
            summary.file_bytes += end.bytes
            if end.error is not None:
                summary.error = end.error
                break
            if end.truncated_tail:
                summary.truncated_tail += end.truncated_tail
                summary.truncated.append((names[i], end.truncated_tail))
        capacity = -(-cfg.capacity // n)
        reduces = [client.submit(track_shard, k, splits, cfg, capacity, key=f"fasttcp-reduce-{token}-{k}",
                                 pure=False) for k in range(n)]
        if progress is not None:
            progress(0, len(splits))
            for done, _ in enumerate(distributed.as_completed(splits), 1):
                progress(done, len(splits))
        results = _gather_shards(distributed, reduces, n)
        if report is not None:
            report.update(chunks=len(splits), shards=n, shuffle_bytes=sum(f.result().piece_bytes for f in splits))
        return results
    finally:
        for index_future, file_splits in started:
            for future in ([index_future] if index_future is not None else []) + file_splits:
                future.cancel()


def _gather_shards(distributed: Any, reduces: list[Any], n: int) -> list[ShardResult]:
    """The shards' results, in shard order, each fetched as soon as its task ends: the
    transfer of its rows to the client overlaps the shards still running, rather
    than all of them following the last."""
    out: list[ShardResult | None] = [None] * n
    shard_of = {future.key: k for k, future in enumerate(reduces)}
    for future in distributed.as_completed(reduces):
        k = shard_of[future.key]
        try:
            out[k] = future.result()
        except (CaptureError, OSError):
            raise                                    # a capture changed (or vanished) under the run
        except Exception as e:
            raise WorkerError(k, n, f"{type(e).__name__}: {e}") from e
    return [r for r in out if r is not None]


def _fold(summary: Summary, results: list[ShardResult]) -> None:
    """The shards' rows and counts, in shard order, into `summary`."""
    kept = []
    for r in results:
        part = r.rows_summary
        summary.connections += part.connections
        summary.conn_states.update(part.conn_states)
        summary.resets += part.resets
        summary.retransmissions += part.retransmissions
        summary.rtt1.merge(part.rtt1)
        summary.rtt2.merge(part.rtt2)
        summary.packets += r.packets
        summary.verdicts.update(r.verdicts)
        summary.memory_bytes += r.memory_bytes
        if len(r.rows):
            kept.append(r.rows)
    summary.rows = np.concatenate(kept) if kept else np.empty(0, FLOW_DTYPE)
