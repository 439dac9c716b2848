# cython: language_level=3
"""Pack a batch of packets into classic pcap records in one buffer (the write side of
the capture edge, for `fasttcp analyze --interface --write-pcap`).

C because it runs on every packet a live capture keeps: a record header and a copy
per packet, without the GIL and without a Python object per packet, so keeping the
capture costs a memcpy, not an interpreter round trip. The file header and the file
itself stay with `fasttcp.capture.writer.PcapWriter`.

Every span is checked against the buffer before anything is written (the batch may
come from a caller), so a bad span is a UsageError naming the packet, never a read
outside the buffer.
"""
from libc.stdint cimport uint8_t, uint32_t, int64_t
from libc.string cimport memcpy

import numpy as np
from fasttcp.errors import UsageError

__all__ = ["pack_records", "RECORD_HEADER_BYTES"]

# classic pcap record header (libpcap's pcap_sf_pkthdr), little-endian as PcapWriter writes
cdef enum:
    REC_TS_SEC = 0
    REC_TS_FRAC = 4                   # microseconds, or nanoseconds in a nanosecond file
    REC_CAPLEN = 8
    REC_WIRELEN = 12
    REC_HDR = 16
    NS_PER_S = 1000000000
    NS_PER_US = 1000

RECORD_HEADER_BYTES = REC_HDR
_MAX_SECONDS = 0xFFFFFFFF            # the record's unsigned 32-bit seconds field
_MAX_LEN = 0xFFFFFFFF                # and its 32-bit lengths


cdef inline void _put_u32le(uint8_t *p, uint32_t v) noexcept nogil:
    p[0] = v & 0xFF
    p[1] = (v >> 8) & 0xFF
    p[2] = (v >> 16) & 0xFF
    p[3] = (v >> 24) & 0xFF


cdef object _own_int64(object v, str name):
    """A private 1-D int64 copy of integers ``v``. A copy, because the spans are checked
    first and copied from later without the GIL: another thread changing the caller's
    array in between would move a checked span outside the buffer. Floats (truncated to
    another offset), bools and uint64 past 2**63 (wrapped negative) are refused."""
    a = np.asarray(v)
    if a.ndim != 1:
        raise UsageError(f"{name} must be 1-D, got shape {a.shape}")
    if a.dtype.kind not in "iu" and a.shape[0]:
        raise UsageError(f"{name} must be integers, got dtype {a.dtype}")
    if a.dtype == np.uint64 and a.shape[0] and a.max() > 0x7fffffffffffffff:
        raise UsageError(f"{name} must fit int64, got {int(a.max())}")
    return np.array(a, dtype=np.int64)


def pack_records(const uint8_t[::1] buffer, offsets, lengths, ts_ns, wire_lengths, select=None,
                 bint nanosecond=True, Py_ssize_t snaplen=262144, out=None):
    """The pcap records of packets ``buffer[offsets[i]:offsets[i]+lengths[i]]`` (those
    with ``select[i]`` true, all without `select`), timestamps `ts_ns` (int64 ns since
    the epoch, cut to microseconds unless `nanosecond`) and original lengths
    `wire_lengths`, cut to `snaplen` bytes: ``(records, count)``, the records as one
    uint8 array ready for a file's write -- a new one, or the first bytes of `out` (a
    writable uint8 buffer, reused by a caller that packs block after block: a fresh
    array each time is fresh memory for an allocator that hands large blocks back to
    the kernel, as Dask's workers' does).

    Raises UsageError, before packing anything, for arrays of different lengths, a
    span outside the buffer, a timestamp outside a record's 0..2**32-1 seconds, a
    wire length shorter than the captured bytes, a snaplen below 1, or an `out` that
    is not a writable buffer large enough for the records."""
    cdef int64_t[::1] offs = _own_int64(offsets, "offsets")
    cdef int64_t[::1] lens = _own_int64(lengths, "lengths")
    cdef int64_t[::1] ts = _own_int64(ts_ns, "ts_ns")
    cdef int64_t[::1] wire = _own_int64(wire_lengths, "wire_lengths")
    cdef Py_ssize_t n = offs.shape[0], i, k = 0, total = 0
    if lens.shape[0] != n or ts.shape[0] != n or wire.shape[0] != n:
        raise UsageError("offsets, lengths, ts_ns and wire_lengths must have one length")
    if snaplen < 1:
        raise UsageError(f"snaplen must be at least 1, got {snaplen}")
    cdef uint8_t[::1] sel
    if select is None:
        sel = np.ones(n, dtype=np.uint8)
    else:
        select = np.array(select, dtype=np.bool_)        # a copy, as in _own_int64
        if select.ndim != 1 or select.shape[0] != n:
            raise UsageError("select must have one entry per packet")
        sel = select.view(np.uint8)
    cdef Py_ssize_t size = buffer.shape[0]
    for i in range(n):
        if not sel[i]:
            continue
        if offs[i] < 0 or lens[i] < 0 or offs[i] > size or lens[i] > size - offs[i]:
            raise UsageError(f"packet {i}: span {offs[i]}+{lens[i]} outside the buffer of {size} bytes")
        if ts[i] < 0 or ts[i] // NS_PER_S > _MAX_SECONDS:
            raise UsageError(f"packet {i}: timestamp {ts[i]} ns outside a pcap record's range")
        if wire[i] < lens[i] or wire[i] > _MAX_LEN:
            raise UsageError(f"packet {i}: wire length {wire[i]} below its {lens[i]} captured bytes")
        total += REC_HDR + min(lens[i], snaplen)
        k += 1
    cdef uint8_t[::1] dst
    if out is None:
        out = np.empty(total, dtype=np.uint8)
        dst = out
    else:
        try:
            dst = out
        except (TypeError, ValueError, BufferError) as e:     # not bytes, read-only, not contiguous
            raise UsageError(f"out must be a writable contiguous uint8 buffer: {e}") from None
        if dst.shape[0] < total:
            raise UsageError(f"out holds {dst.shape[0]} bytes, the records need {total}")
        if total and size and (<const uint8_t *>&dst[0] < &buffer[0] + size
                               and &buffer[0] < <const uint8_t *>&dst[0] + total):
            raise UsageError("out overlaps the packets' buffer")
        out = np.asarray(dst)[:total]
    cdef const uint8_t *src = &buffer[0] if size else NULL     # only zero-length spans then
    if total:
        with nogil:
            _pack(src, &offs[0], &lens[0], &ts[0], &wire[0], &sel[0], n, nanosecond, snaplen, &dst[0])
    return out, k


cdef void _pack(const uint8_t *buf, const int64_t *offs, const int64_t *lens, const int64_t *ts,
                const int64_t *wire, const uint8_t *sel, Py_ssize_t n, bint nanosecond,
                Py_ssize_t snaplen, uint8_t *out) noexcept nogil:
    """Write the selected records one after another at `out` (sized by the caller)."""
    cdef Py_ssize_t i, cap
    cdef int64_t frac
    for i in range(n):
        if not sel[i]:
            continue
        cap = lens[i] if lens[i] < snaplen else snaplen
        frac = ts[i] % NS_PER_S
        _put_u32le(out + REC_TS_SEC, <uint32_t>(ts[i] // NS_PER_S))
        _put_u32le(out + REC_TS_FRAC, <uint32_t>(frac if nanosecond else frac // NS_PER_US))
        _put_u32le(out + REC_CAPLEN, <uint32_t>cap)
        _put_u32le(out + REC_WIRELEN, <uint32_t>wire[i])
        if cap:
            memcpy(out + REC_HDR, buf + offs[i], cap)
        out += REC_HDR + cap
