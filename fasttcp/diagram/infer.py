"""Passive per-side RFC 9293 state inference over one connection's packets.

The tracker (fasttcp.tracker) keeps one conntrack-style state per connection; a ladder
needs each side's own RFC 9293 state. This model replays the segments of one
connection, as seen at the capture point, through both endpoints' state machines at
once. It assumes a segment the capture saw reached its receiver (a capture point near
either host makes that true for all but the losses the ACKs later prove) and that each
side does what RFC 9293 says on receiving it:

Sending (RFC 9293 3.10.1 OPEN, 3.10.4 CLOSE, 3.10.5 ABORT):
- a SYN without ACK: CLOSED -> SYN-SENT;
- a FIN: SYN-RECEIVED or ESTABLISHED -> FIN-WAIT-1, CLOSE-WAIT -> LAST-ACK;
- a RST from a synchronized state: -> CLOSED. A RST sent from SYN-SENT answers an ACK
  that is not for our SYN (3.10.7.3, RFC 9293 figure 8) and changes nothing.

Receiving (3.10.7.2 LISTEN, 3.10.7.3 SYN-SENT, 3.10.7.4 the rest; the ACK is processed
before the FIN, "fifth" before "eighth"):
- a SYN without ACK: LISTEN -> SYN-RECEIVED, SYN-SENT -> SYN-RECEIVED (simultaneous
  open, figure 7); a side that answers its first SYN with a RST was CLOSED, not
  LISTEN, and stays CLOSED;
- a SYN|ACK acknowledging our SYN: SYN-SENT or SYN-RECEIVED -> ESTABLISHED;
- an ACK of our SYN: SYN-RECEIVED -> ESTABLISHED;
- an ACK of our FIN: FIN-WAIT-1 -> FIN-WAIT-2, CLOSING -> TIME-WAIT, LAST-ACK -> CLOSED;
- the peer's first FIN: SYN-RECEIVED or ESTABLISHED -> CLOSE-WAIT, FIN-WAIT-1 ->
  CLOSING, FIN-WAIT-2 -> TIME-WAIT (a FIN again in TIME-WAIT restarts 2·MSL);
- an acceptable RST (in the window, 3.10.7.4 first and RFC 5961 3; in SYN-SENT one that
  acknowledges our SYN): -> CLOSED, or back to LISTEN from a passive SYN-RECEIVED.

A segment with a bad checksum is drawn but changes nothing (the receiver drops it,
3.10.7); so does one outside the receiver's window (3.10.7.4 first: the acceptability
test), which is marked. TIME-WAIT's end is not in a capture: the ladder ends there.
"""
from __future__ import annotations

import dataclasses

from fasttcp.diagram.model import EVENT, TO_CLIENT, TO_SERVER, Arrow, Ladder
from fasttcp.enums import Flags

__all__ = ["Packet", "infer"]

SEQ_MOD = 1 << 32
HALF = 1 << 31
_SYNCHRONIZED = ("ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2", "CLOSE-WAIT", "CLOSING", "LAST-ACK", "TIME-WAIT")


@dataclasses.dataclass(frozen=True)
class Packet:
    """One TCP segment of the connection as captured: ``t`` seconds since the epoch,
    ``src``/``dst`` as ``"addr:port"``, raw ``seq``/``ack``, `fasttcp.Flags` bits,
    the raw window field, payload length, the SYN options in short, the window-scale
    option (None if absent) and whether a checksum failed."""

    t: float
    src: str
    dst: str
    seq: int
    ack: int
    flags: int
    win: int
    len: int
    options: str = ""
    wscale: int | None = None
    bad_checksum: bool = False


def _lt(a: int, b: int) -> bool:
    """a before b in sequence space (RFC 9293 3.4, RFC 1982)."""
    return 0 < (b - a) % SEQ_MOD < HALF


def _le(a: int, b: int) -> bool:
    return a == b or _lt(a, b)


@dataclasses.dataclass
class _Side:
    """What one side has shown of itself so far."""

    name: str
    state: str
    passive: bool = False            # entered SYN-RECEIVED from LISTEN
    iss: int | None = None           # its SYN's sequence number
    snd_nxt: int | None = None       # one past the highest sequence number it sent
    fin_seq: int | None = None       # its FIN's sequence number
    fin_seen: bool = False           # its FIN reached the peer
    fin_row: int = -1                # the row of its FIN
    pending_fin: bool = False        # the peer's FIN crossed ours: it arrives after our FIN left
    wscale: int | None = None
    syn_flags: int = 0               # the flags of the last SYN it sent
    rcv_nxt: int | None = None       # the highest ACK it sent
    rcv_wnd: int | None = None       # the window it advertised with that ACK (scaled)
    sent_at: dict[int, float] = dataclasses.field(default_factory=dict)   # seq -> first sent


