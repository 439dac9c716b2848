/* Text primitives of the row writers: integers, addresses, times and the escapes of
 * each format, written into a caller's buffer that has room for them (the row writers
 * in rows_impl.h bound a row by FTR_ROW_MAX bytes; every helper here says how many
 * bytes it may write). Each returns the pointer past what it wrote.
 *
 * The contract is Python's own text for the same values (the writer these replace
 * formatted rows with str(), repr(float), f"{x:.6f}", json.dumps and the csv module),
 * byte for byte. Where a shortcut is exact only in a range, the range is proved at
 * its constant and the caller takes CPython's formatter outside it.
 */
#ifndef FASTTCP_ROWS_TEXT_IMPL_H
#define FASTTCP_ROWS_TEXT_IMPL_H

#include <stdint.h>
#include <string.h>

/* ---- integers ---- */

#define FTR_U64_MAX_DIGITS 20

static const char ftr_digit_pairs[] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

static const uint64_t ftr_pow10[FTR_U64_MAX_DIGITS] = {
    1ull, 10ull, 100ull, 1000ull, 10000ull, 100000ull, 1000000ull, 10000000ull, 100000000ull, 1000000000ull,
    10000000000ull, 100000000000ull, 1000000000000ull, 10000000000000ull, 100000000000000ull,
    1000000000000000ull, 10000000000000000ull, 100000000000000000ull, 1000000000000000000ull,
    10000000000000000000ull,
};

/* Decimal digits of v without a loop ("Bit Twiddling Hacks", integer log base 10):
 * with `bits` its bit length, t = bits * 1233 / 4096 = floor(bits * log10(2)) is
 * floor(log10(v)) or one more, which v < 10^t tells (t <= 19 for 64 bits). v | 1 counts
 * 0 as one digit and moves no v across a power of ten (those are even, v + 1 < 10^k). */
static inline int ftr_ndigits(uint64_t v)
{
    v |= 1;
    int bits = 64 - __builtin_clzll(v);
    int t = (bits * 1233) >> 12;
    return t + 1 - (v < ftr_pow10[t]);
}

/* `v` (< 10^width) in exactly `width` digits (leading zeros), two at a time from the
 * right; 32-bit arithmetic once the value fits. */
static inline char *ftr_digits(char *p, uint64_t v, int width)
{
    char *q = p + width;
    while (v >= 0x100000000ull) {
        uint64_t d = v / 100;
        q -= 2;
        memcpy(q, ftr_digit_pairs + 2 * (v - 100 * d), 2);
        v = d;
    }
    uint32_t w = (uint32_t)v;
    while (q - p >= 2) {
        uint32_t d = w / 100;
        q -= 2;
        memcpy(q, ftr_digit_pairs + 2 * (w - 100 * d), 2);
        w = d;
    }
    if (q > p)
        *--q = (char)('0' + w);
    return p + width;
}

/* str(int): at most FTR_U64_MAX_DIGITS bytes. */
static inline char *ftr_u64(char *p, uint64_t v)
{
    return ftr_digits(p, v, ftr_ndigits(v));
}

/* The decimal text of each byte value, length first: IPv4 addresses are four lookups.
 * Filled by ftr_text_init() (writer.pyx calls it at import). */
static char ftr_u8_text[256][4];

static void ftr_text_init(void)
{
    for (int v = 0; v < 256; v++) {
        char *e = ftr_u64(ftr_u8_text[v] + 1, (uint64_t)v);
        ftr_u8_text[v][0] = (char)(e - ftr_u8_text[v] - 1);
    }
}

static inline char *ftr_u8(char *p, uint8_t v)
{
    memcpy(p, ftr_u8_text[v] + 1, 3);          /* always 3 bytes; the pointer moves by the length */
    return p + ftr_u8_text[v][0];
}

/* ---- addresses ---- */

#define FTR_ADDR_MAX 45                 /* "ffff:...:ffff" is 39; "::ffff:255.255.255.255" 22 */

static inline char *ftr_ipv4(char *p, const uint8_t *a)
{
    p = ftr_u8(p, a[0]); *p++ = '.';
    p = ftr_u8(p, a[1]); *p++ = '.';
    p = ftr_u8(p, a[2]); *p++ = '.';
    return ftr_u8(p, a[3]);
}

static inline char *ftr_hex16(char *p, unsigned v)
{
    static const char hx[] = "0123456789abcdef";
    if (v >= 0x1000) *p++ = hx[v >> 12];
    if (v >= 0x100) *p++ = hx[(v >> 8) & 15];
    if (v >= 0x10) *p++ = hx[(v >> 4) & 15];
    *p++ = hx[v & 15];
    return p;
}

