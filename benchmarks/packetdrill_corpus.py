"""The packetdrill corpus through `fasttcp.packetdrill` against real packetdrill on Linux.

The runner's clock is virtual, so a script costs its events, not its time line; real
packetdrill waits the time line out on a TUN device. Prints the runner's time for the
whole corpus (median and spread of R runs), the load average, and with a packetdrill
binary the same corpus under real packetdrill in a fresh network namespace, and the ratio:

    python benchmarks/packetdrill_corpus.py [--repeat R] [--packetdrill /path/to/packetdrill]

(the Linux run needs root; it takes as long as the scripts' time line, ~2.5 minutes).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
import uuid
from pathlib import Path

from fasttcp.packetdrill import run

SCRIPTS = Path(__file__).resolve().parents[1] / "tests" / "packetdrill" / "scripts"
LINUX_SYSCTLS = ["net.ipv4.tcp_rmem=4096 540000 15728640", "net.ipv4.tcp_syn_retries=5",
                 "net.ipv4.tcp_syn_linear_timeouts=0", "net.ipv4.tcp_syncookies=1"]


def time_runner(paths: list[Path], repeat: int) -> list[float]:
    """Seconds per pass over every script, `repeat` passes; every script must pass."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for p in paths:
            result = run(p)
            assert result.ok, result.error
        times.append(time.perf_counter() - start)
    return times


def time_packetdrill(binary: str, paths: list[Path]) -> float:
    """Seconds for one pass of real packetdrill over the scripts, in a fresh namespace."""
    ns = f"ftpd-bench-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=30)
    try:
        start = time.perf_counter()
        for p in paths:
            # the profile again before each script: syn-cookies.pkt changes a sysctl
            subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", *LINUX_SYSCTLS], timeout=30)
            subprocess.run(["ip", "netns", "exec", ns, binary, "--tolerance_usecs=10000", p.name],
                           cwd=p.parent, capture_output=True, timeout=600)
        return time.perf_counter() - start
    finally:
        subprocess.run(["ip", "netns", "del", ns], timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--packetdrill", default=os.environ.get("FASTTCP_PACKETDRILL"))
    args = ap.parse_args()
    paths = sorted(SCRIPTS.glob("*.pkt"))
    load = os.getloadavg()[0]
    times = time_runner(paths, args.repeat)
    med = statistics.median(times)
    print(f"fasttcp.packetdrill: {len(paths)} scripts in {med * 1e3:.1f} ms (median of {args.repeat}, "
          f"{min(times) * 1e3:.1f}-{max(times) * 1e3:.1f} ms), load {load:.2f}")
    if args.packetdrill:
        real = time_packetdrill(args.packetdrill, paths)
        print(f"packetdrill on Linux: {real:.1f} s (one pass), {real / med:.0f}x the runner's median")


if __name__ == "__main__":
    main()
