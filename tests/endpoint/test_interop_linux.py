"""The endpoint against the real Linux TCP stack, over a TUN device in a network
namespace each test creates and removes (198.18.0.0/15 benchmarking addresses only).

Each scenario runs in tests/endpoint/interop_child.py inside the namespace (`ip netns exec`), so
the Linux sockets, `ss` and the TUN device all live there; it prints what both sides saw
and leaves a pcap of the exchange in the test's tmp_path (open it with tshark/Wireshark
when a test fails).
"""
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.netns import can_make_namespaces

CHILD = Path(__file__).parent / "interop_child.py"


def _can_make_namespaces() -> str | None:
    if (reason := can_make_namespaces()) is not None:
        return reason
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing"
    return None


REASON = _can_make_namespaces()
if REASON and os.environ.get("CI"):
    raise RuntimeError(f"interop tests must run in CI: {REASON}")
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")


@pytest.fixture
def netns():
    name = f"fasttcp-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)   # removes the TUN device too


def tshark_tcp_count(pcap: Path) -> int:
    """Packets tshark decodes as TCP in the capture an exchange left behind."""
    out = subprocess.run(["tshark", "-n", "-r", str(pcap), "-Y", "tcp", "-T", "fields", "-e", "frame.number"],
                         capture_output=True, text=True, timeout=60, check=True)
    return len(out.stdout.split())


def run_child(namespace, scenario, tmp_path, extra=(), timeout=120):
    """Run one scenario of interop_child.py in `namespace`; its JSON result."""
    pcap = tmp_path / f"{scenario}.pcap"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run(["ip", "netns", "exec", namespace, sys.executable, str(CHILD), scenario, str(pcap),
                          *extra], capture_output=True, text=True, timeout=timeout, env=env)
    assert out.returncode == 0, f"child failed (capture: {pcap}):\n{out.stderr[-3000:]}"
    assert pcap.stat().st_size > 24, "no packets were captured"
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture
def run(netns):
    """run(scenario, tmp_path, timeout=...) over the TUN edge (tests/net/test_interop_veth.py
    gives the same tests a veth edge through a fixture of the same name)."""
    return lambda scenario, tmp_path, timeout=120: run_child(netns, scenario, tmp_path, timeout=timeout)


def test_fasttcp_client_closes_first(run, tmp_path):
    r = run("fasttcp_client_closes_first", tmp_path)
    assert r["pumped"] and r["got_response"]
    assert r["linux"]["value"] == {"got_request": True, "eof": True}     # Linux saw our FIN as EOF
    assert r["state"] == "TIME-WAIT"                                     # the side that closed first waits
    assert r["events"][:2] == ["CONNECT", "SYN_ACK_RECEIVED"]
    assert r["events"][-3:] == ["CLOSE", "ACK_OF_FIN", "PEER_FIN"]      # FIN-WAIT-1 -> 2 -> TIME-WAIT
    assert "TIME-WAIT" not in r["ss"]                                    # Linux closed second: no TIME-WAIT
    if shutil.which("tshark"):                                           # the capture opens in tshark
        assert tshark_tcp_count(tmp_path / "fasttcp_client_closes_first.pcap") >= 9


def test_linux_closes_first(run, tmp_path):
    r = run("linux_closes_first", tmp_path)
    assert r["pumped"] and r["got"]
    assert r["states"][:3] == ["SYN-SENT", "ESTABLISHED", "CLOSE-WAIT"] and r["states"][-1] == "CLOSED"
    assert "TIME-WAIT" in r["ss"]                                        # ss: Linux closed first, it waits


def test_linux_client_megabyte_each_way(run, tmp_path):
    r = run("linux_client_megabyte_each_way", tmp_path)
    assert r["pumped"], r
    assert r["got_upload"] and r["upload_len"] == 1 << 20, r             # (r: what both sides saw)
    assert r["linux"]["value"] == {"got_download": True, "download_len": 1 << 20}, r
    # Linux's SYN options were negotiated: MSS, window scale (its shift), SACK, timestamps
    assert r["options"]["mss"] == 1460 and r["options"]["sack"] and r["options"]["timestamps"]
    assert 1 <= r["options"]["snd_wscale"] <= 14
    assert r["state"] == "CLOSED"


