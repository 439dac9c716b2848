# SYN cookies (included by endpoint_core.pxi): a listening port answers a SYN with a
# SYN-ACK whose ISN encodes what the connection needs, and keeps no record; the ACK
# that returns it (SEG.ACK - 1) opens the connection. The layout is Linux's
# (net/ipv4/syncookies.c, net/ipv6/syncookies.c), so captures and tools read alike:
#
#   ISN = H0(4-tuple) + SEG.SEQ + (count << 24) + ((H1(4-tuple, count) + mssind) mod 2^24)
#
# H0, H1: SipHash-2-4 under two secret keys (cookie_hash(..., c) with c = 0, 1); count:
# a minute counter (tcp_cookie_time), valid for MAX_SYNCOOKIE_AGE = 2 values; mssind: the
# index of the largest msstab entry not above the peer's MSS. With timestamps, the low 6
# bits of our TSval carry the peer's window scale (4 bits, 0xf = none), SACK-permitted
# and ECN (cookie_init_timestamp); the ACK echoes them in TSecr. Without timestamps a
# cookie has no room for them: the connection runs without window scaling and SACK, as
# on Linux (tcp_conn_request clears the options).

cdef extern from "syncookie_impl.h" nogil:
    uint64_t ft_siphash(const uint64_t *k, const uint8_t *msg, size_t len)
    uint64_t ft_siphash_4u32(uint32_t a, uint32_t b, uint32_t c, uint32_t d, const uint64_t *k)
    uint16_t ft_cookie_mss(int family, unsigned i)

cdef enum:
    COOKIE_BITS = 24                    # COOKIEBITS: the minute counter sits above them
    COOKIE_MASK = (1 << COOKIE_BITS) - 1
    COOKIE_COUNT_MASK = 0xff            # the minute counter's bits in a cookie: 32 - 24
    COOKIE_MAX_AGE = 2                  # MAX_SYNCOOKIE_AGE: this minute and the last
    COOKIE_NMSS = 4                     # entries of msstab (2 bits of the cookie)
    COOKIE_V6_MSG = 40                  # IPv6 cookie_hash input: saddr, daddr, count, ports
    COOKIE_TS_BITS = 6                  # TSBITS: TSval bits that carry the options
    COOKIE_TS_WSCALE_NONE = 0xf         # TS_OPT_WSCALE_MASK: no window scaling
    COOKIE_TS_SACK = 0x10               # TS_OPT_SACK
    COOKIE_TS_ECN = 0x20                # TS_OPT_ECN (never set: the endpoint does no ECN)

cdef uint64_t COOKIE_MINUTE_US = 60000000      # tcp_cookie_time(): one count a minute


