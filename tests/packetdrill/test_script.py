"""Parser units: every construct of the subset, and the errors for what is not valid."""
from __future__ import annotations

import pytest

from fasttcp.packetdrill.script import (
    ABSOLUTE,
    ABSOLUTE_RANGE,
    ANY,
    MAX_NESTING,
    RELATIVE,
    RELATIVE_RANGE,
    CommandSpec,
    PacketSpec,
    ScriptError,
    SyscallSpec,
    TcpOption,
    parse_script,
)


def one(text: str):
    script = parse_script(text)
    assert len(script.events) == 1
    return script.events[0]


@pytest.mark.parametrize("text, kind, usecs, end", [
    ("0 close(3) = 0", ABSOLUTE, 0, None),
    ("1.25 close(3) = 0", ABSOLUTE, 1_250_000, None),
    ("+.1 close(3) = 0", RELATIVE, 100_000, None),
    ("+0 close(3) = 0", RELATIVE, 0, None),
    ("* > . 1:1(0) ack 1", ANY, 0, None),
    ("0.1~0.3 > . 1:1(0) ack 1", ABSOLUTE_RANGE, 100_000, 300_000),
    ("+.01~+.015 > F. 1:1(0) ack 1", RELATIVE_RANGE, 10_000, 15_000),
])
def test_times(text, kind, usecs, end):
    ev = one(text)
    assert (ev.time.kind, ev.time.usecs, ev.time.end_usecs) == (kind, usecs, end)


@pytest.mark.parametrize("text", ["+.1...0.200 accept(3, ..., ...) = 4",
                                  "+.1 ... 0.200 accept(3, ..., ...) = 4",
                                  "+.1...0.2 accept(3, ..., ...) = 4"])
def test_blocking_end_time(text):
    ev = one(text)
    assert ev.time.usecs == 100_000 and ev.action.end_usecs == 200_000 and ev.action.name == "accept"


def test_packet_fields_and_options():
    ev = one("+0 < P. 1:1001(1000) ack 5 win 257 <nop,nop,TS val 7 ecr 8,sack 3:4 5:6,mss 1000,"
             "sackOK,wscale 7,eol>")
    p = ev.action
    assert isinstance(p, PacketSpec)
    assert (p.direction, p.flags, p.seq, p.end_seq, p.payload_len, p.ack, p.window) == (
        "<", frozenset({"PSH", "ACK"}), 1, 1001, 1000, 5, 257)
    assert p.options == (TcpOption("nop"), TcpOption("nop"), TcpOption("TS", (7, 8)),
                         TcpOption("sack", (3, 4, 5, 6)), TcpOption("mss", (1000,)),
                         TcpOption("sackOK"), TcpOption("wscale", (7,)), TcpOption("eol"))


def test_outbound_without_win_or_options_and_with_nocheck():
    p = one("+0 > S. 0:0(0) ack 1 <...>").action
    assert p.window is None and p.options is None and p.flags == frozenset({"SYN", "ACK"})
    p = one("+0 > R 2:2(0)").action
    assert p.window is None and p.options == () and p.ack is None and p.flags == frozenset({"RST"})
    assert one("+0 > FPUEW. 1:1(0) ack 1").action.flags == frozenset(
        {"FIN", "PSH", "URG", "ECE", "CWR", "ACK"})


def test_syscall_arguments():
    ev = one('+0 setsockopt(3, SOL_SOCKET, SO_LINGER, {onoff=1, linger=0}, 8) = 0')
    assert ev.action.args == (3, "SOL_SOCKET", "SO_LINGER", {"onoff": 1, "linger": 0}, 8)
    ev = one("+0 fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0")
    assert ev.action.args == (3, "F_SETFL", ("|", ("O_RDWR", "O_NONBLOCK")))
    ev = one('+0 getsockopt(3, SOL_SOCKET, SO_ERROR, [0], [4]) = 0')
    assert ev.action.args[3:] == ([0], [4])
    ev = one('+0 write(3, "abc"..., 3) = 3')
    assert ev.action.args == (3, ("str", "abc"), 3)
    ev = one("+0 bind(3, {sa_family=AF_INET, sin_port=htons(8080), sin_addr=inet_addr(\"1.2.3.4\")}, 16) = 0")
    assert ev.action.args[1]["sin_port"] == ("call", "htons", (8080,))
    ev = one("+0 socket(..., SOCK_STREAM, 0x6) = 3")
    assert ev.action.args == (..., "SOCK_STREAM", 6)


def test_results_errno_and_note():
    c = one("+0 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)").action
    assert (c.result, c.errno) == (-1, "EINPROGRESS")
    c = one("+0 fcntl(3, F_GETFL) = 0x2 (flags O_RDWR)").action
    assert (c.result, c.errno) == (2, None)
    c = one("+0 write(4, ..., 1000) = -1 EPIPE").action
    assert (c.result, c.errno) == (-1, "EPIPE")


def test_comments_options_commands_and_multiline_statements():
    script = parse_script("""// a comment
--tolerance_usecs=10000
/* a block
   comment */
`../common/defaults.sh
 sysctl -q net.ipv4.tcp_sack=1`
    0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3   // trailing comment
   +0 setsockopt(3, SOL_SOCKET, SO_LINGER,
                 {onoff=1,
                  linger=0}, 8) = 0
   +0 `true`
""")
    assert script.options == {"tolerance_usecs": "10000"} and script.option_lines == {"tolerance_usecs": 2}
    assert script.commands == [(5, CommandSpec("../common/defaults.sh\n sysctl -q net.ipv4.tcp_sack=1"))]
    assert [e.line for e in script.events] == [7, 8, 11]
    assert script.events[1].action.args[3] == {"onoff": 1, "linger": 0}
    assert script.events[2].action == CommandSpec("true")


