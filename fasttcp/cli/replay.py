"""`fasttcp replay CAPTURE... --interface IF`: send the IP packets of captures out of an
interface (fasttcp.capture.replay), with a progress line on a terminal and a summary.

Exit status: 0 done, 2 bad arguments, a capture or an interface that cannot be used,
130 interrupted (the summary of what was sent is printed).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Any

__all__ = ["add_replay_parser", "run_replay"]

PROGRESS_EVERY = 0.5            # seconds between progress lines on a terminal


def add_replay_parser(sub: Any) -> None:
    """Register the `replay` subcommand on the `fasttcp` parser's subparsers."""
    from fasttcp.capture.pacing import MAX_PPS
    from fasttcp.capture.transmit import DEFAULT_METHOD, METHODS

    r = sub.add_parser("replay", help="send the IP packets of captures out of an interface (AF_PACKET)",
                       description="Send the IP packets of pcap/pcapng files out of an Ethernet-like "
                                   "interface behind a fresh Ethernet header, as fast as possible or paced. "
                                   "Needs root (CAP_NET_RAW).")
    r.add_argument("capture", nargs="+", help="pcap or pcapng files, sent one after another")
    r.add_argument("-i", "--interface", required=True, help="the interface to send on")
    r.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD,
                   help=f"PACKET_TX_RING or sendmmsg (default {DEFAULT_METHOD})")
    pace = r.add_mutually_exclusive_group()
    pace.add_argument("--pps", type=float, help=f"at most this many packets per second (token bucket; "
                                                f"up to {MAX_PPS:.0e})")
    pace.add_argument("--speed", type=float, help="the capture's own timing, X times faster (1: as captured; each file "
                                                  "on its own timing, the files back to back)")
    pace.add_argument("--top", action="store_true", help="as fast as the interface takes them (the default)")
    r.add_argument("--loop", type=int, default=1, metavar="N", help="send the captures N times (default 1)")
    r.add_argument("--dst-mac", help="destination MAC of every frame (default 00:00:5e:00:53:00, an "
                                     "address no host owns: receivers' IP stacks ignore the frames, "
                                     "their packet taps see them)")
    r.add_argument("--src-mac", help="source MAC (default: the interface's)")
    r.add_argument("--qdisc-bypass", action="store_true",
                   help="PACKET_QDISC_BYPASS: skip the qdisc and this host's packet taps")
    r.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress line")


def _arguments_problem(args: argparse.Namespace) -> str | None:
    from fasttcp.capture.pacing import MAX_PPS

    if args.pps is not None and not 0 < args.pps <= MAX_PPS:
        return f"--pps must be in (0, {MAX_PPS:.0e}]"
    if args.speed is not None and not (0 < args.speed < math.inf):
        return "--speed must be a finite number > 0"
    if not 1 <= args.loop <= 1 << 32:
        return "--loop must be 1..2^32"
    return None


def _captures_problem(paths: list[str]) -> str | None:
    """Why a capture cannot be replayed (read before anything is sent), or None."""
    from fasttcp.capture.reader import CaptureError, read_pcap

    for path in paths:
        try:
            read_pcap(path).close()
        except (OSError, CaptureError) as e:
            return f"{path}: {e.strerror if isinstance(e, OSError) and e.strerror else e}"
    return None


def _progress_line(quiet: bool) -> Any:
    if quiet or not sys.stderr.isatty():
        return None
    last = [0.0]

    def show(stats: Any) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY:
            last[0] = now
            print(f"\rreplay: {stats.packets:,} packets, {stats.pps:,.0f} packets/s, {stats.gbps:.3f} Gbit/s   ",
                  end="", file=sys.stderr, flush=True)

    return show


def run_replay(args: argparse.Namespace) -> int:
    """Run `fasttcp replay` with parsed arguments; returns the exit status."""
    from fasttcp.capture.reader import CaptureError
    from fasttcp.capture.replay import replay
    from fasttcp.capture.transmit import Transmitter
    from fasttcp.errors import UsageError

    problem = _arguments_problem(args) or _captures_problem(args.capture)
    if problem:
        print(f"fasttcp replay: {problem}", file=sys.stderr)
        return 2
    try:
        tx = Transmitter(args.interface, method=args.method, dst_mac=args.dst_mac, src_mac=args.src_mac,
                         qdisc_bypass=args.qdisc_bypass)
    except UsageError as e:
        print(f"fasttcp replay: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"fasttcp replay: cannot send on {args.interface}: {e.strerror or e}", file=sys.stderr)
        return 2
    show = _progress_line(args.quiet)
    status = 0
    try:
        with tx:
            stats = replay(args.capture, tx, pps=args.pps, speed=args.speed, loops=args.loop, progress=show)
    except KeyboardInterrupt as e:
        if not hasattr(e, "stats"):
            print("fasttcp replay: interrupted", file=sys.stderr)
            return 130
        stats, status = e.stats, 130
    except CaptureError as e:
        print(f"fasttcp replay: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        where = e.filename if e.filename else args.interface
        print(f"fasttcp replay: {where}: {e.strerror or e}", file=sys.stderr)
        return 2
    if show is not None:
        print("\r\033[K", end="", file=sys.stderr, flush=True)
    print(json.dumps(stats.as_dict(), sort_keys=True) if args.json else stats.format(), flush=True)
    if status:
        print("fasttcp replay: interrupted", file=sys.stderr)
    return status
