"""A ladder as a Mermaid ``sequenceDiagram`` (GitHub renders it in Markdown).

States are notes over their side's line where the side enters them; a lost segment is
an arrow ending in a cross (``-x``); options, marks and timers are notes. Mermaid reads
``;`` and ``#`` as syntax in message text, and the word ``end`` closes a block
wherever it stands, so every piece of text goes through `escape`: those characters become
Mermaid's entity codes (``#59;``, ``#35;``) and ``end`` is put in parentheses, as the
Mermaid sequence-diagram documentation prescribes.
"""
from __future__ import annotations

import re

from fasttcp.diagram.model import EVENT, TO_SERVER, Arrow, Ladder

__all__ = ["render", "escape"]

_END_RE = re.compile(r"\bend\b", re.IGNORECASE)
_ENTITIES = {"#": "#35;", ";": "#59;", "<": "#lt;", ">": "#gt;", "%": "#37;", "\n": " ", "\r": " "}


def escape(text: str) -> str:
    """Text safe inside a Mermaid message or note: ``#``, ``;``, ``<``, ``>``, ``%`` as
    entity codes, newlines as spaces, the word ``end`` as ``(end)``."""
    out = "".join(_ENTITIES.get(ch, ch) for ch in text)
    return _END_RE.sub(lambda m: f"({m.group(0)})", out)


def render(ladder: Ladder) -> str:
    """The ladder as Mermaid source, newline-terminated."""
    lines = ["sequenceDiagram"]
    if ladder.title:
        lines.append(f"    title {escape(ladder.title)}")
    lines.append(f"    participant C as client {escape(ladder.client)}")
    lines.append(f"    participant S as server {escape(ladder.server)}")
    lines.append(f"    Note over C: {escape(ladder.client_initial)}")
    lines.append(f"    Note over S: {escape(ladder.server_initial)}")
    client, server = ladder.client_initial, ladder.server_initial
    for a in ladder.arrows:
        lines.extend(_row(a))
        if a.client_state != client:
            lines.append(f"    Note over C: {escape(a.client_state)}")
        if a.server_state != server:
            lines.append(f"    Note over S: {escape(a.server_state)}")
        client, server = a.client_state, a.server_state
    return "\n".join(lines) + "\n"


def _row(a: Arrow) -> list[str]:
    time = f"{a.t:.3f}"
    if a.dir == EVENT:
        return [f"    Note over C,S: {time} {escape(a.note)}"]
    src, dst = ("C", "S") if a.dir == TO_SERVER else ("S", "C")
    line = "-x" if "lost" in a.marks else "->>"
    out = [f"    {src}{line}{dst}: {time} {escape(a.label())}"]
    extras = [a.options] if a.options else []
    extras += [f"[{m}]" for m in a.marks]
    extras += [f"timer {t}" for t in a.timers]
    if extras:
        side = "right of S" if a.dir == TO_SERVER else "left of C"
        out.append(f"    Note {side}: {escape(', '.join(extras))}")
    return out
