"""Hostile calls into the capture edge (read_pcap / CaptureReader, write_pcap, PcapWriter,
strip_link), each in a child process (tests/probe.py): a crash or a hang fails one
test. Every answer must be a clear UsageError or CaptureError (OSError for a path that
is no file, as `open` says), or a counted verdict -- never a crash, a hang, a
half-written file or nonsense accepted."""
import textwrap

import pytest

from tests.probe import INTEGER_SWEEP, expect_ok, expect_raises

PRELUDE = """
import os, struct, tempfile
from pathlib import Path
from fasttcp import build, read_pcap, write_pcap, CaptureReader, Tracker, UsageError, CaptureError
from fasttcp.capture.writer import PcapWriter
from fasttcp.capture.reader import strip_link
from tests.capture.test_reader import Pcapng, pcap_bytes
D = Path(tempfile.mkdtemp())
OUT = D / "out.pcap"
PKT = build("198.18.0.1", "198.18.0.2", 40000, 80, seq=1)
GOOD = D / "good.pcap"
write_pcap(GOOD, [PKT, PKT], [1.0, 2.0])
"""


def P(body: str) -> str:
    """The probe: the prelude, then `body` (an indented block is fine)."""
    return PRELUDE + textwrap.dedent(body)


# ---- write_pcap ----

@pytest.mark.parametrize("ts", ["-1", "2**40", "2**32", "float('nan')", "float('inf')", "-float('inf')", "1e300",
                                "True", "'1.0'", "None", "-1e-9"])
def test_write_pcap_refuses_timestamps_a_pcap_record_cannot_hold_before_opening_the_file(ts):
    # -1 and 2**40 used to raise struct.error and leave a half-written file
    expect_raises(P(f"""
        try:
            write_pcap(OUT, [PKT, PKT], [1.0, {ts}])
        finally:
            assert not OUT.exists()
    """), "UsageError", match="timestamp")


@pytest.mark.parametrize("snaplen", ["-1", "0", "2**31", "2**32", "2**64", "True", "1.5", "None"])
def test_write_pcap_refuses_a_snaplen_outside_one_to_two_to_the_31_before_opening_the_file(snaplen):
    expect_raises(P(f"""
        try:
            write_pcap(OUT, [PKT], [1.0], snaplen={snaplen})
        finally:
            assert not OUT.exists()
    """), "UsageError", match="snaplen")


@pytest.mark.parametrize("linktype", ["-1", "2**32", "2**64", "True", "1.0", "None"])
def test_write_pcap_refuses_a_linktype_outside_32_bits_before_opening_the_file(linktype):
    expect_raises(P(f"""
        try:
            write_pcap(OUT, [PKT], [1.0], linktype={linktype})
        finally:
            assert not OUT.exists()
    """), "UsageError", match="linktype")


def test_write_pcap_keeps_the_limits_it_can_write():
    assert expect_ok(P("""
        n = write_pcap(OUT, [PKT] * 3, [0, 2**32 - 1, 4294967295.999999], snaplen=2**31 - 1, linktype=101)
        batch = next(iter(read_pcap(OUT)))
        outcome((n, batch.ts_ns.tolist()))
    """)) == f"(3, [0, {(2**32 - 1) * 10**9}, {(2**32 - 1) * 10**9 + 999999000}])"


def test_write_pcap_removes_the_partial_file_when_packets_fail_mid_way():
    assert expect_ok(P("""
        def packets():
            yield PKT
            yield PKT
            raise RuntimeError("source went away")
        try:
            write_pcap(OUT, packets(), [1.0, 2.0, 3.0])
        except RuntimeError:
            outcome(OUT.exists())
        outcome("no error")
    """)) == "False"


@pytest.mark.parametrize("packets, times", [("[PKT] * 3", "[1.0, 2.0]"), ("[PKT, 5]", "[1.0, 2.0]"),
                                            ("[PKT, None]", "[1.0, 2.0]"), ("[PKT, 'text']", "[1.0, 2.0]")])
def test_write_pcap_removes_the_partial_file_on_a_usage_error_mid_way(packets, times):
    # a packet that is an int used to be written as that many zero bytes
    expect_raises(P(f"""
        try:
            write_pcap(OUT, {packets}, {times})
        finally:
            assert not OUT.exists()
    """), "UsageError")


