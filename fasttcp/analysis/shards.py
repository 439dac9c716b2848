"""`analyze` on N cores: one tracker per shard of the flows, N threads to run them.

This thread reads the capture once and computes each packet's shard once -- as the
scanner reads its record, or for a capture given open in a pass of its own
(`shard_of_batch`: the symmetric flow hash, so both directions of a connection land in
one shard, the shard a NIC queue would be under symmetric RSS) -- up to READ_AHEAD
batches ahead of the trackers. Tracking batch i for shard k is a task; this thread and
N-1 helper threads run the tasks, oldest batch first, each tracker's in batch order
and one at a time (`_Shards`). `Tracker.feed_plan` runs its packet loop without the
GIL, so the trackers really run at once, with no shared state (one table each).

Each batch is split once, for all the trackers, as it is submitted (`ShardPlan`: the
batch checked, and each shard's visit list written -- its own packets, and the other
shards' packets at which its clock ticks over). A tracker steps through its list only
(`Tracker.feed_plan`), so connections expire exactly as in one tracker fed everything
and the rows are the same set, while N trackers do about the work of one, and no
tracker walks the whole batch (with `feed_batch(indices=...)` each did: N walks).
Rows are written batch by batch in shard order: the output is the same on every run
with the same N, and at most READ_AHEAD + 1 batches of rows wait. At the end the
trackers flush what they still hold at once, as tasks too.

Why threads and not worker processes: a worker process must read, scan and shard the
whole capture itself (or be fed through shared memory by a reader process), then send
its rows back. Measured on the short-connection capture of `fasttcp bench`
(benchmarks/analyze_feeding.py: all three ways, same capture, same run), processes
cost more CPU than they save (docs/performance.md has the figures, and what does not
scale yet).
"""
from __future__ import annotations

import errno
import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from fasttcp.analysis.config import AnalyzeConfig
from fasttcp.analysis.source import CaptureChain
from fasttcp.analysis.summary import Summary
from fasttcp.capture.reader import CaptureBatch
from fasttcp.errors import WorkerError
from fasttcp.tracker.tracker import ShardPlan, Tracker
from fasttcp.wire.rss import RssShards

__all__ = ["run_sharded", "reta_size", "sharding", "BUFFERS", "FILL_AHEAD", "READ_AHEAD"]


def reta_size(n: int) -> int:
    """The indirection table that shards the packets among `n` trackers: a NIC's default
    (RETA_DEFAULT entries), or for more shards than that the smallest power of two that
    gives each an entry (as NICs with more queues have larger tables)."""
    from fasttcp.wire.rss import RETA_DEFAULT

    return max(RETA_DEFAULT, 1 << (n - 1).bit_length())


def sharding(n: int) -> RssShards:
    """The sharding of `n` trackers, for a reader to compute as it scans (`read_pcap`'s
    ``shards``): the symmetric key through `reta_size(n)` entries."""
    return RssShards(n, reta_size=reta_size(n))


#: Batches read and not yet collected: the reader runs this far ahead of the trackers.
READ_AHEAD = 3
#: Chunks of a capture file read ahead of the reader by any thread with nothing to
#: track (`CaptureReader.fill_ahead`), so the reading thread only scans.
FILL_AHEAD = 2
#: Batch buffers a capture is read into with N trackers (see `CaptureChain`): the
#: batches in flight, the one being read, the chunks read ahead.
BUFFERS = READ_AHEAD + 1 + FILL_AHEAD


#: How long `fold` waits for a helper to end the batch it tracks (polls of 1 ms): far
#: beyond any batch's tracking time.
_FOLD_WAIT_POLLS = 60_000


class _Batch:
    """A batch in flight: its plan (None: the end of the capture) and, as the trackers
    finish it, their rows."""

    __slots__ = ("errors", "left", "plan", "rows", "seq", "verify", "verify_error")

    def __init__(self, seq: int, plan: ShardPlan | None, n: int, verify: bool = False) -> None:
        self.seq = seq
        self.plan = plan
        self.rows: list[np.ndarray | None] = [None] * n
        self.errors: list[BaseException | None] = [None] * n
        self.left = n
        # its checksums to verify ahead of the trackers (`ShardPlan.verify_checksums`),
        # a task not taken yet; and what that task raised
        self.verify = verify
        self.verify_error: BaseException | None = None


