# cython: language_level=3
"""The TPACKET_V3 receive ring: an AF_PACKET socket, its mmap'd ring and the block walk.

This is the C half of `fasttcp.capture.live.LiveCapture`, which validates arguments,
picks the filter and raises the exceptions; `RxRing` only wraps the system calls of
ring_impl.h (each returns an errno, raised here as OSError naming the interface) and the
walk of the handed-over blocks into CaptureBatch columns without the GIL.

The ring's memory is a `RingMemory` object that unmaps it when the last reference goes:
a batch whose buffer is a view of the ring keeps the mapping (not the packets: the
kernel refills a block once it is handed back) alive, so no view can outlive its memory.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t

from fasttcp.capture.scanner cimport ft_strip_link
from fasttcp.wire.buffers cimport ft_export_bytes

import os

import numpy as np

from fasttcp.errors import UsageError

__all__ = ["RxRing", "RingMemory", "walk_blocks", "BPF_MAX_INSNS", "TPACKET3_HDRLEN"]


cdef extern from "ring_impl.h" nogil:
    ctypedef struct ftr_walk_stats_t:
        uint64_t blocks
        uint64_t bad_blocks
        uint64_t csum_completed
        uint64_t bytes
    ctypedef struct ftr_out_t:
        int64_t *offsets
        int64_t *lengths
        int64_t *ts_ns
        uint32_t *wire_lengths
        uint8_t *verdicts
        uint8_t *snapped
        int64_t *frames
        int64_t cap
    ctypedef int (*ftr_strip_fn)(uint32_t, const uint8_t *, uint32_t, uint32_t *) noexcept nogil
    ctypedef struct ftr_ring_t:
        uint8_t *ring
        uint64_t ring_bytes
        uint32_t block_bytes
        uint32_t block_count
        uint32_t cursor
        uint32_t held_first
        uint32_t held_count
        uint32_t linktype
        int from_net
    struct sock_filter:
        uint16_t code
        uint8_t jt
        uint8_t jf
        uint32_t k
    int TPACKET3_HDRLEN_C "TPACKET3_HDRLEN"
    int ftr_block_ready(const ftr_ring_t *r, uint32_t i)
    void ftr_release(ftr_ring_t *r)
    uint32_t ftr_ready_blocks(const ftr_ring_t *r, uint64_t *max_pkts)
    int64_t ftr_walk(ftr_ring_t *r, uint32_t nblocks, ftr_strip_fn strip, ftr_out_t *out,
                     int64_t *frame, ftr_walk_stats_t *st)
    void ftr_copy_out(const uint8_t *src, uint8_t *dst, int64_t *offsets, const int64_t *lengths, int64_t n)
    int ftr_open(int *fd)
    int ftr_hwaddr(int fd, const char *ifname, uint16_t *arphrd, uint8_t *mac)
    int ftr_setup_ring(int fd, ftr_ring_t *r, uint32_t block_bytes, uint32_t block_count,
                       uint32_t frame_bytes, uint32_t timeout_ms)
    int ftr_attach_filter(int fd, sock_filter *prog, uint16_t n)
    int ftr_ignore_outgoing(int fd)
    int ftr_promisc(int fd, int ifindex)
    int ftr_bind(int fd, int ifindex)
    int ftr_fanout(int fd, uint32_t mode, int unique, uint32_t *group)
    int ftr_stats(int fd, uint64_t *packets, uint64_t *drops, uint64_t *freeze_q)
    int ftr_take_error(int fd, int *err)
    void ftr_unmap(ftr_ring_t *r)

cdef extern from "<unistd.h>" nogil:
    int close(int fd)

BPF_MAX_INSNS = 4096
"""The kernel's limit on a classic BPF program (BPF_MAXINSNS)."""
TPACKET3_HDRLEN = TPACKET3_HDRLEN_C
"""Bytes a frame's slot needs in front of its packet: the header and a sockaddr_ll."""


