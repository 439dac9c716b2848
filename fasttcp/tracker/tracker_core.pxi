# The tracker's protocol logic, in C (included by tracker.pyx; no Python objects here).
#
# One pass per packet does two jobs over one record:
#   * conntrack: the netfilter TCP state machine (the T[dir][class][state] table) with
#     per-direction window tracking (td_end/td_maxend/td_maxwin, window scaling, SACK),
#     verdicts ACCEPT / IGNORED / INVALID, ASSURED, and port reuse after TIME_WAIT/CLOSE;
#   * Zeek: the endpoint states (INACTIVE .. RESET) and the history letters that give
#     conn.log's conn_state and history, plus its packet/byte counters.
# Both read the same parsed packet and the same record, so a packet is touched once.

cdef enum:
    # conntrack packet classes (index into the transition table)
    K_SYN = 0
    K_SYNACK = 1
    K_FIN = 2
    K_ACK = 3
    K_RST = 4
    K_NONE = 5

    _MAXACKWIN_MIN = 66000            # conntrack MAXACKWINDOW floor

# Zeek's history letters (conn.log `history`), as the originator writes them; the
# responder's are the lower-case ones (_hist_add). Declared in C: a Cython enum
# cannot take character literals.
cdef extern from *:
    """
    enum {
        H_SYN = 'S',                /* a SYN without ACK */
        H_SYNACK = 'H',             /* a SYN-ACK ("handshake") */
        H_ACK = 'A',                /* a pure ACK */
        H_DATA = 'D',               /* a packet with payload */
        H_FIN = 'F',
        H_RST = 'R',
        H_BAD_CSUM = 'C',           /* a bad checksum */
        H_RETRANS = 'T',            /* a retransmission */
        H_ZERO_WIN = 'W',           /* a zero window advertised */
        H_INCONSISTENT = 'I',       /* FIN and RST together */
        H_MULTI_FLAG = 'Q',         /* SYN with FIN or RST */
        H_GAP = 'G',                /* a content gap */
        H_FLIPPED = '^',            /* roles swapped by the direction heuristics (no case) */
        H_LOWER = 'a' - 'A'         /* the responder's letters: lower case */
    };
    """
    enum:
        H_SYN
        H_SYNACK
        H_ACK
        H_DATA
        H_FIN
        H_RST
        H_BAD_CSUM
        H_RETRANS
        H_ZERO_WIN
        H_INCONSISTENT
        H_MULTI_FLAG
        H_GAP
        H_FLIPPED
        H_LOWER

# Transition table T[dir][class][old state]: new state, TRK_IGNORE or TRK_INVALID,
# restated from the tables of netfilter's nf_conntrack_proto_tcp.c (the reasoning per
# cell is in docs/tracker.md and in that file's comments).
cdef enum:
    sNO = TRK_NONE
    sSS = TRK_SYN_SENT
    sSR = TRK_SYN_RECV
    sES = TRK_ESTABLISHED
    sFW = TRK_FIN_WAIT
    sCW = TRK_CLOSE_WAIT
    sLA = TRK_LAST_ACK
    sTW = TRK_TIME_WAIT
    sCL = TRK_CLOSE
    sS2 = TRK_SYN_SENT2
    sIG = TRK_IGNORE
    sIV = TRK_INVALID

cdef uint8_t _T[2][6][10]
# ORIGINAL direction
_T[0][K_SYN][:] = [sSS, sSS, sIG, sIG, sIG, sIG, sIG, sSS, sSS, sS2]
_T[0][K_SYNACK][:] = [sIV, sIV, sSR, sIV, sIV, sIV, sIV, sIV, sIV, sSR]
_T[0][K_FIN][:] = [sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV]
_T[0][K_ACK][:] = [sES, sIV, sES, sES, sCW, sCW, sTW, sTW, sCL, sIV]
_T[0][K_RST][:] = [sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL]
_T[0][K_NONE][:] = [sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV]
# REPLY direction
_T[1][K_SYN][:] = [sIV, sS2, sIV, sIV, sIV, sIV, sIV, sSS, sIV, sS2]
_T[1][K_SYNACK][:] = [sIV, sSR, sIG, sIG, sIG, sIG, sIG, sIG, sIG, sSR]
_T[1][K_FIN][:] = [sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV]
_T[1][K_ACK][:] = [sIV, sIG, sSR, sES, sCW, sCW, sTW, sTW, sCL, sIG]
_T[1][K_RST][:] = [sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL]
_T[1][K_NONE][:] = [sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV]


cdef inline bint _before(uint32_t a, uint32_t b) noexcept nogil:
    return <int32_t>(a - b) < 0


cdef inline bint _after(uint32_t a, uint32_t b) noexcept nogil:
    return <int32_t>(b - a) < 0


cdef inline int _class(uint16_t f) noexcept nogil:
    if f & TCP_FLAG_RST:
        return K_RST
    if f & TCP_FLAG_SYN:
        return K_SYNACK if f & TCP_FLAG_ACK else K_SYN
    if f & TCP_FLAG_FIN:
        return K_FIN
    if f & TCP_FLAG_ACK:
        return K_ACK
    return K_NONE


cdef inline bint _valid_flags(uint16_t f) noexcept nogil:
    """conntrack's whitelist of flag combinations (PSH, ECE, CWR, AE masked out)."""
    f &= TCP_FLAG_FIN | TCP_FLAG_SYN | TCP_FLAG_RST | TCP_FLAG_ACK | TCP_FLAG_URG
    return (f == TCP_FLAG_SYN or f == (TCP_FLAG_SYN | TCP_FLAG_URG) or f == (TCP_FLAG_SYN | TCP_FLAG_ACK)
            or f == TCP_FLAG_RST or f == (TCP_FLAG_RST | TCP_FLAG_ACK)
            or f == (TCP_FLAG_FIN | TCP_FLAG_ACK) or f == (TCP_FLAG_FIN | TCP_FLAG_ACK | TCP_FLAG_URG)
            or f == TCP_FLAG_ACK or f == (TCP_FLAG_ACK | TCP_FLAG_URG))


# ---- history ----

cdef inline void _hist_add(trk_t *r, char letter, int d) noexcept nogil:
    cdef char ch = letter
    if d:
        ch = ch + H_LOWER             # responder: lower case
    if r.hist_len < sizeof(r.history):
        r.history[r.hist_len] = ch
        r.hist_len += 1


