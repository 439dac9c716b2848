"""What N cores can give `fasttcp analyze` on this machine, and how much of it N workers take.

Measured in one run, in alternating rounds, on one capture:

(a) side by side: N processes each running ``analyze(workers=1)`` over the whole
    capture at once, against one alone -- each one's slowdown is what sharing the
    machine's caches, memory and host costs the same work, so N / slowdown is the most
    N workers could scale (the cores' ceiling);
(a') the same N runs at once as N threads of this process, against one run alone
    here: beyond (a), what sharing one address space costs (page faults and
    unmappings that interrupt the other cores, the GIL between batches);
(b) tracking alone: the capture's batches read into memory beforehand, tracked by one
    tracker, and by N trackers on N threads each taking its shard's packets
    (`Tracker.feed_plan`, the GIL released): the trackers' ceiling, with
    no reading, scanning or hashing in the run. The same N shard trackers run in turn
    on one thread split that ceiling in two: what sharding costs the work itself
    (serial / one tracker), and what running the shards at once costs on top (N
    threads against serial / N);
(c) analyze with 1 and with N workers, as a user runs it.

Prints each figure's median and the ratios; `--json` for one object:

    python benchmarks/analyze_ceiling.py [CAPTURE] [--workers N] [--repeat R] [--json]

(without CAPTURE: the short-connection capture of `fasttcp bench`, 1M packets).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import tempfile
import threading
import time
from pathlib import Path

from fasttcp.analysis import AnalyzeConfig, analyze
from fasttcp.analysis.run import make_tracker
from fasttcp.analysis.shards import reta_size
from fasttcp.bench.tracker import synth_capture
from fasttcp.capture.reader import read_pcap
from fasttcp.tracker.tracker import ShardPlan
from fasttcp.wire.rss import shard_of_batch

# the bench's analyze configuration: the synthetic captures keep ~10k connections open
CFG = AnalyzeConfig(timeouts="conntrack", capacity=4 * 10_000 + 1024)


def _analyze_one(path: str, start: mp.Barrier, out: mp.Queue) -> None:      # type: ignore[type-arg]
    analyze(path, CFG, workers=1)                       # warm: imports, page cache
    start.wait()
    t = time.perf_counter()
    analyze(path, CFG, workers=1)
    out.put(time.perf_counter() - t)


def side_by_side(path: str, n: int) -> float:
    """Median seconds of N concurrent ``analyze(workers=1)`` processes."""
    ctx = mp.get_context("fork")
    start, out = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_analyze_one, args=(path, start, out)) for _ in range(n)]
    for p in procs:
        p.start()
    times = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(60)
    return statistics.median(times)


def side_by_side_threads(path: str, n: int) -> float:
    """Each of n threads of this process running ``analyze(workers=1)`` over the whole
    capture at once: the median of their times."""
    start = threading.Barrier(n)
    times: list[float] = []

    def one() -> None:
        start.wait()
        t = time.perf_counter()
        analyze(path, CFG, workers=1)
        times.append(time.perf_counter() - t)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return statistics.median(times)


def track_alone(batches: list, shards: list, n: int, serial: bool = False) -> float:
    """Seconds to track the pre-read batches: one tracker (n=1), or n trackers on n
    threads, each its shard (`serial`: the same n trackers in turn on this thread)."""
    if n == 1:
        tracker = make_tracker(CFG, CFG.capacity)
        t = time.perf_counter()
        for b in batches:
            tracker.feed_batch(b)
            tracker.finished()
        tracker.close()
        return time.perf_counter() - t
    trackers = [make_tracker(CFG, -(-CFG.capacity // n)) for _ in range(n)]

    def run(k: int) -> None:
        for plan in shards:
            trackers[k].feed_plan(plan, k)
            trackers[k].finished()
        trackers[k].close()

    if serial:
        t = time.perf_counter()
        for k in range(n):
            run(k)
        return time.perf_counter() - t
    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return time.perf_counter() - t


def run_analyze(path: str, n: int) -> float:
    t = time.perf_counter()
    analyze(path, CFG, workers=n)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("capture", nargs="?", help="a pcap (default: the bench's short-connection capture)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=7, help="alternating rounds; medians are reported")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    n = args.workers
    with tempfile.TemporaryDirectory() as tmp:
        path = args.capture
        if path is None:
            path = str(Path(tmp) / "short.pcap")
            synth_capture(Path(path), 1_000_000, 10_000, shape="short")
        batches = [b.copy() for b in read_pcap(path, batch_bytes=CFG.batch_bytes)]
        # the batches split for the n trackers as analyze splits them, once for all
        shards = []
        clock = 0
        for b in batches:
            shards.append(ShardPlan(b, shard_of_batch(b, n, reta_size=reta_size(n)), n, clock))
            clock = shards[-1].clock_after
        figures: dict[str, list[float]] = {k: [] for k in ("alone", "side_by_side", "threads_side_by_side",
                                                          "track_1", "track_serial", "track_n", "analyze_1",
                                                          "analyze_n")}
        run_analyze(path, 1)
        run_analyze(path, n)
        for r in range(args.repeat):
            steps = [("alone", lambda: side_by_side(path, 1)), ("side_by_side", lambda: side_by_side(path, n)),
                     ("threads_side_by_side", lambda: side_by_side_threads(path, n)),
                     ("track_1", lambda: track_alone(batches, shards, 1)),
                     ("track_serial", lambda: track_alone(batches, shards, n, serial=True)),
                     ("track_n", lambda: track_alone(batches, shards, n)),
                     ("analyze_1", lambda: run_analyze(path, 1)), ("analyze_n", lambda: run_analyze(path, n))]
            for name, step in (steps if r % 2 == 0 else steps[::-1]):
                figures[name].append(step())
    med = {k: statistics.median(v) for k, v in figures.items()}
    res = {
        "capture": args.capture or "short connections, 1M packets",
        "workers": n,
        "seconds": {k: round(v, 4) for k, v in med.items()},
        # the cores' ceiling: N runs at once, each slowed by this much
        "side_by_side_slowdown": round(med["side_by_side"] / med["alone"], 3),
        "cores_ceiling": round(n * med["alone"] / med["side_by_side"], 2),
        # the same N runs as threads of one process, against one run in this process
        "threads_side_by_side_slowdown": round(med["threads_side_by_side"] / med["analyze_1"], 3),
        "tracking_scaling": round(med["track_1"] / med["track_n"], 2),
        # the shard trackers' work against one tracker's, both on one thread
        "sharding_cost": round(med["track_serial"] / med["track_1"], 3),
        # N threads against the same work in turn: 1.0 is perfect
        "threads_efficiency": round(med["track_serial"] / (n * med["track_n"]), 3),
        "analyze_scaling": round(med["analyze_1"] / med["analyze_n"], 2),
    }
    res["analyze_of_ceiling"] = round(res["analyze_scaling"] / res["cores_ceiling"], 2)
    if args.json:
        print(json.dumps(res))
        return
    s = res["seconds"]
    print(f"{res['capture']}, {n} workers, medians of {args.repeat} alternating rounds")
    print(f"  side by side: {n} x analyze(workers=1) at once {s['side_by_side']:.3f} s each, alone "
          f"{s['alone']:.3f} s: slowdown {res['side_by_side_slowdown']}x, ceiling {res['cores_ceiling']}x")
    print(f"  as {n} threads of one process: {s['threads_side_by_side']:.3f} s each, alone "
          f"{s['analyze_1']:.3f} s: slowdown {res['threads_side_by_side_slowdown']}x")
    print(f"  tracking pre-read batches: 1 tracker {s['track_1']:.3f} s, {n} on {n} threads {s['track_n']:.3f} s: "
          f"{res['tracking_scaling']}x")
    print(f"    the {n} shard trackers in turn on one thread {s['track_serial']:.3f} s: sharding costs "
          f"{res['sharding_cost']}x the work, the threads run it at {res['threads_efficiency']} of {n}x")
    print(f"  analyze: 1 worker {s['analyze_1']:.3f} s, {n} workers {s['analyze_n']:.3f} s: "
          f"{res['analyze_scaling']}x = {res['analyze_of_ceiling']} of the ceiling")


if __name__ == "__main__":
    main()
