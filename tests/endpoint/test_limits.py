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
    ep = Endpoint(["198.18.0.2"], seed=1, max_events=1024, capacity=8192)
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
