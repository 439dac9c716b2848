# cython: language_level=3
"""Test hooks: the C paths that must agree, compared from Python (tests/wire uses them).

The library never imports this module. Each hook runs two implementations of one rule on
the same input -- the inline fast parser against the general one, the endpoint's in-place
ACK builder against the general builder, the word-at-a-time option decoder's reach -- so a
test can check that they cannot disagree.
"""
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport uint8_t, uint32_t
from libc.string cimport memcpy, memcmp, memset

from fasttcp.wire.defs cimport *
from fasttcp.wire.codec cimport (ft_build_packet, ft_build_ts_segment, ft_put_timestamp_option,
                                 ft_parse_ip_fast, ft_parse_ip_general, FT_PARSE_SLOW, _linux_layout)
from fasttcp.wire.addr cimport addr_bytes as _addr

from fasttcp.errors import UsageError

__all__ = ["parse_paths_agree", "ts_segment_paths_agree", "linux_layout_decodes"]


def parse_paths_agree(packet, *, bint verify_checksum=True):
    """parse `packet` with the inline common-case parser, in its full and its
    lean mode (the endpoint's and tracker's), and with the general one. Returns
    (fast_handled, agree): whether the fast path took the packet, and, when it did,
    whether all three produced the same verdict and byte-identical parsed packets
    (every field, options included; in lean mode every field but those it documents
    as left unset, which are copied over from the general parse before comparing)."""
    cdef Py_buffer view
    cdef pkt_t a, b, c
    cdef parse_err_t ea, eb, ec
    cdef int ra, rb, rc
    PyObject_GetBuffer(packet, &view, PyBUF_SIMPLE)
    try:
        memset(&a, 0xA5, sizeof(pkt_t))      # garbage: the fast path must write every byte
        memset(&b, 0x5A, sizeof(pkt_t))
        memset(&c, 0xC3, sizeof(pkt_t))
        ra = ft_parse_ip_fast(<const uint8_t *>view.buf, <size_t>view.len, &a, &ea, verify_checksum)
        rb = ft_parse_ip_general(<const uint8_t *>view.buf, <size_t>view.len, &b, &eb, verify_checksum)
        rc = ft_parse_ip_fast(<const uint8_t *>view.buf, <size_t>view.len, &c, &ec, verify_checksum, True)
    finally:
        PyBuffer_Release(&view)
    if ra == FT_PARSE_SLOW:
        return False, rc == FT_PARSE_SLOW
    if rc == FT_OK:
        # what lean mode leaves unset (ttl reads 0): take it from the general parse
        if c.ttl != 0:
            return True, False
        c.ttl = b.ttl
        c.ip_id = b.ip_id
        memcpy(c.csum_dst, b.csum_dst, 16)
        c.checksum = b.checksum
        c.urgent = b.urgent
        if c.opts.sack_count == 0:
            memcpy(c.opts.sack_left, b.opts.sack_left, sizeof(c.opts.sack_left))
            memcpy(c.opts.sack_right, b.opts.sack_right, sizeof(c.opts.sack_right))
        if c.opts.unknown_count == 0:
            memcpy(c.opts.unknown_off, b.opts.unknown_off, sizeof(c.opts.unknown_off))
    return True, (ra == rb and ea.code == eb.code and ea.field == eb.field and ea.offset == eb.offset
                  and memcmp(&a, &b, sizeof(pkt_t)) == 0
                  and rc == rb and ec.code == eb.code and ec.field == eb.field and ec.offset == eb.offset
                  and memcmp(&c, &b, sizeof(pkt_t)) == 0)


def ts_segment_paths_agree(src, dst, int src_port, int dst_port, uint32_t seq, uint32_t ack, int flags,
                           int window, bint ts, uint32_t tsval, uint32_t tsecr, int ttl=64):
    """The endpoint's ACK/FIN builder (ft_build_ts_segment, the timestamp
    option written in place) against the general builder given the same segment with
    NOP NOP TS encoded as an option area. Returns (packet, same): the fast builder's
    bytes and whether the general builder's are identical."""
    cdef bytes s = _addr(src), d = _addr(dst)
    cdef uint8_t a[16]
    cdef uint8_t b[16]
    cdef uint8_t out1[72]
    cdef uint8_t out2[72]
    cdef uint8_t opts[12]
    cdef Py_ssize_t n1, n2
    cdef int version = 4 if len(s) == 4 else 6
    if len(s) != len(d):
        raise UsageError("address families differ")
    memset(a, 0, 16)
    memset(b, 0, 16)
    memcpy(a, <char *>s, len(s))
    memcpy(b, <char *>d, len(d))
    memset(out1, 0xA5, 72)
    memset(out2, 0x5A, 72)
    ft_put_timestamp_option(opts, TCPOPT_NOP, TCPOPT_NOP, tsval, tsecr)
    n1 = ft_build_ts_segment(out1, version, a, b, <uint8_t>ttl, <uint16_t>src_port, <uint16_t>dst_port, seq, ack,
                             <uint16_t>flags, <uint16_t>window, ts, tsval, tsecr)
    n2 = ft_build_packet(out2, 72, version, a, b, <uint8_t>ttl, <uint16_t>src_port, <uint16_t>dst_port, seq, ack,
                         <uint16_t>flags, <uint16_t>window, 0, opts, 12 if ts else 0, NULL, 0)
    return (PyBytes_FromStringAndSize(<char *>out1, n1),
            n1 == n2 and memcmp(out1, out2, <size_t>n1) == 0)


def linux_layout_decodes(options):
    """does the fast parser's word-at-a-time decoder take this options area
    itself (True), or leave it to the general option parser (False)?"""
    cdef bytes b = bytes(options)
    cdef tcp_opts_t o
    if len(b) == 0 or len(b) % 4 or len(b) > TCP_MAX_OPT_BYTES:
        raise UsageError("an options area is 4 to 40 bytes, a multiple of 4")
    memset(&o, 0, sizeof(o))
    return bool(_linux_layout(<const uint8_t *><char *>b, len(b), &o))
