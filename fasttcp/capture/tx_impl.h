/* Transmit through AF_PACKET: a TPACKET_V2 PACKET_TX_RING and sendmmsg, in C.
 *
 * Both paths take a batch (one buffer, int64 offsets and lengths) of IP packets or of
 * whole Ethernet frames. For IP packets the Ethernet header (dst MAC, src MAC,
 * ethertype from the IP version nibble) is prepended here, so each packet is copied
 * once: into its ring frame, or by the kernel from a two-part iovec for sendmmsg.
 * Every packet is checked before a byte is written: a span outside the buffer stops
 * the batch (the caller raises), a frame larger than the ring frame or the interface's
 * MTU is counted `too_big` and skipped, never written past its frame.
 *
 * The ring follows Documentation/networking/packet_mmap.rst ("Transmission process"):
 * a frame is ours while its tp_status is TP_STATUS_AVAILABLE; we fill it, store
 * TP_STATUS_SEND_REQUEST, and a send() on the socket makes the kernel transmit every
 * requested frame in order, handing each back (AVAILABLE) once its skb is freed.
 */
#ifndef FASTTCP_TX_IMPL_H
#define FASTTCP_TX_IMPL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE               /* sendmmsg */
#endif
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/if_packet.h>

#define FTX_ETH_HLEN 14                 /* dst MAC, src MAC, ethertype (IEEE 802.3) */
#define FTX_ETHERTYPE_IPV4 0x0800
#define FTX_ETHERTYPE_IPV6 0x86DD
#define FTX_BATCH_MSGS 1024             /* messages per sendmmsg call (UIO_MAXIOV) */
/* Where a V2 TX frame's data starts: packet_mmap.rst, "the data buffer starts at
 * TPACKET2_HDRLEN - sizeof(struct sockaddr_ll)" (the kernel's tpacket_fill_skb
 * without PACKET_TX_HAS_OFF): the aligned tpacket2_hdr, 32 bytes. */
#define FTX_DATA_OFFSET (TPACKET2_HDRLEN - sizeof(struct sockaddr_ll))
/* How long to wait for the kernel to hand a frame back before the rest of a batch is
 * given up as `would_block` (a link that stopped transmitting); a blocking send() waits
 * at most the socket's SO_SNDTIMEO (set by the caller) before it gives up too. */
#define FTX_WAIT_MS 1000
#define FTX_WAIT_ROUNDS 5
#define FTX_RETRIES 1000                /* ENOBUFS retries of a waiting ring kick, */
#define FTX_RETRY_MS 1                  /* this far apart: about a second in all */

/* per-packet verdicts of ftx_frame_len */
#define FTX_NOT_IP (-1)                 /* an IP packet whose version nibble is not 4 or 6 */
#define FTX_TOO_BIG (-2)                /* the frame exceeds the ring frame or the MTU */
#define FTX_TOO_SHORT (-3)              /* a "frame" shorter than an Ethernet header */

/* stop reasons (ftx_*_send's *why) */
#define FTX_DONE 0
#define FTX_BAD_SPAN 1                  /* a span outside the buffer (rewritten meanwhile) */
#define FTX_ERRNO 2                     /* a system call failed: *err holds errno */
#define FTX_STALLED 3                   /* no frame came back within the wait */

typedef struct {
    uint64_t sent;          /* frames handed to the kernel (`dropped` included) */
    uint64_t bytes;         /* their bytes, Ethernet header included */
    uint64_t too_big;       /* skipped: larger than a ring frame or the MTU allows */
    uint64_t too_short;     /* skipped: a frame shorter than an Ethernet header */
    uint64_t not_ip;        /* skipped: send_packets given a packet that is not IPv4/IPv6 */
    uint64_t dropped;       /* of those, reported dropped on the way (sendmmsg: ENOBUFS) */
    uint64_t wrong_format;  /* ring frames the kernel marked TP_STATUS_WRONG_FORMAT */
    uint64_t would_block;   /* not handed over: the kernel returned no frame in time */
    uint64_t syscalls;      /* send()/sendmmsg()/poll() calls made */
    uint64_t ring_full;     /* times the ring had no free frame and we waited */
    uint64_t retried;       /* ring sends the device refused (ENOBUFS), tried again */
} ftx_stats_t;

