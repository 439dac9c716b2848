"""The packet rate `fasttcp analyze --interface` keeps up with, without drops, against
`tcpdump -w` in the same run, on a veth pair between two namespaces this script makes.

A sender in namespace B writes the frames of the short-connection capture of `fasttcp
bench` (10-packet connections; addresses the receiving namespace does not own, so its
kernel only delivers them to the capture sockets) to its veth end through an AF_PACKET
socket, paced to a target rate; in namespace A one capture runs at a time -- the
analyzer with 1 and 2 workers, then tcpdump with a buffer as large as the analyzer's
ring (-B 131072: 128 MiB) -- and reports what the kernel dropped. For each target rate
and each capture: the rate the sender reached, the drops, the load average. The
sustained rate of a capture is the highest rate it took with zero drops.

    python benchmarks/live_analyze.py [--rates 25000,50000,...] [--seconds 2] [--repeat 2]

Root only (namespaces). The sender, the kernel's delivery into the rings (softirq, on
the sender's CPU) and the capture share this machine's cores: on 2 cores the sender is
a Python loop of send() calls that tops out near its own maximum, and that maximum is
often what is measured; the `max` row sends as fast as it can.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.netns import VethPair, child_env  # the namespaces the tests use

SENDER = r"""
import socket, sys, time
from fasttcp.capture.reader import read_pcap
iface, capture, rate, count = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
frames = []
with open(capture, "rb") as f:
    data = f.read()
# the capture's records: 24-byte file header, then 16-byte record headers (classic pcap)
at = 24
while at < len(data) and len(frames) < count:
    n = int.from_bytes(data[at + 8:at + 12], "little")
    frames.append(data[at + 16:at + 16 + n])
    at += 16 + n
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
send = s.send
CHUNK = 256
t0 = time.perf_counter()
sent = 0
while sent < count:
    at = sent % len(frames)
    chunk = frames[at:at + min(CHUNK, count - sent)]
    for fr in chunk:
        send(fr)
    sent += len(chunk)
    if rate > 0:
        ahead = sent / rate - (time.perf_counter() - t0)
        if ahead > 0:
            time.sleep(ahead)
print(sent / (time.perf_counter() - t0))
"""


def send(net: VethPair, capture: Path, rate: float, count: int, senders: int) -> float:
    """`count` frames from `senders` processes in namespace B, each a share of `rate`;
    the rate they reached together."""
    procs = [net.popen(net.b, [sys.executable, "-c", SENDER, net.b_if, str(capture), str(rate / senders),
                               str(count // senders)]) for _ in range(senders)]
    rates = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        rates.append(float(out))
    return sum(rates)


def measure(net: VethPair, capture: Path, tool: str, rate: float, seconds: float, tmp: Path,
            senders: int = 1) -> dict:
    """One capture run at one target rate: what was sent, at what rate, what was dropped."""
    count = int(min(rate if rate > 0 else 400_000, 1_000_000) * seconds) // senders * senders
    err = tmp / "capture.err"
    out = tmp / "capture.out"
    if tool == "tcpdump":
        cmd = ["tcpdump", "-i", net.a_if, "-n", "-s", "0", "-B", str(128 << 10), "-w", str(tmp / "t.pcap"), "tcp"]
        ready = "listening on"
    else:
        workers = tool.split("-")[1]
        cmd = [sys.executable, "-m", "fasttcp", "analyze", "--interface", net.a_if, "--workers", workers,
               "--format", "json", "-o", "/dev/null", "--json-summary"]
        ready = "listening on"
    with open(err, "w") as ef, open(out, "w") as of:
        proc = subprocess.Popen(["ip", "netns", "exec", net.a, *cmd], stdout=of, stderr=ef, env=child_env())
        try:
            end = time.monotonic() + 60
            while time.monotonic() < end:
                if ready in err.read_text() or proc.poll() is not None:
                    break
                time.sleep(0.05)
            time.sleep(0.3)
            before = os.getloadavg()[0]
            sent_pps = send(net, capture, rate, count, senders)
            time.sleep(1.0)                  # the rings drained
        finally:
            proc.send_signal(signal.SIGTERM)
            # the capture's CPU time, its worker processes included (reaped by it)
            _, _, usage = os.wait4(proc.pid, 0)
            proc.returncode = 0
    cpu = usage.ru_utime + usage.ru_stime
    result = {"tool": tool, "target_pps": rate, "sent": count, "sent_pps": round(sent_pps), "senders": senders,
              "load1": round(before, 2), "capture_cpu_s": round(cpu, 3)}
    if tool == "tcpdump":
        text = err.read_text()
        result["drops"] = int(next(ln.split()[0] for ln in text.splitlines() if "dropped by kernel" in ln))
        result["seen"] = int(next(ln.split()[0] for ln in text.splitlines() if "received by filter" in ln))
    else:
        summary = json.loads(out.read_text())
        result["drops"] = summary["capture_stats"]["drops"]
        result["seen"] = summary["capture_stats"]["packets"]
    # what one core would take at this cost per packet (startup and idle time included)
    result["pps_per_cpu_s"] = round(result["seen"] / cpu) if cpu > 0 else None
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="25000,50000,100000,200000,400000,0",
                    help="target packets/s, comma-separated; 0 = as fast as the sender goes")
    ap.add_argument("--seconds", type=float, default=2.0, help="sending time per run")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--tools", default="analyze-1,analyze-2,tcpdump")
    ap.add_argument("--senders", type=int, default=1, help="sending processes (each a share of the rate)")
    args = ap.parse_args()
    from fasttcp.bench.tracker import synth_capture

    rates = [float(r) for r in args.rates.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as d, VethPair() as net:
        tmp = Path(d)
        capture = tmp / "short.pcap"
        synth_capture(capture, 1_000_000, 1000, shape="short")
        print(f"# uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
        for rep in range(args.repeat):
            for rate in rates:
                for tool in args.tools.split(","):
                    r = measure(net, capture, tool, rate, args.seconds, tmp, args.senders)
                    r["round"] = rep
                    rows.append(r)
                    print(json.dumps(r), flush=True)
        print(f"# uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    print("\n# highest sent rate with zero drops, per round")
    for tool in args.tools.split(","):
        best = [max((r["sent_pps"] for r in rows if r["tool"] == tool and r["round"] == k and r["drops"] == 0),
                    default=0) for k in range(args.repeat)]
        cost = [r["pps_per_cpu_s"] for r in rows if r["tool"] == tool and r["target_pps"] == 0]
        print(f"{tool:>10}: {', '.join(f'{b:,}' for b in best)} packets/s; at the sender's top rate "
              f"{', '.join(f'{c:,}' for c in cost)} packets per CPU-second of the capture")


if __name__ == "__main__":
    main()
