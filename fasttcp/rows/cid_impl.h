/* Community ID v1 (https://github.com/corelight/community-id-spec): SHA-1 over
 *   seed (2 bytes) . addr_a . addr_b . proto (1) . 0 (1) . port_a (2) . port_b (2)
 * in network byte order, the endpoints ordered so the smaller (address, port) comes
 * first, written "1:" + base64 of the 20-byte digest.
 *
 * SHA-1 and base64 are here, in C, because the writers hash every row: a hashlib call
 * from the row loop costs about a microsecond (an object, a call, a digest object, a
 * b64encode), five times the ~200 ns a row may take at 5 M rows/s. The hashed tuple is
 * at most 40 bytes (IPv6), so one 64-byte block holds it with its padding: the code
 * hashes exactly one block and needs no streaming state. On x86-64 CPUs with the SHA
 * extensions (Intel since Goldmont/Ice Lake, AMD since Zen) the block is compressed
 * with them, otherwise in portable C; both are tested against hashlib.
 */
#ifndef FASTTCP_ROWS_CID_IMPL_H
#define FASTTCP_ROWS_CID_IMPL_H

#include <stdint.h>
#include <string.h>

#define FTR_SHA1_BLOCK 64
#define FTR_SHA1_DIGEST 20
#define FTR_CID_LEN 30                  /* "1:" + 28 base64 characters (20 bytes, one '=' of padding) */
/* The hashed tuple is 2 + 16 + 16 + 1 + 1 + 2 + 2 = 40 bytes at most (IPv6): with its
 * 0x80 and 8-byte length, one 64-byte block. */

/* ---- SHA-1 (FIPS 180-4, section 6.1), one block ---- */

static const uint32_t ftr_sha1_init[5] = {0x67452301u, 0xefcdab89u, 0x98badcfeu, 0x10325476u, 0xc3d2e1f0u};

