"""`fasttcp ladder CAPTURE` / `fasttcp ladder --scenario NAME`: draw one connection as a
ladder diagram (fasttcp.diagram).

Exit status: 0 drawn, 2 bad arguments, a capture that cannot be read, no such
connection, or an output that cannot be written.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Register the `ladder` subcommand on the `fasttcp` parser's subparsers."""
    from fasttcp.diagram.model import FORMATS

    p = sub.add_parser("ladder", help="draw one connection as a ladder diagram with each side's states",
                       description="Draw one TCP connection as a ladder diagram: each segment an arrow "
                                   "(flags, relative seq/ack, length, window; options on SYNs), each "
                                   "side's RFC 9293 state beside its line. From a capture the states "
                                   "are inferred passively; from a scenario two fasttcp endpoints "
                                   "run it and report their exact states and timers.")
    p.add_argument("capture", nargs="?", help="pcap or pcapng file")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--conn", type=int, metavar="N",
                       help="the Nth connection (0-based, in the order connections first appear; "
                            "default 0)")
    which.add_argument("--filter", metavar="HOST:PORT",
                       help="the first connection with an endpoint HOST:PORT ([v6addr]:port, HOST or :PORT)")
    p.add_argument("--scenario", metavar="NAME",
                   help="run a named scenario instead of reading a capture ('list' lists them)")
    p.add_argument("--format", choices=FORMATS, default="text",
                   help="text (default), mermaid (a sequenceDiagram), svg or json (JSON Lines, one "
                        "object per arrow)")
    p.add_argument("--ascii", action="store_true", help="plain ASCII text instead of Unicode arrows")
    p.add_argument("--width", type=int, default=80, help="text width in columns (default 80, at least 60)")
    p.add_argument("-C", "--no-verify-checksum", action="store_true",
                   help="take every checksum as good (captures taken where checksums are offloaded)")
    p.add_argument("-o", "--output", help="write the drawing to this file instead of standard output")


def _fail(message: str) -> int:
    print(f"fasttcp ladder: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    """Draw what `args` asks for; returns the exit status."""
    from fasttcp.diagram import ladder, scenario_names
    from fasttcp.diagram.scenarios import SCENARIOS
    from fasttcp.errors import CaptureError, UsageError

    if args.scenario == "list":
        for name in scenario_names():
            print(f"{name:20} {SCENARIOS[name].why.split('. ')[0].rstrip('.')}.")
        return 0
    if args.scenario is not None and (args.conn is not None or args.filter is not None or args.no_verify_checksum):
        return _fail("--conn, --filter and -C are about a capture, not a scenario")
    if args.scenario is not None and args.capture is not None:
        return _fail("give a capture or --scenario, not both")
    if args.scenario is None and args.capture is None:
        return _fail("give a capture file or --scenario NAME (--scenario list lists them)")
    ascii = args.ascii or (args.format == "text" and args.output is None and not _stdout_takes_unicode())
    try:
        drawing = ladder(args.capture, scenario=args.scenario, conn=args.conn, flow=args.filter,
                         fmt=args.format, ascii=ascii, width=args.width,
                         verify_checksum=not args.no_verify_checksum)
    except (UsageError, CaptureError) as e:
        return _fail(str(e))
    try:
        if args.output:
            with open(args.output, "w", encoding="utf-8") as f:
                f.write(drawing)
        else:
            sys.stdout.write(drawing)
            sys.stdout.flush()
    except OSError as e:
        return _fail(f"cannot write {args.output or 'standard output'}: {e.strerror or e}")
    return 0


def _stdout_takes_unicode() -> bool:
    """Whether standard output can encode the box-drawing arrows (a C locale cannot)."""
    try:
        "─▶◀│✕⏱┄".encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True
