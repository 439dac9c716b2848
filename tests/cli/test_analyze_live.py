"""`fasttcp analyze --interface` as the real command line, on a veth pair: the rows it
writes live are the rows `fasttcp analyze` writes for tcpdump's capture of the same
traffic (real Linux connections: half-close, server-first close, RST, refused ports,
IPv4 and IPv6), with one and two workers; --duration, SIGINT, --write-pcap, and a ring
too small for the traffic (drops counted as the kernel counts them)."""
from __future__ import annotations

import collections
import signal
import subprocess
import sys
import time

import pytest

from fasttcp.capture.reader import read_pcap
from tests.analysis.live_traffic import (
    ECHO_PORT,
    GREET_PORT,
    HOLD_PORT,
    HOLDER,
    Server,
    analyzer,
    assert_same_rows,
    clients,
    rows_of_json,
    rows_of_pcap,
    summary_of,
    tcpdump,
    tcpdump_drops,
)
from tests.netns import needs_namespaces, veth  # noqa: F401  -- the fixture

pytestmark = needs_namespaces

CONNECTIONS = 400          # several hundred, every kind, both families


def _tcp_packets(path) -> int:
    return sum(len(b) for b in read_pcap(path))


@pytest.mark.parametrize("workers", [1, 2])
def test_live_rows_are_the_rows_of_tcpdumps_capture(veth, tmp_path, workers):  # noqa: F811
    server = Server(veth)
    dump = tcpdump(veth, tmp_path / "dump.pcap", tmp_path)
    live = analyzer(veth, tmp_path / "live.json", tmp_path, "--workers", str(workers))
    try:
        done = clients(veth, CONNECTIONS)
        time.sleep(0.5)                        # the last packets out of the rings' open blocks
    finally:
        status = live.stop(signal.SIGTERM)
        dump.stop(signal.SIGTERM)
        server.close()
    assert status == 0, live.stderr
    assert tcpdump_drops(dump) == 0
    assert done["refused"] == CONNECTIONS // 4
    got, want = rows_of_json(tmp_path / "live.json"), rows_of_pcap(tmp_path / "dump.pcap")
    assert len(want) >= CONNECTIONS
    assert_same_rows(got, want, exact_times=False)
    states = collections.Counter(r["conn_state"] for r in got)
    assert states["REJ"] == CONNECTIONS // 4                     # refused ports
    assert states["RSTO"] >= CONNECTIONS // 8                     # SO_LINGER 0 aborts
    assert {r["orig_h"] for r in got} == {veth.b_v4, veth.b_v6}
    summary = summary_of(live)
    assert summary["workers"] == workers
    assert summary["connections"] == len(got)
    cap = summary["capture_stats"]
    assert cap["drops"] == 0
    # every TCP packet tcpdump saw reached the rings and was tracked
    assert cap["packets"] == _tcp_packets(tmp_path / "dump.pcap") == summary["packets"]
    assert summary["verdicts"].get("BAD_CHECKSUM", 0) == 0       # offloaded checksums completed


def test_duration_ends_the_capture_and_exits_0(veth, tmp_path):  # noqa: F811
    server = Server(veth)
    t0 = time.monotonic()
    live = analyzer(veth, tmp_path / "live.json", tmp_path, "--duration", "3", "--workers", "1")
    try:
        clients(veth, 20, kinds=("halfclose", "greet"))
        status = live.wait(timeout=30)
    finally:
        if live.proc.poll() is None:
            live.kill()
        server.close()
    assert status == 0, live.stderr
    assert 3 <= time.monotonic() - t0 < 30
    assert len(rows_of_json(tmp_path / "live.json")) == 20
    summary = summary_of(live)
    assert summary["interrupted"] is False and summary["connections"] == 20


