"""Malformed packets: every rejection carries the right class, verdict, field and offset,
parse and parse_batch agree, and nothing leaks."""
from __future__ import annotations

import contextlib
import gc
import re
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fasttcp
from fasttcp import (
    SEGMENT_DTYPE,
    BadChecksum,
    BadHeader,
    BadOption,
    MalformedPacket,
    OptionBits,
    TruncatedPacket,
    UnsupportedPacket,
    UsageError,
    Verdict,
    parse,
    parse_batch,
)
from tests.reference import oracle
from tests.reference import packets as P

FIELD_NAMES = oracle.FIELD_NAMES

VERDICT_CLASS = {
    Verdict.TRUNCATED: TruncatedPacket,
    Verdict.BAD_IP_HEADER: BadHeader,
    Verdict.BAD_TCP_HEADER: BadHeader,
    Verdict.BAD_OPTION: BadOption,
    Verdict.BAD_CHECKSUM: BadChecksum,
    Verdict.BAD_IP_CHECKSUM: BadChecksum,
    Verdict.NOT_TCP: UnsupportedPacket,
    Verdict.FRAGMENT: UnsupportedPacket,
    Verdict.BAD_VERSION: UnsupportedPacket,
}

S4, D4 = "198.18.0.1", "198.18.0.2"
S6, D6 = "2001:db8::1", "2001:db8::2"
LINUX_SYN_OPTS = bytes.fromhex("020405b4" "0402080a" "0000abcd" "00000000" "01030307")
TS_OPTS = bytes.fromhex("0101080a" "00000001" "00000002")
SACK_OPTS = bytes.fromhex("01010512" "00000010" "00000020" "00000030" "00000040")


def v4(options=b"", payload=b"", ip_options=b"", **kw):
    seg = P.tcp_segment(S4, D4, 49500, 80, seq=1000, ack=2000, flags=0x18, options=options, payload=payload, **kw)
    return P.ipv4_packet(S4, D4, seg, ip_options=ip_options)


def v6(options=b"", payload=b"", exts=(), **kw):
    seg = P.tcp_segment(S6, D6, 443, 50000, seq=7, ack=9, flags=0x10, options=options, payload=payload, **kw)
    return P.ipv6_packet(S6, D6, seg, ext_headers=exts)


VALID = {
    "v4-syn-options": v4(LINUX_SYN_OPTS),
    "v4-ts-payload": v4(TS_OPTS, b"GET / HTTP/1.1\r\n\r\n"),
    "v4-ipopts-odd-payload": v4(bytes([30, 3, 7]), b"odd", ip_options=b"\x01\x01\x01\x00"),
    "v6-sack-payload": v6(SACK_OPTS, bytes(range(97))),
    "v6-ext-headers": v6(TS_OPTS, b"xyz", exts=[(P.IPPROTO_HOPOPTS, P.options_header()),
                                                 (P.IPPROTO_DSTOPTS, P.options_header(b"\x01\x02\x00\x00"))]),
    "v6-atomic-fragment": v6(b"", b"frag", exts=[(P.IPPROTO_FRAGMENT, P.fragment_header(0, False))]),
}


def ip_header_len(pkt: bytes) -> int:
    return (pkt[0] & 0xF) * 4


def refresh_ipv4_checksum(pkt: bytes | bytearray) -> bytes:
    b = bytearray(pkt)
    hl = max(20, ip_header_len(b))
    b[10:12] = oracle.ipv4_header_checksum(bytes(b[:hl])).to_bytes(2, "big")
    return bytes(b)


def reject(pkt: bytes, **kw) -> MalformedPacket:
    """parse() must raise a MalformedPacket; check the invariants every error keeps and
    that parse_batch records the same verdict, field and offset. Returns the exception."""
    with pytest.raises(MalformedPacket) as info:
        parse(pkt, **kw)
    e = info.value
    assert isinstance(e, ValueError)
    assert isinstance(e.verdict, Verdict) and e.verdict != Verdict.OK
    assert isinstance(e, VERDICT_CLASS[e.verdict]), (type(e), e.verdict)
    assert e.field in FIELD_NAMES and e.field != "none"
    assert 0 <= e.offset <= len(pkt), (e.offset, len(pkt))
    assert e.field in str(e) and str(e.offset) in str(e)
    # the same verdict from the batch API, which never raises for bad packets
    buf = b"\xee" * 3 + pkt + b"\xee" * 5
    row = parse_batch(buf, [3], [len(pkt)], verify_checksum=kw.get("verify_checksum", True))[0]
    assert row["verdict"] == e.verdict
    assert FIELD_NAMES[row["error_field"]] == e.field
    assert row["error_offset"] == e.offset
    return e


def expect(pkt, cls, verdict, field, offset, **kw):
    e = reject(pkt, **kw)
    assert type(e) is cls, (type(e), str(e))
    assert (e.verdict, e.field, e.offset) == (verdict, field, offset), str(e)
    return e


# ---------------------------------------------------------------------------
# the valid packets really are valid
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(VALID))
def test_valid_packets_parse(name):
    pkt = VALID[name]
    seg = parse(pkt)
    assert seg.checksum_ok is True
    assert parse_batch(pkt, [0], [len(pkt)])[0]["verdict"] == Verdict.OK