cdef class RingMemory:
    """The mmap'd ring as a writable buffer (numpy views of it keep it mapped); it is
    unmapped when the last reference is dropped."""
    cdef ftr_ring_t mapping
    cdef Py_ssize_t shape[1]
    cdef Py_ssize_t strides[1]

    def __len__(self):
        return <Py_ssize_t>self.mapping.ring_bytes

    def __getbuffer__(self, Py_buffer *view, int flags):
        ft_export_bytes(view, self, self.mapping.ring, <Py_ssize_t>self.mapping.ring_bytes, self.shape, self.strides)

    def __releasebuffer__(self, Py_buffer *view):
        pass

    def __dealloc__(self):
        ftr_unmap(&self.mapping)


cdef object _walk_ready(ftr_ring_t *r, int64_t *frame, ftr_walk_stats_t *st):
    """Walk the ready blocks from r's cursor (they become held): None when there is
    none, else the columns (offsets, lengths, ts_ns, wire_lengths, verdicts, snapped,
    frames). The arrays are sized from the descriptors' packet counts, each capped by
    what a block can hold, so a lying count costs memory, not a write out of bounds."""
    cdef uint64_t max_pkts = 0
    cdef uint32_t nblocks = ftr_ready_blocks(r, &max_pkts)
    cdef ftr_out_t out
    cdef int64_t n
    st.blocks = st.bad_blocks = st.csum_completed = st.bytes = 0
    if nblocks == 0:
        return None
    off = np.empty(max_pkts, np.int64)
    ln = np.empty(max_pkts, np.int64)
    ts = np.empty(max_pkts, np.int64)
    wl = np.empty(max_pkts, np.uint32)
    vd = np.empty(max_pkts, np.uint8)
    sn = np.empty(max_pkts, np.bool_)
    fr = np.empty(max_pkts, np.int64)
    cdef int64_t[::1] o = off, l = ln, t = ts, f = fr
    cdef uint32_t[::1] w = wl
    cdef uint8_t[::1] v = vd
    cdef uint8_t[::1] s = sn.view(np.uint8)
    if max_pkts:
        out = ftr_out_t(&o[0], &l[0], &t[0], &w[0], &v[0], &s[0], &f[0], <int64_t>max_pkts)
    else:
        out = ftr_out_t(NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0)
    with nogil:
        n = ftr_walk(r, nblocks, ft_strip_link, &out, frame, st)
    return off[:n], ln[:n], ts[:n], wl[:n], vd[:n], sn[:n], fr[:n]