typedef struct {
    uint8_t header[FTX_ETH_HLEN];   /* dst MAC, src MAC, ethertype (set per packet) */
    int add_header;                 /* 1: packets are IP (prepend), 0: whole frames */
    uint32_t max_frame;             /* the largest frame: MTU + header, and what fits */
} ftx_rule_t;

typedef struct {
    int fd;
    uint8_t *map;
    size_t map_len;
    uint32_t frame_size;
    uint32_t frames_per_block;
    uint32_t block_size;
    uint32_t frame_nr;
    uint32_t head;                  /* the next frame we fill */
    uint32_t queued;                /* frames marked SEND_REQUEST since the last kick */
} ftx_ring_t;

/* The frame length of packet `p` (len bytes) under `rule`, or an FTX_ verdict. */
static inline int64_t ftx_frame_len(const ftx_rule_t *rule, const uint8_t *p, int64_t len,
                                    uint16_t *ethertype)
{
    int64_t flen;
    if (rule->add_header) {
        uint8_t version = len > 0 ? (uint8_t)(p[0] >> 4) : 0;
        if (version == 4)
            *ethertype = FTX_ETHERTYPE_IPV4;
        else if (version == 6)
            *ethertype = FTX_ETHERTYPE_IPV6;
        else
            return FTX_NOT_IP;
        flen = len + FTX_ETH_HLEN;
    } else {
        if (len < FTX_ETH_HLEN)
            return FTX_TOO_SHORT;
        flen = len;
    }
    return flen > (int64_t)rule->max_frame ? FTX_TOO_BIG : flen;
}

static inline void ftx_count(ftx_stats_t *st, int64_t verdict)
{
    if (verdict == FTX_NOT_IP)
        st->not_ip++;
    else if (verdict == FTX_TOO_BIG)
        st->too_big++;
    else
        st->too_short++;
}

/* Write packet p as frame bytes at dst (the header first when the rule adds one). */
static inline void ftx_write_frame(uint8_t *dst, const ftx_rule_t *rule, const uint8_t *p, int64_t len,
                                   uint16_t ethertype)
{
    if (rule->add_header) {
        memcpy(dst, rule->header, 12);
        dst[12] = (uint8_t)(ethertype >> 8);
        dst[13] = (uint8_t)ethertype;
        memcpy(dst + FTX_ETH_HLEN, p, (size_t)len);
    } else {
        memcpy(dst, p, (size_t)len);
    }
}

static inline int ftx_span_outside(int64_t off, int64_t len, uint64_t size)
{
    return (uint64_t)off > size || (uint64_t)len > size - (uint64_t)off;
}

/* PACKET_QDISC_BYPASS: dev_queue_xmit's qdisc and packet taps are skipped (the driver's
 * xmit is called directly); taps on this host then do not see what we send. 0 or -errno. */
static int ftx_qdisc_bypass(int fd)
{
    int one = 1;
    return setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one)) < 0 ? -errno : 0;
}

/* ---- the ring ---- */

