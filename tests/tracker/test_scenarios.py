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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fasttcp
from fasttcp import (
    FLOW_DTYPE,
    TRACKER_EVENT_DTYPE,
    ConnState,
    EndReason,
    Flags,
    Tracker,
    TrackerState,
    TrackerTimeouts,
    Verdict,
    flow_records,
)
from fasttcp.tracker.vocabulary import LIKELY_SERVER_PORTS

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
        src = m.group(1)                   # dst is the other side (checked above)
        flags = 0
        if m.group(3) != "NONE":
            for name in m.group(3).split("|"):
                flags |= Flags[name]
        kv: dict[str, Any] = {}
        for tok in m.group(4).split():
            k, sep, v = tok.partition("=")
            kv[k] = v if sep else True
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


def close_from(w: Wire, closer: str, at: float = 1.0) -> None:
    """The four-way close of a connection set up by `handshake` (no assertions)."""
    if closer == "C":
        lines = ["C > S  FIN|ACK seq=101 ack=301 win=502", "S > C  ACK seq=301 ack=102 win=509",
                 "S > C  FIN|ACK seq=301 ack=102 win=509", "C > S  ACK seq=102 ack=302 win=502"]
    else:
        lines = ["S > C  FIN|ACK seq=301 ack=101 win=509", "C > S  ACK seq=101 ack=302 win=502",
                 "C > S  FIN|ACK seq=101 ack=302 win=502", "S > C  ACK seq=302 ack=102 win=509"]
    for i, line in enumerate(lines):
        assert w(line, at + i * 0.010) == OK


# ---- the DSL itself ----

def test_wire_builds_what_the_line_says():
    w = Wire()
    seg = fasttcp.parse(w.packet("S > C  SYN|ACK seq=4294967296 ack=101 win=1000 mss=1400 ws=7 sackok ts=5/9 len=3"))
    assert (str(seg.src), seg.src_port, str(seg.dst), seg.dst_port) == (SERVER, SERVER_PORT, CLIENT, CLIENT_PORT)
    assert (seg.seq, seg.ack, seg.window, Flags(seg.flags)) == (0, 101, 1000, Flags.SYN | Flags.ACK)
    assert (seg.options.mss, seg.options.wscale, seg.options.sack_permitted) == (1400, 7, True)
    assert seg.options.timestamp == (5, 9) and len(bytes(seg.payload)) == 3
    bad = w.packet("C > S  ACK seq=1 ack=2 badsum")
    with pytest.raises(fasttcp.BadChecksum):
        fasttcp.parse(bad)
    cut = w.packet("C > S  ACK seq=1 ack=2 len=100 cut")
    assert len(cut) == 40                                  # IPv4 + TCP headers, payload not captured
    with pytest.raises(ValueError):
        w.packet("C > C  ACK")
    with pytest.raises(ValueError):
        w.packet("C > S  ACK sq=1")


# ---- opening: RFC 9293 3.5 ----

def test_three_way_handshake():                            # RFC 9293 figure 6
    w = Wire()
    #       client                                                     conntrack / Zeek
    w.step("C > S  SYN seq=100 win=64240 mss=1460 ws=7 sackok", at=0.000,
           state=SYN_SENT, history="S", conn_state=S0)
    assert w.raw()["rtt_syn_synack"] == NOT_MEASURED
    w.step("S > C  SYN|ACK seq=300 ack=101 win=65160 mss=1460 ws=7 sackok", at=0.020,
           state=SYN_RECV, history="Sh", conn_state=S1)
    row = w.raw()
    assert row["rtt_syn_synack"] == 20_000 and row["rtt_synack_ack"] == NOT_MEASURED
    w.step("C > S  ACK seq=101 ack=301 win=502", at=0.055,
           state=ESTABLISHED, history="ShA", conn_state=S1)
    row = w.raw()
    assert (row["rtt_syn_synack"], row["rtt_synack_ack"]) == (20_000, 35_000)     # microseconds
    rec = w.conn()
    assert (rec["orig_h"], rec["orig_p"], rec["resp_h"], rec["resp_p"]) == (CLIENT, CLIENT_PORT, SERVER, SERVER_PORT)
    # options: 12 bytes on the SYNs
    assert (rec["orig_pkts"], rec["resp_pkts"], rec["orig_ip_bytes"], rec["resp_ip_bytes"]) == (2, 1, 52 + 40, 52)
    assert rec["end_reason"] == "LIVE" and rec["duration"] == pytest.approx(0.055)
    st = w.tracker.stats
    assert st["created"] == 1 and st["rtt_samples"] == 1 and st["verdicts"] == {"OK": 3} and st["live"] == 1
    assert w.tracker.connections().dtype == FLOW_DTYPE


def test_handshake_ack_for_another_synack_is_no_rtt_sample():
    w = Wire()
    w("C > S  SYN seq=100", 0.0)
    w("S > C  SYN|ACK seq=300 ack=101", 0.010)
    w("C > S  ACK seq=101 ack=999 win=502", 0.020)         # does not acknowledge the SYN-ACK
    assert w.raw()["rtt_synack_ack"] == NOT_MEASURED
    w("C > S  ACK seq=101 ack=301 win=502", 0.045)
    assert w.raw()["rtt_synack_ack"] == 35_000


def test_synack_that_does_not_ack_the_syn_is_no_rtt_sample():
    w = Wire()
    w("C > S  SYN seq=100", 0.0)
    assert w("S > C  SYN|ACK seq=300 ack=999", 0.005) == INVALID
    assert w("S > C  SYN|ACK seq=300 ack=101", 0.020) == OK
    assert w("C > S  ACK seq=101 ack=301", 0.030) == OK
    assert (w.raw()["rtt_syn_synack"], w.raw()["rtt_synack_ack"]) == (20_000, 10_000)


# ---- closing: RFC 9293 3.6 ----

@pytest.mark.parametrize("closer, lines, history", [
    ("client", ["C > S  FIN|ACK seq=101 ack=301 win=502", "S > C  ACK seq=301 ack=102 win=509",
                "S > C  FIN|ACK seq=301 ack=102 win=509", "C > S  ACK seq=102 ack=302 win=502"],
     ["ShAF", "ShAFa", "ShAFaf", "ShAFaf"]),
    ("server", ["S > C  FIN|ACK seq=301 ack=101 win=509", "C > S  ACK seq=101 ack=302 win=502",
                "C > S  FIN|ACK seq=101 ack=302 win=502", "S > C  ACK seq=302 ack=102 win=509"],
     ["ShAf", "ShAf", "ShAfF", "ShAfFa"]),
])
def test_four_way_close(closer, lines, history):           # RFC 9293 figure 12
    w = Wire()
    handshake(w)
    w.step(lines[0], at=1.00, state=FIN_WAIT, history=history[0], conn_state=S2 if closer == "client" else S3)
    w.step(lines[1], at=1.01, state=CLOSE_WAIT, history=history[1])
    w.step(lines[2], at=1.02, state=LAST_ACK, history=history[2], conn_state=SF)
    w.step(lines[3], at=1.03, state=TIME_WAIT, history=history[3], conn_state=SF)
    # the last ACK after both FINs does not count in the duration (Zeek)
    assert w.raw()["end_us"] - w.raw()["start_us"] == 1_020_000


@pytest.mark.parametrize("msl", [30, 60, 120])
def test_time_wait_lasts_exactly_two_msl(msl):
    w = Wire(timeouts=TrackerTimeouts(msl=msl))
    handshake(w)
    close_from(w, "C", at=1.0)                             # the last ACK at 1.030
    assert w.state is TIME_WAIT
    assert w.expire(1.030 + 2 * msl - 0.000001) == []
    assert len(w.tracker) == 1
    (row,) = w.expire(1.030 + 2 * msl)
    assert (row["end_reason"], row["state"], row["conn_state"], row["history"]) == (
        "TIMEOUT", "TIME_WAIT", "SF", "ShAFaf")
    assert len(w.tracker) == 0 and w.tracker.stats["timed_out"] == 1
    assert w.expire(1.030 + 4 * msl) == []                 # reported once


def test_time_wait_default_is_conntrack_120s():
    assert TrackerTimeouts().time_wait == 120.0 and TrackerTimeouts.zeek().time_wait == 5.0
    w = Wire()
    handshake(w)
    close_from(w, "S", at=1.0)
    assert w.expire(121.029999) == [] and len(w.expire(121.030)) == 1


def test_time_wait_expires_on_packet_time_too():
    t = Tracker(8, seed=1, timeouts=TrackerTimeouts(msl=30))
    a, b = Wire(t, cport=40001), Wire(t, cport=40002)
    handshake(a)
    close_from(a, "C", at=1.0)
    b("C > S  SYN seq=7", at=61.02)                       # 1 ms before a's deadline: nothing
    assert len(t.finished()) == 0
    b("C > S  SYN seq=7", at=61.1)                        # past it (next timer tick)
    (row,) = flow_records(t.finished())
    assert (row["orig_p"], row["end_reason"], row["state"]) == (40001, "TIMEOUT", "TIME_WAIT")


