"""`fasttcp load` against the Linux stack over a veth pair: the generator runs in namespace
A (198.18.0.1) as the command a user types, a C accept loop (tests/load/accept_server.c,
compiled here) listens in namespace B (198.18.0.2) and counts what it accepted."""
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.netns import veth  # noqa: F401  (fixture)

pytest.importorskip("pyroute2")
if shutil.which("nft") is None or shutil.which("cc") is None:
    pytest.skip("the load tests need nft (nftables) and cc", allow_module_level=True)

SERVER_C = Path(__file__).with_name("accept_server.c")
PORT = 9000
LOAD = [sys.executable, "-m", "fasttcp", "load"]


@pytest.fixture(scope="module")
def accept_server(tmp_path_factory):
    """The compiled accept loop (usage: accept_server PORT [WORKERS])."""
    exe = tmp_path_factory.mktemp("server") / "accept_server"
    subprocess.run(["cc", "-O2", "-Wall", "-Werror", "-o", str(exe), str(SERVER_C)], check=True, timeout=60)
    return exe


class Server:
    """The accept loop running in namespace B; `stop` returns how many it accepted."""

    def __init__(self, net, exe, port=PORT, echo=False):
        net.run(net.b, ["sysctl", "-qw", "net.core.somaxconn=65535"])
        self.proc = net.popen(net.b, [str(exe), str(port), "1", *(["echo"] if echo else [])])
        assert self.proc.stdout.readline().strip() == "listening"

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=20)
        return int(out.split()[-1])

    def kill(self):
        """Stop it if it still runs (cleanup on failure)."""
        if self.proc.poll() is None:
            self.proc.kill()                                # its workers die with it (PDEATHSIG)
            self.proc.communicate(timeout=20)


def load(net, *args, timeout=300):
    """Run `fasttcp load ... --json` in namespace A: (exit status, result dict, stderr)."""
    out = net.run(net.a, [*LOAD, *args, "--json"], timeout=timeout, check=False)
    result = json.loads(out.stdout) if out.stdout.strip() else None
    return out.returncode, result, out.stderr


def guard_tables(net):
    return [ln for ln in net.run(net.a, ["nft", "list", "tables"]).stdout.splitlines() if "fasttcp_guard_" in ln]


def test_hundred_thousand_connections_all_accepted(veth, accept_server):  # noqa: F811
    server = Server(veth, accept_server)
    try:
        rc, r, err = load(veth, f"{veth.b_v4}:{PORT}", "--connections", "100000")
        accepted = server.stop()
    finally:
        server.kill()
    assert rc == 0, err
    assert r["connections"] == r["attempts"] == 100_000
    assert r["errors"] == 0 and r["refused"] == r["timeouts"] == r["resets"] == 0
    assert accepted == r["connections"]                    # the server saw every one, no more
    assert r["time_wait_reused"] > 0                        # 100k > the source ports: TIME-WAIT reuse
    assert 0 < r["handshake_p50_ms"] <= r["handshake_p99_ms"]
    assert r["interface"] == veth.a_if and r["sources"] == [veth.a_v4]
    assert guard_tables(veth) == []


def test_ipv6_target(veth, accept_server):  # noqa: F811
    server = Server(veth, accept_server)
    try:
        rc, r, err = load(veth, f"[{veth.b_v6}]:{PORT}", "--connections", "2000", "--close", "rst")
        accepted = server.stop()
    finally:
        server.kill()
    assert rc == 0, err
    assert r["connections"] == accepted == 2000 and r["sources"] == [veth.a_v6]


def test_no_listener_counts_refused(veth):  # noqa: F811
    rc, r, err = load(veth, f"{veth.b_v4}:{PORT + 1}", "--connections", "300")
    assert rc == 1                                          # finished, with errors
    assert r["refused"] == 300 and r["connections"] == 0 and r["timeouts"] == 0


def test_dropped_syns_are_retransmitted_with_backoff(veth, accept_server):  # noqa: F811
    server = Server(veth, accept_server)
    veth.run(veth.b, ["nft", "-f", "-"], input=(
        "table inet syndrop {\n chain input {\n  type filter hook input priority -10; policy accept;\n"
        f"  tcp dport {PORT} tcp flags & (syn | ack) == syn drop\n }}\n}}\n"))
    try:
        proc = veth.popen(veth.a, [*LOAD, f"{veth.b_v4}:{PORT}", "--connections", "500", "--concurrency", "64",
                                   "--json"])
        time.sleep(1.5)                                     # every first SYN of the first ~1.5 s is lost
        veth.run(veth.b, ["nft", "delete", "table", "inet", "syndrop"])
        out, err = proc.communicate(timeout=120)
        accepted = server.stop()
    finally:
        server.kill()
    r = json.loads(out)
    assert proc.returncode == 0, err
    assert r["syn_retransmits"] > 0 and r["backoffs"] >= 1
    assert r["connections"] == accepted == 500 and r["timeouts"] == 0
    assert r["handshake_max_ms"] >= 900                     # RFC 6298: the first retransmission after 1 s


def test_rate_is_never_exceeded(veth, accept_server):  # noqa: F811
    rate = 2000
    server = Server(veth, accept_server)
    try:
        rc, r, err = load(veth, f"{veth.b_v4}:{PORT}", "--connections", "6000", "--rate", str(rate))
        server.stop()
    finally:
        server.kill()
    assert rc == 0, err
    # counted from the Endpoint's CONNECT event times over every 1 s window: the bucket
    # holds 10 ms of tokens, so rate * 1.01 + 1 is the most any second may see
    assert r["max_attempts_in_1s"] <= rate * 1.01 + 1
    assert r["max_attempts_in_1s"] >= rate * 0.5            # and the cap is what limited it
    assert r["connections"] == 6000


