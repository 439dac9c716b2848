"""Segment-in / segment-out scenarios for the sans-IO endpoint, in the style of the
RFC 9293 figures (smoltcp's socket tests, aioquic's virtual clock).

A `Pair` is two `Endpoint`s wired back to back -- the client at 198.18.0.1 and the
server at 198.18.0.2 listening on port 80 -- with fixed seeds and a virtual clock
(`pair.now`) that only the test moves. Nothing is delivered unless the test says so:

    cc = pair.connect()                                       # client: CLOSED -> SYN-SENT
    syn = pair.expect_from_client(SYN(seq=pair.C))            # TCP A -> <SEQ=C><CTL=SYN>
    pair.deliver_to_server(syn)                               # server: LISTEN -> SYN-RECEIVED
    pair.forward_to_client(SYN_ACK(seq=pair.S, ack=pair.C + 1))
    pair.forward_to_server(ACK(seq=pair.C + 1, ack=pair.S + 1))

Templates (`SYN`, `SYN_ACK`, `ACK`, `DATA`, `FIN_ACK`, `RST`, `RST_ACK`, ...) do two
jobs: ``expect_from_*`` compares the next transmitted packet with one (fields left out
match anything; sequence numbers compare modulo 2**32, so ``pair.C + 1`` may pass
2**32), and ``deliver_to_*`` builds a packet from one (addresses and ports filled in
for that direction). The client's ISN is placed 8 below 2**32 (the clock starts where
RFC 6528's ISN clock puts it there) and, for IPv4, the server's between 100 and 3000
below (a server seed and client port are searched once per session so that its ISN
lands there when it answers at the same time), so ordinary scenarios cross the
sequence-number wrap on both sides.
"""
from __future__ import annotations

import dataclasses
import functools
import ipaddress
from typing import Any

import numpy as np
import pytest

import fasttcp
from fasttcp import Cause, Event, Flags, State
from fasttcp.endpoint.endpoint import Endpoint
from fasttcp.table.table import make_keys

__all__ = [
    "ANY", "Template", "SEGMENT", "SYN", "SYN_ACK", "ACK", "DATA", "FIN", "FIN_ACK", "RST", "RST_ACK",
    "Pair", "Held", "pair", "calibration", "CLIENT", "SERVER", "CLIENT6", "SERVER6", "SERVER_PORT",
    "WRAP",
]

WRAP = 1 << 32
CLIENT, SERVER = "198.18.0.1", "198.18.0.2"              # RFC 2544 benchmarking range
CLIENT6, SERVER6 = "2001:2::1", "2001:2::2"              # RFC 5180 benchmarking range
SERVER_PORT = 80
CLIENT_SEED = 1
CLIENT_ISN_BELOW_WRAP = 8          # client ISS = 2**32 - 8: its 8th byte of data is seq 0
SERVER_ISN_BELOW_WRAP = (100, 3000)


# ---- templates ----

class _Any:
    def __repr__(self) -> str:
        return "ANY"


ANY: Any = _Any()
"""Matches every value of a field."""


