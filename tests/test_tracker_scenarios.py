"""The passive tracker (`fasttcp.Tracker`), scenario by scenario, as in the RFC 9293 figures.

A `Wire` is a capture point between a client (198.18.0.1, or 2001:db8::1) and a server
(198.18.0.2:80, or 2001:db8::2:80) with a tracker listening. Each step is one line of
a figure -- a packet on the wire at a given time -- followed by what the tracker must
say about it: the packet's verdict, the conntrack `TrackerState` of the connection and,
where it means something, Zeek's history and conn_state:

    w = Wire()
    w.step("C > S  SYN seq=100 win=64240 mss=1460 ws=7 sackok", at=0.000,
           state=SYN_SENT, history="S", conn_state=S0)
    w.step("S > C  SYN|ACK seq=300 ack=101 win=65160 ws=7 sackok", at=0.020,
           state=SYN_RECV, history="Sh")

A line is ``<src> > <dst>  <flags> key=value ...`` with src/dst ``C`` or ``S`` and flags
Flags names joined by ``|`` (``NONE`` for none). Keys: ``seq ack win`` (numbers, seq/ack
taken modulo 2**32), ``len=N`` (N bytes of payload) or ``data=text``, ``mss ws`` (window
scale), ``sackok``, ``sack=L-R,L-R``, ``ts=VAL/ECR``, ``badsum`` (TCP checksum broken),
``cut`` (captured only up to the end of the TCP header, as with a small snaplen).
Sequence numbers in the scenarios are small on purpose: they are the figure's numbers.
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

import numpy as np
import pytest

import fasttcp
from fasttcp import (
    FLOW_DTYPE, TRACKER_EVENT_DTYPE, ConnState, EndReason, Flags, Tracker, TrackerState,
    TrackerTimeouts, Verdict, flow_records,
)
from fasttcp.tracking import LIKELY_SERVER_PORTS

try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover
    given = None

NONE, SYN_SENT, SYN_RECV, ESTABLISHED = (TrackerState.NONE, TrackerState.SYN_SENT,
                                          TrackerState.SYN_RECV, TrackerState.ESTABLISHED)
FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT = (TrackerState.FIN_WAIT, TrackerState.CLOSE_WAIT,
                                              TrackerState.LAST_ACK, TrackerState.TIME_WAIT)
CLOSE, SYN_SENT2 = TrackerState.CLOSE, TrackerState.SYN_SENT2
S0, S1, SF, REJ, S2, S3 = ConnState.S0, ConnState.S1, ConnState.SF, ConnState.REJ, ConnState.S2, ConnState.S3
RSTO, RSTR, RSTOS0, RSTRH, SH, SHR, OTH = (ConnState.RSTO, ConnState.RSTR, ConnState.RSTOS0,
                                           ConnState.RSTRH, ConnState.SH, ConnState.SHR, ConnState.OTH)
OK, INVALID, IGNORED = Verdict.OK, Verdict.CONNTRACK_INVALID, Verdict.CONNTRACK_IGNORED

CLIENT, SERVER = "198.18.0.1", "198.18.0.2"              # RFC 2544 benchmarking range
CLIENT6, SERVER6 = "2001:db8::1", "2001:db8::2"          # RFC 3849 documentation range
CLIENT_PORT, SERVER_PORT = 40000, 80
NOT_MEASURED = 0xFFFFFFFF
WRAP = 1 << 32


# ---- the DSL ----

_LINE = re.compile(r"^\s*([CS])\s*>\s*([CS])\s+(\S+)\s*(.*)$")


@dataclasses.dataclass
class Packet:
    """One packet the wire saw: its bytes, capture time (seconds) and the line it came from."""

    data: bytes
    ts: float
    line: str


def _corrupt_tcp_checksum(pkt: bytes) -> bytes:
    b = bytearray(pkt)
    ihl = (b[0] & 0x0F) * 4 if b[0] >> 4 == 4 else 40
    b[ihl + 16] ^= 0x5A                                     # TCP checksum, high byte
    return bytes(b)


def _tcp_header_end(pkt: bytes) -> int:
    ihl = (pkt[0] & 0x0F) * 4 if pkt[0] >> 4 == 4 else 40
    return ihl + (pkt[ihl + 12] >> 4) * 4


class Wire:
    """A capture point between client and server with a tracker listening."""

    def __init__(self, tracker: Tracker | None = None, *, family: int = 4, cport: int = CLIENT_PORT,
                 sport: int = SERVER_PORT, step: float = 0.001, t0: float = 1000.0, **tracker_kw: Any):
        self.tracker = tracker if tracker is not None else Tracker(64, seed=7, **tracker_kw)
        self.c, self.s = (CLIENT, SERVER) if family == 4 else (CLIENT6, SERVER6)
        self.cport, self.sport = cport, sport
        self.t0, self.t, self.step_s = t0, t0, step
        self.log: list[Packet] = []
        self.verdicts: list[Verdict] = []

    # building
    def packet(self, line: str) -> bytes:
        m = _LINE.match(line)
        if not m or m.group(1) == m.group(2):
            raise ValueError(f"bad wire line {line!r}")
        src, dst = m.group(1), m.group(2)
        flags = 0
        if m.group(3) != "NONE":
            for name in m.group(3).split("|"):
                flags |= Flags[name]
        kv: dict[str, Any] = {}
        for tok in m.group(4).split():
            k, _, v = tok.partition("=")
            kv[k] = v if _ else True
        payload = b""
        if "len" in kv:
            payload = bytes(i % 251 for i in range(int(kv.pop("len"))))
        if "data" in kv:
            payload = kv.pop("data").encode()
        opts: dict[str, Any] = {}
        if "mss" in kv:
            opts["mss"] = int(kv.pop("mss"))
        if "ws" in kv:
            opts["wscale"] = int(kv.pop("ws"))
        if kv.pop("sackok", False):
            opts["sack_permitted"] = True
        if "sack" in kv:
            opts["sack"] = [tuple(int(x) % WRAP for x in blk.split("-")) for blk in kv.pop("sack").split(",")]
        if "ts" in kv:
            opts["timestamp"] = tuple(int(x) for x in kv.pop("ts").split("/"))
        badsum, cut = kv.pop("badsum", False), kv.pop("cut", False)
        seq, ack = int(kv.pop("seq", 0)) % WRAP, int(kv.pop("ack", 0)) % WRAP
        win = int(kv.pop("win", 65535))
        if kv:
            raise ValueError(f"unknown keys {sorted(kv)} in {line!r}")
        a, b = ((self.c, self.cport), (self.s, self.sport)) if src == "C" else ((self.s, self.sport),
                                                                                 (self.c, self.cport))
        pkt = fasttcp.build(a[0], b[0], a[1], b[1], seq=seq, ack=ack, flags=flags, window=win,
                            options=opts or None, payload=payload)
        if badsum:
            pkt = _corrupt_tcp_checksum(pkt)
        if cut:
            pkt = pkt[:_tcp_header_end(pkt)]
        return pkt

    # feeding
    def __call__(self, line: str, at: float | None = None) -> Verdict:
        """Put one packet on the wire at `at` seconds after the start (default: one
        `step` after the previous packet); returns the tracker's verdict."""
        self.t = self.t0 + at if at is not None else self.t + self.step_s
        pkt = self.packet(line)
        self.log.append(Packet(pkt, self.t, line))
        v = self.tracker.feed(pkt, self.t)
        assert isinstance(v, Verdict)
        self.verdicts.append(v)
        return v

    def step(self, line: str, at: float | None = None, *, verdict: Verdict = OK, **want: Any) -> dict:
        """One figure line: the packet, then its verdict and the connection afterwards
        (`want` keys: any `flow_records` field, with TrackerState/ConnState values)."""
        v = self(line, at)
        assert v == verdict, f"{line!r}: verdict {v.name}, expected {verdict.name}"
        rec = self.conn()
        got = {k: rec[k] for k in want}
        expected = {k: (x.name if isinstance(x, (TrackerState, ConnState, EndReason)) else x)
                    for k, x in want.items()}
        assert got == expected, f"after {line!r}"
        return rec

    # looking
    def rows(self) -> list[dict]:
        return list(flow_records(self.tracker.connections()))

    def raw(self) -> np.void:
        """The FLOW_DTYPE row of the wire's connection (microsecond RTTs, payload bytes)."""
        arr = self.tracker.connections()
        mine = arr[((arr["orig_p"] == self.cport) & (arr["resp_p"] == self.sport))
                   | ((arr["orig_p"] == self.sport) & (arr["resp_p"] == self.cport))]
        assert len(mine) == 1, f"expected one live connection, got {len(mine)}"
        return mine[0]

    def conn(self) -> dict:
        """The connection record of the wire's 4-tuple (there must be exactly one)."""
        mine = [r for r in self.rows() if {r["orig_p"], r["resp_p"]} == {self.cport, self.sport}]
        assert len(mine) == 1, f"expected one live connection, got {mine}"
        return mine[0]

    @property
    def state(self) -> TrackerState:
        return TrackerState[self.conn()["state"]]

    @property
    def history(self) -> str:
        return self.conn()["history"]

    def expire(self, at: float) -> list[dict]:
        return list(flow_records(self.tracker.expire(self.t0 + at)))

    def batch(self) -> tuple[bytes, np.ndarray, np.ndarray, np.ndarray]:
        """Everything the wire saw, as feed_batch(buffer, offsets, lengths, ts_ns) arguments."""
        return as_batch(self.log)


def as_batch(packets: list[Packet]) -> tuple[bytes, np.ndarray, np.ndarray, np.ndarray]:
    lens = np.array([len(p.data) for p in packets], dtype=np.int64)
    offs = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
    ts_ns = np.array([round(p.ts * 1e6) * 1000 for p in packets], dtype=np.int64)
    return b"".join(p.data for p in packets), offs, lens, ts_ns


def handshake(w: Wire, c: int = 100, s: int = 300, *, opts: str = "", at: float = 0.0, rtt: float = 0.010) -> None:
    """SYN, SYN-ACK, ACK with ISNs c and s (no assertions: scenarios that start established)."""
    assert w(f"C > S  SYN seq={c} win=64240 {opts}", at) == OK
    assert w(f"S > C  SYN|ACK seq={s} ack={c + 1} win=65160 {opts}", at + rtt) == OK
    assert w(f"C > S  ACK seq={c + 1} ack={s + 1} win=502", at + 2 * rtt) == OK