def test_write_pcap_of_a_capture_batch_refuses_times_a_record_cannot_hold():
    expect_raises(P("""
        batch = next(iter(read_pcap(GOOD)))
        batch.ts_ns[1] = -5
        try:
            write_pcap(OUT, batch)
        finally:
            assert not OUT.exists()
    """), "UsageError", match="timestamp")


def test_write_pcap_is_importable_from_the_package_and_the_capture_layer():
    assert expect_ok(P("""
        import fasttcp, fasttcp.capture, fasttcp.capture.reader
        outcome(fasttcp.write_pcap is fasttcp.capture.write_pcap is fasttcp.capture.reader.write_pcap)
    """)) == "True"


# ---- PcapWriter ----

@pytest.mark.parametrize("nanosecond", [False, True])
def test_pcap_writer_writes_what_read_pcap_reads_at_its_resolution(nanosecond):
    assert expect_ok(P(f"""
        with PcapWriter(OUT, nanosecond={nanosecond}, snaplen=30) as w:
            w.write(PKT, 1_700_000_000.123456789)
            w.write_ns(PKT, 5)
        r = read_pcap(OUT)
        b = next(iter(r))
        outcome((r.nanosecond, b.ts_ns.tolist(), b.lengths.tolist(), b.wire_lengths.tolist()))
    """)) == (f"({nanosecond}, [{1_700_000_000_123456717 if nanosecond else 1_700_000_000_123457000}, "
              f"{5 if nanosecond else 0}], [30, 30], [40, 40])")


@pytest.mark.parametrize("call", ["w.write(PKT, -1)", "w.write(PKT, float('nan'))", "w.write(PKT, 2**32)",
                                  "w.write(5, 1.0)", "w.write_ns(PKT, -1)", "w.write_ns(PKT, 1.5)",
                                  "w.write_ns(PKT, 2**32 * 10**9)"])
def test_pcap_writer_refuses_a_record_before_writing_any_of_it(call):
    expect_raises(P(f"""
        w = PcapWriter(OUT)
        w.write(PKT, 1.0)
        try:
            {call}
        finally:
            w.close()
            assert OUT.stat().st_size == 24 + 16 + len(PKT), OUT.stat().st_size
    """), "UsageError")


@pytest.mark.parametrize("kw", ["snaplen=0", "snaplen=-1", "snaplen=2**31", "linktype=-1", "linktype=2**32"])
def test_pcap_writer_refuses_its_header_fields_before_opening_the_file(kw):
    expect_raises(P(f"""
        try:
            PcapWriter(OUT, {kw})
        finally:
            assert not OUT.exists()
    """), "UsageError")


def test_pcap_writer_refuses_writes_after_close():
    expect_raises(P("""
        w = PcapWriter(OUT)
        w.close()
        w.close()
        w.write(PKT, 1.0)
    """), "UsageError", match="closed")


# ---- read_pcap / CaptureReader ----

@pytest.mark.parametrize("kw", ["batch_packets=0", "batch_packets=-1", "batch_packets=2**40", "batch_packets=2**64",
                                "batch_packets=True", "batch_packets=1.5", "batch_packets=None",
                                "batch_bytes=0", "batch_bytes=-1", "batch_bytes=4095", "batch_bytes=2**40",
                                "batch_bytes=2**64", "batch_bytes=True", "batch_bytes=8e6"])
def test_read_pcap_refuses_batch_sizes_it_cannot_allocate(kw):
    expect_raises(P(f"read_pcap(GOOD, {kw})"), "UsageError", match=kw.split("=")[0])


@pytest.mark.parametrize("value", ["1", "0", "None", "'yes'", "np.bool_(True)"])
def test_read_pcap_refuses_a_mapped_flag_that_is_not_a_bool(value):
    expect_raises(P(f"import numpy as np\nread_pcap(GOOD, mapped={value})"), "UsageError", match="mapped")


def test_read_pcap_takes_the_smallest_and_largest_batch_sizes():
    assert expect_ok(P("""
        from fasttcp.capture.scanner import MAX_PACKETS
        from fasttcp.capture.reader import MAX_BATCH_BYTES
        a = [len(b) for b in read_pcap(GOOD, batch_packets=1, batch_bytes=4096)]
        b = [len(b) for b in read_pcap(GOOD, batch_packets=MAX_PACKETS)]
        outcome((a, b))
    """)) == "([1, 1], [2])"


