"""`fasttcp bench --cores N`: the cache-resident handshake benchmark in N processes at
once, and how it scales against one process measured the same way in the same run.

Shards, not locks (docs/architecture.md): each worker process owns a pair of endpoints
and a disjoint slice of the benchmark's flow keys -- worker k opens flows
k*F .. (k+1)*F-1 -- so no table, queue or counter is shared and nothing is locked. The
workers run their rounds in step: a barrier starts every round's handshakes in all of
them at once, each notes when its handshakes began and ended (time.perf_counter, a
system-wide monotonic clock, so the notes of different processes compare), and a
round's aggregate rate is all its handshakes over the span from the first start to the
last end, stragglers included. The figure is the median round.

Processes are started with the "spawn" method: a fresh interpreter per worker, which
inherits none of the parent's memory (a forked worker would share the parent's earlier
tables copy-on-write, and its first writes to them would be page faults inside the
timed rounds) and behaves alike on Linux and macOS. Start-up (a second or so of
imports) happens before the first barrier, outside any timed span. Every wait is
bounded: a worker that dies, raises or hangs ends the run with a RuntimeError naming
it, and the others are stopped instead of being left at a barrier.
"""
from __future__ import annotations

import multiprocessing
import os
import queue
import statistics
import time
import traceback
from dataclasses import dataclass

__all__ = ["CoresResult", "run_cores", "shard_keys", "allowed_cpus", "MAX_CORES_PER_CPU"]

#: `--cores` may ask for this many processes per CPU the bench may use, at most:
#: beyond a few per CPU the figure measures the scheduler, not the endpoint
MAX_CORES_PER_CPU = 4
_BARRIER_TIMEOUT = 120.0          # s a worker waits for the others at a barrier
_POLL = 0.2                       # s between the parent's looks at its workers
_GRACE = 2.0                      # s a cleanly exited worker's result may take to arrive


def allowed_cpus() -> int:
    """How many CPUs this process may run on (its affinity mask; the CPU count where the
    platform has no affinity)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def shard_keys(k: int, flows: int):
    """Worker k's flow keys: the k-th slice of `flows` keys of the benchmark's
    (fasttcp.bench.handshakes.flow_keys), disjoint from every other worker's."""
    from fasttcp.bench.handshakes import flow_keys

    return flow_keys(flows, offset=k * flows)


@dataclass
class CoresResult:
    """Aggregate handshakes/s of each measured round over all workers (``rounds``), its
    median (``handshakes_per_s``) and spread, each worker's own median rate, and
    ``on_cpu``: the share of the rounds' spans the workers spent running (CPU time over
    workers x span). Near 1, they ran side by side throughout; well below, they waited
    for a CPU -- other processes competed for the machine, or a worker woke late from
    the barrier -- and the aggregate understates what the cores can do."""

    workers: int
    flows: int                    # per worker and round
    rounds: list[float]
    per_worker: list[float]
    on_cpu: float

    @property
    def handshakes_per_s(self) -> float:
        return statistics.median(self.rounds)

    @property
    def spread(self) -> float:
        med = self.handshakes_per_s
        return (max(self.rounds) - min(self.rounds)) / med if med else 0.0


def _worker(k: int, flows: int, rounds: int, barrier, results, die_after_setup: bool) -> None:
    """Worker k: its endpoints, its slice of the keys, one warm-up round and `rounds`
    timed ones, each started at the barrier. Sends ("ok", k, spans) -- a (start, end,
    CPU time) per timed round -- or ("error", k, traceback)."""
    try:
        from fasttcp.bench.handshakes import _close_all, _handshakes, _pair

        client, server = _pair(flows)
        keys = shard_keys(k, flows)
        if die_after_setup:
            os._exit(3)               # test hook: a worker that dies without a word
        now, msl, spans = 0.0, 30.0, []
        for rnd in range(rounds + 1):
            barrier.wait()
            c0, t0 = time.process_time(), time.perf_counter()
            cids, sids = _handshakes(client, server, keys, now)
            t1, c1 = time.perf_counter(), time.process_time()
            _close_all(client, server, cids, sids, now, msl)
            now += 2 * msl + 1
            if rnd:                   # round 0 brings the memory in
                spans.append((t0, t1, c1 - c0))
        results.put(("ok", k, spans))
    except BaseException:             # any failure is the parent's to report: it fails the run
        results.put(("error", k, traceback.format_exc()))


