"""The capture reader (fasttcp.capture: read_pcap, CaptureReader, write_pcap, strip_link).

References, never the reader itself:
- the dpkt-based test helper tests/linklayer.py (frames, IP packets, timestamps),
- the tshark oracle of each capture (frame numbers, times, wire lengths; schema at the
  end of tests/data/MANIFEST.md) and tshark itself for files we write,
- a tiny struct walker below (record lengths), and files built byte by byte here.

Bugs once found in the reader are kept as regression tests at the end.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fasttcp
from fasttcp import Verdict
from fasttcp.capture.reader import CaptureBatch, CaptureError, CaptureReader, read_pcap, strip_link, write_pcap
from tests import linklayer
from tests.linklayer import oracle_path

CAPTURES = linklayer.CAPTURES
LINK_VERDICTS = {Verdict.NOT_IP, Verdict.UNSUPPORTED_LINK, Verdict.LINK_TRUNCATED}
ALL_LINK_VERDICTS = {Verdict.OK} | LINK_VERDICTS
ONE_BATCH = {"batch_packets": 10**7, "batch_bytes": 64 << 20}

# ---- packets and link-layer frames ----

IP4 = fasttcp.build("192.0.2.1", "198.51.100.2", 40000, 80, seq=1, flags=0x002, payload=b"four")
IP6 = fasttcp.build("2001:db8::1", "2001:db8::2", 40001, 443, seq=7, ack=9, flags=0x012, payload=b"six!")
MACS = bytes(range(1, 13))


def eth(ethertype: int, payload: bytes, tags: tuple[int, ...] = ()) -> bytes:
    """Ethernet II with 802.1Q/802.1ad tags (TPIDs, outermost first) before `ethertype`."""
    return MACS + b"".join(struct.pack("!HH", tpid, 0x2005) for tpid in tags) \
        + struct.pack("!H", ethertype) + payload


def mpls(labels: int) -> bytes:
    """A label stack of `labels` entries, bottom-of-stack bit on the last."""
    return b"".join(struct.pack("!I", ((100 + i) << 12) | (0x100 if i == labels - 1 else 0) | 64)
                    for i in range(labels))


def pppoe(proto: int, payload: bytes) -> bytes:
    return b"\x11\x00\x00\x2a" + struct.pack("!HH", len(payload) + 2, proto) + payload


def sll(proto: int, payload: bytes) -> bytes:
    return struct.pack("!HHH", 0, 1, 6) + MACS[:8] + struct.pack("!H", proto) + payload


def sll2(proto: int, payload: bytes) -> bytes:
    return struct.pack("!HHIHBB", proto, 0, 2, 1, 4, 6) + MACS[:8] + payload


def null(family: int, payload: bytes, order: str = "<") -> bytes:
    return struct.pack(order + "I", family) + payload


def loop(family: int, payload: bytes) -> bytes:
    return struct.pack("!I", family) + payload


# ---- capture files built byte by byte ----


def pcap_bytes(frames, *, linktype: int = 1, big: bool = False, nano: bool = False,
               snaplen: int = 262144) -> bytes:
    """Classic pcap. `frames`: (ts_ns, data) or (ts_ns, data, wire_len)."""
    e = ">" if big else "<"
    out = [struct.pack(e + "IHHiIII", 0xA1B23C4D if nano else 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype)]
    for ts_ns, data, *wire in frames:
        sec, frac = divmod(ts_ns, 10**9)
        out.append(struct.pack(e + "IIII", sec, frac if nano else frac // 1000, len(data),
                               wire[0] if wire else len(data)) + data)
    return b"".join(out)


def write_file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


class Pcapng:
    """A pcapng file block by block; `section(big=...)` starts a section in that byte order."""

    def __init__(self) -> None:
        self.blocks: list[bytes] = []
        self.e = "<"

    def block(self, btype: int, body: bytes) -> Pcapng:
        body += b"\0" * (-len(body) % 4)
        total = 12 + len(body)
        self.blocks.append(struct.pack(self.e + "II", btype, total) + body + struct.pack(self.e + "I", total))
        return self

    def section(self, *, big: bool = False) -> Pcapng:
        self.e = ">" if big else "<"
        return self.block(0x0A0D0D0A, struct.pack(self.e + "IHHq", 0x1A2B3C4D, 1, 0, -1))

    def _opt(self, code: int, value: bytes) -> bytes:
        return struct.pack(self.e + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)

    def idb(self, linktype: int, *, snaplen: int = 0, tsresol: int | None = None,
            tsoffset: int | None = None) -> Pcapng:
        opts = b""
        if tsresol is not None:
            opts += self._opt(9, bytes([tsresol]))
        if tsoffset is not None:
            opts += self._opt(14, struct.pack(self.e + "q", tsoffset))
        if opts:
            opts += self._opt(0, b"")
        return self.block(1, struct.pack(self.e + "HHI", linktype, 0, snaplen) + opts)

    def epb(self, iface: int, units: int, data: bytes, wire: int | None = None) -> Pcapng:
        return self.block(6, struct.pack(self.e + "IIIII", iface, units >> 32, units & 0xFFFFFFFF, len(data),
                                         len(data) if wire is None else wire) + data)

    def pb(self, iface: int, units: int, data: bytes) -> Pcapng:
        """The obsolete Packet Block (type 2): 16-bit interface id and drops count."""
        return self.block(2, struct.pack(self.e + "HHIIII", iface, 0, units >> 32, units & 0xFFFFFFFF,
                                         len(data), len(data)) + data)

    def spb(self, data: bytes, wire: int | None = None) -> Pcapng:
        return self.block(3, struct.pack(self.e + "I", len(data) if wire is None else wire) + data)

    def bytes(self) -> bytes:
        return b"".join(self.blocks)


# ---- reading ----


def read_all(path, **kw) -> tuple[list[CaptureBatch], CaptureReader]:
    with read_pcap(path, **kw) as reader:
        return list(reader), reader


def rows(batches: list[CaptureBatch]) -> list[tuple]:
    """(frame, interface, ts_ns, wire_len, verdict, packet bytes) per packet, in order."""
    out = []
    for b in batches:
        for i in range(len(b)):
            out.append((int(b.frames[i]), int(b.interfaces[i]), int(b.ts_ns[i]), int(b.wire_lengths[i]),
                        Verdict(int(b.verdicts[i])), b.packet(i)))
    return out


def read_rows(path, **kw) -> list[tuple]:
    return rows(read_all(path, **kw)[0])


def read_one(data: bytes, tmp_path: Path, name: str = "one.pcap") -> tuple[Verdict, bytes, CaptureBatch]:
    (batch,), _ = read_all(write_file(tmp_path / name, data))
    assert len(batch) == 1
    return Verdict(int(batch.verdicts[0])), batch.packet(0), batch


def assert_well_formed(batch: CaptureBatch) -> None:
    n = len(batch)
    for column in (batch.lengths, batch.ts_ns, batch.wire_lengths, batch.verdicts, batch.interfaces, batch.frames):
        assert column.shape == (n,)
    assert (batch.offsets >= 0).all() and (batch.lengths >= 0).all()
    assert (batch.offsets + batch.lengths <= batch.buffer.shape[0]).all()
    assert set(batch.verdicts.tolist()) <= ALL_LINK_VERDICTS
    ok = batch.verdicts == Verdict.OK
    assert (batch.lengths[ok] > 0).all()
    assert all(batch.buffer[o] >> 4 in (4, 6) for o in batch.offsets[ok])


def same_segment(a: bytes, b: bytes) -> None:
    x, y = fasttcp.parse(a), fasttcp.parse(b)
    assert (x.src, x.dst, x.src_port, x.dst_port, x.seq, x.ack, int(x.flags), bytes(x.payload)) == \
        (y.src, y.dst, y.src_port, y.dst_port, y.seq, y.ack, int(y.flags), bytes(y.payload))


# ---- an independent record walker (wire lengths, which the dpkt helper does not keep) ----


def record_wire_lengths(path: Path) -> list[int]:
    data = path.read_bytes()
    out = []
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        pos, e = 0, "<"
        while pos + 12 <= len(data):
            if data[pos:pos + 4] == b"\x0a\x0d\x0d\x0a":
                e = "<" if data[pos + 8:pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            btype, blen = struct.unpack_from(e + "II", data, pos)
            if btype in (2, 6):
                out.append(struct.unpack_from(e + "I", data, pos + 24)[0])
            elif btype == 3:
                out.append(struct.unpack_from(e + "I", data, pos + 8)[0])
            pos += blen
        return out
    e = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    pos = 24
    while pos + 16 <= len(data):
        caplen, wire = struct.unpack_from(e + "II", data, pos + 8)
        out.append(wire)
        pos += 16 + caplen
    return out


# ---- the real captures ----


def load_oracle(path: Path) -> tuple[dict, list[dict]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        lines = [json.loads(line) for line in f if line.strip()]
    assert lines[0]["type"] == "meta"
    return lines[0], [r for r in lines if r["type"] == "packet"]


def capture_names() -> list[str]:
    return [p.name for p in linklayer.list_captures(CAPTURES)]


def capture_path(name: str) -> Path:
    """A bundled capture; missing means a broken checkout, not a reason to check less."""
    path = CAPTURES / name
    assert path.is_file(), f"{name} is not in {CAPTURES}"
    return path


class Capture:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.frames = linklayer.read_frames(path)
        batches, self.reader = read_all(path)
        self.rows = rows(batches)
        self.batches = batches


@pytest.fixture(scope="module", params=capture_names())
def capture(request) -> Capture:
    return Capture(capture_path(request.param))


def test_reader_yields_the_frames_of_the_dpkt_helper(capture):
    """Same frames, same IP packets, same timestamps; OK exactly where the helper found
    IP, a link verdict everywhere else."""
    assert len(capture.rows) == len(capture.frames) > 0
    problems = []
    for frame, (number, _, ts_ns, _, verdict, packet) in zip(capture.frames, capture.rows, strict=True):
        where = f"{capture.path.name} frame {frame.number}"
        want_ns = frame.ts * 10**9
        assert want_ns == int(want_ns), f"{where}: helper time {frame.ts} is finer than 1 ns"
        if number != frame.number:
            problems.append(f"{where}: reader numbers it {number}")
        if ts_ns != int(want_ns):
            problems.append(f"{where}: reader ts_ns {ts_ns}, helper {frame.ts}")
        if frame.ip is not None and (verdict != Verdict.OK or packet != frame.ip):
            problems.append(f"{where}: helper found IP, reader {verdict.name} / {len(packet)} bytes "
                            f"vs {len(frame.ip)}")
        if frame.ip is None and verdict not in LINK_VERDICTS:
            problems.append(f"{where}: helper says {frame.reason!r}, reader {verdict.name}")
    assert not problems, "\n".join(problems[:40])
    assert capture.reader.stats.packets == len(capture.frames)
    assert capture.reader.stats.truncated_tail == 0
    assert capture.reader.stats.bytes == capture.path.stat().st_size
    for batch in capture.batches:
        assert_well_formed(batch)


def test_reader_wire_lengths_match_the_record_headers(capture):
    assert [r[3] for r in capture.rows] == record_wire_lengths(capture.path)


def test_reader_frame_numbers_times_and_lengths_match_tshark(capture):
    oracle = oracle_path(capture.path)
    assert oracle is not None, f"{capture.path.name} has no tshark oracle"
    meta, packets = load_oracle(oracle)
    assert len(capture.rows) == meta["frames_total"]
    problems = []
    for row in packets:
        number, _, ts_ns, wire, verdict, packet = capture.rows[row["frame"] - 1]
        want = (row["frame"], Decimal(row["ts"]) * 10**9, row["len"], Verdict.OK)
        if (number, ts_ns, wire, verdict) != want:
            problems.append(f"frame {row['frame']}: reader {(number, ts_ns, wire, verdict.name)}, tshark {want}")
        elif len(packet) > row["caplen"]:
            problems.append(f"frame {row['frame']}: IP packet of {len(packet)} bytes, caplen {row['caplen']}")
    assert not problems, "\n".join(problems[:40])


def test_pcap_linktype_with_fcs_bits_reads_as_ethernet():
    """tcpdump-tcp_header_heapoverflow.pcap's link type field is 0x30000001."""
    path = capture_path("tcpdump-tcp_header_heapoverflow.pcap")
    batches, reader = read_all(path)
    assert reader.linktypes == [0x30000001]
    (frame,) = linklayer.read_frames(path)
    assert rows(batches)[0][4:] == (Verdict.OK, frame.ip)


