/* The bare handshake loop: a benchmark peer, not part of the library.
 *
 * The endpoint's cache-resident handshake rate is judged against what a plain C loop
 * doing the whole synthetic handshake achieves on the same machine. This is that
 * loop, so `fasttcp bench` can measure it in the same run as the endpoint and report
 * the ratio instead of comparing with a figure from another machine. A second variant
 * of it, "lean", adds the endpoint's bookkeeping (below) written as plainly: what a
 * lean core with the same duties could do.
 *
 * It does the work no handshake can skip and nothing else: two IPv4 endpoints,
 * connect -> SYN -> SYN-ACK -> ACK for n flows, batch by batch as the endpoint
 * benchmark runs them; every segment built with Linux's option layout and both
 * checksums, parsed (IPv4 header, TCP header, a full option walk), both checksums
 * verified, looked up in an open-addressing table under a keyed hash (the endpoint's
 * NH + fmix family), ISNs from a keyed hash of the 4-tuple. What it leaves out is what
 * the endpoint does besides: events, retransmission timers, eviction lists, RFC 9293
 * acceptability and RFC 5961 checks, IPv6, option negotiation beyond MSS and the
 * timestamp, drop accounting, pipelined prefetching, a full table's refusals.
 *
 * The lean variant (features = 1) adds, per handshake: the listening-port check; the
 * RFC 9293 checks on the SYN-ACK (ACK in SND.UNA+1 .. SND.NXT) and on the final ACK
 * (flags, PAWS, sequence acceptability, the ACK's range); a retransmission timer armed
 * on each SYN and SYN-ACK and cancelled by its answer (a hashed wheel of intrusive
 * lists, as the endpoint's); the never-established eviction list (append, unlink); an
 * event per state change carrying the 40-byte key an IPv6-capable table keeps; the
 * accept queue; segment and drop counters. Its bookkeeping lives in a second array
 * beside the table, numbered densely as records open (as the endpoint's record pool
 * is), so the bare variant's table stays 32 bytes a slot. Still left
 * out: IPv6, negotiation, RFC 5961, data, closes, prefetching, eviction itself.
 *
 * Written for the compiler, not for reuse: one file, static functions, no allocation
 * in the timed part; the checksum fold, carry add and byte-order helpers are the
 * project's own (csum_impl.h), so the two sides of the ratio do that arithmetic alike. Built as the endpoint is: the package's flags (-O3, no -march)
 * and, like the endpoint, with a gcc profile (setup.py's PGO_MODULES; fasttcp.bench.pgo
 * trains it), so neither side of the ratio has an advantage of build.
 */
#ifndef FASTTCP_BARE_HANDSHAKE_H
#define FASTTCP_BARE_HANDSHAKE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "csum_impl.h"       /* the project's fold, carry add and big-endian helpers */

typedef struct {
    uint32_t la, ra;                  /* addresses as they sit in the packet */
    uint16_t lp, rp;
    uint8_t state, used;              /* 1 SYN-SENT, 2 SYN-RECEIVED, 3 ESTABLISHED */
    uint16_t mss;
    uint32_t iss, snd_nxt, rcv_nxt, ts_recent;
} bare_conn_t;

/* The lean variant's bookkeeping of a record (same index as the record). */
typedef struct {
    uint64_t deadline;                /* retransmission timer; 0 = none */
    uint32_t t_prev, t_next;          /* timer wheel bucket list (BARE_HEAD | bucket at a head) */
    uint32_t c_prev, c_next;          /* never-established list */
    uint32_t snd_una, rcv_wnd, segs;
    uint8_t gen, flags, pad[2];
} bare_ext_t;

typedef struct {
    uint64_t time;
    uint32_t conn;
    uint8_t old_state, new_state, cause, gen;
    uint64_t key[5];
} bare_event_t;

