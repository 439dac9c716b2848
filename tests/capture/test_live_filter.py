"""Socket filters of LiveCapture: the built-in "tcp" program (run here by a small classic
BPF interpreter over crafted frames, and in the kernel on a veth), tcpdump expressions,
and what happens when tcpdump is missing or refuses an expression."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import pytest

from fasttcp import Verdict
from fasttcp.capture.bpf import (
    ACCEPT_BYTES,
    LINK_ETHERNET,
    LINK_RAW,
    check_program,
    compile_expression,
    parse_ddd,
    tcp_program,
)
from fasttcp.errors import UsageError
from tests.capture.live_harness import PORT, TIMEOUT, Capture, clients, server, syns, udp
from tests.netns import veth  # noqa: F401  (the fixture)


def run_bpf(program: list[tuple[int, int, int, int]], pkt: bytes) -> int:
    """What the kernel's classic BPF would return for `pkt` (the subset of opcodes the
    built-in programs use; a load past the end drops, as in the kernel)."""
    a, pc = 0, 0
    while True:
        code, jt, jf, k = program[pc]
        pc += 1
        if code in (0x28, 0x30):
            size = 2 if code == 0x28 else 1
            if k + size > len(pkt):
                return 0
            a = int.from_bytes(pkt[k:k + size], "big")
        elif code == 0x54:
            a &= k
        elif code == 0x15:
            pc += jt if a == k else jf
        elif code == 0x06:
            return k
        else:
            raise AssertionError(f"opcode {code:#x} not in the interpreter")


def ip4(proto: int) -> bytes:
    return bytes([0x45, 0, 0, 40, 0, 0, 0, 0, 64, proto, 0, 0]) + bytes(8) + bytes(20)


def ip6(nh: int) -> bytes:
    return bytes([0x60, 0, 0, 0, 0, 20, nh, 64]) + bytes(32) + bytes(20)


def eth(ethertype: int, payload: bytes, tags: tuple[int, ...] = ()) -> bytes:
    head = bytes(12)
    for tpid in tags:
        head += struct.pack("!HH", tpid, 7)
    return head + struct.pack("!H", ethertype) + payload


@pytest.mark.parametrize(("frame", "accepted"), [
    (eth(0x0800, ip4(6)), True),
    (eth(0x0800, ip4(17)), False),
    (eth(0x86DD, ip6(6)), True),
    (eth(0x86DD, ip6(17)), False),
    (eth(0x86DD, ip6(0)), False),                        # TCP behind a hop-by-hop header: not walked
    (eth(0x0800, ip4(6), (0x8100,)), True),              # an in-band 802.1Q tag
    (eth(0x86DD, ip6(6), (0x88A8,)), True),              # an 802.1ad tag
    (eth(0x0800, ip4(17), (0x8100,)), False),
    (eth(0x0800, ip4(6), (0x88A8, 0x8100)), False),      # two tags: only one is walked
    (eth(0x0806, bytes(28)), False),                     # ARP
    (eth(0x0800, b""), False),                           # cut short: the load fails
    (b"\0" * 5, False),
])
def test_builtin_tcp_program_on_ethernet(frame, accepted):
    assert run_bpf(tcp_program(LINK_ETHERNET), frame) == (ACCEPT_BYTES if accepted else 0)


@pytest.mark.parametrize(("packet", "accepted"), [
    (ip4(6), True), (ip4(17), False), (ip6(6), True), (ip6(58), False), (b"\x50" + bytes(39), False), (b"", False),
])
def test_builtin_tcp_program_on_raw_ip(packet, accepted):
    assert run_bpf(tcp_program(LINK_RAW), packet) == (ACCEPT_BYTES if accepted else 0)


def test_builtin_program_for_an_unknown_link_is_refused():
    with pytest.raises(UsageError, match="filter=None"):
        tcp_program(113)


@pytest.mark.parametrize(("program", "match"), [
    ([], "1..4096"),
    ([(6, 0, 0, 0)] * 4097, "1..4096"),
    ([(0xFF, 0, 0, 0), (6, 0, 0, 0)], "unknown opcode"),
    ([(0x15, 5, 0, 0), (6, 0, 0, 0)], "past the end"),
    ([(0x05, 0, 0, 1), (6, 0, 0, 0)], "past the end"),
    ([(0x28, 0, 0, 12)], "end with a return"),
    ([(6, 0, 0, -1)], "out of range"),
    ([(6, 0, 0, 2**32)], "out of range"),
    ([(6, 0, 256, 0)], "out of range"),
    ([(6, 0, 0)], "four integers"),
    ([(6, 0, 0, True)], "four integers"),
    ("6 0 0 0", "1..4096"),
])
def test_check_program_refuses_what_the_kernel_would(program, match):
    with pytest.raises(UsageError, match=match):
        check_program(program)


def test_parse_ddd_checks_the_count():
    assert parse_ddd("2\n40 0 0 12\n6 0 0 0\n") == [(40, 0, 0, 12), (6, 0, 0, 0)]
    with pytest.raises(UsageError, match="announced 3"):
        parse_ddd("3\n40 0 0 12\n6 0 0 0\n")
    with pytest.raises(UsageError, match="not a BPF program"):
        parse_ddd("tcpdump: whatever\n")


def test_tcpdump_expression_compiles_and_errors_pass_through():
    prog = compile_expression(f"tcp port {PORT}", LINK_ETHERNET)
    assert prog[-1][0] == 0x06 and len(prog) > 5
    with pytest.raises(UsageError, match="syntax error"):
        compile_expression("tcp port", LINK_ETHERNET)
    with pytest.raises(UsageError, match="non-empty"):
        compile_expression("  ", LINK_ETHERNET)


def test_tcpdump_missing_is_a_usage_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UsageError, match="tcpdump on PATH"):
        compile_expression("tcp", LINK_ETHERNET)


def test_filter_none_sees_arp_udp_and_icmp(veth):  # noqa: F811
    cap = Capture(veth, {"none": {"filter": None}, "tcp": {}})
    try:
        udp(veth, 3, 0.05).communicate(timeout=TIMEOUT)
        syns(veth, 2, bad=False)
    finally:
        result = cap.finish()
    rows = result["none"]["packets"]
    assert any(r[2] == int(Verdict.NOT_IP) for r in rows)               # ARP
    assert sum(r[4] == "not-tcp" for r in rows) >= 6                     # UDP, ICMP unreachable
    assert {r[4] for r in result["tcp"]["packets"]} <= {r[4] for r in rows}
    assert all(r[4] not in ("not-tcp", "not-ip") for r in result["tcp"]["packets"])
    assert len(result["tcp"]["packets"]) == 4                           # 2 SYNs, 2 RSTs


def test_no_packet_slips_in_before_the_filter(veth):  # noqa: F811
    # UDP (and ICMP answers) flood while ten captures open one after another: a filter
    # attached after the socket starts receiving would let some through (none may)
    ping = udp(veth, 4000, 0.0005)
    srv = server(veth)
    try:
        cap = Capture(veth, {f"c{i}": {} for i in range(10)})
        clients(veth, 4)
        result = cap.finish()
    finally:
        ping.kill()
        ping.communicate(timeout=30)
        srv.kill()
    for name, r in result.items():
        assert r["packets"], name
        assert all(row[2] == int(Verdict.OK) and row[4] not in ("not-tcp", "not-ip") for row in r["packets"]), name


def test_tcpdump_expression_on_the_wire(veth):  # noqa: F811
    srv = server(veth)
    cap = Capture(veth, {"port": {"filter": f"tcp port {PORT}"}, "all": {}})
    try:
        clients(veth, 10)
        syns(veth, 3, bad=False, port=PORT + 7)
    finally:
        result = cap.finish()
        srv.kill()
    port_flows = {r[4] for r in result["port"]["packets"]}
    all_flows = {r[4] for r in result["all"]["packets"]}
    assert port_flows and all(f".{PORT}|" in f or f.endswith(f".{PORT}") for f in port_flows)
    assert port_flows == {f for f in all_flows if f".{PORT}|" in f or f.endswith(f".{PORT}")}
    assert len(all_flows) > len(port_flows)


BAD_EXPRESSION = """
import json, sys
from fasttcp import LiveCapture
try:
    LiveCapture(sys.argv[1], filter="tcp port")
