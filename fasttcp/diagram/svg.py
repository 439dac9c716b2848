"""A ladder as a self-contained SVG picture.

No drawing library: a ladder is two vertical lines, horizontal arrows and text, a few
dozen elements that `xml.sax.saxutils` escapes safely; a library (svgwrite, drawsvg,
matplotlib) would add a dependency for nothing it can do better here, and matplotlib's
output embeds glyph paths instead of text a test (or a screen reader) can read. The
file refers to nothing outside itself (the one arrowhead marker is defined inside it)
and uses generic font families only.

Text elements carry classes a reader can rely on: ``state`` (a state label on a
lifeline, where the side enters it), ``flags`` (an arrow's flags), ``detail``
(seq/ack/len/win), ``options``, ``mark``, ``timer``, ``event``, ``time`` (the time
axis) and ``side`` (the two headings).
"""
from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from fasttcp.diagram.model import EVENT, TO_SERVER, Arrow, Ladder

__all__ = ["render"]

WIDTH = 760
AXIS_X = 64                     # the time axis
CLIENT_X = 220
SERVER_X = 600
TOP = 70                        # below the headings and the initial states
ROW = 46                        # one arrow
EXTRA = 15                      # one line of options, marks or timers
BOTTOM = 30
FONT = 13
STATE_BOX_W = 112
STATE_BOX_H = 20
LOST_FRACTION = 0.66            # a lost segment's arrow stops two thirds of the way

_STYLE = """
text { font-family: 'DejaVu Sans', Verdana, Arial, sans-serif; font-size: 13px; fill: #111; }
.side { font-weight: bold; font-size: 14px; }
.state { font-weight: bold; font-size: 11px; fill: #0b3d91; }
.statebox { fill: #e8eefc; stroke: #0b3d91; stroke-width: 1; }
.flags { font-weight: bold; }
.detail, .options { font-size: 12px; fill: #333; }
.mark { font-size: 12px; fill: #b00020; }
.timer { font-size: 12px; fill: #7a4b00; font-style: italic; }
.event { font-size: 12px; fill: #555; font-style: italic; }
.time { font-size: 11px; fill: #555; font-family: 'DejaVu Sans Mono', monospace; }
.life { stroke: #444; stroke-width: 2; }
.axis { stroke: #bbb; stroke-width: 1; }
.seg { stroke: #111; stroke-width: 1.5; }
.lost { stroke: #b00020; stroke-width: 1.5; stroke-dasharray: 5 3; }
.cross { stroke: #b00020; stroke-width: 2; }
"""


def render(ladder: Ladder) -> str:
    """The ladder as an SVG document (a string starting with ``<svg``)."""
    body: list[str] = []
    y = TOP
    client, server = ladder.client_initial, ladder.server_initial
    for a in ladder.arrows:
        y += ROW
        body.extend(_arrow(a, y))
        if a.client_state != client:
            body.extend(_state(CLIENT_X, y, a.client_state))
        if a.server_state != server:
            body.extend(_state(SERVER_X, y, a.server_state))
        client, server = a.client_state, a.server_state
        for line, cls in _extras(a):
            y += EXTRA
            x = (CLIENT_X + SERVER_X) // 2
            body.append(f'<text class="{cls}" x="{x}" y="{y}" text-anchor="middle">{escape(line)}</text>')
    height = y + BOTTOM
    head = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label={quoteattr(_title(ladder))}>',
        f"<title>{escape(_title(ladder))}</title>",
        f"<style>{_STYLE}</style>",
        '<defs><marker id="head" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#111"/></marker></defs>',
        f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#fff"/>',
        f'<text class="side" x="{CLIENT_X}" y="20" text-anchor="middle">client {escape(ladder.client)}</text>',
        f'<text class="side" x="{SERVER_X}" y="20" text-anchor="middle">server {escape(ladder.server)}</text>',
        f'<text class="time" x="{AXIS_X}" y="20" text-anchor="end">time (s)</text>',
        f'<line class="axis" x1="{AXIS_X + 6}" y1="30" x2="{AXIS_X + 6}" y2="{height - 10}"/>',
        f'<line class="life" x1="{CLIENT_X}" y1="30" x2="{CLIENT_X}" y2="{height - 10}"/>',
        f'<line class="life" x1="{SERVER_X}" y1="30" x2="{SERVER_X}" y2="{height - 10}"/>',
        *_state(CLIENT_X, 48, ladder.client_initial),
        *_state(SERVER_X, 48, ladder.server_initial),
    ]
    return "\n".join([*head, *body, "</svg>"]) + "\n"


def _title(ladder: Ladder) -> str:
    name = f"{ladder.title}: " if ladder.title else ""
    return f"{name}TCP ladder, client {ladder.client}, server {ladder.server}"


def _state(x: int, y: int, state: str) -> list[str]:
    """A state label sitting on a lifeline at height y."""
    return [f'<rect class="statebox" x="{x - STATE_BOX_W // 2}" y="{y - STATE_BOX_H + 5}" '
            f'width="{STATE_BOX_W}" height="{STATE_BOX_H}" rx="4"/>',
            f'<text class="state" x="{x}" y="{y}" text-anchor="middle">{escape(state)}</text>']


def _arrow(a: Arrow, y: int) -> list[str]:
    out = [f'<text class="time" x="{AXIS_X}" y="{y + 4}" text-anchor="end">{a.t:.3f}</text>',
           f'<line class="axis" x1="{AXIS_X + 2}" y1="{y}" x2="{AXIS_X + 10}" y2="{y}"/>']
    mid = (CLIENT_X + SERVER_X) // 2
    if a.dir == EVENT:
        out.append(f'<text class="event" x="{mid}" y="{y + 4}" text-anchor="middle">{escape(a.note)}</text>')
        return out
    x1, x2 = (CLIENT_X + STATE_BOX_W // 2 + 4, SERVER_X - STATE_BOX_W // 2 - 4)
    if a.dir != TO_SERVER:
        x1, x2 = x2, x1
    if "lost" in a.marks:
        stop = round(x1 + (x2 - x1) * LOST_FRACTION)
        out.append(f'<line class="lost" x1="{x1}" y1="{y}" x2="{stop}" y2="{y}"/>')
        out.append(f'<path class="cross" d="M{stop - 6},{y - 6} L{stop + 6},{y + 6} M{stop - 6},{y + 6} '
                   f'L{stop + 6},{y - 6}"/>')
    else:
        out.append(f'<line class="seg" x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" marker-end="url(#head)"/>')
    detail = a.label()[len(a.flags or "none") + 1:]
    out.append(f'<text class="flags" x="{mid}" y="{y - 18}" text-anchor="middle">{escape(a.flags or "none")}</text>')
    out.append(f'<text class="detail" x="{mid}" y="{y - 5}" text-anchor="middle">{escape(detail)}</text>')
    return out


def _extras(a: Arrow) -> list[tuple[str, str]]:
    """The lines under an arrow, each with its class."""
    out = []
    if a.options:
        out.append((a.options, "options"))
    if a.marks:
        out.append(("[" + ", ".join(a.marks) + "]", "mark"))
    out.extend((f"timer: {t}", "timer") for t in a.timers)
    return out
