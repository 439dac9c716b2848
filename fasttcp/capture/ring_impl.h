/* The TPACKET_V3 receive ring in C: socket set-up, the block walk, checksum completion.
 *
 * The kernel side is Documentation/networking/packet_mmap.rst (TPACKET_V3): the ring is
 * `block_count` blocks of `block_bytes`; the kernel fills a block with variable-length
 * packets (struct tpacket3_hdr, each followed by its frame) and hands it over by setting
 * its block_status to TP_STATUS_USER -- when full, or when tp_retire_blk_tov ms passed.
 * We read every handed-over block in ring order and give it back (TP_STATUS_KERNEL)
 * when the caller is done with the batch that points into it.
 *
 * The block contents are written by the kernel, but this code does not trust them: every
 * offset and length in a block descriptor or packet header is checked against the block
 * before it is used (bounds are the security boundary; a corrupt or hostile block ends
 * that block's walk and is counted, never a read outside the ring).
 *
 * Functions return 0 or a positive errno (the caller raises OSError), never touch Python.
 */
#ifndef FASTTCP_RING_IMPL_H
#define FASTTCP_RING_IMPL_H

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <net/if.h>
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/filter.h>

#include "csum_impl.h"

#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif
#ifndef PACKET_FANOUT_FLAG_UNIQUEID
#define PACKET_FANOUT_FLAG_UNIQUEID 0x2000
#endif

/* the first packet header sits after the block descriptor; a packet slot is at least
 * a tpacket3_hdr (the kernel aligns each to TPACKET_ALIGNMENT) */
#define FTR_BLOCK_DESC_BYTES ((uint32_t)sizeof(struct tpacket_block_desc))
#define FTR_PKT_HDR_BYTES ((uint32_t)sizeof(struct tpacket3_hdr))
#define FTR_MIN_SLOT ((uint32_t)TPACKET_ALIGN(sizeof(struct tpacket3_hdr)))
/* packets in a block start at multiples of 8 (net/packet/af_packet.c: V3_ALIGNMENT) */
#define FTR_V3_ALIGNMENT 8u

/* IP/TCP header fields used to complete a partial checksum */
#define FTR_IPV4_MIN 20
#define FTR_IPV6_HDR 40
#define FTR_TCP_MIN 20
#define FTR_TCP_CSUM 16
#define FTR_PROTO_TCP 6
#define FTR_IPV4_FRAG_MASK 0x3fff     /* MF flag and fragment offset */

/* per-walk counters the caller accumulates */
typedef struct {
    uint64_t blocks;            /* blocks walked (and held until released) */
    uint64_t bad_blocks;        /* blocks whose descriptor or a packet header lied */
    uint64_t csum_completed;    /* CSUMNOTREADY TCP packets whose checksum was completed */
    uint64_t bytes;             /* captured bytes (tp_snaplen) */
} ftr_walk_stats_t;

/* the output columns of one walk (the CaptureBatch arrays), `cap` rows each */
typedef struct {
    int64_t *offsets;
    int64_t *lengths;
    int64_t *ts_ns;
    uint32_t *wire_lengths;
    uint8_t *verdicts;
    uint8_t *snapped;
    int64_t *frames;
    int64_t cap;
} ftr_out_t;

/* a link-layer stripper: verdict (0 = IP found) and the IP header's offset in the frame
 * (fasttcp.capture.scanner's ft_strip_link, passed in so there is one copy of the rule) */
typedef int (*ftr_strip_fn)(uint32_t linktype, const uint8_t *frame, uint32_t caplen, uint32_t *ip_off);

typedef struct {
    uint8_t *ring;              /* the mmap'd ring (NULL when not mapped) */
    uint64_t ring_bytes;
    uint32_t block_bytes;
    uint32_t block_count;
    uint32_t cursor;            /* the next block to look at, in ring order */
    uint32_t held_first;        /* blocks [held_first, +held_count) belong to the caller */
    uint32_t held_count;
    uint32_t linktype;          /* what the frame at tp_mac is (pcap LINKTYPE_*) */
    int from_net;               /* strip from tp_net (kernel's network offset), not tp_mac */
} ftr_ring_t;

static inline struct tpacket_block_desc *ftr_block(const ftr_ring_t *r, uint32_t i) {
    return (struct tpacket_block_desc *)(r->ring + (uint64_t)i * r->block_bytes);
}