@pytest.mark.parametrize("path, exc", [("D", "IsADirectoryError"), ("D / 'missing.pcap'", "FileNotFoundError")])
def test_read_pcap_of_a_directory_or_a_missing_file_raises_the_os_error(path, exc):
    expect_raises(P(f"read_pcap({path})"), exc)


@pytest.mark.parametrize("data", ["b''", "b'\\xd4\\xc3'", "b'\\x00' * 24", "b'garbage!' * 100",
                                  "GOOD.read_bytes()[:20]",
                                  "struct.pack('<IHHiIII', 0xA1B2C3D4, 3, 0, 0, 0, 65535, 101)"])
def test_read_pcap_of_garbage_is_a_capture_error(data):
    expect_raises(P(f"""
        bad = D / "bad.pcap"
        bad.write_bytes({data})
        for batch in read_pcap(bad):
            pass
    """), "CaptureError")


def test_read_pcap_of_a_device_that_never_ends_stops_at_its_header():
    expect_raises(P("list(read_pcap('/dev/zero'))"), "CaptureError", match="magic")


@pytest.mark.parametrize("cut", [25, 30, 40, 24 + 16 + 5, -1])
def test_read_pcap_of_a_truncated_file_delivers_what_is_whole_and_counts_the_tail(cut):
    out = expect_ok(P(f"""
        bad = D / "cut.pcap"
        bad.write_bytes(GOOD.read_bytes()[:{cut}])
        r = read_pcap(bad)
        n = sum(len(b) for b in r)
        outcome((n, r.stats.truncated_tail > 0))
    """))
    assert out in ("(0, True)", "(1, True)"), out


@pytest.mark.parametrize("caplen", ["2**31", "2**32 - 1", "16 << 20 | 1"])
def test_read_pcap_of_a_lying_record_length_is_a_capture_error_with_its_offset(caplen):
    out = expect_raises(P(f"""
        data = bytearray(GOOD.read_bytes())
        struct.pack_into("<I", data, 24 + 8, {caplen})
        bad = D / "lie.pcap"
        bad.write_bytes(bytes(data))
        list(read_pcap(bad))
    """), "CaptureError", match="corrupt")
    assert "at byte 32" in out.message


@pytest.mark.parametrize("tsoffset, units, resol", [
    (2**62, 1, None), (-2**62, 1, None), (-10, 1, None), (0, 2**64 - 1, None), (0, 2**64 - 1, 0x80 | 1),
    (0, 2**63, 9), (9_223_372_036, 10**6, None),
])
def test_pcapng_timestamps_beyond_int64_nanoseconds_are_counted_not_wrapped(tsoffset, units, resol):
    # a units field times its resolution plus if_tsoffset used to overflow int64 (undefined
    # behaviour in C) into negative or wrapped times, which the tracker refuses
    out = expect_ok(P(f"""
        ng = Pcapng().section().idb(101, tsoffset={tsoffset}, tsresol={resol})
        ng.epb(0, {units}, PKT).epb(0, 0, PKT)
        bad = D / "ts.pcapng"
        bad.write_bytes(ng.bytes())
        r = read_pcap(bad)
        batch = next(iter(r))
        assert (batch.ts_ns >= 0).all(), batch.ts_ns
        t = Tracker(16, seed=1)
        t.feed_batch(batch)
        outcome((r.stats.bad_timestamp, batch.ts_ns.tolist()))
    """))
    assert out.startswith(("(1, [0,", "(2, [0, 0]", "(0, [")), out


def test_pcapng_timestamp_overflow_is_counted_exactly():
    assert expect_ok(P("""
        ng = Pcapng().section().idb(101, tsoffset=2**62).epb(0, 1, PKT)
        ng.idb(101).epb(1, 5, PKT)
        bad = D / "ts.pcapng"
        bad.write_bytes(ng.bytes())
        r = read_pcap(bad)
        outcome((next(iter(r)).ts_ns.tolist(), r.stats.bad_timestamp))
    """)) == "([0, 5000], 1)"


# ---- strip_link ----

@pytest.mark.parametrize("call", ["strip_link(True, PKT)", "strip_link(-1, PKT)", "strip_link(2**32, PKT)",
                                  "strip_link(1.0, PKT)", "strip_link(101, np.frombuffer(PKT * 2, np.uint8)[::2])",
                                  "strip_link(101, np.zeros((2, 2), np.uint8).T)"])
