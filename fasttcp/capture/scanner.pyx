# cython: language_level=3
"""Capture scanning: pcap/pcapng records -> IP packets with the link layer stripped.

Written here rather than taken from a library because it is on the `fasttcp analyze`
hot path (millions of records per second): the pure-Python pcapng readers decode one
block per Python call, two orders of magnitude too slow. The scanner walks records
in a caller-owned byte buffer without the GIL and without copying packet bytes; it
only writes offsets, lengths, timestamps and a verdict per packet. File I/O and
buffer management stay in Python (fasttcp/capture.py).

Every length read from the file is checked against the bytes actually present
before it is used: a record that runs past the buffer is left for the next fill (or
reported as a truncated tail at end of file), and a length that cannot be right
(a pcapng block shorter than its own header, a record over FT_MAX_RECORD) is a
corrupt-file error with its file offset.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.string cimport memset

from fasttcp.wire.defs cimport (FT_OK, FT_ERR_NOT_IP, FT_ERR_UNSUPPORTED_LINK,
                                 FT_ERR_LINK_TRUNCATED)

import numpy as np
from fasttcp.errors import UsageError

__all__ = ["CaptureScanner", "strip_link", "FORMAT_PCAP", "FORMAT_PCAPNG", "MAX_RECORD", "MAX_PACKETS"]

cdef enum:
    FT_FMT_PCAP = 1
    FT_FMT_PCAPNG = 2
    FT_MAX_IFACES = 256
    FT_MAX_RECORD = 16 << 20          # a record larger than this is corruption, not a packet
    FT_MAX_TAGS = 8                   # stacked 802.1Q/802.1ad tags we walk through
    FT_MAX_LABELS = 16                # stacked MPLS labels we walk through

FORMAT_PCAP = FT_FMT_PCAP
FORMAT_PCAPNG = FT_FMT_PCAPNG
MAX_RECORD = FT_MAX_RECORD
MAX_PACKETS = 1 << 24
"""The most packets one scan (one batch) holds: its arrays, 41 bytes a packet, are
allocated up front, so a larger count is a typo costing gigabytes."""

# scan results (ft_scan's return code)
cdef enum:
    SCAN_MORE = 0                     # stopped at an incomplete record: refill and call again
    SCAN_FULL = 1                     # the output arrays are full
    SCAN_CORRUPT = 2                  # a length field cannot be right (err_pos says where)

# link types (LINKTYPE_* numbers as stored in files)
cdef enum:
    LT_NULL = 0
    LT_ETHERNET = 1
    LT_RAW_BSD12 = 12                 # DLT_RAW as some BSDs wrote it
    LT_RAW_BSD14 = 14
    LT_RAW = 101
    LT_LOOP = 108
    LT_LINUX_SLL = 113
    LT_IPV4 = 228
    LT_IPV6 = 229
    LT_LINUX_SLL2 = 276


ctypedef struct ft_iface_t:
    uint32_t linktype
    uint32_t snaplen
    uint32_t fcs_bytes                # frame check sequence at the end of each frame
    uint64_t ts_mul                   # timestamp units -> ns: ns = units * mul / div
    uint64_t ts_div
    int64_t ts_offset_ns              # if_tsoffset (seconds) in ns
    bint ts_offset_bad                # if_tsoffset beyond what int64 nanoseconds hold


cdef extern from *:
    """
    /* overflow-checked arithmetic (gcc and clang): a file's timestamp fields are any
       64-bit values, and signed overflow is undefined behaviour in C */
    #define ft_mul_u64(a, b, r) __builtin_mul_overflow((a), (b), (r))
    #define ft_add_u64(a, b, r) __builtin_add_overflow((a), (b), (r))
    #define ft_mul_i64(a, b, r) __builtin_mul_overflow((a), (b), (r))
    #define ft_add_i64(a, b, r) __builtin_add_overflow((a), (b), (r))
    """
    bint ft_mul_u64(uint64_t a, uint64_t b, uint64_t *r) nogil
    bint ft_add_u64(uint64_t a, uint64_t b, uint64_t *r) nogil
    bint ft_mul_i64(int64_t a, int64_t b, int64_t *r) nogil
    bint ft_add_i64(int64_t a, int64_t b, int64_t *r) nogil


ctypedef struct ft_scan_t:
    int format
    bint swap                         # the current section/file is in the other byte order
    bint nano                         # pcap: nanosecond timestamps
    uint32_t niface
    uint64_t frames                   # records with packets seen so far (frame numbers are 1-based)
    uint64_t blocks_skipped           # pcapng blocks of kinds we do not need
    uint64_t bad_interface            # packets naming an interface that was never described
    uint64_t bad_timestamp            # packets whose time is not in 0..2**63-1 ns (given as 0)
    ft_iface_t iface[FT_MAX_IFACES]


cdef inline uint16_t _be16(const uint8_t *p) noexcept nogil:
    return (<uint16_t>p[0] << 8) | p[1]


cdef inline uint32_t _rd32(const uint8_t *p, bint swap) noexcept nogil:
    # files are little- or big-endian; this reads either without an unaligned load
    if swap:
        return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]
    return (<uint32_t>p[3] << 24) | (<uint32_t>p[2] << 16) | (<uint32_t>p[1] << 8) | p[0]


cdef inline uint16_t _rd16(const uint8_t *p, bint swap) noexcept nogil:
    if swap:
        return (<uint16_t>p[0] << 8) | p[1]
    return (<uint16_t>p[1] << 8) | p[0]


cdef inline int _ip_by_version(const uint8_t *f, uint32_t off, uint32_t caplen) noexcept nogil:
    """A payload that should be IP: check the version nibble (MPLS and raw links carry
    no type field)."""
    if off >= caplen:
        return FT_ERR_LINK_TRUNCATED
    if (f[off] >> 4) == 4 or (f[off] >> 4) == 6:
        return FT_OK
    return FT_ERR_NOT_IP


cdef int _after_ethertype(const uint8_t *f, uint32_t caplen, uint16_t et, uint32_t off,
                          uint32_t *ip_off) noexcept nogil:
    """Walk VLAN tags, MPLS labels and PPPoE from an EtherType at `off` to the IP header."""
    cdef int tags = 0, labels = 0
    cdef uint16_t ppp
    while et == 0x8100 or et == 0x88a8 or et == 0x9100 or et == 0x9200:
        if tags == FT_MAX_TAGS:
            return FT_ERR_UNSUPPORTED_LINK
        if off + 4 > caplen:
            return FT_ERR_LINK_TRUNCATED
        et = _be16(f + off + 2)
        off += 4
        tags += 1
    if et == 0x8847 or et == 0x8848:
        while True:
            if labels == FT_MAX_LABELS:
                return FT_ERR_UNSUPPORTED_LINK
            if off + 4 > caplen:
                return FT_ERR_LINK_TRUNCATED
            labels += 1
            off += 4
            if f[off - 2] & 1:            # bottom of stack
                break
        ip_off[0] = off
        return _ip_by_version(f, off, caplen)
    if et == 0x8864:                      # PPPoE session: 6-byte header + PPP protocol
        if off + 8 > caplen:
            return FT_ERR_LINK_TRUNCATED
        ppp = _be16(f + off + 6)
        off += 8
        if ppp != 0x0021 and ppp != 0x0057:
            return FT_ERR_NOT_IP
        ip_off[0] = off
        return _ip_by_version(f, off, caplen)
    if et == 0x0800 or et == 0x86dd:
        ip_off[0] = off
        return _ip_by_version(f, off, caplen)
    return FT_ERR_NOT_IP


cdef int ft_strip_link(uint32_t linktype, const uint8_t *f, uint32_t caplen,
                       uint32_t *ip_off) noexcept nogil:
    """Find the IP header in a frame of `linktype`; returns a verdict (FT_OK or a
    link-layer verdict) and, on FT_OK, the header's offset in the frame."""
    cdef uint32_t fam
    ip_off[0] = 0
    linktype &= 0xffff                # the upper bits carry FCS-length flags (pcap)
    if linktype == LT_ETHERNET:
        if caplen < 14:
            return FT_ERR_LINK_TRUNCATED
        return _after_ethertype(f, caplen, _be16(f + 12), 14, ip_off)
    if linktype == LT_RAW or linktype == LT_IPV4 or linktype == LT_IPV6 \
            or linktype == LT_RAW_BSD12 or linktype == LT_RAW_BSD14:
        return _ip_by_version(f, 0, caplen)
    if linktype == LT_LINUX_SLL:
        if caplen < 16:
            return FT_ERR_LINK_TRUNCATED
        return _after_ethertype(f, caplen, _be16(f + 14), 16, ip_off)
    if linktype == LT_LINUX_SLL2:
        if caplen < 20:
            return FT_ERR_LINK_TRUNCATED
        return _after_ethertype(f, caplen, _be16(f), 20, ip_off)
    if linktype == LT_NULL or linktype == LT_LOOP:
        if caplen < 4:
            return FT_ERR_LINK_TRUNCATED
        # NULL stores the family in the capturing host's byte order; LOOP in network order
        fam = _rd32(f, True) if linktype == LT_LOOP else _rd32(f, False)
        if linktype == LT_NULL and fam > 0xffff:
            fam = _rd32(f, True)
        ip_off[0] = 4
        if fam == 2 or fam == 10 or fam == 24 or fam == 28 or fam == 30:
            return _ip_by_version(f, 4, caplen)
        return FT_ERR_NOT_IP
    return FT_ERR_UNSUPPORTED_LINK


