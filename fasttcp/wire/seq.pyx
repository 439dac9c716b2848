# cython: language_level=3
"""Python face of fasttcp.seq: every function takes Python ints or numpy integer arrays.

Scalars go straight to the inline C helpers of seq.pxd. Arrays are broadcast against
each other, checked to lie in 0..2^32-1 (a negative int64 must not silently wrap), and
run through one C loop per call with the GIL released.

Every function raises UsageError for a value outside 0..2^32-1, a non-integer (a
float, a bool, a string) and arrays that do not broadcast together.
"""
cimport cython
cimport numpy as cnp
from libc.stdint cimport uint8_t, uint32_t, int64_t

import numpy as np

from fasttcp.wire.seq cimport (seq_lt, seq_le, seq_gt, seq_ge, seq_add, seq_diff,
                               seq_between, seq_in_window, seq_acceptable)
from fasttcp.errors import UsageError

cnp.import_array()

__all__ = ["lt", "le", "gt", "ge", "add", "diff", "between", "in_window", "acceptable", "HALF"]

HALF = 1 << 31
"""Distance at which two sequence numbers are incomparable (all predicates False)."""

cdef enum Op:
    OP_LT, OP_LE, OP_GT, OP_GE, OP_ADD, OP_DIFF, OP_BETWEEN, OP_IN_WINDOW, OP_ACCEPTABLE


cdef inline uint32_t _u32(object v, str name) except? 0xffffffff:
    if v < 0 or v > 0xffffffff:
        raise UsageError(f"{name} must be in 0..2**32-1, got {v}")
    return <uint32_t>v