#define BARE_NIL 0xffffffffu
#define BARE_HEAD 0x80000000u
#define BARE_WHEEL 65536u             /* buckets of 1.024 ms, as the endpoint's */
#define BARE_RTO 1000000u             /* RFC 6298's initial 1 s, in microseconds */

static inline uint32_t bare_bucket(uint64_t deadline) { return (uint32_t)(deadline >> 10) & (BARE_WHEEL - 1); }

typedef struct {
    bare_conn_t *conns;
    uint32_t mask;
    uint64_t key[3];                  /* the table hash's secret */
    uint64_t isn_key[3];              /* the ISN function's own secret (RFC 6528) */
    uint8_t *out;                     /* segments to send, back to back */
    uint32_t *off;
    size_t out_len;
    uint32_t nout;
    /* the lean variant only */
    uint32_t *dense;                  /* per table slot: its record's dense id */
    uint32_t next_id;
    bare_ext_t *ext;                  /* per dense id */
    uint32_t *wheel;
    uint32_t emb_head, emb_tail;
    bare_event_t *ev;
    uint32_t nev, nacc;
    uint32_t *acceptq;
    uint64_t now;                     /* microseconds */
    uint64_t segs_in, segs_out, drops;
    uint8_t listening[8192];          /* a bit per port */
} bare_ep_t;

static inline uint64_t bare_nh(uint64_t w, uint64_t s) {
    return (uint64_t)(uint32_t)((uint32_t)w + (uint32_t)s) * (uint32_t)((uint32_t)(w >> 32) + (uint32_t)(s >> 32));
}

static inline uint64_t bare_fmix(uint64_t h) {
    h ^= h >> 33; h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33; h *= 0xc4ceb9fe1a85ec53ULL;
    return h ^ (h >> 33);
}

static inline uint64_t bare_keyed(const uint64_t *key, uint32_t la, uint32_t ra, uint16_t lp, uint16_t rp) {
    return bare_fmix((bare_nh(((uint64_t)lp << 16) | rp, key[0]) + bare_nh(((uint64_t)ra << 32) | la, key[1]))
                     ^ key[2]);
}

static inline uint64_t bare_hash(const bare_ep_t *e, uint32_t la, uint32_t ra, uint16_t lp, uint16_t rp) {
    return bare_keyed(e->key, la, ra, lp, rp);
}

/* RFC 6528: a keyed hash of the 4-tuple under its own secret, plus the clock. */
static inline uint32_t bare_isn(const bare_ep_t *e, uint32_t la, uint32_t ra, uint16_t lp, uint16_t rp,
                                uint32_t clock) {
    return (uint32_t)bare_keyed(e->isn_key, la, ra, lp, rp) + clock;
}

/* Find the record of a 4-tuple, or (insert) claim a free slot for it. */
static inline bare_conn_t *bare_find(bare_ep_t *e, uint32_t la, uint32_t ra, uint16_t lp, uint16_t rp,
                                     uint64_t h, int insert) {
    uint32_t i = (uint32_t)h & e->mask;
    for (;;) {
        bare_conn_t *c = &e->conns[i];
        if (!c->used) {
            if (!insert)
                return NULL;
            c->used = 1; c->la = la; c->ra = ra; c->lp = lp; c->rp = rp;
            return c;
        }
        if (c->la == la && c->ra == ra && c->lp == lp && c->rp == rp)
            return c;
        i = (i + 1) & e->mask;
    }
}

/* The lean variant's dense id of a record (its bookkeeping, events and accept queue
 * use it), given when the record opens: records are numbered in the order they open,
 * as the endpoint's pool hands them out, so timer and list neighbours sit side by side
 * in `ext` instead of at random table slots. */
static inline uint32_t bare_id(const bare_ep_t *e, const bare_conn_t *c) { return e->dense[c - e->conns]; }