except Exception as exc:
    print(json.dumps([type(exc).__name__, str(exc)]))
"""


def test_a_bad_expression_is_refused_with_tcpdumps_message(veth):  # noqa: F811
    out = veth.run(veth.a, [sys.executable, "-c", BAD_EXPRESSION, veth.a_if])
    kind, msg = json.loads(out.stdout)
    assert kind == "UsageError" and "syntax error" in msg and "tcp port" in msg


def test_tcpdump_is_installed():
    assert subprocess.run(["tcpdump", "--version"], capture_output=True, timeout=30,
                          env=dict(os.environ)).returncode == 0


@pytest.mark.parametrize("output,status", [
    (b"\xff\xfe\x00garbage\n", 0),                       # not text at all
    (b"1\n6 0 0 \xff\n", 0),                             # a byte that is not UTF-8 in a number
    (b"", 1),                                            # a failure with stderr not UTF-8 below
])
def test_hostile_tcpdump_output_is_a_usage_error(monkeypatch, tmp_path, output, status):
    # whatever a "tcpdump" on PATH prints, the answer is UsageError, never a decoding error
    fake = tmp_path / "tcpdump"
    fake.write_bytes(b"#!/bin/sh\nprintf '" + b"".join(b"\\%03o" % c for c in output) + b"'\n"
                     b"printf '\\377\\376 bad\\n' >&2\nexit " + str(status).encode() + b"\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UsageError):
        compile_expression("tcp; reboot", LINK_ETHERNET)
