"""How long `fasttcp ladder` takes to find and draw one connection in a large capture,
against tshark doing the selection alone (``-Y tcp.stream eq N``) in the same run.

    python benchmarks/ladder_select.py [--packets N] [--repeat R]

The capture is `fasttcp bench`'s synthetic one (`synth_capture`, short connections,
1000 open at once); the connection drawn is one whose first packet sits in the middle of
the file, so both tools read it all. Prints per-run seconds, the median, the spread and
the load average, and the ratio of the medians.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from fasttcp.bench.tracker import synth_capture
from fasttcp.diagram import from_capture
from fasttcp.diagram.capture import select_packets

CONCURRENT = 1000


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "synth.pcap"
        flows = synth_capture(path, args.packets, CONCURRENT, shape="short")
        conn = flows // 2
        size = path.stat().st_size
        print(f"capture: {args.packets} packets, {flows} connections, {size / 2**20:.0f} MiB; drawing conn {conn}")
        print(f"load average before: {os.getloadavg()}")
        runs: dict[str, list[float]] = {"fasttcp select --conn": [], "fasttcp select+infer+svg --conn": [],
                                        "fasttcp select --flow": []}
        first = select_packets(path, conn=conn)
        src, sport = first[0].src.rsplit(":", 1)
        dst, dport = first[0].dst.rsplit(":", 1)
        flow = (src, int(sport), dst, int(dport))
        tshark = shutil.which("tshark")
        if tshark:
            runs["tshark -Y tcp.stream eq N"] = []
        for _ in range(args.repeat):
            runs["fasttcp select --conn"].append(_timed(lambda: select_packets(path, conn=conn)))
            runs["fasttcp select+infer+svg --conn"].append(
                _timed(lambda: from_capture(path, conn=conn).render("svg")))
            runs["fasttcp select --flow"].append(_timed(lambda: select_packets(path, flow=flow)))
            if tshark:
                runs["tshark -Y tcp.stream eq N"].append(_timed(lambda: subprocess.run(
                    [tshark, "-n", "-r", str(path), "-Y", f"tcp.stream eq {conn}", "-T", "fields",
                     "-e", "frame.number"], check=True, capture_output=True, timeout=3600)))
        print(f"load average after: {os.getloadavg()}")
        for name, times in runs.items():
            med = statistics.median(times)
            print(f"{name:34} median {med:7.3f} s  ({args.packets / med / 1e6:6.2f} M packets/s)  "
                  f"runs {', '.join(f'{t:.3f}' for t in times)}")
        if tshark:
            ratio = statistics.median(runs["tshark -Y tcp.stream eq N"]) / statistics.median(
                runs["fasttcp select --conn"])
            print(f"fasttcp --conn is {ratio:.1f}x tshark's selection")


if __name__ == "__main__":
    main()