static inline void bare_event(bare_ep_t *e, const bare_conn_t *c, uint8_t old, uint8_t new_state, uint8_t cause) {
    bare_event_t *v = &e->ev[e->nev++];
    v->time = e->now;
    v->conn = bare_id(e, c);
    v->old_state = old;
    v->new_state = new_state;
    v->cause = cause;
    v->gen = e->ext[v->conn].gen;
    v->key[0] = 4u | ((uint64_t)c->lp << 32) | ((uint64_t)c->rp << 48);
    v->key[1] = c->la;
    v->key[2] = 0;
    v->key[3] = c->ra;
    v->key[4] = 0;
}

static inline void bare_timer_arm(bare_ep_t *e, uint32_t id, uint64_t deadline) {
    bare_ext_t *x = &e->ext[id];
    uint32_t b = bare_bucket(deadline);
    x->deadline = deadline;
    x->t_prev = BARE_HEAD | b;
    x->t_next = e->wheel[b];
    if (x->t_next != BARE_NIL)
        e->ext[x->t_next].t_prev = id;
    e->wheel[b] = id;
}

static inline void bare_timer_cancel(bare_ep_t *e, uint32_t id) {
    bare_ext_t *x = &e->ext[id];
    if (!x->deadline)
        return;
    if (x->t_prev & BARE_HEAD)
        e->wheel[x->t_prev & (BARE_WHEEL - 1)] = x->t_next;
    else
        e->ext[x->t_prev].t_next = x->t_next;
    if (x->t_next != BARE_NIL)
        e->ext[x->t_next].t_prev = x->t_prev;
    x->deadline = 0;
    x->t_prev = x->t_next = BARE_NIL;
}

static inline void bare_embryonic_append(bare_ep_t *e, uint32_t id) {
    bare_ext_t *x = &e->ext[id];
    x->c_next = BARE_NIL;
    x->c_prev = e->emb_tail;
    if (x->c_prev != BARE_NIL)
        e->ext[x->c_prev].c_next = id;
    else
        e->emb_head = id;
    e->emb_tail = id;
}

static inline void bare_embryonic_unlink(bare_ep_t *e, uint32_t id) {
    bare_ext_t *x = &e->ext[id];
    if (x->c_prev != BARE_NIL)
        e->ext[x->c_prev].c_next = x->c_next;
    else
        e->emb_head = x->c_next;
    if (x->c_next != BARE_NIL)
        e->ext[x->c_next].c_prev = x->c_prev;
    else
        e->emb_tail = x->c_prev;
    x->c_prev = x->c_next = BARE_NIL;
}

/* A new record's bookkeeping: embryonic, a 1 s retransmission timer, its event. Every
 * field of its `ext` entry is written here or by the arm and the append (entries are
 * reused round after round without being cleared). */
static inline void bare_opened(bare_ep_t *e, bare_conn_t *c, uint8_t old, uint8_t new_state, uint8_t cause) {
    uint32_t id = e->next_id++;
    bare_ext_t *x = &e->ext[id];
    e->dense[c - e->conns] = id;
    x->snd_una = c->iss;
    x->rcv_wnd = 65535;
    x->segs = 1;
    x->gen++;
    x->flags = 3;
    bare_embryonic_append(e, id);
    bare_timer_arm(e, id, e->now + BARE_RTO);
    bare_event(e, c, old, new_state, cause);
}

/* ESTABLISHED: the timer cancelled, off the embryonic list, the event. */
static inline void bare_established(bare_ep_t *e, bare_conn_t *c, uint8_t old, uint8_t cause) {
    uint32_t id = bare_id(e, c);
    bare_timer_cancel(e, id);
    bare_embryonic_unlink(e, id);
    bare_event(e, c, old, 4, cause);
}


/* Build one segment of c into e->out: IPv4 (ID 0, DF, TTL 64), TCP with Linux's SYN
 * options (MSS, SACK-permitted + TS, NOP WS) or NOP NOP TS, both checksums summed from
 * the words as they are written. */
