"""Packets per second into a veth: Transmitter's PACKET_TX_RING (with and without
PACKET_QDISC_BYPASS) and sendmmsg, against a plain C send() loop on an AF_PACKET socket
and tcpreplay, in one run, for 60-byte frames (the 64-byte Ethernet minimum without
its FCS) and 1514-byte frames (a 1500-byte MTU). The sender runs in namespace A of a
fresh veth pair; namespace B's stack receives the frames (and drops them at once: they
are addressed to a MAC nobody owns), in the sender's softirq, on the same cores.

    python benchmarks/live_transmit.py [--packets N] [--repeat R]

Run as root from the repository root. tcpreplay is optional (Debian: apt-get install
tcpreplay); without it that peer is skipped. Prints each figure's median and spread
over the repeats, the ratios to the C loop, and the load (uptime) before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

C_SEND_LOOP = r"""
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
int main(int argc, char **argv) {
    int size = atoi(argv[2]); long n = atol(argv[3]);
    unsigned char frame[2048] = {0x00, 0x00, 0x5e, 0x00, 0x53, 0x00, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45};
    struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_ifindex = (int)if_nametoindex(argv[1])};
    int fd = socket(AF_PACKET, SOCK_RAW, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0) { perror("socket"); return 1; }
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++)
        if (send(fd, frame, (size_t)size, 0) < 0) { perror("send"); return 1; }
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%f\n", (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9);
    return 0;
}
"""

BATCH = 65536


def packets_batch(size: int, n: int):
    """n distinct IPv4 TCP packets making `size`-byte frames, as one batch."""
    import numpy as np

    from fasttcp import build

    ip_len = size - 14
    base = build("198.18.0.1", "198.18.0.2", 40000, 80, seq=1, payload=b"p" * (ip_len - 40))
    assert len(base) == ip_len
    buf = np.tile(np.frombuffer(base, np.uint8), n)
    return buf, np.arange(n, dtype=np.int64) * ip_len, np.full(n, ip_len, np.int64)


def child(interface: str, method: str, size: int, n: int) -> None:
    """Inside namespace A: send n packets of `size`-byte frames; print the seconds."""
    from fasttcp.capture.transmit import Transmitter

    buf, off, ln = packets_batch(size, min(n, BATCH))
    bypass = method == "ring+bypass"
    with Transmitter(interface, method="ring" if bypass else method, qdisc_bypass=bypass) as tx:
        t0 = time.perf_counter()
        left = n
        while left > 0:
            k = min(left, BATCH)
            tx.send_packets(buf, off[:k], ln[:k])
            left -= k
        tx.flush()
        dt = time.perf_counter() - t0
        print(json.dumps({"seconds": dt, "stats": tx.stats}))


def run_one(net, how: str, size: int, n: int, tools: dict[str, str]) -> float | None:
    """packets/s of one run of `how`, or None when it cannot run here."""
    if how == "C send() loop":
        out = net.run(net.a, [tools["c"], net.a_if, str(size), str(n)], timeout=600).stdout
        return n / float(out)
    if how == "tcpreplay":
        if "tcpreplay" not in tools:
            return None
        # --preload-pcap: from memory; --topspeed: no pacing; the file holds 10k frames
        loops = max(1, n // 10_000)
        out = net.run(net.a, [tools["tcpreplay"], "-q", "-K", "-t", f"--loop={loops}", "-i", net.a_if,
                              tools[f"pcap{size}"]], timeout=600).stdout
        m = re.search(r"Actual: (\d+) packets .* in ([\d.]+) seconds", out)
        if not m:
            raise RuntimeError(f"tcpreplay said:\n{out}")
        return int(m.group(1)) / float(m.group(2))
    out = net.run(net.a, [sys.executable, __file__, "--child", net.a_if, how, str(size), str(n)], timeout=600).stdout
    d = json.loads(out)
    assert d["stats"]["sent"] == n, d
    return n / d["seconds"]


def prepare(tmp: Path) -> dict[str, str]:
    from fasttcp import write_pcap

    tools: dict[str, str] = {}
    src = tmp / "send_loop.c"
    src.write_text(C_SEND_LOOP)
    subprocess.run(["gcc", "-O2", "-o", str(tmp / "send_loop"), str(src)], check=True, timeout=120)
    tools["c"] = str(tmp / "send_loop")
    if shutil.which("tcpreplay"):
        tools["tcpreplay"] = shutil.which("tcpreplay") or ""
    for size in (60, 1514):
        buf, off, ln = packets_batch(size, 10_000)
        frames = [bytes.fromhex("00005e005300020000000001") + b"\x08\x00" + bytes(buf[o:o + n])
                  for o, n in zip(off.tolist(), ln.tolist(), strict=True)]
        path = tmp / f"frames{size}.pcap"
        write_pcap(path, frames, linktype=1)
        tools[f"pcap{size}"] = str(path)
    return tools


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packets", type=int, default=1_000_000, help="packets per run for 60-byte frames "
                                                                    "(a fifth of it for 1514-byte ones)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", help="a comma-separated subset of: ring, ring+bypass, sendmmsg, tcpreplay "
                                   "(the C loop always runs: the ratios are to it)")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]), int(args.child[3]))
        return
    from tests.netns import VethPair

    hows = ["ring", "ring+bypass", "sendmmsg", "C send() loop", "tcpreplay"]
    if args.only:
        hows = [h for h in hows if h in args.only.split(",") or h == "C send() loop"]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp, VethPair() as net:
        tools = prepare(Path(tmp))
        results: dict[tuple[str, int], list[float]] = {}
        for _ in range(args.repeat):
            for size in (60, 1514):
                n = args.packets if size == 60 else args.packets // 5
                for how in hows:
                    r = run_one(net, how, size, n, tools)
                    if r is not None:
                        results.setdefault((how, size), []).append(r)
    load_after = os.getloadavg()
    print(f"load average before {load_before[0]:.2f} {load_before[1]:.2f}, after {load_after[0]:.2f} "
          f"{load_after[1]:.2f} ({os.cpu_count()} CPUs)")
    for size in (60, 1514):
        c = statistics.median(results[("C send() loop", size)])
        print(f"\n{size}-byte frames ({args.repeat} runs):")
        for how in hows:
            rs = results.get((how, size))
            if not rs:
                print(f"  {how:<16} not available")
                continue
            med = statistics.median(rs)
            print(f"  {how:<16} {med:>12,.0f} packets/s  ({min(rs):,.0f}..{max(rs):,.0f})  "
                  f"{med * size * 8 / 1e9:6.2f} Gbit/s  x{med / c:.2f} the C send() loop")


if __name__ == "__main__":
    main()
