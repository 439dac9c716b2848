"""Batch handshakes at each pipeline depth, and at the depth the endpoints measure.

    python benchmarks/pipeline_depths.py [--flows 200000,1000000] [--repeat 5]

For each flow count: the bench's batch handshake rounds (`fasttcp bench`'s batch
figure: connect, SYN, SYN-ACK, ACK, accept, then the closes) between two endpoints
whose batch pipelines run at a fixed depth (`Endpoint(pipeline_depth=d)`, each of
PIPELINE_DEPTHS), then at the depth they measure themselves (twice). One line each:
the median handshakes/s of `--repeat` rounds after a warm-up, its range, and for the
measured runs the depths kept and the server's ns a segment at each depth.
"""
from __future__ import annotations

import argparse
import statistics

from fasttcp.bench.handshakes import CLIENT_NET, MSL, SERVER_ADDR, SERVER_PORT, _rounds, flow_keys
from fasttcp.endpoint.endpoint import PIPELINE_DEPTHS, Endpoint


def run(flows: int, repeat: int, depth: int | None) -> str:
    client = Endpoint([CLIENT_NET], capacity=flows, seed=1, pipeline_depth=depth)
    # every SYN of the burst gets its SYN-RECEIVED record, as in `fasttcp bench` (a
    # smaller backlog would answer most with SYN cookies: another path)
    server = Endpoint([SERVER_ADDR], capacity=flows, seed=2, pipeline_depth=depth, syn_backlog=flows)
    server.listen(SERVER_PORT)
    rates, _, _ = _rounds(client, server, flow_keys(flows), repeat, 0.0, MSL)
    line = (f"{flows:>9,} flows, depth {depth if depth else 'measured':>8}: "
            f"{statistics.median(rates) / 1e6:5.2f} M handshakes/s ({min(rates) / 1e6:.2f}-{max(rates) / 1e6:.2f})")
    if depth is None:
        seg = server.pipeline["segments"]
        kept = (f"server {seg['depth']}, client {client.pipeline['segments']['depth']}, "
                f"connects {client.pipeline['connects']['depth']}")
        ns = " ".join(f"{d}:{v:.0f}" for d, v in seg["ns_per_item"].items())
        line += f"  kept: {kept}; server ns a segment: {ns or 'not measured'}"
    return line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flows", default="200000,1000000", help="comma-separated flow counts")
    ap.add_argument("--repeat", type=int, default=5, help="timed rounds after a warm-up")
    args = ap.parse_args()
    for flows in (int(f) for f in args.flows.split(",")):
        for depth in (*PIPELINE_DEPTHS, None, None):
            print(run(flows, args.repeat, depth), flush=True)


if __name__ == "__main__":
    main()
