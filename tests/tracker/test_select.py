"""`Tracker.feed_batch(select=...)`: a tracker as one shard of several. A packet the
shard leaves out moves only the clock, so connections expire exactly as in one
tracker fed everything, and N shards finish the rows one tracker finishes."""
import numpy as np
import pytest

from fasttcp import Tracker, UsageError, Verdict, build
from fasttcp.tracker.tracker import FLOW_DTYPE
from fasttcp.tracker.vocabulary import EndReason
from tests.tracker.shard_probe import expect_refused_before_tracking

S, D = "198.18.0.1", "198.19.0.1"
FIELDS = [f for f in FLOW_DTYPE.names if f not in ("id", "_pad")]


def batch(packets):
    """(buffer, offsets, lengths, ts_ns) of [(bytes, seconds), ...]."""
    lens = np.array([len(p) for p, _ in packets], dtype=np.int64)
    offs = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
    ts = np.array([round(t * 1e9) for _, t in packets], dtype=np.int64)
    return np.frombuffer(b"".join(p for p, _ in packets), dtype=np.uint8), offs, lens, ts


def syn(port, seq=1):
    return build(S, D, port, 80, seq=seq, flags=0x02)


def test_left_out_packets_get_other_shard_and_are_not_counted():
    buf, o, ln, ts = batch([(syn(1000), 1.0), (syn(1001), 1.5), (syn(1002), 2.0)])
    tr = Tracker(16, timeouts="zeek")
    v = tr.feed_batch(buf, o, ln, ts, select=np.array([True, False, True]))
    assert list(v) == [Verdict.OK, Verdict.OTHER_SHARD, Verdict.OK]
    st = tr.stats
    assert st["packets"] == 2 and st["other_shard"] == 1
    assert st["verdicts"] == {"OK": 2}
    assert len(tr) == 2
    assert sorted(tr.close()["orig_p"]) == [1000, 1002]


def test_another_shards_time_expires_my_connection():
    # A SYN nobody answers ends 5 s later (Zeek's tcp_attempt_delay). The only later
    # packet belongs to another shard: its time must still end the attempt, as it
    # would in one tracker fed both.
    buf, o, ln, ts = batch([(syn(1000), 0.0), (syn(2000), 60.0)])
    whole = Tracker(16, timeouts="zeek")
    whole.feed_batch(buf, o, ln, ts)
    mine = Tracker(16, timeouts="zeek")
    mine.feed_batch(buf, o, ln, ts, select=np.array([1, 0], dtype=np.uint8))
    got, want = mine.finished(), whole.finished()
    assert len(got) == 1 and got["orig_p"][0] == 1000
    assert got["end_reason"][0] == EndReason.TIMEOUT
    ref = want[want["orig_p"] == 1000]
    for f in FIELDS:
        assert (got[f] == ref[f]).all(), f


def test_a_packet_within_the_idle_time_after_a_sweep_is_the_same_connection():
    # the wheel sweeps when packet time enters a new tick; an own packet that arrives
    # after another shard's packet moved the clock must see what one tracker sees
    pk = [(syn(1000), 0.0), (syn(2000), 4.9), (build(S, D, 1000, 80, seq=1, flags=0x02), 5.05),
          (syn(2001), 5.2), (syn(2002), 12.0)]
    buf, o, ln, ts = batch(pk)
    whole = Tracker(16, timeouts="zeek")
    whole.feed_batch(buf, o, ln, ts)
    want = np.concatenate([whole.finished(), whole.close()])
    mine = Tracker(16, timeouts="zeek")
    mine.feed_batch(buf, o, ln, ts, select=np.array([1, 0, 1, 0, 0]))
    got = np.concatenate([mine.finished(), mine.close()])
    want = want[want["orig_p"] == 1000]
    assert len(got) == len(want)
    for f in FIELDS:
        assert (got[f] == want[f]).all(), f


@pytest.mark.parametrize("shards", [2, 3, 7])
def test_n_shards_finish_the_rows_of_one_tracker(shards):
    rng = np.random.default_rng(shards)
    pk = []
    t = 0.0
    for _ in range(600):
        port = 1024 + int(rng.integers(0, 150))
        t += float(rng.exponential(0.5))
        flags = int(rng.choice([0x02, 0x12, 0x10, 0x11, 0x04, 0x18]))
        src, dst, sp, dp = (S, D, port, 80) if rng.random() < 0.5 else (D, S, 80, port)
        pk.append((build(src, dst, sp, dp, seq=int(rng.integers(0, 2**32)), ack=int(rng.integers(0, 2**32)),
                         flags=flags, payload=bytes(int(rng.integers(0, 40)))), t))
    buf, o, ln, ts = batch(pk)
    whole = Tracker(4096, timeouts="zeek", seed=1)
    whole.feed_batch(buf, o, ln, ts)
    want = np.concatenate([whole.finished(), whole.close()])
    shard_of = {}
    got = []
    for k in range(shards):
        tr = Tracker(4096, timeouts="zeek", seed=1)
        # shard by the client port: both directions of a connection in one shard
        sel = np.array([(p[0][20:22] if p[0][20:22] != b"\x00\x50" else p[0][22:24]) for p in pk], dtype=object)
        sel = np.array([int.from_bytes(x, "big") % shards == k for x in sel])
        tr.feed_batch(buf, o, ln, ts, select=sel)
        got.append(np.concatenate([tr.finished(), tr.close()]))
        shard_of[k] = tr.stats["packets"]
    got = np.concatenate(got)
    assert sum(shard_of.values()) == 600

    def canon(rows):
        return sorted(tuple(np.asarray(r[f]).tobytes() for f in FIELDS) for r in rows)

    assert canon(got) == canon(want)


@pytest.mark.parametrize("select,match", [
    ("np.ones(2, dtype=bool)", "one entry per packet"),
    ("np.ones((3, 1), dtype=bool)", "1-D"),
    ("np.ones(3, dtype=np.float64)", "bool array"),
    ("np.array(['a', 'b', 'c'])", "bool array"),
    ("[object(), None, 1]", "bool array"),
    ("np.ones(0, dtype=bool)", "one entry per packet"),
])
def test_bad_select_raises_before_tracking(select, match):
    expect_refused_before_tracking("select", select, match)


def test_select_is_copied_before_tracking():
    # the mask is the caller's: changing it later changes nothing already tracked
    buf, o, ln, ts = batch([(syn(1000), 1.0), (syn(1001), 1.5)])
    sel = np.array([True, False])
    tr = Tracker(16)
    tr.feed_batch(buf, o, ln, ts, select=sel)
    sel[:] = True
    assert tr.stats["packets"] == 1


def test_select_with_a_capture_batch(tmp_path):
    from fasttcp import read_pcap, write_pcap
    p = tmp_path / "x.pcap"
    write_pcap(p, [syn(1000), syn(1001), syn(1002)], [1.0, 2.0, 3.0])
    b = next(iter(read_pcap(p)))
    tr = Tracker(16)
    v = tr.feed_batch(b, select=np.array([0, 1, 0]))
    assert list(v) == [Verdict.OTHER_SHARD, Verdict.OK, Verdict.OTHER_SHARD]
    with pytest.raises(UsageError):
        tr.feed_batch(b, select=np.array([0, 1]))
