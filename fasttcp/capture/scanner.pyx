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
from libc.stdlib cimport calloc, free, realloc
from libc.string cimport memset

from fasttcp.wire.defs cimport (FT_OK, FT_ERR_NOT_IP, FT_ERR_UNSUPPORTED_LINK,
                                FT_ERR_LINK_TRUNCATED)
from fasttcp.wire.rss cimport FT_RSS_NONE, RssShards, ft_rss_key_t, ft_rss_packet_hash, ft_rss_shard

cimport numpy as cnp
import numpy as np
from fasttcp.errors import UsageError

cnp.import_array()

__all__ = ["CaptureScanner", "scan_arrays", "strip_link", "FORMAT_PCAP", "FORMAT_PCAPNG", "MAX_RECORD",
           "MAX_PACKETS"]

cdef enum:
    FT_FMT_PCAP = 1
    FT_FMT_PCAPNG = 2
    # interfaces a pcapng section may describe: its packets' interface column is uint16,
    # and 0xffff says "none" (IFACE_UNKNOWN). Their table grows as they are described
    # (48 bytes each: 3 MB at most), from a first few
    FT_MAX_IFACES = 0xffff
    FT_FIRST_IFACES = 16
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
    SCAN_CORRUPT = 2                  # a length field cannot be right (need says which)
    _SCAN_NEXT = -1                   # between records: a block without a packet was read
    _SCAN_PACKET = -2                 # between records: a packet record was read

# classic pcap record header (libpcap's pcap_sf_pkthdr)
cdef enum:
    PCAP_TS_SEC = 0
    PCAP_TS_FRAC = 4                  # microseconds, or nanoseconds (the nano magic)
    PCAP_CAPLEN = 8
    PCAP_WIRELEN = 12
    PCAP_REC_HDR = 16

