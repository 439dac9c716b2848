"""build() / parse() round trips, cross-checked byte for byte with scapy and dpkt."""
from __future__ import annotations

import ipaddress
import logging

import dpkt
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import fasttcp
from fasttcp import Flags, Options, Segment, UsageError, Verdict, build, parse, parse_tcp
from tests.reference import oracle
from tests.reference import packets as P

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.layers.inet import IP, TCP  # noqa: E402
from scapy.layers.inet6 import (  # noqa: E402
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.packet import Raw  # noqa: E402

DECODED_KINDS = {0, 1, 2, 3, 4, 5, 8}

# ---------------------------------------------------------------------------
# strategies
# ---------------------------------------------------------------------------

ipv4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
ipv6 = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)
addr_pair = st.one_of(st.tuples(ipv4, ipv4), st.tuples(ipv6, ipv6))
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 2**32 - 1)
wscales = st.one_of(st.integers(0, 255), st.sampled_from([0, 14, 15, 255]))
unknown_kind = st.sampled_from([k for k in range(256) if k not in DECODED_KINDS])
unknown_opts = st.lists(st.tuples(unknown_kind, st.binary(max_size=10)), max_size=3)


@st.composite
def option_specs(draw):
    """A dict of Options keywords (only the keys that are set)."""
    spec = {}
    if draw(st.booleans()):
        spec["mss"] = draw(u16)
    if draw(st.booleans()):
        spec["wscale"] = draw(wscales)
    if draw(st.booleans()):
        spec["sack_permitted"] = True
    if draw(st.booleans()):
        spec["sack"] = draw(st.lists(st.tuples(u32, u32), min_size=1, max_size=4))
    if draw(st.booleans()):
        spec["timestamp"] = draw(st.tuples(u32, u32))
    if draw(st.booleans()):
        spec["unknown"] = draw(unknown_opts)
    return spec


def encoded_len(spec: dict) -> int:
    """Unpadded size of fasttcp's layout (ft_encode_options): MSS 4; SACK-permitted+TS
    or NOP NOP TS 12 (NOP NOP SACK-permitted 4 without TS); NOP WS 4; NOP NOP SACK 4+8n;
    then each unknown option 2+len."""
    n = 0
    if "mss" in spec:
        n += 4
    if "timestamp" in spec:
        n += 12
    elif spec.get("sack_permitted"):
        n += 4
    if "wscale" in spec:
        n += 4
    if spec.get("sack"):
        n += 4 + 8 * len(spec["sack"])
    n += sum(2 + len(d) for _, d in spec.get("unknown", ()))
    return n


def scapy_options(spec: dict) -> list:
    """The same options in the order fasttcp emits them, for scapy."""
    out = []
    if "mss" in spec:
        out.append(("MSS", spec["mss"]))
    if "timestamp" in spec:
        if spec.get("sack_permitted"):
            out.append(("SAckOK", b""))
        else:
            out += [("NOP", None), ("NOP", None)]
        out.append(("Timestamp", spec["timestamp"]))
    elif spec.get("sack_permitted"):
        out += [("NOP", None), ("NOP", None), ("SAckOK", b"")]
    if "wscale" in spec:
        out += [("NOP", None), ("WScale", spec["wscale"])]
    if spec.get("sack"):
        out += [("NOP", None), ("NOP", None), ("SAck", tuple(x for blk in spec["sack"] for x in blk))]
    for kind, data in spec.get("unknown", ()):
        out.append((kind, data))
    return out


@st.composite
def packet_specs(draw, fitting=True):
    src, dst = draw(addr_pair)
    spec = draw(option_specs())
    if fitting:
        assume(encoded_len(spec) <= 40)
    return dict(
        src=src,
        dst=dst,
        src_port=draw(u16),
        dst_port=draw(u16),
        seq=draw(u32),
        ack=draw(u32),
        flags=draw(st.integers(0, 0x1FF)),
        window=draw(u16),
        urgent=draw(u16),
        ttl=draw(st.integers(0, 255)),
        options=spec,
        payload=draw(st.binary(max_size=300)),
    )


def do_build(spec: dict, addr_form: str = "obj") -> bytes:
    conv = {"obj": lambda a: a, "str": str, "bytes": lambda a: a.packed}[addr_form]
    kw = dict(spec)
    src, dst = conv(kw.pop("src")), conv(kw.pop("dst"))
    sport, dport = kw.pop("src_port"), kw.pop("dst_port")
    return build(src, dst, sport, dport, **kw)


def scapy_packet(spec: dict) -> bytes:
    tcp = TCP(sport=spec["src_port"], dport=spec["dst_port"], seq=spec["seq"], ack=spec["ack"],
              flags=spec["flags"], window=spec["window"], urgptr=spec["urgent"],
              options=scapy_options(spec["options"]))
    if spec["src"].version == 4:
        ip = IP(src=str(spec["src"]), dst=str(spec["dst"]), flags="DF", id=0, ttl=spec["ttl"], tos=0)
    else:
        ip = IPv6(src=str(spec["src"]), dst=str(spec["dst"]), hlim=spec["ttl"], tc=0, fl=0)
    pkt = ip / tcp
    if spec["payload"]:
        pkt = pkt / Raw(spec["payload"])
    return bytes(pkt)


def check_segment_matches(seg: Segment, spec: dict) -> None:
    o = spec["options"]
    assert seg.version == spec["src"].version
    assert seg.src == spec["src"] and seg.dst == spec["dst"]
    assert seg.src_port == spec["src_port"] and seg.dst_port == spec["dst_port"]
    assert seg.seq == spec["seq"] and seg.ack == spec["ack"]
    assert seg.flags == spec["flags"] and isinstance(seg.flags, Flags)
    assert seg.window == spec["window"] and seg.urgent == spec["urgent"]
    assert seg.ttl == spec["ttl"] == seg.hop_limit
    assert bytes(seg.payload) == spec["payload"]
    assert seg.payload_len == len(spec["payload"])
    opts = seg.options
    assert opts.mss == o.get("mss")
    assert opts.wscale == o.get("wscale")
    assert opts.wscale_clamped == (None if "wscale" not in o else min(o["wscale"], 14))
    assert opts.sack_permitted == bool(o.get("sack_permitted"))
    assert opts.sack == list(o.get("sack", []))
    assert opts.timestamp == o.get("timestamp")
    assert opts.unknown == [(k, bytes(d)) for k, d in o.get("unknown", ())]
    assert bool(opts) == bool(o.get("mss") is not None or "wscale" in o or o.get("sack_permitted")
                              or o.get("sack") or "timestamp" in o or o.get("unknown"))
    assert seg.header_len == 20 + (encoded_len(o) + 3) // 4 * 4