/* Set a bound AF_PACKET socket up for PACKET_TX_RING and map it. 0, or -errno. */
static int ftx_ring_open(ftx_ring_t *r, int fd, uint32_t block_size, uint32_t block_nr, uint32_t frame_size,
                         int qdisc_bypass)
{
    int version = TPACKET_V2;
    /* PACKET_LOSS: a frame the kernel refuses (tpacket_parse_header) is skipped and handed
     * back instead of stopping the ring at it: without it the kernel leaves the frame in
     * TP_STATUS_WRONG_FORMAT, never advances past it, and every later send() is a no-op.
     * Our own checks mirror the kernel's (length within the frame and the MTU, at least
     * an Ethernet header), so none should be refused. */
    int loss = 1;
    struct tpacket_req req;
    memset(r, 0, sizeof(*r));
    r->fd = fd;
    if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &version, sizeof(version)) < 0)
        return -errno;
    if (setsockopt(fd, SOL_PACKET, PACKET_LOSS, &loss, sizeof(loss)) < 0)
        return -errno;
    if (qdisc_bypass && ftx_qdisc_bypass(fd) < 0)
        return -errno;
    req.tp_block_size = block_size;
    req.tp_block_nr = block_nr;
    req.tp_frame_size = frame_size;
    req.tp_frame_nr = (block_size / frame_size) * block_nr;
    if (setsockopt(fd, SOL_PACKET, PACKET_TX_RING, &req, sizeof(req)) < 0)
        return -errno;
    r->map_len = (size_t)block_size * block_nr;
    void *map = mmap(NULL, r->map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (map == MAP_FAILED) {
        r->map_len = 0;
        return -errno;
    }
    r->map = (uint8_t *)map;
    r->frame_size = frame_size;
    r->block_size = block_size;
    r->frames_per_block = block_size / frame_size;
    r->frame_nr = req.tp_frame_nr;
    return 0;
}

static void ftx_ring_close(ftx_ring_t *r)
{
    if (r->map)
        munmap(r->map, r->map_len);
    r->map = NULL;
    r->map_len = 0;
}

/* Frame i's header: frames never straddle blocks (packet_mmap.rst), so a block ends in
 * block_size % frame_size unused bytes. */
static inline struct tpacket2_hdr *ftx_frame(const ftx_ring_t *r, uint32_t i)
{
    uint32_t block = i / r->frames_per_block, in_block = i % r->frames_per_block;
    return (struct tpacket2_hdr *)(r->map + (size_t)block * r->block_size + (size_t)in_block * r->frame_size);
}

static inline uint32_t ftx_status(const struct tpacket2_hdr *h)
{
    return __atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE);
}

/* Ask the kernel to transmit every frame marked SEND_REQUEST. `wait`: block until all of
 * them are sent and handed back. 0, or an errno the caller must see.
 *
 * ENOBUFS: the device refused a frame (a full queue behind it, or a veth whose peer is
 * down) and the kernel put it back as SEND_REQUEST without moving past it (tpacket_snd:
 * "skb was destructed already"), so the next send() tries it again. It is counted
 * `retried`; a waiting kick tries again after FTX_RETRY_MS, at most FTX_RETRIES times,
 * then returns ENOBUFS; a kick that does not wait leaves the frames for the next one. */
