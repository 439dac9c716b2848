"""Ladders from captures: the passive per-side state model on every bundled capture
(no crash, RFC 9293 names only, and the same first closer as the tracker's Zeek
history), and on hand-built captures whose marks and states are known."""
from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

import fasttcp
from fasttcp import Flags
from fasttcp.diagram import from_capture, infer, ladders_from_capture
from fasttcp.diagram.capture import all_connections, select_packets
from fasttcp.errors import UsageError

DATA = Path(__file__).resolve().parents[1] / "data"
BUNDLED = sorted(p for p in DATA.iterdir() if p.suffix in (".pcap", ".pcapng"))
STREAMED_CHECKS = 3             # per capture: connections also drawn by select_packets
RFC_STATES = {"CLOSED", "LISTEN", "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2",
              "CLOSE-WAIT", "CLOSING", "LAST-ACK", "TIME-WAIT"}
C, S = "198.18.0.1", "198.18.0.2"


def _endpoint(host: str, port: int) -> str:
    return f"{host}:{port}" if ipaddress.ip_address(host).version == 4 else f"[{host}]:{port}"


def _tracker_first_closer(path: Path) -> dict[frozenset[str], str]:
    """For each 4-tuple the tracker saw once: the endpoint whose FIN its Zeek history
    shows first (F: the originator's, f: the responder's)."""
    tracker = fasttcp.Tracker(100_000, timeouts="zeek")
    for batch in fasttcp.read_pcap(path):
        tracker.feed_batch(batch)
    records = list(fasttcp.flow_records(tracker.finished())) + list(fasttcp.flow_records(tracker.close()))
    seen: dict[frozenset[str], list[str]] = {}
    for r in records:
        orig, resp = _endpoint(r["orig_h"], r["orig_p"]), _endpoint(r["resp_h"], r["resp_p"])
        fins = [ch for ch in r["history"] if ch in "Ff"]
        seen.setdefault(frozenset((orig, resp)), []).append((orig if fins[0] == "F" else resp) if fins else "")
    return {k: v[0] for k, v in seen.items() if len(v) == 1 and v[0]}


def test_every_bundled_capture_is_drawn_and_agrees_with_the_tracker_on_who_closed_first():
    compared = drawn = 0
    for path in BUNDLED:
        first_closer = _tracker_first_closer(path)
        for n, packets in enumerate(all_connections(path)):
            ladder = infer(packets)
            if n < STREAMED_CHECKS:             # the streaming selection draws the same
                assert from_capture(path, conn=n) == ladder
            drawn += 1
            for a in ladder.arrows:
                assert a.client_state in RFC_STATES and a.server_state in RFC_STATES, (path.name, n, a)
            for fmt in ("text", "mermaid", "svg", "json"):
                assert ladder.render(fmt)
            fin = next((a for a in ladder.arrows if "FIN" in a.flags and "bad-checksum" not in a.marks), None)
            tracker_says = first_closer.get(frozenset((ladder.client, ladder.server)))
            if fin is None or tracker_says is None:
                continue
            ours = ladder.client if fin.dir == ">" else ladder.server
            assert ours == tracker_says, (path.name, n)
            closer_states = ladder.states("client" if fin.dir == ">" else "server")
            # the first closer closes actively: FIN-WAIT-1 (or CLOSING, a crossed FIN), never LAST-ACK
            assert "LAST-ACK" not in closer_states, (path.name, n, closer_states)
            compared += 1
    assert drawn >= 60 and compared >= 25          # the comparison really ran


# ---- hand-built captures ----

def _seg(src, dst, sport, dport, seq, ack=0, flags=Flags.ACK, payload=b"", window=512, options=None):
    return fasttcp.build(src, dst, sport, dport, seq=seq % (1 << 32), ack=ack % (1 << 32), flags=int(flags),
                         window=window, payload=payload, options=options)


def _write(tmp_path: Path, packets: list[bytes], name: str = "t.pcap") -> Path:
    path = tmp_path / name
    fasttcp.write_pcap(path, packets, [1_700_000_000 + i * 0.01 for i in range(len(packets))])
    return path


def _c(seq, ack=0, flags=Flags.ACK, payload=b"", **kw):
    return _seg(C, S, 40000, 80, seq, ack, flags, payload, **kw)


def _s(seq, ack=0, flags=Flags.ACK, payload=b"", **kw):
    return _seg(S, C, 80, 40000, seq, ack, flags, payload, **kw)


SYN_OPTS = dict(mss=1460, wscale=7, sack_permitted=True)
CI, SI = 0xFFFFFF00, 5000                       # the client's ISN crosses the wrap


