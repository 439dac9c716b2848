# cython: language_level=3, boundscheck=False, wraparound=False
"""The bare handshake loop (bare_handshake.h): a benchmark peer for `fasttcp bench`.

Not part of the library's API. It measures, in the same process and run as the
endpoint benchmark, how fast the work no handshake can skip goes on this machine --
building, checksumming, parsing and verifying the three segments and a keyed-hash
table lookup per segment -- so the endpoint's figure can be read as a ratio to it.
"""
from libc.stdint cimport uint32_t

cdef extern from "bare_handshake.h" nogil:
    int bare_handshakes(uint32_t n, int rounds, uint32_t corrupt_every, double *best_ns,
                        double *median_ns, uint32_t *established)


def bare_handshakes_run(int flows, int rounds, int corrupt_every=0):
    """Run `rounds` timed rounds (after one warm-up) of `flows` bare handshakes between
    two in-process IPv4 endpoints. Every `corrupt_every`-th SYN (0: none) is damaged
    after its checksum is written, so its handshake must not complete.

    Returns (fastest ns per handshake, median ns per handshake, server connections
    established in the last round). Raises ValueError on bad arguments, MemoryError
    if the tables cannot be allocated."""
    cdef double best = 0, median = 0
    cdef uint32_t est = 0
    cdef int rc
    if flows < 1 or flows > 50_000_000 or rounds < 1 or corrupt_every < 0:
        raise ValueError("flows must be 1..50,000,000, rounds >= 1, corrupt_every >= 0")
    with nogil:
        rc = bare_handshakes(<uint32_t>flows, rounds, <uint32_t>corrupt_every, &best, &median, &est)
    if rc != 0:
        raise MemoryError("bare handshake tables")
    return best, median, int(est)
