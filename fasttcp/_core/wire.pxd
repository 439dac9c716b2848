# cython: language_level=3
"""Wire layer: IPv4/IPv6/TCP parsing into pkt_t and building from values.

All functions are nogil, allocate nothing and never read outside [buf, buf+len).
They return an FT_* code (defs.pxd); on error `err` says which field and where.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset
from fasttcp._core.defs cimport *
from fasttcp._core.csum cimport (ft_csum_partial, ft_csum_fold, ft_csum_ok, ft_csum_pseudo4, ft_csum_pseudo6,
                                 ft_load_be16, ft_load_be32, ft_store_be16, ft_store_be32)

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

cdef inline void ft_tcp_fixed_fields(const uint8_t *t, pkt_t *p) noexcept nogil:
    """The fixed 20-byte TCP header's fields (t points at it; the caller checked it is there)."""
    p.src_port = ft_load_be16(t)
    p.dst_port = ft_load_be16(t + 2)
    p.seq = ft_load_be32(t + 4)
    p.ack = ft_load_be32(t + 8)
    p.flags = ((t[12] & 1) << 8) | t[13]
    p.window = ft_load_be16(t + 14)
    p.checksum = ft_load_be16(t + 16)
    p.urgent = ft_load_be16(t + 18)


cdef inline void ft_put_timestamp_option(uint8_t *out, uint8_t lead0, uint8_t lead1,
                                         uint32_t tsval, uint32_t tsecr) noexcept nogil:
    """Two lead bytes (NOP NOP, or SACK-permitted) and the 10-byte timestamp option: the
    12-byte word-aligned layout Linux sends."""
    out[0] = lead0; out[1] = lead1
    out[2] = TCPOPT_TIMESTAMP; out[3] = 10
    ft_store_be32(out + 4, tsval)
    ft_store_be32(out + 8, tsecr)


cdef inline int ft_encode_options_inline(const tcp_opts_t *o, uint8_t *out, size_t cap) noexcept nogil:
    """ft_encode_options with the two layouts of nearly every segment after the handshake
    -- none, or timestamps alone -- compiled into the caller's loop."""
    if o.present == 0:
        return 0
    if o.present == OPT_HAS_TIMESTAMP and cap >= 12:
        ft_put_timestamp_option(out, TCPOPT_NOP, TCPOPT_NOP, o.tsval, o.tsecr)
        return 12
    return ft_encode_options(o, out, cap)


# ---- the common case, inline in every module that parses per packet ----

cdef inline bint _nop_nop_timestamp(const uint8_t *o) noexcept nogil:
    # NOP NOP TS(10): the option area of nearly every Linux, BSD and Windows segment
    # after the handshake
    return o[0] == TCPOPT_NOP and o[1] == TCPOPT_NOP and o[2] == TCPOPT_TIMESTAMP and o[3] == 10


cdef inline int ft_parse_ip_fast(const uint8_t *b, size_t length, pkt_t *p, parse_err_t *err,
                                 bint verify) noexcept nogil:
    # The shapes nearly all traffic has -- IPv4 without IP options or IPv6 without
    # extension headers, unfragmented, whole in the buffer, checksums good -- parsed
    # straight through: no per-field error bookkeeping, no extension-header walk, the
    # IPv4 pseudo-header summed as one word. Anything else (every error included)
    # returns FT_PARSE_SLOW and ft_parse_ip_general decides it from scratch,
    # so the two paths cannot disagree on what is wrong; a test compares their
    # results on valid and damaged packets.
    cdef size_t tot, ipl, hl, tcp_len
    cdef const uint8_t *t
    cdef uint64_t s
    if length >= 40 and b[0] == 0x45:
        tot = ft_load_be16(b + 2)
        if tot < 40 or tot > length or b[9] != 6 or (ft_load_be16(b + 6) & 0x3fff):
            return FT_PARSE_SLOW
        ipl = 20
    elif length >= 60 and (b[0] >> 4) == 6 and b[6] == 6:
        tot = 40 + <size_t>ft_load_be16(b + 4)
        if tot < 60 or tot > length:
            return FT_PARSE_SLOW
        ipl = 40
    else:
        return FT_PARSE_SLOW
    t = b + ipl
    tcp_len = tot - ipl
    hl = (t[12] >> 4) * 4
    if hl < 20 or hl > tcp_len:
        return FT_PARSE_SLOW
    if verify:
        if ipl == 20:
            if not ft_csum_ok(ft_csum_partial(b, 20, 0)):
                return FT_PARSE_SLOW
            s = ft_csum_partial(t, tcp_len, ft_csum_pseudo4(b + 12, b + 16, <uint32_t>tcp_len, 6))
        else:
            s = ft_csum_partial(t, tcp_len, ft_csum_pseudo6(b + 8, b + 24, <uint32_t>tcp_len, 6))
        if not ft_csum_ok(s):
            return FT_PARSE_SLOW
    memset(p, 0, sizeof(pkt_t))
    if hl > 20:
        if hl == 32 and _nop_nop_timestamp(t + 20):
            p.opts.present = OPT_HAS_TIMESTAMP
            p.opts.tsval = ft_load_be32(t + 24)
            p.opts.tsecr = ft_load_be32(t + 28)
        elif ft_parse_options(t + 20, hl - 20, &p.opts, err, <uint32_t>(ipl + 20)) != FT_OK:
            return FT_PARSE_SLOW
    if ipl == 20:
        p.version = 4
        p.ttl = b[8]
        p.ip_id = ft_load_be16(b + 4)
        memcpy(p.src, b + 12, 4)
        memcpy(p.dst, b + 16, 4)
        memcpy(p.csum_dst, b + 16, 4)
        p.ip_csum_state = 1 if verify else 0
    else:
        p.version = 6
        p.ttl = b[7]
        memcpy(p.src, b + 8, 16)
        memcpy(p.dst, b + 24, 16)
        memcpy(p.csum_dst, b + 24, 16)
    p.csum_state = 1 if verify else 0
    ft_tcp_fixed_fields(t, p)
    p.tcp_off = <uint32_t>ipl
    p.tcp_len = <uint32_t>tcp_len
    p.payload_off = <uint32_t>(ipl + hl)
    p.payload_len = <uint32_t>(tcp_len - hl)
    p.header_len = <uint8_t>hl
    err.code = FT_OK; err.field = FT_FIELD_NONE; err.offset = 0
    return FT_OK


