"""Exceptions raised by fasttcp.

Two families, kept apart on purpose (as h11 does): `MalformedPacket` is about what a
peer or a capture gave you -- bytes that are not a valid TCP/IP packet -- and carries
the field and byte offset that failed; `UsageError` is about how the API was called.
Every malformed-packet exception is also a `ValueError`, so callers can catch either.
`CaptureError` is the capture reader's: a file that is not a capture, or is corrupt.
"""
from __future__ import annotations

from pathlib import Path

__all__ = [
    "FastTcpError",
    "MalformedPacket",
    "TruncatedPacket",
    "BadHeader",
    "BadChecksum",
    "BadOption",
    "UnsupportedPacket",
    "UsageError",
    "TableFull",
    "StaleConnection",
    "ConnectionStateError",
    "CaptureError",
    "WorkerError",
    "OutputError",
    "FIELD_NAMES",
]

FIELD_NAMES = (
    "none", "ip.version", "ip.ihl", "ip.total_length", "ip.protocol", "ip.fragment",
    "ip.checksum", "ipv6.payload_length", "ipv6.next_header", "ipv6.ext_length",
    "tcp.header", "tcp.data_offset", "tcp.option.kind", "tcp.option.length",
    "tcp.checksum", "ip.header",
)
"""Field names by code: ``MalformedPacket.field`` and the ``error_field`` column of
`parse_batch` (``FIELD_NAMES[row["error_field"]]``)."""


class FastTcpError(Exception):
    """Base class of every exception fasttcp raises on purpose."""


class MalformedPacket(FastTcpError, ValueError):
    """A packet failed validation.

    Attributes:
        field: dotted name of the offending field, e.g. ``"tcp.data_offset"``.
        offset: byte offset of that field in the buffer that was parsed.
        verdict: the `fasttcp.Verdict` the batch API would have recorded.
    """

    def __init__(self, message: str, *, field: str, offset: int, verdict: int) -> None:
        super().__init__(f"{message} (field {field} at byte {offset})")
        self.field = field
        self.offset = offset
        from fasttcp.enums import Verdict

        self.verdict = Verdict(verdict)


class TruncatedPacket(MalformedPacket):
    """The buffer ends before a header or a length field says the packet does."""


class BadHeader(MalformedPacket):
    """An IP or TCP header contradicts itself (IHL < 5, lying lengths, data offset < 5)."""


class BadChecksum(MalformedPacket):
    """The TCP checksum (with pseudo-header) or the IPv4 header checksum is wrong."""


class BadOption(MalformedPacket):
    """A TCP option has a length of 0 or 1, the wrong fixed length, or runs past the header."""


class UnsupportedPacket(MalformedPacket):
    """A well-formed packet that is not a TCP segment fasttcp can use: another IP
    version, another protocol, or a fragment (reassembly is not implemented)."""


class UsageError(FastTcpError, ValueError):
    """The API was called wrongly (bad argument, wrong address family, out of range)."""


class TableFull(UsageError):
    """Insert refused: the table is at capacity and nothing could be evicted."""


class StaleConnection(UsageError):
    """A connection handle whose record was removed (or reused for another connection)."""


class ConnectionStateError(UsageError):
    """A connection cannot do what was asked in its state: send() after close(), close()
    twice, abort() on a closed connection."""


class CaptureError(FastTcpError, ValueError):
    """The file is not a capture fasttcp can read, or is corrupt at `offset`.

    Attributes:
        path: the file.
        offset: byte offset in the file of the field that cannot be right (None when
            the whole file is the problem, e.g. it is empty).
    """

    def __init__(self, message: str, *, path: str | Path, offset: int | None = None) -> None:
        where = f" at byte {offset}" if offset is not None else ""
        super().__init__(f"{path}: {message}{where}")
        self.path = str(path)
        self.offset = offset

    def __reduce__(self) -> tuple:
        # pickled whole (a Dask worker's error reaches the client so): the default
        # would call __init__ with the formatted message alone
        return _rebuilt_capture_error, (str(self), self.path, self.offset)


def _rebuilt_capture_error(text: str, path: str, offset: int | None) -> CaptureError:
    """A CaptureError as pickled: its formatted message, path and offset."""
    err = CaptureError.__new__(CaptureError)
    Exception.__init__(err, text)
    err.path, err.offset = path, offset
    return err


class OutputError(FastTcpError, OSError):
    """Writing the connections failed (a full disk, a closed pipe): the output's fault,
    not the capture's. Carries the errno and strerror of the OSError behind it."""


class WorkerError(FastTcpError, RuntimeError):
    """A shard of a sharded run failed (its tracker raised, e.g. MemoryError): the
    result would be short, so the run stops. `shard` and `shards` say which of how
    many."""

    def __init__(self, shard: int, shards: int, what: str) -> None:
        super().__init__(f"shard {shard} of {shards}: {what}")
        self.shard = shard
        self.shards = shards


def span_outside_buffer(packet: int, offset: int, length: int, size: int) -> UsageError:
    """The error every batch call raises for the first (offset, length) span that is not
    inside its buffer (found in C by spans.pxd)."""
    return UsageError(f"packet {packet}: offset {offset} + length {length} is outside the {size}-byte buffer")