static inline void bare_send(bare_ep_t *e, const bare_conn_t *c, uint8_t flags, uint32_t seq, uint32_t ack,
                             uint32_t tsval) {
    uint8_t *p = e->out + e->out_len, *t = p + 20;
    uint32_t opt[5], ip[5], tcp[4];
    int n = 0, i, thl, tot;
    uint64_t s, si = 0;
    if (flags & 0x02) {
        opt[n++] = (2u << 24) | (4u << 16) | c->mss;
        opt[n++] = (4u << 24) | (2u << 16) | (8u << 8) | 10u;
        opt[n++] = tsval;
        opt[n++] = c->ts_recent;
        opt[n++] = (1u << 24) | (3u << 16) | (3u << 8) | 7u;
    } else {
        opt[n++] = 0x0101080au;
        opt[n++] = tsval;
        opt[n++] = c->ts_recent;
    }
    thl = 20 + 4 * n;
    tot = 20 + thl;
    ip[0] = 0x45000000u | (uint32_t)tot;
    ip[1] = 0x4000u;
    ip[2] = (64u << 24) | (6u << 16);
    ip[3] = ft_htonl(c->la);
    ip[4] = ft_htonl(c->ra);
    for (i = 0; i < 5; i++)
        si += ip[i];
    ip[2] |= (uint16_t)~ft_csum_fold(si);
    for (i = 0; i < 5; i++)
        ft_store_be32(p + 4 * i, ip[i]);
    tcp[0] = ((uint32_t)c->lp << 16) | c->rp;
    tcp[1] = seq;
    tcp[2] = ack;
    tcp[3] = ((uint32_t)(thl / 4) << 28) | ((uint32_t)flags << 16) | 65535u;
    s = (uint64_t)c->la + c->ra + ft_htonl((6u << 16) | (uint32_t)thl);
    for (i = 0; i < 4; i++) {
        ft_store_be32(t + 4 * i, tcp[i]);
        s += ft_htonl(tcp[i]);
    }
    for (i = 0; i < n; i++) {
        ft_store_be32(t + 20 + 4 * i, opt[i]);
        s += ft_htonl(opt[i]);
    }
    ft_store_be32(t + 16, (uint32_t)ft_htons((uint16_t)~ft_csum_fold(s)) << 16);
    e->off[e->nout++] = (uint32_t)e->out_len;
    e->out_len += (size_t)tot;
}

typedef struct {
    uint32_t sa, da, seq, ack, tsval;
    uint16_t sp, dp, mss;
    uint8_t flags;
} bare_seg_t;

/* Parse and verify one packet; 0 if it is not a good IPv4 TCP segment. */
static inline int bare_parse(const uint8_t *b, size_t len, bare_seg_t *g) {
    const uint8_t *t = b + 20;
    size_t tot, tl, hl, i;
    uint64_t ip = 0, s, w;
    uint32_t x;
    if (len < 40 || b[0] != 0x45 || b[9] != 6 || ((b[6] & 0x3f) | b[7]))
        return 0;
    tot = ((size_t)b[2] << 8) | b[3];
    if (tot < 40 || tot > len)
        return 0;
    tl = tot - 20;
    hl = (size_t)(t[12] >> 4) * 4;
    if (hl < 20 || hl > tl)
        return 0;
    for (i = 0; i < 20; i += 4) {
        memcpy(&x, b + i, 4);
        ip += x;
    }
    memcpy(&g->sa, b + 12, 4);
    memcpy(&g->da, b + 16, 4);
    s = (uint64_t)g->sa + g->da + ft_htonl((6u << 16) | (uint32_t)tl);
    for (i = 0; i + 8 <= tl; i += 8) {
        memcpy(&w, t + i, 8);
        s = ft_add_carry(s, w);
    }
    for (; i + 2 <= tl; i += 2) {
        uint16_t h16;
        memcpy(&h16, t + i, 2);
        s = ft_add_carry(s, h16);
    }
    if (i < tl)
        s = ft_add_carry(s, FT_BIG_ENDIAN ? (uint32_t)t[i] << 8 : t[i]);   /* zero-padded word */
    if (ft_csum_fold(ip) != 0xffff || ft_csum_fold(s) != 0xffff)
        return 0;
    g->sp = (uint16_t)((t[0] << 8) | t[1]);
    g->dp = (uint16_t)((t[2] << 8) | t[3]);
    g->seq = ft_load_be32(t + 4);
    g->ack = ft_load_be32(t + 8);
    g->flags = t[13];
    g->mss = 536;
    g->tsval = 0;
    for (i = 20; i < hl;) {
        uint8_t kind = t[i], l;
        if (kind == 0)
            break;
        if (kind == 1) {
            i++;
            continue;
        }
        if (i + 1 >= hl)
            return 0;
        l = t[i + 1];
        if (l < 2 || i + l > hl)
            return 0;
        if (kind == 2 && l == 4)
            g->mss = (uint16_t)((t[i + 2] << 8) | t[i + 3]);
        else if (kind == 8 && l == 10)
            g->tsval = ft_load_be32(t + i + 2);
        i += l;
    }
    return 1;
}

