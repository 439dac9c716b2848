"""fasttcp.distributed on a LocalCluster: 1 worker process against 2, same run, over
the bench capture of `fasttcp bench` split into files; and one process
(`fasttcp.analyze`) on the same files.

    python benchmarks/distributed.py [--bytes N] [--files 8] [--shards 8] [--repeat 3]

Prints, per configuration, the wall seconds of each run (median and spread), the
2-worker / 1-worker speed-up, each task kind's throughput (bytes of capture per
second of task, from Dask's task stream) and the shuffle volume. Note `uptime` with
the figures: the machine is shared.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# this file's own name would shadow Dask's `distributed` package for `python
# benchmarks/distributed.py` (the script's folder comes first on sys.path)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from fasttcp.analysis import analyze  # noqa: E402  -- after the sys.path fix above
from fasttcp.bench.tracker import TrackerBenchConfig, _cached_capture  # noqa: E402

GiB = 1 << 30


def bench_capture(size: int) -> Path:
    """The bulk-connection capture `fasttcp bench` analyzes (its --analyze-bytes), of
    about `size` bytes, built once into the bench cache."""
    cfg = TrackerBenchConfig()
    sample = _cached_capture(cfg, cfg.packets, cfg.concurrent)
    per_packet = os.path.getsize(sample) / cfg.packets
    return _cached_capture(cfg, int(size / per_packet), cfg.concurrent)


def split_files(capture: Path, files: int) -> list[Path]:
    """`capture` cut into `files` consecutive files (editcap -c), cached beside it."""
    folder = capture.with_suffix(f".split{files}")
    if not folder.is_dir():
        tmp = Path(tempfile.mkdtemp(dir=capture.parent))
        size = os.path.getsize(capture)
        cfg = TrackerBenchConfig()
        sample = _cached_capture(cfg, cfg.packets, cfg.concurrent)
        packets = round(size / (os.path.getsize(sample) / cfg.packets))
        subprocess.run(["editcap", "-F", "pcap", "-c", str(-(-packets // files)), str(capture), str(tmp / "part.pcap")],
                       check=True, timeout=3600)
        tmp.rename(folder)
    return sorted(folder.iterdir())


def task_throughput(stream: list[dict], file_bytes: int) -> dict:
    """Seconds of task time per kind (index, split, reduce) and capture bytes per
    second of it (each kind touches every byte once)."""
    out = {}
    for kind in ("index", "split", "reduce"):
        secs = sum(sum(s["stop"] - s["start"] for s in t["startstops"] if s["action"] == "compute")
                   for t in stream if t["key"].startswith(f"fasttcp-{kind}-"))
        out[kind] = {"task_s": round(secs, 3), "MB_per_task_s": round(file_bytes / secs / 1e6, 1) if secs else None}
    return out


def run_cluster(files: list[Path], workers: int, shards: int, chunk: int, repeat: int) -> dict:
    import distributed

    from fasttcp.distributed import analyze as analyze_distributed

    cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                       dashboard_address=":0", silence_logs=40)
    client = distributed.Client(cluster)
    try:
        analyze_distributed(files[:1], client=client, shards=shards, chunk_bytes=chunk)     # warm the workers
        times, report, streams = [], {}, []
        for _ in range(repeat):
            with distributed.get_task_stream(client) as ts:
                t0 = time.perf_counter()
                s = analyze_distributed(files, client=client, shards=shards, chunk_bytes=chunk, report=report)
                times.append(time.perf_counter() - t0)
            streams.append(task_throughput(ts.data, s.file_bytes))
        return {"seconds": times, "connections": s.connections, "packets": s.packets, "file_bytes": s.file_bytes,
                "tasks": streams[-1], **report}
    finally:
        client.close()
        cluster.close()


def run_single(files: list[Path], repeat: int) -> dict:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        s = analyze([str(f) for f in files])
        times.append(time.perf_counter() - t0)
    return {"seconds": times, "connections": s.connections}


def _median(xs: list[float]) -> tuple[float, float]:
    m = statistics.median(xs)
    return m, (max(xs) - min(xs)) / m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bytes", type=int, default=GiB, help="size of the bench capture (default 1 GiB)")
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--chunk-mb", type=int, default=160, help="160: each of 8 files of 1 GiB is one chunk")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    files = split_files(bench_capture(args.bytes), args.files)
    chunk = args.chunk_mb << 20
    out: dict = {"uptime_before": os.getloadavg(), "files": len(files),
                 "capture_bytes": sum(os.path.getsize(f) for f in files)}
    # alternated, so that a change in the machine's load falls on both
    runs: dict = {"one_process": [], "1_worker": [], "2_workers": []}
    for _ in range(args.repeat):
        runs["one_process"].append(run_single(files, 1))
        runs["1_worker"].append(run_cluster(files, 1, args.shards, chunk, 1))
        runs["2_workers"].append(run_cluster(files, 2, args.shards, chunk, 1))
    for name, rs in runs.items():
        secs = [t for r in rs for t in r["seconds"]]
        m, spread = _median(secs)
        out[name] = {**rs[-1], "seconds": [round(t, 3) for t in secs], "median_s": round(m, 3),
                     "spread": round(spread, 3), "MB_per_s": round(out["capture_bytes"] / m / 1e6, 1)}
    out["speedup_2_over_1_worker"] = round(out["1_worker"]["median_s"] / out["2_workers"]["median_s"], 3)
    out["2_workers_over_one_process"] = round(out["one_process"]["median_s"] / out["2_workers"]["median_s"], 3)
    out["uptime_after"] = os.getloadavg()
    if args.json:
        print(json.dumps(out, indent=1))
        return
    for name in runs:
        r = out[name]
        print(f"{name:12s} {r['median_s']:8.2f} s (spread {r['spread']:.1%}) {r['MB_per_s']:8.1f} MB/s  {r['seconds']}")
        if "tasks" in r:
            print(f"{'':12s} tasks: {r['tasks']}  shuffle {r['shuffle_bytes'] / 1e6:.1f} MB in "
                  f"{r['chunks']} chunks x {r['shards']} shards")
    print(f"2 workers / 1 worker: {out['speedup_2_over_1_worker']}x; 2 workers / one process: "
          f"{out['2_workers_over_one_process']}x; load {out['uptime_before']} -> {out['uptime_after']}")


if __name__ == "__main__":
    main()
