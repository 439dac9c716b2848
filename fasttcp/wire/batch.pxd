# cython: language_level=3
"""Batch row layout: one C struct per packet, viewed from Python as a numpy record.

The numpy dtype in batch.pyx (SEGMENT_DTYPE) mirrors this struct field for field; a
test checks offsets and itemsize, so C code can write rows directly.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from fasttcp.wire.defs cimport pkt_t, parse_err_t

ctypedef struct seg_row_t:
    uint32_t seq
    uint32_t ack
    uint32_t tsval
    uint32_t tsecr
    uint32_t payload_offset   # absolute offset of the payload in the batch buffer
    uint32_t payload_len
    uint32_t error_offset     # byte offset (within the packet) of the field that failed
    uint16_t src_port
    uint16_t dst_port
    uint16_t flags
    uint16_t window
    uint16_t urgent
    uint16_t checksum
    uint16_t mss
    uint8_t verdict           # fasttcp.Verdict
    uint8_t version
    uint8_t ttl
    uint8_t header_len        # 0 when the TCP header could not be read
    uint8_t wscale
    uint8_t opt_flags         # OPT_HAS_* bits (fasttcp.OptionBits)
    uint8_t sack_count
    uint8_t error_field       # FT_FIELD_* code: fasttcp.errors.FIELD_NAMES[error_field]
    uint8_t src[16]
    uint8_t dst[16]

# Parse n packets of buf (size bytes) into rows, each row with its verdict; returns -1,
# or the first packet whose span was outside the buffer when read (then parsed as empty).
cdef Py_ssize_t ft_parse_batch(const uint8_t *buf, uint64_t size, const int64_t *offsets,
                               const int64_t *lengths, Py_ssize_t n, seg_row_t *rows,
                               bint verify) noexcept nogil
