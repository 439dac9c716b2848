"""Tracker and capture-reading throughput on a synthetic capture of many concurrent
connections (fasttcp.bench.tracker.synth_capture), next to peers on the same packets.

Targets: feed_batch >= 15M packets/s from memory with checksums
(>= 100x tshark), analyze end to end >= 3M packets/s. `fasttcp bench` prints the same
figures with tshark measured in the same run; here the dpkt dictionary tracker is the
peer. Never asserted: timing belongs here, not in tests.
"""
import numpy as np
import pytest

import fasttcp
from fasttcp.analysis import AnalyzeConfig, analyze
from fasttcp.bench.tracker import PACKETS_PER_FLOW, dpkt_tracker, synth_capture
from fasttcp.bench.workload import handshake_batch

PACKETS = 240_000
CONCURRENT = 4_000


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    path = tmp_path_factory.mktemp("tracker") / "synth.pcap"
    synth_capture(path, PACKETS, CONCURRENT)
    return path


@pytest.fixture(scope="module")
def batches(capture):
    return list(fasttcp.read_pcap(capture))


def test_read_pcap(benchmark, capture):
    def read():
        return sum(len(b) for b in fasttcp.read_pcap(capture))

    n = benchmark(read)
    benchmark.extra_info["units_per_call"] = n


@pytest.mark.parametrize("verify, fast", [(True, True), (False, True), (True, False)],
                         ids=["verified", "unverified", "verified-general-path-only"])
def test_tracker_feed_batch(benchmark, batches, verify, fast):
    # the last case turns header prediction off: the fast path's gain in the same run
    n = sum(len(b) for b in batches)
    tracker = fasttcp.Tracker(n // PACKETS_PER_FLOW + CONCURRENT, timeouts="conntrack", verify_checksum=verify)
    tracker._set_fast_path(fast)

    def feed():
        for b in batches:
            tracker.feed_batch(b)

    def fresh():
        tracker.close()               # every round starts empty, on warm pages
        return (), {}

    benchmark.pedantic(feed, setup=fresh, rounds=5, warmup_rounds=1)
    benchmark.extra_info["units_per_call"] = n
    assert tracker.stats["verdicts"] == {"OK": tracker.stats["packets"]}


@pytest.fixture(scope="module")
def syn_flood():
    """All a SYN flood sends: 100k SYNs (Linux's SYN options) to one server port from
    distinct 4-tuples, 10 us apart; each creates a connection nobody answers."""
    b = handshake_batch(100_000)
    syns = np.arange(0, len(b), 3)
    return b.buffer, b.offsets[syns], b.lengths[syns], np.arange(len(syns), dtype=np.int64) * 10_000


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "general-path-only"])
def test_tracker_syn_flood(benchmark, syn_flood, fast):
    # the opening SYN's fast path against the general path, in the same run
    n = len(syn_flood[1])
    tracker = fasttcp.Tracker(n + 1024, timeouts="conntrack")
    tracker._set_fast_path(fast)

    def fresh():
        tracker.close()
        return (), {}

    benchmark.pedantic(lambda: tracker.feed_batch(*syn_flood), setup=fresh, rounds=7, warmup_rounds=1)
    benchmark.extra_info["units_per_call"] = n
    assert len(tracker) == n and tracker.stats["verdicts"] == {"OK": tracker.stats["packets"]}


def test_analyze_end_to_end(benchmark, capture):
    s = benchmark.pedantic(analyze, args=(capture, AnalyzeConfig(timeouts="conntrack", capacity=4 * CONCURRENT)),
                           rounds=3, warmup_rounds=1)
    benchmark.extra_info["units_per_call"] = s.packets


def test_peer_dpkt_dict_tracker(benchmark, tmp_path_factory):
    path = tmp_path_factory.mktemp("peer") / "small.pcap"
    synth_capture(path, 24_000, 400)
    n, _ = benchmark.pedantic(dpkt_tracker, args=(path,), rounds=2, warmup_rounds=0)
    benchmark.extra_info["units_per_call"] = n
