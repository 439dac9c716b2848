"""Write packets to a classic pcap file that Wireshark/tshark open (an edge: I/O only).

`PcapWriter` is the one pcap writer: streaming (a packet at a time, as the TUN pump
and the interop tests record an exchange), micro- or nanosecond timestamps, any link
type and snap length. `fasttcp.write_pcap` writes a whole list or `CaptureBatch`
through it. Files are little-endian, version 2.4, as libpcap writes them.
"""
from __future__ import annotations

import math
import numbers
import os
import struct
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np

from fasttcp.errors import UsageError

__all__ = ["PcapWriter", "LINKTYPE_RAW", "LINKTYPE_ETHERNET", "MAX_SNAPLEN", "MAX_TIME_S"]

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
_MAGIC_US = 0xA1B2C3D4
_MAGIC_NS = 0xA1B23C4D

MAX_SNAPLEN = 2**31 - 1
"""The largest snap length: the header's field is read as signed by some readers."""
MAX_TIME_S = 2**32 - 1
"""The last second a record's unsigned 32-bit seconds field holds (2106-02-07)."""
_MAX_NS = (MAX_TIME_S + 1) * 1_000_000_000 - 1
_MAX_LEN = 2**32 - 1                  # a record's captured and wire lengths are 32-bit


def check_snaplen(snaplen: object) -> int:
    """`snaplen` if it is an int in 1..MAX_SNAPLEN, else UsageError."""
    if isinstance(snaplen, bool) or not isinstance(snaplen, int) or not 1 <= snaplen <= MAX_SNAPLEN:
        raise UsageError(f"snaplen must be an int in 1..{MAX_SNAPLEN}, got {snaplen!r}")
    return snaplen


def check_linktype(linktype: object) -> int:
    """`linktype` if it is an int in 0..2**32-1 (the header's unsigned 32-bit field), else
    UsageError."""
    if isinstance(linktype, bool) or not isinstance(linktype, int) or not 0 <= linktype <= 0xFFFFFFFF:
        raise UsageError(f"linktype must be an int in 0..{0xFFFFFFFF}, got {linktype!r}")
    return linktype


def seconds_to_ns(ts: object, nanosecond: bool) -> int:
    """Seconds (int or float) -> integer ns at the file's resolution, exact: the fraction
    is taken after removing the whole seconds (exact in binary), so 1700000001.25 stays
    .25. Raises UsageError unless the time is finite and in 0..MAX_TIME_S seconds after
    rounding (a record's seconds field is unsigned 32-bit)."""
    if isinstance(ts, bool) or not isinstance(ts, numbers.Real):
        raise UsageError(f"a timestamp is a number of seconds, got {ts!r}")
    ts = int(ts) if isinstance(ts, numbers.Integral) else float(ts)     # numpy scalars too
    if isinstance(ts, float) and not math.isfinite(ts):
        raise UsageError(f"a timestamp must be finite, got {ts!r}")
    if not 0 <= ts <= MAX_TIME_S + 1:
        raise UsageError(f"a timestamp must be in 0..{MAX_TIME_S} seconds (the pcap seconds field), got {ts!r}")
    sec = math.floor(ts)
    frac = ts - sec
    ns = sec * 1_000_000_000 + (round(frac * 1e9) if nanosecond else round(frac * 1e6) * 1000)
    return check_ns(ns)


def check_ns(ns: object) -> int:
    """`ns` (nanoseconds since the epoch) if a pcap record can hold it, else UsageError."""
    if isinstance(ns, bool) or not isinstance(ns, int) or not 0 <= ns <= _MAX_NS:
        raise UsageError(f"a timestamp must be in 0..{MAX_TIME_S} seconds (the pcap seconds field), "
                         f"got {ns!r} ns")
    return ns


