# cython: language_level=3
"""Passive TCP connection tracker: conntrack states and window tracking plus Zeek's
conn_state/history, over a symmetric connection table.

The per-packet work is C (tracker_core.pxi) and runs without the GIL over a whole
batch; Python sees `Tracker`, finished connections as FLOW_DTYPE rows and state
changes as TRACKER_EVENT_DTYPE rows.
"""
from cpython.buffer cimport PyBuffer_Release
from fasttcp.wire.buffers cimport ft_get_bytes
cimport cython
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t, int32_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memset

from fasttcp.wire.defs cimport *
from fasttcp.wire.codec cimport ft_parse_ip_inline, ft_parse_ip_fast, ft_tuple_usable, ft_zero_small
from fasttcp.wire.spans cimport ft_first_bad_span, ft_first_at_least, ft_first_negative, ft_span_outside
from fasttcp.table.table cimport *
from fasttcp.tracker.tracker cimport *
from fasttcp.table.keyhash cimport ft_key_build_hash, ft_be64, ft_home
from fasttcp.table.ops cimport (ftx_lookup, ftx_insert_new, ftx_remove, ftx_set_state_only,
                                ftx_set_deadline, ftx_prefetch_w, ftx_victim, FT_PREFETCH_W,
                                FT_PREFETCH)

import operator
import os

from cpython.bytes cimport PyBytes_FromStringAndSize
import numpy as np

from fasttcp.errors import UsageError, span_outside_buffer
from fasttcp.wire.arrays import as_int64 as _as_int64

__all__ = ["Tracker", "ShardPlan", "FLOW_DTYPE", "TRACKER_EVENT_DTYPE"]

#: True when this module was compiled with a gcc profile (setup.py's profile-guided build)
PGO_BUILD = FASTTCP_PGO != 0

cdef extern from "mem_impl.h" nogil:
    void *ft_alloc_zeroed(size_t size)
    void *ft_alloc_lazy(size_t size)
    const size_t FT_HUGE_PAGE
    void ft_free_zeroed(void *p, size_t size)

include "tracker_core.pxi"

FLOW_DTYPE = np.dtype([
    ("start_us", "u8"), ("end_us", "u8"),
    ("orig_bytes", "u8"), ("resp_bytes", "u8"), ("orig_ip_bytes", "u8"), ("resp_ip_bytes", "u8"),
    ("orig_payload", "u8"), ("resp_payload", "u8"), ("missed_bytes", "u8"),
    ("orig_pkts", "u4"), ("resp_pkts", "u4"), ("orig_retrans", "u4"), ("resp_retrans", "u4"),
    ("rtt_syn_synack", "u4"), ("rtt_synack_ack", "u4"), ("id", "u4"),
    ("orig_p", "u2"), ("resp_p", "u2"),
    ("family", "u1"), ("state", "u1"), ("conn_state", "u1"), ("end_reason", "u1"),
    ("orig_state", "u1"), ("resp_state", "u1"), ("flipped", "u1"), ("_pad", "u1"),
    ("orig_h", "u1", (16,)), ("resp_h", "u1", (16,)), ("history", "S32"),
], align=True)
"""One connection summary per row: times in microseconds, Zeek-style byte counts
(sequence space, retransmissions once) and wire payload bytes, packets, retransmitted
segments, handshake RTTs in microseconds (0xffffffff = not seen), the final
`TrackerState` and Zeek `ConnState`, the `EndReason`, Zeek endpoint states, the
history string, and the originator/responder addresses (IPv4 in the first 4 bytes)."""

TRACKER_EVENT_DTYPE = np.dtype([
    ("time_us", "u8"), ("packet", "i8"), ("conn", "u4"), ("old_state", "u1"), ("new_state", "u1"),
    ("direction", "u1"), ("_pad", "u1"), ("tcp_flags", "u2"), ("_pad2", "u2"), ("_pad3", "u4"),
], align=True)
"""A conntrack state change: time, the batch index of the packet that caused it (-1
for timers), the record id, old and new `TrackerState`, the direction of that packet
(0 originator, 1 responder) and its TCP flags."""

assert FLOW_DTYPE.itemsize == sizeof(flow_row_t)
assert TRACKER_EVENT_DTYPE.itemsize == sizeof(trk_event_t)

RECORD_BYTES = sizeof(ft_conn_t) + sizeof(trk_t)

# Times: the largest whole second whose nanoseconds fit in int64 (the ts_ns arrays;
# 2262-04-11). Every time a Tracker takes is bounded by it, so that seconds -> ns and
# ns -> us + a timeout (at most 10 years) cannot overflow anywhere inside.
MAX_TIME_S = 9_223_372_036
# max_events: 2**28 rows of 24 bytes is 6 GiB of event buffer -- beyond that it is a typo
MAX_EVENTS = 1 << 28
# server_ports: values read at most (duplicates included) -- 16 for each of the 65536
# ports; more is an endless or runaway iterable, not a set of ports
MAX_SERVER_PORT_VALUES = 1 << 20


cdef uint64_t _micros(object seconds, str name) except? 0xffffffffffffffff:
    """Float seconds -> integer microseconds, refusing anything but a finite time in
    0..MAX_TIME_S (bools, NaN and infinities compare in ways a bound check misses)."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds != seconds \
            or not 0 <= seconds <= MAX_TIME_S:
        raise UsageError(f"{name} must be a time in seconds in 0..{MAX_TIME_S}, got {seconds!r}")
    return <uint64_t>round(seconds * 1e6)


cdef enum:
    _DONE_CAP = 65536                 # finished rows buffered in C before Python collects them
    _EXPIRE_CHUNK = 4096
    _ROW_RESERVE = 4                  # rows one packet may finish (_feed stops below this)


cdef inline size_t _event_bytes(const tr_t *tr) noexcept nogil:
    """The event buffer's size (a row even when events are off)."""
    return <size_t>(tr.cap_ev if tr.cap_ev else 1) * sizeof(trk_event_t)


cdef inline uint64_t _max64(uint64_t a, uint64_t b) noexcept nogil:
    return a if a > b else b


cdef bint _expire(tr_t *tr, uint64_t now) noexcept nogil:
    """Finish every record whose idle time in its state has run out by `now`. A record
    is refreshed lazily: its wheel deadline may be older than its last accepted packet,
    in which case it is re-armed instead of finished. Returns False when the
    finished-row buffer filled first (collect the rows, then call again); it always
    leaves _ROW_RESERVE rows free, for the packet being tracked to finish connections
    of its own (a reused 4-tuple, an eviction) without losing their rows."""
    cdef Py_ssize_t n, i, room, ask
    cdef uint32_t id
    cdef uint64_t due
    while True:
        room = tr.cap_done - tr.ndone - _ROW_RESERVE
        if room <= 0:
            return False
        ask = room if room < _EXPIRE_CHUNK else _EXPIRE_CHUNK
        n = ft_expire(&tr.tab, now, tr.expired, NULL, ask)
        for i in range(n):
            id = tr.expired[i]
            due = tr.recs[id].touch_us + _timeout_of(tr, id)
            if due > now:
                ftx_set_deadline(&tr.tab, id, due)
            else:
                tr.timed_out += 1
                _finish(tr, id, END_TIMEOUT)
        if n < ask:
            return True


ctypedef struct _stage_t:
    pkt_t p
    ft_key_t k
    uint64_t h
    uint32_t plen
    uint32_t ip_len
    int rc                            # parse verdict; -1: usable (go on to tracking)
    bint swapped
    bint bad_csum
    bint truncated                    # cut by the capture's snap length (still tracked)


cdef inline void _parse_stage(tr_t *tr, const uint8_t *buf, size_t length, _stage_t *s,
                              bint wire_short, bint verified) noexcept nogil:
    """First half of a packet: parse (and verify), build the canonical key, hash it.
    A packet cut short is tracked when the capture's snap length cut it, not when the
    packet itself was shorter on the wire than its IP length says (`wire_short`: a
    lying length, which Zeek drops too). `verified`: its checksums were found good
    already (`ShardPlan.verify_checksums`), by the parse this one would do."""
    cdef parse_err_t err
    cdef int rc = ft_parse_ip_inline(buf, length, &s.p, &err, tr.cfg.verify and not verified, True)    # lean: wire.pxd
    if not ft_tuple_usable(rc, &s.p) or (rc == FT_ERR_TRUNCATED and wire_short):
        s.rc = rc
        return
    s.rc = -1
    s.truncated = rc == FT_ERR_TRUNCATED
    s.bad_csum = rc == FT_ERR_BAD_CHECKSUM
    s.plen = s.p.tcp_len - s.p.header_len
    s.ip_len = (s.p.tcp_off - s.p.ip_off) + s.p.tcp_len
    # the canonical key (same order as ft_key_canonical: addresses as big-endian
    # numbers, then ports)
    cdef uint64_t a0, a1, b0, b1
    memcpy(&a0, s.p.src, 8)
    memcpy(&a1, s.p.src + 8, 8)
    memcpy(&b0, s.p.dst, 8)
    memcpy(&b1, s.p.dst + 8, 8)
    if a0 != b0:
        s.swapped = ft_be64(a0) > ft_be64(b0)
    elif a1 != b1:
        s.swapped = ft_be64(a1) > ft_be64(b1)
    else:
        s.swapped = s.p.src_port > s.p.dst_port
    if s.swapped:
        s.h = ft_key_build_hash(&tr.tab, &s.k, s.p.version, s.p.dst_port, s.p.src_port, s.p.dst, s.p.src)
    else:
        s.h = ft_key_build_hash(&tr.tab, &s.k, s.p.version, s.p.src_port, s.p.dst_port, s.p.src, s.p.dst)


cdef inline void _prefetch_records(tr_t *tr, uint64_t h) noexcept nogil:
    """Second stage: the home index slot has (probably) arrived; start loading the table
    record and the tracker record it points to."""
    cdef uint64_t e = tr.tab.index[ft_home(&tr.tab, <uint32_t>(h >> 32))]
    cdef uint32_t id
    cdef const char *rec
    if e != 0 and <uint32_t>(e >> 32) == <uint32_t>(h >> 32):
        id = <uint32_t>e - 1
        FT_PREFETCH_W(&tr.tab.conns[id])
        FT_PREFETCH_W((<const char *>&tr.tab.conns[id]) + 64)
        rec = <const char *>&tr.recs[id]
        FT_PREFETCH_W(rec)
        FT_PREFETCH_W(rec + 64)
        FT_PREFETCH_W(rec + 128)
        FT_PREFETCH_W(rec + 192)


