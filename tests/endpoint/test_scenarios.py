"""The endpoint's connection lifecycle, scenario by scenario, as in the RFC 9293 figures.

Each test is a short exchange between the client (198.18.0.1, ISS `C`) and the server
(198.18.0.2:80, ISS `S`) of a `Pair` (tests/scenario.py): segments in, segments out, the
state of each side and the cause of every change after each step. `C` sits 8 below
2**32 and `S` a few thousand below, so these exchanges cross the sequence-number wrap.
Peer segments written by hand (`deliver_to_*` with a template) stand for a peer that
misbehaves, or for one the test needs to control exactly.

Every bug these scenarios found was fixed; the tests that found them stay as
regression tests (the git history has the reproductions).
"""
from __future__ import annotations

import collections
import gc
import ipaddress
import random
import sys
import tracemalloc

import numpy as np
import pytest

import fasttcp
from fasttcp import Flags, State
from fasttcp.endpoint.endpoint import DROP_REASONS, EVENT_DTYPE, Connection, Endpoint
from fasttcp.enums import Cause
from fasttcp.errors import ConnectionStateError, UsageError
from fasttcp.table.table import make_keys
from tests.scenario import (
    ACK,
    ANY,
    CLIENT,
    CLIENT6,
    DATA,
    FIN_ACK,
    RST,
    RST_ACK,
    SEGMENT,
    SERVER,
    SERVER6,
    SERVER_PORT,
    SYN,
    SYN_ACK,
    WRAP,
    Pair,
)

CLOSED, LISTEN, SYN_SENT, SYN_RECEIVED = State.CLOSED, State.LISTEN, State.SYN_SENT, State.SYN_RECEIVED
ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2 = State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2
CLOSE_WAIT, CLOSING, LAST_ACK, TIME_WAIT = State.CLOSE_WAIT, State.CLOSING, State.LAST_ACK, State.TIME_WAIT


def test_compiled_endpoint_loaded():
    import fasttcp.endpoint.endpoint as mod

    assert mod.__file__.endswith((".so", ".pyd")), mod.__file__
    assert DROP_REASONS[0] == "malformed" and EVENT_DTYPE.itemsize >= 48
    with pytest.raises(TypeError):
        Connection()
    with pytest.raises(TypeError):               # final: its C methods are called directly
        type("Sub", (Endpoint,), {})


# ---- the DSL itself ----

def test_pair_isns_straddle_the_wrap(pair):
    pair.connect()
    pair.forward_to_server(SYN(seq=WRAP - 8))
    synack = pair.expect_from_server(SYN_ACK(ack=WRAP - 7))
    assert pair.C == WRAP - 8
    assert 100 <= WRAP - synack.seq <= 3000, "server ISN not near the wrap: calibration() failed"


def test_template_mismatch_shows_both(pair):
    pair.connect()
    with pytest.raises(AssertionError) as info:
        pair.expect_from_client(SYN_ACK(seq=pair.C, ack=1))
    text = str(info.value)
    assert "expected SYN_ACK(seq=" in text and "got" in text and "[SYN]" in text
    assert "flags SYN != SYN|ACK" in text and "ack 0 != 1" in text


# ---- opening: RFC 9293 3.5 ----

def test_three_way_handshake(pair):                       # RFC 9293 figure 6
    cc = pair.connect()                                     # 1. CLOSED -> SYN-SENT
    assert cc.state is SYN_SENT
    assert pair.client_changes() == [(CLOSED, SYN_SENT, Cause.CONNECT)]
    syn = pair.expect_from_client(SYN(seq=pair.C, options=dict(mss=1460, wscale=7, sack_permitted=True)))
    assert syn.options.timestamp[1] == 0                    # RFC 7323 3.2: TSecr 0 on a SYN
    pair.deliver_to_server(syn)                             # 2. LISTEN -> SYN-RECEIVED
    assert pair.sc.state is SYN_RECEIVED
    assert pair.server_changes() == [(LISTEN, SYN_RECEIVED, Cause.SYN_RECEIVED)]
    assert pair.server.accept() is None                     # not yet established
    pair.forward_to_client(SYN_ACK(seq=pair.S, ack=pair.C + 1,
                                   options=dict(mss=1460, wscale=7, sack_permitted=True),
                                   ts=(ANY, syn.options.timestamp[0])))
    assert cc.state is ESTABLISHED                          # 3. SYN-SENT -> ESTABLISHED
    assert pair.client_changes() == [(SYN_SENT, ESTABLISHED, Cause.SYN_ACK_RECEIVED)]
    pair.forward_to_server(ACK(seq=pair.C + 1, ack=pair.S + 1, payload=b""))
    assert pair.server_changes() == [(SYN_RECEIVED, ESTABLISHED, Cause.ACK_OF_SYN)]
    sc = pair.server.accept()                               # 4. SYN-RECEIVED -> ESTABLISHED
    assert sc is pair.sc and sc.state is ESTABLISHED
    assert pair.server.accept() is None
    assert sc.key == (ipaddress.ip_address(SERVER), SERVER_PORT, ipaddress.ip_address(CLIENT), pair.client_port)
    assert cc.key == (ipaddress.ip_address(CLIENT), pair.client_port, ipaddress.ip_address(SERVER), SERVER_PORT)
    assert cc.tcb["snd_una"] == cc.tcb["snd_nxt"] == (pair.C + 1) % WRAP
    assert sc.tcb["rcv_nxt"] == (pair.C + 1) % WRAP and sc.tcb["irs"] == pair.C
    assert cc.tcb["rcv_nxt"] == (pair.S + 1) % WRAP and cc.tcb["irs"] == pair.S
    assert cc.tcb["deadline"] is None and sc.tcb["deadline"] is None   # no timer left running
    pair.expect_nothing_from_client()
    pair.expect_nothing_from_server()


def test_connection_reset_before_accept_is_not_returned(pair):
    pair.connect()
    pair.transfer()                                         # handshake done, not accepted yet
    assert pair.sc.state is ESTABLISHED
    assert pair.deliver_to_server(RST(seq=pair.C + 1)) is None
    assert pair.sc.state is CLOSED and pair.server.accept() is None


def test_negotiated_options_on_both_sides(pair):
    cc, sc = pair.establish()
    for conn in (cc, sc):
        assert conn.mss == 1460
        assert (conn.snd_wscale, conn.rcv_wscale) == (7, 7)
        assert conn.sack_permitted is True and conn.timestamps is True
    assert cc.tcb["snd_wnd"] == 65535 and sc.tcb["snd_wnd"] == (65535 >> 7) << 7
    pair.send(cc, b"x")
    # RFC 7323 2.2: windows after the SYNs are scaled (65535 >> 7); TS on every segment
    pair.expect_from_client(DATA(seq=pair.C + 1, ack=pair.S + 1, payload=b"x", window=511, ts=(ANY, ANY)))


def test_smaller_peer_mss_and_wscale_are_used():
    pair = Pair(client=dict(mss=1000, wscale=2, sack=False))
    cc, sc = pair.establish()
    assert cc.mss == sc.mss == 1000
    assert (cc.snd_wscale, cc.rcv_wscale) == (7, 2)
    assert (sc.snd_wscale, sc.rcv_wscale) == (2, 7)
    assert cc.sack_permitted is False and sc.sack_permitted is False


def test_peer_wscale_above_14_is_clamped(pair):          # RFC 7323 2.3
    pair.deliver_to_server(SYN(seq=WRAP - 3, options=dict(mss=1460, wscale=15, sack_permitted=True),
                               ts=(1000, 0)))
    pair.expect_from_server(SYN_ACK(ack=WRAP - 2, options=dict(wscale=7, sack_permitted=True), ts=(ANY, 1000)))
    assert pair.sc.snd_wscale == 14 and pair.sc.rcv_wscale == 7
    # and on the client side: a SYN-ACK offering 255
    _, cc = pair_client_with_synack(options=dict(mss=1400, wscale=255))
    assert cc.state is ESTABLISHED and cc.snd_wscale == 14 and cc.mss == 1400


def pair_client_with_synack(options, family=4):
    """A client whose SYN is answered by a hand-made SYN-ACK from 'the server'. Returns
    the pair with the connection: a connection lives only as long as its endpoint."""
    p = Pair(family=family)
    cc = p.connect()
    p.drop_next_from_client(SYN(seq=p.C))
    p.deliver_to_client(SYN_ACK(seq=1000, ack=p.C + 1, options=options))
    p.expect_from_client(ACK(seq=p.C + 1, ack=1001))
    return p, cc


@pytest.mark.parametrize("family, default_mss", [(4, 536), (6, 1220)])
def test_peer_without_options(family, default_mss):
    """RFC 9293 3.7.1: no MSS option -> 536 (IPv4) / 1220 (IPv6, RFC 8200 5); no
    wscale, SACK or timestamps unless both SYNs carry them (RFC 7323 1.3, RFC 2018 2)."""
    pair = Pair(family=family)
    pair.deliver_to_server(SYN(seq=WRAP - 1))                     # no options at all
    synack = pair.expect_from_server(SYN_ACK(ack=0, options=dict(mss=1460, wscale=None,
                                                                 sack_permitted=False), ts=None))
    sc = pair.sc
    assert sc.mss == default_mss
    assert (sc.snd_wscale, sc.rcv_wscale) == (0, 0) and not sc.sack_permitted and not sc.timestamps
    pair.deliver_to_server(ACK(seq=0, ack=synack.seq + 1))
    assert pair.server_changes() == [(LISTEN, SYN_RECEIVED, Cause.SYN_RECEIVED),
                                     (SYN_RECEIVED, ESTABLISHED, Cause.ACK_OF_SYN)]
    assert pair.accept() is sc and sc.tcb["snd_wnd"] == 65535        # unscaled
    # the client side: a bare SYN-ACK turns off everything the client offered
    _, cc = pair_client_with_synack(options=None, family=family)
    assert cc.mss == default_mss and (cc.snd_wscale, cc.rcv_wscale) == (0, 0)
    assert not cc.sack_permitted and not cc.timestamps


def test_simultaneous_open(pair):                         # RFC 9293 figure 7
    cc = pair.connect()                                     # 2. A: SYN-SENT
    sc = pair.server.connect(CLIENT, pair.client_port, local_port=SERVER_PORT, now=pair.now)
    pair.sc = sc                                            # 3. B: SYN-SENT
    pair.sync()
    a_syn = pair.expect_from_client(SYN(seq=pair.C))
    b_syn = pair.expect_from_server(SYN(seq=pair.S))
    pair.deliver_to_client(b_syn)                           # 3. A: SYN-RECEIVED
    pair.deliver_to_server(a_syn)                           # 4. B: SYN-RECEIVED
    assert cc.state is SYN_RECEIVED and sc.state is SYN_RECEIVED
    assert pair.client_changes() == [(CLOSED, SYN_SENT, Cause.CONNECT),
                                     (SYN_SENT, SYN_RECEIVED, Cause.SIMULTANEOUS_OPEN)]
    assert pair.server_changes() == [(CLOSED, SYN_SENT, Cause.CONNECT),
                                     (SYN_SENT, SYN_RECEIVED, Cause.SIMULTANEOUS_OPEN)]
    a_synack = pair.expect_from_client(SYN_ACK(seq=pair.C, ack=pair.S + 1))     # 5.
    b_synack = pair.expect_from_server(SYN_ACK(seq=pair.S, ack=pair.C + 1))     # 6.
    # RFC 9293 3.10.7.4 (the text; figure 7 draws ESTABLISHED here): the crossing SYN,ACK
    # lies before RCV.NXT, so it is answered with <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>,
    # and that ACK completes the other side's handshake.
    pair.deliver_to_client(b_synack)
    pair.deliver_to_server(a_synack)
    pair.forward_to_server(ACK(seq=pair.C + 1, ack=pair.S + 1))
    pair.forward_to_client(ACK(seq=pair.S + 1, ack=pair.C + 1))
    assert cc.state is ESTABLISHED and sc.state is ESTABLISHED                   # 7.
    assert pair.client_changes() == [(SYN_RECEIVED, ESTABLISHED, Cause.ACK_OF_SYN)]
    assert pair.server_changes() == [(SYN_RECEIVED, ESTABLISHED, Cause.ACK_OF_SYN)]
    assert pair.server.accept() is None                     # an active open on both sides
    pair.transfer()
    pair.send(cc, b"both ways")
    pair.send(sc, b"at once")
    pair.transfer()
    assert sc.recv() == b"both ways" and cc.recv() == b"at once"


def test_syn_retransmission_backoff_then_give_up(pair):   # RFC 6298 2.1, 5.5
    cc = pair.connect()
    pair.drop_next_from_client(SYN(seq=pair.C))
    retransmits_at = [1, 3, 7, 15, 31, 63]                  # 1 s, doubled each time
    for n, t in enumerate(retransmits_at, 1):
        assert pair.client.next_deadline() == pytest.approx(pair.start + t)
        pair.at(t - 1e-6)
        pair.poll_client()
        pair.expect_nothing_from_client()
        pair.at(t)
        pair.poll_client()
        pair.drop_next_from_client(SYN(seq=pair.C))      # the same ISN every time
        pair.expect_nothing_from_client()
        assert [(e.cause, e.value) for e in pair.take_events("client")][-1] == (Cause.RETRANSMIT, n)
        assert cc.state is SYN_SENT
    # after the 6th retransmission the timer is 64 s, capped at RFC 6298 2.5's 60 s
    give_up = 63 + 60
    assert pair.client.next_deadline() == pytest.approx(pair.start + give_up)
    pair.at(give_up)
    pair.poll_client()
    assert cc.state is CLOSED and cc.reset_cause is Cause.RETRANSMIT_LIMIT
    assert pair.client_changes() == [(SYN_SENT, CLOSED, Cause.RETRANSMIT_LIMIT)]
    pair.expect_nothing_from_client()
    assert len(pair.client) == 0 and pair.client.next_deadline() is None
    assert pair.client.stats["retransmissions"] == 6


def test_synack_retransmission_then_back_to_listen(pair):
    pair.connect()
    pair.forward_to_server(SYN(seq=pair.C))
    pair.drop_next_from_server(SYN_ACK(seq=pair.S, ack=pair.C + 1))
    sc = pair.sc
    for t in [1, 3, 7, 15, 31]:                             # 5 retries (Linux tcp_synack_retries)
        pair.at(t)
        pair.poll_server()
        pair.drop_next_from_server(SYN_ACK(seq=pair.S, ack=pair.C + 1))
        assert sc.state is SYN_RECEIVED
    pair.at(63 - 1e-6)
    pair.poll_server()
    assert sc.state is SYN_RECEIVED
    pair.at(63)
    pair.poll_server()
    pair.expect_nothing_from_server()
    assert sc.state is LISTEN and sc.reset_cause is Cause.RETRANSMIT_LIMIT
    assert [c for c in pair.server_changes() if c[0] != c[1]] == [
        (LISTEN, SYN_RECEIVED, Cause.SYN_RECEIVED), (SYN_RECEIVED, LISTEN, Cause.RETRANSMIT_LIMIT)]
    assert len(pair.server) == 0 and pair.server.accept() is None
    # the entry is gone: the client's late ACK finds only the listener ("any
    # acknowledgment is bad" in LISTEN, RFC 9293 3.10.7.2) and is reset
    assert pair.deliver_to_server(ACK(seq=pair.C + 1, ack=pair.S + 1)) == "no_listener"
    pair.expect_from_server(RST(seq=pair.S + 1))


def test_duplicate_syn_in_syn_received_gets_the_same_synack(pair):
    pair.connect()
    syn = pair.expect_from_client(SYN(seq=pair.C))
    pair.deliver_to_server(syn)
    first = pair.expect_from_server(SYN_ACK(seq=pair.S, ack=pair.C + 1))
    pair.advance(0.5)                                       # the client's copy, or a duplicate
    assert pair.deliver_to_server(syn) is None
    pair.expect_from_server(SYN_ACK(seq=first.seq, ack=pair.C + 1))   # same ISN
    assert pair.sc.state is SYN_RECEIVED and len(pair.server) == 1
    assert pair.server_changes() == [(LISTEN, SYN_RECEIVED, Cause.SYN_RECEIVED)]


