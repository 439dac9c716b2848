# cython: language_level=3
"""Connection table: the C core (table_core.pxi) and its Python face.

Python sees `ConnectionTable` and read-only `ConnectionView` views; Cython code can cimport
fasttcp.table.table and call ft_lookup/ft_insert/... on `ConnectionTable._t` directly.
Time is integer microseconds inside and float seconds at the Python surface.
"""
cimport cython
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t

import os

import numpy as np

from fasttcp.wire.addr cimport addr_bytes
from fasttcp.table.keyhash cimport ft_v4_padding
from fasttcp.wire.address import to_ip as _to_ip
from fasttcp.errors import StaleConnection, TableFull, UsageError
from fasttcp.wire.arrays import as_int64 as _as_int64
from fasttcp.enums import State
from fasttcp.table.timeouts import Timeouts

include "table_core.pxi"

__all__ = ["ConnectionTable", "ConnectionView", "KEY_DTYPE", "CONN_DTYPE", "EXPIRED_DTYPE", "TableStats"]

KEY_DTYPE = np.dtype([("family", "u1"), ("_pad", "u1", (3,)), ("lport", "u2"), ("rport", "u2"),
                      ("laddr", "u1", (16,)), ("raddr", "u1", (16,))], align=True)
"""A flow key as the C table reads it (ft_key_t): IPv4 addresses in the first 4 bytes."""

CONN_DTYPE = np.dtype([
    ("family", "u1"), ("state", "u1"), ("flags", "u1"), ("retransmits", "u1"),
    ("lport", "u2"), ("rport", "u2"), ("laddr", "u1", (16,)), ("raddr", "u1", (16,)),
    ("deadline", "u8"), ("_t_prev", "u4"), ("_t_next", "u4"), ("_c_prev", "u4"), ("_c_next", "u4"),
    ("iss", "u4"), ("irs", "u4"), ("snd_una", "u4"), ("snd_nxt", "u4"), ("snd_wnd", "u4"),
    ("snd_wl1", "u4"), ("snd_wl2", "u4"), ("rcv_nxt", "u4"), ("rcv_wnd", "u4"), ("ts_recent", "u4"),
    ("mss", "u2"), ("wscale", "u1"), ("gen", "u1"), ("segs", "u4"),
], align=True)
"""One connection record exactly as stored (ft_conn_t, 112 bytes); `deadline` in microseconds."""

EXPIRED_DTYPE = np.dtype([
    ("family", "u1"), ("state", "u1"), ("flags", "u1"), ("retransmits", "u1"),
    ("lport", "u2"), ("rport", "u2"), ("laddr", "u1", (16,)), ("raddr", "u1", (16,)),
    ("deadline", "u8"),
], align=True)
"""What `ConnectionTable.expire` returns per connection: its key, the state it expired
in and the deadline (microseconds) that fired."""

ctypedef struct expired_row_t:
    uint8_t key[40]
    uint64_t deadline

CONN_RECORD_SIZE = sizeof(ft_conn_t)
KEY_SIZE = sizeof(ft_key_t)

_TCB_FIELDS = ("iss", "irs", "snd_una", "snd_nxt", "snd_wnd", "snd_wl1", "snd_wl2", "rcv_nxt",
               "rcv_wnd", "ts_recent")


