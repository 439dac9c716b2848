"""fasttcp.rows (the C row writer) against the Python writer it replaces, kept as the
oracle in tests/reference/rows.py: byte for byte, on every bundled capture run through
the Tracker as `fasttcp analyze` runs it, and on random rows that reach every corner of
the formats (times past 2^53 and up to 2^64-1, negative durations, IPv6 zero runs and
mapped addresses, histories of any ASCII byte).

Other references, never the code under test: the Community ID spec's own test vectors
(tests/data/community-id-vectors.json), hashlib, the csv and json modules reading the
output back, Python's repr/round/format of the same float, and RFC 5952's examples.
"""
from __future__ import annotations

import csv
import io
import ipaddress
import json
import random
import re
from functools import cache

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fasttcp
from fasttcp.rows import (
    CSV_FIELDS,
    FORMATS,
    ZEEK_FIELDS,
    RowWriter,
    community_id,
    community_ids,
    format_rows,
    uid,
    uids,
)
from fasttcp.rows import writer as writer_module
from tests import linklayer
from tests.reference import rows as oracle

CAPTURE_FILES = linklayer.list_captures(linklayer.CAPTURES)
# (format, community_id) pairs: each format's default and every explicit choice it takes
OPTIONS = [("table", None), ("table", False), ("json", None), ("json", False), ("csv", None), ("csv", False),
           ("zeek", None), ("zeek", True)]
SHA1_PATHS = [False, True] if writer_module._sha1_select(True) else [False]
EXACT_US_MAX = 8_000_000_000_000_000          # text_impl.h FTR_EXACT_US_MAX
UID_RE = re.compile(r"C[0-9A-Za-z]{17}")


@pytest.fixture(params=SHA1_PATHS, ids=lambda v: "sha-extensions" if v else "portable-c")
def sha1_path(request):
    """Each test using it runs with the portable SHA-1 and (where the CPU has them) the
    SHA extensions."""
    writer_module._sha1_select(request.param)
    yield request.param
    writer_module._sha1_select(True)


@cache
def capture_rows(name: str) -> np.ndarray:
    """The FLOW_DTYPE rows `fasttcp analyze` writes for a bundled capture, in its order."""
    return oracle.analyze_rows(linklayer.CAPTURES / name)


def make_rows(n: int) -> np.ndarray:
    rows = np.zeros(n, dtype=fasttcp.FLOW_DTYPE)
    rows["family"] = 4
    rows["rtt_syn_synack"] = rows["rtt_synack_ack"] = 0xFFFFFFFF
    return rows


def lines(data: bytes) -> list[str]:
    return data.decode("ascii").splitlines(keepends=True)


def without_times(text: str) -> str:
    """A Zeek log with its #open and #close times blanked (they are the clock's)."""
    return re.sub(r"^#(open|close)\t.*$", r"#\1\t-", text, flags=re.M)


# ---- the bundled captures, as fasttcp analyze writes them ----

def test_the_captures_give_rows_of_both_families():
    rows = np.concatenate([capture_rows(p.name) for p in CAPTURE_FILES])
    assert len(rows) > 500
    assert set(np.unique(rows["family"]).tolist()) == {4, 6}
    assert (rows["history"] != b"").any() and (rows["rtt_syn_synack"] != 0xFFFFFFFF).any()


@pytest.mark.parametrize("name", [p.name for p in CAPTURE_FILES])
def test_every_capture_in_every_format_is_the_python_writers_text(name):
    rows = capture_rows(name)
    for fmt, cid in OPTIONS:
        got = format_rows(rows, fmt, community_id=cid).decode("ascii")
        assert got == oracle.oracle_text(rows, fmt, community_id=cid), (fmt, cid)


