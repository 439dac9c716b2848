"""Real clients' handshakes with and without a SYN flood, and what SYN cookies cost.

    python benchmarks/syn_flood.py [--clients 10000] [--flood 10000000] [--repeat 5]

In one run, each figure the median of `--repeat` rounds with its range (min-max):

* handshakes/s of the server for `--clients` real clients (their SYNs and ACKs through
  ``receive_batch``, server time only), first on an endpoint nobody floods, then on one
  whose SYN backlog a flood has filled (every real handshake then rides a cookie);
  the ratio is what the flood leaves of the real clients' rate (target: >= 50%);
* the whole flood (fasttcp.bench.synflood.run_flood: `--flood` spoofed SYNs with the
  real clients spread through them): spoofed SYNs/s answered (server time), and every
  real client completed;
* the cost of a cookie: ns per SYN (SYN in, SYN-ACK out) and per ACK (ACK in,
  ESTABLISHED) with ``syn_cookies="always"`` against ``"off"`` (the plain path: a
  SYN-RECEIVED record, then its lookup).

The load average is printed before and after: the machine may be shared.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Literal

import numpy as np

from fasttcp.bench.synflood import CLIENT_NET, SERVER_ADDR, SERVER_PORT, client_keys, run_flood, spoofed_syns
from fasttcp.endpoint.endpoint import Endpoint

CAPACITY = 65536


def _server(mode: Literal["auto", "always", "off"] = "auto", warm: int = 0) -> Endpoint:
    """A listening server; `warm`: handshakes run (and aborted) first, so that the table
    pages the measured ones touch are in memory, as on a server that has been running
    (a fresh table's pages are mapped on first touch: 2 MiB huge pages, each zeroed
    inside whichever measurement first writes to it)."""
    ep = Endpoint([SERVER_ADDR], capacity=CAPACITY, seed=2, syn_cookies=mode)
    ep.listen(SERVER_PORT)
    if warm:
        _handshakes(ep, warm, 0.5, 1024)
        ep.abort_batch(np.arange(CAPACITY), 0.5)
        ep.transmit_batch()
        ep.clear_events()
    return ep


def _handshakes(server: Endpoint, n: int, now: float, first_port: int) -> tuple[float, float]:
    """n real handshakes against `server`; (server seconds for the SYNs, for the ACKs)."""
    client = Endpoint([CLIENT_NET], capacity=n, seed=1)
    client.connect_batch(client_keys(n, first_port=first_port), now)
    syns = client.transmit_batch()
    t0 = time.perf_counter()
    server.receive_batch(*syns, now)
    t_syn = time.perf_counter() - t0
    synacks = server.transmit_batch()
    client.receive_batch(*synacks, now)
    acks = client.transmit_batch()
    t0 = time.perf_counter()
    server.receive_batch(*acks, now)
    t_ack = time.perf_counter() - t0
    done = len(server.accept_batch())
    server.transmit_batch()
    if done != n:
        raise RuntimeError(f"only {done} of {n} handshakes completed")
    server.clear_events()
    return t_syn, t_ack


def _flooded(server: Endpoint, now: float) -> None:
    """Fill the server's SYN backlog with spoofed SYNs (and a few cookies past it)."""
    rng = np.random.default_rng(7)
    buf, offs, lens = spoofed_syns(CAPACITY, rng)
    server.receive_batch(buf, offs, lens, now)
    server.transmit_batch()
    if server.stats["syn_cookies_sent"] == 0:
        raise RuntimeError("the flood did not fill the backlog")


def rates(clients: int) -> tuple[float, float, dict]:
    """(no-flood handshakes/s, flooded handshakes/s, cookie ns per SYN/ACK vs plain)."""
    plain = _server(warm=CAPACITY)
    t_syn, t_ack = _handshakes(plain, clients, 1.0, 1024)
    calm = clients / (t_syn + t_ack)
    flooded = _server(warm=CAPACITY)
    _flooded(flooded, 1.0)
    t_syn, t_ack = _handshakes(flooded, clients, 1.0, 1024)
    if flooded.stats["syn_cookies_ok"] < clients:
        raise RuntimeError("the flooded server's handshakes did not ride cookies")
    storm = clients / (t_syn + t_ack)
    cost = {}
    for mode in ("off", "always"):
        s, a = _handshakes(_server(mode, warm=CAPACITY), clients, 1.0, 1024)
        cost[mode] = (s / clients * 1e9, a / clients * 1e9)
    return calm, storm, cost


def _spread(v: list[float]) -> str:
    return f"{statistics.median(v):,.0f} ({min(v):,.0f}-{max(v):,.0f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=10_000, help="real clients")
    ap.add_argument("--flood", type=int, default=10_000_000, help="spoofed SYNs in the whole-flood run")
    ap.add_argument("--repeat", type=int, default=5, help="timed rounds after a warm-up")
    args = ap.parse_args()
    print(f"# load before: {os.getloadavg()}  cpus: {os.cpu_count()}")
    calm, storm, ratio, syn_ns = [], [], [], {"off": [], "always": []}
    ack_ns = {"off": [], "always": []}
    for rnd in range(args.repeat + 1):
        c, s, cost = rates(args.clients)
        if rnd == 0:
            continue                                # warm-up
        calm.append(c)
        storm.append(s)
        ratio.append(100 * s / c)
        for mode in cost:
            syn_ns[mode].append(cost[mode][0])
            ack_ns[mode].append(cost[mode][1])
    print(f"real handshakes/s, no flood:        {_spread(calm)}")
    print(f"real handshakes/s, flooded backlog: {_spread(storm)}")
    print(f"flooded / no flood, %:              {_spread(ratio)}")
    for mode in ("off", "always"):
        print(f"syn_cookies={mode!r:9} ns per SYN {_spread(syn_ns[mode])}, per ACK {_spread(ack_ns[mode])}")
    floods, walls = [], []
    for _ in range(max(1, args.repeat // 2)):
        r = run_flood(args.flood, args.clients)
        if r.client_established != args.clients or r.server_accepted != args.clients:
            raise RuntimeError(f"real clients lost in the flood: {r}")
        floods.append(r.spoofed / r.server_seconds)
        walls.append(r.seconds)
    print(f"whole flood: {args.flood:,} spoofed SYNs + {args.clients:,} real clients, all completed; "
          f"spoofed SYNs/s answered (server time) {_spread(floods)}; wall s "
          f"{statistics.median(walls):.2f} ({min(walls):.2f}-{max(walls):.2f})")
    print(f"# load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
