/* RFC 1071 Internet checksum kernels for fasttcp (the hot path of every packet).
 *
 * Written in C rather than Cython because the accumulation loop is the one place
 * where the exact shape of the loop decides whether gcc vectorises it (see the bulk
 * loop below); sums are taken in the machine's byte order (RFC 1071 section 2(B): the
 * sum is byte-order independent; we swap once at the end).
 *
 * Conventions: a "partial" is an unfolded 64-bit sum in host byte order; fold it to
 * 16 bits with ft_csum_fold; ~fold is the checksum as it is stored in the packet
 * (memcpy it; do not byte-swap).
 */
#ifndef FASTTCP_CSUM_IMPL_H
#define FASTTCP_CSUM_IMPL_H

#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include <stdlib.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define FT_BIG_ENDIAN 1
#else
#define FT_BIG_ENDIAN 0
#endif

static inline uint16_t ft_bswap16(uint16_t x) { return (uint16_t)((x >> 8) | (x << 8)); }
static inline uint32_t ft_bswap32(uint32_t x) { return __builtin_bswap32(x); }

/* host <-> network order */
static inline uint16_t ft_htons(uint16_t x) { return FT_BIG_ENDIAN ? x : ft_bswap16(x); }
static inline uint32_t ft_htonl(uint32_t x) { return FT_BIG_ENDIAN ? x : ft_bswap32(x); }

/* one unaligned load or store and a byte swap (gcc does not merge the byte-at-a-time
 * form of the stores: it cost a dozen instructions per header field) */
static inline uint16_t ft_load_be16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return ft_htons(v); }
static inline uint32_t ft_load_be32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return ft_htonl(v); }
static inline void ft_store_be16(uint8_t *p, uint16_t v) { v = ft_htons(v); memcpy(p, &v, 2); }
static inline void ft_store_be32(uint8_t *p, uint32_t v) { v = ft_htonl(v); memcpy(p, &v, 4); }

/* a + b with end-around carry: exact modulo 2^64-1, hence modulo 0xffff after folding */
static inline uint64_t ft_add_carry(uint64_t a, uint64_t b) {
    a += b;
    return a + (a < b);
}

/* Bulk loop for long buffers. Each 32-bit word is added as its two 16-bit halves into
 * a 32-bit accumulator (w = hi*65536 + lo, and 65536 = 1 mod 0xffff, so hi + lo is the
 * same sum after folding): a shape gcc -O3 vectorises as and/shift/add/add per vector,
 * with no widening to 64 bits. A word adds less than 2^17, so a block of 2^14 words
 * cannot overflow the accumulator; blocks are folded into a 64-bit total. Returns the
 * bytes consumed (a multiple of 32); ft_csum_partial sums the tail.
 * This is the baseline ISA's loop (SSE2, what the wheel may assume); on x86-64 an AVX2
 * loop below is picked at run time -- twice the width for the payload checksums that
 * dominate verifying captures. */
static size_t ft_csum_long_base(const uint8_t *p, size_t len, uint64_t *sum) {
    size_t done = len & ~(size_t)31;
    uint64_t total = 0;
    while (len >= 32) {
        size_t n = (len < ((size_t)1 << 16) ? len : ((size_t)1 << 16)) / 32 * 8;
        uint32_t acc = 0;
        size_t i;
        #pragma GCC unroll 4
        for (i = 0; i < n; i++) {
            uint32_t w;
            memcpy(&w, p + 4 * i, 4);
            acc += (w & 0xffffu) + (w >> 16);
        }
        total += acc;
        p += 4 * n; len -= 4 * n;
    }
    *sum = ft_add_carry(*sum, total);
    return done;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* The AVX2 loop, written with intrinsics for fewer instructions per 32 bytes than the
 * and/shift/add/add shape above: vpmaddwd adds each pair of 16-bit words into a
 * 32-bit lane in one instruction, but it reads them as signed, so each word is first
 * biased by -32768 (xor 0x8000) and 32768 per word is added back after the block.
 * Four vectors per round, summed pairwise before they reach the two accumulators: 3
 * instructions per 32 bytes. A lane gains at most 65534 per vector and a block is at
 * most 2048 vectors, so the accumulators (and their sum) stay far inside int32. */
/* 32 bytes as 8 lanes of (w0 - 32768) + (w1 - 32768), w0/w1 16-bit words */
#define FT_MADD_BIASED(q) _mm256_madd_epi16(                                                \
    _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(const void *)(q)), bias), ones)