/* Every segment src sent, into dst: the three handshake rules and (features) the
 * lean variant's bookkeeping. Always inlined into the two callers below, so each is
 * compiled for its constant `features` with no test of it left in the loop. */
static inline __attribute__((always_inline)) void bare_receive_impl(bare_ep_t *dst, bare_ep_t *src, uint32_t tsval,
                                                                  const int features) {
    uint32_t j;
    for (j = 0; j < src->nout; j++) {
        const uint8_t *b = src->out + src->off[j];
        size_t len = (j + 1 < src->nout ? src->off[j + 1] : src->out_len) - src->off[j];
        bare_seg_t g;
        bare_conn_t *c;
        bare_ext_t *x;
        uint64_t h;
        if (features)
            dst->segs_in++;
        if (!bare_parse(b, len, &g)) {
            if (features)
                dst->drops++;
            continue;
        }
        h = bare_hash(dst, g.da, g.sa, g.dp, g.sp);
        if (g.flags == 0x02) {                                   /* SYN: new record, SYN-ACK */
            if (features && !((dst->listening[g.dp >> 3] >> (g.dp & 7)) & 1)) {
                dst->drops++;
                continue;
            }
            c = bare_find(dst, g.da, g.sa, g.dp, g.sp, h, 1);
            if (c->state) {
                if (features)
                    dst->drops++;                                 /* a duplicate SYN */
                continue;
            }
            c->state = 2;
            c->rcv_nxt = g.seq + 1;
            c->mss = g.mss < 1460 ? g.mss : 1460;
            c->ts_recent = g.tsval;
            c->iss = bare_isn(dst, g.da, g.sa, g.dp, g.sp, tsval);
            c->snd_nxt = c->iss + 1;
            if (features) {
                bare_opened(dst, c, 1, 3, 1);
                dst->segs_out++;
            }
            bare_send(dst, c, 0x12, c->iss, c->rcv_nxt, tsval);
            continue;
        }
        c = bare_find(dst, g.da, g.sa, g.dp, g.sp, h, 0);
        if (c == NULL) {
            if (features)
                dst->drops++;
            continue;
        }
        if (!features) {
            if (c->state == 1 && g.flags == 0x12 && g.ack == c->snd_nxt) {      /* SYN-ACK: ACK */
                c->state = 3;
                c->rcv_nxt = g.seq + 1;
                c->mss = g.mss < 1460 ? g.mss : 1460;
                c->ts_recent = g.tsval;
                bare_send(dst, c, 0x10, c->snd_nxt, c->rcv_nxt, tsval);
            } else if (c->state == 2 && g.flags == 0x10 && g.ack == c->snd_nxt && g.seq == c->rcv_nxt) {
                c->state = 3;                                     /* ACK of our SYN */
            }
            continue;
        }
        x = &dst->ext[bare_id(dst, c)];
        x->segs++;
        if (c->state == 1 && (g.flags & 0x16) == 0x12
                && (int32_t)(g.ack - x->snd_una) > 0 && (int32_t)(g.ack - c->snd_nxt) <= 0) {
            c->state = 3;                                         /* SYN-ACK: ACK */
            x->snd_una = g.ack;
            c->rcv_nxt = g.seq + 1;
            c->mss = g.mss < 1460 ? g.mss : 1460;
            c->ts_recent = g.tsval;
            bare_established(dst, c, 2, 2);
            dst->segs_out++;
            bare_send(dst, c, 0x10, c->snd_nxt, c->rcv_nxt, tsval);
        } else if (c->state == 2 && (g.flags & 0x16) == 0x10
                   && (int32_t)(g.tsval - c->ts_recent) >= 0                          /* PAWS */
                   && (int32_t)(g.seq - c->rcv_nxt) >= 0 && (int32_t)(g.seq - c->rcv_nxt - x->rcv_wnd) < 0
                   && (int32_t)(g.ack - x->snd_una) > 0 && (int32_t)(g.ack - c->snd_nxt) <= 0) {
            c->state = 3;                                         /* ACK of our SYN */
            x->snd_una = g.ack;
            c->ts_recent = g.tsval;
            bare_established(dst, c, 3, 3);
            dst->acceptq[dst->nacc++] = bare_id(dst, c);
        } else {
            dst->drops++;
        }
    }
    src->nout = 0;
    src->out_len = 0;
}