# ---- batching ----

BATCHINGS = [
    pytest.param({"batch_packets": 1}, id="1-packet"),
    pytest.param({"batch_packets": 3}, id="3-packets"),
    pytest.param({"batch_bytes": 4096}, id="4096-bytes"),
    pytest.param({"batch_packets": 3, "batch_bytes": 4096}, id="3-packets-4096-bytes"),
]


def assert_batching_changes_nothing(path: Path, kw: dict) -> list[CaptureBatch]:
    (whole,), _ = read_all(path, **ONE_BATCH)
    batches, snapshots = [], []
    with read_pcap(path, **kw) as reader:
        for batch in reader:
            assert 0 < len(batch) <= kw.get("batch_packets", 65536)
            batches.append(batch)
            snapshots.append(rows([batch]))
    # every batch still holds what it held when it was read
    assert [rows([b]) for b in batches] == snapshots
    assert rows(batches) == rows([whole])
    assert [r[0] for r in rows(batches)] == list(range(1, len(whole) + 1))
    return batches


@pytest.mark.parametrize("kw", BATCHINGS)
@pytest.mark.parametrize("name", ["tcpdump-bigtcp-ipv4.pcap", "zeek-wikipedia.pcap", "tcpdump-pptp.pcap",
                                  "zeek-pcapng-multi-interface.pcapng", "zeek-mixed-vlan-mpls.pcap",
                                  "tcpdump-tcp-handshake-nano.pcap"])
def test_small_batches_give_the_same_packets_as_one_batch(name, kw):
    assert_batching_changes_nothing(capture_path(name), kw)


def test_bigtcp_record_larger_than_batch_bytes_is_read_whole():
    path = capture_path("tcpdump-bigtcp-ipv4.pcap")
    (batch,) = assert_batching_changes_nothing(path, {"batch_bytes": 4096})
    assert len(batch.packet(0)) > 64 * 1024


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
@pytest.mark.parametrize("kw", BATCHINGS)
def test_records_larger_than_batch_bytes_between_small_ones(tmp_path, fmt, kw):
    big = fasttcp.build("192.0.2.1", "198.51.100.2", 1, 2, payload=bytes(range(256)) * 250)   # 64 KB
    frames = [eth(0x0800, IP4), eth(0x0800, big), eth(0x86DD, IP6)] * 3 + [eth(0x0800, big)]
    if fmt == "pcap":
        data = pcap_bytes([(10**9 * i, f) for i, f in enumerate(frames)])
    else:
        png = Pcapng().section().idb(1)
        for i, f in enumerate(frames):
            png.epb(0, 10**6 * i, f)
        data = png.bytes()
    batches = assert_batching_changes_nothing(write_file(tmp_path / f"big.{fmt}", data), kw)
    assert [r[5] for r in rows(batches)] == [IP4, big, IP6] * 3 + [big]


# ---- pcap variants ----


def test_big_endian_microsecond_pcap(tmp_path):
    times = [1_700_000_000_123_456_000, 1_700_000_001_000_001_000]
    data = pcap_bytes([(times[0], eth(0x0800, IP4)), (times[1], eth(0x86DD, IP6), 1514)], big=True)
    assert data[:4] == b"\xa1\xb2\xc3\xd4"
    batches, reader = read_all(write_file(tmp_path / "be.pcap", data))
    assert reader.format == "pcap" and reader.big_endian and not reader.nanosecond
    assert reader.linktypes == [1]
    assert rows(batches) == [(1, 0, times[0], len(IP4) + 14, Verdict.OK, IP4), (2, 0, times[1], 1514, Verdict.OK, IP6)]


