# C core of the connection table (included by table.pyx). See table.pxd for the layout.
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memcmp, memset
from fasttcp._core.tablehash cimport (FT_KEY0_MASK, ft_w as _w, ft_fmix64 as _fmix64, ft_nh as _nh,
                                      ft_hash_key as _hash, ft_key_eq as _key_eq, ft_home as _home)

cdef uint64_t MAX_CAPACITY = 1u << 31     # ids are uint32 with FT_NIL reserved

cdef extern from "mem_impl.h" nogil:
    void *ft_alloc_zeroed(size_t size)
    void ft_free_zeroed(void *p, size_t size)
    void ft_copy_words(void *dst, const void *src, size_t n)

cdef extern from *:
    """
    #define FT_PREFETCH(p) __builtin_prefetch((const void *)(p), 0, 1)
    #define FT_PREFETCH_W(p) __builtin_prefetch((const void *)(p), 1, 1)
    """
    void FT_PREFETCH(const void *p) nogil
    void FT_PREFETCH_W(const void *p) nogil



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
    t.index = <uint64_t *>ft_alloc_zeroed(nslots * sizeof(uint64_t))
    t.wheel = <uint32_t *>calloc(FT_WHEEL_SIZE, sizeof(uint32_t))
    if t.conns == NULL or t.index == NULL or t.wheel == NULL:
        ft_table_free(t)
        return -2
    memset(t.wheel, 0xff, FT_WHEEL_SIZE * sizeof(uint32_t))
    t.free_head = FT_NIL
    t.symmetric = symmetric
    t.evict = evict
    for i in range(FT_NCLASSES):
        t.class_head[i] = FT_NIL
        t.class_tail[i] = FT_NIL
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
    ft_free_zeroed(t.index, t.nslots * sizeof(uint64_t))
    free(t.wheel)
    t.conns = NULL
    t.index = NULL
    t.wheel = NULL
    t.capacity = 0
    t.nslots = 0
    t.count = 0


# ---- index (Robin Hood) ----

cdef inline uint64_t _next(const ft_table_t *t, uint64_t i) noexcept nogil:
    i += 1
    return 0 if i == t.nslots else i


cdef inline uint64_t _dib(const ft_table_t *t, uint64_t slot, uint64_t entry) noexcept nogil:
    """Distance of `entry` (stored at `slot`) from its home slot."""
    cdef uint64_t home = _home(t, <uint32_t>(entry >> 32))
    return slot - home if slot >= home else slot + t.nslots - home


cdef inline int64_t _find(const ft_table_t *t, const ft_key_t *key, uint64_t h, uint64_t *slot_out) noexcept nogil:
    cdef uint32_t h32 = <uint32_t>(h >> 32)
    cdef uint64_t i = _home(t, h32), d = 0, e
    while True:
        e = t.index[i]
        if e == 0:
            return -1
        if <uint32_t>(e >> 32) == h32 and _key_eq(&t.conns[<uint32_t>e - 1], key):
            slot_out[0] = i
            return <uint32_t>e - 1
        if _dib(t, i, e) < d:
            return -1                 # Robin Hood: our key would have displaced this one
        i = _next(t, i)
        d += 1


cdef inline void _index_insert(ft_table_t *t, uint64_t h, uint32_t id) noexcept nogil:
    cdef uint64_t e = ((h >> 32) << 32) | (<uint64_t>id + 1)
    cdef uint64_t i = _home(t, <uint32_t>(h >> 32)), d = 0, cur, dcur
    while True:
        cur = t.index[i]
        if cur == 0:
            t.index[i] = e
            return
        dcur = _dib(t, i, cur)
        if dcur < d:                  # take from the rich: swap and carry the displaced entry on
            t.index[i] = e
            e = cur
            d = dcur
        i = _next(t, i)
        d += 1


cdef inline void _index_delete(ft_table_t *t, uint64_t slot) noexcept nogil:
    # backward shift: pull the following displaced entries one slot closer to home
    cdef uint64_t nxt = _next(t, slot), e
    while True:
        e = t.index[nxt]
        if e == 0 or _dib(t, nxt, e) == 0:
            break
        t.index[slot] = e
        slot = nxt
        nxt = _next(t, nxt)
    t.index[slot] = 0


# ---- lists ----

cdef enum:
    _HEAD = 0x80000000                # t_prev of a bucket's first record: _HEAD | bucket


cdef inline void _wheel_unlink(ft_table_t *t, uint32_t id) noexcept nogil:
    cdef ft_conn_t *c = &t.conns[id]
    if c.deadline == 0:
        return
    if c.t_prev & _HEAD:
        t.wheel[c.t_prev & (FT_WHEEL_SIZE - 1)] = c.t_next
    else:
        t.conns[c.t_prev].t_next = c.t_next
    if c.t_next != FT_NIL:
        t.conns[c.t_next].t_prev = c.t_prev     # a new head inherits the bucket mark
    c.deadline = 0
    c.t_prev = FT_NIL
    c.t_next = FT_NIL