cdef inline void _hist_raw(trk_t *r, char ch) noexcept nogil:
    if r.hist_len < sizeof(r.history):
        r.history[r.hist_len] = ch
        r.hist_len += 1


cdef inline bint _began_with_synack(const trk_t *r) noexcept nogil:
    """The history so far is one 'H': the capture began with the responder's SYN-ACK,
    so the roles are not settled until the next packet shows who the client is."""
    return r.hist_len == 1 and r.history[0] == H_SYNACK


cdef inline void _hist_scaled(trk_t *r, char letter, int d, uint32_t *count) noexcept nogil:
    """Letters that repeat on a log scale (Zeek ScaledHistoryEntry): at the 1st, 10th,
    100th, ... occurrence in this direction."""
    cdef uint32_t n
    count[0] += 1
    n = count[0]
    while n % 10 == 0:
        n //= 10
    if n == 1:
        _hist_add(r, letter, d)


# ---- records ----

cdef inline void _event(tr_t *tr, uint32_t id, uint8_t old, uint8_t new, int d, uint16_t flags,
                        int64_t pkt, uint64_t now) noexcept nogil:
    cdef trk_event_t *e
    if not tr.cfg.want_events:
        return
    if tr.nev >= tr.cap_ev:
        tr.ev_dropped += 1
        return
    e = &tr.ev[tr.nev]
    tr.nev += 1
    e.time_us = now
    e.packet = pkt
    e.conn = id
    e.old_state = old
    e.new_state = new
    e.direction = <uint8_t>d
    e._pad = 0
    e.tcp_flags = flags
    e._pad2 = 0
    e._pad3 = 0


cdef inline uint32_t _span(uint64_t later, uint64_t earlier) noexcept nogil:
    cdef uint64_t d = later - earlier if later > earlier else 0
    return <uint32_t>d if d < 0xfffffffeu else 0xfffffffeu


cdef int _conn_state(const trk_t *r) noexcept nogil:
    """Zeek's conn_state from the two endpoint states (base/protocols/conn/main.zeek)."""
    cdef uint8_t os = r.d[0].zstate, rs = r.d[1].zstate
    cdef bint o_inact = os == Z_INACTIVE or os == Z_PARTIAL
    cdef bint r_inact = rs == Z_INACTIVE or rs == Z_PARTIAL
    if rs == Z_RESET:
        if os == Z_SYN_SENT or os == Z_SYN_ACK_SENT or \
                (os == Z_RESET and _size(&r.d[0], &r.d[1]) == 0 and _size(&r.d[1], &r.d[0]) == 0):
            return CS_REJ
        if o_inact:
            return CS_RSTRH
        return CS_RSTR
    if os == Z_RESET:
        if r_inact:
            return CS_RSTOS0 if _rstos0_history(r) else CS_OTH
        return CS_RSTO
    if rs == Z_CLOSED and os == Z_CLOSED:
        return CS_SF
    if os == Z_CLOSED:
        return CS_SH if r_inact else CS_S2
    if rs == Z_CLOSED:
        return CS_SHR if o_inact else CS_S3
    if os == Z_SYN_SENT and rs == Z_INACTIVE:
        return CS_S0
    if os == Z_ESTABLISHED and rs == Z_ESTABLISHED:
        return CS_S1
    return CS_OTH


cdef bint _rstos0_history(const trk_t *r) noexcept nogil:
    """history matches ^?S[^HAFGIQ]*R : the originator's SYN, then its RST, with no
    SYN-ACK, ACK, FIN, gap, inconsistency or multi-flag packet from it in between."""
    cdef int i = 0
    cdef char ch
    if r.hist_len > 0 and r.history[0] == H_FLIPPED:
        i = 1
    if i >= r.hist_len or r.history[i] != H_SYN:
        return False
    i += 1
    while i < r.hist_len:
        ch = r.history[i]
        if ch == H_RST:
            return True
        if ch == H_SYNACK or ch == H_ACK or ch == H_FIN or ch == H_GAP or ch == H_INCONSISTENT \
                or ch == H_MULTI_FLAG:
            return False
        i += 1
    return False


cdef void _fill_row(tr_t *tr, uint32_t id, flow_row_t *row, uint8_t reason) noexcept nogil:
    cdef const ft_conn_t *c = &tr.tab.conns[id]
    cdef const trk_t *r = &tr.recs[id]
    cdef bint swapped = (c.flags & CONN_F_SWAPPED) != 0
    memset(row, 0, sizeof(flow_row_t))
    row.start_us = r.first_us
    row.end_us = r.last_us
    row.orig_bytes = _size(&r.d[0], &r.d[1])
    row.resp_bytes = _size(&r.d[1], &r.d[0])
    row.orig_ip_bytes = r.d[0].ip_bytes
    row.resp_ip_bytes = r.d[1].ip_bytes
    row.orig_payload = r.d[0].bytes
    row.resp_payload = r.d[1].bytes
    row.missed_bytes = r.d[0].missed + r.d[1].missed
    row.orig_pkts = r.d[0].pkts
    row.resp_pkts = r.d[1].pkts
    row.orig_retrans = r.d[0].retrans
    row.resp_retrans = r.d[1].retrans
    row.rtt_syn_synack = r.rtt1 if r.cflags & C_RTT1 else 0xffffffffu
    row.rtt_synack_ack = r.rtt2 if r.cflags & C_RTT2 else 0xffffffffu
    row.id = id
    row.family = c.family
    row.state = c.state
    row.conn_state = <uint8_t>_conn_state(r)
    row.end_reason = reason
    row.orig_state = r.d[0].zstate
    row.resp_state = r.d[1].zstate
    row.flipped = (r.cflags & C_FLIPPED) != 0
    # the stored key is canonical; SWAPPED says the originator is its r side
    if swapped:
        memcpy(row.orig_h, c.raddr, 16)
        memcpy(row.resp_h, c.laddr, 16)
        row.orig_p = c.rport
        row.resp_p = c.lport
    else:
        memcpy(row.orig_h, c.laddr, 16)
        memcpy(row.resp_h, c.raddr, 16)
        row.orig_p = c.lport
        row.resp_p = c.rport
    memcpy(row.history, r.history, r.hist_len)