# ---------------------------------------------------------------------------
# round trips
# ---------------------------------------------------------------------------


@settings(suppress_health_check=[HealthCheck.filter_too_much])
@given(packet_specs(), st.sampled_from(["obj", "str", "bytes"]))
def test_parse_build_roundtrip(spec, addr_form):
    pkt = do_build(spec, addr_form)
    seg = parse(pkt)
    assert seg.checksum_ok is True
    check_segment_matches(seg, spec)
    # the same answer without verification
    seg2 = parse(pkt, verify_checksum=False)
    assert seg2.checksum_ok is None
    check_segment_matches(seg2, spec)
    # and the wire options decode the same with the reference decoder
    ihl = 20 if spec["src"].version == 4 else 40
    ref = oracle.decode_options(pkt[ihl + 20 : ihl + seg.header_len])
    o = spec["options"]
    assert (ref.mss, ref.wscale, ref.sack_permitted, ref.sack, ref.timestamp) == (
        o.get("mss"), o.get("wscale"), bool(o.get("sack_permitted")), list(o.get("sack", [])), o.get("timestamp"))
    assert ref.unknown == [(k, bytes(d)) for k, d in o.get("unknown", ())]


@pytest.mark.parametrize("payload", [bytes.fromhex("98f9f810feffffff"), b"\xff" * 8, b"\xff" * 16,
                                     b"\xff" * 1000, b"\xfe" + b"\xff" * 7, bytes(8)])
@pytest.mark.parametrize("urgent", [1, 0x8000, 0xFFFF])
def test_urgent_pointer_with_a_payload_whose_sum_is_near_the_top(payload, urgent):
    """The urgent pointer's share of the checksum is added after the payload's: a
    payload whose 64-bit partial sum sits just below 2^64 must not lose the carry
    (these payloads were found to, with a plain add)."""
    spec = dict(src=ipaddress.ip_address("10.0.0.1"), dst=ipaddress.ip_address("10.0.0.2"), src_port=1000,
                dst_port=2000, seq=0, ack=0, flags=0x18, window=65535, urgent=urgent, ttl=64, options={},
                payload=payload)
    pkt = do_build(spec)
    assert pkt == scapy_packet(spec)
    assert parse(pkt).urgent == urgent                  # verifies the checksum


@settings(suppress_health_check=[HealthCheck.filter_too_much])
@given(packet_specs())
def test_build_matches_scapy_byte_for_byte(spec):
    assert do_build(spec) == scapy_packet(spec)


@settings(suppress_health_check=[HealthCheck.filter_too_much])
@given(packet_specs())
def test_build_matches_dpkt_fields(spec):
    pkt = do_build(spec)
    if spec["src"].version == 4:
        ip = dpkt.ip.IP(pkt)
        assert ip.v == 4 and ip.hl == 5 and ip.len == len(pkt) and ip.p == 6
        assert ip.ttl == spec["ttl"] and ip.id == 0 and ip.df == 1 and ip.mf == 0 and ip.offset == 0
        assert ip.src == spec["src"].packed and ip.dst == spec["dst"].packed
        assert oracle.verifies(pkt[:20])
    else:
        ip = dpkt.ip6.IP6(pkt)
        assert ip.v == 6 and ip.nxt == 6 and ip.plen == len(pkt) - 40 and ip.hlim == spec["ttl"]
        assert ip.src == spec["src"].packed and ip.dst == spec["dst"].packed
    tcp = ip.data
    assert isinstance(tcp, dpkt.tcp.TCP)
    assert (tcp.sport, tcp.dport, tcp.seq, tcp.ack) == (spec["src_port"], spec["dst_port"], spec["seq"], spec["ack"])
    assert tcp.flags == spec["flags"] and tcp.win == spec["window"] and tcp.urp == spec["urgent"]
    assert bytes(tcp.data) == spec["payload"]
    assert oracle.tcp_checksum(spec["src"], spec["dst"], bytes(pkt[len(pkt) - len(tcp) :])) == 0
    seg = parse(pkt)
    assert seg.checksum == tcp.sum
    # dpkt's option list up to the first EOL, NOPs dropped
    items = []
    for kind, data in dpkt.tcp.parse_opts(tcp.opts):
        if kind == 0:
            break
        if kind != 1:
            items.append((kind, data))
    o = spec["options"]
    got = dict(mss=None, wscale=None, sack_permitted=False, sack=[], timestamp=None, unknown=[])
    for kind, data in items:
        if kind == 2:
            got["mss"] = int.from_bytes(data, "big")
        elif kind == 3:
            got["wscale"] = data[0]
        elif kind == 4:
            got["sack_permitted"] = True
        elif kind == 5:
            got["sack"] = [(int.from_bytes(data[i : i + 4], "big"), int.from_bytes(data[i + 4 : i + 8], "big"))
                           for i in range(0, len(data), 8)]
        elif kind == 8:
            got["timestamp"] = (int.from_bytes(data[:4], "big"), int.from_bytes(data[4:], "big"))
        else:
            got["unknown"].append((kind, data))
    assert got == dict(mss=o.get("mss"), wscale=o.get("wscale"), sack_permitted=bool(o.get("sack_permitted")),
                       sack=list(o.get("sack", [])), timestamp=o.get("timestamp"),
                       unknown=[(k, bytes(d)) for k, d in o.get("unknown", ())])
    assert (seg.options.mss, seg.options.wscale, seg.options.sack_permitted, seg.options.sack,
            seg.options.timestamp, seg.options.unknown) == tuple(got.values())