# ---------------------------------------------------------------------------
# truncation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(VALID))
@pytest.mark.parametrize("verify", [True, False])
def test_every_truncation_is_rejected(name, verify):
    pkt = VALID[name]
    for n in range(len(pkt)):
        e = reject(pkt[:n], verify_checksum=verify)
        # the lengths in the headers are intact, so the only fault is a short buffer
        assert isinstance(e, TruncatedPacket), (n, str(e))
        assert e.verdict == Verdict.TRUNCATED


@pytest.mark.parametrize("name", list(VALID))
def test_truncations_in_one_batch(name):
    pkt = VALID[name]
    buf = b"".join(pkt[:n] for n in range(len(pkt) + 1))
    lengths = np.arange(len(pkt) + 1)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    rows = parse_batch(buf, offsets, lengths)
    assert (rows["verdict"][:-1] == Verdict.TRUNCATED).all()
    assert rows["verdict"][-1] == Verdict.OK


def test_truncated_header_fields_still_reported_when_tcp_header_complete():
    pkt = VALID["v4-ts-payload"]
    hl = 20 + 20 + len(TS_OPTS)
    row = parse_batch(pkt, [0], [hl + 3])[0]
    assert row["verdict"] == Verdict.TRUNCATED
    assert row["header_len"] == 20 + len(TS_OPTS) and row["seq"] == 1000 and row["payload_len"] == 3
    row = parse_batch(pkt, [0], [hl - 1])[0]
    assert row["verdict"] == Verdict.TRUNCATED and row["header_len"] == 0


def test_empty_buffer():
    expect(b"", TruncatedPacket, Verdict.TRUNCATED, "ip.version", 0)


# ---------------------------------------------------------------------------
# IPv4 header
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("ihl", [0, 1, 2, 3, 4])
def test_ihl_below_5(ihl):
    b = bytearray(VALID["v4-ts-payload"])
    b[0] = 0x40 | ihl
    expect(refresh_ipv4_checksum(b), BadHeader, Verdict.BAD_IP_HEADER, "ip.ihl", 0)


def test_ihl_past_buffer_is_truncated():
    b = bytearray(VALID["v4-syn-options"][:40])
    b[0] = 0x4F  # 60-byte header in a 40-byte buffer
    e = reject(refresh_ipv4_checksum(b))
    assert isinstance(e, TruncatedPacket)


@pytest.mark.parametrize("name", ["v4-ts-payload", "v4-ipopts-odd-payload"])
def test_total_length_shorter_than_ip_header(name):
    pkt = VALID[name]
    for tot in range(1, ip_header_len(pkt)):
        b = bytearray(pkt)
        b[2:4] = tot.to_bytes(2, "big")
        expect(refresh_ipv4_checksum(b), BadHeader, Verdict.BAD_IP_HEADER, "ip.total_length", 2)


def test_total_length_shorter_than_tcp_header():
    pkt = VALID["v4-syn-options"]  # 20 IP + 40 TCP
    for tot in range(20, 40):
        b = bytearray(pkt)
        b[2:4] = tot.to_bytes(2, "big")
        expect(refresh_ipv4_checksum(b), BadHeader, Verdict.BAD_TCP_HEADER, "tcp.header", 20)
    for tot in range(40, 60):  # room for 20 bytes, but the data offset says 40
        b = bytearray(pkt)
        b[2:4] = tot.to_bytes(2, "big")
        expect(refresh_ipv4_checksum(b), BadHeader, Verdict.BAD_TCP_HEADER, "tcp.data_offset", 32)


@pytest.mark.parametrize("extra", [1, 2, 100, 10**6])
def test_total_length_longer_than_buffer(extra):
    pkt = VALID["v4-ts-payload"]
    b = bytearray(pkt)
    b[2:4] = min(len(pkt) + extra, 65535).to_bytes(2, "big")
    e = expect(refresh_ipv4_checksum(b), TruncatedPacket, Verdict.TRUNCATED, "ip.total_length", 2)
    assert "truncated" in str(e)


def test_total_length_shorter_than_buffer_means_padding():
    # the bytes after the claimed end are link-layer padding: with a TCP checksum computed
    # for the shorter segment the packet is valid and the payload stops at the claimed end
    seg = P.tcp_segment(S4, D4, 1, 2, payload=b"abcdef")
    pkt = P.ipv4_packet(S4, D4, seg)
    b = bytearray(pkt)
    b[2:4] = (len(pkt) - 4).to_bytes(2, "big")
    short_seg = bytearray(b[20 : len(pkt) - 4])
    short_seg[16:18] = oracle.tcp_checksum_to_store(S4, D4, bytes(short_seg)).to_bytes(2, "big")
    b[20 : len(pkt) - 4] = short_seg
    s = parse(refresh_ipv4_checksum(b))
    assert bytes(s.payload) == b"ab"
    # without refreshing the TCP checksum it is a bad checksum, not a crash
    b2 = bytearray(pkt)
    b2[2:4] = (len(pkt) - 4).to_bytes(2, "big")
    expect(refresh_ipv4_checksum(b2), BadChecksum, Verdict.BAD_CHECKSUM, "tcp.checksum", 36)


