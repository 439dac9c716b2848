"""The report's streaming aggregates against the same figures computed over every row
at once: time bins, spread counts, histograms, top-k and the slowest handshakes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import fasttcp
from fasttcp.report.aggregate import (
    BINS_PER_DECADE,
    PORTS,
    TIME_BINS,
    BoundedTop,
    LogHistogram,
    SlowestHandshakes,
    TimeBins,
)

DATA = Path(__file__).resolve().parents[1] / "data"
ECHO = DATA / "zeek-echo-connections.pcap"


def _reference_bins(times: np.ndarray, bins: TimeBins) -> np.ndarray:
    start, width, counts = bins.view()
    return np.bincount((times - start) // width, minlength=counts.shape[1])


@pytest.mark.parametrize("span_us", [7, 999, 123_456, 10 ** 9, 36 * 10 ** 9])
def test_time_bins_fit_any_span_and_keep_every_count(span_us: int) -> None:
    rng = np.random.default_rng(span_us)
    times = 1_600_000_000_000_000 + rng.integers(0, span_us + 1, 5000)
    bins = TimeBins(("n",))
    for chunk in np.array_split(times, 7):              # batches, out of time order
        bins.add("n", chunk)
    start, width, counts = bins.view()
    assert counts.sum() == len(times)
    assert counts.shape[1] <= TIME_BINS
    # a round width (1 or 5 times a power of ten) that cannot be one step finer
    assert str(width).lstrip("15").strip("0") == "" and str(width)[0] in "15"
    finer = width // (5 if str(width)[0] == "5" else 2)
    assert width == 1 or span_us // finer >= TIME_BINS - 1
    assert start % width == 0
    np.testing.assert_array_equal(counts[0], _reference_bins(times, bins))


def test_time_bins_grow_backwards() -> None:
    bins = TimeBins(("n",))
    bins.add("n", np.array([10_000_000], np.int64))
    bins.add("n", np.array([9_000_000, 1_000], np.int64))   # earlier than the first batch
    start, width, counts = bins.view()
    assert counts.sum() == 3 and start <= 1_000
    np.testing.assert_array_equal(counts[0], _reference_bins(np.array([10_000_000, 9_000_000, 1_000]), bins))


def test_spread_matches_exact_overlap() -> None:
    rng = np.random.default_rng(1)
    start = rng.integers(0, 5_000_000, 300)
    end = start + rng.integers(0, 2_000_000, 300)
    weights = rng.integers(1, 20, 300).astype(np.float64)
    bins = TimeBins(("w",))
    bins.spread("w", start, end, weights)
    first, width, counts = bins.view()
    assert counts.sum() == pytest.approx(weights.sum())
    expect = np.zeros(counts.shape[1])
    for s, e, w in zip(start, end, weights, strict=True):        # the overlap of each bin, row by row
        if s == e:
            expect[(s - first) // width] += w
            continue
        for k in range(counts.shape[1]):
            lo, hi = first + k * width, first + (k + 1) * width
            expect[k] += w * max(0, min(e, hi) - max(s, lo)) / (e - s)
    np.testing.assert_allclose(counts[0], expect, rtol=1e-9, atol=1e-9)


def test_log_histogram_bins() -> None:
    h = LogHistogram()
    h.add(np.array([0, 1, 9, 10, 11, 1000, 0xFFFFFFFE], np.uint32))
    assert h.counts.sum() == 7
    assert h.counts[0] == 2                     # 0 and 1 us
    assert h.counts[BINS_PER_DECADE] == 2       # 10 and 11 us
    assert h.counts[3 * BINS_PER_DECADE] == 1   # 1 ms
    assert LogHistogram.edge_us(BINS_PER_DECADE) == pytest.approx(10)


def _keys(ints: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(ints.astype(">u4")).view("V4")


def test_bounded_top_is_exact_below_capacity() -> None:
    rng = np.random.default_rng(2)
    ids = rng.integers(0, 50, 2000)
    w = rng.random(2000) * 100
    top = BoundedTop(4, 2, capacity=64)
    for a, b in zip(np.array_split(ids, 9), np.array_split(w, 9), strict=True):
        top.add(_keys(a), np.stack([b, np.ones(len(b))], axis=1))
    keys, weights = top.top(5)
    exact = np.bincount(ids, w, minlength=50)
    want = np.argsort(-exact, kind="stable")[:5]
    assert [int.from_bytes(bytes(k), "big") for k in keys] == list(want)
    np.testing.assert_allclose(weights[:, 0], exact[want])
    np.testing.assert_array_equal(weights[:, 1], np.bincount(ids, minlength=50)[want])
    assert top.undercount == 0


def test_bounded_top_bounds_its_error_past_capacity() -> None:
    rng = np.random.default_rng(3)
    ids = rng.zipf(1.3, 20000) % 5000          # a few heavy keys, a long tail
    top = BoundedTop(4, 1, capacity=100)
    for chunk in np.array_split(ids, 40):
        top.add(_keys(chunk), np.ones((len(chunk), 1)))
    assert len(top.keys) <= 100 and top.undercount > 0
    exact = np.bincount(ids)
    keys, weights = top.top(10)
    for k, w in zip(keys, weights[:, 0], strict=True):
        true = exact[int.from_bytes(bytes(k), "big")]
        assert true - top.undercount <= w <= true
    heaviest = np.argsort(-exact)[:3]               # far heavier than the bound: found, in order
    assert [int.from_bytes(bytes(k), "big") for k in keys[:3]] == list(heaviest)


def _rows_of(capture: Path, workers: int = 1) -> np.ndarray:
    return fasttcp.analyze(capture, workers=workers, keep_rows=True).rows


def test_slowest_handshakes_are_the_top_of_all_rows() -> None:
    rows = _rows_of(ECHO)
    slow = SlowestHandshakes(5)
    for chunk in np.array_split(rows, 13):
        slow.add(chunk)
    both = rows[(rows["rtt_syn_synack"] != 0xFFFFFFFF) & (rows["rtt_synack_ack"] != 0xFFFFFFFF)]
    total = SlowestHandshakes.total_us(both)
    assert list(SlowestHandshakes.total_us(slow.rows)) == sorted(total, reverse=True)[:5]


def test_slowest_handshakes_alike_keep_the_earliest() -> None:
    """Every handshake equally slow (a synthetic capture): the earliest k, whatever
    the order the rows come in."""
    rows = np.zeros(1000, fasttcp.FLOW_DTYPE)
    rows["rtt_syn_synack"], rows["rtt_synack_ack"] = 500, 20
    rows["start_us"] = np.random.default_rng(4).permutation(1000) + 10_000
    rows["rtt_synack_ack"][7] = 0xFFFFFFFF           # not a complete handshake: never kept
    rows["start_us"][7] = 0
    rows["rtt_syn_synack"][900] = 501                # the one slower
    slow = SlowestHandshakes(5)
    for chunk in np.array_split(rows, 9):
        slow.add(chunk)
    assert slow.rows[0]["rtt_syn_synack"] == 501
    earliest = np.sort(np.delete(rows["start_us"], [7, 900]))[:4]
    assert list(slow.rows["start_us"][1:]) == list(earliest)


def test_aggregate_from_analyze_matches_all_rows(tmp_path: Path) -> None:
    """analyze(report=...) aggregates as the rows stream; the same figures come from
    every row at once, for one worker and for two."""
    rows = _rows_of(ECHO)
    for workers in (1, 2):
        summary = fasttcp.analyze(ECHO, workers=workers, report=tmp_path / f"r{workers}.html")
        agg = summary.report
        np.testing.assert_array_equal(agg.conn_states[:-1], np.bincount(rows["conn_state"], minlength=13))
        np.testing.assert_array_equal(agg.port_conns, np.bincount(rows["resp_p"], minlength=PORTS))
        start, width, counts = agg.time.view()
        series = dict(zip(agg.SERIES, counts, strict=True))
        assert series["connections"].sum() == len(rows)
        assert series["packets"].sum() == summary.packets
        assert series["retransmissions"].sum() == pytest.approx(summary.retransmissions)
        assert series["resets"].sum() == summary.resets
        assert start <= agg.span.first_us and agg.span.last_us < start + width * counts.shape[1]
        ts = np.concatenate([b.ts_ns for b in fasttcp.read_pcap(ECHO)])
        assert (agg.span.first_us, agg.span.last_us) == (ts.min() // 1000, ts.max() // 1000)
        assert agg.slowest.rows is not None and len(agg.slowest.rows) == 5
        assert agg.nbytes < 4 << 20
        assert (tmp_path / f"r{workers}.html").stat().st_size > 10_000
