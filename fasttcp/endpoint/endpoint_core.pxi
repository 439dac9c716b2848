# C core of the sans-IO endpoint (included by endpoint.pyx).
#
# Theory of operation: ep_process() takes one IP packet and the time, runs RFC 9293's
# SEGMENT ARRIVES procedure (3.10.7) against the connection record found in the table
# (with RFC 5961's RST/SYN/ACK checks and RFC 7323's PAWS), and appends what must be
# sent to the output arena and what happened to the event array. ep_poll() does the
# same for timers. Nothing here blocks, reads a clock or touches Python: the caller
# passes time in and drains the arena and events.
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy, memset
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

from fasttcp.wire.defs cimport *
from fasttcp.table.ops cimport (FT_PREFETCH, FT_PREFETCH_W, ftx_lookup, ftx_prefetch, ftx_prefetch_w,
                                ftx_prefetch_record, ftx_prefetch_conn_w, ftx_insert_new, ftx_remove,
                                ftx_remove_hashed, ftx_set_state, ftx_set_deadline, ftx_victim)
from fasttcp.wire.codec cimport (ft_parse_ip_inline, ft_build_packet, ft_build_ts_segment,
                                 ft_put_linux_options)
from fasttcp.wire.seq cimport seq_lt, seq_le, seq_gt, seq_ge, seq_acceptable
from fasttcp.table.table cimport (ft_table_t, ft_key_t, ft_conn_t, ft_table_init, ft_table_free,
                                  ft_lookup, ft_insert, ft_set_deadline,
                                  ft_expire, FT_NIL, FT_TABLE_FULL, FT_TABLE_EXISTS, FT_WHEEL_SIZE, FT_TICK_SHIFT,
                                  TCPS_CLOSED, TCPS_LISTEN, TCPS_SYN_SENT, TCPS_SYN_RECEIVED,
                                  TCPS_ESTABLISHED, TCPS_FIN_WAIT_1, TCPS_FIN_WAIT_2,
                                  TCPS_CLOSE_WAIT, TCPS_CLOSING, TCPS_LAST_ACK, TCPS_TIME_WAIT,
                                  CONN_F_SACK, CONN_F_TIMESTAMPS, CONN_F_WSCALE,
                                  FT_CLASS_TIME_WAIT)

cdef extern from "mem_impl.h" nogil:
    void ft_copy_words(void *dst, const void *src, size_t n)

cdef enum:
    CONN_F_PASSIVE = 16         # opened from a listening port: a reset returns it to LISTEN
    CONN_F_BUFFERED = 32        # delivered data waits in a Connection's receive buffer:
                                # it narrows the advertised window until the app reads it
    CONN_F_QUEUED = 64          # in the accept queue (a new incarnation starts without it,
                                # so a stale queue entry can never hand it out)
    EP_MAX_LOCAL = 16
    EP_MAX_SEGMENT = IPV6_HDR_LEN + TCP_HDR_LEN + TCP_MAX_OPT_BYTES + 65535   # headers + payload
    EP_MAX_HEADERS = IPV6_HDR_LEN + TCP_HDR_LEN  # the arena room a segment needs besides
                                # its options and payload (either family)
    EP_MAX_WINDOW = 0xffff      # the 16-bit window field
    EP_USEC_PER_SEC = 1000000
    TCP_MSS_DEFAULT4 = 536      # a peer's MSS when its SYN has none: RFC 9293 3.7.1
    TCP_MSS_DEFAULT6 = 1220     # RFC 8200 5 (1280 - 60)
    TCP_MSS_FLOOR = 64          # a peer cannot make us send tinier segments (Linux clamps too)
    TCP_TW_ISS_GAP = 65537      # a reopened TIME-WAIT's ISS above the old SND.NXT (Linux's
                                # tw_snd_nxt + 65535 + 2)
    EP_NOT_LOCAL = -3           # connect: the local address is not one of the endpoint's

# The batch pipelines (ep_process_batch, ep_connect_batch): how far ahead of the packet
# (key) being processed its index slot is loaded, measured per endpoint (_calibrate).
cdef enum:
    EP_NDEPTHS = 5              # candidate depths: 2, 4, 8, 16, 32 (2 << k)
    EP_DEPTH_MAX = 2 << (EP_NDEPTHS - 1)      # the ring's size
    EP_DEPTH_START = 8          # before the first measurement (and for a table that fits
                                # the private cache, where the depth makes no difference)
    EP_PIPE_SEGMENTS = 0        # ep_t.pipes[]: segments in
    EP_PIPE_CONNECTS = 1        # keys opened by connect_batch
    EP_NPIPES = 2

# The batch calls' main sequential streams -- the segments and keys they read, the
# segments, events, offsets and ids they write -- are prefetched this many items ahead
# of where they are read or written. A batch larger than the private cache streams them
# all through memory at once, and the hardware prefetchers do not follow that many
# streams on every machine: on a 2-vCPU Xeon (KVM) the stalls on them made a round of
# 200k handshakes 1.5x slower than with them prefetched in software. The distance is
# derived, not tuned: it must cover a memory miss (100-300 ns) at the fastest these
# streams are consumed, ~40 ns an item (a connect), so >= 8 items; 16 gives that twice
# over, and the streams' 16 items of <= 80 bytes ahead hold under 8 KiB of the L1 data
# cache. (8 and 16 measured alike; within the cache every hint is a hit.) The accept
# queue's entries go by in a few ns each: the same rule puts its distance at 64.
cdef enum:
    EP_STREAM_AHEAD = 16
    EP_ACCEPT_AHEAD = 64

ctypedef struct ep_pipe_t:
    uint32_t depth              # prefetch distance in use: 2 << k for a k < EP_NDEPTHS
    uint32_t calibrations       # times it was measured
    uint64_t footprint          # table bytes when it was last measured (0: never)
    uint64_t since              # items through this pipeline since then
    double ns[EP_NDEPTHS]       # ns per item at each candidate depth, last measurement

ctypedef struct ep_local_t:
    uint8_t family
    uint8_t addr[16]
    uint8_t mask[16]             # the prefix as a bit mask (zero past it, and past 4 bytes for IPv4)

ctypedef struct ep_t:
    ft_table_t tab
    ep_config_t cfg
    ep_local_t local[EP_MAX_LOCAL]
    int nlocal
    uint8_t listen_bits[8192]   # one bit per port
    # output arena: packets back to back, with offsets and lengths
    uint8_t *out
    size_t out_len
    size_t out_cap
    uint64_t *out_off           # offsets (uint64 so callers can view them as int64)
    uint64_t *out_lens
    size_t nout
    size_t nout_cap
    # events
    ep_event_t *ev
    size_t nev
    size_t nev_cap
    # accept queue: ring of established passive connections (id, gen)
    uint32_t *acq
    uint8_t *acq_gen
    size_t acq_head
    size_t acq_len
    size_t acq_cap
    # counters
    uint64_t drops[DROP_COUNT]
    uint64_t segs_in
    uint64_t segs_out
    uint64_t rst_out
    uint64_t challenge_acks
    uint64_t retransmissions
    uint64_t chal_window
    uint32_t chal_count
    uint32_t last_conn          # record the last processed segment belonged to (FT_NIL: none)
    size_t max_out_bytes        # bounds: what a peer can make us queue while the caller
    size_t max_events           # does not drain (beyond them: dropped and counted)
    uint64_t tx_dropped
    uint64_t events_dropped
    uint64_t cookies_sent       # SYN-ACKs with a SYN cookie queued (no record made)
    uint64_t cookies_ok         # ACKs whose cookie opened a connection
    uint64_t cookies_failed     # ACKs whose cookie was checked and refused
    uint64_t cookie_sent_at     # time of the last cookie sent (if cookies_sent)
    uint64_t rng                # xorshift state (challenge ACK budget)
    bint oom
    ep_pipe_t pipes[EP_NPIPES]
    bint depth_fixed            # the user chose the depth: never measured
    uint64_t cache_bytes        # the CPU's private (per-core) cache; 0 = unknown


cdef inline uint64_t _rto(const ep_t *ep, uint8_t n) noexcept nogil:
    """RFC 6298 5.5: back off by doubling, capped at rto_max."""
    cdef uint64_t r = ep.cfg.rto_initial
    while n > 0 and r < ep.cfg.rto_max:
        r <<= 1
        n -= 1
    return r if r < ep.cfg.rto_max else ep.cfg.rto_max


cdef inline bint _grow(void **p, size_t *cap, size_t need, size_t item) noexcept nogil:
    # the test every event and every packet takes inline; the growth out of line, so
    # its doubling loop and the realloc call stay out of the per-packet code
    if need <= cap[0]:
        return True
    return _grow_slow(p, cap, need, item)


cdef bint _grow_slow(void **p, size_t *cap, size_t need, size_t item) noexcept nogil:
    """_grow when `need` exceeds the capacity: double it until it does not."""
    cdef size_t c = cap[0] if cap[0] else 64
    cdef void *q
    while c < need:
        c *= 2
    q = realloc(p[0], c * item)
    if q == NULL:
        return False
    p[0] = q
    cap[0] = c
    return True


cdef inline void _event(ep_t *ep, uint32_t id, uint8_t old, uint8_t new, uint8_t cause,
                        uint32_t value, uint32_t data_offset, uint64_t now) noexcept nogil:
    cdef ep_event_t *e
    cdef ft_conn_t *c = &ep.tab.conns[id]
    if ep.nev >= ep.max_events:
        ep.events_dropped += 1
        return
    if not _grow(<void **>&ep.ev, &ep.nev_cap, ep.nev + 1, sizeof(ep_event_t)):
        ep.oom = True
        return
    e = &ep.ev[ep.nev]
    if ep.nev + EP_STREAM_AHEAD < ep.nev_cap:
        FT_PREFETCH_W(&ep.ev[ep.nev + EP_STREAM_AHEAD])
    ep.nev += 1
    e.time_us = now
    e.conn = id
    e.value = value
    e.old_state = old
    e.new_state = new
    e.cause = cause
    e.gen = c.gen
    e.data_offset = data_offset
    # the key's first word from its fields, not by reloading the record's first 8
    # bytes: the state byte in them was usually just stored (a store-forwarding stall)
    cdef uint64_t w = ft_key_word0(c.family, c.lport, c.rport)
    memcpy(e.key, &w, 8)
    ft_copy_words(e.key + 8, c.laddr, 4)