@settings(max_examples=200)
@given(option_specs())
def test_options_over_40_bytes_are_usage_error(spec):
    if encoded_len(spec) <= 40:
        opts = Options(**spec)
        assert len(opts.to_bytes()) == (encoded_len(spec) + 3) // 4 * 4
        assert build("192.0.2.1", "192.0.2.2", 1, 2, options=opts)
    else:
        with pytest.raises(UsageError):
            build("192.0.2.1", "192.0.2.2", 1, 2, options=spec)
        with pytest.raises(UsageError):
            Options(**spec).to_bytes()


@pytest.mark.parametrize(
    "spec, fits",
    [
        (dict(mss=1460, sack_permitted=True, timestamp=(1, 2), wscale=7), True),  # the Linux SYN: 20 bytes
        (dict(sack=[(1, 2)] * 4, mss=1), True),  # 4 + 36 = 40 exactly
        (dict(sack=[(1, 2)] * 3, timestamp=(1, 2)), True),  # 12 + 28 = 40
        (dict(sack=[(1, 2)] * 4, timestamp=(1, 2)), False),  # 48
        (dict(mss=1, timestamp=(1, 2), wscale=1, sack=[(1, 2)] * 2), True),  # 4+12+4+20 = 40
        (dict(mss=1, timestamp=(1, 2), wscale=1, sack=[(1, 2)] * 3), False),  # 48
        (dict(unknown=[(30, b"x" * 38)]), True),
        (dict(unknown=[(30, b"x" * 38)], mss=5), False),
        (dict(unknown=[(30, b"")] * 20), True),
        (dict(unknown=[(30, b"")] * 21), False),
    ],
)
def test_option_space_limit(spec, fits):
    assert (encoded_len(spec) <= 40) == fits
    if fits:
        seg = parse(build("2001:db8::1", "2001:db8::2", 1, 2, options=spec))
        assert seg.options == Options(**spec)
        assert seg.header_len == 20 + (encoded_len(spec) + 3) // 4 * 4
    else:
        with pytest.raises(UsageError):
            build("2001:db8::1", "2001:db8::2", 1, 2, options=spec)


def test_more_than_eight_unknown_options_all_kept_in_order():
    unknown = [(30 + k, bytes([k])) for k in range(12)]  # 12 * 3 = 36 bytes
    seg = parse(build("192.0.2.1", "192.0.2.2", 1, 2, options={"unknown": unknown}))
    assert seg.options.unknown == unknown
    assert "opt?=12" in repr(seg)


def test_wscale_255_kept_as_sent_and_clamped_to_14():
    pkt = build("192.0.2.1", "192.0.2.2", 1, 2, options={"wscale": 255})
    assert pkt[-4:] == bytes([1, 3, 3, 255])  # NOP, kind 3, len 3, shift 255
    opts = parse(pkt).options
    assert opts.wscale == 255
    assert opts.wscale_clamped == 14
    for ws, clamped in [(0, 0), (13, 13), (14, 14), (15, 14), (100, 14)]:
        o = parse(build("192.0.2.1", "192.0.2.2", 1, 2, options={"wscale": ws})).options
        assert (o.wscale, o.wscale_clamped) == (ws, clamped)
    assert Options().wscale_clamped is None


def test_linux_syn_layout():
    # MSS, SACK-permitted, TS, NOP, WS -- the exact bytes Linux sends in a SYN
    pkt = build("198.18.0.1", "198.18.0.2", 49500, 80, seq=1,
                options=Options(mss=1460, sack_permitted=True, timestamp=(0x01020304, 0), wscale=7))
    area = pkt[40:60]
    assert area == bytes.fromhex("020405b4" "0402080a" "01020304" "00000000" "01030307")


def test_options_forms_build_identically():
    spec = dict(mss=536, sack=[(10, 20)], timestamp=(5, 6))
    raw = Options(**spec).to_bytes()
    a = build("192.0.2.1", "192.0.2.2", 1, 2, options=Options(**spec))
    b = build("192.0.2.1", "192.0.2.2", 1, 2, options=spec)
    c = build("192.0.2.1", "192.0.2.2", 1, 2, options=raw)
    d = build("192.0.2.1", "192.0.2.2", 1, 2, options=bytearray(raw))
    assert a == b == c == d
    assert a[40 : 40 + len(raw)] == raw


def test_raw_options_are_padded_with_eol():
    pkt = build("192.0.2.1", "192.0.2.2", 1, 2, options=bytes([2, 4, 1, 0, 1]))  # MSS 256, NOP
    assert pkt[32] >> 4 == 7  # data offset 28 bytes
    assert pkt[40:48] == bytes([2, 4, 1, 0, 1, 0, 0, 0])
    assert parse(pkt).options.mss == 256
    with pytest.raises(UsageError):
        build("192.0.2.1", "192.0.2.2", 1, 2, options=b"\x01" * 41)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(sack=[(1, 2)] * 5),
        dict(mss=0x10000),
        dict(mss=-1),
        dict(wscale=256),
        dict(sack=[(0, 2**32)]),
        dict(timestamp=(2**32, 0)),
        dict(timestamp=(0, -1)),
        dict(unknown=[(2, b"ab")]),  # MSS is a decoded kind
        dict(unknown=[(8, b"")]),
        dict(unknown=[(0, b"")]),
        dict(unknown=[(1, b"")]),
        dict(unknown=[(256, b"")]),
        dict(unknown=[(30, b"x" * 39)]),
        dict(mss="1460"),
    ],
)
def test_bad_options_are_usage_error(kwargs):
    with pytest.raises(UsageError):
        Options(**kwargs)