def test_unacceptable_ack_in_syn_received_gets_rst(pair):   # RFC 9293 3.10.7.4 fifth
    pair.connect()
    pair.forward_to_server(SYN(seq=pair.C))
    pair.drop_next_from_server(SYN_ACK(seq=pair.S, ack=pair.C + 1))
    for ack in (pair.S, pair.S + 5):                        # not SND.UNA < SEG.ACK =< SND.NXT
        assert pair.deliver_to_server(ACK(seq=pair.C + 1, ack=ack)) == "bad_ack"
        pair.expect_from_server(RST(seq=ack))               # <SEQ=SEG.ACK><CTL=RST>
        assert pair.sc.state is SYN_RECEIVED
    assert pair.deliver_to_server(ACK(seq=pair.C + 1, ack=pair.S + 1)) is None
    assert pair.sc.state is ESTABLISHED


def test_old_duplicate_syn_is_reset(pair):                # RFC 9293 figure 8
    cc = pair.connect()                                     # 2. A sends SYN seq=C ...
    held = pair.hold_from_client(SYN(seq=pair.C))           #    ... which is delayed
    pair.deliver_to_server(SYN(seq=WRAP - 10))              # 3. an old SYN arrives at B
    pair.expect_from_server(SYN_ACK(seq=pair.S, ack=WRAP - 9))          # 4. B answers it
    assert pair.server_changes() == [(LISTEN, SYN_RECEIVED, Cause.SYN_RECEIVED)]
    # 5. A sees an ACK of something it never sent: RST with seq = SEG.ACK
    assert pair.deliver_to_client_last() == "bad_ack"
    pair.expect_from_client(RST(seq=WRAP - 9))
    assert cc.state is SYN_SENT                             # A keeps waiting
    pair.deliver_to_server_last()                           # 6. B is reset: back to LISTEN
    assert pair.server_changes() == [(SYN_RECEIVED, LISTEN, Cause.RST_RECEIVED)]
    assert pair.sc.state is LISTEN and pair.sc.reset_cause is Cause.RST_RECEIVED
    assert len(pair.server) == 0
    pair.release(held)                                      # 7. the real SYN arrives
    assert pair.server_changes() == [(LISTEN, SYN_RECEIVED, Cause.SYN_RECEIVED)]
    pair.forward_to_client(SYN_ACK(seq=pair.S, ack=pair.C + 1))          # 8.
    pair.forward_to_server(ACK(seq=pair.C + 1, ack=pair.S + 1))          # 9.
    assert cc.state is ESTABLISHED and pair.accept().state is ESTABLISHED
    assert pair.client_changes() == [(CLOSED, SYN_SENT, Cause.CONNECT),
                                     (SYN_SENT, ESTABLISHED, Cause.SYN_ACK_RECEIVED)]


def test_stale_syn_on_established_connection_gets_an_ack(pair):
    cc, sc = pair.establish()
    before = sc.tcb
    # an old SYN outside the window: RFC 9293 3.10.7.4 first check -> ACK, drop
    assert pair.deliver_to_server(SYN(seq=WRAP - 10)) == "unacceptable"
    pair.expect_from_server(ACK(seq=pair.S + 1, ack=pair.C + 1))
    # a SYN inside the window: RFC 5961 4.2 challenge ACK, drop
    assert pair.deliver_to_server(SYN(seq=pair.C + 5)) == "syn_challenged"
    pair.expect_from_server(ACK(seq=pair.S + 1, ack=pair.C + 1))
    assert sc.state is ESTABLISHED and sc.tcb == before
    assert pair.server_changes() == []
    assert pair.server.stats["challenge_acks"] == 1
    pair.send(cc, b"still here")
    pair.transfer()
    assert sc.recv() == b"still here"


# ---- data: RFC 9293 3.8, RFC 6298 ----

def test_data_in_order_both_directions(pair):
    cc, sc = pair.establish()
    pair.send(cc, b"GET / HTTP/1.0\r\n\r\n")
    pair.forward_to_server(DATA(seq=pair.C + 1, ack=pair.S + 1, payload=b"GET / HTTP/1.0\r\n\r\n"))
    assert [(e.cause, e.value) for e in pair.take_events("server")] == [(Cause.DATA, 18)]
    pair.forward_to_client(ACK(seq=pair.S + 1, ack=pair.C + 19, payload=b""))
    assert sc.recv() == b"GET / HTTP/1.0\r\n\r\n" and sc.recv() == b""
    body = b"HTTP/1.0 200 OK\r\n\r\n" + bytes(range(256)) * 16            # 4115 bytes
    pair.send(sc, body)
    sent = 0
    while sent < len(body):                                 # MSS-sized pieces, each ACKed
        pair.forward_to_client(DATA(seq=pair.S + 1 + sent, ack=pair.C + 19))
        seg = pair.last_segment("server")
        assert bytes(seg.payload) == body[sent:sent + seg.payload_len]
        sent += seg.payload_len
        pair.forward_to_server(ACK(seq=pair.C + 19, ack=pair.S + 1 + sent))
    assert cc.recv(5) == body[:5] and cc.recv() == body[5:]
    assert cc.tcb["snd_una"] == cc.tcb["snd_nxt"] == (pair.C + 19) % WRAP          # past the wrap
    assert sc.tcb["snd_una"] == sc.tcb["snd_nxt"] == (pair.S + 1 + len(body)) % WRAP
    assert pair.S + 1 + len(body) > WRAP                    # the server's side wrapped too
    assert cc.bytes_sent == 18 and sc.bytes_received == 18
    assert pair.client.next_deadline() is None and pair.server.next_deadline() is None


def test_acknowledged_bytes_leave_the_send_buffer(pair):
    cc, sc = pair.establish()
    pair.send(cc, b"x" * 1000)
    assert cc.pending == 1000                               # in flight
    pair.forward_to_server(DATA(payload=b"x" * 1000))
    pair.forward_to_client(ACK(ack=pair.C + 1001))
    assert cc.pending == 0                                  # acknowledged: released


def test_large_send_is_segmented_by_mss():
    pair = Pair(timestamps=False)                           # segment = MSS bytes exactly
    cc, sc = pair.establish()
    data = bytes(random.Random(1).randbytes(3 * 1460 + 100))
    pair.send(cc, data)
    for i, size in enumerate([1460, 1460, 1460, 100]):
        pair.forward_to_server(DATA(seq=pair.C + 1 + 1460 * i, ack=pair.S + 1,
                                    payload=data[1460 * i:1460 * i + size]))
        pair.forward_to_client(ACK(ack=pair.C + 1 + 1460 * i + size))
    pair.expect_nothing_from_client()
    assert sc.recv() == data
    # and the other way, with a smaller MSS offered by the client
    pair2 = Pair(timestamps=False, client=dict(mss=536))
    cc2, sc2 = pair2.establish()
    pair2.send(sc2, data)
    sizes = [fasttcp.parse(p).payload_len for p in pair2.outbox["server"]]
    assert sizes == [536] * 8 + [len(data) - 8 * 536]
    pair2.transfer()
    assert cc2.recv() == data


def test_segments_leave_room_for_options(pair):
    cc, sc = pair.establish()
    pair.send(cc, bytes(4000))
    while pair.client.pending_transmit or pair.outbox["client"]:
        seg = pair.expect_from_client(DATA())
        # RFC 9293 3.7.1: Eff.snd.MSS = min(SendMSS+20, MMS_S) - TCPhdrsize - IPoptionsize
        assert seg.header_len + seg.payload_len <= 1460 + 20, seg
        assert seg.payload_len <= 1448, seg


def test_sender_respects_the_peer_window():
    pair = Pair(timestamps=False, server=dict(wscale=None))     # unscaled windows
    cc, sc = pair.establish()
    # the peer closes its window (an ACK advancing SND.WL1: RFC 9293 3.10.7.4 window update)
    pair.deliver_to_client(ACK(seq=pair.S + 1, ack=pair.C + 1, window=0))
    assert cc.tcb["snd_wnd"] == 0
    pair.send(cc, bytes(range(200)) * 20)                   # 4000 bytes queued
    pair.expect_nothing_from_client()                       # zero window: nothing goes out
    pair.deliver_to_client(ACK(seq=pair.S + 1, ack=pair.C + 1, window=2000))
    pair.expect_from_client(DATA(seq=pair.C + 1, payload=(bytes(range(200)) * 20)[:1460]))
    pair.expect_from_client(DATA(seq=pair.C + 1461, payload=(bytes(range(200)) * 20)[1460:2000]))
    pair.expect_nothing_from_client()                       # 2000 in flight = the window
    pair.deliver_to_client(ACK(seq=pair.S + 1, ack=pair.C + 2001, window=1000))
    pair.expect_from_client(DATA(seq=pair.C + 2001, payload=(bytes(range(200)) * 20)[2000:3000]))
    pair.expect_nothing_from_client()
    pair.deliver_to_client(ACK(seq=pair.S + 1, ack=pair.C + 3001, window=65535))
    pair.expect_from_client(DATA(seq=pair.C + 3001, payload=(bytes(range(200)) * 20)[3000:]))
    assert cc.pending == 1000


def test_receiver_advertises_its_buffer_as_the_window():
    pair = Pair(timestamps=False, server=dict(window=2920, wscale=None))
    cc, sc = pair.establish()
    pair.send(cc, bytes(4000))
    pair.forward_to_server(DATA(seq=pair.C + 1, payload=bytes(1460)))
    pair.forward_to_client(ACK(ack=pair.C + 1461, window=1460))     # 1460 buffered, unread
    pair.forward_to_server(DATA(seq=pair.C + 1461, payload=bytes(1460)))
    pair.forward_to_client(ACK(ack=pair.C + 2921, window=0))        # full: zero window
    pair.expect_nothing_from_client()
    assert len(sc.recv()) == 2920                            # the application reads: window update
    pair.forward_to_client(ACK(ack=pair.C + 2921, window=2920))
    pair.forward_to_server(DATA(seq=pair.C + 2921, payload=bytes(1080)))


def test_zero_window_is_probed():
    """RFC 9293 3.8.6.1, RFC 1122 4.2.2.17: while the peer's window stays closed and data
    waits, the persist timer probes it, backing off as the RTO does. A probe is an empty
    ACK one below SND.UNA (Linux's tcp_xmit_probe_skb): old at the peer, which answers
    with its window; SND.NXT stays at SND.UNA."""
    pair = Pair(timestamps=False, server=dict(wscale=None))
    cc, sc = pair.establish()
    pair.deliver_to_client(ACK(seq=pair.S + 1, ack=pair.C + 1, window=2920))
    pair.send(cc, bytes(3000))                              # 2920 go out, 80 wait for the window
    pair.drop_next_from_client(DATA(seq=pair.C + 1))
    pair.drop_next_from_client(DATA(seq=pair.C + 1461))
    # the peer acknowledges everything and closes its window; its later window update is lost
    pair.deliver_to_client(ACK(seq=pair.S + 1, ack=pair.C + 2921, window=0))
    pair.expect_nothing_from_client()
    assert cc.pending == 80 and cc.tcb["snd_una"] == cc.tcb["snd_nxt"]
    probes = []
    for t in (1, 3, 7, 15, 31, 63):
        pair.at(t)
        pair.poll_client()
        probes += [(t, fasttcp.parse(p)) for p in pair.outbox["client"]]
        pair.outbox["client"].clear()
    assert [t for t, _ in probes] == [1, 3, 7, 15, 31, 63]          # RTO 1 s, doubling
    for _, p in probes:
        assert p.flags == Flags.ACK and p.payload == b"" and p.seq == (pair.C + 2920) % WRAP
    assert cc.tcb["snd_nxt"] == (pair.C + 2921) % WRAP and cc.bytes_sent == 2920


def test_a_probe_is_answered_with_the_window_and_the_data_follows():
    """The probe is old at the receiver: it answers with an ACK at its RCV.NXT carrying
    its window. The ACKs that cross the probe, the sender's ACKs of the peer's own data
    above all, carry SEQ = SND.NXT = the peer's RCV.NXT, which a closed window takes
    (RFC 9293 table 6), so they are read there (since 6.17 Linux drops, whole, any
    segment ending past its window while data waits unread)."""
    pair = Pair(timestamps=False, server=dict(window=1460, wscale=None))
    cc, sc = pair.establish()
    pair.send(cc, bytes(1460) + b"more")
    pair.forward_to_server(DATA(seq=pair.C + 1, payload=bytes(1460)))     # buffered, unread
    assert pair.forward_to_client(ACK(ack=pair.C + 1461, window=0)) is None
    pair.expect_nothing_from_client()                                   # window closed
    pair.at(1.0)                                                        # the persist timer
    pair.poll_client()
    probe = pair.expect_from_client(ACK(seq=pair.C + 1460, ack=pair.S + 1))
    assert pair.deliver_to_server(probe) == "unacceptable"              # old: answered
    assert pair.forward_to_client(ACK(seq=pair.S + 1, ack=pair.C + 1461, window=0)) is None
    assert cc.tcb["snd_nxt"] == (pair.C + 1461) % WRAP
    # the server's application answers meanwhile: the client's ACK is read
    pair.send(sc, b"response")
    assert pair.forward_to_client(DATA(seq=pair.S + 1, payload=b"response")) is None
    assert pair.forward_to_server(ACK(seq=pair.C + 1461, ack=pair.S + 9)) is None
    assert sc.tcb["snd_una"] == (pair.S + 9) % WRAP
    pair.expect_nothing_from_server()
    # the application reads: the window update brings the rest at once
    assert len(sc.recv()) == 1460
    assert pair.forward_to_client(ACK(seq=pair.S + 9, ack=pair.C + 1461, window=1460)) is None
    assert pair.forward_to_server(DATA(seq=pair.C + 1461, payload=b"more")) is None
    assert sc.recv() == b"more"


def test_a_lost_window_update_is_recovered_by_the_probe():
    """The receiver's window update is lost: the next probe's answer carries the open
    window, and the data goes out."""
    pair = Pair(timestamps=False, server=dict(window=1460, wscale=None))
    cc, sc = pair.establish()
    pair.send(cc, bytes(1460) + b"more")
    pair.forward_to_server(DATA(seq=pair.C + 1, payload=bytes(1460)))
    assert pair.forward_to_client(ACK(ack=pair.C + 1461, window=0)) is None
    assert len(sc.recv()) == 1460
    pair.drop_next_from_server(ACK(ack=pair.C + 1461, window=1460))     # the update, lost
    pair.at(1.0)
    pair.poll_client()
    assert pair.forward_to_server(ACK(seq=pair.C + 1460)) == "unacceptable"
    assert pair.forward_to_client(ACK(ack=pair.C + 1461, window=1460)) is None
    assert pair.forward_to_server(DATA(seq=pair.C + 1461, payload=b"more")) is None
    assert sc.recv() == b"more"


def test_the_ack_field_of_an_old_segment_is_read():
    """A segment whose octets all arrived before is old (RFC 9293 3.10.7.4, first check):
    answered and dropped, but its ACK field is read first, as BSD reads it. The request
    and the response cross, and both their ACKs are lost: the client's retransmission of
    the request carries the ACK of the response, which the server takes instead of
    resending the response."""
    pair = Pair(timestamps=False, server=dict(wscale=None))
    cc, sc = pair.establish()
    pair.send(cc, b"request")
    request = pair.hold_from_client(DATA(seq=pair.C + 1, ack=pair.S + 1, payload=b"request"))
    pair.send(sc, b"response")
    assert pair.forward_to_client(DATA(seq=pair.S + 1, ack=pair.C + 1, payload=b"response")) is None
    pair.drop_next_from_client(ACK(seq=pair.C + 8, ack=pair.S + 9))
    assert pair.release(request) is None
    pair.drop_next_from_server(ACK(seq=pair.S + 9, ack=pair.C + 8))
    pair.at(1.0)
    pair.poll_client()                                                  # the client's RTO
    assert pair.forward_to_server(DATA(seq=pair.C + 1, ack=pair.S + 9, payload=b"request")) == "unacceptable"
    assert sc.tcb["snd_una"] == (pair.S + 9) % WRAP                     # its ACK was read
    assert pair.server.next_deadline() is None                          # nothing to resend
    assert pair.forward_to_client(ACK(seq=pair.S + 9, ack=pair.C + 8)) is None
    assert pair.client.next_deadline() is None
    pair.poll_server()
    pair.expect_nothing_from_server()
    assert sc.recv() == b"request" and cc.recv() == b"response"