@pytest.mark.parametrize("workers", [1, 2])
def test_sigint_flushes_the_open_connections_and_exits_130(veth, tmp_path, workers):  # noqa: F811
    server = Server(veth)
    live = analyzer(veth, tmp_path / "live.json", tmp_path, "--workers", str(workers))
    holders = []
    try:
        clients(veth, 8, kinds=("halfclose",))
        for family_addr in (veth.a_v4, veth.a_v6):
            h = veth.popen(veth.b, [sys.executable, "-c", HOLDER, family_addr, str(HOLD_PORT), "60"])
            holders.append(h)
            assert h.stdout is not None and h.stdout.readline().strip() == "connected"
        time.sleep(0.5)
        status = live.stop(signal.SIGINT)
    finally:
        if live.proc.poll() is None:
            live.kill()
        for h in holders:
            h.kill()
            h.communicate(timeout=30)
        server.close()
    assert status == 130, live.stderr
    rows = rows_of_json(tmp_path / "live.json")
    held = [r for r in rows if r["resp_p"] == HOLD_PORT]
    # the connections still open at the interrupt are written: established, no FIN yet
    assert len(held) == 2, rows
    assert {r["conn_state"] for r in held} == {"S1"}
    assert {r["end_reason"] for r in held} == {"FLUSHED"}
    assert len(rows) == 10
    summary = summary_of(live)
    assert summary["interrupted"] is True and summary["connections"] == 10


@pytest.mark.parametrize("workers", [1, 2])
def test_write_pcap_keeps_what_gives_the_same_rows(veth, tmp_path, workers):  # noqa: F811
    server = Server(veth)
    keep = tmp_path / "kept.pcap"
    live = analyzer(veth, tmp_path / "live.json", tmp_path, "--workers", str(workers), "--write-pcap", str(keep))
    try:
        clients(veth, 100)
        time.sleep(0.3)
    finally:
        status = live.stop(signal.SIGTERM)
        server.close()
    assert status == 0, live.stderr
    files = [keep] if workers == 1 else [tmp_path / f"kept.pcap.{k}" for k in range(workers)]
    kept_rows = [r for f in files for r in rows_of_pcap(f)]     # each file holds whole flows
    assert_same_rows(kept_rows, rows_of_json(tmp_path / "live.json"))      # its own packets: exact
    assert sum(_tcp_packets(f) for f in files) == summary_of(live)["packets"]