@pytest.mark.parametrize("kwargs", [
    dict(timestamp=5), dict(timestamp=(1,)), dict(sack=5), dict(sack=[(1, 2, 3)]),
    dict(unknown=[(30,)]),
    dict(unknown=[(30, 3)]),  # bytes(3) == b"\x00\x00\x00": an int is not option data
    dict(unknown=[(30, "ab")]),
])
def test_malformed_options_arguments_are_usage_error(kwargs):
    with pytest.raises(UsageError):
        Options(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(src_port=65536), dict(src_port=-1), dict(dst_port=70000), dict(src_port="80"), dict(dst_port=80.0),
        dict(flags=1.5), dict(seq=1.0), dict(window=None),
        dict(seq=2**32), dict(seq=-1), dict(ack=2**32), dict(flags=0x200), dict(flags=-1),
        dict(window=65536), dict(urgent=65536), dict(ttl=256), dict(ttl=-1),
        dict(options=12), dict(options="mss"),
        dict(dst="2001:db8::1"),  # mixed families
        dict(src=b"\x01\x02\x03\x04\x05"), dict(dst="999.1.1.1"), dict(src=None),
        dict(payload=b"x" * (65535 - 40 + 1)),  # IPv4 total length would exceed 65535
    ],
)
def test_build_bad_arguments(kwargs):
    args = dict(src="192.0.2.1", dst="192.0.2.2", src_port=1, dst_port=2)
    args.update(kwargs)
    src, dst, sp, dp = args.pop("src"), args.pop("dst"), args.pop("src_port"), args.pop("dst_port")
    with pytest.raises(UsageError):
        build(src, dst, sp, dp, **args)


def test_build_huge_port_is_usage_error():
    # regression: ports beyond a C long used to raise OverflowError
    with pytest.raises(UsageError):
        build("192.0.2.1", "192.0.2.2", 2**70, 80)


def test_largest_packets_fit():
    p4 = build("192.0.2.1", "192.0.2.2", 1, 2, payload=b"x" * (65535 - 40))
    assert len(p4) == 65535 and parse(p4).payload_len == 65535 - 40
    p6 = build("2001:db8::1", "2001:db8::2", 1, 2, payload=b"y" * (65535 - 20))
    assert len(p6) == 40 + 65535 and parse(p6).payload_len == 65535 - 20
    with pytest.raises(UsageError):
        build("2001:db8::1", "2001:db8::2", 1, 2, payload=b"y" * (65535 - 20 + 1))


@pytest.mark.parametrize("src, dst", [
    ("198.18.0.1", "198.18.0.2"),
    (b"\xc6\x12\x00\x01", b"\xc6\x12\x00\x02"),
    (bytearray(b"\xc6\x12\x00\x01"), bytearray(b"\xc6\x12\x00\x02")),
    (ipaddress.IPv4Address("198.18.0.1"), ipaddress.IPv4Address("198.18.0.2")),
    ("198.18.0.1", ipaddress.ip_address("198.18.0.2")),
])
def test_address_forms_v4(src, dst):
    ref = P.ipv4_packet("198.18.0.1", "198.18.0.2",
                        P.tcp_segment("198.18.0.1", "198.18.0.2", 49500, 80, seq=7, payload=b"hello"))
    assert build(src, dst, 49500, 80, seq=7, payload=b"hello") == ref


@pytest.mark.parametrize("src, dst", [
    ("2001:db8::1", "2001:db8::2"),
    (ipaddress.IPv6Address("2001:db8::1").packed, ipaddress.IPv6Address("2001:db8::2").packed),
    (ipaddress.IPv6Address("2001:db8::1"), ipaddress.IPv6Address("2001:db8::2")),
])
def test_address_forms_v6(src, dst):
    ref = P.ipv6_packet("2001:db8::1", "2001:db8::2",
                        P.tcp_segment("2001:db8::1", "2001:db8::2", 1, 2, seq=7, payload=b"hi"))
    assert build(src, dst, 1, 2, seq=7, payload=b"hi") == ref


@pytest.mark.parametrize("src, dst", [
    ("192.0.2.1", "2001:db8::1"),
    (ipaddress.ip_address("2001:db8::1"), b"\x01\x02\x03\x04"),
    (b"\x00" * 16, "0.0.0.0"),
])
def test_mixed_families_are_usage_error(src, dst):
    with pytest.raises(UsageError):
        build(src, dst, 1, 2)
    seg = build("192.0.2.1", "192.0.2.2", 1, 2)[20:]
    with pytest.raises(UsageError):
        parse_tcp(seg, src=src, dst=dst)


def test_payload_buffer_types():
    data = bytes(range(200))
    a = build("192.0.2.1", "192.0.2.2", 1, 2, payload=data)
    for form in (bytearray(data), memoryview(data), np.frombuffer(data, dtype=np.uint8), memoryview(b"xx" + data)[2:]):
        assert build("192.0.2.1", "192.0.2.2", 1, 2, payload=form) == a


# ---------------------------------------------------------------------------
# Segment behaviour
# ---------------------------------------------------------------------------

SYN = dict(seq=1000, window=64240, options=dict(mss=1460, wscale=7, sack_permitted=True, timestamp=(123, 0)))


def test_repr_syn():
    seg = parse(build("198.18.0.1", "198.18.0.2", 49500, 80, **SYN))
    assert repr(seg) == ("<Segment 198.18.0.1:49500 -> 198.18.0.2:80 [SYN] seq=1000 win=64240 mss=1460 ws=7 sack "
                         "ts=123/0>")


def test_repr_details():
    seg = parse(build("2001:db8::1", "2001:db8::2", 443, 50000, seq=5, ack=77, flags=Flags.ACK | Flags.PSH,
                      window=100, payload=b"abc", options={"sack": [(1, 2), (3, 4)]}))
    r = repr(seg)
    assert r.startswith("<Segment [2001:db8::1]:443 -> [2001:db8::2]:50000 [")
    assert "PSH" in r and "ACK" in r and "SYN" not in r
    assert " seq=5 " in r and " ack=77 " in r and " win=100 " in r and " len=3 " in r
    assert "sack=1-2,3-4" in r and r.endswith(">")
    # no ACK flag: the ack number is not shown
    r2 = repr(parse(build("192.0.2.1", "192.0.2.2", 1, 2, ack=99, flags=Flags.RST)))
    assert "ack=" not in r2 and "[RST]" in r2
    bare = parse_tcp(build("192.0.2.1", "192.0.2.2", 1, 2)[20:])
    assert repr(bare).startswith("<Segment :1 -> :2 [SYN]")