@pytest.mark.parametrize("big", [False, True], ids=["little-endian", "big-endian"])
def test_nanosecond_pcap(tmp_path, big):
    times = [1_700_000_000_123_456_789, 1_700_000_000_999_999_999, 5]
    data = pcap_bytes([(t, null(2, IP4)) for t in times], linktype=0, big=big, nano=True)
    batches, reader = read_all(write_file(tmp_path / "ns.pcap", data))
    assert reader.nanosecond and reader.big_endian == big
    assert batches[0].ts_ns.tolist() == times
    assert [r[5] for r in rows(batches)] == [IP4] * 3


def test_pcap_header_only_is_an_empty_capture(tmp_path):
    batches, reader = read_all(write_file(tmp_path / "empty.pcap", pcap_bytes([])))
    assert batches == [] and reader.stats.packets == 0 and reader.stats.truncated_tail == 0


def test_stats_count_packets_bytes_and_link_verdicts(tmp_path):
    frames = [eth(0x0800, IP4), eth(0x0806, bytes(28)), eth(0x86DD, IP6), MACS, eth(0x0806, bytes(28))]
    data = pcap_bytes([(i, f) for i, f in enumerate(frames)])
    _, reader = read_all(write_file(tmp_path / "stats.pcap", data), batch_packets=2)
    assert reader.stats.packets == 5
    assert reader.stats.bytes == len(data)
    assert reader.stats.link_verdicts == {Verdict.OK: 2, Verdict.NOT_IP: 2, Verdict.LINK_TRUNCATED: 1}


# ---- pcapng ----

# (linktype, frame) per interface of the multi-interface section, all carrying an IP packet
INTERFACES = [
    (1, eth(0x0800, IP4)),
    (101, IP6),
    (113, sll(0x0800, IP4)),
    (276, sll2(0x86DD, IP6)),
    (0, null(2, IP4, "<")),
    (0, null(30, IP6, ">")),
    (108, loop(24, IP6)),
]


def test_pcapng_interfaces_each_have_their_own_link_type(tmp_path):
    png = Pcapng().section()
    for linktype, _ in INTERFACES:
        png.idb(linktype)
    for iface, (_, frame) in reversed(list(enumerate(INTERFACES))):
        png.epb(iface, 1000 + iface, frame)
    path = write_file(tmp_path / "ifaces.pcapng", png.bytes())
    batches, reader = read_all(path)
    assert reader.format == "pcapng"
    assert reader.linktypes == [lt for lt, _ in INTERFACES]
    got = rows(batches)
    assert [r[1] for r in got] == list(reversed(range(len(INTERFACES))))
    assert [r[4] for r in got] == [Verdict.OK] * len(INTERFACES)
    for (_, iface, _, wire, _, packet) in got:
        assert wire == len(INTERFACES[iface][1])
        same_segment(packet, IP4 if packet[0] >> 4 == 4 else IP6)
    # the dpkt helper reads the same file the same way
    assert [(f.number, f.ip) for f in linklayer.read_frames(path)] == [(r[0], r[5]) for r in got]


def test_pcapng_timestamp_resolution_and_offset_per_interface(tmp_path):
    s = 1_700_000_000
    cases = [  # (idb options, units, expected ns)
        ({}, s * 10**6 + 123_456, s * 10**9 + 123_456_000),                              # default: us
        ({"tsresol": 9}, s * 10**9 + 123_456_789, s * 10**9 + 123_456_789),               # 10^-9
        ({"tsresol": 3}, s * 10**3 + 7, s * 10**9 + 7_000_000),                            # 10^-3
        ({"tsresol": 0x80 | 10}, s * 1024 + 1000, s * 10**9 + 976_562_500),                # 2^-10
        ({"tsoffset": 1_000_000}, 5, 1_000_000 * 10**9 + 5_000),                           # +offset
        ({"tsresol": 9, "tsoffset": -100}, s * 10**9 + 1, (s - 100) * 10**9 + 1),          # both
    ]
    png = Pcapng().section()
    for opts, _, _ in cases:
        png.idb(101, **opts)
    for i, (_, units, _) in enumerate(cases):
        png.epb(i, units, IP4)
    path = write_file(tmp_path / "times.pcapng", png.bytes())
    (batch,), _ = read_all(path)
    assert batch.ts_ns.tolist() == [want for _, _, want in cases]
    assert [f.ts * 10**9 for f in linklayer.read_frames(path)] == [want for _, _, want in cases]


def test_pcapng_binary_resolution_keeps_sub_microsecond_time(tmp_path):
    """2^-10 s units that are not whole nanoseconds: within 1 ns of the exact time."""
    png = Pcapng().section().idb(101, tsresol=0x80 | 10)
    for units in (1, 3, 1023, 1_700_000_000 * 1024 + 1001):
        png.epb(0, units, IP4)
    (batch,), _ = read_all(write_file(tmp_path / "bin.pcapng", png.bytes()))
    exact = [Decimal(u) * 10**9 / 1024 for u in (1, 3, 1023, 1_700_000_000 * 1024 + 1001)]
    assert all(abs(Decimal(got) - want) < 1 for got, want in zip(batch.ts_ns.tolist(), exact, strict=True))


def test_pcapng_sections_switch_byte_order_and_reset_interfaces(tmp_path):
    png = (Pcapng().section(big=False).idb(1).idb(101, tsresol=9)
           .epb(1, 2 * 10**9, IP6).epb(0, 3 * 10**6, eth(0x0800, IP4))
           .section(big=True).idb(108, tsresol=9).idb(1)
           .epb(0, 5, loop(2, IP4)).epb(1, 6, eth(0x86DD, IP6)).epb(0, 7, loop(28, IP6))
           .section(big=False).idb(113)
           .epb(0, 8, sll(0x86DD, IP6)))
    path = write_file(tmp_path / "sections.pcapng", png.bytes())
    batches, reader = read_all(path)
    got = rows(batches)
    assert [(r[0], r[1], r[2], r[4], r[5]) for r in got] == [
        (1, 1, 2 * 10**9, Verdict.OK, IP6),
        (2, 0, 3 * 10**9, Verdict.OK, IP4),
        (3, 0, 5, Verdict.OK, IP4),
        (4, 1, 6000, Verdict.OK, IP6),          # the big-endian section's interface 1 has no tsresol
        (5, 0, 7, Verdict.OK, IP6),
        (6, 0, 8000, Verdict.OK, IP6),
    ]
    assert reader.linktypes == [113]            # only the last section's interfaces remain
    assert [(f.number, f.ip) for f in linklayer.read_frames(path)] == [(r[0], r[5]) for r in got]


def test_pcapng_simple_and_obsolete_packet_blocks(tmp_path):
    png = (Pcapng().section().idb(1, snaplen=80).idb(101, tsresol=9)
           .spb(eth(0x0800, IP4))                                    # 58 bytes < snaplen
           .pb(1, 42, IP6)
           .spb(eth(0x86DD, IP6) + bytes(8), wire=len(IP6) + 14))    # wire < room: wire wins
    long_frame = eth(0x0800, IP4) + bytes(40)
    png.spb(long_frame)                                              # 98 bytes: cut to snaplen 80
    (batch,), reader = read_all(write_file(tmp_path / "spb.pcapng", png.bytes()))
    got = rows([batch])
    assert [(r[1], r[2], r[4]) for r in got] == [(0, 0, Verdict.OK), (1, 42, Verdict.OK),
                                                 (0, 0, Verdict.OK), (0, 0, Verdict.OK)]
    assert [r[5] for r in got[:3]] == [IP4, IP6, IP6]
    assert got[3][5] == long_frame[14:80] and got[3][3] == len(long_frame)
    assert reader.stats.blocks_skipped == 0


