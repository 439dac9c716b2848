"""The ladder model: one connection as rows of arrows between a client and a server line.

A `Ladder` is what every renderer draws and what `to_json` exports. Each `Arrow` is one
segment (``dir`` ``">"`` client to server, ``"<"`` server to client) or one event that
sent nothing (``dir`` ``"="``: a timer that expired, a state a side entered on its own),
with the RFC 9293 state of each side *after* it. Sequence numbers are relative: ``seq``
to the sender's initial sequence number, ``ack`` to the receiver's (as Wireshark shows
them), signed so an old duplicate below the ISN reads negative.
"""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from fasttcp.errors import UsageError

__all__ = ["Arrow", "Ladder", "FORMATS", "MARKS", "TO_SERVER", "TO_CLIENT", "EVENT", "short_options"]

TO_SERVER, TO_CLIENT, EVENT = ">", "<", "="
FORMATS = ("text", "mermaid", "svg", "json")

MARKS = {
    "lost": "the segment never arrived (engine) or a gap the receiver's duplicate ACK proves (capture)",
    "retransmission": "the sequence range (or SYN/FIN) was sent before",
    "out-of-window": "outside the receive window the other side last advertised (RFC 9293 3.10.7.4)",
    "bad-checksum": "the TCP or IP checksum is wrong: the receiver drops it, the states ignore it",
    "old-duplicate": "a SYN from an earlier incarnation of the connection (RFC 9293 figure 8)",
    "acked-unseen": "acknowledges bytes the capture never saw (the capture missed them, not the network)",
    "ignored": "the receiving endpoint dropped it (its receive() gave a drop reason); an answer may follow",
}
"""Every mark an arrow can carry, with what it means."""


def short_options(mss: int | None, wscale: int | None, sack_permitted: bool, timestamps: bool) -> str:
    """A SYN's options as an arrow shows them: ``mss=1460 ws=7 sack ts``."""
    out = [] if mss is None else [f"mss={mss}"]
    if wscale is not None:
        out.append(f"ws={wscale}")
    if sack_permitted:
        out.append("sack")
    if timestamps:
        out.append("ts")
    return " ".join(out)


@dataclasses.dataclass
class Arrow:
    """One row of a ladder: a segment, or (``dir == "="``) an event without one.

    ``t`` seconds from the ladder's start; ``flags`` as `fasttcp.Flags` prints them
    (``SYN|ACK``); ``seq``/``ack`` relative (``ack`` None without the ACK bit); ``len``
    payload bytes; ``win`` the raw window field; ``options`` the SYN options in short
    (``mss=1460 ws=7 sack ts``); ``marks`` from `MARKS`; ``client_state`` and
    ``server_state`` after this row (RFC 9293 names such as ``TIME-WAIT``); ``timers``
    notes such as ``client 2MSL 60s`` for timers started or restarted here; ``note``
    free text for an event row."""

    t: float
    dir: str
    flags: str = ""
    seq: int = 0
    ack: int | None = None
    len: int = 0
    win: int = 0
    options: str = ""
    marks: tuple[str, ...] = ()
    client_state: str = "CLOSED"
    server_state: str = "CLOSED"
    timers: tuple[str, ...] = ()
    note: str = ""

    def label(self) -> str:
        """The arrow's caption: flags, relative seq/ack, length, window."""
        if self.dir == EVENT:
            return self.note
        parts = [self.flags or "none", f"seq={self.seq}"]
        if self.ack is not None:
            parts.append(f"ack={self.ack}")
        if self.len:
            parts.append(f"len={self.len}")
        parts.append(f"win={self.win}")
        return " ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        """The JSON object of this row."""
        out = dataclasses.asdict(self)
        out["marks"] = list(self.marks)
        out["timers"] = list(self.timers)
        return out


@dataclasses.dataclass
class Ladder:
    """One connection drawn as a ladder: the two sides' names, their states before the
    first row, and the rows in time order; ``start`` is the first row's time in seconds
    since the epoch for a capture (0 for a scenario): row times count from it."""

    client: str
    server: str
    client_initial: str
    server_initial: str
    arrows: list[Arrow]
    title: str = ""
    start: float = 0.0

    @classmethod
    def from_scenario(cls, name: str) -> Ladder:
        """The ladder of a named scenario (`fasttcp.diagram.scenario_names`)."""
        from fasttcp.diagram.scenarios import run_scenario

        return run_scenario(name)

    @classmethod
    def from_capture(cls, source: Any, *, conn: int | None = None, flow: Any = None,
                     start: float | None = None, verify_checksum: bool = True) -> Ladder:
        """One connection of a capture (see `fasttcp.diagram.from_capture`)."""
        from fasttcp.diagram import from_capture

        return from_capture(source, conn=conn, flow=flow, start=start, verify_checksum=verify_checksum)

    @classmethod
    def from_packets(cls, packets: list[Any], *, client: str | None = None) -> Ladder:
        """One connection's `fasttcp.diagram.Packet`s, in capture order, with inferred
        states (``client`` as ``"addr:port"`` forces which side is the client)."""
        from fasttcp.diagram.infer import infer

        return infer(list(packets), client=client)

    def states(self, side: str) -> list[str]:
        """The states a side ("client" or "server") went through, in order, each once
        per stay (the labels a drawing writes on that side's line)."""
        if side not in ("client", "server"):
            raise UsageError(f"side must be 'client' or 'server', not {side!r}")
        out = [getattr(self, f"{side}_initial")]
        for a in self.arrows:
            s = getattr(a, f"{side}_state")
            if s != out[-1]:
                out.append(s)
        return out

    def to_json(self) -> str:
        """JSON Lines: one object per arrow (see `Arrow`), newline-terminated. Event rows
        (``dir == "="``) are left out: a tool reading the lines gets only ``">"`` and
        ``"<"``, one per segment, with the states after it."""
        return "".join(json.dumps(a.as_dict(), sort_keys=True) + "\n" for a in self.arrows if a.dir != EVENT)

    def render(self, fmt: str = "text", *, ascii: bool = False, width: int = 80) -> str:
        """The ladder drawn as ``text`` (``width`` columns; ``ascii`` for plain ASCII),
        ``mermaid``, ``svg`` or ``json``. Raises UsageError for another format or a
        width that is not an int in MIN_WIDTH..MAX_WIDTH."""
        from fasttcp.diagram import mermaid, svg, text

        if fmt not in FORMATS:
            raise UsageError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        check_width(width)
        if not isinstance(ascii, bool):
            raise UsageError(f"ascii must be a bool, not {type(ascii).__name__}")
        if fmt == "text":
            return text.render(self, width=width, ascii=ascii)
        if fmt == "mermaid":
            return mermaid.render(self)
        if fmt == "svg":
            return svg.render(self)
        return self.to_json()


MIN_WIDTH = 60          # time, two state columns and a readable arrow
MAX_WIDTH = 1000


def check_width(width: object) -> int:
    """The width if it is an int in MIN_WIDTH..MAX_WIDTH, else UsageError."""
    if isinstance(width, bool) or not isinstance(width, int):
        if isinstance(width, float) and math.isnan(width):
            raise UsageError("width must be an int, not NaN")
        raise UsageError(f"width must be an int, not {type(width).__name__}")
    if not MIN_WIDTH <= width <= MAX_WIDTH:
        raise UsageError(f"width must be {MIN_WIDTH}..{MAX_WIDTH} columns, not {width}")
    return width