def test_marks_and_states_of_a_damaged_connection(tmp_path):
    bad = bytearray(_c(CI + 301, SI + 1, payload=b"x" * 10))
    bad[-1] ^= 0xFF                             # after the checksum was written
    packets = [
        _c(CI, flags=Flags.SYN, options=SYN_OPTS),
        _s(SI, CI + 1, Flags.SYN | Flags.ACK, options=SYN_OPTS),
        _c(CI + 1, SI + 1),
        _c(CI + 1, SI + 1, payload=b"a" * 100),
        # CI+101..CI+201 never reaches the capture
        _c(CI + 201, SI + 1, payload=b"c" * 100),
        _s(SI + 1, CI + 101),                   # duplicate ACK: the receiver lacks it too
        _c(CI + 101, SI + 1, payload=b"b" * 100),   # the retransmission
        _s(SI + 1, CI + 301),
        bytes(bad),
        _c(CI + 900_000, SI + 1, payload=b"z" * 10),  # far outside the 65536-byte window
        _c(CI + 301, SI + 1, Flags.FIN | Flags.ACK),
        _s(SI + 1, CI + 302, Flags.FIN | Flags.ACK),
        _c(CI + 302, SI + 2),
    ]
    ladder = from_capture(_write(tmp_path, packets))
    rows = [(a.dir, a.flags, a.seq, a.len, a.marks, a.client_state, a.server_state) for a in ladder.arrows]
    assert rows == [
        (">", "SYN", 0, 0, (), "SYN-SENT", "SYN-RECEIVED"),
        ("<", "SYN|ACK", 0, 0, (), "ESTABLISHED", "SYN-RECEIVED"),
        (">", "ACK", 1, 0, (), "ESTABLISHED", "ESTABLISHED"),
        (">", "ACK", 1, 100, (), "ESTABLISHED", "ESTABLISHED"),
        (">", "?", 101, 100, ("lost",), "ESTABLISHED", "ESTABLISHED"),
        (">", "ACK", 201, 100, (), "ESTABLISHED", "ESTABLISHED"),
        ("<", "ACK", 1, 0, (), "ESTABLISHED", "ESTABLISHED"),
        (">", "ACK", 101, 100, ("retransmission",), "ESTABLISHED", "ESTABLISHED"),
        ("<", "ACK", 1, 0, (), "ESTABLISHED", "ESTABLISHED"),
        (">", "ACK", 301, 10, ("bad-checksum",), "ESTABLISHED", "ESTABLISHED"),
        (">", "ACK", 900_000, 10, ("out-of-window",), "ESTABLISHED", "ESTABLISHED"),
        (">", "FIN|ACK", 301, 0, (), "FIN-WAIT-1", "CLOSE-WAIT"),
        ("<", "FIN|ACK", 1, 0, (), "TIME-WAIT", "LAST-ACK"),
        (">", "ACK", 302, 0, (), "TIME-WAIT", "CLOSED"),
    ]
    assert ladder.arrows[0].options == "mss=1460 ws=7 sack"
    assert ladder.arrows[12].timers == ("client 2MSL",)
    assert ladder.client == f"{C}:40000" and ladder.server == f"{S}:80"
    assert ladder.start == pytest.approx(1_700_000_000)


def test_an_ack_past_a_gap_means_the_capture_missed_it(tmp_path):
    packets = [_c(CI, flags=Flags.SYN), _s(SI, CI + 1, Flags.SYN | Flags.ACK), _c(CI + 1, SI + 1),
               _c(CI + 101, SI + 1, payload=b"b" * 100), _s(SI + 1, CI + 201)]
    rows = from_capture(_write(tmp_path, packets)).arrows
    assert [a.marks for a in rows] == [(), (), (), (), ("acked-unseen",)]


def test_simultaneous_close_and_a_reset_from_the_server(tmp_path):
    close = [_c(CI, flags=Flags.SYN), _s(SI, CI + 1, Flags.SYN | Flags.ACK), _c(CI + 1, SI + 1),
             _c(CI + 1, SI + 1, Flags.FIN | Flags.ACK), _s(SI + 1, CI + 1, Flags.FIN | Flags.ACK),
             _c(CI + 2, SI + 2), _s(SI + 2, CI + 2)]
    ladder = from_capture(_write(tmp_path, close))
    assert ladder.states("client") == ["CLOSED", "SYN-SENT", "ESTABLISHED", "FIN-WAIT-1", "CLOSING", "TIME-WAIT"]
    assert ladder.states("server") == ["LISTEN", "SYN-RECEIVED", "ESTABLISHED", "FIN-WAIT-1", "CLOSING",
                                       "TIME-WAIT"]
    reset = [_c(CI, flags=Flags.SYN), _s(SI, CI + 1, Flags.SYN | Flags.ACK), _c(CI + 1, SI + 1),
             _s(SI + 1 + 10_000_000, 0, Flags.RST),          # out of window: ignored (RFC 5961 3)
             _s(SI + 1, 0, Flags.RST)]
    ladder = from_capture(_write(tmp_path, reset, "r.pcap"))
    assert ladder.arrows[3].marks == ("out-of-window",) and ladder.arrows[3].client_state == "ESTABLISHED"
    assert (ladder.arrows[4].client_state, ladder.arrows[4].server_state) == ("CLOSED", "CLOSED")


