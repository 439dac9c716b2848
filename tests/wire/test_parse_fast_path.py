"""The inline common-case parser against the general one.

`ft_parse_ip` first tries a straight-line parse for the shapes nearly all traffic has
(IPv4 without IP options, IPv6 without extension headers, whole, unfragmented,
checksums good) and hands everything else to the general parser. These tests hold
the two to the same answer: whenever the fast path takes a packet, its verdict and
every byte of the parsed packet equal the general parser's -- on real captures, on
built packets with every option layout, and on damaged packets. They also check the
fast path does take the common shapes (a fast path that never ran would pass the
agreement check vacuously) and declines the ones it must leave alone.
"""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fasttcp
from fasttcp._testing import linux_layout_decodes, parse_paths_agree, ts_segment_paths_agree
from tests import linklayer
from tests.reference import packets as P

SRC4, DST4 = "198.18.0.1", "198.19.0.2"
SRC6, DST6 = "2001:db8::1", "2001:db8:ffff::2"
TS = b"\x01\x01\x08\x0a" + (123456).to_bytes(4, "big") + (654321).to_bytes(4, "big")
SYN_OPTS = (b"\x02\x04\x05\xb4" + b"\x04\x02\x08\x0a" + (1).to_bytes(4, "big") + b"\x00" * 4
            + b"\x01\x03\x03\x07")
SACK = b"\x01\x01\x05\x12" + b"".join(i.to_bytes(4, "big") for i in (100, 200, 300, 400))