cdef inline int _direction(const tr_t *tr, uint32_t id, bint swapped) noexcept nogil:
    """0 if the packet (whose key needed `swapped`) comes from the originator, else 1."""
    return swapped ^ ((tr.tab.conns[id].flags & CONN_F_SWAPPED) != 0)


cdef int64_t _reopen(tr_t *tr, uint32_t id, const ft_key_t *k, uint64_t h, bint swapped,
                     uint64_t now) noexcept nogil:
    """The connection on this 4-tuple ends (REUSED); a new one starts with this packet."""
    tr.reused += 1
    _finish(tr, id, END_REUSED)
    return _create(tr, k, h, swapped, now)


cdef inline int _track(tr_t *tr, _stage_t *s, uint64_t now, int64_t pkt) noexcept nogil:
    """Second half of a packet: find or create its connection and run both views."""
    cdef pkt_t *pp = &s.p
    cdef ft_key_t *kp = &s.k
    cdef uint64_t h = s.h
    cdef int64_t id
    cdef uint32_t uid, plen = s.plen, ip_len = s.ip_len, victim
    cdef uint16_t f4
    cdef int zd, ct
    cdef bint swapped = s.swapped, bad_csum = s.bad_csum
    cdef trk_t *r
    uid = 0
    id = ftx_lookup(&tr.tab, kp, h)
    if id < 0:
        if not tr.cfg.loose and (pp.flags & (TCP_FLAG_SYN | TCP_FLAG_ACK | TCP_FLAG_RST | TCP_FLAG_FIN)) \
                != TCP_FLAG_SYN:
            return TV_UNTRACKED
        if tr.tab.count >= tr.tab.capacity:
            victim = ftx_victim(&tr.tab)
            if victim == FT_NIL:
                return TV_TABLE_FULL
            tr.evicted += 1
            _finish(tr, victim, END_EVICTED)
        id = _create(tr, kp, h, swapped, now)
        if id < 0:
            return TV_TABLE_FULL
        if not bad_csum and tr.cfg.fast_path and _syn_fast_ok(pp, plen):
            _syn_new(tr, <uint32_t>id, pp, ip_len, now, pkt)
            tr.fast_hits += 1
            return FT_ERR_TRUNCATED if s.truncated else TV_OK
        if _server_side_first(tr, pp):
            # Zeek's likely_server_ports: a first packet that is not a plain SYN, sent
            # from a server port, came from the responder
            _swap_roles(tr, <uint32_t>id)
            _hist_raw(&tr.recs[id], H_FLIPPED)
    else:
        uid = <uint32_t>id
        zd = _direction(tr, uid, swapped)
        f4 = pp.flags & (TCP_FLAG_SYN | TCP_FLAG_ACK | TCP_FLAG_RST | TCP_FLAG_FIN)
        if not bad_csum and tr.cfg.fast_path and \
                ((f4 == TCP_FLAG_ACK and _ack_fast(tr, uid, zd, pp, plen, ip_len, now, pkt)) or
                 (f4 == (TCP_FLAG_ACK | TCP_FLAG_FIN) and _fin_fast(tr, uid, zd, pp, plen, ip_len, now, pkt)) or
                 (f4 == (TCP_FLAG_SYN | TCP_FLAG_ACK) and _synack_fast(tr, uid, zd, pp, plen, ip_len, now, pkt))):
            tr.fast_hits += 1
            return FT_ERR_TRUNCATED if s.truncated else TV_OK
        if _zeek_reuse(tr, uid, pp, zd):
            # a SYN on a 4-tuple whose connection closed, or with a new ISN: the old one
            # ends here and this packet starts a new one
            id = _reopen(tr, uid, kp, h, swapped, now)
            if id < 0:
                return TV_TABLE_FULL
    uid = <uint32_t>id
    r = &tr.recs[uid]
    zd = _direction(tr, uid, swapped)
    if bad_csum:
        # like Zeek without -C: the packet only leaves a 'C' in the history
        _hist_scaled(r, H_BAD_CSUM, zd, &r.d[zd].n_csum)
        return FT_ERR_BAD_CHECKSUM
    if _began_with_synack(r) and not (pp.flags & (TCP_FLAG_SYN | TCP_FLAG_RST)) \
            and ((pp.flags & TCP_FLAG_ACK) or plen):
        # the connection began with a SYN-ACK ('H'): the side that answers it with an
        # ACK or data is the client after all
        _flip_rewrite(tr, uid)
        zd ^= 1
    ct = _conntrack(tr, uid, zd, pp, plen, now, pkt)
    if ct == CT_REOPEN:
        # conntrack reopens a closed 4-tuple on a new SYN (its sender is the new originator)
        id = _reopen(tr, uid, kp, h, swapped, now)
        if id < 0:
            return TV_TABLE_FULL
        uid = <uint32_t>id
        r = &tr.recs[uid]
        zd = 0
        ct = _conntrack(tr, uid, zd, pp, plen, now, pkt)
    if _zeek(tr, uid, zd, pp, plen, ip_len, now):
        _flip_plain(tr, uid)
    _rtt(tr, r, zd, pp, now)
    if ct == CT_OK:
        return FT_ERR_TRUNCATED if s.truncated else TV_OK
    return TV_CONNTRACK_IGNORED if ct == CT_IGNORED else TV_CONNTRACK_INVALID


cdef inline bint _is_server_port(const tr_t *tr, uint16_t port) noexcept nogil:
    return (tr.server_ports[port >> 3] >> (port & 7)) & 1


cdef bint _server_side_first(const tr_t *tr, const pkt_t *p) noexcept nogil:
    cdef bint syn = (p.flags & TCP_FLAG_SYN) != 0, ack = (p.flags & TCP_FLAG_ACK) != 0
    if syn and not ack:
        return False                  # a plain SYN names its originator
    if not _is_server_port(tr, p.src_port):
        return False
    if _is_server_port(tr, p.dst_port):
        return not syn and p.src_port < p.dst_port
    return True


cdef bint _zeek_reuse(tr_t *tr, uint32_t id, const pkt_t *p, int zd) noexcept nogil:
    """Does this SYN start a new connection on the 4-tuple? Zeek's rule (IsReuse) for
    closed connections and for a new ISN on an attempt nobody answered; but a SYN on a
    live, answered connection is an old duplicate that conntrack ignores (RFC 9293
    figure 8: it must not end the connection), and a SYN from the responder while the
    originator's SYN is unanswered is a simultaneous open (SYN_SENT2)."""
    cdef trk_t *r = &tr.recs[id]
    cdef trk_dir_t *co = &r.d[0]
    cdef uint16_t f = p.flags
    if not (f & TCP_FLAG_SYN):
        return False
    if f & TCP_FLAG_ACK:
        if r.d[0].zstate != Z_INACTIVE:
            return False              # SYN-ACKs reuse only connections nobody opened
        co = &r.d[1]
    if (r.d[0].flags | r.d[1].flags) & D_DID_CLOSE:
        return True                   # any SYN on a closed (or reset) connection
    if p.seq == co.start_seq:
        return False                  # the same ISN: a retransmission
    if not (f & TCP_FLAG_ACK) and co.zstate == Z_SYN_ACK_SENT and r.d[1].zstate == Z_INACTIVE \
            and p.seq == r.d[1].start_seq:
        return False                  # the SYN/SYN-ACK reversal, handled by the state machine
    if not (f & TCP_FLAG_ACK):
        if zd == 1:
            return False              # the responder's own SYN: simultaneous open
        if r.d[1].zstate != Z_INACTIVE:
            return False              # answered and live: an old duplicate SYN (ignored)
    return True


cdef enum:
    _AHEAD = 8                        # packets parsed (and their index slots prefetched) ahead; a power of 2


cdef inline Py_ssize_t _packet_at(const int64_t *visit, Py_ssize_t p) noexcept nogil:
    """The batch index of pipeline position p: p itself, or the packet a visit list
    names there (`_visits`)."""
    return p if visit == NULL else <Py_ssize_t>(visit[p] & _VISIT_INDEX)


cdef inline bint _feed_track(tr_t *tr, _stage_t *ring, Py_ssize_t q, Py_ssize_t start, const int64_t *ts_ns,
                             uint8_t *verdicts, const int64_t *visit, const uint64_t *clock) noexcept nogil:
    """Last stage of pipeline position q: advance the clock (expiring what is due) and
    track its packet. False to stop before it (tr.packets counted up to it): the
    finished-row buffer needs collecting first."""
    cdef _stage_t *s = &ring[q & (_AHEAD - 1)]
    cdef Py_ssize_t j = _packet_at(visit, q)
    cdef uint64_t now, tick
    cdef int v
    if tr.cap_done - tr.ndone < _ROW_RESERVE:
        tr.packets += <uint64_t>(q - start)
        return False
    if clock != NULL:
        now = clock[q] // 1000   # the batch's clock at this packet (ns), left-out packets included
    else:
        # (unsigned: a division by a constant without the sign fix-up)
        now = <uint64_t>ts_ns[j] // 1000 if ts_ns[j] > 0 else 0
    if now > tr.now:
        tick = now >> FT_TICK_SHIFT
        if tick != tr.last_tick:
            if not _expire(tr, now):
                # the rows ran out mid-expiry: let the caller collect them, then
                # finish expiring before this packet (its connection may be
                # one); tr.now is left behind so that the resumed call does
                tr.packets += <uint64_t>(q - start)
                return False
            tr.last_tick = tick
        tr.now = now
    else:
        now = tr.now          # time never runs backwards inside the tracker
    if s.rc >= 0:
        v = s.rc              # the parse stage's verdict, the link layer's, or another shard's
        if v == TV_OTHER_SHARD:
            # its time has moved the clock (above) exactly as in a tracker fed every
            # packet, so expiry, and so every row, is the same with any number of shards
            tr.other_shard += 1
            verdicts[j] = <uint8_t>v
            return True
    else:
        v = _track(tr, s, now, j)
    tr.verdicts[v] += 1
    verdicts[j] = <uint8_t>v
    return True


cdef inline void _feed_prefetch(tr_t *tr, _stage_t *ring, Py_ssize_t j) noexcept nogil:
    """Middle stage of position j: its index slot has arrived, start loading its records."""
    if ring[j & (_AHEAD - 1)].rc < 0:
        _prefetch_records(tr, ring[j & (_AHEAD - 1)].h)