/* Has the kernel handed block i over? (acquire: the packet bytes written before the
 * kernel's status store are visible after we see TP_STATUS_USER; the kernel pairs it
 * with smp_wmb + flush_dcache_page in prb_close_block) */
static inline int ftr_block_ready(const ftr_ring_t *r, uint32_t i) {
    uint32_t st = __atomic_load_n(&ftr_block(r, i)->hdr.bh1.block_status, __ATOMIC_ACQUIRE);
    return (st & TP_STATUS_USER) != 0;
}

/* Give the held blocks back to the kernel (release: our reads and in-place checksum
 * writes are done before the kernel may refill the block). */
static void ftr_release(ftr_ring_t *r) {
    uint32_t i;
    for (i = 0; i < r->held_count; i++) {
        struct tpacket_block_desc *b = ftr_block(r, (r->held_first + i) % r->block_count);
        __atomic_store_n(&b->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
    }
    r->held_count = 0;
}

/* How many consecutive blocks from the cursor are ready, and an upper bound on their
 * packets (num_pkts as the descriptors say, each capped by what a block can hold): the
 * size of the output arrays for the walk. */
static uint32_t ftr_ready_blocks(const ftr_ring_t *r, uint64_t *max_pkts) {
    uint32_t n = 0, max_per_block = r->block_bytes / FTR_MIN_SLOT;
    uint64_t total = 0;
    while (n < r->block_count) {
        uint32_t i = (r->cursor + n) % r->block_count, np;
        if (!ftr_block_ready(r, i))
            break;
        np = ftr_block(r, i)->hdr.bh1.num_pkts;
        total += np < max_per_block ? np : max_per_block;
        n++;
    }
    *max_pkts = total;
    return n;
}

/* Complete the TCP checksum of a packet the local stack sent with checksum offload
 * (TP_STATUS_CSUMNOTREADY: the field holds only the pseudo-header sum; the NIC -- or
 * nobody, on veth and loopback -- would finish it). We recompute it whole: the packet
 * is ours to write while its block is TP_STATUS_USER. Only a whole TCP segment can be
 * completed; returns 1 when it was. */
static int ftr_complete_tcp_csum(uint8_t *ip, uint32_t caplen) {
    uint32_t ihl, total, tcp_len;
    uint64_t sum;
    uint8_t *tcp;
    if (caplen < 1)
        return 0;
    if ((ip[0] >> 4) == 4) {
        if (caplen < FTR_IPV4_MIN)
            return 0;
        ihl = (uint32_t)(ip[0] & 0x0f) * 4;
        total = ft_load_be16(ip + 2);
        if (ip[9] != FTR_PROTO_TCP || ihl < FTR_IPV4_MIN || total > caplen || total < ihl + FTR_TCP_MIN
                || (ft_load_be16(ip + 6) & FTR_IPV4_FRAG_MASK) != 0)
            return 0;
        tcp = ip + ihl;
        tcp_len = total - ihl;
        sum = ft_csum_pseudo4(ip + 12, ip + 16, tcp_len, FTR_PROTO_TCP);
    } else if ((ip[0] >> 4) == 6) {
        /* (a TCP header straight after the fixed header: the stack's own segments) */
        if (caplen < FTR_IPV6_HDR || ip[6] != FTR_PROTO_TCP)
            return 0;
        tcp_len = ft_load_be16(ip + 4);
        if (tcp_len < FTR_TCP_MIN || tcp_len > caplen - FTR_IPV6_HDR)
            return 0;
        tcp = ip + FTR_IPV6_HDR;
        sum = ft_csum_pseudo6(ip + 8, ip + 24, tcp_len, FTR_PROTO_TCP);
    } else {
        return 0;
    }
    tcp[FTR_TCP_CSUM] = 0;
    tcp[FTR_TCP_CSUM + 1] = 0;
    sum = ft_csum_partial(tcp, tcp_len, sum);
    {
        uint16_t c = (uint16_t)~ft_csum_fold(sum);
        memcpy(tcp + FTR_TCP_CSUM, &c, 2);       /* host-order sum, stored as is (csum_impl.h) */
    }
    return 1;
}

/* Walk one handed-over block (at ring offset `base`) into `out` from row *k. Returns 0,
 * or 1 when the descriptor or a packet header pointed outside the block (the packets
 * before that one are kept). */
static int ftr_walk_block(const ftr_ring_t *r, uint64_t base, ftr_strip_fn strip, ftr_out_t *out,
                          int64_t *k, int64_t *frame, ftr_walk_stats_t *st) {
    uint8_t *blk = r->ring + base;
    const struct tpacket_block_desc *d = (const struct tpacket_block_desc *)blk;
    uint32_t bb = r->block_bytes, npkts = d->hdr.bh1.num_pkts, off = d->hdr.bh1.offset_to_first_pkt, i;
    if (npkts == 0)
        return 0;
    for (i = 0; i < npkts; i++) {
        const struct tpacket3_hdr *h;
        uint32_t mac, net, snap, strip_at, caplen, ip_off = 0, status;
        int v;
        /* the header itself, then the frame it describes, inside the block */
        if (off < FTR_BLOCK_DESC_BYTES || off > bb - FTR_PKT_HDR_BYTES || off % FTR_V3_ALIGNMENT || *k >= out->cap)
            return 1;
        h = (const struct tpacket3_hdr *)(blk + off);
        mac = h->tp_mac;
        net = h->tp_net;
        snap = h->tp_snaplen;
        status = h->tp_status;
        if (mac < FTR_PKT_HDR_BYTES || mac > bb - off || snap > bb - off - mac || net < mac || net - mac > snap)
            return 1;
        strip_at = r->from_net ? net : mac;
        caplen = snap - (strip_at - mac);
        v = strip(r->linktype, blk + off + strip_at, caplen, &ip_off);
        if (v != 0 && ip_off > caplen)     /* as read_pcap: a bad frame's row is the frame */
            ip_off = 0;
        out->offsets[*k] = (int64_t)(base + off + strip_at + ip_off);
        out->lengths[*k] = (int64_t)(caplen - ip_off);
        out->ts_ns[*k] = (int64_t)h->tp_sec * 1000000000 + h->tp_nsec;
        out->wire_lengths[*k] = h->tp_len;
        out->verdicts[*k] = (uint8_t)v;
        out->snapped[*k] = snap < h->tp_len;
        out->frames[*k] = ++*frame;
        st->bytes += snap;
        if (v == 0 && (status & TP_STATUS_CSUMNOTREADY) && snap >= h->tp_len)
            st->csum_completed += (uint64_t)ftr_complete_tcp_csum(blk + off + strip_at + ip_off, caplen - ip_off);
        ++*k;
        /* tp_next_offset: the next header's distance; 0 on the block's last packet */
        if (i + 1 < npkts) {
            if (h->tp_next_offset < FTR_MIN_SLOT || h->tp_next_offset > bb - off)
                return 1;
            off += h->tp_next_offset;
        }
    }
    return 0;
}

/* Walk `nblocks` ready blocks from the cursor; they become held (released by the next
 * ftr_release). Returns the rows written. */
static int64_t ftr_walk(ftr_ring_t *r, uint32_t nblocks, ftr_strip_fn strip, ftr_out_t *out,
                        int64_t *frame, ftr_walk_stats_t *st) {
    int64_t k = 0;
    uint32_t n;
    r->held_first = r->cursor;
    for (n = 0; n < nblocks; n++) {
        uint32_t i = (r->cursor + n) % r->block_count;
        st->bad_blocks += (uint64_t)ftr_walk_block(r, (uint64_t)i * r->block_bytes, strip, out, &k, frame, st);
        st->blocks++;
    }
    r->held_count = nblocks;
    r->cursor = (r->cursor + nblocks) % r->block_count;
    return k;
}

/* Copy rows' IP packets into `dst` (a buffer of sum(lengths) bytes), rewriting offsets. */
static void ftr_copy_out(const uint8_t *src, uint8_t *dst, int64_t *offsets, const int64_t *lengths, int64_t n) {
    int64_t i, at = 0;
    for (i = 0; i < n; i++) {
        memcpy(dst + at, src + offsets[i], (size_t)lengths[i]);
        offsets[i] = at;
        at += lengths[i];
    }
}

/* ---- socket set-up (each returns 0 or errno) ---- */

static int ftr_open(int *fd) {
    /* protocol 0: the socket receives nothing until bind() names ETH_P_ALL, so the ring
     * and the filter are in place before the first packet (packet(7)) */
    int s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
    if (s < 0)
        return errno;
    *fd = s;
    return 0;
}

static int ftr_hwaddr(int fd, const char *ifname, uint16_t *arphrd, uint8_t mac[6]) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
    if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0)
        return errno;
    *arphrd = ifr.ifr_hwaddr.sa_family;
    memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
    return 0;
}