cdef void _finish(tr_t *tr, uint32_t id, uint8_t reason) noexcept nogil:
    """Hand the connection's summary to the caller and free its record."""
    if tr.ndone < tr.cap_done:
        _fill_row(tr, id, &tr.done[tr.ndone], reason)
        tr.ndone += 1
    ftx_remove(&tr.tab, id)


cdef inline uint64_t _timeout_of(const tr_t *tr, uint32_t id) noexcept nogil:
    """The idle timeout of a record now (conntrack's choice of timeout)."""
    cdef uint8_t st = tr.tab.conns[id].state
    cdef const trk_t *r = &tr.recs[id]
    cdef uint64_t t = tr.timeout[st]
    if r.ct_retrans >= TRK_MAX_RETRANS and t > tr.retrans:
        return tr.retrans             # the same segment again and again (conntrack checks this first)
    if (r.cflags & C_RST_TIMER) and t > tr.timeout[TRK_CLOSE]:
        t = tr.timeout[TRK_CLOSE]     # an in-window RST kept the state: it gets CLOSE's time
    if t > tr.unack and ((st == TRK_ESTABLISHED and not (r.cflags & C_SEEN_REPLY))
                         or ((r.d[0].ct_flags | r.d[1].ct_flags) & CT_DATA_UNACK)):
        t = tr.unack                  # one-sided traffic, or data never acknowledged
    return t


cdef inline void _arm(tr_t *tr, uint32_t id, uint64_t touch) noexcept nogil:
    """(Re)arm the idle timer of the record's state from `touch` (its last refresh)."""
    ftx_set_deadline(&tr.tab, id, touch + _timeout_of(tr, id))


cdef inline void _rearm_if_sooner(tr_t *tr, uint32_t id, uint64_t touch) noexcept nogil:
    """After a state change: the timer is lazy (expiry re-arms a record that was touched
    since), so it only has to move when the new state's deadline comes sooner."""
    cdef uint64_t due = touch + _timeout_of(tr, id)
    cdef uint64_t armed = tr.tab.conns[id].deadline
    if armed == 0 or due < armed:
        ftx_set_deadline(&tr.tab, id, due)


cdef int64_t _create(tr_t *tr, const ft_key_t *k, uint64_t h, bint swapped, uint64_t now) noexcept nogil:
    cdef uint32_t evicted
    cdef int64_t id = ftx_insert_new(&tr.tab, k, h, TRK_NONE, now, &evicted)
    cdef trk_t *r
    if id < 0:
        return id
    r = &tr.recs[id]
    ft_zero_small(r, sizeof(trk_t))
    tr.tab.conns[id].flags = CONN_F_SWAPPED if swapped else 0
    r.first_us = now
    r.last_us = now
    r.touch_us = now
    tr.created += 1
    _arm(tr, <uint32_t>id, now)
    return id


cdef inline void _swap_roles(tr_t *tr, uint32_t id) noexcept nogil:
    cdef trk_t *r = &tr.recs[id]
    cdef trk_dir_t tmp = r.d[0]
    r.d[0] = r.d[1]
    r.d[1] = tmp
    tr.tab.conns[id].flags ^= CONN_F_SWAPPED
    r.cflags ^= C_FLIPPED
    r.ct_orig ^= 1                    # conntrack's ORIGINAL stays the same physical side


cdef void _flip_plain(tr_t *tr, uint32_t id) noexcept nogil:
    """Swap originator and responder mid-connection (SYN/SYN-ACK reversal): '^' is
    appended to the history, the letters so far keep their case."""
    _swap_roles(tr, id)
    _hist_raw(&tr.recs[id], H_FLIPPED)


cdef void _flip_rewrite(tr_t *tr, uint32_t id) noexcept nogil:
    """Swap the roles of a connection that began with a SYN-ACK, once the next packet
    (an ACK or data) shows who the client is: history becomes '^' + the letters so
    far with their case swapped, as if the roles had been right from the start."""
    cdef trk_t *r = &tr.recs[id]
    cdef uint32_t lo, hi, seen = r.hist_seen
    cdef int i
    _swap_roles(tr, id)
    if r.hist_len >= sizeof(r.history):
        r.hist_len = sizeof(r.history) - 1
    for i in range(r.hist_len, 0, -1):
        r.history[i] = r.history[i - 1] ^ H_LOWER     # ASCII case swap
    r.history[0] = H_FLIPPED
    r.hist_len += 1
    # the "seen" bits are category * 2 + direction: swap each pair's two directions
    lo = seen & 0x55555555u
    hi = seen & 0xaaaaaaaau
    r.hist_seen = (lo << 1) | (hi >> 1)


# ---- conntrack window tracking (tcp_in_window) ----
#
# `snd`/`rcv` are the sender's and receiver's halves of the record; `ctd` is the packet's
# conntrack direction (0 = the side that started conntrack's view, 1 = the reply).

cdef enum:
    W_ACCEPT = 0
    W_IGNORE = 1
    W_INVALID = 2


cdef inline uint32_t _sack_edge(const pkt_t *p, uint32_t ack) noexcept nogil:
    cdef uint32_t s = ack
    cdef int i
    for i in range(p.opts.sack_count):
        if _after(p.opts.sack_right[i], s):
            s = p.opts.sack_right[i]
    return s


cdef void _init_sender(trk_dir_t *snd, trk_dir_t *rcv, int ctd, const pkt_t *p, uint32_t end) noexcept nogil:
    snd.td_end = end
    snd.td_maxend = end
    snd.td_maxwin = p.window if p.window else 1
    snd.ct_flags &= CT_BE_LIBERAL
    snd.td_scale = 0
    if p.opts.present & OPT_HAS_WSCALE:
        snd.td_scale = p.opts.wscale if p.opts.wscale <= TCP_WSCALE_MAX else TCP_WSCALE_MAX
        snd.ct_flags |= CT_WINDOW_SCALE
    if p.opts.present & OPT_HAS_SACK_PERM:
        snd.ct_flags |= CT_SACK_PERM
    if ctd == 1 and not ((snd.ct_flags & CT_WINDOW_SCALE) and (rcv.ct_flags & CT_WINDOW_SCALE)):
        # RFC 7323: scaling applies only when both SYNs carried the option
        snd.td_scale = 0
        rcv.td_scale = 0