def test_strip_link_refuses_linktypes_and_frames_that_are_not_ones(call):
    expect_raises(P(call), "UsageError")


def test_strip_link_of_empty_and_wide_frames_is_a_verdict():
    assert expect_ok(P("""
        outcome((strip_link(101, b""), strip_link(1, b"\\x00" * 13), strip_link(101, np.zeros(4, np.uint16))))
    """)) == "((12, 0), (12, 0), (10, 0))"


def test_reading_a_closed_capture_reader_is_a_usage_error():
    expect_raises(P("""
        r = read_pcap(GOOD)
        r.close()
        r.close()
        r.read_batch()
    """), "UsageError", match="closed")


# ---- every integer argument: negative, zero, 2^31, 2^32, 2^63, 2^64 ----

SWEEP = INTEGER_SWEEP


@pytest.mark.parametrize("call", [
    "list(read_pcap(GOOD, batch_packets=v))", "list(read_pcap(GOOD, batch_bytes=v))",
    "write_pcap(OUT, [PKT], [v])", "write_pcap(OUT, [PKT], [1.0], snaplen=v)",
    "write_pcap(OUT, [PKT], [1.0], linktype=v)", "PcapWriter(OUT, snaplen=v).close()",
    "PcapWriter(OUT).write_ns(PKT, v)", "strip_link(v, PKT)",
])
def test_capture_integer_arguments_never_crash_and_raise_only_fasttcp_errors(call):
    out = expect_ok(P(SWEEP + f"outcome(sweep(lambda v: {call}))"))
    assert "ok" in out or "UsageError" in out, out


# ---- CaptureScanner.scan's `out` (the arrays a reader with buffers reuses) ----

SCAN = """
import numpy as np
from fasttcp.capture.scanner import CaptureScanner, scan_arrays
data = np.frombuffer(GOOD.read_bytes(), np.uint8).copy()
sc = CaptureScanner()
sc.start_pcap(False, False, 1, 65535)
"""


@pytest.mark.parametrize("out, match", [
    ("[*scan_arrays(4)]", "tuple of 7 arrays"),
    ("scan_arrays(4)[:6]", "tuple of 7 arrays"),
    ("scan_arrays(4) + (np.empty(4),)", "tuple of 7 arrays"),
    ("scan_arrays(3)", r"out\[0\] holds 3 packets, fewer than max_pkts \(4\)"),
    ("(np.empty(4, np.int32),) + scan_arrays(4)[1:]", r"out\[0\] must be .*int64.*got dtype int32"),
    ("scan_arrays(4)[:3] + (np.empty(4, np.uint64),) + scan_arrays(4)[4:]", r"out\[3\] must be .*uint32"),
    ("(np.empty(8, np.int64)[::2],) + scan_arrays(4)[1:]", r"out\[0\] must be .*contiguous False"),
    ("(np.empty((2, 4), np.int64),) + scan_arrays(4)[1:]", r"out\[0\] must be .*2-D"),
    ("(np.broadcast_to(np.int64(0), 4),) + scan_arrays(4)[1:]", r"out\[0\] must be .*writable False"),
    ("(bytearray(32),) + scan_arrays(4)[1:]", r"out\[0\] must be .*got bytearray"),
    ("(data[:32].view(np.int64),) + scan_arrays(4)[1:]", r"out\[0\] overlaps the buffer scanned"),
    ("(lambda a: (a[0], a[0]) + a[2:])(scan_arrays(4))", r"out\[1\] overlaps out\[0\]"),
    ("(lambda a: a[:4] + (np.empty(3, np.uint8),) + a[5:])(scan_arrays(4))", r"out\[4\] holds 3 packets"),
    ("(lambda a: a[:6] + (a[6].view(np.uint64),))(scan_arrays(4))", r"out\[6\] must be .*int64.*uint64"),
])
def test_scan_refuses_out_arrays_it_must_not_write(out, match):
    expect_raises(P(SCAN + f"sc.scan(data, 24, len(data), 4, out={out})"), "UsageError", match)


LIAR = """
class Liar(np.ndarray):
    # an ndarray whose `shape`, seen from Python, says a million rows
    @property
    def shape(self):
        return (10**6,)
"""


