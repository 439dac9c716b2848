"""The SVG charts: well-formed XML, labels escaped, axes on round values that cover
the data, units readable."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from fasttcp.report.charts import fmt_bytes, fmt_count, fmt_duration, hbar_chart, log_histogram, nice_step, time_series

NS = "{http://www.w3.org/2000/svg}"


def _texts(svg: str) -> list[str]:
    return [t.text or "" for t in ET.fromstring(svg).iter(f"{NS}text")]


def test_hbar_chart_escapes_labels_and_scales_bars() -> None:
    svg = hbar_chart("x", "Hosts <&>", ["<script>", "b\"'"], [10, 5], notes=["n<1>", "n2"])
    root = ET.fromstring(svg)                       # parses: nothing broke out of its element
    assert root.get("data-chart") == "x"
    texts = _texts(svg)
    assert "<script>" in texts and "b\"'" in texts and "10 · n<1>" in texts
    bars = [float(r.get("width")) for r in root.iter(f"{NS}rect")]
    assert bars[0] == pytest.approx(2 * bars[1])


def test_time_series_axis_is_round_and_covers_the_data() -> None:
    counts = np.array([0, 3, 7, 1, 0, 12, 5], float)
    svg = time_series("t", "Packets", start_us=1_000_000, width_us=500_000, counts=counts, origin_us=1_000_000)
    texts = _texts(svg)
    assert "per 500 ms" in texts
    y_labels = [float(t.replace(",", "")) for t in texts if t.replace(",", "").replace(".", "").isdigit()]
    assert max(y_labels) >= counts.max()            # the axis reaches the highest bar
    assert "0" in texts and "seconds since the first packet" in texts
    assert sum(1 for r in ET.fromstring(svg).iter(f"{NS}rect")) == np.count_nonzero(counts)


def test_log_histogram_spans_whole_decades_and_marks_percentiles() -> None:
    counts = np.zeros(100, np.int64)
    counts[[31, 35, 42]] = [4, 9, 1]                # ~1.3 ms, ~2.2 ms, ~12.6 ms
    svg = log_histogram("h", "RTT", counts, 10, markers=[("p50", 2200.0), ("p90", 2200.0), ("p99", 12_000.0)])
    texts = _texts(svg)
    assert {"1 ms", "10 ms", "100 ms"} <= set(texts)
    assert "p50 = p90 2.20 ms" in texts             # one line for equal percentiles
    assert "p99 12.0 ms" in texts


def test_empty_charts_say_so() -> None:
    assert "none" in _texts(hbar_chart("x", "t", [], []))
    assert "none measured" in _texts(log_histogram("h", "t", np.zeros(100, np.int64), 10))
    assert "none" in _texts(time_series("t", "t", 0, 1, np.zeros(3), 0))


@pytest.mark.parametrize(("us", "text"), [(0, "0 µs"), (850, "850 µs"), (999.6, "1.00 ms"), (12_345, "12.3 ms"),
                                         (999_999, "1.00 s"), (3.11e6, "3.11 s"), (61e6, "1.02 min"),
                                         (4e9, "1.11 h")])
def test_fmt_duration(us: float, text: str) -> None:
    assert fmt_duration(us) == text


def test_number_formats() -> None:
    assert fmt_count(1234) == "1,234" and fmt_count(2.5e6) == "2.5M" and fmt_count(0.25) == "0.25"
    assert fmt_bytes(512) == "512 B" and fmt_bytes(1536) == "1.5 KiB" and fmt_bytes(3 << 30) == "3.0 GiB"
    assert [nice_step(s, 5) for s in (1, 7, 10, 33, 0.003)] == [0.2, 2, 2, 10, 0.001]
