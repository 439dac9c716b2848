"""Type stubs for fasttcp.capture.scanner (the C record scanner behind fasttcp.read_pcap)."""
import numpy as np
from typing_extensions import disjoint_base

from fasttcp.wire.rss import RssShards

__all__ = ["CaptureScanner", "scan_arrays", "strip_link", "FORMAT_PCAP", "FORMAT_PCAPNG", "MAX_RECORD",
           "MAX_PACKETS"]

FORMAT_PCAP: int
FORMAT_PCAPNG: int
MAX_RECORD: int
MAX_PACKETS: int

@disjoint_base
class CaptureScanner:
    """The C state of one capture file: format, byte order, interfaces."""
    def start_pcap(self, swap: bool, nano: bool, linktype: int, snaplen: int) -> None: ...
    def start_pcapng(self) -> None: ...
    @property
    def frames(self) -> int: ...
    @property
    def big_endian(self) -> bool: ...
    @property
    def blocks_skipped(self) -> int: ...
    @property
    def bad_interface(self) -> int: ...
    @property
    def bad_timestamp(self) -> int: ...
    def linktypes(self) -> list[int]: ...
    def scan(self, buf: np.ndarray, pos: int, end: int, max_pkts: int,
             out: tuple[np.ndarray, ...] | None = None, shards: RssShards | None = None,
             shard_out: np.ndarray | None = None) -> tuple[int, int, int, int, tuple[np.ndarray, ...]]:
        """(status, n, new pos, bytes the next record needs, the batch's arrays); `out`:
        arrays from `scan_arrays` to write into instead of new ones; `shards` with
        `shard_out`: each packet's shard written there too."""

def scan_arrays(max_pkts: int) -> tuple[np.ndarray, ...]:
    """New arrays for `CaptureScanner.scan` to write `max_pkts` packets into (its `out`)."""

def strip_link(linktype: int, frame: bytes | bytearray | memoryview | np.ndarray) -> tuple[int, int]:
    """(verdict, ip_offset); UsageError for a linktype outside 32 bits or a non-contiguous frame."""