def test_half_close_server_keeps_sending():                # RFC 9293 3.6 case 1, half-duplex close
    w = Wire()
    handshake(w)
    w.step("C > S  FIN|ACK seq=101 ack=301 win=502", at=1.0, state=FIN_WAIT, history="ShAF", conn_state=S2)
    w.step("S > C  ACK seq=301 ack=102 win=509", state=CLOSE_WAIT, history="ShAFa")
    w.step("S > C  PSH|ACK seq=301 ack=102 win=509 len=1000", state=CLOSE_WAIT, history="ShAFad", conn_state=S2)
    w.step("C > S  ACK seq=102 ack=1301 win=502", state=CLOSE_WAIT)
    w.step("S > C  PSH|ACK seq=1301 ack=102 win=509 len=500", state=CLOSE_WAIT)
    w.step("C > S  ACK seq=102 ack=1801 win=502", state=CLOSE_WAIT)
    w.step("S > C  FIN|ACK seq=1801 ack=102 win=509", state=LAST_ACK, history="ShAFadf", conn_state=SF)
    w.step("C > S  ACK seq=102 ack=1802 win=502", state=TIME_WAIT, conn_state=SF)
    rec, raw = w.conn(), w.raw()
    assert (rec["orig_pkts"], rec["resp_pkts"]) == (6, 5)
    assert (rec["orig_bytes"], rec["resp_bytes"]) == (0, 1500)
    assert (raw["orig_payload"], raw["resp_payload"]) == (0, 1500)
    assert (rec["orig_ip_bytes"], rec["resp_ip_bytes"]) == (6 * 40, 5 * 40 + 1500)
    assert (rec["orig_retrans"], rec["resp_retrans"], rec["missed_bytes"]) == (0, 0, 0)
    assert w.verdicts == [OK] * 11


def test_simultaneous_open_rfc9293_figure_7():
    w = Wire()
    w.step("C > S  SYN seq=100", state=SYN_SENT)
    w.step("S > C  SYN seq=300", state=SYN_SENT2)
    w.step("C > S  SYN|ACK seq=100 ack=301", state=SYN_RECV)
    w.step("S > C  SYN|ACK seq=300 ack=101", verdict=IGNORED, state=SYN_RECV)
    w.step("C > S  ACK seq=101 ack=301", state=ESTABLISHED)
    assert w.tracker.stats["created"] == 1 and len(w.tracker.finished()) == 0


@pytest.mark.parametrize("order", ["originator SYN-ACK first", "responder SYN-ACK first"])
def test_simultaneous_open_conntrack_path(order):
    # Both SYNs carry the same ISN, so Zeek's reuse rule keeps one connection and the
    # conntrack path of section 7 shows: SS -> S2 -> SR -> ES
    w = Wire(events=True)
    w.step("C > S  SYN seq=100", state=SYN_SENT, history="S", conn_state=S0)
    w.step("S > C  SYN seq=100", state=SYN_SENT2, history="Ss", conn_state=S1)   # Zeek: both ESTABLISHED
    if order == "originator SYN-ACK first":
        w.step("C > S  SYN|ACK seq=100 ack=101", state=SYN_RECV)
        w.step("S > C  SYN|ACK seq=100 ack=101", verdict=IGNORED, state=SYN_RECV)   # REPLY SYN-ACK in SR
        w.step("C > S  ACK seq=101 ack=101", state=ESTABLISHED)                     # ORIG ACK: SR -> ES
        w.step("S > C  ACK seq=101 ack=101", state=ESTABLISHED, history="SsAa", conn_state=S1)
    else:
        w.step("S > C  SYN|ACK seq=100 ack=101", state=SYN_RECV)                   # REPLY SYN-ACK: S2 -> SR
        w.step("C > S  SYN|ACK seq=100 ack=101", state=SYN_RECV)                   # ORIG SYN-ACK: SR -> SR
        w.step("S > C  ACK seq=101 ack=101", state=ESTABLISHED)                     # REPLY ACK promoted
        w.step("C > S  ACK seq=101 ack=101", state=ESTABLISHED, history="SsaA", conn_state=S1)
    changes = [(TrackerState(e["old_state"]), TrackerState(e["new_state"])) for e in w.tracker.events()]
    assert changes == [(NONE, SYN_SENT), (SYN_SENT, SYN_SENT2), (SYN_SENT2, SYN_RECV), (SYN_RECV, ESTABLISHED)]
    assert w.tracker.stats["created"] == 1


def test_simultaneous_close():                             # RFC 9293 figure 13
    w = Wire()
    handshake(w)
    w.step("C > S  FIN|ACK seq=101 ack=301 win=502", at=1.0, state=FIN_WAIT, history="ShAF")
    w.step("S > C  FIN|ACK seq=301 ack=101 win=509", state=LAST_ACK, history="ShAFf", conn_state=SF)
    w.step("C > S  ACK seq=102 ack=302 win=502", state=TIME_WAIT)
    w.step("S > C  ACK seq=302 ack=102 win=509", state=TIME_WAIT, history="ShAFfa", conn_state=SF)


# ---- resets: RFC 9293 3.5.2 ----

def test_syn_answered_by_rst_is_rej():                     # RFC 9293 3.5.2, connection refused
    w = Wire()
    w.step("C > S  SYN seq=100", at=0.0, state=SYN_SENT, history="S", conn_state=S0)
    w.step("S > C  RST|ACK seq=0 ack=101 win=0", at=0.01, state=CLOSE, history="Sr", conn_state=REJ)
    assert w.expire(10.009999) == []
    (row,) = w.expire(10.01)                               # CLOSE lasts 10 s
    assert (row["conn_state"], row["end_reason"]) == ("REJ", "TIMEOUT")


@pytest.mark.parametrize("line, history, conn_state", [
    ("C > S  RST seq=101 win=0", "ShAR", RSTO),
    ("C > S  RST|ACK seq=101 ack=301 win=0", "ShAR", RSTO),
    ("S > C  RST seq=301 win=0", "ShAr", RSTR),
    ("S > C  RST|ACK seq=301 ack=101 win=0", "ShAr", RSTR),
])
def test_rst_on_established(line, history, conn_state):
    w = Wire()
    handshake(w)
    w.step(line, at=1.0, state=CLOSE, history=history, conn_state=conn_state)
    assert w.expire(10.999999) == []
    (row,) = w.expire(11.0)
    assert (row["state"], row["conn_state"]) == ("CLOSE", conn_state.name)


def test_syn_then_originator_rst_is_rstos0():
    w = Wire()
    w.step("C > S  SYN seq=100", state=SYN_SENT, conn_state=S0)
    w.step("C > S  RST seq=101 win=0", state=CLOSE, history="SR", conn_state=RSTOS0)


def test_rst_below_what_the_peer_acked_is_invalid():
    w = Wire()
    handshake(w)
    w.step("C > S  PSH|ACK seq=101 ack=301 win=502 len=100", at=1.0, state=ESTABLISHED)
    w.step("S > C  ACK seq=301 ack=201 win=509", state=ESTABLISHED, history="ShADa")
    # seq 150 is below 201, which the server already acknowledged: old or forged
    w.step("C > S  RST seq=150 win=0", verdict=INVALID, state=ESTABLISHED)
    assert w.tracker.stats["out_of_window"] == 1
    assert w.expire(20.0) == []                            # no CLOSE timer was armed
    w.step("C > S  RST seq=201 win=0", at=21.0, state=CLOSE)     # the exact one is believed


def test_in_window_inexact_rst_keeps_established():
    w = Wire()
    handshake(w)
    w("C > S  PSH|ACK seq=101 ack=301 win=502 len=100", at=1.0)
    w("S > C  ACK seq=301 ack=201 win=509", at=1.01)
    w.step("C > S  RST seq=250 win=0", at=2.0, state=ESTABLISHED)
    assert len(w.expire(12.0)) == 1                        # but with CLOSE's 10 s timer


# ---- old duplicates: RFC 9293 figures 8-9 ----

def test_rfc9293_figure_8_old_duplicate_syn_recovery():
    w = Wire()
    w.step("C > S  SYN seq=90", state=SYN_SENT)                          # 2: the old duplicate
    w.step("S > C  SYN|ACK seq=300 ack=91", state=SYN_RECV, history="Sh")  # 3: B answers it
    w.step("C > S  RST seq=91 win=0", state=CLOSE, history="ShR")        # 4: A resets it
    w.step("C > S  SYN seq=100", state=SYN_SENT, history="S")            # 5: A's real SYN reopens
    (old,) = flow_records(w.tracker.finished())
    assert (old["history"], old["end_reason"], old["state"]) == ("ShR", "REUSED", "CLOSE")
    w.step("S > C  SYN|ACK seq=400 ack=101", state=SYN_RECV)             # 6
    w.step("C > S  ACK seq=101 ack=401", state=ESTABLISHED, history="ShA")  # 7
    assert w.tracker.stats["created"] == 2 and w.tracker.stats["reused"] == 1


def test_late_duplicate_syn_on_established_is_ignored():
    w = Wire()
    handshake(w)
    w.step("C > S  SYN seq=100 win=64240", at=1.0, verdict=IGNORED, state=ESTABLISHED, history="ShA")
    w.step("C > S  PSH|ACK seq=101 ack=301 win=502 len=10", state=ESTABLISHED, history="ShAD")
    assert w.tracker.stats["created"] == 1 and len(w.tracker.finished()) == 0


def test_old_duplicate_syn_on_established_is_ignored():
    w = Wire()
    handshake(w)
    w.step("C > S  SYN seq=90", at=1.0, verdict=IGNORED, state=ESTABLISHED)
    w.step("C > S  PSH|ACK seq=101 ack=301 win=502 len=10", state=ESTABLISHED)


# ---- 4-tuple reuse ----

def test_port_reuse_after_time_wait():
    w = Wire()
    handshake(w)
    close_from(w, "C", at=1.0)
    assert w.state is TIME_WAIT
    w.step("C > S  SYN seq=5000", at=10.0, state=SYN_SENT, history="S", conn_state=S0)
    (old,) = flow_records(w.tracker.finished())
    assert (old["end_reason"], old["conn_state"], old["state"], old["history"]) == (
        "REUSED", "SF", "TIME_WAIT", "ShAFaf")
    assert old["orig_pkts"] == 4 and old["resp_pkts"] == 3
    w.step("S > C  SYN|ACK seq=9000 ack=5001", state=SYN_RECV, history="Sh")
    w.step("C > S  ACK seq=5001 ack=9001", state=ESTABLISHED, history="ShA")
    new = w.conn()
    assert new["ts"] == pytest.approx(1010.0) and (new["orig_pkts"], new["resp_pkts"]) == (2, 1)
    st = w.tracker.stats
    assert (st["created"], st["reused"], st["live"]) == (2, 1, 1)


