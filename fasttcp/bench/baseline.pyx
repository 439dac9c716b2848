# cython: language_level=3, boundscheck=False, wraparound=False
"""The bare and lean C handshake loops (bare_handshake.h): benchmark peers for
`fasttcp bench`.

Not part of the library's API. They measure, in the same process and run as the
endpoint benchmark, how fast the work no handshake can skip goes on this machine --
building, checksumming, parsing and verifying the three segments and a keyed-hash
table lookup per segment -- and (lean) that work plus the endpoint's bookkeeping
written as plainly, so the endpoint's figure can be read as a ratio to each.
"""
from libc.stdint cimport uint32_t
from libc.stdlib cimport malloc, free
from fasttcp.wire.defs cimport FASTTCP_PGO

cdef extern from "bare_handshake.h" nogil:
    int bare_handshakes(uint32_t n, int rounds, uint32_t corrupt_every, int features,
                        double *ns_per_round, uint32_t *established)

#: True when this module was compiled with a gcc profile, as the endpoint is
PGO_BUILD = FASTTCP_PGO != 0

#: the most flows a run takes (the loop's segment offsets are 32-bit)
MAX_FLOWS = 1 << 22


def bare_handshakes_run(flows, rounds, corrupt_every=0, *, lean=False, _stray_timer=False):
    """Run `rounds` timed rounds (after one warm-up) of `flows` bare handshakes between
    two in-process IPv4 endpoints; `lean`: with the endpoint's bookkeeping added
    (timers, the embryonic list, events, the accept queue, the RFC 9293 checks; see
    bare_handshake.h). Every `corrupt_every`-th SYN (0: none) is damaged after its
    checksums were written, alternately in its TCP and its IP header, so its handshake
    must not complete.

    Returns (ns per handshake of each round, server connections established in the
    last round). Raises ValueError for flows outside 1..MAX_FLOWS, rounds outside
    1..10,000 or a negative corrupt_every; MemoryError if the tables cannot be
    allocated; RuntimeError if the lean variant's events, accept queue, timers or
    embryonic list do not match the handshakes it completed. (`_stray_timer`, for
    tests: arm one timer too many after the rounds, which that check must catch.)"""
    if not 1 <= flows <= MAX_FLOWS or not 1 <= rounds <= 10_000 or not 0 <= corrupt_every < 2 ** 32:
        raise ValueError(f"flows must be 1..{MAX_FLOWS:,}, rounds 1..10,000, corrupt_every >= 0")
    cdef uint32_t n = <uint32_t>flows, every = <uint32_t>corrupt_every, est = 0
    cdef int r = <int>rounds, rc, f = (2 if _stray_timer else 1) if lean else 0
    cdef double *ns = <double *>malloc(sizeof(double) * r)
    if ns == NULL:
        raise MemoryError("bare handshake timings")
    try:
        with nogil:
            rc = bare_handshakes(n, r, every, f, ns, &est)
        if rc == -2:
            raise RuntimeError("lean handshake loop: its bookkeeping does not match the handshakes")
        if rc != 0:
            raise MemoryError("bare handshake tables")
        return [ns[i] for i in range(r)], int(est)
    finally:
        free(ns)
