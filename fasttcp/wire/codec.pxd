# cython: language_level=3
"""Wire layer: IPv4/IPv6/TCP parsing into pkt_t and building from values.

All functions are nogil, allocate nothing and never read outside [buf, buf+len).
They return an FT_* code (defs.pxd); on error `err` says which field and where.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset
from fasttcp.wire.defs cimport *
from fasttcp.wire.checksum cimport (ft_csum_partial, ft_csum_fold, ft_csum_ok, ft_ipv4_tcp_ok, ft_add_carry,
                                    ft_csum_pseudo4, ft_csum_pseudo6, ft_load_be16, ft_load_be32, ft_store_be16,
                                    ft_store_be32, ft_htonl, ft_htons)

# Parse a whole IP packet (IPv4 or IPv6, extension headers walked) carrying TCP.
# On FT_ERR_TRUNCATED and FT_ERR_FRAGMENT the header fields are still filled when the
# TCP header itself was complete (p.header_len != 0), so observers can use them.
cdef int ft_parse_ip(const uint8_t *buf, size_t length, pkt_t *p, parse_err_t *err,
                     bint verify) noexcept nogil

# ft_parse_ip is these two: the inline common case (IPv4 without IP options, IPv6
# without extension headers, whole, unfragmented, checksums good when verifying), which
# returns FT_PARSE_SLOW for anything else, and the general parser that decides every
# other packet. Both are exposed so tests can check they agree.
cdef enum:
    FT_PARSE_SLOW = -1
    IPPROTO_TCP = 6

# Option words of Linux's layouts (tcp_options_write), as big-endian 32-bit values (and
# the top bytes of the two that end in a value)
cdef enum:
    OPTW_NOP_NOP_TS = (TCPOPT_NOP << 24) | (TCPOPT_NOP << 16) | (TCPOPT_TIMESTAMP << 8) | TCPOLEN_TIMESTAMP
    OPTW_SACK_PERM_TS = (TCPOPT_SACK_PERM << 24) | (TCPOLEN_SACK_PERM << 16) | (TCPOPT_TIMESTAMP << 8) \
        | TCPOLEN_TIMESTAMP
    OPTW_NOP_NOP_SACK_PERM = (TCPOPT_NOP << 24) | (TCPOPT_NOP << 16) | (TCPOPT_SACK_PERM << 8) | TCPOLEN_SACK_PERM
    OPTW_MSS = (TCPOPT_MSS << 8) | TCPOLEN_MSS                              # then the 16-bit MSS
    OPTW_NOP_WSCALE = (TCPOPT_NOP << 16) | (TCPOPT_WSCALE << 8) | TCPOLEN_WSCALE  # then the shift
cdef int ft_parse_ip_general(const uint8_t *buf, size_t length, pkt_t *p, parse_err_t *err,
                             bint verify) noexcept nogil

# Parse a bare TCP header + payload starting at buf[0]; no checksum verification.
cdef int ft_parse_tcp(const uint8_t *buf, size_t length, pkt_t *p, parse_err_t *err) noexcept nogil

# Decode the options area; `base` is the buffer offset of its first byte (for errors).
cdef int ft_parse_options(const uint8_t *opt, size_t optlen, tcp_opts_t *o, parse_err_t *err,
                          uint32_t base) noexcept nogil

# Encode the known options of `o` (MSS, SACK-permitted, timestamps, window scale, SACK
# blocks) in the order Linux uses, NOP-aligned. Returns bytes written or -1 if > cap.
cdef int ft_encode_options(const tcp_opts_t *o, uint8_t *out, size_t cap) noexcept nogil


# ---- helpers shared by the general code in wire.pyx and the inline paths below ----

cdef extern from *:
    """
    /* the first 8 bytes of a zero-padded IPv4 address field as one native word */
    static inline unsigned long long ft_addr4_word(unsigned int a4) {
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        return (unsigned long long)a4 << 32;
    #else
        return a4;
    #endif
    }

    /* Clear a small fixed-size struct (n a constant) with 16-byte stores, the last one
       overlapping, unrolled: the parsed packet is cleared once per packet, and gcc's
       memset strategy (setup.py) makes that a loop with a counter and a branch per 64
       bytes. Below 16 bytes, and without SSE2: memset. */
    #if defined(__SSE2__)
    #include <emmintrin.h>
    static inline void ft_zero_small(void *p, size_t n) {
        __m128i z = _mm_setzero_si128();
        size_t i;
        if (n < 16) {
            memset(p, 0, n);
            return;
        }
        /* unrolled: every caller's size is a constant, so this is straight stores */
        #pragma GCC unroll 32
        for (i = 0; i + 16 <= n; i += 16)
            _mm_storeu_si128((__m128i *)((char *)p + i), z);
        if (i < n)
            _mm_storeu_si128((__m128i *)((char *)p + n - 16), z);
    }
    #else
    static inline void ft_zero_small(void *p, size_t n) { memset(p, 0, n); }
    #endif

    /* Copy n bytes (a multiple of 4) of options just encoded by 4-byte stores, a word at
       a time, and return the words' sum as native-order loads read them (what
       ft_csum_partial adds). The empty asm keeps each word in a general register: left
       alone, gcc vectorises the loop for the constant lengths of the common option
       sets, and a 16-byte load over bytes still in the store buffer from narrower
       stores cannot be forwarded -- it waits for them to reach the cache (the SYN's
       and SYN-ACK's 20 bytes of options were one such load and one 4-byte load;
       measured on a Xeon: cache-resident handshakes 1-2% faster without it). */
    static inline unsigned long long ft_copy_sum_words32(unsigned char *dst, const unsigned char *src,
                                                         size_t n) {
        unsigned long long s = 0;
        unsigned int w;
        size_t i;
        for (i = 0; i + 4 <= n; i += 4) {
            memcpy(&w, src + i, 4);
    #if defined(__GNUC__)
            __asm__("" : "+r"(w));
    #endif
            memcpy(dst + i, &w, 4);
            s += w;
        }
        return s;
    }
    """
    uint64_t ft_addr4_word(uint32_t a4) nogil
    void ft_zero_small(void *p, size_t n) nogil
    uint64_t ft_copy_sum_words32(uint8_t *dst, const uint8_t *src, size_t n) nogil

cdef inline void ft_tcp_fixed_fields(const uint8_t *t, pkt_t *p, bint lean=False) noexcept nogil:
    """The fixed 20-byte TCP header's fields (t points at it; the caller checked it is
    there). `lean`: not the checksum and urgent pointer (see ft_parse_ip_fast)."""
    p.src_port = ft_load_be16(t + TCP_SPORT)
    p.dst_port = ft_load_be16(t + TCP_DPORT)
    p.seq = ft_load_be32(t + TCP_SEQ)
    p.ack = ft_load_be32(t + TCP_ACK_SEQ)
    p.flags = ((t[TCP_DOFF] & 1) << 8) | t[TCP_FLAGS]        # AE, then CWR .. FIN
    p.window = ft_load_be16(t + TCP_WINDOW)
    if not lean:
        p.checksum = ft_load_be16(t + TCP_CSUM)
        p.urgent = ft_load_be16(t + TCP_URG_PTR)


cdef inline void ft_put_timestamp_option(uint8_t *out, uint8_t lead0, uint8_t lead1,
                                         uint32_t tsval, uint32_t tsecr) noexcept nogil:
    """Two lead bytes (NOP NOP, or SACK-permitted) and the 10-byte timestamp option: the
    12-byte word-aligned layout Linux sends. Written as three 32-bit stores, the width
    the segment builder reads them back with (store forwarding)."""
    ft_store_be32(out, (<uint32_t>lead0 << 24) | (<uint32_t>lead1 << 16) | (TCPOPT_TIMESTAMP << 8)
                  | TCPOLEN_TIMESTAMP)
    ft_store_be32(out + 4, tsval)
    ft_store_be32(out + 8, tsecr)


cdef inline size_t ft_put_linux_options(uint8_t *out, bint mss, uint16_t mss_value, bint sack_perm, bint ts,
                                        uint32_t tsval, uint32_t tsecr, bint wscale,
                                        uint8_t shift) noexcept nogil:
    """Linux's option layout (tcp_options_write) without SACK blocks: [MSS]
    [SACK-permitted + TS | NOP NOP TS | NOP NOP SACK-permitted] [NOP WS], every option
    word one 32-bit store (the segment builder reads the area back a word at a time,
    and a word assembled from byte stores cannot be store-forwarded). `out` needs 24
    bytes; returns the bytes written."""
    cdef size_t n = 0
    if mss:
        ft_store_be32(out, (OPTW_MSS << 16) | <uint32_t>mss_value)
        n = 4
    if ts:
        if sack_perm:
            ft_put_timestamp_option(out + n, TCPOPT_SACK_PERM, TCPOLEN_SACK_PERM, tsval, tsecr)
        else:
            ft_put_timestamp_option(out + n, TCPOPT_NOP, TCPOPT_NOP, tsval, tsecr)
        n += TCPOLEN_TSTAMP_ALIGNED
    elif sack_perm:
        ft_store_be32(out + n, OPTW_NOP_NOP_SACK_PERM)
        n += 4
    if wscale:
        ft_store_be32(out + n, (OPTW_NOP_WSCALE << 8) | <uint32_t>shift)
        n += 4
    return n


cdef inline int ft_encode_options_inline(const tcp_opts_t *o, uint8_t *out, size_t cap) noexcept nogil:
    """ft_encode_options compiled into the caller (the endpoint writes options on every
    segment it builds)."""
    # Linux's SYN layout (tcp_options_write): MSS, SACK_PERM+TS (or NOP NOP TS),
    # NOP WS, then SACK blocks after NOP NOP -- every 4-byte field word-aligned.
    cdef size_t n = 0, need = 0, k
    cdef bint ts = (o.present & OPT_HAS_TIMESTAMP) != 0
    cdef bint sp = (o.present & OPT_HAS_SACK_PERM) != 0
    if o.present & OPT_HAS_MSS:
        need += 4
    if ts:
        need += TCPOLEN_TSTAMP_ALIGNED
    elif sp:
        need += 4
    if o.present & OPT_HAS_WSCALE:
        need += 4
    if (o.present & OPT_HAS_SACK) and o.sack_count:
        if o.sack_count > TCP_MAX_SACK_BLOCKS:
            return -1
        need += 2 + TCPOLEN_SACK_BASE + TCPOLEN_SACK_BLOCK * o.sack_count     # NOP NOP SACK
    if need > cap:
        return -1
    n = ft_put_linux_options(out, (o.present & OPT_HAS_MSS) != 0, o.mss, sp, ts, o.tsval, o.tsecr,
                             (o.present & OPT_HAS_WSCALE) != 0, o.wscale)
    if (o.present & OPT_HAS_SACK) and o.sack_count:
        ft_store_be32(out + n, (TCPOPT_NOP << 24) | (TCPOPT_NOP << 16) | (TCPOPT_SACK << 8)
                      | <uint32_t>(TCPOLEN_SACK_BASE + TCPOLEN_SACK_BLOCK * o.sack_count))
        n += 4
        for k in range(o.sack_count):
            ft_store_be32(out + n, o.sack_left[k])
            ft_store_be32(out + n + 4, o.sack_right[k])
            n += TCPOLEN_SACK_BLOCK
    return <int>n


# ---- the common case, inline in every module that parses per packet ----

cdef inline bint _linux_layout(const uint8_t *opt, size_t n, tcp_opts_t *o) noexcept nogil:
    # The word-aligned layouts ft_encode_options writes without SACK blocks, as Linux
    # does (and BSD and Windows after the handshake): [MSS] [SACK-permitted + TS | NOP
    # NOP TS | NOP NOP SACK-permitted] [NOP WS], nothing else -- NOP NOP TS alone is nearly every segment
    # after the handshake, MSS SACKOK+TS NOP WS nearly every SYN. Decoded a word at a
    # time into `o` (zeroed by the caller), exactly as ft_parse_options would decode
    # them; False (o possibly partly written) for any other layout, which then goes to
    # ft_parse_options.
    cdef size_t i = 0
    cdef uint32_t w = ft_load_be32(opt)          # n >= 4: a TCP header grows in words
    if n == TCPOLEN_TSTAMP_ALIGNED and w == OPTW_NOP_NOP_TS:
        # NOP NOP TS alone: nearly every segment after the handshake
        o.present = OPT_HAS_TIMESTAMP
        o.tsval = ft_load_be32(opt + 4)
        o.tsecr = ft_load_be32(opt + 8)
        return True
    if (w >> 16) == OPTW_MSS:
        o.mss = <uint16_t>w
        o.present = OPT_HAS_MSS
        i = 4
        if i == n:
            return True
        w = ft_load_be32(opt + i)
    if w == OPTW_NOP_NOP_TS or w == OPTW_SACK_PERM_TS:
        if i + TCPOLEN_TSTAMP_ALIGNED > n:
            return False
        o.present |= OPT_HAS_TIMESTAMP | (OPT_HAS_SACK_PERM if w == OPTW_SACK_PERM_TS else 0)
        o.tsval = ft_load_be32(opt + i + 4)
        o.tsecr = ft_load_be32(opt + i + 8)
        i += TCPOLEN_TSTAMP_ALIGNED
    elif w == OPTW_NOP_NOP_SACK_PERM:
        o.present |= OPT_HAS_SACK_PERM
        i += 4
    if i == n:
        return True
    w = ft_load_be32(opt + i)
    if (w >> 8) == OPTW_NOP_WSCALE and i + 4 == n:
        o.wscale = <uint8_t>w
        o.present |= OPT_HAS_WSCALE
        return True
    return False


cdef inline int ft_parse_ip_fast(const uint8_t *b, size_t length, pkt_t *p, parse_err_t *err,
                                 bint verify, bint lean=False) noexcept nogil:
    # The shapes nearly all traffic has -- IPv4 without IP options or IPv6 without
    # extension headers, unfragmented, whole in the buffer, checksums good -- parsed
    # straight through: no per-field error bookkeeping, no extension-header walk, the
    # IPv4 pseudo-header summed as one word. Anything else (every error included)
    # returns FT_PARSE_SLOW and ft_parse_ip_general decides it from scratch,
    # so the two paths cannot disagree on what is wrong; a test compares their
    # results on valid and damaged packets.
    # `lean` (the endpoint's and the tracker's per-packet loops, where the parse is a
    # fifth of a packet's instructions): the fields neither reads -- ttl, ip_id,
    # csum_dst, checksum, urgent, the options' SACK and unknown-option arrays (their
    # counts are 0 when the Linux layout decoded the options; any other layout is
    # decoded in full into a cleared option set) -- are left as they were instead of
    # cleared and filled. Every other field is as without it.
    cdef size_t tot, ipl, hl, tcp_len
    cdef const uint8_t *t
    cdef uint64_t s, w
    cdef uint32_t a4, b4
    if length >= IPV4_HDR_LEN + TCP_HDR_LEN and b[IPV4_VER_IHL] == IPV4_VER_IHL_PLAIN:
        tot = ft_load_be16(b + IPV4_TOT_LEN)
        if tot < IPV4_HDR_LEN + TCP_HDR_LEN or tot > length or b[IPV4_PROTOCOL] != IPPROTO_TCP \
                or (ft_load_be16(b + IPV4_FRAG_OFF) & (IPV4_MF | IPV4_OFFSET_MASK)):
            return FT_PARSE_SLOW
        ipl = IPV4_HDR_LEN
    elif length >= IPV6_HDR_LEN + TCP_HDR_LEN and (b[0] >> 4) == 6 and b[IPV6_NEXTHDR] == IPPROTO_TCP:
        tot = IPV6_HDR_LEN + <size_t>ft_load_be16(b + IPV6_PAYLOAD_LEN)
        if tot < IPV6_HDR_LEN + TCP_HDR_LEN or tot > length:
            return FT_PARSE_SLOW
        ipl = IPV6_HDR_LEN
    else:
        return FT_PARSE_SLOW
    t = b + ipl
    tcp_len = tot - ipl
    hl = (t[TCP_DOFF] >> 4) * 4
    if hl < TCP_HDR_LEN or hl > tcp_len:
        return FT_PARSE_SLOW
    if verify:
        if ipl == IPV4_HDR_LEN:
            if not ft_ipv4_tcp_ok(b, <uint32_t>tcp_len):
                return FT_PARSE_SLOW
        else:
            s = ft_csum_partial(t, tcp_len, ft_csum_pseudo6(b + IPV6_SADDR, b + IPV6_DADDR, <uint32_t>tcp_len,
                                                            IPPROTO_TCP))
            if not ft_csum_ok(s):
                return FT_PARSE_SLOW
    if lean:
        w = 0
        memcpy(p, &w, 8)                  # version .. flags
        memcpy(&p.ip_off, &w, 4)
        memcpy(&p.opts, &w, 8)            # present, the counts, mss
        memcpy((<uint8_t *>&p.opts) + 8, &w, 8)      # tsval, tsecr
    else:
        ft_zero_small(p, sizeof(pkt_t))
    if hl > TCP_HDR_LEN and not _linux_layout(t + TCP_HDR_LEN, hl - TCP_HDR_LEN, &p.opts):
        memset(&p.opts, 0, sizeof(tcp_opts_t))
        if ft_parse_options(t + TCP_HDR_LEN, hl - TCP_HDR_LEN, &p.opts, err,
                            <uint32_t>(ipl + TCP_HDR_LEN)) != FT_OK:
            return FT_PARSE_SLOW
    if ipl == IPV4_HDR_LEN:
        p.version = 4
        if not lean:
            p.ttl = b[IPV4_TTL]
            p.ip_id = ft_load_be16(b + IPV4_ID)
        # each address as two whole 8-byte words (zero padded), the width its readers
        # load it with: a load that spans a 4-byte store and the memset above cannot
        # be forwarded from the store buffer and stalls
        memcpy(&a4, b + IPV4_SADDR, 4)
        memcpy(&b4, b + IPV4_DADDR, 4)
        w = ft_addr4_word(a4)
        memcpy(p.src, &w, 8)
        w = ft_addr4_word(b4)
        memcpy(p.dst, &w, 8)
        if not lean:
            memcpy(p.csum_dst, &w, 8)
        w = 0
        memcpy(p.src + 8, &w, 8)
        memcpy(p.dst + 8, &w, 8)
        if not lean:
            memcpy(p.csum_dst + 8, &w, 8)
        p.ip_csum_state = 1 if verify else 0
    else:
        p.version = 6
        memcpy(p.src, b + IPV6_SADDR, 16)
        memcpy(p.dst, b + IPV6_DADDR, 16)
        if not lean:
            p.ttl = b[IPV6_HOP_LIMIT]
            memcpy(p.csum_dst, b + IPV6_DADDR, 16)
    p.csum_state = 1 if verify else 0
    ft_tcp_fixed_fields(t, p, lean)
    p.tcp_off = <uint32_t>ipl
    p.tcp_len = <uint32_t>tcp_len
    p.payload_off = <uint32_t>(ipl + hl)
    p.payload_len = <uint32_t>(tcp_len - hl)
    p.header_len = <uint8_t>hl
    err.code = FT_OK; err.field = FT_FIELD_NONE; err.offset = 0
    return FT_OK


cdef inline int ft_parse_ip_inline(const uint8_t *buf, size_t length, pkt_t *p, parse_err_t *err,
                                   bint verify, bint lean=False) noexcept nogil:
    """ft_parse_ip with the common case compiled into the calling loop (per-packet
    loops: batch parse, tracker, endpoint). `lean`: see ft_parse_ip_fast."""
    cdef int rc = ft_parse_ip_fast(buf, length, p, err, verify, lean)
    if rc != FT_PARSE_SLOW:
        return rc
    return ft_parse_ip_general(buf, length, p, err, verify)


cdef inline bint ft_tuple_usable(int rc, const pkt_t *p) noexcept nogil:
    """The packet's 4-tuple (p.src, p.dst, p.src_port, p.dst_port) is one a connection is
    keyed by: the packet parsed whole, or its TCP header was complete and only its
    checksum or a cut-short payload is against it (ft_parse_ip's verdict `rc`). The
    tracker tracks by this rule and the flow hash shards by it (fasttcp.wire.rss), so a
    tracked packet is always in its connection's shard. Fragments, bad headers and other
    protocols have no usable tuple."""
    return rc == FT_OK or (p.header_len != 0 and (rc == FT_ERR_BAD_CHECKSUM or rc == FT_ERR_TRUNCATED))


# ---- building, inline for the endpoint's per-segment path ----

# ft_tcp_fill_checksum: the TCP checksum of a segment, recomputed in place from the
# pseudo-header inputs (Segment.to_bytes refreshes checksums with it).
cdef inline void ft_tcp_fill_checksum(uint8_t *tcp, size_t tcp_len, int version,
                                      const uint8_t *src, const uint8_t *dst) noexcept nogil:
    cdef uint64_t s
    cdef uint16_t c
    tcp[TCP_CSUM] = 0
    tcp[TCP_CSUM + 1] = 0
    if version == 4:
        s = ft_csum_pseudo4(src, dst, <uint32_t>tcp_len, IPPROTO_TCP)
    else:
        s = ft_csum_pseudo6(src, dst, <uint32_t>tcp_len, IPPROTO_TCP)
    c = <uint16_t>~ft_csum_fold(ft_csum_partial(tcp, tcp_len, s))
    memcpy(tcp + TCP_CSUM, &c, 2)    # host-order sum stored as-is is the wire value


cdef inline uint64_t ft_put_headers(uint8_t *out, int version, const uint8_t *src, const uint8_t *dst,
                                    uint8_t ttl, size_t thl, size_t payload_len,
                                    uint16_t src_port, uint16_t dst_port, uint32_t seq, uint32_t ack,
                                    uint16_t flags, uint16_t window) noexcept nogil:
    """The IP header (checksum filled) and the TCP header's first 16 bytes of a segment
    whose TCP header is `thl` bytes; returns the TCP checksum's partial sum so far
    (pseudo-header and those 16 bytes, below 2^35). The caller checked the lengths."""
    # Both checksums are summed from the values as they are written, one 32-bit word at
    # a time, never by reading the fresh header back: a wide load over bytes just stored
    # by narrower stores cannot be forwarded from the store buffer and stalls until they
    # reach the cache (that stall, three times a handshake, was a quarter of the
    # endpoint's time). A word is summed as its native-order load would read it
    # (ft_htonl of the big-endian value), so the sum matches ft_csum_partial's.
    cdef size_t iphl = IPV4_HDR_LEN if version == 4 else IPV6_HDR_LEN
    cdef size_t total = iphl + thl + payload_len
    cdef uint8_t *t
    cdef uint32_t w, a4, b4
    cdef uint64_t s
    if version == 4:
        memcpy(&a4, src, 4)
        memcpy(&b4, dst, 4)
        # words: version/IHL/TOS/total length; ID 0 with DF, as Linux does (RFC 6864);
        # TTL/protocol/checksum (0 while summing); the addresses
        w = (<uint32_t>ttl << 24) | (<uint32_t>IPPROTO_TCP << 16)
        s = (<uint64_t>ft_htonl((<uint32_t>IPV4_VER_IHL_PLAIN << 24) | <uint32_t>total) + ft_htonl(IPV4_DF)
             + ft_htonl(w) + a4 + b4)
        ft_store_be32(out + IPV4_VER_IHL, (<uint32_t>IPV4_VER_IHL_PLAIN << 24) | <uint32_t>total)
        ft_store_be32(out + IPV4_ID, IPV4_DF)
        ft_store_be32(out + IPV4_TTL, w | ft_htons(<uint16_t>~ft_csum_fold(s)))
        memcpy(out + IPV4_SADDR, &a4, 4)
        memcpy(out + IPV4_DADDR, &b4, 4)
        s = ft_csum_pseudo4(src, dst, <uint32_t>(thl + payload_len), IPPROTO_TCP)
    else:
        ft_store_be32(out, IPV6_VERSION_WORD)
        ft_store_be32(out + IPV6_PAYLOAD_LEN,
                      (<uint32_t>(thl + payload_len) << 16) | (<uint32_t>IPPROTO_TCP << 8) | ttl)
        memcpy(out + IPV6_SADDR, src, 16)
        memcpy(out + IPV6_DADDR, dst, 16)
        s = ft_csum_pseudo6(src, dst, <uint32_t>(thl + payload_len), IPPROTO_TCP)
    # the pseudo-header partial can be any 64-bit value (IPv6 addresses are summed as
    # 64-bit words): fold it to 33 bits so the plain adds below cannot carry out
    # (2^32 = 1 modulo 0xffff, so the fold keeps the sum)
    s = (s & 0xffffffffu) + (s >> 32)
    t = out + iphl
    w = (<uint32_t>src_port << 16) | dst_port
    ft_store_be32(t + TCP_SPORT, w)
    s += ft_htonl(w)
    ft_store_be32(t + TCP_SEQ, seq)
    s += ft_htonl(seq)
    ft_store_be32(t + TCP_ACK_SEQ, ack)
    s += ft_htonl(ack)
    # data offset, AE / CWR .. FIN, window
    w = ((<uint32_t>(((thl // 4) << 4) | ((flags >> 8) & 1))) << 24) | ((<uint32_t>flags & 0xff) << 16) \
        | window
    ft_store_be32(t + TCP_DOFF, w)
    s += ft_htonl(w)
    return s


cdef inline void ft_put_tcp_checksum(uint8_t *t, uint64_t s, uint16_t urgent) noexcept nogil:
    """The TCP header's last word (checksum of partial sum `s`, urgent pointer), with
    the urgent pointer's own share of the sum added here -- with its carry: after a
    payload's ft_csum_partial, `s` can be any 64-bit value."""
    s = ft_add_carry(s, ft_htonl(<uint32_t>urgent))
    ft_store_be32(t + TCP_CSUM, (<uint32_t>ft_htons(<uint16_t>~ft_csum_fold(s)) << 16) | urgent)


# Write a complete IPv4 (version 4, 4-byte addresses) or IPv6 packet into out.
# `opts` must already be padded to a multiple of 4 (<= 40 bytes). Fills both
# checksums. Returns total length, or -1 if out is too small / lengths overflow.
cdef inline Py_ssize_t ft_build_packet(uint8_t *out, size_t cap, int version,
                                       const uint8_t *src, const uint8_t *dst, uint8_t ttl,
                                       uint16_t src_port, uint16_t dst_port, uint32_t seq, uint32_t ack,
                                       uint16_t flags, uint16_t window, uint16_t urgent,
                                       const uint8_t *opts, size_t optlen,
                                       const uint8_t *payload, size_t payload_len) noexcept nogil:
    cdef size_t iphl = IPV4_HDR_LEN if version == 4 else IPV6_HDR_LEN
    cdef size_t thl = TCP_HDR_LEN + optlen
    cdef size_t total = iphl + thl + payload_len
    cdef uint8_t *t = out + iphl
    cdef uint64_t s
    if optlen > TCP_MAX_OPT_BYTES or optlen % 4 != 0 or total > cap:
        return -1
    if (version == 4 and total > 0xffff) or (version == 6 and total - IPV6_HDR_LEN > 0xffff):
        return -1
    s = ft_put_headers(out, version, src, dst, ttl, thl, payload_len, src_port, dst_port, seq, ack,
                       flags, window)
    # word by word: the options usually were just encoded (see ft_copy_sum_words32)
    s += ft_copy_sum_words32(t + TCP_HDR_LEN, opts, optlen)
    if payload_len:
        memcpy(t + thl, payload, payload_len)
        s = ft_csum_partial(payload, payload_len, s)      # the source, not the fresh copy
    ft_put_tcp_checksum(t, s, urgent)
    return <Py_ssize_t>total


cdef inline Py_ssize_t ft_build_ts_segment(uint8_t *out, int version, const uint8_t *src, const uint8_t *dst,
                                           uint8_t ttl, uint16_t src_port, uint16_t dst_port,
                                           uint32_t seq, uint32_t ack, uint16_t flags, uint16_t window,
                                           bint ts, uint32_t tsval, uint32_t tsecr) noexcept nogil:
    """ft_build_packet for a segment without payload whose only option is, if `ts`, the
    timestamp in the NOP NOP TS layout: nearly every ACK and FIN a connection sends.
    The option words go straight into the packet (no option set to fill, encode and
    copy). `out` must have room for 72 bytes; returns the length."""
    cdef size_t iphl = IPV4_HDR_LEN if version == 4 else IPV6_HDR_LEN
    cdef size_t thl = TCP_HDR_LEN + TCPOLEN_TSTAMP_ALIGNED if ts else TCP_HDR_LEN
    cdef uint8_t *t = out + iphl
    cdef uint64_t s = ft_put_headers(out, version, src, dst, ttl, thl, 0, src_port, dst_port, seq, ack,
                                     flags, window)
    if ts:
        ft_put_timestamp_option(t + TCP_HDR_LEN, TCPOPT_NOP, TCPOPT_NOP, tsval, tsecr)
        s += <uint64_t>ft_htonl(OPTW_NOP_NOP_TS) + ft_htonl(tsval) + ft_htonl(tsecr)
    ft_put_tcp_checksum(t, s, 0)
    return <Py_ssize_t>(iphl + thl)
