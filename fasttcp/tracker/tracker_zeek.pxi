# Zeek's view of a connection (included by tracker_core.pxi; C only).
#
# Restated from Zeek's TCP analyzer and checked against Zeek's own baselines shipped
# with the test captures: endpoint states, the history letters with their once/scaled
# rules, sequence-space byte counts (Zeek's Size()), and a one-block reassembly model
# for content gaps ('G', missed_bytes).

cdef enum:
    # history "seen" categories (bit = category * 2 + direction)
    HC_SYN = 0
    HC_FIN = 1
    HC_RST = 2
    HC_FIN_RST = 3
    HC_DATA = 4
    HC_ACK = 5
    HC_MULTI = 6
    _BIG_JUMP = 1 << 20               # a SYN/RST this far off is not trusted to move last_seq


cdef inline bint _check_once(trk_t *r, int cat, char letter, int d) noexcept nogil:
    """Record `letter` the first time category `cat` happens in direction d; True if
    it had happened before (Zeek's CheckHistory)."""
    cdef uint32_t bit = (<uint32_t>1) << (cat * 2 + d)
    if r.hist_seen & bit:
        return True
    r.hist_seen |= bit
    _hist_add(r, letter, d)
    return False


cdef inline void _zset(trk_dir_t *e, uint8_t st) noexcept nogil:
    e.zprev = e.zstate
    e.zstate = st


cdef inline void _reinit(trk_dir_t *e, uint32_t start, uint32_t last) noexcept nogil:
    e.start_seq = start
    e.ack_seq = start
    e.last_seq = last
    e.seq_wraps = 0
    e.ack_wraps = 0
    e.asm_top = start + 1             # first data byte (after the real or pretend SYN)
    e.flags &= ~D_OB


cdef inline void _set_last(trk_dir_t *e, uint32_t s) noexcept nogil:
    if s < e.last_seq:
        e.seq_wraps += 1
    e.last_seq = s


cdef inline void _advance_ack(trk_dir_t *peer, uint32_t ack) noexcept nogil:
    """The peer's highest acknowledged sequence number moves forward to `ack` (counting
    2^32 laps); an ACK of 0 far ahead is not trusted (a stack that sends ack 0 with the
    ACK flag set)."""
    cdef int32_t dl = <int32_t>(ack - peer.ack_seq)
    if dl > 0 and not (ack == 0 and dl > _BIG_JUMP):
        if ack < peer.ack_seq:
            peer.ack_wraps += 1
        peer.ack_seq = ack


cdef uint64_t _size(const trk_dir_t *e, const trk_dir_t *peer) noexcept nogil:
    """Zeek's endpoint Size(): the sequence space used, SYN and FIN octets excluded
    (retransmissions count once; bytes acknowledged but never seen count)."""
    cdef int64_t L = (<int64_t>e.seq_wraps << 32) + e.last_seq
    cdef int64_t A = (<int64_t>e.ack_wraps << 32) + e.ack_seq
    cdef int64_t size
    if e.zprev == Z_SYN_SENT and e.zstate == Z_RESET and peer.zstate == Z_INACTIVE and \
            not (A == e.start_seq or A == <int64_t>e.start_seq + 1):
        return 0
    size = (L if L > A else A) - e.start_seq
    if size < 0:
        return 0
    if size != 0:
        size -= 1
    if (e.flags & D_SEEN_FIN) and size != 0:
        size -= 1
    return <uint64_t>size


cdef inline bint _clean(const trk_dir_t *x) noexcept nogil:
    return x.zstate == Z_ESTABLISHED or (x.zstate == Z_CLOSED and x.zprev == Z_ESTABLISHED)