@pytest.mark.parametrize("fmt, cid", OPTIONS)
def test_a_writer_stream_is_the_python_writers_file(fmt, cid):
    # header, every capture's rows as its own batch, footer: the whole file
    ours, theirs = io.BytesIO(), io.StringIO()
    w, o = RowWriter(ours, fmt, community_id=cid), oracle.OracleWriter(fmt, theirs, community_id=cid)
    w.header()
    o.header()
    for p in CAPTURE_FILES:
        rows = capture_rows(p.name)
        assert w.write(rows) == len(rows)
        o.rows(rows)
    w.footer()
    o.footer()
    assert without_times(ours.getvalue().decode("ascii")) == without_times(theirs.getvalue())
    assert w.count == o.n > 0


def test_zeek_header_names_the_community_id_field_only_when_asked():
    for cid, extra in ((None, []), (False, []), (True, ["community_id"])):
        out = io.BytesIO()
        RowWriter(out, "zeek", community_id=cid).header()
        head = dict(line.split("\t", 1) for line in out.getvalue().decode().splitlines() if "\t" in line)
        assert head["#fields"].split("\t") == [*ZEEK_FIELDS, *extra]
        assert len(head["#types"].split("\t")) == len(ZEEK_FIELDS) + len(extra)
        assert head["#types"].endswith("\tstring" if extra else "\tset[string]")


def test_csv_header_and_json_keys_end_with_uid_and_community_id():
    rows = capture_rows("zeek-http-get.pcap")
    out = io.BytesIO()
    w = RowWriter(out, "csv")
    w.header()
    w.write(rows)
    table = list(csv.reader(io.StringIO(out.getvalue().decode(), newline="")))
    assert tuple(table[0]) == CSV_FIELDS and table[0][-1] == "community_id"
    for line in lines(format_rows(rows, "json")):
        keys = list(json.loads(line))
        assert keys[-2:] == ["uid", "community_id"], keys


# ---- random rows: every corner of every column ----

TIMES = [0, 1, 9, 10, 12, 99, 100, 101, 999_999, 1_000_000, 1_000_001, 1_700_000_000_123_456,
         EXACT_US_MAX - 1, EXACT_US_MAX, EXACT_US_MAX + 1,
         # 2^33 s: from here a double's ulp exceeds a microsecond
         2**33 * 10**6 - 1, 2**33 * 10**6, 2**33 * 10**6 + 1, 9 * 10**15, 2**53 - 1, 2**53, 2**53 + 1,
         2**63 - 1, 2**63, 2**64 - 2, 2**64 - 1]


def _v6(groups: list[int]) -> bytes:
    return b"".join(g.to_bytes(2, "big") for g in groups)


addresses6 = st.one_of(
    st.binary(min_size=16, max_size=16),
    st.sampled_from([bytes(16), bytes(15) + b"\x01", b"\x00\x01" + bytes(14), bytes(10) + b"\xff\xff" + bytes(4)]),
    st.binary(min_size=4, max_size=4).map(lambda v4: bytes(10) + b"\xff\xff" + v4),       # ::ffff:a.b.c.d
    st.binary(min_size=4, max_size=4).map(lambda v4: bytes(12) + v4),                     # ::a.b.c.d (not mapped)
    st.lists(st.sampled_from([0, 0, 0, 1, 0xFFFF, 0xDB8, 0x2001]), min_size=8, max_size=8).map(_v6),
)
times = st.one_of(st.sampled_from(TIMES), st.integers(0, 2**64 - 1), st.integers(0, 10**16))
rtts = st.one_of(st.sampled_from([0, 1, 99, 100, 999, 1000, 1001, 0xFFFFFFFE, 0xFFFFFFFF]), st.integers(0, 2**32 - 1))
histories = st.one_of(
    st.lists(st.integers(0, 127), max_size=32).map(bytes),
    st.sampled_from([b"", b"-", b"(empty)", b"\\", b'"', b",", b"\r", b"\n", b"\t", b"\x7f", b"\x00a", b"a\x00",
                     b"ShADadFf", b"x" * 32, b'a"b,c\r\nd\\e\tf']),
)
counts64 = st.one_of(st.sampled_from([0, 1, 2**32, 2**63, 2**64 - 1]), st.integers(0, 2**64 - 1))
row_values = st.fixed_dictionaries({
    "family": st.sampled_from([4, 6]),
    "orig_h": addresses6, "resp_h": addresses6,
    "orig_p": st.integers(0, 65535), "resp_p": st.integers(0, 65535),
    "start_us": times, "end_us": times,
    "orig_bytes": counts64, "resp_bytes": counts64, "missed_bytes": counts64,
    "orig_ip_bytes": counts64, "resp_ip_bytes": counts64,
    "orig_pkts": st.integers(0, 2**32 - 1), "resp_pkts": st.integers(0, 2**32 - 1),
    "orig_retrans": st.integers(0, 2**32 - 1), "resp_retrans": st.integers(0, 2**32 - 1),
    "rtt_syn_synack": rtts, "rtt_synack_ack": rtts,
    "state": st.integers(0, 9), "conn_state": st.integers(0, 12), "end_reason": st.integers(0, 4),
    "history": histories,
})