def test_server_reopens_the_4_tuple_after_time_wait():
    # conntrack: a REPLY SYN in TIME_WAIT reopens with the old server as ORIGINAL (spec 4.1);
    # Zeek: any SYN on a closed connection is a new one
    w = Wire()
    handshake(w)
    close_from(w, "C", at=1.0)
    w.step("S > C  SYN seq=7000", at=5.0, state=SYN_SENT, history="S", orig_p=SERVER_PORT, resp_p=CLIENT_PORT)
    w.step("C > S  SYN|ACK seq=8000 ack=7001", state=SYN_RECV, history="Sh")
    w.step("S > C  ACK seq=7001 ack=8001", state=ESTABLISHED, history="ShA", conn_state=S1)
    (old,) = flow_records(w.tracker.finished())
    assert (old["orig_p"], old["end_reason"], old["conn_state"]) == (CLIENT_PORT, "REUSED", "SF")


def test_retransmitted_syn_after_rej_is_a_new_attempt():
    # zeek spec 8.4: a SYN answered by RST and then retransmitted (same ISN) is a second REJ row
    w = Wire()
    w.step("C > S  SYN seq=100", at=0.0, state=SYN_SENT)
    w.step("S > C  RST|ACK seq=0 ack=101 win=0", at=0.001, state=CLOSE, conn_state=REJ)
    w.step("C > S  SYN seq=100", at=1.0, state=SYN_SENT, history="S", conn_state=S0)
    w.step("S > C  RST|ACK seq=0 ack=101 win=0", at=1.001, state=CLOSE, history="Sr", conn_state=REJ)
    rows = list(flow_records(w.tracker.finished())) + list(flow_records(w.tracker.close()))
    assert [(r["conn_state"], r["end_reason"]) for r in rows] == [("REJ", "REUSED"), ("REJ", "FLUSHED")]


def test_sequence_numbers_across_the_wrap():
    c, s = WRAP - 8, WRAP - 100                            # both sides cross 2**32
    w = Wire()
    handshake(w, c=c, s=s, opts=SCALED)
    w.step(f"C > S  PSH|ACK seq={c + 1} ack={s + 1} win=502 len=100", at=1.0, state=ESTABLISHED)
    w.step(f"S > C  PSH|ACK seq={s + 1} ack={c + 101} win=509 len=300", state=ESTABLISHED)
    w.step(f"C > S  ACK seq={c + 101} ack={s + 301} win=502", state=ESTABLISHED)
    w.step(f"C > S  FIN|ACK seq={c + 101} ack={s + 301} win=502", state=FIN_WAIT)
    w.step(f"S > C  FIN|ACK seq={s + 301} ack={c + 102} win=509", state=LAST_ACK)
    w.step(f"C > S  ACK seq={c + 102} ack={s + 302} win=502", state=TIME_WAIT, history="ShADdFf", conn_state=SF,
           orig_bytes=100, resp_bytes=300, missed_bytes=0, orig_retrans=0, resp_retrans=0)
    assert w.tracker.stats["out_of_window"] == 0
    # conntrack's window check works across the wrap too: far beyond it is still INVALID
    w.step(f"S > C  PSH|ACK seq={s + 200301} ack={c + 102} win=509 len=10", verdict=INVALID)


def test_close_flushes_and_the_tracker_stays_usable():
    w = Wire()
    handshake(w)
    (row,) = flow_records(w.tracker.close())
    assert (row["end_reason"], row["state"], row["history"]) == ("FLUSHED", "ESTABLISHED", "ShA")
    assert len(w.tracker) == 0 and len(w.tracker.close()) == 0
    handshake(w, at=5.0)
    assert w.state is ESTABLISHED and w.tracker.stats["created"] == 2


def test_packets_that_do_not_parse_create_nothing():
    w = Wire()
    not_tcp = bytearray(w.packet("C > S  SYN seq=1"))
    not_tcp[9] = 17                                        # UDP
    got = [w.tracker.feed(p, 1.0) for p in (b"", b"\x00" * 10, bytes(not_tcp))]
    assert got == [Verdict.TRUNCATED, Verdict.BAD_VERSION, Verdict.NOT_TCP]
    assert len(w.tracker) == 0 and w.tracker.stats["created"] == 0 and w.tracker.stats["packets"] == 3


# ---- midstream ----

def test_midstream_pickup_loose():
    w = Wire()
    w.step("C > S  PSH|ACK seq=1000 ack=2000 win=502 len=10", state=ESTABLISHED, history="D", conn_state=OTH)
    w.step("S > C  ACK seq=2000 ack=1010 win=509", state=ESTABLISHED, history="Da", conn_state=OTH)
    w.step("S > C  PSH|ACK seq=2000 ack=1010 len=20", state=ESTABLISHED, history="Dad")
    rec = w.conn()
    assert (rec["orig_p"], rec["orig_bytes"], rec["resp_bytes"]) == (CLIENT_PORT, 10, 20)
    assert rec["rtt_syn_synack"] is None and rec["rtt_synack_ack"] is None


def test_midstream_pickup_starting_with_a_pure_ack():
    w = Wire()
    w.step("C > S  ACK seq=1000 ack=2000 win=502", state=ESTABLISHED, history="A", conn_state=OTH)
    w.step("S > C  PSH|ACK seq=2000 ack=1000 len=20", state=ESTABLISHED, history="Ad", conn_state=OTH)


def test_midstream_strict_is_untracked():
    w = Wire(loose=False)
    assert w("C > S  PSH|ACK seq=1000 ack=2000 win=502 len=10") == Verdict.UNTRACKED
    assert w("S > C  ACK seq=2000 ack=1010 win=509") == Verdict.UNTRACKED
    assert w("S > C  FIN|ACK seq=2000 ack=1010 win=509") == Verdict.UNTRACKED
    assert w("S > C  SYN|ACK seq=2000 ack=1010 win=509") == Verdict.UNTRACKED
    assert len(w.tracker) == 0 and w.tracker.connections().size == 0
    st = w.tracker.stats
    assert st["created"] == 0 and st["verdicts"] == {"UNTRACKED": 4}
    w.step("C > S  SYN seq=100", state=SYN_SENT)           # a SYN still starts one


# ---- one-sided traffic and timers ----

@pytest.mark.parametrize("timeouts, cap", [(None, 300.0), (TrackerTimeouts(unacknowledged=50.0), 50.0)])
def test_one_sided_established_is_capped_at_unacknowledged(timeouts, cap):
    w = Wire(timeouts=timeouts)
    w.step("C > S  PSH|ACK seq=1000 ack=2000 win=502 len=10", at=0.0, state=ESTABLISHED)
    w.step("C > S  PSH|ACK seq=1010 ack=2000 win=502 len=10", at=1.0, state=ESTABLISHED, history="D")
    assert w.expire(1.0 + cap - 0.000001) == []
    (row,) = w.expire(1.0 + cap)
    assert (row["end_reason"], row["state"], row["conn_state"], row["orig_pkts"], row["resp_pkts"]) == \
        ("TIMEOUT", "ESTABLISHED", "OTH", 2, 0)


def test_a_reply_lifts_the_unacknowledged_cap():
    w = Wire()
    w("C > S  PSH|ACK seq=1000 ack=2000 win=502 len=10", at=0.0)
    w("S > C  ACK seq=2000 ack=1010 win=509", at=1.0)
    assert w.expire(1.0 + 300.0) == []
    assert w.expire(1.0 + 432000 - 0.000001) == []
    assert len(w.expire(1.0 + 432000)) == 1


def test_zeek_preset_attempt_timer_gives_s0():
    w = Wire(timeouts="zeek")
    w.step("C > S  SYN seq=100", at=0.0, state=SYN_SENT, history="S", conn_state=S0)
    # one-sided capture: the client goes on without a SYN-ACK (conntrack: ORIG ACK in SS is INVALID)
    w.step("C > S  ACK seq=101 ack=301 win=502", at=1.0, verdict=INVALID, state=SYN_SENT, history="SA")
    w.step("C > S  PSH|ACK seq=101 ack=301 win=502 len=10", at=2.0, verdict=INVALID, history="SAD", conn_state=S0)
    assert w.expire(4.999999) == []
    (row,) = w.expire(5.0)
    assert (row["history"], row["conn_state"], row["end_reason"], row["orig_pkts"]) == ("SAD", "S0", "TIMEOUT", 3)


def test_syn_retransmission_does_not_extend_syn_sent():
    w = Wire()
    w("C > S  SYN seq=100", at=0.0)
    w.step("C > S  SYN seq=100", at=60.0, state=SYN_SENT, history="S")
    assert w.expire(119.999999) == []
    (row,) = w.expire(120.0)
    assert (row["end_reason"], row["orig_pkts"], row["conn_state"]) == ("TIMEOUT", 2, "S0")


def test_syn_recv_times_out_after_60s():
    w = Wire()
    w("C > S  SYN seq=100", at=0.0)
    w("S > C  SYN|ACK seq=300 ack=101", at=1.0)
    assert w.expire(60.999999) == []
    (row,) = w.expire(61.0)
    assert (row["state"], row["history"], row["end_reason"]) == ("SYN_RECV", "Sh", "TIMEOUT")


