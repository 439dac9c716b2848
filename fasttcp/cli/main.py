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
    b.add_argument("--no-peers", action="store_true",
                   help="skip the peers (dpkt, scapy, the kernel, the bare and lean C handshake loops)")
    b.add_argument("--no-codec", action="store_true", help="skip the wire-layer (parse/build/checksum) figures")
    b.add_argument("--no-tracker", action="store_true",
                   help="skip the passive tracker figures (feed_batch and analyze on a synthetic capture)")
    b.add_argument("--tracker-packets", type=int, default=1_000_000,
                   help="packets in the tracker's synthetic capture (default 1M, ~10k connections open)")
    b.add_argument("--analyze-bytes", type=int, default=1 << 30,
                   help="size of the capture for the end-to-end analyze figure (default 1 GiB; 0 skips)")
    b.add_argument("--cores", type=int, default=None,
                   help="processes for the multi-process figure: each runs the cache-resident handshake "
                        "benchmark on its own slice of the flows, all at once, reported with its scaling "
                        "against one process (default: the CPUs this process may use; 1 skips it)")
    b.add_argument("--quick", action="store_true", help="small sizes: a smoke test with noisy figures")
    b.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    a = sub.add_parser("analyze", help="track every TCP connection of a pcap/pcapng file and report",
                       description="Track every TCP connection of a capture (pcap or pcapng; Ethernet with "
                                   "VLAN/MPLS, raw IP, Linux SLL/SLL2, BSD loopback): each connection as it "
                                   "ends, then a summary. Memory is bounded by the connection table, "
                                   "not by the file.")
    a.add_argument("capture", help="pcap or pcapng file")
    a.add_argument("--format", choices=("table", "json", "csv", "zeek"), default="table",
                   help="per-connection output: an aligned table (default), JSON lines with Zeek's "
                        "field names, CSV, or a Zeek conn.log (TSV)")
    a.add_argument("-o", "--output", help="write connections to this file instead of standard output")
    a.add_argument("--summary-only", action="store_true", help="no per-connection output, only the summary")
    a.add_argument("-C", "--no-verify-checksum", action="store_true",
                   help="do not verify checksums (captures taken where checksums are offloaded; Zeek's -C)")
    a.add_argument("--timeouts", choices=("zeek", "conntrack"), default="zeek",
                   help="when idle connections end: Zeek's (default: conn.log-compatible) or netfilter "
                        "conntrack's")
    a.add_argument("--no-server-ports", action="store_true",
                   help="do not use Zeek's likely server ports to pick the originator (as zeek -b)")
    a.add_argument("--capacity", type=int, default=1_000_000, help="connections tracked at once (default 1M)")
    a.add_argument("--json-summary", action="store_true", help="print the summary as one JSON object")
    a.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