cdef enum:
    _PREFETCH_MAX = 1536              # bytes of a packet prefetched whole: an Ethernet MTU's
    _PREFETCH_HEAD = 128              # of which `_feed_parse` prefetches the first two lines


cdef inline void _prefetch_rest(const uint8_t *pkt, int64_t length) noexcept nogil:
    """Start loading a packet's lines past the two `_feed_parse` prefetches: the checksum
    reads them all. A tracker given its packets by index (a shard's) steps over the
    other shards' packets, so the batch is no longer one ascending stream of lines the
    hardware prefetcher follows -- measured on the 1 GiB bench capture (438-byte packets),
    a shard's tracker took 0.168 s against 0.131 s with this."""
    cdef int64_t o = _PREFETCH_HEAD
    if length > _PREFETCH_MAX:
        length = _PREFETCH_MAX
    while o < length:
        FT_PREFETCH(pkt + o)
        o += 64


cdef inline void _feed_parse(tr_t *tr, _stage_t *ring, Py_ssize_t p, Py_ssize_t n, const uint8_t *buf,
                             const int64_t *offs, const int64_t *lens, const uint8_t *link,
                             const uint8_t *snapped, const uint8_t *select, const int64_t *visit,
                             const uint8_t *verified) noexcept nogil:
    """First stage of position p: parse and hash its packet, prefetch its index slot (and
    the bytes of the packet 16 positions ahead: its headers, or all of it when walking a
    visit list). A packet `select` leaves out, or a
    visit list marks as another shard's, is not parsed."""
    cdef _stage_t *s = &ring[p & (_AHEAD - 1)]
    cdef Py_ssize_t i = _packet_at(visit, p), ahead
    if p + 2 * _AHEAD < n:
        ahead = _packet_at(visit, p + 2 * _AHEAD)
        if (select == NULL or select[ahead] != 0) and (visit == NULL or visit[p + 2 * _AHEAD] >= 0):
            # the packet bytes themselves: headers 16 packets ahead (batches come from
            # capture files far larger than the cache). Not another shard's: its tracker,
            # on another core, reads them. And for reading only: a write-intent prefetch
            # takes a line away from every other core, where the packets of other shards
            # that share it, and the reading thread's scan, read it too
            FT_PREFETCH(buf + offs[ahead])
            FT_PREFETCH(buf + offs[ahead] + 64)
            if visit != NULL and (verified == NULL or not _hint_get(verified + ahead)):
                _prefetch_rest(buf + offs[ahead], lens[ahead])
    if (select != NULL and select[i] == 0) or (visit != NULL and visit[p] < 0):
        s.rc = TV_OTHER_SHARD
        return
    cdef int64_t off = offs[i], length = lens[i]
    if ft_span_outside(off, length, tr.buf_size):
        # checked at entry: only another thread rewriting the arrays since gets here
        if tr.bad_span < 0:
            tr.bad_span = i
        off = 0
        length = 0
    if link != NULL and link[i] != FT_OK:
        s.rc = link[i]
    else:
        _parse_stage(tr, buf + off, <size_t>length, s, snapped != NULL and snapped[i] == 0,
                     verified != NULL and _hint_get(verified + i))
        if s.rc < 0:
            ftx_prefetch_w(&tr.tab, s.h)


