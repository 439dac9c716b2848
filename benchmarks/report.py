"""What `fasttcp analyze --report` costs: the same capture analyzed with and without the
HTML report, alternately in one run, each in a fresh process; prints the seconds and
the peak RSS of each (median, min..max over the repeats), their ratio and the load:

    python benchmarks/report.py [--bytes N] [--workers N] [--repeat R] [CAPTURE]

Without CAPTURE: the bulk-connection capture of `fasttcp bench` (--bytes, default 1 GiB,
cached in $TMPDIR/fasttcp-bench). Memory of the report is bounded by its aggregates,
not by the capture: the peak RSS with and without it should differ by a few MiB.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from fasttcp.bench.tracker import TrackerBenchConfig, _cached_capture, synth_capture

#: the bulk shape's bytes per packet, measured on a small capture of it
SAMPLE_PACKETS = 24_000
CONCURRENT = 10_000
TIMEOUT = 1800

CHILD = """
import json, resource, sys, time
import fasttcp
path, workers, report = sys.argv[1], int(sys.argv[2]), sys.argv[3] or None
t0 = time.perf_counter()
s = fasttcp.analyze(path, workers=workers, report=report)
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "packets": s.packets, "connections": s.connections,
                  "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def bench_capture(size: int) -> Path:
    """The cached bulk capture of about `size` bytes (the one `fasttcp bench` uses)."""
    with tempfile.TemporaryDirectory() as tmp:
        sample = Path(tmp) / "sample.pcap"
        synth_capture(sample, SAMPLE_PACKETS, 240)
        per_packet = sample.stat().st_size / SAMPLE_PACKETS
    return _cached_capture(TrackerBenchConfig(), int(size / per_packet), CONCURRENT)


def run_once(capture: Path, workers: int, report: Path | None) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(capture), str(workers), str(report or "")],
                          capture_output=True, text=True, timeout=TIMEOUT, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _spread(values: list[float], fmt: str) -> str:
    return f"{format(statistics.median(values), fmt)} ({format(min(values), fmt)}..{format(max(values), fmt)})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("capture", nargs="?")
    p.add_argument("--bytes", type=int, default=1 << 30, help="size of the synthetic capture (default 1 GiB)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    capture = Path(args.capture) if args.capture else bench_capture(args.bytes)
    print(f"capture {capture} ({capture.stat().st_size:,} bytes), workers {args.workers}, "
          f"load before: {os.getloadavg()[0]:.2f}")
    results: dict[str, list[dict]] = {"without": [], "with": []}
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.html"
        for _ in range(args.repeat):
            results["without"].append(run_once(capture, args.workers, None))
            results["with"].append(run_once(capture, args.workers, report))
        size = report.stat().st_size
    for name, runs in results.items():
        secs = [r["seconds"] for r in runs]
        rss = [r["maxrss_kib"] / 1024 for r in runs]
        pps = [r["packets"] / r["seconds"] for r in runs]
        print(f"{name:>7} report: {_spread(secs, '.2f')} s, {_spread([x / 1e6 for x in pps], '.2f')} M packets/s, "
              f"peak RSS {_spread(rss, '.0f')} MiB")
    ratio = statistics.median(r["seconds"] for r in results["with"]) / \
        statistics.median(r["seconds"] for r in results["without"])
    extra_rss = statistics.median(r["maxrss_kib"] for r in results["with"]) / 1024 - \
        statistics.median(r["maxrss_kib"] for r in results["without"]) / 1024
    print(f"report: {ratio:.3f}x the time, {extra_rss:+.0f} MiB peak RSS, {size:,} bytes of HTML; "
          f"{results['with'][0]['connections']:,} connections; load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
