"""Regression tests for endpoint defects (each was reproduced, then fixed): timers kept
across CLOSING/CLOSE-WAIT, batch data never read through a later single-packet call's
buffer, FIN-WAIT-2 not cut while the peer sends, tiny peer MSS clamped, TIME-WAIT reopen
judged by timestamps when they are in use."""
import fasttcp
from fasttcp import Endpoint, Flags, State

C, S = "198.18.0.1", "198.18.0.2"


def pair(**kw):
    client, server = Endpoint([C], seed=11, **kw), Endpoint([S], seed=12, **kw)
    server.listen(80)
    return client, server


def shuttle(a, b, now, rounds=4, drop=None):
    """Move packets both ways; `drop(pkt, direction)` may swallow some."""
    for _ in range(rounds):
        for p in a.transmit():
            if not (drop and drop(p, "a->b")):
                b.receive(p, now)
        for p in b.transmit():
            if not (drop and drop(p, "b->a")):
                a.receive(p, now)


def established():
    client, server = pair()
    cc = client.connect(S, 80, now=0.0)
    shuttle(client, server, 0.0)
    sc = server.accept()
    assert cc.state is State.ESTABLISHED and sc.state is State.ESTABLISHED
    return client, server, cc, sc


def test_simultaneous_close_with_a_lost_fin_still_resends_it():
    client, server, cc, sc = established()
    cc.close()
    sc.close()                                   # FINs cross
    fins = client.transmit()                     # the client's FIN is lost
    for p in server.transmit():
        client.receive(p, 0.1)                   # server's FIN: client -> CLOSING
    assert cc.state is State.CLOSING
    assert client.next_deadline() is not None    # the FIN's retransmission timer survived
    client.poll(client.next_deadline())
    resent = [fasttcp.parse(p) for p in client.transmit()]
    assert any(Flags.FIN in s.flags for s in resent)
    assert fins


def test_data_lost_before_the_peers_fin_is_retransmitted_in_close_wait():
    client, server, cc, sc = established()
    cc.send(b"hello")
    client.transmit()                            # lost
    sc.close()
    for p in server.transmit():
        client.receive(p, 0.1)                   # server's FIN: client -> CLOSE-WAIT
    assert cc.state is State.CLOSE_WAIT and cc.pending == 5
    deadline = client.next_deadline()
    assert deadline is not None
    client.poll(deadline)
    assert any(bytes(fasttcp.parse(p).payload) == b"hello" for p in client.transmit())


def test_batch_data_is_never_read_through_a_later_packets_buffer():
    client, server, cc, sc = established()
    cc.send(bytes(range(200)) * 5)               # 1000 bytes
    buf, offs, lens = client.transmit_batch()
    server.receive_batch(buf, offs, lens, 0.2)   # DATA events stay raw (batch path)
    ack = fasttcp.build(C, S, cc.key[1], 80, seq=0, ack=0, flags=Flags.ACK)
    server.receive(ack, 0.3)                     # a small packet through the single path
    got = sc.recv()
    # never bytes from past the small packet's buffer: either nothing, or the right data
    assert got in (b"", bytes(range(200)) * 5)


def test_fin_wait_2_idle_limit_restarts_while_the_peer_sends():
    client, server, cc, sc = established()
    cc.close()
    shuttle(client, server, 1.0)
    assert cc.state is State.FIN_WAIT_2
    for t in (30.0, 59.0, 88.0):                 # the peer keeps sending (half-close)
        sc.send(b"x" * 10)
        shuttle(client, server, t)
        client.poll(t)
    assert cc.state is State.FIN_WAIT_2 and cc.recv() == b"x" * 30
    client.poll(88.0 + 60.0)                     # 60 s of silence ends it
    assert cc.state is State.CLOSED


def test_a_peer_mss_of_one_is_clamped():
    client, server = pair()
    syn = fasttcp.build(C, S, 40000, 80, seq=1, flags=Flags.SYN, options=dict(mss=1))
    server.receive(syn, 0.0)
    synack = fasttcp.parse(server.transmit()[0])
    server.receive(fasttcp.build(C, S, 40000, 80, seq=2, ack=synack.seq + 1, flags=Flags.ACK), 0.0)
    sc = server.accept()
    assert sc.mss >= 64
    sc.send(bytes(1000))
    assert len(server.transmit()) <= 1000 // 64 + 1


def test_time_wait_reopen_needs_a_newer_timestamp_when_timestamps_are_in_use():
    client, server, cc, sc = established()
    sc.close()                                   # the server closes first: it waits in TIME-WAIT
    shuttle(client, server, 1.0)
    cc.close()
    shuttle(client, server, 1.0)
    assert sc.state is State.TIME_WAIT
    tcb_client_port = cc.key[1]
    # a SYN with a higher sequence number but an OLD timestamp must not reopen (RFC 6191)
    syn = fasttcp.build(C, S, tcb_client_port, 80, seq=(sc.tcb["rcv_nxt"] + 100000) % 2**32,
                        flags=Flags.SYN, options=dict(mss=1460, timestamp=(1, 0)))
    server.receive(syn, 2.0)
    assert not [e for e in server.events() if e.cause.name == "REOPEN"]


def test_a_stale_accept_queue_entry_never_hands_out_a_new_incarnation():
    # established, reset before accept(), then 255 SYN/RST cycles on the recycled record:
    # the 8-bit generation wraps, but the queue entry must still not match
    ep = Endpoint([S], seed=5)
    ep.listen(80)
    peer = "10.0.0.1"

    def send(sport, **kw):
        ep.receive(fasttcp.build(peer, S, sport, 80, **kw), 1.0)
        return [fasttcp.parse(x) for x in ep.transmit()]

    sa = send(1000, seq=100, flags=Flags.SYN)[0]
    send(1000, seq=101, ack=sa.seq + 1, flags=Flags.ACK)
    send(1000, seq=101, flags=Flags.RST)
    for i in range(255):
        send(2000 + i, seq=5, flags=Flags.SYN)
        send(2000 + i, seq=6, flags=Flags.RST)
    sa = send(3000, seq=7, flags=Flags.SYN)[0]
    assert ep.accept() is None                    # nothing established is waiting
    send(3000, seq=8, ack=sa.seq + 1, flags=Flags.ACK)
    c = ep.accept()
    assert c is not None and c.state is State.ESTABLISHED and c.key[3] == 3000
    assert ep.accept() is None                    # handed out once


def test_user_calls_take_the_time_they_happen_at():
    client, server, cc, sc = established()
    cc.send(b"late", now=2.5)
    assert client.next_deadline() == 2.5 + cc.rto            # the RTO runs from the send
    cc.close(now=3.0)
    assert [e.time for e in client.events() if e.cause.name == "CLOSE"] == [3.0]
