# C core of the connection table (included by table.pyx). See table.pxd for the layout.
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memcmp, memset
from fasttcp.table.keyhash cimport (FT_KEY0_MASK, ft_w as _w, ft_fmix64 as _fmix64, ft_nh as _nh,
                                    ft_hash_key as _hash, ft_key_eq as _key_eq, ft_home as _home)
from fasttcp.table.ops cimport (ftx_find as _find, ftx_dib as _dib, ftx_index_delete as _index_delete,
                                ftx_wheel_unlink as _wheel_unlink, ftx_class_of as _class_of,
                                ftx_remove_hashed as _remove_hashed, ftx_lookup_hashed, ftx_insert_new,
                                ftx_remove, ftx_set_state, ftx_set_state_only, ftx_set_deadline,
                                ftx_prefetch, ftx_prefetch_record, FT_PREFETCH, FT_PREFETCH_W)

cdef uint64_t MAX_CAPACITY = 1u << 31     # ids are uint32 with FT_NIL reserved

cdef extern from "mem_impl.h" nogil:
    void *ft_alloc_zeroed(size_t size)
    void ft_free_zeroed(void *p, size_t size)


# ---- hashing ----

cdef uint64_t ft_hash(const ft_table_t *t, const void *key) noexcept nogil:
    return _hash(t, key)


cdef extern from *:
    """
    /* memcmp order of two 16-byte addresses (<0, 0, >0) as two big-endian word compares:
       no libc call on the per-packet path */
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    #define FT_BE64(v) (v)
    #else
    #define FT_BE64(v) __builtin_bswap64(v)
    #endif
    static inline int ft_addr_cmp16(const unsigned char *a, const unsigned char *b) {
        unsigned long long x, y;
        __builtin_memcpy(&x, a, 8); __builtin_memcpy(&y, b, 8);
        if (x != y) { x = FT_BE64(x); y = FT_BE64(y); return x < y ? -1 : 1; }
        __builtin_memcpy(&x, a + 8, 8); __builtin_memcpy(&y, b + 8, 8);
        if (x != y) { x = FT_BE64(x); y = FT_BE64(y); return x < y ? -1 : 1; }
        return 0;
    }
    """
    int ft_addr_cmp16(const uint8_t *a, const uint8_t *b) nogil


cdef bint ft_key_canonical(ft_key_t *k) noexcept nogil:
    """Order (addr, port) pairs so both directions of a flow give the same key."""
    cdef int c = ft_addr_cmp16(k.laddr, k.raddr)
    cdef uint8_t tmp[16]
    cdef uint16_t p
    if c < 0 or (c == 0 and k.lport <= k.rport):
        return False
    memcpy(tmp, k.laddr, 16)
    memcpy(k.laddr, k.raddr, 16)
    memcpy(k.raddr, tmp, 16)
    p = k.lport
    k.lport = k.rport
    k.rport = p
    return True


# ---- init ----

