"""Write packets to a classic pcap file that Wireshark/tshark open (an edge: I/O only).

Raw IP link type (LINKTYPE_RAW = 101), microsecond timestamps. Reading captures
(pcap/pcapng, many link types) is a later issue; this writer exists so that an
exchange -- an interop test, a failing scenario -- leaves a capture behind.
"""
from __future__ import annotations

import struct
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["PcapWriter", "LINKTYPE_RAW"]

LINKTYPE_RAW = 101
_MAGIC_US = 0xA1B2C3D4


class PcapWriter:
    """``with PcapWriter(path) as w: w.write(packet, ts)`` -- ts in seconds (float)."""

    def __init__(self, path: str | Path, *, snaplen: int = 262144, linktype: int = LINKTYPE_RAW) -> None:
        self.path = Path(path)
        self._f = open(self.path, "wb")  # noqa: SIM115  -- the writer owns the file until close()
        self._f.write(struct.pack("<IHHiIII", _MAGIC_US, 2, 4, 0, 0, snaplen, linktype))
        self.snaplen = snaplen
        self.count = 0

    def write(self, packet: bytes | bytearray | memoryview, ts: float) -> None:
        """Append one packet captured at time `ts` (seconds since the epoch or any origin)."""
        data = bytes(packet)
        sec = int(ts)
        usec = round((ts - sec) * 1_000_000)
        if usec >= 1_000_000:
            sec, usec = sec + 1, usec - 1_000_000
        cap = data[: self.snaplen]
        self._f.write(struct.pack("<IIII", sec, usec, len(cap), len(data)))
        self._f.write(cap)
        self.count += 1

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
