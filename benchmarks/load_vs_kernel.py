"""Connections/s and client CPU per connection: `fasttcp load` against kernel clients.

One veth pair between two namespaces; in B the C accept loop of the load tests
(tests/load/accept_server.c: accept, close, count) listens; from A, in turn:

- ``fasttcp load 198.18.0.2:PORT --connections N --json`` (one process: the Endpoint on
  the AF_PACKET rings);
- kernel clients: a C loop (compiled here with cc) of non-blocking connect() and close()
  with W connections in flight, in as many processes as fasttcp uses (one; ``--procs``),
  each making N / procs connections. A gets ``net.ipv4.tcp_tw_reuse=1``, the TIME-WAIT
  policy fasttcp load follows, so both reuse ports the same way.

Per run: connections/s (completed handshakes over the run's wall time), the client's CPU
(getrusage of the client processes: user + system) per connection, and the whole
machine's CPU per connection (/proc/stat: server, softirqs and all -- on a veth the
receive path runs in the sender's softirq, so part of each client's receive work is
charged to the server process and only the machine figure sees it; the reverse holds
too: the server's kernel work on a SYN runs inside the client's send, so the client's
system time carries much of the server's -- the user time is the client's own). Repeated
``--rounds`` times, alternating; the median and the spread are printed with the load
average before and after:

    python benchmarks/load_vs_kernel.py [--connections N] [--rounds R] [--procs P] [--inflight W]

Needs root, iproute2, nft, cc and pyroute2.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.netns import VethPair  # noqa: E402

PORT = 9000
TIMEOUT = 600
SERVER_C = ROOT / "tests" / "load" / "accept_server.c"

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


def _machine_cpu() -> float:
    """Busy CPU seconds of the whole machine so far (/proc/stat: all but idle, iowait)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> tuple[float, float]:
    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    return u.ru_utime, u.ru_stime


def _measure(run) -> dict:
    (u0, s0), m0, t0 = _children_cpu(), _machine_cpu(), time.monotonic()
    done = run()
    wall = time.monotonic() - t0
    u1, s1 = _children_cpu()
    per = 1e6 / max(1, done)
    return {"connections": done, "wall_s": wall, "per_s": done / wall,
            "client_cpu_us": (u1 - u0 + s1 - s0) * per, "client_user_us": (u1 - u0) * per,
            "machine_cpu_us": (_machine_cpu() - m0) * per}


def fasttcp_run(net: VethPair, n: int) -> int:
    out = net.run(net.a, [sys.executable, "-m", "fasttcp", "load", f"{net.b_v4}:{PORT}", "--connections", str(n),
                          "--json"], timeout=TIMEOUT, check=False)
    r = json.loads(out.stdout)
    if r["errors"]:
        print(f"  fasttcp load: {r['errors']} errors", file=sys.stderr)
    return int(r["connections"])


def kernel_run(net: VethPair, exe: Path, n: int, procs: int, inflight: int) -> int:
    ps = [net.popen(net.a, [str(exe), net.b_v4, str(PORT), str(n // procs), str(inflight)]) for _ in range(procs)]
    done = 0
    for p in ps:
        out, err = p.communicate(timeout=TIMEOUT)
        ok, failed = (int(x) for x in out.split())
        done += ok
        if failed:
            print(f"  kernel client: {failed} failed", file=sys.stderr)
    return done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--procs", type=int, default=1, help="kernel client processes (fasttcp load uses one)")
    ap.add_argument("--inflight", type=int, default=64, help="connects in flight per kernel client process")
    args = ap.parse_args()
    print("load before:", os.getloadavg())
    with tempfile.TemporaryDirectory() as tmp, VethPair() as net:
        server_exe, client_exe = Path(tmp) / "accept_server", Path(tmp) / "kclient"
        (Path(tmp) / "kclient.c").write_text(CLIENT_C)
        subprocess.run(["cc", "-O2", "-o", str(server_exe), str(SERVER_C)], check=True, timeout=60)
        subprocess.run(["cc", "-O2", "-o", str(client_exe), str(Path(tmp) / "kclient.c")], check=True, timeout=60)
        net.run(net.b, ["sysctl", "-qw", "net.core.somaxconn=65535"])
        net.run(net.a, ["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1"])
        server = net.popen(net.b, [str(server_exe), str(PORT)])
        server.stdout.readline()
        results: dict[str, list[dict]] = {"fasttcp": [], "kernel": []}
        try:
            for rnd in range(args.rounds):
                for name in ("fasttcp", "kernel") if rnd % 2 == 0 else ("kernel", "fasttcp"):
                    if name == "fasttcp":
                        m = _measure(lambda: fasttcp_run(net, args.connections))
                    else:
                        m = _measure(lambda: kernel_run(net, client_exe, args.connections, args.procs,
                                                        args.inflight))
                    results[name].append(m)
                    print(f"round {rnd} {name:8} {m['connections']:>7} conns  {m['per_s']:>9.0f}/s  "
                          f"client {m['client_cpu_us']:6.1f} us/conn (user {m['client_user_us']:5.1f})  "
                          f"machine {m['machine_cpu_us']:6.1f} us/conn")
                    time.sleep(2)       # let TIME-WAIT reuse windows open
        finally:
            server.terminate()
            server.communicate(timeout=20)
    print("load after:", os.getloadavg())
    for key in ("per_s", "client_cpu_us", "client_user_us", "machine_cpu_us"):
        f = [m[key] for m in results["fasttcp"]]
        k = [m[key] for m in results["kernel"]]
        print(f"{key:>15}: fasttcp median {statistics.median(f):9.1f} [{min(f):.1f}..{max(f):.1f}]  "
              f"kernel median {statistics.median(k):9.1f} [{min(k):.1f}..{max(k):.1f}]  "
              f"ratio fasttcp/kernel {statistics.median(f) / statistics.median(k):.2f}")


if __name__ == "__main__":
    main()
