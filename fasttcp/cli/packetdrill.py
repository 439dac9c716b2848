"""`fasttcp packetdrill SCRIPT... [--json]`: run packetdrill scripts against the endpoint.

Text output is one line per script (``ok SCRIPT`` or the failure, packetdrill-style,
with the script's and the actual segment for a mismatch); ``--json`` prints one object
per script (script, ok, and for a failure line and error). Exit status: 0 all passed,
1 any failed, 2 bad arguments.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Register the `packetdrill` subcommand on the `fasttcp` parser's subparsers."""
    from fasttcp.packetdrill.linux import PROFILES

    p = sub.add_parser("packetdrill", help="run packetdrill scripts against the endpoint (virtual time)",
                       description="Run packetdrill scripts (google/packetdrill) against a fresh sans-IO "
                                   "Endpoint per script, on a virtual clock: no devices, no sleeping. "
                                   "See docs/packetdrill.md for the supported subset.")
    p.add_argument("script", nargs="+", help="packetdrill .pkt files")
    p.add_argument("--json", action="store_true", help="one JSON object per script")
    p.add_argument("--profile", choices=PROFILES, default="linux",
                   help="the stack the scripts were written for (default linux)")


def run(args: argparse.Namespace) -> int:
    """Run every script; 0 if all passed, else 1."""
    from fasttcp.packetdrill import run as run_script

    failed = 0
    for path in args.script:
        result = run_script(path, profile=args.profile)
        failed += not result.ok
        if args.json:
            print(json.dumps(result.as_dict()), flush=True)
        elif result.ok:
            print(f"ok {path}", flush=True)
        else:
            print(result.error, file=sys.stdout)
            if result.expected:
                print(f"script packet: {result.expected}")
            if result.actual:
                print(f"actual packet: {result.actual}")
            sys.stdout.flush()
    if not args.json and len(args.script) > 1:
        print(f"{len(args.script) - failed} passed, {failed} failed")
    return 1 if failed else 0