static void bare_receive(bare_ep_t *dst, bare_ep_t *src, uint32_t tsval) {
    bare_receive_impl(dst, src, tsval, 0);
}

static void bare_receive_lean(bare_ep_t *dst, bare_ep_t *src, uint32_t tsval) {
    bare_receive_impl(dst, src, tsval, 1);
}

/* The client's connects: a SYN-SENT record and its SYN per flow (see bare_handshakes
 * for `corrupt_every`). Inlined like bare_receive_impl. */
static inline __attribute__((always_inline)) void bare_connect_impl(bare_ep_t *e, uint32_t n, uint32_t clock,
                                                                  uint32_t corrupt_every, const int features) {
    uint32_t i, damaged = 0;
    for (i = 0; i < n; i++) {
        uint32_t host = 1 + i / 60000;
        uint32_t la = ft_htonl(0xc6120000u | host), ra = ft_htonl(0xc6130001u);
        uint16_t lp = (uint16_t)(1024 + i % 60000);
        uint64_t h = bare_hash(e, la, ra, lp, 80);
        bare_conn_t *c = bare_find(e, la, ra, lp, 80, h, 1);
        c->state = 1;
        c->mss = 1460;
        c->ts_recent = 0;
        c->iss = bare_isn(e, la, ra, lp, 80, clock);
        c->snd_nxt = c->iss + 1;
        if (features) {
            bare_opened(e, c, 0, 2, 0);
            e->segs_out++;
        }
        bare_send(e, c, 0x02, c->iss, 0, 1);
        if (corrupt_every && i % corrupt_every == 0) {
            uint8_t *syn = e->out + e->off[e->nout - 1];
            if (damaged++ & 1)
                syn[8] ^= 0x01;                                   /* the TTL */
            else
                e->out[e->out_len - 1] ^= 0x40;                    /* the WS option's shift */
        }
    }
}

static void bare_connect(bare_ep_t *e, uint32_t n, uint32_t clock, uint32_t corrupt_every) {
    bare_connect_impl(e, n, clock, corrupt_every, 0);
}

static void bare_connect_lean(bare_ep_t *e, uint32_t n, uint32_t clock, uint32_t corrupt_every) {
    bare_connect_impl(e, n, clock, corrupt_every, 1);
}