def walk_blocks(buffer, uint32_t block_bytes, uint32_t linktype=1, bint from_net=False):
    """Walk a caller-made ring: `buffer` (writable uint8, a whole number of blocks of
    `block_bytes`) laid out as the kernel lays out TPACKET_V3 blocks. Returns (columns
    as `RxRing.walk` gives them without the buffer, bad_blocks, csum_completed); the
    walked blocks are marked TP_STATUS_KERNEL. For tests of the walk's bounds checks
    with blocks no kernel would write; UsageError for a buffer of another shape."""
    cdef uint8_t[::1] b
    cdef ftr_ring_t r
    cdef ftr_walk_stats_t st
    cdef int64_t frame = 0
    try:
        b = buffer
    except (TypeError, ValueError, BufferError) as exc:
        raise UsageError(f"buffer must be a writable contiguous uint8 buffer: {exc}") from None
    if block_bytes < 4096 or block_bytes & (block_bytes - 1) or b.shape[0] == 0 \
            or b.shape[0] % block_bytes or b.shape[0] // block_bytes > 0xffffffff:
        raise UsageError(f"a ring of {b.shape[0]} bytes is not a whole number of blocks of {block_bytes}")
    r.ring = &b[0]
    r.ring_bytes = b.shape[0]
    r.block_bytes = block_bytes
    r.block_count = <uint32_t>(b.shape[0] // block_bytes)
    r.cursor = r.held_first = r.held_count = 0
    r.linktype = linktype
    r.from_net = from_net
    got = _walk_ready(&r, &frame, &st)
    ftr_release(&r)
    if got is None:
        got = tuple(np.empty(0, d) for d in (np.int64, np.int64, np.int64, np.uint32, np.uint8, np.bool_, np.int64))
    return got, int(st.bad_blocks), int(st.csum_completed)


cdef _copy_out(const uint8_t *ring, buf, off, ln, int64_t n):
    """The rows' IP packets into `buf` (sum of lengths), offsets rewritten to it."""
    cdef uint8_t[::1] d = buf
    cdef int64_t[::1] o = off
    cdef const int64_t[::1] l = ln
    if n == 0 or d.shape[0] == 0:
        return
    with nogil:
        ftr_copy_out(ring, &d[0], &o[0], &l[0], n)


cdef inline _check(int err, str what, str interface):
    if err:
        raise OSError(err, f"{os.strerror(err)}: {what} on interface {interface!r}")


cdef class RxRing:
    """One AF_PACKET socket with a TPACKET_V3 RX ring. The methods are the set-up steps in
    the order LiveCapture calls them (open, set_ring, attach_filter, ..., bind, fanout);
    each raises OSError with the errno the kernel gave, naming the interface."""
    cdef int fd
    cdef ftr_ring_t r
    cdef RingMemory mem
    cdef object view
    cdef int64_t frame
    cdef bint busy
    cdef readonly str interface
    cdef readonly uint64_t blocks, bad_blocks, csum_completed, bytes
    cdef readonly uint64_t packets, drops, freeze_q

    def __cinit__(self):
        self.fd = -1

    def __init__(self, str interface):
        self.interface = interface

    def open(self):
        """Make the socket (no packets flow until `bind`); returns (ARPHRD type, MAC)."""
        cdef uint16_t arphrd = 0
        cdef uint8_t mac[6]
        cdef bytes name = self.interface.encode()
        _check(ftr_open(&self.fd), "socket(AF_PACKET)", self.interface)
        _check(ftr_hwaddr(self.fd, name, &arphrd, mac), "SIOCGIFHWADDR", self.interface)
        return int(arphrd), bytes(mac[:6])

    def set_ring(self, uint32_t block_bytes, uint32_t block_count, uint32_t frame_bytes,
                 uint32_t timeout_ms, uint32_t linktype, bint from_net):
        """PACKET_VERSION=TPACKET_V3, PACKET_RX_RING and mmap; frames at tp_mac are
        `linktype` (or stripped from tp_net when `from_net`)."""
        self._need_open()
        _check(ftr_setup_ring(self.fd, &self.r, block_bytes, block_count, frame_bytes, timeout_ms),
               "PACKET_RX_RING", self.interface)
        self.r.linktype = linktype
        self.r.from_net = from_net
        self.mem = RingMemory.__new__(RingMemory)
        self.mem.mapping = self.r
        self.view = np.frombuffer(self.mem, dtype=np.uint8)

    def attach_filter(self, list program):
        """SO_ATTACH_FILTER with a classic BPF program: a list of (code, jt, jf, k)."""
        cdef Py_ssize_t i, n = len(program)
        cdef sock_filter[4096] prog
        self._need_open()
        if not 1 <= n <= BPF_MAX_INSNS:
            raise UsageError(f"a BPF program has 1..{BPF_MAX_INSNS} instructions, got {n}")
        for i in range(n):
            code, jt, jf, k = program[i]
            prog[i].code = code
            prog[i].jt = jt
            prog[i].jf = jf
            prog[i].k = k
        _check(ftr_attach_filter(self.fd, prog, <uint16_t>n), "SO_ATTACH_FILTER", self.interface)

    def ignore_outgoing(self):
        """PACKET_IGNORE_OUTGOING: the packets this host sends are not delivered."""
        self._need_open()
        _check(ftr_ignore_outgoing(self.fd), "PACKET_IGNORE_OUTGOING", self.interface)

    def promiscuous(self, int ifindex):
        """PACKET_ADD_MEMBERSHIP PACKET_MR_PROMISC (undone by the kernel at close)."""
        self._need_open()
        _check(ftr_promisc(self.fd, ifindex), "PACKET_MR_PROMISC", self.interface)

    def bind(self, int ifindex):
        """bind() to the interface with ETH_P_ALL: packets start to flow."""
        self._need_open()
        _check(ftr_bind(self.fd, ifindex), "bind", self.interface)

    def fanout(self, uint32_t mode, bint unique, uint32_t group):
        """Join PACKET_FANOUT group `group` (or a new one the kernel picks, `unique`);
        returns the group id."""
        self._need_open()
        _check(ftr_fanout(self.fd, mode, unique, &group), "PACKET_FANOUT", self.interface)
        return int(group)

    def read_stats(self):
        """Add the kernel's PACKET_STATISTICS (which reading resets) to the totals."""
        if self.fd >= 0:
            _check(ftr_stats(self.fd, &self.packets, &self.drops, &self.freeze_q),
                   "PACKET_STATISTICS", self.interface)

    def take_error(self):
        """The socket's pending error (SO_ERROR, which reading clears: ENETDOWN once the
        interface went down or away; poll() says POLLERR until then), 0 for none or once
        closed."""
        cdef int err = 0
        if self.fd >= 0:
            _check(ftr_take_error(self.fd, &err), "SO_ERROR", self.interface)
        return err

    def fileno(self):
        return self.fd

    @property
    def block_ready(self):
        """Has the kernel handed over the next block in ring order?"""
        return self.fd >= 0 and self.r.ring != NULL and ftr_block_ready(&self.r, self.r.cursor) != 0

    def release(self):
        """Hand the blocks of the last walk back to the kernel."""
        if self.r.ring != NULL and self.r.held_count:
            ftr_release(&self.r)

    def walk(self, bint copy):
        """Walk every handed-over block: None when there is none, else (buffer, offsets,
        lengths, ts_ns, wire_lengths, verdicts, snapped, frames). The blocks stay ours
        until `release` (done here already when `copy`: the buffer is then a copy).
        UsageError once closed, or while another thread is in walk."""
        cdef ftr_walk_stats_t st
        cdef ftr_ring_t local
        if self.fd < 0 or self.r.ring == NULL:
            raise UsageError(f"interface {self.interface!r}: the capture is closed")
        if self.busy:
            raise UsageError(f"interface {self.interface!r}: next_batch is already running in another thread")
        self.busy = True
        try:
            self.release()
            # the walk runs on a copy of the ring's state, holding the mapping and its
            # view: a close() from another thread meanwhile cannot unmap them under it
            local = self.r
            mem, view = self.mem, self.view
            got = _walk_ready(&local, &self.frame, &st)
            if self.fd >= 0:
                self.r.cursor, self.r.held_first, self.r.held_count = local.cursor, local.held_first, local.held_count
            if got is None:
                return None
            self.blocks += st.blocks
            self.bad_blocks += st.bad_blocks
            self.csum_completed += st.csum_completed
            self.bytes += st.bytes
            off, ln, ts, wl, vd, sn, fr = got
            if copy:
                buf = np.empty(int(ln.sum()) if len(ln) else 0, np.uint8)
                _copy_out(local.ring, buf, off, ln, len(off))
                if self.fd >= 0:
                    self.release()
            else:
                buf = view
            del mem
            return buf, off, ln, ts, wl, vd, sn, fr
        finally:
            self.busy = False

    def close(self):
        """Give back held blocks, close the socket; the ring is unmapped once no batch
        view refers to it."""
        if self.fd >= 0:
            self.release()
            close(self.fd)
            self.fd = -1
        self.r.ring = NULL
        self.mem = None
        self.view = None

    def _need_open(self):
        if self.fd < 0:
            raise UsageError(f"interface {self.interface!r}: the capture is closed")

    def __dealloc__(self):
        if self.fd >= 0:
            close(self.fd)
        # (the mapping belongs to self.memory, unmapped when it goes)
