"""Ladder diagrams of one TCP connection: the RFC 9293 figures, drawn from traffic or
from the engine.

Two sources, one model (`Ladder`, rows of `Arrow`): `run_scenario` drives two in-memory
`fasttcp.Endpoint`s through a named scenario and records their exact states and timers;
`select_packets` plus `infer` take one connection out of a capture and infer each side's
RFC 9293 state passively. Renderers: text (80 columns, Unicode or ASCII), Mermaid,
self-contained SVG, JSON Lines. `ladder` is the one-call front (``fasttcp.ladder``).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from fasttcp.diagram.infer import Packet, infer
from fasttcp.diagram.model import EVENT, FORMATS, MARKS, Arrow, Ladder, check_width
from fasttcp.diagram.scenarios import SCENARIOS, run_scenario, scenario_names
from fasttcp.errors import UsageError

__all__ = ["ladder", "Ladder", "Arrow", "Packet", "FORMATS", "MARKS", "SCENARIOS", "scenario_names",
           "run_scenario", "infer", "from_capture", "ladders_from_capture"]


def from_capture(source: Any, *, conn: int | None = None, flow: Any = None, start: float | None = None,
                 verify_checksum: bool = True) -> Ladder:
    """The ladder of one connection of a capture (a path or a `fasttcp.CaptureReader`):
    number `conn` (0-based, in the order connections first appear, one per 4-tuple),
    or the first matching `flow` -- a ``"host:port"`` filter or an exact ``(src, sport,
    dst, dport)`` tuple -- from `start` (capture time, seconds since the epoch) on.
    ``verify_checksum=False`` takes every checksum as good (checksum offload).
    A connection longer than `fasttcp.diagram.capture.MAX_LADDER_PACKETS` segments is
    drawn up to there, an event row saying so (reading stops there too).
    Raises UsageError for bad arguments, a missing or unreadable file, or no such
    connection; `fasttcp.CaptureError` for a corrupt capture."""
    from fasttcp.capture.reader import CaptureReader
    from fasttcp.diagram.capture import MAX_LADDER_PACKETS, select_packets

    if not isinstance(source, (str, Path, CaptureReader)):
        raise UsageError(f"source must be a capture path or a CaptureReader, not {type(source).__name__}")
    if isinstance(source, (str, Path)):
        _check_capture_file(source)
    try:
        packets = select_packets(source, conn=conn, flow=flow, start=start, verify_checksum=verify_checksum)
    except OSError as e:
        raise UsageError(f"{source}: {e.strerror or e}") from e
    if len(packets) <= MAX_LADDER_PACKETS:
        return infer(packets)
    drawn = infer(packets[:MAX_LADDER_PACKETS])
    last = drawn.arrows[-1] if drawn.arrows else None
    drawn.arrows.append(Arrow(last.t if last else 0.0, EVENT, client_state=last.client_state if last else
                              drawn.client_initial, server_state=last.server_state if last else drawn.server_initial,
                              note=f"the drawing stops after {MAX_LADDER_PACKETS} segments"))
    return drawn


def _check_capture_file(source: str | Path) -> None:
    """UsageError unless `source` names a regular file, saying what it is instead."""
    if str(source) == "":
        raise UsageError("the capture path is empty")        # (Path("") is ".")
    path = Path(source)
    if path.is_file():
        return
    if path.is_dir():
        raise UsageError(f"{source}: is a directory, not a capture file")
    if path.exists():
        raise UsageError(f"{source}: not a regular file (a ladder reads a capture file)")
    raise UsageError(f"{source}: no such capture file")


def ladders_from_capture(source: Any, flows: list[tuple[Any, float | None]], *,
                         verify_checksum: bool = True) -> list[Ladder]:
    """The ladders of several connections of one capture, read once: `flows` is a list
    of ``((src, sport, dst, dport), start)`` pairs (start: the connection's first packet
    time in seconds since the epoch, or None). A pair nothing matches gives a ladder
    without arrows. Raises UsageError as `from_capture`."""
    from fasttcp.capture.reader import CaptureReader
    from fasttcp.diagram.capture import select_many

    if not isinstance(source, (str, Path, CaptureReader)):
        raise UsageError(f"source must be a capture path or a CaptureReader, not {type(source).__name__}")
    if isinstance(source, (str, Path)):
        _check_capture_file(source)
    try:
        chosen = select_many(source, flows, verify_checksum=verify_checksum)
    except OSError as e:
        raise UsageError(f"{source}: {e.strerror or e}") from e
    return [infer(packets) for packets in chosen]


def ladder(source: Any = None, *, scenario: str | None = None, conn: int | None = None, flow: Any = None,
           start: float | None = None, fmt: str = "text", ascii: bool = False, width: int = 80,
           verify_checksum: bool = True) -> str:
    """Draw one connection: from a capture (`source`, a path or CaptureReader; `conn`,
    `flow` and `start` as `from_capture`) or from a named `scenario` (see
    `scenario_names()`), as ``fmt`` text (``width`` columns, ``ascii`` for plain
    ASCII), mermaid, svg or json. Returns the drawing. Raises UsageError for a bad
    argument (both or neither of source and scenario, an unknown scenario or format,
    a width outside 60..1000 or not an int, a missing file, no such connection)."""
    if fmt not in FORMATS:
        raise UsageError(f"fmt must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if isinstance(width, float) and math.isnan(width):
        raise UsageError("width must be an int, not NaN")
    check_width(width)
    if (source is None) == (scenario is None):
        raise UsageError("give a capture or a scenario (one of them)")
    if scenario is not None:
        if conn is not None or flow is not None or start is not None:
            raise UsageError("conn, flow and start choose a connection of a capture, not of a scenario")
        drawing = run_scenario(scenario)
    else:
        drawing = from_capture(source, conn=conn, flow=flow, start=start, verify_checksum=verify_checksum)
    return drawing.render(fmt, ascii=ascii, width=width)