cdef void _data_sent(trk_dir_t *e, uint32_t seq, uint32_t n) noexcept nogil:
    """Payload [seq, seq+n) of e crossed the capture point: advance the in-order edge,
    or keep one out-of-order block for when the hole below it fills."""
    cdef uint32_t end = seq + n
    if not _after(end, e.asm_top):
        return                        # nothing new
    if not _after(seq, e.asm_top):
        e.asm_top = end
        if (e.flags & D_OB) and not _after(e.ob_start, e.asm_top):
            if _after(e.ob_end, e.asm_top):
                e.asm_top = e.ob_end
            e.flags &= ~D_OB
        return
    if not (e.flags & D_OB):
        e.ob_start = seq
        e.ob_end = end
        e.flags |= D_OB
    elif not _after(seq, e.ob_end) and not _before(end, e.ob_start):
        if _before(seq, e.ob_start):
            e.ob_start = seq
        if _after(end, e.ob_end):
            e.ob_end = end
    elif _before(seq, e.ob_start):
        e.ob_start = seq              # keep the block nearest the hole
        e.ob_end = end


cdef inline void _ack_received(trk_t *r, trk_dir_t *e, trk_dir_t *peer, int ed, uint32_t ack) noexcept nogil:
    """The peer acknowledged e's data up to `ack`: whatever below it never crossed the
    capture point is a content gap ('G' for e, counted in missed_bytes). Inline up to
    the usual answer, that every acknowledged byte was seen."""
    cdef uint32_t a = ack
    if (e.flags & D_SEEN_FIN) and not _before(a, e.fin_seq):
        a = e.fin_seq - 1             # the FIN octet is not data
    if _after(a, e.asm_top):
        _ack_gap(r, e, peer, ed, a)


cdef void _ack_gap(trk_t *r, trk_dir_t *e, trk_dir_t *peer, int ed, uint32_t a) noexcept nogil:
    """_ack_received past e's in-order edge: account the gap below `a`."""
    cdef uint32_t cur = e.asm_top
    cdef uint64_t gap = 0
    if (e.flags & D_OB) and _before(e.ob_start, a):
        gap += e.ob_start - cur
        cur = e.ob_end if _after(e.ob_end, cur) else cur
        e.flags &= ~D_OB
    if _after(a, cur):
        gap += a - cur
        cur = a
    e.asm_top = cur
    if gap == 0 or gap > 0x40000000:
        return                        # an ACK from another epoch, not a plausible gap
    if (r.cflags & C_PARTIAL) and a - e.start_seq <= 2:
        return
    if _clean(e) and _clean(peer):
        _hist_scaled(r, H_GAP, ed, &e.n_gap)
        e.missed += gap


cdef bint _zeek_state(trk_t *r, trk_dir_t *e, trk_dir_t *peer, bint is_orig, uint16_t f,
                      uint32_t seq, uint32_t plen) noexcept nogil:
    """The endpoint state machine for one packet sent by `e`. Returns True when the
    roles must be reversed (the responder's SYN came after the originator's SYN-ACK)."""
    cdef bint syn = (f & TCP_FLAG_SYN) != 0, fin = (f & TCP_FLAG_FIN) != 0
    cdef bint rst = (f & TCP_FLAG_RST) != 0, ack = (f & TCP_FLAG_ACK) != 0
    cdef bint reverse = False, do_close = False
    cdef uint8_t st = e.zstate
    if st == Z_INACTIVE:
        if syn:
            if is_orig:
                _zset(e, Z_SYN_ACK_SENT if ack else Z_SYN_SENT)
            else:
                if not ack and peer.zstate == Z_SYN_ACK_SENT and seq == e.start_seq:
                    reverse = True
                    r.cflags &= ~C_PARTIAL
                    _zset(peer, Z_ESTABLISHED)
                if peer.zstate == Z_SYN_SENT:
                    _zset(peer, Z_ESTABLISHED)
                _zset(e, Z_ESTABLISHED)
        if fin:
            _zset(e, Z_CLOSED)
            do_close = True
        if rst:
            _zset(e, Z_RESET)
            do_close = True
        if e.zstate == Z_INACTIVE:
            if not is_orig and plen == 0 and peer.zstate == Z_SYN_SENT:
                pass                  # the responder's bare ACK before its SYN-ACK
            elif ack and peer.zstate == Z_ESTABLISHED:
                _zset(e, Z_ESTABLISHED)
                r.cflags &= ~C_PARTIAL
            else:
                _zset(e, Z_PARTIAL)
    elif st == Z_SYN_SENT or st == Z_SYN_ACK_SENT:
        if fin:
            _zset(e, Z_CLOSED)
            do_close = True
        if rst:
            _zset(e, Z_RESET)
            do_close = True
    elif st == Z_ESTABLISHED or st == Z_PARTIAL:
        if syn and st == Z_PARTIAL and peer.zstate == Z_INACTIVE and not ack:
            _zset(e, Z_SYN_SENT)
        if fin and not rst:
            _zset(e, Z_CLOSED)
            if peer.zstate == Z_RESET and peer.zprev == Z_CLOSED:
                _zset(peer, Z_CLOSED)     # the peer's FIN then RST: treated as a normal close
            do_close = True
        if rst:
            _zset(e, Z_RESET)
            do_close = True
    elif st == Z_CLOSED:
        if rst and peer.zstate != Z_CLOSED:
            _zset(e, Z_RESET)
            do_close = True
    if do_close:
        e.flags |= D_DID_CLOSE
    return reverse