cdef uint64_t micros(object seconds, str name) except? 0xffffffffffffffff:
    """Float seconds at the Python surface -> integer microseconds inside (UsageError
    for anything that is not a finite time >= 0)."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds != seconds \
            or seconds < 0 or seconds > 1.8e13:
        raise UsageError(f"{name} must be a time in seconds >= 0, got {seconds!r}")
    return <uint64_t>(seconds * 1000000.0 + 0.5)


cdef int _fill_key(ft_key_t *k, object key) except -1:
    """(src, src_port, dst, dst_port) -> ft_key_t; src is the local end."""
    cdef bytes l, r
    if not isinstance(key, tuple) or len(key) != 4:
        raise UsageError(f"a key is a tuple (src, src_port, dst, dst_port), got {key!r}")
    src, sport, dst, dport = key
    l = addr_bytes(src)
    r = addr_bytes(dst)
    if len(l) != len(r):
        raise UsageError(f"key mixes address families: {key!r}")
    for p in (sport, dport):
        if isinstance(p, bool) or not isinstance(p, int) or p < 0 or p > 0xffff:
            raise UsageError(f"ports must be ints in 0..65535, got {p!r}")
    memset(k, 0, sizeof(ft_key_t))
    k.family = 4 if len(l) == 4 else 6
    k.lport = sport
    k.rport = dport
    memcpy(k.laddr, <char *>l, len(l))
    memcpy(k.raddr, <char *>r, len(r))
    return 0


cdef uint8_t _state(object state) except 255:
    # State(2.0) would be SYN_SENT: only ints (a State is one) are states
    if isinstance(state, bool) or not isinstance(state, int):
        raise UsageError(f"not a fasttcp.State: {state!r}")
    try:
        return <uint8_t>int(State(state))
    except (ValueError, TypeError):
        raise UsageError(f"not a fasttcp.State: {state!r}") from None


cdef dict _checked_fields(dict fields):
    """Validate TCB keyword fields before anything is changed."""
    for name, value in fields.items():
        if name not in _TCB_FIELDS and name not in ("mss", "flags"):
            raise UsageError(f"unknown connection field {name!r}")
        limit = 0xffff if name == "mss" else (0x0f if name == "flags" else 0xffffffff)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value > limit:
            raise UsageError(f"{name} must be an int in 0..{limit}, got {value!r}")
    return fields


cdef tuple _key_tuple(const uint8_t *laddr, uint16_t lport, const uint8_t *raddr, uint16_t rport, int family):
    cdef Py_ssize_t n = 4 if family == 4 else 16
    return (_to_ip(PyBytes_FromStringAndSize(<char *>laddr, n)), lport,
            _to_ip(PyBytes_FromStringAndSize(<char *>raddr, n)), rport)


class TableStats(dict):
    """Counters of a table: inserts, hits, misses, removals, evictions, refusals,
    expirations (a dict; attribute access too)."""

    __getattr__ = dict.__getitem__


@cython.final
cdef class ConnectionTable:
    """Fixed-capacity connection table keyed by the 4-tuple, IPv4 and IPv6 mixed.

    ``ConnectionTable(capacity, *, seed=None, symmetric=False, when_full="evict",
    timeouts=None, msl=None)``

    * ``seed``: int for a reproducible hash secret (tests); None draws one from the OS.
    * ``symmetric``: both directions of a flow find the same record (the tracker).
    * ``when_full``: ``"evict"`` drops the oldest TIME-WAIT record, else the oldest
      never-established one, else refuses; ``"refuse"`` always refuses. Both counted.
    * ``timeouts``: a `fasttcp.Timeouts` (per-state idle timeouts); ``msl`` overrides
      its MSL (TIME-WAIT lasts 2*MSL).

    Raises UsageError for a capacity outside 1..2^31 and MemoryError if it cannot be
    allocated.
    """
    cdef ft_table_t _t
    cdef readonly object timeouts
    cdef readonly object seed
    cdef object _ids_buf, _fired_buf      # scratch for expire, reused across calls
    cdef bint _busy                       # a GIL-free batch call is running on this table

    def __cinit__(self):
        memset(&self._t, 0, sizeof(ft_table_t))

    def __init__(self, capacity, *, seed=None, symmetric=False, when_full="evict", timeouts=None, msl=None):
        cdef int rc
        if self._t.conns != NULL:
            raise UsageError("a ConnectionTable is initialised once; make a new one")
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1 or capacity > MAX_CAPACITY:
            raise UsageError(f"capacity must be an int in 1..{MAX_CAPACITY}, got {capacity!r}")
        if when_full not in ("evict", "refuse"):
            raise UsageError(f"when_full must be 'evict' or 'refuse', got {when_full!r}")
        if timeouts is None:
            timeouts = Timeouts()
        elif not isinstance(timeouts, Timeouts):
            raise UsageError("timeouts must be a fasttcp.Timeouts")
        if msl is not None:
            import dataclasses
            timeouts = dataclasses.replace(timeouts, msl=msl)
        if seed is None:
            seed = int.from_bytes(os.urandom(16), "little")
            self.seed = None
        elif isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise UsageError(f"seed must be a non-negative int, got {seed!r}")
        else:
            self.seed = seed
        rc = ft_table_init(&self._t, capacity, seed & 0xffffffffffffffff, (seed >> 64) & 0xffffffffffffffff,
                           bool(symmetric), when_full == "evict")
        if rc == -2:
            raise MemoryError(f"cannot allocate a table of {capacity} connections")
        self.timeouts = timeouts
        self._ids_buf = np.empty(65536, dtype=np.uint32)
        self._fired_buf = np.empty(65536, dtype=np.uint64)
        for i, us in enumerate(timeouts.as_micros()):
            self._t.timeout[i] = us

    def __dealloc__(self):
        ft_table_free(&self._t)

    cdef int _ready(self) except -1:
        """Guard of every entry point: an initialised table, not inside a batch call that
        released the GIL (tables are not thread-safe: one thread at a time)."""
        if self._t.conns == NULL:
            raise UsageError("ConnectionTable was not initialised (its __init__ failed or was skipped)")
        if self._busy:
            raise UsageError("ConnectionTable is in use by a batch call in another thread")
        return 0

    cdef int _claim(self) except -1:
        """_ready() and mark the table busy in one step under the GIL, before a batch
        call does any Python-level work during which another thread could run."""
        self._ready()
        self._busy = True
        return 0

    # ---- size ----

    def __len__(self):
        self._ready()
        return self._t.count

    @property
    def capacity(self):
        self._ready()
        return self._t.capacity

    @property
    def symmetric(self):
        self._ready()
        return bool(self._t.symmetric)

    @property
    def memory_bytes(self):
        """Bytes allocated for records, index, timer wheel and header (what capacity costs;
        pages of never-used records are not resident until used)."""
        self._ready()
        return (self._t.capacity * sizeof(ft_conn_t) + (self._t.nslots + 8) * sizeof(uint64_t)
                + FT_WHEEL_SIZE * sizeof(uint32_t) + FT_WHEEL_SIZE // 8 + sizeof(ft_table_t))

    @property
    def stats(self):
        self._ready()
        s = self._t.stats
        return TableStats(inserts=s.inserts, hits=s.hits, misses=s.misses, removals=s.removals,
                          evictions=s.evictions, refusals=s.refusals, expirations=s.expirations)

    # ---- single-key operations ----

    cdef int64_t _lookup(self, object key, bint *swapped) except -2:
        cdef ft_key_t k
        self._ready()
        _fill_key(&k, key)
        swapped[0] = self._t.symmetric and ft_key_canonical(&k)
        return ft_lookup(&self._t, &k)

    def __contains__(self, key):
        cdef bint sw
        return self._lookup(key, &sw) >= 0

    def get(self, key, default=None):
        """The `ConnectionView` for `key`, or `default`. In a symmetric table either direction
        of the key finds it."""
        cdef bint sw
        cdef int64_t id = self._lookup(key, &sw)
        if id < 0:
            return default
        return ConnectionView._new(self, <uint32_t>id)

    def __getitem__(self, key):
        cdef bint sw
        cdef int64_t id = self._lookup(key, &sw)
        if id < 0:
            raise KeyError(key)
        return ConnectionView._new(self, <uint32_t>id)

    def insert(self, key, *, state=State.SYN_SENT, now=0.0, **fields):
        """Insert `key` in `state` at time `now` (seconds), arming the state's timeout;
        TCB fields (iss, irs, snd_una, ... , mss) may be given as keywords.
        Returns the `ConnectionView`. Raises KeyError if present, `TableFull` (a UsageError)
        if refused (counted in stats.refusals)."""
        cdef ft_key_t k
        cdef uint32_t evicted
        cdef int64_t id
        cdef bint swapped = False
        self._ready()
        cdef uint8_t st = _state(state)
        cdef uint64_t t_now = micros(now, "now")
        _fill_key(&k, key)
        if self._t.symmetric:
            swapped = ft_key_canonical(&k)
        _checked_fields(fields)
        id = ft_insert(&self._t, &k, st, t_now, &evicted)
        if id == FT_TABLE_EXISTS:
            raise KeyError(f"{key!r} is already in the table")
        if id == FT_TABLE_FULL:
            raise TableFull(f"table full ({self._t.capacity} connections) and nothing evictable")
        conn = ConnectionView._new(self, <uint32_t>id)
        if swapped:
            self._t.conns[id].flags |= CONN_F_SWAPPED
        if fields:
            conn._update(fields)
        return conn

    def remove(self, key):
        """Remove `key`; KeyError if absent."""
        cdef bint sw
        cdef int64_t id = self._lookup(key, &sw)
        if id < 0:
            raise KeyError(key)
        ft_remove(&self._t, <uint32_t>id)

    def set_state(self, key, state, *, now):
        """Move `key` to `state` at `now`, re-arming that state's timeout."""
        cdef bint sw
        self._ready()
        cdef uint8_t st = _state(state)              # validate before anything is counted
        cdef uint64_t t_now = micros(now, "now")
        cdef int64_t id = self._lookup(key, &sw)
        if id < 0:
            raise KeyError(key)
        ft_set_state(&self._t, <uint32_t>id, st, t_now)

    def set_deadline(self, key, when):
        """Arm the timer of `key` at absolute time `when` (seconds); None cancels it."""
        cdef bint sw
        self._ready()
        cdef uint64_t d = 0 if when is None else max(1, micros(when, "when"))
        cdef int64_t id = self._lookup(key, &sw)
        if id < 0:
            raise KeyError(key)
        ft_set_deadline(&self._t, <uint32_t>id, d)

    # ---- time ----

    def expire(self, now, *, out=None):
        """Remove every connection whose deadline is <= `now` (seconds) and return them
        as an EXPIRED_DTYPE array: key, state and the deadline that fired.

        ``out``: a preallocated EXPIRED_DTYPE array to fill (no allocation: the hot-path
        way). If more connections are due than it holds, the rest stay due for the next
        call; the return value is ``out[:n]``."""
        cdef uint64_t t_now = micros(now, "now")
        self._claim()
        try:
            return self._expire(t_now, out)
        finally:
            self._busy = False

    cdef object _expire(self, uint64_t t_now, object out):
        cdef Py_ssize_t n, total = 0, room, want
        cdef Py_ssize_t cap = 65536
        if out is not None:
            if (not isinstance(out, np.ndarray) or out.dtype != EXPIRED_DTYPE or out.ndim != 1
                    or not out.flags.c_contiguous or not out.flags.writeable):
                raise UsageError("out must be a writable contiguous 1-D EXPIRED_DTYPE array")
            room = out.shape[0]
            while total < room:
                want = min(cap, room - total)
                n = self._expire_into(t_now, out, total, want)
                total += n
                if n < want:
                    break
            self._t.stats.expirations += total
            return out[:total]
        chunks = []
        while True:
            chunk = np.empty(cap, dtype=EXPIRED_DTYPE)
            n = self._expire_into(t_now, chunk, 0, cap)
            if n:
                chunks.append(chunk[:n])
            total += n
            if n < cap:
                break
        self._t.stats.expirations += total
        if not chunks:
            return np.empty(0, dtype=EXPIRED_DTYPE)
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)

    cdef Py_ssize_t _expire_into(self, uint64_t now, object rows, Py_ssize_t start, Py_ssize_t want) except -1:
        """Pop up to `want` due records into rows[start:], then remove them."""
        cdef uint32_t[::1] iv = self._ids_buf[:want]
        cdef uint64_t[::1] fv = self._fired_buf[:want]
        cdef uint8_t[::1] rv = rows.view(np.uint8).reshape(-1)
        cdef Py_ssize_t n, i
        cdef expired_row_t *r
        cdef const ft_conn_t *c
        with nogil:                                  # the caller holds the busy claim
            n = ft_expire(&self._t, now, &iv[0], &fv[0], want)
            r = (<expired_row_t *>&rv[0]) + start
            for i in range(n):
                c = &self._t.conns[iv[i]]
                memcpy(&r[i], c, 40)                 # key bytes (+ state/flags/retransmits)
                r[i].deadline = fv[i]
            ft_remove_batch(&self._t, &iv[0], n)
        return n

    def next_deadline(self):
        """Earliest armed deadline in seconds, or None (scans the wheel: O(buckets))."""
        cdef uint64_t best = 0
        cdef uint32_t id
        cdef Py_ssize_t b
        self._ready()
        for b in range(FT_WHEEL_SIZE):
            if (self._t.wheel_busy[b >> 6] >> (b & 63)) & 1 == 0:
                continue                  # unmarked: nothing was filed there since it was found empty
            id = self._t.wheel[b]
            while id != FT_NIL:
                if best == 0 or self._t.conns[id].deadline < best:
                    best = self._t.conns[id].deadline
                id = self._t.conns[id].t_next
        return None if best == 0 else best / 1e6

    # ---- bulk ----

    def lookup_batch(self, keys):
        """Look up a KEY_DTYPE array (prefetching ahead). Returns int64 record ids, -1 = absent.

        Raises UsageError for keys that are not a 1-D KEY_DTYPE array and for the first
        row that is not a valid key (family neither 4 nor 6, an IPv4 key with non-zero
        address padding)."""
        self._claim()
        try:
            return self._lookup_batch(keys)
        finally:
            self._busy = False

    cdef object _lookup_batch(self, object keys):
        keys = _as_keys(keys)
        cdef Py_ssize_t n = keys.shape[0]
        out = np.empty(n, dtype=np.int64)
        cdef int64_t[::1] o = out
        if self._t.symmetric:
            keys = _canonical(keys)[0]
        cdef const uint8_t[::1] kv = keys.view(np.uint8).reshape(-1) if n else np.empty(0, np.uint8)
        if n:
            _check_keys(<const ft_key_t *>&kv[0], n)
            # (a key another thread rewrites from here on can only miss: lookups never
            # write a record from a key)
            with nogil:
                ft_lookup_batch(&self._t, <const ft_key_t *>&kv[0], n, &o[0])
        return out

    def insert_batch(self, keys, *, state=State.SYN_SENT, now=0.0):
        """Insert a KEY_DTYPE array in `state`. Returns int64 ids; -1 = refused (full),
        -2 = already present. Never raises for a full table: refusals are counted.

        Raises UsageError, before inserting anything, for keys that are not a 1-D
        KEY_DTYPE array, for the first row whose family is neither 4 nor 6 or that is
        an IPv4 key with non-zero address padding (see `make_keys`), and for a bad
        `state` or `now`. Bytes 1..3 of a key (``_pad``) are not part of it: they are
        ignored, as in lookups."""
        self._claim()
        try:
            return self._insert_batch(keys, state, now)
        finally:
            self._busy = False

    cdef object _insert_batch(self, object keys, object state, object now):
        keys = _as_keys(keys)
        cdef Py_ssize_t n = keys.shape[0], i
        cdef uint8_t st = _state(state)
        cdef uint64_t t_now = micros(now, "now")
        cdef uint32_t ev
        out = np.empty(n, dtype=np.int64)
        cdef int64_t[::1] o = out
        swapped = np.zeros(n, dtype=np.bool_)
        if self._t.symmetric:
            keys, swapped = _canonical(keys)
        cdef const uint8_t[::1] sv = swapped.view(np.uint8) if n else np.empty(0, np.uint8)
        cdef const uint8_t[::1] kv = keys.view(np.uint8).reshape(-1) if n else np.empty(0, np.uint8)
        cdef const ft_key_t *kp
        cdef ft_key_t k
        cdef bint changed = False
        if n:
            kp = <const ft_key_t *>&kv[0]
            _check_keys(kp, n)
            with nogil:
                for i in range(n):
                    # Insert a private copy, checked again: the caller's array is not
                    # ours, and a key rewritten by another thread after the check (a
                    # family 0 record looks free) must not reach the table. Its pad
                    # bytes would land in the record's state/flags bytes: zeroed.
                    memcpy(&k, &kp[i], sizeof(ft_key_t))
                    k._pad[0] = 0
                    k._pad[1] = 0
                    k._pad[2] = 0
                    if _key_fault(&k) != 0:
                        changed = True
                        o[i] = FT_TABLE_FULL
                        continue
                    o[i] = ft_insert(&self._t, &k, st, t_now, &ev)
                    if o[i] >= 0 and sv[i]:
                        self._t.conns[o[i]].flags |= CONN_F_SWAPPED
            if changed:
                raise UsageError("keys were rewritten (by another thread) while insert_batch ran: "
                                 "the rows that no longer held a valid key were not inserted")
        return out

    def remove_ids(self, ids):
        """Remove records by id (e.g. from lookup_batch); negative, unknown and already
        removed ids are skipped. Returns how many were removed.

        Raises UsageError if `ids` is not integers (floats would be truncated to some
        other record's id)."""
        self._ready()
        # a copy: numpy lets other threads run inside the mask and the selection below,
        # and a caller's array rewritten between the two would hand ft_remove_batch an
        # id the mask never saw
        v = np.array(_as_int64(ids, "ids"), dtype=np.int64).reshape(-1)
        keep = v[(v >= 0) & (v < self._t.fresh)].astype(np.uint32)
        keep = np.unique(keep)
        cdef const uint32_t[::1] kv = keep
        before = self._t.count
        if keep.shape[0]:
            ft_remove_batch(&self._t, &kv[0], keep.shape[0])
        return before - self._t.count

    def snapshot(self):
        """Every live connection as a CONN_DTYPE array (a copy), with an ``id`` array:
        returns (rows, ids)."""
        cdef Py_ssize_t used = self._t.fresh
        self._ready()
        if used == 0:
            return np.empty(0, dtype=CONN_DTYPE), np.empty(0, dtype=np.int64)
        cdef uint8_t[::1] mem = <uint8_t[:used * sizeof(ft_conn_t)]><uint8_t *>self._t.conns
        allrows = np.frombuffer(mem, dtype=CONN_DTYPE, count=used)
        ids = np.flatnonzero(allrows["family"] != 0)
        return allrows[ids].copy(), ids

    def __iter__(self):
        cdef uint32_t i
        self._ready()
        for i in range(self._t.fresh):
            if self._t.conns[i].family != 0:
                yield ConnectionView._new(self, i)

    def probe_lengths(self):
        """Distance of every stored key from its home slot (Robin Hood displacement) as a
        uint32 array: a lookup of that key reads displacement + 1 index slots. For
        measuring hash quality and adversarial-key resistance."""
        self._ready()
        out = np.empty(self._t.count, dtype=np.uint32)
        cdef uint32_t[::1] o = out
        cdef uint64_t s, e
        cdef Py_ssize_t n = 0
        for s in range(self._t.nslots):
            e = self._t.index[s]
            if e and n < self._t.count:
                o[n] = <uint32_t>_dib(&self._t, s, e)
                n += 1
        return out[:n]

    def check(self):
        """Verify internal invariants (index <-> records, lists, the timer wheel's
        marks); raises AssertionError. O(capacity): for tests and debugging."""
        self._ready()
        _, ids = self.snapshot()
        assert len(ids) == self._t.count, "count"
        seen = 0
        cdef uint64_t s, e
        for s in range(self._t.nslots):
            e = self._t.index[s]
            if e:
                seen += 1
                assert self._t.conns[<uint32_t>e - 1].family != 0, "index points at a free record"
        assert seen == self._t.count, "index entries != count"
        cdef Py_ssize_t b
        for b in range(FT_WHEEL_SIZE):
            # expiry visits only marked buckets: an unmarked one must be empty
            assert self._t.wheel[b] == FT_NIL or (self._t.wheel_busy[b >> 6] >> (b & 63)) & 1, \
                f"timer wheel bucket {b} holds records but is not marked"
        return True


