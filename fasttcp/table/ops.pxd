# cython: language_level=3
"""The connection table's operations as inline functions.

table.pyx exports them as ft_* functions (table.pxd) for any module to call; the
per-packet loops of the endpoint and the tracker cimport these ftx_* versions instead,
so a lookup, insert, state change or timer re-arm compiles into the loop that does it:
no call across modules, no argument spills, and constant states fold away. The
exported ft_* operations of the same name are thin wrappers around these.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.string cimport memset
from fasttcp.table.table cimport (ft_table_t, ft_conn_t, ft_key_t, ft_remove, FT_NIL, FT_WHEEL_SIZE,
                                  FT_TICK_SHIFT, FT_TABLE_FULL, FT_CLASS_NONE, FT_CLASS_TIME_WAIT,
                                  FT_CLASS_EMBRYONIC, TCPS_CLOSED)
from fasttcp.table.keyhash cimport ft_hash_key, ft_key_eq, ft_home

cdef extern from "mem_impl.h" nogil:
    void ft_copy_words(void *dst, const void *src, size_t n)

# Prefetches into every cache level (locality 3: PREFETCHT0 on x86, for writes too unless
# the target has PREFETCHW). The pipelines read each prefetched line a few packets later,
# well within the L1's reach; a lower locality hint is PREFETCHT1/T2, which on Intel fill
# only the L2 and higher (Intel SDM vol. 2, PREFETCHh), so each use still paid an L2
# access: measured on a Xeon (2.1 GHz, 2 MiB L2), locality 1 gave the endpoint's
# cache-resident handshakes 0.73x the lean C loop in the same run and locality 3 0.78x
# (three runs each).
cdef extern from *:
    """
    #define FT_PREFETCH(p) __builtin_prefetch((const void *)(p), 0, 3)
    #define FT_PREFETCH_W(p) __builtin_prefetch((const void *)(p), 1, 3)
    """
    void FT_PREFETCH(const void *p) nogil
    void FT_PREFETCH_W(const void *p) nogil


# ---- index (Robin Hood) ----

cdef inline uint64_t ftx_next(const ft_table_t *t, uint64_t i) noexcept nogil:
    i += 1
    return 0 if i == t.nslots else i


cdef inline uint64_t ftx_dib(const ft_table_t *t, uint64_t slot, uint64_t entry) noexcept nogil:
    """Distance of `entry` (stored at `slot`) from its home slot."""
    cdef uint64_t home = ft_home(t, <uint32_t>(entry >> 32))
    return slot - home if slot >= home else slot + t.nslots - home


cdef inline int64_t ftx_find(const ft_table_t *t, const ft_key_t *key, uint64_t h,
                             uint64_t *slot_out) noexcept nogil:
    cdef uint32_t h32 = <uint32_t>(h >> 32)
    cdef uint64_t i = ft_home(t, h32), d = 0, e
    while True:
        e = t.index[i]
        if e == 0:
            return -1
        if <uint32_t>(e >> 32) == h32 and ft_key_eq(&t.conns[<uint32_t>e - 1], key):
            slot_out[0] = i
            return <uint32_t>e - 1
        if ftx_dib(t, i, e) < d:
            return -1                 # Robin Hood: our key would have displaced this one
        i = ftx_next(t, i)
        d += 1


cdef inline void ftx_index_insert(ft_table_t *t, uint64_t h, uint32_t id) noexcept nogil:
    cdef uint64_t e = ((h >> 32) << 32) | (<uint64_t>id + 1)
    cdef uint64_t i = ft_home(t, <uint32_t>(h >> 32)), d = 0, cur, dcur
    while True:
        cur = t.index[i]
        if cur == 0:
            t.index[i] = e
            return
        dcur = ftx_dib(t, i, cur)
        if dcur < d:                  # take from the rich: swap and carry the displaced entry on
            t.index[i] = e
            e = cur
            d = dcur
        i = ftx_next(t, i)
        d += 1


cdef inline void ftx_index_delete(ft_table_t *t, uint64_t slot) noexcept nogil:
    # backward shift: pull the following displaced entries one slot closer to home
    cdef uint64_t nxt = ftx_next(t, slot), e
    while True:
        e = t.index[nxt]
        if e == 0 or ftx_dib(t, nxt, e) == 0:
            break
        t.index[slot] = e
        slot = nxt
        nxt = ftx_next(t, nxt)
    t.index[slot] = 0


# ---- timer wheel and eviction-class lists (threaded through the records) ----

cdef enum:
    FTX_HEAD = 0x80000000                # t_prev of a bucket's first record: FTX_HEAD | bucket


cdef inline void ftx_wheel_unlink(ft_table_t *t, uint32_t id) noexcept nogil:
    cdef ft_conn_t *c = &t.conns[id]
    if c.deadline == 0:
        return
    if c.t_prev & FTX_HEAD:
        t.wheel[c.t_prev & (FT_WHEEL_SIZE - 1)] = c.t_next
    else:
        t.conns[c.t_prev].t_next = c.t_next
    if c.t_next != FT_NIL:
        t.conns[c.t_next].t_prev = c.t_prev     # a new head inherits the bucket mark
    c.deadline = 0
    c.t_prev = FT_NIL
    c.t_next = FT_NIL


cdef inline void ftx_wheel_link(ft_table_t *t, uint32_t id, uint64_t deadline) noexcept nogil:
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
    c.t_prev = FTX_HEAD | b
    c.t_next = t.wheel[b]
    if c.t_next != FT_NIL:
        t.conns[c.t_next].t_prev = id
    t.wheel[b] = id
    # mark the bucket for expiry; unlinking leaves the mark (one store fewer on the
    # hot path) and expiry clears it when it finds the bucket empty
    t.wheel_busy[b >> 6] |= (<uint64_t>1) << (b & 63)


cdef inline int ftx_class_of(const ft_table_t *t, uint8_t state) noexcept nogil:
    return t.state_class[state & 15]


cdef inline void ftx_class_unlink(ft_table_t *t, uint32_t id, int cls) noexcept nogil:
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
    t.class_count[cls] -= 1


cdef inline void ftx_class_append(ft_table_t *t, uint32_t id, int cls) noexcept nogil:
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
    t.class_count[cls] += 1


# ---- operations ----

cdef inline int64_t ftx_lookup_hashed(ft_table_t *t, const ft_key_t *key, uint64_t h) noexcept nogil:
    """Find the record of `key` (h = its hash): its id, or -1."""
    cdef uint64_t slot
    cdef int64_t id = ftx_find(t, key, h, &slot)
    if id >= 0:
        t.stats.hits += 1
    else:
        t.stats.misses += 1
    return id


cdef inline int64_t ftx_lookup(ft_table_t *t, const ft_key_t *key, uint64_t h) noexcept nogil:
    """ftx_lookup_hashed with its common case first: the key in its home slot (below
    60% load most keys are)."""
    cdef uint64_t e = t.index[ft_home(t, <uint32_t>(h >> 32))]
    if e != 0 and <uint32_t>(e >> 32) == <uint32_t>(h >> 32) and ft_key_eq(&t.conns[<uint32_t>e - 1], key):
        t.stats.hits += 1
        return <uint32_t>e - 1
    return ftx_lookup_hashed(t, key, h)


cdef inline void ftx_prefetch(const ft_table_t *t, uint64_t h) noexcept nogil:
    """Start loading the index slot where a key of hash h lives (a hint, nothing more),
    and the cache line after it: in a well-filled table a probe often runs past the end
    of the home slot's line (at 60% load a miss probes ~3.6 slots, an insert shifts
    entries onward), and that second line would be a cache miss the pipeline cannot
    overlap. (The index has a spare line past its end for this: see ft_table_init.)"""
    cdef const uint64_t *slot = &t.index[ft_home(t, <uint32_t>(h >> 32))]
    FT_PREFETCH(slot)
    FT_PREFETCH((<const char *>slot) + 64)


cdef inline void ftx_prefetch_w(const ft_table_t *t, uint64_t h) noexcept nogil:
    """ftx_prefetch for a slot about to be written (an insert or a delete)."""
    cdef const uint64_t *slot = &t.index[ft_home(t, <uint32_t>(h >> 32))]
    FT_PREFETCH_W(slot)
    FT_PREFETCH_W((<const char *>slot) + 64)


cdef inline void ftx_prefetch_conn(const ft_conn_t *r) noexcept nogil:
    """Start loading every cache line of a record. A 112-byte record at 112*id spans
    three lines when it starts in the second half of one (every other record: ids
    1 and 2 mod 4); its first, its 65th and its last byte name them all."""
    FT_PREFETCH(r)
    FT_PREFETCH((<const char *>r) + 64)
    FT_PREFETCH((<const char *>r) + sizeof(ft_conn_t) - 1)


cdef inline void ftx_prefetch_conn_w(const ft_conn_t *r) noexcept nogil:
    """ftx_prefetch_conn for a record about to be written."""
    FT_PREFETCH_W(r)
    FT_PREFETCH_W((<const char *>r) + 64)
    FT_PREFETCH_W((<const char *>r) + sizeof(ft_conn_t) - 1)


cdef inline void ftx_prefetch_record(const ft_table_t *t, uint64_t h) noexcept nogil:
    """Second pipeline stage: read the (prefetched) home slot and start loading the record
    it points to, if its stored hash matches."""
    cdef uint64_t e = t.index[ft_home(t, <uint32_t>(h >> 32))]
    if e != 0 and <uint32_t>(e >> 32) == <uint32_t>(h >> 32):
        ftx_prefetch_conn(&t.conns[<uint32_t>e - 1])


cdef inline void ftx_remove(ft_table_t *t, uint32_t id) noexcept nogil:
    cdef const ft_conn_t *c = &t.conns[id]
    if c.family != 0:
        ftx_remove_hashed(t, id, ft_hash_key(t, c))      # a record's first 40 bytes read as its key


cdef inline void ftx_remove_hashed(ft_table_t *t, uint32_t id, uint64_t h) noexcept nogil:
    cdef ft_conn_t *c = &t.conns[id]
    cdef uint64_t slot
    if ftx_find(t, <const ft_key_t *>c, h, &slot) == id:
        ftx_index_delete(t, slot)
    ftx_wheel_unlink(t, id)
    ftx_class_unlink(t, id, ftx_class_of(t, c.state))
    t.state_count[c.state & 15] -= 1
    c.family = 0
    c.gen += 1                        # stale Connection views notice
    c.c_next = t.free_head
    t.free_head = id
    t.count -= 1
    t.stats.removals += 1


cdef inline void ftx_class_move(ft_table_t *t, uint32_t id, uint8_t old, uint8_t state) noexcept nogil:
    """Move a record leaving state `old` for `state` between eviction classes (a
    TIME-WAIT re-entry goes to the back: it is young again)."""
    cdef int old_cls = ftx_class_of(t, old), new_cls = ftx_class_of(t, state)
    t.state_count[old & 15] -= 1
    t.state_count[state & 15] += 1
    if old_cls != new_cls or new_cls == FT_CLASS_TIME_WAIT:
        ftx_class_unlink(t, id, old_cls)
        ftx_class_append(t, id, new_cls)


cdef inline void ftx_set_state(ft_table_t *t, uint32_t id, uint8_t state, uint64_t now) noexcept nogil:
    """Enter `state`: move between eviction classes and arm the state's timeout (none if
    it is 0)."""
    cdef ft_conn_t *c = &t.conns[id]
    ftx_class_move(t, id, c.state, state)
    c.state = state
    ftx_wheel_unlink(t, id)
    if t.timeout[state]:
        ftx_wheel_link(t, id, now + t.timeout[state])


cdef inline void ftx_set_state_only(ft_table_t *t, uint32_t id, uint8_t state) noexcept nogil:
    """ftx_set_state without the timer (for owners that re-arm lazily, like the tracker)."""
    ftx_class_move(t, id, t.conns[id].state, state)
    t.conns[id].state = state


cdef inline void ftx_set_deadline(ft_table_t *t, uint32_t id, uint64_t deadline) noexcept nogil:
    """Arm (or with 0 cancel) the record's timer at an absolute time."""
    ftx_wheel_unlink(t, id)
    if deadline:
        ftx_wheel_link(t, id, deadline)