# pcapng (draft-ietf-opsawg-pcapng): block types, and field offsets from a block's start
cdef enum:
    PCAPNG_SHB = 0x0A0D0D0A           # Section Header Block
    PCAPNG_IDB = 1                    # Interface Description Block
    PCAPNG_PB = 2                     # Packet Block (obsolete; an EPB with a 16-bit interface)
    PCAPNG_SPB = 3                    # Simple Packet Block
    PCAPNG_EPB = 6                    # Enhanced Packet Block
    PCAPNG_MAGIC = 0x1A2B3C4D         # SHB byte-order magic as read in the file's order
    PCAPNG_MAGIC_SWAPPED = 0x4D3C2B1A
    BLK_TYPE = 0                      # every block: type, total length, body, total length
    BLK_LEN = 4
    BLK_TRAILER = 4                   # the repeated total length
    BLK_MIN = 12                      # a block with an empty body
    SHB_MAGIC = 8
    IDB_LINKTYPE = 8
    IDB_SNAPLEN = 12
    IDB_OPTIONS = 16
    IDB_MIN = 20
    EPB_IFACE = 8                     # (PB: 16 bits, then a drops count)
    EPB_TS_HIGH = 12
    EPB_TS_LOW = 16
    EPB_CAPLEN = 20
    EPB_WIRELEN = 24
    EPB_DATA = 28
    EPB_MIN = 32
    SPB_WIRELEN = 8
    SPB_DATA = 12
    SPB_MIN = 16
    # IDB option codes
    OPT_ENDOFOPT = 0
    IF_TSRESOL = 9
    IF_FCSLEN = 13
    IF_TSOFFSET = 14
    # a packet on an interface that was never described
    IFACE_UNKNOWN = 0xffff            # its interface column
    LT_UNKNOWN = 0xffff               # its link type (_NO_IFACE)

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

    /* a read prefetch into every cache level (PREFETCHT0 on x86): a hint, never a fault */
    #define ft_scan_prefetch(p) __builtin_prefetch((const void *)(p), 0, 3)
    """
    bint ft_mul_u64(uint64_t a, uint64_t b, uint64_t *r) nogil
    bint ft_add_u64(uint64_t a, uint64_t b, uint64_t *r) nogil
    bint ft_mul_i64(int64_t a, int64_t b, int64_t *r) nogil
    bint ft_add_i64(int64_t a, int64_t b, int64_t *r) nogil
    void ft_scan_prefetch(const uint8_t *p) nogil


ctypedef struct ft_scan_t:
    int format
    bint swap                         # the current section/file is in the other byte order
    bint nano                         # pcap: nanosecond timestamps
    uint32_t niface
    uint64_t frames                   # records with packets seen so far (frame numbers are 1-based)
    uint64_t blocks_skipped           # pcapng blocks of kinds we do not need
    # packets naming an interface that was never described (or one past the
    # FT_MAX_IFACES a section may have)
    uint64_t bad_interface
    uint64_t bad_timestamp            # packets whose time is not in 0..2**63-1 ns (given as 0)
    uint32_t iface_cap                # entries allocated at `iface`
    ft_iface_t *iface                 # the interfaces described (malloc'd; FT_FIRST_IFACES at first)


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
    cdef int _i
    if tsresol & 0x80:
        if v > 62:
            v = 62
        ifc.ts_mul = 1000000000
        ifc.ts_div = (<uint64_t>1) << v
        return
    if v > 18:
        v = 18
    for _i in range(v):
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
    cdef uint32_t pos = IDB_OPTIONS, end = blen - BLK_TRAILER
    cdef uint16_t code, olen
    cdef uint32_t hi, lo
    cdef ft_iface_t *grown
    cdef uint32_t cap
    if st.niface >= st.iface_cap:
        grown = NULL
        # (grown only from a full table: once an interface was left out, the ones after
        # it are too -- a later growth would leave its entry unwritten)
        if st.niface == st.iface_cap and st.iface_cap < FT_MAX_IFACES:
            cap = st.iface_cap * 2 if st.iface_cap * 2 < FT_MAX_IFACES else FT_MAX_IFACES
            grown = <ft_iface_t *>realloc(st.iface, cap * sizeof(ft_iface_t))
        if grown == NULL:
            # past FT_MAX_IFACES (or no memory for more): counted; packets naming it
            # are counted in bad_interface and get UNSUPPORTED_LINK
            if st.niface < 0xffffffffu:
                st.niface += 1
            return
        st.iface = grown
        st.iface_cap = cap
    ifc = &st.iface[st.niface]
    st.niface += 1
    ifc.linktype = _rd16(b + IDB_LINKTYPE, st.swap)
    ifc.snaplen = _rd32(b + IDB_SNAPLEN, st.swap)
    ifc.ts_mul = 1000                 # default resolution: microseconds
    ifc.ts_div = 1
    ifc.ts_offset_ns = 0
    ifc.ts_offset_bad = False
    ifc.fcs_bytes = 0
    # options: code (2), length (2), value padded to 32 bits
    while pos + 4 <= end:
        code = _rd16(b + pos, st.swap)
        olen = _rd16(b + pos + 2, st.swap)
        if code == OPT_ENDOFOPT or pos + 4 + olen > end:
            break
        if code == IF_TSRESOL and olen >= 1:
            _set_resolution(ifc, b[pos + 4])
        elif code == IF_FCSLEN and olen >= 1:
            ifc.fcs_bytes = b[pos + 4]
        elif code == IF_TSOFFSET and olen == 8:
            # signed 64-bit seconds, in the section's byte order
            if st.swap:
                hi = _rd32(b + pos + 4, True)
                lo = _rd32(b + pos + 8, True)
            else:
                lo = _rd32(b + pos + 4, False)
                hi = _rd32(b + pos + 8, False)
            ifc.ts_offset_bad = ft_mul_i64(<int64_t>((<uint64_t>hi << 32) | lo), 1000000000,
                                           &ifc.ts_offset_ns)
        pos += 4 + ((olen + 3) & ~3)


# Where ft_scan writes a packet: one row of the caller's arrays.
ctypedef struct ft_scan_out_t:
    int64_t *off                      # IP header offset in the buffer
    int64_t *length                   # captured bytes from there
    int64_t *ts                       # nanoseconds
    uint32_t *wirelen
    uint8_t *verdict                  # link verdict; bit 7: cut by the snap length
    uint16_t *iface
    int64_t *frame                    # 1-based frame number in the file
    Py_ssize_t max_pkts               # rows the arrays have
    uint16_t *shard                   # each packet's shard (NULL: not sharded here)
    const ft_rss_key_t *rss           # ... by this key's hash
    const uint16_t *reta              # ... through this indirection table
    uint32_t reta_mask


# what a packet naming an interface that was never described is captured on: a link
# type nothing decodes (its packets get UNSUPPORTED_LINK), no FCS
cdef ft_iface_t _NO_IFACE
memset(&_NO_IFACE, 0, sizeof(ft_iface_t))
_NO_IFACE.linktype = LT_UNKNOWN


# A packet record's frame, as the record describes it.
ctypedef struct _frame_t:
    const ft_iface_t *ifc             # the interface it was captured on (&_NO_IFACE: unknown)
    Py_ssize_t data                   # its first byte in the buffer
    uint32_t caplen
    uint32_t wirelen
    int64_t ts                        # nanoseconds
    uint16_t ifidx                    # its interface column


cdef inline void _emit(ft_scan_t *st, const ft_scan_out_t *out, Py_ssize_t k, const uint8_t *buf,
                       const _frame_t *fr) noexcept nogil:
    """Row k: where the frame's IP packet is, its verdict and its numbers."""
    cdef uint32_t ip_off = 0, cut, h
    cdef uint32_t caplen = fr.caplen, wirelen = fr.wirelen, fcs = fr.ifc.fcs_bytes
    cdef int v
    # bit 7 of the verdict byte is scratch here: "the capture's snap length cut this
    # frame" (scan() splits it out into its own array)
    cdef uint8_t snapped = 0x80 if caplen < wirelen else 0
    if fcs:
        # the FCS is the frame's last bytes: cut whatever part of it was captured
        cut = fcs - (wirelen - caplen) if wirelen - caplen < fcs and wirelen >= caplen else 0
        caplen = caplen - cut if cut <= caplen else 0
    v = ft_strip_link(fr.ifc.linktype, buf + fr.data, caplen, &ip_off)
    st.frames += 1
    if v != FT_OK:
        ip_off = 0 if ip_off > caplen else ip_off
    out.off[k] = fr.data + ip_off
    out.length[k] = caplen - ip_off
    out.ts[k] = fr.ts
    out.wirelen[k] = wirelen
    out.verdict[k] = <uint8_t>v | snapped
    out.iface[k] = fr.ifidx
    out.frame[k] = <int64_t>st.frames
    if out.shard != NULL:
        # as shard_of_batch computes it, while the headers are in the cache
        out.shard[k] = 0
        if v == FT_OK and ft_rss_packet_hash(out.rss, buf + fr.data + ip_off, caplen - ip_off, &h) != FT_RSS_NONE:
            out.shard[k] = ft_rss_shard(h, out.reta, out.reta_mask)


