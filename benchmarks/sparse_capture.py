"""Captures with minutes between packets, through `analyze` with 1..N workers.

    python benchmarks/sparse_capture.py [--packets 20000] [--gap 300] [--workers 1,2,8] [--repeat 5]

Every tracker (one per worker) moves its clock to each packet's time and expires its
connections on the way, so each walks its timer wheel over every gap. A gap longer
than the wheel's turn (65,536 ticks of 1.024 ms, 67 s) visits every bucket once; the
wheel's bit per bucket lets the walk step over 64 empty buckets with one word read.
Prints, for each worker count, the time for `--packets` SYNs `--gap` seconds apart
and for the same SYNs 1 ms apart (the peer in the same run: the same packets, parse
and tracking, with no gap to walk), the median of `--repeat` runs and the ratio.
"""
import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import fasttcp
from fasttcp.analysis.config import AnalyzeConfig


def write_syns(path: Path, packets: int, gap: float) -> None:
    """`packets` SYNs of distinct connections, `gap` seconds apart (raw IPv4)."""
    segs = [fasttcp.build(f"198.18.{i >> 8 & 255}.{i & 255}", "198.19.0.1", 1024 + i % 60000, 80, seq=i)
            for i in range(packets)]
    fasttcp.write_pcap(path, segs, [1.6e9 + i * gap for i in range(packets)])


def median_time(path: Path, workers: int, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fasttcp.analyze(str(path), AnalyzeConfig(), workers=workers)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=20_000)
    ap.add_argument("--gap", type=float, default=300.0, help="seconds between packets (default 300)")
    ap.add_argument("--workers", default="1,2,8")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sparse, dense = Path(tmp, "sparse.pcap"), Path(tmp, "dense.pcap")
        write_syns(sparse, args.packets, args.gap)
        write_syns(dense, args.packets, 0.001)
        print(f"{args.packets} SYNs, {args.gap:g} s apart against 1 ms apart; median of {args.repeat}")
        for w in (int(x) for x in args.workers.split(",")):
            ts, td = median_time(sparse, w, args.repeat), median_time(dense, w, args.repeat)
            print(f"  {w:2d} worker(s): sparse {ts * 1e3:8.1f} ms   dense {td * 1e3:8.1f} ms   "
                  f"sparse/dense {ts / td:6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
