# cython: language_level=3
"""Batch parsing: many packets of one buffer -> one numpy structured array.

The loop holds no GIL and touches no Python object; every packet gets a row with its
verdict, so a bad packet is counted, never raised.
"""
from cpython.buffer cimport PyBuffer_Release
from fasttcp.wire.buffers cimport ft_get_bytes
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t
from libc.string cimport memcpy

from fasttcp.wire.defs cimport *
from fasttcp.wire.codec cimport ft_parse_ip_inline
from fasttcp.wire.spans cimport ft_first_bad_span, ft_span_outside

import numpy as np
from fasttcp.errors import UsageError, span_outside_buffer
from fasttcp.wire.arrays import as_int64 as _as_int64

__all__ = ["parse_batch", "SEGMENT_DTYPE"]

SEGMENT_DTYPE = np.dtype([
    ("seq", "u4"), ("ack", "u4"), ("tsval", "u4"), ("tsecr", "u4"),
    ("payload_offset", "u4"), ("payload_len", "u4"), ("error_offset", "u4"),
    ("src_port", "u2"), ("dst_port", "u2"), ("flags", "u2"), ("window", "u2"),
    ("urgent", "u2"), ("checksum", "u2"), ("mss", "u2"),
    ("verdict", "u1"), ("version", "u1"), ("ttl", "u1"), ("header_len", "u1"),
    ("wscale", "u1"), ("opt_flags", "u1"), ("sack_count", "u1"), ("error_field", "u1"),
    ("src", "u1", (16,)), ("dst", "u1", (16,)),
], align=True)
"""Row type of `parse_batch`: header fields, option values (valid where ``opt_flags``
says so), addresses (IPv4 in the first 4 bytes) and the verdict with the failing field."""

SEGMENT_ROW_SIZE = sizeof(seg_row_t)


cdef Py_ssize_t ft_parse_batch(const uint8_t *buf, uint64_t size, const int64_t *offsets,
                               const int64_t *lengths, Py_ssize_t n, seg_row_t *rows,
                               bint verify) noexcept nogil:
    """Parse n packets into rows. Returns -1, or the index of the first packet whose span
    was outside the buffer when the loop read it (checked before: only another thread
    rewriting the index arrays meanwhile gets here; that packet was parsed as empty)."""
    cdef Py_ssize_t i, bad = -1
    cdef pkt_t p
    cdef parse_err_t err
    cdef seg_row_t *r
    cdef int rc
    cdef int64_t off, length
    for i in range(n):
        off = offsets[i]
        length = lengths[i]
        if ft_span_outside(off, length, size):
            if bad < 0:
                bad = i
            off = 0
            length = 0
        rc = ft_parse_ip_inline(buf + off, <size_t>length, &p, &err, verify)
        r = &rows[i]
        r.verdict = <uint8_t>rc
        r.error_field = <uint8_t>err.field
        r.error_offset = err.offset
        r.version = p.version
        r.ttl = p.ttl
        r.header_len = p.header_len
        r.seq = p.seq
        r.ack = p.ack
        r.src_port = p.src_port
        r.dst_port = p.dst_port
        r.flags = p.flags
        r.window = p.window
        r.urgent = p.urgent
        r.checksum = p.checksum
        r.payload_offset = <uint32_t>(off + p.payload_off)
        r.payload_len = p.payload_len
        r.mss = p.opts.mss
        r.wscale = p.opts.wscale
        r.opt_flags = p.opts.present
        r.sack_count = p.opts.sack_count
        r.tsval = p.opts.tsval
        r.tsecr = p.opts.tsecr
        memcpy(r.src, p.src, 16)
        memcpy(r.dst, p.dst, 16)
    return bad


def parse_batch(buffer, offsets, lengths, *, bint verify_checksum=True, out=None):
    """Parse every packet ``buffer[offsets[i]:offsets[i]+lengths[i]]`` (IP packets, no
    link layer) into one row of a `SEGMENT_DTYPE` structured array.

    Each row has a ``verdict`` (`fasttcp.Verdict`); header fields are valid when
    ``header_len`` is nonzero (also for TRUNCATED / FRAGMENT rows whose TCP header was
    complete). Pass ``out`` (a SEGMENT_DTYPE array of at least n rows) to reuse memory.
    Raises UsageError only for caller mistakes: offsets/lengths that are not 1-D arrays
    of integers of the same length, a span outside the buffer (the first one is
    named), a buffer over 4 GiB, a bad ``out``.
    """
    cdef Py_buffer view
    off = _as_int64(offsets, "offsets")
    ln = _as_int64(lengths, "lengths")
    if off.ndim != 1 or off.shape != ln.shape:
        raise UsageError(f"offsets and lengths must be 1-D and the same length ({off.shape} vs {ln.shape})")
    cdef Py_ssize_t n = off.shape[0], i
    if out is None:
        rows = np.empty(n, dtype=SEGMENT_DTYPE)
    else:
        if not isinstance(out, np.ndarray) or out.dtype != SEGMENT_DTYPE or out.ndim != 1 \
                or out.shape[0] < n or not out.flags.c_contiguous or not out.flags.writeable:
            raise UsageError("out must be a writable contiguous SEGMENT_DTYPE array with at least n rows")
        rows = out[:n]
    cdef const int64_t[::1] o = off
    cdef const int64_t[::1] l = ln
    cdef uint8_t[::1] raw = rows.view(np.uint8).reshape(-1) if n else np.empty(0, np.uint8)
    ft_get_bytes(buffer, &view, "buffer")
    try:
        if n:
            with nogil:
                i = ft_first_bad_span(&o[0], &l[0], n, <uint64_t>view.len)
            if i >= 0:
                raise span_outside_buffer(i, off[i], ln[i], view.len)
            if view.len > 0xffffffff:
                raise UsageError("batch buffers are limited to 4 GiB (payload offsets are 32-bit)")
            with nogil:
                i = ft_parse_batch(<const uint8_t *>view.buf, <uint64_t>view.len, &o[0], &l[0], n,
                                   <seg_row_t *>&raw[0], verify_checksum)
            if i >= 0:
                raise UsageError(f"packet {i}: offsets or lengths were rewritten (by another thread) "
                                 f"while parse_batch ran, to a span outside the buffer")
    finally:
        PyBuffer_Release(&view)
    return rows
