"""Small, obviously-correct reference implementations (test oracle only).

Everything here is written straight from the RFC text, favouring clarity over speed;
none of it imports fasttcp. The tests compare fasttcp against these functions.
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

# ---------------------------------------------------------------------------
# RFC 1071 Internet checksum
# ---------------------------------------------------------------------------


def ones_complement_sum(data: bytes) -> int:
    """16-bit one's complement sum of `data` read as big-endian 16-bit words.

    An odd trailing byte is the high byte of a word whose low byte is zero.
    """
    data = bytes(data)
    if len(data) % 2:
        data += b"\x00"
    words = struct.unpack(f">{len(data) // 2}H", data)
    total = sum(words)
    while total > 0xFFFF:  # end-around carry
        total = (total & 0xFFFF) + (total >> 16)
    return total


def internet_checksum(data: bytes) -> int:
    """RFC 1071: the one's complement of the one's complement sum, as a 16-bit number
    whose big-endian bytes go on the wire."""
    return ~ones_complement_sum(data) & 0xFFFF


def verifies(data: bytes) -> bool:
    """A buffer that contains its own correct checksum field sums to 0xFFFF."""
    return ones_complement_sum(data) == 0xFFFF


def rfc1624_update(hc: int, old: bytes, new: bytes) -> int:
    """RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m'), over every 16-bit word m of the
    rewritten region (zero-padded like the checksum itself)."""
    old, new = bytes(old), bytes(new)
    if len(old) % 2:
        old, new = old + b"\x00", new + b"\x00"
    total = ~hc & 0xFFFF
    for k in range(0, len(old), 2):
        total += ~int.from_bytes(old[k : k + 2], "big") & 0xFFFF
        total += int.from_bytes(new[k : k + 2], "big")
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


# ---------------------------------------------------------------------------
# TCP pseudo-header checksums (RFC 9293 3.1, RFC 8200 8.1)
# ---------------------------------------------------------------------------

IPPROTO_TCP = 6


def _packed(addr) -> bytes:
    if isinstance(addr, (bytes, bytearray)):
        return bytes(addr)
    return ipaddress.ip_address(addr).packed


def pseudo_header_v4(src, dst, tcp_length: int, proto: int = IPPROTO_TCP) -> bytes:
    """src(4) dst(4) zero(1) protocol(1) TCP length(2)."""
    s, d = _packed(src), _packed(dst)
    assert len(s) == 4 and len(d) == 4
    return s + d + bytes([0, proto]) + tcp_length.to_bytes(2, "big")


def pseudo_header_v6(src, dst, tcp_length: int, proto: int = IPPROTO_TCP) -> bytes:
    """src(16) dst(16) upper-layer length(4) zero(3) next header(1)."""
    s, d = _packed(src), _packed(dst)
    assert len(s) == 16 and len(d) == 16
    return s + d + tcp_length.to_bytes(4, "big") + bytes([0, 0, 0, proto])


def tcp_checksum(src, dst, segment: bytes) -> int:
    """Checksum over pseudo-header + segment (the segment's checksum field included
    as it is: zero it first to get the value to store)."""
    s = _packed(src)
    pseudo = pseudo_header_v4(src, dst, len(segment)) if len(s) == 4 else pseudo_header_v6(src, dst, len(segment))
    return internet_checksum(pseudo + bytes(segment))


def tcp_checksum_to_store(src, dst, segment: bytes) -> int:
    """The value to write into bytes 16..17 of `segment`."""
    seg = bytearray(segment)
    seg[16:18] = b"\x00\x00"
    return tcp_checksum(src, dst, bytes(seg))


def ipv4_header_checksum(header: bytes) -> int:
    """The value to write into bytes 10..11 of an IPv4 header."""
    h = bytearray(header)
    h[10:12] = b"\x00\x00"
    return internet_checksum(bytes(h))


# ---------------------------------------------------------------------------
# Sequence-number arithmetic (RFC 9293 3.4, RFC 1982), defined by the math
# ---------------------------------------------------------------------------

MOD = 2**32
HALF = 2**31


def seq_lt(a: int, b: int) -> bool:
    """a < b iff b is 1 .. 2**31-1 ahead of a (mod 2**32)."""
    return 1 <= (b - a) % MOD <= HALF - 1


def seq_le(a: int, b: int) -> bool:
    return a == b or seq_lt(a, b)


def seq_gt(a: int, b: int) -> bool:
    return seq_lt(b, a)


def seq_ge(a: int, b: int) -> bool:
    return seq_le(b, a)


def seq_add(a: int, n: int) -> int:
    return (a + n) % MOD


def seq_diff(a: int, b: int) -> int:
    """Signed distance a - b in [-2**31, 2**31); exactly 2**31 apart reads -2**31."""
    d = (a - b) % MOD
    return d - MOD if d >= HALF else d


def seq_between(a: int, b: int, c: int) -> bool:
    """a <= b <= c walking forward from a (the arc a..c, both ends inclusive)."""
    return (b - a) % MOD <= (c - a) % MOD


def seq_in_window(s: int, start: int, size: int) -> bool:
    """start <= s < start + size: s is among the `size` numbers from `start`."""
    return (s - start) % MOD < size


def seq_acceptable(seg_seq: int, seg_len: int, rcv_nxt: int, rcv_wnd: int) -> bool:
    """RFC 9293 3.10.7.4, the four-case table, transcribed literally."""
    if seg_len == 0 and rcv_wnd == 0:
        return seg_seq == rcv_nxt
    if seg_len == 0 and rcv_wnd > 0:
        return seq_in_window(seg_seq, rcv_nxt, rcv_wnd)
    if seg_len > 0 and rcv_wnd == 0:
        return False
    last = (seg_seq + seg_len - 1) % MOD
    return seq_in_window(seg_seq, rcv_nxt, rcv_wnd) or seq_in_window(last, rcv_nxt, rcv_wnd)


# ---------------------------------------------------------------------------
# TCP options (RFC 9293 3.2, RFC 7323, RFC 2018)
# ---------------------------------------------------------------------------

EOL, NOP, MSS, WSCALE, SACK_PERM, SACK, TIMESTAMP = 0, 1, 2, 3, 4, 5, 8
FIXED_LENGTHS = {MSS: 4, WSCALE: 3, SACK_PERM: 2, TIMESTAMP: 10}


class OptionError(ValueError):
    """A malformed option; `offset` is the position of its length byte."""

    def __init__(self, offset: int, why: str) -> None:
        super().__init__(f"{why} at {offset}")
        self.offset = offset


@dataclass
class DecodedOptions:
    mss: int | None = None
    wscale: int | None = None
    sack_permitted: bool = False
    sack: list = field(default_factory=list)
    timestamp: tuple | None = None
    unknown: list = field(default_factory=list)
    eol: bool = False
    items: list = field(default_factory=list)  # every (kind, data) in wire order, NOPs included


def decode_options(area: bytes, base: int = 0) -> DecodedOptions:
    """Decode a TCP options area. `base` is added to error offsets (the area's position
    in the packet). A later option of a decoded kind replaces an earlier one."""
    area = bytes(area)
    out = DecodedOptions()
    i = 0
    while i < len(area):
        kind = area[i]
        if kind == EOL:
            out.eol = True
            out.items.append((EOL, b""))
            break
        if kind == NOP:
            out.items.append((NOP, b""))
            i += 1
            continue
        if i + 1 >= len(area):
            raise OptionError(base + i + 1, "no room for the length byte")
        length = area[i + 1]
        if length < 2:
            raise OptionError(base + i + 1, "length below 2")
        if i + length > len(area):
            raise OptionError(base + i + 1, "option runs past the header")
        data = area[i + 2 : i + length]
        if kind in FIXED_LENGTHS and length != FIXED_LENGTHS[kind]:
            raise OptionError(base + i + 1, "wrong fixed length")
        if kind == SACK and (length < 10 or (length - 2) % 8 != 0):
            raise OptionError(base + i + 1, "SACK length is not 2 + 8n")
        out.items.append((kind, data))
        if kind == MSS:
            out.mss = int.from_bytes(data, "big")
        elif kind == WSCALE:
            out.wscale = data[0]
        elif kind == SACK_PERM:
            out.sack_permitted = True
        elif kind == TIMESTAMP:
            out.timestamp = (int.from_bytes(data[:4], "big"), int.from_bytes(data[4:], "big"))
        elif kind == SACK:
            out.sack = [
                (int.from_bytes(data[k : k + 4], "big"), int.from_bytes(data[k + 4 : k + 8], "big"))
                for k in range(0, len(data), 8)
            ]
        else:
            out.unknown.append((kind, data))
        i += length
    return out


# FT_FIELD_* order of fasttcp/wire/defs.pxd, written out independently of the package:
# the batch column error_field indexes this, MalformedPacket.field carries the name
FIELD_NAMES = (
    "none", "ip.version", "ip.ihl", "ip.total_length", "ip.protocol", "ip.fragment",
    "ip.checksum", "ipv6.payload_length", "ipv6.next_header", "ipv6.ext_length",
    "tcp.header", "tcp.data_offset", "tcp.option.kind", "tcp.option.length",
    "tcp.checksum", "ip.header",
)