cdef inline void _set_resolution(ft_iface_t *ifc, uint8_t tsresol) noexcept nogil:
    # if_tsresol: high bit clear -> 10^-v seconds, set -> 2^-v seconds
    cdef uint8_t v = tsresol & 0x7f
    cdef uint64_t p = 1
    cdef int i
    if tsresol & 0x80:
        if v > 62:
            v = 62
        ifc.ts_mul = 1000000000
        ifc.ts_div = (<uint64_t>1) << v
        return
    if v > 18:
        v = 18
    for i in range(v):
        p *= 10
    if v <= 9:
        ifc.ts_mul = 1000000000 // p
        ifc.ts_div = 1
    else:
        ifc.ts_mul = 1
        ifc.ts_div = p // 1000000000


cdef inline int64_t _units_to_ns(const ft_iface_t *ifc, uint64_t units) noexcept nogil:
    """A pcapng timestamp in ns since the epoch, or -1 when it is not in 0..2**63-1 (the
    int64 ts_ns arrays; the tracker refuses other times): a 64-bit units field times
    the resolution, plus if_tsoffset, is any number a corrupt file makes it."""
    cdef uint64_t ns, part
    cdef int64_t t
    if ifc.ts_offset_bad:
        return -1
    if ifc.ts_div == 1:
        if ft_mul_u64(units, ifc.ts_mul, &ns):
            return -1
    else:
        # split so that units * mul cannot overflow for binary resolutions
        if ft_mul_u64(units // ifc.ts_div, ifc.ts_mul, &ns):
            return -1
        part = ((units % ifc.ts_div) * ifc.ts_mul) // ifc.ts_div
        if ft_add_u64(ns, part, &ns):
            return -1
    if ns > <uint64_t>0x7fffffffffffffff:
        return -1
    if ft_add_i64(<int64_t>ns, ifc.ts_offset_ns, &t) or t < 0:
        return -1
    return t


cdef void _read_idb(ft_scan_t *st, const uint8_t *b, uint32_t blen) noexcept nogil:
    """Interface Description Block: link type, snap length, if_tsresol, if_tsoffset."""
    cdef ft_iface_t *ifc
    cdef uint32_t pos = 16, end = blen - 4
    cdef uint16_t code, olen
    cdef uint32_t hi, lo
    if st.niface >= FT_MAX_IFACES:
        st.niface += 1                # counted; packets on it get UNSUPPORTED_LINK
        return
    ifc = &st.iface[st.niface]
    st.niface += 1
    ifc.linktype = _rd16(b + 8, st.swap)
    ifc.snaplen = _rd32(b + 12, st.swap)
    ifc.ts_mul = 1000                 # default resolution: microseconds
    ifc.ts_div = 1
    ifc.ts_offset_ns = 0
    ifc.ts_offset_bad = False
    ifc.fcs_bytes = 0
    while pos + 4 <= end:
        code = _rd16(b + pos, st.swap)
        olen = _rd16(b + pos + 2, st.swap)
        if code == 0 or pos + 4 + olen > end:
            break
        if code == 9 and olen >= 1:
            _set_resolution(ifc, b[pos + 4])
        elif code == 13 and olen >= 1:
            ifc.fcs_bytes = b[pos + 4]     # if_fcslen
        elif code == 14 and olen == 8:
            # if_tsoffset: signed 64-bit seconds, in the section's byte order
            if st.swap:
                hi = _rd32(b + pos + 4, True)
                lo = _rd32(b + pos + 8, True)
            else:
                lo = _rd32(b + pos + 4, False)
                hi = _rd32(b + pos + 8, False)
            ifc.ts_offset_bad = ft_mul_i64(<int64_t>((<uint64_t>hi << 32) | lo), 1000000000,
                                           &ifc.ts_offset_ns)
        pos += 4 + ((olen + 3) & ~3)


cdef inline void _emit(ft_scan_t *st, uint32_t linktype, const uint8_t *buf, Py_ssize_t data,
                       uint32_t caplen, uint32_t wirelen, int64_t ts, uint16_t ifidx,
                       Py_ssize_t k, int64_t *off, int64_t *length, int64_t *ts_out,
                       uint32_t *wire_out, uint8_t *verdict, uint16_t *iface_out,
                       int64_t *frame_out, uint32_t fcs) noexcept nogil:
    cdef uint32_t ip_off = 0, cut
    cdef int v
    # bit 7 of the verdict byte is scratch here: "the capture's snap length cut this
    # frame" (scan() splits it out into its own array)
    cdef uint8_t snapped = 0x80 if caplen < wirelen else 0
    if fcs:
        # the FCS is the frame's last bytes: cut whatever part of it was captured
        cut = fcs - (wirelen - caplen) if wirelen - caplen < fcs and wirelen >= caplen else 0
        caplen = caplen - cut if cut <= caplen else 0
    v = ft_strip_link(linktype, buf + data, caplen, &ip_off)
    st.frames += 1
    if v != FT_OK:
        ip_off = 0 if ip_off > caplen else ip_off
    off[k] = data + ip_off
    length[k] = caplen - ip_off
    ts_out[k] = ts
    wire_out[k] = wirelen
    verdict[k] = <uint8_t>v | snapped
    iface_out[k] = ifidx
    frame_out[k] = <int64_t>st.frames


cdef int ft_scan(ft_scan_t *st, const uint8_t *buf, Py_ssize_t pos, Py_ssize_t end,
                 Py_ssize_t max_pkts, int64_t *off, int64_t *length, int64_t *ts,
                 uint32_t *wirelen, uint8_t *verdict, uint16_t *iface, int64_t *frame,
                 Py_ssize_t *npkts, Py_ssize_t *pos_out, Py_ssize_t *need) noexcept nogil:
    """Walk complete records in buf[pos:end]; fills up to max_pkts packets. On return
    pos_out is the first unconsumed byte and, for SCAN_MORE, need is the size of the
    record that did not fit (so the caller can grow its buffer)."""
    cdef Py_ssize_t k = 0
    cdef uint32_t caplen, wire, btype, blen, ifidx, magic
    cdef uint64_t units
    cdef int64_t t
    need[0] = 0
    while True:
        if k == max_pkts:
            npkts[0] = k
            pos_out[0] = pos
            return SCAN_FULL
        if st.format == FT_FMT_PCAP:
            if end - pos < 16:
                need[0] = 16
                break
            caplen = _rd32(buf + pos + 8, st.swap)
            if caplen > FT_MAX_RECORD:
                npkts[0] = k
                pos_out[0] = pos
                need[0] = 8                   # offset of the lying field within the record
                return SCAN_CORRUPT
            if end - pos < 16 + <Py_ssize_t>caplen:
                need[0] = 16 + caplen
                break
            wire = _rd32(buf + pos + 12, st.swap)
            t = <int64_t>_rd32(buf + pos, st.swap) * 1000000000
            t += <int64_t>_rd32(buf + pos + 4, st.swap) * (1 if st.nano else 1000)
            _emit(st, st.iface[0].linktype, buf, pos + 16, caplen, wire, t, 0, k,
                  off, length, ts, wirelen, verdict, iface, frame, st.iface[0].fcs_bytes)
            k += 1
            pos += 16 + caplen
            continue
        # pcapng: every block is type, total length, body, total length again
        if end - pos < 12:
            need[0] = 12
            break
        btype = _rd32(buf + pos, st.swap)
        if btype == 0x0A0D0D0A:
            # Section Header Block: its byte-order magic decides how to read the rest
            # (including its own length), and it forgets all interfaces
            magic = _rd32(buf + pos + 8, False)
            if magic == 0x1A2B3C4D:
                st.swap = False
            elif magic == 0x4D3C2B1A:
                st.swap = True
            else:
                npkts[0] = k
                pos_out[0] = pos
                need[0] = 8
                return SCAN_CORRUPT
            st.niface = 0
        blen = _rd32(buf + pos + 4, st.swap)
        if blen < 12 or blen & 3 or blen > FT_MAX_RECORD:
            npkts[0] = k
            pos_out[0] = pos
            need[0] = 4
            return SCAN_CORRUPT
        if end - pos < <Py_ssize_t>blen:
            need[0] = blen
            break
        if _rd32(buf + pos + blen - 4, st.swap) != blen:
            npkts[0] = k
            pos_out[0] = pos
            need[0] = blen - 4
            return SCAN_CORRUPT
        if btype == 1 and blen >= 20:
            _read_idb(st, buf + pos, blen)
        elif (btype == 6 and blen >= 32) or (btype == 2 and blen >= 32):
            # Enhanced Packet Block (6) and the obsolete Packet Block (2)
            if btype == 6:
                ifidx = _rd32(buf + pos + 8, st.swap)
            else:
                ifidx = _rd16(buf + pos + 8, st.swap)
            units = (<uint64_t>_rd32(buf + pos + 12, st.swap) << 32) | _rd32(buf + pos + 16, st.swap)
            caplen = _rd32(buf + pos + 20, st.swap)
            wire = _rd32(buf + pos + 24, st.swap)
            if caplen > blen - 32:
                npkts[0] = k
                pos_out[0] = pos
                need[0] = 20
                return SCAN_CORRUPT
            if ifidx < st.niface and ifidx < FT_MAX_IFACES:
                t = _units_to_ns(&st.iface[ifidx], units)
                if t < 0:
                    st.bad_timestamp += 1
                    t = 0
                _emit(st, st.iface[ifidx].linktype, buf, pos + 28, caplen, wire,
                      t, <uint16_t>ifidx, k,
                      off, length, ts, wirelen, verdict, iface, frame, st.iface[ifidx].fcs_bytes)
            else:
                st.bad_interface += 1
                _emit(st, 0xffff, buf, pos + 28, caplen, wire, 0, 0xffff, k,
                      off, length, ts, wirelen, verdict, iface, frame, 0)
            k += 1
        elif btype == 3 and blen >= 16:
            # Simple Packet Block: interface 0, no timestamp, captured = min(len, snaplen, room)
            wire = _rd32(buf + pos + 8, st.swap)
            caplen = blen - 16
            if wire < caplen:
                caplen = wire
            if st.niface > 0:
                if st.iface[0].snaplen and caplen > st.iface[0].snaplen:
                    caplen = st.iface[0].snaplen
                _emit(st, st.iface[0].linktype, buf, pos + 12, caplen, wire, 0, 0, k,
                      off, length, ts, wirelen, verdict, iface, frame, st.iface[0].fcs_bytes)
            else:
                st.bad_interface += 1
                _emit(st, 0xffff, buf, pos + 12, caplen, wire, 0, 0xffff, k,
                      off, length, ts, wirelen, verdict, iface, frame, 0)
            k += 1
        elif btype != 0x0A0D0D0A and btype != 1:
            st.blocks_skipped += 1
        pos += blen
    npkts[0] = k
    pos_out[0] = pos
    return SCAN_MORE


cdef class CaptureScanner:
    """The C state of one capture file: format, byte order, interfaces.

    `fasttcp.read_pcap` drives it; use that. ``scan(buf, pos, end, max_pkts)`` walks
    complete records of ``buf[pos:end]`` and returns ``(status, npkts, pos, need,
    arrays)`` where arrays = (offsets, lengths, ts_ns, wire_lengths, verdicts,
    interfaces, frames, snapped), each with npkts rows.
    """
    cdef ft_scan_t st

    def __cinit__(self):
        memset(&self.st, 0, sizeof(ft_scan_t))

    def start_pcap(self, bint swap, bint nano, uint32_t linktype, uint32_t snaplen):
        """Configure for a classic pcap file whose 24-byte header was already read."""
        self.st.format = FT_FMT_PCAP
        self.st.swap = swap
        self.st.nano = nano
        self.st.niface = 1
        self.st.iface[0].linktype = linktype
        self.st.iface[0].snaplen = snaplen
        # pcap link-type field: bit 26 says the FCS length (16-bit words) is in bits 28..31
        self.st.iface[0].fcs_bytes = ((linktype >> 28) & 0xf) * 2 if linktype & (1 << 26) else 0

    def start_pcapng(self):
        """Configure for pcapng; the first block must be a Section Header Block."""
        self.st.format = FT_FMT_PCAPNG

    @property
    def frames(self) -> int:
        return self.st.frames

    @property
    def big_endian(self) -> bool:
        """The current file (pcap) or section (pcapng) is big-endian."""
        return bool(self.st.swap)

    @property
    def blocks_skipped(self) -> int:
        return self.st.blocks_skipped

    @property
    def bad_interface(self) -> int:
        return self.st.bad_interface

    @property
    def bad_timestamp(self) -> int:
        """Packets whose timestamp was not a time in 0..2**63-1 ns (given ts_ns 0)."""
        return self.st.bad_timestamp

    def linktypes(self) -> list:
        """Link type of each interface described so far (pcapng: of the current section)."""
        cdef uint32_t i, n = min(self.st.niface, FT_MAX_IFACES)
        return [int(self.st.iface[i].linktype) for i in range(n)]

    def scan(self, buf, Py_ssize_t pos, Py_ssize_t end, Py_ssize_t max_pkts):
        cdef const uint8_t[::1] b = buf
        if self.st.format == 0:
            raise UsageError("scanner not started (start_pcap / start_pcapng)")
        if pos < 0 or end > b.shape[0] or pos > end:
            raise UsageError(f"bad scan window {pos}:{end} of {b.shape[0]} bytes")
        if not 1 <= max_pkts <= MAX_PACKETS:
            raise UsageError(f"max_pkts must be in 1..{MAX_PACKETS}, got {max_pkts}")
        off = np.empty(max_pkts, np.int64)
        ln = np.empty(max_pkts, np.int64)
        ts = np.empty(max_pkts, np.int64)
        wl = np.empty(max_pkts, np.uint32)
        vd = np.empty(max_pkts, np.uint8)
        ifc = np.empty(max_pkts, np.uint16)
        fr = np.empty(max_pkts, np.int64)
        cdef int64_t[::1] o = off, l = ln, t = ts, f = fr
        cdef uint32_t[::1] w = wl
        cdef uint8_t[::1] v = vd
        cdef uint16_t[::1] i = ifc
        cdef Py_ssize_t n = 0, newpos = pos, need = 0
        cdef int rc
        cdef const uint8_t *p = &b[0] if b.shape[0] else NULL
        if p == NULL:
            return SCAN_MORE, 0, pos, 0, tuple(a[:0] for a in (off, ln, ts, wl, vd, ifc, fr, vd.astype(bool)))
        with nogil:
            rc = ft_scan(&self.st, p, pos, end, max_pkts, &o[0], &l[0], &t[0], &w[0], &v[0],
                         &i[0], &f[0], &n, &newpos, &need)
        vd = vd[:n]
        snapped = (vd & 0x80) != 0
        vd &= 0x7f
        return rc, n, newpos, need, (off[:n], ln[:n], ts[:n], wl[:n], vd, ifc[:n], fr[:n], snapped)


def strip_link(linktype, frame) -> tuple:
    """Find the IP packet in one link-layer frame: ``(verdict, ip_offset)``.

    `verdict` is a `fasttcp.Verdict` code: OK, NOT_IP (e.g. ARP), UNSUPPORTED_LINK or
    LINK_TRUNCATED. Decodes Ethernet (any number up to 8 of 802.1Q/802.1ad tags, MPLS
    label stacks, PPPoE), raw IP (101, 228, 229, 12, 14), Linux cooked SLL (113) and
    SLL2 (276), BSD loopback NULL (0) and LOOP (108).

    Raises UsageError for a linktype outside 0..2**32-1 or a frame that is not a
    contiguous bytes-like object.
    """
    cdef const uint8_t[::1] f
    cdef uint32_t ip_off = 0
    cdef uint8_t empty = 0
    cdef int v
    if isinstance(linktype, bool) or not isinstance(linktype, int) or not 0 <= linktype <= 0xffffffff:
        raise UsageError(f"linktype must be a 32-bit link-type value, got {linktype!r}")
    try:
        f = memoryview(frame).cast("B")
    except (TypeError, ValueError, BufferError) as exc:
        raise UsageError(f"frame must be a contiguous bytes-like object: {exc}") from None
    if f.shape[0] > 0xffffffff:
        raise UsageError(f"a frame of {f.shape[0]} bytes is larger than any capture record")
    v = ft_strip_link(<uint32_t>linktype, &f[0] if f.shape[0] else &empty, <uint32_t>f.shape[0], &ip_off)
    return v, ip_off
