# cython: language_level=3
"""Sans-IO TCP endpoint: the RFC 9293 connection lifecycle over the connection table.

You hand it IP packets and the time; it hands back packets to transmit and events.
It never reads a clock or a socket (see h11 and smoltcp for the model). The protocol
logic is C (endpoint_core.pxi); this module is the Python face:

    ep = Endpoint(["198.18.0.2"]); ep.listen(80)
    ep.receive(packet, now)          # -> ep.transmit() has the replies, ep.events() the changes
    ep.poll(now)                     # timers; ep.next_deadline() says when to call again

Data: in-order delivery with ACKs, sending within the peer's window in MSS-sized
segments, retransmission on RTO (RFC 6298 estimator, Karn's rule). Out-of-order
segments are dropped and re-ACKed (no reassembly yet).
"""
cimport cython
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.long cimport PyLong_AsLongLongAndOverflow
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memset

import ipaddress
import itertools
import os
import weakref

import numpy as np

from fasttcp.endpoint.endpoint cimport *
from fasttcp.table.keyhash cimport (ft_hash_key, ft_nh5, ft_key_build_hash, ft_key_word0, ft_w, ft_key_eq,
                                    ft_v4_padding)
from fasttcp.wire.addr cimport addr_bytes
from fasttcp.wire.spans cimport ft_first_bad_span
from fasttcp.wire.address import to_ip as _to_ip
from fasttcp.errors import ConnectionStateError, UsageError, span_outside_buffer
from fasttcp.enums import Cause
from fasttcp.enums import State
from fasttcp.table.table import KEY_DTYPE
from fasttcp.table.timeouts import Timeouts

include "endpoint_core.pxi"

__all__ = ["Endpoint", "Connection", "Event", "EVENT_DTYPE", "DROP_REASONS", "PIPELINE_DEPTHS", "pipe"]

#: True when this module was compiled with a gcc profile (setup.py's profile-guided build)
PGO_BUILD = FASTTCP_PGO != 0

EVENT_DTYPE = np.dtype([
    ("time_us", "u8"), ("conn", "u4"), ("value", "u4"), ("old_state", "u1"), ("new_state", "u1"),
    ("cause", "u1"), ("gen", "u1"), ("data_offset", "u4"),
    ("family", "u1"), ("_pad", "u1", (3,)), ("lport", "u2"), ("rport", "u2"),
    ("laddr", "u1", (16,)), ("raddr", "u1", (16,)),
], align=True)
"""Batch events: ``time_us`` (integer microseconds; `Event.time` is the same in float
seconds), the record id, old/new `State`, `Cause`, value (DATA: bytes delivered, at
``data_offset`` of the input buffer) and the connection key."""
# events_batch() copies the C events into this dtype byte for byte
assert EVENT_DTYPE.itemsize == sizeof(ep_event_t)

#: the prefetch distances (packets ahead) a batch pipeline can run at; an Endpoint
#: measures which is fastest on its machine and table (see `Endpoint.pipeline`)
PIPELINE_DEPTHS = tuple(2 << k for k in range(EP_NDEPTHS))


def _private_cache_bytes():
    """The size of the CPU's level-2 cache (private to a core on current x86-64 and Arm
    server cores), from Linux's sysfs; 0 where it cannot be read. A table bigger than it
    misses the core's own caches, which is when the batch pipelines' depth matters."""
    try:
        cpu = min(os.sched_getaffinity(0))
    except (AttributeError, OSError, ValueError):
        cpu = 0
    base = f"/sys/devices/system/cpu/cpu{cpu}/cache"
    try:
        names = os.listdir(base)
    except OSError:
        return 0
    for name in names:
        try:
            with open(f"{base}/{name}/level") as f:
                level = f.read().strip()
            with open(f"{base}/{name}/type") as f:
                kind = f.read().strip()
            with open(f"{base}/{name}/size") as f:
                size = f.read().strip()
        except OSError:
            continue
        if level == "2" and kind in ("Unified", "Data"):
            digits = size.rstrip("KMG")          # "1024K"
            scale = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(size[len(digits):], 0)
            return int(digits) * scale if digits.isdigit() else 0
    return 0


cdef uint64_t _CACHE_BYTES = _private_cache_bytes()

DROP_REASONS = ("malformed", "not_local", "no_listener", "unacceptable", "bad_ack", "rst_invalid",
                "rst_challenged", "syn_challenged", "paws", "no_ack", "out_of_order", "table_full",
                "challenge_limit", "other", "bad_cookie")

cdef object _State = State
cdef object _Cause = Cause
cdef int _EPHEMERAL_LOW = 32768          # Linux ip_local_port_range
cdef int _EPHEMERAL_HIGH = 60999
cdef int64_t _MAX_QUEUE = 1 << 48       # max_transmit_bytes / max_events: far past any real memory
# what may wait for transmit() / events() unless the caller says otherwise: per
# connection of capacity (a bound that grows with the table, not with the traffic),
# with a floor for small tables
cdef int64_t _TRANSMIT_BYTES_PER_CONN = 256
cdef int64_t _TRANSMIT_BYTES_MIN = 16 << 20
cdef int64_t _EVENTS_PER_CONN = 2
cdef int64_t _EVENTS_MIN = 1 << 16
_SYN_COOKIE_MODES = {"off": SYN_COOKIES_OFF, "auto": SYN_COOKIES_AUTO, "always": SYN_COOKIES_ALWAYS}
_ISN_KEY_WORDS = 6                      # RFC 6528 F() key words (ep_config_t.isn_key)
_COOKIE_KEY_WORDS = 4                   # two SipHash keys (ep_config_t.cookie_key)


def _secret_words(secret, n):
    """`n` independent 64-bit key words from a secret: splitmix64 over its 64-bit words
    (the low 64*n bits count), so every word is well mixed whatever the secret's size.
    Words 0..5 key the ISN function (RFC 6528), 6..9 the SYN cookies' two SipHash keys."""
    x = secret & ((1 << (64 * n)) - 1)
    state = 0
    out = []
    for i in range(n):
        state = (state + 0x9E3779B97F4A7C15 + ((x >> (64 * i)) & 0xffffffffffffffff)) & 0xffffffffffffffff
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xffffffffffffffff
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xffffffffffffffff
        out.append(z ^ (z >> 31))
    return out


cdef object _weakref = weakref.ref
cdef object _NP_INTEGER = np.integer
cdef tuple _BAD_KEY = ("", "family must be 4 or 6", "padding bytes must be zero (make_keys zeroes them)",
                       "ports must be 1..65535", "addresses must be unicast")


from fasttcp.table.table cimport micros as _us, ft_ctz64


cdef int64_t _int_in(object v, str name, int64_t lo, int64_t hi) except? -1:
    """An int argument in lo..hi (UsageError otherwise; a bool is not an int here). The
    range is checked on the C value the endpoint will store, so an int subclass cannot
    pass one value to the check and another to the struct."""
    cdef long long x
    cdef int overflow = 1
    cdef object n = v
    if type(v) is not int:                  # (an exact int, the common case, skips these)
        if isinstance(v, _NP_INTEGER):
            n = int(v)                      # a port or size read from an array
        elif not isinstance(v, int) or isinstance(v, bool):
            n = None
    if n is not None:
        # the int's own digits (no __index__ of a subclass), and no exception to catch
        x = PyLong_AsLongLongAndOverflow(n, &overflow)
        if overflow == 0 and lo <= x <= hi:
            return x
    raise UsageError(f"{name} must be an int in {lo}..{hi}, got {v!r}")


cdef inline int _port(object v, str name) except -1:
    """A port a listener or a connection can use: 1..65535 (port 0 is reserved, RFC 6335
    6, and 16 bits is all a TCP header holds)."""
    return <int>_int_in(v, name, 1, 65535)


cdef extern from "Python.h":
    # PyObject_GetBuffer without Cython's exception check: _get_bytes turns a failure
    # into UsageError itself, without the cost of a try block on every packet
    int _get_buffer_or_fail "PyObject_GetBuffer"(object obj, Py_buffer *view, int flags)
    bint PyErr_ExceptionMatches(object exc)
    void PyErr_Clear()


cdef int _get_bytes(object obj, Py_buffer *view, str name) except -1:
    """A C-contiguous buffer of 1-byte items (bytes, bytearray, memoryview, uint8
    array): packets and batch buffers are byte strings, and batch offsets count bytes,
    so an array of wider items is refused rather than read as its raw bytes."""
    if _get_buffer_or_fail(obj, view, PyBUF_SIMPLE) < 0:
        if not PyErr_ExceptionMatches((TypeError, ValueError, BufferError)):
            return -1                       # e.g. MemoryError: as it is
        PyErr_Clear()
        raise UsageError(f"{name} must be a C-contiguous bytes-like object (bytes, bytearray, memoryview, "
                         f"uint8 array), got {type(obj).__name__}")
    if view.itemsize != 1:
        PyBuffer_Release(view)
        raise UsageError(f"{name} must have 1-byte items (offsets and lengths count bytes), got "
                         f"{type(obj).__name__} with {view.itemsize}-byte items")
    return 0


cdef object _int64_array(object v, str name):
    """A 1-D int64 array of byte offsets, lengths or record ids, from integers only: a
    float would be truncated to another offset, a bool taken as 0 or 1 and a uint64
    past 2^63 wrapped negative, so all three are refused (UsageError)."""
    try:
        a = np.asarray(v)
    except (TypeError, ValueError, OverflowError) as exc:
        raise UsageError(f"{name} must be a 1-D sequence of integers: {exc}") from None
    if a.ndim != 1:
        raise UsageError(f"{name} must be 1-D, got shape {a.shape}")
    if a.dtype.kind not in "iu":
        if a.shape[0]:
            raise UsageError(f"{name} must be integers, got dtype {a.dtype}")
        return np.empty(0, dtype=np.int64)          # [] is a float64 array to numpy
    if a.dtype == np.uint64 and a.shape[0] and a.max() > 0x7fffffffffffffff:
        raise UsageError(f"{name} must fit int64, got {int(a.max())}")
    return np.ascontiguousarray(a, dtype=np.int64)