def test_public_address_refused_before_any_packet(veth, tmp_path):  # noqa: F811
    veth.run(veth.a, ["ip", "route", "add", "default", "via", veth.b_v4])   # so a route would exist
    pcap = tmp_path / "a.pcap"
    dump = veth.popen(veth.a, ["tcpdump", "-n", "-U", "-i", veth.a_if, "-w", str(pcap), "not ip6"])
    try:
        deadline = time.monotonic() + 10
        while not pcap.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        rc, r, err = load(veth, "192.0.2.55:80")            # TEST-NET-1: not ours, not a bench range
        time.sleep(0.3)
    finally:
        dump.send_signal(signal.SIGINT)
        dump.communicate(timeout=10)
    assert rc == 2 and r is None
    assert "refusing to load 192.0.2.55" in err and "--i-own-this-network" in err
    seen = subprocess.run(["tcpdump", "-n", "-r", str(pcap)], capture_output=True, text=True, timeout=30).stdout
    assert seen.strip() == ""                               # not even an ARP request went out
    assert guard_tables(veth) == []


def test_loopback_refused_with_a_reason(veth):  # noqa: F811
    rc, r, err = load(veth, "127.0.0.1:80")
    assert rc == 2 and "loopback is not supported" in err


def _wait_for_guard(net):
    """Until the run's guard table is up (it is, once the run is past its set-up)."""
    deadline = time.monotonic() + 20
    while not guard_tables(net) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert guard_tables(net), "the guard table never appeared"


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_guard_removed_on_signal(veth, accept_server, sig, status):  # noqa: F811
    server = Server(veth, accept_server)
    try:
        proc = veth.popen(veth.a, [*LOAD, f"{veth.b_v4}:{PORT}", "--duration", "60", "--rate", "500", "--json"])
        _wait_for_guard(veth)
        time.sleep(0.5)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
        server.stop()
    finally:
        server.kill()
    assert proc.returncode == status, err
    assert guard_tables(veth) == []
    r = json.loads(out)                                      # what was counted is still reported
    assert r["interrupted"] and r["connections"] > 0


@pytest.mark.parametrize("signals, status", [((signal.SIGINT,), 130), ((signal.SIGINT, signal.SIGINT), 130),
                                             ((signal.SIGTERM, signal.SIGTERM), 143)])
def test_signal_ends_a_run_whose_link_stopped_sending(veth, accept_server, signals, status):  # noqa: F811
    # a queue that never drains (a shaper at 8 bit/s) holds the socket's sends: the
    # first signal ends the run once a send gives up (SO_SNDTIMEO, seconds), a second
    # at once -- and either way the counts are reported and the guard goes
    server = Server(veth, accept_server)
    try:
        proc = veth.popen(veth.a, [*LOAD, f"{veth.b_v4}:{PORT}", "--duration", "60", "--rate", "2000",
                                   "--io", "socket", "--json"])
        _wait_for_guard(veth)
        veth.run(veth.a, ["tc", "qdisc", "add", "dev", veth.a_if, "root", "tbf", "rate", "8bit",
                          "burst", "1600", "limit", "100mb"])
        time.sleep(1.0)
        for sig in signals:
            proc.send_signal(sig)
            time.sleep(0.2)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
        veth.run(veth.a, ["tc", "qdisc", "del", "dev", veth.a_if, "root"], check=False)
        server.kill()
    assert proc.returncode == status, err
    assert guard_tables(veth) == []
    r = json.loads(out)
    assert r["interrupted"] and r["connections"] > 0
    if len(signals) == 1:                                    # the held send gave up: counted
        assert r["link"]["tx"]["failed"] > 0


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_while_the_neighbour_does_not_answer(veth, sig, status):  # noqa: F811
    # the set-up waits up to seconds for an ARP answer that never comes: a signal
    # ends the wait as "interrupted", not as the wait's own failure
    proc = veth.popen(veth.a, [*LOAD, "198.18.0.77:80", "--json"])
    time.sleep(1.0)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == status, err
    assert "interrupted" in err and "ARP" not in err and out == ""
    assert guard_tables(veth) == []


def test_source_that_is_not_ours_refused(veth):  # noqa: F811
    rc, r, err = load(veth, f"{veth.b_v4}:{PORT}", "--source", "198.18.0.9")
    assert rc == 2 and "not an address of this network namespace" in err


def test_two_source_addresses(veth, accept_server):  # noqa: F811
    veth.run(veth.a, ["ip", "addr", "add", "198.18.0.3/24", "dev", veth.a_if])
    server = Server(veth, accept_server)
    try:
        rc, r, err = load(veth, f"{veth.b_v4}:{PORT}", "--connections", "3000", "--source", veth.a_v4, "198.18.0.3")
        accepted = server.stop()
    finally:
        server.kill()
    assert rc == 0, err
    assert r["connections"] == accepted == 3000 and r["sources"] == [veth.a_v4, "198.18.0.3"]
    assert r["attempts_per_source"] == [1500, 1500]          # the sources take turns


@pytest.mark.parametrize("close", ["fin", "rst"])
def test_request_and_answer(veth, accept_server, close):  # noqa: F811
    server = Server(veth, accept_server, echo=True)
    try:
        rc, r, err = load(veth, f"{veth.b_v4}:{PORT}", "--connections", "2000", "--request", "100",
                          "--close", close)
        accepted = server.stop()
    finally:
        server.kill()
    assert rc == 0, err
    assert r["connections"] == r["answered"] == accepted == 2000
    assert r["answer_bytes"] == 2000 * 100                  # every request came back whole
    assert r["time_wait_at_end"] == 0                       # the server closed first: no TIME-WAIT here
