"""`fasttcp analyze --report PATH`: the option and its checks (the report itself is
`fasttcp.report`)."""
from __future__ import annotations

import argparse
import os

__all__ = ["add_report_argument", "report_problem"]


def add_report_argument(a: argparse.ArgumentParser) -> None:
    """Add ``--report PATH`` to the analyze parser."""
    a.add_argument("--report", metavar="PATH",
                   help="also write a self-contained HTML report of the capture (summary, states, handshake "
                        "RTTs, traffic over time, top talkers and ports, the slowest handshakes' ladders)")


def report_problem(args: argparse.Namespace) -> str | None:
    """Why the report cannot be written, told before the capture is read, or None."""
    path = getattr(args, "report", None)
    if path is None:
        return None
    if not path:
        return "--report needs a file name"
    if os.path.isdir(path):
        return f"--report {path}: is a directory"
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        return f"--report {path}: no such directory {parent}"
    for capture in args.capture:
        try:
            if os.path.samefile(path, capture):
                return f"--report {path} is one of the captures"
        except OSError:              # the report does not exist yet
            pass
    if args.output and os.path.abspath(args.output) == os.path.abspath(path):
        return f"--report {path} is the --output file too"
    return None
