"""What a peer can make an endpoint hold while the caller does not drain it is bounded."""
import fasttcp
from fasttcp import Endpoint, Flags


def test_unsent_output_is_bounded_and_counted():
    ep = Endpoint(["198.18.0.2"], seed=1, max_transmit_bytes=4096)
    # SYNs to a closed port: each one is answered with a RST,ACK (40 bytes) that nobody takes
    for i in range(1000):
        ep.receive(fasttcp.build("198.18.0.9", "198.18.0.2", 1024 + i, 81, seq=i, flags=Flags.SYN), now=0.0)
    sent = ep.transmit()
    assert sum(len(p) for p in sent) <= 4096
    assert ep.stats["transmit_dropped"] == 1000 - len(sent)
    assert ep.stats["drops"]["no_listener"] == 1000


def test_undrained_events_are_bounded_and_counted():
    # (no SYN cookies: every SYN makes a record and an event)
    ep = Endpoint(["198.18.0.2"], seed=1, max_events=1024, capacity=8192, syn_cookies="off")
    ep.listen(80)
    for i in range(3000):                   # each SYN makes one SYN_RECEIVED event
        ep.receive(fasttcp.build("198.18.0.9", "198.18.0.2", 1024 + i, 80, seq=i, flags=Flags.SYN), now=0.0)
        ep.transmit()
    raw = ep.events_batch()
    # the single-packet path turns raw events into Event objects after every call; an
    # application that never calls events() is held to the same cap
    assert len(raw) == 0 and len(ep.events()) == 1024
    assert ep.stats["events_dropped"] == 3000 - 1024
    for i in range(3000):
        pkt = fasttcp.build("198.18.0.8", "198.18.0.2", 1024 + i, 80, seq=i, flags=Flags.SYN)
        ep.receive_batch(pkt, [0], [len(pkt)], now=1.0)
    assert len(ep.events_batch()) == 1024
    assert ep.stats["events_dropped"] == 2 * (3000 - 1024)


def test_connections_reset_before_accept_never_lock_later_ones_out_of_the_accept_queue():
    # a peer completes as many handshakes as the server's table holds and resets them all
    # before the application accepts: their queue entries are dead, and the next
    # connections must still be accepted (the ring drops dead entries when it fills)
    client = Endpoint(["198.18.0.1"], capacity=64, seed=1)
    server = Endpoint(["198.18.0.2"], capacity=4, seed=2)
    server.listen(80)

    def shake(now):
        for _ in range(3):
            fasttcp.pipe(client, server, now)
            fasttcp.pipe(server, client, now)

    first = [client.connect("198.18.0.2", 80, local_port=1000 + i, now=1.0) for i in range(4)]
    shake(1.0)
    for c in first:
        c.abort(now=2.0)
    shake(2.0)
    assert len(server) == 0
    second = [client.connect("198.18.0.2", 80, local_port=2000 + i, now=3.0) for i in range(4)]
    shake(3.0)
    accepted = [server.accept() for _ in range(4)]
    assert [c.key[3] for c in accepted] == [2000, 2001, 2002, 2003]   # in handshake order
    assert server.accept() is None
    assert all(c.state is fasttcp.State.ESTABLISHED for c in second)
