# cython: language_level=3
"""C-level types and codes shared by the whole core.

Every other .pxd cimports from here; the numbers below are mirrored by the Python
enums in fasttcp/enums.py (a test checks the two agree).
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t

# setup.py defines FASTTCP_PGO=1 when the module was compiled with a gcc profile
# (its profile-guided build); any other build is a plain one
cdef extern from *:
    """
    #ifndef FASTTCP_PGO
    #define FASTTCP_PGO 0
    #endif
    """
    int FASTTCP_PGO

# ---- verdicts: the outcome of parsing one packet (fasttcp.Verdict) ----
cdef enum:
    FT_OK = 0
    FT_ERR_TRUNCATED = 1        # buffer ends before a header/length says it should
    FT_ERR_BAD_IP_HEADER = 2    # IHL < 5, total length < header, bad extension header
    FT_ERR_BAD_TCP_HEADER = 3   # data offset < 5 or beyond the segment
    FT_ERR_BAD_OPTION = 4       # option length 0/1, running past the header, wrong fixed length
    FT_ERR_BAD_CHECKSUM = 5     # TCP checksum (pseudo-header included) does not verify
    FT_ERR_NOT_TCP = 6          # IP packet whose upper layer is not TCP
    FT_ERR_FRAGMENT = 7         # fragment: non-first, or first fragment whose checksum cannot be verified
    FT_ERR_BAD_VERSION = 8      # IP version nibble is neither 4 nor 6
    FT_ERR_BAD_IP_CHECKSUM = 9  # IPv4 header checksum does not verify
    # link-layer verdicts, set by the capture reader before any IP parsing
    FT_ERR_NOT_IP = 10          # the frame carries something else (ARP, LLDP, ...)
    FT_ERR_UNSUPPORTED_LINK = 11  # a link type (or encapsulation) the reader does not decode
    FT_ERR_LINK_TRUNCATED = 12  # the frame ends inside its link-layer header
    FT_ERR_COUNT = 13

# ---- which field an error points at (fasttcp errors carry .field) ----
cdef enum:
    FT_FIELD_NONE = 0
    FT_FIELD_IP_VERSION
    FT_FIELD_IP_IHL
    FT_FIELD_IP_TOTAL_LENGTH
    FT_FIELD_IP_PROTOCOL
    FT_FIELD_IP_FRAGMENT
    FT_FIELD_IP_CHECKSUM
    FT_FIELD_IP6_PAYLOAD_LENGTH
    FT_FIELD_IP6_NEXT_HEADER
    FT_FIELD_IP6_EXT_LENGTH
    FT_FIELD_TCP_HEADER
    FT_FIELD_TCP_DATA_OFFSET
    FT_FIELD_TCP_OPTION_KIND
    FT_FIELD_TCP_OPTION_LENGTH
    FT_FIELD_TCP_CHECKSUM
    FT_FIELD_IP_HEADER
    FT_FIELD_COUNT

# ---- TCP flag bits as they sit in the 12-bit field after the data offset ----
cdef enum:
    TCP_FLAG_FIN = 0x001
    TCP_FLAG_SYN = 0x002
    TCP_FLAG_RST = 0x004
    TCP_FLAG_PSH = 0x008
    TCP_FLAG_ACK = 0x010
    TCP_FLAG_URG = 0x020
    TCP_FLAG_ECE = 0x040
    TCP_FLAG_CWR = 0x080
    TCP_FLAG_AE = 0x100         # RFC 9768 (AccECN), formerly NS (RFC 3540)

# ---- TCP option kinds ----
cdef enum:
    TCPOPT_EOL = 0
    TCPOPT_NOP = 1
    TCPOPT_MSS = 2
    TCPOPT_WSCALE = 3
    TCPOPT_SACK_PERM = 4
    TCPOPT_SACK = 5
    TCPOPT_TIMESTAMP = 8

# ---- option lengths (the kind and length bytes included; Linux's TCPOLEN_*) ----
cdef enum:
    TCPOLEN_MSS = 4
    TCPOLEN_WSCALE = 3
    TCPOLEN_SACK_PERM = 2
    TCPOLEN_TIMESTAMP = 10
    TCPOLEN_TSTAMP_ALIGNED = 12  # NOP NOP TS: the timestamp as Linux aligns it
    TCPOLEN_SACK_BASE = 2       # + 8 per block (RFC 2018 3)
    TCPOLEN_SACK_BLOCK = 8

# ---- header field offsets (RFC 791 3.1, RFC 8200 3, RFC 9293 3.1) ----
cdef enum:
    IPV4_VER_IHL = 0            # version (high nibble), header length in words (low)
    IPV4_TOT_LEN = 2
    IPV4_ID = 4
    IPV4_FRAG_OFF = 6           # flags (reserved, DF, MF) and the fragment offset
    IPV4_TTL = 8
    IPV4_PROTOCOL = 9
    IPV4_CSUM = 10
    IPV4_SADDR = 12
    IPV4_DADDR = 16
    IPV4_HDR_LEN = 20           # without options
    IPV4_VER_IHL_PLAIN = 0x45   # version 4, a 20-byte header
    IPV4_DF = 0x4000            # flag bits and the offset as in the 16-bit field
    IPV4_MF = 0x2000
    IPV4_OFFSET_MASK = 0x1fff
    IPV6_PAYLOAD_LEN = 4
    IPV6_NEXTHDR = 6
    IPV6_HOP_LIMIT = 7
    IPV6_SADDR = 8
    IPV6_DADDR = 24
    IPV6_HDR_LEN = 40
    IPV6_VERSION_WORD = 0x60000000   # the first word: version 6, traffic class and flow label 0
    TCP_SPORT = 0
    TCP_DPORT = 2
    TCP_SEQ = 4
    TCP_ACK_SEQ = 8
    TCP_DOFF = 12               # data offset in words (high nibble), reserved, AE (bit 0)
    TCP_FLAGS = 13              # CWR .. FIN
    TCP_WINDOW = 14
    TCP_CSUM = 16
    TCP_URG_PTR = 18
    TCP_HDR_LEN = 20            # without options

cdef enum:
    TCP_MAX_SACK_BLOCKS = 4     # 40 option bytes hold at most 4 blocks (2 + 4*8 = 34)
    TCP_MAX_UNKNOWN_OPTS = 8    # kinds we do not decode, kept by position (rest counted)
    TCP_MAX_OPT_BYTES = 40
    TCP_WSCALE_MAX = 14         # RFC 7323 2.3: larger shifts are used as 14

# which options were present (bitmask in tcp_opts_t.present)
cdef enum:
    OPT_HAS_MSS = 1
    OPT_HAS_WSCALE = 2
    OPT_HAS_SACK_PERM = 4
    OPT_HAS_SACK = 8
    OPT_HAS_TIMESTAMP = 16
    OPT_HAS_UNKNOWN = 32
    OPT_HAS_EOL = 64

ctypedef struct tcp_opts_t:
    uint8_t present          # OPT_HAS_* bits
    uint8_t wscale           # shift as sent (not clamped: clamping is the user's policy)
    uint8_t sack_count       # number of SACK blocks decoded (<= 4)
    uint8_t unknown_count    # unknown kinds seen (only the first TCP_MAX_UNKNOWN_OPTS are indexed)
    uint16_t mss
    uint16_t _pad
    uint32_t tsval
    uint32_t tsecr
    uint32_t sack_left[4]
    uint32_t sack_right[4]
    uint8_t unknown_off[8]   # offset of each unknown option (its kind byte) within the options area

# A parsed packet: plain values plus offsets into the caller's buffer (zero copy).
ctypedef struct pkt_t:
    uint8_t version          # 4 or 6
    uint8_t ttl              # IPv4 TTL or IPv6 hop limit
    uint8_t header_len       # TCP header length in bytes (data offset * 4)
    uint8_t csum_state       # 0 not verified, 1 verified good, 2 bad
    uint8_t ip_csum_state    # same, IPv4 header checksum (0 for IPv6)
    uint8_t _pad0            # (the first 8 bytes, version .. flags, are cleared as one word)
    uint16_t flags           # TCP_FLAG_* (12 bits)
    uint8_t src[16]          # IPv4: first 4 bytes, rest zero
    uint8_t dst[16]          # header destination
    uint8_t csum_dst[16]     # destination used in the pseudo-header (IPv6 routing header: final hop)
    uint32_t ip_off          # offset of the IP header in the buffer
    uint32_t tcp_off         # offset of the TCP header in the buffer
    uint32_t tcp_len         # TCP header + payload bytes (from the IP lengths, not the buffer)
    uint32_t payload_off     # offset of the payload in the buffer
    uint32_t payload_len
    uint16_t src_port
    uint16_t dst_port
    uint32_t seq
    uint32_t ack
    uint16_t window
    uint16_t urgent
    uint16_t checksum
    uint16_t ip_id
    tcp_opts_t opts

# Where and why parsing stopped.
ctypedef struct parse_err_t:
    int code                 # FT_ERR_*
    int field                # FT_FIELD_*
    uint32_t offset          # byte offset in the buffer of the offending field