def test_the_ack_field_of_an_old_empty_segment_is_read():
    """A pure ACK whose SEQ is below RCV.NXT -- its sender's view of our window is stale
    (our window update lost, a reordered zero-window ACK taken over a newer one) -- is
    old: answered and dropped, its ACK field read. Refused whole, the server would never
    learn its data arrived. Its window may open ours, never close it: an old segment
    does not move the window's edge back."""
    pair = Pair(timestamps=False, server=dict(wscale=None))
    cc, sc = pair.establish()
    pair.send(cc, b"request")
    assert pair.forward_to_server(DATA(seq=pair.C + 1, payload=b"request")) is None
    pair.drop_next_from_server(ACK(ack=pair.C + 8))
    pair.send(sc, b"response")
    pair.drop_next_from_server(DATA(seq=pair.S + 1, payload=b"response"))
    assert sc.tcb["snd_wnd"] == 65535
    # the client's ACK of the response, from a client whose view of the window is stale
    assert pair.deliver_to_server(ACK(seq=pair.C + 4, ack=pair.S + 9, window=0)) == "unacceptable"
    assert sc.tcb["snd_una"] == (pair.S + 9) % WRAP                    # its ACK was read
    assert sc.tcb["snd_wnd"] == 65535 - 8                               # its window not taken:
                                                                        # the edge stays at S + 1 + 65535
    pair.expect_from_server(ACK(seq=pair.S + 9, ack=pair.C + 8))        # the answer
    assert pair.server.next_deadline() is None                          # nothing left to resend


def test_an_old_segment_is_still_checked():
    """Reading an old segment's ACK keeps RFC 5961's limits: an ACK of data not yet sent
    is answered as such, and a segment older than the receive window, or any old one
    while the window is closed, is only answered."""
    pair = Pair(timestamps=False, server=dict(window=1460, wscale=None))
    cc, sc = pair.establish()
    pair.send(cc, b"x" * 100)
    assert pair.forward_to_server(DATA(payload=b"x" * 100)) is None     # unread: RCV.WND 1360
    assert pair.forward_to_client(ACK(ack=pair.C + 101, window=1360)) is None
    pair.send(sc, b"y" * 50)
    pair.drop_next_from_server(DATA(payload=b"y" * 50))
    assert pair.deliver_to_server(ACK(seq=pair.C + 50, ack=pair.S + 1000)) == "bad_ack"
    assert pair.deliver_to_server(ACK(seq=pair.C + 101 - 1361, ack=pair.S + 51)) == "unacceptable"
    assert sc.tcb["snd_una"] == (pair.S + 1) % WRAP
    assert pair.deliver_to_server(ACK(seq=pair.C + 101 - 1360, ack=pair.S + 26)) == "unacceptable"
    assert sc.tcb["snd_una"] == (pair.S + 26) % WRAP
    # the window closes: old segments are only answered
    pair.send(cc, b"z" * 1360)
    assert pair.forward_to_server(DATA(seq=pair.C + 101, payload=b"z" * 1360)) is None
    assert sc.tcb["rcv_wnd"] == 0
    assert pair.deliver_to_server(ACK(seq=pair.C + 1460, ack=pair.S + 51)) == "unacceptable"
    assert sc.tcb["snd_una"] == (pair.S + 26) % WRAP


def test_an_ack_at_the_right_edge_of_the_window_is_read():
    """The client's flight filled the server's window and was lost: the client's pure
    ACKs carry SEQ = SND.NXT = the server's RCV.NXT + RCV.WND. RFC 9293 table 6 puts an
    empty segment there just outside the window; Linux and BSD take it (Linux's
    tcp_sequence), and the server must, or it never reads the ACK of its own data and
    each side answers the other's refused ACKs."""
    pair = Pair(timestamps=False, server=dict(window=2920, wscale=None))
    cc, sc = pair.establish()
    pair.send(cc, bytes(2920))
    pair.drop_next_from_client(DATA(seq=pair.C + 1))
    pair.drop_next_from_client(DATA(seq=pair.C + 1461))
    pair.send(sc, b"response")
    assert pair.forward_to_client(DATA(seq=pair.S + 1, payload=b"response")) is None
    assert pair.forward_to_server(ACK(seq=pair.C + 2921, ack=pair.S + 9)) is None
    assert sc.tcb["snd_una"] == (pair.S + 9) % WRAP
    pair.expect_nothing_from_server()
    # a RST there stays outside, dropped silently (RFC 5961 3.2)
    assert pair.deliver_to_server(RST(seq=pair.C + 2921)) == "rst_invalid"


def test_acks_stay_at_snd_nxt_when_the_window_only_rounded_down():
    """A receiver with a 20,000-byte buffer and window scale 7 offers 19,968 bytes, then,
    1,460 bytes later, floor(18,540 / 128) * 128 = 18,432: its right edge moved left by
    76 bytes, less than one unit of the scale. The sender's pure ACKs keep SEQ = SND.NXT
    (as Linux's tcp_acceptable_seq does within a unit): the peer got everything, and
    the stale edge would be an old sequence number there, refused with its ACK field."""
    pair = Pair(timestamps=False, client=dict(window=20000), server=dict(window=20000))
    cc, sc = pair.establish()
    pair.send(cc, bytes(19968))
    flight = [pair.hold_from_client(DATA(seq=pair.C + 1 + 1460 * k)) for k in range(14)]
    pair.send(sc, b"response")                                          # crosses the flight
    response = pair.hold_from_server(DATA(seq=pair.S + 1, ack=pair.C + 1, payload=b"response"))
    for seg in flight:
        assert pair.release(seg) is None
    assert pair.forward_to_client(ACK(ack=pair.C + 1461, window=144)) is None   # 18,432: edge C + 19,893
    pair.outbox["server"].clear()                                      # the later ACKs are lost
    assert 0 < (cc.tcb["snd_nxt"] - cc.tcb["snd_una"] - cc.tcb["snd_wnd"]) % WRAP < 128
    assert pair.release(response) is None
    assert pair.forward_to_server(ACK(seq=pair.C + 19969, ack=pair.S + 9)) is None
    assert sc.tcb["snd_una"] == (pair.S + 9) % WRAP


def test_a_stale_zero_window_ack_does_not_stop_the_flight():
    """A duplicate of an old zero-window ACK arriving after the window reopened closes
    it again (it passes the SND.WL1/SND.WL2 rule); the data already sent is still
    acknowledged when the peer's ACK of it comes, and the rest follows."""
    pair = Pair(timestamps=False, server=dict(window=1460, wscale=None))
    cc, sc = pair.establish()
    pair.send(cc, bytes(2920))
    pair.forward_to_server(DATA(seq=pair.C + 1, payload=bytes(1460)))     # unread
    closed = pair.hold_from_server(ACK(ack=pair.C + 1461, window=0))
    pair.release(closed)
    assert len(sc.recv()) == 1460
    pair.forward_to_client(ACK(ack=pair.C + 1461, window=1460))          # the window update
    second = pair.hold_from_client(DATA(seq=pair.C + 1461, payload=bytes(1460)))
    assert pair.release(closed) is None                                 # the old ACK again
    assert cc.tcb["snd_wnd"] == 0
    assert pair.release(second) is None
    assert pair.forward_to_client(ACK(ack=pair.C + 2921)) is None       # acceptable: all acked
    assert cc.tcb["snd_una"] == (pair.C + 2921) % WRAP and cc.pending == 0
    assert len(sc.recv()) == 1460


def test_retransmission_on_rto_and_karn(pair):            # RFC 6298 5, Karn's algorithm
    cc, sc = pair.establish()
    assert cc.rto == 1.0 and cc.srtt is None                # RFC 6298 2.1: 1 s before any sample
    pair.send(cc, b"lost once")
    pair.drop_next_from_client(DATA(seq=pair.C + 1, payload=b"lost once"))
    assert pair.client.next_deadline() == pytest.approx(pair.start + 1.0)
    pair.at(1.0 - 1e-6)
    pair.poll_client()
    pair.expect_nothing_from_client()
    pair.at(1.0)
    pair.poll_client()                                      # RTO: the same bytes again
    pair.expect_from_client(DATA(seq=pair.C + 1, ack=pair.S + 1, payload=b"lost once"))
    pair.expect_nothing_from_client()
    assert [(e.cause, e.value) for e in pair.take_events("client")] == [(Cause.RETRANSMIT, 1)]
    assert cc.rto == 2.0                                    # RFC 6298 5.5: back off
    assert pair.client.next_deadline() == pytest.approx(pair.start + 3.0)
    pair.at(1.25)
    pair.deliver_to_server_last()
    pair.forward_to_client(ACK(ack=pair.C + 10))
    # Karn: the ACK of a retransmitted segment is no RTT sample; the backed-off RTO stays
    assert cc.srtt is None and cc.rto == 2.0
    assert sc.recv() == b"lost once"
    assert pair.client.next_deadline() is None              # RFC 6298 5.2: all acknowledged
    assert pair.client.stats["retransmissions"] == 1 and cc.retransmits_data == 1


def _flight_of_three(pair):
    """The client sends 3,500 bytes, three segments, which all reach the server; the
    server's ACKs are held. Returns the data and the held ACKs."""
    cc, sc = pair.establish()
    data = bytes(range(250)) * 14
    pair.send(cc, data)
    acks = []
    for lo, hi in ((0, 1460), (1460, 2920), (2920, 3500)):
        assert pair.forward_to_server(DATA(seq=pair.C + 1 + lo, payload=data[lo:hi])) is None
        acks.append(pair.hold_from_server(ACK(ack=pair.C + 1 + hi)))
    pair.expect_nothing_from_client()
    return cc, sc, data, acks


def _flight_lost_then_rto():
    """The client's flight of three segments (3,500 bytes) is lost; at the RTO the first
    is resent and reaches the server. Returns the pair, both connections and the data."""
    pair = Pair(timestamps=False, server=dict(wscale=None))
    cc, sc = pair.establish()
    data = bytes(range(250)) * 14
    pair.send(cc, data)
    for lo in (0, 1460, 2920):
        pair.drop_next_from_client(DATA(seq=pair.C + 1 + lo))
    pair.at(1.0)
    pair.poll_client()
    assert pair.forward_to_server(DATA(seq=pair.C + 1, payload=data[:1460])) is None
    return pair, cc, sc, data


def test_rto_goes_back_n_as_acks_return():                # RFC 6298 5.4
    """The whole flight is lost: the RTO resends its first segment; the ACK of that one
    brings the rest of the flight at once, as far as the window allows, not one segment
    per (doubling) timeout."""
    pair, cc, sc, data = _flight_lost_then_rto()
    pair.expect_nothing_from_client()
    assert cc.tcb["snd_nxt"] == (pair.C + 3501) % WRAP          # SND.NXT stays past the flight
    assert pair.forward_to_client(ACK(ack=pair.C + 1461)) is None
    assert pair.forward_to_server(DATA(seq=pair.C + 1461, payload=data[1460:2920])) is None
    assert pair.forward_to_server(DATA(seq=pair.C + 2921, payload=data[2920:])) is None
    pair.expect_nothing_from_client()
    assert pair.forward_to_client(ACK(ack=pair.C + 2921)) is None
    assert pair.forward_to_client(ACK(ack=pair.C + 3501)) is None
    assert sc.recv() == data and cc.pending == 0
    assert cc.retransmits_data == 3 and pair.client.stats["retransmissions"] == 3
    assert cc.bytes_sent == 3500                                # first transmissions only
    assert pair.client.next_deadline() is None


def test_a_late_ack_of_the_flight_after_an_rto_is_accepted():
    """The flight arrived but its ACKs were slow: the RTO resends the first segment, then
    the ACK of the whole flight arrives. It acknowledges data that was sent (RFC 9293
    3.10.7.4 fifth check), so it is taken, and nothing more is resent. (A sender that
    moved SND.NXT back to resend the flight would call it an ACK of something not yet
    sent, answer it and drop it; between two such senders the answers never stop.)"""
    pair = Pair(timestamps=False, server=dict(wscale=None))
    cc, sc, data, acks = _flight_of_three(pair)
    pair.at(1.0)
    pair.poll_client()
    resent = pair.hold_from_client(DATA(seq=pair.C + 1, payload=data[:1460]))
    pair.expect_nothing_from_client()
    assert pair.release(acks[2]) is None                        # not "bad_ack"
    assert cc.tcb["snd_una"] == (pair.C + 3501) % WRAP and cc.pending == 0
    pair.expect_nothing_from_client()                            # the flight is not resent
    assert pair.client.next_deadline() is None
    assert pair.client.stats["drops"]["bad_ack"] == 0
    assert pair.release(acks[0]) is None and pair.release(acks[1]) is None   # old: ignored
    pair.expect_nothing_from_client()
    # the resent copy reaches the server: an old duplicate, answered by an ACK of everything
    assert pair.release(resent) == "unacceptable"
    assert pair.forward_to_client(ACK(ack=pair.C + 3501)) is None
    pair.expect_nothing_from_client()
    assert sc.recv() == data


def test_a_late_partial_ack_after_an_rto_resends_only_the_rest():
    """After the RTO's resend, an ACK of the first two segments arrives: only the third is
    sent again, and then new data follows."""
    pair = Pair(timestamps=False, server=dict(wscale=None))
    cc, sc, data, acks = _flight_of_three(pair)
    pair.at(1.0)
    pair.poll_client()
    pair.drop_next_from_client(DATA(seq=pair.C + 1, payload=data[:1460]))
    pair.send(cc, b"new")                                       # waits behind the resent flight
    pair.expect_nothing_from_client()
    assert pair.release(acks[1]) is None
    pair.expect_from_client(DATA(seq=pair.C + 2921, payload=data[2920:]))
    pair.expect_from_client(DATA(seq=pair.C + 3501, payload=b"new"))
    pair.expect_nothing_from_client()
    assert cc.retransmits_data == 2 and cc.bytes_sent == 3503


def test_close_during_go_back_n_sends_the_fin_after_the_resent_flight():
    """close() while the flight waits to be resent: the FIN goes after it, on no
    segment of its own before the resent octets."""
    pair, cc, sc, data = _flight_lost_then_rto()
    pair.close(cc)
    pair.expect_nothing_from_client()
    assert cc.state == ESTABLISHED
    assert pair.forward_to_client(ACK(ack=pair.C + 1461)) is None
    assert pair.forward_to_server(DATA(seq=pair.C + 1461, payload=data[1460:2920])) is None
    assert pair.forward_to_server(DATA(seq=pair.C + 2921, payload=data[2920:])) is None
    assert pair.forward_to_server(FIN_ACK(seq=pair.C + 3501)) is None
    pair.expect_nothing_from_client()
    assert cc.state == FIN_WAIT_1
    assert sc.recv() == data and sc.state == CLOSE_WAIT


def test_go_back_n_after_the_fin_resends_the_flight_and_the_fin():
    """The last flight and the FIN after it are lost: in FIN-WAIT-1 the flight is resent
    as in ESTABLISHED, the FIN on its last segment, not one segment per (doubling)
    timeout."""
    pair = Pair(timestamps=False, server=dict(wscale=None))
    cc, sc = pair.establish()
    data = bytes(range(250)) * 14
    pair.send(cc, data)
    pair.close(cc)
    for lo in (0, 1460, 2920):
        pair.drop_next_from_client(DATA(seq=pair.C + 1 + lo))
    pair.drop_next_from_client(FIN_ACK(seq=pair.C + 3501))
    assert cc.state == FIN_WAIT_1
    pair.at(1.0)
    pair.poll_client()
    assert pair.forward_to_server(DATA(seq=pair.C + 1, payload=data[:1460])) is None
    pair.expect_nothing_from_client()
    assert pair.forward_to_client(ACK(ack=pair.C + 1461)) is None
    assert pair.forward_to_server(DATA(seq=pair.C + 1461, payload=data[1460:2920])) is None
    pair.expect_from_client(SEGMENT(Flags.FIN | Flags.PSH | Flags.ACK, seq=pair.C + 2921, payload=data[2920:]))
    pair.expect_nothing_from_client()
    assert pair.deliver_to_server_last() is None
    assert pair.forward_to_client(ACK(ack=pair.C + 2921)) is None
    assert pair.forward_to_client(ACK(ack=pair.C + 3502)) is None
    assert cc.state == FIN_WAIT_2 and sc.state == CLOSE_WAIT and sc.recv() == data
    assert cc.retransmits_data == 3


