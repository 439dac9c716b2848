# cython: language_level=3
"""Wire layer implementation (see wire.pxd for the contract).

Theory of operation: every read is preceded by a length check against two limits --
`length` (bytes the caller really has) and the datagram end the IP header claims.
Running past the first is FT_ERR_TRUNCATED (a short capture); running past the second
is a malformed header (the packet contradicts itself). Nothing here allocates or
touches Python, so the batch loop can call it without the GIL.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset

from fasttcp.wire.defs cimport *
from fasttcp.wire.checksum cimport (ft_csum_partial, ft_csum_fold, ft_csum_pseudo4, ft_csum_pseudo6,
                                    ft_load_be16, ft_load_be32)

cdef enum:
    IPPROTO_HOPOPTS = 0
    IPPROTO_ROUTING = 43
    IPPROTO_FRAGMENT = 44
    IPPROTO_AH = 51
    IPPROTO_DSTOPTS = 60
    IP6_MAX_EXT_HEADERS = 16     # bound on the walk: a crafted chain cannot make us loop long


cdef inline int _fail(parse_err_t *err, int code, int field, size_t offset) noexcept nogil:
    err.code = code
    err.field = field
    err.offset = <uint32_t>offset
    return code


# ---- options ----

cdef int ft_parse_options(const uint8_t *opt, size_t optlen, tcp_opts_t *o, parse_err_t *err,
                          uint32_t base) noexcept nogil:
    cdef size_t i = 0, olen, k
    cdef uint8_t kind
    while i < optlen:
        kind = opt[i]
        if kind == TCPOPT_EOL:
            o.present |= OPT_HAS_EOL     # RFC 9293 3.2: the rest is padding
            return FT_OK
        if kind == TCPOPT_NOP:
            i += 1
            continue
        if i + 1 >= optlen:
            return _fail(err, FT_ERR_BAD_OPTION, FT_FIELD_TCP_OPTION_LENGTH, base + i + 1)
        olen = opt[i + 1]
        if olen < 2 or i + olen > optlen:
            # length 0/1 would loop forever or overlap; past the end reads the payload
            return _fail(err, FT_ERR_BAD_OPTION, FT_FIELD_TCP_OPTION_LENGTH, base + i + 1)
        if kind == TCPOPT_MSS:
            if olen != 4:
                return _fail(err, FT_ERR_BAD_OPTION, FT_FIELD_TCP_OPTION_LENGTH, base + i + 1)
            o.mss = ft_load_be16(opt + i + 2)
            o.present |= OPT_HAS_MSS
        elif kind == TCPOPT_WSCALE:
            if olen != 3:
                return _fail(err, FT_ERR_BAD_OPTION, FT_FIELD_TCP_OPTION_LENGTH, base + i + 1)
            o.wscale = opt[i + 2]
            o.present |= OPT_HAS_WSCALE
        elif kind == TCPOPT_SACK_PERM:
            if olen != 2:
                return _fail(err, FT_ERR_BAD_OPTION, FT_FIELD_TCP_OPTION_LENGTH, base + i + 1)
            o.present |= OPT_HAS_SACK_PERM
        elif kind == TCPOPT_TIMESTAMP:
            if olen != 10:
                return _fail(err, FT_ERR_BAD_OPTION, FT_FIELD_TCP_OPTION_LENGTH, base + i + 1)
            o.tsval = ft_load_be32(opt + i + 2)
            o.tsecr = ft_load_be32(opt + i + 6)
            o.present |= OPT_HAS_TIMESTAMP
        elif kind == TCPOPT_SACK:
            # RFC 2018: 2 + 8n bytes, 1 <= n <= 4 (the 40-byte option space bounds n)
            if olen < 10 or (olen - 2) % 8 != 0:
                return _fail(err, FT_ERR_BAD_OPTION, FT_FIELD_TCP_OPTION_LENGTH, base + i + 1)
            o.sack_count = <uint8_t>((olen - 2) // 8)
            if o.sack_count > TCP_MAX_SACK_BLOCKS:
                return _fail(err, FT_ERR_BAD_OPTION, FT_FIELD_TCP_OPTION_LENGTH, base + i + 1)
            for k in range(o.sack_count):
                o.sack_left[k] = ft_load_be32(opt + i + 2 + 8 * k)
                o.sack_right[k] = ft_load_be32(opt + i + 6 + 8 * k)
            o.present |= OPT_HAS_SACK
        else:
            if o.unknown_count < TCP_MAX_UNKNOWN_OPTS:
                o.unknown_off[o.unknown_count] = <uint8_t>i
            if o.unknown_count < 255:
                o.unknown_count += 1
            o.present |= OPT_HAS_UNKNOWN
        i += olen
    return FT_OK


cdef int ft_encode_options(const tcp_opts_t *o, uint8_t *out, size_t cap) noexcept nogil:
    return ft_encode_options_inline(o, out, cap)      # the encoder itself is in wire.pxd


# ---- TCP header ----

cdef inline int _parse_tcp_at(const uint8_t *buf, size_t length, size_t off, size_t tcp_len,
                              pkt_t *p, parse_err_t *err, size_t frag_field) noexcept nogil:
    """Parse the TCP header at buf[off]; tcp_len is what the IP layer says it spans.
    frag_field != 0: this is a first fragment (its fragment field is at that offset),
    so a header that does not fit is continued in the next fragment, not malformed."""
    cdef const uint8_t *t = buf + off
    cdef size_t hl, have
    cdef int rc
    if tcp_len < TCP_HDR_LEN:
        if frag_field:
            return _fail(err, FT_ERR_FRAGMENT, FT_FIELD_IP_FRAGMENT, frag_field)
        return _fail(err, FT_ERR_BAD_TCP_HEADER, FT_FIELD_TCP_HEADER, off)
    if length < off + TCP_HDR_LEN:
        return _fail(err, FT_ERR_TRUNCATED, FT_FIELD_TCP_HEADER, off)
    hl = (t[TCP_DOFF] >> 4) * 4
    if hl < TCP_HDR_LEN:
        return _fail(err, FT_ERR_BAD_TCP_HEADER, FT_FIELD_TCP_DATA_OFFSET, off + TCP_DOFF)
    if hl > tcp_len:
        if frag_field:
            return _fail(err, FT_ERR_FRAGMENT, FT_FIELD_IP_FRAGMENT, frag_field)
        return _fail(err, FT_ERR_BAD_TCP_HEADER, FT_FIELD_TCP_DATA_OFFSET, off + TCP_DOFF)
    if length < off + hl:
        return _fail(err, FT_ERR_TRUNCATED, FT_FIELD_TCP_HEADER, off + TCP_HDR_LEN)
    ft_tcp_fixed_fields(t, p)
    p.tcp_off = <uint32_t>off
    p.tcp_len = <uint32_t>tcp_len
    p.payload_off = <uint32_t>(off + hl)
    have = length - off               # bytes of the segment the caller really has
    p.payload_len = <uint32_t>((tcp_len if tcp_len < have else have) - hl)
    if hl > TCP_HDR_LEN:
        rc = ft_parse_options(t + TCP_HDR_LEN, hl - TCP_HDR_LEN, &p.opts, err, <uint32_t>(off + TCP_HDR_LEN))
        if rc != FT_OK:
            return rc
    p.header_len = <uint8_t>hl        # set last: nonzero means "header fields valid"
    if have < tcp_len:
        return _fail(err, FT_ERR_TRUNCATED, FT_FIELD_IP_TOTAL_LENGTH if p.version == 4
                     else FT_FIELD_IP6_PAYLOAD_LENGTH,
                     p.ip_off + (IPV4_TOT_LEN if p.version == 4 else IPV6_PAYLOAD_LEN))
    return FT_OK


cdef int ft_parse_tcp(const uint8_t *buf, size_t length, pkt_t *p, parse_err_t *err) noexcept nogil:
    memset(p, 0, sizeof(pkt_t))
    err.code = FT_OK; err.field = FT_FIELD_NONE; err.offset = 0
    return _parse_tcp_at(buf, length, 0, length, p, err, 0)


cdef inline bint _tcp_checksum_ok(const uint8_t *buf, pkt_t *p) noexcept nogil:
    cdef uint64_t s
    if p.version == 4:
        s = ft_csum_pseudo4(p.src, p.csum_dst, p.tcp_len, IPPROTO_TCP)
    else:
        s = ft_csum_pseudo6(p.src, p.csum_dst, p.tcp_len, IPPROTO_TCP)
    s = ft_csum_partial(buf + p.tcp_off, p.tcp_len, s)
    return ft_csum_fold(s) == 0xffff


# ---- IP ----

cdef inline int _parse_ipv4(const uint8_t *b, size_t length, pkt_t *p, parse_err_t *err,
                            bint verify) noexcept nogil:
    cdef size_t hl, tot
    cdef uint16_t frag
    cdef int rc
    if length < IPV4_HDR_LEN:
        return _fail(err, FT_ERR_TRUNCATED, FT_FIELD_IP_HEADER, 0)
    hl = (b[IPV4_VER_IHL] & 0x0f) * 4
    if hl < IPV4_HDR_LEN:
        return _fail(err, FT_ERR_BAD_IP_HEADER, FT_FIELD_IP_IHL, IPV4_VER_IHL)
    if length < hl:
        return _fail(err, FT_ERR_TRUNCATED, FT_FIELD_IP_HEADER, IPV4_HDR_LEN)
    tot = ft_load_be16(b + IPV4_TOT_LEN)
    if tot == 0:
        # TSO / IPv4 BIG TCP: the stack leaves total length 0 and the real length is
        # the buffer's (Linux, tcpdump and Wireshark all read it so)
        tot = length
    if tot < hl:
        return _fail(err, FT_ERR_BAD_IP_HEADER, FT_FIELD_IP_TOTAL_LENGTH, IPV4_TOT_LEN)
    p.version = 4
    p.ttl = b[IPV4_TTL]
    p.ip_id = ft_load_be16(b + IPV4_ID)
    memcpy(p.src, b + IPV4_SADDR, 4)
    memcpy(p.dst, b + IPV4_DADDR, 4)
    memcpy(p.csum_dst, b + IPV4_DADDR, 4)
    if b[IPV4_PROTOCOL] != IPPROTO_TCP:
        return _fail(err, FT_ERR_NOT_TCP, FT_FIELD_IP_PROTOCOL, IPV4_PROTOCOL)
    frag = ft_load_be16(b + IPV4_FRAG_OFF)
    if frag & IPV4_OFFSET_MASK:
        return _fail(err, FT_ERR_FRAGMENT, FT_FIELD_IP_FRAGMENT, IPV4_FRAG_OFF)
    if verify:
        p.ip_csum_state = 1 if ft_csum_fold(ft_csum_partial(b, hl, 0)) == 0xffff else 2
        if p.ip_csum_state == 2:
            return _fail(err, FT_ERR_BAD_IP_CHECKSUM, FT_FIELD_IP_CHECKSUM, IPV4_CSUM)
    rc = _parse_tcp_at(b, length, hl, tot - hl, p, err, IPV4_FRAG_OFF if (frag & IPV4_MF) else 0)
    if rc != FT_OK:
        return rc
    if frag & IPV4_MF:
        # first fragment: the checksum covers the whole datagram, which we do not have
        return _fail(err, FT_ERR_FRAGMENT, FT_FIELD_IP_FRAGMENT, IPV4_FRAG_OFF)
    return FT_OK


cdef inline int _parse_ipv6(const uint8_t *b, size_t length, pkt_t *p, parse_err_t *err,
                            bint verify) noexcept nogil:
    cdef size_t end, off, hlen, limit, naddr
    cdef uint8_t nh, rtype
    cdef int n_ext = 0, rc
    cdef size_t first_fragment = 0     # offset of the fragment field of a first fragment
    cdef size_t nh_off = IPV6_NEXTHDR  # where the current Next Header value was read
    cdef size_t plen
    if length < IPV6_HDR_LEN:
        return _fail(err, FT_ERR_TRUNCATED, FT_FIELD_IP_HEADER, 0)
    p.version = 6
    p.ttl = b[IPV6_HOP_LIMIT]
    memcpy(p.src, b + IPV6_SADDR, 16)
    memcpy(p.dst, b + IPV6_DADDR, 16)
    memcpy(p.csum_dst, b + IPV6_DADDR, 16)
    plen = ft_load_be16(b + IPV6_PAYLOAD_LEN)
    nh = b[IPV6_NEXTHDR]
    end = IPV6_HDR_LEN + plen
    if plen == 0 and nh == IPPROTO_HOPOPTS:
        end = 0                      # a jumbogram (RFC 2675): the length comes from HBH
    limit = end if (end != 0 and end < length) else length
    off = IPV6_HDR_LEN
    while True:
        if nh == IPPROTO_TCP:
            break
        if n_ext >= IP6_MAX_EXT_HEADERS:
            return _fail(err, FT_ERR_BAD_IP_HEADER, FT_FIELD_IP6_NEXT_HEADER, off)
        n_ext += 1
        if nh == IPPROTO_HOPOPTS or nh == IPPROTO_ROUTING or nh == IPPROTO_DSTOPTS or nh == IPPROTO_AH:
            if off + 2 > limit:
                return _fail(err, FT_ERR_TRUNCATED if (end == 0 or off + 2 <= end) else FT_ERR_BAD_IP_HEADER,
                             FT_FIELD_IP6_EXT_LENGTH, off)
            hlen = (b[off + 1] + 2) * 4 if nh == IPPROTO_AH else (b[off + 1] + 1) * 8
            if off + hlen > limit:
                if end != 0 and off + hlen > end:
                    return _fail(err, FT_ERR_BAD_IP_HEADER, FT_FIELD_IP6_EXT_LENGTH, off + 1)
                return _fail(err, FT_ERR_TRUNCATED, FT_FIELD_IP6_EXT_LENGTH, off + 1)
            if nh == IPPROTO_HOPOPTS and end == 0:
                rc = _ipv6_jumbo_length(b + off, hlen, &end)
                if rc != FT_OK or end < IPV6_HDR_LEN:
                    return _fail(err, FT_ERR_BAD_IP_HEADER, FT_FIELD_IP6_PAYLOAD_LENGTH, IPV6_PAYLOAD_LEN)
                limit = end if end < length else length
                if off + hlen > limit:
                    return _fail(err, FT_ERR_BAD_IP_HEADER, FT_FIELD_IP6_EXT_LENGTH, off + 1)
            if nh == IPPROTO_ROUTING and b[off + 3] != 0:
                # RFC 8200 8.1: with segments left, the pseudo-header carries the final
                # destination, which the routing header holds
                rtype = b[off + 2]
                naddr = (hlen - 8) // 16
                if (rtype == 0 or rtype == 2) and naddr >= 1:
                    memcpy(p.csum_dst, b + off + 8 + 16 * (naddr - 1), 16)
                elif rtype == 4 and naddr >= 1:
                    memcpy(p.csum_dst, b + off + 8, 16)    # RFC 8754: Segment List[0]
            nh = b[off]
            nh_off = off
            off += hlen
        elif nh == IPPROTO_FRAGMENT:
            if off + 8 > limit:
                return _fail(err, FT_ERR_TRUNCATED if (end == 0 or off + 8 <= end) else FT_ERR_BAD_IP_HEADER,
                             FT_FIELD_IP6_EXT_LENGTH, off)
            if ft_load_be16(b + off + 2) & 0xfff8:
                return _fail(err, FT_ERR_FRAGMENT, FT_FIELD_IP_FRAGMENT, off + 2)
            if b[off + 3] & 1:
                first_fragment = off + 2
            nh = b[off]
            nh_off = off
            off += 8
        else:
            return _fail(err, FT_ERR_NOT_TCP, FT_FIELD_IP6_NEXT_HEADER, nh_off)
    if end == 0:
        return _fail(err, FT_ERR_BAD_IP_HEADER, FT_FIELD_IP6_PAYLOAD_LENGTH, IPV6_PAYLOAD_LEN)
    if off > end:
        return _fail(err, FT_ERR_BAD_IP_HEADER, FT_FIELD_IP6_PAYLOAD_LENGTH, IPV6_PAYLOAD_LEN)
    rc = _parse_tcp_at(b, length, off, end - off, p, err, first_fragment)
    if rc != FT_OK:
        return rc
    if first_fragment:
        return _fail(err, FT_ERR_FRAGMENT, FT_FIELD_IP_FRAGMENT, first_fragment)
    return FT_OK


cdef inline int _ipv6_jumbo_length(const uint8_t *h, size_t hlen, size_t *end) noexcept nogil:
    """Find the Jumbo Payload option (type 0xC2) in a hop-by-hop header."""
    cdef size_t i = 2, olen
    while i < hlen:
        if h[i] == 0:                # Pad1
            i += 1
            continue
        if i + 2 > hlen:
            return FT_ERR_BAD_IP_HEADER
        olen = h[i + 1]
        if i + 2 + olen > hlen:
            return FT_ERR_BAD_IP_HEADER
        if h[i] == 0xC2 and olen == 4:
            end[0] = IPV6_HDR_LEN + ft_load_be32(h + i + 2)
            return FT_OK
        i += 2 + olen
    return FT_ERR_BAD_IP_HEADER


cdef int ft_parse_ip(const uint8_t *buf, size_t length, pkt_t *p, parse_err_t *err,
                     bint verify) noexcept nogil:
    return ft_parse_ip_inline(buf, length, p, err, verify)


cdef int ft_parse_ip_general(const uint8_t *buf, size_t length, pkt_t *p, parse_err_t *err,
                             bint verify) noexcept nogil:
    cdef int rc
    memset(p, 0, sizeof(pkt_t))
    err.code = FT_OK; err.field = FT_FIELD_NONE; err.offset = 0
    if length < 1:
        return _fail(err, FT_ERR_TRUNCATED, FT_FIELD_IP_VERSION, 0)
    if buf[0] >> 4 == 4:
        rc = _parse_ipv4(buf, length, p, err, verify)
    elif buf[0] >> 4 == 6:
        rc = _parse_ipv6(buf, length, p, err, verify)
    else:
        return _fail(err, FT_ERR_BAD_VERSION, FT_FIELD_IP_VERSION, 0)
    if rc != FT_OK or not verify:
        return rc
    if _tcp_checksum_ok(buf, p):
        p.csum_state = 1
        return FT_OK
    p.csum_state = 2
    return _fail(err, FT_ERR_BAD_CHECKSUM, FT_FIELD_TCP_CHECKSUM, p.tcp_off + TCP_CSUM)


# ---- building ----

# ft_build_packet and ft_tcp_fill_checksum are inline in wire.pxd (the endpoint's
# per-segment path compiles ft_build_packet into its own loop).