cdef int ft_table_init(ft_table_t *t, uint64_t capacity, uint64_t seed0, uint64_t seed1,
                       bint symmetric, bint evict) noexcept nogil:
    cdef uint64_t nslots, x
    cdef int i
    memset(t, 0, sizeof(ft_table_t))
    if capacity == 0 or capacity > MAX_CAPACITY:
        return -1
    # index at most 60% full: most keys then sit in their home slot, which is what the
    # batch fast path checks (at 80% lookups measured ~35% slower). Any size, not a power
    # of two, so every capacity costs the same 13.3 bytes of index per entry (112 + 13.3
    # = 125.3 bytes per connection all-in).
    nslots = capacity + (capacity * 2) // 3 + 1
    if nslots < 16:
        nslots = 16
    t.capacity = <uint32_t>capacity
    t.nslots = nslots
    t.conns = <ft_conn_t *>ft_alloc_zeroed(capacity * sizeof(ft_conn_t))   # zero pages: RSS grows with use
    t.index = <uint64_t *>ft_alloc_zeroed((nslots + 8) * sizeof(uint64_t))   # + a line for ftx_prefetch
    t.wheel = <uint32_t *>calloc(FT_WHEEL_SIZE, sizeof(uint32_t))
    t.wheel_busy = <uint64_t *>calloc(FT_WHEEL_SIZE // 64, sizeof(uint64_t))
    if t.conns == NULL or t.index == NULL or t.wheel == NULL or t.wheel_busy == NULL:
        ft_table_free(t)
        return -2
    memset(t.wheel, 0xff, FT_WHEEL_SIZE * sizeof(uint32_t))
    t.free_head = FT_NIL
    t.symmetric = symmetric
    t.evict = evict
    for i in range(FT_NCLASSES):
        t.class_head[i] = FT_NIL
        t.class_tail[i] = FT_NIL
        t.class_count[i] = 0
    t.state_class[TCPS_TIME_WAIT] = FT_CLASS_TIME_WAIT
    t.state_class[TCPS_SYN_SENT] = FT_CLASS_EMBRYONIC
    t.state_class[TCPS_SYN_RECEIVED] = FT_CLASS_EMBRYONIC
    # expand the two seed words into the hash key (splitmix64)
    x = seed0 ^ (seed1 * 0x9e3779b97f4a7c15ULL)
    for i in range(6):
        x += 0x9e3779b97f4a7c15ULL
        t.secret[i] = _fmix64(x ^ seed1)
    return 0


cdef void ft_table_free(ft_table_t *t) noexcept nogil:
    ft_free_zeroed(t.conns, <size_t>t.capacity * sizeof(ft_conn_t))
    ft_free_zeroed(t.index, (t.nslots + 8) * sizeof(uint64_t))
    free(t.wheel)
    free(t.wheel_busy)
    t.conns = NULL
    t.index = NULL
    t.wheel = NULL
    t.wheel_busy = NULL
    t.capacity = 0
    t.nslots = 0
    t.count = 0


# ---- lists (the list and index code is in tableops.pxd) ----

cdef void ft_table_set_classes(ft_table_t *t, const uint8_t *classes, int n) noexcept nogil:
    cdef int i
    for i in range(16):
        t.state_class[i] = classes[i] if i < n and classes[i] < FT_NCLASSES else FT_CLASS_NONE


# ---- operations ----

cdef int64_t ft_lookup(ft_table_t *t, const ft_key_t *key) noexcept nogil:
    return ftx_lookup_hashed(t, key, _hash(t, key))


cdef int64_t ft_lookup_hashed(ft_table_t *t, const ft_key_t *key, uint64_t h) noexcept nogil:
    """ft_lookup with the key's hash already computed (pipelined callers)."""
    return ftx_lookup_hashed(t, key, h)


cdef void ft_prefetch(const ft_table_t *t, uint64_t h) noexcept nogil:
    ftx_prefetch(t, h)


cdef void ft_prefetch_record(const ft_table_t *t, uint64_t h) noexcept nogil:
    ftx_prefetch_record(t, h)


cdef enum:
    _HASH_CHUNK = 512                 # hashes computed ahead, on the stack
    _AHEAD_INDEX = 24                 # index slots prefetched this many keys ahead
    _AHEAD_RECORD = 12                 # records prefetched this many keys ahead


cdef void ft_lookup_batch(ft_table_t *t, const ft_key_t *keys, Py_ssize_t n, int64_t *out) noexcept nogil:
    """Software-pipelined lookups: while key i is compared, the index slot of key i+16
    and the record of key i+8 are already on their way, so ~16 cache misses overlap
    instead of being paid one after another."""
    cdef uint64_t h[_HASH_CHUNK]
    cdef uint64_t slot, e
    cdef Py_ssize_t base = 0, i, m, j
    cdef int64_t id
    cdef uint64_t hits = 0
    cdef const ft_conn_t *r
    while base < n:
        m = n - base if n - base < _HASH_CHUNK else _HASH_CHUNK
        for i in range(m):
            h[i] = _hash(t, &keys[base + i])
        for i in range(min(m, <Py_ssize_t>_AHEAD_INDEX)):
            FT_PREFETCH(&t.index[_home(t, <uint32_t>(h[i] >> 32))])
        for i in range(m):
            j = i + _AHEAD_INDEX
            if j < m:
                FT_PREFETCH(&t.index[_home(t, <uint32_t>(h[j] >> 32))])
            j = i + _AHEAD_RECORD
            if j < m:
                e = t.index[_home(t, <uint32_t>(h[j] >> 32))]
                if e != 0:
                    r = &t.conns[<uint32_t>e - 1]
                    FT_PREFETCH(r)
                    FT_PREFETCH((<const char *>r) + 39)     # the key may straddle two lines
            # fast path: the key sits in its home slot (the common case below 80% load)
            e = t.index[_home(t, <uint32_t>(h[i] >> 32))]
            if e != 0 and <uint32_t>(e >> 32) == <uint32_t>(h[i] >> 32) and \
                    _key_eq(&t.conns[<uint32_t>e - 1], &keys[base + i]):
                id = <uint32_t>e - 1
            else:
                id = _find(t, &keys[base + i], h[i], &slot)
            out[base + i] = id
            hits += id >= 0
        base += m
    t.stats.hits += hits
    t.stats.misses += <uint64_t>n - hits


cdef int64_t ft_insert(ft_table_t *t, const ft_key_t *key, uint8_t state, uint64_t now,
                       uint32_t *evicted) noexcept nogil:
    cdef uint64_t h = _hash(t, key), slot
    evicted[0] = FT_NIL
    if _find(t, key, h, &slot) >= 0:
        return FT_TABLE_EXISTS
    return ft_insert_new(t, key, h, state, now, evicted)


cdef int64_t ft_insert_new(ft_table_t *t, const ft_key_t *key, uint64_t h, uint8_t state, uint64_t now,
                           uint32_t *evicted) noexcept nogil:
    """ft_insert for a key the caller just looked up and did not find (h = its hash):
    no second hash, no second probe."""
    return ftx_insert_new(t, key, h, state, now, evicted)


cdef void ft_remove(ft_table_t *t, uint32_t id) noexcept nogil:
    ftx_remove(t, id)


cdef void ft_remove_batch(ft_table_t *t, const uint32_t *ids, Py_ssize_t n) noexcept nogil:
    """Remove many records: hash a group, prefetch their index slots, then delete, so
    the index misses of a group overlap (expiring a million TIME-WAITs is this loop)."""
    cdef uint64_t h[_HASH_CHUNK]
    cdef Py_ssize_t base = 0, i, m
    cdef const char *slot
    while base < n:
        m = n - base if n - base < _HASH_CHUNK else _HASH_CHUNK
        for i in range(m):
            if t.conns[ids[base + i]].family != 0:
                h[i] = _hash(t, &t.conns[ids[base + i]])
                # the home slot's line and the next: the backward shift of a delete
                # moves the entries after it (see ftx_prefetch)
                slot = <const char *>&t.index[_home(t, <uint32_t>(h[i] >> 32))]
                FT_PREFETCH_W(slot)
                FT_PREFETCH_W(slot + 64)
        for i in range(m):
            if t.conns[ids[base + i]].family != 0:
                _remove_hashed(t, ids[base + i], h[i])
        base += m


cdef void ft_set_state(ft_table_t *t, uint32_t id, uint8_t state, uint64_t now) noexcept nogil:
    ftx_set_state(t, id, state, now)


cdef void ft_set_state_only(ft_table_t *t, uint32_t id, uint8_t state) noexcept nogil:
    ftx_set_state_only(t, id, state)


cdef void ft_set_deadline(ft_table_t *t, uint32_t id, uint64_t deadline) noexcept nogil:
    """Arm (or with 0 cancel) the record's timer at an absolute time."""
    ftx_set_deadline(t, id, deadline)


cdef Py_ssize_t _expire_bucket(ft_table_t *t, uint64_t b, uint64_t now, uint32_t *out, uint64_t *fired,
                               Py_ssize_t max_out) noexcept nogil:
    cdef uint32_t id = t.wheel[b], nxt
    cdef Py_ssize_t n = 0
    while id != FT_NIL and n < max_out:
        nxt = t.conns[id].t_next
        if t.conns[id].deadline <= now:
            if fired != NULL:
                fired[n] = t.conns[id].deadline
            _wheel_unlink(t, id)
            out[n] = id
            n += 1
        id = nxt
    return n


cdef Py_ssize_t ft_expire(ft_table_t *t, uint64_t now, uint32_t *out, uint64_t *fired,
                          Py_ssize_t max_out) noexcept nogil:
    """Unlink and return (in `out`) up to max_out records whose deadline is <= now, and
    (if `fired` is not NULL) the deadline each one had. Their deadline reads 0
    afterwards; the records stay in the table for the caller to act on (remove,
    retransmit, ...). Call again while it returns max_out."""
    cdef uint64_t now_tick = now >> FT_TICK_SHIFT, tick, last, b, bits
    cdef uint32_t id, nxt
    cdef Py_ssize_t n = 0
    cdef ft_conn_t *c
    if now_tick < t.cursor:
        # time behind the wheel: only deadlines set in the past since the last expire
        # can be due, and they were all filed in the cursor's bucket
        return _expire_bucket(t, t.cursor & (FT_WHEEL_SIZE - 1), now, out, fired, max_out)
    # one full turn visits every bucket; a longer jump needs no more than that
    last = now_tick if now_tick - t.cursor < FT_WHEEL_SIZE else t.cursor + FT_WHEEL_SIZE - 1
    tick = t.cursor
    while tick <= last:
        b = tick & (FT_WHEEL_SIZE - 1)
        bits = t.wheel_busy[b >> 6] >> (b & 63)
        if bits == 0:
            tick += 64 - (b & 63)         # the rest of this word's buckets are empty
            continue
        tick += <uint64_t>ft_ctz64(bits)  # the next marked bucket (within this word)
        if tick > last:
            break
        b = tick & (FT_WHEEL_SIZE - 1)
        id = t.wheel[b]
        while id != FT_NIL:
            c = &t.conns[id]
            nxt = c.t_next
            if nxt != FT_NIL:
                FT_PREFETCH(&t.conns[nxt])
            if c.deadline <= now:
                if n == max_out:
                    t.cursor = tick
                    return n
                if fired != NULL:
                    fired[n] = c.deadline
                _wheel_unlink(t, id)
                out[n] = id
                n += 1
            id = nxt
        if t.wheel[b] == FT_NIL:
            t.wheel_busy[b >> 6] &= ~((<uint64_t>1) << (b & 63))
        tick += 1
    t.cursor = now_tick
    return n