@pytest.mark.parametrize("text, line, message", [
    ("0 close(3) = 0\n0.3~0.1 > . 1:1(0) ack 1", 2, "time range is backwards"),
    ("* close(3) = 0", 1, "event time <star> can only be used with outbound packets"),
    ("0~1 < . 1:1(0) ack 1 win 1", 1, "event time range can only be used with outbound packets"),
    ("0 < . 1:1(0) ack 1", 1, "window must be specified for inbound packets"),
    ("0 < . 1:5(3) ack 1 win 1", 1, "inconsistent segment lengths: 1:5(3)"),
    ("0 < . 1:1(0) ack 4294967296 win 1", 1, "ack 4294967296 does not fit its field (max 4294967295)"),
    ("0 < . 1:1(0) ack 1 win 65536", 1, "win 65536 does not fit its field (max 65535)"),
    ("0 < . 1:1(0) ack 1 win 1 <mss 70000>", 1, "mss 70000 does not fit its field (max 65535)"),
    ("\n\n0 write(3, ..., 10", 3, "unterminated bracket"),
    ("0 close(3) = 0\n`echo", 2, "unterminated backquote"),
    ("0 write(3, \"abc, 3) = 3", 1, "unterminated string"),
    ("0 close(3)) = 0", 1, "unbalanced ')'"),
    ("0 close(3)", 1, "expected '= result' after close(...)"),
    ("-1 close(3) = 0", 1, "expected an event time, got '-1'"),
    ("abc", 1, "expected an event time, got 'abc'"),
    ("0close(3) = 0", 1, "expected a space after the event time"),
    ("0 close(3) = 0\n--tolerance_usecs=1", 2, "options come before the first event"),
    ("2000000 close(3) = 0", 1, "time 2000000 is beyond 1000000 seconds"),
    ("0 < . 1:1(0) ack 1 win 1 <sack 1:2 3:4 5:6 7:8 9:10>", 1, "more than 4 sack blocks"),
    # a comment is one only with its */ (packetdrill's lexer): an open one would have
    # swallowed every check after it, and the script passed
    ("0 close(3) = 0\n/* open\n+0 close(4) = 0", 2, "/* comment not closed"),
    ("0 close(3) = 0 /* x\n+0 close(4) = 0", 1, "/* comment not closed"),
    ("0 close(\uff13) = 0", 1, "unexpected text"),        # a digit is 0-9, as packetdrill's lexer reads
])
def test_errors_name_the_line(text, line, message):
    with pytest.raises(ScriptError) as info:
        parse_script(text)
    assert info.value.line == line
    assert message in info.value.message
    assert not info.value.unsupported


def test_numbers_are_decimal_with_leading_zeros_or_hex():
    """packetdrill's lexer reads [-]?[0-9]+ with atoll and 0x... as hex: "09" is 9."""
    script = parse_script("0 close(03) = 0\n+0 listen(3, 0x10) = 09\n+0 close(-007) = -0x1")
    assert [(e.action.args, e.action.result) for e in script.events] == [((3,), 0), ((3, 16), 9), ((-7,), -1)]


@pytest.mark.parametrize("text, message", [
    ("0 < [ect0] S 0:0(0) win 1", "TCP flags '[ect0]'"),
    ("0 < S 0:0(0) win 1 <FO abcd>", "TCP option 'FO abcd'"),
    ("0 < S 0:0(0) win 1 urg 5", "packet field 'urg'"),
    ("0 close(3) = 0\n+0 %{ assert tcpi_state == 1 }%", "%{ python }% block"),
])
def test_valid_packetdrill_outside_the_subset_is_unsupported(text, message):
    with pytest.raises(ScriptError) as info:
        parse_script(text)
    assert info.value.unsupported and info.value.message == message


def test_nesting_is_bounded():
    deep = "0 write(3, " + "[" * (MAX_NESTING + 1) + "1" + "]" * (MAX_NESTING + 1) + ", 1) = 1"
    with pytest.raises(ScriptError, match="nested deeper than"):
        parse_script(deep)
    ok = "0 write(3, " + "[" * 8 + "1" + "]" * 8 + ", 1) = 1"
    assert isinstance(one(ok).action, SyscallSpec)


def test_not_text_is_refused():
    with pytest.raises(TypeError):
        parse_script(b"0 close(3) = 0")          # type: ignore[arg-type]
    with pytest.raises(ScriptError, match="NUL byte"):
        parse_script("0 close(3) = 0\n\x00")


def test_commands_map_sysctls_and_refuse_the_rest():
    from fasttcp.packetdrill.linux import apply_command, endpoint_settings
    settings = endpoint_settings("linux")
    assert apply_command('../common/defaults.sh\nsysctl -q net.ipv4.tcp_rmem="4096 540000 15728640" '
                         "net.ipv4.tcp_timestamps=0 net.ipv4.tcp_window_scaling=0", settings) is None
    assert settings["timestamps"] is False and settings["wscale"] is None
    assert apply_command("sysctl -q net.ipv4.tcp_sack=2", settings) == "net.ipv4.tcp_sack=2 has no equivalent"
    assert apply_command("sysctl -q net.core.somaxconn=5", settings) == "sysctl net.core.somaxconn has no equivalent"
    assert apply_command("rm -rf /", settings) == "command 'rm -rf /' is not run by this runner"
    assert apply_command('echo "unterminated', settings) == "command 'echo \"unterminated' is not valid shell"