cdef int _in_window(tr_t *tr, trk_t *r, uint8_t state, trk_dir_t *snd, trk_dir_t *rcv, int ctd,
                    const pkt_t *p, uint32_t plen, int cls) noexcept nogil:
    cdef uint16_t f = p.flags
    cdef uint32_t seq = p.seq, ack = p.ack, sack, end, win = p.window, maxackwin
    cdef bint liberal = tr.cfg.liberal or (snd.ct_flags & CT_BE_LIBERAL) != 0
    cdef bint ok1, ok2, ok3, ok4
    end = seq + plen + (1 if f & TCP_FLAG_SYN else 0) + (1 if f & TCP_FLAG_FIN else 0)
    sack = ack
    if (rcv.ct_flags & CT_SACK_PERM) and p.opts.sack_count:
        sack = _sack_edge(p, ack)
    if snd.td_maxwin == 0:
        if f & TCP_FLAG_SYN:
            _init_sender(snd, rcv, ctd, p, end)
            if not (f & TCP_FLAG_ACK):
                return W_ACCEPT
        else:
            # midstream: the first packet from this side
            snd.td_end = end
            snd.td_maxwin = (win << snd.td_scale) if win else 1
            snd.td_maxend = end + snd.td_maxwin
            if rcv.td_maxwin == 0:
                rcv.td_end = sack
                rcv.td_maxend = sack
            elif sack == rcv.td_end + 1:
                rcv.td_end += 1           # answer to a keepalive (sent at snd_nxt - 1)
    elif (f & TCP_FLAG_SYN) and _after(end, snd.td_end) and \
            (state == TRK_SYN_SENT or state == TRK_SYN_RECV):
        # a newer SYN re-initialises the sender (RFC 793 reuse with higher numbers)
        _init_sender(snd, rcv, ctd, p, end)
        if ctd == 1 and not (f & TCP_FLAG_ACK):
            return W_ACCEPT
    if not (f & TCP_FLAG_ACK) or ((f & TCP_FLAG_RST) and ack == 0):
        ack = rcv.td_end
        sack = ack
    if (f & TCP_FLAG_RST) and seq == 0 and state == TRK_SYN_SENT:
        seq = snd.td_end
        end = seq
    maxackwin = snd.td_maxwin if snd.td_maxwin > _MAXACKWIN_MIN else _MAXACKWIN_MIN
    ok1 = _before(seq, snd.td_maxend + 1)
    ok2 = rcv.td_maxwin == 0 or _after(end, snd.td_end - rcv.td_maxwin - 1)
    ok3 = _before(sack, rcv.td_end + 1)
    ok4 = _after(sack, rcv.td_end - maxackwin - 1)
    if not ok1:
        if rcv.td_maxwin != 0 and _after(end, snd.td_end - rcv.td_maxwin - 1) and ok4 and ok3 \
                and end - snd.td_maxend + 1 <= rcv.td_maxwin:
            # a little more than the window allowed: remember it so its ACK passes
            snd.td_end = end
            snd.ct_flags |= CT_DATA_UNACK
            return W_ACCEPT if liberal else W_IGNORE
        return W_ACCEPT if liberal else W_INVALID
    if not ok3:
        return W_ACCEPT if liberal else W_INVALID
    if not ok2 or not ok4:
        return W_ACCEPT if liberal else W_IGNORE
    _window_accept(r, snd, rcv, ctd, p, seq, ack, sack, end, cls)
    return W_ACCEPT


cdef inline void _window_accept(trk_t *r, trk_dir_t *snd, trk_dir_t *rcv, int ctd, const pkt_t *p,
                                uint32_t seq, uint32_t ack, uint32_t sack, uint32_t end,
                                int cls) noexcept nogil:
    """tcp_in_window's second half: a packet inside the window moves the bounds."""
    cdef uint32_t win = p.window, swin
    if not (p.flags & TCP_FLAG_SYN):
        win <<= snd.td_scale
    swin = win + (sack - ack)
    if snd.td_maxwin < swin:
        snd.td_maxwin = swin
    if _after(end, snd.td_end):
        snd.td_end = end
        snd.ct_flags |= CT_DATA_UNACK
    if p.flags & TCP_FLAG_ACK:
        if not (snd.ct_flags & CT_MAXACK_SET):
            snd.td_maxack = ack
            snd.ct_flags |= CT_MAXACK_SET
        elif _after(ack, snd.td_maxack):
            snd.td_maxack = ack
    if rcv.td_maxwin != 0 and _after(end, snd.td_maxend):
        rcv.td_maxwin += end - snd.td_maxend
    if _after(sack + win, rcv.td_maxend - 1):
        rcv.td_maxend = sack + win
        if win == 0:
            rcv.td_maxend += 1            # room for a zero-window probe
    if ack == rcv.td_end:
        rcv.ct_flags &= ~CT_DATA_UNACK
    if cls == K_ACK:
        # conntrack's retransmission detector: the same ACK-class packet again
        if r.last_dir == ctd and r.last_seq == seq and r.last_ack == ack and r.last_end == end \
                and r.last_win == p.window:
            if r.ct_retrans < 255:
                r.ct_retrans += 1
        else:
            r.last_dir = <uint8_t>ctd
            r.last_seq = seq
            r.last_ack = ack
            r.last_end = end
            r.last_win = p.window
            r.ct_retrans = 0


# ---- conntrack state machine (nf_conntrack_tcp_packet) ----

cdef enum:
    CT_OK = 0                         # accepted (the state may have changed)
    CT_IGNORED = 1                    # conntrack IGNORE: no change, timer not refreshed
    CT_INVALID = 2
    CT_REOPEN = 3                     # a SYN reopens a closed 4-tuple: finish and start anew
    # between _conntrack's steps
    _CT_GO_ON = -1                    # the step passed the packet on
    _CT_RST_KEEP = -2                 # an in-window, inexact RST: accepted, the state kept
    _TRK_REOPEN = TRK_INVALID + 1     # _ct_next_state: CT_REOPEN