@dataclasses.dataclass(frozen=True)
class Template:
    """A segment with some fields pinned: what to expect, or what to deliver.

    ``flags`` are compared exactly except PSH (data segments may or may not set it).
    ``options`` is a dict of `fasttcp.Options` attributes to compare (only those given)
    or to build with; ``ts`` is the (TSval, TSecr) pair, ANY or None (no option).
    """

    name: str
    flags: Flags
    seq: Any = ANY
    ack: Any = ANY
    payload: Any = ANY
    window: Any = ANY
    options: Any = ANY
    ts: Any = ANY

    def __repr__(self) -> str:
        parts = []
        for f in ("seq", "ack", "payload", "window", "options", "ts"):
            v = getattr(self, f)
            if v is ANY:
                continue
            if f == "payload" and isinstance(v, (bytes, bytearray)) and len(v) > 24:
                v = f"<{len(v)} bytes>"
            if f in ("seq", "ack") and isinstance(v, int):
                v %= WRAP                                   # as on the wire
            parts.append(f"{f}={v!r}")
        return f"{self.name}({', '.join(parts)})"

    def mismatches(self, seg: fasttcp.Segment) -> list[str]:
        """Human-readable differences between this template and a parsed segment."""
        out = []
        ignore = Flags.PSH
        if (Flags(seg.flags) & ~ignore) != (self.flags & ~ignore):
            out.append(f"flags {Flags(seg.flags)} != {self.flags}")
        for f in ("seq", "ack"):
            want = getattr(self, f)
            if want is not ANY and getattr(seg, f) != want % WRAP:
                out.append(f"{f} {getattr(seg, f)} != {want % WRAP} (off by "
                           f"{(getattr(seg, f) - want + 2**31) % WRAP - 2**31:+d})")
        if self.payload is not ANY and bytes(seg.payload) != bytes(self.payload):
            got = bytes(seg.payload)
            out.append(f"payload {len(got)} bytes {got[:16]!r}... != {len(self.payload)} bytes "
                       f"{bytes(self.payload)[:16]!r}...")
        if self.window is not ANY and seg.window != self.window:
            out.append(f"window {seg.window} != {self.window}")
        if self.options is not ANY:
            for k, v in (self.options or {}).items():
                if getattr(seg.options, k) != v:
                    out.append(f"option {k} {getattr(seg.options, k)!r} != {v!r}")
        if self.ts is not ANY:
            got = seg.options.timestamp
            if self.ts is None and got is not None:
                out.append(f"timestamp {got} present, expected none")
            elif self.ts is not None:
                if got is None:
                    out.append("no timestamp option")
                else:
                    for i, name in enumerate(("tsval", "tsecr")):
                        if self.ts[i] is not ANY and got[i] != self.ts[i]:
                            out.append(f"{name} {got[i]} != {self.ts[i]}")
        return out

    def build(self, src: str, dst: str, sport: int, dport: int) -> bytes:
        """The packet this template describes, from src:sport to dst:dport."""
        if self.seq is ANY:
            raise AssertionError(f"{self!r}: give seq= to deliver a template")
        opts: dict[str, Any] = {}
        if self.options not in (ANY, None):
            opts.update(self.options)
        if self.ts not in (ANY, None):
            opts["timestamp"] = tuple(self.ts)
        return fasttcp.build(
            src, dst, sport, dport,
            seq=self.seq % WRAP,
            ack=0 if self.ack is ANY else self.ack % WRAP,
            flags=int(self.flags),
            window=65535 if self.window is ANY else self.window,
            options=opts or None,
            payload=b"" if self.payload is ANY else bytes(self.payload),
        )


def _factory(name: str, flags: Flags, *, data: bool = False):
    def make(seq: Any = ANY, ack: Any = ANY, *, payload: Any = None, window: Any = ANY,
             options: Any = ANY, ts: Any = ANY) -> Template:
        if payload is None:
            payload = ANY if data else b""
        return Template(name, flags, seq, ack, payload, window, options, ts)

    make.__name__ = name
    make.__doc__ = f"A {flags} segment template (fields not given match anything)."
    return make


SYN = _factory("SYN", Flags.SYN)
SYN_ACK = _factory("SYN_ACK", Flags.SYN | Flags.ACK)
ACK = _factory("ACK", Flags.ACK)
DATA = _factory("DATA", Flags.ACK, data=True)
FIN = _factory("FIN", Flags.FIN)
FIN_ACK = _factory("FIN_ACK", Flags.FIN | Flags.ACK)
RST = _factory("RST", Flags.RST)
RST_ACK = _factory("RST_ACK", Flags.RST | Flags.ACK)


def SEGMENT(flags: Flags, seq: Any = ANY, ack: Any = ANY, **kw: Any) -> Template:
    """A template with any combination of flags (e.g. SYN|FIN for odd segments)."""
    kw.setdefault("payload", b"")
    return Template(str(Flags(flags)), Flags(flags), seq, ack, **kw)


# ---- the pair ----

@dataclasses.dataclass
class Held:
    """A packet taken off the wire, to be delivered later with `Pair.release`."""

    packet: bytes
    to: str                      # "client" or "server"

    @property
    def segment(self) -> fasttcp.Segment:
        return fasttcp.parse(self.packet)


def _client_isn_offset(family: int, client_port: int) -> int:
    """F(4-tuple, secret) of the client's 4-tuple: its ISN at time 0 (RFC 6528)."""
    caddr, saddr = (CLIENT, SERVER) if family == 4 else (CLIENT6, SERVER6)
    probe = Endpoint([caddr], seed=CLIENT_SEED, capacity=4)
    probe.connect(saddr, SERVER_PORT, local_port=client_port, now=0)
    return fasttcp.parse(probe.transmit()[0]).seq


