"""fasttcp.checksum / tcp_checksum / checksum_update against the RFC 1071 reference."""
from __future__ import annotations

import array
import ipaddress
import random

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import fasttcp
from fasttcp import UsageError, checksum, checksum_update, tcp_checksum
from tests.reference import oracle
from tests.reference import packets as P

# ---------------------------------------------------------------------------
# strategies
# ---------------------------------------------------------------------------

ipv4 = st.builds(lambda n: ipaddress.IPv4Address(n), st.integers(0, 2**32 - 1))
ipv6 = st.builds(lambda n: ipaddress.IPv6Address(n), st.integers(0, 2**128 - 1))
addr_pair = st.one_of(st.tuples(ipv4, ipv4), st.tuples(ipv6, ipv6))


def _as(form: str, addr):
    """The same address as str, packed bytes or an ipaddress object."""
    return {"str": str(addr), "bytes": addr.packed, "obj": addr}[form]


address_form = st.sampled_from(["str", "bytes", "obj"])

# ---------------------------------------------------------------------------
# checksum(): RFC 1071 over a buffer
# ---------------------------------------------------------------------------


def test_rfc1071_worked_example():
    # RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2, checksum 220d.
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert oracle.ones_complement_sum(data) == 0xDDF2
    assert checksum(data) == 0x220D


def test_empty_buffer_is_ffff():
    assert checksum(b"") == 0xFFFF == oracle.internet_checksum(b"")


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"\x00\x01", 0xFFFE),  # the result is a big-endian number
        (b"\x01\x00", 0xFEFF),
        (b"\x01", 0xFEFF),  # odd byte is the high byte of a zero-padded word
        (b"\x00\x00\x01", 0xFEFF),
        (b"\xff\xff", 0x0000),
        (b"\xff\xff\x00\x01", 0xFFFE),  # 0xffff + 1 = 0x10000 -> end-around -> 1
    ],
)
def test_small_known_values(data, expected):
    assert oracle.internet_checksum(data) == expected
    assert checksum(data) == expected


@given(st.binary(max_size=2048))
def test_checksum_matches_reference(data):
    assert checksum(data) == oracle.internet_checksum(data)


@given(st.integers(0, 70000).flatmap(lambda n: st.binary(min_size=n, max_size=n)))
@settings(max_examples=60)
def test_checksum_matches_reference_long_buffers(data):
    assert checksum(data) == oracle.internet_checksum(data)


@given(st.binary(min_size=1, max_size=601).filter(lambda b: len(b) % 2 == 1))
def test_checksum_odd_lengths(data):
    assert checksum(data) == oracle.internet_checksum(data)
    assert checksum(data) == oracle.internet_checksum(data + b"\x00")


@given(st.binary(max_size=300), st.integers(0, 7), st.sampled_from(["bytearray", "memoryview", "numpy"]))
def test_checksum_every_alignment(data, shift, kind):
    backing = bytearray(b"\xa5" * shift + data + b"\x5a" * 9)
    snapshot = bytes(backing)
    if kind == "bytearray":
        view = memoryview(backing)[shift : shift + len(data)]
    elif kind == "memoryview":
        view = memoryview(bytes(backing))[shift : shift + len(data)]
    else:
        view = np.frombuffer(bytes(backing), dtype=np.uint8)[shift : shift + len(data)]
    assert checksum(view) == oracle.internet_checksum(data)
    assert bytes(backing) == snapshot  # read only


@pytest.mark.parametrize("kind", [bytes, bytearray, lambda b: memoryview(b), lambda b: array.array("B", b)])
def test_checksum_accepts_buffers(kind):
    data = bytes(range(256)) * 3 + b"\x17"
    assert checksum(kind(data)) == oracle.internet_checksum(data)


