"""Address coercion shared by the Python-facing API (not the hot path).

Accepts what users naturally have -- text, packed bytes, ipaddress objects -- and
returns packed bytes (4 for IPv4, 16 for IPv6). Text parsing is cached because
benchmarks and packet generators build many packets between the same few hosts.
"""
from __future__ import annotations

import ipaddress
from functools import lru_cache

from fasttcp.errors import UsageError

__all__ = ["packed", "to_ip"]

@lru_cache(maxsize=4096)
def _packed_hashable(addr: object) -> bytes:
    if isinstance(addr, bytes):
        if len(addr) in (4, 16):
            return addr
        raise UsageError(f"packed address must be 4 or 16 bytes, got {len(addr)}")
    if isinstance(addr, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return addr.packed
    if isinstance(addr, str):
        try:
            return ipaddress.ip_address(addr).packed
        except ValueError as exc:
            raise UsageError(f"not an IP address: {addr!r}") from exc
    raise UsageError(f"address must be str, bytes or an ipaddress object, not {type(addr).__name__}")


def packed(addr: object) -> bytes:
    """Return `addr` as 4 (IPv4) or 16 (IPv6) packed bytes; raise UsageError otherwise."""
    if isinstance(addr, (bytearray, memoryview)):
        addr = bytes(addr)
    try:
        return _packed_hashable(addr)
    except TypeError as exc:  # unhashable and not one of the accepted types
        raise UsageError(f"address must be str, bytes or an ipaddress object, not {type(addr).__name__}") from exc


def to_ip(raw: bytes) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Packed 4/16 bytes to an ipaddress object."""
    return ipaddress.IPv4Address(raw) if len(raw) == 4 else ipaddress.IPv6Address(raw)
