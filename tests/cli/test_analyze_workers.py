"""`fasttcp analyze --workers N` as the real command line, in a subprocess: the same
rows and summary as one worker, argument checks, a pipe, Ctrl-C and a failing shard
(exit statuses 2, 130 and 3)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from fasttcp.analysis import RUN_FIELDS
from fasttcp.bench.tracker import synth_capture
from tests import linklayer

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 120


def run(*args: object, stdin=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fasttcp", "analyze", *map(str, args)], capture_output=True,
                          text=True, timeout=TIMEOUT, cwd=REPO, stdin=stdin)


@pytest.fixture(scope="module")
def short(tmp_path_factory):
    path = tmp_path_factory.mktemp("short") / "short.pcap"
    synth_capture(path, 30_000, 300, shape="short")
    return path


def _summary(text: str) -> dict:
    d = json.loads(text)
    for k in RUN_FIELDS:
        d.pop(k)
    return d


@pytest.mark.parametrize("fmt", ["json", "csv", "zeek"])
def test_two_workers_write_the_same_rows_and_summary(short, tmp_path, fmt):
    outs = {}
    for w in (1, 2):
        out = tmp_path / f"{w}.{fmt}"
        p = run(short, "--workers", w, "--format", fmt, "-o", out, "--json-summary")
        assert p.returncode == 0, p.stderr
        outs[w] = (out.read_text(), _summary(p.stdout))
    lines = {w: [ln for ln in o[0].splitlines() if not ln.startswith("#open") and not ln.startswith("#close")]
             for w, o in outs.items()}
    assert len(lines[1]) == len(lines[2]) >= 3000
    assert sorted(lines[1]) == sorted(lines[2])          # same rows, uids included
    assert outs[1][1] == outs[2][1]


def test_bundled_capture_same_conn_log(tmp_path):
    cap = linklayer.CAPTURES / "zeek-wikipedia.pcap"
    got = {}
    for w in (1, 3):
        p = run(cap, "--workers", w, "--format", "zeek")
        assert p.returncode == 0, p.stderr
        got[w] = sorted(ln for ln in p.stdout.splitlines() if not ln.startswith("#"))
    assert got[1] == got[3] and len(got[1]) == 10


@pytest.mark.parametrize("bad", ["0", "-1", "1025", "two", "2.5", ""])
def test_bad_worker_counts_exit_2(short, bad):
    p = run(short, "--workers", bad)
    assert p.returncode == 2
    assert "--workers" in p.stderr and p.stdout == ""


def test_default_workers_are_the_cpus_available(short):
    p = run(short, "--summary-only", "--json-summary")
    assert p.returncode == 0
    assert json.loads(p.stdout)["workers"] == len(os.sched_getaffinity(0))
    q = subprocess.run(["taskset", "-c", "0", sys.executable, "-m", "fasttcp", "analyze", str(short),
                        "--summary-only", "--json-summary"], capture_output=True, text=True, timeout=TIMEOUT, cwd=REPO)
    assert q.returncode == 0 and json.loads(q.stdout)["workers"] == 1


def test_stdin_pipe_with_two_workers(short):
    with open(short, "rb") as f:
        p = run("/dev/stdin", "--workers", "2", "--summary-only", "--json-summary", stdin=f)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["packets"] == 30_000


def test_ctrl_c_prints_what_was_done_and_exits_130(short, tmp_path):
    """A FIFO fed half the capture, then nothing: the command waits in the middle of the
    capture, and the terminal's SIGINT reaches its whole process group."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    data = short.read_bytes()
    proc = subprocess.Popen([sys.executable, "-m", "fasttcp", "analyze", str(fifo), "--workers", "2",
                             "--summary-only", "--json-summary"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO, start_new_session=True)
    stop = threading.Event()

    def feed():
        with open(fifo, "wb") as w:
            w.write(data[: len(data) // 2])
            w.flush()
            stop.wait(TIMEOUT)

    t = threading.Thread(target=feed)
    t.start()
    try:
        time.sleep(1.5)                 # it has read what there is and waits for more
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        stop.set()
        t.join()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    s = json.loads(out)
    assert s["interrupted"] is True and 0 < s["packets"] < 30_000
    assert "interrupted" in err and "Traceback" not in err


def test_failing_shard_exits_3_naming_it(short):
    code = textwrap.dedent(f"""
        import sys
        import fasttcp.analysis.shards as shards
        real = shards._Shards._track
        def track(self, k, plan):
            if k == 1:
                raise MemoryError("no room for shard 1")
            return real(self, k, plan)
        shards._Shards._track = track
        from fasttcp.cli.main import main
        sys.exit(main(["analyze", {str(short)!r}, "--workers", "2", "--summary-only"]))
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT, cwd=REPO)
    assert p.returncode == 3
    assert "shard 1 of 2: MemoryError: no room for shard 1" in p.stderr
    assert "connections:" in p.stdout                    # what was counted is still reported
    assert "Traceback" not in p.stderr


def test_ctrl_c_while_waiting_for_a_fifo_writer_exits_130(tmp_path):
    """Opening a FIFO waits for its writer (tcpdump not started yet); Ctrl-C there was
    a KeyboardInterrupt traceback and death by SIGINT, not the documented status."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    proc = subprocess.Popen([sys.executable, "-m", "fasttcp", "analyze", str(fifo), "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            start_new_session=True)
    try:
        # in the kernel's FIFO open (not still importing, where Ctrl-C is Python's)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and Path(f"/proc/{proc.pid}/wchan").read_text() != "wait_for_partner":
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted before" in err and "Traceback" not in err
    assert out == ""


def test_a_fifo_as_a_later_capture_is_read_once(short, tmp_path):
    """The later captures are checked before the output is opened; checking a FIFO by
    opening it took it from its writer (SIGPIPE) and the run then waited forever."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    data = short.read_bytes()
    written = []

    def feed():
        try:
            with open(fifo, "wb") as w:
                w.write(data)
            written.append(True)
        except BrokenPipeError:
            written.append(False)

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    try:
        p = subprocess.run([sys.executable, "-m", "fasttcp", "analyze", str(short), str(fifo), "--workers", "2",
                            "--summary-only", "--json-summary"], capture_output=True, text=True, timeout=30,
                           cwd=REPO)
    finally:
        if t.is_alive():                # unblock the writer: open the FIFO's read end once
            with open(fifo, "rb") as r:
                r.read()
        t.join(30)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["packets"] == 60_000
    assert written == [True]
