# cython: language_level=3
"""Sans-IO TCP endpoint core: C structs shared by the endpoint and its batch paths."""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from fasttcp.table.table cimport ft_table_t, ft_key_t

# Why a connection changed state (fasttcp.enums.Cause mirrors these).
cdef enum:
    EV_NONE = 0
    EV_CONNECT = 1
    EV_SYN_RECEIVED = 2
    EV_SYN_ACK_RECEIVED = 3
    EV_SIMULTANEOUS_OPEN = 4
    EV_ACK_OF_SYN = 5
    EV_CLOSE = 6
    EV_PEER_FIN = 7
    EV_ACK_OF_FIN = 8
    EV_RST_RECEIVED = 9
    EV_ABORT = 10
    EV_TIMEOUT_2MSL = 11
    EV_RETRANSMIT_LIMIT = 12
    EV_TIMEOUT = 13
    EV_REOPEN = 14
    EV_REFUSED = 15
    EV_DATA = 16
    EV_RETRANSMIT = 17
    EV_EVICTED = 18                 # dropped to make room for a new connection (table full)
    EV_SYN_COOKIE = 19              # an ACK returned a valid SYN cookie: LISTEN -> ESTABLISHED

# Why a received segment was dropped (counters; fasttcp.Endpoint.drops names them).
cdef enum:
    DROP_MALFORMED = 0          # failed parsing (any Verdict but OK)
    DROP_NOT_LOCAL = 1          # destination is not one of our addresses
    DROP_NO_LISTENER = 2        # no connection, no listener (answered with RST unless RST)
    DROP_UNACCEPTABLE = 3       # RFC 9293 3.10.7.4 acceptability failed (answered with ACK)
    DROP_BAD_ACK = 4            # ACK outside what we sent
    DROP_RST_INVALID = 5        # RST outside the window (RFC 5961 3.2)
    DROP_RST_CHALLENGED = 6     # RST in window but not exact: challenge ACK
    DROP_SYN_CHALLENGED = 7     # SYN in a synchronized state: challenge ACK (RFC 5961 4)
    DROP_PAWS = 8               # RFC 7323 PAWS: timestamp older than TS.Recent
    DROP_NO_ACK = 9             # synchronized state, ACK bit off
    DROP_OUT_OF_ORDER = 10      # data beyond RCV.NXT: not reassembled (re-ACKed)
    DROP_TABLE_FULL = 11        # SYN refused: table at capacity, nothing evictable
    DROP_CHALLENGE_LIMIT = 12   # challenge ACK suppressed by the rate limit
    DROP_OTHER = 13             # e.g. segment for LISTEN that is neither SYN nor ACK
    DROP_BAD_COOKIE = 14        # ACK to a listening port whose SYN cookie is forged or stale
    DROP_COUNT = 15

# Endpoint(syn_cookies=...), like Linux's net.ipv4.tcp_syncookies 0 / 1 / 2
cdef enum:
    SYN_COOKIES_OFF = 0         # never: a full backlog evicts the oldest half-open record
    SYN_COOKIES_AUTO = 1        # when the SYN backlog (or the table) is full
    SYN_COOKIES_ALWAYS = 2      # for every SYN to a listening port

ctypedef struct ep_event_t:
    uint64_t time_us            # microseconds (EVENT_DTYPE "time_us")
    uint32_t conn               # record id in the table
    uint32_t value              # DATA: bytes; RETRANSMIT: count
    uint8_t old_state
    uint8_t new_state
    uint8_t cause
    uint8_t gen                 # record generation (matches Connection views)
    uint32_t data_offset        # DATA: offset of the payload in the input buffer
    uint8_t key[40]             # ft_key_t of the connection (local = l*, remote = r*)

ctypedef struct ep_config_t:
    uint16_t mss                # our MSS (advertised)
    uint8_t wscale              # our receive window shift (<= 14); 0xff = do not offer
    uint8_t sack
    uint8_t timestamps
    uint8_t ttl
    uint8_t syn_retries         # like Linux tcp_syn_retries (6)
    uint8_t synack_retries      # like Linux tcp_synack_retries (5)
    uint8_t retries2            # data/FIN retransmissions before giving up (15)
    uint32_t window             # our receive window in bytes
    uint64_t rto_initial        # RFC 6298 2.1: 1 s
    uint64_t rto_max            # 60 s (RFC 6298 2.5 allows a maximum of at least 60 s)
    uint64_t fin_wait_2         # idle limit of FIN-WAIT-2 (Linux tcp_fin_timeout 60 s)
    uint64_t isn_key[6]         # RFC 6528 F() secret
    uint32_t challenge_limit    # challenge ACKs per second (RFC 5961 7; Linux 1000)
    uint8_t syn_cookies         # SYN_COOKIES_*
    uint32_t syn_backlog        # half-open (SYN-SENT, SYN-RECEIVED) records before cookies
    uint64_t cookie_key[4]      # SipHash keys of cookie_hash: [0:2] for c = 0, [2:4] for c = 1
    uint32_t cookie_minute_offset   # added to the minute counter (tests move the clock)