BULK = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
s.sendall(b"x" * int(sys.argv[3]))
s.close()
"""


def test_a_ring_too_small_counts_the_kernels_drops_and_keeps_complete_rows(veth, tmp_path):  # noqa: F811
    server = Server(veth)
    dump = tcpdump(veth, tmp_path / "dump.pcap", tmp_path)
    live = analyzer(veth, tmp_path / "live.json", tmp_path, "--workers", "1", "--ring-mb", "1", "--block-kb", "4")
    try:
        clients(veth, 40, kinds=("halfclose", "greet"))
        time.sleep(0.5)
        live.send(signal.SIGSTOP)            # the reader stops; the kernel keeps capturing
        try:
            veth.run(veth.b, [sys.executable, "-c", BULK, veth.a_v4, str(HOLD_PORT), str(16 << 20)], timeout=60)
            time.sleep(0.3)
        finally:
            live.send(signal.SIGCONT)
        time.sleep(1.0)                        # the ring drained
        clients(veth, 40, kinds=("halfclose", "greet"))
        time.sleep(0.5)
    finally:
        status = live.stop(signal.SIGTERM)
        dump.stop(signal.SIGTERM)
        server.close()
    assert status == 0, live.stderr
    assert tcpdump_drops(dump) == 0
    summary = summary_of(live)
    cap = summary["capture_stats"]
    assert cap["drops"] > 0, summary
    # the kernel's count: what it passed to the ring (tp_packets, drops included) is
    # what tcpdump saw, and what was not dropped is what the tracker took
    assert cap["packets"] == _tcp_packets(tmp_path / "dump.pcap")
    assert summary["packets"] == cap["packets"] - cap["drops"]
    complete = [r for r in rows_of_pcap(tmp_path / "dump.pcap") if r["resp_p"] in (ECHO_PORT, GREET_PORT)]
    got = [r for r in rows_of_json(tmp_path / "live.json") if r["resp_p"] in (ECHO_PORT, GREET_PORT)]
    assert len(complete) == 80
    assert_same_rows(got, complete, exact_times=False)


def test_status_line_on_a_terminal_is_rewritten_and_cleared(veth, tmp_path):  # noqa: F811
    import os
    import pty
    import threading

    server = Server(veth)
    master, slave = pty.openpty()
    seen = bytearray()

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:                    # the terminal's last writer is gone
                return
            if not chunk:
                return
            seen.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        proc = veth.popen(veth.a, [sys.executable, "-m", "fasttcp", "analyze", "--interface", veth.a_if,
                                   "--format", "json", "-o", str(tmp_path / "live.json"), "--duration", "3.5"],
                          stdout=subprocess.DEVNULL, stderr=slave)
        os.close(slave)
        slave = -1
        time.sleep(1)
        clients(veth, 20, kinds=("halfclose",))
        assert proc.wait(timeout=60) == 0
    finally:
        if slave >= 0:
            os.close(slave)
        server.close()
    reader.join(timeout=10)
    os.close(master)
    text = seen.decode(errors="replace")
    lines = [s for s in text.split("\r\x1b[K") if "packets/s" in s]
    assert len(lines) >= 2, text                # rewritten in place about once a second
    assert all("connections open" in s and "drops" in s for s in lines)
    assert text.rstrip("\r\n").endswith("\r\x1b[K"), text    # and erased at the end


def test_no_status_line_when_stderr_is_not_a_terminal(veth, tmp_path):  # noqa: F811
    live = analyzer(veth, tmp_path / "live.json", tmp_path, "--duration", "2.5")
    assert live.wait(timeout=60) == 0
    assert "packets/s" not in live.stderr and "\x1b" not in live.stderr


def test_capturing_without_privilege_is_a_usage_error(veth, tmp_path):  # noqa: F811
    # root without CAP_NET_RAW (setpriv drops it): an AF_PACKET socket needs it
    p = veth.run(veth.a, ["setpriv", "--bounding-set=-net_raw", "--inh-caps=-net_raw",
                          sys.executable, "-m", "fasttcp", "analyze", "--interface", veth.a_if, "--duration", "1"],
                 check=False, cwd="/")
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "permission denied" in p.stderr and "Traceback" not in p.stderr, p.stderr


# ---- usage errors: exit 2, one line, no traceback ----

def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fasttcp", "analyze", *args], capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("args, message", [
    (["x.pcap", "--interface", "lo"], "exclusive"),
    ([], "capture files or --interface"),
    (["x.pcap", "--duration", "3"], "--duration needs --interface"),
    (["x.pcap", "--write-pcap", "k.pcap"], "--write-pcap needs --interface"),
    (["x.pcap", "--promiscuous"], "--promiscuous needs --interface"),
    # the distributed options, ignored without a cluster, bad value or not
    (["x.pcap", "--chunk-mb", "-1"], "--chunk-mb needs --scheduler"),
    (["x.pcap", "--chunk-mb", "64"], "--chunk-mb needs --scheduler"),
    (["x.pcap", "--shards", "-1"], "--shards needs --scheduler"),
    (["x.pcap", "--shuffle-dir", "/tmp"], "--shuffle-dir needs --scheduler"),
    (["--interface", "nosuchif0"], "no such interface"),
    (["--interface", "../etc"], "not an interface name"),
    (["--interface", "a" * 16], "not an interface name"),
    (["--interface", "lo", "--duration", "0"], "--duration"),
    (["--interface", "lo", "--duration", "nan"], "--duration"),
    (["--interface", "lo", "--duration", "-1"], "--duration"),
    (["--interface", "lo", "--duration", "inf"], "--duration"),
    (["--interface", "lo", "--ring-mb", "0"], "--ring-mb"),
    (["--interface", "lo", "--block-kb", "3"], "--block-kb"),
    (["--interface", "lo", "--block-kb", "8192", "--ring-mb", "1"], "larger than the ring"),
    (["--interface", "lo", "--block-timeout-ms", "0"], "--block-timeout-ms"),
    (["--interface", "lo", "--workers", "0"], "--workers"),
    (["--interface", "lo", "--capacity", "0"], "--capacity"),
])
def test_live_usage_errors(args, message):
    p = _run(*args)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr and message in p.stderr, p.stderr


def test_the_default_workers_are_half_the_cpus(veth, tmp_path):  # noqa: F811
    import os

    live = analyzer(veth, tmp_path / "live.json", tmp_path, "--duration", "1")
    assert live.wait(timeout=60) == 0, live.stderr
    assert summary_of(live)["workers"] == max(1, min(len(os.sched_getaffinity(0)), 1024) // 2)