def _orient(packets: list[Packet]) -> tuple[str, str]:
    """(client, server): the SYN's sender, else the SYN|ACK's receiver, else the first
    packet's sender."""
    for p in packets:
        if p.flags & Flags.SYN and not p.flags & Flags.ACK and not p.bad_checksum:
            return p.src, p.dst
    for p in packets:
        if p.flags & Flags.SYN and p.flags & Flags.ACK and not p.bad_checksum:
            return p.dst, p.src
    return packets[0].src, packets[0].dst


def _initial(packets: list[Packet], client: str) -> tuple[str, str]:
    """(client, server) states before the first packet: CLOSED and LISTEN if the capture
    has the opening SYN (CLOSED and CLOSED if the server answers it with a reset),
    SYN-SENT and SYN-RECEIVED if it starts at the SYN|ACK, else both ESTABLISHED."""
    first = next((p for p in packets if not p.bad_checksum), packets[0])
    f = Flags(first.flags)
    if f & Flags.SYN and not f & Flags.ACK:
        answer = next((p for p in packets if p.src != first.src and not p.bad_checksum), None)
        refused = answer is not None and bool(answer.flags & Flags.RST)
        return ("CLOSED", "CLOSED" if refused else "LISTEN") if first.src == client else ("LISTEN", "CLOSED")
    if f & Flags.SYN:
        return ("SYN-SENT", "SYN-RECEIVED") if first.src != client else ("SYN-RECEIVED", "SYN-SENT")
    return "ESTABLISHED", "ESTABLISHED"


def infer(packets: list[Packet], *, client: str | None = None) -> Ladder:
    """The ladder of one connection's packets (in capture order) with each side's
    inferred state after every segment. ``client`` forces the orientation."""
    if not packets:
        return Ladder(client="?", server="?", client_initial="CLOSED", server_initial="CLOSED", arrows=[])
    cname, sname = _orient(packets) if client is None else (client, _other(packets, client))
    ci, si = _initial(packets, cname)
    sides = {cname: _Side("client", ci), sname: _Side("server", si)}
    if si == "SYN-RECEIVED":
        sides[sname].passive = True
    start = packets[0].t
    bases = _bases(packets)
    model = _Model(sides, bases, start)
    for p in packets:
        model.step(p)
    return Ladder(client=cname, server=sname, client_initial=ci, server_initial=si, arrows=model.arrows,
                  start=start)


def _other(packets: list[Packet], client: str) -> str:
    for p in packets:
        if p.src == client:
            return p.dst
        if p.dst == client:
            return p.src
    return "?"


def _bases(packets: list[Packet]) -> dict[str, int]:
    """Each sender's relative-sequence base: its SYN's seq, else its first seq."""
    out: dict[str, int] = {}
    for p in packets:
        if p.flags & Flags.SYN and not p.bad_checksum:
            out.setdefault(p.src, p.seq)
    for p in packets:
        out.setdefault(p.src, p.seq)
    return out


def _relative(value: int, base: int) -> int:
    d = (value - base) % SEQ_MOD
    return d - SEQ_MOD if d >= HALF else d