cdef object _as_keys(object keys):
    """A 1-D C-contiguous KEY_DTYPE array (the caller's, or a contiguous copy of it), else
    UsageError: the C loops read it as an array of ft_key_t, so its dtype and shape
    are what keeps them inside it."""
    if not isinstance(keys, np.ndarray) or keys.dtype != KEY_DTYPE or keys.ndim != 1:
        got = (f"a {keys.ndim}-D {keys.dtype} array" if isinstance(keys, np.ndarray)
               else f"a {type(keys).__name__}")
        raise UsageError(f"keys must be a 1-D KEY_DTYPE array (see fasttcp.make_keys), got {got}")
    return np.ascontiguousarray(keys)


cdef inline int _key_fault(const ft_key_t *k) noexcept nogil:
    """0 for a key the table can hold, else why not: 1 a family other than 4 and 6 (a
    record of family 0 reads as free, so the table would lose count of its records),
    2 an IPv4 key with bytes after the first 4 of an address (make_keys writes zeros
    there; another value would make a second key for the same 4-tuple)."""
    if k.family == 6:
        return 0
    if k.family != 4:
        return 1
    if ft_v4_padding(_w(k, 1), _w(k, 2), _w(k, 3), _w(k, 4)) != 0:
        return 2
    return 0


cdef Py_ssize_t _first_bad_key(const ft_key_t *keys, Py_ssize_t n) noexcept nogil:
    """The index of the first key that _key_fault refuses, or -1: one pass in C per batch."""
    cdef Py_ssize_t i
    for i in range(n):
        if _key_fault(&keys[i]) != 0:
            return i
    return -1


