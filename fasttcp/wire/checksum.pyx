# cython: language_level=3
"""Python face of the checksum kernels: `checksum`, `tcp_checksum`, `checksum_update`."""
from cpython.buffer cimport PyBuffer_Release
from fasttcp.wire.buffers cimport ft_get_bytes
from libc.stdint cimport uint8_t, uint16_t, uint64_t

from fasttcp.wire.checksum cimport (ft_csum_buffer, ft_csum_partial, ft_csum_fold, ft_csum_pseudo4,
                                    ft_csum_pseudo6, ft_csum_replace, ft_htons)
from fasttcp.wire.address import packed as _packed
from fasttcp.errors import UsageError

__all__ = ["checksum", "tcp_checksum", "checksum_update"]


def checksum(data):
    """RFC 1071 Internet checksum of a bytes-like object, as the 16-bit number that goes
    on the wire (so a buffer that includes a correct checksum field sums to 0).
    Odd lengths are padded with a zero byte; the empty input gives 0xFFFF.
    Raises UsageError for a non-contiguous buffer (TypeError for no buffer at all)."""
    cdef Py_buffer view
    cdef uint16_t c
    ft_get_bytes(data, &view, "data")
    try:
        if view.len < 65536:
            c = ft_csum_buffer(view.buf, view.len)      # releasing the GIL costs more than this
        else:
            with nogil:
                c = ft_csum_buffer(view.buf, view.len)
    finally:
        PyBuffer_Release(&view)
    return c


def tcp_checksum(src, dst, tcp_bytes):
    """TCP checksum of a segment (header + payload, checksum field included as it is)
    with the IPv4 or IPv6 pseudo-header for `src`/`dst` (str, bytes or ipaddress).
    Zero the checksum field first to compute the value to store; over a segment whose
    field is correct the result is 0. Raises UsageError for bad or mixed-family
    addresses, a non-contiguous buffer or one longer than the pseudo-header's length
    field holds (65535 bytes for IPv4)."""
    cdef bytes s = _packed(src)
    cdef bytes d = _packed(dst)
    cdef Py_buffer view
    cdef uint64_t sum
    if len(s) != len(d):
        raise UsageError("src and dst must be the same address family")
    ft_get_bytes(tcp_bytes, &view, "tcp_bytes")
    try:
        if len(s) == 4:
            if view.len > 0xffff:
                raise UsageError("an IPv4 TCP segment is at most 65535 bytes")
            sum = ft_csum_pseudo4(<const uint8_t *><char *>s, <const uint8_t *><char *>d, view.len, 6)
        else:
            if view.len > 0xffffffff:
                raise UsageError("an IPv6 TCP segment is at most 2^32-1 bytes")
            sum = ft_csum_pseudo6(<const uint8_t *><char *>s, <const uint8_t *><char *>d, view.len, 6)
        sum = ft_csum_partial(view.buf, view.len, sum)
    finally:
        PyBuffer_Release(&view)
    return ft_htons(<uint16_t>~ft_csum_fold(sum))


def checksum_update(checksum, old, new, *, size=2):
    """RFC 1624 incremental update: the checksum after the bytes `old` were rewritten
    to `new` (HC' = ~(~HC + ~m + m')), equal to a full recompute.

    `old`/`new` are equal-length bytes-like objects, or ints taken as `size`-byte
    big-endian fields (2 for a port, 4 for a sequence number or IPv4 address). The
    rewritten region must start at an even offset of the checksummed data (every TCP/IP
    header field that is rewritten in practice does). Raises UsageError for a checksum
    outside 0..65535, ints that do not fit in `size` (1..16) bytes or are bools,
    buffers of different lengths or a non-contiguous buffer."""
    cdef Py_buffer ov, nv
    cdef uint16_t r
    if isinstance(checksum, bool) or not isinstance(checksum, int) or checksum < 0 or checksum > 0xffff:
        raise UsageError(f"checksum must be an int in 0..65535, got {checksum!r}")
    if isinstance(size, bool) or not isinstance(size, int):
        raise UsageError(f"size must be an int, got {size!r}")
    if isinstance(old, bool) or isinstance(new, bool):
        raise UsageError("old and new must be ints or bytes, not bools")
    if isinstance(old, int) or isinstance(new, int):
        if not (isinstance(old, int) and isinstance(new, int)):
            raise UsageError("old and new must both be ints or both be bytes")
        if size <= 0 or size > 16:
            raise UsageError(f"size must be 1..16 bytes, got {size}")
        try:
            old = old.to_bytes(size, "big")
            new = new.to_bytes(size, "big")
        except OverflowError as exc:
            raise UsageError(f"old/new do not fit in {size} bytes (or are negative)") from exc
    ft_get_bytes(old, &ov, "old")
    try:
        ft_get_bytes(new, &nv, "new")
        try:
            if ov.len != nv.len:
                raise UsageError(f"old and new must have the same length ({ov.len} != {nv.len})")
            r = ft_csum_replace(<uint16_t>checksum, <const uint8_t *>ov.buf, <const uint8_t *>nv.buf, ov.len)
        finally:
            PyBuffer_Release(&nv)
    finally:
        PyBuffer_Release(&ov)
    return r