def test_unacknowledged_data_caps_established_timeout():
    w = Wire()
    handshake(w)
    w("C > S  PSH|ACK seq=101 ack=301 win=502 len=100", at=1.0)
    assert len(w.expire(301.0)) == 1


def _same_ack_again(w: Wire, times: int, at: float) -> None:
    for i in range(times):
        assert w("S > C  ACK seq=301 ack=101 win=509", at=at + i * 0.2) == OK


@pytest.mark.parametrize("repeats, ends", [(3, False), (4, True)])
def test_the_same_segment_again_and_again_caps_the_timeout_at_retrans(repeats, ends):
    # conntrack's tcp_max_retrans: the 4th identical ACK-class segment (the 3rd repeat)
    # gives the connection nf_conntrack_tcp_timeout_max_retrans (300 s), not 5 days
    w = Wire()
    handshake(w)
    _same_ack_again(w, repeats, at=1.0)
    last = 1.0 + (repeats - 1) * 0.2
    assert w.expire(last + 299.0) == []
    assert [r["state"] for r in w.expire(last + 300.5)] == (["ESTABLISHED"] if ends else [])


def test_a_different_segment_ends_the_retransmission_cap():
    w = Wire()
    handshake(w)
    _same_ack_again(w, 4, at=1.0)
    assert w("C > S  ACK seq=101 ack=301 win=502", at=2.0) == OK        # something new
    assert w.expire(2.0 + 301.0) == [] and w.state is TrackerState.ESTABLISHED


def test_retrans_cap_is_a_timeout_setting():
    w = Wire(timeouts=TrackerTimeouts(retrans=20.0))
    handshake(w)
    _same_ack_again(w, 4, at=1.0)
    assert len(w.expire(1.6 + 20.5)) == 1
    z = Wire(timeouts="zeek")                  # Zeek has no such rule: its 5 minutes stand
    handshake(z)
    _same_ack_again(z, 4, at=1.0)
    assert z.expire(1.6 + 299.0) == [] and len(z.expire(1.6 + 300.5)) == 1


# ---- window tracking (conntrack tcp_in_window) ----

SCALED = "mss=1460 ws=7 sackok"


def test_window_scaling_widens_the_acceptable_range():
    # client window 502 << 7 = 64256 after the handshake: the server may send up to
    # seq 301 + 64256 = 64557
    w = Wire()
    handshake(w, opts=SCALED)
    w.step("S > C  PSH|ACK seq=60301 ack=101 win=509 len=1000", at=1.0, state=ESTABLISHED)
    w.step("S > C  PSH|ACK seq=64557 ack=101 win=509 len=1000")             # starts at the edge
    assert w.tracker.stats["out_of_window"] == 0


@pytest.mark.parametrize("opts", ["", "ws=7 sackok"], ids=["no-wscale", "wscale-one-side"])
def test_without_negotiated_scaling_the_raw_window_counts(opts):
    # 502 unscaled: the edge is 301 + 502 = 803; 60301 overshoots it by less than the
    # client's largest window (its SYN's 64240): conntrack IGNOREs it ("more than expected")
    w = Wire()
    assert w(f"C > S  SYN seq=100 win=64240 {opts}", 0.0) == OK
    assert w("S > C  SYN|ACK seq=300 ack=101 win=65160 mss=1460", 0.01) == OK
    assert w("C > S  ACK seq=101 ack=301 win=502", 0.02) == OK
    w.step("S > C  PSH|ACK seq=60301 ack=101 win=509 len=1000", at=1.0, verdict=IGNORED, state=ESTABLISHED)
    assert w.tracker.stats["out_of_window"] == 1


@pytest.mark.parametrize("liberal, verdict", [(False, INVALID), (True, OK)])
def test_segment_far_beyond_the_window(liberal, verdict):
    w = Wire(liberal=liberal)
    handshake(w, opts=SCALED)
    # 200000 past the edge: more than the client's largest window, so not a small overshoot
    w.step("S > C  PSH|ACK seq=200301 ack=101 win=509 len=1000", at=1.0, verdict=verdict, state=ESTABLISHED)
    assert w.tracker.stats["out_of_window"] == (0 if liberal else 1)
    w.step("S > C  FIN|ACK seq=301 ack=101 win=509", state=FIN_WAIT)      # the connection goes on


def test_segment_a_little_beyond_the_window_is_ignored_then_its_ack_passes():
    w = Wire()
    handshake(w, opts=SCALED)
    w.step("S > C  PSH|ACK seq=64558 ack=101 win=509 len=1000", at=1.0, verdict=IGNORED)
    # conntrack remembered the overshoot (td_end = 65558), so the client's ACK of it is fine
    w.step("C > S  ACK seq=101 ack=65558 win=502", state=ESTABLISHED)
    w.step("C > S  ACK seq=101 ack=65559 win=502", verdict=INVALID)       # one byte more: never sent


def small_windows(w: Wire, *, sack: bool = True) -> None:
    """A handshake with 1000-byte windows and no scaling (ISNs 100/300)."""
    o = "sackok" if sack else ""
    assert w(f"C > S  SYN seq=100 win=1000 {o}", 0.0) == OK
    assert w(f"S > C  SYN|ACK seq=300 ack=101 win=1000 {o}", 0.01) == OK
    assert w("C > S  ACK seq=101 ack=301 win=1000", 0.02) == OK


def test_old_retransmission_already_acked_is_ignored():
    w = Wire()
    small_windows(w)
    for i in range(3):
        w.step(f"S > C  PSH|ACK seq={301 + 1000 * i} ack=101 win=1000 len=1000", verdict=OK)
        w.step(f"C > S  ACK seq=101 ack={1301 + 1000 * i} win=1000", verdict=OK)
    # the first segment again: it ends (1301) more than a client window (1000) below the
    # server's highest end (3301) -- "SEQ under lower bound, already ACKed data retransmitted"
    w.step("S > C  PSH|ACK seq=301 ack=101 win=1000 len=1000", verdict=IGNORED, state=ESTABLISHED,
           history="ShAdt", resp_retrans=1)
    # the last segment again is within a window: accepted (and a retransmission for Zeek)
    w.step("S > C  PSH|ACK seq=2301 ack=101 win=1000 len=1000", verdict=OK, resp_retrans=2)


def test_ack_of_data_never_sent_is_invalid():
    w = Wire()
    small_windows(w)
    w.step("S > C  PSH|ACK seq=301 ack=101 win=1000 len=500", verdict=OK)            # server end: 801
    w.step("C > S  ACK seq=101 ack=802 win=1000", verdict=INVALID)                   # "ACK over upper bound"
    w.step("C > S  ACK seq=101 ack=801 win=1000", verdict=OK)


def test_sack_blocks_are_checked_against_data_seen():
    # conntrack takes the highest SACK right edge as the ack (spec 5.2): a SACK block
    # beyond what the server sent fails the same bound as a plain ACK would
    w = Wire()
    small_windows(w)
    w("S > C  PSH|ACK seq=301 ack=101 win=1000 len=500")                              # server end: 801
    w.step("C > S  ACK seq=101 ack=301 win=1000 sack=401-801", verdict=OK)
    w.step("C > S  ACK seq=101 ack=301 win=1000 sack=801-1301", verdict=INVALID)
    w.step("C > S  ACK seq=101 ack=301 win=1000 sack=401-802", verdict=INVALID)


def test_sack_blocks_ignored_without_sack_permitted():
    w = Wire()
    small_windows(w, sack=False)
    w("S > C  PSH|ACK seq=301 ack=101 win=1000 len=500")
    w.step("C > S  ACK seq=101 ack=301 win=1000 sack=801-1301", verdict=OK)


@pytest.mark.parametrize("sack, verdict", [("sack=801-1301", OK), ("", IGNORED)])
def test_sack_extends_the_senders_window(sack, verdict):
    # ack 301 + window 1000 allows the server up to 1301; with SACK 801-1301 the edge is
    # 1301 + 1000 = 2301, so a segment at 1801 is inside (without SACK: 500 bytes over)
    w = Wire()
    small_windows(w)
    w("S > C  PSH|ACK seq=301 ack=101 win=1000 len=500")
    w("S > C  PSH|ACK seq=801 ack=101 win=1000 len=500")
    w.step(f"C > S  ACK seq=101 ack=301 win=1000 {sack}", verdict=OK)
    w.step("S > C  PSH|ACK seq=1801 ack=101 win=1000 len=400", verdict=verdict, state=ESTABLISHED)


@pytest.mark.parametrize("flags, seq, letters", [
    ("NONE", 101, ""), ("FIN", 101, "F"), ("FIN|RST|ACK", 101, "I"), ("URG", 101, ""), ("RST|URG", 101, "R"),
    ("SYN|ACK|URG", 100, ""), ("SYN|FIN", 100, "Q"), ("SYN|RST", 100, "Q"),   # with the ISN: no Zeek reuse
])
def test_invalid_flag_combinations(flags, seq, letters):
    # conntrack's whitelist (spec 2.1); Zeek still sees the packet
    w = Wire()
    handshake(w)
    w.step(f"C > S  {flags} seq={seq} ack=301 win=502", at=1.0, verdict=INVALID, state=ESTABLISHED,
           history="ShA" + letters)


@pytest.mark.parametrize("flags", ["PSH|ACK", "ECE|ACK", "CWR|ACK", "URG|ACK", "AE|ACK", "ECE|CWR|PSH|ACK"])
def test_flags_conntrack_masks_out(flags):
    w = Wire()
    handshake(w)
    w.step(f"C > S  {flags} seq=101 ack=301 win=502", at=1.0, verdict=OK, state=ESTABLISHED)


# ---- checksums and truncation ----

