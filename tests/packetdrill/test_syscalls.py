"""Socket calls the corpus does not reach (their segments are the endpoint's, which
differ from Linux's in places docs/packetdrill.md lists, so they are not corpus scripts)."""
from __future__ import annotations

from fasttcp.packetdrill import run_text

SERVER = """\
    0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
   +0 bind(3, ..., ...) = 0
   +0 listen(3, 1) = 0
   +0 fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0
   +0 accept(3, ..., ...) = -1 EAGAIN (Resource temporarily unavailable)
  +.1 < S 0:0(0) win 65535 <mss 1460,nop,wscale 7>
   +0 > S. 0:0(0) ack 1 <mss 1460,nop,wscale 8>
  +.1 < . 1:1(0) ack 1 win 514
   +0 accept(3, ..., ...) = 4
"""


def ok(text: str) -> None:
    r = run_text(text)
    assert r.ok, r.error


def test_so_linger_zero_close_resets():
    ok(SERVER + "+0 setsockopt(4, SOL_SOCKET, SO_LINGER, {onoff=1, linger=0}, 8) = 0\n"
                "+0 close(4) = 0\n+0 > R 1:1(0)\n")


def test_close_with_unread_data_resets():
    ok(SERVER + "+0 < P. 1:101(100) ack 1 win 514\n+0 > . 1:1(0) ack 101\n"
                "+0 close(4) = 0\n+0 > R 1:1(0)\n")


def test_nonblocking_read_and_fcntl_getfl():
    ok(SERVER + "+0 fcntl(4, F_SETFL, O_RDWR|O_NONBLOCK) = 0\n+0 fcntl(4, F_GETFL) = 0x802\n"
                "+0 read(4, ..., 10) = -1 EAGAIN (Resource temporarily unavailable)\n"
                "+0 < P. 1:11(10) ack 1 win 514\n+0 > . 1:1(0) ack 11\n+0 read(4, ..., 100) = 10\n")


def test_reset_gives_econnreset_once_then_epipe_and_eof():
    ok(SERVER + "+.1 < R. 1:1(0) ack 1 win 0\n"
                "+0 write(4, ..., 10) = -1 ECONNRESET (Connection reset by peer)\n"
                "+0 write(4, ..., 10) = -1 EPIPE (Broken pipe)\n+0 read(4, ..., 10) = 0\n")


def test_blocking_accept_returns_when_the_handshake_completes():
    ok("""\
    0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
   +0 bind(3, ..., ...) = 0
   +0 listen(3, 1) = 0
   +0...0.200 accept(3, ..., ...) = 4
  +.1 < S 0:0(0) win 65535 <mss 1460>
   +0 > S. 0:0(0) ack 1 <mss 1460>
  +.1 < . 1:1(0) ack 1 win 514
   +0 write(4, ..., 10) = 10
   +0 > P. 1:11(10) ack 1
""")


def test_so_error_mismatch_and_bad_fd_are_reported():
    r = run_text("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n"
                 "+0 getsockopt(3, SOL_SOCKET, SO_ERROR, [5], [4]) = 0\n")
    assert r.line == 2 and r.error.endswith("runtime error in getsockopt call: Bad getsockopt optval: "
                                            "expected: 5 actual: 0")
    r = run_text("0 close(3) = 0\n")
    assert r.line == 1 and "bad file descriptor 3" in r.error


def test_script_fd_numbers_name_the_sockets_they_returned():
    # the script may number fds as it likes: packetdrill maps script fds to live ones
    ok("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 7\n+0 bind(7, ..., ...) = 0\n+0 listen(7, 1) = 0\n"
       "+0 close(7) = 0\n")
    r = run_text("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 7\n+0 close(3) = 0\n")
    assert r.line == 2 and "bad file descriptor 3" in r.error


def test_early_outbound_and_late_inbound_are_timing_errors():
    r = run_text(SERVER + "+0 write(4, ..., 10) = 10\n5 > P. 1:11(10) ack 1\n")
    assert r.line == 11
    assert "timing error: expected outbound packet at 5.000000 sec but happened at 0.200000" in r.error
    # an absolute time the clock has passed (the SYN retransmission at 1 s moved it)
    r = run_text("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0\n"
                 "+0 connect(3, ..., ...) = -1 EINPROGRESS\n+0 > S 0:0(0) <...>\n1 > S 0:0(0) <...>\n"
                 "0.5 < S. 0:0(0) ack 1 win 100\n")
    assert r.line == 6
    assert r.error.endswith("timing error: expected inbound packet at 0.500000 sec but happened at 1.000000 sec; "
                            "tolerance 0.004000 sec")


def test_sysctl_command_changes_the_endpoint():
    script = """\
`sysctl -q net.ipv4.tcp_timestamps={ts}`
    0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
   +0 bind(3, ..., ...) = 0
   +0 listen(3, 1) = 0
  +.1 < S 0:0(0) win 65535 <mss 1460,sackOK,TS val 1 ecr 0,nop,wscale 7>
   +0 > S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK,nop,wscale 8>
"""
    ok(script.format(ts=0))
    r = run_text(script.format(ts=1))
    assert r.line == 6 and "tcp_data_offset" in r.error


def test_second_listener_cannot_bind():
    ok("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 bind(3, ..., ...) = 0\n+0 listen(3, 1) = 0\n"
       "+0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 4\n"
       "+0 bind(4, ..., ...) = -1 EADDRINUSE (Address already in use)\n")
    r = run_text("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 listen(3, 1) = 0\n"
                 "+0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 4\n+0 listen(4, 1) = 0\n")
    assert r.line == 4 and "runtime error in listen call: the endpoint refused:" in r.error


def test_sysctl_between_events_is_unsupported_unless_it_changes_nothing():
    ok("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 `sysctl -q net.ipv4.tcp_sack=1`\n")
    r = run_text("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 `sysctl -q net.ipv4.tcp_sack=0`\n")
    assert r.line == 2 and r.error.endswith(
        "unsupported: a sysctl between events would change the running endpoint's settings")


def test_syn_cookie_script_really_takes_the_cookie_path():
    from pathlib import Path

    from fasttcp.packetdrill import linux, parse_script
    from fasttcp.packetdrill.runner import Run

    script = parse_script((Path(__file__).parent / "scripts" / "syn-cookies.pkt").read_text())
    settings = linux.endpoint_settings("linux")
    for _, cmd in script.commands:
        assert linux.apply_command(cmd.text, settings) is None
    assert settings["syn_cookies"] == "always"
    runner = Run(script, settings, "syn-cookies.pkt")
    runner.execute()
    stats = runner.ep.stats
    assert (stats["syn_cookies_sent"], stats["syn_cookies_ok"]) == (1, 1)
    assert stats["drops"]["bad_cookie"] == 1          # the forged ACK