def rows_of(values: list[dict]) -> np.ndarray:
    rows = np.zeros(len(values), dtype=fasttcp.FLOW_DTYPE)
    for r, v in zip(rows, values, strict=True):
        for k, x in v.items():
            r[k] = np.frombuffer(x, dtype=np.uint8) if k in ("orig_h", "resp_h") else x
    return rows


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(row_values, min_size=1, max_size=12), seed=st.integers(0, 65535))
def test_random_rows_in_every_format_are_the_python_writers_text(values, seed):
    rows = rows_of(values)
    for fmt, cid in OPTIONS:
        got = format_rows(rows, fmt, community_id=cid, community_id_seed=seed).decode("ascii")
        assert got == oracle.oracle_text(rows, fmt, community_id=cid, seed=seed), (fmt, cid)


@pytest.mark.parametrize("us", TIMES)
def test_times_at_the_edges_of_the_exact_range(us):
    # ts, a positive and a negative duration, through every format that prints them
    rows = make_rows(3)
    rows["start_us"] = [us, 0, us]
    rows["end_us"] = [us, us, 0]
    for fmt, cid in OPTIONS:
        assert format_rows(rows, fmt, community_id=cid).decode() == oracle.oracle_text(rows, fmt, community_id=cid)


def test_seconds_are_pythons_repr_and_six_places():
    # the exact integer paths against Python's own float text, column by column
    rng = np.random.default_rng(5)
    us = np.concatenate([rng.integers(0, 10**6, 100_000), rng.integers(0, 2**40, 100_000),
                         rng.integers(1_500_000_000_000_000, 2_000_000_000_000_000, 200_000),
                         rng.integers(EXACT_US_MAX - 10**9, EXACT_US_MAX + 10**9, 100_000),
                         # past 2^33 s a double's ulp exceeds a microsecond: only CPython's text is right
                         rng.integers(2**33 * 10**6, 2**53 + 10**9, 100_000),
                         rng.integers(0, 2**63, 100_000).astype(np.uint64) * np.uint64(2)]).astype(np.uint64)
    rows = make_rows(len(us))
    rows["start_us"] = us
    ts_csv = [line.split(",", 2)[1] for line in lines(format_rows(rows, "csv", community_id=False))]
    ts_zeek = [line.split("\t", 1)[0] for line in lines(format_rows(rows, "zeek"))]
    for u, c, z in zip(us.tolist(), ts_csv, ts_zeek, strict=True):
        assert c == repr(u / 1e6) and z == f"{u / 1e6:.6f}", u


def test_table_rtt_is_pythons_rounded_milliseconds():
    rng = np.random.default_rng(6)
    us = np.concatenate([np.arange(0, 300_000), rng.integers(0, 2**32 - 1, 300_000)]).astype(np.uint32)
    rows = make_rows(len(us))
    rows["rtt_syn_synack"] = us
    got = [line.rsplit(" ", 1)[-1].strip() for line in lines(format_rows(rows, "table"))]
    for u, g in zip(us.tolist(), got, strict=True):
        assert g == str(round(u / 1e6 * 1e3, 3)), u


# ---- reading the output back ----

