"""Hostile arguments to fasttcp.ladder and its parts, each in a child process (tests/probe.py):
a precise exception, never a crash or a silent drawing."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.probe import expect_ok, expect_raises

CAPTURE = "tests/data/tcpdump-tcp-handshake-nano.pcap"


@pytest.mark.parametrize("call, match", [
    ("fasttcp.ladder('/nonexistent/x.pcap')", "no such capture file"),
    ("fasttcp.ladder('tests/data')", "tests/data: is a directory, not a capture file"),
    ("fasttcp.ladder('/dev/zero')", "/dev/zero: not a regular file"),
    ("fasttcp.ladder('')", "the capture path is empty"),
    ("fasttcp.ladder(5)", "source must be a capture path"),
    ("fasttcp.ladder(b'tests/data/x.pcap')", "source must be a capture path"),
    ("fasttcp.ladder()", "give a capture or a scenario"),
    (f"fasttcp.ladder({CAPTURE!r}, scenario='reset')", "give a capture or a scenario"),
    ("fasttcp.ladder(scenario='nope')", "no scenario 'nope'"),
    ("fasttcp.ladder(scenario=3)", "scenario must be a str"),
    ("fasttcp.ladder(scenario='reset', conn=0)", "not of a scenario"),
    (f"fasttcp.ladder({CAPTURE!r}, conn=1)", "no connection 1: the capture has 1"),
    (f"fasttcp.ladder({CAPTURE!r}, conn=-1)", "conn must be an int >= 0"),
    (f"fasttcp.ladder({CAPTURE!r}, conn=True)", "conn must be an int >= 0"),
    (f"fasttcp.ladder({CAPTURE!r}, conn=2**64)", "the capture has 1"),
    (f"fasttcp.ladder({CAPTURE!r}, conn=float('nan'))", "conn must be an int >= 0"),
    (f"fasttcp.ladder({CAPTURE!r}, conn='0')", "conn must be an int >= 0"),
    (f"fasttcp.ladder({CAPTURE!r}, conn=0, flow=':80')", "conn or flow, not both"),
    (f"fasttcp.ladder({CAPTURE!r}, flow='host:99999')", "not a host:port|port must be"),
    (f"fasttcp.ladder({CAPTURE!r}, flow='1.2.3.4:0')", "port must be 1..65535"),
    (f"fasttcp.ladder({CAPTURE!r}, flow='[::1')", "IPv6 host is written"),
    (f"fasttcp.ladder({CAPTURE!r}, flow='')", "filter must be"),
    (f"fasttcp.ladder({CAPTURE!r}, flow=':')", "not a host:port"),
    (f"fasttcp.ladder({CAPTURE!r}, flow=7)", "filter must be"),
    (f"fasttcp.ladder({CAPTURE!r}, flow=('1.2.3.4', 1, '5.6.7.8'))", "flow must be"),
    (f"fasttcp.ladder({CAPTURE!r}, flow=('1.2.3.4', True, '5.6.7.8', 2))", "ports must be ints"),
    (f"fasttcp.ladder({CAPTURE!r}, flow=('x', 1, '5.6.7.8', 2))", "not addresses"),
    (f"fasttcp.ladder({CAPTURE!r}, flow='10.9.9.9:1')", "no TCP connection matches"),
    (f"fasttcp.ladder({CAPTURE!r}, start=float('nan'))", "start must be a finite time"),
    (f"fasttcp.ladder({CAPTURE!r}, start=float('inf'))", "start must be a finite time"),
    (f"fasttcp.ladder({CAPTURE!r}, start=2e9)", "no connection 0"),
    (f"fasttcp.ladder({CAPTURE!r}, verify_checksum=1)", "verify_checksum must be a bool"),
    ("fasttcp.ladder(scenario='reset', width=59)", "width must be 60..1000"),
    ("fasttcp.ladder(scenario='reset', width=10**12)", "width must be 60..1000"),
    ("fasttcp.ladder(scenario='reset', width=-80)", "width must be 60..1000"),
    ("fasttcp.ladder(scenario='reset', width=float('nan'))", "not NaN"),
    ("fasttcp.ladder(scenario='reset', width=80.0)", "width must be an int"),
    ("fasttcp.ladder(scenario='reset', width=True)", "width must be an int"),
    ("fasttcp.ladder(scenario='reset', fmt='png')", "fmt must be one of"),
    ("fasttcp.ladder(scenario='reset', fmt=None)", "fmt must be one of"),
    ("fasttcp.ladder(scenario='reset', ascii='yes')", "ascii must be a bool"),
    ("fasttcp.diagram.Ladder.from_scenario('reset').states('both')", "side must be"),
])
def test_hostile_arguments_raise_usage_error(call, match):
    expect_raises(f"import fasttcp.diagram\n{call}", "UsageError", match)


def test_a_file_that_is_not_a_capture_is_a_capture_error():
    expect_raises("fasttcp.ladder('tests/data/LICENSES.md')", "CaptureError", "not a pcap or pcapng")


def test_a_capture_cut_short_still_draws(tmp_path):
    data = Path(CAPTURE).read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) - 7])
    drawn = expect_ok(f"outcome(fasttcp.ladder({str(cut)!r}, fmt='json').count(chr(10)))")
    assert drawn == "2"


def test_a_reader_object_is_a_source():
    assert expect_ok(f"r = fasttcp.read_pcap({CAPTURE!r})\noutcome(fasttcp.ladder(r, fmt='json').count(chr(10)))") \
        == "3"


def _long_connection_pcap(path: Path, segments: int) -> None:
    """A pcap of one IPv4 connection: a SYN, then `segments` data segments client to
    server (checksums left zero: read it with verify_checksum=False)."""
    import struct

    def frame(seq: int, flags: int, payload: bytes) -> bytes:
        tcp = struct.pack("!HHIIBBHHH", 40000, 80, seq, 0, 5 << 4, flags, 65535, 0, 0) + payload
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0,
                         bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2]))
        return b"\0" * 12 + b"\x08\x00" + ip + tcp

    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    frames = [frame(0, 0x02, b"")] + [frame(1 + 10 * i, 0x18, b"x" * 10) for i in range(segments)]
    for i, f in enumerate(frames):
        out.append(struct.pack("<IIII", 1000, i, len(f), len(f)) + f)
    path.write_bytes(b"".join(out))


def test_a_very_long_connection_is_drawn_up_to_a_cap(tmp_path):
    from fasttcp.diagram import Ladder
    from fasttcp.diagram.capture import MAX_LADDER_PACKETS

    capture = tmp_path / "long.pcap"
    _long_connection_pcap(capture, MAX_LADDER_PACKETS + 50)
    drawn = Ladder.from_capture(capture, verify_checksum=False)
    assert len(drawn.arrows) == MAX_LADDER_PACKETS + 1
    assert drawn.arrows[-1].dir == "=" and "stops after" in drawn.arrows[-1].note
    assert drawn.render("json").count("\n") == MAX_LADDER_PACKETS