/* RFC 5952 section 4: lower case, no leading zeros in a group, the longest run of two
 * or more zero groups as "::" (the first on a tie, 4.2.3; a single zero group stays
 * "0", 4.2.2). Section 5: an IPv4-mapped address (::ffff:0:0/96, RFC 4291 2.5.5.2) in
 * mixed notation, ::ffff:192.0.2.1 -- as Python's ipaddress writes it from 3.13 on. */
static char *ftr_ipv6(char *p, const uint8_t *a)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(a, mapped, sizeof mapped) == 0) {
        memcpy(p, "::ffff:", 7);
        return ftr_ipv4(p + 7, a + 12);
    }
    unsigned g[8];
    int best = -1, best_len = 0, run = -1, run_len = 0;
    for (int i = 0; i < 8; i++) {
        g[i] = (unsigned)a[2 * i] << 8 | a[2 * i + 1];
        if (g[i] != 0) {
            run = -1;
            continue;
        }
        if (run < 0) { run = i; run_len = 0; }
        if (++run_len > best_len) { best = run; best_len = run_len; }
    }
    if (best_len < 2)
        best = -1;
    for (int i = 0; i < 8;) {
        if (i == best) {
            *p++ = ':'; *p++ = ':';
            i += best_len;
            continue;
        }
        if (i > 0 && !(best >= 0 && i == best + best_len))
            *p++ = ':';
        p = ftr_hex16(p, g[i]);
        i++;
    }
    return p;
}

/* family 4: the first 4 bytes; anything else was refused by the row check */
static inline char *ftr_addr(char *p, int family, const uint8_t *a)
{
    return family == 4 ? ftr_ipv4(p, a) : ftr_ipv6(p, a);
}

/* ---- times: integer microseconds as Python prints us / 1e6 ---- */

#define FTR_US_PER_S 1000000u
/* Below this many microseconds, q = fl(us / 1e6) is under 2^33, where a double's ulp is
 * at most 2^-20 < 1e-6: at most one multiple of 1e-6 lies within half an ulp of q, so
 * us / 1e6 written exactly is both the shortest decimal that reads back as q (repr)
 * and q rounded to 6 places (error <= 2^-21 < 0.5e-6). 8e15 us is 8e9 s, year 2223.
 * Larger values go to CPython's formatter (the caller's ftr_dtoa_t). */
#define FTR_EXACT_US_MAX 8000000000000000ull
/* repr() writes a float below 1e-4 in exponent notation (float_repr_style 'r': the
 * decimal exponent is < -4), i.e. fewer than 100 microseconds. */
#define FTR_SCI_BELOW_US 100u
#define FTR_FLOAT_MAX 26                /* repr of a negative double: "-1.2345678901234567e+300" is 24 */

/* The 6 digits of a fraction of a second (< 10^6 microseconds) */
static inline char *ftr_frac6(char *p, uint32_t us)
{
    uint32_t hi = us / 10000, lo = us - hi * 10000, mid = lo / 100;
    memcpy(p, ftr_digit_pairs + 2 * hi, 2);
    memcpy(p + 2, ftr_digit_pairs + 2 * mid, 2);
    memcpy(p + 4, ftr_digit_pairs + 2 * (lo - mid * 100), 2);
    return p + 6;
}

/* repr(us / 1e6) for us < FTR_EXACT_US_MAX, with a '-' first when `neg` */
static inline char *ftr_us_repr_exact(char *p, uint64_t us, int neg)
{
    if (us == 0) {
        memcpy(p, "0.0", 3);
        return p + 3;
    }
    if (neg)
        *p++ = '-';
    if (us < FTR_SCI_BELOW_US) {
        /* 1..99 us: "5e-06", "1e-05", "1.2e-05", "9.9e-05" */
        if (us < 10) {
            *p++ = (char)('0' + us);
            memcpy(p, "e-06", 4);
            return p + 4;
        }
        *p++ = (char)('0' + us / 10);
        if (us % 10) {
            *p++ = '.';
            *p++ = (char)('0' + us % 10);
        }
        memcpy(p, "e-05", 4);
        return p + 4;
    }
    uint64_t sec = us / FTR_US_PER_S;
    uint32_t frac = (uint32_t)(us - sec * FTR_US_PER_S);
    p = ftr_u64(p, sec);
    *p++ = '.';
    if (frac == 0) {
        *p++ = '0';                     /* repr keeps ".0" on an integral value */
        return p;
    }
    char *e = ftr_frac6(p, frac);
    while (e[-1] == '0')                /* the shortest: no trailing zeros (frac != 0 stops it) */
        e--;
    return e;
}

