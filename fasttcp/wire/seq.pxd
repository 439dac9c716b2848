# cython: language_level=3
"""32-bit TCP sequence-space arithmetic (RFC 9293 3.4, RFC 1982), inline for the core.

The one rule to know: two numbers exactly 2^31 apart are *incomparable*. RFC 1982
leaves that case undefined and the usual `(int32_t)(a - b) < 0` answers "a < b" and
"b < a" at once; here every ordering predicate is False for such a pair (they are not
equal either), so the order is antisymmetric everywhere.
"""
from libc.stdint cimport uint32_t, int32_t, int64_t

# a < b: b is 1 .. 2^31-1 ahead of a
cdef inline bint seq_lt(uint32_t a, uint32_t b) noexcept nogil:
    return <uint32_t>(b - a) - 1u < 0x7fffffffu

# a <= b
cdef inline bint seq_le(uint32_t a, uint32_t b) noexcept nogil:
    return <uint32_t>(b - a) < 0x80000000u

# a > b
cdef inline bint seq_gt(uint32_t a, uint32_t b) noexcept nogil:
    return seq_lt(b, a)

# a >= b
cdef inline bint seq_ge(uint32_t a, uint32_t b) noexcept nogil:
    return seq_le(b, a)

# a + n modulo 2^32
cdef inline uint32_t seq_add(uint32_t a, uint32_t n) noexcept nogil:
    return <uint32_t>(a + n)

# signed distance a - b in [-2^31, 2^31) (the half-way point reads -2^31)
cdef inline int64_t seq_diff(uint32_t a, uint32_t b) noexcept nogil:
    return <int64_t><int32_t>(a - b)

# a <= b <= c walking forward from a (Linux's between(b, a, c)); any arc length
cdef inline bint seq_between(uint32_t a, uint32_t b, uint32_t c) noexcept nogil:
    return <uint32_t>(b - a) <= <uint32_t>(c - a)

# start <= s < start + size (size up to 2^32-1; size 0 holds nothing)
cdef inline bint seq_in_window(uint32_t s, uint32_t start, uint32_t size) noexcept nogil:
    return <uint32_t>(s - start) < size

# RFC 9293 3.10.7.4: is a segment (seq, length in sequence space) acceptable to a
# receiver expecting rcv_nxt with window rcv_wnd? The four cases of the table.
cdef inline bint seq_acceptable(uint32_t seg_seq, uint32_t seg_len,
                                uint32_t rcv_nxt, uint32_t rcv_wnd) noexcept nogil:
    if seg_len == 0:
        if rcv_wnd == 0:
            return seg_seq == rcv_nxt
        return seq_in_window(seg_seq, rcv_nxt, rcv_wnd)
    if rcv_wnd == 0:
        return False
    return (seq_in_window(seg_seq, rcv_nxt, rcv_wnd) or
            seq_in_window(<uint32_t>(seg_seq + seg_len - 1u), rcv_nxt, rcv_wnd))
