"""The live capture target: replay the bench capture into a veth at the top rate and see
whether LiveCapture + Tracker.feed_batch on the other side keeps up with zero drops;
then find the highest --pps that gives zero drops, and say what limits the rate.

Namespace A runs `fasttcp replay` (PACKET_TX_RING by default); namespace B runs one
process that takes the packets from a LiveCapture (the default 128 MiB TPACKET_V3 ring,
the built-in TCP filter) and feeds every batch to a Tracker. Per run it prints the
replay's packets/s, what B captured (packets/s over its busy time, drops from
PACKET_STATISTICS), B's CPU seconds and how many of them were spent in feed_batch.

On a veth the receiving kernel work -- putting each frame into B's ring (tpacket_rcv)
-- runs in the sender's system call, on the sender's core; the capture process only
walks the ring and tracks. With 2 cores the replay, the capture process and everything
else on the machine share them: note the load printed.

    python benchmarks/live_replay.py [--packets N] [--method ring|sendmmsg] [--steps K]

Run as root from the repository root.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

IDLE_SECONDS = 1.5          # the capture ends this long after the last batch
TIMEOUT = 300


def receiver(interface: str, expect: int) -> None:
    """Inside namespace B: capture and track until `expect` packets came or the link
    was idle for IDLE_SECONDS after the first; print one JSON line."""
    from fasttcp import LiveCapture, Tracker, Verdict

    tracker = Tracker()
    with LiveCapture(interface) as cap:
        print("ready", flush=True)
        got, feed, first, last = 0, 0.0, 0.0, 0.0
        ok = 0
        cpu0 = None
        end = time.monotonic() + TIMEOUT
        while time.monotonic() < end:
            batch = cap.next_batch(timeout=0.2)
            now = time.monotonic()
            if batch is None:
                if (got and now - last > IDLE_SECONDS) or got >= expect:
                    break
                continue
            if cpu0 is None:
                r = resource.getrusage(resource.RUSAGE_SELF)
                cpu0, first = r.ru_utime + r.ru_stime, now
            t = time.perf_counter()
            verdicts = tracker.feed_batch(batch)
            feed += time.perf_counter() - t
            ok += int((verdicts == int(Verdict.OK)).sum())
            got += len(batch)
            last = time.monotonic()
        r = resource.getrusage(resource.RUSAGE_SELF)
        stats = cap.stats
    print(json.dumps({"captured": got, "ok": ok, "drops": stats.drops, "kernel_packets": stats.packets,
                      "seconds": last - first, "cpu": r.ru_utime + r.ru_stime - (cpu0 or 0.0), "feed": feed}),
          flush=True)


def one_run(net, capture: Path, packets: int, method: str, pps: float | None) -> dict:
    """Replay `capture` from A while B captures; both reports merged."""
    rx = net.popen(net.b, [sys.executable, __file__, "--receiver", net.b_if, str(packets)])
    try:
        assert rx.stdout is not None
        line = rx.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"receiver: {line} {rx.stderr.read() if rx.stderr else ''}")
        pace = ["--pps", str(pps)] if pps else ["--top"]
        sent = net.run(net.a, [sys.executable, "-m", "fasttcp", "replay", str(capture), "-i", net.a_if,
                               "--method", method, "--json", "-q", *pace], timeout=TIMEOUT)
        out, err = rx.communicate(timeout=TIMEOUT)
        if rx.returncode:
            raise RuntimeError(f"receiver failed: {err[-2000:]}")
    finally:
        if rx.poll() is None:
            rx.kill()
            rx.wait(timeout=10)
    d = json.loads(out.strip().splitlines()[-1])
    d["replay"] = json.loads(sent.stdout)
    return d


def show(label: str, d: dict) -> None:
    rp = d["replay"]
    cap_pps = d["captured"] / d["seconds"] if d["seconds"] > 0 else 0.0
    busy = d["cpu"] / d["seconds"] if d["seconds"] > 0 else 0.0
    print(f"{label:>16}: replay {rp['packets']:,} packets at {rp['pps']:,.0f}/s ({rp['gbps']:.2f} Gbit/s); "
          f"captured {d['captured']:,} at {cap_pps:,.0f}/s, drops {d['drops']:,}, tracked ok {d['ok']:,}; "
          f"capture process on CPU {busy:.0%} of its time ({d['cpu']:.3f} s), in feed_batch {d['feed']:.3f} s "
          f"(wall)",
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packets", type=int, default=400_000, help="packets in the bench capture (default 400k)")
    ap.add_argument("--method", choices=("ring", "sendmmsg"), default="ring")
    ap.add_argument("--steps", type=int, default=5, help="bisection steps for the zero-drop rate")
    ap.add_argument("--repeat", type=int, default=3, help="runs at the top rate")
    ap.add_argument("--receiver", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.receiver:
        receiver(args.receiver[0], int(args.receiver[1]))
        return
    from fasttcp.bench.tracker import synth_capture
    from tests.netns import VethPair

    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} ({os.cpu_count()} CPUs)", flush=True)
    with tempfile.TemporaryDirectory() as tmp, VethPair() as net:
        capture = Path(tmp) / "bench.pcap"
        flows = synth_capture(capture, args.packets, concurrent=10_000)
        print(f"bench capture: {args.packets:,} packets, {flows:,} connections, "
              f"{capture.stat().st_size / 1e6:.0f} MB", flush=True)
        tops = []
        for k in range(args.repeat):
            d = one_run(net, capture, args.packets, args.method, None)
            show(f"top #{k + 1}", d)
            tops.append(d)
        top_rate = max(d["replay"]["pps"] for d in tops)
        if all(d["drops"] == 0 for d in tops):
            print(f"zero drops at the top rate: the highest zero-drop rate is the top rate, "
                  f"{top_rate:,.0f} packets/s (the sender's)")
        else:
            lo, hi = 0.0, top_rate
            for _ in range(args.steps):
                mid = (lo + hi) / 2
                d = one_run(net, capture, args.packets, args.method, mid)
                show(f"--pps {mid:,.0f}", d)
                if d["drops"] == 0:
                    lo = mid
                else:
                    hi = mid
            print(f"highest zero-drop rate found: {lo:,.0f} packets/s (drops at {hi:,.0f})")
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}", flush=True)


if __name__ == "__main__":
    main()
