# cython: language_level=3
"""Wire layer: IPv4/IPv6/TCP parsing into pkt_t and building from values.

All functions are nogil, allocate nothing and never read outside [buf, buf+len).
They return an FT_* code (defs.pxd); on error `err` says which field and where.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t
from fasttcp._core.defs cimport pkt_t, parse_err_t, tcp_opts_t

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
cdef int ft_parse_ip_fast(const uint8_t *buf, size_t length, pkt_t *p, parse_err_t *err,
                          bint verify) noexcept nogil
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

# Write a complete IPv4 (version 4, 4-byte addresses) or IPv6 packet into out.
# `opts` must already be padded to a multiple of 4 (<= 40 bytes). Fills both
# checksums. Returns total length, or -1 if out is too small / lengths overflow.
cdef Py_ssize_t ft_build_packet(uint8_t *out, size_t cap, int version,
                                const uint8_t *src, const uint8_t *dst, uint8_t ttl,
                                uint16_t src_port, uint16_t dst_port, uint32_t seq, uint32_t ack,
                                uint16_t flags, uint16_t window, uint16_t urgent,
                                const uint8_t *opts, size_t optlen,
                                const uint8_t *payload, size_t payload_len) noexcept nogil

# Recompute the TCP checksum of a TCP segment in place given the pseudo-header inputs.
cdef void ft_tcp_fill_checksum(uint8_t *tcp, size_t tcp_len, int version,
                               const uint8_t *src, const uint8_t *dst) noexcept nogil