def test_every_length_and_alignment_up_to_520():
    # the kernel switches loops by length (8-byte words, a 4/2/1-byte tail, a bulk loop
    # for long buffers): every length around those boundaries, at every alignment
    rng = random.Random(1071)
    patterns = {
        "random": rng.randbytes(530),
        "ones": b"\xff" * 530,
        "high": b"\xff\xfe\xfd\xff" * 133,
    }
    for name, data in patterns.items():
        backing = bytearray(8) + bytearray(data)
        for n in range(521):
            expected = oracle.internet_checksum(data[:n])
            for shift in range(8):
                backing[shift : shift + n] = data[:n]
                got = checksum(memoryview(backing)[shift : shift + n])
                assert got == expected, (name, n, shift)


ALL_FF_LENGTHS = [1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 143, 1023, 1024, 1025,
                  65535, 65536, 65537, 131073, (1 << 20) - 1, 1 << 20, (1 << 20) + 3, 3 * (1 << 20) + 1]


@pytest.mark.parametrize("n", ALL_FF_LENGTHS)
def test_all_ones_buffers_fold_many_times(n):
    # every word is 0xffff, so the running sum carries out of 16 (and 32) bits over and over
    data = b"\xff" * n
    expected = oracle.internet_checksum(data)
    assert checksum(data) == expected
    # and at a misaligned start
    backing = bytearray(b"\x00" + data)
    assert checksum(memoryview(backing)[1:]) == expected


@pytest.mark.parametrize("seed, n", [(1, 2 * (1 << 20) + 1), (2, 3 * (1 << 20)), (3, 1 << 22), (4, 12345)])
def test_large_random_buffers(seed, n):
    data = random.Random(seed).randbytes(n)
    assert checksum(data) == oracle.internet_checksum(data)


