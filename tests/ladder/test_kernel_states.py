"""Ground truth from the kernel: a Linux client (namespace a) and server (namespace b)
run one connection step by step while tcpdump captures on a's side; after each step
both sockets' states are read with ``ss -tan``. The ladder drawn from the capture must
give each side, at each of those instants, the state the kernel reported.

States that only last while a segment is on its way (SYN-SENT, SYN-RECEIVED,
FIN-WAIT-1, LAST-ACK) are held for the reading by dropping the answer in netfilter's
OUTPUT hook of the answering namespace: a packet dropped there never reaches a packet
tap, so the capture sees what the kernel's peer saw, and the answer comes later as a
retransmission once the rule is gone.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fasttcp.diagram import from_capture
from tests.netns import needs_namespaces, veth, wait_for_pcap  # noqa: F401  -- the fixture

SIDE = Path(__file__).resolve().parent / "socket_side.py"
CLIENT_PORT, SERVER_PORT = 40001, 8080
SETTLE = 0.4                    # seconds for a step's segments to cross the veth
RETRANSMIT_WAIT = 4.0           # seconds: a SYN-ACK or FIN retransmission (RTO 1 s, then 200 ms+)
SS_NAMES = {"ESTAB": "ESTABLISHED", "SYN-RECV": "SYN-RECEIVED", "UNCONN": "CLOSED"}

pytestmark = [needs_namespaces, pytest.mark.skipif(shutil.which("tcpdump") is None, reason="needs tcpdump"),
              pytest.mark.skipif(shutil.which("nft") is None, reason="needs nft"),
              pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss")]


class Side:
    """A socket_side.py child in one namespace."""

    def __init__(self, net, ns: str) -> None:
        self.proc = net.popen(ns, [sys.executable, str(SIDE)], stdin=subprocess.PIPE)

    def do(self, command: str) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        assert answer == "ok", f"{command}: {answer or self.proc.stderr.read()}"

    def stop(self) -> None:
        try:
            self.proc.communicate("quit\n", timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate(timeout=10)


def _ss_state(net, ns: str, local: str, peer: str) -> str:
    """The RFC 9293 name of the kernel socket local -> peer in ns, CLOSED if none."""
    out = net.run(ns, ["ss", "-tanH", "state", "all"], timeout=10).stdout
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[3] == local and fields[4] == peer:
            return SS_NAMES.get(fields[0], fields[0])
    return "CLOSED"


def _drop_output(net, ns: str, on: bool) -> None:
    """Drop (or stop dropping) every TCP segment namespace ns sends."""
    if on:
        net.run(ns, ["nft", "add table inet ladder; add chain inet ladder out "
                            "{ type filter hook output priority 0; }; add rule inet ladder out meta l4proto tcp drop"])
    else:
        net.run(ns, ["nft", "delete table inet ladder"])


def test_inferred_states_match_the_kernel_at_every_step(veth, tmp_path):  # noqa: F811
    net = veth
    pcap = tmp_path / "kernel.pcap"
    client_ep, server_ep = f"{net.a_v4}:{CLIENT_PORT}", f"{net.b_v4}:{SERVER_PORT}"
    dump = net.popen(net.a, ["tcpdump", "-i", net.a_if, "-n", "-U", "-w", str(pcap), "tcp"])
    client = server = None
    readings: list[tuple[str, float, str, str]] = []

    def read(step: str) -> None:
        time.sleep(SETTLE)
        readings.append((step, time.time(), _ss_state(net, net.a, client_ep, server_ep),
                         _ss_state(net, net.b, server_ep, client_ep)))

    try:
        time.sleep(1.0)                                   # tcpdump attached
        server, client = Side(net, net.b), Side(net, net.a)
        server.do(f"listen {net.b_v4} {SERVER_PORT}")
        _drop_output(net, net.b, True)                    # hold the SYN-ACK back
        client.do(f"connect {net.b_v4} {SERVER_PORT} {net.a_v4} {CLIENT_PORT}")
        read("connect, SYN-ACK held")
        _drop_output(net, net.b, False)
        client.do("wait_connected")
        server.do("accept")
        read("handshake done")
        client.do("send 100")
        server.do("recv")
        read("client sent data")
        _drop_output(net, net.b, True)                    # hold the ACK of the client's FIN
        client.do("shutdown")
        read("client shutdown(SHUT_WR), ACK held")
        _drop_output(net, net.b, False)
        time.sleep(RETRANSMIT_WAIT)
        read("FIN acknowledged")
        server.do("send 50")
        client.do("recv")
        read("server sent into the half-closed connection")
        _drop_output(net, net.a, True)                    # hold the last ACK
        server.do("close")
        read("server close, last ACK held")
        _drop_output(net, net.a, False)
        time.sleep(RETRANSMIT_WAIT)
        read("FIN re-sent and re-ACKed from TIME-WAIT")
        assert wait_for_pcap(pcap, at_least=10, quiet=1.0, limit=30) >= 10
    finally:
        for side in (client, server):
            if side is not None:
                side.stop()
        dump.terminate()
        dump.communicate(timeout=30)

    kernel_states = {(c, s) for _, _, c, s in readings}
    # the run really went through the states this test is about
    assert {"SYN-SENT", "ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2", "TIME-WAIT"} <= {c for c, _ in kernel_states}
    assert {"SYN-RECEIVED", "ESTABLISHED", "CLOSE-WAIT", "LAST-ACK", "CLOSED"} <= {s for _, s in kernel_states}

    # veth leaves checksums to be filled in on transmit: the capture has partial ones
    ladder = from_capture(pcap, flow=(net.a_v4, CLIENT_PORT, net.b_v4, SERVER_PORT), verify_checksum=False)
    assert (ladder.client, ladder.server) == (client_ep, server_ep)
    mismatches = []
    for step, at, kernel_client, kernel_server in readings:
        drawn = [a for a in ladder.arrows if ladder.start + a.t <= at]
        ours = (drawn[-1].client_state, drawn[-1].server_state) if drawn else (
            ladder.client_initial, ladder.server_initial)
        if ours != (kernel_client, kernel_server):
            mismatches.append(f"{step}: kernel {kernel_client}/{kernel_server}, ladder {ours[0]}/{ours[1]}")
    assert not mismatches, "\n".join(mismatches) + "\n" + ladder.render("text", ascii=True)
    marks = [a.marks for a in ladder.arrows]
    assert ("retransmission",) in marks                  # the held segments came again