def test_linux_client_handshake_answered_with_a_syn_cookie(run, tmp_path):
    # syn_cookies="always": the SYN-ACK's ISN is a cookie and no record is kept until
    # Linux's ACK returns it; the connection it opens then carries data both ways
    r = run("linux_client_syn_cookie", tmp_path)
    assert r["pumped"], r
    assert r["cookies"] == {"syn_cookies_sent": 1, "syn_cookies_ok": 1, "syn_cookies_failed": 0}
    assert r["causes"][0] == "SYN_COOKIE" and "SYN_RECEIVED" not in r["causes"]
    assert r["got_upload"] and r["upload_len"] == 256 << 10, r
    assert r["linux"]["value"] == {"got_download": True, "download_len": 256 << 10}, r
    # Linux offers timestamps, so the cookie's TSval carried its window scale and SACK
    assert r["options"]["mss"] == 1460 and r["options"]["sack"] and r["options"]["timestamps"]
    assert 1 <= r["options"]["snd_wscale"] <= 14
    assert r["state"] == "CLOSED"


def test_refused_both_ways(run, tmp_path):
    r = run("refused_both_ways", tmp_path)
    assert r["linux"]["value"] == "refused"                              # our RST: ECONNREFUSED
    assert r["pumped"] and r["fasttcp_state"] == "CLOSED" and r["fasttcp_cause"] == "REFUSED"


def test_lost_syn_is_retransmitted_after_one_second(run, tmp_path):
    r = run("lost_syn_is_retransmitted", tmp_path)
    assert r["pumped"] and r["dropped"] == 1
    causes = [c for c, _ in r["events"]]
    assert causes[:3] == ["CONNECT", "RETRANSMIT", "SYN_ACK_RECEIVED"]
    assert 0.9 <= r["events"][1][1] <= 1.2                               # RFC 6298: initial RTO 1 s
    assert r["linux"]["value"] == repr(b"after-rto")


def test_half_close_fasttcp_keeps_sending_in_close_wait(run, tmp_path):
    r = run("half_close_linux_shuts_write", tmp_path)
    assert r["pumped"] and r["request"] == "request"
    assert r["linux"]["value"] == {"got": True, "len": 200_000}          # sent after Linux's FIN
    assert "CLOSE-WAIT" in r["states"] and r["states"][-1] == "CLOSED"
    assert r["events"] == ["SYN_RECEIVED", "ACK_OF_SYN", "PEER_FIN", "CLOSE", "ACK_OF_FIN"]


def test_abort_either_side(run, tmp_path):
    r = run("abort_either_side", tmp_path)
    assert r["linux_saw"] == "reset" and r["fasttcp_abort_cause"] == "ABORT"   # our RST: ECONNRESET
    assert r["fasttcp_state"] == "CLOSED" and r["fasttcp_cause"] == "RST_RECEIVED"  # Linux's RST


def test_thousand_concurrent_linux_clients(run, tmp_path):
    r = run("thousand_linux_clients", tmp_path, timeout=180)
    assert r["pumped"], r
    assert r["linux"]["value"] == {"completed": 1000}
    assert r["left"] == 0                                                # every one closed cleanly


def test_lost_fin_and_lost_last_ack(run, tmp_path):
    r = run("lost_fin_and_last_ack", tmp_path)
    assert r["pumped"], r
    assert r["log"]["fin"] == 1 and r["log"]["last_ack"] == 1
    causes = [c for c, _ in r["events"]]
    assert causes == ["CONNECT", "SYN_ACK_RECEIVED", "CLOSE", "RETRANSMIT", "ACK_OF_FIN", "PEER_FIN"]
    assert 0.9 <= dict(r["events"])["RETRANSMIT"] <= 1.2                 # FIN resent after the 1 s RTO
    assert r["log"]["peer_fins"] == 2                                    # Linux resent its FIN ...
    assert r["log"]["acks_in_time_wait"] >= 1                            # ... answered from TIME-WAIT
    assert r["state"] == "TIME-WAIT" and "LAST-ACK" not in r["ss"]       # Linux's side finished