cdef int _check_keys(const ft_key_t *keys, Py_ssize_t n) except -1:
    """UsageError naming the first row of `keys` that is not a valid key."""
    cdef Py_ssize_t i
    with nogil:
        i = _first_bad_key(keys, n)
    if i < 0:
        return 0
    if _key_fault(&keys[i]) == 1:
        raise UsageError(f"keys[{i}]: family {keys[i].family} is neither 4 (IPv4) nor 6 (IPv6)")
    raise UsageError(f"keys[{i}]: an IPv4 key has non-zero bytes after the first 4 of an address "
                     f"(make_keys writes zeros there)")


cdef tuple _canonical(object keys):
    """canonical_keys of a contiguous KEY_DTYPE array, as a copy, without checking it."""
    keys = np.array(keys, copy=True, order="C")
    cdef Py_ssize_t n = keys.shape[0], i
    swapped = np.zeros(n, dtype=np.bool_)
    cdef uint8_t[::1] kv = keys.view(np.uint8).reshape(-1) if n else np.empty(0, np.uint8)
    cdef uint8_t[::1] sv = swapped.view(np.uint8)
    cdef ft_key_t *kp
    if n:
        kp = <ft_key_t *>&kv[0]
        with nogil:
            for i in range(n):
                sv[i] = ft_key_canonical(&kp[i])
    return keys, swapped