cdef inline int _ct_first_packet(tr_t *tr, uint32_t id, trk_t *r, int zd, int cls, const pkt_t *p,
                                 uint32_t end, uint64_t now, int64_t pkt) noexcept nogil:
    """conntrack's entry starts with a SYN or, when loose, an ACK (tcp_new, midstream
    pickup); its ORIGINAL direction is that packet's. A SYN goes on through the state
    machine (_CT_GO_ON); an ACK is ESTABLISHED at once, with liberal window tracking
    both ways (CT_OK); anything else is INVALID."""
    cdef trk_dir_t *snd
    if cls == K_SYN:
        r.ct_orig = <uint8_t>zd
        r.cflags |= C_CT_STARTED
        return _CT_GO_ON
    if cls != K_ACK or not tr.cfg.loose:
        return CT_INVALID
    r.ct_orig = <uint8_t>zd
    snd = &r.d[zd]
    snd.td_end = end
    snd.td_maxwin = p.window if p.window else 1
    snd.td_maxend = end + snd.td_maxwin
    r.d[0].ct_flags |= CT_SACK_PERM | CT_BE_LIBERAL
    r.d[1].ct_flags |= CT_SACK_PERM | CT_BE_LIBERAL
    r.cflags |= C_CT_STARTED | C_MIDSTREAM
    r.last_class = K_ACK
    r.last_dir = 0
    r.touch_us = now
    ftx_set_state_only(&tr.tab, id, TRK_ESTABLISHED)
    _rearm_if_sooner(tr, id, now)
    _event(tr, id, TRK_NONE, TRK_ESTABLISHED, zd, p.flags, pkt, now)
    return CT_OK


cdef inline uint8_t _ct_next_state(trk_t *r, uint8_t old, int cls, int ctd) noexcept nogil:
    """The transition table's new state, TRK_IGNORE or TRK_INVALID, with tcp_packet's
    own cases: a SYN on a closed entry (TIME_WAIT, CLOSE) reopens it (_TRK_REOPEN) if
    the entry was closed by a FIN or by this side's RST, else it is ignored; a
    simultaneous open's ACK from the REPLY side establishes."""
    cdef uint8_t new = _T[ctd][cls][old]
    if new == TRK_SYN_SENT and old >= TRK_TIME_WAIT and old != TRK_SYN_SENT2:
        if ((r.d[0].ct_flags | r.d[1].ct_flags) & CT_CLOSE_INIT) or \
                (r.last_dir == ctd and r.last_class == K_RST):
            return _TRK_REOPEN
        return TRK_IGNORE
    if new == TRK_SYN_SENT2:
        r.cflags |= C_SIMOPEN
    if new == TRK_SYN_RECV and ctd == 1 and cls == K_ACK and (r.cflags & C_SIMOPEN):
        new = TRK_ESTABLISHED
    return new


cdef inline void _ct_remember_ignored(trk_t *r, int cls, int ctd, const pkt_t *p, uint32_t end) noexcept nogil:
    """An ignored packet changes no state, but conntrack remembers it (the last_*
    fields): the next packet may show it was right after all (a SYN-ACK answering an
    ignored SYN, a retransmission of it)."""
    r.last_class = <uint8_t>cls
    r.last_dir = <uint8_t>ctd
    r.last_seq = p.seq
    r.last_end = end
    r.last_win = p.window
    if ctd == 1:
        r.cflags |= C_SEEN_REPLY


cdef inline int _ct_rst_check(tr_t *tr, const trk_t *r, const trk_dir_t *rcv, uint8_t old, int ctd,
                              const pkt_t *p) noexcept nogil:
    """RFC 5961 as conntrack applies it, once the peer has ACKed something (and not
    right after a SYN): a RST below what the peer already acknowledged is not believed
    (CT_INVALID); one in the window but not exactly at the peer's highest ACK keeps the
    state of an assured connection (_CT_RST_KEEP: the peer will send a challenge ACK);
    _CT_GO_ON otherwise."""
    cdef bint est
    if not (rcv.ct_flags & CT_MAXACK_SET) or r.last_class == K_SYN:
        return _CT_GO_ON
    est = old == TRK_ESTABLISHED and (r.cflags & C_ASSURED) != 0
    if p.seq == 0 and not est:
        return _CT_GO_ON
    if _before(p.seq, rcv.td_maxack):
        tr.out_of_window += 1
        return CT_INVALID
    if not est or p.seq == rcv.td_maxack:
        return _CT_GO_ON
    if r.last_class == K_ACK and r.last_dir == ctd and p.seq == r.last_end:
        return _CT_GO_ON             # right after this side's last ACK: exact enough
    return _CT_RST_KEEP


cdef inline int _ct_window_check(tr_t *tr, trk_t *r, uint8_t old, trk_dir_t *snd, trk_dir_t *rcv, int ctd,
                                 const pkt_t *p, uint32_t plen, int cls) noexcept nogil:
    """tcp_in_window's verdict as a CT_* result (_CT_GO_ON: in the window); outside it,
    counted, and IGNORED or INVALID as conntrack decides."""
    cdef int w = _in_window(tr, r, old, snd, rcv, ctd, p, plen, cls)
    if w == W_IGNORE:
        tr.out_of_window += 1
        if ctd == 1:
            r.cflags |= C_SEEN_REPLY
        return CT_IGNORED
    if w == W_INVALID:
        tr.out_of_window += 1
        return CT_INVALID
    return _CT_GO_ON


cdef inline void _ct_accept(tr_t *tr, uint32_t id, trk_t *r, trk_dir_t *snd, uint8_t old, uint8_t new,
                            int cls, int ctd, bint rst_keep, int zd, const pkt_t *p, uint64_t now,
                            int64_t pkt) noexcept nogil:
    """An accepted packet (tcp_packet's end): the last packet remembered, the RST timer,
    CLOSE_INIT, SEEN_REPLY and ASSURED, the idle timer refreshed, the new state."""
    r.last_class = <uint8_t>cls
    r.last_dir = <uint8_t>ctd
    if rst_keep:
        r.cflags |= C_RST_TIMER
        _rearm_if_sooner(tr, id, now)
    elif cls != K_RST:
        r.cflags &= ~C_RST_TIMER
    if new != old and new == TRK_FIN_WAIT:
        snd.ct_flags |= CT_CLOSE_INIT
    if ctd == 1 and not (r.cflags & C_SEEN_REPLY):
        r.cflags |= C_SEEN_REPLY      # set after this packet: the SYN-ACK itself does not assure
    elif (r.cflags & C_SEEN_REPLY) and not (r.cflags & C_ASSURED) and \
            (old == TRK_SYN_RECV or old == TRK_ESTABLISHED) and new == TRK_ESTABLISHED:
        r.cflags |= C_ASSURED
    # a retransmitted SYN with no reply yet must not keep the entry alive
    if not (cls == K_SYN and old == TRK_SYN_SENT and not (r.cflags & C_SEEN_REPLY)):
        r.touch_us = now
    if new != old:
        ftx_set_state_only(&tr.tab, id, new)
        _event(tr, id, old, new, zd, p.flags, pkt, now)
    # the timeout may also have shrunk without a state change (data left unacknowledged,
    # an in-window RST): a timer armed for later must come forward
    _rearm_if_sooner(tr, id, r.touch_us)