def run_cores(workers: int, flows: int, rounds: int, *, timeout: float = 600.0,
              _die: int | None = None) -> CoresResult:
    """Run `rounds` timed handshake rounds of `flows` flows (after a warm-up round) in
    `workers` processes at once, worker k on flow keys k*flows .. (k+1)*flows-1.

    Returns the aggregate of each round (see the module docstring). Raises ValueError
    for workers, flows or rounds below 1; RuntimeError if a worker raises, dies or
    the run takes longer than `timeout` seconds (the message names the worker and
    what happened; every worker is stopped before it returns). (`_die`, for tests:
    worker `_die` exits at once after its setup.)"""
    if workers < 1 or flows < 1 or rounds < 1:
        raise ValueError("workers, flows and rounds must be >= 1")
    ctx = multiprocessing.get_context("spawn")          # see the module docstring
    barrier = ctx.Barrier(workers, timeout=_BARRIER_TIMEOUT)
    results = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(k, flows, rounds, barrier, results, k == _die),
                         name=f"fasttcp-bench-core-{k}", daemon=True) for k in range(workers)]
    try:
        for p in procs:
            p.start()
        spans = _collect(procs, results, time.monotonic() + timeout)
    finally:
        _stop(procs, barrier)
    agg, wall, cpu = [], 0.0, 0.0
    for rnd in range(rounds):
        first = min(spans[k][rnd][0] for k in range(workers))
        last = max(spans[k][rnd][1] for k in range(workers))
        agg.append(workers * flows / (last - first))
        wall += workers * (last - first)
        cpu += sum(spans[k][rnd][2] for k in range(workers))
    per_worker = [statistics.median(flows / (t1 - t0) for t0, t1, _ in spans[k]) for k in range(workers)]
    return CoresResult(workers, flows, agg, per_worker, min(1.0, cpu / wall))


def _collect(procs, results, deadline: float) -> dict[int, list[tuple[float, float, float]]]:
    """Every worker's spans; RuntimeError as soon as one fails, dies or time runs out."""
    spans: dict[int, list[tuple[float, float, float]]] = {}
    gone: dict[int, float] = {}       # worker -> when it was first seen ended without a result
    while len(spans) < len(procs):
        try:
            status, k, data = results.get(timeout=_POLL)
        except queue.Empty:
            now = time.monotonic()
            for k, p in enumerate(procs):
                # ended without a result: killed (OOM, a signal), crashed, or exited
                # early; one that exited cleanly gets a moment for its result to arrive
                if k not in spans and p.exitcode is not None and (
                        p.exitcode != 0 or now - gone.setdefault(k, now) > _GRACE):
                    raise RuntimeError(f"bench worker {k} died (exit code {p.exitcode}) "
                                       "before reporting") from None
            if now > deadline:
                raise RuntimeError(f"bench workers did not finish in time: {len(spans)} of "
                                   f"{len(procs)} reported") from None
            continue
        if status != "ok":
            raise RuntimeError(f"bench worker {k} failed:\n{data}")
        spans[k] = data
    return spans


def _stop(procs, barrier) -> None:
    """Release any worker waiting at the barrier, then make sure each has ended: joined
    if it finishes, else terminated (SIGTERM to that process), then killed."""
    barrier.abort()
    for p in procs:
        if p.pid is None:             # never started
            continue
        p.join(timeout=5.0)
        if p.is_alive():
            p.terminate()
            p.join(timeout=5.0)
        if p.is_alive():
            p.kill()
            p.join(timeout=5.0)
