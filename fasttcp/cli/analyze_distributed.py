"""``fasttcp analyze --scheduler tcp://HOST:PORT|local:N FILE...``: the captures'
analysis on a Dask cluster (`fasttcp.distributed`), with the exit statuses of
`fasttcp analyze` in one process."""
from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_distributed_arguments", "run_distributed", "scheduler_only_problem"]

DEFAULT_CHUNK_MB = 128
#: The options that only make sense with --scheduler (dest, flag as the user types it).
_SCHEDULER_ONLY = (("shards", "--shards"), ("chunk_mb", "--chunk-mb"), ("shuffle_dir", "--shuffle-dir"))


def scheduler_only_problem(args: argparse.Namespace) -> str | None:
    """The usage problem of a distributed option given without --scheduler (it would be
    ignored, bad value or not), or None."""
    if args.scheduler is None:
        for dest, flag in _SCHEDULER_ONLY:
            if getattr(args, dest) is not None:
                return f"{flag} needs --scheduler"
    return None


def _chunk_mb(args: argparse.Namespace) -> int:
    return DEFAULT_CHUNK_MB if args.chunk_mb is None else args.chunk_mb


def add_distributed_arguments(a: argparse.ArgumentParser) -> None:
    """The options of a distributed run, on the `analyze` parser."""
    g = a.add_argument_group("distributed (Dask; pip install 'fasttcp[distributed]')")
    g.add_argument("--scheduler", metavar="tcp://HOST:PORT|local:N",
                   help="run on the Dask scheduler at this address, or on a local cluster of N worker "
                        "processes; -o FILE.parquet writes Parquet (pip install 'fasttcp[parquet]')")
    g.add_argument("--shards", type=int, default=None,
                   help="reduce tasks, one tracker each (default: two per worker thread)")
    g.add_argument("--chunk-mb", type=int, default=None,
                   help=f"MiB of records a split task reads; a pcap up to this size is not indexed "
                        f"(default {DEFAULT_CHUNK_MB})")
    g.add_argument("--shuffle-dir", help="directory for the pieces, shared by every worker (default: /dev/shm "
                                         "if it holds twice the captures, else the temporary directory; "
                                         "right for local:N)")


def _usage(message: str) -> int:
    print(f"fasttcp analyze: {message}", file=sys.stderr)
    return 2


def _checked(args: argparse.Namespace) -> str | None:
    """The usage problem of the options, or None."""
    from fasttcp.distributed.client import check_scheduler
    from fasttcp.distributed.run import MAX_CHUNK_BYTES, MAX_SHARDS, MIN_CHUNK_BYTES
    from fasttcp.errors import UsageError

    try:
        check_scheduler(args.scheduler)
    except UsageError as e:
        return f"--scheduler: {e}"
    if args.workers is not None:
        return "--workers is for one process; with --scheduler the work spreads over --shards"
    if args.shards is not None and not 1 <= args.shards <= MAX_SHARDS:
        return f"--shards must be 1..{MAX_SHARDS}"
    if not MIN_CHUNK_BYTES <= _chunk_mb(args) << 20 <= MAX_CHUNK_BYTES or _chunk_mb(args) < 1:
        return f"--chunk-mb must be 1..{MAX_CHUNK_BYTES >> 20}"
    if not 1 <= args.capacity <= 1 << 31:
        return "--capacity must be 1..2^31"
    if not 0 <= args.community_id_seed <= 0xFFFF:
        return "--community-id-seed must be 0..65535"
    if args.community_id and args.format == "table":
        return "--community-id: the table format has no community_id column (use --format json, csv or zeek)"
    return None


def _captures_problem(captures: list[str]) -> str | None:
    """Why a capture cannot be read, told before the cluster starts, or None."""
    from fasttcp.capture.reader import CaptureError, read_pcap
    from fasttcp.cli.main import _os_problem

    for i, path in enumerate(captures):
        try:
            read_pcap(path, batch_bytes=1 << 16).close()
        except CaptureError as e:
            if i == 0:
                return str(e)           # a later one ends the run there, as in one process
        except OSError as e:
            return f"{path}: {_os_problem(e)}"
    return None


def run_distributed(args: argparse.Namespace) -> int:
    """Exit status as `fasttcp analyze`'s: 0 ok, 1 a capture turned out corrupt
    part-way, 2 a capture cannot be read at all, the output cannot be written, bad
    arguments or no cluster, 3 a shard's task failed, 130 interrupted."""
    problem = _checked(args) or _captures_problem(args.capture)
    if problem is None and args.output and args.output == "-":
        problem = "-o -: give a file name (standard output is the default)"
    if problem:
        return _usage(problem)
    from fasttcp.distributed.client import connect

    try:
        client, cluster = connect(args.scheduler)
    except ImportError as e:
        return _usage(str(e))
    except OSError as e:
        return _usage(f"cannot reach the scheduler {args.scheduler}: {e}")
    try:
        return _run(args, client)
    except KeyboardInterrupt:
        print("fasttcp analyze: interrupted", file=sys.stderr)
        return 130
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _run(args: argparse.Namespace, client: Any) -> int:
    from fasttcp.analysis import AnalyzeConfig
    from fasttcp.capture.reader import CaptureError
    from fasttcp.cli.main import _progress_bar, captures_status, report_summary
    from fasttcp.distributed import analyze
    from fasttcp.errors import WorkerError

    cfg = AnalyzeConfig(verify_checksum=not args.no_verify_checksum, timeouts=args.timeouts,
                        capacity=args.capacity, server_ports=not args.no_server_ports)
    bar, bytes_progress = _progress_bar(args.quiet)
    if bar is not None:
        bar.unit, bar.unit_scale, bar.desc = "chunk", False, "analyze (chunks)"
    try:
        summary = analyze(args.capture, cfg, client=client, shards=args.shards, chunk_bytes=_chunk_mb(args) << 20,
                          shuffle_dir=args.shuffle_dir, progress=bytes_progress)
    except (OSError, CaptureError) as e:
        return _usage(str(e))
    except WorkerError as e:
        print(f"fasttcp analyze: {e}", file=sys.stderr)
        return 3
    finally:
        if bar is not None:
            bar.close()
    status = _write(args, summary.rows)
    if status:
        return status
    if not report_summary(args, summary):
        return 2
    return captures_status(summary)


def _write(args: argparse.Namespace, rows: Any) -> int:
    """Write the rows as asked; the exit status (0, or 2 when the output fails)."""
    from fasttcp.distributed.output import PARQUET_SUFFIX, write_parquet, write_rows

    if args.summary_only:
        return 0
    cid = True if args.community_id else None
    try:
        if args.output and args.output.endswith(PARQUET_SUFFIX):
            write_parquet(rows, args.output, community_id_seed=args.community_id_seed)
        elif args.output:
            with open(args.output, "wb") as f:
                write_rows(rows, f, args.format, community_id=cid, community_id_seed=args.community_id_seed)
        else:
            write_rows(rows, sys.stdout, args.format, community_id=cid, community_id_seed=args.community_id_seed)
    except ImportError as e:
        return _usage(str(e))
    except OSError as e:
        return _usage(f"cannot write {args.output or 'standard output'}: {e.strerror or e}")
    return 0
