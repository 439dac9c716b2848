"""Type stubs for fasttcp.capture.records (pcap records of a batch, packed in C)."""
from typing import Any

import numpy as np

__all__ = ["pack_records", "RECORD_HEADER_BYTES"]

RECORD_HEADER_BYTES: int

def pack_records(buffer: Any, offsets: Any, lengths: Any, ts_ns: Any, wire_lengths: Any, select: Any = None,
                 nanosecond: bool = True, snaplen: int = 262144, out: Any = None) -> tuple[np.ndarray, int]:
    """The pcap records of the selected packets as one uint8 array (new, or the first
    bytes of the writable buffer `out`), and their count. Raises UsageError for arrays
    of different lengths, spans outside the buffer, timestamps outside a record's
    range, wire lengths below the captured bytes, an `out` too small or read-only."""