cdef int _conntrack(tr_t *tr, uint32_t id, int zd, const pkt_t *p, uint32_t plen, uint64_t now,
                    int64_t pkt) noexcept nogil:
    """conntrack's view of one packet (nf_conntrack_tcp_packet); zd is its Zeek
    direction (0 = originator). Returns a CT_* result."""
    cdef trk_t *r = &tr.recs[id]
    cdef uint8_t old = tr.tab.conns[id].state, new
    cdef int cls, ctd, rc
    cdef uint32_t end
    cdef bint rst_keep = False
    cdef trk_dir_t *snd
    cdef trk_dir_t *rcv
    if not _valid_flags(p.flags):
        return CT_INVALID
    cls = _class(p.flags)
    end = p.seq + plen + (1 if p.flags & TCP_FLAG_SYN else 0) + (1 if p.flags & TCP_FLAG_FIN else 0)
    if not (r.cflags & C_CT_STARTED):
        rc = _ct_first_packet(tr, id, r, zd, cls, p, end, now, pkt)
        if rc != _CT_GO_ON:
            return rc
    ctd = zd ^ r.ct_orig
    snd = &r.d[zd]
    rcv = &r.d[1 - zd]
    # the transition table, then the cases it cannot say alone
    new = _ct_next_state(r, old, cls, ctd)
    if new == _TRK_REOPEN:
        return CT_REOPEN
    if new == TRK_IGNORE:
        _ct_remember_ignored(r, cls, ctd, p, end)
        return CT_IGNORED
    if new == TRK_INVALID:
        return CT_INVALID
    # a RST is held against the peer's ACKs, every packet against the window; not a RST
    # while closing (tcp_packet lets those through)
    if not (cls == K_RST and old >= TRK_FIN_WAIT and old <= TRK_CLOSE):
        if cls == K_RST:
            rc = _ct_rst_check(tr, r, rcv, old, ctd, p)
            if rc == CT_INVALID:
                return CT_INVALID
            if rc == _CT_RST_KEEP:
                new = old
                rst_keep = True
        rc = _ct_window_check(tr, r, old, snd, rcv, ctd, p, plen, cls)
        if rc != _CT_GO_ON:
            return rc
    _ct_accept(tr, id, r, snd, old, new, cls, ctd, rst_keep, zd, p, now, pkt)
    return CT_OK


include "tracker_zeek.pxi"


cdef void _rtt(tr_t *tr, trk_t *r, int d, const pkt_t *p, uint64_t now) noexcept nogil:
    """Handshake RTTs as a passive observer sees them: the originator's SYN -> the
    SYN-ACK that acknowledges it, and that SYN-ACK -> the ACK of it. Matching is by
    sequence numbers, so a stray SYN-ACK is no sample, and the SYN-ACK -> ACK time
    survives a role flip (a capture that begins with the SYN-ACK)."""
    cdef uint16_t f = p.flags & (TCP_FLAG_SYN | TCP_FLAG_ACK | TCP_FLAG_RST | TCP_FLAG_FIN)
    if f == TCP_FLAG_SYN and d == 0:
        if not (r.cflags & C_SYN_TIME):
            r.syn_us = now
            r.syn_seq = p.seq
            r.syn_len = p.tcp_len - p.header_len      # data on the SYN (TCP Fast Open)
            r.cflags |= C_SYN_TIME
    elif f == (TCP_FLAG_SYN | TCP_FLAG_ACK):
        if not (r.cflags & C_RTT_SYNACK) and \
                (not (r.cflags & C_SYN_TIME) or
                 (d == 1 and _after(p.ack, r.syn_seq) and not _after(p.ack, r.syn_seq + 1 + r.syn_len))):
            r.synack_us = now
            r.synack_seq = p.seq
            r.cflags |= C_RTT_SYNACK
            if (r.cflags & C_SYN_TIME) and not (r.cflags & C_RTT1):
                r.rtt1 = _span(now, r.syn_us)
                r.cflags |= C_RTT1
                tr.rtt_samples += 1
    elif (f & TCP_FLAG_ACK) and not (f & (TCP_FLAG_SYN | TCP_FLAG_RST)) and \
            (r.cflags & C_RTT_SYNACK) and not (r.cflags & C_RTT2) and p.ack == r.synack_seq + 1:
        # only the other side acknowledges the SYN-ACK's sequence number
        r.rtt2 = _span(now, r.synack_us)
        r.cflags |= C_RTT2


# ---- header prediction ----

cdef inline bint _zeek_quiet_for_acks(const trk_dir_t *e, const trk_dir_t *peer) noexcept nogil:
    """For a segment without SYN, FIN or RST (and a nonzero window), Zeek's endpoint
    state machine changes nothing in every state but INACTIVE (a first packet sets the
    sequence space up) and RESET (no longer tracks the sequence space); the peer's only
    special state is INACTIVE (the ACK sets its sequence space up)."""
    return e.zstate != Z_INACTIVE and e.zstate != Z_RESET and peer.zstate != Z_INACTIVE


