"""Event records of the endpoint: why a connection changed state (or delivered data).

`Cause` values are the C codes of fasttcp/_core/endpoint.pyx; `EVENT_DTYPE` rows carry
them on the batch path, `Event` objects on the single-packet path.
"""
from __future__ import annotations

import enum
from typing import Any


__all__ = ["Cause", "Event"]


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


# Event is defined in Cython (fasttcp._core.endpoint) so that the single-packet path
# can make one per state change cheaply; it is re-exported here and from fasttcp.
def __getattr__(name: str) -> Any:
    if name == "Event":
        from fasttcp._core.endpoint import Event

        return Event
    raise AttributeError(name)
