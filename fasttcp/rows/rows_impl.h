/* One FLOW_DTYPE row to one line of text, per format (fasttcp/rows/writer.pyx drives
 * these over a batch through ftr_rows; what each column means is in docs/tracker.md).
 *
 * A row writer writes at most FTR_ROW_MAX bytes and returns the pointer past its line,
 * or NULL when CPython's float formatter (opts->dtoa, called for times outside the
 * exact range of text_impl.h) failed with a Python error set. Rows reach a writer only
 * after ftr_check_row accepted them: family 4 or 6, codes that name a state, history
 * bytes all ASCII.
 */
#ifndef FASTTCP_ROWS_ROWS_IMPL_H
#define FASTTCP_ROWS_ROWS_IMPL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "text_impl.h"
#include "cid_impl.h"

/* fasttcp.FLOW_DTYPE (align=True) as a C struct: writer.pyx checks every offset and the
 * size against the dtype at import, so a change there cannot go unnoticed here. */
typedef struct {
    uint64_t start_us;
    uint64_t end_us;
    uint64_t orig_bytes;
    uint64_t resp_bytes;
    uint64_t orig_ip_bytes;
    uint64_t resp_ip_bytes;
    uint64_t orig_payload;
    uint64_t resp_payload;
    uint64_t missed_bytes;
    uint32_t orig_pkts;
    uint32_t resp_pkts;
    uint32_t orig_retrans;
    uint32_t resp_retrans;
    uint32_t rtt_syn_synack;            /* microseconds; FTR_RTT_UNSET: not measured */
    uint32_t rtt_synack_ack;
    uint32_t id;
    uint16_t orig_p;
    uint16_t resp_p;
    uint8_t family;                     /* 4 or 6 */
    uint8_t state;                      /* TrackerState */
    uint8_t conn_state;                 /* ConnState */
    uint8_t end_reason;                 /* EndReason */
    uint8_t orig_state;
    uint8_t resp_state;
    uint8_t flipped;
    uint8_t _pad;
    uint8_t orig_h[16];                 /* IPv4 in the first 4 bytes */
    uint8_t resp_h[16];
    char history[32];                   /* numpy S32: NUL-padded, not terminated when full */
} ftr_flow_t;

#define FTR_FLOW_FIELD(name) {#name, offsetof(ftr_flow_t, name)}
static const struct { const char *name; size_t offset; } ftr_flow_layout[] = {
    FTR_FLOW_FIELD(start_us), FTR_FLOW_FIELD(end_us), FTR_FLOW_FIELD(orig_bytes), FTR_FLOW_FIELD(resp_bytes),
    FTR_FLOW_FIELD(orig_ip_bytes), FTR_FLOW_FIELD(resp_ip_bytes), FTR_FLOW_FIELD(orig_payload),
    FTR_FLOW_FIELD(resp_payload), FTR_FLOW_FIELD(missed_bytes), FTR_FLOW_FIELD(orig_pkts),
    FTR_FLOW_FIELD(resp_pkts), FTR_FLOW_FIELD(orig_retrans), FTR_FLOW_FIELD(resp_retrans),
    FTR_FLOW_FIELD(rtt_syn_synack), FTR_FLOW_FIELD(rtt_synack_ack), FTR_FLOW_FIELD(id), FTR_FLOW_FIELD(orig_p),
    FTR_FLOW_FIELD(resp_p), FTR_FLOW_FIELD(family), FTR_FLOW_FIELD(state), FTR_FLOW_FIELD(conn_state),
    FTR_FLOW_FIELD(end_reason), FTR_FLOW_FIELD(orig_state), FTR_FLOW_FIELD(resp_state), FTR_FLOW_FIELD(flipped),
    FTR_FLOW_FIELD(_pad), FTR_FLOW_FIELD(orig_h), FTR_FLOW_FIELD(resp_h), FTR_FLOW_FIELD(history),
};
#undef FTR_FLOW_FIELD
#define FTR_FLOW_NFIELDS ((int)(sizeof ftr_flow_layout / sizeof ftr_flow_layout[0]))

