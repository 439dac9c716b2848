"""Hostile scripts and arguments: a failed Result with the line and a precise error (or
UsageError for caller misuse), never a crash, a hang or a traceback. Each case runs in
a child process (tests/probe.py) so a crash fails one test."""
from __future__ import annotations

import pytest

from tests.probe import expect_ok, expect_raises

HEAD = "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\\n+0 bind(3, ..., ...) = 0\\n+0 listen(3, 1) = 0\\n"
HANDSHAKE = (HEAD + "+0 < S 0:0(0) win 65535 <mss 1460>\\n+0 > S. 0:0(0) ack 1 <mss 1460>\\n"
             "+0 < . 1:1(0) ack 1 win 100\\n+0 accept(3, ..., ...) = 4\\n")

CASES = {
    # script text (Python literal body), expected line, expected text in the error
    "garbage": ("'%%%% $$$ ((( ]]]'", 1, "syntax error"),
    "binary": ("bytes(range(256)).decode('latin-1')", 1, "syntax error"),
    "deep nesting": ("'0 write(3, ' + '[' * 5000 + '1' + ']' * 5000 + ', 1) = 1'", 1, "nested deeper than"),
    "huge integer": ("'0 < . 1:1(0) ack 1 win 1 <mss ' + '9' * 5000 + '>'", 1, "does not fit its field"),
    "huge seq": ("'0 < S 99999999999999999999:99999999999999999999(0) win 1'", 1, "does not fit its field"),
    "enormous time": ("'0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\\n999999999999 close(3) = 0'", 2,
                      "beyond 1000000 seconds"),
    "negative time": ("'-5 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3'", 1, "expected an event time"),
    "far future outbound": (f"'{HEAD}999999 > S. 0:0(0) ack 1'", 4,
                            "no matching socket for script packet"),
    "wait forever": (f"'{HANDSHAKE}+0 > . 1:1(0) ack 1'", 8, "timed out waiting for outbound packet"),
    "blocking read never returns": (f"'{HANDSHAKE}+0...1 read(4, ..., 10) = 10'", 8,
                                    "blocking call never returned"),
    "read that would block": (f"'{HANDSHAKE}+0 read(4, ..., 10) = 10'", 8, "the call would block"),
    "huge write": (f"'{HANDSHAKE}+0 write(4, ..., 99999999999999999999) = 1'", 8, "unsupported: write of"),
    "negative read": (f"'{HANDSHAKE}+0 read(4, ..., -1) = -1 EINVAL'", None, None),
    "bad fd": (f"'{HANDSHAKE}+0 close(99999999999999999999999) = 0'", 8, "bad file descriptor"),
    "fd as word": (f"'{HANDSHAKE}+0 close(SOCK_STREAM) = 0'", 8, "bad file descriptor"),
    "bool-looking args": (f"'{HANDSHAKE}+0 write(4, ..., [1, 2]) = 1'", 8, "is not an integer"),
    "wrong arg count": (f"'{HANDSHAKE}+0 close(4, 5) = 0'", 8, "Expected 1 args but got 2"),
    "nan tolerance": ("'--tolerance_usecs=nan\\n0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3'", 1,
                      "is not a number"),
    "inbound giant payload": ("'0 < . 1:65536(65535) ack 1 win 1'", 1, "does not fit in one IP packet"),
    "many events": ("'0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\\n' + '+0 setsockopt(3, SOL_SOCKET, "
                    "SO_REUSEADDR, [1], 4) = 0\\n' * 20000", None, None),
    "too large": ("'// ' + 'x' * (1 << 21)", 1, "larger than"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_script_fails_precisely(name):
    text, line, message = CASES[name]
    value = expect_ok(f"""
        from fasttcp.packetdrill import run_text
        r = run_text({text}, name="hostile.pkt")
        outcome((r.ok, r.line, r.error))
    """)
    ok, got_line, error = eval(value)            # the repr of a tuple of plain values
    if line is None:                             # must simply finish, either way
        assert isinstance(ok, bool)
        return
    assert ok is False, error
    assert got_line == line, error
    assert message in error
    assert error.startswith(f"hostile.pkt:{line}: ")


def test_unreadable_paths_are_failed_results(tmp_path):
    value = expect_ok(f"""
        from fasttcp.packetdrill import run
        out = []
        for p in ({str(tmp_path / 'missing.pkt')!r}, {str(tmp_path)!r}):
            r = run(p)
            out.append((r.ok, r.error))
        outcome(out)
    """)
    (ok1, err1), (ok2, err2) = eval(value)
    assert not ok1 and "cannot read" in err1 and "No such file" in err1
    assert not ok2 and "cannot read" in err2


@pytest.mark.parametrize("call, match", [
    ("run(3)", "path must be str or os.PathLike"),
    ("run(True)", "path must be str or os.PathLike"),
    ("run(b'/x.pkt')", "path must be str or os.PathLike"),
    ("run('/x.pkt', profile='bsd')", "unknown profile 'bsd'"),
    ("run('/x.pkt', profile=None)", "unknown profile None"),
    ("run_text(b'0 close(3) = 0')", "takes the script as str"),
])
def test_misuse_is_usage_error(call, match):
    expect_raises(f"from fasttcp.packetdrill import run, run_text\n{call}", "UsageError", match)