cdef list _local_networks(object addresses):
    """The endpoint's local networks from an address or network, or an iterable of at
    most EP_MAX_LOCAL of them (read no further than that, so an endless iterable is
    refused rather than followed)."""
    one = (str, bytes, ipaddress.IPv4Address, ipaddress.IPv6Address, ipaddress.IPv4Network,
           ipaddress.IPv6Network)
    if isinstance(addresses, one):
        addresses = [addresses]
    try:
        items = list(itertools.islice(addresses, EP_MAX_LOCAL + 1))
    except TypeError:
        raise UsageError(f"addresses must be an address or network, or an iterable of them, "
                         f"got {type(addresses).__name__}") from None
    if not items or len(items) > EP_MAX_LOCAL:
        raise UsageError(f"give 1..{EP_MAX_LOCAL} local addresses or networks")
    nets = []
    for a in items:
        # ints are addresses to ipaddress, not to the rest of the API (addr_bytes)
        if not isinstance(a, one):
            raise UsageError(f"a local address is a str, bytes or ipaddress object, got {a!r}")
        try:
            nets.append(ipaddress.ip_network(_to_ip(addr_bytes(a)) if isinstance(a, bytes) else a, strict=False))
        except ValueError as exc:
            raise UsageError(f"not an address or network: {a!r} ({exc})") from None
    return nets


cdef inline uint32_t _payload_room(const ft_conn_t *r) noexcept:
    """Payload bytes per segment: the send MSS less our TCP options (RFC 6691)."""
    cdef uint32_t opts = 12 if (r.flags & CONN_F_TIMESTAMPS) else 0
    return r.mss - opts if r.mss > opts else 1


@cython.final
# no_gc: an Event refers to a Connection (or a _Detached), which holds its Endpoint only
# weakly: nothing leads back here, so no cycle and no GC cost per event
@cython.no_gc
cdef class Event:
    """One state change (or data delivery / retransmission) of one connection.

    Attributes: ``time`` (seconds), ``connection`` (the `Connection`, or a stand-in
    with ``key`` for one you never held), ``old`` and ``new`` (`State`), ``cause``
    (`Cause`), ``value`` (DATA: bytes delivered; RETRANSMIT: the retransmission count).

    The endpoint makes these; ``Event(time, connection, old, new, cause, value=0)``
    exists for tests and replays, and raises UsageError for a time that is not finite
    seconds >= 0, a state or cause that is not one, or a value outside 0..2^32-1.
    """
    cdef readonly double time
    cdef readonly object connection
    cdef readonly object old
    cdef readonly object new
    cdef readonly object cause
    cdef readonly uint32_t value

    def __init__(self, time, connection, old, new, cause, value=0):
        # (NaN fails every comparison, so the range test refuses it)
        if isinstance(time, bool) or not isinstance(time, (int, float)) or not (0 <= time <= 1.8e13):
            raise UsageError(f"time must be seconds >= 0, got {time!r}")
        for name, v, kind in (("old", old, _State), ("new", new, _State), ("cause", cause, _Cause)):
            if isinstance(v, bool):
                raise UsageError(f"{name} must be a {kind.__name__}, got {v!r}")
            try:
                kind(v)
            except (ValueError, TypeError):
                raise UsageError(f"{name} must be a {kind.__name__}, got {v!r}") from None
        self.time = time
        self.connection = connection
        self.old = _State(old)
        self.new = _State(new)
        self.cause = _Cause(cause)
        self.value = <uint32_t>_int_in(value, "value", 0, 0xffffffff)

    def __repr__(self):
        return (f"Event(time={self.time:.6f}, connection={self.connection!r}, old={self.old}, "
                f"new={self.new}, cause={getattr(self.cause, 'name', None)}, value={self.value})")

    def __str__(self):
        return f"{self.time:.6f} {self.connection!r}: {self.old} -> {self.new} ({getattr(self.cause, 'name', None)})"


cdef list _STATES = list(State)
cdef list _CAUSES = list(Cause)


cdef inline Event _make_event(ep_event_t *e, object conn):
    cdef Event ev = Event.__new__(Event)
    ev.time = e.time_us / 1e6
    ev.connection = conn
    ev.old = _STATES[e.old_state]
    ev.new = _STATES[e.new_state]
    ev.cause = _CAUSES[e.cause]
    ev.value = e.value
    return ev


cdef inline bint _same_key(const ft_key_t *k, const uint8_t *other) noexcept nogil:
    """The 4-tuple of a held key equals `other` (a record's or an event's first 40 bytes;
    bytes 1..3 are not key, ft_key_eq masks them)."""
    return ft_key_eq(<const ft_conn_t *>other, k)