cdef inline const ft_iface_t *_iface(ft_scan_t *st, uint32_t ifidx) noexcept nogil:
    """The interface a packet names, or &_NO_IFACE (counted) if it was never described."""
    if ifidx < st.niface and ifidx < st.iface_cap:
        return &st.iface[ifidx]
    st.bad_interface += 1
    return &_NO_IFACE


cdef inline int _corrupt(Py_ssize_t *need, uint32_t field) noexcept nogil:
    """A length that cannot be right: the scan stops at the record, and `need` says
    which field lied (its offset within the record) for the error message."""
    need[0] = field
    return SCAN_CORRUPT


cdef inline int _pcap_record(ft_scan_t *st, const uint8_t *buf, Py_ssize_t *pos, Py_ssize_t end,
                             _frame_t *fr, Py_ssize_t *need) noexcept nogil:
    """One classic pcap record at pos[0]: its frame and pos past it (_SCAN_PACKET), or
    SCAN_MORE (`need` bytes) / SCAN_CORRUPT with pos left at the record."""
    cdef const uint8_t *r = buf + pos[0]
    cdef uint32_t caplen
    if end - pos[0] < PCAP_REC_HDR:
        need[0] = PCAP_REC_HDR
        return SCAN_MORE
    caplen = _rd32(r + PCAP_CAPLEN, st.swap)
    if caplen > FT_MAX_RECORD:
        return _corrupt(need, PCAP_CAPLEN)
    if end - pos[0] < PCAP_REC_HDR + <Py_ssize_t>caplen:
        need[0] = PCAP_REC_HDR + caplen
        return SCAN_MORE
    fr.ifc = &st.iface[0]
    fr.ifidx = 0
    fr.data = pos[0] + PCAP_REC_HDR
    fr.caplen = caplen
    fr.wirelen = _rd32(r + PCAP_WIRELEN, st.swap)
    fr.ts = <int64_t>_rd32(r + PCAP_TS_SEC, st.swap) * 1000000000
    fr.ts += <int64_t>_rd32(r + PCAP_TS_FRAC, st.swap) * (1 if st.nano else 1000)
    pos[0] += PCAP_REC_HDR + caplen
    return _SCAN_PACKET