def test_total_length_zero_uses_buffer_length():
    # TSO / BIG TCP captures leave the total length 0 (documented behaviour)
    b = bytearray(VALID["v4-ts-payload"])
    b[2:4] = b"\x00\x00"
    s = parse(refresh_ipv4_checksum(b))
    assert bytes(s.payload) == b"GET / HTTP/1.1\r\n\r\n"


@pytest.mark.parametrize("version", [0, 1, 2, 3, 5, 7, 8, 15])
def test_wrong_ip_version(version):
    for name in ("v4-ts-payload", "v6-sack-payload"):
        b = bytearray(VALID[name])
        b[0] = (version << 4) | (b[0] & 0xF)
        expect(bytes(b), UnsupportedPacket, Verdict.BAD_VERSION, "ip.version", 0)


@pytest.mark.parametrize("proto", [0, 1, 17, 41, 58, 132, 255])
def test_ipv4_non_tcp_protocol(proto):
    b = bytearray(VALID["v4-ts-payload"])
    b[9] = proto
    expect(refresh_ipv4_checksum(b), UnsupportedPacket, Verdict.NOT_TCP, "ip.protocol", 9)


@pytest.mark.parametrize("nh", [17, 58, 59, 132])
def test_ipv6_non_tcp_next_header(nh):
    b = bytearray(VALID["v6-sack-payload"])
    b[6] = nh
    expect(bytes(b), UnsupportedPacket, Verdict.NOT_TCP, "ipv6.next_header", 6)


def test_ipv6_non_tcp_after_extension_header_points_at_next_header_byte():
    udp = bytes.fromhex("0001000200080000")
    pkt = P.ipv6_packet(S6, D6, udp, ext_headers=[(P.IPPROTO_HOPOPTS, P.options_header())],
                        upper_protocol=P.IPPROTO_UDP)
    expect(pkt, UnsupportedPacket, Verdict.NOT_TCP, "ipv6.next_header", 40)


def test_ipv6_non_tcp_after_extension_header_is_unsupported():
    udp = bytes.fromhex("0001000200080000")
    pkt = P.ipv6_packet(S6, D6, udp, ext_headers=[(P.IPPROTO_HOPOPTS, P.options_header())],
                        upper_protocol=P.IPPROTO_UDP)
    e = reject(pkt)
    assert type(e) is UnsupportedPacket and e.verdict == Verdict.NOT_TCP and e.field == "ipv6.next_header"


@pytest.mark.parametrize("flags_frag, first", [
    (0x2000, True),  # MF, offset 0: first fragment
    (0x6000, True),  # DF+MF (odd but still a first fragment)
    (0x0001, False),  # offset 8, last fragment
    (0x2010, False),  # MF + offset
    (0x1FFF, False),
])
def test_ipv4_fragments(flags_frag, first):
    seg = P.tcp_segment(S4, D4, 1, 2, seq=4242, payload=b"fragment")
    pkt = P.ipv4_packet(S4, D4, seg, flags_frag=flags_frag)
    expect(pkt, UnsupportedPacket, Verdict.FRAGMENT, "ip.fragment", 6)
    row = parse_batch(pkt, [0], [len(pkt)])[0]
    # a first fragment's TCP header is readable; a later fragment has none
    assert (row["header_len"] == 20 and row["seq"] == 4242) if first else row["header_len"] == 0


@pytest.mark.parametrize("tcp_bytes", [8, 16, 24, 32])
def test_ipv4_first_fragment_splitting_the_tcp_header(tcp_bytes):
    # the TCP header (40 bytes with options) continues in the next fragment: that is a
    # fragment, not a malformed header
    seg = P.tcp_segment(S4, D4, 1, 2, options=LINUX_SYN_OPTS, payload=b"rest")
    pkt = P.ipv4_packet(S4, D4, seg[:tcp_bytes], flags_frag=0x2000)
    expect(pkt, UnsupportedPacket, Verdict.FRAGMENT, "ip.fragment", 6)
    # the same lengths without MF are a lying header
    pkt = P.ipv4_packet(S4, D4, seg[:tcp_bytes], flags_frag=0x4000)
    e = reject(pkt)
    assert type(e) is BadHeader and e.verdict == Verdict.BAD_TCP_HEADER


@pytest.mark.parametrize("tcp_bytes", [8, 16, 24])
def test_ipv6_first_fragment_splitting_the_tcp_header(tcp_bytes):
    seg = P.tcp_segment(S6, D6, 1, 2, options=LINUX_SYN_OPTS, payload=b"rest")
    pkt = P.ipv6_packet(S6, D6, seg[:tcp_bytes], ext_headers=[(P.IPPROTO_FRAGMENT, P.fragment_header(0, True))])
    expect(pkt, UnsupportedPacket, Verdict.FRAGMENT, "ip.fragment", 42)


def test_ipv4_df_and_reserved_bits_are_not_fragments():
    seg = P.tcp_segment(S4, D4, 1, 2, payload=b"x")
    for ff in (0x0000, 0x4000):
        assert parse(P.ipv4_packet(S4, D4, seg, flags_frag=ff)).checksum_ok