static int ftx_ring_kick(ftx_ring_t *r, ftx_stats_t *st, int wait)
{
    int retries = 0;
    for (;;) {
        st->syscalls++;
        if (send(r->fd, NULL, 0, wait ? 0 : MSG_DONTWAIT) >= 0)
            break;
        if (errno == ENOBUFS) {
            st->retried++;
            if (!wait)
                return 0;           /* still queued: the next kick sends them */
            if (retries++ >= FTX_RETRIES)
                return ENOBUFS;
            poll(NULL, 0, FTX_RETRY_MS);
            continue;
        }
        if (!wait && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;                  /* MSG_DONTWAIT with the device busy: sent later */
        return errno;               /* ETIMEDOUT: SO_SNDTIMEO passed with frames in flight */
    }
    r->queued = 0;
    return 0;
}

/* Wait until frame h is ours. 0 (it is), FTX_STALLED, or -errno. */
static int ftx_ring_reclaim(ftx_ring_t *r, struct tpacket2_hdr *h, ftx_stats_t *st)
{
    uint32_t status = ftx_status(h);
    int rounds = 0, e;
    st->ring_full++;
    while (status != TP_STATUS_AVAILABLE) {
        if (status & TP_STATUS_WRONG_FORMAT) {
            /* (not with PACKET_LOSS set; counted and reused should a kernel do it) */
            st->wrong_format++;
            return 0;
        }
        if ((e = ftx_ring_kick(r, st, 1)) != 0)
            return e == ETIMEDOUT || e == EAGAIN || e == ENOBUFS ? FTX_STALLED : -e;
        status = ftx_status(h);
        if (status == TP_STATUS_AVAILABLE || (status & TP_STATUS_WRONG_FORMAT))
            continue;
        /* still in flight (an skb the device holds): poll() says POLLOUT when the frame at
         * the kernel's head is free again (packet_poll) */
        if (rounds++ >= FTX_WAIT_ROUNDS)
            return FTX_STALLED;
        struct pollfd pfd = {.fd = r->fd, .events = POLLOUT};
        st->syscalls++;
        if (poll(&pfd, 1, FTX_WAIT_MS) < 0)
            return -errno;          /* EINTR too: the caller runs signal handlers */
        status = ftx_status(h);
    }
    return 0;
}

/* Fill ring frames with packets [start, n) and kick the kernel. Returns the index the
 * batch stopped at (n when done); *why says why it stopped, *err the errno. */
static int64_t ftx_ring_send(ftx_ring_t *r, const ftx_rule_t *rule, const uint8_t *buf, uint64_t size,
                             const int64_t *off, const int64_t *len, int64_t start, int64_t n,
                             ftx_stats_t *st, int *why, int *err)
{
    int64_t i;
    *why = FTX_DONE;
    *err = 0;
    for (i = start; i < n; i++) {
        int64_t o = off[i], l = len[i], flen;
        uint16_t ethertype = 0;
        if (ftx_span_outside(o, l, size)) {
            *why = FTX_BAD_SPAN;
            return i;
        }
        flen = ftx_frame_len(rule, buf + o, l, &ethertype);
        if (flen < 0) {
            ftx_count(st, flen);
            continue;
        }
        struct tpacket2_hdr *h = ftx_frame(r, r->head);
        if (ftx_status(h) != TP_STATUS_AVAILABLE) {
            int rc = ftx_ring_reclaim(r, h, st);
            if (rc == FTX_STALLED) {
                st->would_block += (uint64_t)(n - i);
                *why = FTX_STALLED;
                return i;
            }
            if (rc < 0) {
                *why = FTX_ERRNO;
                *err = -rc;
                return i;
            }
        }
        ftx_write_frame((uint8_t *)h + FTX_DATA_OFFSET, rule, buf + o, l, ethertype);
        h->tp_len = (uint32_t)flen;
        h->tp_snaplen = (uint32_t)flen;
        /* the frame's bytes before its status: the kernel reads them once it sees the
         * request (packet_mmap.rst: "the frame's status must be set last") */
        __atomic_store_n(&h->tp_status, TP_STATUS_SEND_REQUEST, __ATOMIC_RELEASE);
        r->head = r->head + 1 == r->frame_nr ? 0 : r->head + 1;
        r->queued++;
        st->sent++;
        st->bytes += (uint64_t)flen;
    }
    if (r->queued) {
        int e = ftx_ring_kick(r, st, 0);
        if (e) {
            *why = FTX_ERRNO;
            *err = e;
        }
    }
    return n;
}

/* Block until every frame is sent and handed back. 0, or errno. */
static int ftx_ring_flush(ftx_ring_t *r, ftx_stats_t *st)
{
    int e = ftx_ring_kick(r, st, 1);
    return e;
}

/* ---- sendmmsg ---- */

typedef struct {
    struct mmsghdr msgs[FTX_BATCH_MSGS];
    struct iovec iov[2 * FTX_BATCH_MSGS];
    uint8_t headers[FTX_BATCH_MSGS][FTX_ETH_HLEN];
    int64_t index[FTX_BATCH_MSGS];  /* the batch index of each message's packet */
} ftx_mmsg_t;

static inline uint64_t ftx_msg_bytes(const struct msghdr *h)
{
    return h->msg_iov[0].iov_len + (h->msg_iovlen == 2 ? h->msg_iov[1].iov_len : 0);
}

/* Send the gathered messages [0, k) with sendmmsg. A message the kernel refuses with
 * ENOBUFS as the first of a call was dropped on the way (a full queue behind the device):
 * counted, not sent again. Returns k, or the message an error stopped at (*err = errno). */
static unsigned ftx_mmsg_flush(int fd, ftx_mmsg_t *m, unsigned k, ftx_stats_t *st, int *err)
{
    unsigned done = 0;
    *err = 0;
    while (done < k) {
        st->syscalls++;
        int got = sendmmsg(fd, m->msgs + done, k - done, 0);
        if (got >= 0) {
            for (int j = 0; j < got; j++) {
                st->sent++;
                st->bytes += ftx_msg_bytes(&m->msgs[done + (unsigned)j].msg_hdr);
            }
            done += (unsigned)got;
        } else if (errno == ENOBUFS) {
            st->sent++;             /* handed over, then dropped */
            st->bytes += ftx_msg_bytes(&m->msgs[done].msg_hdr);
            st->dropped++;
            done++;
        } else {
            /* EAGAIN: the socket's send buffer stayed full for SO_SNDTIMEO */
            *err = errno == EWOULDBLOCK ? EAGAIN : errno;
            return done;
        }
    }
    return done;
}

/* Send packets [start, n) with sendmmsg, FTX_BATCH_MSGS at a time, each an iovec of
 * (its Ethernet header, the packet's bytes in the caller's buffer): the kernel copies
 * each packet once (packet_snd). Returns where it stopped; *why and *err as
 * ftx_ring_send. */
static int64_t ftx_mmsg_send(int fd, ftx_mmsg_t *m, const ftx_rule_t *rule, const uint8_t *buf, uint64_t size,
                             const int64_t *off, const int64_t *len, int64_t start, int64_t n,
                             ftx_stats_t *st, int *why, int *err)
{
    int64_t i;
    unsigned k = 0, done;
    *why = FTX_DONE;
    *err = 0;
    for (i = start; i <= n; i++) {
        if (i < n) {
            int64_t o = off[i], l = len[i], flen;
            uint16_t ethertype = 0;
            if (ftx_span_outside(o, l, size)) {
                *why = FTX_BAD_SPAN;
                n = i;                      /* send what was gathered, then stop here */
            } else {
                flen = ftx_frame_len(rule, buf + o, l, &ethertype);
                if (flen < 0) {
                    ftx_count(st, flen);
                    continue;
                }
                struct iovec *v = &m->iov[2 * k];
                struct msghdr *h = &m->msgs[k].msg_hdr;
                memset(h, 0, sizeof(*h));
                h->msg_iov = v;
                if (rule->add_header) {
                    uint8_t *eh = m->headers[k];
                    memcpy(eh, rule->header, 12);
                    eh[12] = (uint8_t)(ethertype >> 8);
                    eh[13] = (uint8_t)ethertype;
                    v[0].iov_base = eh;
                    v[0].iov_len = FTX_ETH_HLEN;
                    v[1].iov_base = (void *)(buf + o);
                    v[1].iov_len = (size_t)l;
                    h->msg_iovlen = 2;
                } else {
                    v[0].iov_base = (void *)(buf + o);
                    v[0].iov_len = (size_t)l;
                    h->msg_iovlen = 1;
                }
                m->index[k++] = i;
                if (k < FTX_BATCH_MSGS)
                    continue;
            }
        }
        if (k) {
            done = ftx_mmsg_flush(fd, m, k, st, err);
            if (*err == EAGAIN) {
                st->would_block += (uint64_t)(n - m->index[done]);
                *why = FTX_STALLED;
                *err = 0;
                return m->index[done];
            }
            if (*err) {
                *why = FTX_ERRNO;
                return m->index[done];
            }
            k = 0;
        }
    }
    return n;
}

#endif