cdef inline int _pcapng_packet(ft_scan_t *st, const uint8_t *b, Py_ssize_t pos, uint32_t btype,
                               uint32_t blen, _frame_t *fr, Py_ssize_t *need) noexcept nogil:
    """An Enhanced Packet Block or the obsolete Packet Block (same layout, a 16-bit
    interface id) at b = buf + pos: its frame, or SCAN_CORRUPT if its captured length
    overruns it."""
    cdef uint32_t ifidx
    cdef uint64_t units
    if btype == PCAPNG_EPB:
        ifidx = _rd32(b + EPB_IFACE, st.swap)
    else:
        ifidx = _rd16(b + EPB_IFACE, st.swap)
    units = (<uint64_t>_rd32(b + EPB_TS_HIGH, st.swap) << 32) | _rd32(b + EPB_TS_LOW, st.swap)
    fr.caplen = _rd32(b + EPB_CAPLEN, st.swap)
    fr.wirelen = _rd32(b + EPB_WIRELEN, st.swap)
    if fr.caplen > blen - EPB_MIN:
        return _corrupt(need, EPB_CAPLEN)
    fr.data = pos + EPB_DATA
    fr.ifc = _iface(st, ifidx)
    if fr.ifc != &_NO_IFACE:
        fr.ifidx = <uint16_t>ifidx
        fr.ts = _units_to_ns(fr.ifc, units)
        if fr.ts < 0:
            # not in 0..2**63-1 ns: given as 0 and counted, never a wrapped negative time
            st.bad_timestamp += 1
            fr.ts = 0
    else:
        fr.ifidx = IFACE_UNKNOWN
        fr.ts = 0
    return _SCAN_PACKET


cdef inline int _pcapng_simple(ft_scan_t *st, const uint8_t *b, Py_ssize_t pos, uint32_t blen,
                               _frame_t *fr) noexcept nogil:
    """A Simple Packet Block at b = buf + pos: interface 0, no timestamp, captured =
    min(original length, snap length, the block's room)."""
    fr.wirelen = _rd32(b + SPB_WIRELEN, st.swap)
    fr.caplen = blen - SPB_MIN
    if fr.wirelen < fr.caplen:
        fr.caplen = fr.wirelen
    fr.ifc = _iface(st, 0)
    if fr.ifc.snaplen and fr.caplen > fr.ifc.snaplen:
        fr.caplen = fr.ifc.snaplen
    fr.ifidx = 0 if fr.ifc != &_NO_IFACE else IFACE_UNKNOWN
    fr.data = pos + SPB_DATA
    fr.ts = 0
    return _SCAN_PACKET


