"""The passive tracker's vocabulary: conntrack states, Zeek conn_state, timeouts, and
turning FLOW_DTYPE rows into Zeek conn.log-style records.

`fasttcp.Tracker` (Cython, fasttcp/tracker/tracker.pyx) does the work; this module holds
what surrounds it in Python.
"""
from __future__ import annotations

import enum
import ipaddress
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from fasttcp.errors import UsageError
from fasttcp.table.timeouts import check_timeouts

__all__ = [
    "TrackerState",
    "ConnState",
    "EndReason",
    "TrackerTimeouts",
    "TrackerStats",
    "flow_records",
    "TRACKER_STATE_CLASSES",
    "LIKELY_SERVER_PORTS",
]


class TrackerState(enum.IntEnum):
    """netfilter conntrack's TCP states (the ``state`` of a tracked connection).

    They describe what an observer in the middle has seen, not either endpoint's
    RFC 9293 state: SYN_RECV means "SYN-ACK seen", CLOSE_WAIT "first FIN acked",
    TIME_WAIT "both FINs seen and the last one acked", CLOSE "RST seen", SYN_SENT2
    "SYNs seen from both sides" (simultaneous open).
    """

    NONE = 0
    SYN_SENT = 1
    SYN_RECV = 2
    ESTABLISHED = 3
    FIN_WAIT = 4
    CLOSE_WAIT = 5
    LAST_ACK = 6
    TIME_WAIT = 7
    CLOSE = 8
    SYN_SENT2 = 9

    def __str__(self) -> str:
        return self.name


class ConnState(enum.IntEnum):
    """Zeek's conn.log ``conn_state`` summary of how a connection went."""

    S0 = 0          # SYN seen, no reply
    S1 = 1          # established, not terminated
    SF = 2          # established and closed normally
    REJ = 3         # SYN answered by RST
    S2 = 4          # established, originator closed, no reply from the responder
    S3 = 5          # established, responder closed, no reply from the originator
    RSTO = 6        # established, originator aborted (RST)
    RSTR = 7        # established, responder aborted
    RSTOS0 = 8      # originator sent SYN then RST; no SYN-ACK seen
    RSTRH = 9       # responder sent SYN-ACK then RST; no SYN seen from the originator
    SH = 10         # originator sent SYN then FIN; no SYN-ACK (half open)
    SHR = 11        # responder sent SYN-ACK then FIN; no SYN from the originator
    OTH = 12        # no SYN seen: midstream traffic

    def __str__(self) -> str:
        return self.name


class EndReason(enum.IntEnum):
    """Why a connection summary was produced."""

    LIVE = 0        # still tracked (`Tracker.connections()`)
    TIMEOUT = 1     # idle past its state's timeout
    REUSED = 2      # a new SYN reopened the 4-tuple after TIME_WAIT/CLOSE
    EVICTED = 3     # dropped to make room for a new connection
    FLUSHED = 4     # `Tracker.close()`, e.g. at the end of a capture

    def __str__(self) -> str:
        return self.name


# Zeek's default likely_server_ports for TCP (the ports its base protocol scripts
# register): a connection whose first packet is not a plain SYN and comes from one of
# these is taken to have been opened by the other side.
LIKELY_SERVER_PORTS = frozenset({
    21, 2811, 22, 25, 587, 80, 81, 631, 1080, 3128, 8000, 8080, 8888, 110, 143, 135, 139, 445,
    88, 389, 3268, 443, 563, 585, 614, 636, 989, 990, 992, 993, 995, 5223, 502, 1883, 1434,
    3306, 3389, 5432, 5222, 5269, 6379, 6666, 6667, 6668, 6669, 20000,
})

# eviction class of each TrackerState for the table (1 = TIME_WAIT-like, 2 = never
# established): when full, closed connections go first, then unanswered attempts.
TRACKER_STATE_CLASSES = (2, 2, 2, 0, 0, 0, 0, 1, 1, 2)


class TrackerStats(dict):
    """`Tracker.stats`: a dict of counters, read as a property.

    Calling it -- ``tracker.stats()``, from when `stats` was a method -- returns the
    same dict with a DeprecationWarning; that spelling goes in the next release."""

    def __call__(self) -> TrackerStats:
        warnings.warn("Tracker.stats is a property now: use tracker.stats, not tracker.stats()",
                      DeprecationWarning, stacklevel=2)
        return self


