"""`analyze` on N cores: one worker process per shard of the flows.

Every worker reads the whole capture through the page cache (the same batches, so
the batch boundaries agree), computes each packet's shard with the symmetric flow hash
(`shard_of_batch`: both directions of a connection in one shard, the shard a NIC
queue would be under symmetric RSS) and tracks its own packets; the others only move
its clock, so connections expire exactly as in one tracker fed everything
(`Tracker.feed_batch(select=...)`). The workers send each batch's finished rows to
this process, which writes them batch by batch in shard order: the output is the same
for every run with the same number of workers, and memory stays bounded (a worker
waits while its queue of unread batches is full).

One reader feeding the workers through shared memory was the alternative; it saves
each worker the read and the hash of the packets it does not track but serialises
them in one process, which on a machine with as many workers as cores competes with
the workers for the same CPUs.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import threading
import traceback
from collections import Counter
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from fasttcp.analysis.config import AnalyzeConfig
from fasttcp.analysis.source import CaptureChain
from fasttcp.analysis.summary import Summary
from fasttcp.errors import WorkerError

__all__ = ["run_sharded"]

# unread messages buffered per worker in this process: enough to ride out a slow
# batch of one shard, few enough that rows waiting to be written stay bounded
_QUEUE_BATCHES = 4
# seconds a stopped worker gets to exit before it is killed
_STOP_GRACE = 2.0


def _worker(k: int, n: int, paths: list[str], cfg: AnalyzeConfig, conn: Connection) -> None:
    """Body of worker k: track shard k of the capture, send rows batch by batch."""
    from fasttcp.analysis.run import make_tracker
    from fasttcp.wire.rss import shard_of_batch

    # Ctrl-C reaches the whole process group: the parent decides, and stops us
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        # opened afresh by path: a descriptor inherited through fork shares its file
        # offset with the parent and the other workers
        chain = CaptureChain(paths, cfg.batch_bytes)
        tracker = make_tracker(cfg, -(-cfg.capacity // n))
        for i, batch in enumerate(chain):
            tracker.feed_batch(batch, select=shard_of_batch(batch, n) == k)
            st = tracker.stats
            conn.send(("batch", i, tracker.finished(), chain.bytes_done, chain.total_bytes,
                       st["packets"], st["verdicts"]))
        rows = tracker.close()
        st = tracker.stats
        conn.send(("end", rows, st["packets"], st["verdicts"], tracker.memory_bytes,
                   chain.bytes_done, chain.truncated_tail, chain.error))
    except BaseException:
        conn.send(("fail", traceback.format_exc()))
        conn.close()
        os._exit(1)
    conn.close()
    # no atexit handlers, no flushing of buffers inherited from the parent at fork
    os._exit(0)


def _pump(conn: Connection, q: queue.Queue) -> None:
    """Move one worker's messages into `q` (this thread blocks in recv, not the writer)."""
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            q.put(("died",))
            return
        q.put(msg)
        if msg[0] in ("end", "fail"):
            return


class _Shards:
    """The worker processes, their message queues, and stopping them."""

    def __init__(self, paths: list[str], cfg: AnalyzeConfig, n: int) -> None:
        # fork: the workers start in milliseconds with fasttcp already imported (spawn
        # re-imports numpy and fasttcp per worker, ~0.2 s, the whole run on a small
        # capture); this process has started no threads yet at this point
        ctx = mp.get_context("fork")
        self.n = n
        self.procs: list[Any] = []
        self.queues: list[queue.Queue] = []
        conns = []
        try:
            for k in range(n):
                r, w = ctx.Pipe(duplex=False)
                p = ctx.Process(target=_worker, args=(k, n, paths, cfg, w), name=f"fasttcp-shard-{k}", daemon=True)
                p.start()
                w.close()            # ours closed: the worker's death reads as EOF
                self.procs.append(p)
                conns.append(r)
        except BaseException:
            self.stop()
            raise
        for r in conns:
            q: queue.Queue = queue.Queue(_QUEUE_BATCHES)
            threading.Thread(target=_pump, args=(r, q), daemon=True).start()
            self.queues.append(q)

    def get(self, k: int) -> tuple:
        """The next message of worker k; WorkerError if it died or failed."""
        msg = self.queues[k].get()
        if msg[0] == "died":
            p = self.procs[k]
            p.join(_STOP_GRACE)
            code = p.exitcode
            if code is not None and code < 0:
                how = f"killed by {signal.Signals(-code).name}"
            elif code is None:
                how = "stopped answering"
            else:
                how = f"exited with status {code}"
            raise WorkerError(k, self.n, f"worker process {p.pid} {how}")
        if msg[0] == "fail":
            raise WorkerError(k, self.n, "failed:\n" + msg[1].rstrip())
        return msg

    def stop(self) -> None:
        """Stop every worker still running (SIGTERM, then SIGKILL) and reap them."""
        for p in self.procs:
            if p.is_alive():
                p.terminate()
        for p in self.procs:
            p.join(_STOP_GRACE)
            if p.is_alive():
                p.kill()
                p.join()


def run_sharded(chain: CaptureChain, cfg: AnalyzeConfig, n: int, summary: Summary,
                emit: Callable[[np.ndarray], None], progress: Callable[[int, int], None] | None) -> None:
    """Run `n` workers over `chain`, emitting rows in the documented order and folding
    their counts into `summary` (partial counts if a worker dies or on Ctrl-C)."""
    paths = chain.names
    chain.close()                    # ours: the workers open the files themselves
    shards = _Shards(paths, cfg, n)
    packets = [0] * n
    verdicts: list[dict[str, int]] = [{}] * n
    try:
        while True:
            msgs = [shards.get(k) for k in range(n)]
            kinds = {m[0] for m in msgs}
            if kinds == {"batch"}:
                for k, m in enumerate(msgs):
                    emit(m[2])
                    packets[k], verdicts[k] = m[5], m[6]
                summary.file_bytes = msgs[0][3]
                if progress is not None:
                    progress(msgs[0][3], msgs[0][4])
                continue
            if kinds != {"end"}:
                # the same file read N times gave different batches: it changed meanwhile
                raise WorkerError(0, n, "the workers read different captures: "
                                        "was the file changed while it was read?")
            for k, m in enumerate(msgs):
                emit(m[1])
                packets[k], verdicts[k] = m[2], m[3]
                summary.memory_bytes += m[4]
            summary.file_bytes, summary.truncated_tail, summary.error = msgs[0][5], msgs[0][6], msgs[0][7]
            break
    except BaseException as e:
        if isinstance(e, WorkerError):
            e.summary = summary              # type: ignore[attr-defined]
        raise
    finally:
        shards.stop()
        summary.packets += sum(packets)
        for v in verdicts:
            summary.verdicts.update(Counter(v))
