"""Every scenario goes through the states and segments of its RFC 9293 figure; the
expectations are written out here from the RFC, not read back from the drawings."""
from __future__ import annotations

import pytest

from fasttcp.diagram import run_scenario, scenario_names
from fasttcp.errors import UsageError

OPEN = ["CLOSED", "SYN-SENT", "ESTABLISHED"]
ACTIVE_CLOSE = ["FIN-WAIT-1", "FIN-WAIT-2", "TIME-WAIT", "CLOSED"]
PASSIVE = ["LISTEN", "SYN-RECEIVED", "ESTABLISHED"]
PASSIVE_CLOSE = ["CLOSE-WAIT", "LAST-ACK", "CLOSED"]

# scenario: (client states, server states, flags of the segments in order)
EXPECTED = {
    "three-way": (OPEN, PASSIVE, ["SYN", "SYN|ACK", "ACK"]),
    "four-way": (OPEN + ACTIVE_CLOSE, PASSIVE + PASSIVE_CLOSE,
                 ["SYN", "SYN|ACK", "ACK", "ACK", "ACK", "FIN|ACK", "ACK", "FIN|ACK", "ACK"]),
    "half-close": (OPEN + ACTIVE_CLOSE, PASSIVE + PASSIVE_CLOSE,
                   ["SYN", "SYN|ACK", "ACK", "FIN|ACK", "ACK", "ACK", "ACK", "FIN|ACK", "ACK"]),
    "simultaneous-open": (["CLOSED", "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED"],
                          ["CLOSED", "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED"],
                          ["SYN", "SYN", "SYN|ACK", "SYN|ACK", "ACK", "ACK"]),
    "simultaneous-close": ([*OPEN, "FIN-WAIT-1", "CLOSING", "TIME-WAIT", "CLOSED"],
                           [*PASSIVE, "FIN-WAIT-1", "CLOSING", "TIME-WAIT", "CLOSED"],
                           ["SYN", "SYN|ACK", "ACK", "FIN|ACK", "FIN|ACK", "ACK", "ACK"]),
    "old-duplicate-syn": (OPEN, ["LISTEN", "SYN-RECEIVED", "LISTEN", "SYN-RECEIVED", "ESTABLISHED"],
                          ["SYN", "SYN|ACK", "RST", "SYN", "SYN|ACK", "ACK"]),
    "lost-syn": (OPEN, PASSIVE, ["SYN", "SYN", "SYN", "SYN|ACK", "ACK"]),
    "lost-last-ack": (OPEN + ACTIVE_CLOSE, PASSIVE + PASSIVE_CLOSE,
                      ["SYN", "SYN|ACK", "ACK", "FIN|ACK", "ACK", "FIN|ACK", "ACK", "FIN|ACK", "ACK"]),
    "reset": ([*OPEN, "CLOSED"], [*PASSIVE, "CLOSED"], ["SYN", "SYN|ACK", "ACK", "RST"]),
    "refused": (["CLOSED", "SYN-SENT", "CLOSED"], ["CLOSED"], ["SYN", "RST|ACK"]),
}


def test_every_scenario_has_an_expectation():
    assert set(scenario_names()) == set(EXPECTED)
    assert {"three-way", "four-way", "half-close", "simultaneous-open", "simultaneous-close",
            "old-duplicate-syn", "lost-syn", "lost-last-ack", "reset"} <= set(scenario_names())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_states_and_segments_follow_the_rfc_figure(name):
    client, server, flags = EXPECTED[name]
    ladder = run_scenario(name)
    assert ladder.states("client") == client
    assert ladder.states("server") == server
    assert [a.flags for a in ladder.arrows if a.dir != "="] == flags


def test_lost_syn_backs_off_1s_then_2s():                 # RFC 6298 5.5
    syns = [a for a in run_scenario("lost-syn").arrows if a.flags == "SYN"]
    assert [a.t for a in syns] == [0.0, 1.0, 3.0]
    assert [a.marks for a in syns] == [("lost",), ("retransmission", "lost"), ("retransmission",)]
    assert syns[0].timers == ("client RTO 1s",) and syns[1].timers == ("client RTO 2s",)


def test_lost_last_ack_is_answered_from_time_wait_and_restarts_2msl():   # RFC 9293 3.10.7.4
    rows = run_scenario("lost-last-ack").arrows
    lost = next(i for i, a in enumerate(rows) if "lost" in a.marks)
    assert rows[lost].flags == "ACK" and rows[lost].client_state == "TIME-WAIT"
    again, reack = rows[lost + 1], rows[lost + 2]
    assert again.flags == "FIN|ACK" and "retransmission" in again.marks and again.seq == rows[lost - 1].seq
    assert "client 2MSL 60s (restarted)" in again.timers and again.client_state == "TIME-WAIT"
    assert reack.flags == "ACK" and reack.server_state == "CLOSED"
    assert rows[-1].dir == "=" and rows[-1].client_state == "CLOSED"
    assert rows[-1].t == pytest.approx(again.t + 0.010 + 60.0)       # 2·MSL after the re-ACK


def test_old_duplicate_syn_is_reset_by_the_client():       # RFC 9293 figure 8
    rows = [a for a in run_scenario("old-duplicate-syn").arrows if a.dir != "="]
    old, synack, rst = rows[0], rows[1], rows[2]
    assert old.marks == ("old-duplicate",) and old.seq == -10
    assert synack.ack == -9 and rst.flags == "RST" and rst.seq == -9
    assert rst.client_state == "SYN-SENT" and rst.server_state == "LISTEN"
    assert rows[-1].client_state == rows[-1].server_state == "ESTABLISHED"


def test_time_wait_timer_is_two_msl():
    rows = run_scenario("four-way").arrows
    entered = next(a for a in rows if a.client_state == "TIME-WAIT")
    assert "client 2MSL 60s" in entered.timers


def test_unknown_scenario_is_a_usage_error():
    with pytest.raises(UsageError, match="no scenario 'nope'"):
        run_scenario("nope")
