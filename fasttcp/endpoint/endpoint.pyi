"""Sans-IO TCP endpoint: RFC 9293 connection lifecycle; segments + time in, segments + events out."""
import ipaddress
from collections.abc import Iterable
from typing import Any, Literal, TypeAlias, final

import numpy as np
import numpy.typing as npt

from fasttcp.enums import Cause, State
from fasttcp.table.timeouts import Timeouts

__all__ = ["Endpoint", "Connection", "Event", "EVENT_DTYPE", "DROP_REASONS", "PIPELINE_DEPTHS", "pipe"]

_Addr: TypeAlias = str | bytes | ipaddress.IPv4Address | ipaddress.IPv6Address
_Net: TypeAlias = _Addr | ipaddress.IPv4Network | ipaddress.IPv6Network
_Buffer: TypeAlias = bytes | bytearray | memoryview | npt.NDArray[np.uint8]
_IP: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

EVENT_DTYPE: np.dtype
"""Batch events: ``time_us`` (integer microseconds), ``conn`` (record id), ``value``,
``old_state``/``new_state`` (`State`), ``cause`` (`Cause`), ``gen``, ``data_offset``
and the connection key (``family``, ``lport``, ``rport``, ``laddr``, ``raddr``)."""
DROP_REASONS: tuple[str, ...]
PIPELINE_DEPTHS: tuple[int, ...]
"""The prefetch distances (packets ahead) a batch pipeline can run at: 2, 4, 8, 16, 32."""
PGO_BUILD: bool
"""True when this module was compiled with a gcc profile (setup.py's profile-guided build)."""

@final
class Event:
    """One state change (or DATA / RETRANSMIT) of one connection."""
    time: float
    connection: Connection
    old: State
    new: State
    cause: Cause
    value: int
    def __init__(self, time: float, connection: object, old: State, new: State, cause: Cause, value: int = 0) -> None:
        """Raises UsageError for a time that is not finite seconds >= 0, a state or cause
        that is not one, or a value outside 0..2^32-1."""

@final
class Connection:
    """One connection of an Endpoint; it lives as long as its endpoint. Once the endpoint
    is gone (or while it is in another call) everything but ``key``, ``id``, ``pending``,
    ``rto``, ``srtt``, the byte counters and ``recv()`` raises UsageError. A handle whose
    record now holds another 4-tuple reads CLOSED and acts on nothing."""
    id: int
    reset_cause: Cause | None
    bytes_sent: int          # payload octets sent the first time
    bytes_received: int      # payload octets received in order
    retransmits_data: int    # data segments sent again (RTO, go-back-N)
    @property
    def key(self) -> tuple[_IP, int, _IP, int]: ...
    @property
    def state(self) -> State:
        """Raises UsageError if the connection is live and its endpoint is gone or busy."""
    @property
    def local(self) -> tuple[_IP, int]: ...
    @property
    def remote(self) -> tuple[_IP, int]: ...
    @property
    def mss(self) -> int | None: ...
    @property
    def snd_wscale(self) -> int | None: ...
    @property
    def rcv_wscale(self) -> int | None: ...
    @property
    def sack_permitted(self) -> bool | None: ...
    @property
    def timestamps(self) -> bool | None: ...
    @property
    def tcb(self) -> dict[str, int | float | None] | None: ...
    @property
    def rto(self) -> float: ...
    @property
    def srtt(self) -> float | None: ...
    @property
    def pending(self) -> int: ...
    def send(self, data: _Buffer, *, now: float | None = None) -> None:
        """Queue bytes. Raises ConnectionStateError if the connection cannot send,
        UsageError for data that is not a C-contiguous buffer, a bad ``now``, or an
        endpoint that is gone or in another call."""
    def recv(self, max_bytes: int | None = -1) -> bytes:
        """Received bytes, up to max_bytes (None or negative: all). Raises UsageError for
        a max_bytes that is not an int or None, or while the endpoint is busy."""
    def close(self, *, now: float | None = None) -> None:
        """Half-close. Raises ConnectionStateError if already closed, UsageError as send()."""
    def abort(self, *, now: float | None = None) -> None:
        """Reset. Raises ConnectionStateError if the connection has ended, UsageError as send()."""