cdef inline void _wheel_link(ft_table_t *t, uint32_t id, uint64_t deadline) noexcept nogil:
    """File the record under its deadline's tick; a deadline already behind the wheel
    (earlier than the last expire) goes to the bucket the next expire visits first. The
    record keeps its true deadline either way: the head of each bucket list carries the
    bucket number in t_prev, so unlinking never has to recompute it."""
    cdef ft_conn_t *c = &t.conns[id]
    cdef uint64_t tick = deadline >> FT_TICK_SHIFT
    cdef uint32_t b
    if deadline == 0:
        deadline = 1                  # 0 means "no timer"
    if tick < t.cursor:
        tick = t.cursor
    b = <uint32_t>(tick & (FT_WHEEL_SIZE - 1))
    c.deadline = deadline
    c.t_prev = _HEAD | b
    c.t_next = t.wheel[b]
    if c.t_next != FT_NIL:
        t.conns[c.t_next].t_prev = id
    t.wheel[b] = id


cdef inline int _class_of(const ft_table_t *t, uint8_t state) noexcept nogil:
    return t.state_class[state & 15]


cdef void ft_table_set_classes(ft_table_t *t, const uint8_t *classes, int n) noexcept nogil:
    cdef int i
    for i in range(16):
        t.state_class[i] = classes[i] if i < n and classes[i] < FT_NCLASSES else FT_CLASS_NONE


cdef inline void _class_unlink(ft_table_t *t, uint32_t id, int cls) noexcept nogil:
    cdef ft_conn_t *c = &t.conns[id]
    if cls == FT_CLASS_NONE:
        return
    if c.c_prev != FT_NIL:
        t.conns[c.c_prev].c_next = c.c_next
    else:
        t.class_head[cls] = c.c_next
    if c.c_next != FT_NIL:
        t.conns[c.c_next].c_prev = c.c_prev
    else:
        t.class_tail[cls] = c.c_prev
    c.c_prev = FT_NIL
    c.c_next = FT_NIL


cdef inline void _class_append(ft_table_t *t, uint32_t id, int cls) noexcept nogil:
    cdef ft_conn_t *c = &t.conns[id]
    c.c_prev = FT_NIL
    c.c_next = FT_NIL
    if cls == FT_CLASS_NONE:
        return
    c.c_prev = t.class_tail[cls]
    if c.c_prev != FT_NIL:
        t.conns[c.c_prev].c_next = id
    else:
        t.class_head[cls] = id
    t.class_tail[cls] = id


# ---- operations ----

cdef int64_t ft_lookup(ft_table_t *t, const ft_key_t *key) noexcept nogil:
    cdef uint64_t slot
    cdef int64_t id = _find(t, key, _hash(t, key), &slot)
    if id >= 0:
        t.stats.hits += 1
    else:
        t.stats.misses += 1
    return id


cdef int64_t ft_lookup_hashed(ft_table_t *t, const ft_key_t *key, uint64_t h) noexcept nogil:
    """ft_lookup with the key's hash already computed (pipelined callers)."""
    cdef uint64_t slot
    cdef int64_t id = _find(t, key, h, &slot)
    if id >= 0:
        t.stats.hits += 1
    else:
        t.stats.misses += 1
    return id


cdef void ft_prefetch(const ft_table_t *t, uint64_t h) noexcept nogil:
    """Start loading the index slot where a key of hash h lives (a hint, nothing more)."""
    FT_PREFETCH(&t.index[_home(t, <uint32_t>(h >> 32))])


cdef void ft_prefetch_record(const ft_table_t *t, uint64_t h) noexcept nogil:
    """Second pipeline stage: read the (prefetched) home slot and start loading the record
    it points to, if its stored hash matches."""
    cdef uint64_t e = t.index[_home(t, <uint32_t>(h >> 32))]
    cdef const ft_conn_t *r
    if e != 0 and <uint32_t>(e >> 32) == <uint32_t>(h >> 32):
        r = &t.conns[<uint32_t>e - 1]
        FT_PREFETCH(r)
        FT_PREFETCH((<const char *>r) + 64)


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


