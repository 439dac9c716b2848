"""Named scenarios: two in-memory `Endpoint`s driven through the RFC 9293 figures.

Each scenario moves packets between a client (198.18.0.1) and a server (198.18.0.2:80)
on a virtual clock, deciding which segments are delivered, held back or lost, and
records a `Ladder` from what the endpoints did: every segment they transmitted, and the
states their own events report after each delivery (exact, not inferred). Timers are
read from ``Endpoint.next_deadline()``: a row notes a retransmission timer (RTO) or
TIME-WAIT's 2·MSL timer when it is armed or moved.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import fasttcp
from fasttcp.diagram.model import EVENT, TO_CLIENT, TO_SERVER, Arrow, Ladder, short_options
from fasttcp.endpoint.endpoint import Endpoint
from fasttcp.enums import Cause, Flags, State
from fasttcp.errors import UsageError

__all__ = ["SCENARIOS", "Scenario", "run_scenario", "scenario_names"]

CLIENT_ADDR, SERVER_ADDR = "198.18.0.1", "198.18.0.2"     # RFC 2544 benchmarking range
CLIENT_PORT, SERVER_PORT = 40000, 80
MSL = 30.0                      # seconds (Linux's TIME-WAIT is 60 s = 2 x 30 s)
ONE_WAY = 0.010                 # seconds each segment spends on the virtual wire
MAX_TIMER_STEPS = 64            # deadlines one advance() may cross
OLD_SYN_BELOW_ISS = 10          # RFC 9293 figure 8: the old SYN has seq 90 against 100
_SIDES = ("client", "server")
_TIMER_OF_STATE = {"TIME-WAIT": "2MSL", "FIN-WAIT-2": "FIN-WAIT-2 timeout"}   # else the RTO


def _short_options(seg: fasttcp.Segment) -> str:
    o = seg.options
    return short_options(o.mss, o.wscale, o.sack_permitted, o.timestamp is not None)


class _Wire:
    """Two endpoints, a virtual clock and the rows recorded so far."""

    def __init__(self, *, listen: bool = True) -> None:
        self.ep = {"client": Endpoint([CLIENT_ADDR], seed=1, msl=MSL),
                   "server": Endpoint([SERVER_ADDR], seed=2, msl=MSL)}
        if listen:
            self.ep["server"].listen(SERVER_PORT)
        self.state = {"client": "CLOSED", "server": "LISTEN" if listen else "CLOSED"}
        self.initial = dict(self.state)
        self.deadline: dict[str, float | None] = {"client": None, "server": None}
        self.retransmitted = {"client": False, "server": False}
        self.now = 0.0
        self.rows: list[tuple[Arrow, int, int | None]] = []     # arrow, raw seq, raw ack
        self.conn: dict[str, fasttcp.Connection | None] = {"client": None, "server": None}
        self.timer_kind: dict[str, str | None] = {"client": None, "server": None}
        # a user call that changed a side's state before that side sent anything: drawn
        # as an event row if the other side's segment comes first (crossing SYNs or FINs)
        self.called: dict[str, str | None] = {"client": None, "server": None}

    # ---- user calls and the clock ----

    def connect(self, side: str = "client") -> None:
        """Active open; the server opens actively only in a simultaneous open (RFC 9293
        figure 7)."""
        if side == "client":
            self.conn[side] = self.ep[side].connect(SERVER_ADDR, SERVER_PORT, local_port=CLIENT_PORT, now=self.now)
        else:
            self.conn[side] = self.ep[side].connect(CLIENT_ADDR, CLIENT_PORT, local_port=SERVER_PORT, now=self.now)
        self.called[side] = "connect()"
        self._absorb()

    def close(self, side: str) -> None:
        self.handle(side).close(now=self.now)
        self.called[side] = "close()"
        self._absorb()

    def abort(self, side: str) -> None:
        self.handle(side).abort(now=self.now)
        self.called[side] = "abort()"
        self._absorb()

    def handle(self, side: str) -> fasttcp.Connection:
        conn = self.conn[side]
        if conn is None:
            conn = self.conn[side] = self.ep[side].accept()
        assert conn is not None, f"{side} has no connection"
        return conn

    def advance(self, dt: float) -> None:
        """Move the clock, let both endpoints' timers fire, and record what ended on a
        timer without sending anything (TIME-WAIT's 2·MSL) as an event row."""
        target = self.now + dt
        for _ in range(MAX_TIMER_STEPS):       # stop at each deadline on the way: exact times
            due = [d for d in (self.ep[s].next_deadline() for s in _SIDES) if d is not None and d <= target]
            if not due:
                break
            self._poll(min(due))
        self._poll(target)

    def _poll(self, now: float) -> None:
        self.now = max(self.now, now)
        for side in _SIDES:
            self.ep[side].poll(self.now)
        before = dict(self.state)
        self._absorb()
        for side in _SIDES:
            if self.state[side] != before[side] and not self.ep[side].pending_transmit:
                timer = _TIMER_OF_STATE.get(before[side], "timer")
                self._row(Arrow(self.now, EVENT, note=f"{side} {timer} expired"), 0, None)

    # ---- segments ----

    def take(self, side: str) -> list[tuple[str, bytes]]:
        """What `side` transmits now, not yet delivered."""
        return [(side, p) for p in self.ep[side].transmit()]

    def send(self, side: str, *, lost: bool = False) -> None:
        """Deliver (or lose) everything `side` transmits now."""
        self.deliver(self.take(side), lost=lost)

    def deliver(self, packets: list[tuple[str, bytes]], *, lost: bool = False,
                marks: tuple[str, ...] = ()) -> None:
        """Record each packet as an arrow and hand it to the other side unless lost."""
        for side, pkt in packets:
            peer = "server" if side == "client" else "client"
            seg = fasttcp.parse(pkt)
            sent_at = self.now
            self._calls_before(side if "old-duplicate" not in marks else None)
            row_marks = marks
            if self.retransmitted[side] and "old-duplicate" not in marks:
                row_marks = ("retransmission", *row_marks)
                self.retransmitted[side] = False
            if lost:
                row_marks = (*row_marks, "lost")
            else:
                self.now += ONE_WAY
                if self.ep[peer].receive(pkt, self.now) is not None:
                    row_marks = (*row_marks, "ignored")             # a drop reason
            self._absorb()
            flags = Flags(seg.flags) & ~Flags.PSH
            arrow = Arrow(sent_at, TO_SERVER if side == "client" else TO_CLIENT, flags=str(flags),
                          len=len(seg.payload), win=seg.window,
                          options=_short_options(seg) if flags & Flags.SYN else "", marks=row_marks)
            self._row(arrow, seg.seq, seg.ack if flags & Flags.ACK else None, side)

    def inject_old_syn(self, iss: int) -> None:
        """An old duplicate SYN from the client's 4-tuple (RFC 9293 figure 8, line 3)."""
        pkt = fasttcp.build(CLIENT_ADDR, SERVER_ADDR, CLIENT_PORT, SERVER_PORT,
                            seq=(iss - OLD_SYN_BELOW_ISS) % (1 << 32), flags=int(Flags.SYN),
                            options=dict(mss=1460))
        self.deliver([("client", pkt)], marks=("old-duplicate",))

    # ---- states and timers ----

    def _calls_before(self, sender: str | None) -> None:
        """Draw the user calls that changed a side's state which will not be shown on an
        arrow of its own first."""
        if sender is not None:
            self.called[sender] = None
        for side in _SIDES:
            call = self.called[side]
            if call is not None:
                self.called[side] = None
                self._row(Arrow(self.now, EVENT, note=f"{side} {call}"), 0, None)

    def _absorb(self) -> None:
        for side in _SIDES:
            for ev in self.ep[side].events():
                if ev.cause == Cause.RETRANSMIT:
                    self.retransmitted[side] = True
                elif ev.cause != Cause.DATA:
                    self.state[side] = str(ev.new)

    def _row(self, arrow: Arrow, seq: int, ack: int | None, sender: str | None = None) -> None:
        arrow.client_state, arrow.server_state = self.state["client"], self.state["server"]
        timers = []
        for side in _SIDES:
            d = self.ep[side].next_deadline()
            kind = _TIMER_OF_STATE.get(self.state[side], "RTO")
            if d is not None and d != self.deadline[side]:
                again = " (restarted)" if kind == self.timer_kind[side] and kind != "RTO" else ""
                armed = arrow.t if side == sender else self.now     # the receiver armed it on arrival
                timers.append(f"{side} {kind} {d - armed:.6g}s{again}")
            self.deadline[side], self.timer_kind[side] = d, (kind if d is not None else None)
        arrow.timers = tuple(timers)
        self.rows.append((arrow, seq, ack))

    def ladder(self, name: str) -> Ladder:
        """The recorded rows with sequence numbers made relative to each side's first SYN."""
        iss: dict[str, int] = {}
        for arrow, seq, _ in self.rows:
            side = "client" if arrow.dir == TO_SERVER else "server"
            if "SYN" in arrow.flags and "old-duplicate" not in arrow.marks and side not in iss:
                iss[side] = seq
        arrows = []
        for arrow, seq, ack in self.rows:
            if arrow.dir != EVENT:
                me, peer = ("client", "server") if arrow.dir == TO_SERVER else ("server", "client")
                arrow.seq = _relative(seq, iss.get(me, seq))
                arrow.ack = None if ack is None else _relative(ack, iss.get(peer, ack))
            arrows.append(arrow)
        return Ladder(client=f"{CLIENT_ADDR}:{CLIENT_PORT}", server=f"{SERVER_ADDR}:{SERVER_PORT}",
                      client_initial=self.initial["client"], server_initial=self.initial["server"],
                      arrows=arrows, title=name)


def _relative(value: int, base: int) -> int:
    """value - base in sequence space, as a signed 32-bit distance (RFC 1982 style)."""
    d = (value - base) % (1 << 32)
    return d - (1 << 32) if d >= 1 << 31 else d


# ---- the scenarios ----

def _handshake(w: _Wire) -> None:
    w.connect()
    w.send("client")
    w.send("server")
    w.send("client")
    w.handle("server")


def _three_way(w: _Wire) -> None:
    _handshake(w)


def _four_way(w: _Wire) -> None:
    _handshake(w)
    w.handle("client").send(b"GET / HTTP/1.0\r\n\r\n", now=w.now)
    w.send("client")
    w.send("server")
    w.close("client")
    w.send("client")                # FIN
    w.send("server")                # its ACK
    w.close("server")
    w.send("server")                # the server's FIN
    w.send("client")                # the last ACK
    w.advance(2 * MSL)


def _half_close(w: _Wire) -> None:
    _handshake(w)
    w.close("client")
    w.send("client")                # FIN: the client is done sending
    w.send("server")
    w.handle("server").send(b"still talking after your FIN", now=w.now)
    w.send("server")                # data into FIN-WAIT-2
    w.send("client")
    w.close("server")
    w.send("server")
    w.send("client")
    w.advance(2 * MSL)


def _simultaneous_open(w: _Wire) -> None:
    w.connect()
    w.connect("server")
    crossing = w.take("client") + w.take("server")
    w.deliver(crossing)             # the SYNs cross
    w.deliver(w.take("client") + w.take("server"))   # both SYN|ACKs, crossing too
    # each SYN|ACK lies before RCV.NXT once the other was sent: RFC 9293 3.10.7.4 answers
    # it with an ACK, and those ACKs complete the handshakes
    w.deliver(w.take("client") + w.take("server"))


def _simultaneous_close(w: _Wire) -> None:
    _handshake(w)
    w.close("client")
    w.close("server")
    w.deliver(w.take("client") + w.take("server"))   # the FINs cross
    w.deliver(w.take("client") + w.take("server"))   # both ACKs
    w.advance(2 * MSL)


def _old_duplicate_syn(w: _Wire) -> None:
    w.connect()
    syn = w.take("client")          # delayed in the network
    iss = fasttcp.parse(syn[0][1]).seq
    w.inject_old_syn(iss)           # an old SYN arrives first
    w.send("server")                # SYN|ACK acknowledging the old SYN
    w.send("client")                # the client's RST: that ACK is not for its SYN
    w.deliver(syn)                  # now the real SYN
    w.send("server")
    w.send("client")
    w.handle("server")


def _lost_syn(w: _Wire) -> None:
    w.connect()
    w.send("client", lost=True)     # the first SYN is lost
    w.advance(_until_deadline(w, "client"))
    w.send("client", lost=True)     # and its retransmission, one RTO later
    w.advance(_until_deadline(w, "client"))
    w.send("client")                # the third try, after a doubled RTO, gets through
    w.send("server")
    w.send("client")


def _until_deadline(w: _Wire, side: str) -> float:
    deadline = w.ep[side].next_deadline()
    assert deadline is not None, f"{side} has no timer running"
    return deadline - w.now


def _lost_last_ack(w: _Wire) -> None:
    _handshake(w)
    w.close("client")
    w.send("client")
    w.send("server")
    w.close("server")
    w.send("server")
    w.send("client", lost=True)     # the last ACK is lost
    w.advance(_until_deadline(w, "server"))
    w.send("server")                # the FIN again
    w.send("client")                # re-ACKed from TIME-WAIT
    w.advance(2 * MSL)


def _reset(w: _Wire) -> None:
    _handshake(w)
    w.abort("client")
    w.send("client")


def _refused(w: _Wire) -> None:
    w.connect()
    w.send("client")
    w.send("server")


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A named scenario: how to drive the endpoints, and why the protocol does it."""

    name: str
    drive: Callable[[_Wire], None]
    why: str
    listen: bool = True


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("three-way", _three_way,
             "Each side has its own sequence numbers, and each must learn the other's initial "
             "one and see its own acknowledged: two SYNs and two ACKs, with the middle SYN and "
             "ACK carried in one segment, make three (RFC 9293 3.5)."),
    Scenario("four-way", _four_way,
             "The two directions close separately: each FIN says only \"I will send no more\" "
             "and each needs its own ACK, so a close takes four segments unless one carries "
             "both. The side that closes first waits in TIME-WAIT for 2·MSL, long enough for "
             "its last ACK to be re-sent if lost and for every old segment to die (RFC 9293 3.6)."),
    Scenario("half-close", _half_close,
             "A FIN closes one direction only: the client has finished sending but keeps "
             "receiving in FIN-WAIT-2 while the server, in CLOSE-WAIT, still sends. This is "
             "what shutdown(SHUT_WR) does (RFC 9293 3.6)."),
    Scenario("simultaneous-open", _simultaneous_open,
             "When two SYNs cross, each side moves from SYN-SENT to SYN-RECEIVED and answers "
             "with a SYN|ACK; one connection results, not two (RFC 9293 figure 7).", listen=False),
    Scenario("simultaneous-close", _simultaneous_close,
             "When the FINs cross, each side reaches CLOSING (its FIN sent, the peer's "
             "received, its own not yet acknowledged) and both end in TIME-WAIT (RFC 9293 "
             "figure 13)."),
    Scenario("old-duplicate-syn", _old_duplicate_syn,
             "An old SYN from an earlier incarnation arrives first; the server cannot tell, "
             "so it answers, and the client, whose SYN that ACK does not acknowledge, resets "
             "it. This is why the third segment exists: the opener confirms the handshake is "
             "its own before data flows (RFC 9293 figure 8)."),
    Scenario("lost-syn", _lost_syn,
             "A SYN that gets no answer is sent again when the retransmission timer fires, "
             "the timer doubling each time (RFC 6298 5.5: 1 s, 2 s, 4 s ...), so a lossy path "
             "delays the connection instead of failing it."),
    Scenario("lost-last-ack", _lost_last_ack,
             "If the last ACK is lost the server re-sends its FIN; the client, still in "
             "TIME-WAIT, acknowledges it again and restarts its 2·MSL timer. Without TIME-WAIT "
             "that FIN would meet a closed port and be answered with a reset (RFC 9293 3.10.7.4)."),
    Scenario("reset", _reset,
             "A reset aborts a connection at once: the side that sends it forgets the "
             "connection and the receiver, after checking the sequence number is in its window "
             "(RFC 5961 3), closes without any handshake and without TIME-WAIT."),
    Scenario("refused", _refused,
             "A SYN to a port nobody listens on is answered by RST|ACK acknowledging it, and "
             "the client gives up at once: connection refused (RFC 9293 3.10.7.1).",
             listen=False),
)}
"""Every scenario by name, in the order the docs show them."""


def scenario_names() -> list[str]:
    """The scenario names, in order."""
    return list(SCENARIOS)


def run_scenario(name: str) -> Ladder:
    """Run a named scenario and return its ladder. Raises UsageError for an unknown name."""
    if not isinstance(name, str):
        raise UsageError(f"scenario must be a str, not {type(name).__name__}")
    scenario = SCENARIOS.get(name)
    if scenario is None:
        raise UsageError(f"no scenario {name!r}; choose one of {', '.join(SCENARIOS)}")
    w = _Wire(listen=scenario.listen)
    scenario.drive(w)
    return w.ladder(name)


# the timer names above are keyed by the enum's RFC 9293 spelling
assert str(State.TIME_WAIT) in _TIMER_OF_STATE and str(State.FIN_WAIT_2) in _TIMER_OF_STATE
