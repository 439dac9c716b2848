# cython: language_level=3
"""Connection table: flow key -> connection control block, open addressing, timers.

Layout (chosen for memory per connection, see docs/architecture.md):
  * `conns`: a pool of fixed 112-byte ft_conn_t records. A record never moves while
    it is in use, so its id (index) is a stable handle for timers and Python views.
  * `index`: capacity*5/3 open-addressing slots of 8 bytes, (hash32 << 32) | (id + 1), 0 = empty,
    Robin Hood linear probing with backward-shift deletion (no tombstones: lookups do
    not degrade however many deletions happen). Lookups compare the 32-bit hash first
    and touch a record only on a hash match.
  * timers: a hashed wheel of doubly-linked lists threaded through the records
    (t_prev/t_next), one bucket per 1.024 ms tick, 65536 buckets (67 s per turn; later
    deadlines wait in their bucket for the right turn). A bitmap with a bit per bucket
    (set when a record is filed there, cleared when expiry finds the bucket empty) lets
    expiry step over empty buckets 64 at a time: a capture with minutes between
    packets costs 1024 word reads a gap, not 65536 bucket reads.
  * eviction classes: FIFO lists (c_prev/c_next) of TIME-WAIT and of never-established
    (SYN-SENT/SYN-RECEIVED) records, oldest at the head. Which state codes belong to
    which class is a per-table map, so the tracker's conntrack-style states use it too.
The table knows nothing of TCP beyond "a record has a state, a deadline and a class".
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t

cdef extern from *:
    # GCC/Clang builtin (the build's compilers); only ever called with x != 0
    int ft_ctz64 "__builtin_ctzll"(unsigned long long x) nogil

cdef enum:
    FT_NIL = 0xffffffff               # "no record" in links and ids
    FT_WHEEL_BITS = 16
    FT_WHEEL_SIZE = 1 << 16
    FT_TICK_SHIFT = 10                # 1 tick = 1024 microseconds

# insert() results below 0
cdef enum:
    FT_TABLE_FULL = -1                # refused: full and nothing evictable (or policy refuse)
    FT_TABLE_EXISTS = -2              # the key is already present

# eviction classes
cdef enum:
    FT_CLASS_NONE = 0
    FT_CLASS_TIME_WAIT = 1
    FT_CLASS_EMBRYONIC = 2
    FT_NCLASSES = 3

# TCP states (fasttcp.State mirrors these)
cdef enum:
    TCPS_CLOSED = 0
    TCPS_LISTEN = 1
    TCPS_SYN_SENT = 2
    TCPS_SYN_RECEIVED = 3
    TCPS_ESTABLISHED = 4
    TCPS_FIN_WAIT_1 = 5
    TCPS_FIN_WAIT_2 = 6
    TCPS_CLOSE_WAIT = 7
    TCPS_CLOSING = 8
    TCPS_LAST_ACK = 9
    TCPS_TIME_WAIT = 10
    TCPS_COUNT = 11

# ft_conn_t.flags: options negotiated on the SYN exchange
cdef enum:
    CONN_F_SACK = 1
    CONN_F_TIMESTAMPS = 2
    CONN_F_WSCALE = 4
    CONN_F_SWAPPED = 8                # symmetric table: stored reversed vs. first insert

# The flow key, laid out like the first 40 bytes of ft_conn_t (bytes 1..3 are zero here).
ctypedef struct ft_key_t:
    uint8_t family                    # 4 or 6
    uint8_t _pad[3]
    uint16_t lport                    # host order
    uint16_t rport
    uint8_t laddr[16]                 # IPv4: first 4 bytes, rest zero
    uint8_t raddr[16]

# The connection control block, inline in the pool. 112 bytes.
ctypedef struct ft_conn_t:
    uint8_t family                    # 4 or 6; 0 marks a free record
    uint8_t state                     # TCPS_*
    uint8_t flags                     # CONN_F_*
    uint8_t retransmits               # consecutive retransmissions of the oldest unacked segment
    uint16_t lport
    uint16_t rport
    uint8_t laddr[16]
    uint8_t raddr[16]
    uint64_t deadline                 # next timer in microseconds; 0 = no timer armed
    uint32_t t_prev                   # timer wheel bucket list
    uint32_t t_next
    uint32_t c_prev                   # eviction class list (free list when unused)
    uint32_t c_next
    uint32_t iss                      # initial send sequence number
    uint32_t irs                      # initial receive sequence number
    uint32_t snd_una                  # oldest unacknowledged; snd_una <= snd_nxt
    uint32_t snd_nxt                  # next to send
    uint32_t snd_wnd                  # peer's window, already scaled
    uint32_t snd_wl1                  # seq of the segment that last updated snd_wnd
    uint32_t snd_wl2                  # ack of that segment
    uint32_t rcv_nxt                  # next expected from the peer
    uint32_t rcv_wnd                  # our advertised window, scaled
    uint32_t ts_recent                # RFC 7323 TS.Recent (PAWS)
    uint16_t mss                      # send MSS (peer's option, or 536/1220 default)
    uint8_t wscale                    # (snd shift << 4) | rcv shift, each <= 14
    uint8_t gen                       # incarnation of this record (stale-view detection)
    uint32_t segs                     # segments processed for this connection

ctypedef struct ft_stats_t:
    uint64_t inserts
    uint64_t hits
    uint64_t misses
    uint64_t removals
    uint64_t evictions
    uint64_t refusals
    uint64_t expirations

ctypedef struct ft_table_t:
    ft_conn_t *conns
    uint64_t *index
    uint32_t *wheel                   # FT_WHEEL_SIZE bucket heads
    uint64_t *wheel_busy              # FT_WHEEL_SIZE bits: the bucket may hold records
    uint32_t capacity
    uint32_t count
    uint32_t fresh                    # records [fresh, capacity) never used (untouched pages)
    uint32_t free_head                # recycled records, linked through c_next
    uint64_t nslots                   # capacity * 5/3 + 1 (>= 16): index at most 60% full
    uint64_t secret[6]                # hash key: 5 NH words + 1 finaliser
    uint64_t timeout[TCPS_COUNT]      # per-state timeout, microseconds (0 = none)
    uint64_t cursor                   # timer wheel: last tick processed by expire
    uint32_t class_head[FT_NCLASSES]  # oldest record of each eviction class
    uint32_t class_tail[FT_NCLASSES]
    uint32_t class_count[FT_NCLASSES]  # records in each eviction class
    uint8_t state_class[16]           # eviction class of each state code (the owner's states)
    uint32_t state_count[16]          # records in each state code (the owner's states)
    bint symmetric                    # canonical key order: both directions find one record
    bint evict                        # when full: evict by rule (else refuse)
    ft_stats_t stats

cdef int ft_table_init(ft_table_t *t, uint64_t capacity, uint64_t seed0, uint64_t seed1,
                       bint symmetric, bint evict) noexcept nogil
cdef void ft_table_free(ft_table_t *t) noexcept nogil
# Replace the state -> eviction class map (default: the TCPS_* states of the endpoint).
# Only on an empty table: records carry no class of their own.
cdef void ft_table_set_classes(ft_table_t *t, const uint8_t *classes, int n) noexcept nogil

# Keys and hashing
cdef bint ft_key_canonical(ft_key_t *k) noexcept nogil      # swap to canonical order; True if swapped
cdef uint64_t ft_hash(const ft_table_t *t, const void *key) noexcept nogil

# Core operations. Ids are record indices; FT_NIL (as int64 -1 in lookups) = absent.
cdef int64_t ft_lookup(ft_table_t *t, const ft_key_t *key) noexcept nogil
cdef int64_t ft_lookup_hashed(ft_table_t *t, const ft_key_t *key, uint64_t h) noexcept nogil
cdef void ft_prefetch(const ft_table_t *t, uint64_t h) noexcept nogil
cdef void ft_prefetch_record(const ft_table_t *t, uint64_t h) noexcept nogil
cdef void ft_lookup_batch(ft_table_t *t, const ft_key_t *keys, Py_ssize_t n, int64_t *out) noexcept nogil
cdef int64_t ft_insert(ft_table_t *t, const ft_key_t *key, uint8_t state, uint64_t now,
                       uint32_t *evicted) noexcept nogil
cdef int64_t ft_insert_new(ft_table_t *t, const ft_key_t *key, uint64_t h, uint8_t state, uint64_t now,
                           uint32_t *evicted) noexcept nogil
cdef void ft_remove(ft_table_t *t, uint32_t id) noexcept nogil
cdef void ft_remove_batch(ft_table_t *t, const uint32_t *ids, Py_ssize_t n) noexcept nogil

# State and timers
cdef void ft_set_state(ft_table_t *t, uint32_t id, uint8_t state, uint64_t now) noexcept nogil
cdef void ft_set_deadline(ft_table_t *t, uint32_t id, uint64_t deadline) noexcept nogil
# Change the state (and eviction class) only; the timer is left as it is (for owners
# that re-arm lazily, like the tracker).
cdef void ft_set_state_only(ft_table_t *t, uint32_t id, uint8_t state) noexcept nogil
cdef Py_ssize_t ft_expire(ft_table_t *t, uint64_t now, uint32_t *out, uint64_t *fired,
                          Py_ssize_t max_out) noexcept nogil

# Python-facing time conversion shared by the table and the endpoint: seconds -> microseconds
cdef uint64_t micros(object seconds, str name) except? 0xffffffffffffffff