static inline uint32_t ftr_rol32(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static inline uint32_t ftr_load_be32(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* FIPS 180-4 6.1.2, with the message schedule kept in a 16-word ring */
static void ftr_sha1_compress_c(uint32_t st[5], const uint8_t *blk)
{
    uint32_t w[16];
    for (int t = 0; t < 16; t++)
        w[t] = ftr_load_be32(blk + 4 * t);
    uint32_t a = st[0], b = st[1], c = st[2], d = st[3], e = st[4];
    for (int t = 0; t < 80; t++) {
        uint32_t wt;
        if (t < 16) {
            wt = w[t];
        } else {
            wt = ftr_rol32(w[(t + 13) & 15] ^ w[(t + 8) & 15] ^ w[(t + 2) & 15] ^ w[t & 15], 1);
            w[t & 15] = wt;
        }
        uint32_t f, k;
        if (t < 20)      { f = (b & c) | (~b & d);          k = 0x5a827999u; }   /* Ch */
        else if (t < 40) { f = b ^ c ^ d;                   k = 0x6ed9eba1u; }   /* Parity */
        else if (t < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8f1bbcdcu; }   /* Maj */
        else             { f = b ^ c ^ d;                   k = 0xca62c1d6u; }
        uint32_t tmp = ftr_rol32(a, 5) + f + e + k + wt;
        e = d; d = c; c = ftr_rol32(b, 30); b = a; a = tmp;
    }
    st[0] += a; st[1] += b; st[2] += c; st[3] += d; st[4] += e;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FTR_HAVE_SHA_NI_CODE 1
#include <cpuid.h>
#include <immintrin.h>

/* The compression of ftr_sha1_compress_c with the SHA extensions, as Intel's "New
 * Instructions Supporting the Secure Hash Algorithm" lays it out: 20 groups of 4 rounds
 * (function 0..3 for rounds 0-19, 20-39, 40-59, 60-79), each group's E the saved ABCD of
 * the last group plus the group's message words; the words of group g+1 come from
 * SHA1MSG1 of groups g-2 and g-1, an XOR, and SHA1MSG2 of groups g-3 and g.
 *
 * Written once as a sequence of steps over "lanes" (variables suffixed _a, _b): one
 * lane hashes one block; two lanes hash two independent blocks in one instruction
 * stream. A group's SHA1RNDS4 waits for the last one (several cycles of latency each),
 * so one block leaves the unit mostly idle; the second block's rounds fill the gaps,
 * which makes two blocks cost little more than one. */
/* The extensions keep A in the top 32 bits of ABCD (so the state's words are reversed,
 * shuffle 0x1b, on the way in and out), E in the top word of its own register, and the
 * message as big-endian words (a byte swap of each 16 bytes). */
#define FTR_SHA_WORDS_REVERSED 0x1b
#define FTR_SHA_LOAD(L, st, blk)                                                          \
    __m128i abcd##L = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)(st)), FTR_SHA_WORDS_REVERSED);  \
    __m128i e0##L = _mm_set_epi32((int)(st)[4], 0, 0, 0);                                 \
    const __m128i abcd0##L = abcd##L, e00##L = e0##L;                                     \
    __m128i e1##L;                                                                        \
    __m128i m0##L = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)((blk) + 0)), bswap);  \
    __m128i m1##L = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)((blk) + 16)), bswap); \
    __m128i m2##L = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)((blk) + 32)), bswap); \
    __m128i m3##L = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)((blk) + 48)), bswap)
#define FTR_SHA_FIRST(L)                                                                  \
    e0##L = _mm_add_epi32(e0##L, m0##L); e1##L = abcd##L; abcd##L = _mm_sha1rnds4_epu32(abcd##L, e0##L, 0)
#define FTR_SHA_GROUP(L, ecur, esave, mg, fn)                                             \
    ecur##L = _mm_sha1nexte_epu32(ecur##L, mg##L); esave##L = abcd##L;                    \
    abcd##L = _mm_sha1rnds4_epu32(abcd##L, ecur##L, fn)
#define FTR_SHA_MSG1(L, a, b) a##L = _mm_sha1msg1_epu32(a##L, b##L)
#define FTR_SHA_MSG2(L, a, b) a##L = _mm_sha1msg2_epu32(a##L, b##L)
#define FTR_SHA_XOR(L, a, b) a##L = _mm_xor_si128(a##L, b##L)
/* groups 4..16: the steady state, the registers rotating by one each group */
#define FTR_SHA_STEADY(L, ecur, esave, mg, mnext, mprev, mprev2, fn)                      \
    FTR_SHA_GROUP(L, ecur, esave, mg, fn); FTR_SHA_MSG2(L, mnext, mg);                    \
    FTR_SHA_MSG1(L, mprev, mg); FTR_SHA_XOR(L, mprev2, mg)
#define FTR_SHA_STORE(L, st)                                                              \
    e0##L = _mm_sha1nexte_epu32(e0##L, e00##L);                                           \
    abcd##L = _mm_shuffle_epi32(_mm_add_epi32(abcd##L, abcd0##L), FTR_SHA_WORDS_REVERSED); \
    _mm_storeu_si128((__m128i *)(st), abcd##L);                                           \
    (st)[4] = (uint32_t)_mm_extract_epi32(e0##L, 3)

/* the 80 rounds; EACH(step, args...) applies a step to every lane */
#define FTR_SHA_ROUNDS(EACH)                                                              \
    EACH(FTR_SHA_FIRST);                                                                  \
    EACH(FTR_SHA_GROUP, e1, e0, m1, 0); EACH(FTR_SHA_MSG1, m0, m1);                       \
    EACH(FTR_SHA_GROUP, e0, e1, m2, 0); EACH(FTR_SHA_MSG1, m1, m2); EACH(FTR_SHA_XOR, m0, m2); \
    EACH(FTR_SHA_GROUP, e1, e0, m3, 0); EACH(FTR_SHA_MSG2, m0, m3); EACH(FTR_SHA_MSG1, m2, m3); \
    EACH(FTR_SHA_XOR, m1, m3);                                                            \
    EACH(FTR_SHA_STEADY, e0, e1, m0, m1, m3, m2, 0);                                      \
    EACH(FTR_SHA_STEADY, e1, e0, m1, m2, m0, m3, 1);                                      \
    EACH(FTR_SHA_STEADY, e0, e1, m2, m3, m1, m0, 1);                                      \
    EACH(FTR_SHA_STEADY, e1, e0, m3, m0, m2, m1, 1);                                      \
    EACH(FTR_SHA_STEADY, e0, e1, m0, m1, m3, m2, 1);                                      \
    EACH(FTR_SHA_STEADY, e1, e0, m1, m2, m0, m3, 1);                                      \
    EACH(FTR_SHA_STEADY, e0, e1, m2, m3, m1, m0, 2);                                      \
    EACH(FTR_SHA_STEADY, e1, e0, m3, m0, m2, m1, 2);                                      \
    EACH(FTR_SHA_STEADY, e0, e1, m0, m1, m3, m2, 2);                                      \
    EACH(FTR_SHA_STEADY, e1, e0, m1, m2, m0, m3, 2);                                      \
    EACH(FTR_SHA_STEADY, e0, e1, m2, m3, m1, m0, 2);                                      \
    EACH(FTR_SHA_STEADY, e1, e0, m3, m0, m2, m1, 3);                                      \
    EACH(FTR_SHA_STEADY, e0, e1, m0, m1, m3, m2, 3);                                      \
    EACH(FTR_SHA_GROUP, e1, e0, m1, 3); EACH(FTR_SHA_MSG2, m2, m1); EACH(FTR_SHA_XOR, m3, m1); \
    EACH(FTR_SHA_GROUP, e0, e1, m2, 3); EACH(FTR_SHA_MSG2, m3, m2);                        \
    EACH(FTR_SHA_GROUP, e1, e0, m3, 3)

#define FTR_SHA_LANE_A(step, ...) step(_a, ##__VA_ARGS__)
#define FTR_SHA_LANES_AB(step, ...) step(_a, ##__VA_ARGS__); step(_b, ##__VA_ARGS__)
#define FTR_SHA_BSWAP_MASK _mm_set_epi64x(0x0001020304050607LL, 0x08090a0b0c0d0e0fLL)

__attribute__((target("sha,sse4.1,ssse3")))
static void ftr_sha1_compress_ni(uint32_t st[5], const uint8_t *blk)
{
    const __m128i bswap = FTR_SHA_BSWAP_MASK;
    FTR_SHA_LOAD(_a, st, blk);
    FTR_SHA_ROUNDS(FTR_SHA_LANE_A);
    FTR_SHA_STORE(_a, st);
}

__attribute__((target("sha,sse4.1,ssse3")))
static void ftr_sha1_compress_ni_x2(uint32_t sa[5], const uint8_t *ba, uint32_t sb[5], const uint8_t *bb)
{
    const __m128i bswap = FTR_SHA_BSWAP_MASK;
    FTR_SHA_LOAD(_a, sa, ba);
    FTR_SHA_LOAD(_b, sb, bb);
    FTR_SHA_ROUNDS(FTR_SHA_LANES_AB);
    FTR_SHA_STORE(_a, sa);
    FTR_SHA_STORE(_b, sb);
}

/* CPUID: leaf 7 EBX bit 29 (SHA), leaf 1 ECX bits 19 (SSE4.1) and 9 (SSSE3) */
static int ftr_cpu_has_sha_ni(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 19)) || !(c & (1u << 9)))
        return 0;
    if (__get_cpuid_max(0, 0) < 7)
        return 0;
    __cpuid_count(7, 0, a, b, c, d);
    return (b >> 29) & 1;
}
#else
#define FTR_HAVE_SHA_NI_CODE 0
static int ftr_cpu_has_sha_ni(void) { return 0; }
static void ftr_sha1_compress_ni(uint32_t st[5], const uint8_t *blk) { (void)st; (void)blk; }
static void ftr_sha1_compress_ni_x2(uint32_t sa[5], const uint8_t *ba, uint32_t sb[5], const uint8_t *bb)
{
    (void)sa; (void)ba; (void)sb; (void)bb;
}
#endif

/* Set once at import (ftr_sha1_select): the SHA extensions when the CPU has them. */
static int ftr_sha1_use_ni = 0;

/* 1 when the accelerated path is now used; asking for it on a CPU without it keeps C */
static int ftr_sha1_select(int want_ni)
{
    ftr_sha1_use_ni = want_ni && FTR_HAVE_SHA_NI_CODE && ftr_cpu_has_sha_ni();
    return ftr_sha1_use_ni;
}

static inline void ftr_sha1_digest(const uint32_t st[5], uint8_t out[FTR_SHA1_DIGEST])
{
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (uint8_t)(st[i] >> 24);
        out[4 * i + 1] = (uint8_t)(st[i] >> 16);
        out[4 * i + 2] = (uint8_t)(st[i] >> 8);
        out[4 * i + 3] = (uint8_t)st[i];
    }
}

/* One block into `st`, or two blocks into two states at once */
static inline void ftr_sha1_compress(uint32_t st[5], const uint8_t *blk)
{
    if (ftr_sha1_use_ni)
        ftr_sha1_compress_ni(st, blk);
    else
        ftr_sha1_compress_c(st, blk);
}

static inline void ftr_sha1_compress_x2(uint32_t sa[5], const uint8_t *ba, uint32_t sb[5], const uint8_t *bb)
{
    if (ftr_sha1_use_ni) {
        ftr_sha1_compress_ni_x2(sa, ba, sb, bb);
    } else {
        ftr_sha1_compress_c(sa, ba);
        ftr_sha1_compress_c(sb, bb);
    }
}

/* ---- base64 (RFC 4648 section 4, with padding) of the 20-byte digest ---- */

static inline char *ftr_base64_digest(char *p, const uint8_t d[FTR_SHA1_DIGEST])
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    int i = 0;
    for (; i + 3 <= FTR_SHA1_DIGEST; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8 | d[i + 2];
        p[0] = b64[v >> 18]; p[1] = b64[(v >> 12) & 63]; p[2] = b64[(v >> 6) & 63]; p[3] = b64[v & 63];
        p += 4;
    }
    /* 20 = 6 * 3 + 2: two bytes left, three characters and one '=' */
    uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8;
    p[0] = b64[v >> 18]; p[1] = b64[(v >> 12) & 63]; p[2] = b64[(v >> 6) & 63]; p[3] = '=';
    return p + 4;
}

