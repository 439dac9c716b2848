"""`PcapWriter.write_batch` (records packed in C by fasttcp.capture.records): the file
it writes is the file `PcapWriter.write_ns` writes a packet at a time, and reads back
as the same packets; bad spans, times and lengths are UsageErrors raised before
anything is written, in a child process so a crash fails one test."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import fasttcp
from fasttcp.capture.writer import LINKTYPE_RAW, PcapWriter
from tests.probe import expect_raises

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.mark.parametrize("nanosecond", [True, False])
@pytest.mark.parametrize("snaplen", [262144, 60])
def test_write_batch_writes_what_write_ns_writes(tmp_path, nanosecond, snaplen):
    batch = next(iter(fasttcp.read_pcap(DATA / "zeek-ftp-ipv6.pcap")))
    select = np.arange(len(batch)) % 3 != 1
    wire = batch.lengths + np.arange(len(batch)) % 5          # some packets longer on the wire
    with PcapWriter(tmp_path / "one.pcap", linktype=LINKTYPE_RAW, nanosecond=nanosecond, snaplen=snaplen) as w:
        n = w.write_batch(batch.buffer, batch.offsets, batch.lengths, batch.ts_ns, wire, select)
        assert n == w.count == int(select.sum())
    with PcapWriter(tmp_path / "each.pcap", linktype=LINKTYPE_RAW, nanosecond=nanosecond, snaplen=snaplen) as w:
        for i in np.flatnonzero(select):
            w.write_ns(batch.packet(i), int(batch.ts_ns[i]))
    one, each = (tmp_path / "one.pcap").read_bytes(), (tmp_path / "each.pcap").read_bytes()
    assert len(one) == len(each)
    back = next(iter(fasttcp.read_pcap(tmp_path / "one.pcap")))
    kept = np.flatnonzero(select)
    assert len(back) == len(kept)
    assert [back.packet(j) for j in range(len(back))] == [batch.packet(i)[:snaplen] for i in kept]
    unit = 1 if nanosecond else 1000
    assert (back.ts_ns == batch.ts_ns[kept] // unit * unit).all()
    # the records differ from write_ns's only in the original length kept from `wire`
    assert (back.snapped == ((wire[kept] > batch.lengths[kept]) | (batch.lengths[kept] > snaplen))).all()


def test_write_batch_of_nothing_writes_nothing(tmp_path):
    with PcapWriter(tmp_path / "x.pcap") as w:
        empty = np.empty(0, np.int64)
        assert w.write_batch(np.empty(0, np.uint8), empty, empty, empty, empty) == 0
    assert (tmp_path / "x.pcap").stat().st_size == 24


SETUP = """
import numpy as np
from fasttcp.capture.records import pack_records
buf = np.zeros(100, np.uint8)
def a(*v):
    return np.array(v, np.int64)
"""


@pytest.mark.parametrize("call, match", [
    ("pack_records(buf, a(90), a(20), a(0), a(20))", "outside the buffer"),
    ("pack_records(buf, a(-1), a(10), a(0), a(10))", "outside the buffer"),
    ("pack_records(buf, a(0), a(-5), a(0), a(10))", "outside the buffer"),
    ("pack_records(buf, a(2**62), a(2**62), a(0), a(2**62))", "outside the buffer"),
    ("pack_records(buf, a(0), a(10), a(-1), a(10))", "timestamp"),
    ("pack_records(buf, a(0), a(10), a(2**63 - 1), a(10))", "timestamp"),
    ("pack_records(buf, a(0), a(10), a(0), a(5))", "wire length"),
    ("pack_records(buf, a(0), a(10), a(0), a(2**33))", "wire length"),
    ("pack_records(buf, a(0, 1), a(10), a(0), a(10))", "one length"),
    ("pack_records(buf, a(0), a(10), a(0), a(10), select=np.ones(2, bool))", "select"),
    ("pack_records(buf, a(0), a(10), a(0), a(10), snaplen=0)", "snaplen"),
    ("pack_records(buf, np.array([0.9]), a(10), a(0), a(10))", "integers"),
    ("pack_records(buf, a(0), np.array([True]), a(0), a(10))", "integers"),
    ("pack_records(buf, a(0), a(10), a(0), np.array([2**64 - 1], np.uint64))", "int64"),
    ("pack_records(buf, a(0).reshape(1, 1), a(10), a(0), a(10))", "1-D"),
    ("pack_records(buf, a(0), a(10), a(0), a(10), select=np.ones((1, 1), bool))", "select"),
    ("pack_records(buf, a(0), a(10), a(0), a(10), out=np.zeros(25, np.uint8))", "out holds 25 bytes"),
    ("pack_records(buf, a(0), a(10), a(0), a(10), out=bytes(26))", "writable"),
    ("pack_records(buf, a(0), a(10), a(0), a(10), out=np.zeros(52, np.uint8)[::2])", "contiguous"),
    ("pack_records(buf, a(0), a(10), a(0), a(10), out=np.zeros(26, np.int64))", "uint8"),
    ("pack_records(buf, a(0), a(10), a(0), a(10), out='x' * 26)", "buffer"),
    ("pack_records(buf, a(0), a(10), a(0), a(10), out=buf[50:])", "overlaps"),
    ("pack_records(buf[20:], a(0), a(10), a(0), a(10), out=buf[:60])", "overlaps"),
])
def test_pack_records_refuses_what_would_read_outside_or_lie(call, match):
    expect_raises(SETUP + call, "UsageError", match)


def test_pack_records_into_out_packs_what_it_returns_new():
    batch = next(iter(fasttcp.read_pcap(DATA / "zeek-ftp-ipv6.pcap")))
    from fasttcp.capture.records import pack_records

    new, n = pack_records(batch.buffer, batch.offsets, batch.lengths, batch.ts_ns, batch.lengths)
    out = np.full(len(new) + 7, 0xAB, np.uint8)
    into, m = pack_records(batch.buffer, batch.offsets, batch.lengths, batch.ts_ns, batch.lengths, out=out)
    assert m == n and len(into) == len(new) and (into == new).all()
    assert np.shares_memory(into, out) and (out[len(new):] == 0xAB).all()   # the first bytes of out, no more
    again, _ = pack_records(batch.buffer, batch.offsets[:1], batch.lengths[:1], batch.ts_ns[:1], batch.lengths[:1],
                            out=bytearray(len(new)))
    assert bytes(again) == bytes(new[: len(again)])


def test_a_bad_span_writes_nothing(tmp_path):
    expect_raises(SETUP + f"""
from fasttcp.capture.writer import PcapWriter
w = PcapWriter({str(tmp_path / 'x.pcap')!r})
try:
    w.write_batch(buf, a(0, 95), a(10, 10), a(0, 0), a(10, 10))
finally:
    w.close()
    assert open({str(tmp_path / 'x.pcap')!r}, 'rb').read().__len__() == 24
""", "UsageError", "packet 1")
