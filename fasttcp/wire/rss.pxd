# cython: language_level=3
"""The Toeplitz hash of receive-side scaling (RSS) and the shard of a packet, for any
Cython module: the hot parts inline, so a per-packet loop compiles them into itself.

The Toeplitz hash of an input bit string d under a key K (Microsoft, "RSS hashing
functions"): for every set bit i of d (bit 0 the most significant bit of d[0]), XOR the
32 key bits starting at bit i of K. It is linear over GF(2), so the XOR a byte value b at
input byte i contributes can be tabled once per key: 256 words per input position,
`ft_rss_key_t.table`. With a key that repeats every 16 bits (0x6d5a...) the 32-bit
window at bit i equals the one at bit i + 16: the tables repeat every 2 positions, and
the hash of the input is that of the XOR of its big-endian 16-bit words -- which does
not change when the two addresses and the two ports trade places. That is the symmetric
RSS of Woo and Park ("Scalable TCP Session Monitoring with Symmetric Receive-side
Scaling", 2012): both directions of a connection land in one NIC queue, here in one
shard.

Inputs, as NICs form them (Microsoft, "RSS hashing types"): source address, destination
address, then for TCP the source and destination ports, all in network byte order --
12 bytes for IPv4, 36 for IPv6, 8 and 32 for the address-only (2-tuple) hash.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, int64_t, uint64_t
from fasttcp.wire.defs cimport (pkt_t, parse_err_t, tcp_opts_t, IPV4_VER_IHL, IPV4_VER_IHL_PLAIN, IPV4_TOT_LEN,
                                IPV4_PROTOCOL, IPV4_FRAG_OFF, IPV4_MF, IPV4_OFFSET_MASK, IPV4_SADDR, IPV4_DADDR,
                                IPV4_HDR_LEN, TCP_HDR_LEN, TCP_DOFF)
from fasttcp.wire.codec cimport IPPROTO_TCP, ft_parse_ip_inline, ft_tuple_usable, _linux_layout
from fasttcp.wire.checksum cimport ft_load_be16, ft_load_be32

cdef enum:
    FT_RSS_INPUT_MAX = 36       # the longest input: IPv6 source, destination, two ports
    FT_RSS_KEY_LEN = 40         # key bytes that input needs (its length + 4: the last window)
    FT_RSS_SHARDS_MAX = 65535   # shards are uint16 values 0..65534
    FT_RSS_RETA_MAX = 65536     # the largest indirection table taken (NICs have 64..2048)

# what ft_rss_packet_hash hashed
cdef enum:
    FT_RSS_NONE = 0             # nothing: no IP addresses could be read (shard 0)
    FT_RSS_2TUPLE = 1           # the addresses: another protocol, a fragment, a bad TCP header
    FT_RSS_4TUPLE = 2           # addresses and ports: a TCP packet the tracker keys by them

# One key's tables (36 KiB: allocate it, do not put it on the stack).
ctypedef struct ft_rss_key_t:
    uint32_t table[FT_RSS_INPUT_MAX][256]   # [i][b]: the XOR byte value b at input byte i adds to the hash
    bint periodic                           # key[j] == key[j + 2] for all j < 38: table[i] == table[i & 1]

# Build the tables of a key of at least FT_RSS_KEY_LEN bytes.
cdef void ft_rss_key_init(ft_rss_key_t *k, const uint8_t *key) noexcept nogil

# The Toeplitz hash of data[0:n] straight from the definition, bit by bit (n + 4 <= key_len).
cdef uint32_t ft_toeplitz(const uint8_t *key, size_t key_len, const uint8_t *data, size_t n) noexcept nogil

# The shard of each packet buffer[offsets[i]:offsets[i] + lengths[i]] (IP packets) into
# out[i]: reta[hash & mask], or 0 when ft_rss_packet_hash hashes nothing or link[i] (a
# link-layer verdict, may be NULL) is not FT_OK. Returns -1, or the index of the first
# packet whose span was outside the `size`-byte buffer when the loop read it (the caller
# checked them first: only another thread rewriting the arrays gets here; that packet
# got shard 0).
cdef Py_ssize_t ft_rss_shard_batch(const ft_rss_key_t *k, const uint8_t *buffer, uint64_t size,
                                   const int64_t *offsets, const int64_t *lengths, const uint8_t *link,
                                   Py_ssize_t n, const uint16_t *reta, uint32_t mask,
                                   uint16_t *out) noexcept nogil


cdef inline uint32_t ft_rss_fold(const ft_rss_key_t *k, uint32_t w) noexcept nogil:
    """The hash, under a periodic key, of an input whose big-endian 32-bit words XOR to
    `w`: the high byte of the 16-bit XOR is that of the bytes at even positions, the low
    byte that of the odd ones (table[0] and table[1] stand for every position)."""
    w ^= w >> 16
    return k.table[0][(w >> 8) & 0xff] ^ k.table[1][w & 0xff]


cdef inline uint32_t ft_rss_hash4(const ft_rss_key_t *k, const uint8_t *src, const uint8_t *dst,
                                  uint16_t sport, uint16_t dport, bint ports) noexcept nogil:
    """The hash of IPv4 addresses (4 bytes each, network order) and, if `ports`, the
    ports (host order values): 12 or 8 input bytes."""
    cdef uint32_t h
    cdef size_t i
    if k.periodic:
        return ft_rss_fold(k, ft_load_be32(src) ^ ft_load_be32(dst)
                           ^ (((<uint32_t>sport << 16) | dport) if ports else 0))
    h = 0
    for i in range(4):
        h ^= k.table[i][src[i]] ^ k.table[4 + i][dst[i]]
    if ports:
        h ^= k.table[8][sport >> 8] ^ k.table[9][sport & 0xff] ^ k.table[10][dport >> 8] \
            ^ k.table[11][dport & 0xff]
    return h


cdef inline uint32_t ft_rss_hash6(const ft_rss_key_t *k, const uint8_t *src, const uint8_t *dst,
                                  uint16_t sport, uint16_t dport, bint ports) noexcept nogil:
    """The hash of IPv6 addresses (16 bytes each) and, if `ports`, the ports: 36 or 32
    input bytes."""
    cdef uint32_t h, w
    cdef size_t i
    if k.periodic:
        w = ((<uint32_t>sport << 16) | dport) if ports else 0
        for i in range(0, 16, 4):
            w ^= ft_load_be32(src + i) ^ ft_load_be32(dst + i)
        return ft_rss_fold(k, w)
    h = 0
    for i in range(16):
        h ^= k.table[i][src[i]] ^ k.table[16 + i][dst[i]]
    if ports:
        h ^= k.table[32][sport >> 8] ^ k.table[33][sport & 0xff] ^ k.table[34][dport >> 8] \
            ^ k.table[35][dport & 0xff]
    return h


cdef inline uint32_t ft_rss_hash(const ft_rss_key_t *k, int version, const uint8_t *src, const uint8_t *dst,
                                 uint16_t sport, uint16_t dport, bint ports) noexcept nogil:
    """ft_rss_hash4 for version 4, else ft_rss_hash6 (addresses as pkt_t holds them)."""
    if version == 4:
        return ft_rss_hash4(k, src, dst, sport, dport, ports)
    return ft_rss_hash6(k, src, dst, sport, dport, ports)


cdef inline int ft_rss_packet_hash(const ft_rss_key_t *k, const uint8_t *buf, size_t length,
                                   uint32_t *h) noexcept nogil:
    """Hash the IP packet buf[0:length] as a NIC under RSS would, keyed as the tracker
    keys it: parsed by the tracker's parser (checksums not verified: a bad checksum does
    not move a packet), the 4-tuple of every packet the tracker would key by its 4-tuple
    (ft_tuple_usable), the 2-tuple of any other packet whose addresses were read (other
    protocols, bad TCP headers, and fragments: RSS hashes every fragment of a datagram,
    the first one too, by its addresses -- Microsoft, "RSS hashing types",
    NDIS_HASH_IPV4 -- unless, cut short by the snap length with its TCP header whole,
    the tracker keys it), nothing when not even those were. Returns the FT_RSS_* kind;
    `h` is set unless FT_RSS_NONE."""
    cdef pkt_t p
    cdef parse_err_t err
    cdef tcp_opts_t opts
    cdef size_t tot, hl
    cdef const uint8_t *t
    # The shape nearly all traffic has -- IPv4 without options, unfragmented TCP, its
    # header whole, with no options or options in the layouts Linux writes -- hashed
    # straight from the bytes: those are exactly the packets ft_parse_ip_fast parses to
    # FT_OK without verifying checksums (so they are keyed by their 4-tuple), and the
    # parse and its bookkeeping cost most of the hash (measured: analyze with 2 workers
    # on the short-connection bench capture, 1.44x one worker with the parse, 1.54x with
    # a hash of the same bytes alone). Anything else is parsed as the tracker parses it.
    if length >= IPV4_HDR_LEN + TCP_HDR_LEN and buf[IPV4_VER_IHL] == IPV4_VER_IHL_PLAIN \
            and buf[IPV4_PROTOCOL] == IPPROTO_TCP \
            and not (ft_load_be16(buf + IPV4_FRAG_OFF) & (IPV4_MF | IPV4_OFFSET_MASK)):
        tot = ft_load_be16(buf + IPV4_TOT_LEN)
        t = buf + IPV4_HDR_LEN
        hl = (t[TCP_DOFF] >> 4) * 4
        if IPV4_HDR_LEN + TCP_HDR_LEN <= tot <= length and TCP_HDR_LEN <= hl <= tot - IPV4_HDR_LEN \
                and (hl == TCP_HDR_LEN or _linux_layout(t + TCP_HDR_LEN, hl - TCP_HDR_LEN, &opts)):
            h[0] = ft_rss_hash4(k, buf + IPV4_SADDR, buf + IPV4_DADDR, ft_load_be16(t), ft_load_be16(t + 2), True)
            return FT_RSS_4TUPLE
    cdef int rc = ft_parse_ip_inline(buf, length, &p, &err, False, True)    # lean: codec.pxd
    if ft_tuple_usable(rc, &p):
        h[0] = ft_rss_hash(k, p.version, p.src, p.dst, p.src_port, p.dst_port, True)
        return FT_RSS_4TUPLE
    # (the general parser clears p first and sets the version with the addresses)
    if p.version == 4 or p.version == 6:
        h[0] = ft_rss_hash(k, p.version, p.src, p.dst, 0, 0, False)
        return FT_RSS_2TUPLE
    return FT_RSS_NONE


cdef inline uint16_t ft_rss_shard(uint32_t h, const uint16_t *reta, uint32_t mask) noexcept nogil:
    """A NIC's queue choice: the hash's low bits index the indirection table (`mask` =
    its size - 1, a power of two)."""
    return reta[h & mask]


# How packets are sharded, for code that shards them as it reads them (the capture
# scanner): the key's tables (owned by the cached table object `_tables` keeps alive),
# the indirection table and its mask. See RssShards in rss.pyx.
cdef class RssShards:
    cdef const ft_rss_key_t *k
    cdef object _tables
    cdef readonly object reta
    cdef const uint16_t *reta_p
    cdef uint32_t mask
    cdef readonly int shards
    cdef readonly bytes key
