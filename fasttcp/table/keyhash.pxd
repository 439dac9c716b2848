# cython: language_level=3
"""The table's per-packet helpers as inline functions: the keyed hash, key comparison
and the home slot (the operations themselves are in tableops.pxd). In a .pxd so that
every module that cimports them (the table itself, the endpoint, the tracker) compiles
them inline into its own hot loop instead of calling across modules -- the hash and the
first probe are most of a lookup's cost."""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.string cimport memcpy
from fasttcp.table.table cimport ft_table_t, ft_conn_t, ft_key_t

# bytes 1..3 of the first key word hold state/flags/retransmits in a record: not key
cdef extern from *:
    """
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    #define FT_KEY0_MASK 0xff000000ffffffffULL
    #else
    #define FT_KEY0_MASK 0xffffffff000000ffULL
    #endif
    """
    const uint64_t FT_KEY0_MASK

cdef extern from *:
    """
    /* word 0 of a key (family, 3 pad bytes, lport, rport) built in a register */
    static inline unsigned long long ft_key_word0(unsigned char family, unsigned short lport,
                                                  unsigned short rport) {
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        return ((unsigned long long)family << 56) | ((unsigned long long)lport << 16) | rport;
    #else
        return family | ((unsigned long long)lport << 32) | ((unsigned long long)rport << 48);
    #endif
    }
    /* big-endian value of 8 bytes loaded natively: memcmp order as integer order */
    static inline unsigned long long ft_be64(unsigned long long v) {
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        return v;
    #else
        return __builtin_bswap64(v);
    #endif
    }
    /* an IPv4 key: family 4 in word 0; its two addresses are the first 4 bytes of
     * words 1 and 3 (the rest of each 16-byte address is zero), packed into one word */
    static inline int ft_key0_is_v4(unsigned long long w0) {
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        return (w0 >> 56) == 4;
    #else
        return (w0 & 0xff) == 4;
    #endif
    }
    /* nonzero when an IPv4 key's address padding (bytes 4..15 of each address) is not
     * zero: only a caller-built key can have it */
    static inline unsigned long long ft_v4_padding(unsigned long long w1, unsigned long long w2,
                                                   unsigned long long w3, unsigned long long w4) {
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        return w2 | w4 | (w1 & 0xffffffffULL) | (w3 & 0xffffffffULL);
    #else
        return w2 | w4 | (w1 >> 32) | (w3 >> 32);
    #endif
    }
    static inline unsigned long long ft_v4_pair(unsigned long long w1, unsigned long long w3) {
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        return (w1 & 0xffffffff00000000ULL) | (w3 >> 32);
    #else
        return (w1 & 0xffffffffULL) | (w3 << 32);
    #endif
    }
    """
    uint64_t ft_key_word0(uint8_t family, uint16_t lport, uint16_t rport) nogil
    uint64_t ft_be64(uint64_t v) nogil
    bint ft_key0_is_v4(uint64_t w0) nogil
    uint64_t ft_v4_pair(uint64_t w1, uint64_t w3) nogil
    uint64_t ft_v4_padding(uint64_t w1, uint64_t w2, uint64_t w3, uint64_t w4) nogil


cdef inline uint64_t ft_w(const void *p, int i) noexcept nogil:
    cdef uint64_t v
    memcpy(&v, (<const char *>p) + 8 * i, 8)      # one unaligned load
    return v


cdef inline uint64_t ft_fmix64(uint64_t h) noexcept nogil:
    # MurmurHash3 finaliser: a bijection that spreads every input bit over the output
    h ^= h >> 33
    h *= 0xff51afd7ed558ccdULL
    h ^= h >> 33
    h *= 0xc4ceb9fe1a85ec53ULL
    h ^= h >> 33
    return h


cdef inline uint64_t ft_nh(uint64_t w, uint64_t s) noexcept nogil:
    return (<uint64_t><uint32_t>(<uint32_t>w + <uint32_t>s)
            * <uint64_t><uint32_t>(<uint32_t>(w >> 32) + <uint32_t>(s >> 32)))


cdef inline uint64_t ft_hash_key(const ft_table_t *t, const void *key) noexcept nogil:
    """Keyed hash of the 40 key bytes (a key or a record): NH universal hashing.

    NH (UMAC, RFC 4418) sums ((m_lo + k_lo) * (m_hi + k_hi)) over 32-bit halves with a
    secret key; two distinct keys collide with probability <= 2^-32 over the choice of
    the secret, so someone who does not know it cannot aim many 4-tuples at one slot.
    """
    return ft_hash_words(t, ft_w(key, 0), ft_w(key, 1), ft_w(key, 2), ft_w(key, 3), ft_w(key, 4))