__attribute__((target("avx2")))
static size_t ft_csum_long_avx2(const uint8_t *p, size_t len, uint64_t *sum) {
    size_t done = len & ~(size_t)31;
    uint64_t total = 0;
    const __m256i bias = _mm256_set1_epi16((short)0x8000);
    const __m256i ones = _mm256_set1_epi16(1);
    while (len >= 32) {
        size_t blocks = (len < ((size_t)1 << 16) ? len : ((size_t)1 << 16)) / 32;
        size_t i = 0;
        __m256i acc0 = _mm256_setzero_si256(), acc1 = _mm256_setzero_si256();
        __m256i lo, hi, s64;
        __m128i s2;
        int64_t block;
        for (; i + 4 <= blocks; i += 4) {
            const uint8_t *q = p + 32 * i;
            __m256i m0 = FT_MADD_BIASED(q), m1 = FT_MADD_BIASED(q + 32);
            __m256i m2 = FT_MADD_BIASED(q + 64), m3 = FT_MADD_BIASED(q + 96);
            acc0 = _mm256_add_epi32(acc0, _mm256_add_epi32(m0, m1));
            acc1 = _mm256_add_epi32(acc1, _mm256_add_epi32(m2, m3));
        }
        for (; i < blocks; i++)
            acc0 = _mm256_add_epi32(acc0, FT_MADD_BIASED(p + 32 * i));
        acc0 = _mm256_add_epi32(acc0, acc1);
        lo = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(acc0));       /* signed lanes */
        hi = _mm256_cvtepi32_epi64(_mm256_extracti128_si256(acc0, 1));
        s64 = _mm256_add_epi64(lo, hi);
        s2 = _mm_add_epi64(_mm256_castsi256_si128(s64), _mm256_extracti128_si256(s64, 1));
        block = _mm_cvtsi128_si64(s2) + _mm_extract_epi64(s2, 1);
        block += (int64_t)blocks * 16 * 32768;                           /* undo the bias */
        total += (uint64_t)block;
        p += 32 * blocks; len -= 32 * blocks;
    }
    *sum = ft_add_carry(*sum, total);
    return done;
}

static int ft_csum_avx2 = -1;       /* -1: not probed yet */

static inline uint64_t ft_csum_partial_long(const uint8_t *p, size_t len, uint64_t *sum) {
    if (__builtin_expect(ft_csum_avx2 < 0, 0)) {
        __builtin_cpu_init();
        /* FASTTCP_NO_AVX2=1 forces the baseline loop (tests compare the two) */
        ft_csum_avx2 = (__builtin_cpu_supports("avx2") && getenv("FASTTCP_NO_AVX2") == NULL) ? 1 : 0;
    }
    return ft_csum_avx2 ? ft_csum_long_avx2(p, len, sum) : ft_csum_long_base(p, len, sum);
}
#else
static inline uint64_t ft_csum_partial_long(const uint8_t *p, size_t len, uint64_t *sum) {
    return ft_csum_long_base(p, len, sum);
}
#endif

/* Sum `len` bytes starting at an even position of the checksummed stream.
 * The running sum keeps its carries end-around (exact modulo 2^64 - 1), so it cannot
 * overflow; ft_csum_buffer still folds between 1 GiB chunks.
 * Headers are short: below 128 bytes a plain scalar loop beats the SIMD set-up and
 * horizontal reduction, so the bulk loop is only entered for long payloads. */