def test_pcapng_unknown_blocks_are_skipped_and_counted(tmp_path):
    png = (Pcapng().section().block(4, struct.pack("<HH", 0, 0))      # name resolution, before any IDB
           .idb(101).block(0x0BAD, b"custom").epb(0, 1, IP4)
           .block(5, bytes(20)).block(0x40000BAD, bytes(100)).block(0x80000001, b"")
           .epb(0, 2, IP6).block(10, b"x"))
    batches, reader = read_all(write_file(tmp_path / "skip.pcapng", png.bytes()), batch_packets=1)
    assert [(r[0], r[5]) for r in rows(batches)] == [(1, IP4), (2, IP6)]
    assert reader.stats.blocks_skipped == 6
    assert reader.stats.bad_interface == 0


def test_pcapng_packet_on_undescribed_interface(tmp_path):
    png = (Pcapng().section().spb(IP4)                # no interface described yet
           .idb(101).epb(0, 1, IP4).epb(3, 2, IP6).pb(1, 3, IP4).epb(0, 4, IP6))
    batches, reader = read_all(write_file(tmp_path / "bad-iface.pcapng", png.bytes()))
    got = rows(batches)
    assert [r[4] for r in got] == [Verdict.UNSUPPORTED_LINK, Verdict.OK, Verdict.UNSUPPORTED_LINK,
                                   Verdict.UNSUPPORTED_LINK, Verdict.OK]
    assert [r[0] for r in got] == [1, 2, 3, 4, 5]
    assert (got[1][5], got[4][5]) == (IP4, IP6)
    assert reader.stats.bad_interface == 3
    assert reader.stats.link_verdicts == {Verdict.OK: 2, Verdict.UNSUPPORTED_LINK: 3}
    for batch in batches:
        assert_well_formed(batch)


# ---- link layers (reader and strip_link share one table) ----

L = pytest.param
LINK_CASES = [
    # (linktype, frame, verdict, IP packet or None)
    L(1, eth(0x0800, IP4), Verdict.OK, IP4, id="ethernet-ipv4"),
    L(1, eth(0x86DD, IP6), Verdict.OK, IP6, id="ethernet-ipv6"),
    L(0x30000001, eth(0x0800, IP4), Verdict.OK, IP4, id="ethernet-fcs-bits-0x30000001"),
    L(1, eth(0x0800, IP4, tags=(0x8100,)), Verdict.OK, IP4, id="one-802.1q-tag"),
    L(1, eth(0x86DD, IP6, tags=(0x88A8, 0x8100, 0x8100)), Verdict.OK, IP6, id="three-tags-802.1ad"),
    L(1, eth(0x0800, IP4, tags=(0x9100, 0x88A8, 0x8100)), Verdict.OK, IP4, id="three-tags-9100"),
    L(1, eth(0x0800, IP4, tags=(0x8100,) * 8), Verdict.OK, IP4, id="eight-tags"),
    L(1, eth(0x0800, IP4, tags=(0x8100,) * 9), Verdict.UNSUPPORTED_LINK, None, id="nine-tags"),
    L(1, eth(0x8847, mpls(1) + IP4), Verdict.OK, IP4, id="mpls-one-label"),
    L(1, eth(0x8847, mpls(3) + IP6), Verdict.OK, IP6, id="mpls-three-labels"),
    L(1, eth(0x8848, mpls(2) + IP4, tags=(0x8100,)), Verdict.OK, IP4, id="vlan-mpls-multicast"),
    L(1, eth(0x8847, mpls(1) + MACS), Verdict.NOT_IP, None, id="mpls-pseudowire"),
    L(1, eth(0x8864, pppoe(0x0021, IP4)), Verdict.OK, IP4, id="pppoe-ipv4"),
    L(1, eth(0x8864, pppoe(0x0057, IP6), tags=(0x8100,)), Verdict.OK, IP6, id="vlan-pppoe-ipv6"),
    L(1, eth(0x8864, pppoe(0xC021, bytes(8))), Verdict.NOT_IP, None, id="pppoe-lcp"),
    L(1, eth(0x0806, bytes(28)), Verdict.NOT_IP, None, id="arp"),
    L(1, eth(0x0806, bytes(28), tags=(0x8100,)), Verdict.NOT_IP, None, id="vlan-arp"),
    L(1, eth(0x0027, b"\x42\x42\x03" + bytes(36)), Verdict.NOT_IP, None, id="llc"),
    L(113, sll(0x0800, IP4), Verdict.OK, IP4, id="sll-ipv4"),
    L(113, sll(0x8100, struct.pack("!HH", 5, 0x86DD) + IP6), Verdict.OK, IP6, id="sll-vlan-ipv6"),
    L(113, sll(0x0806, bytes(28)), Verdict.NOT_IP, None, id="sll-arp"),
    L(276, sll2(0x86DD, IP6), Verdict.OK, IP6, id="sll2-ipv6"),
    L(276, sll2(0x0800, IP4), Verdict.OK, IP4, id="sll2-ipv4"),
    L(0, null(2, IP4, "<"), Verdict.OK, IP4, id="null-le-inet"),
    L(0, null(2, IP4, ">"), Verdict.OK, IP4, id="null-be-inet"),
    L(0, null(24, IP6, "<"), Verdict.OK, IP6, id="null-le-inet6-24"),
    L(0, null(28, IP6, ">"), Verdict.OK, IP6, id="null-be-inet6-28"),
    L(0, null(30, IP6, "<"), Verdict.OK, IP6, id="null-le-inet6-30"),
    L(0, null(7, IP4), Verdict.NOT_IP, None, id="null-unknown-family"),
    L(108, loop(2, IP4), Verdict.OK, IP4, id="loop-inet"),
    L(108, loop(24, IP6), Verdict.OK, IP6, id="loop-inet6"),
    L(101, IP4, Verdict.OK, IP4, id="raw-ipv4"),
    L(101, IP6, Verdict.OK, IP6, id="raw-ipv6"),
    L(101, b"\x50" + IP4[1:], Verdict.NOT_IP, None, id="raw-version-5"),
    L(228, IP4, Verdict.OK, IP4, id="ipv4-228"),
    L(229, IP6, Verdict.OK, IP6, id="ipv6-229"),
    L(12, IP4, Verdict.OK, IP4, id="dlt12-raw"),
    L(14, IP6, Verdict.OK, IP6, id="dlt14-raw"),
    L(147, IP4, Verdict.UNSUPPORTED_LINK, None, id="unsupported-147"),
    L(1, MACS + b"\x08", Verdict.LINK_TRUNCATED, None, id="ethernet-13-bytes"),
    L(1, eth(0x0800, b""), Verdict.LINK_TRUNCATED, None, id="ethernet-header-only"),
    L(1, MACS + b"\x81\x00\x00", Verdict.LINK_TRUNCATED, None, id="vlan-tag-cut"),
    L(1, eth(0x8847, mpls(2)[:6]), Verdict.LINK_TRUNCATED, None, id="mpls-label-cut"),
    L(1, eth(0x8847, mpls(1)), Verdict.LINK_TRUNCATED, None, id="mpls-nothing-after-labels"),
    L(1, eth(0x8864, pppoe(0x0021, b"")[:7]), Verdict.LINK_TRUNCATED, None, id="pppoe-header-cut"),
    L(113, sll(0x0800, b"")[:15], Verdict.LINK_TRUNCATED, None, id="sll-15-bytes"),
    L(276, sll2(0x0800, b"")[:19], Verdict.LINK_TRUNCATED, None, id="sll2-19-bytes"),
    L(0, b"\x02\x00\x00", Verdict.LINK_TRUNCATED, None, id="null-3-bytes"),
    L(0, null(2, b""), Verdict.LINK_TRUNCATED, None, id="null-header-only"),
    L(108, b"\x00\x00\x00", Verdict.LINK_TRUNCATED, None, id="loop-3-bytes"),
    L(101, b"", Verdict.LINK_TRUNCATED, None, id="raw-empty"),
]


