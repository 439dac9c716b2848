"""Hypothesis-driven fuzzing of parse / parse_tcp / parse_batch.

Inputs are random bytes and mutated valid packets (bit flips, rewritten length fields,
splices, truncations, insertions). For each input the only acceptable outcomes are a
Segment whose fields agree with the bytes (checked independently of fasttcp) or a
MalformedPacket with a sane field/offset; parse_batch must record the same verdict.

The quick tests below run on every `pytest`; the long run is marked `fuzz` and takes its
example count from FASTTCP_FUZZ_EXAMPLES (default 1500), e.g.

    FASTTCP_FUZZ_EXAMPLES=50000 python -m pytest tests/test_fuzz.py -m fuzz
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fasttcp
from fasttcp import MalformedPacket, Segment, Verdict, parse, parse_batch, parse_tcp
from tests.reference import oracle
from tests.reference import packets as P

FIELD_NAMES = oracle.FIELD_NAMES
VERDICT_CLASS = {
    Verdict.TRUNCATED: fasttcp.TruncatedPacket,
    Verdict.BAD_IP_HEADER: fasttcp.BadHeader,
    Verdict.BAD_TCP_HEADER: fasttcp.BadHeader,
    Verdict.BAD_OPTION: fasttcp.BadOption,
    Verdict.BAD_CHECKSUM: fasttcp.BadChecksum,
    Verdict.BAD_IP_CHECKSUM: fasttcp.BadChecksum,
    Verdict.NOT_TCP: fasttcp.UnsupportedPacket,
    Verdict.FRAGMENT: fasttcp.UnsupportedPacket,
    Verdict.BAD_VERSION: fasttcp.UnsupportedPacket,
}

QUICK = settings(max_examples=300, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
LONG_EXAMPLES = int(os.environ.get("FASTTCP_FUZZ_EXAMPLES", "1500"))

S4, D4 = "198.51.100.7", "203.0.113.9"
S6, D6, HOP, FINAL = "2001:db8::7", "2001:db8::9", "2001:db8::a", "2001:db8::f"


def _seeds() -> list[bytes]:
    syn_opts = bytes.fromhex("020405b40402080a0000abcd0000000001030307")
    sack = bytes.fromhex("0101051200000010000000200000003000000040")
    odd = bytes([30, 4, 1, 2, 31, 2, 1, 0])
    seeds = [
        P.ipv4_packet(S4, D4, P.tcp_segment(S4, D4, 1, 2, options=syn_opts)),
        P.ipv4_packet(S4, D4, P.tcp_segment(S4, D4, 3, 4, flags=0x18, payload=b"hello fuzz", options=sack),
                      ip_options=b"\x01\x01\x01\x00"),
        P.ipv4_packet(S4, D4, P.tcp_segment(S4, D4, 5, 6, flags=0x11, options=odd, payload=b"!")),
        P.ipv4_packet(S4, D4, P.tcp_segment(S4, D4, 7, 8, flags=0x10)),
        P.ipv6_packet(S6, D6, P.tcp_segment(S6, D6, 9, 10, options=syn_opts, payload=b"v6 data")),
        P.ipv6_packet(S6, D6, P.tcp_segment(S6, FINAL, 11, 12, options=sack, payload=b"routed"),
                      ext_headers=[(P.IPPROTO_HOPOPTS, P.options_header()),
                                   (P.IPPROTO_ROUTING, P.routing_header([HOP, FINAL], 2)),
                                   (P.IPPROTO_DSTOPTS, P.options_header(b"\x01\x02\x00\x00"))]),
        P.ipv6_packet(S6, D6, P.tcp_segment(S6, D6, 13, 14, payload=b"frag"),
                      ext_headers=[(P.IPPROTO_FRAGMENT, P.fragment_header(0, False))]),
    ]
    for s in seeds:
        assert parse(s).checksum_ok is True
    return seeds


SEEDS = _seeds()

# ---------------------------------------------------------------------------
# independent views of the bytes (no fasttcp)
# ---------------------------------------------------------------------------


def be16(b, i):
    return int.from_bytes(bytes(b[i : i + 2]), "big")


def be32(b, i):
    return int.from_bytes(bytes(b[i : i + 4]), "big")


def ipv6_tcp_offset(buf: bytes):
    """Walk the extension headers to the TCP header (None if not reachable)."""
    nh, off = buf[6], 40
    routing = None
    try:
        for _ in range(64):
            if nh == 6:
                return off, routing
            if nh in (0, 43, 60):
                hlen = (buf[off + 1] + 1) * 8
                if nh == 43:
                    routing = off
            elif nh == 51:
                hlen = (buf[off + 1] + 2) * 4
            elif nh == 44:
                hlen = 8
            else:
                return None, routing
            nh, off = buf[off], off + hlen
    except IndexError:
        return None, routing
    return None, routing


def fix_checksums(b: bytearray) -> None:
    """Best effort: make the checksums of a mutated packet right so that parsing goes
    past verification (only where the layout is plain enough to know what to sum)."""
    if len(b) < 20:
        return
    if b[0] >> 4 == 4:
        ihl = (b[0] & 0xF) * 4
        if ihl < 20 or len(b) < ihl:
            return
        b[10:12] = oracle.ipv4_header_checksum(bytes(b[:ihl])).to_bytes(2, "big")
        tot = be16(b, 2) or len(b)
        if b[9] == 6 and ihl + 18 <= tot <= len(b):
            seg = bytearray(b[ihl:tot])
            seg[16:18] = oracle.tcp_checksum_to_store(bytes(b[12:16]), bytes(b[16:20]), bytes(seg)).to_bytes(2, "big")
            b[ihl:tot] = seg
    elif b[0] >> 4 == 6 and len(b) >= 40 and b[6] == 6:
        end = 40 + be16(b, 4)
        if 58 <= end <= len(b):
            seg = bytearray(b[40:end])
            seg[16:18] = oracle.tcp_checksum_to_store(bytes(b[8:24]), bytes(b[24:40]), bytes(seg)).to_bytes(2, "big")
            b[40:end] = seg


# ---------------------------------------------------------------------------
# strategies
# ---------------------------------------------------------------------------

random_bytes = st.one_of(
    st.binary(max_size=120),
    st.tuples(st.sampled_from([0x45, 0x46, 0x4F, 0x60, 0x40, 0x00]), st.binary(max_size=120)).map(
        lambda t: bytes([t[0]]) + t[1]),
)

INTERESTING = [0, 1, 2, 3, 4, 5, 6, 8, 0x0F, 0x10, 0x14, 0x28, 0x3C, 0x40, 0x50, 0x7F, 0x80, 0xF0, 0xFF]


def length_positions(pkt: bytes) -> list[int]:
    """Bytes whose value steers the parser: version/IHL, lengths, next headers, data
    offset, option kinds and lengths."""
    if not pkt:
        return [0]
    if pkt[0] >> 4 == 6:
        pos = [0, 4, 5, 6, 40, 41, 42, 43]
        off, _ = ipv6_tcp_offset(pkt) if len(pkt) >= 40 else (None, None)
    else:
        pos = [0, 2, 3, 6, 9]
        off = (pkt[0] & 0xF) * 4
    if off is not None:
        pos += [off + 12] + [off + 20 + k for k in range(12)]
    return [p for p in pos if p < len(pkt)] or [0]


@st.composite
def mutated_packets(draw):
    pkt = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "byte", "length", "length", "truncate", "extend", "splice",
                                   "insert", "delete"]))
        if op in ("flip", "byte", "insert", "delete") and not pkt:
            op = "extend"
        if op == "flip":
            i = draw(st.integers(0, len(pkt) - 1))
            pkt[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte":
            pkt[draw(st.integers(0, len(pkt) - 1))] = draw(st.integers(0, 255))
        elif op == "length":
            i = draw(st.sampled_from(length_positions(bytes(pkt))))
            if i < len(pkt):
                pkt[i] = draw(st.one_of(st.sampled_from(INTERESTING), st.integers(0, 255)))
        elif op == "truncate":
            del pkt[draw(st.integers(0, len(pkt))):]
        elif op == "extend":
            pkt += draw(st.binary(min_size=1, max_size=40))
        elif op == "splice":
            other = draw(st.sampled_from(SEEDS))
            cut_a = draw(st.integers(0, len(pkt)))
            cut_b = draw(st.integers(0, len(other)))
            pkt = pkt[:cut_a] + bytearray(other[cut_b:])
        elif op == "insert":
            i = draw(st.integers(0, len(pkt)))
            pkt[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            i = draw(st.integers(0, len(pkt) - 1))
            del pkt[i : i + draw(st.integers(1, 8))]
    if draw(st.booleans()):
        fix_checksums(pkt)
    return bytes(pkt)


packets = st.one_of(random_bytes, mutated_packets())

# ---------------------------------------------------------------------------
# the property
# ---------------------------------------------------------------------------


def check_error(e: MalformedPacket, buf: bytes) -> None:
    assert isinstance(e, ValueError)
    assert isinstance(e.verdict, Verdict) and e.verdict != Verdict.OK
    assert isinstance(e, VERDICT_CLASS[e.verdict]), (type(e), e.verdict)
    assert e.field in FIELD_NAMES and e.field != "none"
    assert 0 <= e.offset <= len(buf), (str(e), len(buf))


def check_options(seg: Segment, area: bytes) -> None:
    ref = oracle.decode_options(area)  # the parser accepted it, so must the reference
    o = seg.options
    assert o.mss == ref.mss
    assert o.wscale == ref.wscale
    assert o.sack_permitted == ref.sack_permitted
    assert o.sack == ref.sack
    assert o.timestamp == ref.timestamp
    assert o.unknown == ref.unknown


def check_segment(seg: Segment, buf: bytes, verified: bool) -> None:
    """Every field of `seg` against the raw bytes."""
    n = len(buf)
    hl = seg.header_len
    assert 20 <= hl <= 60 and hl % 4 == 0
    assert seg.version == buf[0] >> 4
    if seg.version == 4:
        ihl = (buf[0] & 0xF) * 4
        assert ihl >= 20
        tot = be16(buf, 2) or n  # total length 0: the buffer's length (TSO capture)
        assert tot <= n
        tcp_off, end = ihl, tot
        assert buf[9] == 6
        assert seg.src.packed == buf[12:16] and seg.dst.packed == buf[16:20]
        assert seg.ttl == buf[8]
        assert be16(buf, 6) & 0x3FFF == 0  # neither MF nor a fragment offset
        if verified:
            assert oracle.verifies(buf[:ihl])
            assert oracle.tcp_checksum(buf[12:16], buf[16:20], buf[tcp_off:end]) == 0
    else:
        tcp_off, routing = ipv6_tcp_offset(buf)
        assert tcp_off is not None
        plen = be16(buf, 4)
        jumbo = plen == 0 and buf[6] == 0
        end = None if jumbo else 40 + plen
        assert seg.src.packed == buf[8:24] and seg.dst.packed == buf[24:40]
        assert seg.ttl == buf[7]
        if verified and routing is None and not jumbo:
            assert oracle.tcp_checksum(buf[8:24], buf[24:40], buf[tcp_off:end]) == 0
    # the TCP header where the IP layer says it is
    t = tcp_off
    assert (seg.src_port, seg.dst_port) == (be16(buf, t), be16(buf, t + 2))
    assert (seg.seq, seg.ack) == (be32(buf, t + 4), be32(buf, t + 8))
    assert hl == (buf[t + 12] >> 4) * 4
    assert int(seg.flags) == ((buf[t + 12] & 1) << 8) | buf[t + 13]
    assert (seg.window, seg.checksum, seg.urgent) == (be16(buf, t + 14), be16(buf, t + 16), be16(buf, t + 18))
    check_options(seg, buf[t + 20 : t + hl])
    # payload: inside the buffer, exactly up to the IP datagram's end
    pl = seg.payload
    assert pl.readonly and pl.obj is buf
    if end is not None:
        assert seg.payload_len == end - t - hl  # IP-derived length minus the header
        assert bytes(pl) == buf[t + hl : end]
    else:
        assert t + hl + seg.payload_len <= n
        assert bytes(pl) == buf[t + hl : t + hl + seg.payload_len]
    assert len(pl) == seg.payload_len
    # re-emitting gives a packet that parses to the same segment
    again = seg.to_bytes()
    assert len(again) <= n
    assert parse(again) == seg
    repr(seg)


def check_one(buf: bytes) -> dict:
    """parse() with and without verification; returns {verify: verdict}."""
    verdicts = {}
    for verify in (True, False):
        try:
            seg = parse(buf, verify_checksum=verify)
        except MalformedPacket as e:
            check_error(e, buf)
            if not verify:
                assert e.verdict not in (Verdict.BAD_CHECKSUM, Verdict.BAD_IP_CHECKSUM)
            verdicts[verify] = (e.verdict, e.field, e.offset)
        else:
            assert seg.checksum_ok is (True if verify else None)
            check_segment(seg, buf, verified=verify)
            verdicts[verify] = (Verdict.OK, None, None)
    if verdicts[True][0] == Verdict.OK:
        assert verdicts[False][0] == Verdict.OK
    return verdicts


def check_batch(bufs: list[bytes], expected: list[dict], gap_byte: int = 0x5C) -> None:
    blob = bytearray()
    offs, lens = [], []
    for i, b in enumerate(bufs):
        blob += bytes([gap_byte]) * (i % 3)
        offs.append(len(blob))
        lens.append(len(b))
        blob += b
    blob = bytes(blob)
    for verify in (True, False):
        rows = parse_batch(blob, np.array(offs, dtype=np.int64), np.array(lens, dtype=np.int64),
                           verify_checksum=verify)
        for row, b, off, exp in zip(rows, bufs, offs, expected, strict=True):
            verdict, field, offset = exp[verify]
            assert row["verdict"] == verdict, (b.hex(), verify)
            if verdict != Verdict.OK:
                assert FIELD_NAMES[row["error_field"]] == field and row["error_offset"] == offset
            else:
                seg = parse(b, verify_checksum=verify)
                assert (row["seq"], row["ack"], row["src_port"], row["dst_port"], row["window"]) == (
                    seg.seq, seg.ack, seg.src_port, seg.dst_port, seg.window)
                assert row["payload_len"] == seg.payload_len and row["header_len"] == seg.header_len
                p0 = int(row["payload_offset"])
                assert off <= p0 and p0 + row["payload_len"] <= off + len(b)
                assert blob[p0 : p0 + row["payload_len"]] == bytes(seg.payload)


def check_parse_tcp(buf: bytes, src, dst) -> None:
    try:
        seg = parse_tcp(buf)
    except MalformedPacket as e:
        check_error(e, buf)
        assert e.verdict not in (Verdict.BAD_CHECKSUM, Verdict.FRAGMENT, Verdict.NOT_TCP)
        with pytest.raises(MalformedPacket):
            parse_tcp(buf, src=src, dst=dst)
        return
    hl = seg.header_len
    assert 20 <= hl <= len(buf) and hl == (buf[12] >> 4) * 4
    assert seg.payload_len == len(buf) - hl and bytes(seg.payload) == buf[hl:]
    assert (seg.src_port, seg.dst_port, seg.seq) == (be16(buf, 0), be16(buf, 2), be32(buf, 4))
    assert seg.src is None and seg.checksum_ok is None
    check_options(seg, buf[20:hl])
    good = oracle.tcp_checksum(src, dst, buf) == 0
    try:
        full = parse_tcp(buf, src=src, dst=dst)
    except fasttcp.BadChecksum as e:
        assert not good
        assert (e.field, e.offset) == ("tcp.checksum", 16)
    else:
        assert good and full.checksum_ok is True


# ---------------------------------------------------------------------------
# quick runs (every pytest invocation)
# ---------------------------------------------------------------------------


@QUICK
@given(random_bytes)
def test_fuzz_random_bytes(buf):
    check_batch([buf], [check_one(buf)])


@QUICK
@given(mutated_packets())
def test_fuzz_mutated_packets(buf):
    check_batch([buf], [check_one(buf)])


@QUICK
@given(st.lists(packets, min_size=1, max_size=8))
def test_fuzz_batch_matches_parse(bufs):
    check_batch(bufs, [check_one(b) for b in bufs])


@QUICK
@given(st.one_of(st.binary(max_size=80),
                 mutated_packets().map(lambda b: b[20:] if b[:1] == b"\x45" else b[40:])),
       st.sampled_from([(S4, D4), (S6, D6)]))
def test_fuzz_parse_tcp(buf, addrs):
    check_parse_tcp(buf, *addrs)


@QUICK
@given(mutated_packets(), st.integers(0, 7))
def test_fuzz_buffer_types_agree(buf, shift):
    # the same bytes seen through a bytearray slice or numpy array give the same outcome
    expected = check_one(buf)
    backing = bytearray(b"\x00" * shift + buf)
    view = memoryview(backing)[shift:]
    for obj in (view, np.frombuffer(bytes(backing), dtype=np.uint8)[shift:]):
        try:
            seg = parse(obj)
        except MalformedPacket as e:
            assert (e.verdict, e.field, e.offset) == expected[True]
        else:
            assert expected[True][0] == Verdict.OK
            assert seg == parse(buf)


def test_mutator_reaches_deep_verdicts():
    """The mutated-packet strategy is only useful if it gets past the checksums: sample
    it and require most verdicts to show up, including OK."""
    seen = set()

    @settings(max_examples=400, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(mutated_packets())
    def sample(buf):
        try:
            parse(buf)
            seen.add(Verdict.OK)
        except MalformedPacket as e:
            seen.add(e.verdict)

    sample()
    wanted = {Verdict.OK, Verdict.TRUNCATED, Verdict.BAD_CHECKSUM, Verdict.BAD_OPTION,
              Verdict.BAD_TCP_HEADER, Verdict.BAD_IP_CHECKSUM}
    assert wanted <= seen, seen


# ---------------------------------------------------------------------------
# the long run
# ---------------------------------------------------------------------------


@pytest.mark.fuzz
@settings(max_examples=LONG_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(packets, min_size=1, max_size=4), st.sampled_from([(S4, D4), (S6, D6)]))
def test_fuzz_long(bufs, addrs):
    check_batch(bufs, [check_one(b) for b in bufs])
    for b in bufs:
        check_parse_tcp(b[20:], *addrs)