#if defined(__GNUC__)
#define FT_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define FT_ALWAYS_INLINE inline
#endif

/* (always inline: called once or twice per packet by every per-packet loop, where a
 * call's set-up outweighs a header's worth of adds; gcc otherwise keeps it out of line) */
static FT_ALWAYS_INLINE uint64_t ft_csum_partial(const void *buf, size_t len, uint64_t sum) {
    const uint8_t *p = (const uint8_t *)buf;
    uint64_t s1 = 0;
    uint64_t w;
    uint32_t w32;
    if (len >= 128) {
        size_t done = ft_csum_partial_long(p, len, &sum);
        p += done; len -= done;
    }
    /* 64-bit words with end-around carry: two adds per 8 bytes, no vector set-up */
    while (len >= 8) {
        memcpy(&w, p, 8);
        sum = ft_add_carry(sum, w);
        p += 8; len -= 8;
    }
    if (len >= 4) {
        memcpy(&w32, p, 4);
        s1 += w32;
        p += 4; len -= 4;
    }
    if (len >= 2) {
        uint16_t h;
        memcpy(&h, p, 2);
        s1 += h;
        p += 2; len -= 2;
    }
    if (len) {
        /* odd trailing byte: it is the high byte of a zero-padded big-endian word */
        s1 += FT_BIG_ENDIAN ? ((uint32_t)p[0] << 8) : (uint32_t)p[0];
    }
    return ft_add_carry(sum, s1);
}

/* Fold a 64-bit partial into 16 bits with end-around carries. Adding a value to its
 * own half-rotation puts hi + lo + (the carry out of lo + hi) in the high half: the
 * one's-complement sum of the halves in one add (any carry out of the top is exactly
 * the one that was already added at the bottom). 64 -> 32, then 32 -> 16. */
static inline uint16_t ft_csum_fold(uint64_t sum) {
    uint64_t t = sum + ((sum >> 32) | (sum << 32));
    uint32_t x = (uint32_t)(t >> 32);
    x += (x >> 16) | (x << 16);
    return (uint16_t)(x >> 16);
}

/* Does a partial sum over a checksummed region (its checksum field included) verify?
 * Folding gives 0xffff exactly when the sum is a nonzero multiple of 0xffff (0xffff
 * divides 2^64 - 1, the modulus of the end-around-carry sum): one multiply instead of
 * five folding steps. */
static inline int ft_csum_ok(uint64_t sum) {
    return sum != 0 && sum % 0xffffu == 0;
}

/* Checksum of a whole buffer as the big-endian number that appears on the wire. */
static inline uint16_t ft_csum_buffer(const void *buf, size_t len) {
    const uint8_t *p = (const uint8_t *)buf;
    uint64_t sum = 0;
    const size_t chunk = (size_t)1 << 30;   /* keep each partial far from overflow */
    while (len > chunk) {
        sum = ft_csum_fold(ft_csum_partial(p, chunk, sum));
        p += chunk; len -= chunk;
    }
    sum = ft_csum_partial(p, len, sum);
    return ft_htons((uint16_t)~ft_csum_fold(sum));
}

/* Pseudo-header partials (RFC 9293 3.1 for IPv4, RFC 8200 8.1 for IPv6), host order. */
static inline uint64_t ft_csum_pseudo4(const uint8_t *src, const uint8_t *dst, uint32_t tcp_len, uint8_t proto) {
    uint64_t s = ft_csum_partial(src, 4, 0);
    s = ft_csum_partial(dst, 4, s);
    /* the length is summed as a 32-bit quantity, so lengths above 65535 (IPv4 BIG TCP,
     * whose total-length field is 0) checksum the way Linux computes them */
    return ft_add_carry(s, (uint64_t)ft_htonl(((uint32_t)proto << 16) | (tcp_len & 0xffffu)) +
                           ft_htons((uint16_t)(tcp_len >> 16)));
}

