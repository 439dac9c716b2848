"""`fasttcp.analyze`: track every TCP connection of captures and report, in this
process or in one worker process per shard of the flows."""
from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from fasttcp.analysis.config import AnalyzeConfig
from fasttcp.analysis.source import CaptureChain
from fasttcp.analysis.summary import Summary
from fasttcp.capture.reader import CaptureReader
from fasttcp.errors import OutputError, UsageError
from fasttcp.rows.writer import FORMATS, RowWriter
from fasttcp.tracker.tracker import FLOW_DTYPE, Tracker

__all__ = ["analyze", "default_workers", "make_tracker", "MAX_CAPACITY", "MAX_WORKERS"]

#: More shards than this buys nothing on any machine fasttcp runs on and would only
#: multiply the reading of the capture.
MAX_WORKERS = 1024
#: Connections tracked at once, in total: one tracker's table limit, which N shards share.
MAX_CAPACITY = 1 << 31

Paths = str | Path | CaptureReader | Sequence[str | Path | CaptureReader]


def default_workers() -> int:
    """The CPUs this process may run on (its affinity mask, not the machine's count), at
    most MAX_WORKERS."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):          # not Linux
        cpus = os.cpu_count() or 1
    return min(max(1, cpus), MAX_WORKERS)


def make_tracker(cfg: AnalyzeConfig, capacity: int) -> Tracker:
    """The tracker `analyze` runs (one per shard)."""
    return Tracker(capacity, timeouts=cfg.timeouts, verify_checksum=cfg.verify_checksum,
                   server_ports=None if cfg.server_ports else ())


def _as_paths(paths: Paths) -> list[str | Path | CaptureReader]:
    if isinstance(paths, (str, Path, CaptureReader)):
        return [paths]
    if isinstance(paths, (bytes, bytearray)) or not isinstance(paths, Sequence):
        raise UsageError(f"analyze takes a capture path, an open CaptureReader or a list of them, "
                         f"got {type(paths).__name__}")
    out = list(paths)
    if not out:
        raise UsageError("analyze needs at least one capture")
    for p in out:
        if not isinstance(p, (str, Path, CaptureReader)):
            raise UsageError(f"not a capture path: {p!r}")
    return out


def _check_workers(workers: int | None) -> int:
    if workers is None:
        return default_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
        raise UsageError(f"workers must be an int in 1..{MAX_WORKERS} (or None: the CPUs available), "
                         f"got {workers!r}")
    return workers


def _check_config(cfg: AnalyzeConfig | None) -> AnalyzeConfig:
    """`cfg`, or the defaults; UsageError for what the trackers would not catch, or
    would catch only after the capacity was split into shards (naming the share, or
    taking a total of N * 2**31 connections a share at a time)."""
    if cfg is None:
        return AnalyzeConfig()
    if not isinstance(cfg, AnalyzeConfig):
        raise UsageError(f"cfg must be an AnalyzeConfig, got {type(cfg).__name__}")
    cap = cfg.capacity
    if isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap <= MAX_CAPACITY:
        raise UsageError(f"capacity must be an int in 1..{MAX_CAPACITY} (the total over the workers), got {cap!r}")
    for name in ("verify_checksum", "server_ports"):
        if not isinstance(getattr(cfg, name), (bool, np.bool_)):
            raise UsageError(f"{name} must be a bool, got {getattr(cfg, name)!r}")
    return cfg


def analyze(paths: Paths, cfg: AnalyzeConfig | None = None, *, workers: int | None = 1, fmt: str = "table",
            out: IO[str] | IO[bytes] | None = None, keep_rows: bool = False,
            progress: Callable[[int, int], None] | None = None, community_id: bool | None = None,
            community_id_seed: int = 0, report: str | os.PathLike[str] | None = None) -> Summary:
    """Track every TCP connection of the capture(s) at `paths` -- one path, an open
    `CaptureReader` (read to the end and closed), or a list of them read one after
    another as one capture -- and summarise them.

    ``workers``: trackers, one per shard of the flows (`shard_of_batch`: both
    directions of a connection in one shard), each run by its own thread while this
    one reads the capture once; None means the CPUs this process may use. The rows are
    the same set, and the summary's traffic counts the same, for any number of
    workers.

    ``out``: write each connection as it ends in `fmt` (one of `fasttcp.rows.FORMATS`)
    to this text or binary stream, with `community_id` and `community_id_seed` as
    `fasttcp.rows.RowWriter` takes them. Row order: with one worker, the order the tracker
    finished them; with N, for each batch of the capture, shard 0's rows then shard
    1's..., each shard's in its tracker's order -- the same for every run with the same
    N. ``keep_rows``: also return them all in ``summary.rows`` (a FLOW_DTYPE array;
    memory grows with the capture). ``progress(done, total)`` is called with file bytes
    after each batch.

    Raises UsageError (a ValueError) for an unknown format or option, an open
    `CaptureReader` that reuses a single buffer (``buffers=1``) with more than one worker,
    FileNotFoundError/CaptureError when the first capture cannot be read at all,
    `fasttcp.errors.OutputError` (an OSError) when `out` cannot be written, an OSError
    (EAGAIN) when the workers' threads cannot be started; a corrupt
    record later ends the run with ``summary.error`` set (what was read
    is still reported). `fasttcp.errors.WorkerError` naming the shard if a shard's
    tracker fails (its ``summary`` holds what was counted); on KeyboardInterrupt the
    trackers finish the batch in hand and stop, and the exception carries the partial
    ``summary`` too (a summary of no packets when the interrupt came before the first
    capture was open)."""
    try:
        return _analyze(paths, cfg, workers, fmt, out, keep_rows, progress, community_id, community_id_seed,
                        report)
    except KeyboardInterrupt as e:
        if not hasattr(e, "summary"):
            # before anything was read (the arguments checked, the capture opening):
            # the promised summary, of nothing
            n = default_workers() if workers is None else workers if isinstance(workers, int) else 0
            e.summary = Summary(path=_names(paths), workers=n, interrupted=True)  # type: ignore[attr-defined]
        raise


def _names(paths: Any) -> str:
    """The captures' names as far as the arguments tell them (for a summary made before
    the chain that knows them)."""
    if isinstance(paths, (bytes, bytearray)) or not isinstance(paths, (str, Path, CaptureReader, Sequence)):
        return str(paths)               # no list of captures (analyze raises UsageError for it)
    items = paths if isinstance(paths, Sequence) and not isinstance(paths, str) else [paths]
    return ", ".join(str(p.path if isinstance(p, CaptureReader) else p) for p in items)


def _analyze(paths: Paths, cfg: AnalyzeConfig | None, workers: int | None, fmt: str,
             out: IO[str] | IO[bytes] | None, keep_rows: bool, progress: Callable[[int, int], None] | None,
             community_id: bool | None, community_id_seed: int,
             report: str | os.PathLike[str] | None) -> Summary:
    from fasttcp.analysis.shards import FILL_AHEAD, READ_AHEAD, run_sharded, sharding

    if fmt not in FORMATS:
        raise UsageError(f"format must be one of {FORMATS}, got {fmt!r}")
    # (the options checked without an `out` too, as RowWriter checks them: a bad seed
    # is a bad argument whether or not rows are written)
    checked = RowWriter(io.BytesIO() if out is None else out, fmt, community_id=community_id,
                        community_id_seed=community_id_seed)
    writer = checked if out is not None else None
    cfg = _check_config(cfg)
    plist = _as_paths(paths)
    n = _check_workers(workers)
    # one buffer: each batch is tracked before the next is read; with N trackers the
    # reader runs up to READ_AHEAD batches ahead of them, as far as an open reader's own
    # buffers allow (at least one: CaptureChain refuses a reader reusing a single buffer,
    # and its message names the two a batch ahead needs)
    ahead = min([READ_AHEAD] + [max(p.buffers - 1, 1) for p in plist if isinstance(p, CaptureReader) and p.buffers])
    # (N trackers: and FILL_AHEAD more, the chunks other threads read ahead of the reader)
    chain = CaptureChain(plist, cfg.batch_bytes, buffers=1 if n == 1 else ahead + 1,
                         fill_buffers=0 if n == 1 else FILL_AHEAD, shards=None if n == 1 else sharding(n))
    summary = Summary(path=", ".join(chain.names), workers=n)
    kept: list[np.ndarray] = []
    agg: Any = None

    def emit(rows: np.ndarray) -> None:
        summary.add_rows(rows)
        if agg is not None:
            agg.add_rows(rows)
        if writer is not None:
            _to_output(writer.write, rows)
        if keep_rows and len(rows):
            kept.append(rows)

    t0 = time.perf_counter()
    try:
        # (inside the try: the chain is closed, and an interrupt gets the summary)
        agg = _report_aggregate(report, chain)
        if writer is not None:
            _to_output(writer.header)
        if n == 1:
            _run_single(chain, cfg, summary, emit, progress)
        else:
            run_sharded(chain, cfg, n, summary, emit, progress, ahead)
        if writer is not None:
            _to_output(writer.footer)
            flush = getattr(out, "flush", None)
            if callable(flush):
                # the rows reach the stream's file now, so that an error writing them is
                # the output's, raised here -- not the caller's close(), as a plain OSError
                _to_output(flush)
    except BaseException as e:
        summary.seconds = time.perf_counter() - t0
        if isinstance(e, KeyboardInterrupt):
            summary.interrupted = True
        e.summary = summary                     # type: ignore[attr-defined]  # what was done
        raise
    finally:
        chain.close()                           # also the open readers a corrupt capture left unread
    summary.seconds = time.perf_counter() - t0
    if keep_rows:
        summary.rows = np.concatenate(kept) if kept else np.empty(0, FLOW_DTYPE)
    if agg is not None:
        from fasttcp.report.write import write_report

        summary.report = agg
        write_report(report, summary, agg, captures=plist)   # type: ignore[arg-type]
    return summary


def _report_aggregate(report: str | os.PathLike[str] | None, chain: CaptureChain) -> Any:
    """The report's aggregate, fed each batch's packet times by `chain`; None when no
    report is asked for."""
    if report is None:
        return None
    from fasttcp.report.aggregate import ReportAggregate
    from fasttcp.report.write import check_report_path

    check_report_path(report)
    agg = ReportAggregate()
    chain.on_batch = lambda batch: agg.add_packet_times(batch.ts_ns)
    return agg


def _to_output(call: Callable[..., Any], *args: Any) -> Any:
    """`call`, with an OSError from the stream reported as the output's (OutputError)."""
    try:
        return call(*args)
    except OutputError:
        raise
    except OSError as e:
        raise OutputError(e.errno, e.strerror) from e


def _run_single(chain: CaptureChain, cfg: AnalyzeConfig, summary: Summary, emit: Callable[[np.ndarray], None],
                progress: Callable[[int, int], None] | None) -> None:
    tracker = make_tracker(cfg, cfg.capacity)
    try:
        for batch in chain:
            tracker.feed_batch(batch)
            emit(tracker.finished())
            if progress is not None:
                progress(chain.bytes_done, chain.total_bytes)
        emit(tracker.close())
    finally:
        _fold_tracker(summary, tracker.stats, tracker.memory_bytes)
        _fold_chain(summary, chain)


def _fold_tracker(summary: Summary, stats: dict[str, Any], memory: int) -> None:
    summary.packets += stats["packets"]
    summary.verdicts.update(stats["verdicts"])
    summary.memory_bytes += memory


def _fold_chain(summary: Summary, chain: CaptureChain) -> None:
    chain.check_unchanged()
    summary.file_bytes = chain.bytes_done
    summary.truncated_tail = chain.truncated_tail
    summary.truncated = chain.truncated
    summary.error = chain.error