# One function on purpose, longer than the house limit: split into inline conntrack,
# window and Zeek helpers it cost 2.6% more instructions per packet under the profile-
# guided build (gcc then inlined more of the general path into the feed loop and laid
# it out worse). Its two halves are marked "conntrack: accepted" and "Zeek:".
cdef inline bint _fast_path(tr_t *tr, uint32_t id, int zd, const pkt_t *p, uint32_t plen, uint32_t ip_len,
                            uint64_t now, int64_t pkt, bint fin) noexcept nogil:
    """The common case at a glance (Van Jacobson's header prediction, the fast path of
    Linux's tcp_rcv_established): an ACK, data segment or FIN|ACK inside conntrack's window, on a
    connection conntrack has started, whose ACK-class transition is a state (not IGNORE
    or INVALID), and whose Zeek endpoints are quiet for it. That is nearly every packet
    of a bulk transfer, and the ACKs that complete a handshake and close a connection.
    Does what _conntrack and _zeek do for it, without their SYN/FIN/RST, midstream, flip
    and reopen branches. Returns False, having changed nothing, for any other packet;
    the general path then takes it. tests/tracker/test_fast_path.py runs captures and
    random traffic both ways and compares.

    `fin`: the segment is a FIN|ACK (ACK and FIN, URG and PSH allowed: always one of
    conntrack's valid flag sets), conntrack's FIN class -- the close of every
    connection. It adds the FIN's
    sequence octet, the FIN_WAIT close-init mark, and Zeek's 'F', FIN position and
    endpoint state change (_zeek_state itself, which for a FIN never reverses roles)."""
    cdef trk_t *r = &tr.recs[id]
    cdef trk_dir_t *e = &r.d[zd]      # the sender: conntrack's snd, Zeek's endpoint
    cdef trk_dir_t *peer = &r.d[1 - zd]
    cdef uint8_t old = tr.tab.conns[id].state, new
    cdef uint32_t seq = p.seq, ack = p.ack, sack = p.ack, end = p.seq + plen + fin, maxackwin
    cdef int ctd = zd ^ r.ct_orig
    cdef int cls = K_FIN if fin else K_ACK
    cdef uint32_t rel_seq
    if not (r.cflags & C_CT_STARTED) or old == TRK_NONE or not _zeek_quiet_for_acks(e, peer) \
            or not (e.flags & D_FIRST_SEEN) or e.td_maxwin == 0 or p.window == 0 \
            or _began_with_synack(r) or (r.cflags & C_RST_TIMER):
        # (C_RST_TIMER: an in-window, inexact RST kept the state; the peer's challenge
        # ACK that usually follows goes the general path, which clears the flag)
        return False
    new = _T[ctd][cls][old]
    if new >= TRK_IGNORE or new == TRK_SYN_RECV:
        return False                  # IGNORE, INVALID, or the simultaneous-open special case
    if (peer.ct_flags & CT_SACK_PERM) and p.opts.sack_count:
        sack = _sack_edge(p, ack)
    # conntrack's four window bounds (tcp_in_window); any miss is the general path's
    maxackwin = e.td_maxwin if e.td_maxwin > _MAXACKWIN_MIN else _MAXACKWIN_MIN
    if not (_before(seq, e.td_maxend + 1) and _before(sack, peer.td_end + 1)
            and _after(sack, peer.td_end - maxackwin - 1)
            and (peer.td_maxwin == 0 or _after(end, e.td_end - peer.td_maxwin - 1))):
        return False
    # conntrack: accepted
    _window_accept(r, e, peer, ctd, p, seq, ack, sack, end, cls)
    r.last_class = <uint8_t>cls
    r.last_dir = <uint8_t>ctd
    if fin and new != old and new == TRK_FIN_WAIT:
        e.ct_flags |= CT_CLOSE_INIT
    if ctd == 1 and not (r.cflags & C_SEEN_REPLY):
        r.cflags |= C_SEEN_REPLY
    elif (r.cflags & C_SEEN_REPLY) and not (r.cflags & C_ASSURED) and \
            (old == TRK_SYN_RECV or old == TRK_ESTABLISHED) and new == TRK_ESTABLISHED:
        r.cflags |= C_ASSURED
    r.touch_us = now
    if new != old:
        ftx_set_state_only(&tr.tab, id, new)
        _event(tr, id, old, new, zd, p.flags, pkt, now)
    _rearm_if_sooner(tr, id, now)
    # Zeek: history, the two sequence spaces, reassembly edges, counters
    if fin:
        rel_seq = seq - e.start_seq
        if _check_once(r, HC_FIN, H_FIN, zd) and rel_seq + plen != e.hist_last_fin:
            _hist_add(r, H_FIN, zd)     # a FIN again, at a new position
        e.hist_last_fin = rel_seq + plen
    elif plen:
        _check_once(r, HC_DATA, H_DATA, zd)
    else:
        _check_once(r, HC_ACK, H_ACK, zd)
    if not ((e.flags & D_DID_CLOSE) and (peer.flags & D_DID_CLOSE)) and now > r.last_us:
        r.last_us = now
    if fin:
        e.flags |= D_SEEN_FIN
        e.fin_seq = end
    cdef bint ack_ok = <int32_t>(ack - peer.start_seq) >= 0
    if ack_ok:
        _advance_ack(peer, ack)
    if fin and e.last_seq == e.start_seq + 1:
        _set_last(e, end)             # (Zeek: a FIN right after the SYN)
    elif <int32_t>(end - e.last_seq) > 0:
        _set_last(e, end)
    elif plen:
        e.retrans += 1
        _hist_scaled(r, H_RETRANS, zd, &e.n_rexmit)
    if fin:
        _zeek_state(r, e, peer, zd == 0, p.flags, seq, plen)
    if ack_ok:
        _ack_received(r, peer, e, 1 - zd, ack)      # after the 'T': the letters keep _zeek's order
    if plen and <int32_t>(seq - e.start_seq) >= 0 and p.payload_len == plen:
        _data_sent(e, seq, plen)
    e.pkts += 1
    e.ip_bytes += ip_len
    e.bytes += plen
    if (r.cflags & (C_RTT_SYNACK | C_RTT2)) == C_RTT_SYNACK:
        _rtt(tr, r, zd, p, now)       # only the SYN-ACK's ACK is still to be timed
    return True


cdef bint _ack_fast(tr_t *tr, uint32_t id, int zd, const pkt_t *p, uint32_t plen, uint32_t ip_len,
                    uint64_t now, int64_t pkt) noexcept nogil:
    """_fast_path for an ACK or data segment (no SYN, FIN or RST)."""
    return _fast_path(tr, id, zd, p, plen, ip_len, now, pkt, False)


cdef bint _fin_fast(tr_t *tr, uint32_t id, int zd, const pkt_t *p, uint32_t plen, uint32_t ip_len,
                    uint64_t now, int64_t pkt) noexcept nogil:
    """_fast_path for a FIN|ACK segment."""
    return _fast_path(tr, id, zd, p, plen, ip_len, now, pkt, True)