#define FTR_RTT_UNSET 0xffffffffu
#define FTR_HISTORY_MAX 32
#define FTR_PROTO_TCP 6
/* The longest line any format writes, with room to spare: the JSON line is the
 * longest -- about 330 bytes of keys, punctuation and names, 26 for each of two times,
 * 20 for each of 11 counters, 45 for each address, 6 * 32 for an escaped history, the
 * uid and the Community ID: under 1 KiB. */
#define FTR_ROW_MAX 2048

/* The names of TrackerState, ConnState and EndReason (fasttcp/tracker/vocabulary.py),
 * by value; writer.pyx checks them against the enums at import. Each table ends with a
 * "?" that ftr_name gives for a code past the end: rows are checked before they are
 * written, and this keeps a row changed under the writer (by another thread) from
 * reading past a table. A name is copied as its whole 16-byte entry, the pointer then
 * advanced by its length: one fixed-size store instead of a strlen and a memcpy. */
typedef struct {
    char s[16];
    uint8_t n;
} ftr_name_t;
#define FTR_NAME(s) {s, sizeof(s) - 1}
static const ftr_name_t ftr_state_names[] = {
    FTR_NAME("NONE"), FTR_NAME("SYN_SENT"), FTR_NAME("SYN_RECV"), FTR_NAME("ESTABLISHED"), FTR_NAME("FIN_WAIT"),
    FTR_NAME("CLOSE_WAIT"), FTR_NAME("LAST_ACK"), FTR_NAME("TIME_WAIT"), FTR_NAME("CLOSE"), FTR_NAME("SYN_SENT2"),
    FTR_NAME("?"),
};
static const ftr_name_t ftr_conn_state_names[] = {
    FTR_NAME("S0"), FTR_NAME("S1"), FTR_NAME("SF"), FTR_NAME("REJ"), FTR_NAME("S2"), FTR_NAME("S3"),
    FTR_NAME("RSTO"), FTR_NAME("RSTR"), FTR_NAME("RSTOS0"), FTR_NAME("RSTRH"), FTR_NAME("SH"), FTR_NAME("SHR"),
    FTR_NAME("OTH"), FTR_NAME("?"),
};
static const ftr_name_t ftr_end_reason_names[] = {
    FTR_NAME("LIVE"), FTR_NAME("TIMEOUT"), FTR_NAME("REUSED"), FTR_NAME("EVICTED"), FTR_NAME("FLUSHED"), FTR_NAME("?"),
};
#undef FTR_NAME
#define FTR_NSTATES ((int)(sizeof ftr_state_names / sizeof ftr_state_names[0]) - 1)
#define FTR_NCONN_STATES ((int)(sizeof ftr_conn_state_names / sizeof ftr_conn_state_names[0]) - 1)
#define FTR_NEND_REASONS ((int)(sizeof ftr_end_reason_names / sizeof ftr_end_reason_names[0]) - 1)

static inline const ftr_name_t *ftr_name(const ftr_name_t *table, int n, unsigned code)
{
    return &table[code < (unsigned)n ? code : (unsigned)n];
}

static inline char *ftr_put_name(char *p, const ftr_name_t *e)
{
    memcpy(p, e->s, sizeof e->s);
    return p + e->n;
}

#define FTR_STATE(r) ftr_name(ftr_state_names, FTR_NSTATES, (r)->state)
#define FTR_CONN_STATE(r) ftr_name(ftr_conn_state_names, FTR_NCONN_STATES, (r)->conn_state)
#define FTR_END_REASON(r) ftr_name(ftr_end_reason_names, FTR_NEND_REASONS, (r)->end_reason)

/* ---- checking a row ---- */

