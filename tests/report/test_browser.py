"""The HTML report in a real browser: headless Chromium loads it from disk, and the
tests check that it logs no console message (no script error, no blocked fetch), that
every chart's box has ink and the charts with data show their bars, and that a hostile
capture name or row cannot add an element or run a script.

Screenshots are kept, one per kind of page, under $FASTTCP_ARTIFACTS/report when that
is set, else in the test's pytest tmp_path (pytest keeps the last three runs, under
/tmp/pytest-of-$USER/)."""
from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np
import pytest

import fasttcp
from fasttcp.analysis.summary import Summary
from fasttcp.report import ReportAggregate, write_report
from fasttcp.report.charts import BAR_COLOUR
from tests.report.browser import (
    artifacts_dir,
    console_lines,
    ink_fraction,
    probe,
    require_chromium,
    run_chromium,
    screenshot,
)

DATA = Path(__file__).resolve().parents[1] / "data"
CAPTURES = ["zeek-echo-connections.pcap", "suricata-bug-4376-syn-retransmit-ts-vlan.pcap"]
# a chart box is a few hundred pixels tall: text and axes alone ink a few percent
MIN_INK = 0.005


def _bar_pixels(png: Path, box: dict) -> int:
    from PIL import Image

    want = np.array([int(BAR_COLOUR[i:i + 2], 16) for i in (1, 3, 5)], np.int16)
    with Image.open(png) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.int16)
    x0, y0 = int(box["x"]), int(box["y"])
    region = rgb[y0:y0 + int(box["h"]), x0:x0 + int(box["w"])]
    return int((np.abs(region - want).max(axis=2) <= 8).sum())


def _has_data(agg: ReportAggregate, name: str) -> bool:
    """Whether the chart called `name` has something to draw (bars, not "none")."""
    if name.startswith("time_"):
        return bool(agg.time.view()[2][agg.SERIES.index(name[5:])].any())
    if name.startswith("rtt_"):
        return bool(getattr(agg, name).counts.any())
    return {"conn_state": agg.conn_states.any(), "end_reason": agg.end_reasons.any(),
            "top_hosts": len(agg.hosts.keys) > 0, "top_ports": agg.port_conns.any()}.get(name, True)


def _load(page: Path, tmp_path: Path, shot_name: str) -> tuple[Path, list[dict]]:
    """Probe and screenshot `page`; check for console messages; returns the kept
    screenshot and the chart boxes."""
    found = probe(page, tmp_path)
    assert found.errors == ""
    assert found.scripts == 0, "the report must run no script of its own"
    png = artifacts_dir(tmp_path) / shot_name
    console = screenshot(page, png, found.height)
    assert console == [], console
    return png, found.boxes


@pytest.mark.parametrize("capture", CAPTURES)
def test_report_renders_every_chart(capture: str, tmp_path: Path) -> None:
    """analyze(report=...) on a bundled capture: the page loads with no console
    message, every chart has ink, each chart with data shows bars."""
    require_chromium()
    page = tmp_path / "report.html"
    summary = fasttcp.analyze(DATA / capture, workers=1, report=page)
    assert summary.connections > 0
    agg = ReportAggregate()                 # what the page has to draw, from every row
    agg.add_rows(fasttcp.analyze(DATA / capture, workers=1, keep_rows=True).rows)
    png, boxes = _load(page, tmp_path, f"report-{Path(capture).stem}.png")
    names = {b["name"] for b in boxes}
    expected = {"conn_state", "end_reason", "rtt_syn_synack", "rtt_synack_ack", "time_connections", "time_packets",
                "time_retransmissions", "time_resets", "top_hosts", "top_ports"}
    assert expected <= names
    for box in boxes:
        assert box["w"] > 300 and box["h"] > 40, box
        assert ink_fraction(png, box) > MIN_INK, box
        if box["name"] in expected and box["name"] != "time_packets" and _has_data(agg, box["name"]):
            assert _bar_pixels(png, box) > 20, f"{box['name']}: no bars drawn"
    # the slowest handshakes, each with its ladder picture, loaded and drawn
    ladders = [b for b in boxes if b["name"].startswith("ladder_")]
    assert len(ladders) == min(5, len(agg.slowest.rows))
    for box in ladders:
        assert box["complete"], box
        assert ink_fraction(png, box) > MIN_INK, box
    # packets always have times in these captures
    packets = next(b for b in boxes if b["name"] == "time_packets")
    assert _bar_pixels(png, packets) > 20


def test_hostile_strings_stay_text(tmp_path: Path) -> None:
    """A capture path and row fields made of markup are shown as text: no element, no
    script, no console message (a blocked injected script would log a CSP violation)."""
    require_chromium()
    evil = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
    summary = Summary(path=f"/tmp/{evil}.pcap", connections=1, error=evil)
    summary.verdicts["<b>bad</b>"] = 1
    rows = np.zeros(1, fasttcp.FLOW_DTYPE)
    rows["history"] = b'<script>alert(3)</script>"'
    rows["family"] = 4
    rows["start_us"], rows["end_us"] = 1_000_000, 2_000_000
    rows["rtt_syn_synack"], rows["rtt_synack_ack"] = 1000, 2000
    rows["conn_state"], rows["end_reason"] = 200, 200            # codes no enum has
    agg = ReportAggregate()
    agg.add_packet_times(np.array([1_000_000_000, 2_000_000_000], np.int64))
    agg.add_rows(rows)
    summary.rtt1.add(rows["rtt_syn_synack"])
    page = tmp_path / "hostile.html"
    write_report(page, summary, agg, ladders=[f"<svg xmlns='http://www.w3.org/2000/svg'>{evil}</svg>"])
    text = page.read_text()
    assert "<script>alert" not in text and "<img src=x" not in text
    assert html.escape(evil) in text
    png, boxes = _load(page, tmp_path, "report-hostile.png")
    assert {"conn_state", "ladder_1"} <= {b["name"] for b in boxes}
    # what the browser shows is the text itself
    done = run_chromium(["--dump-dom"], page.as_uri(), window=(1000, 800))
    assert done.returncode == 0
    assert re.search(r"<img[^>]*onerror", done.stdout) is None
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in done.stdout
    assert console_lines(done.stderr) == []


def test_console_check_sees_errors(tmp_path: Path) -> None:
    """The console check can fail: a page whose script throws and that fetches a
    remote image against its policy logs both."""
    require_chromium()
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><meta http-equiv="Content-Security-Policy" content="img-src data:">'
                    '<script>null.x</script><img src="http://198.18.0.1/x.png">', encoding="utf-8")
    done = run_chromium(["--dump-dom"], page.as_uri(), window=(800, 600))
    lines = console_lines(done.stderr)
    assert any("Uncaught TypeError" in line for line in lines), done.stderr[-2000:]
    assert any("Content Security Policy" in line for line in lines), done.stderr[-2000:]


def test_ladder_svg_alone(tmp_path: Path) -> None:
    """A ladder SVG (fasttcp.ladder, of a real connection) opened by itself: no console
    message, and its lifelines and arrows have ink."""
    require_chromium()
    svg = fasttcp.ladder(DATA / "zeek-tcp-syn-synack.pcap", fmt="svg")
    page = tmp_path / "ladder.svg"
    page.write_text(svg, encoding="utf-8")
    height = int(re.search(r'height="(\d+)"', svg).group(1))
    png = artifacts_dir(tmp_path) / "ladder.png"
    assert screenshot(page, png, height + 20) == []
    box = {"x": 0, "y": 0, "w": 760, "h": height}
    assert ink_fraction(png, box) > MIN_INK