cdef inline int _pcapng_block(ft_scan_t *st, const uint8_t *buf, Py_ssize_t *pos, Py_ssize_t end,
                              _frame_t *fr, Py_ssize_t *need) noexcept nogil:
    """One pcapng block at pos[0] -- type, total length, body, total length again --
    and pos past it: a packet block's frame (_SCAN_PACKET), or a section, interface or
    skipped block read (_SCAN_NEXT); else SCAN_MORE (`need` bytes) / SCAN_CORRUPT with
    pos left at the block."""
    cdef const uint8_t *b = buf + pos[0]
    cdef uint32_t btype, blen, magic
    cdef int rc = _SCAN_NEXT
    if end - pos[0] < BLK_MIN:
        need[0] = BLK_MIN
        return SCAN_MORE
    btype = _rd32(b + BLK_TYPE, st.swap)
    if btype == PCAPNG_SHB:
        # its byte-order magic decides how to read the rest (its own length included),
        # and a new section forgets all interfaces
        magic = _rd32(b + SHB_MAGIC, False)
        if magic == PCAPNG_MAGIC:
            st.swap = False
        elif magic == PCAPNG_MAGIC_SWAPPED:
            st.swap = True
        else:
            return _corrupt(need, SHB_MAGIC)
        st.niface = 0
    blen = _rd32(b + BLK_LEN, st.swap)
    if blen < BLK_MIN or blen & 3 or blen > FT_MAX_RECORD:
        return _corrupt(need, BLK_LEN)
    if end - pos[0] < <Py_ssize_t>blen:
        need[0] = blen
        return SCAN_MORE
    if _rd32(b + blen - BLK_TRAILER, st.swap) != blen:
        return _corrupt(need, blen - BLK_TRAILER)
    if btype == PCAPNG_IDB and blen >= IDB_MIN:
        _read_idb(st, b, blen)
    elif (btype == PCAPNG_EPB or btype == PCAPNG_PB) and blen >= EPB_MIN:
        rc = _pcapng_packet(st, b, pos[0], btype, blen, fr, need)
        if rc == SCAN_CORRUPT:
            return rc
    elif btype == PCAPNG_SPB and blen >= SPB_MIN:
        rc = _pcapng_simple(st, b, pos[0], blen, fr)
    elif btype != PCAPNG_SHB and btype != PCAPNG_IDB:
        st.blocks_skipped += 1
    pos[0] += blen
    return rc


cdef enum:
    # How far ahead of the record it reads the scan prefetches the buffer, in bytes: one
    # page. The hardware's stream prefetchers stop at each 4 KiB page boundary (Intel's
    # L2 streamer tracks a stream within its page), so the first lines of every page
    # are misses they do not hide -- and with `analyze --workers N` those lines were
    # last written by another core, whose read() filled the buffer. Each record then
    # finds its header lines on their way. Measured on a Xeon (2 MiB L2), alternating
    # processes against no prefetch: analyze, 2 workers, 1.03-1.06x on both bench
    # captures; 1 worker 1.04x on short connections, 1.00x on the 1 GiB capture;
    # 16 KiB ahead lost 6% on the 1 GiB capture.
    SCAN_PREFETCH = 4096