def _rtt_sample(pair, cc, rtt):
    pair.send(cc, b"ping")
    pair.forward_to_server(DATA(payload=b"ping"))
    pair.advance(rtt)
    pair.forward_to_client(ACK())
    pair.sc.recv()


def test_rto_follows_the_rfc6298_estimator(pair):
    cc, sc = pair.establish()
    _rtt_sample(pair, cc, 0.5)                              # 2.2: SRTT = R, RTTVAR = R/2
    assert cc.srtt == pytest.approx(0.5) and cc.rto == pytest.approx(0.5 + 4 * 0.25)
    srtt, rttvar = 0.5, 0.25
    for r in (1.5, 0.1, 0.3):                               # 2.3, beta = 1/4, alpha = 1/8
        _rtt_sample(pair, cc, r)
        rttvar = 0.75 * rttvar + 0.25 * abs(srtt - r)
        srtt = 0.875 * srtt + 0.125 * r
        assert cc.srtt == pytest.approx(srtt, abs=1e-5)
        assert cc.rto == pytest.approx(max(1.0, srtt + 4 * rttvar), abs=1e-5)
    # Karn: a retransmitted segment is not timed; the RTO backs off (5.5) and stays so
    rto = cc.rto
    pair.send(cc, b"lost")
    pair.drop_next_from_client(DATA(payload=b"lost"))
    pair.advance(rto)
    pair.poll_client()
    pair.forward_to_server(DATA(payload=b"lost"))
    pair.advance(0.05)
    pair.forward_to_client(ACK())
    assert cc.srtt == pytest.approx(srtt, abs=1e-5) and cc.rto == pytest.approx(2 * rto, abs=1e-5)
    _rtt_sample(pair, cc, 0.2)                              # the next clean sample counts again
    rttvar = 0.75 * rttvar + 0.25 * abs(srtt - 0.2)
    srtt = 0.875 * srtt + 0.125 * 0.2
    assert cc.srtt == pytest.approx(srtt, abs=1e-5)
    assert cc.rto == pytest.approx(max(1.0, srtt + 4 * rttvar), abs=1e-5)
    # 2.4: never below 1 s
    p2 = Pair()
    c2, _ = p2.establish()
    for _ in range(5):
        _rtt_sample(p2, c2, 0.01)
    assert c2.srtt == pytest.approx(0.01, abs=1e-3) and c2.rto == 1.0


def test_out_of_order_segment_is_dropped_and_reacked():
    pair = Pair(timestamps=False)
    cc, sc = pair.establish()
    pair.send(cc, b"a" * 1460 + b"b" * 1460)
    first = pair.hold_from_client(DATA(seq=pair.C + 1, payload=b"a" * 1460))
    # a hole before it: not reassembled, re-ACKed so the sender learns RCV.NXT
    assert pair.forward_to_server(DATA(seq=pair.C + 1461, payload=b"b" * 1460)) == "out_of_order"
    pair.expect_from_server(ACK(seq=pair.S + 1, ack=pair.C + 1))
    assert sc.recv() == b"" and pair.take_events("server") == []
    pair.release(first)
    pair.expect_from_server(ACK(ack=pair.C + 1461))
    assert sc.recv() == b"a" * 1460
    assert pair.server.stats["drops"]["out_of_order"] == 1
    pair.deliver_to_client_last()
    pair.at(1.0)                                            # the sender's RTO fills the hole
    pair.poll_client()
    pair.forward_to_server(DATA(seq=pair.C + 1461, payload=b"b" * 1460))
    pair.forward_to_client(ACK(ack=pair.C + 2921))
    assert sc.recv() == b"b" * 1460


def test_overlapping_retransmission_is_trimmed(pair):    # RFC 9293 3.10.7.4 seventh
    cc, sc = pair.establish()
    assert pair.deliver_to_server(DATA(seq=pair.C + 1, ack=pair.S + 1, payload=b"0123456789")) is None
    pair.expect_from_server(ACK(ack=pair.C + 11))
    # starts 5 bytes back: only "abcde" is new
    assert pair.deliver_to_server(DATA(seq=pair.C + 6, ack=pair.S + 1, payload=b"56789abcde")) is None
    pair.expect_from_server(ACK(ack=pair.C + 16))
    assert sc.recv() == b"0123456789abcde"
    assert [e.value for e in pair.take_events("server") if e.cause is Cause.DATA] == [10, 5]


def test_data_and_fin_in_one_segment(pair):
    cc, sc = pair.establish()
    fin_with_data = SEGMENT(Flags.FIN | Flags.ACK | Flags.PSH, seq=pair.C + 1, ack=pair.S + 1, payload=b"bye")
    assert pair.deliver_to_server(fin_with_data) is None
    pair.expect_from_server(ACK(seq=pair.S + 1, ack=pair.C + 5))      # 3 bytes + FIN
    pair.expect_nothing_from_server()
    assert sc.recv() == b"bye" and sc.state is CLOSE_WAIT
    assert pair.server_changes() == [(ESTABLISHED, CLOSE_WAIT, Cause.PEER_FIN)]


def test_ack_of_unsent_data_is_acked_and_dropped(pair):  # RFC 9293 3.10.7.4 fifth
    cc, sc = pair.establish()
    bad = DATA(seq=pair.C + 1, ack=pair.S + 1000, payload=b"inject")
    assert pair.deliver_to_server(bad) == "bad_ack"
    pair.expect_from_server(ACK(seq=pair.S + 1, ack=pair.C + 1))
    assert sc.recv() == b"" and sc.tcb["rcv_nxt"] == (pair.C + 1) % WRAP


def test_answers_to_acks_of_unsent_data_are_rate_limited(pair):   # RFC 5961 5.2, 7
    """Each ACK of unsent data is answered, within the challenge ACK budget: a peer
    that keeps acknowledging what was never sent (or two ends that disagree about it)
    gets at most the budget's answers a second, not one for one."""
    cc, sc = pair.establish()
    reasons = collections.Counter(pair.deliver_to_server(ACK(seq=pair.C + 1, ack=pair.S + 1000))
                                  for _ in range(1005))
    sent = len(pair.outbox["server"])
    assert 500 <= sent <= 1000 and reasons == {"bad_ack": sent, "challenge_limit": 1005 - sent}
    assert pair.server.stats["challenge_acks"] == sent
    pair.outbox["server"].clear()
    pair.advance(1.0)
    assert pair.deliver_to_server(ACK(seq=pair.C + 1, ack=pair.S + 1000)) == "bad_ack"
    pair.expect_from_server(ACK(seq=pair.S + 1, ack=pair.C + 1))
    assert sc.state is ESTABLISHED and sc.tcb["snd_una"] == (pair.S + 1) % WRAP


def test_ack_far_below_snd_una_is_challenged(pair):       # RFC 5961 5.2
    cc, sc = pair.establish()
    # the client never advertised more than 65535 bytes: anything below S+1-65535 is forged
    bad = DATA(seq=pair.C + 1, ack=pair.S + 1 - 100000, payload=b"inject")
    reason = pair.deliver_to_server(bad)
    pair.expect_from_server(ACK(seq=pair.S + 1, ack=pair.C + 1))
    assert sc.recv() == b"" and reason is not None


def test_data_retransmission_gives_up(pair):              # RFC 9293 3.8.3 R2, RFC 1122 4.2.3.5
    cc, sc = pair.establish()
    pair.send(cc, b"into the void")
    pair.drop_next_from_client(DATA(seq=pair.C + 1))
    times = []
    while (deadline := pair.client.next_deadline()) is not None:
        pair.now = deadline
        pair.poll_client()
        if cc.state is ESTABLISHED:
            times.append(pair.elapsed)
            pair.drop_next_from_client(DATA(seq=pair.C + 1, payload=b"into the void"))
        pair.expect_nothing_from_client()
    # 15 retransmissions, the RTO doubling from 1 s up to the 60 s cap, then give up
    rto = [min(2 ** i, 60) for i in range(16)]
    assert times == [pytest.approx(sum(rto[:i + 1])) for i in range(15)]
    assert pair.elapsed == pytest.approx(sum(rto))
    assert cc.state is CLOSED and cc.reset_cause is Cause.RETRANSMIT_LIMIT
    assert pair.client_changes() == [(ESTABLISHED, CLOSED, Cause.RETRANSMIT_LIMIT)]


# ---- closing: RFC 9293 3.6 ----

def test_normal_close_client_first(pair):                 # RFC 9293 figure 12
    cc, sc = pair.establish()
    pair.close(cc)                                          # 2. A: FIN-WAIT-1
    assert cc.state is FIN_WAIT_1
    assert pair.client_changes() == [(ESTABLISHED, FIN_WAIT_1, Cause.CLOSE)]
    pair.forward_to_server(FIN_ACK(seq=pair.C + 1, ack=pair.S + 1))
    assert sc.state is CLOSE_WAIT                           # 3. B: CLOSE-WAIT
    assert pair.server_changes() == [(ESTABLISHED, CLOSE_WAIT, Cause.PEER_FIN)]
    pair.forward_to_client(ACK(seq=pair.S + 1, ack=pair.C + 2))
    assert cc.state is FIN_WAIT_2                           # 4. A: FIN-WAIT-2
    assert pair.client_changes() == [(FIN_WAIT_1, FIN_WAIT_2, Cause.ACK_OF_FIN)]
    pair.close(sc)                                          # 4. B: LAST-ACK
    assert sc.state is LAST_ACK
    assert pair.server_changes() == [(CLOSE_WAIT, LAST_ACK, Cause.CLOSE)]
    pair.forward_to_client(FIN_ACK(seq=pair.S + 1, ack=pair.C + 2))
    assert cc.state is TIME_WAIT                            # 5. A: TIME-WAIT
    assert pair.client_changes() == [(FIN_WAIT_2, TIME_WAIT, Cause.PEER_FIN)]
    pair.forward_to_server(ACK(seq=pair.C + 2, ack=pair.S + 2))
    assert sc.state is CLOSED                               # 6. B: CLOSED
    assert pair.server_changes() == [(LAST_ACK, CLOSED, Cause.ACK_OF_FIN)]
    assert sc.reset_cause is None and len(pair.server) == 0
    assert pair.client.next_deadline() == pytest.approx(pair.now + 2 * 30.0)   # 2 MSL
    pair.expect_nothing_from_client()
    pair.expect_nothing_from_server()


def test_normal_close_server_first(pair):
    cc, sc = pair.establish()
    pair.close(sc)
    pair.forward_to_client(FIN_ACK(seq=pair.S + 1, ack=pair.C + 1))
    pair.forward_to_server(ACK(seq=pair.C + 1, ack=pair.S + 2))
    assert (sc.state, cc.state) == (FIN_WAIT_2, CLOSE_WAIT)
    pair.close(cc)
    pair.forward_to_server(FIN_ACK(seq=pair.C + 1, ack=pair.S + 2))
    pair.forward_to_client(ACK(seq=pair.S + 2, ack=pair.C + 2))
    assert (sc.state, cc.state) == (TIME_WAIT, CLOSED)
    assert pair.server_changes() == [(ESTABLISHED, FIN_WAIT_1, Cause.CLOSE),
                                     (FIN_WAIT_1, FIN_WAIT_2, Cause.ACK_OF_FIN),
                                     (FIN_WAIT_2, TIME_WAIT, Cause.PEER_FIN)]
    assert pair.client_changes() == [(ESTABLISHED, CLOSE_WAIT, Cause.PEER_FIN),
                                     (CLOSE_WAIT, LAST_ACK, Cause.CLOSE),
                                     (LAST_ACK, CLOSED, Cause.ACK_OF_FIN)]


def test_half_close_peer_keeps_sending(pair):
    cc, sc = pair.establish()
    pair.close(cc)
    pair.forward_to_server(FIN_ACK(seq=pair.C + 1))
    pair.forward_to_client(ACK(ack=pair.C + 2))
    assert (cc.state, sc.state) == (FIN_WAIT_2, CLOSE_WAIT)
    with pytest.raises(ConnectionStateError):
        cc.send(b"no more from A")
    reply = bytes(range(251)) * 20                          # 5020 bytes, past the server's wrap
    pair.send(sc, reply)                                    # CLOSE-WAIT may still send
    got = 0
    while got < len(reply):
        seg = pair.expect_from_server(DATA(seq=pair.S + 1 + got, ack=pair.C + 2))
        pair.deliver_to_client_last()
        got += seg.payload_len
        pair.forward_to_server(ACK(seq=pair.C + 2, ack=pair.S + 1 + got))
    assert cc.recv() == reply                               # FIN-WAIT-2 still receives
    assert cc.state is FIN_WAIT_2
    pair.close(sc)
    pair.forward_to_client(FIN_ACK(seq=pair.S + 1 + len(reply), ack=pair.C + 2))
    pair.forward_to_server(ACK(seq=pair.C + 2, ack=pair.S + 2 + len(reply)))
    assert (cc.state, sc.state) == (TIME_WAIT, CLOSED)
    assert pair.server_changes()[-2:] == [(CLOSE_WAIT, LAST_ACK, Cause.CLOSE),
                                          (LAST_ACK, CLOSED, Cause.ACK_OF_FIN)]


def test_close_with_queued_data_sends_fin_after_it():
    pair = Pair(timestamps=False)
    cc, sc = pair.establish()
    pair.send(cc, b"x" * 2000)
    pair.close(cc)
    pair.forward_to_server(DATA(seq=pair.C + 1, payload=b"x" * 1460))
    pair.forward_to_server()
    seg = pair.last_segment("client")
    assert seg.seq == (pair.C + 1461) % WRAP and bytes(seg.payload) == b"x" * 540
    if not seg.flags & Flags.FIN:                          # FIN alone, or on the last segment
        pair.forward_to_server(FIN_ACK(seq=pair.C + 2001))
    pair.transfer()
    assert sc.recv() == b"x" * 2000 and sc.state is CLOSE_WAIT and cc.state is FIN_WAIT_2


def test_simultaneous_close(pair):                        # RFC 9293 figure 13
    cc, sc = pair.establish()
    pair.close(cc)
    pair.close(sc)                                          # 2. both FIN-WAIT-1
    a_fin = pair.expect_from_client(FIN_ACK(seq=pair.C + 1, ack=pair.S + 1))
    b_fin = pair.expect_from_server(FIN_ACK(seq=pair.S + 1, ack=pair.C + 1))
    pair.deliver_to_server(a_fin)                           # 3. the FINs cross: CLOSING
    pair.deliver_to_client(b_fin)
    assert (cc.state, sc.state) == (CLOSING, CLOSING)
    for side in ("client", "server"):
        assert pair.changes(side) == [(ESTABLISHED, FIN_WAIT_1, Cause.CLOSE),
                                      (FIN_WAIT_1, CLOSING, Cause.PEER_FIN)]
    pair.forward_to_server(ACK(seq=pair.C + 2, ack=pair.S + 2))         # 4.
    pair.forward_to_client(ACK(seq=pair.S + 2, ack=pair.C + 2))
    assert (cc.state, sc.state) == (TIME_WAIT, TIME_WAIT)
    for side in ("client", "server"):
        assert pair.changes(side) == [(CLOSING, TIME_WAIT, Cause.ACK_OF_FIN)]
    pair.at(60.0)
    pair.poll()
    assert (cc.state, sc.state) == (CLOSED, CLOSED)          # 5. both after 2 MSL


def test_fin_with_the_ack_of_our_fin_goes_straight_to_time_wait(pair):
    cc, sc = pair.establish()
    pair.close(sc)
    pair.drop_next_from_server(FIN_ACK(seq=pair.S + 1))
    # the peer closed too and acknowledges our FIN in the same segment
    assert pair.deliver_to_server(FIN_ACK(seq=pair.C + 1, ack=pair.S + 2)) is None
    pair.expect_from_server(ACK(seq=pair.S + 2, ack=pair.C + 2))
    assert sc.state is TIME_WAIT
    assert pair.server_changes() == [(ESTABLISHED, FIN_WAIT_1, Cause.CLOSE),
                                     (FIN_WAIT_1, FIN_WAIT_2, Cause.ACK_OF_FIN),
                                     (FIN_WAIT_2, TIME_WAIT, Cause.PEER_FIN)]


