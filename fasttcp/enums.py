"""Enumerations of the public API: TCP flags, parse verdicts, RFC 9293 states, event causes.

The numeric values are the C codes of fasttcp/wire/defs.pxd (a test checks it), so a
batch result's ``verdict`` and ``flags`` columns convert with ``Verdict(v)``/``Flags(f)``.
"""
from __future__ import annotations

import enum

__all__ = ["Cause", "Flags", "OptionBits", "State", "Verdict"]


class Flags(enum.IntFlag):
    """TCP control bits, including ECN (RFC 3168) and AE (RFC 9768, formerly NS)."""

    FIN = 0x001
    SYN = 0x002
    RST = 0x004
    PSH = 0x008
    ACK = 0x010
    URG = 0x020
    ECE = 0x040
    CWR = 0x080
    AE = 0x100

    def __str__(self) -> str:
        """Flag names joined by '|' in wire order from SYN, e.g. ``SYN|ACK``."""
        # every member here is a single named bit; `and f.name` narrows str | None for type checkers
        names = [f.name for f in _FLAG_ORDER if self & f and f.name]
        return "|".join(names) if names else "none"


_FLAG_ORDER = (Flags.SYN, Flags.FIN, Flags.RST, Flags.PSH, Flags.ACK, Flags.URG, Flags.ECE, Flags.CWR, Flags.AE)


class Verdict(enum.IntEnum):
    """Outcome of parsing one packet; a column of every batch result.

    NOT_IP, UNSUPPORTED_LINK and LINK_TRUNCATED come from the capture reader
    (`fasttcp.read_pcap`), which strips the link layer before any IP parsing.
    The last four are the tracker's (`Tracker.feed_batch`): conntrack would mark the
    packet INVALID (out of window, impossible flags) or IGNORE it (e.g. an old SYN on
    an established connection); UNTRACKED: no connection and, with ``loose=False``,
    only a SYN may start one; TABLE_FULL: a new connection found no room. OTHER_SHARD:
    ``feed_batch(select=...)`` left the packet to another shard's tracker."""

    OK = 0
    TRUNCATED = 1
    BAD_IP_HEADER = 2
    BAD_TCP_HEADER = 3
    BAD_OPTION = 4
    BAD_CHECKSUM = 5
    NOT_TCP = 6
    FRAGMENT = 7
    BAD_VERSION = 8
    BAD_IP_CHECKSUM = 9
    NOT_IP = 10
    UNSUPPORTED_LINK = 11
    LINK_TRUNCATED = 12
    CONNTRACK_INVALID = 13
    CONNTRACK_IGNORED = 14
    UNTRACKED = 15
    TABLE_FULL = 16
    OTHER_SHARD = 17


class OptionBits(enum.IntFlag):
    """Which options a segment carried: the ``opt_flags`` column of `parse_batch`."""

    MSS = 1
    WSCALE = 2
    SACK_PERMITTED = 4
    SACK = 8
    TIMESTAMP = 16
    UNKNOWN = 32
    EOL = 64




class State(enum.IntEnum):
    """RFC 9293 connection states."""

    CLOSED = 0
    LISTEN = 1
    SYN_SENT = 2
    SYN_RECEIVED = 3
    ESTABLISHED = 4
    FIN_WAIT_1 = 5
    FIN_WAIT_2 = 6
    CLOSE_WAIT = 7
    CLOSING = 8
    LAST_ACK = 9
    TIME_WAIT = 10

    def __str__(self) -> str:
        return self.name.replace("_", "-")

    @property
    def synchronized(self) -> bool:
        """True from ESTABLISHED on (RFC 9293: the states after the handshake)."""
        return self >= State.ESTABLISHED


class Cause(enum.IntEnum):
    """What made a connection change state."""

    NONE = 0
    CONNECT = 1            # user connect(): CLOSED -> SYN-SENT
    SYN_RECEIVED = 2       # SYN on a listening port: LISTEN -> SYN-RECEIVED
    SYN_ACK_RECEIVED = 3   # SYN-SENT -> ESTABLISHED
    SIMULTANEOUS_OPEN = 4  # SYN (no ACK) in SYN-SENT: -> SYN-RECEIVED (RFC 9293 figure 7)
    ACK_OF_SYN = 5         # SYN-RECEIVED -> ESTABLISHED
    CLOSE = 6              # user close(): FIN sent
    PEER_FIN = 7           # peer's FIN received
    ACK_OF_FIN = 8         # our FIN acknowledged
    RST_RECEIVED = 9       # reset by the peer (validated, RFC 5961)
    ABORT = 10             # user abort(): RST sent
    TIMEOUT_2MSL = 11      # TIME-WAIT ended after 2*MSL
    RETRANSMIT_LIMIT = 12  # gave up retransmitting (SYN, SYN-ACK, FIN or data)
    TIMEOUT = 13           # idle timeout (FIN-WAIT-2)
    REOPEN = 14            # TIME-WAIT ended early by a new SYN (RFC 9293 3.10.7.4, RFC 6191)
    REFUSED = 15           # connect() answered by RST in SYN-SENT (connection refused)
    DATA = 16              # payload delivered (no state change; value = bytes)
    RETRANSMIT = 17        # a retransmission timer fired (no state change; value = retransmit count)
    EVICTED = 18           # removed to make room for a new connection (full table: oldest
                           # TIME-WAIT first, then the oldest never-established)
    SYN_COOKIE = 19        # an ACK returned a valid SYN cookie: LISTEN -> ESTABLISHED (no
                           # SYN-RECEIVED record existed)