@functools.cache
def calibration() -> tuple[int, int]:
    """(server seed, client port) such that, the client's ISS being 8 below 2**32, the
    server's ISS for the same 4-tuple at the same time is SERVER_ISN_BELOW_WRAP below.

    RFC 6528 makes ISS - F(4-tuple) the same clock on both sides, so this only depends
    on F: one batch of SYNs from every client port, answered by servers of successive
    seeds until a SYN-ACK lands in range (about 1/20 s per seed). Returns the closest
    seen if none does within the budget."""
    ports = np.arange(1024, 65536)
    keys = make_keys([(CLIENT, int(p), SERVER, SERVER_PORT) for p in ports])
    client = Endpoint([CLIENT], seed=CLIENT_SEED, capacity=len(ports) + 16)
    client.connect_batch(keys, 0)
    syns, offs, lens = client.transmit_batch()
    f_client = _seq_column(syns, offs)
    lo, hi = SERVER_ISN_BELOW_WRAP
    target = (lo + hi) // 2
    best = (WRAP, 2, int(ports[0]))
    for seed in range(2, 400):
        server = Endpoint([SERVER], seed=seed, capacity=len(ports) + 16, syn_cookies="off")   # RFC 6528 ISNs
        server.listen(SERVER_PORT)
        server.receive_batch(syns, offs, lens, 0)
        synacks, soffs, _ = server.transmit_batch()           # in the order of the SYNs
        below = (f_client - _seq_column(synacks, soffs)) % WRAP + CLIENT_ISN_BELOW_WRAP
        i = int(np.argmin(np.abs(below - target)))
        if lo <= below[i] <= hi:
            return seed, int(ports[i])
        if abs(int(below[i]) - target) < best[0]:
            best = (abs(int(below[i]) - target), seed, int(ports[i]))
    return best[1], best[2]


def _seq_column(buf: np.ndarray, offs: np.ndarray) -> np.ndarray:
    """The TCP sequence numbers of back-to-back IPv4 packets without IP options."""
    idx = offs + 24
    b = buf.astype(np.int64)
    return (b[idx] << 24) | (b[idx + 1] << 16) | (b[idx + 2] << 8) | b[idx + 3]