@pytest.mark.parametrize(("linktype", "frame", "verdict", "ip"), LINK_CASES)
def test_reader_strips_link_layer(tmp_path, linktype, frame, verdict, ip):
    got, packet, batch = read_one(pcap_bytes([(10**9, frame)], linktype=linktype), tmp_path)
    assert got == verdict
    assert_well_formed(batch)
    assert int(batch.wire_lengths[0]) == len(frame)
    if ip is not None:
        assert packet == ip
        same_segment(packet, ip)
    # the same frame in a pcapng gives the same answer
    png = Pcapng().section().idb(linktype & 0xFFFF).epb(0, 1, frame)
    assert read_one(png.bytes(), tmp_path, "one.pcapng")[:2] == (got, packet)


@pytest.mark.parametrize(("linktype", "frame", "verdict", "ip"), LINK_CASES)
def test_strip_link(linktype, frame, verdict, ip):
    got, offset = strip_link(linktype, frame)
    assert got == verdict
    if ip is not None:
        assert frame[offset:] == ip
    if verdict == Verdict.OK:      # the dpkt helper finds the same IP packet
        assert linklayer.strip_link_layer(linktype & 0xFFFF, frame) == (ip, "")


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview, lambda b: np.frombuffer(b, np.uint8)],
                         ids=["bytes", "bytearray", "memoryview", "ndarray"])
def test_strip_link_accepts_any_buffer(kind):
    assert strip_link(1, kind(eth(0x86DD, IP6, tags=(0x8100,)))) == (Verdict.OK, 18)


# ---- errors ----


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_pcap(tmp_path / "nope.pcap")


def test_empty_file_is_a_capture_error(tmp_path):
    path = write_file(tmp_path / "empty.pcap", b"")
    with pytest.raises(CaptureError) as info:
        read_pcap(path)
    assert isinstance(info.value, ValueError) and isinstance(info.value, fasttcp.FastTcpError)
    assert info.value.offset is None and info.value.path == str(path)


def test_non_capture_bytes_name_the_magic_at_offset_0(tmp_path):
    path = write_file(tmp_path / "text.pcap", b"GIF89a, certainly not a capture file" * 10)
    with pytest.raises(CaptureError) as info:
        read_pcap(path)
    assert info.value.offset == 0
    assert "0x38464947" in str(info.value)          # b"GIF8" read little-endian


def test_pcap_header_cut_short_is_a_capture_error(tmp_path):
    with pytest.raises(CaptureError):
        read_pcap(write_file(tmp_path / "short.pcap", pcap_bytes([])[:20]))


@pytest.mark.parametrize("batch_packets", [1, 65536])
def test_absurd_pcap_caplen_reports_the_offset_of_that_field(tmp_path, batch_packets):
    good = pcap_bytes([(1, eth(0x0800, IP4)), (2, eth(0x86DD, IP6))])
    record = struct.pack("<IIII", 3, 0, (16 << 20) + 1, 60) + bytes(60)
    path = write_file(tmp_path / "caplen.pcap", good + record)
    delivered = []
    with pytest.raises(CaptureError) as info:
        for batch in read_pcap(path, batch_packets=batch_packets):
            delivered += rows([batch])
    assert info.value.offset == len(good) + 8
    assert isinstance(info.value, ValueError)
    if batch_packets == 1:          # packets in batches before the bad record are delivered
        assert [r[5] for r in delivered] == [IP4, IP6]


def _png_two_packets() -> Pcapng:
    return Pcapng().section().idb(1).epb(0, 1, eth(0x0800, IP4)).epb(0, 2, eth(0x86DD, IP6))


@pytest.mark.parametrize("big", [False, True], ids=["little-endian", "big-endian"])
@pytest.mark.parametrize("damage", ["length-not-multiple-of-4", "length-below-12", "trailing-length-differs",
                                    "epb-caplen-past-block", "bad-section-magic"])
def test_corrupt_pcapng_block_reports_the_offset(tmp_path, damage, big):
    head = Pcapng().section(big=big).idb(1).epb(0, 1, eth(0x0800, IP4))
    e = head.e
    start = len(head.bytes())
    block = bytearray(Pcapng().section(big=big).epb(0, 2, eth(0x86DD, IP6)).blocks[-1])
    blen = len(block)
    if damage == "length-not-multiple-of-4":
        struct.pack_into(e + "I", block, 4, blen - 2)
        field = 4
    elif damage == "length-below-12":
        struct.pack_into(e + "I", block, 4, 8)
        field = 4
    elif damage == "trailing-length-differs":
        struct.pack_into(e + "I", block, blen - 4, blen + 4)
        field = blen - 4
    elif damage == "epb-caplen-past-block":
        struct.pack_into(e + "I", block, 20, blen)
        field = 20
    else:
        block = bytearray(Pcapng().section(big=big).blocks[0])
        block[8:12] = b"\x01\x02\x03\x04"
        field = 8
    path = write_file(tmp_path / "corrupt.pcapng", head.bytes() + bytes(block) + _png_two_packets().bytes())
    with pytest.raises(CaptureError) as info:
        read_all(path)
    assert info.value.offset == start + field


@pytest.mark.parametrize("cut", [1, 10, 16, 17, 40])
@pytest.mark.parametrize("batch_packets", [1, 65536])
def test_pcap_cut_in_the_last_record_delivers_the_complete_ones(tmp_path, cut, batch_packets):
    full = pcap_bytes([(1, eth(0x0800, IP4)), (2, eth(0x86DD, IP6)), (3, eth(0x0800, IP4))])
    path = write_file(tmp_path / "cut.pcap", full[:len(full) - (16 + 14 + len(IP4)) + cut])
    batches, reader = read_all(path, batch_packets=batch_packets)
    assert [r[5] for r in rows(batches)] == [IP4, IP6]
    assert reader.stats.truncated_tail == cut
    assert reader.stats.packets == 2


@pytest.mark.parametrize("cut", [4, 11, 12, 30, 60])
def test_pcapng_cut_in_the_last_block_delivers_the_complete_ones(tmp_path, cut):
    png = _png_two_packets()
    full = png.bytes()
    last = len(png.blocks[-1])
    assert cut < last
    batches, reader = read_all(write_file(tmp_path / "cut.pcapng", full[:len(full) - last + cut]))
    assert [r[5] for r in rows(batches)] == [IP4]
    assert reader.stats.truncated_tail == cut


@pytest.mark.parametrize("kw", [{"batch_packets": 0}, {"batch_bytes": 4095}])
def test_batch_limits_are_checked(tmp_path, kw):
    path = write_file(tmp_path / "ok.pcap", pcap_bytes([]))
    with pytest.raises(ValueError):
        read_pcap(path, **kw)


# ---- write_pcap ----


@pytest.mark.parametrize("nanosecond", [False, True], ids=["us", "ns"])
def test_write_pcap_round_trip(tmp_path, nanosecond):
    packets = [IP4, IP6, IP4[:30]]
    # t * 1e9 is exact in a float for these; present-day times are the xfails at the end
    times = [0.5, 4096.125, 0.015625]
    path = tmp_path / "w.pcap"
    assert write_pcap(path, packets, times, nanosecond=nanosecond) == 3
    batches, reader = read_all(path)
    assert reader.nanosecond == nanosecond and reader.linktypes == [101]
    assert [(r[2], r[3], r[4], r[5]) for r in rows(batches)] == [
        (500_000_000, len(IP4), Verdict.OK, IP4),
        (4_096_125_000_000, len(IP6), Verdict.OK, IP6),
        (15_625_000, 30, Verdict.OK, IP4[:30]),
    ]


