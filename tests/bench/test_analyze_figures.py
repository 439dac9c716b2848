"""`fasttcp bench`'s analyze figures (fasttcp.bench.tracker): every variant measured in
the same rounds, and the scaling taken pair by pair. Figures are checked for presence
and sense, never for speed."""
from __future__ import annotations

from pathlib import Path

import pytest

from fasttcp.bench.stats import paired_ratio
from fasttcp.bench.tracker import TrackerBenchConfig, TrackerReport, _analyze_figures, synth_capture


def test_paired_ratio_is_the_median_of_each_rounds_own_ratio():
    # round 2 ran while the host took half the machine: both variants slowed alike
    one = [100.0, 50.0, 100.0, 98.0, 102.0]
    two = [150.0, 75.0, 140.0, 150.0, 160.0]
    ratio, spread = paired_ratio(one, two)
    assert ratio == pytest.approx(1.5)
    per_round = [b / a for a, b in zip(one, two, strict=True)]
    assert spread == pytest.approx((max(per_round) - min(per_round)) / 1.5)


def test_paired_ratio_cancels_a_slowdown_that_hits_both_variants_of_a_round():
    one = [100.0, 40.0, 100.0]
    two = [130.0, 52.0, 130.0]
    assert paired_ratio(one, two)[0] == pytest.approx(1.3)
    assert paired_ratio(one, two)[1] == pytest.approx(0.0)


@pytest.mark.parametrize("one, two", [([], []), ([1.0], [1.0, 2.0]), ([1.0, 2.0], [1.0])])
def test_paired_ratio_needs_pairs(one, two):
    with pytest.raises(ValueError, match="pairs"):
        paired_ratio(one, two)


def test_paired_ratio_skips_a_round_that_measured_nothing():
    assert paired_ratio([0.0, 10.0, 10.0], [5.0, 20.0, 20.0])[0] == pytest.approx(2.0)
    assert paired_ratio([0.0], [5.0]) == (0.0, 0.0)


def test_analyze_figures_report_both_worker_counts_and_their_paired_scaling(tmp_path: Path):
    capture = tmp_path / "short.pcap"
    synth_capture(capture, 6_000, 200, shape="short")
    rep = TrackerReport()
    _analyze_figures(rep, TrackerBenchConfig(concurrent=200, repeat=3), capture, "analyze_short", 2,
                     ("summary", "json"))
    f = rep.figures
    assert f["analyze_short_packets"] == 6_000
    assert f["analyze_short_workers"] == 2
    for key in ("analyze_short", "analyze_short_json"):
        assert f[f"{key}_pps"] > 0 and f[f"{key}_workers_pps"] > 0
        assert f[f"{key}_scaling"] > 0
        assert f[f"{key}_scaling_spread"] >= 0
    assert f["analyze_short_json_vs_summary_time"] > 0
