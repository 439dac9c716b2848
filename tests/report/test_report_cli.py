"""`fasttcp analyze CAPTURE --report PATH` as the real command line (``python -m
fasttcp``), and `fasttcp.analyze(report=...)` / `write_report` through the Python API:
the file is one self-contained page, the rows output is unchanged beside it, and a bad
path is refused before the capture is read."""
from __future__ import annotations

import base64
import ipaddress
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import fasttcp
from fasttcp.report.html import CSP

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
ECHO = DATA / "zeek-echo-connections.pcap"
TIMEOUT = 300


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fasttcp", "analyze", *args], capture_output=True, text=True,
                          timeout=TIMEOUT, cwd=REPO, check=False)


def _self_contained(page: str) -> None:
    """No reference that a browser would fetch: every src/href is a data: URI or a
    fragment, and the page forbids the rest by its policy."""
    assert f'content="{CSP.replace(chr(39), "&#x27;")}"' in page
    for attr in re.findall(r'\b(?:src|href|xlink:href|action|srcset)\s*=\s*"([^"]*)"', page):
        assert attr.startswith(("data:", "#")), attr
    assert "<script" not in page and "@import" not in page and "url(" not in page


def test_report_beside_json_rows_with_two_workers(tmp_path: Path) -> None:
    report, rows = tmp_path / "report.html", tmp_path / "rows.jsonl"
    done = _cli(str(ECHO), "--report", str(report), "--format", "json", "-o", str(rows), "-w", "2", "-q")
    assert done.returncode == 0, done.stderr
    lines = rows.read_text().splitlines()
    assert len(lines) == 500 and json.loads(lines[0])["resp_p"] == 7000
    page = report.read_text(encoding="utf-8")
    _self_contained(page)
    for chart in ("conn_state", "end_reason", "rtt_syn_synack", "rtt_synack_ack", "time_connections",
                  "time_packets", "time_retransmissions", "time_resets", "top_hosts", "top_ports"):
        assert f'data-chart="{chart}"' in page
    assert "82,582" in page and "127.0.0.1:7000" not in page.split("Slowest handshakes")[0]


def test_report_is_the_same_for_one_worker_and_two(tmp_path: Path) -> None:
    """The page depends on the traffic, not on the worker count (run figures aside)."""
    pages = []
    for n in (1, 2):
        fasttcp.analyze(ECHO, workers=n, report=tmp_path / f"{n}.html")
        pages.append((tmp_path / f"{n}.html").read_text())
    assert pages[0] == pages[1]


@pytest.mark.parametrize("how", ["directory", "capture", "missing-dir", "output"])
def test_bad_report_path_is_refused_before_reading(tmp_path: Path, how: str) -> None:
    capture = tmp_path / "c.pcap"
    capture.write_bytes(ECHO.read_bytes()[:20000])
    before = capture.read_bytes()
    target = {"directory": str(tmp_path), "capture": str(capture), "missing-dir": str(tmp_path / "no" / "r.html"),
              "output": str(tmp_path / "rows.csv")}[how]
    extra = ["--format", "csv", "-o", str(tmp_path / "rows.csv")] if how == "output" else ["--summary-only"]
    done = _cli(str(capture), "--report", target, *extra)
    assert done.returncode == 2 and "--report" in done.stderr, done.stderr
    assert capture.read_bytes() == before
    assert not (tmp_path / "rows.csv").exists()


@pytest.mark.parametrize("where", [("--interface", "lo"), ("--scheduler", "local:1", str(ECHO))])
def test_report_refused_where_rows_are_not_made_here(where: tuple[str, ...]) -> None:
    done = _cli(*where, "--report", "/tmp/never.html")
    assert done.returncode == 2 and "--report" in done.stderr
    assert not Path("/tmp/never.html").exists()


def test_unwritable_report_is_an_output_error(tmp_path: Path) -> None:
    """The report is written last: a failure names the report's path, exit status 2."""
    done = _cli(str(ECHO), "--summary-only", "--report", "/proc/version")
    assert done.returncode == 2 and "/proc/version" in done.stderr, done.stderr


@pytest.mark.parametrize("capture", ["zeek-ftp-ipv6.pcap", "zeek-echo-connections.pcap"])
def test_each_slow_handshake_gets_its_own_ladder(capture: str, tmp_path: Path) -> None:
    """The ladder beside each slow handshake draws that connection (IPv6 and IPv4),
    starting with its SYN."""
    page = tmp_path / "r.html"
    summary = fasttcp.analyze(DATA / capture, workers=1, report=page)
    rows = summary.report.slowest.rows
    uris = re.findall(r'class="ladder-svg"[^>]*src="data:image/svg\+xml;base64,([^"]+)"', page.read_text())
    assert len(uris) == len(rows) > 0
    for row, uri in zip(rows, uris, strict=True):
        svg = base64.b64decode(uri).decode()
        fam = int(row["family"])
        addr = ipaddress.ip_address(bytes(row["orig_h"][:4] if fam == 4 else row["orig_h"]))
        client = f"{addr}:{int(row['orig_p'])}" if fam == 4 else f"[{addr}]:{int(row['orig_p'])}"
        assert f"client {client}" in svg
        first = ET.fromstring(svg)
        assert "SYN" in [t.text for t in first.iter("{http://www.w3.org/2000/svg}text")]
