"""The bare handshake loop: a benchmark peer for `fasttcp bench` (not library API)."""

def bare_handshakes_run(flows: int, rounds: int, corrupt_every: int = 0) -> tuple[float, float, int]:
    """(fastest ns/handshake, median ns/handshake, server connections established)."""
    ...