cdef Py_ssize_t _feed(tr_t *tr, const uint8_t *buf, const int64_t *offs, const int64_t *lens,
                      const int64_t *ts_ns, const uint8_t *link, const uint8_t *snapped,
                      const uint8_t *select, Py_ssize_t start, Py_ssize_t n, uint8_t *verdicts,
                      const int64_t *visit, const uint64_t *clock, const uint8_t *verified) noexcept nogil:
    """Positions [start, n), pipelined: position i+8 is parsed and hashed and its index
    slot prefetched, position i+4's records are prefetched, while position i is tracked --
    so the table's cache misses overlap. A position is the packet of that index, or with
    a visit list (`_visits`) the packet it names there, at the time `clock` gives.
    `verified` (may be NULL): per packet, 1 if its checksums were found good already
    (read with _hint_get: another thread may be writing them meanwhile).
    Parsing is pure, so the order of effects is the packets' order. Returns the first
    position not processed (< n when the finished-row buffer needs collecting first;
    those packets are parsed again then)."""
    cdef _stage_t ring[_AHEAD]
    cdef Py_ssize_t i
    # Step i tracks position i-8 (first: its ring slot is the one position i is parsed
    # into), prefetches position i-4's records and parses position i. The steady state
    # (start + 8 <= i < n) runs all three without bounds to check; the fill and the
    # drain are the steps where some do not apply.
    for i in range(start, n if n - start < _AHEAD else start + _AHEAD):
        if i - _AHEAD // 2 >= start:
            _feed_prefetch(tr, ring, i - _AHEAD // 2)
        _feed_parse(tr, ring, i, n, buf, offs, lens, link, snapped, select, visit, verified)
    for i in range(start + _AHEAD, n):
        if not _feed_track(tr, ring, i - _AHEAD, start, ts_ns, verdicts, visit, clock):
            return i - _AHEAD
        _feed_prefetch(tr, ring, i - _AHEAD // 2)
        _feed_parse(tr, ring, i, n, buf, offs, lens, link, snapped, select, visit, verified)
    for i in range(n, n + _AHEAD):
        if i - _AHEAD >= start:
            if not _feed_track(tr, ring, i - _AHEAD, start, ts_ns, verdicts, visit, clock):
                return i - _AHEAD
        if start <= i - _AHEAD // 2 < n:
            _feed_prefetch(tr, ring, i - _AHEAD // 2)
    tr.packets += <uint64_t>(n - start)
    return n


cdef enum:
    _VISIT_OTHER = -0x8000000000000000    # the sign bit: another shard's packet, visited for its time
    _VISIT_INDEX = 0x7fffffffffffffff


cdef inline uint64_t _tick_bound(uint64_t tick) noexcept nogil:
    """The first nanosecond of the clock tick after `tick`."""
    return ((tick + 1) << FT_TICK_SHIFT) * 1000


cdef inline uint8_t _clock_step(int64_t ts, uint64_t *now, uint64_t *bound) noexcept nogil:
    """Move the batch's clock (`now`, ns: the running maximum of the times) to a packet's
    time; 1 if a new clock tick starts at it, which moves `bound` to the next one.

    Without a division a packet: a new tick -- a microsecond time whose tick differs
    from the last one's (tr.last_tick, always the clock's own: _feed_track and expire
    set the two together) -- is a time past the clock at or past the next tick's first
    nanosecond. (Times are at most 2**63-1 ns, so that bound fits in 64 bits; a
    negative one, checked away by the callers, would count as 0.)"""
    cdef uint64_t t = <uint64_t>(ts if ts > 0 else 0)
    cdef uint8_t ticked = (t > now[0]) & (t >= bound[0])
    now[0] = t if t > now[0] else now[0]
    if ticked:
        bound[0] = _tick_bound((now[0] // 1000) >> FT_TICK_SHIFT)
    return ticked


cdef Py_ssize_t _visits(const tr_t *tr, const int64_t *ts_ns, Py_ssize_t n, const int64_t *own, Py_ssize_t m,
                        int64_t *visit, uint64_t *clock, uint8_t *mark, uint64_t *end_now) noexcept nogil:
    """The packets a shard's tracker must visit, when it is given only its own (`own`,
    ascending batch indices): its own packets, and every other packet at which a tracker
    fed the whole batch would expire connections -- the first packet of each new clock
    tick (marked with _VISIT_OTHER) -- each with the clock such a tracker would read
    there, the running maximum of the batch's times (`clock`, in ns). Visiting those and
    nothing else makes the tracker's every expiry and every packet's time the same as
    when it walks the whole batch with `select`, so its rows are the same, in the same
    order; the walk over the times is a few instructions a packet, where the pipeline
    step of a packet it skips was tens. `mark` is scratch (n bytes). Returns the number
    of visits; `end_now` is the clock after the batch."""
    cdef uint64_t now = tr.now * 1000, bound
    cdef Py_ssize_t j, nv = 0
    cdef uint8_t ticked, mine
    # Without a branch on whose a packet is: that follows the flow hash, a coin toss to
    # the branch predictor, and each miss cost more than the rest of a packet's walk
    # (a walk that stepped through `own` as it went also chained every packet on the
    # load of the next index). So the packets are marked first, and every packet
    # writes visit[nv], kept only if visited (nv <= j < n: inside the array).
    memset(mark, 0, <size_t>n)
    for j in range(m):
        mark[own[j]] = 1
    # (the clock in nanoseconds: `clock` holds them, _feed_track divides what it reads)
    bound = _tick_bound(tr.last_tick)
    for j in range(n):
        ticked = _clock_step(ts_ns[j], &now, &bound)
        mine = mark[j]
        visit[nv] = j | (_VISIT_OTHER if ticked & (mine ^ 1) else 0)
        clock[nv] = now
        nv += ticked | mine
    end_now[0] = now // 1000
    return nv


cdef uint32_t _flush_from(tr_t *tr, uint32_t i) noexcept nogil:
    """Finish the connections of records i.. (end of capture) until the row buffer is
    full; returns the record to go on from (tab.fresh: all done)."""
    while i < tr.tab.fresh:
        if tr.tab.conns[i].family != 0:
            if tr.ndone == tr.cap_done:
                return i
            _finish(tr, i, END_FLUSHED)
        i += 1
    return i


cdef enum:
    _PLAN_BAD_SHARD = -2


# A plan's checksum hints are written by the thread verifying them while trackers on
# other threads may already read them (`verify_checksums` runs as a task of its own):
# each is a byte that only ever goes from 0 to 1, and either value is right to read --
# 0 makes the tracker verify the packet itself. The packet bytes are not written by
# either side, so no ordering beyond the byte's own is needed: relaxed atomics (plain
# loads and stores on x86), so the compiler neither tears nor caches them.
cdef extern from *:
    """
    static inline int ft_hint_get(const unsigned char *p) { return __atomic_load_n(p, __ATOMIC_RELAXED) != 0; }
    static inline void ft_hint_set(unsigned char *p) { __atomic_store_n(p, (unsigned char)1, __ATOMIC_RELAXED); }
    """
    bint _hint_get "ft_hint_get"(const uint8_t *p) nogil
    void _hint_set "ft_hint_set"(uint8_t *p) nogil


cdef Py_ssize_t _plan_checksums(const uint8_t *buf, uint64_t size, const int64_t *off, const int64_t *ln,
                                const uint8_t *link, Py_ssize_t n, uint8_t *ok) noexcept nogil:
    """`ShardPlan.verify_checksums`' pass: ok[i] = 1 where packet i's checksums
    verify, found by the very parse a tracker does first (the fast one: IPv4 without
    options or IPv6, unfragmented TCP, its header whole); the others stay 0 and their
    tracker verifies them itself. Only packets longer than the lines a shard's tracker
    prefetches with the headers (_PREFETCH_HEAD): their checksums read lines a tracker
    stepping over other shards' packets waits for one by one, where this pass reads
    the batch in order (the hardware prefetchers follow). A span outside the `size`
    bytes of `buf` is skipped: the plan checked them all, but the offsets and lengths
    may be the batch's own arrays, which another thread could rewrite (the trackers
    check each span they read, too). Returns the packets found good."""
    cdef pkt_t p
    cdef parse_err_t err
    cdef Py_ssize_t i, good = 0
    cdef int64_t o, length
    for i in range(n):
        o = off[i]
        length = ln[i]
        if link[i] == FT_OK and length > _PREFETCH_HEAD and not ft_span_outside(o, length, size) \
                and ft_parse_ip_fast(buf + o, <size_t>length, &p, &err, True, True) == FT_OK:
            _hint_set(ok + i)
            good += 1
    return good


cdef Py_ssize_t _plan_clocks(const int64_t *ts_ns, const uint16_t *shard, Py_ssize_t n, Py_ssize_t nshards,
                             uint64_t now_us, uint64_t *clock, uint8_t *ticked,
                             int64_t *counts, uint64_t *end_ns) noexcept nogil:
    """ShardPlan's first pass: each packet's clock (ns: the running maximum of the
    times, from `now_us`), whether a new clock tick starts at it (`_visits` says why
    those are visited by every shard), and each shard's count of packets. Returns the
    number of ticks, or _PLAN_BAD_SHARD for a shard value not below `nshards` (its
    index in counts[nshards])."""
    cdef uint64_t now = now_us * 1000, bound = _tick_bound(now_us >> FT_TICK_SHIFT)
    cdef Py_ssize_t j, ticks = 0
    cdef uint16_t k
    cdef uint8_t tk
    for j in range(n):
        k = shard[j]
        if k >= nshards:
            counts[nshards] = j
            return _PLAN_BAD_SHARD
        counts[k] += 1
        tk = _clock_step(ts_ns[j], &now, &bound)
        ticked[j] = tk
        ticks += tk
        clock[j] = now
    end_ns[0] = now
    return ticks


cdef void _plan_visits(const uint16_t *shard, const uint8_t *ticked, const uint64_t *clock, Py_ssize_t n,
                       Py_ssize_t nshards, int64_t *pos, int64_t *visit, uint64_t *vclock) noexcept nogil:
    """ShardPlan's second pass: each packet into its shard's visit list (pos[k]: where
    shard k's next visit goes), and a tick's packet into every shard's -- another
    shard's marked _VISIT_OTHER."""
    cdef Py_ssize_t j, k, s
    for j in range(n):
        s = shard[j]
        if ticked[j]:
            for k in range(nshards):
                visit[pos[k]] = j if k == s else j | _VISIT_OTHER
                vclock[pos[k]] = clock[j]
                pos[k] += 1
        else:
            visit[pos[s]] = j
            vclock[pos[s]] = clock[j]
            pos[s] += 1


cdef Py_ssize_t _plan_two(const int64_t *ts_ns, const uint16_t *shard, Py_ssize_t n, uint64_t now_us,
                          int64_t *visit, uint64_t *vclock, int64_t *kept, uint64_t *end_ns) noexcept nogil:
    """ShardPlan for two shards, both passes in one: shard 0's list into visit[0:n],
    shard 1's into visit[n:2n] (with the clock at each, ns), their lengths into kept[0]
    and kept[1]. Returns 0, or _PLAN_BAD_SHARD for a shard value above 1 (its index in
    kept[0]). Each list has room for every packet, so no counting pass comes first; and
    no branch on whose a packet is (see _visits): every packet writes both lists' next
    slot, each kept only if the packet is that shard's or a tick's."""
    cdef uint64_t now = now_us * 1000, bound = _tick_bound(now_us >> FT_TICK_SHIFT)
    cdef Py_ssize_t j, p0 = 0, p1 = n
    cdef uint16_t k
    cdef uint8_t tk, one
    for j in range(n):
        k = shard[j]
        if k > 1:
            kept[0] = j
            return _PLAN_BAD_SHARD
        one = <uint8_t>k
        tk = _clock_step(ts_ns[j], &now, &bound)
        visit[p0] = j | (_VISIT_OTHER if tk & one else 0)
        vclock[p0] = now
        p0 += tk | (one ^ 1)
        visit[p1] = j | (_VISIT_OTHER if tk & (one ^ 1) else 0)
        vclock[p1] = now
        p1 += tk | one
    kept[0] = p0
    kept[1] = p1 - n
    end_ns[0] = now
    return 0


cdef Py_ssize_t _shard_visits(const uint16_t *shard, const uint8_t *ticked, const uint64_t *clock, Py_ssize_t n,
                              uint16_t k, int64_t *visit, uint64_t *vclock) noexcept nogil:
    """One shard's visit list from a plan's packets (a plan with more ticks than
    packets: see ShardPlan): its own packets and every tick's, into visit/vclock (n
    entries); returns how many."""
    cdef Py_ssize_t j, nv = 0
    cdef uint8_t mine
    for j in range(n):
        # (without a branch on whose a packet is: see _visits)
        mine = shard[j] == k
        visit[nv] = j | (_VISIT_OTHER if ticked[j] & (mine ^ 1) else 0)
        vclock[nv] = clock[j]
        nv += ticked[j] | mine
    return nv


def _own_link_codes(link):
    """Link verdicts as a uint8 array of our own (a copy: the codes index the verdict
    counters in C, so they must not change between their check and their use). An
    array of a wider integer type is checked on a copy before it is narrowed -- a cast
    alone would make 256 a 0, FT_OK -- so a value no uint8 holds is refused as any
    other code that is not a verdict's (`_check_codes_and_times` checks the rest)."""
    arr = np.asarray(link)
    if arr.dtype == np.uint8:
        return np.array(arr, order="C")
    if arr.dtype.kind not in "iub":
        raise UsageError(f"link verdicts must be integer Verdict codes, got dtype {arr.dtype}")
    wide = np.array(arr, dtype=np.int64, order="C")
    bad = np.flatnonzero((wide < 0) | (wide > 255))
    if bad.size:
        i = int(bad[0])
        raise UsageError(f"packet {i}: link verdict {int(arr.reshape(-1)[i])} is not a fasttcp.Verdict code")
    return wide.astype(np.uint8)


cdef int _check_codes_and_times(object lk, const uint8_t *lkp, object ts, const int64_t *tsp,
                                Py_ssize_t n) except -1:
    """UsageError naming the first packet whose link verdict (lkp: None/NULL for none)
    is not a `fasttcp.Verdict` code -- the codes index the verdict counters in C, a
    stray one must not write past them -- or whose time is outside 0..2**63-1 ns."""
    cdef Py_ssize_t i = -1
    if lkp != NULL:
        with nogil:
            i = ft_first_at_least(lkp, n, TV_COUNT)
        if i >= 0:
            raise UsageError(f"packet {i}: link verdict {int(lk[i])} is not a fasttcp.Verdict code")
    with nogil:
        i = ft_first_negative(tsp, n)
    if i >= 0:
        raise UsageError(f"packet {i}: ts_ns {int(ts[i])} is not a time in 0..2**63-1 ns")
    return 0


cdef object _exact_int(object value, str name, object lo, object hi, str what):
    """`value` as a plain int in lo..hi, or UsageError: converted first (operator.index),
    then compared -- an int subclass answers comparisons itself, and may lie -- and
    never a bool."""
    if isinstance(value, (bool, np.bool_)):
        raise UsageError(f"{name} must be {what}, got {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise UsageError(f"{name} must be {what}, got {value!r}") from None
    v = int(v)
    if not lo <= v <= hi:
        raise UsageError(f"{name} must be {what}, got {value!r}")
    return v


#: A plan's clock: microseconds whose nanoseconds fit in int64 (the largest batch time)
MAX_CLOCK_US = 0x7fffffffffffffff // 1000


@cython.auto_pickle(False)            # (a pickled state would skip every check)
cdef class ShardPlan:
    """One batch split among the shard trackers of `fasttcp.analyze`, once for all of
    them: what `Tracker.feed_plan` tracks as shard k of ``shards``, with the rows,
    verdict counts and clock of ``feed_batch(batch, indices=np.flatnonzero(shard == k))``.

    ``feed_batch(indices=...)`` checks the batch and walks every packet's time for each
    shard's tracker, so N trackers did N times the work the batch's checks and its
    clock take; a plan does both once. It checks the batch (the spans against the
    buffer, the times, the link verdicts), keeps copies of what the trackers would
    otherwise trust it for -- the link verdicts (they index counters) and `shard` --
    and writes each shard's visit list (its own packets, and those where a new clock
    tick starts, with the clock at each) into memory of its own. The batch's offsets
    and lengths are its own arrays when they are int64 already (the trackers check each
    span they read), and so are its snapped flags (only ever tested against 0).

    Memory stays within a few times the batch's rows: a batch with more ticks than
    packets between them (sparse traffic over many shards, where every shard's list
    would hold every tick) keeps its clocks alone, and each tracker writes its own list
    from them (`feed_batch`'s walk).

    ``clock``: the trackers' clock before this batch, in microseconds -- 0 for new
    trackers, else the last plan's `clock_after` (the trackers must have been given
    nothing else meanwhile; `Tracker.feed_plan` checks). A plan is made once.

    ``checksums=True`` (what `fasttcp.analyze` asks when its trackers verify checksums)
    gives a plan of two shards or more room for checksum hints, which
    `verify_checksums` fills: see there.

    Raises UsageError for a batch that is not a `fasttcp.CaptureBatch` or whose arrays
    are not one per packet, a span outside its buffer or a time outside 0..2**63-1 ns
    (naming the first bad packet), a link verdict that is not a `fasttcp.Verdict`
    code, `shards` outside 1..65535, a `shard` that is not a 1-D uint16 array of one
    value per packet each below `shards`, a `clock` outside 0..`MAX_CLOCK_US`, or
    `checksums` not a bool."""

    cdef readonly object batch
    cdef readonly Py_ssize_t shards
    cdef readonly Py_ssize_t packets
    cdef uint64_t before_us
    cdef uint64_t after_us
    cdef bint made
    cdef bint making
    cdef readonly bint lazy             # no lists: each tracker writes its own (_shard_visits)
    cdef object _off, _len, _link, _snapped, _visit, _vclock, _starts, _counts
    cdef object _shard, _clocks, _ticked
    cdef object _verified
    cdef bint _verify_claimed
    cdef readonly Py_ssize_t checksums_verified

    def __init__(self, batch, shard, shards, clock=0, *, checksums=False):
        # everything is built in locals and kept only once all is checked: a plan
        # half made (or made again) must never pair one batch's arrays with another's
        # visit lists
        cdef Py_buffer view
        cdef Py_ssize_t n, i, ticks, ns
        cdef uint64_t end_ns = 0, before
        # claimed before any Python-level work: a second __init__ running meanwhile
        # (another thread, let in by a property or an allocation) must not make it too
        if self.made or self.making:
            raise UsageError("a ShardPlan is made once (this one was, or is being, made)")
        self.making = True
        ns = _exact_int(shards, "shards", 1, 65535, "an int in 1..65535")
        before = <uint64_t>_exact_int(clock, "clock", 0, MAX_CLOCK_US, f"microseconds in 0..{MAX_CLOCK_US}")
        if not hasattr(batch, "snapped"):
            raise UsageError(f"ShardPlan takes a fasttcp.CaptureBatch, got {type(batch).__name__}")
        off = _as_int64(batch.offsets, "offsets")
        ln = _as_int64(batch.lengths, "lengths")
        ts = _as_int64(batch.ts_ns, "ts_ns")
        if off.ndim != 1 or off.shape != ln.shape or off.shape != ts.shape:
            raise UsageError(f"offsets, lengths and ts_ns must be 1-D and the same length "
                             f"({off.shape}, {ln.shape}, {ts.shape})")
        n = off.shape[0]
        try:
            # a copy: the codes index the verdict counters in C (None: no link verdicts)
            lk = np.zeros(n, np.uint8) if batch.verdicts is None else _own_link_codes(batch.verdicts)
            sn = np.ones(n, bool) if batch.snapped is None else np.ascontiguousarray(batch.snapped)
            if sn.dtype != np.bool_:
                sn = sn.astype(bool)
        except (TypeError, ValueError, OverflowError) as e:
            raise UsageError(f"link verdicts and snapped must be arrays of one entry per packet: {e}") from None
        if lk.shape != off.shape or sn.shape != off.shape:
            raise UsageError("link verdicts and snapped must have one entry per packet")
        sh = np.asarray(shard)
        if sh.dtype != np.uint16 or sh.shape != off.shape:
            raise UsageError(f"shard must be a uint16 array of one value per packet ({n}), got {sh.dtype} "
                             f"of shape {sh.shape}")
        sh = np.array(sh, order="C")          # a copy: every pass must read the same values
        if ns == 2:
            # the common case (two cores), in one pass: see _plan_two
            counts = np.zeros(2, dtype=np.int64)
            clocks = ticked = np.empty(0, dtype=np.uint8)
        else:
            counts = np.zeros(ns + 1, dtype=np.int64)
            clocks = np.empty(n, dtype=np.uint64)
            ticked = np.empty(n, dtype=np.uint8)
        cdef const int64_t[::1] o = off
        cdef const int64_t[::1] l = ln
        cdef const int64_t[::1] t = ts
        cdef const uint8_t[::1] lkv = lk
        cdef const uint16_t[::1] shv = sh
        cdef uint64_t[::1] cv
        cdef uint8_t[::1] tv
        cdef int64_t[::1] cnt = counts
        cdef int64_t[::1] pv
        cdef int64_t[::1] vv
        cdef uint64_t[::1] vcv
        if not isinstance(checksums, bool):
            raise UsageError(f"checksums must be True or False, got {checksums!r}")
        ticks = 0
        visit = vclock = starts = ok = None
        if n:
            _check_codes_and_times(lk, &lkv[0], ts, &t[0], n)
            ft_get_bytes(batch.buffer, &view, "buffer")
            try:
                with nogil:
                    i = ft_first_bad_span(&o[0], &l[0], n, <uint64_t>view.len)
                if i >= 0:
                    raise span_outside_buffer(i, off[i], ln[i], view.len)
            finally:
                PyBuffer_Release(&view)
            if ns == 2:
                visit = np.empty(2 * n, dtype=np.int64)
                vclock = np.empty(2 * n, dtype=np.uint64)
                starts = np.array([0, n, 2 * n], dtype=np.int64)
                vv = visit
                vcv = vclock
                with nogil:
                    ticks = _plan_two(&t[0], &shv[0], n, before, &vv[0], &vcv[0], &cnt[0], &end_ns)
                bad = counts[0]
            else:
                cv = clocks
                tv = ticked
                with nogil:
                    ticks = _plan_clocks(&t[0], &shv[0], n, ns, before, &cv[0], &tv[0], &cnt[0], &end_ns)
                bad = counts[ns]
            if ticks == _PLAN_BAD_SHARD:
                raise UsageError(f"shard[{bad}] is {int(sh[bad])}, not a shard below {ns}")
        # (two shards: never lazy, a list holds at most every packet)
        lazy = ns > 2 and ticks * (ns - 1) > n
        kept = counts[:ns]
        if n and not lazy and ns != 2:
            # each shard's list: its packets and every tick's (a tick's packet of its
            # own is one of them)
            starts = np.zeros(ns + 1, dtype=np.int64)
            np.cumsum(counts[:ns] + ticks, out=starts[1:])
            visit = np.empty(int(starts[ns]), dtype=np.int64)
            vclock = np.empty(int(starts[ns]), dtype=np.uint64)
            pos = starts[:ns].copy()
            pv = pos
            vv = visit
            vcv = vclock
            with nogil:
                _plan_visits(&shv[0], &tv[0], &cv[0], n, ns, &pv[0], &vv[0], &vcv[0])
            # (where each list ended: a tick's packet of its own took one of its slots)
            kept = pos - starts[:ns]
        self.batch = batch
        self.shards = ns
        self.packets = n
        self.before_us = before
        self.after_us = end_ns // 1000 if n else before
        self.lazy = lazy
        self._off, self._len, self._link, self._snapped = off, ln, lk, sn.view(np.uint8)
        self._visit, self._vclock, self._starts, self._counts = visit, vclock, starts, kept
        # (zeros: every packet its tracker's to verify, until verify_checksums says)
        self._verified = np.zeros(n, dtype=np.uint8) if checksums and ns > 1 and n else None
        self._verify_claimed = self._verified is None
        if lazy:
            self._shard, self._clocks, self._ticked = sh, clocks, ticked
        self.made = True

    @property
    def clock_before(self) -> int:
        """The trackers' clock before this batch (microseconds)."""
        return self.before_us

    def verify_checksums(self):
        """Verify, in one pass over the batch in order, the checksums of the packets
        longer than the two lines a shard's tracker prefetches with their headers, by
        the parse the tracker does first; a tracker then skips verifying those found
        good, and verifies the others itself, so verdicts and rows are the same whether
        this ran or not. Returns how many were found good (`checksums_verified`).

        Why: a shard's tracker steps over the other shards' packets, so the lines of
        its own long packets arrive one packet at a time, out of the hardware
        prefetchers' reach; this pass reads them all as one stream (docs/performance.md
        has the figures). It runs without the GIL, on any thread, while trackers already
        track the plan: they use each packet's verdict if it is there when they reach
        it, and verify the packet themselves if not. Only a plan made with
        ``checksums=True`` and two shards or more has hints to fill, and only the first
        call fills them: later ones (or calls for other plans) return at once."""
        cdef Py_buffer view
        cdef Py_ssize_t n = self.packets, good
        cdef const int64_t[::1] o
        cdef const int64_t[::1] l
        cdef const uint8_t[::1] lk
        cdef uint8_t[::1] ok
        if not self.made:
            raise UsageError("the ShardPlan was not made")
        if self._verify_claimed:
            return self.checksums_verified
        self._verify_claimed = True           # (before any Python-level work: once)
        o = self._off
        l = self._len
        lk = self._link
        ok = self._verified
        ft_get_bytes(self.batch.buffer, &view, "buffer")
        try:
            with nogil:
                good = _plan_checksums(<const uint8_t *>view.buf, <uint64_t>view.len, &o[0], &l[0], &lk[0], n,
                                       &ok[0])
        finally:
            PyBuffer_Release(&view)
        self.checksums_verified = good
        return good

    @property
    def clock_after(self) -> int:
        """The trackers' clock after this batch (microseconds): the next plan's `clock`."""
        return self.after_us

    cdef Py_ssize_t _list_of(self, Py_ssize_t k, object scratch, const int64_t **visit,
                             const uint64_t **vclock) except -1:
        """Shard k's visit list: where it is and how long (a lazy plan's written into
        `scratch`, a (visit, clock) pair of at least `packets` entries)."""
        cdef const int64_t[::1] vis
        cdef const uint64_t[::1] clk
        cdef int64_t[::1] sv
        cdef uint64_t[::1] sc
        cdef const uint16_t[::1] shv
        cdef const uint8_t[::1] tv
        cdef const uint64_t[::1] cv
        cdef Py_ssize_t a, nv
        if not self.lazy:
            vis = self._visit
            clk = self._vclock
            a = self._starts[k]
            visit[0] = &vis[0] + a
            vclock[0] = &clk[0] + a
            return self._counts[k]
        sv = scratch[0]
        sc = scratch[1]
        shv = self._shard
        tv = self._ticked
        cv = self._clocks
        with nogil:
            nv = _shard_visits(&shv[0], &tv[0], &cv[0], self.packets, <uint16_t>k, &sv[0], &sc[0])
        visit[0] = &sv[0]
        vclock[0] = &sc[0]
        return nv

    def visits(self, shard):
        """Test hook: shard `shard`'s visit list (batch indices; another shard's packet,
        visited for its time, as ``~index``) and the clock at each (ns)."""
        cdef const int64_t *vis
        cdef const uint64_t *clk
        if not self.made:
            raise UsageError("the ShardPlan was not made")
        k = _exact_int(shard, "shard", 0, self.shards - 1, f"an int in 0..{self.shards - 1}")
        if self.packets == 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.uint64)
        scratch = (np.empty(self.packets, np.int64), np.empty(self.packets, np.uint64))
        m = self._list_of(k, scratch, &vis, &clk)
        v = np.array(<const int64_t[:m]>vis if m else np.empty(0, np.int64), dtype=np.int64)
        c = np.array(<const uint64_t[:m]>clk if m else np.empty(0, np.uint64), dtype=np.uint64)
        index = np.bitwise_and(v, np.int64(0x7fffffffffffffff))
        return np.where(v < 0, -index - 1, index), c


def _own_indices(indices, Py_ssize_t n):
    """`feed_batch`'s indices as an int64 array of our own, checked: integers, strictly
    ascending, each in 0..n-1 (the visit walk relies on all three)."""
    try:
        idx = np.asarray(indices)
    except (TypeError, ValueError) as e:      # a ragged list: numpy's own words
        raise UsageError(f"indices must be a 1-D integer array of batch indices: {e}") from None
    if idx.ndim == 1 and idx.size == 0 and not isinstance(indices, np.ndarray):
        # [] or (): no packets of this shard (numpy makes an empty list float64)
        idx = idx.astype(np.int64)
    if idx.dtype.kind not in "iu" or idx.ndim != 1:
        raise UsageError(f"indices must be a 1-D integer array of batch indices, got {idx.dtype} "
                         f"of shape {idx.shape}")
    if idx.dtype.kind == "u" and idx.size and int(idx.max()) >= n:
        raise UsageError(f"indices must be batch indices in 0..{n - 1}, got {int(idx.max())}")
    own = np.array(idx, dtype=np.int64)     # a copy: another thread may rewrite the caller's
    cdef const int64_t[::1] v = own
    cdef Py_ssize_t m = own.shape[0], k, bad = -1
    with nogil:
        for k in range(m):
            if v[k] < 0 or v[k] >= n or (k > 0 and v[k] <= v[k - 1]):
                bad = k
                break
    if bad >= 0:
        raise UsageError(f"indices must be strictly ascending batch indices in 0..{n - 1}: "
                         f"entry {bad} is {int(own[bad])}" + (f" after {int(own[bad - 1])}" if bad else ""))
    return own


def _select_mask(select, Py_ssize_t n):
    """`feed_batch`'s select as a uint8 array of our own (0: another shard's)."""
    sel = np.asarray(select)
    if sel.dtype != np.bool_:
        if sel.dtype.kind not in "iu":
            raise UsageError(f"select must be a bool array, one per packet (got dtype {sel.dtype})")
        sel = sel != 0
    if sel.ndim != 1 or sel.shape[0] != n:
        raise UsageError(f"select must be 1-D with one entry per packet ({n}), got shape {sel.shape}")
    return sel.astype(np.uint8)            # a copy: another thread may rewrite the caller's


cdef class Tracker:
    """Passive connection tracker: feed it both directions of real traffic.

    ``Tracker(capacity=1_000_000, *, timeouts=None, verify_checksum=True, loose=True,
    liberal=False, seed=None, events=False, max_events=1_000_000)``

    * ``timeouts``: a `TrackerTimeouts` (default: netfilter conntrack's), or the name
      of a preset, ``"conntrack"`` or ``"zeek"``.
    * ``verify_checksum``: packets with a bad TCP checksum (or IPv4 header checksum)
      are counted and leave a ``C`` in the history but change nothing else, as Zeek
      does by default. Pass False for captures taken where checksums are offloaded.
    * ``loose``: pick up connections whose SYN was not seen (conntrack's tcp_loose,
      Zeek's behaviour). With False only a SYN starts a connection; anything else for
      an unknown 4-tuple gets the UNTRACKED verdict.
    * ``liberal``: window-tracking failures are counted but never make a packet
      INVALID (conntrack's tcp_be_liberal).
    * ``server_ports``: ports taken to be servers when a connection's first packet is
      not a plain SYN (Zeek's likely_server_ports; the default is Zeek's default set,
      `fasttcp.tracker.vocabulary.LIKELY_SERVER_PORTS`; ``()`` turns the heuristic off, as
      ``zeek -b`` runs have it).
    * ``events``: keep conntrack state changes for `events()` (at most ``max_events``
      between calls; the rest are counted in ``stats["events_dropped"]``).

    Raises UsageError for a capacity outside 1..2^31, a max_events outside
    0..MAX_EVENTS, server ports that are not ints in 0..65535, an unknown timeouts
    preset, a negative seed (bools and floats are none of these), a switch
    (``verify_checksum``, ``loose``, ``liberal``, ``events``) that is not a bool, and
    MemoryError if the records cannot be allocated.

    Time is the packets' own: `feed` takes seconds, `feed_batch` the batch's
    nanosecond timestamps. Connections whose state's idle time has run out are
    finished as packet time passes; `finished()` collects their summaries (a
    FLOW_DTYPE array).
    """

    cdef tr_t *_tr
    cdef public object timeouts
    cdef object _done_chunks
    cdef object _event_chunks
    cdef Py_ssize_t _max_events
    cdef Py_ssize_t _pending_events
    cdef bint _busy
    cdef object _visit_scratch           # feed_batch(indices=...)'s visit list and clock, kept
    cdef object _verdict_scratch         # feed_plan's verdicts (counted, not returned), kept

    def __cinit__(self):
        self._tr = NULL

    def __init__(self, capacity=1_000_000, *, timeouts=None, verify_checksum=True, loose=True,
                 liberal=False, seed=None, events=False, max_events=1_000_000, server_ports=None):
        from fasttcp.tracker.vocabulary import TrackerTimeouts, TRACKER_STATE_CLASSES, LIKELY_SERVER_PORTS
        if self._tr != NULL:
            raise UsageError("Tracker already initialised")
        if server_ports is None:
            server_ports = LIKELY_SERVER_PORTS
        if isinstance(server_ports, (str, bytes)):
            raise UsageError(f"server_ports must be port numbers 0..65535, got {server_ports!r}")
        try:
            it = iter(server_ports)
        except TypeError:
            raise UsageError(f"server_ports must be port numbers 0..65535, got {server_ports!r}") from None
        # checked as they come, into a bit per port: a huge or endless iterable stops at
        # its first bad value or at MAX_SERVER_PORT_VALUES, in 8 KiB of memory
        ports = bytearray(8192)
        for k, x in enumerate(it):
            # (int() would take 80.9 as 80 and "80" as 80: only ints are ports)
            if isinstance(x, bool) or not isinstance(x, int) or not 0 <= x <= 65535:
                raise UsageError(f"server_ports must be port numbers 0..65535, got {x!r}")
            if k == MAX_SERVER_PORT_VALUES:
                raise UsageError(f"server_ports: more than {MAX_SERVER_PORT_VALUES} values")
            ports[x >> 3] |= 1 << (x & 7)
        # the switches are bools (a "no" or a 0.5 would read as True), as ShardPlan's
        for name, flag in (("verify_checksum", verify_checksum), ("loose", loose), ("liberal", liberal),
                           ("events", events)):
            if not isinstance(flag, (bool, np.bool_)):
                raise UsageError(f"{name} must be True or False, got {flag!r}")
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1 or capacity > (1 << 31):
            raise UsageError(f"capacity must be an int in 1..{1 << 31}, got {capacity!r}")
        if timeouts is None or (isinstance(timeouts, str) and timeouts == "conntrack"):
            timeouts = TrackerTimeouts()
        elif isinstance(timeouts, str) and timeouts == "zeek":
            timeouts = TrackerTimeouts.zeek()
        elif not isinstance(timeouts, TrackerTimeouts):
            raise UsageError(f"timeouts must be a TrackerTimeouts, 'conntrack' or 'zeek', got {timeouts!r}")
        # the C event buffer holds max_events rows of 24 bytes, allocated up front
        if isinstance(max_events, bool) or not isinstance(max_events, int) or not 0 <= max_events <= MAX_EVENTS:
            raise UsageError(f"max_events must be an int in 0..{MAX_EVENTS}, got {max_events!r}")
        if seed is None:
            s0, s1 = int.from_bytes(os.urandom(8), "little"), int.from_bytes(os.urandom(8), "little")
        else:
            if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
                raise UsageError(f"seed must be a non-negative int, got {seed!r}")
            s0, s1 = seed & 0xffffffffffffffff, (seed >> 64) & 0xffffffffffffffff
        cdef tr_t *tr = <tr_t *>calloc(1, sizeof(tr_t))
        if tr == NULL:
            raise MemoryError()
        cdef uint8_t classes[16]
        cdef int i
        if ft_table_init(&tr.tab, capacity, s0, s1, True, True) != 0:
            free(tr)
            raise MemoryError(f"cannot allocate a table of {capacity} connections")
        self._tr = tr
        for i in range(16):
            classes[i] = TRACKER_STATE_CLASSES[i] if i < len(TRACKER_STATE_CLASSES) else 0
        ft_table_set_classes(&tr.tab, classes, 16)
        tr.recs = <trk_t *>ft_alloc_zeroed(<size_t>capacity * sizeof(trk_t))
        # the row and event buffers are mapped, not calloc'd: 12 MB of rows (24 MB of
        # events at the default max_events) that glibc, once a freed block has raised
        # its mmap threshold, takes from the heap and clears with memset -- 0.4 ms per
        # tracker (1-4 ms when the heap grows), where a run writes the first few
        # hundred KB. Zero pages become resident as rows are written: 2 MiB pages when
        # the records take more than one anyway (measured: one worker 1.3%, two 2%
        # faster on the short-connection bench capture, plain build), else 4 KiB pages,
        # so that a small tracker's first row does not cost 2 MiB
        tr.cap_done = _DONE_CAP
        tr.cap_ev = max_events if events else 0
        if <size_t>capacity * sizeof(trk_t) >= FT_HUGE_PAGE:
            tr.done = <flow_row_t *>ft_alloc_zeroed(<size_t>_DONE_CAP * sizeof(flow_row_t))
            tr.ev = <trk_event_t *>ft_alloc_zeroed(_event_bytes(tr))
        else:
            tr.done = <flow_row_t *>ft_alloc_lazy(<size_t>_DONE_CAP * sizeof(flow_row_t))
            tr.ev = <trk_event_t *>ft_alloc_lazy(_event_bytes(tr))
        tr.expired = <uint32_t *>calloc(_EXPIRE_CHUNK, sizeof(uint32_t))
        if tr.recs == NULL or tr.done == NULL or tr.expired == NULL or tr.ev == NULL:
            raise MemoryError(f"cannot allocate tracker records for {capacity} connections")
        micros = timeouts.as_micros()
        for i in range(TRK_NSTATES):
            tr.timeout[i] = micros[i]     # the table's own timeouts stay 0: timers are lazy here
        tr.unack = micros[TRK_NSTATES]
        tr.retrans = micros[TRK_NSTATES + 1]
        tr.cfg.verify = bool(verify_checksum)
        tr.cfg.loose = bool(loose)
        tr.cfg.liberal = bool(liberal)
        tr.cfg.want_events = bool(events)
        tr.cfg.fast_path = True
        for k in range(8192):
            tr.server_ports[k] = ports[k]
        self._done_chunks = []
        self._event_chunks = []
        self._max_events = max_events if events else 0
        self._pending_events = 0
        self.timeouts = timeouts

    def __dealloc__(self):
        cdef tr_t *tr = self._tr
        if tr == NULL:
            return
        if tr.recs != NULL:
            ft_free_zeroed(tr.recs, <size_t>tr.tab.capacity * sizeof(trk_t))
        ft_table_free(&tr.tab)
        ft_free_zeroed(tr.done, <size_t>tr.cap_done * sizeof(flow_row_t))
        ft_free_zeroed(tr.ev, _event_bytes(tr))
        free(tr.expired)
        free(tr)
        self._tr = NULL

    cdef tr_t *_get(self) except NULL:
        if self._tr == NULL or self._tr.recs == NULL:
            raise UsageError("Tracker is not initialised")
        if self._busy:
            raise UsageError("Tracker is in use by another call (not re-entrant)")
        return self._tr

    cdef void _collect(self):
        """Move C-side finished rows and events into Python arrays."""
        cdef tr_t *tr = self._tr
        cdef uint8_t[::1] v
        if tr.ndone:
            arr = np.empty(tr.ndone, dtype=FLOW_DTYPE)
            v = arr.view(np.uint8).reshape(-1)
            memcpy(&v[0], tr.done, tr.ndone * sizeof(flow_row_t))
            tr.ndone = 0
            self._done_chunks.append(arr)
        if tr.nev:
            # max_events bounds what waits for events(), not each C buffer fill
            room = self._max_events - self._pending_events
            keep = min(tr.nev, max(room, 0))
            tr.ev_dropped += tr.nev - keep
            if keep:
                arr = np.empty(keep, dtype=TRACKER_EVENT_DTYPE)
                v = arr.view(np.uint8).reshape(-1)
                memcpy(&v[0], tr.ev, keep * sizeof(trk_event_t))
                self._event_chunks.append(arr)
                self._pending_events += keep
            tr.nev = 0

    @property
    def capacity(self) -> int:
        return self._get().tab.capacity

    def __len__(self):
        return self._get().tab.count

    @property
    def memory_bytes(self) -> int:
        """Bytes reserved for connections: table records, index, timer wheel and its bits,
        and tracker records."""
        cdef tr_t *tr = self._get()
        return (tr.tab.capacity * (sizeof(ft_conn_t) + sizeof(trk_t)) + (tr.tab.nslots + 8) * 8
                + FT_WHEEL_SIZE * 4 + FT_WHEEL_SIZE // 8)

    def feed(self, packet, ts):
        """Track one IP packet captured at `ts` (float seconds). Returns its verdict
        code (`fasttcp.Verdict`).

        Raises UsageError for a `ts` that is not a finite number of seconds in
        0..`MAX_TIME_S` (nanoseconds must fit in int64, as in `feed_batch`)."""
        cdef tr_t *tr = self._get()
        cdef Py_buffer view
        cdef int64_t off = 0, ln, t
        cdef uint8_t verdict = 0
        # claimed before any Python-level work (the time's conversion and the packet's
        # buffer can let another thread run): close() and the batch calls change the
        # table without the GIL
        self._busy = True
        try:
            t = <int64_t>_micros(ts, "ts") * 1000
            ft_get_bytes(packet, &view, "packet")
            try:
                ln = view.len
                tr.buf_size = <uint64_t>view.len
                tr.bad_span = -1
                # (0: the finished rows must be collected first, the packet is not tracked yet)
                while _feed(tr, <const uint8_t *>view.buf, &off, &ln, &t, NULL, NULL, NULL, 0, 1, &verdict,
                            NULL, NULL, NULL) == 0:
                    self._collect()
            finally:
                PyBuffer_Release(&view)
        finally:
            self._busy = False
        if tr.ndone or tr.nev:
            self._collect()
        from fasttcp.enums import Verdict
        return Verdict(verdict)

    def feed_batch(self, batch, offsets=None, lengths=None, ts_ns=None, *, select=None, indices=None):
        """Track a batch of packets in order; returns a uint8 array of verdicts
        (`fasttcp.Verdict` codes).

        Either ``feed_batch(capture_batch)`` with a `fasttcp.CaptureBatch` (its
        link-layer verdicts are kept, and a packet shorter than its IP length is tracked
        only if the snap length cut it), or ``feed_batch(buffer, offsets, lengths,
        ts_ns)`` with IP packets at ``buffer[offsets[i]:offsets[i]+lengths[i]]`` and
        int64 nanosecond timestamps (a short packet is then taken as snap-length cut).

        ``select`` (one bool per packet) makes this tracker one shard of several: a
        packet it leaves out only moves the clock -- connections expire exactly as in
        a tracker fed every packet -- and gets the verdict OTHER_SHARD; it is counted in
        ``stats["other_shard"]``, not in ``stats["packets"]``. With
        ``select=fasttcp.shard_of_batch(batch, n) == k`` for k in 0..n-1, n trackers
        finish the same rows as one tracker fed everything.

        ``indices`` does the same as ``select`` from the other side: the batch indices
        of this tracker's packets, strictly ascending (``np.flatnonzero(select)``). The
        tracker then steps only through its own packets and the few others at which
        its clock ticks over, so n shard trackers together do about the work of one,
        where with ``select`` each walks every packet; rows, verdicts and counts are
        the same as with ``select``. Give one of the two.

        Raises UsageError, before tracking any packet, for offsets/lengths/ts_ns (or a
        select, or indices) that are not 1-D arrays of one length, indices that are not
        integers strictly ascending inside the batch, a span outside the buffer, a
        timestamp outside 0..2**63-1 ns (the first bad packet is named), link verdicts
        that are not `fasttcp.Verdict` codes, and while another call is running.
        """
        cdef tr_t *tr = self._get()
        # claimed before any Python-level work: converting the arrays may let another
        # thread run, and two batch calls must never be inside one tracker
        self._busy = True
        try:
            return self._feed_batch(tr, batch, offsets, lengths, ts_ns, select, indices)
        finally:
            self._busy = False

    cdef object _feed_batch(self, tr_t *tr, object batch, object offsets, object lengths, object ts_ns,
                            object select, object indices):
        cdef Py_buffer view
        link = None
        snapped = None
        if offsets is None and lengths is None and ts_ns is None:
            if not hasattr(batch, "snapped"):
                raise UsageError("feed_batch(capture_batch) or feed_batch(buffer, offsets, lengths, ts_ns)")
            buf, offs, lens, tss, link = batch.buffer, batch.offsets, batch.lengths, batch.ts_ns, batch.verdicts
            snapped = batch.snapped
        else:
            if offsets is None or lengths is None or ts_ns is None:
                raise UsageError("feed_batch(buffer, offsets, lengths, ts_ns): all four are needed")
            buf, offs, lens, tss = batch, offsets, lengths, ts_ns
        off = _as_int64(offs, "offsets")
        ln = _as_int64(lens, "lengths")
        ts = _as_int64(tss, "ts_ns")
        if off.ndim != 1 or off.shape != ln.shape or off.shape != ts.shape:
            raise UsageError(f"offsets, lengths and ts_ns must be 1-D and the same length "
                             f"({off.shape}, {ln.shape}, {ts.shape})")
        cdef Py_ssize_t n = off.shape[0], done = 0, i, m = 0, nvisit = n
        if select is not None and indices is not None:
            raise UsageError("give select or indices, not both")
        own = _own_indices(indices, n) if indices is not None else None
        verdicts = np.zeros(n, dtype=np.uint8) if own is None else np.full(n, TV_OTHER_SHARD, dtype=np.uint8)
        if n == 0:
            return verdicts
        # a copy of our own (np.array copies): the codes index the verdict counters in
        # C, so they must not change between their check and their use
        lk = _own_link_codes(link) if link is not None else None
        if lk is not None and lk.shape != off.shape:
            raise UsageError("link verdicts must have one entry per packet")
        cdef const int64_t[::1] o = off
        cdef const int64_t[::1] l = ln
        cdef const int64_t[::1] t = ts
        cdef uint8_t[::1] vd = verdicts
        cdef const uint8_t[::1] lkv
        cdef const uint8_t *lkp = NULL
        cdef const uint8_t[::1] snv
        cdef const uint8_t *snp = NULL
        if lk is not None:
            lkv = lk
            lkp = &lkv[0]
        _check_codes_and_times(lk, lkp, ts, &t[0], n)
        cdef const uint8_t[::1] slv
        cdef const uint8_t *slp = NULL
        if select is not None:
            sl = _select_mask(select, n)
            slv = sl
            slp = &slv[0]
        if snapped is not None:
            sn = np.ascontiguousarray(snapped)
            if sn.dtype != np.bool_:
                sn = sn.astype(bool)
            if sn.shape != off.shape:
                raise UsageError("snapped must have one entry per packet")
            snv = sn.view(np.uint8)
            snp = &snv[0]
        cdef const int64_t[::1] ownv
        cdef int64_t[::1] visv
        cdef uint64_t[::1] clkv
        cdef uint8_t[::1] markv
        cdef const int64_t *visp = NULL
        cdef uint64_t *clkp = NULL
        cdef uint64_t end_now = 0
        if own is not None:
            m = own.shape[0]
            # kept between calls: a fresh n-sized pair each batch cost page faults
            # (glibc maps large blocks anew) on every call of every shard
            if self._visit_scratch is None or self._visit_scratch[0].shape[0] < n:
                self._visit_scratch = (np.empty(n, dtype=np.int64), np.empty(n, dtype=np.uint64),
                                       np.empty(n, dtype=np.uint8))
            visit, clock, mark = self._visit_scratch
            visv = visit
            clkv = clock
            markv = mark
            visp = &visv[0]
            clkp = &clkv[0]
            if m:
                ownv = own
                with nogil:
                    nvisit = _visits(tr, &t[0], n, &ownv[0], m, &visv[0], clkp, &markv[0], &end_now)
            else:
                with nogil:
                    nvisit = _visits(tr, &t[0], n, NULL, 0, &visv[0], clkp, &markv[0], &end_now)
        ft_get_bytes(buf, &view, "buffer")
        try:
            with nogil:
                i = ft_first_bad_span(&o[0], &l[0], n, <uint64_t>view.len)
            if i >= 0:
                raise span_outside_buffer(i, off[i], ln[i], view.len)
            tr.buf_size = <uint64_t>view.len
            tr.bad_span = -1
            while done < nvisit:
                with nogil:
                    done = _feed(tr, <const uint8_t *>view.buf, &o[0], &l[0], &t[0], lkp, snp, slp, done, nvisit,
                                 &vd[0], visp, clkp, NULL)
                self._collect()
            if own is not None:
                # the packets not visited are other shards' whose times moved the clock
                # within a tick: count them, and move the clock as their walk would have
                tr.packets += <uint64_t>(n - nvisit)
                tr.other_shard += <uint64_t>(n - nvisit)
                if end_now > tr.now:
                    tr.now = end_now
        finally:
            PyBuffer_Release(&view)
        if tr.bad_span >= 0:
            raise UsageError(f"packet {tr.bad_span}: offsets or lengths were rewritten (by another thread) "
                             f"while feed_batch ran, to a span outside the buffer")
        return verdicts

    def feed_plan(self, ShardPlan plan not None, shard):
        """Track shard `shard` of a `ShardPlan`'s batch: the rows, verdict counts and clock
        of ``feed_batch(plan.batch, indices=...)`` with that shard's packets, without
        walking the batch again (the plan did, once for every shard). Returns None (the
        packets' verdicts are counted in `stats`, not returned).

        Raises UsageError for a shard outside the plan's, a tracker whose clock is not
        the plan's `clock_before` (the plans of a run are made in order, each from the
        last one's `clock_after`, for trackers given nothing else meanwhile), and while
        another call is running."""
        cdef tr_t *tr = self._get()
        cdef Py_buffer view
        cdef Py_ssize_t k, n, nvisit, done = 0
        cdef const int64_t *vis
        cdef const uint64_t *clk
        cdef const int64_t[::1] o
        cdef const int64_t[::1] l
        cdef const uint8_t[::1] lk
        cdef const uint8_t[::1] sn
        cdef uint8_t[::1] vd
        cdef const uint8_t[::1] vf
        cdef const uint8_t *vfp = NULL
        # claimed before any Python-level work, as feed_batch: a comparison or an
        # allocation can let another thread run, and two calls must never be inside
        # one tracker
        self._busy = True
        try:
            if not plan.made:
                raise UsageError("the ShardPlan was not made")
            k = _exact_int(shard, "shard", 0, plan.shards - 1, f"an int in 0..{plan.shards - 1}")
            # (the plan's arrays held here while their memory is read without the GIL)
            _held = (plan._off, plan._len, plan._link, plan._snapped, plan._visit, plan._vclock, plan._verified)
            if tr.now != plan.before_us or tr.last_tick != tr.now >> FT_TICK_SHIFT:
                raise UsageError(f"the plan is for trackers at clock {plan.before_us} us, "
                                 f"this one is at {tr.now} us")
            n = plan.packets
            if n == 0:
                return None
            if self._verdict_scratch is None or self._verdict_scratch.shape[0] < n:
                self._verdict_scratch = np.empty(n, dtype=np.uint8)
            if plan.lazy and (self._visit_scratch is None or self._visit_scratch[0].shape[0] < n):
                self._visit_scratch = (np.empty(n, dtype=np.int64), np.empty(n, dtype=np.uint64),
                                       np.empty(n, dtype=np.uint8))
            o = plan._off
            l = plan._len
            lk = plan._link
            sn = plan._snapped
            vd = self._verdict_scratch
            if plan._verified is not None:
                vf = plan._verified
                vfp = &vf[0]
            nvisit = plan._list_of(k, self._visit_scratch, &vis, &clk)
            ft_get_bytes(plan.batch.buffer, &view, "buffer")
            try:
                tr.buf_size = <uint64_t>view.len
                tr.bad_span = -1
                while done < nvisit:
                    with nogil:
                        done = _feed(tr, <const uint8_t *>view.buf, &o[0], &l[0], NULL, &lk[0], &sn[0], NULL,
                                     done, nvisit, &vd[0], vis, clk, vfp)
                    self._collect()
            finally:
                PyBuffer_Release(&view)
            # the packets not visited are other shards' whose times moved the clock
            # within a tick: count them, and move the clock as their walk would have
            tr.packets += <uint64_t>(n - nvisit)
            tr.other_shard += <uint64_t>(n - nvisit)
            if plan.after_us > tr.now:
                tr.now = plan.after_us
        finally:
            self._busy = False
        if tr.bad_span >= 0:
            raise UsageError(f"packet {tr.bad_span}: offsets or lengths were rewritten (by another thread) "
                             f"while feed_plan ran, to a span outside the buffer")
        return None

    def expire(self, now):
        """Finish connections idle past their state's timeout at `now` (seconds) and
        return every finished summary not yet collected (see `finished`). A `now`
        behind the tracker's clock expires what is due at its clock.

        Raises UsageError for a `now` that is not a finite number of seconds in
        0..`MAX_TIME_S`."""
        cdef tr_t *tr = self._get()
        cdef uint64_t t
        # claimed before any Python-level work (the time's conversion can let another
        # thread run): close() and the batch calls change the table without the GIL
        self._busy = True
        try:
            t = _micros(now, "now")
            if t > tr.now:
                tr.now = t
                tr.last_tick = t >> FT_TICK_SHIFT
            while True:
                done = _expire(tr, tr.now)
                self._collect()
                if done:
                    break
        finally:
            self._busy = False
        return self.finished()

    def finished(self):
        """Summaries (FLOW_DTYPE) of connections that ended since the last call --
        timed out, reopened by a new SYN, evicted, or flushed by `close()` -- in the
        order they ended."""
        self._get()
        self._collect()
        chunks, self._done_chunks = self._done_chunks, []
        if not chunks:
            return np.empty(0, dtype=FLOW_DTYPE)
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)

    def events(self):
        """conntrack state changes (TRACKER_EVENT_DTYPE) since the last call; empty
        unless the tracker was made with ``events=True``."""
        self._get()
        self._collect()
        chunks, self._event_chunks = self._event_chunks, []
        self._pending_events = 0
        if not chunks:
            return np.empty(0, dtype=TRACKER_EVENT_DTYPE)
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)

    def connections(self):
        """Summaries (FLOW_DTYPE, end_reason LIVE) of every connection still tracked."""
        cdef tr_t *tr = self._get()
        cdef uint32_t i, k = 0
        arr = np.empty(tr.tab.count, dtype=FLOW_DTYPE)
        cdef uint8_t[::1] v = arr.view(np.uint8).reshape(-1) if tr.tab.count else np.empty(0, np.uint8)
        cdef flow_row_t *rows = <flow_row_t *>&v[0] if tr.tab.count else NULL
        for i in range(tr.tab.fresh):
            if tr.tab.conns[i].family != 0 and k < tr.tab.count:
                _fill_row(tr, i, &rows[k], END_LIVE)
                k += 1
        return arr[:k]

    def close(self):
        """Finish every connection still tracked (end of capture) and return all
        summaries not yet collected. The tracker stays usable."""
        cdef tr_t *tr = self._get()
        cdef uint32_t i = 0
        # claimed like feed_batch: the walk runs without the GIL (so that the shard
        # trackers of `analyze --workers N` flush at once), and no other call may
        # touch the table meanwhile
        self._busy = True
        try:
            self._collect()
            while i < tr.tab.fresh:
                with nogil:
                    i = _flush_from(tr, i)
                self._collect()
        finally:
            self._busy = False
        return self.finished()

    def _raw_records(self):
        """Test hook: every record ever used, table part and tracker part, as bytes (the
        fast path's differential tests compare the two paths' internal state too)."""
        cdef tr_t *tr = self._get()
        return (PyBytes_FromStringAndSize(<const char *>tr.tab.conns, tr.tab.fresh * sizeof(ft_conn_t)),
                PyBytes_FromStringAndSize(<const char *>tr.recs, tr.tab.fresh * sizeof(trk_t)))

    def _set_fast_path(self, bint on):
        """Test hook: False sends every packet through the general path (the fast path's
        differential tests compare the two)."""
        self._get().cfg.fast_path = on

    @property
    def stats(self):
        """Counters (a `TrackerStats` dict): packets, verdicts by name, connections
        created / reused / evicted / timed out, out-of-window packets, RTT samples, live
        connections, and `fast_path`: packets the fast paths took (header prediction for
        in-window ACK, data and FIN|ACK segments, as Linux counts in TCPHPHits; and the
        opening SYN and its SYN-ACK).

        A property, as `Endpoint.stats` and `ConnectionTable.stats` are; calling it,
        ``tracker.stats()``, still works for one release with a DeprecationWarning."""
        cdef tr_t *tr = self._get()
        from fasttcp.enums import Verdict
        from fasttcp.tracker.vocabulary import TrackerStats
        return TrackerStats({
            "packets": tr.packets - tr.other_shard,
            "other_shard": tr.other_shard,
            "verdicts": {Verdict(i).name: tr.verdicts[i] for i in range(TV_COUNT) if tr.verdicts[i]},
            "created": tr.created,
            "reused": tr.reused,
            "evicted": tr.evicted,
            "timed_out": tr.timed_out,
            "out_of_window": tr.out_of_window,
            "rtt_samples": tr.rtt_samples,
            "live": tr.tab.count,
            "events_dropped": tr.ev_dropped,
            "fast_path": tr.fast_hits,
        })