def test_write_pcap_nanosecond_keeps_nanoseconds_of_small_times(tmp_path):
    times = [1234.000000001, 1234.999999999]
    write_pcap(tmp_path / "ns.pcap", [IP4, IP6], times, nanosecond=True)
    assert [r[2] for r in read_rows(tmp_path / "ns.pcap")] == [1_234_000_000_001, 1_234_999_999_999]


def test_write_pcap_defaults_and_snaplen(tmp_path):
    write_pcap(tmp_path / "d.pcap", iter([IP4, IP6, IP4]), snaplen=50)
    got = read_rows(tmp_path / "d.pcap")
    assert [r[2] for r in got] == [0, 1000, 2000]                   # 0, 1 us, 2 us
    assert [(len(r[5]), r[3]) for r in got] == [(min(50, len(p)), len(p)) for p in (IP4, IP6, IP4)]


def test_write_pcap_with_another_link_type(tmp_path):
    frames = [eth(0x0800, IP4), eth(0x0806, bytes(28))]
    write_pcap(tmp_path / "eth.pcap", frames, [1.0, 2.0], linktype=1)
    got = read_rows(tmp_path / "eth.pcap")
    assert [r[4] for r in got] == [Verdict.OK, Verdict.NOT_IP] and got[0][5] == IP4


@pytest.mark.parametrize("nanosecond", [False, True], ids=["us", "ns"])
def test_write_pcap_of_a_capture_batch(tmp_path, nanosecond):
    path = capture_path("zeek-mixed-vlan-mpls.pcap")
    (batch,), _ = read_all(path, **ONE_BATCH)
    assert (batch.verdicts == Verdict.OK).all()
    out = tmp_path / "batch.pcap"
    assert write_pcap(out, batch, nanosecond=nanosecond) == len(batch)
    (again,), reader = read_all(out, **ONE_BATCH)
    assert reader.linktypes == [101]
    assert [again.packet(i) for i in range(len(again))] == [batch.packet(i) for i in range(len(batch))]
    want = batch.ts_ns if nanosecond else batch.ts_ns // 1000 * 1000
    assert again.ts_ns.tolist() == want.tolist()
    assert again.wire_lengths.tolist() == batch.lengths.tolist()


def _tshark() -> str:
    tshark = shutil.which("tshark") or ("/usr/bin/tshark" if os.path.exists("/usr/bin/tshark") else None)
    if tshark is None:
        if os.environ.get("CI"):
            pytest.fail("tshark is required in CI")
        pytest.skip("tshark not installed")
    return tshark


def tshark_fields(path: Path, *fields: str) -> list[list[str]]:
    args = [_tshark(), "-n", "-r", str(path), "-T", "fields"]
    for f in fields:
        args += ["-e", f]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True).stdout
    return [line.split("\t") for line in out.splitlines() if line.strip()]


@pytest.mark.parametrize("nanosecond", [False, True], ids=["us", "ns"])
def test_tshark_reads_what_write_pcap_writes(tmp_path, nanosecond):
    packets = [IP4, IP6, IP4, IP6]
    path = tmp_path / "for-tshark.pcap"
    write_pcap(path, packets, [1_700_000_000.5, 1_700_000_000.75, 1_700_000_001.0, 1_700_000_002.125],
               nanosecond=nanosecond)
    lines = tshark_fields(path, "frame.number", "frame.time_epoch", "frame.len", "tcp.dstport")
    assert [int(n) for n, *_ in lines] == [1, 2, 3, 4]
    assert [(int(n), int(p)) for _, _, n, p in lines] == [(len(p), fasttcp.parse(p).dst_port) for p in packets]
    # tshark and the reader agree on the times in the file
    assert [Decimal(t) * 10**9 for _, t, *_ in lines] == [r[2] for r in read_rows(path)]


def test_tshark_reads_a_written_capture_batch(tmp_path):
    (batch,), _ = read_all(capture_path("zeek-mixed-vlan-mpls.pcap"), **ONE_BATCH)
    path = tmp_path / "batch.pcap"
    write_pcap(path, batch, nanosecond=True)
    lines = tshark_fields(path, "frame.number", "frame.time_epoch", "tcp.seq_raw")
    assert [int(n) for n, _, _ in lines] == list(range(1, len(batch) + 1))
    assert [Decimal(t) * 10**9 for _, t, _ in lines] == batch.ts_ns.tolist()
    assert [int(s) for _, _, s in lines] == \
        [fasttcp.parse(batch.packet(i), verify_checksum=False).seq for i in range(len(batch))]


# ---- fuzz ----

# a fifth of the parse fuzzers' budget: each example is a whole file through the reader
FUZZ = settings(max_examples=max(300, int(os.environ.get("FASTTCP_FUZZ_EXAMPLES", 1500)) // 5), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
KNOWN_LINKTYPES = sorted({p.values[0] for p in LINK_CASES})
LINKTYPES = st.one_of(st.sampled_from(KNOWN_LINKTYPES), st.integers(0, 2**32 - 1))
BATCH_KW = st.fixed_dictionaries({"batch_packets": st.sampled_from([1, 2, 7, 65536]),
                                  "batch_bytes": st.sampled_from([4096, 8 << 20])})


def _poke(args: tuple[bytes, int, int]) -> bytes:
    frame, i, value = args
    if not frame:
        return frame
    i %= len(frame)
    return frame[:i] + bytes([value]) + frame[i + 1:]


def frames(linktype: int) -> st.SearchStrategy[bytes]:
    """Frames of `linktype` from LINK_CASES, whole, cut short or with one byte changed, or noise."""
    own = st.sampled_from([p.values[1] for p in LINK_CASES if p.values[0] & 0xFFFF == linktype & 0xFFFF]
                          or [IP4, eth(0x0800, IP4)])
    return st.one_of(own, st.tuples(own, st.integers(0, 80)).map(lambda t: t[0][:t[1]]),
                     st.tuples(own, st.integers(0, 200), st.integers(0, 255)).map(_poke),
                     st.binary(max_size=120))


def _length(draw, true_length: int) -> int:
    """Mostly the true length; sometimes a small or any 32-bit lie."""
    kind = draw(st.sampled_from(["true"] * 4 + ["small", "any"]))
    return true_length if kind == "true" else draw(st.integers(0, 200 if kind == "small" else 2**32 - 1))


@st.composite
def pcap_tails(draw) -> bytes:
    e = ">" if draw(st.booleans()) else "<"
    linktype = draw(LINKTYPES)
    out = [struct.pack(e + "IHHiIII", draw(st.sampled_from([0xA1B2C3D4, 0xA1B23C4D])), 2, 4, 0, 0,
                       draw(st.integers(0, 2**32 - 1)), linktype)]
    for data in draw(st.lists(frames(linktype), max_size=8)):
        out.append(struct.pack(e + "IIII", draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**32 - 1)),
                               _length(draw, len(data)), draw(st.integers(0, 2**32 - 1))) + data)
    return b"".join(out) + draw(st.binary(max_size=40))


@st.composite
def pcapng_tails(draw) -> bytes:
    png = Pcapng().section(big=draw(st.booleans()))
    linktypes: list[int] = []

    def idb(**opts) -> None:
        linktypes.append(draw(LINKTYPES) & 0xFFFF)
        png.idb(linktypes[-1], tsresol=draw(st.one_of(st.none(), st.integers(0, 255))), **opts)

    def frame(iface: int) -> bytes:
        return draw(frames(linktypes[iface] if iface < len(linktypes) else draw(LINKTYPES)))

    idb(snaplen=draw(st.integers(0, 200)), tsoffset=draw(st.one_of(st.none(), st.integers(-2**40, 2**40))))
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["epb", "epb", "pb", "spb", "idb", "shb", "other", "raw", "lie"]))
        iface = draw(st.integers(0, 3))
        if kind == "epb":
            data = frame(iface)
            png.epb(iface, draw(st.integers(0, 2**64 - 1)), data, wire=draw(st.integers(0, 2**32 - 1)))
        elif kind == "pb":
            png.pb(iface, draw(st.integers(0, 2**64 - 1)), frame(iface))
        elif kind == "spb":
            png.spb(frame(0), wire=draw(st.integers(0, 300)))
        elif kind == "idb":
            idb()
        elif kind == "shb":
            png.section(big=draw(st.booleans()))
            linktypes.clear()
        elif kind == "other":
            png.block(draw(st.integers(0, 2**32 - 1)), draw(st.binary(max_size=60)))
        elif kind == "lie":                       # an EPB whose captured length is not its own
            body = struct.pack(png.e + "IIIII", iface, 0, 0, _length(draw, 8), 8) + bytes(8)
            png.block(6, body)
        else:
            png.blocks.append(draw(st.binary(max_size=60)))
    return png.bytes() + draw(st.binary(max_size=40))