static inline uint64_t ft_csum_pseudo6(const uint8_t *src, const uint8_t *dst, uint32_t tcp_len, uint8_t proto) {
    uint64_t s = ft_csum_partial(src, 16, 0);
    s = ft_csum_partial(dst, 16, s);
    return ft_add_carry(s, (uint64_t)ft_htonl(tcp_len) + ft_htonl((uint32_t)proto));
}

/* Do an IPv4 header without options (20 bytes at b) and the TCP segment after it
 * (tcp_len >= 20 bytes at b + 20, all readable) both verify? The common case of every
 * per-packet loop, summed in one pass: the pseudo-header's addresses are the header's
 * last 8 bytes, already loaded for the header's own sum, and the usual TCP header
 * lengths (20, 32 and 40 bytes: no options, timestamps, a SYN's options) are summed
 * with straight-line code. Both sums are folded and must be 0xffff (a fold is 0xffff
 * exactly when the sum is a nonzero multiple of 0xffff, as ft_csum_ok tests). */
static FT_ALWAYS_INLINE int ft_ipv4_tcp_ok(const uint8_t *b, uint32_t tcp_len) {
    const uint8_t *t = b + 20;
    uint64_t w0, w1, w2, w3, ip, tcp;
    uint32_t a;
    memcpy(&w0, b, 8);
    memcpy(&w1, b + 8, 8);
    memcpy(&a, b + 16, 4);
    ip = ft_add_carry(ft_add_carry(w0, w1), a);
    /* source (the high half of w1) + destination + protocol and length */
    tcp = (w1 >> 32) + (uint64_t)a + ft_htonl(((uint32_t)6 << 16) | (tcp_len & 0xffffu))
          + ft_htons((uint16_t)(tcp_len >> 16));
    memcpy(&w0, t, 8);
    memcpy(&w1, t + 8, 8);
    memcpy(&a, t + 16, 4);
    tcp = ft_add_carry(tcp, w0);
    tcp = ft_add_carry(tcp, w1);
    tcp = ft_add_carry(tcp, a);
    if (tcp_len == 32) {
        memcpy(&a, t + 20, 4);
        memcpy(&w2, t + 24, 8);
        tcp = ft_add_carry(tcp, a);
        tcp = ft_add_carry(tcp, w2);
    } else if (tcp_len == 40) {
        memcpy(&w2, t + 20, 8);
        memcpy(&w3, t + 28, 8);
        memcpy(&a, t + 36, 4);
        tcp = ft_add_carry(tcp, w2);
        tcp = ft_add_carry(tcp, w3);
        tcp = ft_add_carry(tcp, a);
    } else if (tcp_len != 20) {
        tcp = ft_csum_partial(t + 20, tcp_len - 20, tcp);
    }
    return (ft_csum_fold(ip) & ft_csum_fold(tcp)) == 0xffffu;
}

/* RFC 1624 eqn. 3 over a rewritten region: HC' = ~(~HC + ~m + m'), word by word.
 * `csum_wire` and the result are big-endian numbers as on the wire; `old`/`new_`
 * are the bytes before and after the rewrite, starting at an even stream offset. */
static inline uint16_t ft_csum_replace(uint16_t csum_wire, const uint8_t *old, const uint8_t *new_, size_t len) {
    uint64_t sum = (uint16_t)~csum_wire;
    size_t i;
    for (i = 0; i + 1 < len; i += 2) {
        sum += (uint16_t)~ft_load_be16(old + i);
        sum += ft_load_be16(new_ + i);
    }
    if (i < len) {               /* odd tail: the missing low byte is zero in both */
        sum += (uint16_t)~((uint16_t)old[i] << 8);
        sum += (uint16_t)((uint16_t)new_[i] << 8);
    }
    return (uint16_t)~ft_csum_fold(sum);
}

#endif
