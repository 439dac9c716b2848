"""Write the report page to a file."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from fasttcp.analysis.summary import Summary
from fasttcp.errors import OutputError, UsageError
from fasttcp.report.aggregate import ReportAggregate
from fasttcp.report.html import render_page

__all__ = ["write_report", "check_report_path"]


def check_report_path(path: object) -> None:
    """UsageError unless `path` is a str or path-like naming a file (not a directory)."""
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise UsageError(f"report must be a file path, got {path!r}")
    if os.path.isdir(path):
        raise UsageError(f"report: {os.fspath(path)} is a directory")


def write_report(path: str | os.PathLike[str], summary: Summary, agg: ReportAggregate,
                 ladders: Sequence[str | None] | None = None,
                 captures: Sequence[object] | None = None) -> int:
    """Write the report of `summary` and `agg` (what `fasttcp.analyze(report=...)`
    gathered) to `path` as one HTML file. `ladders[i]` is an SVG of the i-th slowest
    handshake's connection, or None; when not given they are drawn from `captures`
    (the paths analyzed) by reading them again for those few connections. Returns the
    bytes written.

    Raises UsageError for a path that is not a str or path-like, OutputError (an
    OSError) when the file cannot be written."""
    check_report_path(path)
    if not isinstance(summary, Summary) or not isinstance(agg, ReportAggregate):
        raise UsageError("write_report takes the Summary and ReportAggregate of one analyze run")
    if ladders is not None and (isinstance(ladders, (str, bytes)) or not isinstance(ladders, Sequence)
                                or not all(x is None or isinstance(x, str) for x in ladders)):
        raise UsageError("ladders must be a sequence of SVG strings (or None for a connection without one)")
    if ladders is None:
        from fasttcp.report.ladders import draw_slowest

        ladders = draw_slowest(captures or (), agg.slowest.rows)
    data = render_page(summary, agg, ladders).encode("utf-8")
    try:
        Path(path).write_bytes(data)
    except OSError as e:
        raise OutputError(e.errno, e.strerror, os.fspath(path)) from e
    return len(data)