cdef object _as_u32_array(object v, str name):
    arr = np.asarray(v)
    if arr.dtype == np.uint32:
        return arr
    if arr.dtype.kind not in "iu":
        raise UsageError(f"{name} must be an int or an integer array, not {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() > 0xffffffff):
        raise UsageError(f"{name} has values outside 0..2**32-1")
    return arr.astype(np.uint32)


cdef bint _all_int(tuple args):
    for a in args:
        if type(a) is not int:
            return False
    return True


@cython.boundscheck(False)
@cython.wraparound(False)
cdef object _vector(int op, tuple args, tuple names):
    try:
        arrays = np.broadcast_arrays(*[_as_u32_array(arg, nm) for arg, nm in zip(args, names)])
    except ValueError as exc:             # shapes numpy cannot broadcast together
        raise UsageError(f"{', '.join(names)}: {exc}") from None
    shape = arrays[0].shape
    flat = [np.ascontiguousarray(arr).reshape(-1) for arr in arrays]
    cdef Py_ssize_t n = flat[0].shape[0], i
    cdef const uint32_t[::1] a = flat[0]
    cdef const uint32_t[::1] b = flat[1]
    cdef const uint32_t[::1] c = flat[2] if len(flat) > 2 else flat[0]
    cdef const uint32_t[::1] d = flat[3] if len(flat) > 3 else flat[0]
    if op == OP_ADD:
        out = np.empty(n, dtype=np.uint32)
    elif op == OP_DIFF:
        out = np.empty(n, dtype=np.int64)
    else:
        out = np.empty(n, dtype=np.bool_)
    cdef uint32_t[::1] o32
    cdef int64_t[::1] o64
    cdef uint8_t[::1] ob
    if op == OP_ADD:
        o32 = out
        with nogil:
            for i in range(n):
                o32[i] = seq_add(a[i], b[i])
    elif op == OP_DIFF:
        o64 = out
        with nogil:
            for i in range(n):
                o64[i] = seq_diff(a[i], b[i])
    else:
        ob = out.view(np.uint8)
        with nogil:
            if op == OP_LT:
                for i in range(n):
                    ob[i] = seq_lt(a[i], b[i])
            elif op == OP_LE:
                for i in range(n):
                    ob[i] = seq_le(a[i], b[i])
            elif op == OP_GT:
                for i in range(n):
                    ob[i] = seq_gt(a[i], b[i])
            elif op == OP_GE:
                for i in range(n):
                    ob[i] = seq_ge(a[i], b[i])
            elif op == OP_BETWEEN:
                for i in range(n):
                    ob[i] = seq_between(a[i], b[i], c[i])
            elif op == OP_IN_WINDOW:
                for i in range(n):
                    ob[i] = seq_in_window(a[i], b[i], c[i])
            else:
                for i in range(n):
                    ob[i] = seq_acceptable(a[i], b[i], c[i], d[i])
    return out.reshape(shape)


def lt(a, b):
    """a < b in sequence space: b is 1..2^31-1 ahead of a. False at distance 2^31."""
    if type(a) is int and type(b) is int:
        return seq_lt(_u32(a, "a"), _u32(b, "b"))
    return _vector(OP_LT, (a, b), ("a", "b"))


def le(a, b):
    """a <= b in sequence space (a == b, or a < b)."""
    if type(a) is int and type(b) is int:
        return seq_le(_u32(a, "a"), _u32(b, "b"))
    return _vector(OP_LE, (a, b), ("a", "b"))


def gt(a, b):
    """a > b in sequence space (b < a). False at distance 2^31."""
    if type(a) is int and type(b) is int:
        return seq_gt(_u32(a, "a"), _u32(b, "b"))
    return _vector(OP_GT, (a, b), ("a", "b"))


def ge(a, b):
    """a >= b in sequence space."""
    if type(a) is int and type(b) is int:
        return seq_ge(_u32(a, "a"), _u32(b, "b"))
    return _vector(OP_GE, (a, b), ("a", "b"))


def add(a, n):
    """(a + n) mod 2^32; n is 0..2^32-1 (to step back, add 2^32 - k)."""
    if type(a) is int and type(n) is int:
        return seq_add(_u32(a, "a"), _u32(n, "n"))
    return _vector(OP_ADD, (a, n), ("a", "n"))


def diff(a, b):
    """Signed distance a - b in [-2^31, 2^31). At exactly 2^31 apart it is -2^31 both
    ways; use the predicates (which say "incomparable") rather than the sign there."""
    if type(a) is int and type(b) is int:
        return seq_diff(_u32(a, "a"), _u32(b, "b"))
    return _vector(OP_DIFF, (a, b), ("a", "b"))


def between(a, b, c):
    """a <= b <= c walking forward from a to c (inclusive at both ends)."""
    if _all_int((a, b, c)):
        return seq_between(_u32(a, "a"), _u32(b, "b"), _u32(c, "c"))
    return _vector(OP_BETWEEN, (a, b, c), ("a", "b", "c"))


def in_window(seq, start, size):
    """start <= seq < start + size in sequence space (size 0 contains nothing)."""
    if _all_int((seq, start, size)):
        return seq_in_window(_u32(seq, "seq"), _u32(start, "start"), _u32(size, "size"))
    return _vector(OP_IN_WINDOW, (seq, start, size), ("seq", "start", "size"))


def acceptable(seg_seq, seg_len, rcv_nxt, rcv_wnd):
    """RFC 9293 3.10.7.4 segment acceptability. ``seg_len`` counts sequence space
    (payload plus 1 for SYN, 1 for FIN); the four cases:

    ====== ====== =====================================================
    len    window test
    ====== ====== =====================================================
    0      0      seg_seq == rcv_nxt
    0      >0     rcv_nxt <= seg_seq < rcv_nxt + rcv_wnd
    >0     0      not acceptable
    >0     >0     first or last octet (seg_seq + len - 1) in the window
    ====== ====== =====================================================
    """
    if _all_int((seg_seq, seg_len, rcv_nxt, rcv_wnd)):
        return seq_acceptable(_u32(seg_seq, "seg_seq"), _u32(seg_len, "seg_len"),
                              _u32(rcv_nxt, "rcv_nxt"), _u32(rcv_wnd, "rcv_wnd"))
    return _vector(OP_ACCEPTABLE, (seg_seq, seg_len, rcv_nxt, rcv_wnd),
                   ("seg_seq", "seg_len", "rcv_nxt", "rcv_wnd"))