cdef inline uint8_t *_reserve(ep_t *ep, size_t n) noexcept nogil:
    """Room for one packet of at most n bytes at the end of the arena."""
    if ep.out_len + n > ep.max_out_bytes:
        ep.tx_dropped += 1               # the caller is not draining transmit()
        return NULL
    if not _grow(<void **>&ep.out, &ep.out_cap, ep.out_len + n, 1):
        ep.oom = True
        return NULL
    if ep.nout + 1 > ep.nout_cap and not _grow_out(ep, ep.nout + 1):
        ep.oom = True
        return NULL
    if ep.out_len + EP_STREAM_AHEAD * 64 < ep.out_cap:
        # (the arena in bytes: about EP_STREAM_AHEAD handshake segments of 52-80 bytes)
        FT_PREFETCH_W(ep.out + ep.out_len + EP_STREAM_AHEAD * 64)
    return ep.out + ep.out_len


cdef bint _grow_out(ep_t *ep, size_t need) noexcept nogil:
    """Grow the offsets and lengths arrays together (they share nout_cap)."""
    cdef size_t c = ep.nout_cap if ep.nout_cap else 64
    cdef void *a
    cdef void *b
    while c < need:
        c *= 2
    a = realloc(ep.out_off, c * sizeof(uint64_t))
    if a == NULL:
        return False
    ep.out_off = <uint64_t *>a
    b = realloc(ep.out_lens, c * sizeof(uint64_t))
    if b == NULL:
        return False
    ep.out_lens = <uint64_t *>b
    ep.nout_cap = c
    return True


cdef inline void _commit(ep_t *ep, Py_ssize_t n) noexcept nogil:
    if n <= 0:
        return
    if ep.nout + EP_STREAM_AHEAD < ep.nout_cap:
        FT_PREFETCH_W(&ep.out_off[ep.nout + EP_STREAM_AHEAD])
        FT_PREFETCH_W(&ep.out_lens[ep.nout + EP_STREAM_AHEAD])
    ep.out_off[ep.nout] = ep.out_len
    ep.out_lens[ep.nout] = <uint64_t>n
    ep.nout += 1
    ep.out_len += <size_t>n
    ep.segs_out += 1