def test_payload_is_zero_copy_readonly_view():
    buf = bytearray(build("192.0.2.1", "192.0.2.2", 1, 2, payload=b"hello world"))
    seg = parse(buf)
    pl = seg.payload
    assert isinstance(pl, memoryview)
    assert pl.readonly
    assert bytes(pl) == b"hello world"
    assert pl.obj is buf
    buf[-5:] = b"WORLD"  # the view sees the caller's buffer
    assert bytes(seg.payload) == b"hello WORLD"
    with pytest.raises(TypeError):
        pl[0] = 0x41
    pkt = build("192.0.2.1", "192.0.2.2", 1, 2, payload=b"zz")
    assert parse(pkt).payload.obj is pkt


def test_payload_of_numpy_buffer():
    pkt = build("2001:db8::1", "2001:db8::2", 1, 2, payload=b"numpy!")
    arr = np.frombuffer(pkt, dtype=np.uint8).copy()
    seg = parse(arr)
    assert bytes(seg.payload) == b"numpy!"
    arr[-1] = ord("?")
    assert bytes(seg.payload) == b"numpy?"


@given(packet_specs())
@settings(max_examples=50, suppress_health_check=[HealthCheck.filter_too_much])
def test_to_bytes_preserves_valid_packet(spec):
    pkt = do_build(spec)
    assert parse(pkt).to_bytes() == pkt


@given(packet_specs(), st.integers(1, 0xFFFF))
@settings(max_examples=50, suppress_health_check=[HealthCheck.filter_too_much])
def test_to_bytes_refreshes_corrupted_checksums(spec, delta):
    pkt = do_build(spec)
    ihl = 20 if spec["src"].version == 4 else 40
    bad = bytearray(pkt)
    c = int.from_bytes(bad[ihl + 16 : ihl + 18], "big")
    bad[ihl + 16 : ihl + 18] = ((c + delta) % 0x10000).to_bytes(2, "big")
    if spec["src"].version == 4:
        bad[10] ^= 0x5A  # IPv4 header checksum too
    bad = bytes(bad)
    seg = parse(bad, verify_checksum=False)
    assert seg.checksum_ok is None
    fixed = seg.to_bytes()
    if fixed != pkt:
        # the only other valid encoding is the other one's complement zero
        assert {fixed[ihl + 16 : ihl + 18], pkt[ihl + 16 : ihl + 18]} == {b"\x00\x00", b"\xff\xff"}
    assert parse(fixed).checksum_ok is True


def _fields(seg: Segment) -> dict:
    return dict(version=seg.version, src=seg.src, dst=seg.dst, src_port=seg.src_port, dst_port=seg.dst_port,
                seq=seg.seq, ack=seg.ack, flags=int(seg.flags), window=seg.window, urgent=seg.urgent,
                ttl=seg.ttl, options=seg.options, payload=bytes(seg.payload))


REPLACEMENTS = {
    "src_port": 1, "dst_port": 65535, "seq": 2**32 - 1, "ack": 12345, "flags": int(Flags.FIN | Flags.ACK),
    "window": 0, "urgent": 9, "ttl": 1, "payload": b"new payload",
    "options": Options(mss=9000, sack=[(1, 2)]),
}


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("name", [*REPLACEMENTS, "src", "dst"])
def test_replace_changes_only_the_named_field(family, name):
    if family == 4:
        s, d, other = "198.18.0.1", "198.18.0.2", ipaddress.ip_address("203.0.113.9")
    else:
        s, d, other = "2001:db8::1", "2001:db8::2", ipaddress.ip_address("2001:db8::99")
    orig = parse(build(s, d, 40000, 80, seq=10, ack=20, flags=Flags.SYN | Flags.ACK, window=500, urgent=3,
                       ttl=33, payload=b"payload", options=dict(mss=1400, wscale=3, timestamp=(1, 2))))
    value = other if name in ("src", "dst") else REPLACEMENTS[name]
    new = orig.replace(**{name: value})
    before, after = _fields(orig), _fields(new)
    expected = dict(before)
    expected[name] = value
    assert after == expected
    assert new.checksum_ok in (None, True)
    assert parse(new.to_bytes()).checksum_ok is True  # lengths and checksums were refreshed
    assert orig == parse(orig.to_bytes())  # the original is untouched


def test_replace_with_raw_option_bytes_and_dict():
    seg = parse(build("192.0.2.1", "192.0.2.2", 1, 2))
    assert seg.replace(options={"mss": 100}).options.mss == 100
    assert seg.replace(options=bytes([2, 4, 0, 200])).options.mss == 200


def test_replace_bad_arguments():
    seg = parse(build("192.0.2.1", "192.0.2.2", 1, 2))
    with pytest.raises(UsageError):
        seg.replace(colour="red")
    with pytest.raises(UsageError):
        seg.replace(checksum=0)
    with pytest.raises(UsageError):
        seg.replace(seq=-1)
    with pytest.raises(UsageError):
        seg.replace(src="2001:db8::1")  # would mix families
    bare = parse_tcp(build("192.0.2.1", "192.0.2.2", 1, 2)[20:])
    with pytest.raises(UsageError):
        bare.replace(seq=5)
    with pytest.raises(UsageError):
        bare.replace(src="192.0.2.1", seq=5)
    full = bare.replace(src="192.0.2.7", dst="192.0.2.8", seq=5)
    assert full.version == 4 and full.seq == 5 and str(full.src) == "192.0.2.7"


def test_segment_cannot_be_constructed_directly():
    with pytest.raises(TypeError):
        Segment()


def test_equality_and_hash():
    kw = dict(seq=1, ack=2, flags=Flags.ACK, payload=b"x", options={"timestamp": (1, 2)})
    a = parse(build("192.0.2.1", "192.0.2.2", 1, 2, **kw))
    b = parse(bytearray(build("192.0.2.1", "192.0.2.2", 1, 2, **kw)))
    assert a == b and hash(a) == hash(b)
    assert len({a, b}) == 1
    assert a != parse(build("192.0.2.1", "192.0.2.2", 1, 2, **{**kw, "payload": b"y"}))
    assert a != parse(build("192.0.2.1", "192.0.2.3", 1, 2, **kw))
    assert a != parse(build("192.0.2.1", "192.0.2.2", 1, 2, **{**kw, "options": {"timestamp": (1, 3)}}))
    assert a != parse(build("192.0.2.1", "192.0.2.2", 1, 2, ttl=63, **kw))
    assert a != "not a segment" and not (a == 5)  # noqa: SIM201  -- __eq__ itself, not __ne__
    # IP ID and checksum are not part of the value
    seg_bytes = P.tcp_segment("192.0.2.1", "192.0.2.2", 1, 2, seq=1, ack=2, flags=0x10, payload=b"x",
                              options=bytes([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]))
    c = parse(P.ipv4_packet("192.0.2.1", "192.0.2.2", seg_bytes, ident=4242))
    assert c == a and hash(c) == hash(a)
    broken = bytearray(a.to_bytes())
    broken[36] ^= 0xFF
    assert parse(bytes(broken), verify_checksum=False) == a


