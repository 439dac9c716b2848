"""The project's packetdrill corpus passes against the endpoint, and mutated copies of it
fail at the mutated line with packetdrill's wording (so a pass means something)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fasttcp.packetdrill import run

SCRIPTS = Path(__file__).resolve().parent / "scripts"
CORPUS = sorted(SCRIPTS.glob("*.pkt"))
# one script per lifecycle behaviour the README claims
BEHAVIOURS = {
    "handshake-passive", "handshake-active", "syn-retransmit-backoff", "refused-port",
    "connect-refused", "close-local-first", "close-remote-first", "half-close", "half-close-peer",
    "simultaneous-open", "simultaneous-close", "time-wait", "old-duplicate-syn", "rfc5961-rst",
    "rfc5961-syn", "paws", "wscale-timestamps", "no-options", "syn-cookies",
}


def test_corpus_has_every_behaviour():
    assert {p.stem for p in CORPUS} >= BEHAVIOURS


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_corpus_script_passes(path):
    result = run(path)
    assert result.ok, result.error
    assert result.line is None and result.error is None


def _mutate(tmp_path: Path, name: str, old: str, new: str) -> tuple[Path, int]:
    """A copy of corpus script `name` with the one line holding `old` changed; returns
    the copy and that line's number."""
    lines = (SCRIPTS / f"{name}.pkt").read_text().splitlines()
    hits = [i for i, line in enumerate(lines) if old in line]
    assert len(hits) == 1, (name, old, hits)
    lines[hits[0]] = lines[hits[0]].replace(old, new)
    path = tmp_path / f"{name}-mutated.pkt"
    path.write_text("\n".join(lines) + "\n")
    return path, hits[0] + 1


def _line_of(name: str, text: str) -> int:
    lines = (SCRIPTS / f"{name}.pkt").read_text().splitlines()
    hits = [i + 1 for i, line in enumerate(lines) if text in line]
    assert len(hits) == 1
    return hits[0]


def test_wrong_ack_fails_at_its_line(tmp_path):
    path, line = _mutate(tmp_path, "handshake-passive", "> S. 0:0(0) ack 1 ", "> S. 0:0(0) ack 101 ")
    r = run(path)
    assert not r.ok and r.line == line
    assert r.error == (f"{path}:{line}: error handling packet: live packet field tcp_ack_seq: "
                       "expected: 101 (0x65) vs actual: 1 (0x1)")
    assert r.expected.startswith("0.100000 S. 0:0(0) ack 101 win 65535 <mss 1460,sackOK,TS val 700 ecr 100")
    assert r.actual.startswith("0.100000 S. 0:0(0) ack 1 win 65535 <mss 1460,sackOK,TS val 700 ecr 100")


def test_wrong_flags_fail_at_their_line(tmp_path):
    path, line = _mutate(tmp_path, "close-local-first", "> F. 1:1(0) ack 1", "> . 1:1(0) ack 1")
    r = run(path)
    assert (r.ok, r.line) == (False, line)
    assert r.error.endswith("live packet field tcp_fin: expected: 0 (0x0) vs actual: 1 (0x1)")


def test_wrong_window_and_option_fail(tmp_path):
    path, line = _mutate(tmp_path, "handshake-passive", "ack 1 win 65535 <mss 1460,", "ack 1 win 65000 <mss 1460,")
    r = run(path)
    assert r.line == line and r.error.endswith("tcp_window: expected: 65000 (0xfde8) vs actual: 65535 (0xffff)")
    path, line = _mutate(tmp_path, "handshake-passive", "ecr 100,nop,wscale 8>", "ecr 100,nop,wscale 7>")
    r = run(path)
    assert r.line == line
    assert r.error.endswith("bad value in outbound TCP option (kind=3): expected: wscale 7 actual: wscale 8")
    path, line = _mutate(tmp_path, "close-local-first", "> F. 1:1(0) ack 1",
                         "> F. 1:1(0) ack 1 <nop,nop,TS val 1 ecr 2>")
    r = run(path)
    assert r.line == line and r.error.endswith("tcp_data_offset: expected: 8 (0x8) vs actual: 5 (0x5)")


def test_timing_miss_fails_with_both_times(tmp_path):
    path, line = _mutate(tmp_path, "syn-retransmit-backoff", "    3 > S", "    2 > S")
    r = run(path)
    assert r.line == line
    assert r.error.endswith("error handling packet: timing error: expected outbound packet at 2.000000 sec "
                            "but happened at 3.000000 sec; tolerance 0.125000 sec")


def test_time_range_accepts_and_refuses(tmp_path):
    path, _ = _mutate(tmp_path, "syn-retransmit-backoff", "    3 > S", "2.5~3.5 > S")
    assert run(path).ok
    path, line = _mutate(tmp_path, "syn-retransmit-backoff", "    3 > S", "1.5~2.5 > S")
    r = run(path)
    assert r.line == line
    assert "expected outbound packet in time range 1.500000~2.500000 sec but happened at 3.000000" in r.error
    path, _ = _mutate(tmp_path, "syn-retransmit-backoff", "    3 > S", "    * > S")
    assert run(path).ok