@final
class Endpoint:
    """A TCP endpoint with no I/O of its own. One call at a time (a call made while
    another runs raises UsageError); every call on an endpoint whose __init__ did not
    finish raises UsageError; time never runs backwards inside (stats["time_backwards"])."""
    @property
    def timeouts(self) -> Timeouts: ...
    def __init__(
        self,
        addresses: _Net | Iterable[_Net],
        *,
        mss: int = 1460,
        window: int = 65535,
        wscale: int | None = 7,
        sack: bool = True,
        timestamps: bool = True,
        msl: float = 30.0,
        capacity: int = 65536,
        seed: int | None = None,
        isn_secret: int | None = None,
        ttl: int = 64,
        max_transmit_bytes: int | None = None,
        max_events: int | None = None,
        pipeline_depth: int | None = None,
        syn_cookies: Literal["auto", "always", "off"] = "auto",
        syn_backlog: int | None = None,
    ) -> None:
        """``pipeline_depth``: None measures the batch calls' prefetch distance on this
        machine (see `pipeline`); one of PIPELINE_DEPTHS fixes it. ``max_transmit_bytes``
        / ``max_events``: None bounds what waits for transmit() / events() by the
        capacity (256 bytes and 2 events a connection, at least 16 MiB and 65536
        events). ``syn_cookies``: as Linux's tcp_syncookies 1 / 2 / 0; "auto" sends
        cookies once ``syn_backlog`` (None: capacity // 2) half-open connections exist
        or the table is full. Raises UsageError
        for an argument of the wrong type or out of range (then nothing is allocated),
        or if the endpoint was initialised before; MemoryError."""
    def listen(self, port: int) -> None:
        """Raises UsageError if already listening or the port is not an int in 1..65535."""
    def unlisten(self, port: int) -> None:
        """Raises UsageError if not listening or the port is not an int in 1..65535."""
    @property
    def capacity(self) -> int: ...
    def __len__(self) -> int: ...
    @property
    def memory_bytes(self) -> int: ...
    @property
    def stats(self) -> dict[str, object]: ...
    @property
    def pipeline(self) -> dict[str, Any]:
        """``auto``, ``cache_bytes``, and per pipeline (``segments``, ``connects``) its
        ``depth``, ``calibrations`` and ``ns_per_item`` ({depth: median ns per item} of
        the last measurement)."""
    @property
    def syn_cookies(self) -> str:
        """"auto", "always" or "off"."""
    @property
    def pending_transmit(self) -> int: ...
    def connect(self, remote_addr: _Addr, remote_port: int, *, local_port: int | None = None,
                local_addr: _Addr | None = None, now: float) -> Connection:
        """Raises UsageError for a port outside 1..65535, an address that is not unicast
        or not the endpoint's, a 4-tuple in use, a full table."""
    def accept(self) -> Connection | None: ...
    def accept_batch(self) -> npt.NDArray[np.int64]: ...
    def receive(self, packet: _Buffer, now: float) -> str | None:
        """None or the drop reason. Raises UsageError for a packet that is not a
        C-contiguous buffer of bytes or a bad ``now``."""
    def receive_batch(self, buffer: _Buffer, offsets: npt.ArrayLike, lengths: npt.ArrayLike,
                      now: float) -> npt.NDArray[np.int64]:
        """Raises UsageError (processing nothing) for a buffer that is not C-contiguous
        bytes or is 4 GiB or more, offsets/lengths that are not 1-D integer sequences of
        one length, a span outside the buffer, or a bad ``now``."""
    def poll(self, now: float) -> None: ...
    def poll_batch(self, now: float) -> None: ...
    def next_deadline(self) -> float | None: ...
    def transmit(self) -> list[bytes]: ...
    def transmit_batch(self) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64], npt.NDArray[np.int64]]: ...
    def events(self) -> list[Event]: ...
    def events_batch(self) -> npt.NDArray[np.void]: ...
    def connect_batch(self, keys: npt.NDArray[np.void], now: float) -> npt.NDArray[np.int64]:
        """Active-open every KEY_DTYPE key; record ids, or -1 (table full), -2 (4-tuple in
        use), -3 (local address not one of this endpoint's). Raises UsageError, opening
        nothing, for keys that are not a 1-D KEY_DTYPE array or a row make_keys() could
        not have made (family not 4 or 6, non-zero padding, port 0, an address that is
        not unicast: the first such row is named)."""
    def close_batch(self, ids: npt.ArrayLike, now: float) -> int:
        """close() every record id; returns how many it closed (others are skipped).
        Raises UsageError for ids that are not a 1-D integer sequence."""
    def abort_batch(self, ids: npt.ArrayLike, now: float) -> int:
        """abort() every record id (a TIME-WAIT record goes without a RST); returns how
        many it aborted. Raises UsageError for ids that are not a 1-D integer sequence."""
    def clear_events(self) -> None: ...

def pipe(src: Endpoint, dst: Endpoint, now: float) -> int:
    """Deliver src's queued packets to dst (the in-memory wire). Raises UsageError if
    either is not an initialised Endpoint, they are the same one, or either is busy."""
