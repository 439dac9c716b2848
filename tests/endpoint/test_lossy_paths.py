"""Two endpoints over a path that loses, duplicates and reorders: every byte arrives.

A client sends a random amount of data to a server whose application reads at random
moments, over random windows, through a schedule (seeded) that drops, duplicates and
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


def _lossy_transfer(seed: int, reorder: bool, close: bool) -> dict:
    rnd = random.Random(seed)
    window = rnd.choice([536, 1460, 2000, 2920, 5000, 20000])
    pair = Pair(timestamps=rnd.random() < 0.5, server=dict(window=window, wscale=None))
    cc, sc = pair.establish()
    total = rnd.randint(1, 30000)
    data = bytes(rnd.getrandbits(8) for _ in range(total))
    queued, got, held, crossed = 0, bytearray(), [], 0
    t = 0.0
    closed = False
    for _ in range(400):
        r = rnd.random()
        if r < 0.15 and queued < total:
            k = rnd.randint(1, 8000)
            pair.send(cc, data[queued:queued + k])
            queued += k
        elif r < 0.25:
            t += rnd.choice([0.01, 0.2, 1.0, 3.0])
            pair.at(t)
            pair.poll()
        elif r < 0.35:
            got += sc.recv()
            pair.sync()
        elif close and not closed and queued >= total and r < 0.4:
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
    if close and not closed:
        pair.close(cc)
    # the path heals: everything queued crosses, the application reads, timers run
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
        got += sc.recv()
        if len(got) >= total and (not close or sc.state in (State.CLOSE_WAIT, State.LAST_ACK, State.CLOSED)):
            break
    return dict(seed=seed, window=window, total=total, got=bytes(got), data=data, server=sc.state,
                client=cc.state, crossed=crossed, seconds=t)


def _check(run: dict, close: bool) -> None:
    where = f"seed {run['seed']} (window {run['window']}, {run['total']} bytes)"
    assert run["got"] == run["data"][:len(run["got"])], f"{where}: data out of order"
    assert len(run["got"]) == run["total"], \
        f"{where}: {len(run['got'])} of {run['total']} bytes in {run['seconds']:.0f} s, " \
        f"{run['crossed']} packets, client {run['client']}, server {run['server']}"
    if close:
        assert run["server"] in (State.CLOSE_WAIT, State.LAST_ACK, State.CLOSED), f"{where}: no FIN"
    # an exchange in proportion to the data: at most a few packets per 100 bytes
    # (the schedule's duplicates and retransmissions included), not an ACK war
    assert run["crossed"] < 2000 + run["total"] // 25, f"{where}: {run['crossed']} packets"


@pytest.mark.parametrize("seed, reorder, close", ONCE_STALLED)
def test_schedules_that_once_stalled_deliver_everything(seed, reorder, close):
    _check(_lossy_transfer(seed, reorder, close), close)


@pytest.mark.parametrize("reorder, close", [(True, False), (False, True), (True, True)])
def test_random_schedules_deliver_everything(reorder, close):
    seeds = random.Random().sample(range(1_000_000), FRESH)
    for seed in seeds:
        _check(_lossy_transfer(seed, reorder, close), close)
