"""The `fasttcp` command line (also `python -m fasttcp`)."""
from __future__ import annotations

import argparse
import json
import os
import stat
import sys
from typing import Any

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
    b.add_argument("--short-packets", type=int, default=1_000_000,
                   help="packets in the short-connection capture for the analyze figures (default 1M, "
                        "100k connections of 10 packets; 0 skips)")
    b.add_argument("--cores", type=int, default=None,
                   help="processes for the multi-process figure: each runs the cache-resident handshake "
                        "benchmark on its own slice of the flows, all at once, reported with its scaling "
                        "against one process, and the workers of the analyze figures (default: the CPUs "
                        "this process may use; 1 skips it)")
    b.add_argument("--quick", action="store_true", help="small sizes: a smoke test with noisy figures")
    b.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    a = sub.add_parser("analyze", help="track every TCP connection of a pcap/pcapng file and report",
                       description="Track every TCP connection of a capture (pcap or pcapng; Ethernet with "
                                   "VLAN/MPLS, raw IP, Linux SLL/SLL2, BSD loopback): each connection as it "
                                   "ends, then a summary. Memory is bounded by the connection table, "
                                   "not by the file.")
    a.add_argument("capture", nargs="*",
                   help="pcap or pcapng file; several are read one after another as one capture "
                        "(the files of a rotated trace, in time order)")
    a.add_argument("--format", choices=("table", "json", "csv", "zeek"), default="table",
                   help="per-connection output: an aligned table (default), JSON lines with Zeek's "
                        "field names, CSV, or a Zeek conn.log (TSV)")
    a.add_argument("-o", "--output", help="write connections to this file instead of standard output")
    a.add_argument("--community-id", action="store_true",
                   help="add the Community ID v1 field to the zeek log (json and csv always carry it)")
    a.add_argument("--community-id-seed", type=int, default=0, metavar="N",
                   help="Community ID seed, 0..65535 (default 0)")
    a.add_argument("--summary-only", action="store_true", help="no per-connection output, only the summary")
    a.add_argument("-C", "--no-verify-checksum", action="store_true",
                   help="do not verify checksums (captures taken where checksums are offloaded; Zeek's -C)")
    a.add_argument("--timeouts", choices=("zeek", "conntrack"), default="zeek",
                   help="when idle connections end: Zeek's (default: conn.log-compatible) or netfilter "
                        "conntrack's")
    a.add_argument("--no-server-ports", action="store_true",
                   help="do not use Zeek's likely server ports to pick the originator (as zeek -b)")
    a.add_argument("--capacity", type=int, default=1_000_000, help="connections tracked at once (default 1M)")
    a.add_argument("-w", "--workers", type=int, default=None,
                   help="trackers, one per shard of the flows, each on its own thread (default: the "
                        "CPUs this process may use)")
    a.add_argument("--json-summary", action="store_true", help="print the summary as one JSON object")
    a.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_live(a)
    _add_report(a)
    _add_distributed(a)
    _add_live_parsers(sub)
    return p


def _add_live(a: argparse.ArgumentParser) -> None:
    from fasttcp.cli.analyze_live import add_live_arguments

    add_live_arguments(a)


def _add_report(a: argparse.ArgumentParser) -> None:
    from fasttcp.cli.report import add_report_argument

    add_report_argument(a)


def _add_distributed(a: argparse.ArgumentParser) -> None:
    from fasttcp.cli.analyze_distributed import add_distributed_arguments

    add_distributed_arguments(a)


def _add_live_parsers(sub: Any) -> None:
    """The commands on live interfaces, each defined in its own module."""
    from fasttcp.cli import load as load_cli
    from fasttcp.cli.replay import add_replay_parser

    add_replay_parser(sub)
    load_cli.add_parser(sub)
    _add_ladder_parser(sub)
    _add_packetdrill_parser(sub)


def _add_ladder_parser(sub: Any) -> None:
    from fasttcp.cli import ladder as ladder_cli

    ladder_cli.add_parser(sub)


def _add_packetdrill_parser(sub: Any) -> None:
    from fasttcp.cli import packetdrill as packetdrill_cli

    packetdrill_cli.add_parser(sub)


