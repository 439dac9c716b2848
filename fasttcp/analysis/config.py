"""How `fasttcp.analyze` runs: the tracker's settings and the batch size."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["AnalyzeConfig", "default_batch_bytes", "last_level_cache_bytes"]

#: Batch sizes `default_batch_bytes` picks from: below 1 MiB the per-batch Python work
#: shows; above 8 MiB nothing is gained and a batch of rows waits longer.
MIN_DEFAULT_BATCH = 1 << 20
MAX_DEFAULT_BATCH = 8 << 20
#: When the cache size cannot be read (not Linux, a container hiding sysfs).
FALLBACK_BATCH = 2 << 20


def last_level_cache_bytes(cpu: int = 0) -> int | None:
    """The size of the largest data or unified cache of CPU `cpu` (Linux sysfs), or
    None where it cannot be read."""
    best = None
    base = Path(f"/sys/devices/system/cpu/cpu{cpu}/cache")
    try:
        entries = sorted(base.glob("index*"))
        for e in entries:
            if (e / "type").read_text().strip() == "Instruction":
                continue
            text = (e / "size").read_text().strip().upper()
            mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
            size = int(text.rstrip("KMG")) * mult
            best = size if best is None or size > best else best
    except (OSError, ValueError):
        return None
    return best


_derived: int | None = None          # default_batch_bytes, once derived


def default_batch_bytes() -> int:
    """The batch size `analyze` reads a capture in, derived from this machine's
    last-level cache: the buffers in use with several workers (`shards.BUFFERS`: the
    batches being tracked, the one being read, the ones read ahead) take at most half
    of it, so a batch's bytes are still in the cache when a tracker on another core
    reaches them. A power of two in 1..8 MiB (2 MiB with a 32 MiB cache; measured on
    the 1 GiB bench capture with 2 workers: 2 MiB 1.54x one worker, 4 MiB 1.45x,
    8 MiB 1.28x, while one worker runs alike at each)."""
    global _derived
    if _derived is None:
        from fasttcp.analysis.shards import BUFFERS

        llc = last_level_cache_bytes()
        size = FALLBACK_BATCH
        if llc:
            want = llc // (2 * BUFFERS)
            size = MIN_DEFAULT_BATCH
            while size * 2 <= min(want, MAX_DEFAULT_BATCH):
                size *= 2
        _derived = size
    return _derived


@dataclass
class AnalyzeConfig:
    """How to run the tracker over a capture (see `fasttcp analyze --help`).

    ``capacity`` is the number of connections tracked at once in total: with N
    workers each tracks ``ceil(capacity / N)`` (the flow hash spreads connections
    evenly over the shards), so memory stays what was configured. ``batch_bytes``:
    the capture is read this much at a time (default: `default_batch_bytes`)."""

    verify_checksum: bool = True
    timeouts: str = "zeek"
    capacity: int = 1_000_000
    server_ports: bool = True
    batch_bytes: int = field(default_factory=default_batch_bytes)
