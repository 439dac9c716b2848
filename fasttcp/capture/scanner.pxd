# The link-layer stripper, shared with the live ring (fasttcp/capture/ring.pyx), so a
# frame read from a file and one read from an interface are decoded by the same rule.
from libc.stdint cimport uint8_t, uint32_t

cdef int ft_strip_link(uint32_t linktype, const uint8_t *f, uint32_t caplen,
                       uint32_t *ip_off) noexcept nogil