def _bench(args: argparse.Namespace) -> int:
    from fasttcp.bench.cores import MAX_CORES_PER_CPU, allowed_cpus
    from fasttcp.bench.handshakes import BenchConfig, format_report, run

    if args.flows <= 0 or args.repeat <= 0 or args.many_open < 0 or args.single < 0:
        print("fasttcp bench: --flows and --repeat must be positive, --many-open/--single >= 0", file=sys.stderr)
        return 2
    if args.tracker_packets < 0 or args.analyze_bytes < 0:
        print("fasttcp bench: --tracker-packets and --analyze-bytes must be >= 0", file=sys.stderr)
        return 2
    # an endpoint holds at most 2^31 connections (and the client range 60000 x 65534)
    if args.flows + args.many_open > 1 << 31 or args.single > 1 << 31:
        print("fasttcp bench: too many flows for the benchmark address range", file=sys.stderr)
        return 2
    if args.tracker_packets > 1 << 32 or args.analyze_bytes > 1 << 40:
        print("fasttcp bench: --tracker-packets at most 2^32, --analyze-bytes at most 1 TiB", file=sys.stderr)
        return 2
    cpus = allowed_cpus()
    cores = cpus if args.cores is None else args.cores
    if not 1 <= cores <= cpus * MAX_CORES_PER_CPU:
        print(f"fasttcp bench: --cores must be 1..{cpus * MAX_CORES_PER_CPU} ({MAX_CORES_PER_CPU} per CPU "
              f"this process may use, {cpus} here)", file=sys.stderr)
        return 2
    cfg = BenchConfig(flows=args.flows, repeat=args.repeat, family=args.family, peers=not args.no_peers,
                      cores=cores)
    many, single = args.many_open, args.single
    if args.quick:
        cfg.flows, cfg.repeat, cfg.peer_packets = min(cfg.flows, 10_000), min(cfg.repeat, 3), 2_000
        many, single = min(many, 20_000), min(single, 2_000)
    tracker_packets, analyze_bytes = args.tracker_packets, args.analyze_bytes
    if args.quick:
        tracker_packets, analyze_bytes = min(tracker_packets, 60_000), min(analyze_bytes, 16 << 20)
    steps = (2 + (many > 0) + (single > 0) + 6 * cfg.peers + 2 * (cores > 1)
             + (0 if args.no_codec else 6 + 2 * cfg.peers))
    if not args.no_tracker:
        steps += 2 + cfg.repeat + (max(1, cfg.repeat // 2) + 1 if analyze_bytes else 0) + 2 * cfg.peers
    progress = None
    bar = None
    if not args.json and sys.stderr.isatty():
        from tqdm import tqdm  # type: ignore[import-untyped]  # tqdm ships no type information

        bar = tqdm(total=steps, desc="bench", unit="step", leave=False)

        def progress(msg: str) -> None:
            bar.set_description(msg[:50])
            bar.update(1)

    elif not args.json:
        def progress(msg: str) -> None:
            print(f"... {msg}", file=sys.stderr, flush=True)

    cfg.progress = progress
    rep = run(cfg, codec=not args.no_codec, many_open=many, single=single)
    trep = None
    if not args.no_tracker and tracker_packets > 0:
        from fasttcp.bench.tracker import TrackerBenchConfig, run_tracker_bench

        tcfg = TrackerBenchConfig(packets=tracker_packets, concurrent=min(10_000, max(1, tracker_packets // 100)),
                                  analyze_bytes=analyze_bytes, repeat=cfg.repeat, peers=cfg.peers,
                                  peer_packets=min(200_000, tracker_packets), progress=progress)
        trep = run_tracker_bench(tcfg)
    if bar is not None:
        bar.close()
    if args.json:
        out = rep.as_dict()
        if trep is not None:
            out["tracker"] = trep.as_dict()
        print(json.dumps(out, sort_keys=True))
    else:
        print(format_report(rep))
        if trep is not None:
            from fasttcp.bench.tracker import format_tracker_report

            print(format_tracker_report(trep))
    return 0


def _analyze(args: argparse.Namespace) -> int:
    """Exit status: 0 ok, 1 the file turned out corrupt part-way (what was read is
    reported), 2 the file cannot be read at all (missing, empty, not a capture)."""
    from fasttcp.capture.reader import CaptureError
    from fasttcp.cli.analyze import AnalyzeConfig, analyze

    if not 1 <= args.capacity <= 1 << 31:
        print("fasttcp analyze: --capacity must be 1..2^31", file=sys.stderr)
        return 2
    cfg = AnalyzeConfig(verify_checksum=not args.no_verify_checksum, timeouts=args.timeouts,
                        capacity=args.capacity, server_ports=not args.no_server_ports)
    out = None
    bar = None
    progress = None
    if not args.quiet and sys.stderr.isatty():
        from tqdm import tqdm  # type: ignore[import-untyped]  # tqdm ships no type information

        bar = tqdm(total=0, unit="B", unit_scale=True, desc="analyze", leave=False)

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

    # the capture is checked before the output file is opened: a bad capture must
    # neither be blamed on the output path nor empty an existing output file
    from fasttcp.capture.reader import read_pcap

    # opened once and handed to analyze(): a pipe or FIFO (/dev/stdin, <(...)) cannot be
    # read twice
    try:
        reader = read_pcap(args.capture, batch_bytes=cfg.batch_bytes)
    except FileNotFoundError:
        print(f"fasttcp analyze: {args.capture}: no such file", file=sys.stderr)
        return 2
    except IsADirectoryError:
        print(f"fasttcp analyze: {args.capture}: is a directory", file=sys.stderr)
        return 2
    except PermissionError:
        print(f"fasttcp analyze: {args.capture}: permission denied", file=sys.stderr)
        return 2
    except CaptureError as e:
        print(f"fasttcp analyze: {e}", file=sys.stderr)
        return 2
    if not args.summary_only:
        try:
            out = open(args.output, "w", newline="") if args.output else sys.stdout  # noqa: SIM115  -- closed below
        except OSError as e:
            reader.close()
            print(f"fasttcp analyze: cannot write {args.output}: {e.strerror}", file=sys.stderr)
            return 2
    close_error = None
    try:
        summary = analyze(reader, cfg, fmt=args.format, out=out, progress=progress)
    except (OSError, CaptureError) as e:             # the file changed under us, or a full disk
        print(f"fasttcp analyze: {e}", file=sys.stderr)
        return 2
    except MemoryError as e:                         # a --capacity this machine cannot hold
        print(f"fasttcp analyze: out of memory: {e}", file=sys.stderr)
        return 2
    finally:
        if bar is not None:
            bar.close()
        if out is not None and out is not sys.stdout:
            try:
                out.close()                          # flushes: a full disk may show only here
            except OSError as e:
                close_error = e
    if close_error is not None:
        print(f"fasttcp analyze: cannot write {args.output}: {close_error.strerror}", file=sys.stderr)
        return 2
    text = json.dumps(summary.as_dict(), sort_keys=True) if args.json_summary else summary.format()
    # the summary goes to stdout for a table; with machine formats on stdout it goes to stderr
    to_stderr = not args.summary_only and args.output is None and (args.format != "table" or args.json_summary)
    print(text, file=sys.stderr if to_stderr else sys.stdout)
    if summary.truncated_tail:
        print(f"fasttcp analyze: warning: {args.capture}: the last record is cut short "
              f"({summary.truncated_tail} bytes not read)", file=sys.stderr)
    if summary.error:
        print(f"fasttcp analyze: {summary.error}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `fasttcp` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "bench":
        return _bench(args)
    if args.command == "analyze":
        return _analyze(args)
    _parser().print_help()
    return 0