/* f"{us / 1e6:.6f}" for us < FTR_EXACT_US_MAX */
static inline char *ftr_us_fixed6_exact(char *p, uint64_t us)
{
    uint64_t sec = us / FTR_US_PER_S;
    p = ftr_u64(p, sec);
    *p++ = '.';
    return ftr_frac6(p, (uint32_t)(us - sec * FTR_US_PER_S));
}

/* The table's RTT column: str(round(us / 1e6 * 1e3, 3)), us < 2^32. The product is
 * within a few ulps (< 1e-9) of us / 1000, so round(..., 3) is the double nearest
 * us / 1000, whose repr is that decimal: under 4.3e6 with 3 places, well inside the
 * 17 significant digits a double keeps and never in exponent notation (>= 0.001). */
static inline char *ftr_ms3(char *p, uint32_t us)
{
    uint32_t ms = us / 1000u, frac = us - ms * 1000u;
    p = ftr_u64(p, ms);
    *p++ = '.';
    if (frac == 0) {
        *p++ = '0';
        return p;
    }
    p[0] = (char)('0' + frac / 100);
    memcpy(p + 1, ftr_digit_pairs + 2 * (frac % 100), 2);
    char *e = p + 3;
    while (e[-1] == '0')
        e--;
    return e;
}

/* ---- strings ---- */

static const char ftr_hex_lower[] = "0123456789abcdef";

/* Little-endian 64-bit load, whatever the host's order */
static inline uint64_t ftr_load_le64(const void *b)
{
    uint64_t v;
    memcpy(&v, b, sizeof v);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

/* Byte tests on 8 bytes at once (SWAR, "Bit Twiddling Hacks": "Determine if a word has a
 * byte less than n"): the high bit of a byte is set where the test holds -- exactly at
 * the lowest such byte, and possibly in bytes above one where it holds (a borrow), so
 * "any byte of these" is exact for a prefix of the word: ftr_swar_prefix masks it. */
#define FTR_SWAR_ONES 0x0101010101010101ull
#define FTR_SWAR_HIGH 0x8080808080808080ull

static inline uint64_t ftr_swar_less(uint64_t x, unsigned n)        /* bytes < n, n <= 128 */
{
    return (x - FTR_SWAR_ONES * n) & ~x & FTR_SWAR_HIGH;
}

static inline uint64_t ftr_swar_eq(uint64_t x, unsigned char c)      /* bytes == c */
{
    return ftr_swar_less(x ^ (FTR_SWAR_ONES * c), 1);
}

/* The first `n` bytes of a word (n >= 8: all of them; n <= 0: none -- FTR_STR32_ANY
 * asks for n - 24 of a shorter string, and a shift by a negative count is undefined) */
static inline uint64_t ftr_swar_prefix(int n)
{
    return n <= 0 ? 0 : n >= 8 ? ~0ull : (1ull << (8 * n)) - 1;
}

/* A string of at most 32 bytes (a history) as four little-endian words, zero-padded */
typedef struct {
    uint64_t w[4];
} ftr_str32_t;

static inline void ftr_str32_load(ftr_str32_t *t, const char *s)
{
    for (int i = 0; i < 4; i++)
        t->w[i] = ftr_load_le64(s + 8 * i);
}

/* Whether any of the first n bytes of t has the property `test` marks (a SWAR test) */
#define FTR_STR32_ANY(t, n, test)                                                     \
    ((((test((t)->w[0])) & ftr_swar_prefix(n)) | ((test((t)->w[1])) & ftr_swar_prefix((n) - 8)) | \
      ((test((t)->w[2])) & ftr_swar_prefix((n) - 16)) | ((test((t)->w[3])) & ftr_swar_prefix((n) - 24))) != 0)

/* JSON: a control byte, 0x7f, '"' or '\\' */
static inline uint64_t ftr_json_special(uint64_t x)
{
    return ftr_swar_less(x, 0x20) | ftr_swar_eq(x, 0x7f) | ftr_swar_eq(x, '"') | ftr_swar_eq(x, '\\');
}

/* CSV: what makes the csv module quote a field */
static inline uint64_t ftr_csv_special(uint64_t x)
{
    return ftr_swar_eq(x, ',') | ftr_swar_eq(x, '"') | ftr_swar_eq(x, '\n') | ftr_swar_eq(x, '\r');
}

/* Zeek: a byte isprint() refuses, or a backslash */
static inline uint64_t ftr_zeek_special(uint64_t x)
{
    return ftr_swar_less(x, 0x20) | ftr_swar_eq(x, 0x7f) | ftr_swar_eq(x, '\\');
}

/* Copy a string of at most 32 bytes from a 32-byte field: the whole field, then the
 * pointer moves by n (the caller's buffer has room for the 32) */
static inline char *ftr_put32(char *p, const char *s, int n)
{
    memcpy(p, s, 32);
    return p + n;
}

/* JSON string body as json.dumps(ensure_ascii=True) writes it (CPython's
 * Modules/_json.c ascii_escape_unichar): the two-character escapes for '"', '\\', \b,
 * \f, \n, \r, \t; \u00xx (lower-case hex) for every other byte outside ' '..'~'.
 * At most 6 bytes a byte. */
static inline char *ftr_json_str(char *p, const char *s, int n)
{
    for (int i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= ' ' && c <= '~' && c != '"' && c != '\\') {
            *p++ = (char)c;
            continue;
        }
        *p++ = '\\';
        switch (c) {
        case '"': *p++ = '"'; break;
        case '\\': *p++ = '\\'; break;
        case '\b': *p++ = 'b'; break;
        case '\f': *p++ = 'f'; break;
        case '\n': *p++ = 'n'; break;
        case '\r': *p++ = 'r'; break;
        case '\t': *p++ = 't'; break;
        default:
            memcpy(p, "u00", 3);
            p[3] = ftr_hex_lower[c >> 4];
            p[4] = ftr_hex_lower[c & 15];
            p += 5;
        }
    }
    return p;
}