def test_bad_checksum_only_leaves_a_c():
    w = Wire()
    handshake(w)
    before = w.conn()
    w.step("C > S  PSH|ACK seq=101 ack=301 win=502 len=10 badsum", at=1.0, verdict=Verdict.BAD_CHECKSUM,
           state=ESTABLISHED, history="ShAC", conn_state=S1)
    w.step("C > S  FIN|ACK seq=101 ack=301 win=502 badsum", verdict=Verdict.BAD_CHECKSUM,
           state=ESTABLISHED, history="ShAC")
    w.step("S > C  RST seq=301 badsum", verdict=Verdict.BAD_CHECKSUM, state=ESTABLISHED, history="ShACc",
           conn_state=S1)
    after = w.conn()
    for k in ("orig_pkts", "resp_pkts", "orig_ip_bytes", "resp_ip_bytes", "orig_bytes", "duration"):
        assert after[k] == before[k], k
    assert w.raw()["orig_payload"] == 0
    assert w.tracker.stats["verdicts"] == {"OK": 3, "BAD_CHECKSUM": 3}
    # and the good copy is processed as if the bad one had never been seen
    w.step("C > S  PSH|ACK seq=101 ack=301 win=502 len=10", verdict=OK, history="ShACcD", orig_pkts=3)


def test_bad_checksum_ignored_when_not_verifying():
    w = Wire(verify_checksum=False)
    handshake(w)
    w.step("C > S  PSH|ACK seq=101 ack=301 win=502 len=10 badsum", at=1.0, verdict=OK, history="ShAD",
           orig_pkts=3, orig_bytes=10)
    w.step("C > S  FIN|ACK seq=111 ack=301 win=502 badsum", verdict=OK, state=FIN_WAIT, history="ShADF",
           conn_state=S2)


def test_bad_checksum_letters_are_log_scaled():
    w = Wire()
    handshake(w)
    for n in range(1, 101):
        w("C > S  ACK seq=101 ack=301 win=502 badsum")
        if n in (1, 9):
            assert w.history == "ShAC"
        if n in (10, 99):
            assert w.history == "ShACC"                    # 'C' ten times gives "CC"
    assert w.history == "ShACCC" and w.conn()["orig_pkts"] == 2


def test_bad_checksum_syn_creates_a_connection_the_good_one_replaces():
    # Zeek >= 8.2: the connection exists before the checksum is checked (spec 2.4, 9.14)
    w = Wire()
    w.step("C > S  SYN seq=100 badsum", verdict=Verdict.BAD_CHECKSUM, state=NONE, history="C", conn_state=OTH,
           orig_pkts=0)
    w.step("C > S  SYN seq=100", verdict=OK, state=SYN_SENT, history="S", conn_state=S0)
    (old,) = flow_records(w.tracker.finished())
    assert (old["history"], old["conn_state"], old["end_reason"], old["orig_pkts"]) == ("C", "OTH", "REUSED", 0)


def test_truncated_capture_is_tracked_and_counted_from_the_ip_length():
    w = Wire()
    handshake(w)
    w("C > S  PSH|ACK seq=101 ack=301 win=502 len=1000 cut", at=1.0)   # snaplen: headers only
    assert w.state is ESTABLISHED and w.history == "ShAD"
    rec, raw = w.conn(), w.raw()
    assert rec["orig_pkts"] == 3 and rec["orig_ip_bytes"] == 40 + 40 + 1040
    assert rec["orig_bytes"] == 1000 and raw["orig_payload"] == 1000
    # conntrack saw the 1000 bytes: the server's ACK of them is in window
    w.step("S > C  ACK seq=301 ack=1101 win=509", verdict=OK, state=ESTABLISHED)
    # Zeek: acknowledged but never captured is a content gap (the originator's 'G')
    assert w.history == "ShADaG" and w.conn()["missed_bytes"] == 1000


def test_truncated_capture_verdict_is_truncated():
    w = Wire()
    handshake(w)
    assert w("C > S  PSH|ACK seq=101 ack=301 win=502 len=1000 cut", at=1.0) == Verdict.TRUNCATED


def test_truncated_tcp_header_is_not_tracked():
    w = Wire()
    pkt = w.packet("C > S  SYN seq=100 mss=1460")[:30]    # cut inside the TCP header
    assert w.tracker.feed(pkt, 1.0) == Verdict.TRUNCATED
    assert len(w.tracker) == 0 and w.tracker.stats["created"] == 0


# ---- a full table ----

def test_table_full_evicts_time_wait_then_embryonic():
    t = Tracker(2, seed=1)
    a, b, c, d = (Wire(t, cport=40001 + i) for i in range(4))
    handshake(a)
    close_from(a, "C", at=1.0)                             # a: TIME_WAIT
    assert b("C > S  SYN seq=100", at=2.0) == OK          # b: SYN_SENT
    assert c("C > S  SYN seq=100", at=3.0) == OK          # full: a (TIME_WAIT) goes first
    (row,) = flow_records(t.finished())
    assert (row["orig_p"], row["end_reason"], row["state"], row["conn_state"]) == (40001, "EVICTED", "TIME_WAIT", "SF")
    assert d("C > S  SYN seq=100", at=4.0) == OK          # then the oldest embryonic one: b
    (row,) = flow_records(t.finished())
    assert (row["orig_p"], row["end_reason"], row["state"]) == (40002, "EVICTED", "SYN_SENT")
    st = t.stats
    assert (st["evicted"], st["created"], st["live"]) == (2, 4, 2)
    assert sorted(r["orig_p"] for r in flow_records(t.connections())) == [40003, 40004]


def test_table_full_of_established_connections_refuses():
    t = Tracker(2, seed=1)
    a, b, c = (Wire(t, cport=40001 + i) for i in range(3))
    handshake(a)
    handshake(b, at=0.5)
    assert c("C > S  SYN seq=100", at=1.0) == Verdict.TABLE_FULL
    assert c("C > S  PSH|ACK seq=1 ack=1 len=3", at=1.1) == Verdict.TABLE_FULL
    assert len(t) == 2 and len(t.finished()) == 0
    st = t.stats
    assert st["evicted"] == 0 and st["created"] == 2 and st["verdicts"]["TABLE_FULL"] == 2
    assert {r["state"] for r in flow_records(t.connections())} == {"ESTABLISHED"}
    # existing connections are still tracked
    assert a("C > S  FIN|ACK seq=101 ack=301 win=502", at=2.0) == OK and a.state is FIN_WAIT


def test_table_full_after_a_close_has_room_again():
    t = Tracker(1, seed=1, timeouts=TrackerTimeouts(msl=1))
    a, b = Wire(t, cport=40001), Wire(t, cport=40002)
    handshake(a)
    assert b("C > S  SYN seq=100", at=0.5) == Verdict.TABLE_FULL
    close_from(a, "S", at=1.0)
    assert b("C > S  SYN seq=100", at=5.0) == OK          # a's TIME_WAIT ran out first
    (row,) = flow_records(t.finished())
    assert (row["orig_p"], row["end_reason"]) == (40001, "TIMEOUT")


# ---- events ----

