"""`Tracker.feed_batch(indices=...)`: a shard's packets named by their batch indices.
The tracker steps only through its own packets and the other shards' packets at which
its clock ticks over, and must finish the same rows, in the same order, with the same
verdicts and counts as when it walks the whole batch with `select`."""
from pathlib import Path

import numpy as np
import pytest

from fasttcp import Tracker, UsageError, Verdict, build, read_pcap
from fasttcp.tracker.tracker import FLOW_DTYPE
from fasttcp.wire.rss import shard_of_batch
from tests.tracker.shard_probe import close_all, expect_refused_before_tracking

S, D = "198.18.0.1", "198.19.0.1"
DATA = Path(__file__).resolve().parents[1] / "data"
CAPTURES = sorted(p for p in DATA.iterdir() if p.suffix in (".pcap", ".pcapng"))


def batch(packets):
    """(buffer, offsets, lengths, ts_ns) of [(bytes, seconds), ...]."""
    lens = np.array([len(p) for p, _ in packets], dtype=np.int64)
    offs = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
    ts = np.array([round(t * 1e9) for _, t in packets], dtype=np.int64)
    return np.frombuffer(b"".join(p for p, _ in packets), dtype=np.uint8), offs, lens, ts


def both_ways(batches, shards, **kw):
    """Feed `batches` (argument tuples for feed_batch, and each packet's shard) to
    `shards` trackers with select and to as many with indices; return what each gave:
    per shard the verdicts and rows of every batch, the rows at close, and the stats."""
    out = []
    for way in ("select", "indices"):
        kw = {"capacity": 4096, **kw}
        trackers = [Tracker(timeouts="zeek", seed=1, **kw) for _ in range(shards)]
        got = [[] for _ in range(shards)]
        for args, shard in batches:
            for k, tr in enumerate(trackers):
                mine = shard == k
                sel = {"select": mine} if way == "select" else {"indices": np.flatnonzero(mine)}
                got[k].append(tr.feed_batch(*args, **sel).tobytes())
                got[k].append(tr.finished().tobytes())
        close_all(trackers, got)
        out.append(got)
    return out


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_indices_give_what_select_gives_on_every_bundled_capture(path):
    batches = [((b,), shard_of_batch(b, 3)) for b in read_pcap(path, batch_bytes=4096)]
    by_select, by_indices = both_ways(batches, 3)
    assert by_indices == by_select


@pytest.mark.parametrize("seed", range(6))
def test_indices_give_what_select_gives_with_times_out_of_order(seed):
    # random connections over minutes, batches of random sizes, and times that jump
    # back now and then (a merged capture): every expiry must happen at the same packet
    rng = np.random.default_rng(seed)
    pk, t = [], 0.0
    for _ in range(1500):
        port = 1024 + int(rng.integers(0, 120))
        t += float(rng.exponential(0.7))
        when = t - float(rng.exponential(3.0)) if rng.random() < 0.1 else t
        flags = int(rng.choice([0x02, 0x12, 0x10, 0x11, 0x04, 0x18]))
        src, dst, sp, dp = (S, D, port, 80) if rng.random() < 0.5 else (D, S, 80, port)
        pk.append((build(src, dst, sp, dp, seq=int(rng.integers(0, 2**32)), ack=int(rng.integers(0, 2**32)),
                         flags=flags, payload=bytes(int(rng.integers(0, 40)))), max(when, 0.0)))
    cuts = np.sort(rng.choice(np.arange(1, len(pk)), size=12, replace=False))
    batches = []
    for part in np.split(np.arange(len(pk)), cuts):
        sub = [pk[i] for i in part]
        shard = np.array([(p[21] ^ p[23]) % 3 for p, _ in sub])
        batches.append((batch(sub), shard))
    by_select, by_indices = both_ways(batches, 3)
    assert by_indices == by_select
    assert sum(st[-1]["other_shard"] for st in by_indices) == 2 * len(pk)


def test_another_shards_time_expires_my_connection():
    # the only packet after my unanswered SYN is another shard's, a minute later: its
    # time ends my attempt (Zeek's 5 s), though this tracker never parses it
    buf, o, ln, ts = batch([(build(S, D, 1000, 80, flags=0x02), 0.0), (build(S, D, 2000, 80, flags=0x02), 60.0)])
    tr = Tracker(16, timeouts="zeek")
    v = tr.feed_batch(buf, o, ln, ts, indices=[0])
    assert list(v) == [Verdict.OK, Verdict.OTHER_SHARD]
    done = tr.finished()
    assert list(done["orig_p"]) == [1000]
    assert tr.stats["packets"] == 1 and tr.stats["other_shard"] == 1


