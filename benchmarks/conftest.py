"""Shared fixtures for the pytest-benchmark suite (run: pytest benchmarks --benchmark-only)."""
import sys
from pathlib import Path

import numpy as np
import pytest

from fasttcp.bench.workload import handshake_batch

sys.path.insert(0, str(Path(__file__).parent))     # benchmarks/tablekeys.py


@pytest.fixture(scope="session")
def handshakes():
    """100k flows x 3 packets of realistic handshake traffic, IPv4."""
    return handshake_batch(100_000, family="4")


@pytest.fixture(scope="session")
def mtu_buffer():
    return np.random.default_rng(7).integers(0, 256, 1500, dtype=np.uint8).tobytes()