@pytest.mark.parametrize("name", ["v4-ts-payload", "v4-ipopts-odd-payload"])
def test_bad_ipv4_header_checksum(name):
    b = bytearray(VALID[name])
    b[10] ^= 0x01
    expect(bytes(b), BadChecksum, Verdict.BAD_IP_CHECKSUM, "ip.checksum", 10)
    assert parse(bytes(b), verify_checksum=False).seq == 1000
    # a changed TTL without a checksum update is caught the same way
    b = bytearray(VALID[name])
    b[8] -= 1
    expect(bytes(b), BadChecksum, Verdict.BAD_IP_CHECKSUM, "ip.checksum", 10)


@pytest.mark.parametrize("name", list(VALID))
def test_bad_tcp_checksum(name):
    pkt = VALID[name]
    seg = parse(pkt)
    tcp_off = len(pkt) - seg.payload_len - seg.header_len
    for pos in (tcp_off + 17, tcp_off + 4, len(pkt) - 1):
        b = bytearray(pkt)
        b[pos] ^= 0x40
        expect(bytes(b), BadChecksum, Verdict.BAD_CHECKSUM, "tcp.checksum", tcp_off + 16)
        assert parse(bytes(b), verify_checksum=False).checksum_ok is None


def test_bad_tcp_checksum_offsets_in_plain_packets():
    b = bytearray(VALID["v4-ts-payload"])
    b[-1] ^= 1
    expect(bytes(b), BadChecksum, Verdict.BAD_CHECKSUM, "tcp.checksum", 20 + 16)
    b = bytearray(VALID["v4-ipopts-odd-payload"])  # IHL 6
    b[-1] ^= 1
    expect(bytes(b), BadChecksum, Verdict.BAD_CHECKSUM, "tcp.checksum", 24 + 16)
    b = bytearray(VALID["v6-sack-payload"])
    b[-1] ^= 1
    expect(bytes(b), BadChecksum, Verdict.BAD_CHECKSUM, "tcp.checksum", 40 + 16)


