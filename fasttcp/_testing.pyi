"""Test hooks: C paths that must agree, compared from Python. Not imported by the library."""
import ipaddress

__all__ = ["linux_layout_decodes", "parse_paths_agree", "ts_segment_paths_agree"]
from typing import TypeAlias

_Addr: TypeAlias = str | bytes | ipaddress.IPv4Address | ipaddress.IPv6Address
_Buffer: TypeAlias = bytes | bytearray | memoryview

def parse_paths_agree(packet: _Buffer, *, verify_checksum: bool = True) -> tuple[bool, bool]:
    """(fast path took the packet, fast and general parses agree)."""

def ts_segment_paths_agree(src: _Addr, dst: _Addr, src_port: int, dst_port: int, seq: int, ack: int,
                            flags: int, window: int, ts: bool, tsval: int, tsecr: int,
                            ttl: int = 64) -> tuple[bytes, bool]:
    """The endpoint's ACK/FIN builder against the general builder."""

def linux_layout_decodes(options: bytes) -> bool:
    """Whether the fast parser's word-at-a-time option decoder takes `options`."""
