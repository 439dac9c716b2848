"""The `fasttcp` command line (also `python -m fasttcp`)."""
from __future__ import annotations

import argparse
import json
import sys

from fasttcp._version import __version__

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fasttcp", description="TCP connection management at memory speed.")
    p.add_argument("--version", action="version", version=f"fasttcp {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    b = sub.add_parser("bench", help="measure throughput against peers (dpkt, scapy) in the same run",
                       description="Benchmark the wire layer on synthetic handshake packets and print "
                                   "the figures with peer ratios.")
    b.add_argument("--flows", type=int, default=200_000, help="handshakes to synthesise (3 packets each)")
    b.add_argument("--repeat", type=int, default=5, help="repeats per figure; the median is reported")
    b.add_argument("--family", choices=("4", "6", "mixed"), default="4", help="IP version of the traffic")
    b.add_argument("--no-peers", action="store_true", help="skip the dpkt/scapy peer measurements")
    b.add_argument("--quick", action="store_true", help="small sizes (a smoke test, noisy figures)")
    b.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    return p


def _bench(args: argparse.Namespace) -> int:
    from fasttcp.bench import BenchConfig, format_report, run

    if args.flows <= 0 or args.repeat <= 0:
        print("fasttcp bench: --flows and --repeat must be positive", file=sys.stderr)
        return 2
    cfg = BenchConfig(flows=args.flows, repeat=args.repeat, family=args.family, peers=not args.no_peers)
    if args.quick:
        cfg.flows, cfg.repeat, cfg.peer_packets = min(cfg.flows, 10_000), min(cfg.repeat, 3), 2_000
    progress = None
    bar = None
    if not args.json and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=8 if cfg.peers else 6, desc="bench", unit="step", leave=False)

        def progress(msg: str) -> None:
            bar.set_description(msg[:40])
            bar.update(1)

    elif not args.json:
        def progress(msg: str) -> None:
            print(f"... {msg}", file=sys.stderr, flush=True)

    cfg.progress = progress
    rep = run(cfg)
    if bar is not None:
        bar.close()
    if args.json:
        print(json.dumps(rep.as_dict(), indent=None, sort_keys=True))
    else:
        print(format_report(rep))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `fasttcp` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "bench":
        return _bench(args)
    _parser().print_help()
    return 0