cdef inline int ft_parse_ip_inline(const uint8_t *buf, size_t length, pkt_t *p, parse_err_t *err,
                                   bint verify) noexcept nogil:
    """ft_parse_ip with the common case compiled into the calling loop (per-packet
    loops: batch parse, tracker, endpoint)."""
    cdef int rc = ft_parse_ip_fast(buf, length, p, err, verify)
    if rc != FT_PARSE_SLOW:
        return rc
    return ft_parse_ip_general(buf, length, p, err, verify)


# ---- building, inline for the endpoint's per-segment path ----

# Write a complete IPv4 (version 4, 4-byte addresses) or IPv6 packet into out.
# `opts` must already be padded to a multiple of 4 (<= 40 bytes). Fills both
# checksums. Returns total length, or -1 if out is too small / lengths overflow.
# (ft_tcp_fill_checksum: the TCP checksum of a segment, recomputed in place from the
# pseudo-header inputs.)
cdef inline void ft_tcp_fill_checksum(uint8_t *tcp, size_t tcp_len, int version,
                                      const uint8_t *src, const uint8_t *dst) noexcept nogil:
    cdef uint64_t s
    cdef uint16_t c
    tcp[16] = 0
    tcp[17] = 0
    if version == 4:
        s = ft_csum_pseudo4(src, dst, <uint32_t>tcp_len, 6)
    else:
        s = ft_csum_pseudo6(src, dst, <uint32_t>tcp_len, 6)
    c = <uint16_t>~ft_csum_fold(ft_csum_partial(tcp, tcp_len, s))
    memcpy(tcp + 16, &c, 2)          # host-order sum stored as-is is the wire value


cdef inline Py_ssize_t ft_build_packet(uint8_t *out, size_t cap, int version,
                                       const uint8_t *src, const uint8_t *dst, uint8_t ttl,
                                       uint16_t src_port, uint16_t dst_port, uint32_t seq, uint32_t ack,
                                       uint16_t flags, uint16_t window, uint16_t urgent,
                                       const uint8_t *opts, size_t optlen,
                                       const uint8_t *payload, size_t payload_len) noexcept nogil:
    cdef size_t iphl = 20 if version == 4 else 40
    cdef size_t thl = 20 + optlen
    cdef size_t total = iphl + thl + payload_len
    cdef uint8_t *t
    cdef uint16_t c
    if optlen > TCP_MAX_OPT_BYTES or optlen % 4 != 0 or total > cap:
        return -1
    if (version == 4 and total > 0xffff) or (version == 6 and total - 40 > 0xffff):
        return -1
    if version == 4:
        out[0] = 0x45
        out[1] = 0
        ft_store_be16(out + 2, <uint16_t>total)
        out[4] = 0; out[5] = 0                 # ID 0 with DF, as Linux does (RFC 6864)
        out[6] = 0x40; out[7] = 0
        out[8] = ttl
        out[9] = 6
        out[10] = 0; out[11] = 0
        memcpy(out + 12, src, 4)
        memcpy(out + 16, dst, 4)
        c = <uint16_t>~ft_csum_fold(ft_csum_partial(out, 20, 0))
        memcpy(out + 10, &c, 2)
    else:
        out[0] = 0x60; out[1] = 0; out[2] = 0; out[3] = 0
        ft_store_be16(out + 4, <uint16_t>(thl + payload_len))
        out[6] = 6
        out[7] = ttl
        memcpy(out + 8, src, 16)
        memcpy(out + 24, dst, 16)
    t = out + iphl
    ft_store_be16(t, src_port)
    ft_store_be16(t + 2, dst_port)
    ft_store_be32(t + 4, seq)
    ft_store_be32(t + 8, ack)
    t[12] = <uint8_t>(((thl // 4) << 4) | ((flags >> 8) & 1))
    t[13] = <uint8_t>(flags & 0xff)
    ft_store_be16(t + 14, window)
    ft_store_be16(t + 18, urgent)
    if optlen:
        memcpy(t + 20, opts, optlen)
    if payload_len:
        memcpy(t + thl, payload, payload_len)
    ft_tcp_fill_checksum(t, thl + payload_len, version, src, dst)
    return <Py_ssize_t>total