def test_send_in_syn_sent_is_queued_until_established(pair):   # RFC 9293 3.10.2
    cc = pair.connect()
    pair.send(cc, b"early")
    pair.expect_from_client(SYN(seq=pair.C))                # no data on the SYN
    pair.expect_nothing_from_client()
    pair.deliver_to_server_last()
    pair.forward_to_client(SYN_ACK(seq=pair.S, ack=pair.C + 1))
    pair.expect_from_client(ACK(seq=pair.C + 1, ack=pair.S + 1, payload=b""))
    pair.expect_from_client(DATA(seq=pair.C + 1, ack=pair.S + 1, payload=b"early"))


def test_close_in_syn_sent_deletes_the_tcb(pair):        # RFC 9293 3.10.4
    cc = pair.connect()
    syn = pair.expect_from_client(SYN(seq=pair.C))
    pair.close(cc)
    assert cc.state is CLOSED
    assert pair.client_changes() == [(CLOSED, SYN_SENT, Cause.CONNECT), (SYN_SENT, CLOSED, Cause.CLOSE)]
    pair.expect_nothing_from_client()
    pair.deliver_to_server(syn)                             # the SYN was already on its way
    pair.forward_to_client(SYN_ACK(seq=pair.S, ack=pair.C + 1))
    pair.expect_from_client(RST(seq=pair.C + 1))            # no connection any more


def test_abort_in_syn_sent_sends_nothing(pair):           # RFC 9293 3.10.5
    cc = pair.connect()
    pair.drop_next_from_client(SYN(seq=pair.C))
    pair.abort(cc)
    assert cc.state is CLOSED and cc.reset_cause is Cause.ABORT
    pair.expect_nothing_from_client()
    assert pair.client.next_deadline() is None and len(pair.client) == 0


@pytest.mark.parametrize("state", [CLOSING, LAST_ACK], ids=str)
def test_abort_in_closing_and_last_ack_sends_no_rst(pair, state):
    sc = _server_in(pair, state)
    pair.abort(sc)
    assert sc.state is CLOSED
    pair.expect_nothing_from_server()


def test_fin_wait_2_times_out(pair):                      # Linux tcp_fin_timeout: 60 s
    cc, sc = pair.establish()
    pair.close(cc)
    pair.transfer()
    pair.take_events("client")
    assert cc.state is FIN_WAIT_2 and pair.client.next_deadline() == pytest.approx(pair.start + 60)
    pair.at(60 - 1e-6)
    pair.poll_client()
    assert cc.state is FIN_WAIT_2
    pair.at(60)
    pair.poll_client()
    assert cc.state is CLOSED and cc.reset_cause is Cause.TIMEOUT
    assert pair.client_changes() == [(FIN_WAIT_2, CLOSED, Cause.TIMEOUT)]
    pair.expect_nothing_from_client()


def test_exact_rst_in_time_wait_closes(pair):            # RFC 9293 3.10.7.4 second (TIME-WAIT)
    cc, sc = pair.establish()
    pair.close(cc)
    pair.transfer()
    pair.close(sc)
    pair.transfer()
    assert cc.state is TIME_WAIT
    assert pair.deliver_to_client(RST(seq=pair.S + 3)) == "rst_challenged"  # in window, not exact
    pair.expect_from_client(ACK(seq=pair.C + 2, ack=pair.S + 2))
    assert pair.deliver_to_client(RST(seq=pair.S + 2)) is None
    assert cc.state is CLOSED and pair.client_changes()[-1] == (TIME_WAIT, CLOSED, Cause.RST_RECEIVED)


def test_fin_retransmission(pair):
    cc, sc = pair.establish()
    pair.close(cc)
    pair.drop_next_from_client(FIN_ACK(seq=pair.C + 1, ack=pair.S + 1))
    assert pair.client.next_deadline() == pytest.approx(pair.start + 1.0)
    pair.at(1.0)
    pair.poll_client()
    fin = pair.expect_from_client(FIN_ACK(seq=pair.C + 1, ack=pair.S + 1))
    pair.expect_nothing_from_client()
    assert cc.state is FIN_WAIT_1
    pair.deliver_to_server(fin)
    pair.forward_to_client(ACK(ack=pair.C + 2))
    assert (cc.state, sc.state) == (FIN_WAIT_2, CLOSE_WAIT)
    assert [(e.cause, e.value) for e in pair.take_events("client")
            if e.cause is Cause.RETRANSMIT] == [(Cause.RETRANSMIT, 1)]


@pytest.mark.parametrize("closer", ["client_first", "server_last"])
def test_fin_retransmitted_once_per_rto(pair, closer):
    cc, sc = pair.establish()
    if closer == "client_first":                            # FIN-WAIT-1
        pair.close(cc)
        pair.drop_next_from_client(FIN_ACK())
        pair.at(1.0)
        pair.poll_client()
        pair.expect_from_client(FIN_ACK(seq=pair.C + 1))
        pair.expect_nothing_from_client()
    else:                                                   # LAST-ACK
        pair.close(cc)
        pair.transfer()
        pair.close(sc)
        pair.drop_next_from_server(FIN_ACK())
        pair.at(1.0)
        pair.poll_server()
        pair.expect_from_server(FIN_ACK(seq=pair.S + 1))
        pair.expect_nothing_from_server()


def test_last_ack_lost_is_answered_from_time_wait(pair):
    cc, sc = pair.establish()
    pair.close(cc)
    pair.forward_to_server(FIN_ACK(seq=pair.C + 1))
    pair.forward_to_client(ACK(ack=pair.C + 2))
    pair.close(sc)
    pair.forward_to_client(FIN_ACK(seq=pair.S + 1, ack=pair.C + 2))
    assert cc.state is TIME_WAIT                            # TIME-WAIT ends at 2 MSL = 60 s ...
    assert pair.client.next_deadline() == pytest.approx(pair.start + 60.0)
    pair.drop_next_from_client(ACK(seq=pair.C + 2, ack=pair.S + 2))     # ... but the last ACK is lost
    assert sc.state is LAST_ACK
    pair.at(1.0)                                            # the server's RTO: FIN again
    pair.poll_server()
    fin = pair.expect_from_server(FIN_ACK(seq=pair.S + 1, ack=pair.C + 2))
    pair.expect_nothing_from_server()
    # RFC 9293 3.10.7.4 TIME-WAIT: "the only thing that can arrive in this state is a
    # retransmission of the remote FIN. Acknowledge it, and restart the 2 MSL timeout."
    pair.deliver_to_client(fin)
    pair.expect_from_client(ACK(seq=pair.C + 2, ack=pair.S + 2))
    assert cc.state is TIME_WAIT and pair.client_changes()[-1] == (FIN_WAIT_2, TIME_WAIT, Cause.PEER_FIN)
    assert pair.client.next_deadline() == pytest.approx(pair.start + 61.0)
    pair.deliver_to_server_last()
    assert sc.state is CLOSED
    assert pair.server_changes()[-1] == (LAST_ACK, CLOSED, Cause.ACK_OF_FIN)
    pair.at(60.0)                                           # the first 2 MSL no longer counts
    pair.poll_client()
    assert cc.state is TIME_WAIT
    pair.at(61.0 - 1e-6)
    pair.poll_client()
    assert cc.state is TIME_WAIT
    pair.at(61.0)
    pair.poll_client()
    assert cc.state is CLOSED
    assert pair.client_changes() == [(TIME_WAIT, CLOSED, Cause.TIMEOUT_2MSL)]


@pytest.mark.parametrize("msl", [120, 30, 60])            # RFC 793's 2 min; Linux's 30 s; 60 s
def test_time_wait_lasts_exactly_2msl(msl):
    pair = Pair(msl=msl)
    cc, sc = pair.establish()
    pair.close(cc)
    pair.transfer()
    pair.close(sc)
    pair.transfer()
    assert cc.state is TIME_WAIT and sc.state is CLOSED
    pair.take_events("client")
    pair.at(2 * msl - 1e-6)
    pair.poll()
    assert cc.state is TIME_WAIT and pair.client_changes() == []
    pair.at(2 * msl)
    pair.poll()
    assert cc.state is CLOSED and cc.reset_cause is None
    assert pair.client_changes() == [(TIME_WAIT, CLOSED, Cause.TIMEOUT_2MSL)]
    assert len(pair.client) == 0 and pair.client.next_deadline() is None


def test_close_event_is_reported_at_once(pair):
    cc, sc = pair.establish()
    cc.close()
    assert [(e.old, e.new, e.cause) for e in pair.client.events()] == [(ESTABLISHED, FIN_WAIT_1, Cause.CLOSE)]


# ---- TIME-WAIT reopen: RFC 9293 3.10.7.4 (TIME-WAIT note), RFC 6191 ----

def _server_in_time_wait(pair, *, data_from_server=b""):
    """The server closes first, so the TIME-WAIT side is the one with the listener."""
    cc, sc = pair.establish()
    if data_from_server:
        pair.send(sc, data_from_server)
        pair.transfer()
        assert cc.recv() == data_from_server
    pair.close(sc)
    pair.transfer()
    pair.close(cc)
    pair.transfer()
    assert (sc.state, cc.state) == (TIME_WAIT, CLOSED)
    pair.take_events("client")
    pair.take_events("server")
    return cc, sc


def test_syn_with_higher_seq_reopens_time_wait(pair):
    cc, old = _server_in_time_wait(pair)
    pair.at(1.0)                                            # the ISN clock moved on: higher seq
    cc2 = pair.connect()
    syn = pair.expect_from_client(SYN())
    assert (syn.seq - old.tcb["rcv_nxt"]) % WRAP < WRAP // 2
    pair.deliver_to_server(syn)
    assert old.state is CLOSED
    assert pair.server_changes() == [(TIME_WAIT, CLOSED, Cause.REOPEN),
                                     (LISTEN, SYN_RECEIVED, Cause.REOPEN)]
    assert pair.sc is not old and pair.sc.state is SYN_RECEIVED and len(pair.server) == 1
    pair.forward_to_client(SYN_ACK(ack=syn.seq + 1))
    pair.forward_to_server(ACK(seq=syn.seq + 1))
    assert cc2.state is ESTABLISHED and pair.accept().state is ESTABLISHED


def test_syn_with_newer_timestamp_reopens_time_wait(pair):
    cc, old = _server_in_time_wait(pair)
    tcb = old.tcb
    # a lower sequence number, but a newer timestamp (RFC 6191 2)
    pair.deliver_to_server(SYN(seq=tcb["rcv_nxt"] - 1000, ts=(tcb["ts_recent"] + 1, 0),
                               options=dict(mss=1460)))
    assert pair.server_changes() == [(TIME_WAIT, CLOSED, Cause.REOPEN),
                                     (LISTEN, SYN_RECEIVED, Cause.REOPEN)]
    pair.expect_from_server(SYN_ACK(ack=tcb["rcv_nxt"] - 999, ts=(ANY, tcb["ts_recent"] + 1)))


def test_old_syn_does_not_reopen_time_wait(pair):
    cc, old = _server_in_time_wait(pair)
    tcb = old.tcb
    pair.at(1.0)
    # lower sequence number and an older timestamp: an old duplicate (PAWS, RFC 7323 5.3)
    assert pair.deliver_to_server(SYN(seq=tcb["rcv_nxt"] - 5, ts=(tcb["ts_recent"] - 1, 0))) == "paws"
    pair.expect_from_server(ACK(seq=tcb["snd_nxt"], ack=tcb["rcv_nxt"]))
    # equal sequence number, equal timestamp: in the window, so a challenge ACK (RFC 5961 4)
    assert pair.deliver_to_server(SYN(seq=tcb["rcv_nxt"], ts=(tcb["ts_recent"], 0))) == "syn_challenged"
    pair.expect_from_server(ACK(seq=tcb["snd_nxt"], ack=tcb["rcv_nxt"]))
    assert old.state is TIME_WAIT and pair.server_changes() == []
    assert pair.server.next_deadline() == pytest.approx(pair.start + 60.0)   # timer not restarted


def test_old_syn_without_timestamps_does_not_reopen_time_wait():
    pair = Pair(timestamps=False)
    cc, old = _server_in_time_wait(pair)
    tcb = old.tcb
    for seq, reason in ((tcb["rcv_nxt"] - 5, "unacceptable"), (tcb["rcv_nxt"], "syn_challenged")):
        assert pair.deliver_to_server(SYN(seq=seq)) == reason
        pair.expect_from_server(ACK(seq=tcb["snd_nxt"], ack=tcb["rcv_nxt"]))
        assert old.state is TIME_WAIT
    assert pair.deliver_to_server(SYN(seq=tcb["rcv_nxt"] + 70000)) is None   # higher: reopens
    assert pair.server_changes()[-2:] == [(TIME_WAIT, CLOSED, Cause.REOPEN),
                                          (LISTEN, SYN_RECEIVED, Cause.REOPEN)]


def test_time_wait_reopen_needs_a_listener(pair):
    cc, old = _server_in_time_wait(pair)
    pair.server.unlisten(SERVER_PORT)
    tcb = old.tcb
    pair.deliver_to_server(SYN(seq=tcb["rcv_nxt"] + 70000))
    assert old.state is TIME_WAIT
    pair.expect_from_server(ACK(seq=tcb["snd_nxt"], ack=tcb["rcv_nxt"]))


def test_reopen_iss_is_above_the_old_snd_nxt(pair):
    cc, old = _server_in_time_wait(pair, data_from_server=bytes(60000))
    old_snd_nxt = old.tcb["snd_nxt"]
    pair.advance(0.01)                                      # 2500 ticks of the ISN clock
    pair.connect()
    pair.forward_to_server(SYN())
    synack = pair.expect_from_server(SYN_ACK())
    assert 0 < (synack.seq - old_snd_nxt) % WRAP < WRAP // 2


# ---- resets: RFC 9293 3.10.7, RFC 5961 ----

def test_rst_with_exact_seq_resets(pair):                 # RFC 5961 3.2
    cc, sc = pair.establish()
    assert pair.deliver_to_server(RST(seq=pair.C + 1)) is None
    assert sc.state is CLOSED and sc.reset_cause is Cause.RST_RECEIVED
    assert pair.server_changes() == [(ESTABLISHED, CLOSED, Cause.RST_RECEIVED)]
    pair.expect_nothing_from_server()                       # never answer a reset
    assert len(pair.server) == 0
    with pytest.raises(ConnectionStateError):
        sc.send(b"after the reset")


def test_rst_in_window_gets_a_challenge_ack(pair):        # RFC 5961 3.2
    cc, sc = pair.establish()
    for seq in (pair.C + 2, pair.C + 1 + 60000):
        assert pair.deliver_to_server(RST(seq=seq)) == "rst_challenged"
        assert sc.state is ESTABLISHED and pair.server_changes() == []
    # a live peer takes the challenge ACK as a duplicate ACK and goes on
    pair.forward_to_client(ACK(seq=pair.S + 1, ack=pair.C + 1))
    pair.expect_nothing_from_client()
    assert cc.state is ESTABLISHED
    assert pair.server.stats["challenge_acks"] == 2
    assert pair.server.stats["drops"]["rst_challenged"] == 2


def test_rst_out_of_window_is_ignored(pair):
    cc, sc = pair.establish()
    for seq in (pair.C, pair.C - 1000, pair.C + 1 + 65535, pair.C + 1 + 10 ** 6):
        assert pair.deliver_to_server(RST(seq=seq)) == "rst_invalid"
    pair.expect_nothing_from_server()                       # silently
    assert sc.state is ESTABLISHED
    assert pair.server.stats["drops"]["rst_invalid"] == 4


def test_challenge_ack_rate_limit(pair):                  # RFC 5961 7 (Linux: 1000/s)
    # the budget is randomised each second between limit/2 and limit (CVE-2016-5696:
    # an exact global count leaks whether a spoofed segment hit another window)
    cc, sc = pair.establish()
    for _ in range(1005):
        pair.deliver_to_server(RST(seq=pair.C + 2))
    sent = len(pair.outbox["server"])
    assert 500 <= sent <= 1000
    stats = pair.server.stats
    assert stats["challenge_acks"] == sent
    assert stats["drops"]["rst_challenged"] == sent and stats["drops"]["challenge_limit"] == 1005 - sent
    pair.outbox["server"].clear()
    pair.advance(1.0)                                       # a new second: challenges again
    assert pair.deliver_to_server(RST(seq=pair.C + 2)) == "rst_challenged"
    pair.expect_from_server(ACK(seq=pair.S + 1, ack=pair.C + 1))
    assert sc.state is ESTABLISHED