cdef inline uint32_t ftx_victim(const ft_table_t *t) noexcept nogil:
    """The table's eviction rule, for an insert into a full table: the record it gives
    up, its oldest TIME-WAIT, else its oldest never-established one (conntrack's
    early_drop, Linux's cap on TIME-WAIT buckets). FT_NIL when it has neither, or when
    it refuses inserts rather than evict. The endpoint and the tracker ask it too: they
    finish the victim with an event or a row of their own before inserting."""
    if not t.evict:
        return FT_NIL
    if t.class_head[FT_CLASS_TIME_WAIT] != FT_NIL:
        return t.class_head[FT_CLASS_TIME_WAIT]
    return t.class_head[FT_CLASS_EMBRYONIC]


cdef inline int64_t ftx_insert_new(ft_table_t *t, const ft_key_t *key, uint64_t h, uint8_t state,
                                   uint64_t now, uint32_t *evicted) noexcept nogil:
    """ft_insert for a key the caller just looked up and did not find (h = its hash):
    no second hash, no second probe."""
    cdef uint32_t id
    cdef ft_conn_t *c
    cdef uint8_t gen
    evicted[0] = FT_NIL
    if t.count >= t.capacity:
        id = ftx_victim(t)
        if id == FT_NIL:
            t.stats.refusals += 1
            return FT_TABLE_FULL
        ft_remove(t, id)
        t.stats.evictions += 1
        evicted[0] = id
    if t.free_head != FT_NIL:
        id = t.free_head
        t.free_head = t.conns[id].c_next
        gen = t.conns[id].gen             # a recycled id's generation carries on
    else:
        id = t.fresh
        t.fresh += 1
        # a record never used is zero: not read here, because reading a page before
        # writing it maps the shared zero page and the write then copies it, flushing
        # the TLB of every CPU the process runs on (an IPI each, with worker threads)
        gen = 0
    # start loading the record the next insert takes: recycled records come off a
    # list, each address read from the record before, a chain no pipeline can run
    # ahead of (one the bench's in-order closes keep sequential, random traffic not)
    if t.free_head != FT_NIL:
        ftx_prefetch_conn_w(&t.conns[t.free_head])
    elif t.fresh < t.capacity:
        ftx_prefetch_conn_w(&t.conns[t.fresh])
    c = &t.conns[id]
    memset(c, 0, sizeof(ft_conn_t))
    ft_copy_words(c, key, 5)          # read back as words: see mem_impl.h
    c.family = key.family
    c.state = 0
    c.gen = gen
    c.t_prev = FT_NIL
    c.t_next = FT_NIL
    ftx_index_insert(t, h, id)
    t.count += 1
    t.stats.inserts += 1
    # straight into `state`: what entering it from CLOSED would leave (the class list's
    # tail, its count, its timeout armed) without the detour through CLOSED's class
    # and count, and the unlink of a timer the zeroed record does not have
    c.state = state
    t.state_count[state & 15] += 1
    ftx_class_append(t, id, ftx_class_of(t, state))
    if t.timeout[state]:
        ftx_wheel_link(t, id, now + t.timeout[state])
    return id
