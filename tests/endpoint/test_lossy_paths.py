"""Two endpoints over a path that loses, duplicates and reorders: every byte arrives.

A client sends a random amount of data to a server whose application reads at random
moments (and in half the runs the server sends to the client as well, both windows
scaled), over random windows, through a schedule (seeded) that drops, duplicates and
holds back segments in both directions; then the path turns lossless and both sides
run their timers for a bounded stretch of simulated time. The data must arrive whole
and in order, a close must reach the server, and the exchange must stay in proportion
to the data: two ends that disagree about what was sent must not answer each other's
ACKs without end.

The listed seeds are schedules that once stalled (an ACK of a flight that came after
its RTO was refused and answered, back and forth; a flight lost behind the FIN was
resent one segment per doubling timeout); the rest are drawn afresh per run
(FASTTCP_LOSSY_SEEDS of each kind, 100 by default), and a failure names its seed.
"""
from __future__ import annotations

import os
import random

import pytest

from fasttcp import State
from tests.scenario import Pair

# schedules that once stalled: (seed, duplicates and reorders, close at the end)
ONCE_STALLED = [(40, True, False), (516, True, True), (587, True, True), (151, False, True)]
FRESH = int(os.environ.get("FASTTCP_LOSSY_SEEDS", "100"))


def _lossy_transfer(seed: int, reorder: bool, close: bool, both_ways: bool = False) -> dict:
    """One schedule. `both_ways`: the server sends too, and both windows are scaled
    (random sizes, so that rounding moves their edges); else only the client sends, to
    an unscaled window (the random draws of those schedules stay as they were)."""
    rnd = random.Random(seed)
    window = rnd.choice([536, 1460, 2000, 2920, 5000, 20000])
    if both_ways:
        client_window = rnd.choice([1460, 5000, 20000, 65535, 200000])
        pair = Pair(timestamps=rnd.random() < 0.5, client=dict(window=client_window), server=dict(window=window))
    else:
        pair = Pair(timestamps=rnd.random() < 0.5, server=dict(window=window, wscale=None))
    cc, sc = pair.establish()
    total = rnd.randint(1, 30000)
    data = bytes(rnd.getrandbits(8) for _ in range(total))
    back = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 30000))) if both_ways else b""
    queued, got, held, crossed = 0, bytearray(), [], 0
    back_queued, back_got = 0, bytearray()
    t = 0.0
    closed = server_closed = False
    for _ in range(400):
        r = rnd.random()
        if both_ways and r >= 0.9:
            if back_queued < len(back):
                k = rnd.randint(1, 8000)
                pair.send(sc, back[back_queued:back_queued + k])
                back_queued += k
        elif r < 0.15 and queued < total:
            k = rnd.randint(1, 8000)
            pair.send(cc, data[queued:queued + k])
            queued += k
        elif r < 0.25:
            t += rnd.choice([0.01, 0.2, 1.0, 3.0])
            pair.at(t)
            pair.poll()
        elif r < 0.35:
            got += sc.recv()
            back_got += cc.recv()
            pair.sync()
        elif close and not both_ways and not closed and queued >= total and r < 0.4:
            pair.close(cc)
            closed = True
        else:
            pair.sync()
            side = rnd.choice(["client", "server"])
            box = pair.outbox[side]
            if not box:
                if held and rnd.random() < 0.5:              # a held-back segment arrives late
                    to, pkt = held.pop(rnd.randrange(len(held)))
                    pair._deliver(to, pkt)
                    crossed += 1
                continue
            pkt = box.pop(0)
            to = "server" if side == "client" else "client"
            x = rnd.random()
            if x < 0.15:
                continue                                    # lost
            if reorder and x < 0.3:
                held.append((to, pkt))                      # delivered again later...
                if x < 0.22:
                    continue                                # ...or only later
            pair._deliver(to, pkt)
            crossed += 1
    if queued < total:
        pair.send(cc, data[queued:])
    if back_queued < len(back) and sc.state in (State.ESTABLISHED, State.CLOSE_WAIT):
        pair.send(sc, back[back_queued:])
    if close and not both_ways and not closed:
        pair.close(cc)
    # the path heals: everything queued crosses, the applications read, timers run.
    # Both ways, the two ends close once everything has arrived: a half-closed end's
    # FIN-WAIT-2 ends after 60 s without a segment (Linux's tcp_fin_timeout), shorter
    # than the peer's RTO after the schedule's losses (up to 120 s), so a FIN sent
    # while data still flowed could end a connection whose data the path delayed
    for _ in range(600):
        t += 1.0
        pair.at(t)
        pair.poll()
        for _ in range(30):
            pair.sync()
            if not pair.outbox["client"] and not pair.outbox["server"]:
                break
            for src, dst in (("client", "server"), ("server", "client")):
                box, pair.outbox[src] = pair.outbox[src], []
                for pkt in box:
                    pair._deliver(dst, pkt)
                    crossed += 1
            got += sc.recv()
            back_got += cc.recv()
        got += sc.recv()
        back_got += cc.recv()
        arrived = len(got) >= total and len(back_got) >= len(back)
        if arrived and close and both_ways and not server_closed:
            for conn in (cc, sc):
                if conn.state in (State.ESTABLISHED, State.CLOSE_WAIT):
                    pair.close(conn)
            server_closed = True
            continue
        ended = (State.TIME_WAIT, State.CLOSED) if both_ways else (State.CLOSE_WAIT, State.LAST_ACK, State.CLOSED)
        if arrived and (not close or (sc.state in ended and (not both_ways or cc.state in ended))):
            break
    return dict(seed=seed, window=window, total=total, got=bytes(got), data=data, back=back,
                back_got=bytes(back_got), server=sc.state, client=cc.state, crossed=crossed, seconds=t)


def _check(run: dict, close: bool) -> None:
    where = f"seed {run['seed']} (window {run['window']}, {run['total']} bytes)"
    assert run["got"] == run["data"][:len(run["got"])], f"{where}: data out of order"
    assert len(run["got"]) == run["total"], \
        f"{where}: {len(run['got'])} of {run['total']} bytes in {run['seconds']:.0f} s, " \
        f"{run['crossed']} packets, client {run['client']}, server {run['server']}"
    assert run["back_got"] == run["back"], \
        f"{where}: {len(run['back_got'])} of {len(run['back'])} bytes back, client {run['client']}"
    if close and run["back"]:
        assert {run["server"], run["client"]} <= {State.TIME_WAIT, State.CLOSED}, \
            f"{where}: not closed: client {run['client']}, server {run['server']}"
    elif close:
        assert run["server"] in (State.CLOSE_WAIT, State.LAST_ACK, State.CLOSED), f"{where}: no FIN"
    # an exchange in proportion to the data: at most a few packets per 100 bytes
    # (the schedule's duplicates and retransmissions included), not an ACK war
    moved = run["total"] + len(run["back"])
    assert run["crossed"] < 2000 + moved // 25, f"{where}: {run['crossed']} packets"


@pytest.mark.parametrize("seed, reorder, close", ONCE_STALLED)
def test_schedules_that_once_stalled_deliver_everything(seed, reorder, close):
    _check(_lossy_transfer(seed, reorder, close), close)


@pytest.mark.parametrize("both_ways", [False, True], ids=["one-way", "both-ways-scaled"])
@pytest.mark.parametrize("reorder, close", [(True, False), (False, True), (True, True)])
def test_random_schedules_deliver_everything(reorder, close, both_ways):
    seeds = random.Random().sample(range(1_000_000), FRESH)
    for seed in seeds:
        _check(_lossy_transfer(seed, reorder, close, both_ways), close)
