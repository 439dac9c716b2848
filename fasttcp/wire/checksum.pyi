"""RFC 1071 checksum, TCP pseudo-header checksum and RFC 1624 incremental update."""
import ipaddress
from typing import TypeAlias

__all__ = ["checksum", "tcp_checksum", "checksum_update"]

_Addr: TypeAlias = str | bytes | bytearray | ipaddress.IPv4Address | ipaddress.IPv6Address
_Buffer: TypeAlias = bytes | bytearray | memoryview

def checksum(data: _Buffer) -> int:
    """Internet checksum as the 16-bit wire value; UsageError for a non-contiguous buffer."""

def tcp_checksum(src: _Addr, dst: _Addr, tcp_bytes: _Buffer) -> int:
    """TCP checksum with the IPv4/IPv6 pseudo-header; UsageError for bad or mixed
    addresses, a non-contiguous buffer or one longer than the pseudo-header holds."""

def checksum_update(checksum: int, old: _Buffer | int, new: _Buffer | int, *, size: int = 2) -> int:
    """RFC 1624 eqn. 3 update after rewriting `old` to `new`; UsageError for values that
    are not fields (out of range, bools, lengths that differ)."""
