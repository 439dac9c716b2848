"""`fasttcp replay` into a real veth: the command runs in namespace A, tcpdump captures
in namespace B, and the IP packets tcpdump saw must be the captures' IP packets, in
order, with each method. Bad arguments exit 2 with a message, before anything is sent.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from fasttcp import Verdict, build, read_pcap, write_pcap
from fasttcp.capture.transmit import DEFAULT_DST_MAC, format_mac
from tests.netns import VethPair, veth  # noqa: F401  -- the fixture

DATA = Path(__file__).resolve().parents[1] / "data"
# IPv4 and IPv6, and 10 frames without an IP packet (skipped)
CAPTURES = [DATA / "zeek-http-get.pcap", DATA / "zeek-ftp-ipv6.pcap", DATA / "zeek-wikipedia.pcap"]


def ip_packets(paths: list[Path]) -> list[bytes]:
    out = []
    for path in paths:
        for b in read_pcap(path):
            out += [b.packet(i) for i in range(len(b)) if b.verdicts[i] == Verdict.OK]
    return out


def replay(net: VethPair, *args: str, timeout: float = 60) -> tuple[int, str, str]:
    p = net.run(net.a, [sys.executable, "-m", "fasttcp", "replay", *args], check=False, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def captured_in_b(net: VethPair, out: Path, expect: int, *args: str) -> tuple[tuple[int, str, str], list[bytes]]:
    """Run `fasttcp replay *args` from A while tcpdump in B writes `out`; (the replay's
    result, the IP packets tcpdump saw)."""
    # (-B 64 MiB: a replay at top speed must not outrun the reference's buffer)
    dump = net.popen(net.b, ["tcpdump", "-i", net.b_if, "-w", str(out), "-U", "-n", "-B", str(64 << 10),
                             "ether", "dst", format_mac(DEFAULT_DST_MAC)])
    try:
        assert dump.stderr is not None
        assert "listening on" in dump.stderr.readline()
        result = replay(net, *args)
        got: list[bytes] = []
        end = time.monotonic() + 10
        while time.monotonic() < end and len(got) < expect:
            time.sleep(0.1)
            got = ip_packets([out]) if out.exists() and out.stat().st_size > 24 else []
    finally:
        dump.terminate()
        dump.wait(timeout=10)
    return result, ip_packets([out])


@pytest.mark.parametrize("method", ["ring", "sendmmsg"])
def test_tcpdump_in_b_sees_exactly_the_captures_ip_packets(veth, tmp_path, method):  # noqa: F811
    want = ip_packets(CAPTURES)
    (status, stdout, stderr), got = captured_in_b(veth, tmp_path / "b.pcap", len(want),
                                                  *map(str, CAPTURES), "-i", veth.a_if, "--method", method, "--json")
    assert status == 0, stderr
    summary = json.loads(stdout)
    assert summary["packets"] == len(want) == 136 + 136 + 14 - 10
    assert summary["skipped"] == 10 and summary["too_big"] == 0 and summary["method"] == method
    assert summary["bytes"] == sum(len(p) + 14 for p in want)
    assert got == want


def test_loop_sends_the_captures_again_and_pps_paces_them(veth, tmp_path):  # noqa: F811
    want = ip_packets(CAPTURES[:1])
    t0 = time.monotonic()
    (status, stdout, stderr), got = captured_in_b(veth, tmp_path / "b.pcap", 3 * len(want), str(CAPTURES[0]),
                                                  "-i", veth.a_if, "--loop", "3", "--pps", "100", "--json")
    elapsed = time.monotonic() - t0
    assert status == 0, stderr
    summary = json.loads(stdout)
    assert (summary["packets"], summary["loops"]) == (3 * len(want), 3)
    assert got == want * 3
    # never above 100/s: 42 packets with a 1-packet burst take at least 41 / 100 s
    assert summary["seconds"] >= 0.41 and elapsed >= 0.41


def test_speed_keeps_each_captures_own_timing(veth, tmp_path):  # noqa: F811
    # two packets 0.6 s apart, the file given twice: the second copy's timestamps are
    # all before the first copy's last one, and must still be 0.6 s apart, from when
    # the first copy ended -- not held at that last timestamp and sent in one burst
    pcap = tmp_path / "two.pcap"
    write_pcap(pcap, [build("198.18.0.1", "198.18.0.2", 1, 2, seq=i) for i in range(2)], [100.0, 100.6])
    status, stdout, stderr = replay(veth, str(pcap), str(pcap), "-i", veth.a_if, "--speed", "1", "--json")
    assert status == 0, stderr
    summary = json.loads(stdout)
    assert summary["packets"] == 4
    assert summary["seconds"] >= 1.2


@pytest.mark.parametrize("args,message", [
    (["--pps", "0"], "--pps"), (["--pps", "-5"], "--pps"), (["--pps", "nan"], "--pps"), (["--pps", "inf"], "--pps"),
    (["--pps", "2e9"], "--pps"), (["--speed", "0"], "--speed"), (["--speed", "nan"], "--speed"),
    (["--speed", "inf"], "--speed"), (["--loop", "0"], "--loop"), (["--loop", "-1"], "--loop"),
    (["--dst-mac", "zz"], "dst_mac"), (["--src-mac", "00:11"], "src_mac"),
])
def test_bad_arguments_exit_2_with_a_message(veth, args, message):  # noqa: F811
    status, stdout, stderr = replay(veth, str(CAPTURES[0]), "-i", veth.a_if, *args)
    assert status == 2 and message in stderr and stdout == ""


@pytest.mark.parametrize("args,message", [
    (["-i", "nosuchif0"], "No such device"), (["-i", "lo"], "not an Ethernet interface"),
    (["--pps", "5", "--speed", "2"], "not allowed with"), (["--method", "tun"], "invalid choice"),
])
def test_interfaces_and_pacing_that_cannot_be_used_exit_2(veth, args, message):  # noqa: F811
    status, _, stderr = replay(veth, str(CAPTURES[0]), *(["-i", veth.a_if] if "-i" not in args else []), *args)
    assert status == 2 and message in stderr


def test_a_capture_that_cannot_be_read_is_reported_before_anything_is_sent(veth, tmp_path):  # noqa: F811
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    for bad, message in ((tmp_path / "missing.pcap", "No such file"), (empty, "empty")):
        status, stdout, stderr = replay(veth, str(CAPTURES[0]), str(bad), "-i", veth.a_if, "--json")
        assert status == 2 and message in stderr and stdout == ""


def test_speed_follows_each_files_own_timing_and_sends_the_files_back_to_back(veth):  # noqa: F811
    # the two captures were taken 12 years apart; the first spans 0.21 s
    first, second = DATA / "zeek-http-get.pcap", DATA / "tcpdump-bigtcp-ipv4.pcap"
    status, stdout, stderr = replay(veth, str(first), str(second), "-i", veth.a_if, "--speed", "1", "--json",
                                    timeout=30)
    assert status == 0, stderr
    summary = json.loads(stdout)
    assert summary["packets"] + summary["too_big"] == len(ip_packets([first, second]))
    assert 0.2 <= summary["seconds"] < 20