enum {
    FTR_ROW_OK = 0,
    FTR_ROW_BAD_FAMILY,
    FTR_ROW_BAD_STATE,
    FTR_ROW_BAD_CONN_STATE,
    FTR_ROW_BAD_END_REASON,
    FTR_ROW_BAD_HISTORY,
};

/* numpy's S32 value: the bytes up to the last non-NUL one (NULs inside are kept) */
static inline int ftr_history_len(const ftr_str32_t *h)
{
    for (int i = 3; i >= 0; i--)
        if (h->w[i])
            return 8 * i + (63 - __builtin_clzll(h->w[i])) / 8 + 1;
    return 0;
}

/* The row's history read once, into `s` (32 bytes) and `h`; returns its length. The
 * rows were checked before formatting (ftr_check_row: ASCII), but they are the
 * caller's, and another thread may rewrite them while they are formatted: a line is
 * written from the bytes its escaping was chosen by, and a byte >= 0x80 read now is
 * written '?', as a code that names nothing is, so that every line stays ASCII. */
static inline int ftr_history_take(ftr_str32_t *h, char *s, const ftr_flow_t *r)
{
    memcpy(s, r->history, 32);
    ftr_str32_load(h, s);
    if ((h->w[0] | h->w[1] | h->w[2] | h->w[3]) & 0x8080808080808080ull) {
        for (int i = 0; i < 32; i++)
            if ((unsigned char)s[i] >= 0x80)
                s[i] = '?';
        ftr_str32_load(h, s);
    }
    return ftr_history_len(h);
}

static inline int ftr_check_row(const ftr_flow_t *r)
{
    if (r->family != 4 && r->family != 6) return FTR_ROW_BAD_FAMILY;
    if (r->state >= FTR_NSTATES) return FTR_ROW_BAD_STATE;
    if (r->conn_state >= FTR_NCONN_STATES) return FTR_ROW_BAD_CONN_STATE;
    if (r->end_reason >= FTR_NEND_REASONS) return FTR_ROW_BAD_END_REASON;
    uint64_t h[FTR_HISTORY_MAX / 8];
    memcpy(h, r->history, sizeof h);
    if ((h[0] | h[1] | h[2] | h[3]) & 0x8080808080808080ull)         /* a byte >= 0x80 */
        return FTR_ROW_BAD_HISTORY;
    return FTR_ROW_OK;
}

/* ---- uid: a function of the connection, not of the output position ---- */

#define FTR_UID_LEN 18                  /* 'C' and 17 base62 digits, as Zeek's uids look */
#define FTR_UID_DIGITS_A 11             /* 62^11 > 2^64: all of lane A */
#define FTR_UID_DIGITS_B 6              /* 62^6 ~ 2^35.7 of lane B: ~99.7 bits in all */
#define FTR_UID_SEED_A 0x243f6a8885a308d3ull     /* pi's fraction, only for distinct lanes */
#define FTR_UID_SEED_B 0x13198a2e03707344ull
#define FTR_GOLDEN64 0x9e3779b97f4a7c15ull

/* splitmix64's finaliser (Steele, Lea, Flood 2014): a bijection of 64 bits in which
 * every input bit flips each output bit with probability ~1/2 */
