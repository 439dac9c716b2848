"""`fasttcp load HOST:PORT`: open, measure and close connections at a bounded rate.

Exit status: 0 the run finished (its counters say how it went), 1 it finished with
errors (refused, timed out, reset, connect failures or connections left unfinished),
2 bad arguments or a refused target (nothing was sent), 3 the system said no (not
root, no route, no neighbour answer), 130 interrupted by SIGINT and 143 stopped by SIGTERM
(what was counted is reported in both; a second signal stops at once, reporting what
it can).
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import signal
import sys
from typing import Any

__all__ = ["add_parser", "run"]


def _target(text: str) -> tuple[str, int]:
    """HOST:PORT or [IPv6]:PORT."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"not HOST:PORT: {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        # 2001:2::2:80 reads as 2001:2::2 port 80 or as 2001:2::2:80 without a port:
        # an IPv6 HOST goes in brackets (RFC 3986 3.2.2), as in a URL
        raise argparse.ArgumentTypeError(f"an IPv6 HOST goes in brackets, [v6]:PORT, not {text!r}")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise argparse.ArgumentTypeError(f"HOST is an IP address (no name lookup), not {host!r}") from None
    value = int(port)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"PORT is 1..65535, not {value}")
    return host, value


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0 or value != value or value in (float("inf"),):
            raise argparse.ArgumentTypeError(f"must be a finite number > 0, not {text}")
        return value
    return parse


def add_parser(sub: Any) -> None:
    """Register `fasttcp load` on the subparsers ``sub``."""
    p = sub.add_parser(
        "load", help="a connection-rate load generator (root; an Ethernet-like interface)",
        description="Open connections to HOST:PORT from an Endpoint on the interface the route to "
                    "HOST leaves through, at most --rate per second and --concurrency at once, and "
                    "close each after its handshake; report connects/s and the SYN -> SYN-ACK "
                    "latency. Installs an nftables rule for the run so the local kernel does not "
                    "reset the connections, and removes it at exit. Without --i-own-this-network "
                    "only this host's addresses and 198.18.0.0/15, 2001:2::/48 may be targeted.")
    p.add_argument("target", type=_target, metavar="HOST:PORT", help="an IP address and port ([v6]:port)")
    p.add_argument("--rate", type=_positive(float), default=None,
                   help="connection attempts per second, never exceeded (default: no cap)")
    p.add_argument("--connections", type=_positive(int), default=None,
                   help="connection attempts to make (default: as many as --duration allows)")
    p.add_argument("--concurrency", type=_positive(int), default=1000,
                   help="connections open at once, at most (default 1000; halved on SYN loss)")
    p.add_argument("--duration", type=_positive(float), default=None,
                   help="seconds to open connections for (default 10 without --connections)")
    p.add_argument("--request", type=int, default=0, metavar="BYTES",
                   help="send BYTES on each connection once it is open, read the answer until the "
                        "server's FIN, then close (default 0: close right after the handshake; "
                        "requests take the per-connection path, slower)")
    p.add_argument("--close", choices=("fin", "rst"), default="fin",
                   help="close with FIN (TIME-WAIT kept, default) or RST")
    p.add_argument("--source", nargs="+", default=None, metavar="ADDR",
                   help="source addresses (default: the route's); they must be this host's")
    p.add_argument("--io", choices=("auto", "ring", "socket"), default="auto",
                   help="AF_PACKET rings (ring), plain packet sockets (socket), or rings if built (auto)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--i-own-this-network", action="store_true",
                   help="allow targets outside this host and the benchmarking ranges")


def _text(d: dict[str, Any]) -> str:
    keys = ("connections", "connects_per_s", "attempts", "refused", "timeouts", "resets", "syn_retransmits",
            "handshake_p50_ms", "handshake_p99_ms", "answered", "time_wait_reused", "backoffs", "elapsed_s",
            "cpu_us_per_connection", "interface", "io")
    return "\n".join(f"{k:>24}  {d.get(k)}" for k in keys)


def run(args: argparse.Namespace) -> int:
    """Run `fasttcp load` with parsed ``args``; the exit status."""
    from fasttcp.cli.signals import StopSignals
    from fasttcp.load.generator import LoadConfig, print_progress
    host, port = args.target
    cfg = LoadConfig(host=host, port=port, rate=args.rate, connections=args.connections,
                     concurrency=args.concurrency, duration=args.duration, request=args.request,
                     close=args.close, sources=args.source, io=args.io,
                     progress=print_progress if sys.stderr.isatty() and not args.json else None)
    signals = StopSignals(second_raises=True)
    try:
        # (until the report is out: one signal while it is written does not cut it
        # short; a second does -- the way out of a write that blocks)
        with signals:
            return _load(args, cfg, signals)
    except KeyboardInterrupt:       # a Ctrl-C before the handler was in place, or a second signal
        print("\nfasttcp load: interrupted", file=sys.stderr)
        return 128 + (signals.received or signal.SIGINT)


def _load(args: argparse.Namespace, cfg: Any, signals: Any) -> int:
    from fasttcp.errors import UsageError
    from fasttcp.load.generator import run_load
    try:
        result = run_load(cfg, i_own_this_network=args.i_own_this_network, stop=signals.stop)
    except (UsageError, ModuleNotFoundError, OSError) as e:
        if signals.received is not None:
            # the signal cut the set-up short (a neighbour's wait), or reached a child
            # of ours too (nft, ip): that is why it failed
            print("fasttcp load: interrupted", file=sys.stderr)
            return 128 + signals.received
        print(f"fasttcp load: {e}", file=sys.stderr)
        return 2 if isinstance(e, UsageError) else 3
    if cfg.progress is not None:
        sys.stderr.write("\n")
    d = result.as_dict()
    print(json.dumps(d, sort_keys=True) if args.json else _text(d))
    sys.stdout.flush()
    if d.get("interrupted"):
        # 130 Ctrl-C, 143 SIGTERM: as the shell reports them (130 for a library-level
        # KeyboardInterrupt the run caught)
        return 128 + (signals.received or signal.SIGINT)
    return 1 if result.errors else 0