def test_options_equality_and_repr():
    a = Options(mss=1460, sack=[(1, 2)])
    assert a == Options(sack=[(1, 2)], mss=1460) and hash(a) == hash(Options(mss=1460, sack=[(1, 2)]))
    assert a != Options(mss=1460)
    assert not Options() and Options(sack_permitted=True)
    assert repr(Options(mss=5)) == "Options(mss=5)"
    assert Options(mss=1).unknown == [] and Options(mss=1).sack == [] and Options().timestamp is None


def test_options_from_wire_equal_constructed():
    spec = dict(mss=1200, wscale=9, sack_permitted=True, timestamp=(7, 8), unknown=[(30, b"abc")])
    assert parse(build("192.0.2.1", "192.0.2.2", 1, 2, options=spec)).options == Options(**spec)


# ---------------------------------------------------------------------------
# parse_tcp
# ---------------------------------------------------------------------------


@given(packet_specs())
@settings(max_examples=50, suppress_health_check=[HealthCheck.filter_too_much])
def test_parse_tcp_with_and_without_addresses(spec):
    pkt = do_build(spec)
    ihl = 20 if spec["src"].version == 4 else 40
    segbytes = pkt[ihl:]
    bare = parse_tcp(segbytes)
    assert bare.version == 0 and bare.src is None and bare.dst is None and bare.checksum_ok is None
    assert (bare.src_port, bare.dst_port, bare.seq, bare.ack, int(bare.flags), bare.window, bare.urgent) == (
        spec["src_port"], spec["dst_port"], spec["seq"], spec["ack"], spec["flags"], spec["window"], spec["urgent"])
    assert bytes(bare.payload) == spec["payload"]
    assert bare.options == parse(pkt).options
    with pytest.raises(UsageError):
        bare.to_bytes()
    full = parse_tcp(segbytes, src=str(spec["src"]), dst=spec["dst"].packed)
    assert full.checksum_ok is True
    check_segment_matches_no_ttl(full, spec)
    assert full.to_bytes() == segbytes


def check_segment_matches_no_ttl(seg, spec):
    assert seg.version == spec["src"].version and seg.src == spec["src"] and seg.dst == spec["dst"]
    assert (seg.src_port, seg.dst_port, seg.seq, seg.ack) == (
        spec["src_port"], spec["dst_port"], spec["seq"], spec["ack"])
    assert bytes(seg.payload) == spec["payload"]


def test_parse_tcp_checksum_handling():
    seg = build("192.0.2.1", "192.0.2.2", 1, 2, payload=b"data")[20:]
    with pytest.raises(UsageError):
        parse_tcp(seg, verify_checksum=True)  # nothing to verify against
    with pytest.raises(UsageError):
        parse_tcp(seg, src="192.0.2.1")
    with pytest.raises(UsageError):
        parse_tcp(seg, dst="192.0.2.2")
    with pytest.raises(fasttcp.BadChecksum) as info:
        parse_tcp(seg, src="192.0.2.1", dst="192.0.2.99")
    assert info.value.field == "tcp.checksum" and info.value.offset == 16
    assert info.value.verdict == Verdict.BAD_CHECKSUM
    ok = parse_tcp(seg, src="192.0.2.1", dst="192.0.2.99", verify_checksum=False)
    assert ok.checksum_ok is None and str(ok.dst) == "192.0.2.99"
    # to_bytes() recomputes for the addresses it was given
    fixed = ok.to_bytes()
    assert oracle.tcp_checksum("192.0.2.1", "192.0.2.99", fixed) == 0


def test_parse_tcp_malformed():
    seg = bytearray(build("192.0.2.1", "192.0.2.2", 1, 2)[20:])
    for n in range(20):
        # without an IP length a short buffer is ambiguous: truncated or a lying header
        with pytest.raises((fasttcp.TruncatedPacket, fasttcp.BadHeader)):
            parse_tcp(bytes(seg[:n]))
    seg[12] = 0x40
    with pytest.raises(fasttcp.BadHeader) as info:
        parse_tcp(bytes(seg))
    assert info.value.field == "tcp.data_offset" and info.value.offset == 12


# ---------------------------------------------------------------------------
# IPv4 options, IPv6 extension headers, trailing padding
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("ip_opts", [b"\x01\x01\x01\x00", bytes([7, 7, 4, 0, 0, 0, 0, 1]), b"\x01" * 40])
def test_ipv4_with_ip_options(ip_opts):
    seg = P.tcp_segment("192.0.2.1", "192.0.2.2", 5, 6, seq=9, payload=b"opts")
    pkt = P.ipv4_packet("192.0.2.1", "192.0.2.2", seg, ip_options=ip_opts)
    s = parse(pkt)
    assert s.checksum_ok is True and s.seq == 9 and bytes(s.payload) == b"opts"
    assert s.to_bytes() == pkt


V6S, V6D, V6HOP, V6FINAL = "2001:db8::1", "2001:db8::2", "2001:db8::aa", "2001:db8::ff"


def _v6(exts, csum_dst=V6D, payload=b"ext payload", **kw):
    seg = P.tcp_segment(V6S, csum_dst, 1111, 2222, seq=77, payload=payload, **kw)
    return P.ipv6_packet(V6S, V6D, seg, ext_headers=exts)