@dataclass(frozen=True)
class TrackerTimeouts:
    """Idle timeout per `TrackerState`, in seconds.

    Defaults are netfilter conntrack's (nf_conntrack_tcp_timeout_*), with TIME_WAIT =
    2 * MSL (MSL = 60 s gives conntrack's 120 s). ``none`` covers connections conntrack
    never accepted a packet of (a lone SYN-ACK or RST). An ESTABLISHED connection that
    has never seen a reply is capped at ``unacknowledged`` (conntrack does the same, so
    one-sided traffic does not hold an entry for five days). A connection whose last
    packets were the same ACK-class segment again and again (conntrack's
    ``tcp_max_retrans``, 3 in a row) is capped at ``retrans``: a peer that keeps
    retransmitting into silence is likely gone.

    Raises UsageError for a value that is not a number of seconds in 0..10 years
    (NaN, infinities, negatives and bools included) or an msl of 0.
    """

    msl: float = 60.0
    none: float = 120.0
    syn_sent: float = 120.0
    syn_recv: float = 60.0
    established: float = 432000.0
    fin_wait: float = 120.0
    close_wait: float = 60.0
    last_ack: float = 30.0
    close: float = 10.0
    syn_sent2: float = 120.0
    unacknowledged: float = 300.0
    retrans: float = 300.0

    def __post_init__(self) -> None:
        check_timeouts(self)

    @classmethod
    def zeek(cls) -> TrackerTimeouts:
        """Zeek's defaults: every connection ends after 5 minutes without packets
        (tcp_inactivity_timeout), 5 seconds after it closed or was reset
        (tcp_close_delay, tcp_reset_delay), and an attempt nobody answered ends 5
        seconds after its SYN (tcp_attempt_delay)."""
        five_min = 300.0
        return cls(msl=2.5, none=five_min, syn_sent=5.0, syn_recv=five_min, established=five_min,
                   fin_wait=five_min, close_wait=five_min, last_ack=five_min, close=5.0,
                   syn_sent2=five_min, unacknowledged=five_min, retrans=five_min)

    @property
    def time_wait(self) -> float:
        """2 * MSL."""
        return 2 * self.msl

    def for_state(self, state: TrackerState) -> float:
        """Timeout of `state` in seconds."""
        state = TrackerState(state)
        if state is TrackerState.TIME_WAIT:
            return self.time_wait
        return getattr(self, state.name.lower())

    def as_micros(self) -> list[int]:
        """Per-state timeouts in integer microseconds, indexed by TrackerState value,
        followed by the unacknowledged and the retransmission caps."""
        return [round(self.for_state(s) * 1_000_000) for s in TrackerState] + [
            round(self.unacknowledged * 1_000_000), round(self.retrans * 1_000_000)]


def _addr(family: int, raw: np.ndarray) -> str:
    b = bytes(raw)
    return str(ipaddress.IPv4Address(b[:4]) if family == 4 else ipaddress.IPv6Address(b))


def _rtt(us: int) -> float | None:
    return None if us == 0xFFFFFFFF else us / 1e6


def flow_records(rows: np.ndarray) -> Iterator[dict[str, Any]]:
    """Each FLOW_DTYPE row as a dict with Zeek conn.log names (``ts``, ``orig_h``,
    ``orig_p``, ``resp_h``, ``resp_p``, ``duration``, ``orig_bytes``, ``resp_bytes``,
    ``conn_state``, ``history``, ``orig_pkts``, ``orig_ip_bytes``, ``resp_pkts``,
    ``resp_ip_bytes``) plus fasttcp's ``state``, ``rtt_syn_synack``,
    ``rtt_synack_ack`` (seconds or None), retransmissions and ``end_reason``.

    Raises UsageError (at the call, not at the first row) unless `rows` is a FLOW_DTYPE
    array; a row whose codes name no state or reason raises UsageError when reached."""
    from fasttcp.tracker.tracker import FLOW_DTYPE

    if not isinstance(rows, np.ndarray) or rows.dtype != FLOW_DTYPE:
        got = f"dtype {rows.dtype}" if isinstance(rows, np.ndarray) else type(rows).__name__
        raise UsageError(f"flow_records takes a FLOW_DTYPE array (Tracker.finished(), close(), ...), got {got}")
    return _flow_records(rows.reshape(-1))


def _flow_records(rows: np.ndarray) -> Iterator[dict[str, Any]]:
    try:
        yield from (_flow_record(r) for r in rows)
    except ValueError as exc:         # an enum code no row written by the tracker has
        raise UsageError(f"not a row the tracker wrote: {exc}") from None


def _flow_record(r: np.void) -> dict[str, Any]:
    fam = int(r["family"])
    start, end = int(r["start_us"]), int(r["end_us"])
    return {
        "ts": start / 1e6,
        "orig_h": _addr(fam, r["orig_h"]),
        "orig_p": int(r["orig_p"]),
        "resp_h": _addr(fam, r["resp_h"]),
        "resp_p": int(r["resp_p"]),
        "proto": "tcp",
        "duration": (end - start) / 1e6,
        "orig_bytes": int(r["orig_bytes"]),
        "resp_bytes": int(r["resp_bytes"]),
        "conn_state": ConnState(int(r["conn_state"])).name,
        "missed_bytes": int(r["missed_bytes"]),
        "history": r["history"].decode("ascii"),
        "orig_pkts": int(r["orig_pkts"]),
        "orig_ip_bytes": int(r["orig_ip_bytes"]),
        "resp_pkts": int(r["resp_pkts"]),
        "resp_ip_bytes": int(r["resp_ip_bytes"]),
        "state": TrackerState(int(r["state"])).name,
        "rtt_syn_synack": _rtt(int(r["rtt_syn_synack"])),
        "rtt_synack_ack": _rtt(int(r["rtt_synack_ack"])),
        "orig_retrans": int(r["orig_retrans"]),
        "resp_retrans": int(r["resp_retrans"]),
        "end_reason": EndReason(int(r["end_reason"])).name,
    }
