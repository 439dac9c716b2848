"""`analyze` on N cores: one tracker per shard of the flows, each run by its own thread.

This thread reads the capture once and computes each packet's shard once
(`shard_of_batch`: the symmetric flow hash, so both directions of a connection land in
one shard, the shard a NIC queue would be under symmetric RSS); N threads track batch
i, each its own shard, while this thread reads batch i+1. `Tracker.feed_batch` runs
its packet loop without the GIL, so the N trackers really run at once, with no shared
state (one table each). A packet of another shard only moves a tracker's clock
(`feed_batch(select=...)`), so connections expire exactly as in one tracker fed
everything, and the rows are the same set. Rows are written batch by batch in shard
order: the output is the same on every run with the same N, and at most one batch of
rows waits.

Why threads and not worker processes: a worker process must read, scan and shard the
whole capture itself (or be fed through shared memory by a reader process), then send
its rows back. Measured on the short-connection capture of `fasttcp bench`
(benchmarks/analyze_feeding.py: all three ways, same capture, same run), processes
cost more CPU than they save; threads add only the clock walk over the other shards'
packets (docs/performance.md has the figures, and what does not scale yet).
"""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from fasttcp.analysis.config import AnalyzeConfig
from fasttcp.analysis.source import CaptureChain
from fasttcp.analysis.summary import Summary
from fasttcp.capture.reader import CaptureBatch
from fasttcp.errors import WorkerError

__all__ = ["run_sharded", "reta_size"]


def reta_size(n: int) -> int:
    """The indirection table that shards the packets among `n` trackers: a NIC's default
    (RETA_DEFAULT entries), or for more shards than that the smallest power of two that
    gives each an entry (as NICs with more queues have larger tables)."""
    from fasttcp.wire.rss import RETA_DEFAULT

    return max(RETA_DEFAULT, 1 << (n - 1).bit_length())


class _Shards:
    """N trackers, a thread each; `submit` a batch, `collect` its rows in shard order."""

    def __init__(self, cfg: AnalyzeConfig, n: int) -> None:
        from fasttcp.analysis.run import make_tracker

        self.n = n
        # --capacity is the total: the flow hash spreads connections evenly
        self.trackers = [make_tracker(cfg, -(-cfg.capacity // n)) for _ in range(n)]
        self.pool = ThreadPoolExecutor(n, thread_name_prefix="fasttcp-shard")
        self.pending: list[Future] = []

    def _track(self, k: int, batch: CaptureBatch, shard: np.ndarray) -> np.ndarray:
        tracker = self.trackers[k]
        tracker.feed_batch(batch, select=shard == k)
        return tracker.finished()

    def submit(self, batch: CaptureBatch, shard: np.ndarray) -> None:
        self.pending = [self.pool.submit(self._track, k, batch, shard) for k in range(self.n)]

    def collect(self) -> list[np.ndarray]:
        """The rows of the batch in flight, shard 0's first; WorkerError naming the
        first shard whose tracker raised (every shard's batch is finished first)."""
        pending, self.pending = self.pending, []
        out, failed = [], None
        for k, f in enumerate(pending):
            try:
                out.append(f.result())
            except Exception as e:       # reported with its shard, below
                failed = failed or (k, e)
        if failed is not None:
            k, exc = failed
            raise WorkerError(k, self.n, f"{type(exc).__name__}: {exc}") from exc
        return out

    def close(self) -> None:
        """Wait for the batch in flight (a tracker cannot be stopped mid-batch; a batch
        takes milliseconds) and end the threads."""
        for f in self.pending:
            f.exception()
        self.pool.shutdown(wait=True)

    def fold(self, summary: Summary) -> None:
        """Add the trackers' counts to `summary`."""
        for tracker in self.trackers:
            st = tracker.stats
            summary.packets += st["packets"]
            summary.verdicts.update(st["verdicts"])
            summary.memory_bytes += tracker.memory_bytes


def run_sharded(chain: CaptureChain, cfg: AnalyzeConfig, n: int, summary: Summary,
                emit: Callable[[np.ndarray], None], progress: Callable[[int, int], None] | None) -> None:
    """Track `chain` in `n` shards, emitting rows in the documented order and folding
    the counts into `summary` (the counts so far if a shard fails or on Ctrl-C)."""
    from fasttcp.wire.rss import shard_of_batch

    reta = reta_size(n)
    shards = _Shards(cfg, n)
    try:
        for batch in chain:
            shard = shard_of_batch(batch, n, reta_size=reta)
            for rows in shards.collect():       # the previous batch's, while this one waits
                emit(rows)
            shards.submit(batch, shard)
            if progress is not None:
                progress(chain.bytes_done, chain.total_bytes)
        for rows in shards.collect():
            emit(rows)
        for tracker in shards.trackers:
            emit(tracker.close())
    except BaseException as e:
        shards.close()
        if isinstance(e, WorkerError):
            e.summary = summary              # type: ignore[attr-defined]
        raise
    finally:
        shards.close()
        shards.fold(summary)
        summary.file_bytes = chain.bytes_done
        summary.truncated_tail = chain.truncated_tail
        summary.truncated = chain.truncated
        summary.error = chain.error