@pytest.mark.parametrize("exts", [
    [(P.IPPROTO_HOPOPTS, P.options_header())],
    [(P.IPPROTO_DSTOPTS, P.options_header(b"\x01\x04\x00\x00\x00\x00"))],
    [(P.IPPROTO_HOPOPTS, P.options_header()), (P.IPPROTO_DSTOPTS, P.options_header(b"\x01\x0c" + bytes(12)))],
    [(P.IPPROTO_ROUTING, P.routing_header([V6HOP], segments_left=0))],
    [(P.IPPROTO_FRAGMENT, P.fragment_header(0, more=False))],  # atomic fragment (RFC 6946)
    [(P.IPPROTO_HOPOPTS, P.options_header()), (P.IPPROTO_FRAGMENT, P.fragment_header(0, False)),
     (P.IPPROTO_DSTOPTS, P.options_header())],
])
def test_ipv6_extension_headers(exts):
    pkt = _v6(exts)
    seg = parse(pkt)
    assert seg.checksum_ok is True
    assert (seg.src_port, seg.dst_port, seg.seq) == (1111, 2222, 77)
    assert bytes(seg.payload) == b"ext payload"
    assert str(seg.dst) == V6D
    assert seg.to_bytes() == pkt
    # the batch API agrees
    row = fasttcp.parse_batch(pkt, [0], [len(pkt)])[0]
    assert row["verdict"] == Verdict.OK and row["seq"] == 77 and row["payload_len"] == len(b"ext payload")
    assert bytes(pkt[row["payload_offset"] : row["payload_offset"] + row["payload_len"]]) == b"ext payload"


@pytest.mark.parametrize("segments_left", [1, 2])
def test_ipv6_routing_type0_checksum_uses_final_destination(segments_left):
    route = P.routing_header([V6HOP, V6FINAL], segments_left=segments_left)
    exts = [(P.IPPROTO_HOPOPTS, P.options_header()), (P.IPPROTO_ROUTING, route)]
    good = _v6(exts, csum_dst=V6FINAL)
    seg = parse(good)
    assert seg.checksum_ok is True
    assert str(seg.dst) == V6D  # the header destination (next hop) is what dst reports
    assert seg.to_bytes() == good  # to_bytes recomputes with the final destination too
    wrong = _v6(exts, csum_dst=V6D)
    with pytest.raises(fasttcp.BadChecksum) as info:
        parse(wrong)
    assert info.value.field == "tcp.checksum"
    assert info.value.offset == 40 + 8 + 40 + 16


def test_ipv6_routing_header_built_by_scapy():
    pkt = bytes(IPv6(src=V6S, dst=V6D) / IPv6ExtHdrHopByHop()
                / IPv6ExtHdrRouting(addresses=[V6HOP, V6FINAL], segleft=2)
                / IPv6ExtHdrDestOpt() / TCP(sport=1, dport=2, seq=3, flags="S") / Raw(b"scapy"))
    seg = parse(pkt)
    assert seg.checksum_ok is True and bytes(seg.payload) == b"scapy"
    # scapy also puts the final destination in the pseudo-header
    tcp_at = len(pkt) - 20 - 5
    assert oracle.tcp_checksum(V6S, V6FINAL, pkt[tcp_at:]) == 0


def test_ipv6_routing_segments_left_zero_uses_header_destination():
    route = P.routing_header([V6HOP, V6FINAL], segments_left=0)
    assert parse(_v6([(P.IPPROTO_ROUTING, route)], csum_dst=V6D)).checksum_ok is True
    with pytest.raises(fasttcp.BadChecksum):
        parse(_v6([(P.IPPROTO_ROUTING, route)], csum_dst=V6FINAL))


def test_ipv6_atomic_fragment_from_scapy():
    pkt = bytes(IPv6(src=V6S, dst=V6D) / IPv6ExtHdrFragment(offset=0, m=0, id=99) / TCP(sport=5, dport=6) / Raw(b"a"))
    seg = parse(pkt)
    assert seg.checksum_ok is True and bytes(seg.payload) == b"a"


@pytest.mark.parametrize("offset", [1, 5, 8191])
@pytest.mark.parametrize("more", [False, True])
def test_ipv6_non_first_fragment_is_unsupported(offset, more):
    seg = P.tcp_segment(V6S, V6D, 1, 2, payload=b"frag")
    pkt = P.ipv6_packet(V6S, V6D, seg, ext_headers=[(P.IPPROTO_FRAGMENT, P.fragment_header(offset, more))])
    with pytest.raises(fasttcp.UnsupportedPacket) as info:
        parse(pkt)
    assert info.value.verdict == Verdict.FRAGMENT
    assert info.value.field == "ip.fragment"
    assert info.value.offset in (42, 43)  # the fragment offset field of the header at 40
    assert fasttcp.parse_batch(pkt, [0], [len(pkt)])[0]["verdict"] == Verdict.FRAGMENT


def test_ipv6_first_fragment_is_unsupported_but_header_is_read():
    seg = P.tcp_segment(V6S, V6D, 1, 2, seq=31337, payload=b"first")
    pkt = P.ipv6_packet(V6S, V6D, seg, ext_headers=[(P.IPPROTO_FRAGMENT, P.fragment_header(0, True))])
    with pytest.raises(fasttcp.UnsupportedPacket) as info:
        parse(pkt)
    assert info.value.verdict == Verdict.FRAGMENT and info.value.field == "ip.fragment"
    row = fasttcp.parse_batch(pkt, [0], [len(pkt)])[0]
    assert row["verdict"] == Verdict.FRAGMENT and row["header_len"] == 20 and row["seq"] == 31337


def test_ipv6_first_fragment_error_offset_points_into_fragment_header():
    # regression: the offset used to be the TCP header's (48)
    seg = P.tcp_segment(V6S, V6D, 1, 2, seq=31337, payload=b"first")
    pkt = P.ipv6_packet(V6S, V6D, seg, ext_headers=[(P.IPPROTO_FRAGMENT, P.fragment_header(0, True))])
    with pytest.raises(fasttcp.UnsupportedPacket) as info:
        parse(pkt)
    assert info.value.offset in (42, 43)


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("padding", [b"\x00" * 6, b"\xde\xad\xbe\xef\x01\x02", b"\x00"])
def test_trailing_link_layer_padding_is_not_payload(family, padding):
    s, d = ("192.0.2.1", "192.0.2.2") if family == 4 else (V6S, V6D)
    pkt = build(s, d, 1, 2, payload=b"tiny", flags=Flags.ACK | Flags.PSH, ack=1)
    seg = parse(pkt + padding)
    assert seg.checksum_ok is True
    assert bytes(seg.payload) == b"tiny" and seg.payload_len == 4
    assert seg.to_bytes() == pkt
    row = fasttcp.parse_batch(pkt + padding, [0], [len(pkt) + len(padding)])[0]
    assert row["verdict"] == Verdict.OK and row["payload_len"] == 4


