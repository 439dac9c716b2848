"""The batch size analyze reads captures in, derived from the machine's cache."""
from __future__ import annotations

from pathlib import Path

from fasttcp.analysis import AnalyzeConfig
from fasttcp.analysis.config import (
    FALLBACK_BATCH,
    MAX_DEFAULT_BATCH,
    MIN_DEFAULT_BATCH,
    default_batch_bytes,
    last_level_cache_bytes,
)
from fasttcp.analysis.shards import BUFFERS


def _sysfs_largest_cache() -> int | None:
    """The oracle: the largest data/unified cache sysfs lists for CPU 0, read here by hand."""
    sizes = []
    for e in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            if (e / "type").read_text().strip() == "Instruction":
                continue
            text = (e / "size").read_text().strip()
        except OSError:
            continue
        unit = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}.get(text[-1], 1)
        sizes.append(int(text.rstrip("KMG")) * unit)
    return max(sizes) if sizes else None


def test_the_default_batch_is_the_power_of_two_that_keeps_the_buffers_in_half_the_cache():
    llc = last_level_cache_bytes()
    assert llc == _sysfs_largest_cache()
    size = default_batch_bytes()
    assert AnalyzeConfig().batch_bytes == size
    assert size & (size - 1) == 0 and MIN_DEFAULT_BATCH <= size <= MAX_DEFAULT_BATCH
    if llc is None:
        assert size == FALLBACK_BATCH
    else:
        assert size == MIN_DEFAULT_BATCH or BUFFERS * size <= llc // 2
        assert size == MAX_DEFAULT_BATCH or BUFFERS * 2 * size > llc // 2


def test_a_cpu_without_cache_information_gives_none():
    assert last_level_cache_bytes(cpu=10**6) is None
