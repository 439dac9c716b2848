# cython: language_level=3
"""Counts over FLOW_DTYPE rows in one pass of C: what `fasttcp.analyze`'s summary folds in
for every batch of finished connections.

Why C: the summary took these counts with numpy -- np.unique for the conn_states, two
np.char.find over the histories for the resets, a masked copy for each RTT -- 110-230 ns
a connection, measured on the short-connection capture of `fasttcp bench` (100k
connections: 11-23 ms of a 130 ms run), all of it on the thread that also reads the
capture when several trackers run. One pass over the 176-byte rows does it in 15-23 ns
a row, the call's own cost included (100 batches of 1,000 rows: 1.5-2.3 ms).
"""
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memchr, memcpy

import numpy as np

from fasttcp.errors import UsageError
from fasttcp.tracker.tracker import FLOW_DTYPE

__all__ = ["RowTally", "tally_rows"]

# where the fields read here sit in a row (FLOW_DTYPE's layout, read at import)
cdef Py_ssize_t _ROW = FLOW_DTYPE.itemsize
cdef Py_ssize_t _STATE = FLOW_DTYPE.fields["conn_state"][1]
cdef Py_ssize_t _HISTORY = FLOW_DTYPE.fields["history"][1]
cdef Py_ssize_t _ORIG_RETRANS = FLOW_DTYPE.fields["orig_retrans"][1]
cdef Py_ssize_t _RESP_RETRANS = FLOW_DTYPE.fields["resp_retrans"][1]
cdef Py_ssize_t _RTT1 = FLOW_DTYPE.fields["rtt_syn_synack"][1]
cdef Py_ssize_t _RTT2 = FLOW_DTYPE.fields["rtt_synack_ack"][1]
cdef Py_ssize_t _HISTORY_LEN = FLOW_DTYPE.fields["history"][0].itemsize
cdef uint32_t _UNSET = 0xFFFFFFFF          # an RTT the tracker did not measure
_READ = ("conn_state", "orig_retrans", "resp_retrans", "rtt_syn_synack", "rtt_synack_ack")
if [FLOW_DTYPE.fields[k][0] for k in _READ] != [np.dtype(np.uint8)] + [np.dtype(np.uint32)] * 4:
    raise ImportError("fasttcp.rows.tally: FLOW_DTYPE's counters are not the types read here")


cdef inline uint32_t _u32(const uint8_t *p) noexcept nogil:
    cdef uint32_t v
    memcpy(&v, p, 4)
    return v


class RowTally:
    """What `tally_rows` counted in a batch of rows.

    ``conn_states``: connections by conn_state code (int64, 256 entries: index = code);
    ``resets``: connections whose history has an ``R`` or ``r`` (a RST from either side);
    ``retransmissions``: retransmitted segments, both directions; ``rtt_syn_synack`` and
    ``rtt_synack_ack``: the measured handshake RTTs in microseconds (uint32, rows without
    one left out), in row order."""

    __slots__ = ("conn_states", "resets", "retransmissions", "rtt_syn_synack", "rtt_synack_ack")

    def __init__(self, conn_states: np.ndarray, resets: int, retransmissions: int,
                 rtt_syn_synack: np.ndarray, rtt_synack_ack: np.ndarray) -> None:
        self.conn_states = conn_states
        self.resets = resets
        self.retransmissions = retransmissions
        self.rtt_syn_synack = rtt_syn_synack
        self.rtt_synack_ack = rtt_synack_ack


def tally_rows(rows) -> RowTally:
    """Count a batch of finished connections (a 1-D FLOW_DTYPE array, any stride): see
    `RowTally`. UsageError for anything else."""
    if not isinstance(rows, np.ndarray) or rows.dtype != FLOW_DTYPE:
        got = f"dtype {rows.dtype}" if isinstance(rows, np.ndarray) else type(rows).__name__
        raise UsageError(f"tally_rows takes a FLOW_DTYPE array (Tracker.finished(), close(), ...), got {got}")
    if rows.ndim != 1:
        raise UsageError(f"tally_rows takes a 1-D array of rows, got {rows.ndim} dimensions (shape {rows.shape})")
    # a strided view (rows[::2]) is copied once; the tracker's batches are contiguous.
    # The rows are counted from the bytes copied, not from `rows.shape` (an ndarray
    # subclass can answer that differently each time it is asked)
    cdef const uint8_t[::1] raw = np.ascontiguousarray(rows, dtype=FLOW_DTYPE).view(np.uint8).reshape(-1)
    cdef Py_ssize_t n = raw.shape[0] // _ROW
    states = np.zeros(256, np.int64)
    rtt1 = np.empty(n, np.uint32)
    rtt2 = np.empty(n, np.uint32)
    cdef long long[::1] st = states
    cdef uint32_t[::1] r1 = rtt1
    cdef uint32_t[::1] r2 = rtt2
    cdef const uint8_t *row
    cdef Py_ssize_t i, n1 = 0, n2 = 0
    cdef Py_ssize_t resets = 0
    cdef uint64_t retrans = 0
    cdef uint32_t v
    if n:
        with nogil:
            for i in range(n):
                row = &raw[0] + i * _ROW
                st[row[_STATE]] += 1
                # the history is NUL-padded: no byte past its end is R or r
                if memchr(row + _HISTORY, c'R', _HISTORY_LEN) != NULL \
                        or memchr(row + _HISTORY, c'r', _HISTORY_LEN) != NULL:
                    resets += 1
                retrans += <uint64_t>_u32(row + _ORIG_RETRANS) + _u32(row + _RESP_RETRANS)
                v = _u32(row + _RTT1)
                if v != _UNSET:
                    r1[n1] = v
                    n1 += 1
                v = _u32(row + _RTT2)
                if v != _UNSET:
                    r2[n2] = v
                    n2 += 1
    # (a small share of a large batch is copied out rather than kept with its slack)
    return RowTally(states, resets, retrans, rtt1[:n1].copy() if n1 < n // 2 else rtt1[:n1],
                    rtt2[:n2].copy() if n2 < n // 2 else rtt2[:n2])
