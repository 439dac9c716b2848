"""`fasttcp.analysis.Summary`: what analyze counts, in memory that does not grow with
the capture. The reference for the handshake RTT percentiles is numpy.percentile over
every sample, as the summary once computed them by keeping every sample."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from fasttcp.analysis import Summary
from fasttcp.analysis import summary as summary_mod
from fasttcp.tracker.tracker import FLOW_DTYPE

UNSET = 0xFFFFFFFF


def _rows(rtt1: np.ndarray, rtt2: np.ndarray) -> np.ndarray:
    rows = np.zeros(len(rtt1), FLOW_DTYPE)
    rows["rtt_syn_synack"] = rtt1
    rows["rtt_synack_ack"] = rtt2
    rows["history"] = b"ShADadFf"
    return rows


def _reference(samples: np.ndarray) -> dict | None:
    v = samples[samples != UNSET] / 1e6
    if not len(v):
        return None
    p = np.percentile(v, [50, 90, 99])
    return {"n": len(v), "p50": float(p[0]), "p90": float(p[1]), "p99": float(p[2]), "max": float(v.max())}


@pytest.mark.parametrize("fold_every", [5, 1 << 20])
@pytest.mark.parametrize("top", [3, 1000, 10 ** 6, UNSET])
def test_rtt_percentiles_are_numpys_over_every_sample(monkeypatch, fold_every, top):
    """Exactly equal, not approximately: the figures must not move between runs, worker
    counts or versions; with folds after every few samples and with none."""
    monkeypatch.setattr(summary_mod, "_FOLD_EVERY", fold_every)
    rng = np.random.default_rng(top)
    for _ in range(100):
        n = int(rng.integers(1, 300))
        rtt1 = rng.integers(0, top, n, dtype=np.uint32, endpoint=True)      # UNSET where top hits it
        rtt2 = np.where(rng.random(n) < 0.3, UNSET, rng.integers(0, top, n, dtype=np.uint32)).astype(np.uint32)
        s = Summary()
        for part in np.array_split(np.arange(n), int(rng.integers(1, 8))):
            s.add_rows(_rows(rtt1[part], rtt2[part]))
        d = s.as_dict()
        assert d["rtt_syn_synack_s"] == _reference(rtt1)
        assert d["rtt_synack_ack_s"] == _reference(rtt2)


def test_no_rtt_measured_is_none():
    s = Summary()
    s.add_rows(_rows(np.full(3, UNSET, np.uint32), np.full(3, UNSET, np.uint32)))
    assert s.as_dict()["rtt_syn_synack_s"] is None and "none measured" in s.format()


def test_memory_does_not_grow_with_the_connections():
    """A capture of many connections: the summary held 16 bytes a connection (every
    RTT sample as float seconds, to take percentiles at the end); 4 M connections
    with RTTs of 0.1-200 ms now hold the distinct values, not the samples."""
    rng = np.random.default_rng(0)
    batch = _rows(rng.integers(100, 200_000, 100_000, dtype=np.uint32),
                  rng.integers(100, 5_000, 100_000, dtype=np.uint32))
    s = Summary()
    tracemalloc.start()
    try:
        for _ in range(40):
            s.add_rows(batch)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert s.connections == 4_000_000
    # the samples of 4 M connections are 32 MB as uint32, 64 MB as float seconds
    assert held < 24 << 20, held
    assert s.as_dict()["rtt_syn_synack_s"]["n"] == 4_000_000
