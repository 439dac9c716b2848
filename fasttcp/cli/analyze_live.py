"""`fasttcp analyze --interface IF`: the live source of `fasttcp analyze` (the options,
their checks, the status line, and SIGINT/SIGTERM ending the capture cleanly)."""
from __future__ import annotations

import argparse
import errno
import json
import math
import os
import signal
import sys
from typing import Any

__all__ = ["add_live_arguments", "analyze_dispatch"]

#: The options that only make sense with --interface (dest, flag as the user types it).
_LIVE_ONLY = (("duration", "--duration"), ("write_pcap", "--write-pcap"), ("promiscuous", "--promiscuous"),
              ("filter", "--filter"), ("ring_mb", "--ring-mb"), ("block_kb", "--block-kb"),
              ("block_timeout_ms", "--block-timeout-ms"))
#: Status line control: carriage return, then erase to the end of the line (ECMA-48 EL).
_CLEAR_LINE = "\r\x1b[K"


def add_live_arguments(a: argparse.ArgumentParser) -> None:
    """The live options of the `analyze` subcommand."""
    g = a.add_argument_group("live capture", "analyze the TCP traffic of a network interface instead of captures "
                                             "(AF_PACKET rings; needs root or CAP_NET_RAW); --workers is then the "
                                             "number of capture processes (default: half the CPUs this process "
                                             "may use, at least 1)")
    g.add_argument("-i", "--interface", metavar="IF",
                   help="capture on this interface until SIGINT (exit 130), SIGTERM or --duration (exit 0), "
                        "writing each connection as it ends and every open one at the end")
    g.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    g.add_argument("--write-pcap", metavar="FILE",
                   help="keep the IP packets seen in FILE (pcap, raw IP, nanoseconds); with N workers "
                        "FILE.0 .. FILE.N-1, each holding whole flows")
    g.add_argument("--promiscuous", action="store_true", help="put the interface in promiscuous mode")
    g.add_argument("--filter", metavar="EXPR",
                   help="which frames the kernel passes: 'tcp' (default: a built-in BPF program), a "
                        "tcpdump expression (needs tcpdump), or '' for every frame")
    g.add_argument("--ring-mb", type=int, metavar="MB", help="ring size per worker in MiB (default 128)")
    g.add_argument("--block-kb", type=int, metavar="KB", help="ring block size in KiB (default 32)")
    g.add_argument("--block-timeout-ms", type=int, metavar="MS",
                   help="the kernel hands a block over after this many ms even if not full (default 10)")


def analyze_dispatch(args: argparse.Namespace) -> int | None:
    """The exit status when `args` is a live run or a usage error; None when it is the
    captures' run."""
    if args.interface is None:
        for dest, flag in _LIVE_ONLY:
            if getattr(args, dest) not in (None, False):
                return _usage(f"{flag} needs --interface")
        if not args.capture:
            return _usage("give capture files or --interface IF")
        return None
    if args.capture:
        return _usage("captures and --interface are exclusive: analyze files or an interface, not both")
    return _run(args)


def _usage(message: str) -> int:
    print(f"fasttcp analyze: {message}", file=sys.stderr)
    return 2


def _check(args: argparse.Namespace) -> tuple[dict[str, Any], str | None]:
    """`analyze_live`'s keyword arguments from the options, or the usage problem."""
    from fasttcp.analysis import MAX_WORKERS
    from fasttcp.analysis.live import MAX_BLOCK_TIMEOUT_MS, MAX_DURATION_S

    iface = args.interface
    if not iface or len(iface) > 15 or "/" in iface or iface in (".", ".."):
        return {}, f"--interface: not an interface name: {iface!r}"
    if not os.path.exists(f"/sys/class/net/{iface}"):
        return {}, f"--interface: no such interface: {iface}"
    if args.duration is not None and not (math.isfinite(args.duration) and 0 < args.duration <= MAX_DURATION_S):
        return {}, f"--duration must be a number of seconds in (0, {MAX_DURATION_S:.0f}]"
    if args.workers is not None and not 1 <= args.workers <= MAX_WORKERS:
        return {}, f"--workers must be 1..{MAX_WORKERS}"
    ring_mb = 128 if args.ring_mb is None else args.ring_mb
    block_kb = 32 if args.block_kb is None else args.block_kb
    timeout_ms = 10 if args.block_timeout_ms is None else args.block_timeout_ms
    if not 1 <= ring_mb <= 1 << 20:
        return {}, "--ring-mb must be 1..1048576"
    if not 4 <= block_kb <= 1 << 20 or block_kb & (block_kb - 1):
        return {}, "--block-kb must be a power of two in 4..1048576"
    if block_kb > ring_mb * 1024:
        return {}, "--block-kb is larger than the ring (--ring-mb)"
    if not 1 <= timeout_ms <= MAX_BLOCK_TIMEOUT_MS:
        return {}, f"--block-timeout-ms must be 1..{MAX_BLOCK_TIMEOUT_MS}"
    if args.write_pcap is not None and args.output is not None and os.path.abspath(args.write_pcap) == \
            os.path.abspath(args.output):
        return {}, "--write-pcap and --output name the same file"
    flt = "tcp" if args.filter is None else (args.filter or None)
    return dict(workers=args.workers, duration=args.duration, write_pcap=args.write_pcap,
                promiscuous=args.promiscuous, filter=flt, ring_bytes=ring_mb << 20, block_bytes=block_kb << 10,
                block_timeout_ms=timeout_ms), None