cdef inline void _zeek_note_partial(trk_t *r, const trk_dir_t *e, bint is_orig, bint syn,
                                    bint ack) noexcept nogil:
    """Zeek's is_partial, at each side's first packet: the connection did not start
    with the originator's plain SYN."""
    if e.flags & D_FIRST_SEEN:
        return
    if is_orig:
        if (not syn) or ack:
            r.cflags |= C_PARTIAL
        else:
            r.cflags &= ~C_PARTIAL
    elif not (r.cflags & C_PARTIAL) and not syn:
        r.cflags |= C_PARTIAL


cdef inline void _zeek_seq_space(trk_dir_t *e, bint syn, uint32_t seq, uint32_t end_seq) noexcept nogil:
    """The sender's sequence space starts at its SYN (again at a new SYN); a side first
    seen without one gets a pretend SYN at seq - 1."""
    cdef uint8_t st = e.zstate
    if st == Z_INACTIVE:
        if syn:
            _reinit(e, seq, end_seq)
        else:
            _reinit(e, seq - 1, seq)
    elif (st == Z_SYN_SENT or st == Z_SYN_ACK_SENT) and syn and seq != e.start_seq:
        _reinit(e, seq, end_seq)
    elif (st == Z_ESTABLISHED or st == Z_PARTIAL) and syn:
        _reinit(e, seq, end_seq)
    elif st == Z_RESET and syn and e.zprev == Z_INACTIVE:
        _reinit(e, seq, end_seq)


cdef inline void _zeek_history(trk_t *r, trk_dir_t *e, int d, bint syn, bint fin, bint rst, bint ack,
                               uint32_t plen, uint32_t rel_seq) noexcept nogil:
    """The packet's letter: S/H, F and R once, and again only at a new position; D, A,
    I (FIN with RST) and Q (other flag mixes) once per direction."""
    cdef int nflags = syn + fin + rst
    if nflags >= 2:
        if fin and rst:
            _check_once(r, HC_FIN_RST, H_INCONSISTENT, d)
        else:
            _check_once(r, HC_MULTI, H_MULTI_FLAG, d)
    elif nflags == 1:
        if syn:
            if _check_once(r, HC_SYN, H_SYNACK if ack else H_SYN, d) and rel_seq != e.hist_last_syn:
                _hist_add(r, H_SYNACK if ack else H_SYN, d)
            e.hist_last_syn = rel_seq
        if fin:
            if _check_once(r, HC_FIN, H_FIN, d) and rel_seq + plen != e.hist_last_fin:
                _hist_add(r, H_FIN, d)
            e.hist_last_fin = rel_seq + plen
        if rst:
            if _check_once(r, HC_RST, H_RST, d) and rel_seq != e.hist_last_rst:
                _hist_add(r, H_RST, d)
            e.hist_last_rst = rel_seq
    elif plen:
        _check_once(r, HC_DATA, H_DATA, d)
    elif ack:
        _check_once(r, HC_ACK, H_ACK, d)


