# cython: language_level=3
"""Passive connection tracker: C structs shared by the tracker core and its Python face.

The tracker watches both directions of traffic. Each connection lives in a symmetric
ft_table_t record (key, timer, eviction class, conntrack-style state in `state`) plus a
trk_t of the same index in a parallel array: what the tracker knows per direction
(window bounds, counters, Zeek endpoint state) and per connection (history, times).
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from fasttcp.table.table cimport ft_table_t

# conntrack states (netfilter's numbering; fasttcp.TrackerState mirrors these)
cdef enum:
    TRK_NONE = 0
    TRK_SYN_SENT = 1
    TRK_SYN_RECV = 2
    TRK_ESTABLISHED = 3
    TRK_FIN_WAIT = 4
    TRK_CLOSE_WAIT = 5
    TRK_LAST_ACK = 6
    TRK_TIME_WAIT = 7
    TRK_CLOSE = 8
    TRK_SYN_SENT2 = 9
    TRK_NSTATES = 10
    TRK_IGNORE = 10                   # transition results that are not states
    TRK_INVALID = 11
    TRK_MAX_RETRANS = 3               # conntrack's nf_conntrack_tcp_max_retrans default

# Zeek endpoint states (TCP_ENDPOINT_*)
cdef enum:
    Z_INACTIVE = 0
    Z_SYN_SENT = 1
    Z_SYN_ACK_SENT = 2
    Z_PARTIAL = 3
    Z_ESTABLISHED = 4
    Z_CLOSED = 5
    Z_RESET = 6

# Zeek conn_state codes (fasttcp.ConnState mirrors these)
cdef enum:
    CS_S0 = 0
    CS_S1 = 1
    CS_SF = 2
    CS_REJ = 3
    CS_S2 = 4
    CS_S3 = 5
    CS_RSTO = 6
    CS_RSTR = 7
    CS_RSTOS0 = 8
    CS_RSTRH = 9
    CS_SH = 10
    CS_SHR = 11
    CS_OTH = 12

# why a connection record was finished (fasttcp.EndReason mirrors these)
cdef enum:
    END_LIVE = 0                      # still tracked (connections() snapshots)
    END_TIMEOUT = 1                   # its state's idle timeout passed
    END_REUSED = 2                    # a new SYN reopened the 4-tuple after TIME_WAIT/CLOSE
    END_EVICTED = 3                   # dropped to make room (table full)
    END_FLUSHED = 4                   # close(): end of the capture

# per-packet tracker verdicts beyond the parse verdicts (fasttcp.Verdict codes 0..12)
cdef enum:
    TV_OK = 0
    TV_CONNTRACK_INVALID = 13                   # conntrack would mark it INVALID (out of window, bad flags)
    TV_CONNTRACK_IGNORED = 14                   # conntrack IGNORE: e.g. an old SYN on an established flow
    TV_UNTRACKED = 15                 # no connection and this packet may not create one (strict mode)
    TV_TABLE_FULL = 16                # would create a connection but the table refused
    TV_COUNT = 17                     # the verdicts counted in tr_t.verdicts
    TV_OTHER_SHARD = 17               # feed_batch(select=...) left it to another shard: time only

# trk_dir_t.flags
cdef enum:
    D_SEEN_SYN = 1
    D_SEEN_FIN = 2
    D_SEEN_RST = 4
    D_WSCALE = 8                      # sent the window-scale option on its SYN
    D_SACK_PERM = 16
    D_DID_CLOSE = 32                  # Zeek did_close: its FIN or RST was processed
    D_FIRST_SEEN = 64                 # Zeek first_packet_seen for this side
    D_OB = 128                        # ob_start/ob_end hold a buffered block

# trk_t.cflags
cdef enum:
    C_FLIPPED = 1                     # roles swapped by the direction heuristics ('^')
    C_ASSURED = 2                     # conntrack ASSURED: seen traffic both ways past the handshake
    C_RTT1 = 4                        # rtt_syn_synack measured
    C_RTT2 = 8                        # rtt_synack_ack measured
    C_MIDSTREAM = 16                  # conntrack picked it up without a SYN
    C_RTT_SYNACK = 32                 # a SYN-ACK time is recorded (waiting for the ACK)
    C_SYN_TIME = 64                   # the originator's SYN time is recorded
    C_CT_STARTED = 128                # conntrack has accepted a first packet
    C_SEEN_REPLY = 256                # conntrack SEEN_REPLY
    C_SIMOPEN = 512                   # conntrack entered SYN_SENT2 (simultaneous open)
    C_PARTIAL = 1024                  # Zeek is_partial: did not start with the originator's SYN
    C_RST_TIMER = 2048                # an in-window, inexact RST kept the state: CLOSE's timeout

# trk_dir_t.ct_flags: conntrack's per-direction flags
cdef enum:
    CT_WINDOW_SCALE = 1
    CT_SACK_PERM = 2
    CT_CLOSE_INIT = 4
    CT_BE_LIBERAL = 8
    CT_DATA_UNACK = 16
    CT_MAXACK_SET = 32

ctypedef struct trk_dir_t:
    # counters
    uint64_t bytes                    # TCP payload bytes as seen (retransmissions included)
    uint64_t ip_bytes                 # IP total lengths (Zeek's *_ip_bytes)
    uint64_t missed                   # bytes acknowledged but never seen (Zeek missed_bytes)
    uint32_t pkts                     # packets counted (bad checksums excluded)
    uint32_t retrans                  # segments that did not extend the sequence space (Zeek 'T')
    # Zeek's endpoint: sequence space and history bookkeeping
    uint32_t start_seq                # the SYN's sequence number (or first seq - 1: a pretend SYN)
    uint32_t last_seq                 # highest segment end seen
    uint32_t ack_seq                  # highest ACK the peer sent for this side
    uint16_t seq_wraps                # 2^32 laps of last_seq / ack_seq (connections over 4 GiB)
    uint16_t ack_wraps
    uint32_t fin_seq                  # sequence number of its FIN (valid with D_SEEN_FIN)
    uint32_t hist_last_syn            # relative positions of the last S/H, F, R letters
    uint32_t hist_last_fin
    uint32_t hist_last_rst
    uint32_t asm_top                  # in-order data delivered (reassembly edge), absolute seq
    uint32_t ob_start                 # one buffered out-of-order block above asm_top
    uint32_t ob_end
    uint32_t n_csum                   # bad checksums ('C', scaled)
    uint32_t n_zero                   # zero-window advertisements ('W', scaled)
    uint32_t n_rexmit                 # retransmissions ('T', scaled)
    uint32_t n_gap                    # content gaps ('G', scaled)
    # conntrack's window tracking
    uint32_t td_end                   # highest seq + len sent
    uint32_t td_maxend                # highest ack + window the peer allowed us
    uint32_t td_maxwin                # largest (scaled) window this side advertised
    uint32_t td_maxack                # highest ACK this side sent
    uint8_t td_scale                  # window shift of this side's advertisements
    uint8_t flags                     # D_*
    uint8_t ct_flags                  # CT_*
    uint8_t zstate                    # Zeek endpoint state
    uint8_t zprev                     # its previous state
    uint8_t _pad[3]

ctypedef struct trk_t:
    trk_dir_t d[2]                    # 0 = originator, 1 = responder
    uint64_t first_us                 # first and last packet times, microseconds
    uint64_t last_us
    uint64_t touch_us                 # last conntrack-accepted packet (idle timers count from it)
    uint64_t syn_us                   # when the originator's first SYN / the SYN-ACK was seen
    uint64_t synack_us
    uint32_t synack_seq
    uint32_t syn_seq
    uint32_t syn_len
    uint32_t rtt1                     # SYN -> SYN-ACK, microseconds
    uint32_t rtt2                     # SYN-ACK -> ACK
    uint32_t hist_seen                # letters recorded once per direction: bit = letter*2 + dir
    uint32_t last_seq                 # conntrack's memory of the last packet (retransmissions,
    uint32_t last_end                 # ignored SYNs, RST checks)
    uint32_t last_ack
    uint16_t last_win
    uint16_t cflags                   # C_*
    uint8_t last_dir                  # conntrack direction of that packet
    uint8_t last_class
    uint8_t ct_retrans                # conntrack: identical ACK-class packets in a row
    uint8_t ct_orig                   # Zeek direction index of conntrack's ORIGINAL side
    uint8_t hist_len
    char history[31]                  # Zeek history letters (truncated past 31)

# A finished (or snapshotted) connection: one row of fasttcp.FLOW_DTYPE.
ctypedef struct flow_row_t:
    uint64_t start_us
    uint64_t end_us
    uint64_t orig_bytes               # Zeek-style: sequence space covered, not retransmitted twice
    uint64_t resp_bytes
    uint64_t orig_ip_bytes
    uint64_t resp_ip_bytes
    uint64_t orig_payload             # payload bytes on the wire
    uint64_t resp_payload
    uint64_t missed_bytes             # both directions, as Zeek's missed_bytes
    uint32_t orig_pkts
    uint32_t resp_pkts
    uint32_t orig_retrans
    uint32_t resp_retrans
    uint32_t rtt_syn_synack           # microseconds; 0xffffffff = not measured
    uint32_t rtt_synack_ack
    uint32_t id                       # record id while it was live
    uint16_t orig_p
    uint16_t resp_p
    uint8_t family
    uint8_t state                     # final TrackerState
    uint8_t conn_state                # ConnState
    uint8_t end_reason                # EndReason
    uint8_t orig_state                # Zeek endpoint states (diagnostics)
    uint8_t resp_state
    uint8_t flipped
    uint8_t _pad
    uint8_t orig_h[16]
    uint8_t resp_h[16]
    char history[32]

# One state change: one row of fasttcp.TRACKER_EVENT_DTYPE.
ctypedef struct trk_event_t:
    uint64_t time_us
    int64_t packet                    # index of the packet in the batch that caused it (-1: timer)
    uint32_t conn
    uint8_t old_state
    uint8_t new_state
    uint8_t direction                 # 0 originator, 1 responder
    uint8_t _pad
    uint16_t tcp_flags
    uint16_t _pad2                    # padding spelled out and zeroed: every byte of an
    uint32_t _pad3                    # events() array is defined

ctypedef struct trk_config_t:
    bint verify                       # verify TCP (and IPv4 header) checksums
    bint loose                        # pick up connections without a SYN (midstream)
    bint liberal                      # count out-of-window packets but do not mark them INVALID
    bint want_events
    bint fast_path                    # header prediction for in-window ACK-class segments (tests turn it off)

ctypedef struct tr_t:
    ft_table_t tab
    trk_t *recs                       # parallel to tab.conns
    trk_config_t cfg
    uint64_t timeout[16]              # per TRK state, microseconds (table copy for lazy refresh)
    uint64_t unack                    # cap for ESTABLISHED without any reply seen
    uint64_t retrans                  # cap after TRK_MAX_RETRANS identical ACK-class segments
    uint64_t now                      # latest packet time seen
    uint64_t last_tick                # expiry runs when packet time enters a new wheel tick
    uint64_t verdicts[TV_COUNT]
    uint64_t packets                  # packets fed, other shards' included
    uint64_t other_shard              # of which only the time was used (feed_batch select)
    uint64_t created
    uint64_t reused
    uint64_t evicted
    uint64_t timed_out
    uint64_t out_of_window
    uint64_t rtt_samples
    uint64_t ev_dropped
    uint64_t fast_hits                # packets the header-prediction path took
    flow_row_t *done                  # finished connections awaiting the caller
    Py_ssize_t ndone
    Py_ssize_t cap_done
    trk_event_t *ev
    Py_ssize_t nev
    Py_ssize_t cap_ev
    uint32_t *expired                 # scratch for ft_expire
    uint8_t server_ports[8192]        # bitmap: Zeek's likely_server_ports (direction heuristic)
    uint64_t buf_size                 # feed_batch: bytes of the buffer the packets are in
    Py_ssize_t bad_span               # feed_batch: first packet whose span was outside it (-1: none)