cdef int ft_scan(ft_scan_t *st, const uint8_t *buf, Py_ssize_t pos, Py_ssize_t end,
                 const ft_scan_out_t *rows, Py_ssize_t *npkts, Py_ssize_t *pos_out,
                 Py_ssize_t *need) noexcept nogil:
    """Walk complete records in buf[pos:end], filling up to rows.max_pkts packet rows.
    On return npkts is the rows filled, pos_out the first unconsumed byte and, for
    SCAN_MORE, need the size of the record that did not fit (so the caller can grow
    its buffer); for SCAN_CORRUPT pos_out is the record's offset and need the lying
    field's offset within it."""
    cdef ft_scan_out_t out = rows[0]  # a local copy: its pointers stay in registers
    cdef _frame_t fr
    cdef Py_ssize_t k = 0
    cdef Py_ssize_t ahead = pos       # the next line to prefetch (see SCAN_PREFETCH)
    cdef int rc
    need[0] = 0
    while True:
        if k == out.max_pkts:
            rc = SCAN_FULL
            break
        if ahead < pos:
            ahead = pos               # a record longer than the distance: restart at the next
        while ahead < end and ahead - pos < SCAN_PREFETCH:
            ft_scan_prefetch(buf + ahead)
            ahead += 64
        if st.format == FT_FMT_PCAP:
            rc = _pcap_record(st, buf, &pos, end, &fr, need)
        else:
            rc = _pcapng_block(st, buf, &pos, end, &fr, need)
        if rc == _SCAN_PACKET:
            _emit(st, &out, k, buf, &fr)       # the one place rows are written
            k += 1
        elif rc != _SCAN_NEXT:
            break
    npkts[0] = k
    pos_out[0] = pos
    return rc


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
        self.st.iface = <ft_iface_t *>calloc(FT_FIRST_IFACES, sizeof(ft_iface_t))
        if self.st.iface == NULL:
            raise MemoryError()
        self.st.iface_cap = FT_FIRST_IFACES

    def __dealloc__(self):
        free(self.st.iface)
        self.st.iface = NULL
        self.st.iface_cap = 0

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
        cdef uint32_t i, n = min(self.st.niface, self.st.iface_cap)
        return [int(self.st.iface[i].linktype) for i in range(n)]

    def scan(self, buf, Py_ssize_t pos, Py_ssize_t end, Py_ssize_t max_pkts, out=None, shards=None,
             shard_out=None):
        """Scan the records of ``buf[pos:end]``, at most `max_pkts` packets: (status, n,
        new pos, bytes the next record needs, the batch's arrays -- offsets, lengths,
        ts_ns, wire lengths, verdicts, interfaces, frames, snapped -- each n long).

        `out`: where to write the first seven, as `scan_arrays` makes them (reused from
        one scan to another: the arrays returned are views of them); None for new
        arrays. `shards` (a `fasttcp.wire.rss.RssShards`) with `shard_out` (a writable
        contiguous uint16 array of at least `max_pkts`): also write each packet's shard
        there, what `shard_of_batch` gives the batch. UsageError for a bad window, count,
        `out`, `shards` or `shard_out`."""
        cdef const uint8_t[::1] b = buf
        if self.st.format == 0:
            raise UsageError("scanner not started (start_pcap / start_pcapng)")
        if pos < 0 or end > b.shape[0] or pos > end:
            raise UsageError(f"bad scan window {pos}:{end} of {b.shape[0]} bytes")
        if not 1 <= max_pkts <= MAX_PACKETS:
            raise UsageError(f"max_pkts must be in 1..{MAX_PACKETS}, got {max_pkts}")
        if out is None:
            off, ln, ts, wl, vd, ifc, fr = scan_arrays(max_pkts)
        else:
            off, ln, ts, wl, vd, ifc, fr = _checked_out(out, max_pkts, b)
        cdef RssShards spec = None
        cdef uint16_t[::1] sh
        if shards is not None or shard_out is not None:
            if not isinstance(shards, RssShards):
                raise UsageError(f"shards must be a fasttcp.wire.rss.RssShards (with shard_out), got "
                                 f"{type(shards).__name__}")
            _checked_shard_out(shard_out, max_pkts, b, (off, ln, ts, wl, vd, ifc, fr))
            spec = <RssShards>shards
            if spec.k == NULL or spec.reta_p == NULL:
                raise UsageError("shards: an RssShards that was never initialised (RssShards.__new__)")
            sh = shard_out
        cdef int64_t[::1] o = off, l = ln, t = ts, f = fr
        cdef uint32_t[::1] w = wl
        cdef uint8_t[::1] v = vd
        cdef uint16_t[::1] i = ifc
        cdef Py_ssize_t n = 0, newpos = pos, need = 0
        cdef int rc
        cdef ft_scan_out_t rows
        cdef const uint8_t *p = &b[0] if b.shape[0] else NULL
        if p == NULL:
            return SCAN_MORE, 0, pos, 0, tuple(a[:0] for a in (off, ln, ts, wl, vd, ifc, fr, vd.astype(bool)))
        rows = ft_scan_out_t(&o[0], &l[0], &t[0], &w[0], &v[0], &i[0], &f[0], max_pkts, NULL, NULL, NULL, 0)
        if spec is not None:
            rows.shard = &sh[0]
            rows.rss = spec.k
            rows.reta = spec.reta_p
            rows.reta_mask = spec.mask
        with nogil:
            rc = ft_scan(&self.st, p, pos, end, &rows, &n, &newpos, &need)
        vd = vd[:n]
        snapped = (vd & 0x80) != 0
        vd &= 0x7f
        return rc, n, newpos, need, (off[:n], ln[:n], ts[:n], wl[:n], vd, ifc[:n], fr[:n], snapped)


_SCAN_DTYPES = (np.dtype(np.int64), np.dtype(np.int64), np.dtype(np.int64), np.dtype(np.uint32),
                np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.int64))


def scan_arrays(max_pkts) -> tuple:
    """New arrays for `CaptureScanner.scan` to write `max_pkts` packets into (its `out`):
    offsets, lengths, ts_ns (int64), wire lengths (uint32), verdicts (uint8),
    interfaces (uint16), frames (int64). UsageError for a count outside 1..MAX_PACKETS."""
    if isinstance(max_pkts, bool) or not isinstance(max_pkts, int) or not 1 <= max_pkts <= MAX_PACKETS:
        raise UsageError(f"max_pkts must be an int in 1..{MAX_PACKETS}, got {max_pkts!r}")
    return tuple(np.empty(max_pkts, dt) for dt in _SCAN_DTYPES)


