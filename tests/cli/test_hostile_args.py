"""Hostile arguments to the command line: every one is a usage error (exit status 2, one
line on stderr), never a traceback, a bogus figure or a hang. Each runs as the real
command line (``python -m fasttcp``) in a subprocess with a timeout.
"""
from __future__ import annotations

import errno
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.probe import expect_ok

REPO = Path(__file__).resolve().parents[2]
CAPTURE = REPO / "tests" / "data" / "suricata-bug-6733-syn-only.pcap"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fasttcp", *args], capture_output=True, text=True, timeout=60,
                          cwd=REPO)


def _usage_error(proc: subprocess.CompletedProcess, match: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert match in proc.stderr, proc.stderr


@pytest.mark.parametrize("args", [
    ["--analyze-bytes", "-5"],            # used to run analyze rounds and report a figure
    ["--tracker-packets", "-1"],          # used to skip the tracker silently
    ["--tracker-packets", str(10 ** 11)],  # used to end in a UsageError traceback
    ["--single", str(10 ** 11)],          # an endpoint holds at most 2^31 connections
    ["--many-open", str(3 * 10 ** 9)],
    ["--flows", "-1"], ["--flows", "0"], ["--repeat", "0"], ["--flows", str(10 ** 12)],
    ["--cores", "0"], ["--cores", "-2"], ["--cores", str(10 ** 6)], ["--cores", str(2 ** 64)],
    ["--cores", "1.5"], ["--cores", "two"], ["--cores", ""],
])
def test_bench_refuses_out_of_range_sizes(args):
    _usage_error(_run("bench", "--quick", "--no-peers", "--no-codec", *args), "fasttcp bench:")


@pytest.mark.parametrize("capacity", ["0", "-1", str(2 ** 31 + 1), str(10 ** 23)])
def test_analyze_refuses_a_capacity_outside_its_range(capacity):
    _usage_error(_run("analyze", "-q", "--capacity", capacity, str(CAPTURE)), "--capacity")


def test_analyze_reports_an_output_that_cannot_be_written():
    """A full disk shows when the output is flushed on close: that was a traceback."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    _usage_error(_run("analyze", "-q", str(CAPTURE), "-o", "/dev/full"), "cannot write /dev/full")


@pytest.mark.parametrize("stderr", ["closed", "full", "gone"])
@pytest.mark.parametrize("args, status", [
    (["analyze", "-q", "/nonexistent/x.pcap"], 2),            # the command's own error
    (["analyze", "-q", "--capacity", "0", str(CAPTURE)], 2),   # a usage error
    (["analyze", "--bogus"], 2),                               # argparse's
    (["analyze", "--summary-only", "--json-summary", str(CAPTURE)], 0),   # no error: the summary on stdout
])
def test_the_exit_status_holds_when_stderr_cannot_be_written(stderr, args, status):
    """An error message that cannot be written -- stderr closed (``2>&-``), full, or a
    reader that went away (``2>&1 | head -1``) -- must not change the exit status
    (it was 1), nor go to stdout instead."""
    cmd = [sys.executable, "-m", "fasttcp", *args]
    if stderr == "closed":
        p = subprocess.run(["sh", "-c", '"$@" 2>&-', "sh", *cmd], capture_output=True, text=True, timeout=60,
                           cwd=REPO)
    elif stderr == "full":
        if not Path("/dev/full").exists():
            pytest.skip("no /dev/full")
        with open("/dev/full", "w") as full:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=full, text=True, timeout=60, cwd=REPO)
    else:
        # a pipe whose reader is gone before anything is written: EPIPE (SIGPIPE is
        # ignored by Python)
        r, w = os.pipe()
        os.close(r)
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=w, text=True, timeout=60, cwd=REPO)
        finally:
            os.close(w)
    assert p.returncode == status, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    if status:
        assert p.stdout == ""
    else:
        assert json.loads(p.stdout)["packets"] > 0


class _FullStream(io.TextIOBase):
    def write(self, text):
        raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("make", [io.StringIO, _FullStream, lambda: None], ids=["working", "full", "none"])
def test_main_in_process_gives_back_the_callers_stderr(monkeypatch, make):
    """`main()` called in-process puts back the stream it found -- working, failing,
    closed or None -- with the command's status."""
    from fasttcp.cli.main import main

    stream = make()
    monkeypatch.setattr(sys, "stderr", stream)
    assert main(["analyze", "-q", "/nonexistent/x.pcap"]) == 2
    assert sys.stderr is stream
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr(sys, "stderr", closed)
    assert main(["analyze", "-q", ""]) == 2
    assert sys.stderr is closed


@pytest.mark.parametrize("args, match", [
    (["analyze", "-q", ""], "a capture path is empty"),                      # it read "." as a directory
    (["analyze", "-q", str(CAPTURE), ""], "a capture path is empty"),
    (["analyze", "-q", "-o", "", str(CAPTURE)], "-o/--output is empty"),      # it wrote to stdout
    (["analyze", "-q", "-o", "", "--interface", "lo"], "-o/--output is empty"),
])
def test_empty_paths_are_usage_errors(args, match):
    """An empty path -- a script's unset variable -- is neither "." nor stdout."""
    p = _run(*args)
    _usage_error(p, match)
    assert p.stdout == ""


def test_the_bench_capture_survives_sequence_numbers_that_wrap():
    """Connection 287072 of the synthetic capture starts 2584 below 2^32: its later
    segments' sequence numbers must wrap, not overflow build()'s range (which made
    `fasttcp bench --tracker-packets 3500000` end in a traceback)."""
    out = expect_ok("""
from fasttcp.bench.tracker import _flow_packets
pkts = _flow_packets(287072, ('198.18.4.1', 1024), '198.19.0.1')
segs = [fasttcp.parse(p) for p in pkts]
outcome((len(segs), segs[4].seq - segs[1].seq - 1 == 0, segs[6].seq < segs[1].seq))
""")
    assert out == "(12, True, True)"


def test_analyze_reads_a_capture_from_a_pipe():
    # the capture is opened once: a pipe's bytes cannot be read a second time
    data = (REPO / "tests" / "data" / "zeek-http-get.pcap").read_bytes()
    proc = subprocess.run([sys.executable, "-m", "fasttcp", "analyze", "/dev/stdin", "--format", "json"],
                          input=data, capture_output=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.decode().splitlines() if line.startswith("{")]
    assert [(r["resp_p"], r["conn_state"], r["history"]) for r in rows] == [(80, "SF", "ShADadFf")], proc.stdout
