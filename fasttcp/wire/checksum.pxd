# cython: language_level=3
"""Internet checksum (RFC 1071) and incremental update (RFC 1624) for the core.

The kernels live in csum_impl.h (see the why there); these declarations let any
Cython module -- fasttcp's or yours -- call them with no Python in between.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

cdef extern from "csum_impl.h" nogil:
    uint64_t ft_csum_partial(const void *buf, size_t len, uint64_t sum)
    uint16_t ft_csum_fold(uint64_t sum)
    bint ft_csum_ok(uint64_t sum)
    bint ft_ipv4_tcp_ok(const uint8_t *b, uint32_t tcp_len)
    uint64_t ft_add_carry(uint64_t a, uint64_t b)
    uint16_t ft_csum_buffer(const void *buf, size_t len)
    uint64_t ft_csum_pseudo4(const uint8_t *src, const uint8_t *dst, uint32_t tcp_len, uint8_t proto)
    uint64_t ft_csum_pseudo6(const uint8_t *src, const uint8_t *dst, uint32_t tcp_len, uint8_t proto)
    uint16_t ft_csum_replace(uint16_t csum_wire, const uint8_t *old, const uint8_t *new_, size_t len)
    uint16_t ft_htons(uint16_t x)
    uint32_t ft_htonl(uint32_t x)
    uint16_t ft_load_be16(const uint8_t *p)
    uint32_t ft_load_be32(const uint8_t *p)
    void ft_store_be16(uint8_t *p, uint16_t v)
    void ft_store_be32(uint8_t *p, uint32_t v)