static int ftr_setup_ring(int fd, ftr_ring_t *r, uint32_t block_bytes, uint32_t block_count,
                          uint32_t frame_bytes, uint32_t timeout_ms) {
    int version = TPACKET_V3;
    struct tpacket_req3 req;
    void *m;
    if (frame_bytes == 0)           /* (the frame count below divides by it; the kernel says EINVAL) */
        return EINVAL;
    if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &version, sizeof version) < 0)
        return errno;
    memset(&req, 0, sizeof req);
    req.tp_block_size = block_bytes;
    req.tp_block_nr = block_count;
    req.tp_frame_size = frame_bytes;
    req.tp_frame_nr = (uint32_t)((uint64_t)block_bytes * block_count / frame_bytes);
    req.tp_retire_blk_tov = timeout_ms;
    if (setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) < 0)
        return errno;
    r->ring_bytes = (uint64_t)block_bytes * block_count;
    /* (the ring's pages are the kernel's, never swapped: no MAP_LOCKED needed) */
    m = mmap(NULL, r->ring_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        return errno;
    r->ring = (uint8_t *)m;
    r->block_bytes = block_bytes;
    r->block_count = block_count;
    r->cursor = r->held_first = r->held_count = 0;
    return 0;
}

static int ftr_attach_filter(int fd, struct sock_filter *prog, uint16_t len) {
    struct sock_fprog fp;
    fp.len = len;
    fp.filter = prog;
    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &fp, sizeof fp) < 0)
        return errno;
    return 0;
}