FUZZ = settings(max_examples=max(200, int(os.environ.get("FASTTCP_FUZZ_EXAMPLES", 1500)) // 5),
                deadline=None, suppress_health_check=[HealthCheck.too_slow])


def packet(v6: bool = False, *, options: bytes = b"", payload: bytes = b"", flags: int = 0x018, **ip):
    src, dst = (SRC6, DST6) if v6 else (SRC4, DST4)
    seg = P.tcp_segment(src, dst, 40000, 443, seq=1000, ack=2000, flags=flags, options=options,
                        payload=payload)
    return P.ipv6_packet(src, dst, seg, **ip) if v6 else P.ipv4_packet(src, dst, seg, **ip)


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("options", [b"", TS, SYN_OPTS, SACK, TS + b"\x01\x01\x05\x0a" + bytes(8),
                                     b"\xfd\x06abcd", b"\x01" * 8, b"\x00" * 4],
                         ids=["none", "nop-nop-ts", "syn", "sack", "ts+sack", "unknown", "nops", "eol"])
@pytest.mark.parametrize("payload", [b"", b"x", bytes(range(256)) * 6], ids=["empty", "odd", "long"])
@pytest.mark.parametrize("verify", [True, False], ids=["verify", "no-verify"])
def test_common_shapes_take_the_fast_path_and_agree(v6, options, payload, verify):
    taken, agree = parse_paths_agree(packet(v6, options=options, payload=payload), verify_checksum=verify)
    assert taken, "a whole, unfragmented packet with good checksums must take the fast path"
    assert agree


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("mss", [None, 1460])
@pytest.mark.parametrize("sack_permitted", [False, True])
@pytest.mark.parametrize("timestamp", [None, (0xDEADBEEF, 7)])
@pytest.mark.parametrize("wscale", [None, 0, 14])
def test_every_layout_the_encoder_writes_takes_the_fast_path_and_agrees(v6, mss, sack_permitted, timestamp, wscale):
    # the word-at-a-time decoder of the Linux layouts must read each exactly as the
    # general option parser does
    src, dst = (SRC6, DST6) if v6 else (SRC4, DST4)
    opts = fasttcp.Options(mss=mss, sack_permitted=sack_permitted, timestamp=timestamp, wscale=wscale)
    pkt = fasttcp.build(src, dst, 40000, 443, seq=1, flags=0x002, options=opts)
    assert parse_paths_agree(pkt) == (True, True)
    area = pkt[(40 if v6 else 20) + 20:]
    if area:                                   # decoded by the word-at-a-time decoder itself
        assert linux_layout_decodes(area)
    got = fasttcp.parse(pkt).options
    assert (got.mss, got.sack_permitted, got.timestamp, got.wscale) == (mss, sack_permitted, timestamp, wscale)


@pytest.mark.parametrize("options", [
    b"\x02\x04\x05\xb4\x01\x03\x03\x07\x01\x01\x01\x01",          # WS, then NOPs
    b"\x01\x03\x03\x07\x02\x04\x05\xb4",                          # WS first
    b"\x02\x04\x05\xb4\x02\x04\x02\x18",                          # MSS twice: the last counts
    b"\x04\x02\x08\x0a" + bytes(8) + b"\x01\x03\x03\x07\x01\x01\x01\x00",  # a word after WS
    b"\x01\x01\x04\x02\x01\x01\x08\x0a" + bytes(8),              # SACKOK then TS
    b"\x02\x04\x05\xb4\x01\x01\x08\x0a" + bytes(8) + b"\x01\x01\x05\x0a" + bytes(8),  # + SACK
    b"\x01\x03\x03\x07\x00\x00\x00\x00",                          # WS, EOL
    b"\x02\x04\x05\xb4\x01\x01\x08\x0a" + bytes(4),             # TS runs past the end
    b"\x02\x04\x05\xb4\x04\x02\x08\x0a",                          # TS cut off by the header end
], ids=["ws-nops", "ws-first", "mss-twice", "word-after-ws", "sackok-then-ts", "with-sack", "ws-eol",
        "ts-overruns", "ts-cut"])
def test_near_miss_option_layouts_agree(options):
    assert not linux_layout_decodes(options)    # left to the general option parser
    for v6 in (False, True):
        assert parse_paths_agree(packet(v6, options=options, flags=0x002))[1]
        assert parse_paths_agree(packet(v6, options=options, flags=0x002), verify_checksum=False)[1]


def _damaged(good: bytes, at: int, value: int) -> bytes:
    b = bytearray(good)
    b[at] = value
    return bytes(b)


GOOD4 = packet(options=TS, payload=b"hello")
GOOD6 = packet(True, options=TS, payload=b"hello")


@pytest.mark.parametrize("name, pkt, verify", [
    ("ipv4 with IP options", packet(ip_options=b"\x01\x01\x01\x00"), True),
    ("ipv4 first fragment", packet(flags_frag=0x2000), True),
    ("ipv4 later fragment", packet(flags_frag=0x0010), True),
    ("ipv4 not tcp", packet(protocol=17), True),
    ("ipv4 total length 0 (TSO)", packet(total_length=0), True),
    ("ipv4 total length past the buffer", packet(total_length=len(GOOD4) + 1), True),
    ("ipv4 truncated", GOOD4[:-1], True),
    ("ipv4 bad ip checksum", _damaged(GOOD4, 10, GOOD4[10] ^ 1), True),
    ("ipv4 bad tcp checksum", _damaged(GOOD4, 36, GOOD4[36] ^ 1), True),
    ("ipv4 data offset past the segment", _damaged(GOOD4, 32, 0xF0), False),
    ("ipv4 data offset below 5", _damaged(GOOD4, 32, 0x40), False),
    ("ipv4 bad option length", packet(options=b"\x02\x09\x05\xb4"), False),
    ("ipv6 extension header", packet(True, ext_headers=[(0, P.options_header())]), True),
    ("ipv6 fragment header", packet(True, ext_headers=[(44, P.fragment_header())]), True),
    ("ipv6 payload length past the buffer", packet(True, payload_length=len(GOOD6) - 39), True),
    ("ipv6 truncated", GOOD6[:-3], True),
    ("ipv6 bad tcp checksum", _damaged(GOOD6, 56, GOOD6[56] ^ 1), True),
    ("version 5", _damaged(GOOD4, 0, 0x55), True),
    ("too short", GOOD4[:30], True),
])
def test_uncommon_or_broken_packets_go_to_the_general_parser(name, pkt, verify):
    taken, agree = parse_paths_agree(pkt, verify_checksum=verify)
    assert not taken, f"{name}: the general parser must decide this packet"


def test_bad_checksums_are_taken_without_verification_and_still_agree():
    bad = _damaged(GOOD4, 36, GOOD4[36] ^ 1)
    assert parse_paths_agree(bad, verify_checksum=False) == (True, True)


def test_ethernet_padding_beyond_the_ip_length_is_fast_and_agrees():
    taken, agree = parse_paths_agree(GOOD4 + b"\x00" * 6)
    assert taken and agree
    seg = fasttcp.parse(GOOD4 + b"\x00" * 6)
    assert seg.payload == b"hello"


@pytest.mark.parametrize("options, payload", [(b"", b""), (TS, b""), (SYN_OPTS, b""), (b"\x02\x04\x05\xb4", b""),
                                             (TS + b"\x01" * 4, b""), (SYN_OPTS + b"\x01" * 4, b""),
                                             (TS, b"abcdefg"), (b"", b"x" * 21), (b"", bytes(range(12))),
                                             (b"", bytes(range(20))), (TS, bytes(range(116)))],
                         ids=["tcp-20", "tcp-32", "tcp-40", "tcp-24", "tcp-36", "tcp-44", "tcp-32+7", "tcp-20+21",
                              "tcp-20+12", "tcp-20+20", "tcp-32+116"])
def test_every_byte_of_an_ipv4_packet_is_in_its_checksums(options, payload):
    """The IPv4 fast path sums the header and the usual TCP lengths (20, 32, 40 bytes)
    with straight-line code: a bit flipped anywhere -- header, addresses, TCP header,
    options, payload -- must fail verification there (and agree with the general
    parser), for those lengths and for the others the loop sums."""
    good = packet(options=options, payload=payload)
    assert parse_paths_agree(good) == (True, True)
    for i in range(len(good)):
        for bit in range(8):
            if i in (2, 3) or (i == 32 and bit >= 4):   # the IP length and TCP data offset
                continue                                  # move the packet's edges
            bad = bytearray(good)
            bad[i] ^= 1 << bit
            taken, agree = parse_paths_agree(bytes(bad))
            assert agree, (i, bit)
            assert not taken, f"byte {i} bit {bit}: a damaged packet passed the fast path's checksums"


@given(v6=st.booleans(),
       options=st.lists(st.sampled_from([b"\x01", b"\x02\x04\x05\xb4", b"\x03\x03\x07", b"\x04\x02",
                                         TS[2:], b"\x05\x0a" + bytes(8), b"\xfe\x04ab"]), max_size=4),
       payload=st.binary(max_size=300), flags=st.integers(0, 0x1ff), verify=st.booleans(),
       cut=st.integers(0, 400), flip=st.integers(0, 400), bit=st.integers(0, 7), mode=st.integers(0, 3))
@FUZZ
def test_random_and_damaged_packets_agree(v6, options, payload, flags, verify, cut, flip, bit, mode):
    opts = b"".join(options)[:40]
    pkt = bytearray(packet(v6, options=opts, payload=payload, flags=flags))
    if mode == 1:
        del pkt[min(cut, len(pkt)):]
    elif mode == 2:
        pkt[flip % len(pkt)] ^= 1 << bit
    elif mode == 3:
        pkt += bytes(cut % 17)                 # trailing link padding
    taken, agree = parse_paths_agree(bytes(pkt), verify_checksum=verify)
    assert agree
    if mode == 0 and len(opts) == len(b"".join(options)) and len(P.pad_options(opts)) <= 40:
        assert taken


def test_the_fast_path_carries_real_traffic():
    """On the captures, every packet the fast path takes agrees, and it takes most of
    the TCP packets (the rest: IP options, extension headers, fragments, damage)."""
    taken = total = 0
    for path in linklayer.list_captures(linklayer.CAPTURES):
        for b in fasttcp.read_pcap(path):
            for i in range(len(b)):
                if b.verdicts[i] != 0:
                    continue
                ip = bytes(b.buffer[b.offsets[i]:b.offsets[i] + b.lengths[i]])
                for verify in (True, False):
                    t, agree = parse_paths_agree(ip, verify_checksum=verify)
                    assert agree, f"{path.name} packet {int(b.frames[i])} (verify={verify})"
                    taken += t
                    total += 1
    assert total > 0
    assert taken / total > 0.5, f"the fast path took only {taken} of {total} parses"


@given(v6=st.booleans(), ports=st.tuples(st.integers(0, 65535), st.integers(0, 65535)),
       seq=st.integers(0, 2**32 - 1), ack=st.integers(0, 2**32 - 1), flags=st.integers(0, 0x1ff),
       window=st.integers(0, 65535), ts=st.booleans(), tsval=st.integers(0, 2**32 - 1),
       tsecr=st.integers(0, 2**32 - 1), ttl=st.integers(0, 255))
@FUZZ
def test_the_endpoints_ack_builder_equals_the_general_one(v6, ports, seq, ack, flags, window, ts, tsval, tsecr, ttl):
    """The endpoint builds its ACKs and FINs with the timestamp written in place
    (ft_build_ts_segment): byte for byte what the general builder makes of the same
    segment with NOP NOP TS as its option area, and a packet that parses back."""
    src, dst = (SRC6, DST6) if v6 else (SRC4, DST4)
    pkt, same = ts_segment_paths_agree(src, dst, ports[0], ports[1], seq, ack, flags, window, ts, tsval, tsecr,
                                        ttl)
    assert same
    seg = fasttcp.parse(pkt)
    assert (seg.src_port, seg.dst_port, seg.seq, seg.ack, int(seg.flags), seg.window) == \
        (ports[0], ports[1], seq, ack, flags, window)
    assert (seg.options.timestamp == (tsval, tsecr)) if ts else seg.options.timestamp is None
