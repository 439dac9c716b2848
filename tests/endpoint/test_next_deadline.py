"""`Endpoint.next_deadline` walks the timer wheel from its expiry cursor and stops at the
first deadline no later bucket can beat: it must still name the earliest timer as the
cursor moves and when timers pile up a minute ahead (SYN RTOs: 1 s, doubling on each
retransmission, RFC 6298 2.1 and 5.5)."""
import pytest

from fasttcp import Endpoint

C, S = "198.18.0.1", "198.18.0.2"


def test_earliest_timer_as_the_cursor_moves():
    ep = Endpoint([C], seed=3)
    assert ep.next_deadline() is None
    ep.connect(S, 80, now=0.0)                    # SYN due again at 1.0
    ep.poll(0.5)                                  # the cursor moves to 0.5 s
    ep.connect(S, 81, now=0.6)                    # due at 1.6
    assert ep.next_deadline() == pytest.approx(1.0)
    ep.poll(1.0)                                  # the first SYN again: due at 3.0
    assert ep.next_deadline() == pytest.approx(1.6)
    ep.poll(1.6)                                  # the second: due at 3.6
    assert ep.next_deadline() == pytest.approx(3.0)
    ep.poll(3.0)
    assert ep.next_deadline() == pytest.approx(3.6)


def test_a_near_timer_among_many_far_ones():
    ep = Endpoint([C], seed=5, capacity=1 << 16)
    for i in range(2000):
        ep.connect(S, 1000 + i, now=0.0)
    for t in (1.0, 3.0, 7.0, 15.0, 31.0):        # retransmitted at 1, 3, 7, 15, 31 s
        ep.poll(t)
    assert ep.next_deadline() == pytest.approx(63.0)
    ep.connect(S, 5000, now=40.0)
    assert ep.next_deadline() == pytest.approx(41.0)
    ep.poll(41.0)
    assert ep.next_deadline() == pytest.approx(43.0)


def test_a_timer_more_than_a_wheel_turn_ahead():
    # the wheel spans 2**16 ticks of 1024 us (67 s): a deadline further out shares a
    # bucket with earlier ticks and must not end the walk early
    ep = Endpoint([C], seed=6)
    ep.connect(S, 80, now=0.0)
    for t in (1.0, 3.0, 7.0, 15.0, 31.0, 63.0):  # then 64 s, and the RTO cap (60 s at most)
        ep.poll(t)
    deadline = ep.next_deadline()
    assert deadline is not None and deadline > 63.0
    ep.connect(S, 81, now=deadline - 0.5)
    assert ep.next_deadline() == pytest.approx(deadline)
