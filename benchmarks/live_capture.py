"""Live capture throughput: the TPACKET_V3 ring walk of `LiveCapture` against tcpdump.

A small C flooder (sendmmsg on an AF_PACKET socket, compiled here with cc) sends N
minimal TCP frames from namespace B into a veth as fast as it can; in namespace A a
reader takes them: `LiveCapture` (walking the ring into batches; with ``--track`` also
feeding a Tracker) or ``tcpdump -w /dev/null`` (libpcap's own TPACKET_V3 ring, the same
128 MiB buffer). Frames go to a MAC nobody owns, so A's stack drops them at once and
the readers see them all (a packet tap sees every frame). Per round and reader it
prints what was sent, delivered and dropped, and the reader's CPU seconds (LiveCapture:
from its first poll, without the interpreter's start-up; tcpdump: the whole process), so
the figure that survives a shared machine is packets per CPU second:

    python benchmarks/live_capture.py [--packets N] [--rounds R] [--track]

Needs root, iproute2, cc and tcpdump. Prints the load average before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.netns import VethPair, child_env  # noqa: E402

SETTLE_SECONDS = 1.0
TIMEOUT = 300
RING_BYTES = 128 << 20

FLOODER_C = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define BATCH 256
#define FRAME 54

static uint16_t csum(const uint8_t *p, size_t n, uint32_t s) {
    for (size_t i = 0; i + 1 < n; i += 2) s += (uint32_t)p[i] << 8 | p[i + 1];
    if (n & 1) s += (uint32_t)p[n - 1] << 8;
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

int main(int argc, char **argv) {
    /* flood IFNAME COUNT: COUNT TCP ACKs 198.18.0.2 -> 198.18.0.1, 256 flows */
    long count = atol(argv[2]), sent = 0;
    static uint8_t frames[BATCH][FRAME];
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    struct sockaddr_ll to;
    struct timespec t0, t1;
    int fd = socket(AF_PACKET, SOCK_RAW, 0);
    if (fd < 0) { perror("socket"); return 1; }
    memset(&to, 0, sizeof to);
    to.sll_family = AF_PACKET;
    to.sll_ifindex = (int)if_nametoindex(argv[1]);
    to.sll_halen = 6;
    for (int i = 0; i < BATCH; i++) {
        uint8_t *f = frames[i], *ip = f + 14, *tcp = ip + 20, ph[12];
        static const uint8_t dst[6] = {2, 0, 0, 0, 0, 1}, src[6] = {2, 0, 0, 0, 0, 2};
        memcpy(f, dst, 6); memcpy(f + 6, src, 6); f[12] = 0x08; f[13] = 0x00;
        memset(ip, 0, 40);
        ip[0] = 0x45; ip[3] = 40; ip[8] = 64; ip[9] = 6;
        ip[12] = 198; ip[13] = 18; ip[14] = 0; ip[15] = 2;
        ip[16] = 198; ip[17] = 18; ip[18] = 0; ip[19] = 1;
        uint16_t c = csum(ip, 20, 0); ip[10] = c >> 8; ip[11] = c & 0xff;
        tcp[0] = 0x9c; tcp[1] = (uint8_t)i; tcp[2] = 0x14; tcp[3] = 0x51;
        tcp[7] = 1; tcp[11] = 1; tcp[12] = 0x50; tcp[13] = 0x10; tcp[14] = 0xff; tcp[15] = 0xff;
        memcpy(ph, ip + 12, 8); ph[8] = 0; ph[9] = 6; ph[10] = 0; ph[11] = 20;
        uint32_t s = 0;
        for (int k = 0; k < 12; k += 2) s += (uint32_t)ph[k] << 8 | ph[k + 1];
        c = csum(tcp, 20, s); tcp[16] = c >> 8; tcp[17] = c & 0xff;
        iov[i].iov_base = f; iov[i].iov_len = FRAME;
        memset(&msgs[i], 0, sizeof msgs[i]);
        msgs[i].msg_hdr.msg_iov = &iov[i]; msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &to; msgs[i].msg_hdr.msg_namelen = sizeof to;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (sent < count) {
        int n = sendmmsg(fd, msgs, (unsigned)(count - sent < BATCH ? count - sent : BATCH), 0);
        if (n < 0) { if (errno == ENOBUFS || errno == EAGAIN) continue; perror("sendmmsg"); return 1; }
        sent += n;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("{\"sent\": %ld, \"seconds\": %.6f}\n", sent,
           (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}
"""

READER = """
import json, select, sys, time
from fasttcp import LiveCapture, Tracker
cap = LiveCapture(sys.argv[1], block_bytes=int(sys.argv[3]))
tracker = Tracker() if sys.argv[2] == "1" else None
cpu0 = time.process_time()          # (the interpreter's start-up is not the ring's cost)
print("ready", flush=True)
def stop_asked():
    return bool(select.select([sys.stdin], [], [], 0)[0])
while not stop_asked():
    batch = cap.next_batch(0.05)
    if batch is not None and tracker is not None:
        tracker.feed_batch(batch)
while (batch := cap.next_batch(0.05)) is not None:
    if tracker is not None:
        tracker.feed_batch(batch)
cap.close()
print(json.dumps(dict(cap.stats.as_dict(), cpu_s=time.process_time() - cpu0)), flush=True)
"""