/* A CSV field as the csv module writes it with QUOTE_MINIMAL, doublequote and
 * lineterminator "\n": quoted when it holds the delimiter, the quote character, '\n'
 * or '\r' (CPython gh-67044 made '\r' and '\n' always quote, from 3.11.9/3.12.3/3.13;
 * older 3.11 left a bare '\r' unquoted, which a reader then took for a line end), with
 * a quote doubled inside. At most 2n + 2 bytes. */
static inline char *ftr_csv_str(char *p, const char *s, int n)
{
    int quote = 0;
    for (int i = 0; i < n; i++) {
        char c = s[i];
        if (c == ',' || c == '"' || c == '\n' || c == '\r') { quote = 1; break; }
    }
    if (!quote) {
        memcpy(p, s, (size_t)n);
        return p + n;
    }
    *p++ = '"';
    for (int i = 0; i < n; i++) {
        if (s[i] == '"')
            *p++ = '"';
        *p++ = s[i];
    }
    *p++ = '"';
    return p;
}

/* A string field as Zeek's ASCII log writer writes it (src/threading/formatters/
 * Ascii.cc, Describe(TYPE_STRING), and ODesc::AddBytes in src/Desc.cc): a value equal to
 * the unset ("-") or empty ("(empty)") marker has its first byte written as \xNN so it
 * cannot be read as one; otherwise every byte isprint() refuses (< 0x20 -- the tab
 * separator among them -- and 0x7f) as \xNN in lower-case hex, a backslash as "\\"
 * (util::get_escaped_string), the rest as is. `empty` is written for an empty string.
 * At most 4 bytes a byte. */
/* the unset and empty markers of a Zeek log, which a string must not read as */
static inline int ftr_zeek_reserved(const char *s, int n)
{
    return (n == 1 && s[0] == '-') || (n == 7 && memcmp(s, "(empty)", 7) == 0);
}

static inline char *ftr_zeek_str(char *p, const char *s, int n, const char *empty)
{
    if (n == 0) {
        size_t k = strlen(empty);
        memcpy(p, empty, k);
        return p + k;
    }
    int i = 0;
    if (ftr_zeek_reserved(s, n)) {
        *p++ = '\\'; *p++ = 'x';
        *p++ = ftr_hex_lower[(unsigned char)s[0] >> 4];
        *p++ = ftr_hex_lower[(unsigned char)s[0] & 15];
        i = 1;
    }
    for (; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) {
            *p++ = '\\'; *p++ = 'x';
            *p++ = ftr_hex_lower[c >> 4];
            *p++ = ftr_hex_lower[c & 15];
        } else if (c == '\\') {
            *p++ = '\\'; *p++ = '\\';
        } else {
            *p++ = (char)c;
        }
    }
    return p;
}

/* ---- padding (the table format) ---- */

/* f"{s:>width}" / f"{s:<width}": no truncation when s is longer */
static inline char *ftr_rjust(char *p, const char *s, int n, int width)
{
    if (n < width) {
        memset(p, ' ', (size_t)(width - n));
        p += width - n;
    }
    memcpy(p, s, (size_t)n);
    return p + n;
}

static inline char *ftr_ljust(char *p, const char *s, int n, int width)
{
    memcpy(p, s, (size_t)n);
    p += n;
    if (n < width) {
        memset(p, ' ', (size_t)(width - n));
        p += width - n;
    }
    return p;
}

#endif