def canonical_keys(keys):
    """Symmetric order of a KEY_DTYPE array (both directions of a flow give the same key):
    returns (keys, swapped) -- a new array and a bool array, True where a key was
    reversed.

    Raises UsageError if `keys` is not a 1-D KEY_DTYPE array (a non-contiguous one is
    copied) or for the first row that is not a valid key (family neither 4 nor 6, an
    IPv4 key with non-zero address padding)."""
    keys, swapped = _canonical(_as_keys(keys))
    cdef Py_ssize_t n = keys.shape[0]
    cdef const uint8_t[::1] kv = keys.view(np.uint8).reshape(-1) if n else np.empty(0, np.uint8)
    if n:
        _check_keys(<const ft_key_t *>&kv[0], n)
    return keys, swapped


def make_keys(tuples):
    """KEY_DTYPE array from (src, src_port, dst, dst_port) tuples: family 4 or 6, IPv4
    addresses in the first 4 bytes of their 16 and every other byte zero. Raises
    UsageError for anything that is not such a tuple (see `ConnectionTable.insert`)."""
    tuples = list(tuples)
    keys = np.zeros(len(tuples), dtype=KEY_DTYPE)
    cdef uint8_t[::1] kv = keys.view(np.uint8).reshape(-1) if len(tuples) else np.empty(0, np.uint8)
    cdef Py_ssize_t i
    for i, t in enumerate(tuples):
        _fill_key(<ft_key_t *>&kv[i * sizeof(ft_key_t)], t)
    return keys