cdef inline Py_ssize_t _rows_of(a):
    """The rows of a 1-D numpy array as numpy's C struct holds them (-1 if it is not
    1-D): `ndim` and `shape` read from Python are whatever a subclass of ndarray makes
    them say, and the scan writes max_pkts rows (dtype, contiguity and writability are
    the buffer's own: the typed views of `scan` refuse anything else)."""
    return cnp.PyArray_DIM(a, 0) if cnp.PyArray_NDIM(a) == 1 else -1


cdef _checked_shard_out(shard_out, Py_ssize_t max_pkts, const uint8_t[::1] buf, tuple out):
    """`shard_out` must be a writable contiguous uint16 array `scan` may write `max_pkts`
    shards into, sharing no memory with the buffer scanned or the other arrays."""
    if not isinstance(shard_out, np.ndarray) or shard_out.dtype != np.uint16 or _rows_of(shard_out) < 0 \
            or not shard_out.flags.c_contiguous or not shard_out.flags.writeable:
        got = f"dtype {shard_out.dtype}, {shard_out.ndim}-D, contiguous {shard_out.flags.c_contiguous}, " \
              f"writable {shard_out.flags.writeable}" if isinstance(shard_out, np.ndarray) \
            else type(shard_out).__name__
        raise UsageError(f"shard_out must be a writable 1-D contiguous uint16 array, got {got}")
    if _rows_of(shard_out) < max_pkts:
        raise UsageError(f"shard_out holds {_rows_of(shard_out)} packets, fewer than max_pkts ({max_pkts})")
    _check_disjoint([*out, shard_out], [f"out[{k}]" for k in range(len(out))] + ["shard_out"], buf)


cdef _check_disjoint(list arrays, list names, const uint8_t[::1] buf):
    """UsageError naming the first array whose bytes overlap the buffer scanned or an
    array before it (byte ranges [start, end), compared exactly)."""
    cdef size_t bstart = <size_t>&buf[0] if buf.shape[0] else 0
    # (the arrays were checked to be numpy arrays: their addresses read in C, where
    # __array_interface__ built a dict of strings for each, at every call -- 11% of
    # the sharded scan of the short-connection bench capture, 49 batches)
    spans = [(<size_t>cnp.PyArray_DATA(a), <size_t>cnp.PyArray_DATA(a) + <size_t>cnp.PyArray_NBYTES(a))
             for a in arrays]
    for k, (lo, hi) in enumerate(spans):
        if buf.shape[0] and lo < bstart + <size_t>buf.shape[0] and bstart < hi:
            raise UsageError(f"{names[k]} overlaps the buffer scanned")
        for j in range(k):
            if lo < spans[j][1] and spans[j][0] < hi:
                raise UsageError(f"{names[k]} overlaps {names[j]}")


cdef tuple _checked_out(out, Py_ssize_t max_pkts, const uint8_t[::1] buf):
    """`out` if it is seven arrays `scan` may write `max_pkts` packets into: the dtypes
    of `scan_arrays`, one-dimensional, contiguous, writable, long enough, and sharing no
    memory with each other or with the buffer scanned (the scan would overwrite the
    records it reads)."""
    if not isinstance(out, tuple) or len(out) != 7:
        raise UsageError(f"out must be a tuple of 7 arrays (scan_arrays), got {type(out).__name__}")
    for k, (a, dt) in enumerate(zip(out, _SCAN_DTYPES)):
        if not isinstance(a, np.ndarray) or a.dtype != dt or _rows_of(a) < 0 or not a.flags.c_contiguous \
                or not a.flags.writeable:
            got = f"dtype {a.dtype}, {a.ndim}-D, contiguous {a.flags.c_contiguous}, writable " \
                  f"{a.flags.writeable}" if isinstance(a, np.ndarray) else type(a).__name__
            raise UsageError(f"out[{k}] must be a writable 1-D contiguous {dt} array (scan_arrays), got {got}")
        if _rows_of(a) < max_pkts:
            raise UsageError(f"out[{k}] holds {_rows_of(a)} packets, fewer than max_pkts ({max_pkts})")
    _check_disjoint(list(out), [f"out[{k}]" for k in range(len(out))], buf)
    return out


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