def _bench(args: argparse.Namespace) -> int:
    from fasttcp.bench.cores import MAX_CORES_PER_CPU, allowed_cpus
    from fasttcp.bench.handshakes import BenchConfig, format_report, run

    if args.flows <= 0 or args.repeat <= 0 or args.many_open < 0 or args.single < 0:
        print("fasttcp bench: --flows and --repeat must be positive, --many-open/--single >= 0", file=sys.stderr)
        return 2
    if args.tracker_packets < 0 or args.analyze_bytes < 0 or args.short_packets < 0:
        print("fasttcp bench: --tracker-packets, --analyze-bytes and --short-packets must be >= 0", file=sys.stderr)
        return 2
    # an endpoint holds at most 2^31 connections (and the client range 60000 x 65534)
    if args.flows + args.many_open > 1 << 31 or args.single > 1 << 31:
        print("fasttcp bench: too many flows for the benchmark address range", file=sys.stderr)
        return 2
    if args.tracker_packets > 1 << 32 or args.analyze_bytes > 1 << 40 or args.short_packets > 1 << 32:
        print("fasttcp bench: --tracker-packets and --short-packets at most 2^32, --analyze-bytes at most 1 TiB",
              file=sys.stderr)
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
    tracker_packets, analyze_bytes, short_packets = args.tracker_packets, args.analyze_bytes, args.short_packets
    if args.quick:
        tracker_packets, analyze_bytes = min(tracker_packets, 60_000), min(analyze_bytes, 16 << 20)
        short_packets = min(short_packets, 60_000)
    # batch (with its bursts and C loops), cache-resident (with its C loops), then the rest
    steps = (2 + (many > 0) + (single > 0) + 2 * cfg.peers + 2 * (cores > 1)
             + (0 if args.no_codec else 6 + 2 * cfg.peers))
    if not args.no_tracker:
        # synthesis, feed_batch rounds, rows to text, analyze rounds (both captures), peers
        rounds = max(1, cfg.repeat // 2) + 1
        steps += (3 + cfg.repeat + (rounds if analyze_bytes else 0) + (rounds + cfg.peers if short_packets else 0)
                  + 2 * cfg.peers)
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
                                  analyze_bytes=analyze_bytes, short_packets=short_packets, workers=cores,
                                  repeat=cfg.repeat, peers=cfg.peers,
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
    """Exit status: 0 ok, 1 a capture turned out corrupt part-way (what was read is
    reported), 2 a capture cannot be read at all (missing, empty, not a capture), the
    output (file or standard output) cannot be written, or bad arguments, 3 a shard's
    tracker failed (what was counted is reported), 130 interrupted (Ctrl-C; what was
    counted is reported)."""
    from fasttcp.analysis import MAX_WORKERS, AnalyzeConfig, analyze, default_workers
    from fasttcp.capture.reader import CaptureError
    from fasttcp.errors import OutputError, WorkerError

    if not 1 <= args.capacity <= 1 << 31:
        print("fasttcp analyze: --capacity must be 1..2^31", file=sys.stderr)
        return 2
    if args.workers is not None and not 1 <= args.workers <= MAX_WORKERS:
        print(f"fasttcp analyze: --workers must be 1..{MAX_WORKERS}", file=sys.stderr)
        return 2
    workers = default_workers() if args.workers is None else args.workers
    if not 0 <= args.community_id_seed <= 0xFFFF:
        print("fasttcp analyze: --community-id-seed must be 0..65535", file=sys.stderr)
        return 2
    if args.community_id and args.format == "table":
        print("fasttcp analyze: --community-id: the table format has no community_id column "
              "(use --format json, csv or zeek)", file=sys.stderr)
        return 2
    cfg = AnalyzeConfig(verify_checksum=not args.no_verify_checksum, timeouts=args.timeouts,
                        capacity=args.capacity, server_ports=not args.no_server_ports)
    # the captures are checked before the output file is opened: a bad capture must
    # neither be blamed on the output path nor empty an existing output file
    try:
        # (a FIFO blocks here until its writer opens it and writes the capture header)
        reader = _open_first(args.capture[0], cfg.batch_bytes, workers)
    except KeyboardInterrupt:
        print(f"fasttcp analyze: interrupted before {args.capture[0]} could be read", file=sys.stderr)
        return 130
    if isinstance(reader, int):
        return reader
    for extra in args.capture[1:]:
        problem = _unreadable(extra)
        if problem:
            reader.close()
            print(f"fasttcp analyze: {extra}: {problem}", file=sys.stderr)
            return 2
    problem = _output_problem(args) or _report_problem(args)
    if problem:
        reader.close()
        print(f"fasttcp analyze: {problem}", file=sys.stderr)
        return 2
    out = None
    if not args.summary_only:
        try:
            out = open(args.output, "wb") if args.output else sys.stdout  # noqa: SIM115  -- closed below
        except OSError as e:
            reader.close()
            print(f"fasttcp analyze: cannot write {args.output}: {e.strerror}", file=sys.stderr)
            return 2
    bar, progress = _progress_bar(args.quiet)
    close_error = None
    failure, status = None, 0
    try:
        summary = analyze([reader, *args.capture[1:]], cfg, workers=workers, fmt=args.format, out=out,
                          progress=progress, community_id=True if args.community_id else None,
                          community_id_seed=args.community_id_seed, report=args.report)
    except OutputError as e:                         # a full disk, a closed pipe
        where = e.filename or args.output or "standard output"     # the report names its file
        print(f"fasttcp analyze: cannot write {where}: {e.strerror}", file=sys.stderr)
        return 2
    except (OSError, CaptureError) as e:             # the file changed under us
        print(f"fasttcp analyze: {e}", file=sys.stderr)
        return 2
    except MemoryError as e:                         # a --capacity this machine cannot hold
        print(f"fasttcp analyze: out of memory: {e}", file=sys.stderr)
        return 2
    except WorkerError as e:
        summary, failure, status = e.summary, str(e), 3   # type: ignore[attr-defined]
    except KeyboardInterrupt as e:
        if not hasattr(e, "summary"):                # before anything was read
            print("fasttcp analyze: interrupted", file=sys.stderr)
            return 130
        summary, failure, status = e.summary, "interrupted", 130
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
    written = report_summary(args, summary)
    if failure is not None:
        print(f"fasttcp analyze: {failure}", file=sys.stderr)
        return status
    if not written:
        return 2
    return captures_status(summary)


def report_summary(args: argparse.Namespace, summary: Any) -> bool:
    """Print the summary where `analyze` prints it; False if it could not be written."""
    text = json.dumps(summary.as_dict(), sort_keys=True) if args.json_summary else summary.format()
    # the summary goes to stdout for a table; with machine formats on stdout it goes to stderr
    to_stderr = not args.summary_only and args.output is None and (args.format != "table" or args.json_summary)
    return _report(text, sys.stderr if to_stderr else sys.stdout)


def captures_status(summary: Any) -> int:
    """Warn of cut-short captures; the exit status the captures give: 1 if one was
    corrupt part-way (said), else 0."""
    for path, cut in summary.truncated:
        print(f"fasttcp analyze: warning: {path}: the last record is cut short ({cut} bytes not read)",
              file=sys.stderr)
    if summary.error:
        print(f"fasttcp analyze: {summary.error}", file=sys.stderr)
        return 1
    return 0


def _report_problem(args: argparse.Namespace) -> str | None:
    from fasttcp.cli.report import report_problem

    return report_problem(args)


def _output_problem(args: argparse.Namespace) -> str | None:
    """Why the output cannot be written, told before it is opened, or None."""
    if sys.stdout is None:
        # started with standard output closed (`>&-`): rows and summary would vanish
        return "cannot write standard output: it is closed"
    if args.output and not args.summary_only:
        for capture in args.capture:
            try:
                same = os.path.samefile(args.output, capture)
            except OSError:              # the output does not exist yet (or the capture is gone)
                same = False
            if same:
                # opening it would empty the capture being read: the run would read its own
                # rows as a cut-short capture, and the capture would be lost
                return f"cannot write {args.output}: it is the capture {capture}"
    return None


def _report(text: str, stream: Any) -> bool:
    """Print the summary; False (the reason told on stderr) if standard output cannot
    take it -- a full disk, a closed pipe: a report that was not written must not exit 0."""
    try:
        print(text, file=stream, flush=True)
        return True
    except OSError as e:
        if stream is sys.stderr:
            return True                  # nowhere left to tell anyone; the status tells
        print(f"fasttcp analyze: cannot write standard output: {e.strerror}", file=sys.stderr)
        # what is left in stdout's buffer would fail again (and loudly) at exit
        sys.stdout = None
        return False


def _open_first(path: str, batch_bytes: int, workers: int) -> Any:
    """The first capture opened (a pipe or FIFO -- /dev/stdin, <(...) -- can be read
    once, so it is handed to analyze open), or the exit status if it cannot be. Its
    buffers are the ones analyze would give a file it opens itself: one for one
    worker, `BUFFERS` for more (batches in flight and read ahead), with the sharding
    the scanner computes for several."""
    from fasttcp.analysis.shards import BUFFERS, sharding
    from fasttcp.capture.reader import CaptureError, read_pcap

    try:
        if workers == 1:
            return read_pcap(path, batch_bytes=batch_bytes, buffers=1)
        return read_pcap(path, batch_bytes=batch_bytes, buffers=BUFFERS, shards=sharding(workers))
    except CaptureError as e:
        print(f"fasttcp analyze: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"fasttcp analyze: {path}: {_os_problem(e)}", file=sys.stderr)
        return 2


def _os_problem(e: OSError) -> str:
    if isinstance(e, FileNotFoundError):
        return "no such file"
    if isinstance(e, IsADirectoryError):
        return "is a directory"
    if isinstance(e, PermissionError):
        return "permission denied"
    return e.strerror or str(e)


def _unreadable(path: str) -> str | None:
    """Why a later capture cannot be opened now, or None (its contents are read later)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode) and not os.path.isdir(path):
            # a FIFO (or a device) is not opened to check it: the open would wait for
            # its writer, and closing it then would end that writer (SIGPIPE) and leave
            # the real open, later, waiting for a writer that is gone
            return None if os.access(path, os.R_OK) else "permission denied"
        with open(path, "rb"):
            return None
    except OSError as e:
        return _os_problem(e)


def _progress_bar(quiet: bool) -> tuple[Any, Any]:
    """A tqdm bar over file bytes on a terminal (and its update function), else None."""
    if quiet or not sys.stderr.isatty():
        return None, None
    from tqdm import tqdm  # type: ignore[import-untyped]  # tqdm ships no type information

    bar = tqdm(total=0, unit="B", unit_scale=True, desc="analyze", leave=False)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    return bar, progress


class _Stderr:
    """`sys.stderr` while a command runs: a message that cannot be written -- stderr
    closed (``2>&-``), a full disk, a reader gone (``2>&1 | head -1``) -- is dropped
    instead of raising, so that the exit status still says what happened (Python's own
    failure to print would make it 1)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.failed = stream is None

    def write(self, text: str) -> int:
        if not self.failed:
            try:
                self.stream.write(text)
            except (OSError, ValueError):    # (ValueError: a closed file)
                self.failed = True
        return len(text)

    def flush(self) -> None:
        if not self.failed:
            try:
                self.stream.flush()
            except (OSError, ValueError):
                self.failed = True

    def isatty(self) -> bool:
        try:
            return not self.failed and bool(self.stream.isatty())
        except (OSError, ValueError):
            return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)    # encoding, fileno, ... as the stream has them


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `fasttcp` console script; returns the exit status."""
    guard = _Stderr(sys.stderr)
    sys.stderr = guard
    try:
        return _main(argv)
    finally:
        # the caller's stream goes back -- but for the process's own stderr once it
        # failed: the interpreter flushes sys.stderr as it exits, and the text it still
        # holds would fail again, making the status 120
        stays = guard.failed and guard.stream is not None and guard.stream is sys.__stderr__
        if sys.stderr is guard and not stays:
            sys.stderr = guard.stream


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "bench":
        return _bench(args)
    if args.command == "analyze":
        from fasttcp.cli.analyze_live import analyze_dispatch

        if "" in (args.capture or ()) or args.output == "":
            # (not standard output, nor "."; a script's unset variable is not a choice)
            print(f"fasttcp analyze: {'a capture path' if args.output != '' else '-o/--output'} is empty",
                  file=sys.stderr)
            return 2
        if args.report is not None and (args.interface is not None or args.scheduler is not None):
            print("fasttcp analyze: --report is for capture files analyzed here, not with --interface "
                  "or --scheduler", file=sys.stderr)
            return 2
        from fasttcp.cli.analyze_distributed import scheduler_only_problem

        problem = scheduler_only_problem(args)
        if problem is not None:
            print(f"fasttcp analyze: {problem}", file=sys.stderr)
            return 2
        status = analyze_dispatch(args)         # --interface, or a usage error
        if status is None and args.scheduler is not None:
            from fasttcp.cli.analyze_distributed import run_distributed

            return run_distributed(args)
        return _analyze(args) if status is None else status
    if args.command == "replay":
        from fasttcp.cli.replay import run_replay

        return run_replay(args)
    if args.command == "load":
        from fasttcp.cli import load as load_cli

        return load_cli.run(args)
    if args.command == "ladder":
        from fasttcp.cli import ladder as ladder_cli

        return ladder_cli.run(args)
    if args.command == "packetdrill":
        from fasttcp.cli import packetdrill as packetdrill_cli

        return packetdrill_cli.run(args)
    _parser().print_help()
    return 0