@pytest.mark.parametrize("call, match", [
    ("sc.scan(data, 24, len(data), 8, out=(np.empty(1, np.int64).view(Liar),) + scan_arrays(8)[1:])",
     r"out\[0\] holds 1 packets, fewer than max_pkts \(8\)"),
    ("sc.scan(data, 24, len(data), 8, out=scan_arrays(8)[:6] + (np.empty(2, np.int64).view(Liar),))",
     r"out\[6\] holds 2 packets"),
    ("sc.scan(data, 24, len(data), 8, shards=RssShards(2), shard_out=np.empty(1, np.uint16).view(Liar))",
     r"shard_out holds 1 packets, fewer than max_pkts \(8\)"),
])
def test_scan_counts_the_rows_an_array_really_has(call, match):
    """The checks read `shape` from Python, which an ndarray subclass can make say
    anything: the scan wrote 8 rows into a 1-row array (a heap overrun, then a crash)."""
    expect_raises(P(SCAN + "from fasttcp.wire.rss import RssShards\n" + LIAR + call), "UsageError", match)


@pytest.mark.parametrize("n", ["0", "-1", "2**31", "2**64", "True", "1.5", "None", "'4'"])
def test_scan_arrays_refuses_counts_it_cannot_allocate(n):
    expect_raises(P(SCAN + f"scan_arrays({n})"), "UsageError", "max_pkts")


def test_scan_into_out_gives_what_a_new_scan_gives_as_views_of_out():
    assert expect_ok(P(SCAN + textwrap.dedent("""
        out = scan_arrays(8)
        a = sc.scan(data, 24, len(data), 8)
        sc2 = CaptureScanner()
        sc2.start_pcap(False, False, 1, 65535)
        b = sc2.scan(data, 24, len(data), 8, out=out)
        same = a[:4] == b[:4] and all(np.array_equal(x, y) for x, y in zip(a[4], b[4], strict=True))
        views = all(np.shares_memory(x, o) for x, o in zip(b[4][:7], out, strict=True))
        outcome((b[1], same, views))
    """))) == "(2, True, True)"


# ---- a sharding the scanner computes (read_pcap(..., shards=RssShards(n))) ----

@pytest.mark.parametrize("kw, match", [
    ("shards=RssShards(2)", "shard_out must be .*got NoneType"),
    ("shard_out=np.empty(8, np.uint16)", "shards must be a fasttcp.wire.rss.RssShards.*got NoneType"),
    ("shards=2, shard_out=np.empty(8, np.uint16)", "shards must be .*got int"),
    ("shards=RssShards.__new__(RssShards), shard_out=np.empty(8, np.uint16)", "never initialised"),
    ("shards=RssShards(2), shard_out=np.empty(8, np.int16)", "shard_out must be .*uint16.*dtype int16"),
    ("shards=RssShards(2), shard_out=np.empty(16, np.uint16)[::2]", "contiguous False"),
    ("shards=RssShards(2), shard_out=np.empty(3, np.uint16)", "holds 3 packets, fewer than max_pkts"),
    ("shards=RssShards(2), shard_out=np.broadcast_to(np.uint16(0), 8)", "writable False"),
    ("shards=RssShards(2), shard_out=data[:16].view(np.uint16)", "overlaps the buffer scanned"),
    ("out=(o := scan_arrays(8)), shards=RssShards(2), shard_out=o[5][:8]", r"overlaps out\[5\]"),
])
def test_scan_refuses_a_sharding_it_cannot_write(kw, match):
    expect_raises(P(SCAN + "from fasttcp.wire.rss import RssShards\n" + f"sc.scan(data, 24, len(data), 8, {kw})"),
                  "UsageError", match)


def test_a_sharding_is_made_once():
    expect_raises(P("from fasttcp.wire.rss import RssShards\nRssShards(2).__init__(3)"), "UsageError",
                  "not changed once made")


def test_a_reader_refuses_a_sharding_that_is_not_one():
    expect_raises(P("read_pcap(GOOD, shards=2)"), "UsageError", "shards must be")
    expect_raises(P("from fasttcp.wire.rss import RssShards\n"
                    "list(read_pcap(GOOD, shards=RssShards.__new__(RssShards)))"), "UsageError", "never initialised")
