"""Connection table keyed by the 4-tuple (IPv4 and IPv6), with per-state timers."""
import ipaddress
from collections.abc import Iterable, Iterator
from typing import Any, TypeAlias, final

import numpy as np
import numpy.typing as npt

from fasttcp.enums import State
from fasttcp.table.timeouts import Timeouts

__all__ = ["ConnectionTable", "ConnectionView", "KEY_DTYPE", "CONN_DTYPE", "EXPIRED_DTYPE", "TableStats"]

_Addr: TypeAlias = str | bytes | ipaddress.IPv4Address | ipaddress.IPv6Address
_Key: TypeAlias = tuple[_Addr, int, _Addr, int]
_IP: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

KEY_DTYPE: np.dtype
CONN_DTYPE: np.dtype
EXPIRED_DTYPE: np.dtype
CONN_RECORD_SIZE: int
KEY_SIZE: int

class TableStats(dict[str, int]):
    inserts: int
    hits: int
    misses: int
    removals: int
    evictions: int
    refusals: int
    expirations: int


@final
class ConnectionView:
    """Read-only view of one connection record."""
    @property
    def id(self) -> int: ...
    @property
    def key(self) -> tuple[_IP, int, _IP, int]: ...
    @property
    def family(self) -> int: ...
    @property
    def state(self) -> State: ...
    @property
    def deadline(self) -> float | None: ...
    @property
    def swapped(self) -> bool: ...
    iss: int
    irs: int
    snd_una: int
    snd_nxt: int
    snd_wnd: int
    snd_wl1: int
    snd_wl2: int
    rcv_nxt: int
    rcv_wnd: int
    ts_recent: int
    mss: int
    snd_wscale: int
    rcv_wscale: int
    sack_permitted: bool
    timestamps: bool
    retransmits: int
    segments: int

@final
class ConnectionTable:
    """Fixed-capacity table: open addressing (Robin Hood), keyed NH hash, timer wheel."""
    timeouts: Timeouts
    seed: int | None
    def __init__(
        self,
        capacity: int,
        *,
        seed: int | None = None,
        symmetric: bool = False,
        when_full: str = "evict",
        timeouts: Timeouts | None = None,
        msl: float | None = None,
    ) -> None: ...
    def __len__(self) -> int: ...
    def __contains__(self, key: _Key, /) -> bool: ...
    def __getitem__(self, key: _Key, /) -> ConnectionView: ...
    def __iter__(self) -> Iterator[ConnectionView]: ...
    @property
    def capacity(self) -> int: ...
    @property
    def symmetric(self) -> bool: ...
    @property
    def memory_bytes(self) -> int: ...
    @property
    def stats(self) -> TableStats: ...
    def get(self, key: _Key, default: Any = None) -> ConnectionView | Any: ...
    def insert(self, key: _Key, *, state: State = ..., now: float = 0.0, **fields: int) -> ConnectionView: ...
    def remove(self, key: _Key) -> None: ...
    def set_state(self, key: _Key, state: State, *, now: float) -> None: ...
    def set_deadline(self, key: _Key, when: float | None) -> None: ...
    def expire(self, now: float, *, out: npt.NDArray[np.void] | None = None) -> npt.NDArray[np.void]: ...
    def next_deadline(self) -> float | None: ...
    def lookup_batch(self, keys: npt.NDArray[np.void]) -> npt.NDArray[np.int64]:
        """Record ids (-1 absent). UsageError for keys that are not a 1-D KEY_DTYPE array
        or a row that is not a key (family neither 4 nor 6, IPv4 address padding)."""
    def insert_batch(self, keys: npt.NDArray[np.void], *, state: State = ...,
                     now: float = 0.0) -> npt.NDArray[np.int64]:
        """Ids (-1 refused, -2 present). UsageError, before inserting anything, for keys
        as lookup_batch refuses them, a bad state or a bad now."""
    def remove_ids(self, ids: npt.ArrayLike) -> int:
        """How many were removed; out-of-range ids are skipped. UsageError for non-integer ids."""
    def snapshot(self) -> tuple[npt.NDArray[np.void], npt.NDArray[np.int64]]: ...
    def probe_lengths(self) -> npt.NDArray[np.uint32]: ...
    def check(self) -> bool: ...

def make_keys(tuples: Iterable[_Key]) -> npt.NDArray[np.void]:
    """KEY_DTYPE array from (src, src_port, dst, dst_port) tuples; UsageError for a bad tuple."""
def canonical_keys(keys: npt.NDArray[np.void]) -> tuple[npt.NDArray[np.void], npt.NDArray[np.bool_]]:
    """(canonical copy, swapped). UsageError unless keys is a 1-D KEY_DTYPE array of valid keys."""