@settings(max_examples=200)
@given(history=st.lists(st.integers(1, 127), min_size=1, max_size=32).map(bytes))
def test_csv_and_json_read_back_to_the_history(history):
    rows = make_rows(1)
    rows["history"] = history
    (line,) = csv.reader(io.StringIO(format_rows(rows, "csv").decode(), newline=""))
    assert line[CSV_FIELDS.index("history")].encode() == history
    assert json.loads(format_rows(rows, "json"))["history"].encode() == history


@pytest.mark.parametrize("history, text", [
    (b"", "-"),                        # fasttcp writes an empty history unset, not (empty)
    (b"-", "\\x2d"),                   # would read as unset
    (b"(empty)", "\\x28empty)"),       # would read as the empty marker
    (b"--", "--"), (b"(empty)x", "(empty)x"),
    (b"a\tb", "a\\x09b"),              # the separator
    (b"a\\b", "a\\\\b"),               # Zeek's get_escaped_string doubles a backslash
    (b"\x00\x1f\x7f", "\\x00\\x1f\\x7f"),
    (b"a,b \"c\"", "a,b \"c\""),       # printable: as is (the set separator is no concern of a string)
])
def test_zeek_escapes_a_history_as_zeeks_ascii_writer(history, text):
    rows = make_rows(1)
    rows["history"] = history
    assert format_rows(rows, "zeek").decode().split("\t")[ZEEK_FIELDS.index("history")] == text


@pytest.mark.parametrize("packed, text", [
    ("::", "::"), ("::1", "::1"), ("1::", "1::"), ("2001:db8::1", "2001:db8::1"),
    ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),      # RFC 5952 4.2.2: one zero group stays 0
    ("2001:0:0:1:0:0:0:1", "2001:0:0:1::1"),               # 4.2.3: the longest run
    ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),         # 4.2.3: the first of equal runs
    ("2001:DB8:0:0:0:0:0:ABCD", "2001:db8::abcd"),         # 4.3: lower case
    ("::ffff:192.0.2.1", "::ffff:192.0.2.1"),              # 5: IPv4-mapped, mixed notation
    ("::ffff:0.0.0.0", "::ffff:0.0.0.0"),
    ("::c000:201", "::c000:201"),                          # IPv4-compatible (deprecated): plain hex
    ("0:0:0:0:0:ffff:0:1", "::ffff:0.0.0.1"),              # mapped, whatever the IPv4 address
    ("0:0:0:0:ffff:0:0:1", "::ffff:0:0:1"),                # ::ffff:0:0:0/96 (translated) is not mapped
])
def test_ipv6_addresses_are_written_as_rfc_5952_says(packed, text):
    rows = make_rows(1)
    rows["family"] = 6
    rows["orig_h"] = np.frombuffer(ipaddress.IPv6Address(packed).packed, dtype=np.uint8)
    assert json.loads(format_rows(rows, "json"))["orig_h"] == text


# ---- uid ----

def test_uid_is_the_connection_not_the_position():
    rows = np.concatenate([capture_rows(p.name) for p in CAPTURE_FILES])
    u = uids(rows)
    assert all(UID_RE.fullmatch(x.decode()) for x in u)
    perm = np.random.default_rng(1).permutation(len(rows))
    assert (uids(rows[perm]) == u[perm]).all()
    written = [json.loads(line)["uid"] for line in lines(format_rows(rows[perm], "json"))]
    assert written == [x.decode() for x in u[perm]]
    # distinct connections, distinct uids: 5-tuple and first packet together identify a row
    keys = {(int(r["family"]), bytes(r["orig_h"]), int(r["orig_p"]), bytes(r["resp_h"]), int(r["resp_p"]),
             int(r["start_us"])) for r in rows}
    assert len(set(u.tolist())) == len(keys)