def fuzz_outcome(path: Path, kw: dict) -> tuple[list[tuple], int | None, int]:
    """Rows delivered, the CaptureError offset (None: no error) and the truncated tail;
    asserts the invariants on every batch on the way."""
    size = path.stat().st_size
    delivered: list[tuple] = []
    try:
        with read_pcap(path, **kw) as reader:
            for batch in reader:
                assert_well_formed(batch)
                delivered += rows([batch])
            assert 0 <= reader.stats.truncated_tail <= size
            assert reader.stats.packets == len(delivered)
            error = None
    except CaptureError as exc:
        assert exc.offset is None or 0 <= exc.offset <= size, exc
        error = exc.offset if exc.offset is not None else -1
    assert [r[0] for r in delivered] == list(range(1, len(delivered) + 1))
    return delivered, error, (reader.stats.truncated_tail if error is None else 0)


def check_fuzz_file(path: Path, data: bytes, kw: dict) -> None:
    path.write_bytes(data)
    got = fuzz_outcome(path, kw)
    one = fuzz_outcome(path, {"batch_packets": 1, "batch_bytes": 4096})
    # batching never changes what is read: the same rows (up to an error), error and tail
    assert got[1:] == one[1:]
    if got[1] is None:
        assert got[0] == one[0]
    else:
        assert one[0][:len(got[0])] == got[0]


@pytest.mark.fuzz
@FUZZ
@given(data=st.one_of(pcap_tails(), st.binary(max_size=300).map(lambda b: pcap_bytes([]) + b)), kw=BATCH_KW)
def test_fuzz_pcap_never_crashes_and_stays_in_bounds(tmp_path, data, kw):
    check_fuzz_file(tmp_path / "fuzz.pcap", data, kw)


@pytest.mark.fuzz
@FUZZ
@given(data=st.one_of(pcapng_tails(), st.binary(max_size=300).map(lambda b: Pcapng().section().idb(1).bytes() + b)),
       kw=BATCH_KW)
def test_fuzz_pcapng_never_crashes_and_stays_in_bounds(tmp_path, data, kw):
    check_fuzz_file(tmp_path / "fuzz.pcapng", data, kw)


# ---- regressions: bugs once found in the reader, fixed ----


def test_write_pcap_microsecond_times_are_the_ones_given(tmp_path):
    times = [1_700_000_001.25, 1_700_000_000.000002, 1_700_000_000.123457]
    write_pcap(tmp_path / "us.pcap", [IP4] * 3, times)
    assert [r[2] for r in read_rows(tmp_path / "us.pcap")] == \
        [1_700_000_001_250_000_000, 1_700_000_000_000_002_000, 1_700_000_000_123_457_000]


def test_write_pcap_nanosecond_times_are_the_ones_given(tmp_path):
    write_pcap(tmp_path / "ns.pcap", [IP4] * 2, [1_700_000_001.25, 1_700_000_000.75], nanosecond=True)
    assert [r[2] for r in read_rows(tmp_path / "ns.pcap")] == [1_700_000_001_250_000_000, 1_700_000_000_750_000_000]