def test_refused_connection_server_was_never_listening(tmp_path):
    ladder = from_capture(_write(tmp_path, [_c(CI, flags=Flags.SYN), _s(0, CI + 1, Flags.RST | Flags.ACK)]))
    assert ladder.server_initial == "CLOSED" and ladder.states("server") == ["CLOSED"]
    assert ladder.states("client") == ["CLOSED", "SYN-SENT", "CLOSED"]


def test_connections_are_numbered_in_order_of_first_packet_and_filtered(tmp_path):
    other = [_seg(C, S, 40001, 81, 7, flags=Flags.SYN), _seg(S, C, 81, 40001, 9, 8, Flags.SYN | Flags.ACK)]
    packets = [_c(CI, flags=Flags.SYN), other[0], _s(SI, CI + 1, Flags.SYN | Flags.ACK), other[1]]
    path = _write(tmp_path, packets)
    assert from_capture(path, conn=0).server == f"{S}:80"
    assert from_capture(path, conn=1).server == f"{S}:81"
    assert from_capture(path, flow=":81").client == f"{C}:40001"
    assert from_capture(path, flow=f"{S}:80").client == f"{C}:40000"
    assert from_capture(path, flow=(S, 81, C, 40001)).server == f"{S}:81"
    with pytest.raises(UsageError, match="the capture has 2 TCP connection"):
        from_capture(path, conn=2)
    with pytest.raises(UsageError, match="no TCP connection matches"):
        from_capture(path, flow=":82")


def test_a_reused_four_tuple_is_cut_and_start_picks_the_later_one(tmp_path):
    first = [_c(CI, flags=Flags.SYN), _s(SI, CI + 1, Flags.SYN | Flags.ACK), _c(CI + 1, SI + 1),
             _c(CI + 1, SI + 1, Flags.RST)]
    second = [_c(77, flags=Flags.SYN), _s(99, 78, Flags.SYN | Flags.ACK), _c(78, 100)]
    path = _write(tmp_path, first + second)
    assert len(select_packets(path)) == 4
    later = from_capture(path, flow=(C, 40000, S, 80), start=1_700_000_000 + 4 * 0.01)
    assert [a.flags for a in later.arrows] == ["SYN", "SYN|ACK", "ACK"]
    assert later.states("server") == ["LISTEN", "SYN-RECEIVED", "ESTABLISHED"]


def test_several_connections_in_one_pass_match_one_at_a_time(tmp_path):
    first = [_c(CI, flags=Flags.SYN), _s(SI, CI + 1, Flags.SYN | Flags.ACK), _c(CI + 1, SI + 1),
             _c(CI + 1, SI + 1, Flags.RST)]
    other = [_seg(C, S, 40001, 81, 7, flags=Flags.SYN), _seg(S, C, 81, 40001, 9, 8, Flags.SYN | Flags.ACK)]
    second = [_c(77, flags=Flags.SYN), _s(99, 78, Flags.SYN | Flags.ACK), _c(78, 100)]
    path = _write(tmp_path, first + other + second)
    t0 = 1_700_000_000
    wanted = [((C, 40000, S, 80), t0 + 6 * 0.01), ((S, 81, C, 40001), None), ((C, 1, S, 2), None),
              ((C, 40000, S, 80), t0)]
    got = ladders_from_capture(path, wanted)
    assert got[0] == from_capture(path, flow=wanted[0][0], start=wanted[0][1])
    assert [a.flags for a in got[0].arrows] == ["SYN", "SYN|ACK", "ACK"]
    assert got[1] == from_capture(path, conn=1) and got[2].arrows == []
    assert got[3] == from_capture(path, conn=0) and len(got[3].arrows) == 4
    for bad in ([("x", None)], [((C, 1, S), None)], "nope", [((C, 1, S, 2), float("nan"))]):
        with pytest.raises(UsageError):
            ladders_from_capture(path, bad)


def test_infer_of_nothing_is_an_empty_ladder():
    assert infer([]).arrows == []