def test_rate_limited_challenge_is_reported_as_challenge_limit(pair):
    cc, sc = pair.establish()
    reasons = collections.Counter(pair.deliver_to_server(RST(seq=pair.C + 2)) for _ in range(1005))
    assert set(reasons) == {"rst_challenged", "challenge_limit"}
    assert 500 <= reasons["rst_challenged"] <= 1000
    assert reasons["rst_challenged"] == pair.server.stats["challenge_acks"]


def test_syn_to_a_closed_port_gets_rst_ack(pair):         # RFC 9293 3.10.7.1
    pkt = fasttcp.build(CLIENT, SERVER, 40000, 81, seq=WRAP - 2, flags=Flags.SYN)
    assert pair.deliver_to_server(pkt) == "no_listener"
    rst = pair.expect_from_server(RST_ACK(seq=0, ack=WRAP - 1))
    assert (rst.src_port, rst.dst_port) == (81, 40000)
    # with data and FIN: ack = SEG.SEQ + SEG.LEN (SYN and FIN count)
    pkt = fasttcp.build(CLIENT, SERVER, 40000, 81, seq=WRAP - 2, flags=Flags.SYN | Flags.FIN,
                        payload=b"abc")
    pair.deliver_to_server(pkt)
    pair.expect_from_server(RST_ACK(seq=0, ack=3))


def test_ack_to_a_closed_port_gets_rst(pair):
    pkt = fasttcp.build(CLIENT, SERVER, 40000, 81, seq=5, ack=WRAP - 2, flags=Flags.ACK, payload=b"data")
    assert pair.deliver_to_server(pkt) == "no_listener"
    pair.expect_from_server(RST(seq=WRAP - 2))              # <SEQ=SEG.ACK><CTL=RST>
    # the same to a listening port with no connection (LISTEN: any ACK is bad)
    assert pair.deliver_to_server(ACK(seq=5, ack=12345)) == "no_listener"
    pair.expect_from_server(RST(seq=12345))
    # FIN without ACK to a closed port: RST,ACK ack = SEG.SEQ + len + 1
    pkt = fasttcp.build(CLIENT, SERVER, 40000, 81, seq=WRAP - 1, flags=Flags.FIN, payload=b"ab")
    pair.deliver_to_server(pkt)
    pair.expect_from_server(RST_ACK(seq=0, ack=2))
    assert pair.server.stats["resets_sent"] == 3


def test_rst_to_a_closed_port_is_not_answered(pair):
    for flags in (Flags.RST, Flags.RST | Flags.ACK):
        pkt = fasttcp.build(CLIENT, SERVER, 40000, 81, seq=5, ack=6, flags=flags)
        assert pair.deliver_to_server(pkt) is not None
        pkt = fasttcp.build(CLIENT, SERVER, 40000, SERVER_PORT, seq=5, ack=6, flags=flags)
        assert pair.deliver_to_server(pkt) is not None     # to the listener: nothing either
    pair.expect_nothing_from_server()
    assert pair.server.stats["resets_sent"] == 0 and len(pair.server) == 0


def test_connect_to_a_port_without_listener_is_refused(pair):
    cc = pair.client.connect(SERVER, 81, local_port=pair.client_port, now=pair.now)
    pair.sync()
    syn = pair.expect_from_client(SYN())
    pair.deliver_to_server(syn)
    pair.forward_to_client(RST_ACK(seq=0, ack=syn.seq + 1))
    assert cc.state is CLOSED and cc.reset_cause is Cause.REFUSED
    assert pair.client_changes() == [(CLOSED, SYN_SENT, Cause.CONNECT),
                                     (SYN_SENT, CLOSED, Cause.REFUSED)]
    pair.expect_nothing_from_client()
    assert pair.client.next_deadline() is None


def test_rst_in_syn_sent_without_acceptable_ack_is_ignored(pair):
    cc = pair.connect()
    syn = pair.expect_from_client(SYN())
    # RFC 9293 3.10.7.3: an RST is acceptable in SYN-SENT only if its ACK acknowledges the SYN
    assert pair.deliver_to_client(RST(seq=0)) is not None
    assert pair.deliver_to_client(RST_ACK(seq=0, ack=syn.seq + 5)) is not None
    assert cc.state is SYN_SENT
    pair.expect_nothing_from_client()


def test_abort_sends_rst_and_the_peer_reports_it(pair):   # RFC 9293 3.10.5
    cc, sc = pair.establish()
    pair.send(sc, b"unread")
    pair.transfer()
    pair.abort(cc)
    assert cc.state is CLOSED and cc.reset_cause is Cause.ABORT
    assert pair.client_changes() == [(ESTABLISHED, CLOSED, Cause.ABORT)]
    pair.forward_to_server(RST(seq=pair.C + 1))
    assert sc.state is CLOSED and sc.reset_cause is Cause.RST_RECEIVED
    assert pair.server_changes() == [(ESTABLISHED, CLOSED, Cause.RST_RECEIVED)]
    pair.expect_nothing_from_server()
    with pytest.raises(ConnectionStateError):
        cc.abort()


# ---- segment acceptability in every synchronized state: RFC 9293 3.10.7.4 ----

def _server_in(pair, state):
    """Drive the server's connection to `state`; returns it."""
    if state is SYN_RECEIVED:
        pair.connect()
        pair.forward_to_server(SYN())
        pair.drop_next_from_server(SYN_ACK())
        return pair.sc
    cc, sc = pair.establish()
    if state is FIN_WAIT_1:
        pair.close(sc)
        pair.drop_next_from_server(FIN_ACK())
    elif state is FIN_WAIT_2:
        pair.close(sc)
        pair.transfer()
    elif state is CLOSE_WAIT:
        pair.close(cc)
        pair.transfer()
    elif state is CLOSING:
        pair.close(cc)
        pair.close(sc)
        pair.drop_next_from_server(FIN_ACK())
        pair.forward_to_server(FIN_ACK())
        pair.drop_next_from_server(ACK())
    elif state is LAST_ACK:
        pair.close(cc)
        pair.transfer()
        pair.close(sc)
        pair.drop_next_from_server(FIN_ACK())
    elif state is TIME_WAIT:
        pair.close(sc)
        pair.transfer()
        pair.close(cc)
        pair.transfer()
    assert sc.state is state
    return sc


SYNCHRONIZED = [SYN_RECEIVED, ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT, CLOSING, LAST_ACK, TIME_WAIT]


@pytest.mark.parametrize("state", SYNCHRONIZED, ids=str)
def test_unacceptable_segment_is_acked_and_dropped(pair, state):
    sc = _server_in(pair, state)
    pair.poll_server()                                      # (collects a close()'s event)
    pair.take_events("server")
    tcb = sc.tcb
    nxt, una, wnd = tcb["rcv_nxt"], tcb["snd_nxt"], tcb["rcv_wnd"]
    unacceptable = [
        ACK(seq=nxt + wnd + 1000, ack=una, payload=b"beyond the window"),
        # duplicates, entirely before RCV.NXT: their ACK field is read (_old_ack), and
        # acknowledges nothing new here (the FIN states' FIN stays unacknowledged)
        ACK(seq=nxt - 100, ack=tcb["snd_una"], payload=b"all old"),
        ACK(seq=nxt + wnd, ack=una, payload=b"x"),                 # first byte just past the window
        SEGMENT(Flags.FIN | Flags.ACK, seq=nxt - 1000, ack=tcb["snd_una"]),
    ]
    for seg in unacceptable:
        assert pair.deliver_to_server(seg) == "unacceptable", seg
        # "<SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>" and drop
        pair.expect_from_server(ACK(seq=una, ack=nxt, payload=b""))
    assert sc.state is state and sc.tcb["rcv_nxt"] == nxt and sc.tcb["snd_una"] == tcb["snd_una"]
    assert pair.take_events("server") == []
    assert pair.server.stats["drops"]["unacceptable"] == len(unacceptable)
    # every drop is counted under the reason receive() returned
    returned = collections.Counter(r for r in pair.drops["server"] if r is not None)
    assert returned == collections.Counter({k: v for k, v in pair.server.stats["drops"].items() if v})


def test_zero_window_acceptability():
    """RFC 9293 table 6: with RCV.WND = 0 only a zero-length segment at RCV.NXT is acceptable."""
    pair = Pair(timestamps=False, server=dict(window=1460, wscale=None))
    cc, sc = pair.establish()
    pair.send(cc, bytes(1460))
    pair.transfer()                                         # 1460 bytes unread: window 0
    assert sc.tcb["rcv_wnd"] == 0
    nxt = sc.tcb["rcv_nxt"]
    assert pair.deliver_to_server(ACK(seq=nxt, ack=pair.S + 1, payload=b"x")) == "unacceptable"
    pair.expect_from_server(ACK(ack=nxt))
    assert pair.deliver_to_server(ACK(seq=nxt, ack=pair.S + 1)) is None
    pair.expect_nothing_from_server()
    assert len(sc.recv()) == 1460


# ---- PAWS: RFC 7323 5 ----

def test_paws_drops_an_old_timestamp(pair):
    cc, sc = pair.establish()
    pair.advance(0.5)
    pair.send(cc, b"fresh")
    seg = pair.expect_from_client(DATA(payload=b"fresh"))
    pair.deliver_to_server(seg)
    pair.expect_from_server(ACK(ack=pair.C + 6))
    tsval = seg.options.timestamp[0]
    assert sc.tcb["ts_recent"] == tsval
    # in sequence, but stamped before the last segment: an old duplicate from a wrapped
    # sequence space (RFC 7323 5.3 R1): ACK and drop
    old = DATA(seq=pair.C + 6, ack=pair.S + 1, payload=b"stale", ts=(tsval - 1, 0))
    assert pair.deliver_to_server(old) == "paws"
    pair.expect_from_server(ACK(seq=pair.S + 1, ack=pair.C + 6))
    assert sc.recv() == b"fresh" and sc.tcb["rcv_nxt"] == (pair.C + 6) % WRAP
    assert pair.server.stats["drops"]["paws"] == 1
    # an RST is not subject to PAWS (RFC 7323 5.3 R1)
    assert pair.deliver_to_server(RST(seq=pair.C + 6, ts=(tsval - 1, 0))) is None
    assert sc.state is CLOSED


def test_paws_is_modulo_2_32():
    """TSval comparison is in 32-bit sequence space: a TSval that wrapped is newer."""
    pair = Pair()
    cc, sc = pair.establish()
    nxt, t0 = sc.tcb["rcv_nxt"], sc.tcb["ts_recent"]
    a = (t0 + 2**31 - 10) % WRAP                            # newer (less than 2**31 ahead)
    b = (a + 2**31 - 10) % WRAP                             # newer again: past 2**32, so b < t0
    assert b < t0
    assert pair.deliver_to_server(DATA(seq=nxt, ack=pair.S + 1, payload=b"a", ts=(a, 0))) is None
    assert pair.deliver_to_server(DATA(seq=nxt + 1, ack=pair.S + 1, payload=b"b", ts=(b, 0))) is None
    assert pair.deliver_to_server(DATA(seq=nxt + 2, ack=pair.S + 1, payload=b"c", ts=(b - 1, 0))) == "paws"
    assert sc.recv() == b"ab"


# ---- initial sequence numbers: RFC 6528 ----

def _isn(seed=1, isn_secret=None, local_port=50000, remote=SERVER, remote_port=80, now=5.0):
    ep = Endpoint([CLIENT, CLIENT6], seed=seed, isn_secret=isn_secret, capacity=4)
    ep.connect(remote, remote_port, local_port=local_port, now=now)
    return fasttcp.parse(ep.transmit()[0]).seq


def test_isn_is_reproducible():
    assert _isn() == _isn()
    assert _isn(isn_secret=1234) == _isn(isn_secret=1234)
    assert _isn(seed=2, isn_secret=1234) == _isn(seed=3, isn_secret=1234)
    assert _isn(isn_secret=1234) != _isn(isn_secret=1235)
    assert _isn(seed=1) != _isn(seed=2)



@pytest.mark.parametrize("secret, remote", [
    (1234, "198.19.0.1"), (1234, "2001:db8::2"), (2**100 + 5, "198.19.0.1"), (2**100 + 5, "2001:db8::2"),
])
@pytest.mark.skipif(sys.byteorder != "little", reason="recorded on a little-endian machine; "
                    "the keyed hash reads native words, so ISNs differ by byte order")
def test_isn_for_a_secret_is_stable_across_releases(secret, remote):
    """A fixed isn_secret gives the same ISNs from one fasttcp release to the next
    (load generators replay captures against them): the RFC 6528 function F is NH over
    the whole key, independent of the table's hashing shortcuts. Values recorded from
    the release before the table's IPv4 hash shortcut."""
    recorded = {(1234, "198.19.0.1"): 2306308968, (1234, "2001:db8::2"): 213915576,
                (2**100 + 5, "198.19.0.1"): 3863497131, (2**100 + 5, "2001:db8::2"): 3567002841}
    ep = Endpoint(["198.18.0.1", "2001:db8::1"], isn_secret=secret, capacity=4)
    ep.connect(remote, 80, local_port=50000, now=5.0)
    assert fasttcp.parse(ep.transmit()[0]).seq == recorded[(secret, remote)]

@pytest.mark.parametrize("secret", [
    dict(isn_secret=2**100 + 5),
    dict(seed=2**70 + 3),
    dict(isn_secret=1234),                                  # small secrets are expanded too
    dict(seed=1),
], ids=["isn_secret_2e100", "seed_2e70", "isn_secret_1234", "seed_1"])
def test_isn_differs_per_four_tuple(secret):
    isns = {_isn(local_port=p, **secret) for p in range(40000, 40064)}
    isns |= {_isn(remote_port=p, **secret) for p in range(1, 65)}
    isns |= {_isn(remote=f"198.18.1.{i}", **secret) for i in range(64)}
    isns |= {_isn(remote=f"2001:2::{i + 1:x}", **secret) for i in range(64)}
    isns |= {_isn(remote=f"2001:{i + 3:x}::2", **secret) for i in range(64)}
    assert len(isns) == 5 * 64                              # 320 different 4-tuples, 320 ISNs
    assert _isn(**secret) not in isns


def test_isn_follows_a_4_microsecond_clock():
    base = _isn(now=100.0)
    for dt, ticks in ((4e-6, 1), (1e-3, 250), (1.0, 250000), (3600.0, 900_000_000)):
        assert (_isn(now=100.0 + dt) - base) % WRAP == ticks
    # the clock wraps in 4.77 hours (2**32 * 4 us) but keeps increasing modulo 2**32
    assert (_isn(now=100.0 + 17179.869184) - base) % WRAP == 0


# ---- what the peer (or the network) gets wrong: never an exception ----

def _malformed_packets():
    good = fasttcp.build(CLIENT, SERVER, 40000, 80, seq=1, flags=Flags.SYN, payload=b"hello",
                         options=dict(mss=1460))
    good6 = fasttcp.build(CLIENT6, SERVER6, 40000, 80, seq=1, flags=Flags.SYN)
    rnd = random.Random(7)
    out = {"empty": b"", "one byte": b"\x45", "ip header only": good[:20], "half tcp header": good[:30],
           "tcp header, no payload": good[:40], "ipv6 truncated": good6[:50]}
    bad_sum = bytearray(good)
    bad_sum[-1] ^= 0xFF
    out["bad tcp checksum"] = bytes(bad_sum)
    udp = bytearray(good)
    udp[9] = 17
    out["udp"] = bytes(udp)
    v5 = bytearray(good)
    v5[0] = 0x55
    out["ip version 5"] = bytes(v5)
    frag = bytearray(good)
    frag[6] = 0x20                                          # more fragments
    out["fragment"] = bytes(frag)
    doff = bytearray(good)
    doff[32] = 0x30                                         # data offset 3 < 5
    out["data offset 3"] = bytes(doff)
    for i in range(20):
        out[f"garbage {i}"] = rnd.randbytes(rnd.randrange(1, 120))
    return out