def test_events_list_every_state_change():
    w = Wire()
    handshake(w)
    w("C > S  PSH|ACK seq=101 ack=301 win=502 len=10", at=0.5)   # no state change
    w("S > C  ACK seq=301 ack=111 win=509", at=0.6)              # no state change
    w.log.append(Packet(w.packet("C > S  NONE seq=111"), w.t0 + 0.7, "invalid: no event"))
    for i, line in enumerate(["C > S  FIN|ACK seq=111 ack=301 win=502", "S > C  ACK seq=301 ack=112 win=509",
                              "S > C  FIN|ACK seq=301 ack=112 win=509", "C > S  ACK seq=112 ack=302 win=502"]):
        w.log.append(Packet(w.packet(line), w.t0 + 1.0 + i * 0.01, line))
    t = Tracker(8, seed=3, events=True)
    buf, offs, lens, ts = w.batch()
    verdicts = t.feed_batch(buf, offs, lens, ts)
    assert [Verdict(v) for v in verdicts] == [OK] * 5 + [INVALID] + [OK] * 4
    ev = t.events()
    assert ev.dtype == TRACKER_EVENT_DTYPE
    got = [(int(e["packet"]), TrackerState(e["old_state"]), TrackerState(e["new_state"]), int(e["direction"]),
            Flags(int(e["tcp_flags"]))) for e in ev]
    assert got == [
        (0, NONE, SYN_SENT, 0, Flags.SYN),
        (1, SYN_SENT, SYN_RECV, 1, Flags.SYN | Flags.ACK),
        (2, SYN_RECV, ESTABLISHED, 0, Flags.ACK),
        (6, ESTABLISHED, FIN_WAIT, 0, Flags.FIN | Flags.ACK),
        (7, FIN_WAIT, CLOSE_WAIT, 1, Flags.ACK),
        (8, CLOSE_WAIT, LAST_ACK, 1, Flags.FIN | Flags.ACK),
        (9, LAST_ACK, TIME_WAIT, 0, Flags.ACK),
    ]
    assert list(ev["time_us"]) == [ts[i] // 1000 for i in (0, 1, 2, 6, 7, 8, 9)]
    assert len(set(ev["conn"])) == 1 and ev["conn"][0] == t.connections()["id"][0]
    assert len(t.events()) == 0                            # collected once
    assert t.stats["events_dropped"] == 0


def test_events_off_by_default():
    w = Wire()
    handshake(w)
    assert len(w.tracker.events()) == 0 and w.tracker.stats["events_dropped"] == 0


def test_max_events_within_one_batch():
    w = Wire()
    handshake(w)
    close_from(w, "C")
    t = Tracker(8, seed=3, events=True, max_events=2)
    buf, offs, lens, ts = w.batch()
    t.feed_batch(buf, offs, lens, ts)
    ev = t.events()
    assert [TrackerState(e) for e in ev["new_state"]] == [SYN_SENT, SYN_RECV]
    assert t.stats["events_dropped"] == 5


def test_max_events_between_events_calls():
    t = Tracker(8, seed=3, events=True, max_events=2)
    handshake(Wire(t))
    assert len(t.events()) == 2 and t.stats["events_dropped"] == 1


# ---- feed() and feed_batch() agree ----

def mixed_traffic() -> list[Packet]:
    """Several connections interleaved: handshakes, data, a reject, a midstream flow,
    a bad checksum, a close and a reuse."""
    t = Tracker(8, seed=1)
    a, b, c, m = Wire(t, cport=41000), Wire(t, cport=41001), Wire(t, cport=41002), Wire(t, cport=41003, sport=443)
    handshake(a)
    b("C > S  SYN seq=7", 0.005)
    b("S > C  RST|ACK seq=0 ack=8 win=0", 0.006)
    handshake(c, at=0.007, opts=SCALED)
    m("S > C  PSH|ACK seq=5000 ack=77 win=300 len=40", 0.1)
    a("C > S  PSH|ACK seq=101 ack=301 win=502 len=100", 0.2)
    c("S > C  PSH|ACK seq=200301 ack=101 win=509 len=10", 0.21)       # far out of window
    a("S > C  ACK seq=301 ack=201 win=509 badsum", 0.3)
    a("S > C  ACK seq=301 ack=201 win=509", 0.31)
    m("C > S  ACK seq=77 ack=5040 win=1000", 0.4)
    for i, line in enumerate(["C > S  FIN|ACK seq=201 ack=301 win=502", "S > C  FIN|ACK seq=301 ack=202 win=509",
                              "C > S  ACK seq=202 ack=302 win=502"]):
        a(line, 1.0 + i * 0.01)
    a("C > S  SYN seq=9999", 50.0)                        # reuse (TIME_WAIT still running)
    b("C > S  SYN seq=7", 200.0)                          # after CLOSE's timeout
    return a.log + b.log + c.log + m.log


def test_feed_and_feed_batch_agree():
    packets = sorted(mixed_traffic(), key=lambda p: p.ts)
    one = Tracker(8, seed=5, events=True)
    v1 = [one.feed(p.data, p.ts) for p in packets]
    fin1, live1, ev1 = one.finished(), one.connections(), one.events()
    two = Tracker(8, seed=5, events=True)
    buf, offs, lens, ts = as_batch(packets)
    v2 = two.feed_batch(buf, offs, lens, ts)
    assert v2.dtype == np.uint8 and [Verdict(v) for v in v2] == v1
    assert {Verdict.BAD_CHECKSUM, INVALID} <= set(v1)
    fin2, live2 = two.finished(), two.connections()
    assert fin1.tobytes() == fin2.tobytes()
    assert sorted(EndReason(r).name for r in fin1["end_reason"]) == ["REUSED", "TIMEOUT", "TIMEOUT"]
    assert live1.tobytes() == live2.tobytes() and len(live1) == 3
    # feed() events carry index 0 (a batch of one); everything else agrees
    ev2 = two.events()
    assert len(ev1) == len(ev2) > 0
    for f in ("time_us", "conn", "old_state", "new_state", "direction", "tcp_flags"):
        assert list(ev1[f]) == list(ev2[f]), f
    assert one.close().tobytes() == two.close().tobytes()
    s1, s2 = one.stats, two.stats
    assert s1 == s2 and s1["packets"] == len(packets)


@pytest.mark.parametrize("piece", [1, 3, 4, 5, 7, 8, 9, 12, 16, 17])
def test_feed_batch_in_pieces_is_the_same_as_at_once(piece):
    # feed_batch tracks packet i while it parses packet i+8 and prefetches for i+4:
    # batches shorter than, equal to and just over that depth give the same results
    packets = sorted(mixed_traffic(), key=lambda p: p.ts)
    assert len(packets) > 17
    whole, parts = Tracker(8, seed=5), Tracker(8, seed=5)
    buf, offs, lens, ts = as_batch(packets)
    v = whole.feed_batch(buf, offs, lens, ts)
    pieces = []
    for lo in range(0, len(packets), piece):
        b2, o2, l2, t2 = as_batch(packets[lo:lo + piece])
        pieces.append(parts.feed_batch(b2, o2, l2, t2))
    assert list(np.concatenate(pieces)) == list(v)
    assert whole.close().tobytes() == parts.close().tobytes()


def test_feed_batch_documented_positional_form():
    packets = mixed_traffic()[:3]
    buf, offs, lens, ts = as_batch(packets)
    v = Tracker(8, seed=1).feed_batch(buf, offs, lens, ts)
    assert list(v) == [OK] * 3


# ---- IPv6 ----

def test_ipv6_handshake_and_close():
    w = Wire(family=6)
    w.step("C > S  SYN seq=100 win=64240 mss=1440 ws=7 sackok", at=0.0, state=SYN_SENT, history="S")
    w.step("S > C  SYN|ACK seq=300 ack=101 win=65160 mss=1440 ws=7 sackok", at=0.01, state=SYN_RECV)
    w.step("C > S  ACK seq=101 ack=301 win=502", at=0.02, state=ESTABLISHED, history="ShA", conn_state=S1)
    w.step("C > S  PSH|ACK seq=101 ack=301 win=502 len=50", at=0.5, history="ShAD")
    w.step("S > C  FIN|ACK seq=301 ack=151 win=509", at=1.0, state=FIN_WAIT, conn_state=S3)
    w.step("C > S  FIN|ACK seq=151 ack=302 win=502", at=1.01, state=LAST_ACK, conn_state=SF)
    w.step("S > C  ACK seq=302 ack=152 win=509", at=1.02, state=TIME_WAIT, history="ShADfFa")
    rec = w.conn()
    assert (rec["orig_h"], rec["resp_h"]) == (CLIENT6, SERVER6)
    assert rec["orig_ip_bytes"] == 72 + 60 + 110 + 60      # IPv6: payload length + 40
    assert rec["orig_bytes"] == 50 and w.raw()["family"] == 6
    assert (w.raw()["rtt_syn_synack"], w.raw()["rtt_synack_ack"]) == (10_000, 10_000)
    (row,) = flow_records(w.tracker.close())
    assert (row["end_reason"], row["conn_state"], row["orig_h"]) == ("FLUSHED", "SF", CLIENT6)


def test_ipv4_and_ipv6_with_the_same_ports_are_different_connections():
    t = Tracker(8, seed=1)
    handshake(Wire(t, family=4))
    handshake(Wire(t, family=6))
    assert len(t) == 2 and sorted(t.connections()["family"]) == [4, 6]


# ---- Zeek details ----

@pytest.mark.parametrize("lines, verdicts, state, history, conn_state", [
    (["C > S  SYN seq=100", "C > S  FIN|ACK seq=101 ack=0"], [OK, INVALID], SYN_SENT, "SF", SH),
    (["S > C  SYN|ACK seq=300 ack=101", "S > C  FIN|ACK seq=301 ack=101"], [INVALID, INVALID], NONE, "^hf", SHR),
    (["S > C  SYN|ACK seq=300 ack=101", "S > C  RST seq=301"], [INVALID, INVALID], NONE, "^hr", RSTRH),
    (["C > S  RST seq=100"], [INVALID], NONE, "R", OTH),                          # zeek single-rst
    (["C > S  SYN seq=100", "S > C  ACK seq=0 ack=101", "C > S  RST seq=101"],    # syn-then-ack-then-rst
     [OK, IGNORED, OK], CLOSE, "SaR", RSTOS0),
    (["C > S  SYN seq=100", "C > S  FIN|ACK seq=101 ack=0", "C > S  RST seq=101"],   # ...-stuff-then-rst
     [OK, INVALID, OK], CLOSE, "SFR", OTH),
], ids=["SH", "SHR", "RSTRH", "single-rst", "syn-ack-rst", "syn-fin-rst"])
def test_conn_state_of_odd_openings(lines, verdicts, state, history, conn_state):
    w = Wire()
    assert [w(line) for line in lines] == verdicts
    rec = w.conn()
    assert (rec["state"], rec["history"], rec["conn_state"]) == (state.name, history, conn_state.name)


def test_retransmission_letter_t():
    w = Wire()
    handshake(w)
    w.step("C > S  PSH|ACK seq=101 ack=301 win=502 len=10", at=1.0, history="ShAD", orig_retrans=0)
    for n in range(1, 11):
        w.step("C > S  PSH|ACK seq=101 ack=301 win=502 len=10", verdict=OK, orig_retrans=n,
               history="ShADT" if n < 10 else "ShADTT")
    assert w.conn()["orig_bytes"] == 10 and w.raw()["orig_payload"] == 110     # sequence space vs wire


def test_zero_window_letter_w():
    w = Wire()
    handshake(w)
    for n in range(1, 11):
        w("C > S  ACK seq=101 ack=301 win=0")
        assert w.history == ("ShAW" if n < 10 else "ShAWW")
    w.step("S > C  ACK seq=301 ack=101 win=0", history="ShAWWaw")
    w.step("C > S  RST seq=101 win=0", history="ShAWWawR")  # a RST's zero window is no 'W'


def test_fin_with_data_gives_f_not_d():
    w = Wire()
    handshake(w)
    w.step("C > S  FIN|PSH|ACK seq=101 ack=301 win=502 len=10", at=1.0, state=FIN_WAIT, history="ShAF")
    w.step("S > C  FIN|ACK seq=301 ack=112 win=509 len=5", state=LAST_ACK, history="ShAFf", conn_state=SF)
    w.step("C > S  ACK seq=112 ack=307 win=502", state=TIME_WAIT)
    rec = w.conn()
    assert (rec["orig_bytes"], rec["resp_bytes"]) == (10, 5)


@pytest.mark.parametrize("server_ports, history1, conn_state", [
    ((), "H", OTH),                                        # no port hint: the SYN-ACK sender is orig...
    (None, "^h", OTH),                                     # port 80 is a likely server: flipped at once
])
def test_lone_synack_then_ack_flips(server_ports, history1, conn_state):
    w = Wire(server_ports=server_ports)
    # conntrack cannot start from a SYN-ACK (spec 3), Zeek can
    w.step("S > C  SYN|ACK seq=300 ack=101", verdict=INVALID, state=NONE, history=history1, conn_state=OTH)
    # ...until the client answers: "^" + the letters so far with their case swapped
    w.step("C > S  ACK seq=101 ack=301", verdict=OK, state=ESTABLISHED, history="^hA",
           orig_p=CLIENT_PORT, resp_p=SERVER_PORT)
    w.step("C > S  PSH|ACK seq=101 ack=301 len=10", history="^hAD")
    w.step("S > C  ACK seq=301 ack=111", history="^hADa", conn_state=OTH if server_ports == () else S1)
    assert w.raw()["flipped"] == 1


def test_likely_server_port_flips_a_first_non_syn_packet():
    assert 80 in LIKELY_SERVER_PORTS and CLIENT_PORT not in LIKELY_SERVER_PORTS
    w = Wire()
    w.step("S > C  PSH|ACK seq=300 ack=101 len=10", history="^d", orig_p=CLIENT_PORT, resp_p=SERVER_PORT)
    w.step("C > S  ACK seq=101 ack=311", history="^dA", state=ESTABLISHED, conn_state=OTH)


def test_empty_server_ports_disables_the_flip():
    w = Wire(server_ports=())
    w.step("S > C  PSH|ACK seq=300 ack=101 len=10", history="D", orig_p=SERVER_PORT, resp_p=CLIENT_PORT)
    w.step("C > S  ACK seq=101 ack=311", history="Da")
    assert w.raw()["flipped"] == 0


def test_custom_server_ports():
    w = Wire(sport=5555)
    w.step("S > C  PSH|ACK seq=300 ack=101 len=10", history="D", orig_p=5555)
    w = Wire(sport=5555, server_ports=[5555])
    w.step("S > C  PSH|ACK seq=300 ack=101 len=10", history="^d", orig_p=CLIENT_PORT)


@pytest.mark.parametrize("first, flipped", [("S > C", True), ("C > S", False)])
def test_both_ports_likely_servers_flip_only_from_the_lower_port(first, flipped):
    # 80 and 8080 are both in the set: only a packet from the lower port (80) is taken to
    # come from the server; either way the client (8080) ends up the originator
    w = Wire(cport=8080, sport=80)
    w.step(f"{first}  PSH|ACK seq=300 ack=101 len=10")
    rec = w.conn()
    assert (rec["history"], rec["orig_p"], rec["resp_p"]) == ("^d" if flipped else "D", 8080, 80)


def test_plain_syn_from_a_server_port_is_never_flipped():
    w = Wire()
    w.step("S > C  SYN seq=300", history="S", orig_p=SERVER_PORT, state=SYN_SENT)


def test_syn_synack_reversal_appends_caret():
    # the capture shows the SYN-ACK before the SYN it answers (zeek spec 3.1, 5.2)
    w = Wire(server_ports=())
    w.step("S > C  SYN|ACK seq=300 ack=101", verdict=INVALID, history="H")
    w.step("C > S  SYN seq=100", history="Hs^", orig_p=CLIENT_PORT, conn_state=S1)


# ---- properties ----

# each example feeds dozens of packets through two trackers: a tenth of the budget the
# parse fuzzers get (FASTTCP_FUZZ_EXAMPLES) keeps CI's run bounded
FUZZ_EXAMPLES = max(200, int(os.environ.get("FASTTCP_FUZZ_EXAMPLES", 2000)) // 10)
COMMON_FLAGS = [int(f) for f in (Flags.SYN, Flags.SYN | Flags.ACK, Flags.ACK, Flags.PSH | Flags.ACK,
                                 Flags.FIN | Flags.ACK, Flags.RST, Flags.RST | Flags.ACK)]
NEAR_SEQS = [0, 99, 100, 101, 102, 201, 299, 300, 301, 302, 1101, 64557, WRAP - 1, WRAP - 2]
FUZZ_PORTS = [40000, 40001, 80, 443]
FUZZ_OPTIONS = [None, None, dict(mss=1460, wscale=7, sack_permitted=True), dict(sack=[(101, 201)]),
                dict(timestamp=(1, 2)), dict(wscale=14), dict(sack=[(300, 302), (1, 99)])]

fuzz_packet = st.tuples(
    st.booleans(),                                                    # client -> server?
    st.sampled_from(FUZZ_PORTS),                                      # client port
    st.one_of(st.sampled_from(COMMON_FLAGS), st.integers(0, 0x1FF)),
    st.one_of(st.sampled_from(NEAR_SEQS), st.integers(0, WRAP - 1)),  # seq
    st.one_of(st.sampled_from(NEAR_SEQS), st.integers(0, WRAP - 1)),  # ack
    st.one_of(st.sampled_from([0, 1, 502, 1000, 65535]), st.integers(0, 65535)),
    st.sampled_from([0, 0, 0, 1, 10, 500, 1000]),                    # payload length
    st.sampled_from([0.0, 0.0, 0.000001, 0.001, 1.0, 6.0, 11.0, 61.0, 121.0, 301.0]),
    st.sampled_from(["", "", "", "", "badsum", "cut"]),
    st.sampled_from(range(len(FUZZ_OPTIONS))),
)
fuzz_config = st.fixed_dictionaries(dict(
    capacity=st.integers(1, 5),
    loose=st.booleans(),
    liberal=st.booleans(),
    verify_checksum=st.booleans(),
    server_ports=st.sampled_from([None, ()]),
    timeouts=st.sampled_from([None, "zeek", TrackerTimeouts(msl=1.0, close=0.5, syn_sent=2.0, unacknowledged=30.0)]),
    family=st.sampled_from([4, 6]),
))


def fuzz_packets(family: int, spec: list) -> list[Packet]:
    c, s = (CLIENT, SERVER) if family == 4 else (CLIENT6, SERVER6)
    out, t = [], 1000.0
    for c2s, cport, flags, seq, ack, win, n, dt, mutation, oi in spec:
        t += dt
        src, dst, sp, dp = (c, s, cport, SERVER_PORT) if c2s else (s, c, SERVER_PORT, cport)
        if cport == SERVER_PORT:
            sp = dp = SERVER_PORT                                         # a connection 80 <-> 80
        pkt = fasttcp.build(src, dst, sp, dp, seq=seq, ack=ack, flags=flags, window=win,
                            options=FUZZ_OPTIONS[oi], payload=bytes(n))
        if mutation == "badsum":
            pkt = _corrupt_tcp_checksum(pkt)
        elif mutation == "cut":
            pkt = pkt[:_tcp_header_end(pkt)]
        out.append(Packet(pkt, t, mutation))
    return out


def check_rows(rows: np.ndarray, reasons: set[str]) -> None:
    for r in flow_records(rows):
        assert r["end_reason"] in reasons
        TrackerState[r["state"]], ConnState[r["conn_state"]]                # valid names
        assert r["duration"] >= 0
        assert {r["orig_p"], r["resp_p"]} <= set(FUZZ_PORTS)
        assert set(r["history"]) <= set("SHADFRCTWIQGshadfrctwiqg^")


@pytest.mark.fuzz
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(config=fuzz_config, spec=st.lists(fuzz_packet, min_size=1, max_size=60))
def test_random_traffic_keeps_the_books(config, spec):
    family = config.pop("family")
    packets = fuzz_packets(family, spec)
    n = len(packets)
    t = Tracker(seed=11, events=True, **config)
    buf, offs, lens, ts = as_batch(packets)
    verdicts = t.feed_batch(buf, offs, lens, ts)
    assert verdicts.shape == (n,)
    valid = {v.value for v in Verdict}
    assert {int(v) for v in verdicts} <= valid
    assert len(t) <= config["capacity"]
    st_ = t.stats
    assert st_["packets"] == n and sum(st_["verdicts"].values()) == n and st_["live"] == len(t)
    assert st_["verdicts"].get("UNTRACKED", 0) == 0 or not config["loose"]
    assert len(t.connections()) == len(t)
    fin = t.finished()
    check_rows(fin, {"TIMEOUT", "REUSED", "EVICTED"})
    reasons = [r["end_reason"] for r in flow_records(fin)]
    assert reasons.count("TIMEOUT") == st_["timed_out"]
    assert reasons.count("REUSED") == st_["reused"]
    assert reasons.count("EVICTED") == st_["evicted"]
    ev = t.events()
    for e in ev:
        assert e["old_state"] != e["new_state"] and e["direction"] in (0, 1) and 0 <= e["packet"] < n
        TrackerState(int(e["new_state"])), TrackerState(int(e["old_state"]))
    rows = t.close()
    check_rows(rows, {"FLUSHED"})
    assert len(rows) == st_["created"] - len(fin) == st_["live"]
    assert len(t) == 0 and len(t.connections()) == 0 and len(t.close()) == 0


@pytest.mark.fuzz
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(config=fuzz_config, spec=st.lists(fuzz_packet, min_size=1, max_size=40))
def test_random_traffic_feed_equals_feed_batch(config, spec):
    family = config.pop("family")
    packets = fuzz_packets(family, spec)
    one, two = Tracker(seed=11, **config), Tracker(seed=11, **config)
    v1 = [one.feed(p.data, p.ts) for p in packets]
    buf, offs, lens, ts = as_batch(packets)
    v2 = two.feed_batch(buf, offs, lens, ts)
    assert [int(v) for v in v1] == [int(v) for v in v2]
    assert one.connections().tobytes() == two.connections().tobytes()
    assert one.finished().tobytes() == two.finished().tobytes()
    assert one.close().tobytes() == two.close().tobytes()
    assert one.stats == two.stats


_REAL = [
    fasttcp.build("198.18.0.1", "198.18.0.2", 1000, 80, seq=1, flags=Flags.SYN,
                  options=dict(mss=1460, wscale=7, sack_permitted=True, timestamp=(1, 0))),
    fasttcp.build("198.18.0.2", "198.18.0.1", 80, 1000, seq=9, ack=2, flags=Flags.SYN | Flags.ACK,
                  options=dict(mss=1460, wscale=7, sack_permitted=True, timestamp=(2, 1))),
    fasttcp.build("198.18.0.1", "198.18.0.2", 1000, 80, seq=2, ack=10, flags=Flags.ACK | Flags.PSH,
                  options=dict(sack=[(20, 30)], timestamp=(3, 2)), payload=b"x" * 40),
    fasttcp.build("2001:db8::1", "2001:db8::2", 1000, 80, seq=1, flags=Flags.FIN | Flags.ACK, ack=5),
]


def _mangle(pkt: bytes, cut: int, flip: int) -> bytes:
    b = bytearray(pkt[: max(1, len(pkt) - cut)])
    b[flip % len(b)] ^= 0x5A
    return bytes(b)


@pytest.mark.fuzz
@settings(max_examples=FUZZ_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(
    st.binary(max_size=120),                                              # garbage
    st.builds(lambda b, cut, flip: _mangle(b, cut, flip),                 # damaged real packets
              st.sampled_from(_REAL), st.integers(0, 80), st.integers(0, 79))),
    min_size=1, max_size=60))
def test_garbage_never_crashes_the_tracker(packets):
    """Random bytes and real packets cut short or with a flipped byte, through
    feed_batch and feed: every verdict is a Verdict, nothing is read past a packet (the
    batch is built with each packet at the very end of its own buffer slice), and the
    books balance."""
    buf = b"".join(packets)
    lens = np.array([len(p) for p in packets], dtype=np.int64)
    offs = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
    ts = np.arange(len(packets), dtype=np.int64) * 1000 + 1_000_000_000
    t = Tracker(8, seed=3)
    verdicts = t.feed_batch(buf, offs, lens, ts)
    assert all(int(v) in {x.value for x in Verdict} for v in verdicts)
    one = Tracker(8, seed=3)
    assert [int(one.feed(p, 1.0 + i * 1e-6)) for i, p in enumerate(packets)] == [int(v) for v in verdicts]
    st_ = t.stats
    assert st_["packets"] == len(packets) and len(t) <= 8
    # every connection ever created ends as exactly one row: those that ended while
    # feeding (reused, evicted, timed out) and the rest flushed by close()
    assert len(t.close()) == st_["created"]


def test_unacknowledged_data_on_a_long_lived_connection_brings_its_timer_forward():
    """An ESTABLISHED connection that has been quiet and acknowledged for an hour is
    armed days ahead; when data then goes unacknowledged, conntrack's 300 s cap applies
    from that packet on, so the connection times out 300 s later -- not days later."""
    w = Wire()
    handshake(w)
    w("C > S  PSH|ACK seq=101 ack=301 len=10", at=10.0)
    w("S > C  ACK seq=301 ack=111", at=10.1)                 # all acknowledged
    w("C > S  PSH|ACK seq=111 ack=301 len=10", at=3600.0)    # never acknowledged
    assert w.expire(3600.0 + 299.0) == []
    (row,) = w.expire(3600.0 + 300.5)
    assert row["end_reason"] == EndReason.TIMEOUT.name and row["state"] == ESTABLISHED.name


@pytest.mark.parametrize("n, bad", [(3, 1), (1000, 0), (1000, 255), (1000, 256), (1000, 700), (1000, 999)])
def test_a_batch_whose_link_verdicts_are_not_verdict_codes_is_refused(n, bad):
    """The batch's link verdicts index the tracker's counters in C: a code beyond
    fasttcp.Verdict (a hand-edited CaptureBatch) is a UsageError naming the first such
    packet, not a write past the counters."""
    pkt = fasttcp.build("198.18.0.1", "198.18.0.2", 1000, 80, seq=1, flags=Flags.SYN)
    verdicts = np.zeros(n, np.uint8)
    verdicts[bad] = 200
    verdicts[-1] = max(verdicts[-1], len(fasttcp.Verdict))      # a later bad one is not named
    batch = fasttcp.CaptureBatch(
        buffer=np.frombuffer(pkt * n, dtype=np.uint8), offsets=np.arange(n) * len(pkt),
        lengths=np.full(n, len(pkt)), ts_ns=np.arange(n) + 10**9, wire_lengths=np.full(n, len(pkt), np.uint32),
        verdicts=verdicts, interfaces=np.zeros(n, np.uint16),
        frames=np.arange(1, n + 1), snapped=np.zeros(n, bool))
    t = Tracker(8)
    with pytest.raises(fasttcp.UsageError, match=rf"^packet {bad}: link verdict {verdicts[bad]} "):
        t.feed_batch(batch)
    assert t.stats["packets"] == 0


@pytest.mark.parametrize("snapped", [True, False])
def test_a_short_packet_in_a_capture_batch_is_tracked_only_when_the_snap_length_cut_it(snapped):
    """feed_batch(CaptureBatch): a packet shorter than its IP length is a capture cut
    (tracked, TRUNCATED) when the batch says the snap length cut it, else a packet that
    lied about its length on the wire (not tracked, as Zeek drops it)."""
    pkt = fasttcp.build("198.18.0.1", "198.18.0.2", 1000, 80, seq=1, flags=Flags.ACK | Flags.PSH, ack=1,
                        payload=bytes(100))
    cut = pkt[:60]
    batch = fasttcp.CaptureBatch(
        buffer=np.frombuffer(cut, dtype=np.uint8), offsets=np.array([0]), lengths=np.array([len(cut)]),
        ts_ns=np.array([10**9]), wire_lengths=np.array([len(pkt) if snapped else len(cut)], np.uint32),
        verdicts=np.zeros(1, np.uint8), interfaces=np.zeros(1, np.uint16), frames=np.array([1]),
        snapped=np.array([snapped]))
    t = Tracker(8)
    (v,) = t.feed_batch(batch)
    assert fasttcp.Verdict(v) == fasttcp.Verdict.TRUNCATED
    assert len(t) == (1 if snapped else 0)


@pytest.mark.parametrize("path, tail", [("feed_batch", 0), ("feed_batch", 20), ("feed", 0)])
def test_no_finished_row_is_lost_when_a_mass_timeout_fills_the_row_buffer(path, tail):
    # 66,000 unanswered SYNs time out together (more rows than the C buffer holds,
    # 65,536), on packet time, just as a SYN reuses the 4-tuple of a connection that
    # closed: the expiry fills the buffer and the same packet finishes the old
    # connection (REUSED). Every one of the 66,002 connections must come out once.
    # With `tail` packets after it the batch stops in the pipeline's steady state
    # (not in its last 8 packets) and resumes there.
    n = 66_000
    packets, times = [], []
    for i in range(n):
        packets.append(fasttcp.build(f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}", "10.200.0.1",
                                     1024 + i % 50000, 80, seq=i, flags=Flags.SYN, window=1000))
        times.append(1000.0)
    c, s = "10.9.9.9", "10.200.0.1"
    for src, dst, sp, dp, seq, ack, flags in [
            (c, s, 5555, 80, 100, 0, Flags.SYN), (s, c, 80, 5555, 900, 101, Flags.SYN | Flags.ACK),
            (c, s, 5555, 80, 101, 901, Flags.ACK), (c, s, 5555, 80, 101, 901, Flags.FIN | Flags.ACK),
            (s, c, 80, 5555, 901, 102, Flags.FIN | Flags.ACK), (c, s, 5555, 80, 102, 902, Flags.ACK)]:
        packets.append(fasttcp.build(src, dst, sp, dp, seq=seq, ack=ack, flags=flags, window=1000))
        times.append(1100.0)
    # SYN_SENT lasts 120 s: at 1130 s the 66,000 attempts are over, the closed one is reused
    packets.append(fasttcp.build(c, s, 5555, 80, seq=50000, flags=Flags.SYN, window=1000))
    times.append(1130.0)
    for i in range(tail):
        packets.append(fasttcp.build("10.8.8.8", s, 7000 + i, 80, seq=i, flags=Flags.SYN, window=1000))
        times.append(1130.0)
    tr = Tracker(100_000, timeouts="conntrack")
    if path == "feed_batch":
        lens = np.array([len(p) for p in packets], dtype=np.int64)
        offs = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
        verdicts = tr.feed_batch(b"".join(packets), offs, lens, (np.array(times) * 1e9).astype(np.int64))
        assert (verdicts == 0).all()
        rows = tr.finished()
    else:
        rows = []
        for p, t in zip(packets, times, strict=True):
            assert tr.feed(p, t) == 0
            rows.append(tr.finished())
        rows = np.concatenate(rows)
    reasons = {EndReason(r).name: int(k)
               for r, k in zip(*np.unique(rows["end_reason"], return_counts=True), strict=True)}
    assert reasons == {"TIMEOUT": n, "REUSED": 1}
    assert tr.stats["packets"] == n + 7 + tail
    rows = np.concatenate([rows, tr.expire(5000.0)])
    assert len(rows) == n + 2 + tail