@cython.final
# no_gc: its Endpoint holds it (_conns, _pending, events) and it holds the endpoint only
# through a weak reference: no cycle, so no GC header or traversal for the millions a
# server may hold
@cython.no_gc
cdef class Connection:
    """One connection of an Endpoint. Data methods queue bytes; the endpoint sends them.

    ``state`` is a `fasttcp.State` (``str()`` gives the RFC name, e.g. ``SYN-SENT``);
    after the record is gone it stays at its last state (CLOSED, or LISTEN for a reset
    passive open). A handle whose record now belongs to another 4-tuple reads CLOSED
    and acts on nothing.

    A connection lives as long as its Endpoint: the endpoint owns the connection's
    record and sends its bytes, and does not stay alive for a handle. Once the endpoint
    is gone, ``key``, ``id``, ``pending``, ``rto``, ``srtt``, the byte counters and
    ``recv()`` (what was already received) still answer; everything else raises
    UsageError, as it does while the endpoint is in another call (a batch call in
    another thread)."""
    cdef object _epref                 # weakref.ref to the Endpoint (see the class comment)
    cdef ep_t *_core                   # its C state: valid exactly while _epref is alive
    cdef readonly uint32_t id
    cdef uint8_t _gen
    cdef tuple _key                    # decoded on first use
    cdef ft_key_t _k
    cdef bytearray _sndbuf             # bytes from SND.UNA on: unacknowledged, then unsent
    cdef uint32_t _sndbuf_seq          # sequence number of _sndbuf[0] (once _seq_set)
    cdef bint _seq_set                 # set when the connection synchronizes (SND.UNA = ISS+1)
    cdef bytearray _rcvbuf
    cdef object _final
    cdef readonly object reset_cause   # Cause that ended it (RST_RECEIVED, ABORT, ...), or None
    cdef bint _fin_pending             # close() called while data was still queued
    # RFC 6298 estimator (microseconds), one timed segment at a time (Karn)
    cdef double _srtt, _rttvar
    cdef uint64_t _rto
    cdef uint32_t _timed_end
    cdef uint64_t _timed_at
    cdef bint _timing
    # Go back N after an RTO (see Endpoint._resend_flight): the flight [SND.UNA, SND.NXT)
    # is resent from _rtx on while _recovering. SND.NXT itself never moves back, so an
    # ACK of the original flight that arrives late is still an ACK of data sent.
    cdef uint32_t _rtx
    cdef uint32_t _rtx_una                      # SND.UNA at the RTO: the rest waits for an ACK past it
    cdef bint _recovering
    cdef readonly uint64_t bytes_sent          # payload octets sent the first time
    cdef readonly uint64_t bytes_received
    cdef readonly uint64_t retransmits_data    # data segments sent again

    def __init__(self, *args, **kwargs):
        raise TypeError("connections come from Endpoint.connect() and Endpoint.accept()")

    @staticmethod
    cdef Connection _new(Endpoint ep, uint32_t id):
        cdef Connection c = Connection.__new__(Connection)
        cdef ft_conn_t *r = &ep._ep.tab.conns[id]
        c._epref = ep._selfref
        c._core = ep._ep
        c.id = id
        c._gen = r.gen
        memcpy(&c._k, r, 40)
        memset(c._k._pad, 0, 3)               # bytes 1..3 of a record are its state, not key
        r.flags |= CONN_F_BUFFERED            # its data now waits in c._rcvbuf
        c._sndbuf = bytearray()
        c._rcvbuf = bytearray()
        c._rto = ep._ep.cfg.rto_initial
        return c

    cdef ft_conn_t *_rec(self) noexcept:
        """The record while it still holds this connection, else NULL. Only for code
        that runs inside a call of the (live) endpoint. The generation alone wraps after
        256 reuses of the record; with the 4-tuple a stale handle never reaches another
        connection (a reuse by its own 4-tuple 256 incarnations later is the one case
        it cannot tell, as in ConnectionView)."""
        cdef ft_conn_t *r
        if self._final is not None:
            return NULL
        r = &self._core.tab.conns[self.id]
        if r.family == 0 or r.gen != self._gen or not _same_key(&self._k, <const uint8_t *>r):
            return NULL
        return r

    cdef Endpoint _owner(self):
        """The endpoint, if it still exists (UsageError if not)."""
        ep = self._endpoint_or_none()
        if ep is None:
            raise UsageError(f"the Endpoint of {self._describe()} no longer exists (a connection lives as "
                             f"long as its endpoint)")
        return <Endpoint>ep

    cdef object _endpoint_or_none(self):
        if self._epref is None:             # made with Connection.__new__, not by an endpoint
            raise UsageError("this Connection was not made by an Endpoint (use connect() or accept())")
        return self._epref()

    cdef ft_conn_t *_live(self) except? NULL:
        """_rec() for a read from Python: NULL once the connection has ended; UsageError
        if the endpoint is gone or in another call."""
        if self._final is not None:
            return NULL
        self._owner()._core()
        return self._rec()

    cdef object _state_now(self):
        cdef ft_conn_t *r = self._rec()
        if r == NULL:
            return self._final if self._final is not None else _State.CLOSED
        return _STATES[r.state]

    cdef str _describe(self):
        l, lp, r, rp = self.key
        return f"connection {l}:{lp} -> {r}:{rp}"

    @property
    def key(self):
        """(local address, local port, remote address, remote port)."""
        if self._key is None:
            n = 4 if self._k.family == 4 else 16
            self._key = (_to_ip(PyBytes_FromStringAndSize(<char *>self._k.laddr, n)), self._k.lport,
                         _to_ip(PyBytes_FromStringAndSize(<char *>self._k.raddr, n)), self._k.rport)
        return self._key

    @property
    def state(self):
        """The `State`; the last one once the connection has ended. Raises UsageError if
        the connection is live and its endpoint is gone or in another call."""
        if self._final is not None:
            return self._final
        cdef ft_conn_t *r = self._live()
        return _State.CLOSED if r == NULL else _STATES[r.state]

    @property
    def local(self):
        return self.key[0], self.key[1]

    @property
    def remote(self):
        return self.key[2], self.key[3]

    @property
    def mss(self):
        """Send MSS: min(peer's MSS option, ours); None once closed. The record's fields
        (this and the four below, ``tcb``) raise UsageError as ``state`` does."""
        cdef ft_conn_t *r = self._live()
        return None if r == NULL else r.mss

    @property
    def snd_wscale(self):
        cdef ft_conn_t *r = self._live()
        return None if r == NULL else r.wscale >> 4

    @property
    def rcv_wscale(self):
        cdef ft_conn_t *r = self._live()
        return None if r == NULL else r.wscale & 15

    @property
    def sack_permitted(self):
        cdef ft_conn_t *r = self._live()
        return None if r == NULL else bool(r.flags & CONN_F_SACK)

    @property
    def timestamps(self):
        cdef ft_conn_t *r = self._live()
        return None if r == NULL else bool(r.flags & CONN_F_TIMESTAMPS)

    @property
    def tcb(self):
        """Snapshot of the control block as a dict (iss, irs, snd_una, snd_nxt, snd_wnd,
        rcv_nxt, rcv_wnd, ts_recent, retransmits, deadline), or None once closed."""
        cdef ft_conn_t *r = self._live()
        if r == NULL:
            return None
        return dict(iss=r.iss, irs=r.irs, snd_una=r.snd_una, snd_nxt=r.snd_nxt, snd_wnd=r.snd_wnd,
                    snd_wl1=r.snd_wl1, snd_wl2=r.snd_wl2, rcv_nxt=r.rcv_nxt, rcv_wnd=r.rcv_wnd,
                    ts_recent=r.ts_recent, retransmits=r.retransmits,
                    deadline=None if r.deadline == 0 else r.deadline / 1e6)

    @property
    def rto(self):
        """Current retransmission timeout in seconds (RFC 6298)."""
        return self._rto / 1e6

    @property
    def srtt(self):
        return None if self._srtt == 0 else self._srtt / 1e6

    def send(self, data, *, now=None):
        """Queue bytes (any C-contiguous bytes-like object, sent as its bytes); they
        leave in MSS-sized segments within the peer's window (call Endpoint.transmit()).
        ``now``: the time of the call (default: the endpoint's last call).

        Raises ConnectionStateError if the connection cannot send, UsageError for data
        that is not bytes-like, a bad ``now``, or an endpoint that is gone or in another
        call."""
        cdef Py_buffer view
        cdef Endpoint ep = self._owner()
        cdef uint64_t t = 0 if now is None else _us(now, "now")
        try:
            PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        except (TypeError, ValueError, BufferError) as exc:
            raise UsageError(f"data must be a C-contiguous bytes-like object, got {type(data).__name__}: "
                             f"{exc}") from None
        PyBuffer_Release(&view)
        ep._claim()
        try:
            if now is not None:
                ep._advance(t)
            st = self._state_now()
            if st not in (_State.ESTABLISHED, _State.CLOSE_WAIT, _State.SYN_SENT, _State.SYN_RECEIVED) \
                    or self._fin_pending:
                raise ConnectionStateError(f"cannot send in state {st}")
            self._sndbuf.extend(data)        # not +=: an ndarray's __radd__ would take it
            ep._flush(self)
        finally:
            ep._busy = False

    def recv(self, max_bytes=-1):
        """Bytes received in order so far, up to ``max_bytes`` (None or a negative int:
        all of them, as io's read(-1)); b"" if none. What was received stays readable
        after the endpoint is gone. Raises UsageError for a max_bytes that is not an int
        or None, or while the endpoint is in another call."""
        cdef ft_conn_t *r
        cdef Endpoint owner = None
        if max_bytes is not None and (not isinstance(max_bytes, int) or isinstance(max_bytes, bool)):
            raise UsageError(f"max_bytes must be an int or None, got {max_bytes!r}")
        ep = self._endpoint_or_none()
        if ep is not None:
            owner = <Endpoint>ep
            owner._claim()
        try:
            if max_bytes is None or max_bytes < 0 or max_bytes >= len(self._rcvbuf):
                out = bytes(self._rcvbuf)
                self._rcvbuf.clear()
            else:
                out = bytes(self._rcvbuf[:max_bytes])
                del self._rcvbuf[:max_bytes]
            if owner is not None:
                r = self._rec()
                if r != NULL:
                    owner._reopen_window(self, r)
        finally:
            if owner is not None:
                owner._busy = False
        return out

    @property
    def pending(self):
        """Bytes queued or in flight (not yet acknowledged)."""
        return len(self._sndbuf)

    def close(self, *, now=None):
        """Half-close: FIN after the queued data; receiving continues (CLOSE-WAIT peers
        may keep sending). ``now`` as for send(). Raises ConnectionStateError if already
        closed, UsageError as send() does."""
        cdef Endpoint ep = self._owner()
        cdef uint64_t t = 0 if now is None else _us(now, "now")
        cdef ft_conn_t *r
        ep._claim()
        try:
            if now is not None:
                ep._advance(t)
            st = self._state_now()
            if st in (_State.CLOSED, _State.LISTEN, _State.TIME_WAIT, _State.FIN_WAIT_1, _State.FIN_WAIT_2,
                      _State.CLOSING, _State.LAST_ACK):
                raise ConnectionStateError(f"close() in state {st}")
            r = self._rec()
            if r != NULL and r.state == TCPS_SYN_SENT:
                # RFC 9293 3.10.4: SYN-SENT deletes the TCB. (SYN-RECEIVED queues the FIN
                # until ESTABLISHED, which the RFC allows, so a lost SYN-ACK is still resent.)
                ep_close(ep._ep, self.id, ep._now)
            else:
                self._fin_pending = True
                ep._flush(self)
            ep._after_call()                 # report the CLOSE event now
        finally:
            ep._busy = False

    def abort(self, *, now=None):
        """Reset the connection (RST to the peer if synchronized); it is CLOSED at once.
        ``now`` as for send(). Raises ConnectionStateError if the connection has ended
        (or its record now holds another connection), UsageError as send() does."""
        cdef Endpoint ep = self._owner()
        cdef uint64_t t = 0 if now is None else _us(now, "now")
        ep._claim()
        try:
            if now is not None:
                ep._advance(t)
            if self._rec() == NULL:
                raise ConnectionStateError("abort() on a closed connection")
            ep_abort(ep._ep, self.id, ep._now)
            ep._after_call()
        finally:
            ep._busy = False

    def __repr__(self):
        l, lp, r, rp = self.key
        try:
            st = self.state
        except UsageError:
            st = "(endpoint gone)" if self._epref is None or self._epref() is None else "(endpoint busy)"
        return f"<Connection {l}:{lp} -> {r}:{rp} {st}>"


cdef inline void _accept_prefetch(const ep_t *ep) noexcept nogil:
    """Start loading the record of the accept-queue entry EP_ACCEPT_AHEAD entries
    ahead of the head: accept_batch reads (and writes) every queued record, in the
    order the handshakes completed, which in a large table is a cache miss each. (Not
    the segment pipeline's depth: an entry takes a few nanoseconds, a segment ~100, so
    a miss needs more entries to hide behind.)"""
    cdef size_t ahead = EP_ACCEPT_AHEAD
    if ahead < ep.acq_len:
        ahead += ep.acq_head
        if ahead >= ep.acq_cap:
            ahead -= ep.acq_cap
        ftx_prefetch_conn_w(&ep.tab.conns[ep.acq[ahead]])


cdef int64_t _accept_next(ep_t *ep) noexcept nogil:
    """Pop the accept queue up to its next live entry (one whose record still holds the
    incarnation that completed the handshake, not yet handed out); its id, or -1."""
    cdef uint32_t id
    cdef uint8_t gen
    while ep.acq_len:
        id = ep.acq[ep.acq_head]
        gen = ep.acq_gen[ep.acq_head]
        ep.acq_head += 1
        if ep.acq_head == ep.acq_cap:
            ep.acq_head = 0
        ep.acq_len -= 1
        if _accept_live(ep, id, gen):
            ep.tab.conns[id].flags &= ~CONN_F_QUEUED
            return id
    return -1