class _Model:
    """Both sides' state machines, fed one captured segment at a time."""

    def __init__(self, sides: dict[str, _Side], bases: dict[str, int], start: float) -> None:
        self.sides, self.bases, self.start = sides, bases, start
        self.arrows: list[Arrow] = []
        self.gap: tuple[str, int, int, int] | None = None   # sender, start, end, row index

    def step(self, p: Packet) -> None:
        x = self.sides[p.src]
        y = self.sides[p.dst]
        f = Flags(p.flags)
        marks: list[str] = []
        timers: list[str] = []
        space = p.len + bool(f & Flags.SYN) + bool(f & Flags.FIN)
        end = (p.seq + space) % SEQ_MOD
        if p.bad_checksum:
            marks.append("bad-checksum")
        else:
            self._check_sequence(p, x, y, space, end, marks, timers)
            if "out-of-window" not in marks:
                for side in (x, y):
                    if side.pending_fin:
                        self._take_crossed_fin(side, p.t)
                self._send(p, x, y, f, end)
                self._receive(p, x, y, f, timers)
        self.arrows.append(self._arrow(p, x, f, marks, timers))

    # ---- marks ----

    def _check_sequence(self, p: Packet, x: _Side, y: _Side, space: int, end: int,
                        marks: list[str], timers: list[str]) -> None:
        f = Flags(p.flags)
        acceptable = bool(f & Flags.SYN) or _acceptable(p, y, space)
        # a SYN|ACK after our own SYN (simultaneous open) carries the same ISN but is new
        new_syn = bool(f & Flags.SYN) and (x.iss != p.seq or x.syn_flags != int(f))
        if space and x.snd_nxt is not None and _le(end, x.snd_nxt) and not new_syn:
            marks.append("retransmission")
            first = x.sent_at.get(p.seq)
            if first is not None:
                timers.append(f"{x.name} resent after {_duration(p.t - first)}")
        elif acceptable and p.len and x.snd_nxt is not None and _lt(x.snd_nxt, p.seq):
            self.gap = (p.src, x.snd_nxt, p.seq, len(self.arrows))
        if space:
            x.sent_at.setdefault(p.seq, p.t)
        if f & Flags.ACK and y.snd_nxt is not None and y.state != "CLOSED" and _lt(y.snd_nxt, p.ack):
            marks.append("acked-unseen")
        self._prove_gap(p, f, marks)
        if "retransmission" not in marks and not acceptable:
            marks.append("out-of-window")

    def _prove_gap(self, p: Packet, f: Flags, marks: list[str]) -> None:
        """A sequence gap is a loss once the receiver's ACK stays at the gap's start
        (a duplicate ACK: it lacks the bytes too, RFC 5681 2); an ACK past it means only
        the capture missed them."""
        if self.gap is None or p.src == self.gap[0] or not f & Flags.ACK:
            return
        sender, lo, hi, index = self.gap
        self.gap = None
        if _lt(lo, p.ack) and "acked-unseen" not in marks:
            marks.append("acked-unseen")
        if p.ack == lo:
            lost = self.arrows[index]
            self.arrows.insert(index, Arrow(lost.t, lost.dir, flags="?", seq=_relative(lo, self.bases[sender]),
                                            len=(hi - lo) % SEQ_MOD, marks=("lost",),
                                            client_state=self._before(index, "client"),
                                            server_state=self._before(index, "server")))

    def _before(self, index: int, side: str) -> str:
        if index == 0:
            return next(s.state for s in self.sides.values() if s.name == side)
        return str(getattr(self.arrows[index - 1], f"{side}_state"))

    # ---- transitions ----

    def _send(self, p: Packet, x: _Side, y: _Side, f: Flags, end: int) -> None:
        if f & Flags.SYN:
            if x.iss is None:
                x.iss = p.seq
            x.syn_flags = int(f)
            if p.wscale is not None:
                x.wscale = p.wscale
            if not f & Flags.ACK and x.state == "CLOSED":
                x.state = "SYN-SENT"                               # 3.10.1 OPEN
        if x.snd_nxt is None or _lt(x.snd_nxt, end):
            x.snd_nxt = end
        if f & Flags.FIN and x.fin_seq is None:
            x.fin_seq = (end - 1) % SEQ_MOD
            x.fin_row = len(self.arrows)
            if x.state == "CLOSE-WAIT" and y.fin_seq is not None and f & Flags.ACK and not _lt(y.fin_seq, p.ack):
                self._uncross(x, y)
            x.state = {"ESTABLISHED": "FIN-WAIT-1", "SYN-RECEIVED": "FIN-WAIT-1",
                       "CLOSE-WAIT": "LAST-ACK"}.get(x.state, x.state)   # 3.10.4 CLOSE
        if f & Flags.RST and x.state in _SYNCHRONIZED:
            x.state = "CLOSED"                                     # 3.10.5 ABORT
        if f & Flags.ACK and not f & Flags.RST:
            x.rcv_nxt = p.ack
            shift = x.wscale if x.wscale is not None and not f & Flags.SYN else 0
            x.rcv_wnd = p.win << shift

    def _receive(self, p: Packet, x: _Side, y: _Side, f: Flags, timers: list[str]) -> None:
        if f & Flags.RST:
            self._receive_rst(p, y, f)
            return
        if f & Flags.SYN and not f & Flags.ACK:
            if y.state == "LISTEN":
                y.state, y.passive = "SYN-RECEIVED", True         # 3.10.7.2
            elif y.state == "SYN-SENT":
                y.state = "SYN-RECEIVED"                          # 3.10.7.3, figure 7
            return
        if not f & Flags.ACK:
            return
        acks_syn = y.iss is not None and p.ack == (y.iss + 1) % SEQ_MOD
        if f & Flags.SYN:
            if y.state in ("SYN-SENT", "SYN-RECEIVED") and acks_syn:
                y.state = "ESTABLISHED"                           # 3.10.7.3
            return
        if y.state == "SYN-RECEIVED" and (acks_syn or y.iss is None):
            y.state = "ESTABLISHED"                               # 3.10.7.4 fifth
        if y.fin_seq is not None and _lt(y.fin_seq, p.ack):
            y.state = {"FIN-WAIT-1": "FIN-WAIT-2", "CLOSING": "TIME-WAIT",
                       "LAST-ACK": "CLOSED"}.get(y.state, y.state)
            if y.state == "TIME-WAIT":
                timers.append(f"{y.name} 2MSL")
        if f & Flags.FIN:
            self._receive_fin(x, y, timers)

    def _receive_fin(self, x: _Side, y: _Side, timers: list[str]) -> None:
        """3.10.7.4 eighth: the peer's FIN."""
        if x.fin_seen:
            if y.state == "TIME-WAIT":
                timers.append(f"{y.name} 2MSL (restarted)")
            return
        x.fin_seen = True
        before = y.state
        y.state = {"SYN-RECEIVED": "CLOSE-WAIT", "ESTABLISHED": "CLOSE-WAIT", "FIN-WAIT-1": "CLOSING",
                   "FIN-WAIT-2": "TIME-WAIT"}.get(y.state, y.state)
        if y.state == "TIME-WAIT" and before != "TIME-WAIT":
            timers.append(f"{y.name} 2MSL")

    def _uncross(self, x: _Side, y: _Side) -> None:
        """x's FIN does not acknowledge y's, seen earlier: x sent it before y's FIN
        arrived, so the FINs crossed (RFC 9293 figure 13). x was still ESTABLISHED on the
        rows since y's FIN, and takes y's FIN after its own left."""
        for arrow in self.arrows[y.fin_row:]:
            if getattr(arrow, f"{x.name}_state") == "CLOSE-WAIT":
                setattr(arrow, f"{x.name}_state", "ESTABLISHED")
        x.state, x.pending_fin = "ESTABLISHED", True

    def _take_crossed_fin(self, x: _Side, t: float) -> None:
        """The crossed FIN has arrived by the time x is seen again (3.10.7.4 eighth):
        an event row of its own, so the state it enters is drawn."""
        x.pending_fin = False
        before = x.state
        x.state = {"FIN-WAIT-1": "CLOSING", "FIN-WAIT-2": "TIME-WAIT"}.get(x.state, x.state)
        timers = (f"{x.name} 2MSL",) if x.state == "TIME-WAIT" and before != "TIME-WAIT" else ()
        by_name = {s.name: s for s in self.sides.values()}
        self.arrows.append(Arrow(round(t - self.start, 6), EVENT, note=f"{x.name} takes the crossed FIN",
                                 client_state=by_name["client"].state, server_state=by_name["server"].state,
                                 timers=timers))

    def _receive_rst(self, p: Packet, y: _Side, f: Flags) -> None:
        if y.state == "SYN-SENT":
            if f & Flags.ACK and y.iss is not None and p.ack == (y.iss + 1) % SEQ_MOD:
                y.state = "CLOSED"                                # 3.10.7.3 second
            return
        if y.state in ("LISTEN", "CLOSED"):
            return
        if y.state == "SYN-RECEIVED" and y.passive:
            y.state = "LISTEN"                                    # 3.10.7.4 first, passive OPEN
            y.iss, y.snd_nxt = None, None
            return
        y.state = "CLOSED"

    def _arrow(self, p: Packet, x: _Side, f: Flags, marks: list[str], timers: list[str]) -> Arrow:
        by_name = {s.name: s for s in self.sides.values()}
        peer_base = next((b for n, b in self.bases.items() if n != p.src), 0)
        return Arrow(
            t=round(p.t - self.start, 6), dir=TO_SERVER if x.name == "client" else TO_CLIENT,
            flags=str(f & ~Flags.PSH) if f & ~Flags.PSH else str(f), seq=_relative(p.seq, self.bases[p.src]),
            ack=_relative(p.ack, peer_base) if f & Flags.ACK else None, len=p.len, win=p.win,
            options=p.options if f & Flags.SYN else "", marks=tuple(marks),
            client_state=by_name["client"].state, server_state=by_name["server"].state, timers=tuple(timers))


def _duration(seconds: float) -> str:
    """A short human duration: ``1s``, ``200ms``, ``35us``."""
    if seconds >= 1:
        return f"{seconds:.3g}s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g}ms"
    return f"{seconds * 1e6:.3g}us"


def _acceptable(p: Packet, y: _Side, space: int) -> bool:
    """RFC 9293 3.10.7.4's acceptability test against the window the receiver last
    advertised (unknown before it has sent an ACK: then everything passes)."""
    if y.rcv_nxt is None or y.rcv_wnd is None or y.state not in _SYNCHRONIZED:
        return True
    nxt, wnd = y.rcv_nxt, y.rcv_wnd
    if wnd == 0:
        return space == 0 and p.seq == nxt
    right = (nxt + wnd) % SEQ_MOD
    first_in = _le(nxt, p.seq) and _lt(p.seq, right)
    if space == 0:
        return first_in
    last = (p.seq + space - 1) % SEQ_MOD
    return first_in or (_le(nxt, last) and _lt(last, right))
