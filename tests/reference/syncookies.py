"""Linux's SYN cookie formula in plain Python: the test oracle for the endpoint's C.

Written from the kernel's net/ipv4/syncookies.c (cookie_hash, secure_tcp_syn_cookie,
check_tcp_syn_cookie, __cookie_v4_init_sequence, cookie_init_timestamp,
cookie_timestamp_decode), net/ipv6/syncookies.c (its cookie_hash over a 40-byte
struct) and include/linux/siphash.h (siphash_4u32 = siphash_2u64 of b:a, d:c). Every
value is what a little-endian kernel computes: a __be32 address or __be16 port is read
as the host integer of its bytes in memory.
"""
from __future__ import annotations

import ipaddress
import struct

COOKIEBITS = 24
COOKIEMASK = (1 << COOKIEBITS) - 1
MAX_SYNCOOKIE_AGE = 2
TSBITS = 6
TS_OPT_WSCALE_MASK = 0xF
TS_OPT_SACK = 1 << 4
TS_OPT_ECN = 1 << 5
MSSTAB4 = (536, 1300, 1440, 1460)
MSSTAB6 = (1280 - 60, 1480 - 60, 1500 - 60, 9000 - 60)
_M64 = (1 << 64) - 1
_M32 = (1 << 32) - 1


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _M64


def _round(v: list[int]) -> None:
    v0, v1, v2, v3 = v
    v0 = (v0 + v1) & _M64
    v1 = _rotl(v1, 13) ^ v0
    v0 = _rotl(v0, 32)
    v2 = (v2 + v3) & _M64
    v3 = _rotl(v3, 16) ^ v2
    v0 = (v0 + v3) & _M64
    v3 = _rotl(v3, 21) ^ v0
    v2 = (v2 + v1) & _M64
    v1 = _rotl(v1, 17) ^ v2
    v2 = _rotl(v2, 32)
    v[:] = [v0, v1, v2, v3]


def siphash24(key: tuple[int, int], msg: bytes) -> int:
    """SipHash-2-4 (Aumasson, Bernstein 2012) of `msg` under the key (k0, k1)."""
    k0, k1 = key
    v = [0x736F6D6570736575 ^ k0, 0x646F72616E646F6D ^ k1, 0x6C7967656E657261 ^ k0, 0x7465646279746573 ^ k1]
    end = len(msg) - len(msg) % 8
    for i in range(0, end, 8):
        m = int.from_bytes(msg[i:i + 8], "little")
        v[3] ^= m
        _round(v)
        _round(v)
        v[0] ^= m
    b = (len(msg) & 0xFF) << 56 | int.from_bytes(msg[end:], "little")
    v[3] ^= b
    _round(v)
    _round(v)
    v[0] ^= b
    v[2] ^= 0xFF
    for _ in range(4):
        _round(v)
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def _be16_as_host(port: int) -> int:
    return int.from_bytes(port.to_bytes(2, "big"), "little")


def cookie_hash(keys: tuple[tuple[int, int], tuple[int, int]], saddr: str, daddr: str, sport: int,
                dport: int, count: int, c: int) -> int:
    """cookie_hash(saddr, daddr, sport, dport, count, c) of IPv4 or IPv6, 32 bits."""
    s, d = ipaddress.ip_address(saddr).packed, ipaddress.ip_address(daddr).packed
    if len(s) == 4:
        a = int.from_bytes(s, "little")
        b = int.from_bytes(d, "little")
        w = (_be16_as_host(sport) << 16 | _be16_as_host(dport)) & _M32
        msg = struct.pack("<QQ", (b << 32) | a, ((count & _M32) << 32) | w)
    else:
        msg = s + d + struct.pack("<I", count & _M32) + sport.to_bytes(2, "big") + dport.to_bytes(2, "big")
    return siphash24(keys[c], msg) & _M32


def mss_index(mss: int, v6: bool) -> int:
    """__cookie_v4_init_sequence's search: the largest entry <= mss, else entry 0."""
    tab = MSSTAB6 if v6 else MSSTAB4
    i = len(tab) - 1
    while i and mss < tab[i]:
        i -= 1
    return i


def make(keys, saddr, daddr, sport, dport, seq: int, count: int, mssind: int) -> int:
    """secure_tcp_syn_cookie: the ISN for a SYN with sequence number `seq`."""
    return (cookie_hash(keys, saddr, daddr, sport, dport, 0, 0) + seq + ((count << COOKIEBITS) & _M32)
            + ((cookie_hash(keys, saddr, daddr, sport, dport, count, 1) + mssind) & COOKIEMASK)) & _M32


def check(keys, saddr, daddr, sport, dport, seq: int, ack: int, count: int) -> int | None:
    """__cookie_v4_check for an ACK (seq, ack): the MSS index, or None if refused."""
    cookie = (ack - 1 - (cookie_hash(keys, saddr, daddr, sport, dport, 0, 0) + seq - 1)) & _M32
    diff = (count - (cookie >> COOKIEBITS)) & (_M32 >> COOKIEBITS)
    if diff >= MAX_SYNCOOKIE_AGE:
        return None
    m = (cookie - cookie_hash(keys, saddr, daddr, sport, dport, (count - diff) & _M32, 1)) & COOKIEMASK
    return m if m < len(MSSTAB4) else None


def init_timestamp(ts_now_ms: int, wscale: int | None, sack: bool, ecn: bool = False) -> int:
    """cookie_init_timestamp: the TSval of the cookie SYN-ACK at `ts_now_ms`."""
    options = TS_OPT_WSCALE_MASK if wscale is None else wscale
    options |= TS_OPT_SACK if sack else 0
    options |= TS_OPT_ECN if ecn else 0
    ts = (ts_now_ms >> TSBITS) << TSBITS | options
    if ts > ts_now_ms:
        ts -= 1 << TSBITS
    return ts & _M32


def decode_timestamp(tsecr: int) -> tuple[int | None, bool]:
    """cookie_timestamp_decode: (peer's window scale or None, SACK permitted)."""
    ws = tsecr & TS_OPT_WSCALE_MASK
    return (None if ws == TS_OPT_WSCALE_MASK else ws), bool(tsecr & TS_OPT_SACK)