class PcapWriter:
    """A classic pcap file written a packet at a time::

        with PcapWriter(path) as w:
            w.write(packet, ts)           # ts: seconds (float), e.g. time.time()

    ``PcapWriter(path, *, snaplen=262144, linktype=LINKTYPE_RAW, nanosecond=False)``:
    frames longer than `snaplen` are cut to it (their wire length is kept); with
    `nanosecond` the file uses the nanosecond magic and keeps nanoseconds.

    Raises UsageError, before the file is opened, for a snaplen outside
    1..MAX_SNAPLEN or a linktype outside 0..2**32-1; `write` raises UsageError for a
    packet that is not bytes-like and a timestamp that is not finite and in
    0..MAX_TIME_S seconds, before writing anything of that record. OSError as `open`
    and `write` raise it.
    """

    def __init__(self, path: str | Path, *, snaplen: int = 262144, linktype: int = LINKTYPE_RAW,
                 nanosecond: bool = False) -> None:
        self.snaplen = check_snaplen(snaplen)
        self.linktype = check_linktype(linktype)
        self.nanosecond = bool(nanosecond)
        self.path = Path(path)
        self.count = 0
        self._f = open(self.path, "wb")  # noqa: SIM115  -- the writer owns the file until close()
        try:
            self._f.write(struct.pack("<IHHiIII", _MAGIC_NS if self.nanosecond else _MAGIC_US, 2, 4, 0, 0,
                                      self.snaplen, self.linktype))
        except BaseException:
            self._f.close()
            raise

    @property
    def closed(self) -> bool:
        return self._f.closed

    def write(self, packet: bytes | bytearray | memoryview, ts: float) -> None:
        """Append one packet captured at time `ts` (seconds since the epoch or any origin).
        Raises UsageError (nothing written) for a bad packet or time, or a closed writer."""
        self.write_ns(packet, seconds_to_ns(ts, self.nanosecond))

    def write_ns(self, packet: bytes | bytearray | memoryview, ns: int) -> None:
        """`write` with the time as integer nanoseconds (a `CaptureBatch`'s ts_ns), cut to
        microseconds unless the file is nanosecond."""
        check_ns(ns)
        if self._f.closed:
            raise UsageError(f"{self.path}: write to a closed PcapWriter")
        try:
            data = memoryview(packet).cast("B")
        except TypeError:
            raise UsageError(f"a packet is bytes-like, got {type(packet).__name__}") from None
        if len(data) > _MAX_LEN:
            raise UsageError(f"a packet of {len(data)} bytes does not fit a pcap record's 32-bit length")
        sec, frac = divmod(ns, 1_000_000_000)
        if not self.nanosecond:
            frac //= 1000
        cap = data[: self.snaplen]
        self._f.write(struct.pack("<IIII", sec, frac, len(cap), len(data)) + bytes(cap))
        self.count += 1

    def write_batch(self, buffer: np.ndarray, offsets: np.ndarray, lengths: np.ndarray, ts_ns: np.ndarray,
                    wire_lengths: np.ndarray, select: np.ndarray | None = None) -> int:
        """Append packets ``buffer[offsets[i]:offsets[i]+lengths[i]]`` (those with
        ``select[i]``) in one write, their records packed in C
        (`fasttcp.capture.records.pack_records`): timestamps in int64 ns, original
        lengths `wire_lengths`. Returns how many were written. Raises UsageError
        (nothing written) for bad spans, times or lengths, or a closed writer."""
        from fasttcp.capture.records import pack_records

        if self._f.closed:
            raise UsageError(f"{self.path}: write to a closed PcapWriter")
        records, count = pack_records(buffer, offsets, lengths, ts_ns, wire_lengths, select,
                                      nanosecond=self.nanosecond, snaplen=self.snaplen)
        self._f.write(records.data)
        self.count += count
        return count

    def close(self) -> None:
        """Close the file (again: nothing)."""
        self._f.close()

    def discard(self) -> None:
        """Close and remove the file: what was written is not a capture anyone asked for
        (`write_pcap` on an error mid-way)."""
        self._f.close()
        try:
            if self.path.is_file():
                os.unlink(self.path)
        except OSError:
            pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