@cython.final
cdef class Endpoint:
    """A TCP endpoint with no I/O of its own.

    ``Endpoint(addresses, *, mss=1460, window=65535, wscale=7, sack=True,
    timestamps=True, msl=30.0, capacity=65536, seed=None, isn_secret=None, ttl=64,
    max_transmit_bytes=None, max_events=None, pipeline_depth=None,
    syn_cookies="auto", syn_backlog=None)``

    ``addresses``: local addresses or networks (``"198.18.0.0/15"``) the endpoint owns,
    1 to 16 of them; segments to other destinations are dropped. ``wscale=None``
    disables window scaling. ``seed``/``isn_secret``: non-negative ints making table
    layout, ISNs and SYN cookies reproducible (only the low 640 bits of the secret
    count). ``max_transmit_bytes``/``max_events``: how much output and how many events
    may wait for transmit()/events(); beyond that they are dropped and counted in
    `stats`, so a peer cannot grow memory without bound while the caller is not
    draining (None: 256 bytes and 2 events per connection of capacity, at least 16 MiB
    and 65536 events). ``syn_cookies``: "auto" (the default) answers SYNs with SYN
    cookies once ``syn_backlog`` half-open connections exist (None: half the capacity)
    or the table is full, "always" answers every SYN so, "off" never (a full table
    evicts its oldest half-open connection), like Linux's tcp_syncookies 1, 2, 0 (see
    docs/syn-cookies.md).
    ``pipeline_depth``: None (the default) measures the batch calls' prefetch distance
    on this machine (see `pipeline`); one of PIPELINE_DEPTHS fixes it.

    Raises UsageError for an argument of the wrong type or out of range (nothing is
    allocated then), MemoryError if the table cannot be allocated.

    One call at a time: the batch calls release the GIL, and a call made while another
    is running (from another thread, or re-entered from a finaliser) raises UsageError
    instead of racing it. Time never runs backwards inside: a ``now`` earlier than the
    latest one seen is taken as that one and counted in ``stats["time_backwards"]``.
    An endpoint frees its table as soon as the last reference to it goes: its
    connections do not keep it alive (see `Connection`).
    """
    cdef ep_t *_ep
    cdef dict _conns                  # record id -> Connection (the ones handed out)
    cdef set _pending                 # connections with unsent bytes or a FIN to send
    cdef list _events
    cdef object _timeouts
    cdef uint64_t _now
    cdef object _scratch_ids
    cdef object _key_copy             # connect_batch's copy of its keys (_key_copy_for)
    cdef int _next_port
    cdef object _selfref              # weakref.ref(self), shared by every Connection
    cdef object __weakref__
    cdef bint _init_started           # __init__ began writing the C state (never again)
    cdef bint _initialised            # __init__ finished: the endpoint can be used
    cdef bint _busy                   # a call is running (the batch calls without the GIL)
    cdef uint64_t _time_back          # calls whose `now` was behind the clock
    cdef object _made                 # the last Connection _after_call made (for connect())

    def __cinit__(self):
        self._ep = <ep_t *>calloc(1, sizeof(ep_t))
        if self._ep == NULL:
            raise MemoryError()

    def __dealloc__(self):
        if self._ep != NULL:
            ft_table_free(&self._ep.tab)
            free(self._ep.out)
            free(self._ep.out_off)
            free(self._ep.out_lens)
            free(self._ep.ev)
            free(self._ep.acq)
            free(self._ep.acq_gen)
            free(self._ep)

    def __init__(self, addresses, *, mss=1460, window=65535, wscale=7, sack=True, timestamps=True,
                 msl=30.0, capacity=65536, seed=None, isn_secret=None, ttl=64,
                 max_transmit_bytes=None, max_events=None, pipeline_depth=None, syn_cookies="auto",
                 syn_backlog=None):
        cdef ep_t *ep = self._ep
        cdef int64_t c_mss, c_window, c_capacity, c_ttl, c_wscale, c_max_out, c_max_events, c_depth, c_backlog
        if self._init_started:
            raise UsageError("an Endpoint is initialised once; make a new one")
        # every argument is checked before anything is written: a refused call leaves
        # the endpoint as __cinit__ made it (and unusable: see _core)
        nets = _local_networks(addresses)
        c_mss = _int_in(mss, "mss", 64, 65495)
        c_window = _int_in(window, "window", 1, 1 << 30)
        c_capacity = _int_in(capacity, "capacity", 1, 1 << 31)
        c_ttl = _int_in(ttl, "ttl", 1, 255)
        c_max_out = (max(_TRANSMIT_BYTES_MIN, _TRANSMIT_BYTES_PER_CONN * c_capacity) if max_transmit_bytes is None
                     else _int_in(max_transmit_bytes, "max_transmit_bytes", 1024, _MAX_QUEUE))
        c_max_events = (max(_EVENTS_MIN, _EVENTS_PER_CONN * c_capacity) if max_events is None
                        else _int_in(max_events, "max_events", 1024, _MAX_QUEUE))
        if not isinstance(syn_cookies, str) or syn_cookies not in _SYN_COOKIE_MODES:
            raise UsageError(f"syn_cookies must be one of {sorted(_SYN_COOKIE_MODES)}, got {syn_cookies!r}")
        c_backlog = (max(1, c_capacity // 2) if syn_backlog is None
                     else _int_in(syn_backlog, "syn_backlog", 1, 1 << 31))
        c_wscale = 0xff
        if wscale is not None:
            try:
                c_wscale = _int_in(wscale, "wscale", 0, 14)
            except UsageError:
                raise UsageError(f"wscale must be an int in 0..14 or None, got {wscale!r}") from None
        if wscale is None and c_window > 65535:
            raise UsageError("a window above 65535 needs window scaling (wscale)")
        if wscale is not None and c_window > (65535 << c_wscale):
            raise UsageError(f"window {window} does not fit 65535 << {wscale}")
        for name, v in (("sack", sack), ("timestamps", timestamps)):
            if not isinstance(v, (bool, int)) or v not in (0, 1):
                raise UsageError(f"{name} must be True or False, got {v!r}")
        c_depth = 0
        if pipeline_depth is not None:
            c_depth = _int_in(pipeline_depth, "pipeline_depth", 2, EP_DEPTH_MAX)
            if c_depth not in PIPELINE_DEPTHS:
                raise UsageError(f"pipeline_depth must be None or one of {PIPELINE_DEPTHS}, got {pipeline_depth!r}")
        for name, v in (("seed", seed), ("isn_secret", isn_secret)):
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise UsageError(f"{name} must be a non-negative int or None, got {v!r}")
        timeouts = Timeouts(msl=msl, syn_sent=0, syn_received=0, established=0, fin_wait_1=0,
                            fin_wait_2=0, close_wait=0, closing=0, last_ack=0, closed=0, listen=0)
        # the ISN secret (RFC 6528) follows `seed` only when a seed is given, so tests can
        # reproduce ISNs; otherwise it is drawn from the OS, independent of the table seed
        if isn_secret is None:
            isn_secret = (int.from_bytes(os.urandom(48), "little") if seed is None
                          else seed * 0x9E3779B97F4A7C15 + 1)
        if seed is None:
            seed = int.from_bytes(os.urandom(16), "little")

        self._init_started = True
        ep.nlocal = 0
        for net in nets:
            raw = net.network_address.packed
            ep.local[ep.nlocal].family = 4 if net.version == 4 else 6
            memcpy(ep.local[ep.nlocal].addr, <char *>raw, len(raw))
            mask = (((1 << net.prefixlen) - 1) << (net.max_prefixlen - net.prefixlen)).to_bytes(len(raw), "big")
            memcpy(ep.local[ep.nlocal].mask, <char *>mask, len(mask))
            ep.nlocal += 1
        self._local = nets
        if ft_table_init(&ep.tab, c_capacity, seed & 0xffffffffffffffff, (seed >> 64) & 0xffffffffffffffff,
                         False, True) != 0:
            raise MemoryError(f"cannot allocate an endpoint for {capacity} connections")
        # the endpoint arms its own timers; the table's only per-state timeout is
        # TIME-WAIT (2 MSL), re-armed whenever TIME-WAIT is (re-)entered
        for i, us in enumerate(timeouts.as_micros()):
            ep.tab.timeout[i] = us
        self._timeouts = timeouts
        ep.cfg.mss = <uint16_t>c_mss
        ep.cfg.window = <uint32_t>c_window
        ep.cfg.wscale = <uint8_t>c_wscale
        ep.cfg.sack = bool(sack)
        ep.cfg.timestamps = bool(timestamps)
        ep.cfg.ttl = <uint8_t>c_ttl
        ep.cfg.syn_retries = 6
        ep.cfg.synack_retries = 5
        ep.cfg.retries2 = 15
        ep.cfg.rto_initial = 1000000
        ep.cfg.rto_max = 60000000
        ep.cfg.fin_wait_2 = 60000000
        ep.cfg.challenge_limit = 1000
        ep.cfg.syn_cookies = _SYN_COOKIE_MODES[syn_cookies]
        ep.cfg.syn_backlog = <uint32_t>min(c_backlog, 0xffffffff)
        ep.max_out_bytes = <size_t>c_max_out
        ep.rng = (int.from_bytes(os.urandom(8), "little") | 1)
        ep.max_events = <size_t>c_max_events
        ep.depth_fixed = pipeline_depth is not None
        ep.cache_bytes = _CACHE_BYTES
        for i in range(EP_NPIPES):
            ep.pipes[i].depth = EP_DEPTH_START if pipeline_depth is None else <uint32_t>c_depth
        words = _secret_words(isn_secret, _ISN_KEY_WORDS + _COOKIE_KEY_WORDS)
        for i in range(_ISN_KEY_WORDS):
            ep.cfg.isn_key[i] = words[i]
        for i in range(_COOKIE_KEY_WORDS):
            ep.cfg.cookie_key[i] = words[_ISN_KEY_WORDS + i]
        ep.acq = <uint32_t *>calloc(c_capacity, sizeof(uint32_t))
        ep.acq_gen = <uint8_t *>calloc(c_capacity, sizeof(uint8_t))
        if ep.acq == NULL or ep.acq_gen == NULL:
            raise MemoryError(f"cannot allocate the accept queue for {capacity} connections")
        ep.acq_cap = c_capacity
        self._conns = {}
        self._pending = set()
        self._events = []
        self._scratch_ids = np.empty(4096, dtype=np.uint32)
        self._next_port = _EPHEMERAL_LOW
        self._selfref = _weakref(self)
        self._initialised = True

    cdef public list _local

    # ---- the guard of every entry point ----

    cdef inline ep_t *_core(self) except NULL:
        """The C state, for a call: UsageError if __init__ did not finish (skipped with
        __new__, or failed), or while another call is running (an endpoint is one
        thread's at a time, as ConnectionTable and Tracker are)."""
        if not self._initialised:
            raise UsageError("Endpoint is not initialised (its __init__ failed or was never called)")
        if self._busy:
            raise UsageError("Endpoint is in use by another call (a batch call in another thread, or a "
                             "callback re-entering it): one call at a time")
        return self._ep

    cdef inline ep_t *_claim(self) except NULL:
        """_core() and mark the endpoint busy, in one step under the GIL; the caller
        clears _busy in a finally. Every call that runs the core claims it: the batch
        calls release the GIL, and the others allocate (which may run a finaliser that
        lets another thread in)."""
        cdef ep_t *ep = self._core()
        self._busy = True
        return ep

    cdef inline uint64_t _advance(self, uint64_t t) noexcept:
        """The clock only moves forward: timers, RTT samples (RFC 6298) and the ISN clock
        (RFC 6528) all take a monotonic clock. A time behind it would sample RTTs of
        ~2^64 us; it is taken as the latest time seen and counted."""
        if t < self._now:
            self._time_back += 1
            return self._now
        self._now = t
        return t

    # ---- configuration ----

    @property
    def timeouts(self):
        """The `Timeouts` in force (only TIME-WAIT's, 2 MSL, is armed by the table)."""
        self._core()
        return self._timeouts

    def listen(self, port):
        """Accept connections on `port` (any local address). Raises UsageError if the
        port is already listening or not an int in 1..65535."""
        cdef int p = _port(port, "port")
        cdef ep_t *ep = self._core()
        if _listening(ep, p):
            raise UsageError(f"already listening on port {p}")
        ep.listen_bits[p >> 3] |= 1 << (p & 7)

    def unlisten(self, port):
        """Stop accepting new connections on `port` (existing ones continue). Raises
        UsageError if the port is not listening or not an int in 1..65535."""
        cdef int p = _port(port, "port")
        cdef ep_t *ep = self._core()
        if not _listening(ep, p):
            raise UsageError(f"not listening on port {p}")
        ep.listen_bits[p >> 3] &= ~(1 << (p & 7))

    @property
    def capacity(self):
        return self._core().tab.capacity

    def __len__(self):
        """Connections in the table (every state but CLOSED and LISTEN)."""
        return self._core().tab.count

    @property
    def memory_bytes(self):
        """Bytes of the connection table (records + index + timer wheel and its bits), the accept
        queue, and the copy of its keys connect_batch keeps (40 bytes a key of the
        largest batch so far, at most the capacity's worth)."""
        cdef ep_t *ep = self._core()
        kept = self._key_copy
        return (ep.tab.capacity * sizeof(ft_conn_t) + (ep.tab.nslots + 8) * 8
                + FT_WHEEL_SIZE * 4 + FT_WHEEL_SIZE // 8 + sizeof(ep_t) + ep.acq_cap * 5
                + (0 if kept is None else kept.nbytes))

    @property
    def stats(self):
        """Counters: segments in/out, resets sent, challenge ACKs, retransmissions,
        ``time_backwards`` (calls whose ``now`` was behind the clock), output and events
        dropped because nobody drained them (``transmit_dropped``, ``events_dropped``),
        SYN cookies sent and returned (``syn_cookies_sent``, ``syn_cookies_ok``,
        ``syn_cookies_failed``), ``half_open`` (SYN-RECEIVED records, what
        ``syn_backlog`` bounds), and drops by reason (see DROP_REASONS)."""
        cdef ep_t *ep = self._core()
        return dict(segments_in=ep.segs_in, segments_out=ep.segs_out, resets_sent=ep.rst_out,
                    transmit_dropped=ep.tx_dropped, events_dropped=ep.events_dropped,
                    challenge_acks=ep.challenge_acks, retransmissions=ep.retransmissions,
                    connections=ep.tab.count, evictions=ep.tab.stats.evictions,
                    time_backwards=self._time_back,
                    syn_cookies_sent=ep.cookies_sent, syn_cookies_ok=ep.cookies_ok,
                    syn_cookies_failed=ep.cookies_failed, half_open=ep.tab.state_count[TCPS_SYN_RECEIVED],
                    drops={DROP_REASONS[i]: ep.drops[i] for i in range(DROP_COUNT)})

    @property
    def pipeline(self):
        """The batch calls' pipelines and how their depth was chosen, as a dict:
        ``auto`` (False when the constructor fixed the depth), ``cache_bytes`` (the
        private cache a table must outgrow before its depth is measured; 0 = unknown),
        and per pipeline (``segments``: receive_batch and pipe(); ``connects``:
        connect_batch) its ``depth`` (packets ahead whose index slots are loaded),
        ``calibrations`` (times it was measured) and ``ns_per_item`` ({depth: median ns
        per packet or key} of the last measurement; empty before one)."""
        cdef ep_t *ep = self._core()
        cdef ep_pipe_t *pp
        out = {"auto": not ep.depth_fixed, "cache_bytes": ep.cache_bytes}
        for name, which in (("segments", EP_PIPE_SEGMENTS), ("connects", EP_PIPE_CONNECTS)):
            pp = &ep.pipes[which]
            out[name] = {"depth": pp.depth, "calibrations": pp.calibrations,
                         "ns_per_item": {PIPELINE_DEPTHS[k]: pp.ns[k] for k in range(EP_NDEPTHS)}
                         if pp.calibrations else {}}
        return out

    @property
    def syn_cookies(self):
        """The SYN cookie mode: "auto", "always" or "off"."""
        cdef uint8_t mode = self._core().cfg.syn_cookies
        return "off" if mode == SYN_COOKIES_OFF else "always" if mode == SYN_COOKIES_ALWAYS else "auto"

    def _set_cookie_minute_offset(self, offset):
        """Tests: move the SYN cookie minute counter by `offset` (mod 2^32) from the one
        the clock gives, as if the counter had started elsewhere (Linux's starts at
        boot); checks the counter's wrap-around without waiting for it."""
        self._core().cfg.cookie_minute_offset = <uint32_t>(_int_in(offset, "offset", 0, 0xffffffff))

    # ---- opening ----

    def connect(self, remote_addr, remote_port, *, local_port=None, local_addr=None, now):
        """Active open: send a SYN. Returns the Connection (state SYN-SENT).
        Raises UsageError for a port outside 1..65535, an address that is not unicast,
        a local address that is not the endpoint's, no local address of that family, a
        4-tuple in use, no free ephemeral port, or a full table."""
        cdef ft_key_t k
        cdef int64_t id
        cdef uint64_t t = _us(now, "now")
        cdef int rport = _port(remote_port, "remote_port")
        cdef int lport = 0 if local_port is None else _port(local_port, "local_port")
        cdef bytes r = addr_bytes(remote_addr)
        cdef bytes l
        cdef ep_t *ep = self._core()
        cdef uint8_t fam = 4 if len(r) == 4 else 6
        memset(&k, 0, sizeof(k))
        k.family = fam
        memcpy(k.raddr, <char *>r, len(r))
        if not _unicast(k.raddr, fam):
            raise UsageError(f"remote_addr {_to_ip(r)} is not a unicast address")
        if local_addr is None:
            nets = [n for n in self._local if n.version == fam]
            if not nets:
                raise UsageError(f"no local IPv{fam} address to connect from")
            net = nets[0]
            l = (net.network_address if net.num_addresses == 1 else next(net.hosts())).packed
        else:
            l = addr_bytes(local_addr)
            if len(l) != len(r):
                raise UsageError("local and remote address families differ")
        memcpy(k.laddr, <char *>l, len(l))      # zero-padded: _is_local reads 16 bytes
        if not _unicast(k.laddr, fam):
            raise UsageError(f"local address {_to_ip(l)} is not a unicast address")
        if local_addr is not None and not _is_local(ep, k.laddr, fam):
            raise UsageError(f"{_to_ip(l)} is not one of this endpoint's addresses")
        k.rport = <uint16_t>rport
        ep = self._claim()
        try:
            t = self._advance(t)
            if local_port is None:
                for _ in range(_EPHEMERAL_HIGH - _EPHEMERAL_LOW + 1):
                    k.lport = self._next_port
                    self._next_port = _EPHEMERAL_LOW if self._next_port >= _EPHEMERAL_HIGH else self._next_port + 1
                    if ft_lookup(&ep.tab, &k) < 0:
                        break
                else:
                    raise UsageError("no free ephemeral port for this remote address")
            else:
                k.lport = <uint16_t>lport
            id = ep_connect(ep, &k, t)
            if id == FT_TABLE_EXISTS:
                raise UsageError(f"{_to_ip(l)}:{k.lport} -> {_to_ip(r)}:{rport} is already in use")
            if id == FT_TABLE_FULL:
                raise UsageError("connection table full")
            if id < 0:                             # EP_NOT_LOCAL: the C core's own check
                raise UsageError(f"{_to_ip(l)} is not one of this endpoint's addresses")
            # the events first: making room may have evicted a held connection from
            # this very record, and its EVICTED event must reach that handle; the
            # CONNECT event then makes the new handle
            self._made = None
            self._after_call()
            conn = self._made
            self._made = None
            if conn is None or (<Connection>conn).id != id or (<Connection>conn)._rec() == NULL:
                conn = Connection._new(self, <uint32_t>id)       # its CONNECT event was not kept
                self._conns[<uint32_t>id] = conn
        finally:
            self._busy = False
        return conn

    def accept(self):
        """The next connection that completed its handshake on a listening port, or None."""
        cdef ep_t *ep = self._claim()
        cdef int64_t id
        try:
            id = _accept_next(ep)
            if id < 0:
                return None
            conn = self._conns.get(id)
            if conn is None or (<Connection>conn)._rec() == NULL:
                conn = Connection._new(self, <uint32_t>id)
                self._conns[id] = conn
            return conn
        finally:
            self._busy = False

    def accept_batch(self):
        """Every connection waiting in the accept queue, as an int64 array of record ids
        (the batch path's accept(): no Connection objects are made). Ids of entries that
        were reset or reused since they completed their handshake are left out."""
        cdef ep_t *ep = self._claim()
        cdef Py_ssize_t n = 0, cap
        cdef int64_t id
        cdef int64_t[::1] o
        try:
            cap = ep.acq_len                # read once: the array is sized and filled from it
            out = np.empty(cap, dtype=np.int64)
            o = out
            with nogil:
                while n < cap:
                    _accept_prefetch(ep)
                    id = _accept_next(ep)
                    if id < 0:
                        break
                    o[n] = id
                    n += 1
        finally:
            self._busy = False
        return out[:n]

    # ---- segments in ----

    def receive(self, packet, now):
        """Process one IP packet (a bytes-like object) at time `now` (seconds). Never
        raises for what a peer sends: returns None if the segment was used, else the
        drop reason (a string from DROP_REASONS; malformed packets count under
        "malformed"). Raises UsageError for a packet that is not a C-contiguous buffer
        of bytes, a bad `now`, or while another call is running."""
        cdef Py_buffer view
        cdef int rc
        cdef size_t first
        cdef uint64_t t = _us(now, "now")
        cdef ep_t *ep = self._claim()
        try:
            _get_bytes(packet, &view, "packet")
            try:
                t = self._advance(t)
                ep.last_conn = FT_NIL
                first = ep.nev
                if view.len > 0xffffffff:
                    rc = DROP_MALFORMED
                    ep.drops[DROP_MALFORMED] += 1
                else:
                    rc = ep_process(ep, <const uint8_t *>view.buf, view.len, 0, t)
                self._after_call(<const uint8_t *>view.buf, view.len, first)
                if ep.last_conn != FT_NIL:
                    # an ACK may have advanced SND.UNA without any state change: trim the
                    # connection's send buffer and send what the window now allows
                    held = self._conns.get(ep.last_conn)
                    if held is not None and ((<Connection>held)._sndbuf or (<Connection>held)._fin_pending
                                             or (<Connection>held)._timing) \
                            and (<Connection>held)._rec() != NULL:
                        self._acked(<Connection>held)
                        self._flush(<Connection>held)
            finally:
                PyBuffer_Release(&view)
        finally:
            self._busy = False
        return None if rc < 0 else DROP_REASONS[rc]

    def receive_batch(self, buffer, offsets, lengths, now):
        """Process many packets (a segment batch) at time `now` without the GIL. Returns
        an int64 array with -1 per used packet, else its drop reason index (DROP_REASONS).
        Events (with DATA at buffer offsets) are collected for `events_batch()`.

        Raises UsageError (and processes nothing) for a buffer that is not a C-contiguous
        buffer of bytes or is 4 GiB or more, offsets/lengths that are not 1-D integer
        sequences of one length, a span outside the buffer (the first one is named), a
        bad `now`, or while another call is running."""
        cdef Py_buffer view
        cdef uint64_t t = _us(now, "now")
        off = _int64_array(offsets, "offsets")
        ln = _int64_array(lengths, "lengths")
        if off.shape[0] != ln.shape[0]:
            raise UsageError(f"offsets and lengths must be the same length, got {off.shape[0]} and {ln.shape[0]}")
        cdef Py_ssize_t n = off.shape[0], i
        out = np.empty(n, dtype=np.int64)
        cdef const int64_t[::1] o
        cdef const int64_t[::1] l
        cdef int64_t[::1] r = out
        cdef ep_t *ep = self._claim()
        try:
            # copies, always: the spans are checked once, then read again without the
            # GIL, and the caller's own arrays could be rewritten by another thread
            # meanwhile (a checked offset turned wild). 16 bytes a segment, next to ~100
            # ns of work. Made after the claim: made before it, they gave a call from
            # another thread the time to claim the endpoint first
            off = off.copy()
            ln = ln.copy()
            o = off
            l = ln
            _get_bytes(buffer, &view, "buffer")
            try:
                if n:
                    with nogil:
                        i = ft_first_bad_span(&o[0], &l[0], n, <uint64_t>view.len)
                    if i >= 0:
                        raise span_outside_buffer(i, off[i], ln[i], view.len)
                    if view.len > 0xffffffff:
                        raise UsageError("batch buffers are limited to 4 GiB")
                t = self._advance(t)
                if n:
                    with nogil:
                        ep_process_batch(ep, <const uint8_t *>view.buf, &o[0], &l[0], n, t, &r[0])
            finally:
                PyBuffer_Release(&view)
        finally:
            self._busy = False
        return out

    # ---- time ----

    def poll(self, now):
        """Run the timers due at `now` (retransmissions, TIME-WAIT and FIN-WAIT-2
        expiry). Call again at next_deadline(). Raises UsageError for a bad `now` or
        while another call is running."""
        self._poll(now, True)

    def poll_batch(self, now):
        """poll() for batch users: timers run without the GIL and their events stay raw
        for events_batch() (no Python objects are made). Raises as poll() does."""
        self._poll(now, False)

    cdef _poll(self, now, bint objects):
        """Both polls: the timers run without the GIL; `objects` makes the Event and
        Connection objects of the single-packet API afterwards."""
        cdef uint64_t t = _us(now, "now")
        cdef uint32_t[::1] ids
        cdef ep_t *ep = self._claim()
        try:
            t = self._advance(t)
            ids = self._scratch_ids
            with nogil:
                ep_poll(ep, t, &ids[0], ids.shape[0])
            if objects:
                self._after_call()
        finally:
            self._busy = False

    def next_deadline(self):
        """When poll() next has work, in seconds, or None."""
        cdef uint64_t best = 0, k, b, bits
        cdef uint32_t id
        cdef ft_table_t *tab = &self._core().tab
        # Walk the wheel from the expiry cursor on: a record at k buckets past it is due
        # at tick cursor + k or a whole turn later (or, filed late, in the cursor's own
        # bucket), so once the earliest deadline seen is at or before the bucket's tick no
        # later bucket can hold an earlier one. Busy links call this every turn, with
        # tens of thousands of TIME-WAIT timers filed a minute ahead: stopping early is
        # what keeps it O(buckets up to the next deadline), not O(timers).
        k = 0
        while k < FT_WHEEL_SIZE:
            b = (tab.cursor + k) & (FT_WHEEL_SIZE - 1)
            bits = tab.wheel_busy[b >> 6] >> (b & 63)
            if bits == 0:
                k += 64 - (b & 63)        # the rest of this word's buckets are empty
                continue
            k += <uint64_t>ft_ctz64(bits)
            # (a bucket not walked yet holds no deadline before its own tick)
            if k >= FT_WHEEL_SIZE or (best != 0 and (best >> FT_TICK_SHIFT) < tab.cursor + k):
                break
            id = tab.wheel[(tab.cursor + k) & (FT_WHEEL_SIZE - 1)]
            while id != FT_NIL:
                if best == 0 or tab.conns[id].deadline < best:
                    best = tab.conns[id].deadline
                id = tab.conns[id].t_next
            if best != 0 and (best >> FT_TICK_SHIFT) <= tab.cursor + k:
                break
            k += 1
        return None if best == 0 else best / 1e6

    # ---- out ----

    def transmit(self):
        """Packets to send, as a list of bytes (oldest first); the queue is emptied."""
        cdef ep_t *ep = self._claim()
        cdef size_t i, n
        try:
            n = ep.nout
            out = [PyBytes_FromStringAndSize(<char *>ep.out + ep.out_off[i], ep.out_lens[i]) for i in range(n)]
            ep.nout = 0
            ep.out_len = 0
        finally:
            self._busy = False
        return out

    def transmit_batch(self):
        """Packets to send as a segment batch: (uint8 buffer, int64 offsets, int64
        lengths), copies; the queue is emptied."""
        cdef ep_t *ep = self._claim()
        cdef size_t nbytes, n
        cdef uint8_t[::1] bv
        cdef int64_t[::1] ov
        cdef int64_t[::1] lv
        try:
            nbytes = ep.out_len             # each count read once: arrays sized and filled from it
            n = ep.nout
            buf = np.empty(nbytes, dtype=np.uint8)
            offs = np.empty(n, dtype=np.int64)
            lens = np.empty(n, dtype=np.int64)
            bv = buf
            ov = offs
            lv = lens
            if nbytes:
                memcpy(&bv[0], ep.out, nbytes)
            if n:
                memcpy(&ov[0], ep.out_off, n * 8)
                memcpy(&lv[0], ep.out_lens, n * 8)
            ep.nout = 0
            ep.out_len = 0
        finally:
            self._busy = False
        return buf, offs, lens

    @property
    def pending_transmit(self):
        return self._core().nout

    def events(self):
        """State changes since the last call, as `fasttcp.Event` objects."""
        self._core()
        out = self._events
        self._events = []
        return out

    def events_batch(self):
        """Raw events since the last call as an EVENT_DTYPE array (batch path); the
        single-packet methods turn these into Event objects themselves."""
        cdef ep_t *ep = self._claim()
        cdef size_t n
        cdef uint8_t[::1] v
        try:
            n = ep.nev                      # read once: the array is sized and filled from it
            arr = np.empty(n, dtype=EVENT_DTYPE)
            if n:
                v = arr.view(np.uint8).reshape(-1)
                memcpy(&v[0], ep.ev, n * sizeof(ep_event_t))
            ep.nev = 0
        finally:
            self._busy = False
        return arr

    # ---- batch user calls (benchmarks, load generators) ----

    def connect_batch(self, keys, now):
        """Active-open every KEY_DTYPE key (local = l*, remote = r*). Returns int64 ids,
        or per key -1 (table full), -2 (4-tuple in use), -3 (local address not one of
        this endpoint's). Events go to events_batch().

        Raises UsageError, opening nothing, for keys that are not a 1-D KEY_DTYPE array
        or a key make_keys() could not have made: family not 4 or 6, non-zero padding
        (the ``_pad`` bytes, an IPv4 address's bytes 4..15), a port 0, an address that
        is not unicast (the first such row is named); also for a bad `now` or while
        another call is running.

        The call copies the keys before it checks them and opens the copies (40 bytes a
        key, kept for later calls up to the capacity's worth): what it opens is what it
        checked, whatever another thread does to `keys` meanwhile."""
        if not isinstance(keys, np.ndarray) or keys.dtype != KEY_DTYPE or keys.ndim != 1:
            raise UsageError("keys must be a 1-D KEY_DTYPE array (see fasttcp.make_keys)")
        keys = np.ascontiguousarray(keys)
        cdef uint64_t t = _us(now, "now")
        cdef Py_ssize_t n = keys.shape[0], bad = -1
        cdef int why = 0
        out = np.empty(n, dtype=np.int64)
        cdef int64_t[::1] o = out
        cdef const uint8_t[::1] kv = keys.view(np.uint8).reshape(-1) if n else np.empty(0, np.uint8)
        cdef const ft_key_t *kp = <const ft_key_t *>&kv[0] if n else NULL
        cdef uint8_t[::1] cv
        cdef ft_key_t *cp = NULL
        cdef ep_t *ep = self._claim()
        try:
            if n:
                own = self._key_copy_for(n, ep.tab.capacity)
                cv = own.view(np.uint8).reshape(-1)
                cp = <ft_key_t *>&cv[0]
                with nogil:
                    bad = ep_copy_keys(cp, kp, n, &why)
                if bad >= 0:
                    row = own[bad]
                    raise UsageError(f"keys[{bad}]: {_BAD_KEY[why]} (family={int(row['family'])}, "
                                     f"lport={int(row['lport'])}, rport={int(row['rport'])}); nothing was opened")
            t = self._advance(t)
            if n:
                with nogil:
                    ep_connect_batch(ep, cp, n, t, &o[0])
        finally:
            self._busy = False
        return out

    cdef object _key_copy_for(self, Py_ssize_t n, Py_ssize_t capacity):
        """A KEY_DTYPE array of at least n keys for connect_batch to copy its keys into:
        the one kept from the last call when it is large enough, a new one else, kept
        for the next calls while it holds no more keys than the table has records (a
        batch past the capacity cannot hold them all at once: its copy is not kept, so
        what is kept stays within the capacity's worth)."""
        kept = self._key_copy
        if kept is not None and kept.shape[0] >= n:
            return kept
        own = np.empty(n, dtype=KEY_DTYPE)
        if n <= capacity:
            self._key_copy = own
        return own

    def close_batch(self, ids, now):
        """close() every record id (as returned by connect_batch or in events); ids that
        are out of range, free, or in a state close() does not apply to are skipped.
        Returns how many connections it closed. Raises UsageError for ids that are not
        a 1-D integer sequence, a bad `now`, or while another call is running."""
        cdef uint64_t t = _us(now, "now")
        v = _int64_array(ids, "ids")
        cdef const int64_t[::1] iv = v
        cdef Py_ssize_t i, closed = 0
        cdef int64_t j
        cdef ep_t *ep = self._claim()
        try:
            t = self._advance(t)
            with nogil:
                for i in range(iv.shape[0]):
                    # read once: `iv` may be the caller's array, which another thread
                    # may rewrite while this runs without the GIL (a second read could
                    # be an id the check never saw)
                    j = iv[i]
                    if 0 <= j < ep.tab.fresh and ep.tab.conns[j].family != 0:
                        if ep_close(ep, <uint32_t>j, t) == 0:
                            closed += 1
        finally:
            self._busy = False
        return closed

    def abort_batch(self, ids, now):
        """abort() every record id (RST to the peer where RFC 9293 3.10.5 sends one; a
        TIME-WAIT record just goes, which is how a load generator reuses its 4-tuple);
        ids that are out of range or free are skipped. Returns how many it aborted.
        Raises UsageError for ids that are not a 1-D integer sequence, a bad `now`, or
        while another call is running."""
        cdef uint64_t t = _us(now, "now")
        v = _int64_array(ids, "ids")
        cdef const int64_t[::1] iv = v
        cdef Py_ssize_t i, aborted = 0
        cdef int64_t j
        cdef ep_t *ep = self._claim()
        try:
            t = self._advance(t)
            with nogil:
                for i in range(iv.shape[0]):
                    j = iv[i]                   # read once: see close_batch
                    if 0 <= j < ep.tab.fresh and ep.tab.conns[j].family != 0 \
                            and ep.tab.conns[j].state != TCPS_CLOSED:
                        ep_abort(ep, <uint32_t>j, t)
                        aborted += 1
        finally:
            self._busy = False
        return aborted

    def clear_events(self):
        """Drop pending raw events and the accept queue (batch users who track
        connections through the arrays)."""
        cdef ep_t *ep = self._core()
        ep.nev = 0
        ep.acq_len = 0

    # ---- internals ----

    cdef void _reopen_window(self, Connection c, ft_conn_t *r):
        # the advertised window is what the receive buffer can still take
        cdef uint32_t room = self._ep.cfg.window - min(<size_t>self._ep.cfg.window, len(c._rcvbuf))
        cdef uint32_t before = r.rcv_wnd
        r.rcv_wnd = room
        if before < self._ep.cfg.window // 2 and room >= self._ep.cfg.window // 2 and r.state >= TCPS_ESTABLISHED:
            _send_ack(self._ep, r, self._now)          # window update after the app read

    cdef _after_call(self, const uint8_t *inbuf=NULL, size_t inlen=0, size_t first=0):
        """Turn raw events into Event objects, feed received data to connections, trim
        acknowledged bytes, flush queued data and FINs."""
        cdef ep_t *ep = self._ep
        cdef size_t i, nev = ep.nev
        cdef ep_event_t *e
        cdef Connection conn
        if nev == 0:
            return
        touched = []
        for i in range(nev):
            e = &ep.ev[i]
            c = self._conns.get(e.conn)
            # the generation wraps after 256 reuses of a record (a handle whose end was
            # reported only to events_batch() stays here that long): the 4-tuple too
            if c is not None and ((<Connection>c)._gen != e.gen or not _same_key(&(<Connection>c)._k, e.key)):
                c = None
            if c is None and e.cause in (EV_SYN_RECEIVED, EV_REOPEN, EV_CONNECT, EV_SYN_COOKIE):
                if ep.tab.conns[e.conn].family != 0 and ep.tab.conns[e.conn].gen == e.gen \
                        and _same_key(<const ft_key_t *>e.key, <const uint8_t *>&ep.tab.conns[e.conn]):
                    c = Connection._new(self, e.conn)
                    self._conns[e.conn] = c
                    if e.cause == EV_CONNECT:
                        self._made = c
            if c is None:
                c = _Detached_new(e)
            else:
                conn = <Connection>c
                # only this call's DATA events point into `inbuf`; data that arrived
                # through a batch call was reported there (events_batch) and is not
                # in this buffer
                if e.cause == EV_DATA and inbuf != NULL and i >= first \
                        and <size_t>e.data_offset + e.value <= inlen:
                    conn._rcvbuf += PyBytes_FromStringAndSize(<char *>inbuf + e.data_offset, e.value)
                    conn.bytes_received += e.value
                    r = conn._rec()
                    if r != NULL:
                        r.rcv_wnd = ep.cfg.window - min(<size_t>ep.cfg.window, len(conn._rcvbuf))
                if e.new_state in (TCPS_CLOSED, TCPS_LISTEN) and e.cause != EV_DATA and e.cause != EV_RETRANSMIT:
                    conn._final = _State(e.new_state)
                    if e.cause in (EV_RST_RECEIVED, EV_ABORT, EV_REFUSED, EV_RETRANSMIT_LIMIT, EV_TIMEOUT,
                                   EV_EVICTED):
                        conn.reset_cause = _Cause(e.cause)
                    self._conns.pop(e.conn, None)
                elif e.cause == EV_RETRANSMIT and conn._rec() != NULL and e.old_state >= TCPS_ESTABLISHED:
                    self._retransmit(conn)
                # (the package compiles with wraparound=False: a negative index would
                # read before the list, so the last item is addressed from the front)
                if not touched or touched[len(touched) - 1] is not conn:
                    touched.append(conn)
            if len(self._events) < ep.max_events:
                self._events.append(_make_event(e, c))
            else:
                ep.events_dropped += 1              # events() is not being drained
        ep.nev = 0
        for conn in (touched if len(touched) < 2 else dict.fromkeys(touched)):
            if (conn._sndbuf or conn._fin_pending or conn._timing) and conn._rec() != NULL:
                self._acked(conn)
                self._flush(conn)
        # (a connection waiting for its window is flushed when an ACK for it arrives:
        # receive() handles the connection each segment belongs to -- no sweep here,
        # which would cost every call time in proportion to the waiting connections)

    cdef void _acked(self, Connection c):
        """Drop acknowledged bytes from the send buffer; sample the RTT (RFC 6298, Karn)."""
        cdef ft_conn_t *r = c._rec()
        cdef uint32_t acked
        cdef double sample
        if r == NULL:
            return
        if not c._seq_set:
            return
        acked = r.snd_una - c._sndbuf_seq
        if acked == 0 or acked > 0x7fffffff:
            pass                                          # nothing new (or an old ACK)
        elif acked <= len(c._sndbuf):
            del c._sndbuf[:acked]
            c._sndbuf_seq = r.snd_una
            if r.snd_una != r.snd_nxt and r.state >= TCPS_ESTABLISHED:
                ft_set_deadline(&self._ep.tab, c.id, self._now + c._rto)   # RFC 6298 5.3
        else:
            c._sndbuf.clear()                             # the data and our FIN after it
            c._sndbuf_seq = r.snd_una
        if c._timing and seq_ge(r.snd_una, c._timed_end):
            sample = <double>(self._now - c._timed_at)
            if c._srtt == 0:
                c._srtt = sample                          # RFC 6298 2.2
                c._rttvar = sample / 2
            else:                                         # RFC 6298 2.3
                c._rttvar = 0.75 * c._rttvar + 0.25 * abs(c._srtt - sample)
                c._srtt = 0.875 * c._srtt + 0.125 * sample
            c._rto = <uint64_t>max(c._srtt + max(1000.0, 4 * c._rttvar), 1000000.0)   # 2.4: >= 1 s
            if c._rto > self._ep.cfg.rto_max:
                c._rto = self._ep.cfg.rto_max
            c._timing = False

    cdef void _flush(self, Connection c):
        """Send queued bytes within min(peer window, MSS) segments; then a pending FIN."""
        cdef ft_conn_t *r = c._rec()
        cdef uint32_t in_flight, room, n, off
        if r == NULL:
            self._pending.discard(c)
            return
        if r.state < TCPS_ESTABLISHED:
            if c._fin_pending or c._sndbuf:
                self._pending.add(c)             # send once the handshake completes
            return
        if not c._seq_set:
            c._seq_set = True                             # first flush after synchronizing
            c._sndbuf_seq = r.snd_una
        if c._recovering:
            self._resend_flight(c, r)
        if r.state == TCPS_ESTABLISHED or r.state == TCPS_CLOSE_WAIT:
            while not c._recovering:                        # new data once the flight is resent
                in_flight = r.snd_nxt - r.snd_una
                off = r.snd_nxt - c._sndbuf_seq
                if off >= len(c._sndbuf):
                    break
                room = r.snd_wnd - in_flight if r.snd_wnd > in_flight else 0
                # RFC 6691: the MSS counts no TCP options; timestamps take 12 bytes
                n = min(_payload_room(r), room)
                if <size_t>(len(c._sndbuf) - off) < n:      # compared at full width: 4 GiB queued is not 0
                    n = <uint32_t>(len(c._sndbuf) - off)
                if n == 0:
                    if in_flight == 0 and r.deadline == 0:
                        # zero window, nothing in flight: the persist timer (RFC 9293
                        # 3.8.6.1) makes sure a lost window update cannot deadlock us
                        ft_set_deadline(&self._ep.tab, c.id, self._now + c._rto)
                    break                                   # window closed: wait for an ACK
                data = bytes(c._sndbuf[off:off + n])
                if not c._timing:
                    c._timing = True                        # time this segment (new data: Karn allows it)
                    c._timed_end = r.snd_nxt + n
                    c._timed_at = self._now
                ep_send_data(self._ep, c.id, <const uint8_t *><char *>data, n, self._now, c._rto)
                c.bytes_sent += n
        # the FIN goes after the last octet, and after the flight has been resent (a FIN
        # sent first would have the resent octets follow the end of the stream)
        if c._fin_pending and r.snd_nxt - c._sndbuf_seq >= len(c._sndbuf) and not c._recovering:
            c._fin_pending = False
            ep_close(self._ep, c.id, self._now)
        if c._fin_pending or r.snd_nxt - c._sndbuf_seq < len(c._sndbuf):
            self._pending.add(c)
        else:
            self._pending.discard(c)

    cdef void _resend_flight(self, Connection c, ft_conn_t *r):
        """Go back N: once an ACK has come back for the segment the RTO resent (the
        path works again), resend the rest of the flight from c._rtx up to SND.NXT, as
        far as the peer's window reaches, in MSS segments, with our FIN on the last one
        when the FIN was sent. ACKs that arrived meanwhile move the start up (what they
        acknowledge is not resent); the flight is done when the start reaches SND.NXT.
        SND.NXT stays where it was (as Linux keeps it, and BSD's SND.MAX): an ACK of the
        original flight that was only late is then acceptable (RFC 9293 3.10.7.4 fifth
        check) instead of "an ACK of something not yet sent", which would be answered,
        and the answer answered, by a peer in the same state."""
        cdef uint32_t edge, room, n, left
        cdef size_t off
        cdef bint fin_sent = r.state == TCPS_FIN_WAIT_1 or r.state == TCPS_CLOSING or r.state == TCPS_LAST_ACK
        cdef bint fin
        while True:
            if seq_lt(c._rtx, r.snd_una):
                c._rtx = r.snd_una
            if not seq_lt(c._rtx, r.snd_nxt) or r.state < TCPS_ESTABLISHED:
                c._recovering = False
                return
            if r.snd_una == c._rtx_una:
                return                                      # no ACK since the RTO yet
            edge = r.snd_una + r.snd_wnd
            room = edge - c._rtx if seq_gt(edge, c._rtx) else 0   # sequence space the window takes
            left = r.snd_nxt - c._rtx - (1 if fin_sent else 0)    # octets of the flight from _rtx
            off = <uint32_t>(c._rtx - c._sndbuf_seq)
            if off > <size_t>len(c._sndbuf) or <size_t>len(c._sndbuf) - off < left:
                c._recovering = False                       # (cannot happen: the flight is buffered)
                return
            n = min(_payload_room(r), room, left)
            fin = fin_sent and n == left and room > n
            if n == 0 and not fin:
                return                                      # window closed: wait for an ACK
            data = bytes(c._sndbuf[off:off + n])
            ep_resend_data(self._ep, c.id, c._rtx, <const uint8_t *><char *>data, n, fin, self._now)
            c.retransmits_data += 1
            c._rtx += n + (1 if fin else 0)

    cdef void _retransmit(self, Connection c):
        """RTO fired with data outstanding: resend the first segment from SND.UNA, back
        off the timer (RFC 6298 5.4-5.6) and stop timing (Karn)."""
        cdef ft_conn_t *r = c._rec()
        cdef uint32_t n, outstanding
        cdef bint fin
        if r == NULL:
            return
        self._acked(c)
        outstanding = r.snd_nxt - r.snd_una
        n = min(_payload_room(r), outstanding)
        if <size_t>len(c._sndbuf) < n:                    # at full width, as in _flush
            n = <uint32_t>len(c._sndbuf)
        # a FIN alone is resent by the core's timer itself; here only behind data
        fin = n > 0 and r.state in (TCPS_FIN_WAIT_1, TCPS_CLOSING, TCPS_LAST_ACK) and n + 1 == outstanding
        if n or fin:
            data = bytes(c._sndbuf[:n])
            ep_resend_data(self._ep, c.id, r.snd_una, <const uint8_t *><char *>data, n, fin, self._now)
            c.retransmits_data += 1
            # go back N (RFC 6298 5.4 resends the earliest segment; the rest of the
            # flight follows as ACKs return, instead of one segment per timeout)
            c._recovering = n < outstanding and not fin
            c._rtx = r.snd_una + n
            c._rtx_una = r.snd_una
        elif outstanding == 0 and len(c._sndbuf) and r.snd_wnd == 0 and \
                (r.state == TCPS_ESTABLISHED or r.state == TCPS_CLOSE_WAIT):
            # the persist timer: probe the closed window; the peer's answer carries its
            # current window (see ep_send_probe)
            ep_send_probe(self._ep, c.id, self._now)
        c._timing = False
        c._rto = min(c._rto * 2, self._ep.cfg.rto_max)
        ft_set_deadline(&self._ep.tab, c.id, self._now + c._rto)


@cython.final
@cython.no_gc      # holds no references at all: no cycles, no GC cost
cdef class _Detached:
    """Stands in, in an Event, for a connection the user never held (it came and went
    inside one call). Its key is decoded only when asked for."""
    cdef readonly uint32_t id
    cdef ft_key_t _k

    def __init__(self, *a):
        raise TypeError("internal")

    @property
    def key(self):
        n = 4 if self._k.family == 4 else 16
        return (_to_ip(PyBytes_FromStringAndSize(<char *>self._k.laddr, n)), self._k.lport,
                _to_ip(PyBytes_FromStringAndSize(<char *>self._k.raddr, n)), self._k.rport)

    @property
    def state(self):
        return _State.CLOSED

    def __repr__(self):
        l, lp, r, rp = self.key
        return f"<Connection {l}:{lp} -> {r}:{rp} (not held)>"


cdef object _Detached_new(ep_event_t *e):
    cdef _Detached d = _Detached.__new__(_Detached)
    d.id = e.conn
    memcpy(&d._k, e.key, 40)
    return d


def pipe(src, dst, now):
    """Deliver every packet `src` has queued to `dst` (receive at `now`), as if over a
    lossless wire, and empty src's queue. Returns how many were delivered.

    The in-memory wire of benchmarks and tests: each packet is still fully parsed,
    checksum-verified, looked up and processed by `dst`; only the copy out to Python is
    skipped. Events stay raw (events_batch()). Raises UsageError if src or dst is not
    an Endpoint, src is dst, either is not initialised or is in another call, or for a
    bad `now`."""
    cdef uint64_t t = _us(now, "now")
    cdef Endpoint a, b
    cdef ep_t *s
    cdef ep_t *d
    cdef size_t n
    if not isinstance(src, Endpoint) or not isinstance(dst, Endpoint):
        raise UsageError(f"pipe() takes two Endpoints, got {type(src).__name__} and {type(dst).__name__}")
    if src is dst:
        raise UsageError("pipe() needs two endpoints")
    a = <Endpoint>src
    b = <Endpoint>dst
    s = a._claim()
    try:
        d = b._claim()
        try:
            t = b._advance(t)
            n = s.nout
            with nogil:
                ep_process_batch(d, s.out, <const int64_t *>s.out_off, <const int64_t *>s.out_lens, n, t, NULL)
            s.nout = 0
            s.out_len = 0
        finally:
            b._busy = False
    finally:
        a._busy = False
    return n