class _StatusLine:
    """One line on a terminal's stderr, rewritten in place about once a second and
    erased at the end; nothing when stderr is not a terminal or with --quiet."""

    def __init__(self, interface: str, quiet: bool) -> None:
        self.interface = interface
        self.on = not quiet and sys.stderr is not None and sys.stderr.isatty()
        self.shown = False

    def update(self, st: Any) -> None:
        if not self.on:
            return
        sys.stderr.write(f"{_CLEAR_LINE}{self.interface}: {st.packets_per_s:,.0f} packets/s, "
                         f"{st.open_connections:,} connections open, {st.drops:,} drops")
        sys.stderr.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            sys.stderr.write(_CLEAR_LINE)
            sys.stderr.flush()
            self.shown = False


def _run(args: argparse.Namespace) -> int:
    """Exit status: 0 stopped by SIGTERM or --duration, 2 bad arguments, an interface
    that cannot be captured on or an output that cannot be written, 3 a worker failed
    (what was counted is reported), 130 stopped by SIGINT (every open connection is
    still written, and the summary)."""
    from fasttcp.analysis import AnalyzeConfig
    from fasttcp.analysis.live import analyze_live
    from fasttcp.cli.signals import StopSignals
    from fasttcp.errors import OutputError, UsageError, WorkerError

    kwargs, problem = _check(args)
    if problem is None and not 1 <= args.capacity <= 1 << 31:
        problem = "--capacity must be 1..2^31"
    if problem is None and not 0 <= args.community_id_seed <= 0xFFFF:
        problem = "--community-id-seed must be 0..65535"
    if problem is None and args.community_id and args.format == "table":
        problem = "--community-id: the table format has no community_id column (use --format json, csv or zeek)"
    if problem is None and sys.stdout is None:
        problem = "cannot write standard output: it is closed"
    if problem is not None:
        return _usage(problem)
    cfg = AnalyzeConfig(verify_checksum=not args.no_verify_checksum, timeouts=args.timeouts,
                        capacity=args.capacity, server_ports=not args.no_server_ports)
    out = None
    if not args.summary_only:
        try:
            out = open(args.output, "wb") if args.output else sys.stdout  # noqa: SIM115  -- closed below
        except OSError as e:
            return _usage(f"cannot write {args.output}: {e.strerror}")
    line = _StatusLine(args.interface, args.quiet)
    failure, status = None, 0
    with StopSignals() as signals:
        try:
            summary = analyze_live(args.interface, cfg, fmt=args.format, out=out, stop=signals.stop,
                                   status=line.update, ready=lambda: _tell_ready(args, kwargs),
                                   community_id=True if args.community_id else None,
                                   community_id_seed=args.community_id_seed, **kwargs)
        except OutputError as e:
            return _usage(f"cannot write {args.output or 'standard output'}: {e.strerror}")
        except UsageError as e:
            return _usage(str(e))
        except OSError as e:
            return _usage(f"cannot capture on {args.interface}: {_capture_problem(e)}")
        except WorkerError as e:
            summary, failure, status = e.summary, str(e), 3          # type: ignore[attr-defined]
        except KeyboardInterrupt as e:                               # a SIGINT before the handler
            if not hasattr(e, "summary"):
                print("fasttcp analyze: interrupted", file=sys.stderr)
                return 130
            summary, failure, status = e.summary, "interrupted", 130
        finally:
            line.clear()
            if out is not None and out is not sys.stdout:
                try:
                    out.close()
                except OSError as e:
                    print(f"fasttcp analyze: cannot write {args.output}: {e.strerror}", file=sys.stderr)
                    status = status or 2
    if signals.received == signal.SIGINT:
        # as the captures' run on Ctrl-C: 130, but here every open connection was written
        summary.interrupted = True
        status = status or 130
    return _finish(args, summary, failure, status)


def _tell_ready(args: argparse.Namespace, kwargs: dict[str, Any]) -> None:
    """Say on stderr that the rings are open, as tcpdump says "listening on"."""
    if not args.quiet:
        workers = kwargs["workers"]
        many = f", {workers} workers" if workers and workers > 1 else ""
        print(f"fasttcp analyze: listening on {args.interface}{many}", file=sys.stderr, flush=True)


def _capture_problem(e: OSError) -> str:
    if isinstance(e, PermissionError):
        return "permission denied (capturing needs root or CAP_NET_RAW)"
    if e.errno in (errno.ENODEV, errno.ENXIO):
        return "no such interface"
    return e.strerror or str(e)


def _finish(args: argparse.Namespace, summary: Any, failure: str | None, status: int) -> int:
    """Print the summary where the captures' run prints it; the exit status."""
    text = json.dumps(summary.as_dict(), sort_keys=True) if args.json_summary else summary.format()
    to_stderr = not args.summary_only and args.output is None and (args.format != "table" or args.json_summary)
    try:
        print(text, file=sys.stderr if to_stderr else sys.stdout, flush=True)
    except OSError as e:
        print(f"fasttcp analyze: cannot write standard output: {e.strerror}", file=sys.stderr)
        sys.stdout = None                     # its buffer would fail again at exit
        return status or 2
    if failure is not None and failure != "interrupted":
        print(f"fasttcp analyze: {failure}", file=sys.stderr)
    return status