# ---- the opening handshake at a glance ----
#
# A connection's first two packets are nearly always the originator's plain SYN and the
# responder's SYN-ACK answering it. For those, _conntrack, _in_window, _zeek,
# _zeek_state and _rtt each run their whole chain of cases to arrive at the one
# outcome below. These two do the same updates in the same order (the same calls
# where the general path's effect depends on the record: window bookkeeping, timers,
# history letters) and leave everything else to the general path. As with _fast_path,
# tests/tracker/test_fast_path.py compares records, rows, events and counters byte
# for byte with the fast path off.

cdef inline bint _syn_fast_ok(const pkt_t *p, uint32_t plen) noexcept nogil:
    """A plain SYN (URG, PSH, ECE and CWR allowed: conntrack's valid sets) with no data
    and a nonzero window. Data on a SYN (Fast Open) and a zero window each add a case
    (Zeek's 'T' and 'W') that only the general path has."""
    return plen == 0 and p.window != 0 and \
        (p.flags & (TCP_FLAG_SYN | TCP_FLAG_ACK | TCP_FLAG_RST | TCP_FLAG_FIN)) == TCP_FLAG_SYN


cdef void _syn_new(tr_t *tr, uint32_t id, const pkt_t *p, uint32_t ip_len, uint64_t now,
                   int64_t pkt) noexcept nogil:
    """A record _create just made for a plain SYN (_syn_fast_ok): what the general path
    does with it. conntrack: the entry starts, the SYN's side is ORIGINAL, its window
    bounds are set from the SYN (SYN_SENT); Zeek: the originator's sequence space, 'S',
    endpoint SYN_SENT; the SYN's time and sequence number for the RTT."""
    cdef trk_t *r = &tr.recs[id]
    cdef trk_dir_t *e = &r.d[0]       # the SYN's sender is the originator: _create oriented
    cdef uint32_t seq = p.seq         # the record by this packet's key (_direction gives 0)
    # conntrack (_conntrack, _in_window: the sender's first SYN is accepted at once)
    r.cflags |= C_CT_STARTED
    _init_sender(e, &r.d[1], 0, p, seq + 1)
    r.last_class = K_SYN
    r.last_dir = 0
    ftx_set_state_only(&tr.tab, id, TRK_SYN_SENT)
    _event(tr, id, TRK_NONE, TRK_SYN_SENT, 0, p.flags, pkt, now)
    _rearm_if_sooner(tr, id, now)
    # Zeek (_zeek, _zeek_state)
    _reinit(e, seq, seq + 1)
    _check_once(r, HC_SYN, H_SYN, 0)
    _zset(e, Z_SYN_SENT)
    e.flags |= D_FIRST_SEEN
    e.pkts += 1
    e.ip_bytes += ip_len
    # the handshake RTT's first mark (_rtt)
    r.syn_us = now
    r.syn_seq = seq
    r.cflags |= C_SYN_TIME


cdef bint _synack_fast(tr_t *tr, uint32_t id, int zd, const pkt_t *p, uint32_t plen, uint32_t ip_len,
                       uint64_t now, int64_t pkt) noexcept nogil:
    """The responder's first SYN-ACK, without data, answering the originator's SYN
    (with or without data) in conntrack's window: SYN_SENT -> SYN_RECV, Zeek's 'h' and both endpoints
    ESTABLISHED, the SYN -> SYN-ACK RTT. Returns False, having changed nothing, for
    anything else (a retransmitted or second SYN-ACK, simultaneous open, SACK blocks,
    an ACK outside the window, a zero window, URG, ...)."""
    cdef trk_t *r = &tr.recs[id]
    cdef trk_dir_t *e = &r.d[1]       # the responder: conntrack's snd (REPLY), Zeek's endpoint
    cdef trk_dir_t *peer = &r.d[0]
    cdef uint32_t seq = p.seq, ack = p.ack, end = p.seq + 1
    cdef bint ack_under
    if zd != 1 or plen != 0 or p.window == 0 or (p.flags & TCP_FLAG_URG) or p.opts.sack_count \
            or tr.tab.conns[id].state != TRK_SYN_SENT or r.ct_orig != 0 \
            or (r.cflags & (C_CT_STARTED | C_RST_TIMER)) != C_CT_STARTED \
            or e.td_maxwin != 0 or e.zstate != Z_INACTIVE or peer.zstate != Z_SYN_SENT \
            or _began_with_synack(r):
        return False
    # conntrack's window check once _init_sender has set the responder up (td_end =
    # td_maxend = end: the sequence bounds hold by construction, the ACK is checked)
    # (conntrack's max-ACK window is the larger of the sender's td_maxwin -- here the
    # SYN-ACK's own unscaled 16-bit window -- and a floor above any such window)
    if not (_before(ack, peer.td_end + 1) and _after(ack, peer.td_end - _MAXACKWIN_MIN - 1)
            and (peer.td_maxwin == 0 or _after(end, end - peer.td_maxwin - 1))):
        return False
    _init_sender(e, peer, 1, p, end)
    _window_accept(r, e, peer, 1, p, seq, ack, ack, end, K_SYNACK)
    r.last_class = K_SYNACK
    r.last_dir = 1
    r.cflags |= C_SEEN_REPLY
    r.touch_us = now
    ftx_set_state_only(&tr.tab, id, TRK_SYN_RECV)
    _event(tr, id, TRK_SYN_SENT, TRK_SYN_RECV, 1, p.flags, pkt, now)
    _rearm_if_sooner(tr, id, now)
    # Zeek: the responder's sequence space, 'h' (again only at a new position), the
    # originator's ACKed edge, both endpoints established
    _reinit(e, seq, end)
    if _check_once(r, HC_SYN, H_SYNACK, 1) and e.hist_last_syn != 0:
        _hist_add(r, H_SYNACK, 1)
    e.hist_last_syn = 0
    if not ((e.flags & D_DID_CLOSE) and (peer.flags & D_DID_CLOSE)) and now > r.last_us:
        r.last_us = now
    ack_under = <int32_t>(ack - peer.start_seq) < 0
    if not ack_under:
        _advance_ack(peer, ack)
    _zset(peer, Z_ESTABLISHED)
    _zset(e, Z_ESTABLISHED)
    if not ack_under:
        _ack_received(r, peer, e, 0, ack)
    e.flags |= D_FIRST_SEEN
    e.pkts += 1
    e.ip_bytes += ip_len
    _rtt(tr, r, 1, p, now)
    return True