def test_malformed_packets_are_counted_never_raised():
    ep = Endpoint([SERVER, SERVER6], seed=1)
    ep.listen(80)
    packets = _malformed_packets()
    results = {name: ep.receive(pkt, 1.0) for name, pkt in packets.items()}
    for name, reason in results.items():
        if not name.startswith("garbage"):
            assert reason == "malformed", name
        assert reason in ("malformed", "not_local"), (name, reason)
    drops = ep.stats["drops"]
    assert drops["malformed"] + drops["not_local"] == len(packets)
    assert ep.transmit() == [] and ep.events() == [] and len(ep) == 0
    # the batch path agrees
    buf = b"".join(packets.values())
    lens = np.array([len(p) for p in packets.values()], dtype=np.int64)
    offs = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
    res = ep.receive_batch(buf, offs, lens, 2.0)
    assert [DROP_REASONS[r] for r in res] == list(results.values())
    # memoryview and bytearray inputs are fine too
    assert ep.receive(memoryview(packets["udp"]), 3.0) == "malformed"
    assert ep.receive(bytearray(packets["bad tcp checksum"]), 3.0) == "malformed"


def test_packets_to_other_addresses_are_not_local():
    ep = Endpoint([SERVER], seed=1)
    ep.listen(80)
    for dst, src in (("198.18.0.3", CLIENT), ("10.0.0.2", CLIENT), (SERVER6, CLIENT6)):
        assert ep.receive(fasttcp.build(src, dst, 40000, 80, seq=1, flags=Flags.SYN), 1.0) == "not_local"
    assert ep.stats["drops"]["not_local"] == 3 and ep.transmit() == []
    net = Endpoint(["198.18.0.0/24"], seed=1)
    net.listen(80)
    assert net.receive(fasttcp.build(CLIENT, "198.18.0.77", 40000, 80, seq=1, flags=Flags.SYN), 1.0) is None
    assert net.receive(fasttcp.build(CLIENT, "198.18.1.77", 40000, 80, seq=1, flags=Flags.SYN), 1.0) == "not_local"


def test_connect_batch_refuses_addresses_that_are_not_ours():
    """connect_batch opens only keys whose local address is the endpoint's (-3 for the
    others, as connect() raises), so a segment that finds a connection was sent to us:
    the receive path checks the destination only when the lookup misses. A segment for
    the refused key is dropped as not local, with no reset."""
    ep = Endpoint([CLIENT, CLIENT6], seed=1)
    flows = [(CLIENT, 40000, SERVER, 80), ("198.18.0.3", 40001, SERVER, 80), (CLIENT, 40002, SERVER, 80),
             (CLIENT6, 40003, SERVER6, 80), ("2001:db8::77", 40004, SERVER6, 80)]
    ids = ep.connect_batch(make_keys(flows), 1.0)
    assert (ids >= 0).tolist() == [True, False, True, True, False]
    assert ids[1] == ids[4] == -3
    sent = [fasttcp.parse(p) for p in ep.transmit()]
    assert [(str(s.dst), s.src_port) for s in sent] == [(SERVER, 40000), (SERVER, 40002), (SERVER6, 40003)]
    assert len(ep) == 3
    synack = fasttcp.build(SERVER, "198.18.0.3", 80, 40001, seq=5, ack=1, flags=Flags.SYN | Flags.ACK)
    assert ep.receive(synack, 1.1) == "not_local" and ep.transmit() == []
    # the SYN-ACK of an opened flow is taken (found, so never checked against the list)
    syn = sent[0]
    ok = fasttcp.build(SERVER, CLIENT, 80, 40000, seq=9, ack=syn.seq + 1, flags=Flags.SYN | Flags.ACK)
    assert ep.receive(ok, 1.1) is None
    assert [fasttcp.parse(p).flags for p in ep.transmit()] == [Flags.ACK]
    assert ep.stats["drops"]["not_local"] == 1


def test_connect_raises_if_the_core_refuses_the_local_address():
    """connect() checks the local address against the endpoint's list itself; should
    the Python list and the C core's ever disagree (here: the list replaced after
    construction), the core's refusal is a UsageError, not a connection."""
    ep = Endpoint([CLIENT], seed=1)
    ep._local = [ipaddress.ip_network("203.0.113.0/24")]
    with pytest.raises(UsageError, match="not one of this endpoint's addresses"):
        ep.connect(SERVER, 80, now=1.0)
    assert len(ep) == 0 and ep.transmit() == []



@pytest.mark.parametrize("network", ["198.18.0.0/15", "198.18.0.128/25", "198.18.7.9/32", "0.0.0.0/0",
                                     "2001:db8::/33", "2001:db8:0:8000::/49", "::/0", "2001:db8::1/128"])
def test_local_networks_match_exactly_their_prefix(network):
    """A segment is ours exactly when its destination is in one of the endpoint's
    networks, for every prefix length (the masked compare against ipaddress)."""
    import ipaddress
    import random
    net = ipaddress.ip_network(network)
    rng = random.Random(network)
    base = int(net.network_address)
    bits = net.max_prefixlen
    near = [base, base + net.num_addresses - 1, base - 1, base + net.num_addresses,
            base ^ (1 << (bits - net.prefixlen)) if net.prefixlen else base]
    candidates = [a % (1 << bits) for a in near] + [rng.getrandbits(bits) for _ in range(40)] + \
                 [(base & ~((1 << (bits - net.prefixlen)) - 1)) | rng.getrandbits(bits - net.prefixlen)
                  for _ in range(10)]
    ep = Endpoint([network], seed=1)
    ep.listen(80)
    src = CLIENT if net.version == 4 else CLIENT6
    checked = 0
    for value in candidates:
        dst = ipaddress.ip_address(value) if net.version == 6 else ipaddress.IPv4Address(value)
        if str(dst) == src or (net.version == 6 and "." in str(dst)):   # IPv4-mapped spellings
            continue                                                     # are IPv4 to build()
        checked += 1
        got = ep.receive(fasttcp.build(src, str(dst), 40000, 80, seq=1, flags=Flags.SYN), 1.0)
        assert (got != "not_local") == (dst in net), (str(dst), got)
        ep.transmit()
    assert checked >= 45
    # a local address given to connect() is checked the same way (4 bytes for IPv4)
    inside = str(net.network_address + (1 if net.num_addresses > 2 else 0))
    remote = "203.0.113.9" if net.version == 4 else "2001:db8:ffff::9"
    if ipaddress.ip_address(remote) not in net:
        ep.connect(remote, 443, local_addr=inside, now=2.0)
        outside = net.network_address - 1 if int(net.network_address) else None
        if outside is not None:
            with pytest.raises(UsageError):
                ep.connect(remote, 443, local_addr=str(outside), now=2.0)

def test_caller_misuse_raises(pair):
    with pytest.raises(UsageError):
        pair.server.listen(SERVER_PORT)                     # twice
    for port in (0, 65536, -1, "80", 80.0, None):
        with pytest.raises(UsageError):
            pair.server.listen(port)
        with pytest.raises(UsageError):
            pair.client.connect(SERVER, port, now=pair.now)
        if port is not None:
            with pytest.raises(UsageError):
                pair.client.connect(SERVER, 80, local_port=port, now=pair.now)
    for now in (-1, -1e-9, float("nan"), "1", None):
        with pytest.raises(UsageError):
            pair.client.poll(now)
        with pytest.raises(UsageError):
            pair.server.receive(b"", now)
        with pytest.raises(UsageError):
            pair.client.connect(SERVER, 80, now=now)
    with pytest.raises(UsageError):
        pair.client.connect(CLIENT6, 80, now=pair.now)      # no IPv6 address of ours
    with pytest.raises(UsageError):
        pair.client.connect(SERVER, 80, local_addr="198.18.0.9", now=pair.now)
    cc = pair.connect()
    with pytest.raises(UsageError):                         # the same 4-tuple, explicitly
        pair.client.connect(SERVER, SERVER_PORT, local_port=pair.client_port, now=pair.now)
    other = pair.client.connect(SERVER, SERVER_PORT, now=pair.now)   # an ephemeral port is free
    assert other.key[1] != pair.client_port
    pair.transfer()
    pair.abort(cc)
    for call in (lambda: cc.send(b"x"), cc.close, cc.abort):
        with pytest.raises(ConnectionStateError):
            call()
    assert issubclass(ConnectionStateError, UsageError) and issubclass(ConnectionStateError, ValueError)
    for bad in (dict(mss=10), dict(window=0), dict(wscale=15), dict(capacity=0), dict(msl=0),
                dict(wscale=None, window=70000)):
        with pytest.raises(UsageError):
            Endpoint([SERVER], **bad)


def test_close_twice_raises(pair):
    cc, sc = pair.establish()
    pair.close(cc)
    with pytest.raises(ConnectionStateError):
        cc.close()
    with pytest.raises(ConnectionStateError):
        cc.send(b"after close")


def test_syn_flood_fills_the_table_without_overflowing_it():
    # the policy without SYN cookies (syn_cookies="off"; "auto" answers a full backlog
    # with cookies instead: tests/endpoint/test_syn_cookies.py)
    ep = Endpoint([SERVER], capacity=8, seed=3, syn_cookies="off")
    ep.listen(80)
    reasons = []
    for i in range(40):
        pkt = fasttcp.build(CLIENT, SERVER, 1000 + i, 80, seq=(WRAP - 20 + i) % WRAP, flags=Flags.SYN)
        reasons.append(ep.receive(pkt, 1.0 + i * 1e-3))
        assert len(ep) <= 8
    stats = ep.stats
    opened = sum(1 for e in ep.events() if e.cause is Cause.SYN_RECEIVED)
    # the table evicts the oldest never-established entries for new SYNs; a SYN is refused
    # only when nothing is evictable. Every SYN is either an entry or a counted refusal,
    # and every entry beyond capacity pushed one out.
    assert opened + stats["drops"]["table_full"] == 40
    assert reasons.count("table_full") == stats["drops"]["table_full"]
    assert len(ep) == 8 and stats["evictions"] == opened - 8
    assert len(ep.transmit()) == opened                     # one SYN-ACK per entry

    # established connections are not evictable: a full table of them refuses SYNs
    full = Endpoint([SERVER], capacity=8, seed=3, syn_cookies="off")
    full.listen(80)
    for i in range(8):
        full.receive(fasttcp.build(CLIENT, SERVER, 2000 + i, 80, seq=100, flags=Flags.SYN), 1.0)
        synack = fasttcp.parse(full.transmit()[0])
        assert full.receive(fasttcp.build(CLIENT, SERVER, 2000 + i, 80, seq=101, ack=synack.seq + 1,
                                          flags=Flags.ACK), 1.0) is None
    assert len(full) == 8
    assert full.receive(fasttcp.build(CLIENT, SERVER, 3000, 80, seq=1, flags=Flags.SYN), 1.0) == "table_full"
    assert full.stats["drops"]["table_full"] == 1 and full.stats["evictions"] == 0
    assert full.transmit() == [] and len(full) == 8
    with pytest.raises(UsageError):
        full.connect(CLIENT, 9999, now=1.0)                 # the user is told, not silently refused


def test_connect_batch_keeps_one_copy_of_its_keys_within_the_capacity():
    # connect_batch opens a copy of its keys (what it checked, whatever another thread
    # does to the caller's array); the copy of the largest batch so far is kept for the
    # next calls and counted in memory_bytes, at most the capacity's worth
    from fasttcp.bench.handshakes import flow_keys

    ep = Endpoint(["198.18.0.0/16"], capacity=1000, seed=3)
    base = ep.memory_bytes
    ep.connect_batch(flow_keys(600)[:300], 1.0)
    assert ep.memory_bytes == base + 300 * 40
    ep.connect_batch(flow_keys(600)[300:400], 1.0)              # smaller: the same copy
    assert ep.memory_bytes == base + 300 * 40
    ep.connect_batch(flow_keys(2000)[1000:1900], 1.0)           # larger: a new one
    assert ep.memory_bytes == base + 900 * 40
    ids = ep.connect_batch(flow_keys(5000)[2000:3500], 1.0)     # past the capacity: not kept
    assert ep.memory_bytes == base + 900 * 40
    assert (ids >= 0).all() and len(ep) == 1000                 # (evicting to make room)


def test_memory_does_not_grow_with_the_number_of_packets():
    ep = Endpoint([SERVER], capacity=8, seed=3)
    ep.listen(80)
    packets = [fasttcp.build(CLIENT, SERVER, 1000 + i % 4000, 80, seq=i, flags=Flags.SYN | (Flags.ACK if i % 3 else 0),
                             ack=i) for i in range(4000)]
    size = ep.memory_bytes

    def run(t):
        for pkt in packets:
            ep.receive(pkt, t)
        ep.transmit()
        ep.events()
        ep.poll(t + 100)
        ep.transmit()
        ep.events()

    run(1.0)
    gc.collect()
    tracemalloc.start()
    try:
        run(200.0)
        gc.collect()
        first, _ = tracemalloc.get_traced_memory()
        for k in range(3):
            run(400.0 + 200 * k)
        gc.collect()
        last, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert last - first < 64 * 1024, (first, last)
    assert ep.memory_bytes == size and len(ep) <= 8
    assert ep.stats["segments_in"] == 5 * 4000


# ---- IPv6 ----

def test_ipv6_full_lifecycle():
    pair = Pair(family=6)
    cc = pair.connect()
    pair.forward_to_server(SYN(seq=pair.C, options=dict(mss=1460, wscale=7, sack_permitted=True)))
    pair.forward_to_client(SYN_ACK(seq=pair.S, ack=pair.C + 1))
    pair.forward_to_server(ACK(seq=pair.C + 1, ack=pair.S + 1))
    sc = pair.accept()
    assert cc.state is ESTABLISHED and sc.state is ESTABLISHED
    assert str(cc.key[0]) == CLIENT6 and str(sc.key[0]) == SERVER6 and sc.key[3] == pair.client_port
    assert pair.last_segment("client").version == 6
    pair.send(cc, b"over IPv6" * 500)
    pair.transfer()
    assert sc.recv() == b"over IPv6" * 500
    pair.send(sc, b"back")
    pair.forward_to_client(DATA(payload=b"back"))
    pair.forward_to_server(ACK())
    pair.close(cc)
    pair.forward_to_server(FIN_ACK(seq=pair.C + 1 + 4500, ack=pair.S + 5))
    pair.forward_to_client(ACK(ack=pair.C + 4502))
    pair.close(sc)
    pair.forward_to_client(FIN_ACK(seq=pair.S + 5))
    pair.forward_to_server(ACK(ack=pair.S + 6))
    assert (cc.state, sc.state) == (TIME_WAIT, CLOSED)
    assert cc.recv() == b"back"
    # a reset over IPv6 to a closed port
    pkt = fasttcp.build(CLIENT6, SERVER6, 40000, 81, seq=9, flags=Flags.SYN)
    assert pair.deliver_to_server(pkt) == "no_listener"
    pair.expect_from_server(RST_ACK(ack=10))
    pair.at(60.0)
    pair.poll()
    assert cc.state is CLOSED and pair.client_changes()[-1] == (TIME_WAIT, CLOSED, Cause.TIMEOUT_2MSL)


# ---- the batch path ----

N_FLOWS = 1000


def _flows():
    return [(CLIENT, 10000 + i, SERVER, SERVER_PORT) for i in range(N_FLOWS)]


def _per_flow(events_by_port, port, old, new, cause):
    events_by_port[port].append((State(old), State(new), Cause(cause)))


