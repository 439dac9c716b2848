"""The bare and lean C handshake loops: benchmark peers for `fasttcp bench` (not library API)."""

PGO_BUILD: bool
MAX_FLOWS: int

def bare_handshakes_run(flows: int, rounds: int, corrupt_every: int = 0, *,
                        lean: bool = False, _stray_timer: bool = False) -> tuple[list[float], int]:
    """(ns per handshake of each timed round, server connections established);
    `lean` adds the endpoint's bookkeeping (timers, lists, events, RFC 9293 checks)."""