/* The lean variant's lists after a round: `pending` records still embryonic with a
 * timer running (the client's whose SYN was damaged; none on the server), every link
 * and back-link consistent, the tail the last record. */
static int bare_lists_ok(const bare_ep_t *e, uint32_t pending) {
    uint32_t id, prev = BARE_NIL, count = 0, b = bare_bucket(e->now + BARE_RTO);
    for (id = e->emb_head; id != BARE_NIL; id = e->ext[id].c_next) {
        if (e->ext[id].c_prev != prev || ++count > pending)
            return 0;
        prev = id;
    }
    if (count != pending || e->emb_tail != prev)
        return 0;
    count = 0;
    prev = BARE_HEAD | b;
    for (id = e->wheel[b]; id != BARE_NIL; id = e->ext[id].t_next) {
        if (e->ext[id].t_prev != prev || e->ext[id].deadline != e->now + BARE_RTO || ++count > pending)
            return 0;
        prev = id;
    }
    return count == pending;
}

static double bare_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Run `rounds` rounds of n handshakes (client 198.18.a.b:port -> 198.19.0.1:80, as
 * `fasttcp bench`), after one warm-up round, bare or (features) lean, writing each
 * round's ns per handshake to ns_per_round[0 .. rounds-1] and how many server records
 * of the last round reached ESTABLISHED. Every `corrupt_every`-th SYN (0: none) is
 * damaged after its checksums were written -- alternately in the TCP header (the
 * window-scale byte, which only the TCP checksum covers) and the IP header (the TTL,
 * which only the IP checksum covers) -- so a test can see that the loop verifies both.
 * Returns 0; -1 if out of memory or n is outside 1 .. 2^22 (segment offsets are
 * 32-bit: 60 n bytes must fit); -2 if the lean variant's books (counters, events,
 * accept queue, timer and embryonic lists, link by link) do not match the handshakes
 * of the last round. features = 2 is features = 1 with one stray timer armed after the
 * rounds, for a test that the check catches it. */