cdef inline uint32_t _victim(ft_table_t *t) noexcept nogil:
    # conntrack early_drop / Linux tw bucket cap: TIME-WAIT first, then never-established
    if t.class_head[FT_CLASS_TIME_WAIT] != FT_NIL:
        return t.class_head[FT_CLASS_TIME_WAIT]
    return t.class_head[FT_CLASS_EMBRYONIC]


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
    cdef uint32_t id
    cdef ft_conn_t *c
    cdef uint8_t gen
    evicted[0] = FT_NIL
    if t.count >= t.capacity:
        if not t.evict:
            t.stats.refusals += 1
            return FT_TABLE_FULL
        id = _victim(t)
        if id == FT_NIL:
            t.stats.refusals += 1
            return FT_TABLE_FULL
        ft_remove(t, id)
        t.stats.evictions += 1
        evicted[0] = id
    if t.free_head != FT_NIL:
        id = t.free_head
        t.free_head = t.conns[id].c_next
    else:
        id = t.fresh
        t.fresh += 1
    c = &t.conns[id]
    gen = c.gen
    memset(c, 0, sizeof(ft_conn_t))
    ft_copy_words(c, key, 5)          # read back as words: see mem_impl.h
    c.family = key.family
    c.state = 0
    c.gen = gen
    c.t_prev = FT_NIL
    c.t_next = FT_NIL
    _index_insert(t, h, id)
    t.count += 1
    t.stats.inserts += 1
    c.state = TCPS_CLOSED
    # start in the class of state 0 (the owner's map may give it one), then move
    _class_append(t, id, _class_of(t, c.state))
    ft_set_state(t, id, state, now)
    return id


cdef void ft_remove(ft_table_t *t, uint32_t id) noexcept nogil:
    cdef const ft_conn_t *c = &t.conns[id]
    if c.family != 0:
        _remove_hashed(t, id, _hash(t, c))      # a record's first 40 bytes read as its key


cdef inline void _remove_hashed(ft_table_t *t, uint32_t id, uint64_t h) noexcept nogil:
    cdef ft_conn_t *c = &t.conns[id]
    cdef uint64_t slot
    if _find(t, <const ft_key_t *>c, h, &slot) == id:
        _index_delete(t, slot)
    _wheel_unlink(t, id)
    _class_unlink(t, id, _class_of(t, c.state))
    c.family = 0
    c.gen += 1                        # stale Connection views notice
    c.c_next = t.free_head
    t.free_head = id
    t.count -= 1
    t.stats.removals += 1


cdef void ft_remove_batch(ft_table_t *t, const uint32_t *ids, Py_ssize_t n) noexcept nogil:
    """Remove many records: hash a group, prefetch their index slots, then delete, so
    the index misses of a group overlap (expiring a million TIME-WAITs is this loop)."""
    cdef uint64_t h[_HASH_CHUNK]
    cdef Py_ssize_t base = 0, i, m
    while base < n:
        m = n - base if n - base < _HASH_CHUNK else _HASH_CHUNK
        for i in range(m):
            if t.conns[ids[base + i]].family != 0:
                h[i] = _hash(t, &t.conns[ids[base + i]])
                FT_PREFETCH_W(&t.index[_home(t, <uint32_t>(h[i] >> 32))])
        for i in range(m):
            if t.conns[ids[base + i]].family != 0:
                _remove_hashed(t, ids[base + i], h[i])
        base += m


cdef void ft_set_state(ft_table_t *t, uint32_t id, uint8_t state, uint64_t now) noexcept nogil:
    """Enter `state`: move between eviction classes (a TIME-WAIT re-entry goes to the
    back: it is young again) and arm the state's timeout (none if it is 0)."""
    cdef ft_conn_t *c = &t.conns[id]
    cdef int old_cls = _class_of(t, c.state), new_cls = _class_of(t, state)
    if old_cls != new_cls or new_cls == FT_CLASS_TIME_WAIT:
        _class_unlink(t, id, old_cls)
        _class_append(t, id, new_cls)
    c.state = state
    _wheel_unlink(t, id)
    if t.timeout[state]:
        _wheel_link(t, id, now + t.timeout[state])


cdef void ft_set_state_only(ft_table_t *t, uint32_t id, uint8_t state) noexcept nogil:
    cdef ft_conn_t *c = &t.conns[id]
    cdef int old_cls = _class_of(t, c.state), new_cls = _class_of(t, state)
    if old_cls != new_cls or new_cls == FT_CLASS_TIME_WAIT:
        _class_unlink(t, id, old_cls)
        _class_append(t, id, new_cls)
    c.state = state


cdef void ft_set_deadline(ft_table_t *t, uint32_t id, uint64_t deadline) noexcept nogil:
    """Arm (or with 0 cancel) the record's timer at an absolute time."""
    _wheel_unlink(t, id)
    if deadline:
        _wheel_link(t, id, deadline)


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
    cdef uint64_t now_tick = now >> FT_TICK_SHIFT, tick, last
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
        id = t.wheel[tick & (FT_WHEEL_SIZE - 1)]
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
        tick += 1
    t.cursor = now_tick
    return n