static inline uint64_t ftr_mix64(uint64_t x)
{
    x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27; x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* The key (family, orig_h, orig_p, resp_h, resp_p, start_us) as six 64-bit words --
 * an IPv4 address's unused 12 bytes count as zeros -- folded into two lanes that
 * differ in seed and step. */
static inline void ftr_uid_lanes(const ftr_flow_t *r, uint64_t *a, uint64_t *b)
{
    uint64_t w[6] = {(uint64_t)r->family | (uint64_t)r->orig_p << 8 | (uint64_t)r->resp_p << 24,
                     0, 0, 0, 0, r->start_us};
    if (r->family == 4) {
        w[1] = ftr_load_le64(r->orig_h) & 0xffffffffull;
        w[3] = ftr_load_le64(r->resp_h) & 0xffffffffull;
    } else {
        w[1] = ftr_load_le64(r->orig_h); w[2] = ftr_load_le64(r->orig_h + 8);
        w[3] = ftr_load_le64(r->resp_h); w[4] = ftr_load_le64(r->resp_h + 8);
    }
    uint64_t ha = FTR_UID_SEED_A, hb = FTR_UID_SEED_B;
    for (int i = 0; i < 6; i++) {
        ha = ftr_mix64(ha ^ w[i]);
        hb = ftr_mix64(hb + w[i] * FTR_GOLDEN64);
    }
    *a = ha;
    *b = hb;
}

#define FTR_B62_POW5 916132832u         /* 62^5 < 2^32: five digits in 32-bit arithmetic */

static const char ftr_b62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/* `count` (<= 5) base62 digits of v < 62^5, least significant first */
static inline char *ftr_b62_digits(char *p, uint32_t v, int count)
{
    for (int i = 0; i < count; i++) {
        uint32_t q = v / 62;
        *p++ = ftr_b62[v - 62 * q];
        v = q;
    }
    return p;
}

/* 'C', then lane A's 11 base62 digits and lane B's low 6, least significant first:
 * the digits of a % 62, a / 62 % 62, ..., taken five at a time in 32 bits */
static inline char *ftr_uid(char *p, const ftr_flow_t *r)
{
    uint64_t a, b;
    ftr_uid_lanes(r, &a, &b);
    *p++ = 'C';
    uint64_t a1 = a / FTR_B62_POW5, a2 = a1 / FTR_B62_POW5;
    p = ftr_b62_digits(p, (uint32_t)(a - a1 * FTR_B62_POW5), 5);
    p = ftr_b62_digits(p, (uint32_t)(a1 - a2 * FTR_B62_POW5), 5);
    p = ftr_b62_digits(p, (uint32_t)a2, 1);                      /* a2 < 2^64 / 62^10 < 22 */
    uint64_t b1 = b / FTR_B62_POW5;
    p = ftr_b62_digits(p, (uint32_t)(b - b1 * FTR_B62_POW5), 5);
    return ftr_b62_digits(p, (uint32_t)(b1 % 62), 1);
}

/* A row's Community ID (orig -> resp, TCP): FTR_CID_LEN bytes */
static inline char *ftr_row_community_id(char *p, const ftr_flow_t *r, uint16_t seed)
{
    return ftr_community_id(p, r->orig_h, r->resp_h, r->family == 4 ? 4 : 16, r->orig_p, r->resp_p,
                            FTR_PROTO_TCP, seed);
}

/* Two rows' Community IDs, their SHA-1 blocks hashed together (cid_impl.h) */
static inline void ftr_rows_community_id_x2(char *pa, const ftr_flow_t *a, char *pb, const ftr_flow_t *b,
                                            uint16_t seed)
{
    uint8_t ba[FTR_SHA1_BLOCK], bb[FTR_SHA1_BLOCK];
    uint32_t sa[5], sb[5];
    ftr_cid_block(ba, a->orig_h, a->resp_h, a->family != 4, a->orig_p, a->resp_p, FTR_PROTO_TCP, seed);
    ftr_cid_block(bb, b->orig_h, b->resp_h, b->family != 4, b->orig_p, b->resp_p, FTR_PROTO_TCP, seed);
    memcpy(sa, ftr_sha1_init, sizeof sa);
    memcpy(sb, ftr_sha1_init, sizeof sb);
    ftr_sha1_compress_x2(sa, ba, sb, bb);
    ftr_cid_text(pa, sa);
    ftr_cid_text(pb, sb);
}

/* ---- options of a batch ---- */

enum { FTR_FMT_TABLE = 0, FTR_FMT_JSON = 1, FTR_FMT_CSV = 2, FTR_FMT_ZEEK = 3 };

/* CPython's float formatting for a time outside the exact range: mode 'r' is repr(),
 * 'f' is "%.6f". Returns the end of what it wrote (at most FTR_FLOAT_MAX bytes for
 * 'r'; for 'f', the 13 digits of 2^64 / 1e6, the point and 6 decimals), or NULL with a
 * Python error set. */
typedef char *(*ftr_dtoa_t)(char *p, double x, char mode);

typedef struct {
    int fmt;                            /* FTR_FMT_* */
    int community_id;                   /* write the Community ID column */
    uint16_t seed;                      /* Community ID seed */
    ftr_dtoa_t dtoa;
} ftr_opts_t;

/* repr(us / 1e6) (negated when `neg`) for any 64-bit count of microseconds */
static inline char *ftr_us_repr(char *p, uint64_t us, int neg, const ftr_opts_t *o)
{
    if (us < FTR_EXACT_US_MAX)
        return ftr_us_repr_exact(p, us, neg);
    /* Python divides float(us) -- the int rounded to the nearest double, as C's
     * conversion of a uint64_t does -- by 1e6 */
    double q = (double)us / 1e6;
    return o->dtoa(p, neg ? -q : q, 'r');
}

static inline char *ftr_us_fixed6(char *p, uint64_t us, const ftr_opts_t *o)
{
    if (us < FTR_EXACT_US_MAX)
        return ftr_us_fixed6_exact(p, us);
    return o->dtoa(p, (double)us / 1e6, 'f');
}

/* duration = (end - start) / 1e6 in Python's integers: negative when the row says so */
static inline char *ftr_duration_repr(char *p, const ftr_flow_t *r, const ftr_opts_t *o)
{
    if (r->end_us >= r->start_us)
        return ftr_us_repr(p, r->end_us - r->start_us, 0, o);
    return ftr_us_repr(p, r->start_us - r->end_us, 1, o);
}

/* ---- the formats ---- */

/* a string literal, its length known to the compiler */
#define FTR_LIT(p, s) (memcpy((p), (s), sizeof(s) - 1), (p) + sizeof(s) - 1)

/* JSON: the keys of fasttcp.flow_records' dicts in their order, then "uid" and
 * "community_id"; compact separators; None as null */
static char *ftr_row_json(char *p, const ftr_flow_t *r, const ftr_opts_t *o, const char *cid)
{
    p = FTR_LIT(p, "{\"ts\":");
    if (!(p = ftr_us_repr(p, r->start_us, 0, o))) return NULL;
    p = FTR_LIT(p, ",\"orig_h\":\"");
    p = ftr_addr(p, r->family, r->orig_h);
    p = FTR_LIT(p, "\",\"orig_p\":");
    p = ftr_u64(p, r->orig_p);
    p = FTR_LIT(p, ",\"resp_h\":\"");
    p = ftr_addr(p, r->family, r->resp_h);
    p = FTR_LIT(p, "\",\"resp_p\":");
    p = ftr_u64(p, r->resp_p);
    p = FTR_LIT(p, ",\"proto\":\"tcp\",\"duration\":");
    if (!(p = ftr_duration_repr(p, r, o))) return NULL;
    p = FTR_LIT(p, ",\"orig_bytes\":");
    p = ftr_u64(p, r->orig_bytes);
    p = FTR_LIT(p, ",\"resp_bytes\":");
    p = ftr_u64(p, r->resp_bytes);
    p = FTR_LIT(p, ",\"conn_state\":\"");
    p = ftr_put_name(p, FTR_CONN_STATE(r));
    p = FTR_LIT(p, "\",\"missed_bytes\":");
    p = ftr_u64(p, r->missed_bytes);
    p = FTR_LIT(p, ",\"history\":\"");
    ftr_str32_t h;
    char hs[32];
    int hn = ftr_history_take(&h, hs, r);
    p = FTR_STR32_ANY(&h, hn, ftr_json_special) ? ftr_json_str(p, hs, hn) : ftr_put32(p, hs, hn);
    p = FTR_LIT(p, "\",\"orig_pkts\":");
    p = ftr_u64(p, r->orig_pkts);
    p = FTR_LIT(p, ",\"orig_ip_bytes\":");
    p = ftr_u64(p, r->orig_ip_bytes);
    p = FTR_LIT(p, ",\"resp_pkts\":");
    p = ftr_u64(p, r->resp_pkts);
    p = FTR_LIT(p, ",\"resp_ip_bytes\":");
    p = ftr_u64(p, r->resp_ip_bytes);
    p = FTR_LIT(p, ",\"state\":\"");
    p = ftr_put_name(p, FTR_STATE(r));
    p = FTR_LIT(p, "\",\"rtt_syn_synack\":");
    p = r->rtt_syn_synack == FTR_RTT_UNSET ? FTR_LIT(p, "null") : ftr_us_repr_exact(p, r->rtt_syn_synack, 0);
    p = FTR_LIT(p, ",\"rtt_synack_ack\":");
    p = r->rtt_synack_ack == FTR_RTT_UNSET ? FTR_LIT(p, "null") : ftr_us_repr_exact(p, r->rtt_synack_ack, 0);
    p = FTR_LIT(p, ",\"orig_retrans\":");
    p = ftr_u64(p, r->orig_retrans);
    p = FTR_LIT(p, ",\"resp_retrans\":");
    p = ftr_u64(p, r->resp_retrans);
    p = FTR_LIT(p, ",\"end_reason\":\"");
    p = ftr_put_name(p, FTR_END_REASON(r));
    p = FTR_LIT(p, "\",\"uid\":\"");
    p = ftr_uid(p, r);
    if (cid) {
        p = FTR_LIT(p, "\",\"community_id\":\"");
        memcpy(p, cid, FTR_CID_LEN);
        p += FTR_CID_LEN;
    }
    return FTR_LIT(p, "\"}\n");
}

/* CSV: the columns of fasttcp.rows.CSV_FIELDS; None as an empty field */
static char *ftr_row_csv(char *p, const ftr_flow_t *r, const ftr_opts_t *o, const char *cid)
{
    p = ftr_uid(p, r);
    *p++ = ',';
    if (!(p = ftr_us_repr(p, r->start_us, 0, o))) return NULL;
    *p++ = ',';
    p = ftr_addr(p, r->family, r->orig_h);
    *p++ = ',';
    p = ftr_u64(p, r->orig_p);
    *p++ = ',';
    p = ftr_addr(p, r->family, r->resp_h);
    *p++ = ',';
    p = ftr_u64(p, r->resp_p);
    p = FTR_LIT(p, ",tcp,");
    if (!(p = ftr_duration_repr(p, r, o))) return NULL;
    *p++ = ',';
    p = ftr_u64(p, r->orig_bytes);
    *p++ = ',';
    p = ftr_u64(p, r->resp_bytes);
    *p++ = ',';
    p = ftr_put_name(p, FTR_CONN_STATE(r));
    *p++ = ',';
    p = ftr_u64(p, r->missed_bytes);
    *p++ = ',';
    ftr_str32_t h;
    char hs[32];
    int hn = ftr_history_take(&h, hs, r);
    p = FTR_STR32_ANY(&h, hn, ftr_csv_special) ? ftr_csv_str(p, hs, hn) : ftr_put32(p, hs, hn);
    *p++ = ',';
    p = ftr_u64(p, r->orig_pkts);
    *p++ = ',';
    p = ftr_u64(p, r->orig_ip_bytes);
    *p++ = ',';
    p = ftr_u64(p, r->resp_pkts);
    *p++ = ',';
    p = ftr_u64(p, r->resp_ip_bytes);
    *p++ = ',';
    p = ftr_put_name(p, FTR_STATE(r));
    *p++ = ',';
    if (r->rtt_syn_synack != FTR_RTT_UNSET) p = ftr_us_repr_exact(p, r->rtt_syn_synack, 0);
    *p++ = ',';
    if (r->rtt_synack_ack != FTR_RTT_UNSET) p = ftr_us_repr_exact(p, r->rtt_synack_ack, 0);
    *p++ = ',';
    p = ftr_u64(p, r->orig_retrans);
    *p++ = ',';
    p = ftr_u64(p, r->resp_retrans);
    *p++ = ',';
    p = ftr_put_name(p, FTR_END_REASON(r));
    if (cid) {
        *p++ = ',';
        memcpy(p, cid, FTR_CID_LEN);
        p += FTR_CID_LEN;
    }
    *p++ = '\n';
    return p;
}

/* Zeek conn.log: the fields of fasttcp.rows.ZEEK_FIELDS, tab-separated, "-" for unset.
 * Zeek logs duration, orig_bytes and resp_bytes only when the duration is > 0. */
static char *ftr_row_zeek(char *p, const ftr_flow_t *r, const ftr_opts_t *o, const char *cid)
{
    if (!(p = ftr_us_fixed6(p, r->start_us, o))) return NULL;
    *p++ = '\t';
    p = ftr_uid(p, r);
    *p++ = '\t';
    p = ftr_addr(p, r->family, r->orig_h);
    *p++ = '\t';
    p = ftr_u64(p, r->orig_p);
    *p++ = '\t';
    p = ftr_addr(p, r->family, r->resp_h);
    *p++ = '\t';
    p = ftr_u64(p, r->resp_p);
    p = FTR_LIT(p, "\ttcp\t-\t");
    if (r->end_us > r->start_us) {
        if (!(p = ftr_us_fixed6(p, r->end_us - r->start_us, o))) return NULL;
        *p++ = '\t';
        p = ftr_u64(p, r->orig_bytes);
        *p++ = '\t';
        p = ftr_u64(p, r->resp_bytes);
    } else {
        p = FTR_LIT(p, "-\t-\t-");
    }
    *p++ = '\t';
    p = ftr_put_name(p, FTR_CONN_STATE(r));
    p = FTR_LIT(p, "\t-\t-\t");
    p = ftr_u64(p, r->missed_bytes);
    *p++ = '\t';
    /* an empty history is written "-" (unset), as fasttcp always has, not "(empty)" */
    ftr_str32_t h;
    char hs[32];
    int hn = ftr_history_take(&h, hs, r);
    if (hn > 0 && !FTR_STR32_ANY(&h, hn, ftr_zeek_special) && !ftr_zeek_reserved(hs, hn))
        p = ftr_put32(p, hs, hn);
    else
        p = ftr_zeek_str(p, hs, hn, "-");
    *p++ = '\t';
    p = ftr_u64(p, r->orig_pkts);
    *p++ = '\t';
    p = ftr_u64(p, r->orig_ip_bytes);
    *p++ = '\t';
    p = ftr_u64(p, r->resp_pkts);
    *p++ = '\t';
    p = ftr_u64(p, r->resp_ip_bytes);
    p = FTR_LIT(p, "\t-");
    if (cid) {
        *p++ = '\t';
        memcpy(p, cid, FTR_CID_LEN);
        p += FTR_CID_LEN;
    }
    *p++ = '\n';
    return p;
}

/* The table: columns padded as the header of writer.pyx's TABLE_HEADER lays them out */
#define FTR_TABLE_ENDPOINT_W 41
#define FTR_TABLE_CONN_STATE_W 6
#define FTR_TABLE_HISTORY_W 12
#define FTR_TABLE_STATE_W 11
#define FTR_TABLE_PKTS_W 6
#define FTR_TABLE_BYTES_W 10
#define FTR_TABLE_RTT_W 8

static inline char *ftr_table_endpoint(char *p, const ftr_flow_t *r, const uint8_t *h, uint16_t port)
{
    char tmp[FTR_ADDR_MAX + 1 + FTR_U64_MAX_DIGITS];
    char *e = ftr_addr(tmp, r->family, h);
    *e++ = ':';
    e = ftr_u64(e, port);
    return ftr_rjust(p, tmp, (int)(e - tmp), FTR_TABLE_ENDPOINT_W);
}

static inline char *ftr_table_count(char *p, uint64_t v, int width, int right)
{
    char tmp[FTR_U64_MAX_DIGITS];
    int n = (int)(ftr_u64(tmp, v) - tmp);
    return right ? ftr_rjust(p, tmp, n, width) : ftr_ljust(p, tmp, n, width);
}

static char *ftr_row_table(char *p, const ftr_flow_t *r, const ftr_opts_t *o, const char *cid)
{
    (void)o; (void)cid;
    const ftr_name_t *name;
    p = ftr_table_endpoint(p, r, r->orig_h, r->orig_p);
    *p++ = ' ';
    p = ftr_table_endpoint(p, r, r->resp_h, r->resp_p);
    *p++ = ' ';
    name = FTR_CONN_STATE(r);
    p = ftr_rjust(p, name->s, name->n, FTR_TABLE_CONN_STATE_W);
    *p++ = ' ';
    ftr_str32_t h;
    char hs[32];
    int hn = ftr_history_take(&h, hs, r);
    p = ftr_ljust(p, hs, hn, FTR_TABLE_HISTORY_W);
    *p++ = ' ';
    name = FTR_STATE(r);
    p = ftr_ljust(p, name->s, name->n, FTR_TABLE_STATE_W);
    *p++ = ' ';
    p = ftr_table_count(p, r->orig_pkts, FTR_TABLE_PKTS_W, 1);
    *p++ = '/';
    p = ftr_table_count(p, r->resp_pkts, FTR_TABLE_PKTS_W, 0);
    *p++ = ' ';
    p = ftr_table_count(p, r->orig_bytes, FTR_TABLE_BYTES_W, 1);
    *p++ = '/';
    p = ftr_table_count(p, r->resp_bytes, FTR_TABLE_BYTES_W, 0);
    *p++ = ' ';
    char rtt[FTR_U64_MAX_DIGITS];
    int n = 1;
    if (r->rtt_syn_synack == FTR_RTT_UNSET)
        rtt[0] = '-';
    else
        n = (int)(ftr_ms3(rtt, r->rtt_syn_synack) - rtt);
    p = ftr_rjust(p, rtt, n, FTR_TABLE_RTT_W);
    *p++ = '\n';
    return p;
}

static inline char *ftr_row(char *p, const ftr_flow_t *r, const ftr_opts_t *o, const char *cid)
{
    switch (o->fmt) {
    case FTR_FMT_JSON: return ftr_row_json(p, r, o, cid);
    case FTR_FMT_CSV: return ftr_row_csv(p, r, o, cid);
    case FTR_FMT_ZEEK: return ftr_row_zeek(p, r, o, cid);
    default: return ftr_row_table(p, r, o, cid);
    }
}

/* The most one ftr_rows call writes */
#define FTR_STEP_MAX (2 * FTR_ROW_MAX)

/* The lines of `count` rows (1 or 2): the writer loop's step. Two rows at a time so
 * that their Community IDs are hashed together. */
static inline char *ftr_rows(char *p, const ftr_flow_t *r, int count, const ftr_opts_t *o)
{
    char ca[FTR_CID_LEN], cb[FTR_CID_LEN];
    const char *cid_a = NULL, *cid_b = NULL;
    if (o->community_id) {
        if (count == 2) {
            ftr_rows_community_id_x2(ca, &r[0], cb, &r[1], o->seed);
            cid_b = cb;
        } else {
            ftr_row_community_id(ca, &r[0], o->seed);
        }
        cid_a = ca;
    }
    p = ftr_row(p, &r[0], o, cid_a);
    if (p != NULL && count == 2)
        p = ftr_row(p, &r[1], o, cid_b);
    return p;
}

#endif