cdef inline void _zeek_last_seq(trk_t *r, trk_dir_t *e, int d, bint syn, bint fin, bint rst,
                                uint32_t plen, uint32_t end_seq) noexcept nogil:
    """The sender's highest sequence number, and its retransmissions: payload that does
    not extend the sequence space ('T'). A SYN or RST far off does not move it."""
    cdef int32_t dl = <int32_t>(end_seq - e.last_seq)
    if (syn or rst) and (dl > _BIG_JUMP or dl < -_BIG_JUMP):
        pass
    elif fin and e.last_seq == e.start_seq + 1:
        _set_last(e, end_seq)
    elif e.zstate == Z_RESET:
        pass
    elif dl > 0:
        _set_last(e, end_seq)
    elif plen > 0:
        e.retrans += 1
        _hist_scaled(r, H_RETRANS, d, &e.n_rexmit)


cdef bint _zeek(tr_t *tr, uint32_t id, int d, const pkt_t *p, uint32_t plen, uint32_t ip_len,
                uint64_t now) noexcept nogil:
    """Zeek's processing of one checksum-valid packet from direction d. Returns True
    if the roles must be reversed afterwards (the caller flips, appending '^')."""
    cdef trk_t *r = &tr.recs[id]
    cdef trk_dir_t *e = &r.d[d]
    cdef trk_dir_t *peer = &r.d[1 - d]
    cdef uint16_t f = p.flags
    cdef bint syn = (f & TCP_FLAG_SYN) != 0, fin = (f & TCP_FLAG_FIN) != 0
    cdef bint rst = (f & TCP_FLAG_RST) != 0, ack = (f & TCP_FLAG_ACK) != 0
    cdef bint is_orig = d == 0, underflow, ack_under = False, reverse
    cdef uint32_t seq = p.seq, seg_len, end_seq, rel_seq
    _zeek_note_partial(r, e, is_orig, syn, ack)
    seg_len = plen + syn + fin - (plen if rst else 0)
    end_seq = seq + seg_len
    _zeek_seq_space(e, syn, seq, end_seq)
    rel_seq = seq - e.start_seq
    underflow = <int32_t>rel_seq < 0
    _zeek_history(r, e, d, syn, fin, rst, ack, plen, rel_seq)
    if p.window == 0 and not rst and peer.zstate != Z_CLOSED and e.zstate != Z_RESET:
        _hist_scaled(r, H_ZERO_WIN, d, &e.n_zero)
    # duration stops at the packet that completes a close (the last ACK does not count)
    if not ((e.flags & D_DID_CLOSE) and (peer.flags & D_DID_CLOSE)) and now > r.last_us:
        r.last_us = now
    if fin:
        e.flags |= D_SEEN_FIN
        e.fin_seq = end_seq
    # the ACK: the peer's sequence space (a silent peer starts at ack - 1)
    if ack:
        if peer.zstate == Z_INACTIVE:
            _reinit(peer, p.ack - 1, p.ack - 1)
        elif <int32_t>(p.ack - peer.start_seq) < 0:
            ack_under = True
        elif not rst:
            _advance_ack(peer, p.ack)
    _zeek_last_seq(r, e, d, syn, fin, rst, plen, end_seq)
    reverse = _zeek_state(r, e, peer, is_orig, f, seq, plen)
    if ack and not ack_under:
        _ack_received(r, peer, e, 1 - d, p.ack)
    if plen and not rst and not underflow and p.payload_len == plen:
        _data_sent(e, seq + syn, plen)
    e.flags |= D_FIRST_SEEN
    e.pkts += 1
    e.ip_bytes += ip_len
    e.bytes += plen
    return reverse
