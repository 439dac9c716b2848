"""Symmetric flow hash (Toeplitz, as NICs compute it for receive-side scaling) and the
shard of every packet of a batch: which of N workers owns a connection."""
import ipaddress
from typing import TypeAlias, overload

import numpy as np
import numpy.typing as npt
from typing_extensions import disjoint_base

from fasttcp.capture.reader import CaptureBatch

__all__ = ["RSS_KEY_MICROSOFT", "RSS_KEY_SYMMETRIC", "RssShards", "toeplitz_hash", "flow_hash", "flow_hash_rows",
           "shard_of_batch", "shard_of_hash"]

_Addr: TypeAlias = str | bytes | bytearray | ipaddress.IPv4Address | ipaddress.IPv6Address
_Buffer: TypeAlias = bytes | bytearray | memoryview | npt.NDArray[np.uint8]
_Key: TypeAlias = bytes | bytearray | memoryview

RSS_KEY_MICROSOFT: bytes
"""The 40-byte key of Microsoft's RSS verification suite, the default of many NIC drivers
(not symmetric)."""
RSS_KEY_SYMMETRIC: bytes
"""0x6d5a repeated (40 bytes): under it the Toeplitz hash of (src, dst, sport, dport)
equals that of (dst, src, dport, sport) -- the key NICs are given for symmetric RSS (Woo
and Park, "Scalable TCP Session Monitoring with Symmetric Receive-side Scaling", 2012)."""
KEY_MIN_BYTES: int
"""The shortest key taken: the 36-byte IPv6 input plus the 4 bytes of its last window."""
SHARDS_MAX: int
RETA_MAX: int
RETA_DEFAULT: int
"""The indirection table size of most 10-100 Gb/s NICs (ixgbe, i40e, mlx5 per channel)."""

def toeplitz_hash(data: _Buffer, key: _Key = ...) -> int:
    """The Toeplitz hash (32 bits) of `data` under `key` (default `RSS_KEY_MICROSOFT`),
    bit by bit from the definition; UsageError for a key that is not bytes of at least
    40, data longer than ``len(key) - 4`` bytes, or a non-contiguous buffer."""

@overload
def flow_hash(src: _Addr, dst: _Addr, sport: int, dport: int, *, key: _Key = ...) -> int: ...
@overload
def flow_hash(src: npt.NDArray[np.uint8], dst: npt.NDArray[np.uint8], sport: npt.ArrayLike, dport: npt.ArrayLike,
              *, key: _Key = ...) -> npt.NDArray[np.uint32]:
    """The RSS hash of flows (src, dst, sport, dport): addresses as uint8 arrays of shape
    (n, 4) or (n, 16) and ports as integer arrays give a uint32 array; one flow (text,
    packed or ipaddress addresses, int ports) gives an int. Symmetric under the default
    key (`RSS_KEY_SYMMETRIC`). UsageError for other shapes or dtypes, mixed families,
    ports outside 0..65535, lengths that differ, or a bad `key`."""

def flow_hash_rows(rows: npt.NDArray[np.void], *, key: _Key = ...) -> npt.NDArray[np.uint32]:
    """`flow_hash` of FLOW_DTYPE rows (orig_h, resp_h, orig_p, resp_p by family);
    UsageError for an array without those fields, not 1-D, or a family other than 4/6."""

@overload
def shard_of_hash(hashes: int, shards: int, *, reta_size: int = ...) -> int: ...
@overload
def shard_of_hash(hashes: npt.ArrayLike, shards: int, *, reta_size: int = ...) -> npt.NDArray[np.uint16]:
    """``reta[hash & (reta_size - 1)]`` with ``reta[i] = i % shards`` (a NIC's default
    indirection table); UsageError for shards outside 1..65535, reta_size not a power of
    two in 1..65536 or below shards, or hashes that are not 32-bit integers."""

@disjoint_base
class RssShards:
    """A sharding of packets (shards, key, indirection table) for a reader that computes
    each packet's shard as it scans it: the shards `shard_of_batch` gives."""

    @property
    def reta(self) -> np.ndarray: ...
    @property
    def shards(self) -> int: ...
    @property
    def key(self) -> bytes: ...
    @property
    def reta_size(self) -> int: ...
    def __init__(self, shards: int, *, key: _Key = ..., reta_size: int = ...) -> None: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

def shard_of_batch(batch: CaptureBatch | _Buffer, shards: int, *, key: _Key = ..., reta_size: int = ...,
                   offsets: npt.ArrayLike | None = None,
                   lengths: npt.ArrayLike | None = None) -> npt.NDArray[np.uint16]:
    """The shard of every packet (uint16): TCP by its 4-tuple, other IP packets by their
    addresses, unreadable ones and bad link verdicts 0, then the default indirection
    table -- both directions of a connection in one shard. UsageError, before any packet
    is read, for bad shards/reta_size/key, index arrays, spans outside the buffer or
    link verdicts."""