@pytest.mark.parametrize("count", [0, 1, 3, 4, 5, 7, 8, 9, 11, 12, 16, 17, 40])
def test_receive_batch_equals_receive_one_by_one(count):
    """receive_batch parses packet i+8 and prefetches for packet i+4 while it runs
    packet i's rules: batches shorter than, equal to and just over the pipeline's
    depth and its half-way point must give what receive() gives one packet at a time --
    the same verdicts, segments sent, events and connections -- with malformed and
    foreign packets mixed in."""
    flows = [(CLIENT, 30000 + i, SERVER, SERVER_PORT) for i in range(count)]
    client = Endpoint([CLIENT], seed=1)
    syns = []
    if count:
        client.connect_batch(make_keys(flows), 1.0)
        syns = list(client.transmit())
    junk = fasttcp.build(CLIENT, "198.18.9.9", 1, 2, seq=1, flags=Flags.SYN)        # not ours
    packets = []
    for i, p in enumerate(syns):
        packets.append(p)
        if i % 3 == 1:
            packets.append(p[:30])                                                    # malformed
        if i % 5 == 2:
            packets.append(junk)
            packets.append(p)                                                         # the SYN again
    one, batch = (Endpoint([SERVER], seed=5) for _ in range(2))
    for ep in (one, batch):
        ep.listen(SERVER_PORT)
    want = [one.receive(p, 2.0) for p in packets]
    buf = b"".join(packets)
    lens = np.array([len(p) for p in packets], dtype=np.int64)
    offs = (np.cumsum(lens) - lens).astype(np.int64)
    got = batch.receive_batch(buf, offs, lens, 2.0) if packets else np.empty(0, np.int64)
    assert [None if r < 0 else DROP_REASONS[r] for r in got] == want
    assert batch.transmit() == one.transmit()
    # one's events came out as objects as it went; the batch's stay raw until asked for
    want_events = [(round(e.time * 1e6), e.connection.key[1], e.connection.key[3], e.old, e.new, e.cause)
                   for e in one.events()]
    raw = batch.events_batch()
    got_events = [(int(e["time_us"]), int(e["lport"]), int(e["rport"]), State(e["old_state"]), State(e["new_state"]),
                   Cause(e["cause"])) for e in raw]
    assert got_events == want_events and len(want_events) == count
    assert len(batch) == len(one) == count
    assert batch.stats == one.stats


@pytest.mark.parametrize("count", [1, 5, 8, 9, 17])
def test_a_whole_lifecycle_through_receive_batch_equals_receive(count):
    """The same, over a connection's whole life on the server side: the client's SYNs,
    ACKs, FINs and last ACKs (with an unacceptable segment and a duplicate mixed in)
    go to one server packet by packet and to another in batches; both must answer
    alike at every step -- through SYN-RECEIVED, ESTABLISHED, CLOSE-WAIT, LAST-ACK and
    the close that removes the record."""
    flows = [(CLIENT, 31000 + i, SERVER, SERVER_PORT) for i in range(count)]
    client = Endpoint([CLIENT], seed=1)
    one, batch = (Endpoint([SERVER], seed=5) for _ in range(2))
    for ep in (one, batch):
        ep.listen(SERVER_PORT)
    t = 3.0

    def step(packets):
        """Client packets to both servers; the client gets one's answers (the same
        as batch's, checked)."""
        extra = [packets[0][:-1]] if packets else []            # a damaged copy (malformed)
        if len(packets) > 2:
            extra.append(packets[2])                             # a duplicate
        feed = packets + extra
        want = [one.receive(p, t) for p in feed]
        buf = b"".join(feed)
        lens = np.array([len(p) for p in feed], dtype=np.int64)
        offs = (np.cumsum(lens) - lens).astype(np.int64)
        got = batch.receive_batch(buf, offs, lens, t)
        assert [None if r < 0 else DROP_REASONS[r] for r in got] == want
        answers = one.transmit()
        assert batch.transmit() == answers
        for p in answers:
            client.receive(p, t)
        assert batch.stats == one.stats and len(batch) == len(one)

    ids = client.connect_batch(make_keys(flows), t)
    step(client.transmit())                                      # SYN -> SYN-ACK
    step(client.transmit())                                      # ACK: ESTABLISHED
    client.close_batch(ids, t)
    step(client.transmit())                                      # FIN -> ACK: CLOSE-WAIT
    for ep in (one, batch):
        ep.close_batch(ep.accept_batch(), t)                     # FIN: LAST-ACK
    fins = one.transmit()
    assert batch.transmit() == fins and len(fins) == count
    for p in fins:
        client.receive(p, t)
    step(client.transmit())                                      # last ACK: closed
    assert len(one) == len(batch) == 0
    drops = one.stats["drops"]
    assert drops["malformed"] == 4
    if count > 2:      # the duplicate FIN (old sequence: ACKed, dropped), the duplicate last ACK (no record)
        assert drops["unacceptable"] == 1 and drops["no_listener"] == 1


def _rebuilt(pkt: bytes) -> bytes:
    """The packet built again by fasttcp.build() (the general option encoder) from
    what parsing it gives."""
    seg = fasttcp.parse(pkt)
    o = seg.options
    opts = {k: v for k, v in (("mss", o.mss), ("wscale", o.wscale), ("timestamp", o.timestamp)) if v is not None}
    if o.sack_permitted:
        opts["sack_permitted"] = True
    return fasttcp.build(seg.src, seg.dst, seg.src_port, seg.dst_port, seq=seg.seq, ack=seg.ack,
                         flags=seg.flags, window=seg.window, options=opts or None, payload=seg.payload,
                         ttl=seg.ttl)


@pytest.mark.parametrize("wscale", [None, 0, 7, 14])
@pytest.mark.parametrize("sack", [False, True])
@pytest.mark.parametrize("timestamps", [False, True])
@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_segments_the_endpoint_builds_equal_the_general_builder(wscale, sack, timestamps, v6):
    """The endpoint writes its options as words in Linux's layout without the general
    encoder: its SYN (every option it is configured to offer), the SYN-ACK answering a
    peer that offers all or none, its ACK, data, FIN and RST must be byte for byte what
    fasttcp.build() makes of the same fields and options."""
    client_addr, server_addr = (CLIENT6, SERVER6) if v6 else (CLIENT, SERVER)
    cfg = dict(wscale=wscale, sack=sack, timestamps=timestamps)
    client = Endpoint([client_addr], seed=1, **cfg)
    server = Endpoint([server_addr], seed=2, **cfg)
    server.listen(SERVER_PORT)
    seen = []

    def move(src, dst, now):
        for p in src.transmit():
            seen.append(p)
            dst.receive(p, now)

    conn = client.connect(server_addr, SERVER_PORT, now=1.0)
    move(client, server, 1.0)                     # SYN
    move(server, client, 1.0)                     # SYN-ACK answering our offer
    move(client, server, 1.0)                     # ACK
    conn.send(b"hello, world")
    move(client, server, 1.1)                     # data
    move(server, client, 1.1)                     # its ACK
    conn.close()
    move(client, server, 1.2)                     # FIN
    conn2 = client.connect(server_addr, SERVER_PORT, now=1.3)
    for _ in range(3):
        move(client, server, 1.3)
        move(server, client, 1.3)
    conn2.abort()
    move(client, server, 1.4)                     # RST (abort)
    stray = fasttcp.build(client_addr, server_addr, 41000, 9, seq=5, ack=9, flags=Flags.ACK)
    server.receive(stray, 1.4)                    # RST for no connection
    seen.extend(server.transmit())
    # a SYN-ACK to a bare SYN (no options offered)
    syn = fasttcp.build(client_addr, server_addr, 40999, SERVER_PORT, seq=7, flags=Flags.SYN)
    server.receive(syn, 1.5)
    seen.extend(server.transmit())
    kinds = [fasttcp.parse(p).flags for p in seen]
    assert Flags.SYN in kinds and Flags.SYN | Flags.ACK in kinds and Flags.RST in kinds
    assert any(f & Flags.FIN for f in kinds) and any(fasttcp.parse(p).payload for p in seen)
    for p in seen:
        assert p == _rebuilt(p), fasttcp.parse(p)


def _batch_run():
    client = Endpoint([CLIENT], seed=1)
    server = Endpoint([SERVER], seed=33)
    server.listen(SERVER_PORT)
    t = 5.0
    ids = client.connect_batch(make_keys(_flows()), t)
    assert (ids >= 0).all()

    def move(src, dst):
        buf, offs, lens = src.transmit_batch()
        res = dst.receive_batch(buf, offs, lens, t)
        assert (res == -1).all(), collections.Counter(DROP_REASONS[r] for r in res if r >= 0)
        return len(offs)

    assert move(client, server) == N_FLOWS                  # SYN
    assert move(server, client) == N_FLOWS                  # SYN-ACK
    assert move(client, server) == N_FLOWS                  # ACK
    cev, sev = client.events_batch(), server.events_batch()
    server_ids = np.unique(sev["conn"]).astype(np.int64)
    server.clear_events()                                   # the accept queue too
    client.close_batch(ids, t)
    assert move(client, server) == N_FLOWS                  # FIN
    assert move(server, client) == N_FLOWS                  # ACK
    server.close_batch(server_ids, t)
    assert move(server, client) == N_FLOWS                  # FIN
    assert move(client, server) == N_FLOWS                  # ACK
    assert client.transmit_batch()[1].size == 0 and server.transmit_batch()[1].size == 0
    cev = np.concatenate([cev, client.events_batch()])
    sev = np.concatenate([sev, server.events_batch()])
    assert cev.dtype == EVENT_DTYPE
    out = ({}, {})
    for evs, side, port_field in ((cev, 0, "lport"), (sev, 1, "rport")):
        by = collections.defaultdict(list)
        for e in evs:
            _per_flow(by, int(e[port_field]), e["old_state"], e["new_state"], e["cause"])
        out[side].update(by)
    assert (len(client), len(server)) == (N_FLOWS, 0)       # clients in TIME-WAIT
    return out


def test_accept_batch_hands_out_every_established_connection_once():
    # the batch path's accept(): the ids of the connections whose handshake completed,
    # minus one reset while it waited, each handed out once
    client = Endpoint([CLIENT], seed=1)
    server = Endpoint([SERVER], seed=33)
    server.listen(SERVER_PORT)
    t = 5.0
    client.connect_batch(make_keys(_flows()), t)

    def move(src, dst):
        buf, offs, lens = src.transmit_batch()
        assert (dst.receive_batch(buf, offs, lens, t) == -1).all()
        return [fasttcp.parse(bytes(buf[o:o + n])) for o, n in zip(offs, lens, strict=True)]

    move(client, server)                                    # SYN
    move(server, client)                                    # SYN-ACK
    assert server.accept_batch().size == 0                  # nothing established yet
    acks = move(client, server)                             # ACK
    gone = acks[7]
    rst = fasttcp.build(CLIENT, SERVER, gone.src_port, SERVER_PORT, seq=gone.seq, flags=Flags.RST)
    assert server.receive_batch(rst, [0], [len(rst)], t)[0] == -1
    sev = server.events_batch()
    established = set(sev["conn"][sev["cause"] == int(Cause.ACK_OF_SYN)].tolist())
    reset = set(sev["conn"][sev["cause"] == int(Cause.RST_RECEIVED)].tolist())
    assert len(established) == N_FLOWS and len(reset) == 1 and reset <= established
    got = server.accept_batch()
    assert got.dtype == np.int64 and len(got) == N_FLOWS - 1
    assert set(got.tolist()) == established - reset
    assert server.accept_batch().size == 0 and server.accept() is None      # handed out once


def test_the_accept_queue_wraps_around_its_ring():
    """The accept queue is a ring as long as the table: over many rounds its head and
    tail wrap past the end (a table of 5, connections accepted one, two or three at a
    time, the rest left queued while new handshakes complete). Every connection is
    handed out once, in the order its handshake completed."""
    client = Endpoint([CLIENT], seed=1, capacity=64)
    server = Endpoint([SERVER], seed=2, capacity=5)
    server.listen(SERVER_PORT)
    t, port, handed, completed = 1.0, 20000, [], []
    for rnd in range(12):
        for _ in range(2 if rnd % 3 else 1):
            conn = client.connect(SERVER, SERVER_PORT, local_port=port, now=t)
            port += 1
            for _ in range(3):                                       # SYN, SYN-ACK, ACK
                for p in client.transmit():
                    server.receive(p, t)
                for p in server.transmit():
                    client.receive(p, t)
            assert conn.state == ESTABLISHED
            completed.append(conn.local[1])
        for _ in range(1 + rnd % 3):
            peer = server.accept()
            if peer is None:
                break
            handed.append(peer.remote[1])
            peer.abort()                                             # room for the next rounds
        t += 1.0
    while (peer := server.accept()) is not None:
        handed.append(peer.remote[1])
    assert handed == completed


def _single_run():
    client = Endpoint([CLIENT], seed=1)
    server = Endpoint([SERVER], seed=33)
    server.listen(SERVER_PORT)
    t = 5.0
    conns = [client.connect(SERVER, SERVER_PORT, local_port=lp, now=t) for _, lp, _, _ in _flows()]

    def move(src, dst):
        pkts = src.transmit()
        for p in pkts:
            assert dst.receive(p, t) is None
        return len(pkts)

    cev, sev = [], []
    assert move(client, server) == N_FLOWS
    assert move(server, client) == N_FLOWS
    assert move(client, server) == N_FLOWS
    accepted = []
    while (c := server.accept()) is not None:
        accepted.append(c)
    assert len(accepted) == N_FLOWS
    cev += client.events()
    sev += server.events()
    for c in conns:
        c.close()
    assert move(client, server) == N_FLOWS
    assert move(server, client) == N_FLOWS
    for c in accepted:
        c.close()
    assert move(server, client) == N_FLOWS
    assert move(client, server) == N_FLOWS
    cev += client.events()
    sev += server.events()
    out = ({}, {})
    for evs, side, idx in ((cev, 0, 1), (sev, 1, 3)):
        by = collections.defaultdict(list)
        for e in evs:
            _per_flow(by, e.connection.key[idx], e.old, e.new, e.cause)
        out[side].update(by)
    return out


def test_batch_path_matches_the_single_packet_path():
    batch_client, batch_server = _batch_run()
    single_client, single_server = _single_run()
    assert batch_client == single_client and batch_server == single_server
    assert len(batch_client) == len(batch_server) == N_FLOWS
    assert set(map(tuple, batch_client.values())) == {(
        (CLOSED, SYN_SENT, Cause.CONNECT), (SYN_SENT, ESTABLISHED, Cause.SYN_ACK_RECEIVED),
        (ESTABLISHED, FIN_WAIT_1, Cause.CLOSE), (FIN_WAIT_1, FIN_WAIT_2, Cause.ACK_OF_FIN),
        (FIN_WAIT_2, TIME_WAIT, Cause.PEER_FIN))}
    assert set(map(tuple, batch_server.values())) == {(
        (LISTEN, SYN_RECEIVED, Cause.SYN_RECEIVED), (SYN_RECEIVED, ESTABLISHED, Cause.ACK_OF_SYN),
        (ESTABLISHED, CLOSE_WAIT, Cause.PEER_FIN), (CLOSE_WAIT, LAST_ACK, Cause.CLOSE),
        (LAST_ACK, CLOSED, Cause.ACK_OF_FIN))}


@pytest.mark.parametrize("capacity, count", [(64, 53), (20, 53), (64, 3), (64, 8), (64, 9)],
                         ids=["room", "table-fills", "3-keys", "8-keys", "9-keys"])
def test_connect_batch_equals_connects_one_by_one(capacity, count):
    """connect_batch hashes and prefetches keys ahead of opening them; what it returns
    and sends must be what connect() one key at a time gives: duplicates inside the
    batch and keys already open are refused as in use (-2), a full table makes room
    the same way (by evicting embryonic connections), and the SYNs are byte for byte
    the same. Batches shorter than, equal to and just over the pipeline depth (8)."""
    flows = [(CLIENT, 20000 + i % 37, SERVER, SERVER_PORT) for i in range(50)]   # 13 repeats
    flows = (flows + [(CLIENT, 20000, SERVER, SERVER_PORT)] * 3)[:count]
    one = Endpoint([CLIENT], seed=7, capacity=capacity)
    one.connect(SERVER, SERVER_PORT, local_port=20001, now=1.0)                 # already open
    batch = Endpoint([CLIENT], seed=7, capacity=capacity)
    batch.connect(SERVER, SERVER_PORT, local_port=20001, now=1.0)
    got = batch.connect_batch(make_keys(flows), 2.0)
    want = []
    for _, port, _, _ in flows:
        try:
            want.append(one.connect(SERVER, SERVER_PORT, local_port=port, now=2.0).id)
        except UsageError as e:
            want.append(-2 if "in use" in str(e) else -1)
    assert got.tolist() == want
    if capacity == 64 and count == 53:
        assert (got == -2).sum() == 13 + 3 + 1                 # repeats, and the one already open
    if capacity == 20:
        assert len(batch) == capacity                            # full: SYN-SENT records made room
    assert batch.transmit() == one.transmit()
    assert len(batch) == len(one)