def test_uid_depends_on_the_key_fields_only():
    rows = make_rows(1)
    rows["orig_h"][0, :4] = [10, 0, 0, 1]
    rows["resp_h"][0, :4] = [10, 0, 0, 2]
    rows["orig_p"], rows["resp_p"], rows["start_us"] = 40000, 80, 1_700_000_000_000_000
    base = uids(rows)[0]
    for field, value in (("orig_bytes", 9), ("end_us", 5), ("history", b"S"), ("conn_state", 2), ("state", 3),
                         ("orig_pkts", 7), ("rtt_syn_synack", 5), ("id", 9)):
        other = rows.copy()
        other[field] = value
        assert uids(other)[0] == base, field
    other = rows.copy()
    other["orig_h"][0, 4:] = 0xAB                           # IPv4 uses the first 4 bytes only
    assert uids(other)[0] == base
    for field, value in (("orig_p", 40001), ("resp_p", 81), ("start_us", 1_700_000_000_000_001), ("family", 6)):
        other = rows.copy()
        other[field] = value
        assert uids(other)[0] != base, field
    for field in ("orig_h", "resp_h"):
        other = rows.copy()
        other[field][0, 3] ^= 1
        assert uids(other)[0] != base, field
    assert uid("10.0.0.1", 40000, "10.0.0.2", 80, 1_700_000_000_000_000) == base.decode()


def test_uid_matches_the_reference_mix_and_spreads():
    rng = np.random.default_rng(2)
    rows = make_rows(50_000)
    rows["family"] = rng.choice([4, 6], len(rows))
    rows["orig_h"] = rng.integers(0, 256, (len(rows), 16))
    rows["orig_p"] = rng.integers(0, 65536, len(rows))
    rows["start_us"] = rng.integers(0, 2**63, len(rows)) * 2 + 1
    u = uids(rows)
    assert len(set(u.tolist())) == len(rows)
    for r, x in zip(rows[:2000], u[:2000], strict=True):
        assert x.decode() == oracle.uid(int(r["family"]), bytes(r["orig_h"]), int(r["orig_p"]), bytes(r["resp_h"]),
                                        int(r["resp_p"]), int(r["start_us"]))
    # every digit position takes many values (the last of lane A's 11 holds < 22 of them)
    for pos in range(1, 18):
        assert len({x[pos] for x in u.tolist()}) >= (20 if pos == 11 else 60), pos


# ---- Community ID ----

VECTORS = json.loads((linklayer.CAPTURES / "community-id-vectors.json").read_text())["vectors"]


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: f"{v['proto']}-{v['saddr']}-{v['sport']}-seed{v['seed']}")
def test_community_id_spec_vectors(v, sha1_path):
    assert community_id(v["saddr"], v["daddr"], v["sport"], v["dport"], v["proto"], v["seed"]) == v["communityid"]
    assert community_id(ipaddress.ip_address(v["daddr"]), ipaddress.ip_address(v["saddr"]), v["dport"], v["sport"],
                        v["proto"], v["seed"]) == v["communityid"]


def test_community_ids_of_random_tuples_are_hashlibs(sha1_path):
    rng = random.Random(3)
    rows = make_rows(4001)                  # odd: the writers hash rows in pairs and a last one alone
    for i, r in enumerate(rows):
        fam = rng.choice([4, 6])
        n = 4 if fam == 4 else 16
        a = rng.randbytes(n)
        # equal addresses and equal ports too: the ports order the endpoints then
        b = a if i % 7 == 0 else rng.randbytes(n)
        r["family"] = fam
        r["orig_h"][:n], r["resp_h"][:n] = list(a), list(b)
        r["orig_p"] = rng.randrange(65536)
        r["resp_p"] = r["orig_p"] if i % 11 == 0 else rng.randrange(65536)
    seed = 4242
    want = [oracle.community_id(bytes(r["orig_h"])[:4 if r["family"] == 4 else 16],
                                bytes(r["resp_h"])[:4 if r["family"] == 4 else 16], int(r["orig_p"]),
                                int(r["resp_p"]), 6, seed) for r in rows]
    assert [x.decode() for x in community_ids(rows, seed)] == want
    written = [line.rstrip("\n").rsplit(",", 1)[1] for line in lines(format_rows(rows, "csv", community_id_seed=seed))]
    assert written == want