static int bare_handshakes(uint32_t n, int rounds, uint32_t corrupt_every, int features,
                           double *ns_per_round, uint32_t *established) {
    bare_ep_t ep[2];
    uint32_t cap = 16, i;
    int k, r, rc = -1;
    memset(ep, 0, sizeof(ep));
    *established = 0;
    if (n == 0 || n > (1u << 22))
        return -1;
    while (cap < 2 * n)
        cap <<= 1;
    for (k = 0; k < 2; k++) {
        ep[k].conns = (bare_conn_t *)calloc(cap, sizeof(bare_conn_t));
        ep[k].out = (uint8_t *)calloc((size_t)n + 1, 80);
        ep[k].off = (uint32_t *)calloc((size_t)n + 1, sizeof(uint32_t));
        ep[k].mask = cap - 1;
        ep[k].key[0] = 0x9e3779b97f4a7c15ULL * (uint64_t)(k + 1);
        ep[k].key[1] = 0xbf58476d1ce4e5b9ULL * (uint64_t)(k + 1);
        ep[k].key[2] = 0x94d049bb133111ebULL * (uint64_t)(k + 1);
        ep[k].isn_key[0] = ep[k].key[0] ^ 0x5851f42d4c957f2dULL;
        ep[k].isn_key[1] = ep[k].key[1] ^ 0x14057b7ef767814fULL;
        ep[k].isn_key[2] = ep[k].key[2] ^ 0x2545f4914f6cdd1dULL;
        if (!ep[k].conns || !ep[k].out || !ep[k].off)
            goto done;
        if (features) {
            ep[k].dense = (uint32_t *)calloc(cap, sizeof(uint32_t));
            ep[k].ext = (bare_ext_t *)calloc(n, sizeof(bare_ext_t));       /* a side opens <= n */
            ep[k].wheel = (uint32_t *)malloc(sizeof(uint32_t) * BARE_WHEEL);
            ep[k].ev = (bare_event_t *)calloc(2 * (size_t)n, sizeof(bare_event_t));
            ep[k].acceptq = (uint32_t *)calloc(n, sizeof(uint32_t));
            if (!ep[k].dense || !ep[k].ext || !ep[k].wheel || !ep[k].ev || !ep[k].acceptq)
                goto done;
            ep[k].listening[80 >> 3] |= 1u << (80 & 7);
            memset(ep[k].wheel, 0xff, sizeof(uint32_t) * BARE_WHEEL);
        }
    }
    for (r = -1; r < rounds; r++) {
        double t0, t1;
        for (k = 0; k < 2; k++) {
            memset(ep[k].conns, 0, sizeof(bare_conn_t) * cap);
            if (features) {
                /* each round arms its timers in a bucket of its own: only that one is
                 * emptied (records a damaged SYN left behind stay in an older one) */
                ep[k].now = (uint64_t)BARE_RTO * (uint64_t)(r + 2);
                ep[k].wheel[bare_bucket(ep[k].now + BARE_RTO)] = BARE_NIL;
                ep[k].emb_head = ep[k].emb_tail = BARE_NIL;
                ep[k].nev = ep[k].nacc = ep[k].next_id = 0;
                ep[k].segs_in = ep[k].segs_out = ep[k].drops = 0;
            }
        }
        t0 = bare_now_ns();
        if (features) {
            bare_connect_lean(&ep[0], n, (uint32_t)r, corrupt_every);
            bare_receive_lean(&ep[1], &ep[0], 1);                  /* SYNs -> SYN-ACKs */
            bare_receive_lean(&ep[0], &ep[1], 1);                  /* SYN-ACKs -> ACKs */
            bare_receive_lean(&ep[1], &ep[0], 1);                  /* ACKs */
        } else {
            bare_connect(&ep[0], n, (uint32_t)r, corrupt_every);
            bare_receive(&ep[1], &ep[0], 1);
            bare_receive(&ep[0], &ep[1], 1);
            bare_receive(&ep[1], &ep[0], 1);
        }
        t1 = bare_now_ns();
        if (r >= 0)
            ns_per_round[r] = (t1 - t0) / n;
    }
    for (i = 0; i < cap; i++)
        *established += ep[1].conns[i].used && ep[1].conns[i].state == 3;
    rc = 0;
    if (features) {
        /* the last round's books against its handshakes (E of them completed, D SYNs
         * damaged, so E = n - D): the server took n SYNs and E ACKs, sent E SYN-ACKs,
         * dropped D, made 2 events and one accept per handshake and holds no timer or
         * embryonic record; the client sent n SYNs and E ACKs, took E SYN-ACKs, made
         * n + E events and still holds the D unanswered connects on both lists */
        uint32_t e = *established, d = corrupt_every ? (n - 1) / corrupt_every + 1 : 0;
        if (features == 2)                  /* test hook: the check must see a stray timer */
            bare_timer_arm(&ep[1], 0, ep[1].now + BARE_RTO);
        if (e != n - d || ep[1].segs_in != n + e || ep[1].segs_out != e || ep[1].drops != d
                || ep[1].nev != 2 * e || ep[1].nacc != e || !bare_lists_ok(&ep[1], 0)
                || ep[0].segs_out != n + e || ep[0].segs_in != e || ep[0].drops != 0
                || ep[0].nev != n + e || !bare_lists_ok(&ep[0], d))
            rc = -2;
    }
done:
    for (k = 0; k < 2; k++) {
        free(ep[k].conns);
        free(ep[k].out);
        free(ep[k].off);
        free(ep[k].dense);
        free(ep[k].ext);
        free(ep[k].wheel);
        free(ep[k].ev);
        free(ep[k].acceptq);
    }
    return rc;
}

#endif