def build_flooder(tmp: Path) -> Path:
    src, exe = tmp / "flood.c", tmp / "flood"
    src.write_text(FLOODER_C)
    subprocess.run([os.environ.get("CC", "cc"), "-O2", "-o", str(exe), str(src)], check=True, timeout=TIMEOUT)
    return exe


def _wait_cpu(proc: subprocess.Popen) -> float:
    """Wait for `proc` (ip netns exec replaces itself with the command) and return its CPU
    seconds (user + system)."""
    _, _, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0
    return usage.ru_utime + usage.ru_stime


def run_live(net: VethPair, flooder: Path, packets: int, track: bool, block_bytes: int) -> dict:
    reader = subprocess.Popen(["ip", "netns", "exec", net.a, sys.executable, "-c", READER, net.a_if,
                               "1" if track else "0", str(block_bytes)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env=child_env())
    assert reader.stdout is not None and reader.stdin is not None
    assert reader.stdout.readline().strip() == "ready"
    flood = json.loads(net.run(net.b, [str(flooder), net.b_if, str(packets)], timeout=TIMEOUT).stdout)
    time.sleep(SETTLE_SECONDS)
    reader.stdin.write("stop\n")
    reader.stdin.flush()
    ready = select.select([reader.stdout], [], [], TIMEOUT)[0]
    stats = json.loads(reader.stdout.readline()) if ready else {}
    _wait_cpu(reader)
    return {"sent": flood["sent"], "send_s": flood["seconds"], "delivered": stats.get("delivered", 0),
            "drops": stats.get("drops", -1), "cpu_s": stats.get("cpu_s", 0.0)}


def run_tcpdump(net: VethPair, flooder: Path, packets: int) -> dict:
    dump = subprocess.Popen(["ip", "netns", "exec", net.a, "tcpdump", "-i", net.a_if, "-n", "-B",
                             str(RING_BYTES >> 10), "-w", "/dev/null", "tcp"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    assert dump.stderr is not None
    assert "listening" in dump.stderr.readline()
    flood = json.loads(net.run(net.b, [str(flooder), net.b_if, str(packets)], timeout=TIMEOUT).stdout)
    time.sleep(SETTLE_SECONDS)
    dump.terminate()
    err = dump.stderr.read()
    cpu = _wait_cpu(dump)
    counts = {}
    for line in err.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0].isdigit():
            counts[" ".join(words[2:])] = int(words[0])
    return {"sent": flood["sent"], "send_s": flood["seconds"], "delivered": counts.get("captured", 0),
            "drops": counts.get("dropped by kernel", -1), "cpu_s": cpu}


def report(name: str, rows: list[dict]) -> None:
    per_cpu = [r["delivered"] / r["cpu_s"] for r in rows if r["cpu_s"] > 0]
    send = [r["sent"] / r["send_s"] for r in rows]
    print(f"{name:>12}: delivered {[r['delivered'] for r in rows]} drops {[r['drops'] for r in rows]}")
    print(f"{'':>12}  sender {statistics.median(send) / 1e6:.2f} Mpps; reader "
          f"{statistics.median(per_cpu) / 1e6:.2f} M packets per CPU second "
          f"(spread {min(per_cpu) / 1e6:.2f}..{max(per_cpu) / 1e6:.2f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=2_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--track", action="store_true", help="LiveCapture also feeds a Tracker")
    ap.add_argument("--block-bytes", type=int, default=32 << 10, help="LiveCapture's block size")
    args = ap.parse_args()
    if shutil.which("tcpdump") is None:
        raise SystemExit("tcpdump is needed for the comparison")
    print(f"load before: {os.getloadavg()}")
    results: dict[str, list[dict]] = {"LiveCapture": [], "tcpdump -w": []}
    with tempfile.TemporaryDirectory() as tmp, VethPair() as net:
        flooder = build_flooder(Path(tmp))
        for _ in range(args.rounds):
            results["LiveCapture"].append(run_live(net, flooder, args.packets, args.track, args.block_bytes))
            results["tcpdump -w"].append(run_tcpdump(net, flooder, args.packets))
    for name, rows in results.items():
        report(name + (" +track" if args.track and name == "LiveCapture" else ""), rows)
    mine = statistics.median(r["delivered"] / r["cpu_s"] for r in results["LiveCapture"])
    theirs = statistics.median(r["delivered"] / r["cpu_s"] for r in results["tcpdump -w"])
    print(f"packets per CPU second, LiveCapture / tcpdump: {mine / theirs:.2f}x")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