class _Shards:
    """N trackers run by N threads: this one (which also reads) and N-1 helpers.

    The work is a task per (batch, shard): any thread runs any task whose tracker is
    idle and has finished the batch before (a tracker sees its packets in order, one
    call at a time), oldest batch first. No thread owns a tracker, so the reading --
    which only this thread does -- is balanced by the others tracking more: with one
    thread per tracker plus a reader, N+1 threads shared N cores and each stage waited
    for the others in turn (measured: no gain from 2 trackers on 2 cores)."""

    def __init__(self, cfg: AnalyzeConfig, n: int, fill: Callable[[], bool] | None = None) -> None:
        from fasttcp.analysis.run import make_tracker

        self.n = n
        # reads the capture ahead of the reading thread; True if it read something
        self.fill = fill
        # --capacity is the total: the flow hash spreads connections evenly. Shard 0's
        # tracker is made here, so a configuration the tracker refuses raises as with
        # one worker; the others by the thread that first tracks for them (`_track`),
        # while this one reads the first batches -- made here, they held the helpers
        # idle for their allocation, 1-2 ms of a 50 ms run (short-connection capture)
        self.make = lambda: make_tracker(cfg, -(-cfg.capacity // n))
        self.checksums = cfg.verify_checksum
        first = self.make()
        self.trackers: list[Tracker | None] = [first] + [None] * (n - 1)
        self.tracker_bytes = first.memory_bytes      # each shard's: all have one capacity
        self.next_seq = [0] * n          # the batch each tracker takes next
        # the thread running each tracker's task (its ident), None when idle
        self.busy: list[int | None] = [None] * n
        self.pending: deque[_Batch] = deque()
        self.seq = 0
        self.clock = 0                   # the trackers' clock (us) after the last batch submitted
        # counts what may let a helper read ahead again (a buffer released; a batch
        # read, whose read may have taken a chunk read ahead): an idle helper sleeps
        # until it changes or a task comes, never polls (it once woke every
        # millisecond, taking the GIL each time). Chunks a read takes without finding
        # a packet in them (pcapng blocks skipped) wake nobody: the reading thread
        # reads those itself until the batch it ends with is submitted
        self.fillable = 0
        self.cv = threading.Condition()
        self.stopping = False
        self.threads = [threading.Thread(target=self._helper, name=f"fasttcp-shard{k}", daemon=True)
                        for k in range(1, n)]
        try:
            for t in self.threads:
                t.start()
        except BaseException as e:
            # a thread that cannot start (or Ctrl-C between two): the ones started
            # would wait for tasks forever
            self.close()
            if isinstance(e, RuntimeError):
                # (threading's "can't start new thread": a limit of the process's, as
                # out of memory is -- an OSError the caller reports, not a traceback)
                raise OSError(errno.EAGAIN, f"cannot start the {n - 1} helper threads of {n} workers ({e}): "
                                            f"use fewer workers") from e
            raise

    def _track(self, k: int, plan: ShardPlan | None) -> np.ndarray:
        tracker = self.trackers[k]
        if tracker is None:
            # (its tasks run one at a time, in order: this is the first)
            tracker = self.trackers[k] = self.make()
        if plan is None:
            # the end of the capture (`submit_end`): the trackers flush at once, as they
            # tracked, rather than one after another on the reading thread
            return tracker.close()
        tracker.feed_plan(plan, k)
        return tracker.finished()

    def _claim(self) -> tuple[_Batch, int] | None:
        """The oldest runnable task, marked taken (call with `cv` held): a batch's
        checksums (shard -1) before its trackers."""
        for b in self.pending:
            if b.verify:
                b.verify = False
                return b, -1
            for k in range(self.n):
                if self.busy[k] is None and self.next_seq[k] == b.seq and b.rows[k] is None \
                        and b.errors[k] is None:
                    self.busy[k] = threading.get_ident()
                    return b, k
        return None

    def _run(self, b: _Batch, k: int) -> None:
        if k < 0:
            # the batch's checksums: the trackers need not wait for them (each packet
            # not verified yet when its tracker reaches it is verified by the tracker),
            # so nothing waits on this task and there is nothing to mark done
            try:
                assert b.plan is not None
                b.plan.verify_checksums()
            except BaseException as e:   # raised by collect(), after the batch
                b.verify_error = e
            return
        rows = err = None
        try:
            rows = self._track(k, b.plan)
        except BaseException as e:       # reported with its shard by collect()
            err = e
        with self.cv:
            b.rows[k], b.errors[k] = rows, err
            b.left -= 1
            self.busy[k] = None
            self.next_seq[k] += 1
            self.cv.notify_all()

    def _helper(self) -> None:
        while True:
            # reading ahead first: the reading thread, which scans, is the one stage
            # no other thread can take over
            seen = self.fillable
            if self.fill is not None and not self.stopping and self._fill():
                continue
            with self.cv:
                task = self._claim()
                while task is None:
                    if self.stopping:
                        return
                    if self.fill is not None and self.fillable != seen:
                        break            # something came free since fill() said no
                    self.cv.wait()
                    task = self._claim()
            if task is not None:
                self._run(*task)

    def _fill(self) -> bool:
        """Read ahead once (`fill`); False when there was nothing to read. An error that
        is not the read's own (those wait in their chunk for the reading thread) ends
        reading ahead, not the helper: its tracking is still needed, and the reading
        thread, reading that chunk itself, meets the error where it can be reported."""
        fill = self.fill                 # (once: another helper may end it meanwhile)
        if fill is None:
            return False
        try:
            return fill()
        except Exception:
            self.fill = None
            return False

    def wake(self) -> None:
        """Tell idle helpers they may read ahead again: the reading thread released a
        buffer (`submit` says the same of a batch read)."""
        with self.cv:
            self.fillable += 1
            self.cv.notify_all()

    def submit(self, batch: CaptureBatch, shard: np.ndarray) -> None:
        # the batch split once for all the trackers (checked, each one's visit list
        # written), each plan starting from the clock the last one ended at
        plan = ShardPlan(batch, shard, self.n, self.clock, checksums=self.checksums)
        self.clock = plan.clock_after
        b = _Batch(self.seq, plan, self.n, verify=self.checksums and self.n > 1 and plan.packets > 0)
        self.seq += 1
        with self.cv:
            self.pending.append(b)
            # (the read that gave this batch may have taken a chunk read ahead)
            self.fillable += 1
            self.cv.notify_all()

    def submit_end(self) -> None:
        """The end of the capture: a last task per shard finishes every connection its
        tracker still holds (`Tracker.close`); `collect` returns their rows."""
        b = _Batch(self.seq, None, self.n)
        self.seq += 1
        with self.cv:
            self.pending.append(b)
            self.cv.notify_all()

    def in_flight(self) -> int:
        """Batches submitted and not yet collected."""
        return len(self.pending)

    def collect(self) -> list[np.ndarray]:
        """The rows of the oldest batch in flight, shard 0's first (none if nothing is in
        flight), tracking meanwhile; WorkerError naming the first shard whose tracker
        raised (every shard's batch is finished first)."""
        if not self.pending:
            return []
        b = self.pending[0]
        while True:
            with self.cv:
                if b.left == 0:
                    self.pending.popleft()
                    break
                task = self._claim()
                if task is None:
                    self.cv.wait()
                    continue
            self._run(*task)
        for k, err in enumerate(b.errors):
            if err is not None:
                if not isinstance(err, Exception):
                    raise err            # KeyboardInterrupt, SystemExit: as they are
                raise WorkerError(k, self.n, f"{type(err).__name__}: {err}") from err
        if b.verify_error is not None:
            # (a Ctrl-C in the verifying thread; the pass itself raises nothing else)
            raise b.verify_error
        return b.rows                    # type: ignore[return-value]  # all set: no error

    def close(self, finish: bool = False) -> None:
        """End the threads: after tracking the batches read (`finish`: Ctrl-C stops
        after the READ_AHEAD batches in hand, milliseconds of work), or dropping those
        not started (a failed shard: wait only for the tasks running -- a tracker
        cannot be stopped mid-batch)."""
        me = threading.get_ident()
        if self.cv._is_owned():          # type: ignore[attr-defined]
            # close() runs outside every `with self.cv` of this thread, yet a Ctrl-C
            # inside Condition.__enter__/__exit__ (Python code: after the lock's
            # acquire, or before its release) can leave the lock held by this thread:
            # the helpers could never take it again to see `stopping`, and the join
            # below would wait for ever. Release it, every level of it.
            self.cv._release_save()      # type: ignore[attr-defined]
        while finish:
            with self.cv:
                task = self._claim()
                if task is None:
                    # wait only while a helper runs a task: one this thread was running
                    # when Ctrl-C came (between a task's claim and its bookkeeping) is
                    # marked running for ever, and the batches after it never end
                    if not any(owner is not None and owner != me for owner in self.busy):
                        break
                    self.cv.wait()
                    continue
            self._run(*task)
        with self.cv:
            self.stopping = True
            self.pending.clear()
            self.cv.notify_all()
        interrupted = None
        for t in self.threads:
            while t.ident is not None:   # (started: __init__ may have failed to start it)
                try:
                    t.join()
                    break
                except KeyboardInterrupt as e:
                    # a helper ends its task within a batch's tracking: wait for it
                    # still, or it outlives the run (and races the caller's next one)
                    interrupted = e
        if interrupted is not None:
            raise interrupted

    def fold(self, summary: Summary) -> None:
        """Add the trackers' counts to `summary`. A tracker a helper is still tracking a
        batch with -- Ctrl-C pressed again while the run was stopping its threads -- is
        waited for (one batch: milliseconds), further Ctrl-Cs meanwhile raised after the
        counts are in; reading it mid-batch would raise "in use" in their place."""
        me = threading.get_ident()
        interrupted: BaseException | None = None
        for k in range(self.n):
            waited = 0
            # (polled, not waited on the condition: a Ctrl-C inside its `with` could leave
            # the lock held by this thread, and the helper could never say it is done)
            while self.busy[k] is not None and self.busy[k] != me and waited < _FOLD_WAIT_POLLS:
                try:
                    time.sleep(0.001)
                    waited += 1
                except KeyboardInterrupt as e:
                    interrupted = e
            # read once the task is over: a shard's first task makes its tracker
            tracker = self.trackers[k]
            if tracker is None:
                # never given a task (a run ended before its first batch): no counts,
                # and the memory it would take, as every shard has the same capacity --
                # the configured memory, however far the run got
                summary.memory_bytes += self.tracker_bytes
                continue
            st = tracker.stats
            summary.packets += st["packets"]
            summary.verdicts.update(st["verdicts"])
            summary.memory_bytes += tracker.memory_bytes
        if interrupted is not None:
            raise interrupted


def run_sharded(chain: CaptureChain, cfg: AnalyzeConfig, n: int, summary: Summary,
                emit: Callable[[np.ndarray], None], progress: Callable[[int, int], None] | None,
                ahead: int = READ_AHEAD) -> None:
    """Track `chain` in `n` shards, emitting rows in the documented order and folding
    the counts into `summary` (the counts so far if a shard fails or on Ctrl-C). The
    reader runs `ahead` batches ahead of the trackers: `chain` must keep a batch valid
    for `ahead` more reads (``buffers=ahead + 1`` or 0)."""
    from fasttcp.wire.rss import shard_of_batch

    reta = reta_size(n)
    shards = _Shards(cfg, n, fill=lambda: chain.fill_ahead(FILL_AHEAD))
    collected = 0
    try:
        for batch in chain:
            # (the scanner's shards are those: computed while the headers were in the cache)
            shard = batch.shards if batch.shards is not None and chain.sharded \
                else shard_of_batch(batch, n, reta_size=reta)
            shards.submit(batch, shard)
            # the chain reuses a batch's buffer `ahead` + 1 reads later: the oldest
            # batch must be done before the next read
            if shards.in_flight() > ahead:
                for rows in shards.collect():
                    emit(rows)
                collected += 1
                # its buffer may now take a chunk read ahead
                chain.release(collected)
                shards.wake()
            if progress is not None:
                progress(chain.bytes_done, chain.total_bytes)
        shards.submit_end()
        while shards.in_flight():
            for rows in shards.collect():
                emit(rows)
    except BaseException as e:
        shards.close(finish=isinstance(e, KeyboardInterrupt))
        if isinstance(e, WorkerError):
            e.summary = summary              # type: ignore[attr-defined]
        raise
    finally:
        try:
            shards.close()
        finally:
            # the counts even when Ctrl-C lands while the helpers are joined
            shards.fold(summary)
            chain.check_unchanged()      # (after the tracking: a tracker may read a page gone)
            summary.file_bytes = chain.bytes_done
            summary.truncated_tail = chain.truncated_tail
            summary.truncated = chain.truncated
            summary.error = chain.error