cdef inline uint32_t _cookie_minute(const ep_t *ep, uint64_t now) noexcept nogil:
    """The minute counter (Linux tcp_cookie_time), from the endpoint's clock."""
    return <uint32_t>(now // COOKIE_MINUTE_US) + ep.cfg.cookie_minute_offset


cdef inline uint16_t _bswap16(uint16_t v) noexcept nogil:
    return <uint16_t>((v >> 8) | (v << 8))


cdef inline uint32_t _cookie_hash(const ep_t *ep, const pkt_t *p, uint32_t count, int c) noexcept nogil:
    """cookie_hash(saddr, daddr, sport, dport, count, c) of the peer's segment (source =
    the peer), truncated to 32 bits as Linux's. The words are the header bytes as they
    lie in memory (__be32 addresses and __be16 ports read as host integers)."""
    cdef const uint64_t *key = &ep.cfg.cookie_key[2 * c]
    cdef uint32_t s, d
    cdef uint8_t msg[COOKIE_V6_MSG]
    cdef uint16_t port
    if p.version == 4:
        memcpy(&s, p.src, 4)
        memcpy(&d, p.dst, 4)
        return <uint32_t>ft_siphash_4u32(s, d, (<uint32_t>_bswap16(p.src_port) << 16) | _bswap16(p.dst_port),
                                         count, key)
    # net/ipv6/syncookies.c: struct {saddr; daddr; u32 count; __be16 sport; __be16 dport}
    memcpy(msg, p.src, 16)
    memcpy(msg + 16, p.dst, 16)
    memcpy(msg + 32, &count, 4)
    port = _bswap16(p.src_port)
    memcpy(msg + 36, &port, 2)
    port = _bswap16(p.dst_port)
    memcpy(msg + 38, &port, 2)
    return <uint32_t>ft_siphash(key, msg, COOKIE_V6_MSG)


cdef inline uint32_t _cookie_make(const ep_t *ep, const pkt_t *p, uint32_t count, uint32_t mssind) noexcept nogil:
    """secure_tcp_syn_cookie: the ISN for the peer's SYN `p`."""
    return (_cookie_hash(ep, p, 0, 0) + p.seq + (count << COOKIE_BITS)
            + ((_cookie_hash(ep, p, count, 1) + mssind) & COOKIE_MASK))


cdef inline int _cookie_decode(const ep_t *ep, const pkt_t *p, uint32_t count) noexcept nogil:
    """check_tcp_syn_cookie for the ACK `p` (cookie = SEG.ACK - 1 against SEG.SEQ - 1):
    the MSS index it carries, or -1 if it is not one of ours, or too old."""
    cdef uint32_t seq = p.seq - 1
    cdef uint32_t cookie = p.ack - 1 - (_cookie_hash(ep, p, 0, 0) + seq)
    cdef uint32_t diff = (count - (cookie >> COOKIE_BITS)) & COOKIE_COUNT_MASK
    cdef uint32_t mssind
    if diff >= COOKIE_MAX_AGE:
        return -1
    mssind = (cookie - _cookie_hash(ep, p, count - diff, 1)) & COOKIE_MASK
    return <int>mssind if mssind < COOKIE_NMSS else -1


cdef inline uint32_t _cookie_mssind(const pkt_t *p) noexcept nogil:
    """__cookie_v4_init_sequence: the largest table entry not above the peer's MSS (the
    first entry when all are; the default MSS when the SYN has none)."""
    cdef uint16_t mss
    cdef uint32_t i = COOKIE_NMSS - 1
    if p.opts.present & OPT_HAS_MSS:
        mss = p.opts.mss
    else:
        mss = TCP_MSS_DEFAULT4 if p.version == 4 else TCP_MSS_DEFAULT6
    while i > 0 and mss < ft_cookie_mss(p.version, i):
        i -= 1
    return i


cdef inline uint32_t _cookie_tsval(uint64_t now, uint32_t options) noexcept nogil:
    """cookie_init_timestamp: our TS clock with its low 6 bits replaced by the options,
    moved back one step (64 ms) if that put it ahead of the clock."""
    cdef uint32_t ts_now = _tsval(now)
    cdef uint32_t ts = ((ts_now >> COOKIE_TS_BITS) << COOKIE_TS_BITS) | options
    if ts > ts_now:
        ts -= 1 << COOKIE_TS_BITS
    return ts


cdef inline bint _cookie_wanted(const ep_t *ep) noexcept nogil:
    """Answer this SYN with a cookie? "always"; "auto" when the SYN-RECEIVED records
    reach the SYN backlog (Linux: the listener's request queue is full; connections we
    opened, in SYN-SENT, are not in it), or when the table is full with no TIME-WAIT
    record to give up (instead of evicting a half-open one)."""
    if ep.cfg.syn_cookies == SYN_COOKIES_ALWAYS:
        return True
    if ep.cfg.syn_cookies == SYN_COOKIES_OFF:
        return False
    return (ep.tab.state_count[TCPS_SYN_RECEIVED] >= ep.cfg.syn_backlog
            or (ep.tab.count >= ep.tab.capacity and ep.tab.class_count[FT_CLASS_TIME_WAIT] == 0))


cdef inline bint _cookie_check_due(const ep_t *ep, const pkt_t *p, uint64_t now) noexcept nogil:
    """Is this ACK (no SYN, no RST) to a listening port with no record a cookie's
    return? Checked in "always" mode, and in "auto" mode only within the cookie
    lifetime after a cookie was sent (Linux tcp_synq_no_recent_overflow): otherwise it
    is just an ACK to LISTEN, reset."""
    if p.flags & TCP_FLAG_SYN or ep.cfg.syn_cookies == SYN_COOKIES_OFF:
        return False
    if ep.cfg.syn_cookies == SYN_COOKIES_ALWAYS:
        return True
    return ep.cookies_sent != 0 and now - ep.cookie_sent_at <= COOKIE_MAX_AGE * COOKIE_MINUTE_US


cdef int _cookie_synack(ep_t *ep, const pkt_t *p, uint64_t now) noexcept nogil:
    """A SYN to a listening port answered statelessly (tcp_conn_request with want_cookie):
    a SYN-ACK whose ISN is the cookie; with timestamps its TSval carries the window
    scale and SACK the peer offered, without them neither is offered back."""
    cdef ft_conn_t tmp
    cdef uint8_t optbuf[40]
    cdef size_t optlen
    cdef uint8_t *out
    cdef Py_ssize_t n
    cdef uint32_t mssind = _cookie_mssind(p)
    cdef uint32_t iss = _cookie_make(ep, p, _cookie_minute(ep, now), mssind)
    cdef bint ts = (p.opts.present & OPT_HAS_TIMESTAMP) and ep.cfg.timestamps
    cdef bint sack = ts and (p.opts.present & OPT_HAS_SACK_PERM) and ep.cfg.sack
    cdef bint ws = ts and (p.opts.present & OPT_HAS_WSCALE) and ep.cfg.wscale != 0xff
    cdef uint32_t options = COOKIE_TS_WSCALE_NONE
    if ws:
        options = p.opts.wscale if p.opts.wscale < TCP_WSCALE_MAX else TCP_WSCALE_MAX
    if sack:
        options |= COOKIE_TS_SACK
    optlen = ft_put_linux_options(optbuf, True, ep.cfg.mss, sack, ts, _cookie_tsval(now, options),
                                  p.opts.tsval, ws, ep.cfg.wscale)
    out = _reserve(ep, EP_MAX_HEADERS + optlen)
    if out == NULL:
        return -1                        # counted in tx_dropped: the SYN is retransmitted
    ep.cookies_sent += 1
    ep.cookie_sent_at = now              # (the clock never runs backwards: see _advance)
    n = ft_build_packet(out, EP_MAX_HEADERS + optlen, p.version, p.dst, p.src, ep.cfg.ttl, p.dst_port,
                        p.src_port, iss, p.seq + 1, TCP_FLAG_SYN | TCP_FLAG_ACK,
                        <uint16_t>(ep.cfg.window if ep.cfg.window < EP_MAX_WINDOW else EP_MAX_WINDOW),
                        0, optbuf, optlen, NULL, 0)
    _commit(ep, n)
    return -1


cdef inline bint _cookie_options(const ep_t *ep, const pkt_t *p, ft_conn_t *c) noexcept nogil:
    """cookie_timestamp_decode: the options the cookie's TSecr carries back, into `c`.
    No timestamp on the ACK: no options. False when they ask for what this endpoint
    does not do (its timestamps, SACK or window scaling off): the cookie is refused."""
    cdef uint32_t options = p.opts.tsecr
    c.flags &= ~(CONN_F_WSCALE | CONN_F_SACK | CONN_F_TIMESTAMPS)
    c.wscale = 0
    if not (p.opts.present & OPT_HAS_TIMESTAMP):
        return True
    if not ep.cfg.timestamps:
        return False
    c.flags |= CONN_F_TIMESTAMPS
    c.ts_recent = p.opts.tsval
    if options & COOKIE_TS_SACK:
        if not ep.cfg.sack:
            return False
        c.flags |= CONN_F_SACK
    if (options & COOKIE_TS_WSCALE_NONE) == COOKIE_TS_WSCALE_NONE:
        return True
    if ep.cfg.wscale == 0xff:
        return False
    c.flags |= CONN_F_WSCALE
    c.wscale = <uint8_t>(((options & COOKIE_TS_WSCALE_NONE) << 4) | ep.cfg.wscale)
    return True


cdef int _cookie_refused(ep_t *ep, const pkt_t *p, uint64_t now) noexcept nogil:
    """A cookie that does not check out: counted, and answered as any ACK to LISTEN is
    (Linux's cookie_v4_check hands it back to the listener, which resets it)."""
    ep.cookies_failed += 1
    ep.drops[DROP_BAD_COOKIE] += 1
    _reset_reply(ep, p, now)
    return DROP_BAD_COOKIE


cdef int _cookie_open(ep_t *ep, const pkt_t *p, const ft_key_t *k, uint64_t h, uint64_t now,
                      int64_t *opened) noexcept nogil:
    """The ACK that returns a cookie (cookie_v4_check / cookie_v6_check): a valid one
    opens an ESTABLISHED record with the MSS and options it carries (event LISTEN ->
    ESTABLISHED, cause SYN_COOKIE, into the accept queue): its id in `opened` and
    _NEXT_STEP, and _dispatch runs the ACK through the ESTABLISHED rules like any (its
    data is delivered); a forged or stale one is refused (returns as _dispatch)."""
    cdef int mssind = _cookie_decode(ep, p, _cookie_minute(ep, now))
    cdef uint32_t evicted
    cdef int64_t id
    cdef ft_conn_t *c
    cdef uint16_t mss
    cdef ft_conn_t opts
    if mssind < 0:
        return _cookie_refused(ep, p, now)
    memset(&opts, 0, sizeof(opts))
    if not _cookie_options(ep, p, &opts):
        return _cookie_refused(ep, p, now)
    _make_room(ep, now)
    id = ftx_insert_new(&ep.tab, k, h, TCPS_ESTABLISHED, now, &evicted)
    if id < 0:
        ep.drops[DROP_TABLE_FULL] += 1
        return DROP_TABLE_FULL
    c = &ep.tab.conns[id]
    c.flags = CONN_F_PASSIVE | opts.flags
    c.wscale = opts.wscale
    c.ts_recent = opts.ts_recent
    mss = ft_cookie_mss(p.version, <unsigned>mssind)
    c.mss = mss if mss < ep.cfg.mss else ep.cfg.mss
    c.irs = p.seq - 1
    c.rcv_nxt = p.seq
    c.iss = p.ack - 1
    c.snd_una = p.ack
    c.snd_nxt = p.ack
    c.snd_wnd = (<uint32_t>p.window) << (c.wscale >> 4)
    c.snd_wl1 = p.seq
    c.snd_wl2 = p.ack
    c.rcv_wnd = ep.cfg.window
    c.retransmits = 0
    ep.cookies_ok += 1
    _event(ep, <uint32_t>id, TCPS_LISTEN, TCPS_ESTABLISHED, EV_SYN_COOKIE, 0, 0, now)
    _accept_push(ep, <uint32_t>id)
    opened[0] = id
    return _NEXT_STEP
