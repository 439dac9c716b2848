# cython: language_level=3
"""The C half of `fasttcp.capture.transmit.Transmitter`: batches of packets out of an
AF_PACKET socket through a PACKET_TX_RING or sendmmsg.

Theory of operation. `Transmitter` opens and binds the socket and reads the interface
(index, MAC, MTU) in Python; a `TxEngine` takes the socket's descriptor and owns what
the hot path needs: the mapped TPACKET_V2 ring or the sendmmsg message arrays, the
Ethernet header template and the counters. `send` checks the batch whole (every span
inside the buffer) and then runs tx_impl.h's loop without the GIL: each packet is
classified (IP version, size), copied once into a ring frame (or pointed at by an
iovec), and handed to the kernel. A system call interrupted by a signal returns to
Python, runs the handlers (Ctrl-C raises there) and resumes at the packet it
stopped at.

Why TPACKET_V2 and not V3 for the ring: V3's additions (variable-size frames in
blocks, block retire timeouts) are RX features. A V3 TX ring (Linux 4.11 and later)
is still a ring of fixed-size frames, with a tpacket3_hdr in each, and the kernel
rejects V3 TX rings with a tp_retire_blk_tov or a private area set; V2 does the same
work on every kernel since 2.6.31 with a smaller frame header.
"""
from cpython.buffer cimport PyBuffer_Release
from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport EINTR
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memset

from fasttcp.wire.buffers cimport ft_get_bytes
from fasttcp.wire.spans cimport ft_first_bad_span

import os

from fasttcp.errors import UsageError, span_outside_buffer
from fasttcp.wire.arrays import as_int64

__all__ = ["TxEngine", "ETH_HEADER_LEN", "DATA_OFFSET", "BATCH_MSGS", "STAT_NAMES"]

cdef extern from "tx_impl.h" nogil:
    enum:
        FTX_ETH_HLEN
        FTX_BATCH_MSGS
        FTX_DONE
        FTX_BAD_SPAN
        FTX_ERRNO
        FTX_STALLED
    size_t FTX_DATA_OFFSET
    ctypedef struct ftx_stats_t:
        uint64_t sent, bytes, too_big, too_short, not_ip, dropped, wrong_format, would_block
        uint64_t syscalls, ring_full, retried
    ctypedef struct ftx_rule_t:
        uint8_t header[14]
        int add_header
        uint32_t max_frame
    ctypedef struct ftx_ring_t:
        int fd
        uint8_t *map
        uint32_t frame_nr
    ctypedef struct ftx_mmsg_t:
        pass
    int ftx_ring_open(ftx_ring_t *r, int fd, uint32_t block_size, uint32_t block_nr, uint32_t frame_size,
                      int qdisc_bypass)
    void ftx_ring_close(ftx_ring_t *r)
    int ftx_qdisc_bypass(int fd)
    int64_t ftx_ring_send(ftx_ring_t *r, const ftx_rule_t *rule, const uint8_t *buf, uint64_t size,
                          const int64_t *off, const int64_t *len, int64_t start, int64_t n,
                          ftx_stats_t *st, int *why, int *err)
    int ftx_ring_flush(ftx_ring_t *r, ftx_stats_t *st)
    int64_t ftx_mmsg_send(int fd, ftx_mmsg_t *m, const ftx_rule_t *rule, const uint8_t *buf, uint64_t size,
                          const int64_t *off, const int64_t *len, int64_t start, int64_t n,
                          ftx_stats_t *st, int *why, int *err)

ETH_HEADER_LEN = FTX_ETH_HLEN
DATA_OFFSET = FTX_DATA_OFFSET
"""Where a frame's bytes start inside a TX ring frame (packet_mmap.rst: TPACKET2_HDRLEN -
sizeof(struct sockaddr_ll)); a frame of frame_bytes carries frame_bytes - DATA_OFFSET."""
BATCH_MSGS = FTX_BATCH_MSGS
STAT_NAMES = ("sent", "bytes", "too_big", "too_short", "not_ip", "dropped", "wrong_format", "would_block",
              "syscalls", "ring_full", "retried")