def test_long_run_of_non_packet_blocks_is_not_an_error(tmp_path):
    path = tmp_path / "many-blocks.pcapng"
    custom = Pcapng().block(0x40000BAD, bytes(4084)).blocks[0]          # 4 KiB custom block
    count = 60 * 256                                                    # 60 MiB of them
    try:
        with open(path, "wb") as f:
            f.write(Pcapng().section().idb(101).bytes())
            for _ in range(count // 256):
                f.write(custom * 256)
            f.write(Pcapng().epb(0, 1, IP4).bytes())
        batches, reader = read_all(path)
        assert [r[5] for r in rows(batches)] == [IP4]
        assert reader.stats.blocks_skipped == count
    finally:
        path.unlink()                   # pytest keeps recent tmp dirs: do not leave 60 MiB behind


def test_pcap_fcs_length_is_cut_from_the_packet(tmp_path):
    frame = eth(0x0800, IP4) + b"\xde\xad\xbe\xef"
    path = write_file(tmp_path / "fcs.pcap", pcap_bytes([(1, frame)], linktype=0x24000001))
    (helper,) = linklayer.read_frames(path)
    assert helper.ip == IP4
    assert read_rows(path)[0][4:] == (Verdict.OK, IP4)


def test_strip_link_and_reader_agree_on_an_empty_frame(tmp_path):
    verdict, _, _ = read_one(pcap_bytes([(1, b"")], linktype=147), tmp_path)
    assert strip_link(147, b"") == (verdict, 0)


def test_read_pcap_is_exported_from_the_package():
    assert fasttcp.read_pcap is read_pcap


def test_corrupt_record_delivers_the_good_packets_before_it(tmp_path):
    good = pcap_bytes([(1, eth(0x0800, IP4)), (2, eth(0x0800, IP4))])
    bad = good + struct.pack("<IIII", 3, 0, 0x7FFFFFFF, 0x7FFFFFFF)
    path = write_file(tmp_path / "corrupt-after-two.pcap", bad)
    reader = fasttcp.read_pcap(path)
    first = reader.read_batch()
    assert first is not None and len(first) == 2
    with pytest.raises(CaptureError) as e:
        reader.read_batch()
    assert e.value.offset == len(good) + 8


def test_write_pcap_with_too_few_timestamps_is_a_usage_error(tmp_path):
    with pytest.raises(fasttcp.UsageError):
        write_pcap(tmp_path / "short.pcap", [IP4] * 3, [1.0, 2.0])


def test_write_pcap_of_a_batch_writes_only_ip_rows(tmp_path):
    arp = eth(0x0806, bytes(28))
    src = write_file(tmp_path / "mixed.pcap", pcap_bytes([(1, eth(0x0800, IP4)), (2, arp)]))
    (batch,) = list(fasttcp.read_pcap(src))
    assert write_pcap(tmp_path / "ip-only.pcap", batch) == 1
    assert [r[5] for r in read_rows(tmp_path / "ip-only.pcap")] == [IP4]


# records of every size class, among them some larger than a 4 KiB batch (the buffer grows)
_RECORD_SIZES = (60, 1500, 9000, 300, 30000, 65000, 40, 12000)


def _sized_records(count: int) -> list[tuple[int, bytes]]:
    return [(i * 1000, bytes([i % 251]) * _RECORD_SIZES[i % len(_RECORD_SIZES)]) for i in range(count)]


def batch_snapshot(b: CaptureBatch) -> tuple:
    """A batch's bytes and arrays, copied: to check later that nothing changed them."""
    return (b.buffer.tobytes(), *(a.copy() for a in (b.offsets, b.lengths, b.ts_ns, b.wire_lengths,
                                                     b.verdicts, b.interfaces, b.frames, b.snapped)))


def same_as_snapshot(b: CaptureBatch, snap: tuple) -> bool:
    now = batch_snapshot(b)
    return now[0] == snap[0] and all(np.array_equal(x, y) for x, y in zip(now[1:], snap[1:], strict=True))


@pytest.mark.parametrize("k", [1, 2, 3])
def test_buffers_keep_a_batch_until_k_more_are_read(tmp_path, k):
    """The `buffers=k` contract that analyze's tracker threads rely on: a batch's bytes
    and arrays stay as read while the next k-1 batches are read, also when a record
    larger than the batch makes the reader grow its buffer."""
    path = write_file(tmp_path / "sizes.pcap", pcap_bytes(_sized_records(400), linktype=101))
    held: list[tuple[CaptureBatch, tuple]] = []
    count = 0
    for batch in read_pcap(path, batch_bytes=4096, buffers=k):
        held = [*held, (batch, batch_snapshot(batch))][-k:]
        for b, snap in held:
            assert same_as_snapshot(b, snap)
        count += len(batch)
    assert count == 400


@pytest.mark.parametrize("k", [0, 1, 3])
def test_the_arrays_of_a_batch_are_reused_k_batches_later(tmp_path, k):
    """With buffers=k the scanner writes batch i + k's rows into batch i's arrays (new
    arrays for every batch cost page faults on every batch); with buffers=0 each batch
    keeps arrays of its own for as long as it is kept."""
    recs = [(i * 1000, eth(0x0800, IP4 + bytes(i % 200))) for i in range(3000)]
    path = write_file(tmp_path / "reuse.pcap", pcap_bytes(recs))
    batches = list(read_pcap(path, batch_bytes=4096, buffers=k))
    assert len(batches) > 6 and sum(map(len, batches)) == 3000
    for i, b in enumerate(batches):
        for j in range(i + 1, min(i + 8, len(batches))):
            shared = np.shares_memory(b.offsets, batches[j].offsets)
            assert shared == (k > 0 and (j - i) % k == 0), (k, i, j)


@pytest.mark.parametrize("mapped", [True, False])
def test_a_consumer_releasing_its_batches_keeps_only_the_arrays_it_holds(tmp_path, mapped):
    """With buffers=k a released batch's arrays take the next batch's rows: a consumer
    holding three batches at a time (analyze with N workers: READ_AHEAD in flight)
    keeps four sets, not k -- the others' pages, first touched in every run, were
    a third of a sharded run's page faults -- and what it holds stays as read."""
    recs = [(i * 1000, eth(0x0800, IP4 + bytes(i % 200))) for i in range(3000)]
    path = write_file(tmp_path / "release.pcap", pcap_bytes(recs))
    held: list[tuple[CaptureBatch, tuple]] = []
    sets: list[np.ndarray] = []
    count = read = 0
    with read_pcap(path, batch_bytes=4096, buffers=6, mapped=mapped) as reader:
        for batch in reader:
            read += 1
            if not any(np.shares_memory(batch.offsets, s) for s in sets):
                sets.append(batch.offsets)
            held = [*held, (batch, batch_snapshot(batch))][-3:]
            for b, snap in held:
                assert same_as_snapshot(b, snap)
            reader.release(max(read - 3, 0))     # (those before the three held)
            count += len(batch)
    assert count == 3000 and read > 12
    assert len(sets) == 4


def test_ctrl_c_at_any_line_of_choosing_a_batchs_arrays_leaves_the_reader_readable(tmp_path):
    """A KeyboardInterrupt at any line where the reader picks or adds a set of arrays
    for the next batch: the reads after it go on without error, each packet one of the
    file's, in order (a set once half added -- two lists, one appended to -- made every
    later read that needed a new set raise IndexError)."""
    recs = [(i * 1000, eth(0x0800, IP4 + bytes(i % 200))) for i in range(3000)]
    path = write_file(tmp_path / "ctrlc.pcap", pcap_bytes(recs))
    want = [r[5] for r in read_rows(path)]
    code = CaptureReader._scan_set.__code__
    hit = 0
    for n in range(1, 40):
        seen = [0]

        def trace(frame, event, arg, n=n, seen=seen):
            if frame.f_code is not code:
                return None

            def line(frame, event, arg):
                if event == "line":
                    seen[0] += 1
                    if seen[0] == n:
                        raise KeyboardInterrupt
                return line
            return line

        with read_pcap(path, batch_bytes=4096, buffers=4) as reader:
            got = [b.packet(i) for b in [reader.read_batch()] for i in range(len(b))]
            sys.settrace(trace)
            try:
                reader.read_batch()
            except KeyboardInterrupt:
                hit += 1
            finally:
                sys.settrace(None)
            for b in reader:
                got += [b.packet(i) for i in range(len(b))]
        it = iter(want)
        assert all(p in it for p in got), f"Ctrl-C at line {n}: packets out of order or not the file's"
    assert hit >= 5


@pytest.mark.parametrize("shards", [None, 2])
def test_releasing_more_than_was_read_ends_no_later_batch_early(tmp_path, shards):
    """A release count beyond the batches read counts only those: the batches read
    after it keep their arrays (and shards) for `buffers` reads."""
    from fasttcp.analysis.shards import sharding

    recs = [(i * 1000, eth(0x0800, IP4 + bytes(i % 200))) for i in range(3000)]
    path = write_file(tmp_path / "over.pcap", pcap_bytes(recs))
    with read_pcap(path, batch_bytes=4096, buffers=3,
                   shards=None if shards is None else sharding(shards)) as reader:
        reader.release(10**9)
        first = reader.read_batch()
        snap = batch_snapshot(first), None if first.shards is None else first.shards.copy()
        for _ in range(2):
            assert reader.read_batch() is not None
            assert same_as_snapshot(first, snap[0])
            assert snap[1] is None or np.array_equal(first.shards, snap[1])


def test_a_pipe_may_deliver_large_records_in_pieces(tmp_path):
    """A pipe gives what its writer has written so far (tcpdump -U over ssh, a slow
    link): a record arriving in many pieces is waited for, not taken for corruption
    (the reader once grew its buffer on every short read, to 'record larger than any
    real packet' after three)."""
    data = pcap_bytes(_sized_records(24), linktype=101)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def feed():
        with open(fifo, "wb", buffering=0) as w:
            for i in range(0, len(data), 1000):
                w.write(data[i: i + 1000])
                time.sleep(0.0005)

    t = threading.Thread(target=feed)
    t.start()
    try:
        batches, reader = read_all(fifo)
    finally:
        t.join(60)
    assert [r[5] for r in rows(batches)] == [p for _, p in _sized_records(24)]
    assert reader.stats.bytes == len(data) and reader.stats.truncated_tail == 0


@pytest.mark.parametrize("described", [3, 257, 300, 65535, 65537])
def test_a_section_may_describe_up_to_65535_interfaces(tmp_path, described):
    # the interface table grows as interfaces are described: a packet on any of the
    # first 65535 is read with its own link type and time resolution (raw IP here, in
    # nanoseconds for the last one), one past them is counted as naming no interface
    # it knows (the interface column is uint16: 0xffff says none)
    png = Pcapng().section()
    for i in range(described):
        png.idb(101, tsresol=9 if i == described - 1 else None)          # LINKTYPE_RAW
    syn = fasttcp.build("198.18.0.1", "198.18.0.2", 1000, 80, seq=1, flags=fasttcp.Flags.SYN)
    on = sorted({0, min(described, 65535) - 1, 256 % described})
    for k, iface in enumerate(on):
        png.epb(iface, 1_000_000 + k, syn)
    if described > 65535:
        png.epb(65535, 5, syn)
    with read_pcap(write_file(tmp_path / "many.pcapng", png.bytes())) as reader:
        b = reader.read_batch()
        stats = reader.stats
    n = len(on)
    assert b.interfaces[:n].tolist() == on
    assert b.verdicts[:n].tolist() == [Verdict.OK] * n
    last = described - 1
    want = [(1_000_000 + k) * (1 if iface == last else 1000) for k, iface in enumerate(on)]
    assert b.ts_ns[:n].tolist() == want
    if described > 65535:
        assert b.interfaces[n] == 0xFFFF and b.verdicts[n] == Verdict.UNSUPPORTED_LINK
        assert stats.bad_interface == 1
    else:
        assert len(b) == n and stats.bad_interface == 0
