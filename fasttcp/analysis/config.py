"""How `fasttcp.analyze` runs: the tracker's settings and the batch size."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AnalyzeConfig"]


@dataclass
class AnalyzeConfig:
    """How to run the tracker over a capture (see `fasttcp analyze --help`).

    ``capacity`` is the number of connections tracked at once in total: with N
    workers each tracks ``ceil(capacity / N)`` (the flow hash spreads connections
    evenly over the shards), so memory stays what was configured."""

    verify_checksum: bool = True
    timeouts: str = "zeek"
    capacity: int = 1_000_000
    server_ports: bool = True
    batch_bytes: int = 8 << 20