/* ---- the Community ID ---- */

static inline uint64_t ftr_load_be64(const uint8_t *b)
{
    return (uint64_t)ftr_load_be32(b) << 32 | ftr_load_be32(b + 4);
}

/* The one padded SHA-1 block of the flow (src, sport) -> (dst, dport): the hashed tuple,
 * 0x80, zeros and the tuple's length in bits (FIPS 180-4 5.1.1). Written with fixed
 * sizes per address length (4 or 16), so the compiler stores instead of calling libc. */
static inline void ftr_cid_block(uint8_t blk[FTR_SHA1_BLOCK], const uint8_t *src, const uint8_t *dst, int v6,
                                 uint16_t sport, uint16_t dport, uint8_t proto, uint16_t seed)
{
    /* spec, "order_endpoints": the smaller address first; equal addresses, the smaller
     * port first (addresses compare as their network-order bytes) */
    int swap;
    if (v6) {
        uint64_t s0 = ftr_load_be64(src), d0 = ftr_load_be64(dst);
        uint64_t s1 = ftr_load_be64(src + 8), d1 = ftr_load_be64(dst + 8);
        swap = s0 != d0 ? s0 > d0 : s1 != d1 ? s1 > d1 : sport > dport;
    } else {
        uint32_t s0 = ftr_load_be32(src), d0 = ftr_load_be32(dst);
        swap = s0 != d0 ? s0 > d0 : sport > dport;
    }
    if (swap) {
        const uint8_t *t = src; src = dst; dst = t;
        uint16_t tp = sport; sport = dport; dport = tp;
    }
    memset(blk, 0, FTR_SHA1_BLOCK);
    blk[0] = (uint8_t)(seed >> 8); blk[1] = (uint8_t)seed;
    int n;
    if (v6) {
        memcpy(blk + 2, src, 16);
        memcpy(blk + 18, dst, 16);
        n = 34;
    } else {
        memcpy(blk + 2, src, 4);
        memcpy(blk + 6, dst, 4);
        n = 10;
    }
    blk[n] = proto;
    blk[n + 1] = 0;                     /* the pad byte after the protocol */
    blk[n + 2] = (uint8_t)(sport >> 8); blk[n + 3] = (uint8_t)sport;
    blk[n + 4] = (uint8_t)(dport >> 8); blk[n + 5] = (uint8_t)dport;
    n += 6;                             /* 16 (IPv4) or 40 (IPv6) bytes hashed */
    blk[n] = 0x80;
    blk[62] = (uint8_t)((n * 8) >> 8);
    blk[63] = (uint8_t)(n * 8);
}

/* "1:" and the base64 of the digest in `st`: FTR_CID_LEN bytes */
static inline char *ftr_cid_text(char *p, const uint32_t st[5])
{
    uint8_t d[FTR_SHA1_DIGEST];
    ftr_sha1_digest(st, d);
    p[0] = '1'; p[1] = ':';
    return ftr_base64_digest(p + 2, d);
}

static inline char *ftr_community_id(char *p, const uint8_t *src, const uint8_t *dst, int alen,
                                     uint16_t sport, uint16_t dport, uint8_t proto, uint16_t seed)
{
    uint8_t blk[FTR_SHA1_BLOCK];
    uint32_t st[5];
    ftr_cid_block(blk, src, dst, alen == 16, sport, dport, proto, seed);
    memcpy(st, ftr_sha1_init, sizeof st);
    ftr_sha1_compress(st, blk);
    return ftr_cid_text(p, st);
}

#endif