# ---------------------------------------------------------------------------
# TCP header and options
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("doff", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("name", ["v4-ts-payload", "v4-ipopts-odd-payload", "v6-sack-payload", "v6-ext-headers"])
def test_data_offset_below_5(name, doff):
    pkt = VALID[name]
    seg = parse(pkt)
    tcp_off = len(pkt) - seg.payload_len - seg.header_len
    b = bytearray(pkt)
    b[tcp_off + 12] = (doff << 4) | (b[tcp_off + 12] & 0x0F)
    expect(bytes(b), BadHeader, Verdict.BAD_TCP_HEADER, "tcp.data_offset", tcp_off + 12)


@pytest.mark.parametrize("family", [4, 6])
def test_data_offset_past_the_segment(family):
    payload = b"12345678"  # segment = 20 + 8 bytes
    pkt = v4(b"", payload) if family == 4 else v6(b"", payload)
    ip_hl = 20 if family == 4 else 40
    for doff in range(8, 16):  # 32 .. 60 bytes > 28
        b = bytearray(pkt)
        b[ip_hl + 12] = doff << 4
        expect(bytes(b), BadHeader, Verdict.BAD_TCP_HEADER, "tcp.data_offset", ip_hl + 12)
    b = bytearray(pkt)
    b[ip_hl + 12] = 7 << 4  # 28 bytes: exactly the segment, no payload; options are the old payload
    with pytest.raises(MalformedPacket):
        parse(bytes(b))  # "12345678" is not a valid options area (kind 0x31, length 0x32)


# (options area, index of the offending option's length byte within the area)
BAD_OPTIONS = [
    (bytes([30, 0, 0, 0]), 1),  # length 0
    (bytes([30, 1, 0, 0]), 1),  # length 1
    (bytes([1, 1, 30, 0]), 3),
    (bytes([1, 1, 1, 30]), 4),  # kind in the last byte, no room for a length
    (bytes([2, 4, 5, 180, 1, 1, 1, 2]), 8),  # MSS kind in the last byte
    (bytes([30, 10, 0, 0]), 1),  # runs past a 4-byte area
    (bytes([1, 30, 8, 0, 0, 0, 0, 0]), 2),  # 8 bytes from index 1 run past 8
    (bytes([2, 3, 0, 0]), 1),  # MSS length 3
    (bytes([1, 1, 2, 5, 0, 0, 0, 0]), 3),  # MSS length 5
    (bytes([3, 2, 0, 0]), 1),  # window scale length 2
    (bytes([1, 3, 4, 7]), 2),  # window scale length 4
    (bytes([1, 1, 4, 3]), 3),  # SACK-permitted length 3
    (bytes([1, 1, 8, 8, 0, 0, 0, 0, 0, 0, 0, 0]), 3),  # timestamp length 8
    (bytes([1, 1, 8, 12]) + bytes(12), 3),  # timestamp length 12
    (bytes([1, 1, 5, 2]), 3),  # SACK with no blocks
    (bytes([1, 1, 5, 8, 0, 0, 0, 0, 0, 0, 0, 0]), 3),  # SACK length 8 (< 10)
    (bytes([1, 1, 5, 9]) + bytes(8), 3),  # SACK length 9 (not 2 + 8n)
    (bytes([1, 1, 5, 11]) + bytes(12), 3),  # SACK length 11
    (bytes([1, 1, 5, 17]) + bytes(16), 3),  # SACK length 17
    (bytes([2, 4, 5, 180, 30, 0, 0, 0]), 5),  # a good option, then length 0
]


@pytest.mark.parametrize("area, at", BAD_OPTIONS)
@pytest.mark.parametrize("family", [4, 6])
def test_bad_options(area, at, family):
    assert len(area) % 4 == 0
    with pytest.raises(oracle.OptionError) as ref:
        oracle.decode_options(area)
    assert ref.value.offset == at  # the reference agrees on where it fails
    pkt = v4(area, b"payload") if family == 4 else v6(area, b"payload")
    ip_hl = 20 if family == 4 else 40
    expect(pkt, BadOption, Verdict.BAD_OPTION, "tcp.option.length", ip_hl + 20 + at)
    expect(pkt, BadOption, Verdict.BAD_OPTION, "tcp.option.length", ip_hl + 20 + at, verify_checksum=False)


def test_bad_option_with_ip_options_and_extension_headers():
    area = bytes([1, 1, 3, 4, 0, 0, 0, 0])  # WS length 4 at area index 3
    pkt = v4(area, b"", ip_options=bytes(8))  # IHL 7
    expect(pkt, BadOption, Verdict.BAD_OPTION, "tcp.option.length", 28 + 20 + 3)
    pkt = v6(area, b"", exts=[(P.IPPROTO_HOPOPTS, P.options_header()), (P.IPPROTO_DSTOPTS, P.options_header())])
    expect(pkt, BadOption, Verdict.BAD_OPTION, "tcp.option.length", 40 + 16 + 20 + 3)


def test_anything_after_eol_is_padding():
    area = bytes([2, 4, 1, 0, 0, 0xFF, 0, 1])  # MSS, EOL, then junk that would be malformed
    pkt = v4(area, b"p")
    seg = parse(pkt)
    assert seg.options.mss == 256 and seg.options.unknown == []
    row = parse_batch(pkt, [0], [len(pkt)])[0]
    assert row["verdict"] == Verdict.OK
    assert OptionBits(int(row["opt_flags"])) == OptionBits.MSS | OptionBits.EOL


def test_last_option_filling_the_area_exactly():
    area = bytes([1, 1, 1, 1, 30, 36]) + bytes(34)  # 40 bytes, unknown kind to the last byte
    seg = parse(v4(area))
    assert seg.options.unknown == [(30, bytes(34))] and seg.header_len == 60


# ---------------------------------------------------------------------------
# IPv6 specific structure
# ---------------------------------------------------------------------------


def test_ipv6_payload_length_longer_than_buffer():
    b = bytearray(VALID["v6-sack-payload"])
    b[4:6] = (int.from_bytes(b[4:6], "big") + 10).to_bytes(2, "big")
    expect(bytes(b), TruncatedPacket, Verdict.TRUNCATED, "ipv6.payload_length", 4)


def test_ipv6_payload_length_shorter_than_tcp_header():
    for plen in range(20):
        b = bytearray(VALID["v6-sack-payload"])
        b[4:6] = plen.to_bytes(2, "big")
        e = reject(bytes(b))
        assert type(e) is BadHeader, (plen, str(e))


def test_ipv6_extension_header_longer_than_payload_length():
    pkt = bytearray(VALID["v6-ext-headers"])
    pkt[41] = 200  # HBH header length 1608 bytes
    e = reject(bytes(pkt))
    assert type(e) is BadHeader and e.field == "ipv6.ext_length" and e.offset == 41


def test_ipv6_extension_header_truncated():
    pkt = VALID["v6-ext-headers"]
    for n in range(40, 56):
        e = reject(pkt[:n])
        assert type(e) is TruncatedPacket and e.field in ("ipv6.ext_length", "ipv6.payload_length")


def test_ipv6_long_extension_chain_is_bounded():
    exts = [(P.IPPROTO_DSTOPTS, P.options_header())] * 40
    seg = P.tcp_segment(S6, D6, 1, 2)
    pkt = P.ipv6_packet(S6, D6, seg, ext_headers=exts)
    e = reject(pkt)
    assert type(e) is BadHeader and e.field == "ipv6.next_header"


# ---------------------------------------------------------------------------
# enums and the batch row layout agree with the C definitions
# ---------------------------------------------------------------------------

DEFS = Path(fasttcp.__file__).parent / "wire" / "defs.pxd"


def test_verdict_codes_match_c_definitions():
    # parse and link verdicts live in defs.pxd, the tracker's own in tracker.pxd
    text = DEFS.read_text()
    codes = {m[1]: int(m[2]) for m in re.finditer(r"FT_(OK|ERR_\w+) = (\d+)", text)}
    codes.pop("ERR_COUNT")
    names = {k.removeprefix("ERR_"): v for k, v in codes.items()}
    tracker = (DEFS.parent.parent / "tracker" / "tracker.pxd").read_text()
    tv = {m[1]: int(m[2]) for m in re.finditer(r"TV_(\w+) = (\d+)", tracker)}
    # TV_COUNT sizes the tracker's verdict counters; OTHER_SHARD, the last code, is the
    # one it does not count there (another shard's packets: stats["other_shard"])
    assert tv.pop("OK") == 0 and tv.pop("COUNT") == len(Verdict) - 1 == tv["OTHER_SHARD"]
    names.update(tv)
    assert names == {v.name: v.value for v in Verdict}


def test_option_bits_and_flags_match_c_definitions():
    text = DEFS.read_text()
    opt = {m[1]: int(m[2]) for m in re.finditer(r"OPT_HAS_(\w+) = (\d+)", text)}
    assert opt == {"MSS": 1, "WSCALE": 2, "SACK_PERM": 4, "SACK": 8, "TIMESTAMP": 16, "UNKNOWN": 32, "EOL": 64}
    assert [int(b) for b in OptionBits] == sorted(opt.values())
    flags = {m[1]: int(m[2], 16) for m in re.finditer(r"TCP_FLAG_(\w+) = 0x([0-9a-f]+)", text)}
    assert flags == {f.name: f.value for f in fasttcp.Flags}


def test_field_names_match_c_definitions():
    text = DEFS.read_text()
    block = text[text.index("FT_FIELD_NONE") : text.index("FT_FIELD_COUNT")]
    names = re.findall(r"FT_FIELD_(\w+)", block)
    assert len(names) == len(FIELD_NAMES)
    simplified = [n.lower().replace("_", "") for n in names]
    mine = [f.replace(".", "").replace("_", "").replace("ipv6", "ip6") for f in FIELD_NAMES]
    assert simplified == mine


def test_segment_dtype_matches_c_row():
    from fasttcp.wire import batch

    assert SEGMENT_DTYPE.itemsize == batch.SEGMENT_ROW_SIZE
    offsets = [SEGMENT_DTYPE.fields[n][1] for n in SEGMENT_DTYPE.names]
    assert offsets == sorted(offsets)


# ---------------------------------------------------------------------------
# parse_batch: same verdicts, never raises for bad packets, only for caller errors
# ---------------------------------------------------------------------------


def _bad_corpus() -> list[bytes]:
    out = list(VALID.values())
    for pkt in VALID.values():
        out += [pkt[:n] for n in range(0, len(pkt), 7)]
        for i in range(0, len(pkt), 3):
            b = bytearray(pkt)
            b[i] ^= 0xA5
            out.append(bytes(b))
    for area, _ in BAD_OPTIONS:
        out.append(v4(area, b"q"))
    return out


@pytest.mark.parametrize("verify", [True, False])
def test_batch_verdicts_equal_parse(verify):
    corpus = _bad_corpus()
    rng = np.random.default_rng(1)
    gaps = rng.integers(0, 5, size=len(corpus))
    buf = bytearray()
    offsets, lengths = [], []
    for pkt, gap in zip(corpus, gaps, strict=True):
        buf += b"\x99" * int(gap)
        offsets.append(len(buf))
        lengths.append(len(pkt))
        buf += pkt
    rows = parse_batch(bytes(buf), np.array(offsets), np.array(lengths), verify_checksum=verify)
    assert len(rows) == len(corpus)
    seen = set()
    for pkt, row, off in zip(corpus, rows, offsets, strict=True):
        try:
            seg = parse(pkt, verify_checksum=verify)
        except MalformedPacket as e:
            assert row["verdict"] == e.verdict
            assert FIELD_NAMES[row["error_field"]] == e.field and row["error_offset"] == e.offset
            seen.add(e.verdict)
        else:
            assert row["verdict"] == Verdict.OK
            assert (row["seq"], row["ack"], row["src_port"], row["dst_port"]) == (
                seg.seq, seg.ack, seg.src_port, seg.dst_port)
            assert (row["header_len"], row["payload_len"], row["window"], row["flags"]) == (
                seg.header_len, seg.payload_len, seg.window, int(seg.flags))
            start = row["payload_offset"]
            assert buf[start : start + row["payload_len"]] == bytes(seg.payload)
            assert start >= off and start + row["payload_len"] <= off + len(pkt)
            alen = 4 if seg.version == 4 else 16
            assert bytes(row["src"][:alen]) == seg.src.packed and bytes(row["dst"][:alen]) == seg.dst.packed
            seen.add(Verdict.OK)
    assert len(seen) >= 5  # the corpus exercises many verdicts


def test_batch_empty():
    rows = parse_batch(b"", [], [])
    assert rows.shape == (0,) and rows.dtype == SEGMENT_DTYPE


@pytest.mark.parametrize("offsets, lengths", [
    ([0], [101]), ([-1], [10]), ([0], [-1]), ([100], [1]), ([50, 0], [10, 200]),
    ([0, 10], [5]),  # shapes differ
    ([[0]], [[10]]),  # 2-D
])
def test_batch_usage_errors(offsets, lengths):
    with pytest.raises(UsageError):
        parse_batch(bytes(100), offsets, lengths)


def test_batch_zero_length_rows_at_buffer_end_are_fine():
    rows = parse_batch(bytes(100), [100, 0], [0, 0])
    assert list(rows["verdict"]) == [Verdict.TRUNCATED, Verdict.TRUNCATED]


_OVERFLOW_SCRIPT = textwrap.dedent("""
    import numpy as np, fasttcp
    # a valid IPv4 packet at offset 1 whose total length is 0 ("use the buffer length")
    pkt = bytearray(fasttcp.build("192.0.2.1", "192.0.2.2", 1, 2, payload=b"x" * 20))
    pkt[2:4] = b"\\x00\\x00"
    pkt[10:12] = b"\\x00\\x00"
    pkt[10:12] = fasttcp.checksum(bytes(pkt[:20])).to_bytes(2, "big")
    buf = bytes(b"\\x00" + pkt + bytes(100 - 1 - len(pkt)))
    try:
        fasttcp.parse_batch(buf, np.array([{off}], dtype=np.int64), np.array([{ln}], dtype=np.int64))
    except fasttcp.UsageError:
        print("USAGE_ERROR")
    else:
        print("NO_ERROR")
""")

@pytest.mark.parametrize("off, ln", [(2**62, 2**62), (2**63 - 1, 1), (1, 2**63 - 1)])
def test_batch_offset_plus_length_overflow_is_usage_error(off, ln):
    # regression: `off + ln > len` overflowed int64 and the packet was read far outside
    # the buffer (segfault); run in a child process so a regression cannot kill pytest
    proc = subprocess.run([sys.executable, "-c", _OVERFLOW_SCRIPT.format(off=off, ln=ln)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-500:])
    assert proc.stdout.strip() == "USAGE_ERROR"


@pytest.mark.parametrize("off, ln, expected", [(1, 60, "NO_ERROR"), (1, 100, "USAGE_ERROR")])
def test_batch_overflow_script_control(off, ln, expected):
    # the child script used above behaves for ordinary offsets
    proc = subprocess.run([sys.executable, "-c", _OVERFLOW_SCRIPT.format(off=off, ln=ln)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == expected, proc.stderr[-500:]


def test_batch_out_reuse():
    pkts = [VALID["v4-ts-payload"], VALID["v6-sack-payload"], b"\x45\x00"]
    buf = b"".join(pkts)
    offs = np.array([0, len(pkts[0]), len(pkts[0]) + len(pkts[1])])
    lens = np.array([len(p) for p in pkts])
    out = np.zeros(10, dtype=SEGMENT_DTYPE)
    out["seq"] = 0xDEADBEEF
    rows = parse_batch(buf, offs, lens, out=out)
    assert rows.shape == (3,) and np.shares_memory(rows, out)
    assert list(out["verdict"][:3]) == [Verdict.OK, Verdict.OK, Verdict.TRUNCATED]
    assert list(out["seq"][:2]) == [1000, 7]
    assert (out["seq"][3:] == 0xDEADBEEF).all()  # rows past n untouched
    # second use with other packets overwrites the same memory
    rows2 = parse_batch(VALID["v4-syn-options"], [0], [len(VALID["v4-syn-options"])], out=out)
    assert np.shares_memory(rows2, out)
    assert out["verdict"][0] == Verdict.OK and out["header_len"][0] == 40 and out["mss"][0] == 1460
    assert out["wscale"][0] == 7 and out["tsval"][0] == 0xABCD
    assert out["verdict"][1] == Verdict.OK and out["seq"][1] == 7  # row 1 from the first call remains
    # exactly n rows is enough
    parse_batch(buf, offs, lens, out=np.zeros(3, dtype=SEGMENT_DTYPE))


@pytest.mark.parametrize("bad_out", [
    np.zeros(2, dtype=SEGMENT_DTYPE),  # too small
    np.zeros(5, dtype=np.uint8),
    np.zeros(10, dtype=SEGMENT_DTYPE)[::2],  # not contiguous
    np.zeros((3, 2), dtype=SEGMENT_DTYPE),
    "rows",
])
def test_batch_bad_out(bad_out):
    pkt = VALID["v4-ts-payload"]
    with pytest.raises(UsageError):
        parse_batch(pkt * 3, [0, len(pkt), 2 * len(pkt)], [len(pkt)] * 3, out=bad_out)


def test_batch_read_only_out():
    out = np.zeros(3, dtype=SEGMENT_DTYPE)
    out.flags.writeable = False
    pkt = VALID["v4-ts-payload"]
    with pytest.raises(UsageError):
        parse_batch(pkt, [0], [len(pkt)], out=out)


# ---------------------------------------------------------------------------
# resources: no buffer exports or memory left behind on the error paths
# ---------------------------------------------------------------------------


def test_error_paths_release_buffers():
    bad = bytearray(VALID["v4-ts-payload"])
    bad[-1] ^= 1
    for _ in range(3):
        with pytest.raises(BadChecksum):
            parse(bad)
        with pytest.raises(MalformedPacket):
            fasttcp.parse_tcp(bad[:10])
        with pytest.raises(UsageError):
            parse_batch(bad, [0], [len(bad) + 1])
        with pytest.raises(UsageError):
            fasttcp.tcp_checksum("192.0.2.1", "192.0.2.2", bytearray(70000))
        with pytest.raises(UsageError):
            fasttcp.checksum_update(0, bytearray(b"ab"), bytearray(b"abc"))
        parse_batch(bad, [0], [len(bad)])
    # a bytearray with a leaked buffer export cannot be resized
    bad.append(0)
    bad.pop()
    ba = bytearray(70000)
    with contextlib.suppress(UsageError):
        fasttcp.tcp_checksum("192.0.2.1", "192.0.2.2", ba)
    ba.append(1)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def _bad_kinds() -> list[bytes]:
    syn = VALID["v4-syn-options"]
    b1 = bytearray(syn)
    b1[-1] ^= 1  # bad TCP checksum
    b2 = bytearray(syn)
    b2[10] ^= 1  # bad IP checksum
    return [bytes(b1), bytes(b2), syn[:30], syn[:50], v4(bytes([2, 3, 0, 0])), b"\x75" + syn[1:],
            VALID["v6-sack-payload"][:70], bytearray(VALID["v6-ext-headers"][:60])]


def test_parsing_200k_bad_packets_does_not_grow_memory():
    kinds = _bad_kinds()
    n = 200_000

    def run(count):
        for i in range(count):
            with contextlib.suppress(MalformedPacket):
                parse(kinds[i % len(kinds)])

    run(20_000)  # warm up caches (enum members, interned strings)
    gc.collect()
    rss_before = _rss_bytes()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        run(n)
        gc.collect()
        current, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_after = _rss_bytes()
    assert current - base < 256 * 1024, f"Python heap grew by {current - base} bytes over {n} bad packets"
    assert rss_after - rss_before < 32 * 1024 * 1024, f"RSS grew by {rss_after - rss_before} bytes"


def test_batch_of_bad_packets_repeated_does_not_grow_memory():
    kinds = _bad_kinds()
    buf = b"".join(bytes(k) for k in kinds) * 500
    lens = np.array([len(k) for k in kinds] * 500)
    offs = np.concatenate([[0], np.cumsum(lens)[:-1]])
    out = np.empty(len(lens), dtype=SEGMENT_DTYPE)
    for _ in range(5):
        parse_batch(buf, offs, lens, out=out)
    gc.collect()
    rss_before = _rss_bytes()
    for _ in range(50):  # 200k rows
        parse_batch(buf, offs, lens, out=out)
    assert (out["verdict"] != Verdict.OK).all()
    assert _rss_bytes() - rss_before < 16 * 1024 * 1024


# ---- the span check every batch call makes (spans.pxd), through each of them ----

def _batch_callers():
    ep = fasttcp.Endpoint(["198.18.0.2"], capacity=16)
    tr = fasttcp.Tracker(16)
    return {
        "parse_batch": lambda buf, off, ln: parse_batch(buf, off, ln),
        "receive_batch": lambda buf, off, ln: ep.receive_batch(buf, off, ln, 0.0),
        "feed_batch": lambda buf, off, ln: tr.feed_batch(buf, off, ln, np.zeros(len(off), dtype=np.int64)),
    }


@pytest.mark.parametrize("caller", ["parse_batch", "receive_batch", "feed_batch"])
@pytest.mark.parametrize("bad_at", [0, 1, 255, 256, 257, 511, 512, 999])
@pytest.mark.parametrize("how", ["negative offset", "negative length", "past the end", "offset past the end",
                                 "sum overflows"])
def test_batch_calls_name_the_first_packet_outside_the_buffer(caller, bad_at, how):
    # 1,000 empty spans at the buffer's end (valid, verdict TRUNCATED), one bad one; and a
    # second bad one further on, which must not be the one reported
    buf = bytes(100)
    off = np.full(1000, 100, dtype=np.int64)
    ln = np.zeros(1000, dtype=np.int64)
    for i in (bad_at, 999 if bad_at < 999 else None):
        if i is None:
            continue
        off[i], ln[i] = {"negative offset": (-1, 0), "negative length": (0, -1), "past the end": (50, 51),
                         "offset past the end": (101, 0), "sum overflows": (1, 2**63 - 1)}[how]
    with pytest.raises(UsageError, match=rf"^packet {bad_at}: offset {off[bad_at]} \+ length {ln[bad_at]} "
                                         r"is outside the 100-byte buffer$"):
        _batch_callers()[caller](buf, off, ln)


@pytest.mark.parametrize("caller", ["parse_batch", "receive_batch", "feed_batch"])
def test_batch_calls_take_spans_that_end_exactly_at_the_buffer_end(caller):
    buf = bytes(100)
    off = np.array([0, 99, 100, 0] * 300, dtype=np.int64)
    ln = np.array([100, 1, 0, 0] * 300, dtype=np.int64)
    out = _batch_callers()[caller](buf, off, ln)    # no error, and one result per packet
    assert len(out) == 1200


@pytest.mark.fuzz
@given(st.lists(st.one_of(*[st.tuples(st.integers(0, 100), st.integers(0, 20))] * 30,          # mostly valid
                          st.tuples(st.integers(-3, 120), st.integers(-3, 120))), min_size=1, max_size=700))
def test_the_span_check_agrees_with_a_plain_statement_of_it(spans):
    off = np.array([o for o, _ in spans], dtype=np.int64)
    ln = np.array([n for _, n in spans], dtype=np.int64)
    bad = [i for i, (o, n) in enumerate(spans) if o < 0 or n < 0 or o + n > 100]
    if not bad:
        parse_batch(bytes(100), off, ln)
        return
    with pytest.raises(UsageError, match=rf"^packet {bad[0]}: "):
        parse_batch(bytes(100), off, ln)
