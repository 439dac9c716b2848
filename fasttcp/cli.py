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
    b = sub.add_parser("bench", help="handshakes/s, lifecycles/s and the wire layer, against peers in the same run",
                       description="Two endpoints in one process open and close many connections through "
                                   "real segments; the dpkt handshake in Python and the Linux kernel's "
                                   "loopback connect/accept are measured in the same run.")
    b.add_argument("--flows", type=int, default=200_000, help="connections per round (default 200000)")
    b.add_argument("--repeat", type=int, default=5, help="measured rounds; the median is reported")
    b.add_argument("--many-open", type=int, default=1_000_000,
                   help="connections held open for the many-open figure (0 skips it)")
    b.add_argument("--single", type=int, default=20_000,
                   help="handshakes through the single-packet Python API (0 skips it)")
    b.add_argument("--family", choices=("4", "6", "mixed"), default="4", help="IP version of the codec traffic")
    b.add_argument("--no-peers", action="store_true", help="skip the dpkt/scapy/kernel peers")
    b.add_argument("--no-codec", action="store_true", help="skip the wire-layer (parse/build/checksum) figures")
    b.add_argument("--quick", action="store_true", help="small sizes: a smoke test with noisy figures")
    b.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    return p


def _bench(args: argparse.Namespace) -> int:
    from fasttcp.bench import BenchConfig, format_report, run

    if args.flows <= 0 or args.repeat <= 0 or args.many_open < 0 or args.single < 0:
        print("fasttcp bench: --flows and --repeat must be positive, --many-open/--single >= 0", file=sys.stderr)
        return 2
    if args.flows + args.many_open > 60000 * 65000:
        print("fasttcp bench: too many flows for the benchmark address range", file=sys.stderr)
        return 2
    cfg = BenchConfig(flows=args.flows, repeat=args.repeat, family=args.family, peers=not args.no_peers)
    many, single = args.many_open, args.single
    if args.quick:
        cfg.flows, cfg.repeat, cfg.peer_packets = min(cfg.flows, 10_000), min(cfg.repeat, 3), 2_000
        many, single = min(many, 20_000), min(single, 2_000)
    steps = 1 + (many > 0) + (single > 0) + 2 * cfg.peers + (0 if args.no_codec else 6 + 2 * cfg.peers)
    progress = None
    bar = None
    if not args.json and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=steps, desc="bench", unit="step", leave=False)

        def progress(msg: str) -> None:
            bar.set_description(msg[:50])
            bar.update(1)

    elif not args.json:
        def progress(msg: str) -> None:
            print(f"... {msg}", file=sys.stderr, flush=True)

    cfg.progress = progress
    rep = run(cfg, codec=not args.no_codec, many_open=many, single=single)
    if bar is not None:
        bar.close()
    if args.json:
        print(json.dumps(rep.as_dict(), sort_keys=True))
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
