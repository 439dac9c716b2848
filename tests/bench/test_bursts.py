"""The bench's batch flows opened in cache-sized bursts (fasttcp.bench.handshakes): the
burst size derived from the private cache, and the rounds driven a burst a call.
Figures are checked for presence and sense, never for speed."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from fasttcp.bench.handshakes import MSL, _handshake_bytes, _handshakes, _pair, _rounds, burst_size, flow_keys
from fasttcp.endpoint.endpoint import EVENT_DTYPE


@pytest.mark.parametrize(("cache", "per", "want"), [
    (2 << 20, 807.0, 1024),        # 2 MiB L2, ~807 bytes a handshake at 200k flows
    (1 << 20, 807.0, 512),         # 1 MiB L2
    (16 << 20, 807.0, 8192),
    (0, 807.0, 512),               # unknown: 1 MiB assumed
    (-1, 807.0, 512),              # not a size: the same
    (1 << 60, 807.0, 512),
    (2 << 20, 1e9, 64),            # never fewer than 64 a call
    (1 << 40, 1.0, 65536),         # nor more than 65536
    (2 << 20, 0.0, 65536),         # a working set that is no size counts as 1 byte
    (2 << 20, -5.0, 65536),
    (2 << 20, float("nan"), 65536),
    (2 << 20, float("inf"), 65536),
    (4096, 2048.0, 64),
])
def test_burst_size_is_the_largest_power_of_two_filling_half_the_cache(cache, per, want):
    got = burst_size(cache, per)
    assert got == want
    assert got & (got - 1) == 0


def test_handshake_bytes_counts_records_segments_and_events():
    client, server = _pair(4096)
    per = _handshake_bytes(server)
    table = server.memory_bytes / server.capacity
    assert per == pytest.approx(2 * table + 3 * 96 + 4 * EVENT_DTYPE.itemsize)
    assert 400 < per < 2000


@pytest.mark.parametrize("burst", [0, 64, 100, 1000, 5000])
def test_handshakes_in_bursts_leave_every_flow_open(burst):
    # a multiple of the flows, a remainder, exactly all, more than all, all at once
    flows = 1000
    client, server = _pair(flows)
    cids, sids = _handshakes(client, server, flow_keys(flows), 0.0, burst)
    assert len(cids) == len(sids) == flows
    assert len(np.unique(cids)) == len(np.unique(sids)) == flows
    assert len(client) == len(server) == flows          # the earlier bursts stay open; accepted


@pytest.mark.parametrize("burst", [0, 300])
def test_rounds_in_bursts_open_and_close_every_flow(burst):
    flows = 1000
    client, server = _pair(flows)
    hs, life, now = _rounds(client, server, flow_keys(flows), 2, 0.0, MSL, burst)
    assert len(hs) == len(life) == 2 and min(hs) > 0
    assert now == pytest.approx(3 * (2 * MSL + 1))
    assert len(client) == len(server) == 0


def test_paired_ratio_of_a_report():
    # our figure against a peer's, measured in turn: the median of each block's own ratio
    from fasttcp.bench.codec import BenchConfig, Figure, Report

    rep = Report(BenchConfig())
    rep.figures["handshakes_per_s"] = Figure("handshakes_per_s", 3.0, "handshakes/s")
    rep.peers["bare_c_batch_handshakes_per_s"] = Figure("bare_c_batch_handshakes_per_s", 2.0, "handshakes/s")
    # unpaired: the ratio of the two medians
    assert rep.ratio("handshakes_per_s", "bare_c_batch_handshakes_per_s") == pytest.approx(1.5)
    # the host ran block 2 twice as fast for both: the pair cancels it
    rep.paired[("handshakes_per_s", "bare_c_batch_handshakes_per_s")] = ([3.0, 6.0, 2.0], [3.0, 6.0, 1.0])
    assert rep.ratio("handshakes_per_s", "bare_c_batch_handshakes_per_s") == pytest.approx(1.0)
    out = rep.as_dict()
    assert out["ratios"]["batch_vs_bare_c"] == pytest.approx(1.0)
    assert out["paired"]["handshakes_per_s/bare_c_batch_handshakes_per_s"]["spread"] == pytest.approx(1.0)
    # a peer that measured nothing: no ratio
    rep.paired[("handshakes_per_s", "bare_c_batch_handshakes_per_s")] = ([3.0, 6.0], [0.0, 0.0])
    assert rep.ratio("handshakes_per_s", "bare_c_batch_handshakes_per_s") is None


@pytest.mark.parametrize("flows", [50, 3000])
def test_text_report_with_and_without_the_bursts_figure(flows):
    # 50 flows always fit one burst (at least 64); 3,000 take several below a ~5 MiB cache
    _, server = _pair(flows)
    burst = burst_size(server.pipeline["cache_bytes"], _handshake_bytes(server))
    out = subprocess.run([sys.executable, "-m", "fasttcp", "bench", "--quick", "--no-tracker", "--no-codec",
                          "--many-open", "0", "--single", "0", "--cores", "1", "--no-peers",
                          "--flows", str(flows)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    figure = [ln for ln in lines if f"batch flows, {burst:,} a call" in ln]
    note = [ln for ln in lines if ln == f"note: no bursts figure: {flows:,} flows fit in one burst of {burst:,}"]
    if burst < flows:
        assert len(figure) == 1 and not note, out.stdout
        assert "ratio bursts handshakes" not in out.stdout         # --no-peers: no loops to compare
    else:
        assert note and not figure, out.stdout
