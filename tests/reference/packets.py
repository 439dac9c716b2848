"""Byte-by-byte builders of IPv4/IPv6/TCP packets for tests (no fasttcp inside).

Everything is spelled out with struct/int.to_bytes so a test's input does not depend
on the code under test. Checksums come from `oracle`.
"""
from __future__ import annotations

import ipaddress

from tests.reference import oracle

IPPROTO_HOPOPTS = 0
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ROUTING = 43
IPPROTO_FRAGMENT = 44
IPPROTO_DSTOPTS = 60
IPPROTO_NONE = 59
IPPROTO_AH = 51


def packed(addr) -> bytes:
    if isinstance(addr, (bytes, bytearray)):
        return bytes(addr)
    return ipaddress.ip_address(addr).packed


def pad_options(options: bytes) -> bytes:
    """Pad a TCP options area to a multiple of 4 with zero (EOL) bytes."""
    return bytes(options) + b"\x00" * (-len(options) % 4)


def tcp_segment(
    src,
    dst,
    sport: int = 49500,
    dport: int = 80,
    *,
    seq: int = 0,
    ack: int = 0,
    flags: int = 0x002,
    window: int = 65535,
    urgent: int = 0,
    options: bytes = b"",
    payload: bytes = b"",
    data_offset: int | None = None,
    checksum: int | None = None,
) -> bytes:
    """A TCP header + payload. The checksum is computed over the pseudo-header for
    (src, dst) unless `checksum` is given (src/dst may then be None)."""
    options = pad_options(options)
    if data_offset is None:
        data_offset = (20 + len(options)) // 4
    hdr = bytearray()
    hdr += sport.to_bytes(2, "big") + dport.to_bytes(2, "big")
    hdr += seq.to_bytes(4, "big") + ack.to_bytes(4, "big")
    hdr += bytes([(data_offset << 4) | ((flags >> 8) & 1), flags & 0xFF])
    hdr += window.to_bytes(2, "big")
    hdr += b"\x00\x00"  # checksum, filled below
    hdr += urgent.to_bytes(2, "big")
    seg = bytearray(bytes(hdr) + options + bytes(payload))
    if checksum is None:
        checksum = oracle.tcp_checksum_to_store(src, dst, bytes(seg))
    seg[16:18] = checksum.to_bytes(2, "big")
    return bytes(seg)


def ipv4_packet(
    src,
    dst,
    upper: bytes,
    *,
    ttl: int = 64,
    ident: int = 0,
    flags_frag: int = 0x4000,  # DF, offset 0
    protocol: int = IPPROTO_TCP,
    ip_options: bytes = b"",
    total_length: int | None = None,
    ihl: int | None = None,
    version: int = 4,
    tos: int = 0,
    header_checksum: int | None = None,
) -> bytes:
    """An IPv4 header (+ options) followed by `upper`, header checksum filled."""
    ip_options = bytes(ip_options) + b"\x00" * (-len(ip_options) % 4)
    hl = 20 + len(ip_options)
    if ihl is None:
        ihl = hl // 4
    if total_length is None:
        total_length = hl + len(upper)
    h = bytearray()
    h += bytes([(version << 4) | ihl, tos])
    h += total_length.to_bytes(2, "big")
    h += ident.to_bytes(2, "big")
    h += flags_frag.to_bytes(2, "big")
    h += bytes([ttl, protocol])
    h += b"\x00\x00"
    h += packed(src) + packed(dst)
    h += ip_options
    if header_checksum is None:
        header_checksum = oracle.ipv4_header_checksum(bytes(h))
    h[10:12] = header_checksum.to_bytes(2, "big")
    return bytes(h) + bytes(upper)


def ipv6_packet(
    src,
    dst,
    upper: bytes,
    *,
    ext_headers=(),
    upper_protocol: int = IPPROTO_TCP,
    hop_limit: int = 64,
    payload_length: int | None = None,
    traffic_class: int = 0,
    flow_label: int = 0,
) -> bytes:
    """IPv6 header, then each extension header, then `upper`.

    `ext_headers` is a sequence of (header type, make) where make(next_header) returns
    the header's bytes; the chain of Next Header values is linked automatically.
    """
    types = [t for t, _ in ext_headers] + [upper_protocol]
    exts = b"".join(make(types[i + 1]) for i, (_, make) in enumerate(ext_headers))
    body = exts + bytes(upper)
    if payload_length is None:
        payload_length = len(body)
    first = (6 << 28) | (traffic_class << 20) | flow_label
    h = first.to_bytes(4, "big") + payload_length.to_bytes(2, "big") + bytes([types[0], hop_limit])
    return h + packed(src) + packed(dst) + body


# ---- IPv6 extension headers ----


def _pad_to_8(body: bytes) -> bytes:
    """Pad an options-header body (after its 2 fixed bytes) with Pad1/PadN."""
    need = -(2 + len(body)) % 8
    if need == 1:
        return body + b"\x00"  # Pad1
    if need >= 2:
        return body + bytes([1, need - 2]) + b"\x00" * (need - 2)  # PadN
    return body


def options_header(options: bytes = b""):
    """Hop-by-hop or Destination Options header (RFC 8200 4.3/4.6)."""

    def make(nh: int) -> bytes:
        body = _pad_to_8(bytes(options))
        return bytes([nh, (2 + len(body)) // 8 - 1]) + body

    return make


def routing_header(addresses, segments_left: int, routing_type: int = 0, reserved: bytes = b"\x00" * 4):
    """Routing header: 4 fixed bytes, 4 type-specific bytes (`reserved`; for a type 4
    segment routing header: last entry, flags, tag), then the 16-byte addresses
    (type 0: RFC 2460 4.4; type 2: RFC 6275 6.4; type 4: RFC 8754 2)."""

    def make(nh: int) -> bytes:
        addrs = b"".join(packed(a) for a in addresses)
        return bytes([nh, 2 * len(addresses), routing_type, segments_left]) + bytes(reserved) + addrs

    return make


def auth_header(icv: bytes = b"\xa5" * 12, spi: int = 0x100, seq: int = 1):
    """Authentication Header (RFC 4302): its length field counts 4-octet units minus 2."""

    def make(nh: int) -> bytes:
        body = spi.to_bytes(4, "big") + seq.to_bytes(4, "big") + bytes(icv)
        total = 4 + len(body)
        assert total % 8 == 0
        return bytes([nh, total // 4 - 2, 0, 0]) + body

    return make


def fragment_header(offset: int = 0, more: bool = False, ident: int = 0x12345678):
    """Fragment header (RFC 8200 4.5); `offset` in 8-byte units."""

    def make(nh: int) -> bytes:
        return bytes([nh, 0]) + ((offset << 3) | int(more)).to_bytes(2, "big") + ident.to_bytes(4, "big")

    return make