def test_missing_segment_times_out(tmp_path):
    path = tmp_path / "missing.pkt"
    path.write_text((SCRIPTS / "refused-port.pkt").read_text() + "   +1 > . 1:1(0) ack 1\n")
    r = run(path)
    line = len(path.read_text().splitlines())
    assert r.line == line and "timed out waiting for outbound packet (expected at 1.000000 sec" in r.error


def test_unexpected_extra_segment_shows_at_the_next_expected_one(tmp_path):
    # packetdrill sniffs segments in order: an ACK the script forgot is what the next
    # '>' line sees
    lines = (SCRIPTS / "half-close.pkt").read_text().splitlines()
    lines.remove("   +0 > . 2:2(0) ack 1001")
    path = tmp_path / "extra.pkt"
    path.write_text("\n".join(lines) + "\n")
    r = run(path)
    assert r.line == lines.index("   +0 > . 2:2(0) ack 1501") + 1
    assert r.error.endswith("tcp_ack_seq: expected: 1501 (0x5dd) vs actual: 1001 (0x3e9)")


def test_wrong_result_and_errno(tmp_path):
    path, line = _mutate(tmp_path, "handshake-passive", "read(4, ..., 1000) = 500", "read(4, ..., 1000) = 400")
    r = run(path)
    assert r.line == line and r.error.endswith(
        "runtime error in read call: Expected result 400 but got 500 with errno 0 (Success)")
    path, line = _mutate(tmp_path, "connect-refused", "ECONNREFUSED (Connection refused)", "ETIMEDOUT")
    r = run(path)
    assert r.line == line and r.error.endswith(
        "runtime error in connect call: Expected errno 110 (Connection timed out) but got 111 (Connection refused)")


def test_blocking_call_return_time_is_checked(tmp_path):
    path, line = _mutate(tmp_path, "handshake-active", "+.1...0.150 connect", "+.1...0.300 connect")
    r = run(path)
    assert r.line == line and r.error.endswith(
        "timing error: expected system call return at 0.300000 sec but happened at 0.150000 sec; "
        "tolerance 0.025000 sec")


def test_unknown_ts_ecr_is_an_error(tmp_path):
    path, line = _mutate(tmp_path, "paws", "TS val 1020 ecr 700", "TS val 1020 ecr 701")
    r = run(path)
    assert r.line == line and "unable to infer live TS ecr for script TS ecr 701" in r.error


def test_unsupported_lines_are_listed_not_skipped(tmp_path):
    path = tmp_path / "unsupported.pkt"
    path.write_text("--bind_port=9000\n`ethtool -K tun0 tso off`\n"
                    "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 epoll_create(1) = 4\n")
    r = run(path)
    assert (r.ok, r.line) == (False, 1)
    assert "unsupported" in r.error
    for text in ("line 1: option --bind_port=9000", "line 2: command 'ethtool -K tun0 tso off'",
                 "line 4: system call epoll_create()"):
        assert text in r.error
    path.write_text("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 setsockopt(3, SOL_TCP, TCP_CORK, [1], 4) = 0\n")
    r = run(path)
    assert r.line == 2 and r.error.endswith("unsupported: setsockopt SOL_TCP TCP_CORK")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fasttcp", "packetdrill", *args], capture_output=True,
                          text=True, timeout=120)


def test_cli_json_one_object_per_script_and_exit_status(tmp_path):
    bad, line = _mutate(tmp_path, "close-local-first", "> F. 1:1(0) ack 1", "> . 1:1(0) ack 1")
    good = SCRIPTS / "refused-port.pkt"
    proc = _cli(str(good), str(bad), "--json")
    assert proc.returncode == 1, proc.stderr
    objs = [json.loads(x) for x in proc.stdout.splitlines()]
    assert objs[0] == {"script": str(good), "ok": True}
    assert objs[1]["ok"] is False and objs[1]["line"] == line and objs[1]["script"] == str(bad)
    assert "tcp_fin" in objs[1]["error"] and objs[1]["expected"] and objs[1]["actual"]
    proc = _cli(str(good))
    assert (proc.returncode, proc.stdout) == (0, f"ok {good}\n")


def test_cli_text_shows_both_segments(tmp_path):
    bad, _ = _mutate(tmp_path, "close-local-first", "> F. 1:1(0) ack 1", "> . 1:1(0) ack 1")
    out = _cli(str(bad)).stdout.splitlines()
    assert out[1] == "script packet: 0.300000 . 1:1(0) ack 1"
    assert out[2].startswith("actual packet: 0.300000 F. 1:1(0) ack 1 win ")


def test_ts_tick_option_checks_our_ts_val(tmp_path):
    text = (SCRIPTS / "syn-retransmit-backoff.pkt").read_text()
    path = tmp_path / "tick.pkt"
    path.write_text("--tcp_ts_tick_usecs=1000\n" + text)       # our TS clock ticks in ms, as Linux's
    assert run(path).ok
    path.write_text("--tcp_ts_tick_usecs=1000\n" + text.replace("TS val 3100", "TS val 3900"))
    r = run(path)
    assert r.line == _line_of("syn-retransmit-backoff", "TS val 3100") + 1
    assert r.error.endswith("bad outbound TCP timestamp value, tolerance 375000")