static int ftr_ignore_outgoing(int fd) {
    int one = 1;
    if (setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one) < 0)
        return errno;
    return 0;
}

static int ftr_promisc(int fd, int ifindex) {
    struct packet_mreq mr;
    memset(&mr, 0, sizeof mr);
    mr.mr_ifindex = ifindex;
    mr.mr_type = PACKET_MR_PROMISC;
    if (setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof mr) < 0)
        return errno;
    return 0;
}

static int ftr_bind(int fd, int ifindex) {
    struct sockaddr_ll sll;
    memset(&sll, 0, sizeof sll);
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = ifindex;
    if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0)
        return errno;
    return 0;
}

/* Join fanout group `group` with `mode`; unique: let the kernel pick a group id no other
 * socket in this network namespace uses, and read it back into *group. */
static int ftr_fanout(int fd, uint32_t mode, int unique, uint32_t *group) {
    uint32_t val = unique ? (mode | PACKET_FANOUT_FLAG_UNIQUEID) << 16 : (*group & 0xffff) | (mode << 16);
    socklen_t len = sizeof val;
    if (setsockopt(fd, SOL_PACKET, PACKET_FANOUT, &val, sizeof val) < 0)
        return errno;
    if (getsockopt(fd, SOL_PACKET, PACKET_FANOUT, &val, &len) < 0)
        return errno;
    *group = val & 0xffff;
    return 0;
}

/* PACKET_STATISTICS: reading resets the kernel's counters (packet(7)). */
static int ftr_stats(int fd, uint64_t *packets, uint64_t *drops, uint64_t *freeze_q) {
    struct tpacket_stats_v3 s;
    socklen_t len = sizeof s;
    memset(&s, 0, sizeof s);
    if (getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &s, &len) < 0)
        return errno;
    *packets += s.tp_packets;
    *drops += s.tp_drops;
    *freeze_q += s.tp_freeze_q_cnt;
    return 0;
}

/* The socket's pending error (SO_ERROR; reading clears it): the kernel sets ENETDOWN
 * when the bound interface goes down or away (net/packet/af_packet.c, packet_notifier),
 * and poll() keeps reporting POLLERR until it is read. */
static int ftr_take_error(int fd, int *err) {
    socklen_t len = sizeof *err;
    *err = 0;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, err, &len) < 0)
        return errno;
    return 0;
}

static void ftr_unmap(ftr_ring_t *r) {
    if (r->ring != NULL)
        munmap(r->ring, r->ring_bytes);
    r->ring = NULL;
}

#endif
