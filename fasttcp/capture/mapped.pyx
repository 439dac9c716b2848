# cython: language_level=3
"""Chunks of a capture file mapped from the page cache instead of copied out of it.

`CaptureReader` reads a regular file in chunks. Copying a chunk (pread) costs a pass
over every byte before the scanner and the trackers read them; a mapping (mmap,
private: a write changes this process's copy, never the file) reads the page cache in
place. A file cut shorter while mapped would make the pages past its new end raise
SIGBUS and kill the process: mapped_impl.h's handler maps zeros there instead and
counts each such page in the mapping's `FaultTally`, which the reader checks -- so a
changed file is reported (a CaptureError), never a crash.

A `FileMapping` is a writable buffer (numpy views of it keep it mapped) and is unmapped
when the last reference goes.
"""
from libc.stdint cimport uint64_t, int64_t

from fasttcp.wire.buffers cimport ft_export_bytes

import os

from fasttcp.errors import UsageError

__all__ = ["FileMapping", "FaultTally", "PAGE_BYTES", "guard"]


cdef extern from "mapped_impl.h" nogil:
    int ftm_guard()
    uint64_t ftm_load_count(uint64_t *count)
    int ftm_map(int fd, int64_t offset, size_t length, uint64_t *tally, void **out, int *slot)
    void ftm_unmap(void *p, size_t length, int slot)
    int ftm_populate(void *p, size_t length)


#: The alignment of a mapping's file offset.
PAGE_BYTES = os.sysconf("SC_PAGESIZE")


def guard():
    """Put the SIGBUS guard back in front if another handler has replaced it since the
    last mapping (faulthandler enabled, `signal.signal`, a SIGBUS not ours handed back
    to the handler before it); True when it is in place. A reader calls it at every
    read, so its mappings are never long without it."""
    return ftm_guard() == 0


cdef class FaultTally:
    """The pages of a group of mappings (one reader's) found past the file's end -- the
    file was cut shorter meanwhile -- and mapped as zeros (`pages`); and whether
    the file was found shorter than what was mapped of it (`shrunk`: a cut inside a
    page reads zeros without a fault)."""
    cdef uint64_t count
    cdef public bint shrunk

    @property
    def pages(self):
        """Pages mapped as zeros so far: from each first page read past the file's end
        to the end of its mapping."""
        return ftm_load_count(&self.count)


cdef class FileMapping:
    """`length` bytes of the open file `fd` from `offset` (a multiple of PAGE_BYTES),
    mapped privately, read-write; faults past the file's end are counted in `tally`.

    OSError when the mapping cannot be made -- ENOSPC when FTM_SLOTS mappings are alive
    at once, ENOTSUP when the SIGBUS guard cannot be installed (a sanitizer's runtime
    may keep the handler) -- for the caller to copy the chunk instead. UsageError for
    an fd, offset or length out of range."""
    cdef void *addr
    cdef size_t size
    cdef int slot
    cdef readonly FaultTally tally
    cdef readonly int64_t offset
    cdef Py_ssize_t shape[1]
    cdef Py_ssize_t strides[1]

    def __cinit__(self):
        self.addr = NULL

    def __init__(self, fd, offset, length, FaultTally tally not None):
        if self.addr != NULL:
            raise UsageError("a FileMapping maps once")
        if isinstance(fd, bool) or not isinstance(fd, int) or not 0 <= fd < (1 << 31):
            raise UsageError(f"fd must be a file descriptor (an int in 0..2**31-1), got {fd!r}")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0 \
                or offset % PAGE_BYTES or offset > (1 << 62):
            raise UsageError(f"offset must be a multiple of {PAGE_BYTES} in 0..2**62, got {offset!r}")
        if isinstance(length, bool) or not isinstance(length, int) or not 0 < length <= (1 << 40):
            raise UsageError(f"length must be an int in 1..2**40, got {length!r}")
        cdef void *p = NULL
        cdef int slot = 0
        cdef int rc = ftm_map(fd, <int64_t>offset, <size_t>length, &tally.count, &p, &slot)
        if rc != 0:
            raise OSError(rc, os.strerror(rc))
        self.addr = p
        self.size = <size_t>length
        self.slot = slot
        self.tally = tally
        self.offset = <int64_t>offset

    def __len__(self):
        return <Py_ssize_t>self.size

    def populate(self, start, stop):
        """Fill the page tables of bytes [start, stop) of this mapping now, without the
        GIL (MADV_POPULATE_READ), so that the thread that reads them later takes no
        page faults for them: another thread can do the kernel's part of a first read
        ahead of it. True when done; False when the kernel cannot (before Linux 5.14)
        or part of the range lies past the file's end (left to fault as usual).
        UsageError for bounds that are not ints with 0 <= start <= stop <= len."""
        if isinstance(start, bool) or not isinstance(start, int) or isinstance(stop, bool) \
                or not isinstance(stop, int) or not 0 <= start <= stop <= <Py_ssize_t>self.size:
            raise UsageError(f"populate needs ints 0 <= start <= stop <= {self.size}, got {start!r}, {stop!r}")
        cdef size_t lo = <size_t>start, hi = <size_t>stop, page = <size_t>PAGE_BYTES
        cdef int rc = 0
        if lo == hi:
            return True
        lo -= lo % page                   # (the mapping starts at a page)
        with nogil:
            rc = ftm_populate(<char *>self.addr + lo, hi - lo)
        return rc == 0

    def __getbuffer__(self, Py_buffer *view, int flags):
        ft_export_bytes(view, self, self.addr, <Py_ssize_t>self.size, self.shape, self.strides)

    def __releasebuffer__(self, Py_buffer *view):
        pass

    def __dealloc__(self):
        # (the tally outlives the table entry: this object holds it until here)
        ftm_unmap(self.addr, self.size, self.slot)
        self.addr = NULL
