"""A ladder as text: time on the left, each side's state beside its line, arrows between.

    time  client                                             server
          CLOSED       |                                  |  LISTEN
   0.010  SYN-SENT     |--- SYN seq=0 win=65535 --------->|  SYN-RECEIVED
                       |    mss=1460 ws=7 sack ts         |

A state is written on the row where the side enters it (RFC 9293 figure style). Marks,
SYN options and timers go on lines under their arrow. Unicode box drawing by default,
plain ASCII on request; every line fits the width asked for.
"""
from __future__ import annotations

from fasttcp.diagram.model import EVENT, TO_SERVER, Arrow, Ladder

__all__ = ["render"]

TIME_COLS = 8                   # "  60.030"
STATE_COLS = 12                 # len("SYN-RECEIVED")
GAP = 2                         # between a state and its lifeline
FIXED_COLS = TIME_COLS + 1 + STATE_COLS + 1 + 1 + 1 + GAP + STATE_COLS
EXTRA_INDENT = "    "         # options, marks and timers under an arrow
MIN_LABEL_RUN = 3               # dashes kept on each side of an arrow's label

_GLYPHS = {
    False: {"line": "│", "dash": "─", "right": "▶", "left": "◀", "lost": "✕", "event": "┄",
            "timer": "⏱", "more": "…"},
    True: {"line": "|", "dash": "-", "right": ">", "left": "<", "lost": "x", "event": ".",
           "timer": "@", "more": "~"},
}


def render(ladder: Ladder, *, width: int = 80, ascii: bool = False) -> str:
    """The ladder as lines of at most `width` columns (the caller checked the width)."""
    g = _GLYPHS[ascii]
    span = width - FIXED_COLS
    lines = [_header(ladder, span), _line(g, "", ladder.client_initial, " " * span, ladder.server_initial)]
    client, server = ladder.client_initial, ladder.server_initial
    for a in ladder.arrows:
        c = a.client_state if a.client_state != client else ""
        s = a.server_state if a.server_state != server else ""
        client, server = a.client_state, a.server_state
        lines.extend(_row(g, a, span, c, s))
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _header(ladder: Ladder, span: int) -> str:
    left = f"{'time':>{TIME_COLS}} client {ladder.client}"
    right = f"server {ladder.server}"
    room = TIME_COLS + 1 + STATE_COLS + 1 + 1 + span + 1 + GAP + STATE_COLS
    pad = max(1, room - len(left) - len(right))
    return (left + " " * pad + right)[:room]


def _line(g: dict[str, str], time: str, client: str, middle: str, server: str) -> str:
    return (f"{time:>{TIME_COLS}} {client:<{STATE_COLS}} {g['line']}{middle}{g['line']}"
            f"{' ' * GAP}{server}")


def _row(g: dict[str, str], a: Arrow, span: int, client: str, server: str) -> list[str]:
    """The lines of one arrow: the arrow itself (its label above it if it does not fit
    inside), then its options, marks and timers."""
    time = f"{a.t:.3f}"
    label = a.label()
    if a.dir == EVENT:
        middle = _centered(f" {g['event']} {label} ", span, " ")
        out = [_line(g, time, client, middle, server)]
    else:
        inside = len(label) + 2 <= span - MIN_LABEL_RUN - 2     # a head and a dash after it
        arrow = _arrow(g, a, span, label if inside else "")
        out = []
        if not inside:
            out.append(_line(g, "", "", _fit(" " + label, span, g), ""))
        out.append(_line(g, time, client, arrow, server))
    extras = []
    if a.options:
        extras.append(a.options)
    if a.marks:
        extras.append("[" + ", ".join(a.marks) + "]")
    extras.extend(_packed([f"{g['timer']} {t}" for t in a.timers], span - len(EXTRA_INDENT)))
    out.extend(_line(g, "", "", _fit(EXTRA_INDENT + e, span, g), "") for e in extras)
    return out


def _arrow(g: dict[str, str], a: Arrow, span: int, label: str) -> str:
    """``--- label --->`` across the span (mirrored for "<"); a lost segment ends in a
    cross about two thirds of the way, past its label, short of the other line."""
    body = span - 1                              # one cell for the head or the cross
    text = f" {label} " if label else ""
    lead = g["dash"] * MIN_LABEL_RUN
    core = len(lead) + len(text)
    if "lost" in a.marks:
        length = min(body, max(core + 2, body - body // 3))
        rest = " " * (span - length - 1)
        fill = g["dash"] * (length - core)
        if a.dir == TO_SERVER:
            return lead + text + fill + g["lost"] + rest
        return rest + g["lost"] + fill + text + lead
    fill = g["dash"] * (body - core)
    if a.dir == TO_SERVER:
        return lead + text + fill + g["right"]
    return g["left"] + lead + text + fill


def _packed(items: list[str], room: int) -> list[str]:
    """Items joined by ", " into as few lines of at most `room` columns as fit."""
    lines: list[str] = []
    for item in items:
        if lines and len(lines[-1]) + 2 + len(item) <= room:
            lines[-1] += ", " + item
        else:
            lines.append(item)
    return lines


def _centered(text: str, span: int, fill: str) -> str:
    text = text[:span]
    left = (span - len(text)) // 2
    return fill * left + text + fill * (span - len(text) - left)


def _fit(text: str, span: int, g: dict[str, str]) -> str:
    if len(text) > span:
        text = text[: span - 1] + g["more"]
    return f"{text:<{span}}"