def test_padding_only_segment_has_empty_payload():
    pkt = build("192.0.2.1", "192.0.2.2", 1, 2, flags=Flags.ACK)  # 40 bytes; Ethernet pads to 46
    seg = parse(pkt + bytes(6))
    assert seg.payload_len == 0 and bytes(seg.payload) == b""


def test_ipv6_authentication_header():
    pkt = _v6([(P.IPPROTO_HOPOPTS, P.options_header()), (P.IPPROTO_AH, P.auth_header())])
    seg = parse(pkt)
    assert seg.checksum_ok is True and bytes(seg.payload) == b"ext payload"
    assert seg.to_bytes() == pkt


def test_ipv6_routing_type2_uses_home_address():
    # Mobile IPv6 (RFC 6275): one address, the home address, is the final destination
    route = P.routing_header([V6FINAL], segments_left=1, routing_type=2)
    assert parse(_v6([(P.IPPROTO_ROUTING, route)], csum_dst=V6FINAL)).checksum_ok is True
    with pytest.raises(fasttcp.BadChecksum):
        parse(_v6([(P.IPPROTO_ROUTING, route)], csum_dst=V6D))


def test_ipv6_segment_routing_header_uses_segment_list_0():
    # RFC 8754: Segment List[0] is the last segment, i.e. the final destination
    route = P.routing_header([V6FINAL, V6HOP], segments_left=1, routing_type=4, reserved=bytes([1, 0, 0, 0]))
    assert parse(_v6([(P.IPPROTO_ROUTING, route)], csum_dst=V6FINAL)).checksum_ok is True
    with pytest.raises(fasttcp.BadChecksum):
        parse(_v6([(P.IPPROTO_ROUTING, route)], csum_dst=V6HOP))


def _jumbogram(payload: bytes, jumbo_extra: int = 0) -> bytes:
    seg = P.tcp_segment(V6S, V6D, 7, 8, seq=1, flags=0x18, payload=payload)

    def hbh(nh: int) -> bytes:  # Jumbo Payload option (RFC 2675): type 0xC2, 4 data bytes
        return bytes([nh, 0, 0xC2, 4]) + (8 + len(seg) + jumbo_extra).to_bytes(4, "big")

    return P.ipv6_packet(V6S, V6D, seg, ext_headers=[(P.IPPROTO_HOPOPTS, hbh)], payload_length=0)


@pytest.mark.parametrize("size", [10, 70000])
def test_ipv6_jumbogram(size):
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    pkt = _jumbogram(payload)
    seg = parse(pkt)
    assert seg.checksum_ok is True and seg.payload_len == size and bytes(seg.payload) == payload
    assert seg.to_bytes() == pkt
    assert bytes(parse(pkt + b"\x00" * 4).payload) == payload  # trailing padding ignored
    with pytest.raises(fasttcp.TruncatedPacket):
        parse(_jumbogram(payload, jumbo_extra=1))


@pytest.mark.parametrize("make", [
    lambda pkt: np.frombuffer(pkt, dtype=np.uint16),
    lambda pkt: memoryview(pkt).cast("H"),
    lambda pkt: np.frombuffer(pkt, dtype=np.uint8).reshape(2, -1),
], ids=["numpy-uint16", "memoryview-H", "numpy-2d"])
def test_payload_of_non_byte_buffer(make):
    payload = bytes(range(100))
    pkt = build("192.0.2.1", "192.0.2.2", 1, 2, payload=payload)  # 140 bytes: even, 2 rows of 70
    obj = make(pkt)
    try:
        seg = parse(obj)
    except (UsageError, TypeError):
        return  # refusing such buffers would be fine too
    assert seg.payload_len == 100
    assert bytes(seg.payload) == payload


_SHRUNK_SCRIPT = """
import fasttcp
pkt = fasttcp.build("192.0.2.1", "192.0.2.2", 1, 2, payload=b"p" * 64,
                    options={"unknown": [(30, b"abc")], "mss": 1})
ba = bytearray(pkt)
seg = fasttcp.parse(ba)
ba.clear()  # the caller broke the contract; fasttcp must still not read freed memory
try:
    out = seg.to_bytes()
except Exception as exc:
    print("RAISED", type(exc).__name__)
else:
    print("RETURNED", len(out))
"""


def test_to_bytes_after_owner_shrank_does_not_read_out_of_bounds():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _SHRUNK_SCRIPT], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-500:]
    assert proc.stdout.startswith("RAISED"), proc.stdout


@pytest.mark.parametrize("src, dst", [
    ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"),
    ("::", "::7f:ffff:ffff"),
    ("255.255.255.255", "255.255.255.254"),
])
@pytest.mark.parametrize("payload", [b"", b"\xff", b"\xff" * 1501])
def test_built_checksums_equal_the_oracle_when_the_sums_carry(src, dst, payload):
    # build() sums both checksums from the field values as it writes them; all-ones
    # addresses, ports and sequence numbers make every partial sum carry
    pkt = build(src, dst, 0xFFFF, 0xFFFF, seq=0xFFFFFFFF, ack=0xFFFFFFFF, flags=0x1FF, window=0xFFFF,
                urgent=0xFFFF, ttl=255, options=Options(timestamp=(0xFFFFFFFF, 0xFFFFFFFF), mss=0xFFFF),
                payload=payload)
    ihl = 20 if ":" not in src else 40
    seg = pkt[ihl:]
    assert int.from_bytes(seg[16:18], "big") == oracle.tcp_checksum_to_store(src, dst, seg)
    if ihl == 20:
        assert int.from_bytes(pkt[10:12], "big") == oracle.ipv4_header_checksum(pkt[:20])