@pytest.mark.parametrize("n", [(1 << 20), 3 * (1 << 20) + 5])
def test_large_high_words_fold(n):
    # mostly 0xfffe/0xff.. words: large sums, every fold round matters
    data = (b"\xff\xfe\xfe\xff" * (n // 4 + 1))[:n]
    assert checksum(data) == oracle.internet_checksum(data)


@given(st.binary(min_size=2, max_size=512))
def test_buffer_with_its_checksum_verifies_to_zero(data):
    data = data[: len(data) // 2 * 2]
    c = oracle.internet_checksum(data)
    assert checksum(data + c.to_bytes(2, "big")) == 0


# ---------------------------------------------------------------------------
# tcp_checksum(): with the pseudo-header
# ---------------------------------------------------------------------------


@given(addr_pair, st.binary(max_size=1600), address_form)
def test_tcp_checksum_matches_reference(pair, segment, form):
    src, dst = pair
    assert tcp_checksum(_as(form, src), _as(form, dst), segment) == oracle.tcp_checksum(src, dst, segment)


@given(st.tuples(ipv4, ipv4), st.binary(min_size=20, max_size=200), st.integers(0, 7))
def test_tcp_checksum_alignment(pair, segment, shift):
    src, dst = pair
    backing = bytearray(b"\x01" * shift + segment)
    assert tcp_checksum(src, dst, memoryview(backing)[shift:]) == oracle.tcp_checksum(src, dst, segment)


def test_tcp_checksum_v6_large_segment():
    # IPv6 pseudo-header length is 32 bits: a jumbo-sized segment must still agree
    seg = random.Random(7).randbytes(70000)
    src, dst = "2001:db8::1", "2001:db8::2"
    assert tcp_checksum(src, dst, seg) == oracle.tcp_checksum(src, dst, seg)


@given(addr_pair, st.binary(max_size=300))
def test_tcp_checksum_of_segment_with_correct_field_is_zero(pair, payload):
    src, dst = pair
    seg = P.tcp_segment(src, dst, 1234, 80, seq=99, payload=payload)
    assert tcp_checksum(src, dst, seg) == 0
    zeroed = seg[:16] + b"\x00\x00" + seg[18:]
    assert tcp_checksum(src, dst, zeroed) == int.from_bytes(seg[16:18], "big")


@given(addr_pair, st.binary(max_size=300), st.integers(0, 2**32 - 1))
def test_checksum_of_built_packet_verifies(pair, payload, seq):
    src, dst = pair
    pkt = fasttcp.build(src, dst, 40000, 443, seq=seq, payload=payload,
                        options={"mss": 1400, "timestamp": (seq, 7)})
    if src.version == 4:
        ihl = (pkt[0] & 0xF) * 4
        assert checksum(pkt[:ihl]) == 0
        assert oracle.verifies(pkt[:ihl])
        seg = pkt[ihl:]
    else:
        seg = pkt[40:]
    assert tcp_checksum(src, dst, seg) == 0
    assert oracle.tcp_checksum(src, dst, seg) == 0


# ---------------------------------------------------------------------------
# checksum_update(): RFC 1624 incremental update == full recompute
# ---------------------------------------------------------------------------


def _segment(pkt: bytes) -> tuple[int, bytes]:
    ihl = (pkt[0] & 0xF) * 4 if pkt[0] >> 4 == 4 else 40
    return ihl, pkt[ihl:]


@given(addr_pair, st.integers(0, 65535), st.integers(0, 65535), st.binary(max_size=64),
       st.sampled_from(["sport", "dport"]))
def test_update_port(pair, old_port, new_port, payload, which):
    src, dst = pair
    kw = {"sport": old_port, "dport": 80} if which == "sport" else {"sport": 80, "dport": old_port}
    seg = P.tcp_segment(src, dst, kw["sport"], kw["dport"], seq=5, payload=payload)
    old_c = int.from_bytes(seg[16:18], "big")
    at = 0 if which == "sport" else 2
    new_seg = bytearray(seg)
    new_seg[at : at + 2] = new_port.to_bytes(2, "big")
    expected = oracle.tcp_checksum_to_store(src, dst, bytes(new_seg))
    assert checksum_update(old_c, old_port, new_port, size=2) == expected
    assert checksum_update(old_c, old_port, new_port) == expected  # size defaults to 2
    assert checksum_update(old_c, old_port.to_bytes(2, "big"), new_port.to_bytes(2, "big")) == expected


@given(addr_pair, st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.sampled_from([4, 8]))
def test_update_sequence_numbers(pair, old, new, at):
    src, dst = pair
    kw = {"seq": old, "ack": 0} if at == 4 else {"seq": 0, "ack": old}
    seg = P.tcp_segment(src, dst, 1000, 2000, flags=0x10, payload=b"abc", **kw)
    old_c = int.from_bytes(seg[16:18], "big")
    new_seg = bytearray(seg)
    new_seg[at : at + 4] = new.to_bytes(4, "big")
    expected = oracle.tcp_checksum_to_store(src, dst, bytes(new_seg))
    assert checksum_update(old_c, old, new, size=4) == expected


@given(ipv4, ipv4, ipv4, st.binary(max_size=100), st.sampled_from(["src", "dst"]))
def test_update_ipv4_address_fixes_both_checksums(src, dst, new_addr, payload, which):
    seg = P.tcp_segment(src, dst, 1, 2, seq=3, payload=payload)
    pkt = bytearray(P.ipv4_packet(src, dst, seg))
    at = 12 if which == "src" else 16
    old_addr = bytes(pkt[at : at + 4])
    ip_c = int.from_bytes(pkt[10:12], "big")
    tcp_c = int.from_bytes(pkt[36:38], "big")
    pkt[at : at + 4] = new_addr.packed
    # the address is in the IP header and in the TCP pseudo-header
    pkt[10:12] = checksum_update(ip_c, old_addr, new_addr.packed).to_bytes(2, "big")
    pkt[36:38] = checksum_update(tcp_c, int.from_bytes(old_addr, "big"), int(new_addr), size=4).to_bytes(2, "big")
    assert int.from_bytes(pkt[10:12], "big") == oracle.ipv4_header_checksum(bytes(pkt[:20]))
    s, d = (new_addr, dst) if which == "src" else (src, new_addr)
    assert int.from_bytes(pkt[36:38], "big") == oracle.tcp_checksum_to_store(s, d, bytes(pkt[20:]))
    parsed = fasttcp.parse(bytes(pkt))  # verifies both checksums
    assert parsed.checksum_ok is True


@given(addr_pair, st.binary(max_size=80), st.data())
def test_update_arbitrary_even_region_of_built_packet(pair, payload, data):
    src, dst = pair
    pkt = fasttcp.build(src, dst, 5555, 80, seq=1, ack=2, flags=0x18, payload=payload,
                        options={"mss": 1460, "sack_permitted": True, "timestamp": (3, 4), "wscale": 7})
    ihl, seg = _segment(pkt)
    old_c = int.from_bytes(seg[16:18], "big")
    # an even-offset region of the segment that does not cover the checksum field
    start = data.draw(st.integers(0, (len(seg) - 1) // 2), label="start_word") * 2
    limit = 16 - start if start < 16 else len(seg) - start
    assume(limit > 0)
    length = data.draw(st.integers(1, limit), label="length")
    assume(start >= 18 or start + length <= 16)
    new = data.draw(st.binary(min_size=length, max_size=length), label="new")
    old = seg[start : start + length]
    new_seg = seg[:start] + new + seg[start + length :]
    expected = oracle.tcp_checksum_to_store(src, dst, new_seg)
    kind = data.draw(st.sampled_from([bytes, bytearray, memoryview]), label="kind")
    assert checksum_update(old_c, kind(old), kind(new)) == expected


@given(st.binary(min_size=22, max_size=200).filter(lambda b: any(b)), st.data())
def test_update_plain_buffer(buf, data):
    # a plain RFC 1071 checksum over a buffer whose first word holds the checksum
    body = buf[2:]
    c = oracle.internet_checksum(body)
    start = 2 * data.draw(st.integers(0, (len(body) - 1) // 2))
    length = data.draw(st.integers(0, len(body) - start))
    new = data.draw(st.binary(min_size=length, max_size=length))
    new_body = body[:start] + new + body[start + length :]
    assume(any(new_body))  # an all-zero buffer has the two zeros of one's complement
    assert checksum_update(c, body[start : start + length], new) == oracle.internet_checksum(new_body)


def test_update_identity():
    assert checksum_update(0x1234, b"\x12\x34", b"\x12\x34") == 0x1234
    assert checksum_update(0x1234, 80, 80) == 0x1234


def test_update_returns_big_endian_number():
    # data 0x0001 -> checksum 0xfffe; rewrite to 0x0100 -> checksum 0xfeff
    assert checksum_update(0xFFFE, b"\x00\x01", b"\x01\x00") == 0xFEFF
    assert checksum_update(0xFFFE, 1, 0x100) == 0xFEFF


# ---------------------------------------------------------------------------
# bad arguments
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, kwargs",
    [
        ((-1, b"ab", b"cd"), {}),
        ((0x10000, b"ab", b"cd"), {}),
        ((0, b"ab", b"abc"), {}),  # lengths differ
        ((0, 1, b"\x00\x01"), {}),  # int and bytes mixed
        ((0, b"\x00\x01", 1), {}),
        ((0, -1, 2), {}),  # negative field
        ((0, 1, -2), {}),
        ((0, 0x10000, 1), {"size": 2}),  # does not fit in size bytes
        ((0, 1, 2**32), {"size": 4}),
        ((0, 1, 2), {"size": 0}),
        ((0, 1, 2), {"size": -4}),
        ((0, 1, 2), {"size": 17}),
        (("1", b"ab", b"cd"), {}),  # wrong types are usage errors too
        ((1.0, b"ab", b"cd"), {}),
        ((0, 1, 2), {"size": "2"}),
    ],
)
def test_checksum_update_bad_arguments(args, kwargs):
    with pytest.raises(UsageError):
        checksum_update(*args, **kwargs)


@pytest.mark.parametrize("value", [2**40, -(2**40), 2**64])
def test_checksum_update_huge_checksum_is_usage_error(value):
    # regression: values beyond a C int used to raise OverflowError
    with pytest.raises(UsageError):
        checksum_update(value, b"ab", b"cd")


@pytest.mark.parametrize(
    "src, dst, seg",
    [
        ("192.0.2.1", "2001:db8::1", b"\x00" * 20),  # mixed families
        ("2001:db8::1", b"\xc0\x00\x02\x01", b"\x00" * 20),
        ("not an address", "192.0.2.1", b"\x00" * 20),
        (b"\x01\x02\x03", "192.0.2.1", b"\x00" * 20),  # 3 packed bytes
        (12345678, "192.0.2.1", b"\x00" * 20),
        ("192.0.2.1", "192.0.2.2", b"\x00" * 65536),  # an IPv4 segment is < 64 KiB
    ],
)
def test_tcp_checksum_bad_arguments(src, dst, seg):
    with pytest.raises(UsageError):
        tcp_checksum(src, dst, seg)


def test_tcp_checksum_max_ipv4_length_is_fine():
    seg = bytes(range(256)) * 255 + bytes(range(255))  # 65535 bytes
    assert len(seg) == 65535
    assert tcp_checksum("192.0.2.1", "192.0.2.2", seg) == oracle.tcp_checksum("192.0.2.1", "192.0.2.2", seg)


@pytest.mark.parametrize("bad", [None, 5, "text", 1.5])
def test_checksum_rejects_non_buffers(bad):
    with pytest.raises((TypeError, UsageError)):
        checksum(bad)


def test_usage_error_is_value_error_but_not_malformed():
    with pytest.raises(ValueError) as info:
        checksum_update(-1, 1, 2)
    assert isinstance(info.value, fasttcp.FastTcpError)
    assert not isinstance(info.value, fasttcp.MalformedPacket)


@given(st.integers(0, 0xFFFF), st.data())
def test_update_is_rfc1624_eqn3_for_any_input(c, data):
    # also for inputs that are not consistent with any buffer
    n = data.draw(st.integers(0, 40))
    old = data.draw(st.binary(min_size=n, max_size=n))
    new = data.draw(st.binary(min_size=n, max_size=n))
    assert checksum_update(c, old, new) == oracle.rfc1624_update(c, old, new)


def test_avx2_and_baseline_checksum_loops_agree():
    """The bulk loop is compiled for the baseline ISA and for AVX2 (picked at run time);
    a child process with FASTTCP_NO_AVX2=1 takes the baseline one: same checksums for
    lengths and alignments around its vectors, rounds and blocks, and extreme words."""
    import os
    import subprocess
    import sys

    # random bytes at four alignments around the 32-byte vectors, the 4-vector rounds and
    # the 64 KiB blocks; and the words that stress the AVX2 loop's signed arithmetic
    # (0xffff, and 0x8000, which its bias turns into the most negative word)
    code = ("import fasttcp, random; r = random.Random(5); "
            "ns = list(range(100, 700, 7)) + [1400, 1460, 65535, 65536, 65537, 65536 + 129, 3 << 20]; "
            "bufs = [r.randbytes(n) for n in ns]; "
            "out = [fasttcp.checksum(b[k:]) for b in bufs for k in range(4)]; "
            "out += [fasttcp.checksum(w * (n // 2)) "
            "for w in (b'\\xff\\xff', b'\\x00\\x80', b'\\x80\\x00') for n in ns]; "
            "print(out)")
    env = dict(os.environ)
    fast = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    env["FASTTCP_NO_AVX2"] = "1"
    base = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert fast.stdout == base.stdout and fast.stdout.count(",") > 600
