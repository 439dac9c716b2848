"""Per-state idle timeouts of the connection table (the timer wheel's deadlines)."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from fasttcp.enums import State
from fasttcp.errors import UsageError

__all__ = ["Timeouts", "check_timeouts"]

MAX_TIMEOUT_S = 10 * 365 * 86400     # 10 years: longer is a unit mistake, not a policy


def check_timeouts(obj: Any) -> None:
    """Every field of the dataclass `obj` is a timeout in seconds in 0..10 years and its
    `msl` is positive, else UsageError. (NaN compares false with every bound: isfinite
    is what refuses it; a bool is an int to isinstance: True would be a 1-second
    timeout.)"""
    for f in fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                or v < 0 or v > MAX_TIMEOUT_S:
            raise UsageError(f"timeout {f.name} must be 0..10 years in seconds, got {v!r}")
    msl = obj.msl
    if msl <= 0:
        raise UsageError(f"msl must be positive, got {msl!r}")


@dataclass(frozen=True)
class Timeouts:
    """Idle timeout per state, in seconds; 0 means no timer. TIME-WAIT is always 2*MSL.

    Defaults follow Linux: netfilter conntrack's TCP timeouts for the states it shares
    with RFC 9293, and the kernel's own TIME-WAIT of 60 s, i.e. MSL = 30 s (RFC 9293
    3.4.2 still says MSL = 2 minutes; pass ``msl=120`` for that).

    Raises UsageError for a value that is not a number of seconds in 0..10 years
    (NaN, infinities, negatives and bools included) or an msl of 0.
    """

    msl: float = 30.0
    syn_sent: float = 120.0          # conntrack SYN_SENT
    syn_received: float = 60.0       # conntrack SYN_RECV
    established: float = 432000.0    # conntrack ESTABLISHED: 5 days
    fin_wait_1: float = 120.0        # conntrack FIN_WAIT
    fin_wait_2: float = 60.0         # Linux tcp_fin_timeout
    close_wait: float = 60.0         # conntrack CLOSE_WAIT
    closing: float = 120.0           # conntrack treats CLOSING with the FIN_WAIT timeout
    last_ack: float = 30.0           # conntrack LAST_ACK
    closed: float = 10.0             # conntrack CLOSE
    listen: float = 0.0              # a listener never times out

    def __post_init__(self) -> None:
        check_timeouts(self)

    @property
    def time_wait(self) -> float:
        """2 * MSL (RFC 9293 3.6.1)."""
        return 2 * self.msl

    def for_state(self, state: State) -> float:
        """Timeout of `state` in seconds."""
        if state is State.TIME_WAIT:
            return self.time_wait
        return getattr(self, State(state).name.lower())

    def as_micros(self) -> list[int]:
        """Per-state timeouts in integer microseconds, indexed by State value."""
        return [round(self.for_state(s) * 1_000_000) for s in State]