cdef class TxEngine:
    """The hot half of one transmit socket: a PACKET_TX_RING (`method` "ring") or the
    sendmmsg arrays ("sendmmsg") over the bound AF_PACKET socket `fd` (which the caller
    keeps open until `close`), the Ethernet header (`dst_mac`, `src_mac`) and the
    largest frame `max_frame` (the interface's MTU plus the header).

    Raises OSError as setsockopt/mmap do (EINVAL for a ring geometry the kernel refuses)."""

    cdef ftx_ring_t ring
    cdef ftx_mmsg_t *mmsg
    cdef ftx_rule_t rule
    cdef ftx_stats_t st
    cdef int fd
    cdef bint use_ring
    cdef bint busy
    cdef bint opened                  # (False until __init__ succeeds, and after close)
    cdef readonly str method
    cdef readonly uint32_t frame_nr

    def __init__(self, int fd, str method, bytes dst_mac, bytes src_mac, uint32_t max_frame, *,
                 uint32_t block_size=0, uint32_t block_nr=0, uint32_t frame_size=0, bint qdisc_bypass=False):
        cdef int rc
        if self.opened or self.ring.map != NULL or self.mmsg != NULL:
            raise UsageError("a TxEngine is initialised once")
        if method not in ("ring", "sendmmsg"):
            raise UsageError(f"method must be 'ring' or 'sendmmsg', got {method!r}")
        if len(dst_mac) != 6 or len(src_mac) != 6:
            raise UsageError("MAC addresses are 6 bytes")
        memset(&self.ring, 0, sizeof(self.ring))
        memset(&self.st, 0, sizeof(self.st))
        memset(&self.rule, 0, sizeof(self.rule))
        memcpy(self.rule.header, <const char *>dst_mac, 6)
        memcpy(&self.rule.header[6], <const char *>src_mac, 6)
        self.fd = fd
        self.method = method
        self.use_ring = method == "ring"
        if self.use_ring:
            if frame_size <= FTX_DATA_OFFSET + FTX_ETH_HLEN or block_size < frame_size or block_nr == 0:
                raise UsageError("a ring needs frame_size > DATA_OFFSET + 14, block_size >= frame_size, "
                                 "block_nr > 0")
            with nogil:
                rc = ftx_ring_open(&self.ring, fd, block_size, block_nr, frame_size, qdisc_bypass)
            if rc < 0:
                ftx_ring_close(&self.ring)
                raise OSError(-rc, f"PACKET_TX_RING: {os.strerror(-rc)}")
            self.frame_nr = self.ring.frame_nr
            # (what fits in a frame: the kernel's own size_max, tpacket_snd)
            max_frame = min(max_frame, frame_size - <uint32_t>FTX_DATA_OFFSET)
        else:
            if qdisc_bypass:
                rc = ftx_qdisc_bypass(fd)
                if rc < 0:
                    raise OSError(-rc, f"PACKET_QDISC_BYPASS: {os.strerror(-rc)}")
            self.mmsg = <ftx_mmsg_t *>calloc(1, sizeof(ftx_mmsg_t))
            if self.mmsg == NULL:
                raise MemoryError()
        self.rule.max_frame = max_frame
        self.opened = True

    def __dealloc__(self):
        ftx_ring_close(&self.ring)
        free(self.mmsg)
        self.mmsg = NULL

    @property
    def max_frame(self):
        """The largest frame sent (Ethernet header included); longer ones are too_big."""
        return self.rule.max_frame

    def send(self, buffer, offsets, lengths, bint add_header):
        """Send `buffer[offsets[i]:offsets[i]+lengths[i]]` for each i: IP packets behind
        an Ethernet header of ours (`add_header`) or whole frames. Returns how many were
        handed to the kernel; skipped ones are counted in `stats()`.

        Raises UsageError (and sends nothing) for offsets/lengths that are not 1-D
        integer arrays of one length, a span outside the buffer (the first is named),
        after close, or while another call runs; OSError as the kernel says (ENETDOWN:
        the interface went down, ENXIO: it went away, ENOBUFS: the device's queue kept
        refusing a ring's frames for about a second; they stay queued)."""
        cdef Py_buffer view
        cdef int why = FTX_DONE, err = 0
        cdef int64_t start = 0, stop, n
        cdef uint64_t before
        off = as_int64(offsets, "offsets")
        ln = as_int64(lengths, "lengths")
        if off.ndim != 1 or off.shape != ln.shape:
            raise UsageError(f"offsets and lengths must be 1-D and the same length ({off.shape} vs {ln.shape})")
        n = off.shape[0]
        cdef const int64_t[::1] o = off
        cdef const int64_t[::1] l = ln
        self._claim()
        before = self.st.sent
        try:
            ft_get_bytes(buffer, &view, "buffer")
            try:
                if n == 0:
                    return 0
                with nogil:
                    stop = ft_first_bad_span(&o[0], &l[0], n, <uint64_t>view.len)
                if stop >= 0:
                    raise span_outside_buffer(stop, off[stop], ln[stop], view.len)
                self.rule.add_header = add_header
                while True:
                    with nogil:
                        if self.use_ring:
                            stop = ftx_ring_send(&self.ring, &self.rule, <const uint8_t *>view.buf,
                                                 <uint64_t>view.len, &o[0], &l[0], start, n, &self.st, &why, &err)
                        else:
                            stop = ftx_mmsg_send(self.fd, self.mmsg, &self.rule, <const uint8_t *>view.buf,
                                                 <uint64_t>view.len, &o[0], &l[0], start, n, &self.st, &why, &err)
                    if why == FTX_ERRNO and err == EINTR:
                        PyErr_CheckSignals()            # Ctrl-C raises here
                        start = stop
                        continue
                    break
                if why == FTX_BAD_SPAN:
                    raise UsageError(f"packet {stop}: offsets or lengths were rewritten (by another thread) "
                                     f"while send ran, to a span outside the buffer")
                if why == FTX_ERRNO:
                    raise OSError(err, os.strerror(err))
            finally:
                PyBuffer_Release(&view)
        finally:
            self.busy = False
        return self.st.sent - before

    def flush(self):
        """Wait until the kernel has sent every frame handed to it (a ring's frames are all
        free again). Raises OSError as send() does."""
        cdef int err = 0
        if not self.use_ring:
            return
        self._claim()
        try:
            while True:
                with nogil:
                    err = ftx_ring_flush(&self.ring, &self.st)
                if err == EINTR:
                    PyErr_CheckSignals()
                    continue
                break
            if err:
                raise OSError(err, os.strerror(err))
        finally:
            self.busy = False

    def stats(self):
        """The counters (STAT_NAMES) as a dict of ints."""
        cdef ftx_stats_t s = self.st
        return {"sent": s.sent, "bytes": s.bytes, "too_big": s.too_big, "too_short": s.too_short,
                "not_ip": s.not_ip, "dropped": s.dropped, "wrong_format": s.wrong_format,
                "would_block": s.would_block, "syscalls": s.syscalls, "ring_full": s.ring_full,
                "retried": s.retried}

    def close(self):
        """Unmap the ring (the caller closes the socket afterwards). Idempotent."""
        if self.busy:
            raise UsageError("close() while a send is running")
        self.opened = False
        ftx_ring_close(&self.ring)
        free(self.mmsg)
        self.mmsg = NULL

    cdef _claim(self):
        if not self.opened:
            raise UsageError("the transmitter is closed")
        if self.busy:
            raise UsageError("another call is using this transmitter")
        self.busy = True
