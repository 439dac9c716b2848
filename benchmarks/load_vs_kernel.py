"""Connections/s and client CPU per connection: `fasttcp load` against kernel clients.

One veth pair between two namespaces; in B the C accept loop of the load tests
(tests/load/accept_server.c: accept, close, count) listens; from A, in turn:

- ``fasttcp load 198.18.0.2:PORT --connections N --json`` (one process: the Endpoint on
  the AF_PACKET rings);
- kernel clients: a C loop (compiled here with cc) of non-blocking connect() and close()
  with W connections in flight, in as many processes as fasttcp uses (one; ``--procs``),
  each making N / procs connections. A gets ``net.ipv4.tcp_tw_reuse=1``, the TIME-WAIT
  policy fasttcp load follows, so both reuse ports the same way.

Client and server are kept apart (``--client-cpu 0 --server-cpu 1``, the default): the
client runs pinned to one CPU (taskset), the server to the other, and each direction's
receive processing is steered to the receiver's CPU with RPS (Documentation/networking/
scaling.rst): B's veth rx-0 gets the server CPU's mask, A's the client's. Without that,
a veth runs the receiver's whole stack in the sender's softirq (veth_xmit -> netif_rx
on the sending CPU), so the server's SYN processing would be charged to the client's
send(). The steering is checked per run: the NET_RX softirqs (/proc/softirqs) that ran
on each CPU are printed (the server CPU takes one per SYN, the client CPU one per
SYN-ACK).

Per run: connections/s (completed handshakes over the run's wall time) and the client's
CPU per connection: getrusage of the client processes (user + system) plus the softirq
time of the client CPU (/proc/stat) -- the same sum for both tools. The kernel here
samples CPU time on the tick (CONFIG_TICK_CPU_ACCOUNTING, no IRQ_TIME_ACCOUNTING): a
softirq tick that lands while the client is current counts in both terms, so the sum is
an upper bound and getrusage alone (also printed) a lower one. fasttcp's getrusage
includes the interpreter's start-up and imports (~0.3 s); the CPU of its drive loop alone
(``client_cpu_s`` of its JSON) is printed as ``loop``. The busy time of the
client and server CPUs is printed too (other work on a shared machine lands there as
well). Repeated ``--rounds`` times, alternating; the median and the spread are printed
with the load average before and after:

    python benchmarks/load_vs_kernel.py [--connections N] [--rounds R] [--procs P] [--inflight W]
                                        [--client-cpu C] [--server-cpu S] [--no-steer]

Needs root, iproute2, nft, cc, taskset and pyroute2, and two CPUs.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.netns import VethPair  # noqa: E402

PORT = 9000
TIMEOUT = 600
SERVER_C = ROOT / "tests" / "load" / "accept_server.c"
IDLE, IOWAIT, SOFTIRQ = 3, 4, 6          # /proc/stat cpuN columns (proc(5))

CLIENT_C = r"""
/* Kernel clients: W non-blocking connect()s in flight, close() each once connected. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static int kc_open(int ep, const struct sockaddr_in *dst) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct epoll_event ev = {.events = EPOLLOUT};
    if (fd < 0) return -1;
    if (connect(fd, (const struct sockaddr *)dst, sizeof *dst) < 0 && errno != EINPROGRESS) { close(fd); return -1; }
    ev.data.fd = fd;
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    return 0;
}

int main(int argc, char **argv) {
    struct sockaddr_in dst = {.sin_family = AF_INET};
    long n = atol(argv[3]), started = 0, done = 0, failed = 0;
    int inflight = atoi(argv[4]), ep = epoll_create1(0);
    struct epoll_event evs[256];
    inet_pton(AF_INET, argv[1], &dst.sin_addr);
    dst.sin_port = htons((unsigned short)atoi(argv[2]));
    while (started < n && started < inflight) { if (kc_open(ep, &dst) == 0) started++; else { failed++; started++; } }
    while (done + failed < n) {
        int k = epoll_wait(ep, evs, 256, 5000), i;
        if (k <= 0) break;
        for (i = 0; i < k; i++) {
            int fd = evs[i].data.fd, err = 0;
            socklen_t len = sizeof err;
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
            if (err == 0) done++; else failed++;
            close(fd);
            if (started < n) { if (kc_open(ep, &dst) == 0) started++; else { failed++; started++; } }
        }
    }
    printf("%ld %ld\n", done, failed);
    return 0;
}
"""


def _cpu_times() -> dict[int, list[int]]:
    """Per-CPU /proc/stat counters (ticks): user nice system idle iowait irq softirq ..."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            name, *v = line.split()
            if name.startswith("cpu") and name != "cpu":
                out[int(name[3:])] = [int(x) for x in v]
    return out


def _net_rx() -> list[int]:
    """NET_RX softirqs run so far, per CPU (/proc/softirqs)."""
    with open("/proc/softirqs") as f:
        for line in f:
            if line.split(":")[0].strip() == "NET_RX":
                return [int(x) for x in line.split(":")[1].split()]
    return []


def _children_cpu() -> tuple[float, float]:
    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    return u.ru_utime, u.ru_stime


def _measure(run: Callable[[], tuple[int, float]], client_cpu: int, server_cpu: int) -> dict:
    """Run ``run`` (it returns the connections completed and the CPU seconds of its drive
    loop as the tool reports them, NaN if it does not) and take its figures."""
    tick = os.sysconf("SC_CLK_TCK")
    (u0, s0), c0, r0, t0 = _children_cpu(), _cpu_times(), _net_rx(), time.monotonic()
    done, loop_cpu = run()
    wall = time.monotonic() - t0
    (u1, s1), c1, r1 = _children_cpu(), _cpu_times(), _net_rx()
    per = 1e6 / max(1, done)

    def busy(cpu: int) -> float:
        d = [b - a for a, b in zip(c0[cpu], c1[cpu], strict=True)]
        return (sum(d) - d[IDLE] - d[IOWAIT]) / tick

    softirq = (c1[client_cpu][SOFTIRQ] - c0[client_cpu][SOFTIRQ]) / tick
    rusage = u1 - u0 + s1 - s0
    return {"connections": done, "wall_s": wall, "per_s": done / wall,
            "client_cpu_us": (rusage + softirq) * per, "client_rusage_us": rusage * per,
            "client_user_us": (u1 - u0) * per, "loop_cpu_us": loop_cpu * per, "client_softirq_us": softirq * per,
            "client_cpu_busy_us": busy(client_cpu) * per, "server_cpu_busy_us": busy(server_cpu) * per,
            "net_rx_client_cpu": r1[client_cpu] - r0[client_cpu],
            "net_rx_server_cpu": r1[server_cpu] - r0[server_cpu]}


def _pin(cpu: int | None, cmd: list[str]) -> list[str]:
    return cmd if cpu is None else ["taskset", "-c", str(cpu), *cmd]


def steer(net: VethPair, client_cpu: int, server_cpu: int) -> None:
    """RPS: each veth end's receive processing on its receiver's CPU (the namespace's own
    sysfs, hence ``ip netns exec``)."""
    for ns, dev, cpu in ((net.b, net.b_if, server_cpu), (net.a, net.a_if, client_cpu)):
        net.run(ns, ["sh", "-c", f"echo {1 << cpu:x} > /sys/class/net/{dev}/queues/rx-0/rps_cpus"])


def fasttcp_run(net: VethPair, n: int, cpu: int | None) -> tuple[int, float]:
    out = net.run(net.a, _pin(cpu, [sys.executable, "-m", "fasttcp", "load", f"{net.b_v4}:{PORT}",
                                    "--connections", str(n), "--json"]), timeout=TIMEOUT, check=False)
    r = json.loads(out.stdout)
    if r["errors"]:
        print(f"  fasttcp load: {r['errors']} errors", file=sys.stderr)
    return int(r["connections"]), float(r["client_cpu_s"])


def kernel_run(net: VethPair, exe: Path, n: int, procs: int, inflight: int, cpu: int | None) -> tuple[int, float]:
    ps = [net.popen(net.a, _pin(cpu, [str(exe), net.b_v4, str(PORT), str(n // procs), str(inflight)]))
          for _ in range(procs)]
    done = 0
    for p in ps:
        out, err = p.communicate(timeout=TIMEOUT)
        ok, failed = (int(x) for x in out.split())
        done += ok
        if failed:
            print(f"  kernel client: {failed} failed", file=sys.stderr)
    return done, math.nan


def _report(results: dict[str, list[dict]]) -> None:
    for key in ("per_s", "client_cpu_us", "client_rusage_us", "client_user_us", "client_softirq_us", "loop_cpu_us",
                "client_cpu_busy_us", "server_cpu_busy_us"):
        f = [m[key] for m in results["fasttcp"]]
        k = [m[key] for m in results["kernel"]]
        print(f"{key:>19}: fasttcp median {statistics.median(f):9.1f} [{min(f):.1f}..{max(f):.1f}]  "
              f"kernel median {statistics.median(k):9.1f} [{min(k):.1f}..{max(k):.1f}]  "
              f"ratio fasttcp/kernel {statistics.median(f) / statistics.median(k):.2f}")


def _rounds(net: VethPair, args: argparse.Namespace, client_exe: Path) -> dict[str, list[dict]]:
    results: dict[str, list[dict]] = {"fasttcp": [], "kernel": []}
    for rnd in range(args.rounds):
        for name in ("fasttcp", "kernel") if rnd % 2 == 0 else ("kernel", "fasttcp"):
            if name == "fasttcp":
                run = lambda: fasttcp_run(net, args.connections, args.client_cpu)  # noqa: E731
            else:
                run = lambda: kernel_run(net, client_exe, args.connections, args.procs,  # noqa: E731
                                         args.inflight, args.client_cpu)
            m = _measure(run, args.client_cpu, args.server_cpu)
            results[name].append(m)
            print(f"round {rnd} {name:8} {m['connections']:>7} conns {m['per_s']:>8.0f}/s  client "
                  f"{m['client_cpu_us']:5.1f} us/conn (rusage {m['client_rusage_us']:5.1f}, user "
                  f"{m['client_user_us']:4.1f}, softirq {m['client_softirq_us']:4.1f}, loop {m['loop_cpu_us']:4.1f})  "
                  f"cpu{args.client_cpu} "
                  f"busy {m['client_cpu_busy_us']:5.1f}  cpu{args.server_cpu} busy {m['server_cpu_busy_us']:5.1f}"
                  f"  NET_RX cpu{args.client_cpu}/cpu{args.server_cpu} "
                  f"{m['net_rx_client_cpu']}/{m['net_rx_server_cpu']}", flush=True)
            time.sleep(2)       # let TIME-WAIT reuse windows open
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--procs", type=int, default=1, help="kernel client processes (fasttcp load uses one)")
    ap.add_argument("--inflight", type=int, default=64, help="connects in flight per kernel client process")
    ap.add_argument("--client-cpu", type=int, default=0, help="the CPU both clients are pinned to")
    ap.add_argument("--server-cpu", type=int, default=1, help="the CPU the server is pinned to")
    ap.add_argument("--no-steer", action="store_true", help="leave RPS off (the receiver runs in the sender's softirq)")
    args = ap.parse_args()
    with open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    print(f"cpu: {model}, {os.cpu_count()} CPUs; client on cpu{args.client_cpu}, server on cpu{args.server_cpu}, "
          f"RPS steering {'off' if args.no_steer else 'on'}")
    print("load before:", os.getloadavg())
    with tempfile.TemporaryDirectory() as tmp, VethPair() as net:
        server_exe, client_exe = Path(tmp) / "accept_server", Path(tmp) / "kclient"
        (Path(tmp) / "kclient.c").write_text(CLIENT_C)
        subprocess.run(["cc", "-O2", "-o", str(server_exe), str(SERVER_C)], check=True, timeout=60)
        subprocess.run(["cc", "-O2", "-o", str(client_exe), str(Path(tmp) / "kclient.c")], check=True, timeout=60)
        net.run(net.b, ["sysctl", "-qw", "net.core.somaxconn=65535"])
        net.run(net.a, ["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1"])
        if not args.no_steer:
            steer(net, args.client_cpu, args.server_cpu)
        server = net.popen(net.b, _pin(args.server_cpu, [str(server_exe), str(PORT)]))
        server.stdout.readline()
        try:
            results = _rounds(net, args, client_exe)
        finally:
            server.terminate()
            server.communicate(timeout=20)
    print("load after:", os.getloadavg())
    _report(results)


if __name__ == "__main__":
    main()