@settings(max_examples=300)
@given(a=st.binary(min_size=16, max_size=16), b=st.binary(min_size=16, max_size=16),
       sp=st.integers(0, 65535), dp=st.integers(0, 65535), proto=st.integers(0, 255), seed=st.integers(0, 65535))
def test_community_id_is_the_specs_pseudo_code_either_way_round(a, b, sp, dp, proto, seed):
    want = oracle.community_id(a, b, sp, dp, proto, seed)
    assert community_id(a, b, sp, dp, proto, seed) == want == community_id(b, a, dp, sp, proto, seed)
    assert community_id(a[:4], b[:4], sp, dp, proto, seed) == oracle.community_id(a[:4], b[:4], sp, dp, proto, seed)


# ---- streams ----

class TrickleRaw(io.RawIOBase):
    """A raw stream that takes at most 7 bytes a call (as a pipe may)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        n = min(7, len(b))
        self.data += bytes(b[:n])
        return n


def test_every_kind_of_stream_gets_the_same_bytes():
    rows = np.concatenate([capture_rows(p.name) for p in CAPTURE_FILES[:20]])
    want = format_rows(rows, "json")
    binary = io.BytesIO()
    RowWriter(binary, "json").write(rows)
    text = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", newline="")
    RowWriter(text, "json").write(rows)
    text.flush()
    plain = io.StringIO()
    RowWriter(plain, "json").write(rows)
    wide = io.TextIOWrapper(io.BytesIO(), encoding="utf-16-le", newline="")    # not ASCII-compatible: str
    RowWriter(wide, "json").write(rows)
    wide.flush()
    trickle = TrickleRaw()
    RowWriter(trickle, "json").write(rows)
    assert binary.getvalue() == text.buffer.getvalue() == plain.getvalue().encode() == want
    assert wide.buffer.getvalue().decode("utf-16-le").encode() == want
    assert bytes(trickle.data) == want


def test_text_written_before_rows_stays_before_them():
    text = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", newline="")
    w = RowWriter(text, "csv")
    text.write("# a comment first\n")
    w.header()
    text.write("# between\n")
    rows = capture_rows("zeek-http-get.pcap")
    w.write(rows)
    text.write("# last\n")
    text.flush()
    got = text.buffer.getvalue().decode().splitlines()
    assert got[0] == "# a comment first" and got[2] == "# between" and got[-1] == "# last"
    assert got[1] == ",".join(CSV_FIELDS)


def test_a_batch_larger_than_a_chunk_is_written_whole_and_in_order():
    base = np.concatenate([capture_rows(p.name) for p in CAPTURE_FILES])
    rows = np.concatenate([base] * (1 + 3 * writer_module.WRITE_CHUNK // (200 * len(base))))
    chunks = []

    class Sink:
        def write(self, b):
            chunks.append(bytes(b))
            return len(b)

    w = RowWriter(Sink(), "json")
    assert w.write(rows) == len(rows) == w.count
    assert len(chunks) > 2
    assert all(c.endswith(b"\n") for c in chunks)          # a chunk ends with a whole line
    assert b"".join(chunks) == format_rows(rows, "json")


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_empty_batch_writes_nothing(fmt):
    out = io.BytesIO()
    w = RowWriter(out, fmt)
    assert w.write(make_rows(0)) == 0 and out.getvalue() == b"" and w.count == 0
    assert format_rows(make_rows(0), fmt) == b""
    assert community_ids(make_rows(0)).shape == (0,) and uids(make_rows(0)).dtype == np.dtype("S18")


def test_read_only_rows_are_written():
    rows = capture_rows("zeek-http-get.pcap").copy()
    rows.flags.writeable = False
    assert format_rows(rows, "zeek") == format_rows(rows.copy(), "zeek")


def test_the_writer_reports_its_options():
    w = RowWriter(io.BytesIO(), "zeek", community_id=True, community_id_seed=7)
    assert (w.fmt, w.community_id, w.community_id_seed) == ("zeek", True, 7)
    assert RowWriter(io.BytesIO(), "csv").community_id and not RowWriter(io.BytesIO(), "table").community_id