def test_no_packets_of_my_own_still_move_the_clock():
    tr = Tracker(16, timeouts="zeek")
    buf, o, ln, ts = batch([(build(S, D, 1000, 80, flags=0x02), 0.0)])
    tr.feed_batch(buf, o, ln, ts)
    buf, o, ln, ts = batch([(build(S, D, 2000 + i, 80, flags=0x02), 1.0 + i) for i in range(10)])
    v = tr.feed_batch(buf, o, ln, ts, indices=np.empty(0, dtype=np.int64))
    assert (v == Verdict.OTHER_SHARD).all()
    assert list(tr.finished()["orig_p"]) == [1000]
    assert tr.stats["packets"] == 1 and tr.stats["other_shard"] == 10


@pytest.mark.parametrize("empty", [[], (), np.empty(0, dtype=np.int64), np.empty(0, dtype=np.uint8)])
def test_an_empty_list_of_indices_is_no_packets_of_my_own(empty):
    # what a list comprehension gives a shard without packets in the batch
    buf, o, ln, ts = batch([(build(S, D, 2000 + i, 80, flags=0x02), 1.0 + i) for i in range(3)])
    tr = Tracker(16)
    v = tr.feed_batch(buf, o, ln, ts, indices=empty)
    assert (v == Verdict.OTHER_SHARD).all()
    assert tr.stats["packets"] == 0 and tr.stats["other_shard"] == 3


def test_indices_are_copied_before_tracking():
    buf, o, ln, ts = batch([(build(S, D, 1000 + i, 80, flags=0x02), 1.0 + i) for i in range(3)])
    idx = np.array([0, 2])
    tr = Tracker(16)
    tr.feed_batch(buf, o, ln, ts, indices=idx)
    idx[:] = 1
    assert tr.stats["packets"] == 2 and sorted(tr.close()["orig_p"]) == [1000, 1002]


@pytest.mark.parametrize("indices,match", [
    ("[1, 0]", "strictly ascending"),
    ("[0, 0]", "strictly ascending"),
    ("[-1]", "strictly ascending"),
    ("[3]", "strictly ascending"),
    ("[2**63 - 1]", "strictly ascending"),
    ("np.array([2**64 - 1], dtype=np.uint64)", "batch indices"),
    ("np.array([0.0, 1.0])", "integer"),
    ("np.zeros((1, 2), dtype=np.int64)", "1-D"),
    ("np.array(['0'])", "integer"),
    ("[object()]", "integer"),
    ("[[0], [1, 2]]", "integer"),
])
def test_bad_indices_raise_before_tracking(indices, match):
    expect_refused_before_tracking("indices", indices, match)


def test_select_and_indices_together_are_refused():
    buf, o, ln, ts = batch([(build(S, D, 1000, 80, flags=0x02), 1.0)])
    tr = Tracker(16)
    with pytest.raises(UsageError, match="not both"):
        tr.feed_batch(buf, o, ln, ts, select=np.array([True]), indices=[0])
    assert tr.stats["packets"] == 0


# finished rows the tracker buffers in C (tracker.pyx _DONE_CAP) before handing them over
_DONE_CAP = 65536


@pytest.mark.parametrize("capacity", [4096, 1, 200_000])
def test_a_row_buffer_that_fills_mid_batch_resumes_at_the_same_packet(capacity):
    # more connections of one shard finish in one batch than the finished-row buffer
    # holds -- at an expiry that another shard's packet brings (capacity 200,000), or
    # by evictions at its own packets (capacity 1, 4096): the tracker stops, hands
    # them over, and goes on from the same visit
    n = _DONE_CAP + 4000
    pk = [(build(f"198.18.{(i >> 8) & 255}.{i & 255}", D, 1024 + (i >> 16), 80, flags=0x02), 1.0 + i * 1e-6)
          for i in range(n)]
    pk += [(build(D, S, 9, 9, flags=0x02), 3600.0), (build(D, S, 10, 10, flags=0x02), 7200.0)]
    buf, o, ln, ts = batch(pk)
    shard = np.zeros(len(pk), dtype=np.int64)
    shard[1::97] = 1                     # a few of the other shard's, and the first late one
    shard[-2] = 1
    by_select, by_indices = both_ways([((buf, o, ln, ts), shard)], 2, capacity=capacity)
    assert by_indices == by_select
    rows = np.frombuffer(by_indices[0][1], dtype=FLOW_DTYPE)
    assert len(rows) > _DONE_CAP
