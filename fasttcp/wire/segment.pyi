"""Per-packet API: parse, parse_tcp, build, Segment, Options."""
import ipaddress
from collections.abc import Mapping
from typing import Any, TypeAlias, final

from fasttcp.enums import Flags

_Addr: TypeAlias = str | bytes | bytearray | ipaddress.IPv4Address | ipaddress.IPv6Address
_Buffer: TypeAlias = bytes | bytearray | memoryview

@final
class Options:
    """Decoded TCP options (immutable). Also the `options=` argument of `build`."""
    def __init__(
        self,
        *,
        mss: int | None = None,
        wscale: int | None = None,
        sack_permitted: bool = False,
        sack: list[tuple[int, int]] | None = None,
        timestamp: tuple[int, int] | None = None,
        unknown: list[tuple[int, bytes]] | tuple[tuple[int, bytes], ...] = (),
    ) -> None: ...
    @property
    def mss(self) -> int | None: ...
    @property
    def wscale(self) -> int | None:
        """Shift as sent (may exceed 14)."""
    @property
    def wscale_clamped(self) -> int | None:
        """min(wscale, 14), as RFC 7323 2.3 tells a receiver to use it."""
    @property
    def sack_permitted(self) -> bool: ...
    @property
    def sack(self) -> list[tuple[int, int]]: ...
    @property
    def timestamp(self) -> tuple[int, int] | None: ...
    @property
    def unknown(self) -> list[tuple[int, bytes]]: ...
    def to_bytes(self) -> bytes:
        """Options area in Linux's layout, padded to a multiple of 4."""
    def __bool__(self) -> bool: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class Segment:
    """One parsed TCP segment (immutable); payload is a zero-copy memoryview."""
    @property
    def version(self) -> int: ...
    @property
    def src(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None: ...
    @property
    def dst(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None: ...
    @property
    def src_port(self) -> int: ...
    @property
    def dst_port(self) -> int: ...
    @property
    def seq(self) -> int: ...
    @property
    def ack(self) -> int: ...
    @property
    def flags(self) -> Flags: ...
    @property
    def window(self) -> int: ...
    @property
    def urgent(self) -> int: ...
    @property
    def checksum(self) -> int: ...
    @property
    def checksum_ok(self) -> bool | None: ...
    @property
    def header_len(self) -> int: ...
    @property
    def payload(self) -> memoryview:
        """Zero-copy view of the payload; UsageError if the buffer shrank since parsing."""
    @property
    def payload_len(self) -> int: ...
    @property
    def ttl(self) -> int: ...
    @property
    def hop_limit(self) -> int: ...
    @property
    def options(self) -> Options:
        """The options as parsed (a copy taken at parse time, whatever became of the buffer)."""
    def to_bytes(self) -> bytes:
        """The packet as parsed, with fresh IPv4 header and TCP checksums. UsageError if the
        buffer shrank or its headers or options were rewritten since parsing."""
    def replace(self, **changes: Any) -> Segment:
        """A rebuilt Segment with the named fields changed."""
    def __eq__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...

def parse(packet: _Buffer, *, verify_checksum: bool = True) -> Segment:
    """Parse an IPv4/IPv6 packet carrying TCP. Raises MalformedPacket subclasses."""

def parse_tcp(
    segment: _Buffer, *, src: _Addr | None = None, dst: _Addr | None = None, verify_checksum: bool | None = None
) -> Segment:
    """Parse a bare TCP header + payload; checksum verified when addresses are given.
    UsageError for mixed or half-given addresses and a segment longer than its length
    fields hold (65535 bytes with IPv4 addresses)."""

def build(
    src: _Addr,
    dst: _Addr,
    src_port: int,
    dst_port: int,
    *,
    seq: int = 0,
    ack: int = 0,
    flags: int = ...,
    window: int = 65535,
    urgent: int = 0,
    options: Options | Mapping[str, Any] | bytes | None = None,
    payload: _Buffer = b"",
    ttl: int = 64,
) -> bytes:
    """A complete IPv4/IPv6 packet with lengths and both checksums filled."""