cdef inline uint64_t ft_hash_words(const ft_table_t *t, uint64_t w0, uint64_t w1, uint64_t w2,
                                   uint64_t w3, uint64_t w4) noexcept nogil:
    """ft_hash_key of a key held in registers as its five 64-bit words (callers that
    build keys word by word avoid a store-then-reload of the key).

    An IPv4 key's 8 address bytes are one NH word (its other 24 bytes are zero
    padding): two products instead of five on the common path. The pair is injective
    on IPv4 addresses, so the collision bound holds for IPv4 keys as for IPv6 ones.
    An IPv4 key whose padding is not zero (only a caller-built key can have it) takes
    the full five-word hash, so such keys cannot pile onto one slot."""
    cdef uint64_t acc = ft_nh(w0 & FT_KEY0_MASK, t.secret[0])
    if ft_key0_is_v4(w0) and ft_v4_padding(w1, w2, w3, w4) == 0:
        acc += ft_nh(ft_v4_pair(w1, w3), t.secret[1])
        return ft_fmix64(acc ^ t.secret[5])
    return ft_hash_words5(t, w0, w1, w2, w3, w4)


cdef inline uint64_t ft_key_store_hash(const ft_table_t *t, ft_key_t *k, uint64_t w0, uint64_t w1,
                                       uint64_t w2, uint64_t w3, uint64_t w4) noexcept nogil:
    """Store a key built in registers word by word (the width it is read back with:
    byte stores reloaded as words would stall store forwarding) and return its hash."""
    memcpy(<char *>k, &w0, 8)
    memcpy((<char *>k) + 8, &w1, 8)
    memcpy((<char *>k) + 16, &w2, 8)
    memcpy((<char *>k) + 24, &w3, 8)
    memcpy((<char *>k) + 32, &w4, 8)
    return ft_hash_words(t, w0, w1, w2, w3, w4)


cdef inline uint64_t ft_key_build_hash(const ft_table_t *t, ft_key_t *k, uint8_t family, uint16_t lport,
                                       uint16_t rport, const uint8_t *laddr, const uint8_t *raddr) noexcept nogil:
    """Build a key from a parsed packet's fields (its addresses 16 zero-padded bytes
    each, as in pkt_t) as five words in registers, store it in `k`, and return its
    hash: the per-packet key of the endpoint (local = the destination) and of the
    tracker (canonical order)."""
    cdef uint64_t a0, a1, b0, b1
    memcpy(&a0, laddr, 8)
    memcpy(&a1, laddr + 8, 8)
    memcpy(&b0, raddr, 8)
    memcpy(&b1, raddr + 8, 8)
    return ft_key_store_hash(t, k, ft_key_word0(family, lport, rport), a0, a1, b0, b1)


cdef inline uint64_t ft_hash_words5(const ft_table_t *t, uint64_t w0, uint64_t w1, uint64_t w2,
                                    uint64_t w3, uint64_t w4) noexcept nogil:
    """NH over all five key words, whatever the family."""
    return ft_nh5(t.secret, w0, w1, w2, w3, w4)


cdef inline uint64_t ft_nh5(const uint64_t *secret, uint64_t w0, uint64_t w1, uint64_t w2,
                            uint64_t w3, uint64_t w4) noexcept nogil:
    """ft_hash_words5 under any 6-word secret (the endpoint's RFC 6528 ISN function
    uses it with its own, so ISNs for a given secret do not depend on the table's
    shortcuts)."""
    cdef uint64_t acc = ft_nh(w0 & FT_KEY0_MASK, secret[0])
    acc += ft_nh(w1, secret[1])
    acc += ft_nh(w2, secret[2])
    acc += ft_nh(w3, secret[3])
    acc += ft_nh(w4, secret[4])
    return ft_fmix64(acc ^ secret[5])


cdef inline bint ft_key_eq(const ft_conn_t *c, const ft_key_t *k) noexcept nogil:
    # ports + family and the first address word reject almost every non-match at once
    if ((ft_w(c, 0) ^ ft_w(k, 0)) & FT_KEY0_MASK) | (ft_w(c, 1) ^ ft_w(k, 1)):
        return False
    return ((ft_w(c, 2) ^ ft_w(k, 2)) | (ft_w(c, 3) ^ ft_w(k, 3)) | (ft_w(c, 4) ^ ft_w(k, 4))) == 0


cdef inline uint64_t ft_home(const ft_table_t *t, uint32_t h32) noexcept nogil:
    # Lemire's multiply-shift range reduction: h32 * nslots / 2^32, no division
    return (<uint64_t>h32 * t.nslots) >> 32