class Pair:
    """A client and a server endpoint joined by a wire the test drives by hand.

    ``pair.client`` / ``pair.server``: the Endpoints; ``pair.client_port``: the client's
    port (from `calibration`); ``pair.cc`` / ``pair.sc``: the
    client's and the server's Connection for the pair's 4-tuple (``sc`` appears when the
    server gets the SYN); ``pair.C`` / ``pair.S``: the client's and the server's ISS;
    ``pair.now``: the virtual clock in seconds (``pair.start`` is t=0 of the scenario,
    ``pair.at(t)`` and ``pair.advance(dt)`` move it). Packets each side transmits wait
    in its outbox until the test takes them.
    """

    def __init__(self, *, family: int = 4, client: dict | None = None, server: dict | None = None,
                 **common: Any) -> None:
        self.family = family
        self.caddr, self.saddr = (CLIENT, SERVER) if family == 4 else (CLIENT6, SERVER6)
        server_seed, self.client_port = calibration()
        ckw = dict(seed=CLIENT_SEED, **common)
        ckw.update(client or {})
        skw = dict(seed=server_seed, **common)
        skw.update(server or {})
        self.client = Endpoint([self.caddr], **ckw)
        self.server = Endpoint([self.saddr], **skw)
        self.server.listen(SERVER_PORT)
        # RFC 6528: ISN = (t / 4 us) + F. Start the clock where the client's ISN is
        # just below 2**32 (only meaningful with the default seed).
        default_isn = ckw["seed"] == CLIENT_SEED and ckw.get("isn_secret") is None
        f = _client_isn_offset(family, self.client_port) if default_isn else 0
        ticks = (WRAP - CLIENT_ISN_BELOW_WRAP - f) % WRAP
        self.start = ticks * 4 / 1e6
        self.now = self.start
        self.outbox: dict[str, list[bytes]] = {"client": [], "server": []}
        self.log: dict[str, list[Event]] = {"client": [], "server": []}
        self.drops: dict[str, list[str | None]] = {"client": [], "server": []}
        self.last: dict[str, bytes | None] = {"client": None, "server": None}
        self.cc = None
        self.sc = None
        self._iss: dict[str, tuple[Any, int]] = {}

    # ---- clock ----

    @property
    def elapsed(self) -> float:
        """Seconds since the start of the scenario."""
        return round(self.now - self.start, 6)

    def at(self, t: float) -> None:
        """Set the clock to `t` seconds after the start (never backwards)."""
        assert t >= self.elapsed - 1e-9, f"the clock does not go back ({t} < {self.elapsed})"
        self.now = self.start + t

    def advance(self, dt: float) -> None:
        self.at(self.elapsed + dt)

    # ---- endpoints ----

    def _ep(self, side: str) -> Endpoint:
        return self.client if side == "client" else self.server

    def _collect(self, side: str) -> None:
        ep = self._ep(side)
        self.outbox[side].extend(ep.transmit())
        for ev in ep.events():
            self.log[side].append(ev)
            if side == "server" and ev.cause in (Cause.SYN_RECEIVED, Cause.REOPEN) \
                    and ev.connection.key[3] == self.client_port:
                self.sc = ev.connection
        for name, conn in (("client", self.cc), ("server", self.sc)):
            if conn is not None:
                tcb = getattr(conn, "tcb", None)
                if tcb is not None:
                    self._iss[name] = (conn, tcb["iss"])

    def sync(self) -> None:
        """Pick up what the endpoints queued after a direct call (send, close, abort)."""
        self._collect("client")
        self._collect("server")

    def connect(self, **kw: Any):
        """Client active open from `client_port` to the server's port 80 at `now`."""
        kw.setdefault("local_port", self.client_port)
        self.cc = self.client.connect(self.saddr, SERVER_PORT, now=self.now, **kw)
        self._collect("client")
        return self.cc

    def _owner(self, conn: Any) -> str:
        return "client" if str(conn.key[0]) == str(ipaddress.ip_address(self.caddr)) else "server"

    def send(self, conn: Any, data: bytes) -> None:
        """conn.send(data) at `now` (Connection.send acts at its endpoint's last time, so
        the owning endpoint is polled at `now` first)."""
        side = self._owner(conn)
        self._ep(side).poll(self.now)
        conn.send(data)
        self._collect(side)

    def close(self, conn: Any) -> None:
        """conn.close() at `now`."""
        side = self._owner(conn)
        self._ep(side).poll(self.now)
        conn.close()
        self._collect(side)

    def abort(self, conn: Any) -> None:
        """conn.abort() at `now`."""
        side = self._owner(conn)
        self._ep(side).poll(self.now)
        conn.abort()
        self._collect(side)

    def accept(self):
        conn = self.server.accept()
        if conn is not None:
            self.sc = conn
        return conn

    def establish(self):
        """connect(), then the handshake with nothing lost; returns (client, server)."""
        cc = self.connect()
        self.transfer()
        sc = self.accept()
        assert cc.state is State.ESTABLISHED and sc is not None and sc.state is State.ESTABLISHED
        self.take_events("client")
        self.take_events("server")
        return cc, sc

    def poll(self) -> None:
        """Run both sides' timers at `now`."""
        self.poll_client()
        self.poll_server()

    def poll_client(self) -> None:
        self.client.poll(self.now)
        self._collect("client")

    def poll_server(self) -> None:
        self.server.poll(self.now)
        self._collect("server")

    @property
    def C(self) -> int:
        """The client's initial send sequence number (ISS); still readable after the
        connection is gone."""
        return self._iss_of("client", self.cc)

    @property
    def S(self) -> int:
        """The server's ISS (known once it answered the SYN)."""
        return self._iss_of("server", self.sc)

    def _iss_of(self, side: str, conn: Any) -> int:
        tcb = conn.tcb if conn is not None else None
        if tcb is not None:
            self._iss[side] = (conn, tcb["iss"])
        got = self._iss.get(side)
        if got is None or got[0] is not conn:
            raise AssertionError(f"the {side}'s ISS is not known yet")
        return got[1]

    # ---- the wire ----

    def _packet(self, seg: Any, to: str) -> bytes:
        if isinstance(seg, Template):
            if to == "server":
                return seg.build(self.caddr, self.saddr, self.client_port, SERVER_PORT)
            return seg.build(self.saddr, self.caddr, SERVER_PORT, self.client_port)
        if isinstance(seg, Held):
            return seg.packet
        if isinstance(seg, fasttcp.Segment):
            return seg.to_bytes()
        return bytes(seg)

    def deliver_to_server(self, seg: Any) -> str | None:
        """Hand a template, Segment or raw packet to the server at `now`. Returns the drop
        reason (None if the segment was used); replies wait in the server's outbox."""
        return self._deliver("server", seg)

    def deliver_to_client(self, seg: Any) -> str | None:
        return self._deliver("client", seg)

    def _deliver(self, to: str, seg: Any) -> str | None:
        pkt = self._packet(seg, to)
        reason = self._ep(to).receive(pkt, self.now)
        self.drops[to].append(reason)
        self._collect(to)
        return reason

    def _take(self, side: str, template: Template | None) -> fasttcp.Segment:
        self._collect(side)
        box = self.outbox[side]
        if not box:
            raise AssertionError(f"expected {template!r} from the {side}, but it sent nothing")
        pkt = box.pop(0)
        seg = fasttcp.parse(pkt)
        self.last[side] = pkt
        if template is not None:
            bad = template.mismatches(seg)
            if bad:
                raise AssertionError(
                    f"from the {side} at t={self.elapsed}:\n  expected {template!r}\n"
                    f"  got      {seg!r}\n  " + "\n  ".join(bad))
        return seg

    def expect_from_server(self, template: Template | None = None) -> fasttcp.Segment:
        """Take the server's next packet; it must match `template`. Returns it parsed."""
        return self._take("server", template)

    def expect_from_client(self, template: Template | None = None) -> fasttcp.Segment:
        return self._take("client", template)

    def expect_nothing_from_server(self) -> None:
        self._nothing("server")

    def expect_nothing_from_client(self) -> None:
        self._nothing("client")

    def _nothing(self, side: str) -> None:
        self._collect(side)
        if self.outbox[side]:
            segs = [fasttcp.parse(p) for p in self.outbox[side]]
            raise AssertionError(f"expected nothing from the {side} at t={self.elapsed}, got {segs!r}")

    def forward_to_client(self, template: Template | None = None) -> str | None:
        """The server's next packet (checked against `template`) delivered to the client."""
        self._take("server", template)
        return self.deliver_to_client(self.last["server"])

    def forward_to_server(self, template: Template | None = None) -> str | None:
        self._take("client", template)
        return self.deliver_to_server(self.last["client"])

    def last_segment(self, side: str) -> fasttcp.Segment:
        """The packet last taken from `side` ("client" or "server"), parsed."""
        return fasttcp.parse(self.last[side])

    def deliver_to_client_last(self) -> str | None:
        """Deliver the packet last taken from the server with expect_from_server."""
        return self.deliver_to_client(self.last["server"])

    def deliver_to_server_last(self) -> str | None:
        return self.deliver_to_server(self.last["client"])

    def drop_next_from_client(self, template: Template | None = None) -> fasttcp.Segment:
        """Lose the client's next packet (checked against `template`)."""
        return self._take("client", template)

    def drop_next_from_server(self, template: Template | None = None) -> fasttcp.Segment:
        return self._take("server", template)

    def hold_from_client(self, template: Template | None = None) -> Held:
        """Delay the client's next packet: it reaches the server when released."""
        self._take("client", template)
        return Held(self.last["client"], "server")

    def hold_from_server(self, template: Template | None = None) -> Held:
        self._take("server", template)
        return Held(self.last["server"], "client")

    hold = hold_from_client

    def release(self, held: Held) -> str | None:
        """Deliver a held packet now."""
        return self._deliver(held.to, held.packet)

    def transfer(self, max_rounds: int = 1000) -> int:
        """Move every queued packet both ways until both sides are quiet; returns how
        many packets crossed."""
        moved = 0
        for _ in range(max_rounds):
            self.sync()
            if not self.outbox["client"] and not self.outbox["server"]:
                return moved
            for src, dst in (("client", "server"), ("server", "client")):
                box, self.outbox[src] = self.outbox[src], []
                for pkt in box:
                    self._deliver(dst, pkt)
                    moved += 1
        raise AssertionError("transfer() did not go quiet")

    # ---- events ----

    def take_events(self, side: str) -> list[Event]:
        """Events of one side since the last call (DATA and RETRANSMIT included)."""
        self._collect(side)
        out, self.log[side] = self.log[side], []
        return out

    def changes(self, side: str) -> list[tuple[State, State, Cause]]:
        """State changes of one side since the last take, as (old, new, cause); DATA and
        RETRANSMIT events are left out."""
        return [(e.old, e.new, e.cause) for e in self.take_events(side)
                if e.cause not in (Cause.DATA, Cause.RETRANSMIT)]

    def client_changes(self) -> list[tuple[State, State, Cause]]:
        return self.changes("client")

    def server_changes(self) -> list[tuple[State, State, Cause]]:
        return self.changes("server")


@pytest.fixture
def pair() -> Pair:
    """A fresh client/server Pair with the default configuration."""
    return Pair()