@cython.final
cdef class ConnectionView:
    """Read-only view of one connection record. Raises `StaleConnection` (a UsageError)
    once the record has been removed or reused for another key. (Reuse by the *same*
    key is caught through an 8-bit generation: a view that sleeps through 256 removals
    and re-inserts of its own key in the same record cannot tell.)"""
    cdef ConnectionTable _table
    cdef uint32_t _id
    cdef uint8_t _gen
    cdef ft_key_t _key         # the key seen at creation: reuse by another key is always caught

    @staticmethod
    cdef ConnectionView _new(ConnectionTable table, uint32_t id):
        cdef ConnectionView c = ConnectionView.__new__(ConnectionView)
        c._table = table
        c._id = id
        c._gen = table._t.conns[id].gen
        memcpy(&c._key, &table._t.conns[id], 40)
        memset(c._key._pad, 0, 3)
        return c

    cdef ft_conn_t *_rec(self) except NULL:
        self._table._ready()
        cdef ft_conn_t *c = &self._table._t.conns[self._id]
        if c.family == 0 or c.gen != self._gen or not _key_eq(c, &self._key):
            raise StaleConnection(f"connection record {self._id} was removed")
        return c

    cdef _update(self, dict fields):
        cdef ft_conn_t *c = self._rec()
        for name, value in fields.items():
            if name == "mss":
                c.mss = value
            elif name == "flags":
                c.flags = (value & ~CONN_F_SWAPPED) | (c.flags & CONN_F_SWAPPED)   # direction is the table's
            else:
                setattr_tcb(c, name, value)

    @property
    def id(self):
        return self._id

    @property
    def key(self):
        """(src, src_port, dst, dst_port) as stored (canonical order in a symmetric table)."""
        cdef ft_conn_t *c = self._rec()
        return _key_tuple(c.laddr, c.lport, c.raddr, c.rport, c.family)

    @property
    def family(self):
        return self._rec().family

    @property
    def state(self):
        return State(self._rec().state)

    @property
    def deadline(self):
        """Armed timer in seconds, or None."""
        cdef uint64_t d = self._rec().deadline
        return None if d == 0 else d / 1e6

    @property
    def swapped(self):
        """Symmetric tables: True if the first direction inserted is the reverse of `key`."""
        return bool(self._rec().flags & CONN_F_SWAPPED)

    @property
    def iss(self): return self._rec().iss
    @property
    def irs(self): return self._rec().irs
    @property
    def snd_una(self): return self._rec().snd_una
    @property
    def snd_nxt(self): return self._rec().snd_nxt
    @property
    def snd_wnd(self): return self._rec().snd_wnd
    @property
    def snd_wl1(self): return self._rec().snd_wl1
    @property
    def snd_wl2(self): return self._rec().snd_wl2
    @property
    def rcv_nxt(self): return self._rec().rcv_nxt
    @property
    def rcv_wnd(self): return self._rec().rcv_wnd
    @property
    def ts_recent(self): return self._rec().ts_recent
    @property
    def mss(self): return self._rec().mss
    @property
    def snd_wscale(self): return self._rec().wscale >> 4
    @property
    def rcv_wscale(self): return self._rec().wscale & 15
    @property
    def sack_permitted(self): return bool(self._rec().flags & CONN_F_SACK)
    @property
    def timestamps(self): return bool(self._rec().flags & CONN_F_TIMESTAMPS)
    @property
    def retransmits(self): return self._rec().retransmits
    @property
    def segments(self): return self._rec().segs

    def __repr__(self):
        try:
            src, sp, dst, dp = self.key
            return f"<ConnectionView {src}:{sp} -> {dst}:{dp} {self.state}>"
        except UsageError:
            return f"<ConnectionView #{self._id} (removed)>"

    def __eq__(self, other):
        if not isinstance(other, ConnectionView):
            return NotImplemented
        return (self._table is (<ConnectionView>other)._table and self._id == (<ConnectionView>other)._id
                and self._gen == (<ConnectionView>other)._gen
                and memcmp(&self._key, &(<ConnectionView>other)._key, 40) == 0)

    def __hash__(self):
        return hash((id(self._table), self._id, self._gen,
                     PyBytes_FromStringAndSize(<char *>&self._key, 40)))


cdef void setattr_tcb(ft_conn_t *c, str name, uint32_t v):
    if name == "iss": c.iss = v
    elif name == "irs": c.irs = v
    elif name == "snd_una": c.snd_una = v
    elif name == "snd_nxt": c.snd_nxt = v
    elif name == "snd_wnd": c.snd_wnd = v
    elif name == "snd_wl1": c.snd_wl1 = v
    elif name == "snd_wl2": c.snd_wl2 = v
    elif name == "rcv_nxt": c.rcv_nxt = v
    elif name == "rcv_wnd": c.rcv_wnd = v
    elif name == "ts_recent": c.ts_recent = v
