/* SYN cookies in Linux's layout: SipHash-2-4 and the MSS tables.
 *
 * SipHash-2-4 (Aumasson and Bernstein, 2012; the keyed hash Linux's cookie_hash uses
 * since 4.13) is written here rather than taken from a library: it runs twice per
 * cookie on the receive path, inside the batch loop without the GIL, so it must be an
 * inline function over registers with no allocation and no call into Python, and the
 * messages are the fixed 16 bytes (IPv4) and 40 bytes (IPv6) Linux hashes.
 */
#ifndef FASTTCP_SYNCOOKIE_IMPL_H
#define FASTTCP_SYNCOOKIE_IMPL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define FT_SIP_ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

#define FT_SIP_ROUND(v0, v1, v2, v3)                                            \
    do {                                                                       \
        v0 += v1; v1 = FT_SIP_ROTL(v1, 13); v1 ^= v0; v0 = FT_SIP_ROTL(v0, 32); \
        v2 += v3; v3 = FT_SIP_ROTL(v3, 16); v3 ^= v2;                           \
        v0 += v3; v3 = FT_SIP_ROTL(v3, 21); v3 ^= v0;                           \
        v2 += v1; v1 = FT_SIP_ROTL(v1, 17); v1 ^= v2; v2 = FT_SIP_ROTL(v2, 32); \
    } while (0)

static inline uint64_t ft_le64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

/* SipHash-2-4 of `len` bytes under the 128-bit key (k[0], k[1]): the reference
 * algorithm (2 compression rounds per 8-byte word, 4 finalisation rounds, the length
 * in the last word's top byte). */
static inline uint64_t ft_siphash(const uint64_t k[2], const uint8_t *msg, size_t len) {
    uint64_t v0 = 0x736f6d6570736575ULL ^ k[0];
    uint64_t v1 = 0x646f72616e646f6dULL ^ k[1];
    uint64_t v2 = 0x6c7967656e657261ULL ^ k[0];
    uint64_t v3 = 0x7465646279746573ULL ^ k[1];
    uint64_t m, b = ((uint64_t)len) << 56;
    size_t i, tail = len & 7;
    for (i = 0; i + 8 <= len; i += 8) {
        m = ft_le64(msg + i);
        v3 ^= m;
        FT_SIP_ROUND(v0, v1, v2, v3);
        FT_SIP_ROUND(v0, v1, v2, v3);
        v0 ^= m;
    }
    for (i = 0; i < tail; i++)
        b |= ((uint64_t)msg[len - tail + i]) << (8 * i);
    v3 ^= b;
    FT_SIP_ROUND(v0, v1, v2, v3);
    FT_SIP_ROUND(v0, v1, v2, v3);
    v0 ^= b;
    v2 ^= 0xff;
    FT_SIP_ROUND(v0, v1, v2, v3);
    FT_SIP_ROUND(v0, v1, v2, v3);
    FT_SIP_ROUND(v0, v1, v2, v3);
    FT_SIP_ROUND(v0, v1, v2, v3);
    return v0 ^ v1 ^ v2 ^ v3;
}

/* Linux's siphash_4u32(a, b, c, d): SipHash-2-4 of the two 64-bit words b:a and d:c
 * (include/linux/siphash.h), i.e. of the 16 bytes a, b, c, d little-endian. */
static inline uint64_t ft_siphash_4u32(uint32_t a, uint32_t b, uint32_t c, uint32_t d, const uint64_t k[2]) {
    uint8_t msg[16];
    uint64_t w0 = ((uint64_t)b << 32) | a, w1 = ((uint64_t)d << 32) | c;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w0 = __builtin_bswap64(w0);
    w1 = __builtin_bswap64(w1);
#endif
    memcpy(msg, &w0, 8);
    memcpy(msg + 8, &w1, 8);
    return ft_siphash(k, msg, 16);
}

/* The MSS a cookie can carry, by index (2 bits): net/ipv4/syncookies.c's msstab and
 * net/ipv6/syncookies.c's (IPv6 path MTUs less 60 bytes of headers). */
static const uint16_t ft_cookie_msstab4[4] = {536, 1300, 1440, 1460};
static const uint16_t ft_cookie_msstab6[4] = {1280 - 60, 1480 - 60, 1500 - 60, 9000 - 60};

/* Entry `i` (0..3) of the table of `family` (4 or 6). */
static inline uint16_t ft_cookie_mss(int family, unsigned i) {
    return (family == 4 ? ft_cookie_msstab4 : ft_cookie_msstab6)[i & 3];
}

#endif