cdef inline uint32_t _tsval(uint64_t now) noexcept nogil:
    return <uint32_t>(now // 1000)        # RFC 7323 5.4: a 1 ms timestamp clock


cdef inline Py_ssize_t _send(ep_t *ep, ft_conn_t *c, uint16_t flags, uint32_t seq, uint32_t ack,
                             const uint8_t *payload, size_t plen, uint64_t now) noexcept nogil:
    """Build one segment of connection c into the arena: options as negotiated (the full
    offer on a SYN), window as we advertise it, TS when in use."""
    cdef uint8_t optbuf[40]
    cdef size_t optlen = 0
    cdef uint8_t *p
    cdef uint32_t wnd
    cdef Py_ssize_t n
    cdef bint ts
    if not (flags & (TCP_FLAG_SYN | TCP_FLAG_RST)) and plen == 0:
        # an ACK or FIN: at most the timestamp option, written straight into the packet
        ts = (c.flags & CONN_F_TIMESTAMPS) != 0
        wnd = c.rcv_wnd >> (c.wscale & 15)
        if wnd > EP_MAX_WINDOW:
            wnd = EP_MAX_WINDOW
        p = _reserve(ep, EP_MAX_HEADERS + (TCPOLEN_TSTAMP_ALIGNED if ts else 0))
        if p == NULL:
            return -1
        n = ft_build_ts_segment(p, c.family, c.laddr, c.raddr, ep.cfg.ttl, c.lport, c.rport, seq, ack,
                                flags, <uint16_t>wnd, ts, _tsval(now), c.ts_recent)
        _commit(ep, n)
        return n
    # the options written straight into the buffer in Linux's layout (the endpoint sends
    # no SACK blocks); a test holds them to the general encoder byte for byte
    if flags & TCP_FLAG_SYN:
        if c.state == TCPS_SYN_SENT or c.state == TCPS_CLOSED:
            # our own SYN: offer everything configured (RFC 7323 1.3, RFC 2018 2)
            optlen = ft_put_linux_options(optbuf, True, ep.cfg.mss, ep.cfg.sack, ep.cfg.timestamps,
                                          _tsval(now), 0, ep.cfg.wscale != 0xff, ep.cfg.wscale)
        else:
            # SYN-ACK: answer only what the peer offered
            optlen = ft_put_linux_options(optbuf, True, ep.cfg.mss, (c.flags & CONN_F_SACK) != 0,
                                          (c.flags & CONN_F_TIMESTAMPS) != 0, _tsval(now), c.ts_recent,
                                          (c.flags & CONN_F_WSCALE) != 0, c.wscale & 15)
        wnd = c.rcv_wnd if c.rcv_wnd < EP_MAX_WINDOW else EP_MAX_WINDOW    # RFC 7323 2.2: SYN windows unscaled
    else:
        if (c.flags & CONN_F_TIMESTAMPS) and not (flags & TCP_FLAG_RST):
            optlen = ft_put_linux_options(optbuf, False, 0, False, True, _tsval(now), c.ts_recent, False, 0)
        wnd = c.rcv_wnd >> (c.wscale & 15)
        if wnd > EP_MAX_WINDOW:
            wnd = EP_MAX_WINDOW
    p = _reserve(ep, EP_MAX_HEADERS + optlen + plen)
    if p == NULL:
        return -1
    n = ft_build_packet(p, EP_MAX_HEADERS + optlen + plen, c.family, c.laddr, c.raddr, ep.cfg.ttl,
                        c.lport, c.rport, seq, ack, flags, <uint16_t>wnd, 0,
                        optbuf, optlen, payload, plen)
    _commit(ep, n)
    if flags & TCP_FLAG_RST:
        ep.rst_out += 1
    return n


cdef inline void _send_ack(ep_t *ep, ft_conn_t *c, uint64_t now) noexcept nogil:
    # SEG.SEQ = SND.NXT, or the right edge of the peer's window when SND.NXT is past it
    # (a window the peer shrank, or our FIN sent to a closed window): a sequence number
    # the peer accepts, so that it reads the ACK field (Linux tcp_acceptable_seq). A
    # closed window takes only SEQ = RCV.NXT (RFC 9293 3.10.7.4, table 6), and since
    # 6.17 Linux drops, whole, a segment ending past its window while data waits
    # unread. (Zero-window probes send no octet: ep_send_probe.) An open window that
    # ends less than one unit of its scale before SND.NXT was only rounded down (a
    # receiver that advertises floor(space / 2^shift) moves its edge left by up to
    # 2^shift - 1 as data arrives): the peer has room up to SND.NXT, and may have
    # received it all, so that the edge would be an old sequence number there, refused
    # in turn -- as Linux, SND.NXT then.
    cdef uint32_t seq = c.snd_nxt
    cdef uint32_t edge = c.snd_una + c.snd_wnd
    if c.state >= TCPS_ESTABLISHED and seq_gt(seq, edge) and \
            (c.snd_wnd == 0 or seq - edge >= (1u << (c.wscale >> 4))):
        seq = edge
    _send(ep, c, TCP_FLAG_ACK, seq, c.rcv_nxt, NULL, 0, now)


cdef inline void _send_synack(ep_t *ep, ft_conn_t *c, uint64_t now) noexcept nogil:
    _send(ep, c, TCP_FLAG_SYN | TCP_FLAG_ACK, c.iss, c.rcv_nxt, NULL, 0, now)


cdef inline void _send_syn(ep_t *ep, ft_conn_t *c, uint64_t now) noexcept nogil:
    _send(ep, c, TCP_FLAG_SYN, c.iss, 0, NULL, 0, now)


cdef int _challenge_ack(ep_t *ep, ft_conn_t *c, int reason, uint64_t now) noexcept nogil:
    """RFC 5961 3.2/4.2/5.2 challenge ACK, limited per second across the endpoint (7).
    Returns the drop reason that applies: `reason`, or DROP_CHALLENGE_LIMIT if suppressed."""
    if now - ep.chal_window >= EP_USEC_PER_SEC:
        ep.chal_window = now
        # a randomised budget (limit/2 .. limit) each second: an exact global count
        # lets an off-path attacker probe other connections' windows (CVE-2016-5696)
        ep.rng ^= ep.rng << 13
        ep.rng ^= ep.rng >> 7
        ep.rng ^= ep.rng << 17
        ep.chal_count = <uint32_t>(ep.rng % (ep.cfg.challenge_limit // 2 + 1))
    if ep.chal_count >= ep.cfg.challenge_limit:
        ep.drops[DROP_CHALLENGE_LIMIT] += 1
        return DROP_CHALLENGE_LIMIT
    ep.chal_count += 1
    ep.challenge_acks += 1
    ep.drops[reason] += 1
    _send_ack(ep, c, now)
    return reason


cdef void _reset_reply(ep_t *ep, const pkt_t *p, uint64_t now) noexcept nogil:
    """RFC 9293 3.10.7.1: a reset for a segment that has no connection. If it carried an
    ACK, RST with seq = SEG.ACK; else RST,ACK with ack = SEG.SEQ + SEG.LEN."""
    cdef ft_conn_t tmp
    cdef uint32_t seglen
    if p.flags & TCP_FLAG_RST:
        return                           # never answer a reset with a reset
    memset(&tmp, 0, sizeof(tmp))
    tmp.family = p.version
    tmp.lport = p.dst_port
    tmp.rport = p.src_port
    memcpy(tmp.laddr, p.dst, 16)
    memcpy(tmp.raddr, p.src, 16)
    tmp.state = TCPS_CLOSED
    if p.flags & TCP_FLAG_ACK:
        _send(ep, &tmp, TCP_FLAG_RST, p.ack, 0, NULL, 0, now)
    else:
        seglen = p.payload_len + ((p.flags & TCP_FLAG_SYN) != 0) + ((p.flags & TCP_FLAG_FIN) != 0)
        _send(ep, &tmp, TCP_FLAG_RST | TCP_FLAG_ACK, 0, p.seq + seglen, NULL, 0, now)


cdef bint _is_local(const ep_t *ep, const uint8_t *addr, uint8_t family) noexcept nogil:
    # masked compare, 8 bytes at a time: `addr` must be 16 readable bytes (an IPv4
    # address zero-padded, as in pkt_t and keys)
    cdef int i
    cdef uint64_t a0, a1, n0, n1, m0, m1
    memcpy(&a0, addr, 8)
    memcpy(&a1, addr + 8, 8)
    for i in range(ep.nlocal):
        if ep.local[i].family != family:
            continue
        memcpy(&n0, ep.local[i].addr, 8)
        memcpy(&n1, ep.local[i].addr + 8, 8)
        memcpy(&m0, ep.local[i].mask, 8)
        memcpy(&m1, ep.local[i].mask + 8, 8)
        if (((a0 ^ n0) & m0) | ((a1 ^ n1) & m1)) == 0:
            return True
    return False


cdef inline bint _unicast(const uint8_t *a, uint8_t family) noexcept nogil:
    """Not the unspecified address, a multicast address or IPv4's limited broadcast. TCP
    is unicast: an OPEN of an unspecified foreign socket is an error (RFC 9293 3.9.1.1)
    and a SYN to a broadcast or multicast address is discarded by its receiver (RFC 1122
    4.2.3.10). `a`: 16 bytes, an IPv4 address zero-padded."""
    cdef int i
    cdef uint8_t any_bit = 0
    if family == 4:
        if (a[0] | a[1] | a[2] | a[3]) == 0 or 224 <= a[0] <= 239:
            return False
        return not (a[0] == 255 and a[1] == 255 and a[2] == 255 and a[3] == 255)
    for i in range(16):
        any_bit |= a[i]
    return any_bit != 0 and a[0] != 0xff


cdef enum:
    # why ep_copy_keys refused a key (connect_batch names it)
    KEY_BAD_FAMILY = 1
    KEY_BAD_PADDING = 2
    KEY_BAD_PORT = 3
    KEY_BAD_ADDRESS = 4


cdef Py_ssize_t ep_copy_keys(ft_key_t *dst, const ft_key_t *src, Py_ssize_t n, int *why) noexcept nogil:
    """Copy n caller-built keys into `dst` and check the copies: the first that
    connect_batch must refuse (KEY_BAD_* in `why`), or -1. The table stores a key as
    given, so only keys make_keys() could have made get in: family 4 or 6 (0 marks a
    free record), zero padding (the _pad bytes are copied onto the record's state and
    flags; an IPv4 address's bytes 4..15 are hashed and compared with the key, so a
    padded key is one no packet ever matches), two non-zero ports (as connect()),
    unicast addresses. One pass before anything is opened, so a refused batch changes
    nothing; and the batch then runs on the copies, which no other thread can rewrite
    between the check and the use (the caller's array can be, the GIL released: keys
    opened unchecked, or hashed and recorded as two different keys)."""
    cdef Py_ssize_t i
    cdef const ft_key_t *k
    for i in range(n):
        ft_copy_words(&dst[i], &src[i], 5)
        k = &dst[i]
        if k.family != 4 and k.family != 6:
            why[0] = KEY_BAD_FAMILY
            return i
        if (k._pad[0] | k._pad[1] | k._pad[2]) != 0 or \
                (k.family == 4 and ft_v4_padding(ft_w(k, 1), ft_w(k, 2), ft_w(k, 3), ft_w(k, 4)) != 0):
            why[0] = KEY_BAD_PADDING
            return i
        if k.lport == 0 or k.rport == 0:
            why[0] = KEY_BAD_PORT
            return i
        if not _unicast(k.laddr, k.family) or not _unicast(k.raddr, k.family):
            why[0] = KEY_BAD_ADDRESS
            return i
    return -1


cdef inline bint _listening(const ep_t *ep, uint16_t port) noexcept nogil:
    return (ep.listen_bits[port >> 3] >> (port & 7)) & 1


include "syncookies.pxi"


cdef uint32_t _isn(const ep_t *ep, const ft_key_t *k, uint64_t now) noexcept nogil:
    """RFC 6528: ISN = M + F(4-tuple, secret), M a 4-microsecond clock."""
    return <uint32_t>((now >> 2) + (ft_nh5(ep.cfg.isn_key, ft_w(k, 0), ft_w(k, 1), ft_w(k, 2), ft_w(k, 3),
                                           ft_w(k, 4)) >> 32))


cdef void _negotiate(ep_t *ep, ft_conn_t *c, const pkt_t *p) noexcept nogil:
    """Options from the peer's SYN (or SYN-ACK), RFC 9293 3.7.1, RFC 7323, RFC 2018."""
    cdef const tcp_opts_t *o = &p.opts
    cdef uint16_t peer_mss
    cdef uint8_t ours = 0
    if o.present & OPT_HAS_MSS:
        peer_mss = o.mss
    else:
        peer_mss = TCP_MSS_DEFAULT4 if p.version == 4 else TCP_MSS_DEFAULT6
    if peer_mss < TCP_MSS_FLOOR:
        peer_mss = TCP_MSS_FLOOR
    c.mss = peer_mss if peer_mss < ep.cfg.mss else ep.cfg.mss
    c.flags &= ~(CONN_F_WSCALE | CONN_F_SACK | CONN_F_TIMESTAMPS)
    c.wscale = 0
    if (o.present & OPT_HAS_WSCALE) and ep.cfg.wscale != 0xff:
        c.flags |= CONN_F_WSCALE
        ours = ep.cfg.wscale
        # RFC 7323 2.3: a shift above 14 is used as 14
        c.wscale = <uint8_t>(((o.wscale if o.wscale < TCP_WSCALE_MAX else TCP_WSCALE_MAX) << 4) | ours)
    if (o.present & OPT_HAS_SACK_PERM) and ep.cfg.sack:
        c.flags |= CONN_F_SACK
    if (o.present & OPT_HAS_TIMESTAMP) and ep.cfg.timestamps:
        c.flags |= CONN_F_TIMESTAMPS
        c.ts_recent = o.tsval


cdef inline void _enter(ep_t *ep, uint32_t id, uint8_t state, uint8_t cause, uint64_t now) noexcept nogil:
    cdef uint8_t old = ep.tab.conns[id].state
    cdef uint64_t running = ep.tab.conns[id].deadline
    ftx_set_state(&ep.tab, id, state, now)
    if ep.tab.timeout[state] == 0 and running != 0:
        # a state without a timeout of its own (CLOSING, CLOSE-WAIT, ...) keeps the
        # retransmission timer that was running: what is outstanding still needs it
        ftx_set_deadline(&ep.tab, id, running)
    _event(ep, id, old, state, cause, 0, 0, now)


cdef inline void _close_record(ep_t *ep, uint32_t id, uint8_t final_state, uint8_t cause, uint64_t now) noexcept nogil:
    """The connection is gone (CLOSED, or back to LISTEN for a passive SYN-RECEIVED)."""
    cdef uint8_t old = ep.tab.conns[id].state
    _event(ep, id, old, final_state, cause, 0, 0, now)
    ftx_remove(&ep.tab, id)


cdef inline void _close_record_hashed(ep_t *ep, uint32_t id, uint8_t final_state, uint8_t cause, uint64_t now,
                                      uint64_t h) noexcept nogil:
    """_close_record when the key's hash is at hand (h: ft_hash_key of the record)."""
    cdef uint8_t old = ep.tab.conns[id].state
    _event(ep, id, old, final_state, cause, 0, 0, now)
    ftx_remove_hashed(&ep.tab, id, h)


cdef inline void _arm(ep_t *ep, uint32_t id, uint64_t deadline) noexcept nogil:
    ftx_set_deadline(&ep.tab, id, deadline)


cdef inline bint _accept_live(const ep_t *ep, uint32_t id, uint8_t gen) noexcept nogil:
    """An accept-queue entry still stands for the incarnation that completed its
    handshake, not yet handed out (reset, reused or accepted records fail this)."""
    return (ep.tab.conns[id].family != 0 and ep.tab.conns[id].gen == gen
            and (ep.tab.conns[id].flags & CONN_F_QUEUED) != 0)


cdef void _accept_compact(ep_t *ep) noexcept nogil:
    """Drop the entries of connections that were reset or reused since their handshake,
    keeping the live ones in order, each once. Entries leave the ring only when popped,
    so a peer that completes handshakes and resets them faster than the application
    accepts would otherwise fill it with dead entries and lock every later connection
    out of accept()."""
    cdef size_t i, src, dst, kept = 0
    cdef uint32_t id
    cdef uint8_t gen
    for i in range(ep.acq_len):
        src = ep.acq_head + i
        if src >= ep.acq_cap:
            src -= ep.acq_cap
        id = ep.acq[src]
        gen = ep.acq_gen[src]
        if _accept_live(ep, id, gen):
            ep.tab.conns[id].flags &= ~CONN_F_QUEUED      # taken: a duplicate entry is dropped
            dst = ep.acq_head + kept                       # kept <= i: never ahead of src
            if dst >= ep.acq_cap:
                dst -= ep.acq_cap
            ep.acq[dst] = id
            ep.acq_gen[dst] = gen
            kept += 1
    for i in range(kept):
        dst = ep.acq_head + i
        if dst >= ep.acq_cap:
            dst -= ep.acq_cap
        ep.tab.conns[ep.acq[dst]].flags |= CONN_F_QUEUED
    ep.acq_len = kept


cdef void _accept_push(ep_t *ep, uint32_t id) noexcept nogil:
    cdef size_t slot
    if ep.acq_len >= ep.acq_cap:
        # the ring is as long as the table, so the live entries (at most one per record
        # other than `id`'s) always leave room once the dead ones are dropped
        _accept_compact(ep)
        if ep.acq_len >= ep.acq_cap:
            return
    slot = ep.acq_head + ep.acq_len        # both < acq_cap: one wrap at most (no division)
    if slot >= ep.acq_cap:
        slot -= ep.acq_cap
    ep.acq[slot] = id
    ep.acq_gen[slot] = ep.tab.conns[id].gen
    ep.acq_len += 1
    ep.tab.conns[id].flags |= CONN_F_QUEUED


# ---- SEGMENT ARRIVES ----

cdef void _make_room(ep_t *ep, uint64_t now) noexcept nogil:
    """A full table gives up its oldest TIME-WAIT, else its oldest never-established
    connection (the table's eviction rule), with an EVICTED event, before an insert."""
    cdef uint32_t victim
    if ep.tab.count < ep.tab.capacity:
        return
    victim = ftx_victim(&ep.tab)
    if victim == FT_NIL:
        return
    _close_record(ep, victim, TCPS_CLOSED, EV_EVICTED, now)
    ep.tab.stats.evictions += 1


cdef inline int _passive_open(ep_t *ep, const pkt_t *p, const ft_key_t *k, uint64_t now, uint8_t cause,
                              uint64_t h=0) noexcept nogil:
    """LISTEN (RFC 9293 3.10.7.2): a SYN creates a SYN-RECEIVED record and a SYN-ACK.
    `h`: the key's hash when the caller's lookup just missed (skips a second probe)."""
    cdef uint32_t evicted
    cdef int64_t id
    _make_room(ep, now)
    if h != 0:
        id = ftx_insert_new(&ep.tab, k, h, TCPS_SYN_RECEIVED, now, &evicted)
    else:
        id = ft_insert(&ep.tab, k, TCPS_SYN_RECEIVED, now, &evicted)
    cdef ft_conn_t *c
    if id < 0:
        ep.drops[DROP_TABLE_FULL] += 1
        return DROP_TABLE_FULL
    c = &ep.tab.conns[id]
    c.flags = CONN_F_PASSIVE
    c.irs = p.seq
    c.rcv_nxt = p.seq + 1
    c.iss = _isn(ep, k, now)
    c.snd_una = c.iss
    c.snd_nxt = c.iss + 1
    c.snd_wnd = p.window                 # unscaled in a SYN
    c.snd_wl1 = p.seq
    c.rcv_wnd = ep.cfg.window
    c.retransmits = 0
    _negotiate(ep, c, p)
    _event(ep, <uint32_t>id, TCPS_LISTEN, TCPS_SYN_RECEIVED, cause, 0, 0, now)
    _send_synack(ep, c, now)
    _arm(ep, <uint32_t>id, now + _rto(ep, 0))
    return -1


cdef void _iss_above(ep_t *ep, const ft_key_t *k, uint32_t old_nxt, uint64_t now) noexcept nogil:
    """A connection reopened from TIME-WAIT must start above everything the old
    incarnation sent (RFC 1122 4.2.2.13, RFC 6191): if the clock-driven ISN is not, move
    it past old SND.NXT by a window's worth (TCP_TW_ISS_GAP, as Linux does). The
    SYN-ACK already queued carries the ISS it was built with, so fix it up before it is
    sent: rebuild it."""
    cdef int64_t id = ft_lookup(&ep.tab, k)
    cdef ft_conn_t *c
    if id < 0:
        return
    c = &ep.tab.conns[id]
    if seq_gt(c.iss, old_nxt):
        return
    c.iss = old_nxt + TCP_TW_ISS_GAP
    c.snd_una = c.iss
    c.snd_nxt = c.iss + 1
    # drop the SYN-ACK just queued (the last packet) and queue one with the new ISS
    if ep.nout:
        ep.nout -= 1
        ep.out_len = ep.out_off[ep.nout]
        ep.segs_out -= 1
    _send_synack(ep, c, now)


cdef inline int _syn_sent(ep_t *ep, uint32_t id, const pkt_t *p, uint64_t now) noexcept nogil:
    """RFC 9293 3.10.7.3."""
    cdef ft_conn_t *c = &ep.tab.conns[id]
    cdef bint acked = False
    if p.flags & TCP_FLAG_ACK:
        if seq_le(p.ack, c.iss) or seq_gt(p.ack, c.snd_nxt):
            # e.g. the SYN-ACK for an old duplicate SYN (figure 8): reset it
            if not (p.flags & TCP_FLAG_RST):
                _send(ep, c, TCP_FLAG_RST, p.ack, 0, NULL, 0, now)
            ep.drops[DROP_BAD_ACK] += 1
            return DROP_BAD_ACK
        acked = True
    if p.flags & TCP_FLAG_RST:
        if acked:
            _close_record(ep, id, TCPS_CLOSED, EV_REFUSED, now)   # "connection reset"
            return -1
        ep.drops[DROP_RST_INVALID] += 1
        return DROP_RST_INVALID
    if not (p.flags & TCP_FLAG_SYN):
        ep.drops[DROP_OTHER] += 1
        return DROP_OTHER
    c.irs = p.seq
    c.rcv_nxt = p.seq + 1
    _negotiate(ep, c, p)
    if acked:
        c.snd_una = p.ack
        c.snd_wnd = p.window             # unscaled in a SYN-ACK
        c.snd_wl1 = p.seq
        c.snd_wl2 = p.ack
        c.retransmits = 0
        _arm(ep, id, 0)
        _enter(ep, id, TCPS_ESTABLISHED, EV_SYN_ACK_RECEIVED, now)
        _send_ack(ep, c, now)
    else:
        # simultaneous open (figure 7): SYN-RECEIVED, answer with SYN,ACK
        _enter(ep, id, TCPS_SYN_RECEIVED, EV_SIMULTANEOUS_OPEN, now)
        _send_synack(ep, c, now)
        c.retransmits = 0
        _arm(ep, id, now + _rto(ep, 0))
    return -1


cdef enum:
    _NEXT_STEP = -2             # a SEGMENT ARRIVES step let the segment through to the next;
                                # steps otherwise return as _synchronized does: -1 (used) or
                                # a DROP_* reason
    _OLD_ACK = -3               # _sequence_check: a segment all below RCV.NXT, within the window (_old_ack)
    _MAX_SND_WND_FLOOR = EP_MAX_WINDOW  # stands in for MAX.SND.WND below 64 KiB (RFC 5961 5.2)


cdef inline int _timewait_syn(ep_t *ep, uint32_t id, ft_conn_t *c, const pkt_t *p, bint ts_ok,
                              uint64_t now, const ft_key_t *k) noexcept nogil:
    """A SYN to a TIME-WAIT record may open a new incarnation (RFC 9293 3.10.7.4 note,
    RFC 6191; Linux tcp_timewait_state_process, TCP_TW_SYN): with timestamps only if its
    timestamp is newer, without them only if its sequence number is higher, and only on
    a listening port. Otherwise it goes through the checks like any segment."""
    cdef uint32_t old_nxt
    cdef int rc
    if c.state != TCPS_TIME_WAIT or not (p.flags & TCP_FLAG_SYN) or (p.flags & (TCP_FLAG_ACK | TCP_FLAG_RST)):
        return _NEXT_STEP
    if not ((ts_ok and seq_gt(p.opts.tsval, c.ts_recent)) or
            (not (c.flags & CONN_F_TIMESTAMPS) and seq_gt(p.seq, c.rcv_nxt))):
        return _NEXT_STEP
    if not _listening(ep, c.lport):
        return _NEXT_STEP
    old_nxt = c.snd_nxt
    _close_record(ep, id, TCPS_CLOSED, EV_REOPEN, now)
    rc = _passive_open(ep, p, k, now, EV_REOPEN)
    if rc < 0:
        _iss_above(ep, k, old_nxt, now)
    return rc


cdef inline int _synrecv_syn_again(ep_t *ep, ft_conn_t *c, const pkt_t *p, uint64_t now) noexcept nogil:
    """A retransmission of the SYN that opened this SYN-RECEIVED record: our SYN-ACK was
    lost, send it again (Linux tcp_check_req) rather than challenge it as a new SYN."""
    if c.state == TCPS_SYN_RECEIVED and (p.flags & TCP_FLAG_SYN) and not (p.flags & TCP_FLAG_ACK) \
            and p.seq == c.irs:
        _send_synack(ep, c, now)
        return -1
    return _NEXT_STEP


cdef inline int _paws_check(ep_t *ep, ft_conn_t *c, const pkt_t *p, bint ts_ok, uint64_t now) noexcept nogil:
    """RFC 7323 5.3 PAWS (Linux tcp_paws_discard): a non-RST segment with a timestamp
    older than TS.Recent is a stale duplicate: ACK and drop it."""
    if ts_ok and not (p.flags & TCP_FLAG_RST) and c.state != TCPS_SYN_RECEIVED \
            and seq_lt(p.opts.tsval, c.ts_recent):
        _send_ack(ep, c, now)
        ep.drops[DROP_PAWS] += 1
        return DROP_PAWS
    return _NEXT_STEP


cdef inline int _sequence_check(ep_t *ep, uint32_t id, ft_conn_t *c, const pkt_t *p,
                                uint64_t now) noexcept nogil:
    """First check, the sequence number (RFC 9293 3.10.7.4; Linux tcp_sequence): a
    segment outside the receive window is dropped with an ACK ("send an acknowledgment
    ... drop the segment"), a RST silently. An empty segment other than a RST at the
    right edge is in, as in Linux; one that is all old has its ACK read first
    (_OLD_ACK: see _old_ack)."""
    cdef uint32_t seglen = p.payload_len + ((p.flags & TCP_FLAG_SYN) != 0) + ((p.flags & TCP_FLAG_FIN) != 0)
    if seq_acceptable(p.seq, seglen, c.rcv_nxt, c.rcv_wnd):
        return _NEXT_STEP
    if seglen == 0 and p.seq == c.rcv_nxt + c.rcv_wnd and not (p.flags & TCP_FLAG_RST):
        # an empty segment at the window's right edge: the pure ACK of a peer whose
        # flight filled our window. RFC 9293 table 6 puts it just outside; Linux
        # (tcp_sequence) and BSD take it, and refusing it leaves its ACK unread. (A
        # RST there stays outside, silently dropped: RFC 5961 3.2.)
        return _NEXT_STEP
    if p.flags & TCP_FLAG_RST:
        ep.drops[DROP_RST_INVALID] += 1
        return DROP_RST_INVALID
    if c.state == TCPS_TIME_WAIT and (p.flags & TCP_FLAG_FIN) and p.seq + p.payload_len + 1 == c.rcv_nxt:
        # the peer retransmitted its FIN: our last ACK was lost. Acknowledge it and
        # restart the 2 MSL timeout (RFC 9293 3.10.7.4, TIME-WAIT)
        ftx_set_state(&ep.tab, id, TCPS_TIME_WAIT, now)
        _send_ack(ep, c, now)
        return -1
    if not (p.flags & TCP_FLAG_SYN) and (p.flags & TCP_FLAG_ACK) and c.state >= TCPS_ESTABLISHED \
            and seq_lt(p.seq, c.rcv_nxt) and seq_le(p.seq + seglen, c.rcv_nxt) \
            and c.rcv_nxt - p.seq <= c.rcv_wnd:
        # all of it old, by at most the window: its ACK field is read (_old_ack). (A
        # blind sender's SEQ now has twice the window to land in, as RFC 5961 5.2 gives
        # an ACK MAX.SND.WND below SND.UNA; a closed window still takes none.)
        return _OLD_ACK
    _send_ack(ep, c, now)
    ep.drops[DROP_UNACCEPTABLE] += 1
    return DROP_UNACCEPTABLE


cdef int _old_ack(ep_t *ep, uint32_t id, ft_conn_t *c, const pkt_t *p, uint64_t now, uint64_t h) noexcept nogil:
    """A segment all of whose octets (and FIN) we have, starting below RCV.NXT by at most
    the receive window: old by RFC 9293 3.10.7.4's first check, answered with an ACK and
    dropped -- after its ACK field has been read (the fifth check, with RFC 5961's
    limits), as BSD reads it (tcp_input trims an old segment and goes on to its ACK).
    A retransmission whose original arrived carries, in its ACK field, what its sender
    has received since; a pure ACK's SEQ is old when its sender's view of our window is
    stale (our window update lost, a reordered zero-window ACK taken over a newer one, a
    window that shrank while data was on the way), and a zero-window probe is old by
    design. Refused whole, such segments tell us nothing, and two ends that each hold a
    stale window answer each other's answers without end. The answer is sent after the
    ACK is taken, so its own SEQ is the new one."""
    cdef uint8_t st = c.state
    cdef uint32_t edge = c.snd_una + c.snd_wnd
    cdef int rc = _ack_check(ep, id, c, p, &st, now, h)
    if rc != _NEXT_STEP:
        return rc                      # a bad ACK (answered as such), or the record ended
    if seq_lt(c.snd_una + c.snd_wnd, edge):
        # an old segment never moves the peer's window edge back: the zero window of a
        # reordered ACK, taken by the SND.WL1/WL2 rule on a tie, would stop a flight that
        # newer segments had opened (BSD takes a tie only for a larger window)
        c.snd_wnd = edge - c.snd_una
    _send_ack(ep, c, now)
    ep.drops[DROP_UNACCEPTABLE] += 1
    return DROP_UNACCEPTABLE


cdef inline int _rst_check(ep_t *ep, uint32_t id, ft_conn_t *c, const pkt_t *p, uint64_t now,
                           uint64_t h) noexcept nogil:
    """Second check, the RST bit (RFC 9293 3.10.7.4 with RFC 5961 3.2; Linux
    tcp_validate_incoming): an in-window RST resets only at exactly RCV.NXT, anywhere
    else it gets a challenge ACK. A passive SYN-RECEIVED record returns to LISTEN."""
    if not (p.flags & TCP_FLAG_RST):
        return _NEXT_STEP
    if p.seq != c.rcv_nxt:
        return _challenge_ack(ep, c, DROP_RST_CHALLENGED, now)
    if c.state == TCPS_SYN_RECEIVED and (c.flags & CONN_F_PASSIVE):
        _close_record_hashed(ep, id, TCPS_LISTEN, EV_RST_RECEIVED, now, h)
    elif c.state == TCPS_SYN_RECEIVED:
        _close_record_hashed(ep, id, TCPS_CLOSED, EV_REFUSED, now, h)
    else:
        _close_record_hashed(ep, id, TCPS_CLOSED, EV_RST_RECEIVED, now, h)
    return -1


cdef inline int _ack_of_syn(ep_t *ep, uint32_t id, ft_conn_t *c, const pkt_t *p, uint8_t *st,
                            uint64_t now) noexcept nogil:
    """Fifth check in SYN-RECEIVED (RFC 9293 3.10.7.4): an ACK of our SYN
    (SND.UNA < SEG.ACK =< SND.NXT) establishes the connection and goes on in
    ESTABLISHED (`st` updated); any other ACK is answered with <SEQ=SEG.ACK><CTL=RST>."""
    if seq_lt(c.snd_una, p.ack) and seq_le(p.ack, c.snd_nxt):
        c.snd_una = p.ack
        c.snd_wnd = (<uint32_t>p.window) << (c.wscale >> 4)
        c.snd_wl1 = p.seq
        c.snd_wl2 = p.ack
        c.retransmits = 0
        _arm(ep, id, 0)
        _enter(ep, id, TCPS_ESTABLISHED, EV_ACK_OF_SYN, now)
        if c.flags & CONN_F_PASSIVE:
            _accept_push(ep, id)
        st[0] = TCPS_ESTABLISHED
        return _NEXT_STEP
    _send(ep, c, TCP_FLAG_RST, p.ack, 0, NULL, 0, now)
    ep.drops[DROP_BAD_ACK] += 1
    return DROP_BAD_ACK


cdef inline void _snd_wnd_update(ft_conn_t *c, const pkt_t *p) noexcept nogil:
    """The send window from a segment newer than the one that last set it (RFC 9293
    3.10.7.4, the SND.WL1/SND.WL2 rule; Linux tcp_may_update_window)."""
    if seq_le(c.snd_una, p.ack) and \
            (seq_lt(c.snd_wl1, p.seq) or (c.snd_wl1 == p.seq and seq_le(c.snd_wl2, p.ack))):
        c.snd_wnd = (<uint32_t>p.window) << (c.wscale >> 4)
        c.snd_wl1 = p.seq
        c.snd_wl2 = p.ack


cdef inline int _fin_acked(ep_t *ep, uint32_t id, ft_conn_t *c, uint8_t *st, uint64_t now,
                           uint64_t h) noexcept nogil:
    """The ACK of our FIN (RFC 9293 3.10.7.4, fifth check by state; Linux
    tcp_rcv_state_process): FIN-WAIT-1 -> FIN-WAIT-2 (going on, `st` updated), CLOSING
    -> TIME-WAIT and LAST-ACK -> CLOSED (done)."""
    if c.snd_una != c.snd_nxt:
        return _NEXT_STEP
    if st[0] == TCPS_FIN_WAIT_1:
        _enter(ep, id, TCPS_FIN_WAIT_2, EV_ACK_OF_FIN, now)
        _arm(ep, id, now + ep.cfg.fin_wait_2)
        st[0] = TCPS_FIN_WAIT_2
    elif st[0] == TCPS_CLOSING:
        _enter(ep, id, TCPS_TIME_WAIT, EV_ACK_OF_FIN, now)
        return -1
    elif st[0] == TCPS_LAST_ACK:
        _close_record_hashed(ep, id, TCPS_CLOSED, EV_ACK_OF_FIN, now, h)
        return -1
    return _NEXT_STEP


cdef inline int _ack_check(ep_t *ep, uint32_t id, ft_conn_t *c, const pkt_t *p, uint8_t *st,
                           uint64_t now, uint64_t h) noexcept nogil:
    """Fifth check, the ACK field (RFC 9293 3.10.7.4 with RFC 5961 5.2; Linux tcp_ack):
    no ACK bit, drop; in SYN-RECEIVED see _ack_of_syn; else an ACK of something not yet
    sent and one too old are challenged and dropped, and a new one advances
    SND.UNA and the send window. `st` follows the state the ACK leads to."""
    if not (p.flags & TCP_FLAG_ACK):
        ep.drops[DROP_NO_ACK] += 1
        return DROP_NO_ACK
    if st[0] == TCPS_SYN_RECEIVED:
        return _ack_of_syn(ep, id, c, p, st, now)
    if seq_gt(p.ack, c.snd_nxt):
        # RFC 5961 5.2: acks something not yet sent -- answered with an ACK, under the
        # challenge ACK budget (7) as Linux answers it outside ESTABLISHED: two ends
        # that disagree about what was sent would otherwise answer each other's
        # answers at line rate
        return _challenge_ack(ep, c, DROP_BAD_ACK, now)
    # RFC 5961 5.2: SND.UNA - MAX.SND.WND <= SEG.ACK; MAX.SND.WND is not kept, the
    # larger of the current window and 64 KiB stands in for it
    if seq_lt(p.ack, c.snd_una - (c.snd_wnd if c.snd_wnd > _MAX_SND_WND_FLOOR else _MAX_SND_WND_FLOOR)):
        return _challenge_ack(ep, c, DROP_BAD_ACK, now)
    if seq_lt(c.snd_una, p.ack):
        c.snd_una = p.ack
        c.retransmits = 0
        if c.snd_una == c.snd_nxt and st[0] != TCPS_TIME_WAIT and st[0] != TCPS_FIN_WAIT_2:
            _arm(ep, id, 0)                # everything acknowledged: no retransmission timer
    _snd_wnd_update(c, p)
    if c.snd_wnd == 0:
        # the peer answers our window probes: never give up on it for that
        # (RFC 1122 4.2.2.17)
        c.retransmits = 0
    return _fin_acked(ep, id, c, st, now, h)


cdef inline int _data_queue(ep_t *ep, uint32_t id, ft_conn_t *c, const pkt_t *p, uint8_t st,
                            uint32_t base, uint64_t now) noexcept nogil:
    """Seventh, the segment text in ESTABLISHED and FIN-WAIT-1/2 (RFC 9293 3.10.7.4;
    Linux tcp_data_queue): the new part of it, up to the receive window, is delivered
    (an EV_DATA event at its buffer offset) and advances RCV.NXT. Data beyond RCV.NXT
    is not reassembled: re-ACKed and dropped. Returns _NEXT_STEP when it is to be ACKed."""
    cdef uint32_t take, skip
    if seq_gt(p.seq, c.rcv_nxt):
        # a hole before it: not reassembled in this release; re-ACK so the peer resends
        _send_ack(ep, c, now)
        ep.drops[DROP_OUT_OF_ORDER] += 1
        return DROP_OUT_OF_ORDER
    skip = c.rcv_nxt - p.seq              # bytes already received (retransmitted overlap)
    if skip < p.payload_len:
        take = p.payload_len - skip
        if take > c.rcv_wnd:
            take = c.rcv_wnd              # never accept beyond the advertised window
        if take:
            c.rcv_nxt += take
            if c.flags & CONN_F_BUFFERED:
                c.rcv_wnd -= take          # buffered until the application reads it
            if st == TCPS_FIN_WAIT_2:
                _arm(ep, id, now + ep.cfg.fin_wait_2)   # idle limit: the peer is not idle
            _event(ep, id, st, st, EV_DATA, take, base + p.payload_off + skip, now)
    return _NEXT_STEP


cdef inline bint _fin_received(ep_t *ep, uint32_t id, ft_conn_t *c, const pkt_t *p, uint8_t st,
                               uint64_t now) noexcept nogil:
    """Eighth, the FIN bit (RFC 9293 3.10.7.4; Linux tcp_fin): taken only in order
    (everything before it received), it advances RCV.NXT over the FIN and moves
    ESTABLISHED -> CLOSE-WAIT, FIN-WAIT-1 -> TIME-WAIT or CLOSING (simultaneous close),
    FIN-WAIT-2 -> TIME-WAIT; in TIME-WAIT it restarts the 2 MSL timeout. True when it
    is to be ACKed."""
    if p.seq + p.payload_len != c.rcv_nxt or st == TCPS_SYN_RECEIVED:
        return False
    c.rcv_nxt += 1
    if st == TCPS_ESTABLISHED:
        _enter(ep, id, TCPS_CLOSE_WAIT, EV_PEER_FIN, now)
    elif st == TCPS_FIN_WAIT_1:
        if c.snd_una == c.snd_nxt:
            _enter(ep, id, TCPS_TIME_WAIT, EV_PEER_FIN, now)
        else:
            _enter(ep, id, TCPS_CLOSING, EV_PEER_FIN, now)   # simultaneous close
    elif st == TCPS_FIN_WAIT_2:
        _enter(ep, id, TCPS_TIME_WAIT, EV_PEER_FIN, now)
    elif st == TCPS_TIME_WAIT:
        ftx_set_state(&ep.tab, id, TCPS_TIME_WAIT, now)   # restart 2 MSL
    return True


cdef inline int _synchronized(ep_t *ep, uint32_t id, const pkt_t *p, const uint8_t *buf,
                              uint32_t base, uint64_t now, const ft_key_t *k, uint64_t h) noexcept nogil:
    """SYN-RECEIVED and every later state: RFC 9293 3.10.7.4's checks in order, as
    Linux's tcp_rcv_state_process runs them. Each step either lets the segment through
    (_NEXT_STEP) or ends it: -1 when it was used, else the DROP_* reason returned.
    `k`, `h`: the segment's key (the record's) and its hash."""
    cdef ft_conn_t *c = &ep.tab.conns[id]
    cdef uint8_t st = c.state
    cdef bint ts_ok = (c.flags & CONN_F_TIMESTAMPS) and (p.opts.present & OPT_HAS_TIMESTAMP)
    cdef bint need_ack = False
    cdef int rc
    # before the checks: a SYN that reopens TIME-WAIT, or repeats the one that opened
    # this SYN-RECEIVED record
    rc = _timewait_syn(ep, id, c, p, ts_ok, now, k)
    if rc != _NEXT_STEP:
        return rc
    rc = _synrecv_syn_again(ep, c, p, now)
    if rc != _NEXT_STEP:
        return rc
    rc = _paws_check(ep, c, p, ts_ok, now)
    if rc != _NEXT_STEP:
        return rc
    # first: the sequence number
    rc = _sequence_check(ep, id, c, p, now)
    if rc == _OLD_ACK:
        return _old_ack(ep, id, c, p, now, h)
    if rc != _NEXT_STEP:
        return rc
    # second: the RST bit
    rc = _rst_check(ep, id, c, p, now, h)
    if rc != _NEXT_STEP:
        return rc
    # third, security: no compartments here
    # fourth: a SYN in a synchronized state (RFC 5961 4.2: challenge ACK)
    if p.flags & TCP_FLAG_SYN:
        return _challenge_ack(ep, c, DROP_SYN_CHALLENGED, now)
    # fifth: the ACK field
    rc = _ack_check(ep, id, c, p, &st, now, h)
    if rc != _NEXT_STEP:
        return rc
    if ts_ok and seq_le(p.seq, c.rcv_nxt):
        c.ts_recent = p.opts.tsval        # RFC 7323 4.3 (RCV.NXT stands in for Last.ACK.sent)
    # sixth, the URG bit: the urgent pointer is not kept
    # seventh: the segment text
    if p.payload_len and (st == TCPS_ESTABLISHED or st == TCPS_FIN_WAIT_1 or st == TCPS_FIN_WAIT_2):
        rc = _data_queue(ep, id, c, p, st, base, now)
        if rc != _NEXT_STEP:
            return rc
        need_ack = True
    # eighth: the FIN bit
    if (p.flags & TCP_FLAG_FIN) and _fin_received(ep, id, c, p, st, now):
        need_ack = True
    if need_ack:
        _send_ack(ep, c, now)
    c.segs += 1
    return -1


cdef inline int _parse_stage(ep_t *ep, const uint8_t *buf, size_t length, pkt_t *p, ft_key_t *k,
                             uint64_t *h) noexcept nogil:
    """First half of SEGMENT ARRIVES: parse, verify, check the destination, hash the key.
    Returns -1 to go on, else a drop reason."""
    cdef parse_err_t err
    ep.segs_in += 1
    if ft_parse_ip_inline(buf, length, p, &err, True, True) != FT_OK:     # lean: see wire.pxd
        ep.drops[DROP_MALFORMED] += 1
        return DROP_MALFORMED
    # the destination is checked against our addresses only if no connection has the
    # key (_dispatch): every record's local address is one of ours (connects refuse
    # others), so a key that is found was sent to us
    h[0] = ft_key_build_hash(&ep.tab, k, p.version, p.dst_port, p.src_port, p.dst, p.src)
    return -1


cdef inline int _no_connection(ep_t *ep, const pkt_t *p, const ft_key_t *k, uint64_t h, uint64_t now,
                               int64_t *id) noexcept nogil:
    """A segment whose key has no record: LISTEN's rules (RFC 9293 3.10.7.2) on a
    listening port, CLOSED's (3.10.7.1) elsewhere. Returns as _dispatch, or _NEXT_STEP
    when an ACK's SYN cookie opened the record `id` it goes on to."""
    if not _is_local(ep, p.dst, p.version):
        ep.drops[DROP_NOT_LOCAL] += 1
        return DROP_NOT_LOCAL
    if _listening(ep, p.dst_port):
        if p.flags & TCP_FLAG_RST:
            ep.drops[DROP_OTHER] += 1
            return DROP_OTHER
        if p.flags & TCP_FLAG_ACK:
            if _cookie_check_due(ep, p, now):
                return _cookie_open(ep, p, k, h, now, id)
            _reset_reply(ep, p, now)      # LISTEN: "any acknowledgment is bad"
            ep.drops[DROP_NO_LISTENER] += 1
            return DROP_NO_LISTENER
        if p.flags & TCP_FLAG_SYN:
            if _cookie_wanted(ep):
                return _cookie_synack(ep, p, now)
            return _passive_open(ep, p, k, now, EV_SYN_RECEIVED, h)
        ep.drops[DROP_OTHER] += 1
        return DROP_OTHER
    _reset_reply(ep, p, now)              # CLOSED: RFC 9293 3.10.7.1
    ep.drops[DROP_NO_LISTENER] += 1
    return DROP_NO_LISTENER


cdef int _dispatch(ep_t *ep, const pkt_t *p, const ft_key_t *k, uint64_t h, const uint8_t *buf,
                   uint32_t base, uint64_t now) noexcept nogil:
    """Second half: find the connection and run the state's rules."""
    cdef int rc
    cdef int64_t id = ftx_lookup(&ep.tab, k, h)
    ep.last_conn = <uint32_t>id if id >= 0 else FT_NIL
    if id < 0:
        rc = _no_connection(ep, p, k, h, now, &id)
        if rc != _NEXT_STEP:
            return rc
    elif ep.tab.conns[id].state == TCPS_SYN_SENT:
        return _syn_sent(ep, <uint32_t>id, p, now)
    # one call of the synchronized states' rules, for a found record and a cookie's new
    # one alike: with a single caller the compiler inlines them here, into every
    # segment's path (with a second, it kept them a function of their own: a call and
    # its register saves on every ACK)
    return _synchronized(ep, <uint32_t>id, p, buf, base, now, k, h)


cdef int ep_process(ep_t *ep, const uint8_t *buf, size_t length, uint32_t base, uint64_t now) noexcept nogil:
    """One IP packet in. Returns -1 when it was used, else the DROP_* reason."""
    cdef pkt_t p
    cdef ft_key_t k
    cdef uint64_t h
    cdef int rc = _parse_stage(ep, buf, length, &p, &k, &h)
    if rc >= 0:
        return rc
    return _dispatch(ep, &p, &k, h, buf, base, now)


# ---- batch pipelines and their depth ----
#
# A batch call works through its packets (keys) in a pipeline: the index slot of the
# packet `depth` places ahead is loaded while this one is processed, so the cache
# misses of a table larger than the cache overlap instead of adding up. Too shallow,
# and a miss is still in flight when its packet's turn comes; too deep, and loaded
# lines are evicted again before use, or the core runs out of fill buffers. The best
# depth is the memory latency over the time per packet, both the machine's, so it is
# measured, not fixed: the first large batch of an endpoint whose table is bigger than
# the CPU's private cache runs its first packets in short chunks at each candidate
# depth, timed, and keeps the fastest, or the shallowest as fast within the noise
# (_calibrate). The measurement is real work: the
# chunks are the batch's own packets, in order, with the same results at any depth.
# It is redone when the table has grown twofold since, or after EP_CAL_PERIOD items.

cdef enum:
    EP_CAL_CHUNK = 512          # items per timed chunk: >= 16 x the deepest candidate, so
                                # the fill and drain of a chunk are a few percent of it
    EP_CAL_ROUNDS = 4           # chunks per candidate; the median is kept (an interrupt
                                # or a preemption spoils one chunk, not the choice)
    EP_CAL_ITEMS = EP_CAL_CHUNK * EP_CAL_ROUNDS * EP_NDEPTHS
    EP_CAL_MIN_BATCH = 4 * EP_CAL_ITEMS    # a batch measures only if the measurement
                                            # is at most a quarter of it
    EP_CAL_PERIOD = 1 << 22     # items between measurements of an unchanged table: the
                                # machine's load, and so its best depth, changes too, and a
                                # measurement a burst of other work spoilt is redone within
                                # half a second of work (each costs 0.25% of the period)
    EP_CAL_SLACK_PCT = 3        # a depth this close to the fastest counts as as fast: the
                                # run-to-run noise of a chunk median on an idle machine

ctypedef void (*_pipe_fn)(ep_t *ep, const void *job, Py_ssize_t lo, Py_ssize_t hi,
                          Py_ssize_t depth) noexcept nogil


cdef inline double _now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <double>ts.tv_sec * 1e9 + <double>ts.tv_nsec


cdef double _median(double *v, int n) noexcept nogil:
    """Median of v[0..n-1] (sorted in place: n is a handful)."""
    cdef int i, j
    cdef double x
    for i in range(1, n):
        x = v[i]
        j = i - 1
        while j >= 0 and v[j] > x:
            v[j + 1] = v[j]
            j -= 1
        v[j + 1] = x
    return v[n // 2] if n & 1 else (v[n // 2 - 1] + v[n // 2]) / 2


cdef inline uint64_t _footprint(const ep_t *ep) noexcept nogil:
    """Bytes of table a batch can touch: the index and the records handed out so far
    (`fresh`, which never shrinks: a table that fills and empties every round, as the
    bench's do, is not measured again each time it refills)."""
    return <uint64_t>ep.tab.fresh * sizeof(ft_conn_t) + ep.tab.nslots * sizeof(uint64_t)


cdef inline bint _calibration_due(const ep_t *ep, const ep_pipe_t *pp, Py_ssize_t n,
                                  uint64_t fp) noexcept nogil:
    """Measure now? Only a large batch (the measurement is a small part of it), only a
    table bigger than the private cache (else every depth runs alike), and only if the
    table has grown twofold or EP_CAL_PERIOD items went by since the last time."""
    if ep.depth_fixed or n < EP_CAL_MIN_BATCH or fp <= ep.cache_bytes:
        return False
    return pp.footprint == 0 or fp >= 2 * pp.footprint or pp.since >= EP_CAL_PERIOD


cdef Py_ssize_t _calibrate(ep_t *ep, ep_pipe_t *pp, _pipe_fn run, const void *job, uint64_t fp) noexcept nogil:
    """Run the first EP_CAL_ITEMS items of a batch in chunks, each candidate depth in
    turn (rotated every round so no depth always follows the same one), and keep the
    shallowest depth whose median time per item is within EP_CAL_SLACK_PCT of the
    lowest: between depths the noise cannot tell apart, the shallower keeps fewer
    prefetched lines waiting, which a busier cache would evict before use. Returns how
    many items were processed."""
    cdef double ns[EP_NDEPTHS][EP_CAL_ROUNDS]
    cdef double t0
    cdef Py_ssize_t pos = 0
    cdef int r, c, k, best = 0
    for r in range(EP_CAL_ROUNDS):
        for c in range(EP_NDEPTHS):
            k = (c + r) % EP_NDEPTHS
            t0 = _now_ns()
            run(ep, job, pos, pos + EP_CAL_CHUNK, 2 << k)
            ns[k][r] = (_now_ns() - t0) / EP_CAL_CHUNK
            pos += EP_CAL_CHUNK
    for k in range(EP_NDEPTHS):
        pp.ns[k] = _median(ns[k], EP_CAL_ROUNDS)
        if pp.ns[k] < pp.ns[best]:
            best = k
    for k in range(best):
        if pp.ns[k] * 100 <= pp.ns[best] * (100 + EP_CAL_SLACK_PCT):
            best = k
            break
    pp.depth = 2 << best
    pp.footprint = fp
    pp.since = 0
    pp.calibrations += 1
    return pos


cdef void _pipelined(ep_t *ep, int which, _pipe_fn run, const void *job, Py_ssize_t n) noexcept nogil:
    """Items 0..n-1 of a batch through pipeline `which` (EP_PIPE_*), measuring its
    depth first when that is due."""
    cdef ep_pipe_t *pp = &ep.pipes[which]
    cdef uint64_t fp = _footprint(ep)
    cdef Py_ssize_t done = 0
    if _calibration_due(ep, pp, n, fp):
        done = _calibrate(ep, pp, run, job, fp)
    pp.since += <uint64_t>n
    if done < n:
        run(ep, job, done, n, pp.depth)


ctypedef struct _stage_t:
    pkt_t p
    ft_key_t k
    uint64_t h
    int rc


ctypedef struct _seg_job_t:             # what ep_process_batch's pipeline works through
    const uint8_t *buf
    const int64_t *offs
    const int64_t *lens
    int64_t *result
    uint64_t now


cdef inline void _pb_finish(ep_t *ep, _stage_t *s, const uint8_t *buf, const int64_t *offs, Py_ssize_t j,
                            uint64_t now, int64_t *result) noexcept nogil:
    # last stage of packet j: the connection's rules
    if s.rc < 0:
        s.rc = _dispatch(ep, &s.p, &s.k, s.h, buf + offs[j], <uint32_t>offs[j], now)
    if result != NULL:
        result[j] = s.rc


cdef inline void _pb_middle(ep_t *ep, const _stage_t *s) noexcept nogil:
    # the packet's index slot has arrived: start loading its record
    if s.rc < 0:
        ftx_prefetch_record(&ep.tab, s.h)


cdef inline void _pb_start(ep_t *ep, _stage_t *s, const uint8_t *buf, const int64_t *offs, const int64_t *lens,
                           Py_ssize_t i) noexcept nogil:
    # first stage of packet i: parse, hash, prefetch its index slot
    s.rc = _parse_stage(ep, buf + offs[i], <size_t>lens[i], &s.p, &s.k, &s.h)
    if s.rc < 0:
        ftx_prefetch(&ep.tab, s.h)


cdef inline void _pb_steady(ep_t *ep, _stage_t *ring, const uint8_t *buf, const int64_t *offs,
                            const int64_t *lens, Py_ssize_t lo, Py_ssize_t hi, uint64_t now, int64_t *result,
                            const Py_ssize_t d) noexcept nogil:
    """_pb_run's steady state, lo+d <= i < hi. Inlined once per depth (d a constant in
    each copy), so the ring's slot arithmetic folds as it did for the fixed depth this
    replaced: with d a variable it cost 15 instructions a segment and 3% of the
    cache-resident handshake rate (plain build)."""
    cdef Py_ssize_t i
    for i in range(lo + d, hi):
        if i + EP_STREAM_AHEAD < hi:
            # the first line of the segment parsed EP_STREAM_AHEAD steps on: at an
            # offset the caller checked against the buffer (receive_batch, on copies of
            # the arrays that no other thread can rewrite; pipe, on the arena's own).
            # A segment's second line is, in a packed batch, the next one's first.
            FT_PREFETCH(buf + offs[i + EP_STREAM_AHEAD])
        _pb_finish(ep, &ring[i & (d - 1)], buf, offs, i - d, now, result)
        _pb_middle(ep, &ring[(i - d // 2) & (d - 1)])
        _pb_start(ep, &ring[i & (d - 1)], buf, offs, lens, i)


cdef void _pb_run(ep_t *ep, const void *job, Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t d) noexcept nogil:
    """Packets lo..hi-1 of a segment batch, pipelined `d` deep (a power of 2 up to
    EP_DEPTH_MAX): packet i+d is parsed and its index slot prefetched, and packet
    i+d/2's record prefetched, while packet i is processed, so table misses overlap.
    Same results as ep_process in order, at any depth (a lookup only ever uses its own
    key's hash, computed from immutable packet bytes)."""
    cdef const _seg_job_t *jb = <const _seg_job_t *>job
    # the job's fields as locals: read through the pointer, every byte the loop stores
    # (a packet, an event) could have changed them, and they would be reloaded each time
    cdef const uint8_t *buf = jb.buf
    cdef const int64_t *offs = jb.offs
    cdef const int64_t *lens = jb.lens
    cdef int64_t *result = jb.result
    cdef uint64_t now = jb.now
    cdef _stage_t ring[EP_DEPTH_MAX]
    cdef Py_ssize_t i, m = d - 1, half = d >> 1
    # Step i finishes packet i-d (first: its ring slot is the one packet i is parsed
    # into), prefetches the record of packet i-d/2 and starts packet i. The steady
    # state (lo+d <= i < hi) runs all three with no bounds to check; the fill and the
    # drain are the steps where some do not apply.
    for i in range(lo, hi if hi - lo < d else lo + d):
        if i - half >= lo:
            _pb_middle(ep, &ring[(i - half) & m])
        _pb_start(ep, &ring[i & m], buf, offs, lens, i)
    if d == 2:
        _pb_steady(ep, ring, buf, offs, lens, lo, hi, now, result, 2)
    elif d == 4:
        _pb_steady(ep, ring, buf, offs, lens, lo, hi, now, result, 4)
    elif d == 8:
        _pb_steady(ep, ring, buf, offs, lens, lo, hi, now, result, 8)
    elif d == 16:
        _pb_steady(ep, ring, buf, offs, lens, lo, hi, now, result, 16)
    else:
        _pb_steady(ep, ring, buf, offs, lens, lo, hi, now, result, 32)
    for i in range(hi, hi + d):
        if i - d >= lo:
            _pb_finish(ep, &ring[i & m], buf, offs, i - d, now, result)
        if lo <= i - half < hi:
            _pb_middle(ep, &ring[(i - half) & m])


cdef void ep_process_batch(ep_t *ep, const uint8_t *buf, const int64_t *offs, const int64_t *lens,
                           Py_ssize_t n, uint64_t now, int64_t *result) noexcept nogil:
    """Many packets, pipelined (_pb_run) at the endpoint's measured depth. Same results
    as ep_process in order; `result` (or NULL) gets -1 or the drop reason of each."""
    cdef _seg_job_t jb
    jb.buf = buf
    jb.offs = offs
    jb.lens = lens
    jb.result = result
    jb.now = now
    _pipelined(ep, EP_PIPE_SEGMENTS, _pb_run, &jb, n)


# ---- user calls ----

cdef int64_t ep_connect(ep_t *ep, const ft_key_t *k, uint64_t now) noexcept nogil:
    """Active open: a SYN-SENT record and its SYN. Returns the id, FT_TABLE_FULL,
    FT_TABLE_EXISTS or EP_NOT_LOCAL."""
    return _connect_hashed(ep, k, ft_hash_key(&ep.tab, k), now)


ctypedef struct _conn_job_t:            # what ep_connect_batch's pipeline works through
    const ft_key_t *keys
    int64_t *out
    uint64_t now


cdef void _cb_run(ep_t *ep, const void *job, Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t d) noexcept nogil:
    """Keys lo..hi-1 of a connect batch, pipelined `d` deep as _pb_run: key i+d is
    hashed and its index slot prefetched while key i is opened (in a large table every
    lookup is a cache miss otherwise). Same results as ep_connect in order. Each key is
    read twice, hashed then recorded: the keys must be the call's own (ep_copy_keys),
    never an array another thread can rewrite in between."""
    cdef const _conn_job_t *jb = <const _conn_job_t *>job
    cdef const ft_key_t *keys = jb.keys         # as locals: see _pb_run
    cdef int64_t *out = jb.out
    cdef uint64_t now = jb.now
    cdef uint64_t hs[EP_DEPTH_MAX]
    cdef Py_ssize_t i, m = d - 1
    # fill, steady state (no bounds to check), drain: as in _pb_run (key i and key i-d
    # share a slot of hs: i-d is opened before i is hashed into it)
    for i in range(lo, hi if hi - lo < d else lo + d):
        hs[i & m] = ft_hash_key(&ep.tab, &keys[i])
        ftx_prefetch(&ep.tab, hs[i & m])
    for i in range(lo + d, hi):
        if i + EP_STREAM_AHEAD < hi:
            FT_PREFETCH(&keys[i + EP_STREAM_AHEAD])
            FT_PREFETCH_W(&out[i + EP_STREAM_AHEAD - d])
        out[i - d] = _connect_hashed(ep, &keys[i - d], hs[i & m], now)
        hs[i & m] = ft_hash_key(&ep.tab, &keys[i])
        ftx_prefetch(&ep.tab, hs[i & m])
    for i in range(hi if hi - lo > d else lo + d, hi + d):
        out[i - d] = _connect_hashed(ep, &keys[i - d], hs[i & m], now)


cdef void ep_connect_batch(ep_t *ep, const ft_key_t *keys, Py_ssize_t n, uint64_t now,
                           int64_t *out) noexcept nogil:
    """ep_connect for many keys, pipelined (_cb_run) at the endpoint's measured depth.
    Same results as n calls of ep_connect in order."""
    cdef _conn_job_t jb
    jb.keys = keys
    jb.out = out
    jb.now = now
    _pipelined(ep, EP_PIPE_CONNECTS, _cb_run, &jb, n)


cdef int64_t _connect_hashed(ep_t *ep, const ft_key_t *k, uint64_t h, uint64_t now) noexcept nogil:
    cdef uint32_t evicted
    cdef int64_t id
    cdef ft_conn_t *c
    if not _is_local(ep, k.laddr, k.family):
        return EP_NOT_LOCAL                # records hold our addresses only (see _parse_stage)
    if ftx_lookup(&ep.tab, k, h) >= 0:
        return FT_TABLE_EXISTS             # before making room: nothing is evicted for it
    _make_room(ep, now)
    id = ftx_insert_new(&ep.tab, k, h, TCPS_SYN_SENT, now, &evicted)
    if id < 0:
        return id
    c = &ep.tab.conns[id]
    c.flags = 0
    c.iss = _isn(ep, k, now)
    c.snd_una = c.iss
    c.snd_nxt = c.iss + 1
    c.rcv_wnd = ep.cfg.window
    c.mss = ep.cfg.mss
    c.retransmits = 0
    _event(ep, <uint32_t>id, TCPS_CLOSED, TCPS_SYN_SENT, EV_CONNECT, 0, 0, now)
    _send_syn(ep, c, now)
    _arm(ep, <uint32_t>id, now + _rto(ep, 0))
    return id


cdef int ep_close(ep_t *ep, uint32_t id, uint64_t now) noexcept nogil:
    """User CLOSE (RFC 9293 3.10.4): FIN after what was sent. 0, or -1 if nothing to do."""
    cdef ft_conn_t *c = &ep.tab.conns[id]
    cdef uint8_t st = c.state
    cdef uint8_t nxt
    if st == TCPS_SYN_SENT:
        _close_record(ep, id, TCPS_CLOSED, EV_CLOSE, now)
        return 0
    if st == TCPS_SYN_RECEIVED or st == TCPS_ESTABLISHED:
        nxt = TCPS_FIN_WAIT_1
    elif st == TCPS_CLOSE_WAIT:
        nxt = TCPS_LAST_ACK
    else:
        return -1
    _send(ep, c, TCP_FLAG_FIN | TCP_FLAG_ACK, c.snd_nxt, c.rcv_nxt, NULL, 0, now)
    c.snd_nxt += 1
    c.retransmits = 0
    _enter(ep, id, nxt, EV_CLOSE, now)
    _arm(ep, id, now + _rto(ep, 0))
    return 0


cdef void ep_abort(ep_t *ep, uint32_t id, uint64_t now) noexcept nogil:
    """User ABORT: RST if synchronized (RFC 9293 3.10.5), then the record is gone."""
    cdef ft_conn_t *c = &ep.tab.conns[id]
    if c.state >= TCPS_SYN_RECEIVED and c.state != TCPS_TIME_WAIT and c.state != TCPS_CLOSING \
            and c.state != TCPS_LAST_ACK:
        _send(ep, c, TCP_FLAG_RST, c.snd_nxt, 0, NULL, 0, now)
    _close_record(ep, id, TCPS_CLOSED, EV_ABORT, now)


cdef Py_ssize_t ep_send_data(ep_t *ep, uint32_t id, const uint8_t *data, size_t n, uint64_t now,
                             uint64_t rto) noexcept nogil:
    """One data segment at SND.NXT (caller respects MSS and SND.WND); arms the
    retransmission timer if it is not running. Returns bytes sent, or -1 if the
    segment was dropped (transmit queue full): SND.NXT moves on all the same, as for a
    segment lost on the wire, and the retransmission timer resends it. (Left behind,
    SND.NXT would have the caller's send loop offer the same segment forever.)"""
    cdef ft_conn_t *c = &ep.tab.conns[id]
    cdef Py_ssize_t rc = _send(ep, c, TCP_FLAG_ACK | TCP_FLAG_PSH, c.snd_nxt, c.rcv_nxt, data, n, now)
    c.snd_nxt += <uint32_t>n
    if c.deadline == 0:
        _arm(ep, id, now + rto)
    return -1 if rc < 0 else <Py_ssize_t>n


cdef Py_ssize_t ep_resend_data(ep_t *ep, uint32_t id, uint32_t seq, const uint8_t *data, size_t n,
                               bint fin, uint64_t now) noexcept nogil:
    """Retransmit n bytes starting at seq (and the FIN after them when `fin`)."""
    cdef ft_conn_t *c = &ep.tab.conns[id]
    cdef uint16_t flags = TCP_FLAG_ACK | (TCP_FLAG_PSH if n else 0) | (TCP_FLAG_FIN if fin else 0)
    ep.retransmissions += 1
    return _send(ep, c, flags, seq, c.rcv_nxt, data, n, now)


cdef Py_ssize_t ep_send_probe(ep_t *ep, uint32_t id, uint64_t now) noexcept nogil:
    """A zero-window probe (RFC 9293 3.8.6.1, RFC 1122 4.2.2.17): an empty ACK one below
    SND.UNA, as Linux sends it (tcp_xmit_probe_skb). The peer finds it old and answers
    with an ACK that carries its window (RFC 9293 3.10.7.4, first check). A probe with
    the next octet would put SND.NXT past the closed window, and the sequence number of
    every ACK after it would be a guess: SND.NXT, one past the peer's RCV.NXT if it
    refused the octet, or the window's edge, one below if it took it -- each refused,
    ACK field and all, in one of the two cases."""
    cdef ft_conn_t *c = &ep.tab.conns[id]
    return _send(ep, c, TCP_FLAG_ACK, c.snd_una - 1, c.rcv_nxt, NULL, 0, now)


# ---- timers ----

cdef enum:
    _POLL_GROUP = 32                  # expired records whose index slots are loaded together


cdef inline void _handshake_timer(ep_t *ep, uint32_t id, ft_conn_t *c, uint8_t st, uint64_t now) noexcept nogil:
    """SYN-SENT / SYN-RECEIVED timer: send the SYN (SYN-ACK) again with the timeout
    doubled (RFC 6298 5.5; Linux tcp_retransmit_timer), or give up after syn_retries
    (synack_retries) tries -- a passive record back to LISTEN."""
    cdef uint8_t limit = ep.cfg.syn_retries if st == TCPS_SYN_SENT else ep.cfg.synack_retries
    if c.retransmits >= limit:
        _close_record(ep, id, TCPS_LISTEN if (st == TCPS_SYN_RECEIVED and (c.flags & CONN_F_PASSIVE))
                      else TCPS_CLOSED, EV_RETRANSMIT_LIMIT, now)
        return
    c.retransmits += 1
    ep.retransmissions += 1
    if st == TCPS_SYN_SENT:
        _send_syn(ep, c, now)
    else:
        _send_synack(ep, c, now)
    _event(ep, id, st, st, EV_RETRANSMIT, c.retransmits, 0, now)
    _arm(ep, id, now + _rto(ep, c.retransmits))


cdef inline void _retransmit_timer(ep_t *ep, uint32_t id, ft_conn_t *c, uint8_t st, uint64_t now) noexcept nogil:
    """A synchronized state's retransmission timer (RFC 6298 5.4-5.6; Linux
    tcp_retransmit_timer): give up after retries2 (RFC 1122 4.2.3.5's R2), else back
    off and announce EV_RETRANSMIT for the layer that holds the data; a FIN that is
    the only thing outstanding is resent here."""
    if c.retransmits >= ep.cfg.retries2:
        _close_record(ep, id, TCPS_CLOSED, EV_RETRANSMIT_LIMIT, now)
        return
    c.retransmits += 1
    if (st == TCPS_FIN_WAIT_1 or st == TCPS_CLOSING or st == TCPS_LAST_ACK) \
            and c.snd_una == c.snd_nxt - 1:
        ep.retransmissions += 1
        _send(ep, c, TCP_FLAG_FIN | TCP_FLAG_ACK, c.snd_nxt - 1, c.rcv_nxt, NULL, 0, now)
    _event(ep, id, st, st, EV_RETRANSMIT, c.retransmits, 0, now)
    _arm(ep, id, now + _rto(ep, c.retransmits))


cdef inline void _prefetch_leaving(ep_t *ep, const uint32_t *ids, Py_ssize_t i, Py_ssize_t n,
                                   uint64_t *hs) noexcept nogil:
    """The expired records just came through the cache (ft_expire walked them); their
    index slots did not. Hash the keys of the group's records that are leaving the
    table (TIME-WAIT, FIN-WAIT-2) and start loading their slots, so a TIME-WAIT storm's
    removals overlap their cache misses instead of paying them one by one."""
    cdef Py_ssize_t j
    cdef const ft_conn_t *c
    for j in range(i, min(n, i + _POLL_GROUP)):
        c = &ep.tab.conns[ids[j]]
        if c.state == TCPS_TIME_WAIT or c.state == TCPS_FIN_WAIT_2:
            hs[j - i] = ft_hash_key(&ep.tab, c)
            ftx_prefetch_w(&ep.tab, hs[j - i])


cdef void ep_poll(ep_t *ep, uint64_t now, uint32_t *ids, Py_ssize_t cap) noexcept nogil:
    """Run every timer due at `now`: retransmit SYN / SYN-ACK / FIN with exponential
    backoff (RFC 6298 5.5) or give up, end TIME-WAIT after 2 MSL and FIN-WAIT-2 after its
    idle limit. Data retransmission is announced with EV_RETRANSMIT for the layer that
    holds the bytes."""
    cdef Py_ssize_t n, i
    cdef uint32_t id
    cdef ft_conn_t *c
    cdef uint8_t st
    cdef uint64_t hs[_POLL_GROUP]
    while True:
        n = ft_expire(&ep.tab, now, ids, NULL, cap)
        for i in range(n):
            if i % _POLL_GROUP == 0:
                _prefetch_leaving(ep, ids, i, n, hs)
            id = ids[i]
            c = &ep.tab.conns[id]
            st = c.state
            if st == TCPS_TIME_WAIT:
                _close_record_hashed(ep, id, TCPS_CLOSED, EV_TIMEOUT_2MSL, now, hs[i % _POLL_GROUP])
            elif st == TCPS_FIN_WAIT_2:
                _close_record_hashed(ep, id, TCPS_CLOSED, EV_TIMEOUT, now, hs[i % _POLL_GROUP])
            elif st == TCPS_SYN_SENT or st == TCPS_SYN_RECEIVED:
                _handshake_timer(ep, id, c, st, now)
            else:
                _retransmit_timer(ep, id, c, st, now)
        if n < cap:
            break
