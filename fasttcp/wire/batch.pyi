"""Batch parsing into a numpy structured array (no GIL, no per-packet objects)."""
import numpy as np
import numpy.typing as npt

__all__ = ["parse_batch", "SEGMENT_DTYPE"]

SEGMENT_DTYPE: np.dtype
SEGMENT_ROW_SIZE: int

def parse_batch(
    buffer: bytes | bytearray | memoryview | npt.NDArray[np.uint8],
    offsets: npt.ArrayLike,
    lengths: npt.ArrayLike,
    *,
    verify_checksum: bool = True,
    out: npt.NDArray[np.void] | None = None,
) -> npt.NDArray[np.void]:
    """One SEGMENT_DTYPE row per packet, each with a `verdict`; raises only UsageError
    (index arrays that are not 1-D integers of one length, a span outside the buffer,
    a buffer over 4 GiB or a non-contiguous one, a bad `out`)."""
