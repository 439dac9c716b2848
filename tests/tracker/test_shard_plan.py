"""`ShardPlan` and `Tracker.feed_plan`: a batch split among N shard trackers once, for
all of them. Each tracker must finish the same rows, in the same order, with the same
counts and clock as with ``feed_batch(indices=...)`` -- the walk it replaces -- and a
plan must refuse what feed_batch refuses, before any tracker sees it."""
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fasttcp import Tracker, UsageError, build, read_pcap
from fasttcp.capture.reader import CaptureBatch
from fasttcp.tracker.tracker import MAX_CLOCK_US, ShardPlan
from fasttcp.wire.rss import shard_of_batch
from tests.tracker.shard_probe import close_all

S, D = "198.18.0.1", "198.19.0.1"
DATA = Path(__file__).resolve().parents[1] / "data"
CAPTURES = sorted(p for p in DATA.iterdir() if p.suffix in (".pcap", ".pcapng"))


def capture_batch(packets):
    """A CaptureBatch of raw IP packets [(bytes, seconds), ...]."""
    n = len(packets)
    lens = np.array([len(p) for p, _ in packets], dtype=np.int64)
    offs = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64) if n else np.empty(0, np.int64)
    ts = np.array([round(t * 1e9) for _, t in packets], dtype=np.int64)
    buf = np.frombuffer(b"".join(p for p, _ in packets), dtype=np.uint8)
    return CaptureBatch(buf, offs, lens, ts, lens.copy(), np.zeros(n, np.uint8), np.zeros(n, np.uint32),
                        np.zeros(n, np.uint8), np.ones(n, bool))


def random_batches(rng, packets, shards, most):
    """`packets` cut into batches of 1..most-1 packets, each with its shards."""
    batches, i = [], 0
    while i < len(packets):
        m = int(rng.integers(1, most))
        b = capture_batch(packets[i:i + m])
        batches.append((b, shard_of_batch(b, shards)))
        i += m
    return batches


def both_ways(batches, shards, **kw):
    """Per shard, what the trackers gave (rows after each batch, rows at close, stats)
    fed by indices and fed by plans -- plans whose long packets' checksums were
    verified ahead (`verify_checksums`, what analyze does) and plans whose were not:
    the three must agree, so the first two are returned (the third checked equal)."""
    out = []
    for way in ("indices", "plan", "plan+checksums"):
        trackers = [Tracker(timeouts="zeek", seed=1, **{"capacity": 4096, **kw}) for _ in range(shards)]
        got = [[] for _ in range(shards)]
        clock = 0
        for b, shard in batches:
            plan = ShardPlan(b, shard, shards, clock, checksums=way == "plan+checksums")
            plan.verify_checksums()
            clock = plan.clock_after
            for k, tr in enumerate(trackers):
                if way != "indices":
                    assert tr.feed_plan(plan, k) is None
                else:
                    tr.feed_batch(b, indices=np.flatnonzero(shard == k))
                got[k].append(tr.finished().tobytes())
        close_all(trackers, got)
        out.append(got)
    assert out[2] == out[1]
    return out[:2]


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
@pytest.mark.parametrize("shards", [1, 2, 3, 9])
def test_a_plan_gives_what_indices_give_on_every_bundled_capture(path, shards):
    batches = [(b, shard_of_batch(b, shards)) for b in read_pcap(path, batch_bytes=4096)]
    by_indices, by_plan = both_ways(batches, shards)
    assert by_plan == by_indices


@pytest.mark.parametrize("shards", [2, 3])                 # two shards take a pass of their own
@pytest.mark.parametrize("seed", range(6))
def test_a_plan_gives_what_indices_give_with_times_out_of_order(seed, shards):
    # connections over minutes in batches of random sizes, times jumping back now and
    # then (a merged capture) and ticks starting on any shard's packet: every expiry
    # must come at the same packet, so the rows come in the same order
    rng = np.random.default_rng(seed)
    packets = []
    t = 1000.0
    for _ in range(3000):
        c = int(rng.integers(0, 200))
        sport = 1024 + c
        t += float(rng.exponential(0.4)) if rng.random() > 0.05 else -float(rng.uniform(0, 3))
        flags = int(rng.choice([0x02, 0x12, 0x10, 0x11, 0x04, 0x18]))
        fwd = rng.random() < 0.5
        pkt = build(S if fwd else D, D if fwd else S, sport if fwd else 80, 80 if fwd else sport,
                    seq=int(rng.integers(0, 2**32)), ack=int(rng.integers(0, 2**32)), flags=flags,
                    payload=bytes(int(rng.integers(0, 40))))
        packets.append((pkt, max(t, 0.0)))
    batches = random_batches(rng, packets, shards, 400)
    by_indices, by_plan = both_ways(batches, shards, capacity=64)
    assert by_plan == by_indices
    # (packets 0.4 s apart: nearly each a new tick, more ticks than packets between
    # them -- over three shards, plans that keep no lists, each tracker writing its own)
    assert any(ShardPlan(b, shard, shards).lazy for b, shard in batches) == (shards == 3)


def _with_ip_options(pkt: bytes) -> bytes:
    """`pkt` (IPv4, no options) with four NOP option bytes in its IP header: the same
    segment, valid, off the parser's fast path."""
    hdr = bytearray(pkt[:20]) + b"\x01\x01\x01\x01"
    hdr[0] = 0x46
    hdr[2:4] = (len(pkt) + 4).to_bytes(2, "big")
    hdr[10:12] = b"\x00\x00"
    s = sum(int.from_bytes(hdr[i:i + 2], "big") for i in range(0, 24, 2))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    hdr[10:12] = (~s & 0xFFFF).to_bytes(2, "big")
    return bytes(hdr) + pkt[20:]


@pytest.mark.parametrize("shards", [2, 3])
@pytest.mark.parametrize("seed", range(4))
def test_a_plan_that_verified_checksums_changes_no_verdict_or_row(seed, shards):
    # long and short segments, IPv4 and IPv6, some with a TCP or IP checksum broken,
    # some with IP options (the general parser's), some cut short of their IP length: the
    # plan verifies the long ones on the fast path, and its trackers must give what
    # trackers verifying everything themselves give -- a broken checksum it passed
    # would be tracked, one it failed must still be seen as broken
    rng = np.random.default_rng(seed)
    packets, expect_verified, kinds = [], 0, set()
    t = 100.0
    for _ in range(1500):
        c = int(rng.integers(0, 60))
        v6 = rng.random() < 0.3
        src, dst = ("2001:db8::1", "2001:db8::2") if v6 else (S, D)
        fwd = rng.random() < 0.5
        pkt = bytearray(build(src if fwd else dst, dst if fwd else src, 2000 + c if fwd else 443,
                              443 if fwd else 2000 + c, seq=int(rng.integers(0, 2**32)),
                              ack=int(rng.integers(0, 2**32)), flags=int(rng.choice([0x02, 0x12, 0x10, 0x18, 0x11])),
                              payload=bytes(int(rng.choice([0, 30, 90, 200, 1400])))))
        kind = rng.choice(["good", "good", "good", "tcp", "ip", "options", "cut"])
        if kind == "cut" and len(pkt) > 200:
            pkt = pkt[:-100]                                # shorter than its IP length says
        elif kind == "options" and not v6:
            pkt = bytearray(_with_ip_options(bytes(pkt)))
        elif kind == "tcp":
            pkt[-1 if len(pkt) > (60 if v6 else 40) else (50 if v6 else 30)] ^= 0x5A
        elif kind == "ip" and not v6:
            pkt[8] ^= 0x01                                  # the TTL: the header checksum fails
        else:
            kind = "good"
        kinds.add(kind)
        if kind == "good" and len(pkt) > 128:
            expect_verified += 1
        t += float(rng.exponential(0.05))
        packets.append((bytes(pkt), t))
    batches = random_batches(rng, packets, shards, 300)
    by_indices, by_plan = both_ways(batches, shards, capacity=256)
    assert by_plan == by_indices
    assert sum(verified(b, sh, shards) for b, sh in batches) == expect_verified
    assert kinds == {"good", "tcp", "ip", "options", "cut"}
    # (one shard walks its batch in order itself: nothing to verify ahead of it)
    assert verified(batches[0][0], np.zeros(len(batches[0][0]), np.uint16), 1) == 0
    # nor the packets the link layer already gave a verdict
    b, sh = batches[0]
    assert verified(replace(b, verdicts=np.full(len(b), 1, np.uint8)), sh, shards) == 0


def verified(b, shard, shards, checksums=True):
    """`checksums_verified` of a plan whose checksums were verified, checking that a
    second call does nothing and the count is what the first call returned."""
    plan = ShardPlan(b, shard, shards, checksums=checksums)
    assert plan.checksums_verified == 0
    good = plan.verify_checksums()
    assert plan.verify_checksums() == good == plan.checksums_verified
    return good


def test_checksums_verified_while_the_trackers_track_change_nothing():
    # analyze verifies a batch's checksums as a task of its own, which need not end
    # before the trackers start: a tracker reaching a packet not verified yet verifies
    # it itself. Verification racing two trackers on threads, a hundred times over.
    rng = np.random.default_rng(7)
    packets = []
    for i in range(4000):
        pkt = bytearray(build(S, D, 3000 + i % 300, 443, seq=i, ack=1, flags=0x18, payload=bytes(300)))
        if i % 7 == 0:
            pkt[-1] ^= 0xFF                                 # a broken TCP checksum
        packets.append((bytes(pkt), 50.0 + i * 1e-4))
    b = capture_batch(packets)
    sh = shard_of_batch(b, 2)
    want = None
    for _ in range(100):
        plan = ShardPlan(b, sh, 2, checksums=True)
        trackers = [Tracker(capacity=1024, seed=3) for _ in range(2)]
        threads = [threading.Thread(target=plan.verify_checksums)]
        threads += [threading.Thread(target=tr.feed_plan, args=(plan, k)) for k, tr in enumerate(trackers)]
        order = rng.permutation(3)
        for j in order:
            threads[j].start()
        for t in threads:
            t.join()
        got = [(tr.close().tobytes(), tr.stats) for tr in trackers]
        assert plan.checksums_verified == 4000 - len(range(0, 4000, 7))
        if want is None:
            want = got
            assert sum(st["verdicts"].get("BAD_CHECKSUM", 0) for _, st in got) == len(range(0, 4000, 7))
        assert got == want


@pytest.mark.parametrize("value", [1, 0, None, "yes", np.bool_(True)])
def test_a_plans_checksums_flag_is_a_bool(value):
    b = capture_batch([(build(S, D, 1000, 80, flags=0x02), 5.0)])
    with pytest.raises(UsageError, match="checksums must be True or False"):
        ShardPlan(b, np.zeros(1, np.uint16), 2, checksums=value)


def test_checksums_are_verified_within_the_buffer_however_the_arrays_change():
    # a plan keeps the batch's own offsets and lengths when they are int64: rewritten
    # after the plan checked them, to spans past the buffer, they are skipped, not read
    packets = [(build(S, D, 1000 + i, 80, flags=0x18, payload=bytes(400)), 1.0) for i in range(50)]
    b = capture_batch(packets)
    plan = ShardPlan(b, np.zeros(50, np.uint16), 2, checksums=True)
    b.offsets[:] = 1 << 40
    assert plan.verify_checksums() == 0
    plan = ShardPlan(b := capture_batch(packets), np.zeros(50, np.uint16), 2, checksums=True)
    b.lengths[10:] = 1 << 40
    assert plan.verify_checksums() == 10


def test_a_dense_batch_keeps_lists_and_a_sparse_one_over_many_shards_does_not():
    # memory stays within a few times the batch's rows however many shards: a tick's
    # packet in every shard's list would be shards x ticks entries
    def plan(gap_s, shards):
        b = capture_batch([(build(S, D, 1000 + i, 80, flags=0x02), 10.0 + i * gap_s) for i in range(400)])
        return ShardPlan(b, (np.arange(400) % shards).astype(np.uint16), shards)
    assert not plan(1e-6, 2).lazy and not plan(1e-6, 64).lazy
    assert not plan(0.01, 2).lazy            # every packet a tick, but only one other shard
    assert plan(0.01, 3).lazy and plan(0.01, 65535).lazy
    tr = Tracker(capacity=1024)
    tr.feed_plan(plan(0.01, 65535), 7)             # packet 7 alone is shard 7
    assert tr.stats["packets"] == 1 and tr.stats["other_shard"] == 399


def test_visit_lists_hold_each_shards_packets_and_every_tick():
    # ticks are 1024 us: a packet that opens a new one is visited by every shard, at
    # its own time; the others only by their own shard, at the batch's running maximum
    ts = [0.0, 0.0005, 0.0002, 0.0015, 0.0016, 0.0040, 0.0041]
    b = capture_batch([(build(S, D, 1000 + i, 80, flags=0x02), t) for i, t in enumerate(ts)])
    shard = np.array([0, 1, 0, 1, 1, 0, 1], dtype=np.uint16)
    plan = ShardPlan(b, shard, 2, clock=0)
    ns = [round(t * 1e9) for t in ts]
    clock = np.maximum.accumulate(ns)
    v0, c0 = plan.visits(0)
    v1, c1 = plan.visits(1)
    # new ticks start at 1.5 ms (packet 3), 4.0 ms (packet 5) and 4.1 ms (packet 6:
    # tick 4, where 4.0 ms was tick 3); 0.5 ms and 1.6 ms stay in the tick before
    assert v0.tolist() == [0, 2, ~3, 5, ~6]
    assert v1.tolist() == [1, 3, 4, ~5, 6]
    assert c0.tolist() == [clock[0], clock[2], clock[3], clock[5], clock[6]]
    assert c1.tolist() == [clock[1], clock[3], clock[4], clock[5], clock[6]]
    assert plan.clock_before == 0 and plan.clock_after == 4100


def test_a_tracker_must_be_at_the_plans_clock():
    b = capture_batch([(build(S, D, 1000, 80, flags=0x02), 5.0)])
    shard = np.zeros(1, np.uint16)
    tr = Tracker(capacity=16)
    with pytest.raises(UsageError, match="clock"):
        tr.feed_plan(ShardPlan(b, shard, 1, clock=7), 0)
    first = ShardPlan(b, shard, 1, clock=0)
    tr.feed_plan(first, 0)
    assert tr.stats["packets"] == 1
    with pytest.raises(UsageError, match="clock"):
        tr.feed_plan(first, 0)                  # the same plan again: the clock moved on
    tr.feed_plan(ShardPlan(b, shard, 1, clock=first.clock_after), 0)
    assert tr.stats["packets"] == 2
    with pytest.raises(UsageError, match="shard"):
        tr.feed_plan(ShardPlan(b, shard, 1, clock=first.clock_after), 1)


def test_an_empty_batch_moves_nothing():
    b = capture_batch([])
    plan = ShardPlan(b, np.zeros(0, np.uint16), 4, clock=123)
    assert plan.clock_after == 123 and plan.packets == 0
    tr = Tracker(capacity=16)
    tr.expire(123e-6)
    assert tr.feed_plan(plan, 3) is None
    assert tr.stats["packets"] == 0


def good():
    return capture_batch([(build(S, D, 1000 + i, 80, flags=0x02), 1.0 + i) for i in range(4)])


@pytest.mark.parametrize("change, match", [
    (lambda b: replace(b, offsets=b.offsets + 10_000), "outside"),
    (lambda b: replace(b, ts_ns=b.ts_ns - 2 * 10**9), "ts_ns"),
    (lambda b: replace(b, verdicts=np.full(4, 200, np.uint8)), "Verdict"),
    (lambda b: replace(b, lengths=b.lengths[:3]), "same length"),
    (lambda b: replace(b, snapped=np.ones(3, bool)), "one entry per packet"),
])
def test_a_plan_refuses_a_bad_batch(change, match):
    with pytest.raises(UsageError, match=match):
        ShardPlan(change(good()), np.zeros(4, np.uint16), 2)


@pytest.mark.parametrize("shard, shards, clock, match", [
    (np.array([0, 1, 2, 0], np.uint16), 2, 0, "shard\\[2\\] is 2"),
    (np.zeros(4, np.int64), 2, 0, "uint16"),
    (np.zeros(3, np.uint16), 2, 0, "one value per packet"),
    (np.zeros((2, 2), np.uint16), 2, 0, "one value per packet"),
    (np.zeros(4, np.uint16), 0, 0, "shards"),
    (np.zeros(4, np.uint16), 65536, 0, "shards"),
    (np.zeros(4, np.uint16), True, 0, "shards"),
    (np.zeros(4, np.uint16), 2.0, 0, "shards"),
    (np.zeros(4, np.uint16), 2, -1, "clock"),
    (np.zeros(4, np.uint16), 2, 1.5, "clock"),
    (np.zeros(4, np.uint16), 2, 2**63, "clock"),
])
def test_a_plan_refuses_bad_shards_and_clocks(shard, shards, clock, match):
    with pytest.raises(UsageError, match=match):
        ShardPlan(good(), shard, shards, clock)


def test_a_plan_takes_only_capture_batches():
    with pytest.raises(UsageError, match="CaptureBatch"):
        ShardPlan(np.zeros(10, np.uint8), np.zeros(0, np.uint16), 1)


def test_a_plan_keeps_its_own_copies():
    # rewriting the caller's shards, times or link verdicts after the plan is made
    # changes nothing the trackers do (the codes index counters: a stray one must
    # never reach them)
    b = good()
    shard = np.zeros(4, np.uint16)
    plan = ShardPlan(b, shard, 1)
    shard[:] = 7
    b.ts_ns[:] = -1
    b.verdicts[:] = 250
    tr = Tracker(capacity=16)
    tr.feed_plan(plan, 0)
    assert tr.stats["packets"] == 4
    assert sum(tr.stats["verdicts"].values()) == 4


def test_a_plan_is_made_once():
    # made again -- and failing half way -- it would pair one batch's arrays with the
    # other's visit lists: refused before anything changes
    plan = ShardPlan(good(), np.zeros(4, np.uint16), 2)
    with pytest.raises(UsageError, match="made once"):
        plan.__init__(capture_batch([(build(S, D, 1, 80), 1.0)]), np.array([7], np.uint16), 2)
    assert plan.packets == 4
    tr = Tracker(capacity=16)
    tr.feed_plan(plan, 0)
    tr.feed_plan(ShardPlan(good(), np.zeros(4, np.uint16), 2, plan.clock_after), 1)
    assert tr.stats["packets"] == 4 and tr.stats["other_shard"] == 4


def test_a_plan_that_failed_is_refused():
    plan = ShardPlan.__new__(ShardPlan)
    with pytest.raises(UsageError, match="not made"):
        Tracker(capacity=16).feed_plan(plan, 0)


def test_zero_dimensional_arrays_are_refused_not_read():
    b = good()
    with pytest.raises(UsageError, match="1-D"):
        ShardPlan(replace(b, offsets=np.int64(0)), np.zeros(4, np.uint16), 1)


def test_the_last_microseconds_of_time_chain_from_plan_to_plan():
    # a batch time in the last second before 2**63 ns: its clock_after is the clock
    # the next plan starts from (feed_batch takes such times, so must a chain of plans)
    top = 2**63 - 1
    b = replace(good(), ts_ns=np.array([top - 3000, top - 2000, top - 1000, top], np.int64))
    first = ShardPlan(b, np.zeros(4, np.uint16), 1)
    assert first.clock_after == top // 1000 == MAX_CLOCK_US
    second = ShardPlan(b, np.zeros(4, np.uint16), 1, first.clock_after)
    tr = Tracker(capacity=16)
    tr.feed_plan(first, 0)
    tr.feed_plan(second, 0)
    assert tr.stats["packets"] == 8


def test_a_call_while_another_is_inside_the_tracker_is_refused():
    # the shard argument's conversion runs inside feed_plan and lets another thread
    # in: the tracker is claimed before it, so every other call is refused
    entered, release = threading.Event(), threading.Event()

    class Blocking:
        def __index__(self):
            entered.set()
            release.wait(30)
            return 0

    b = good()
    plan = ShardPlan(b, np.zeros(4, np.uint16), 1)
    tr = Tracker(capacity=16)
    errors = []
    th = threading.Thread(target=lambda: errors.append(tr.feed_plan(plan, Blocking())))
    th.start()
    try:
        assert entered.wait(30)
        for call in (lambda: tr.feed_plan(plan, 0), tr.close, lambda: tr.expire(5.0),
                     lambda: tr.feed(bytes(b.buffer[:b.lengths[0]]), 1.0), lambda: tr.feed_batch(b)):
            with pytest.raises(UsageError, match="in use"):
                call()
    finally:
        release.set()
        th.join(30)
    assert errors == [None] and tr.stats["packets"] == 4


class Liar(int):
    """An int that answers every comparison True: a range check done on it passes."""

    def __lt__(self, other):
        return True

    __le__ = __gt__ = __ge__ = __lt__


@pytest.mark.parametrize("value", [Liar(-1), Liar(70000), True, np.bool_(True), 1.0, "1", None])
def test_shards_and_clocks_are_checked_as_plain_ints(value):
    # converted first, then compared: an int subclass's comparisons could pass any value
    b = good()
    plan = ShardPlan(b, np.zeros(4, np.uint16), 2)
    with pytest.raises(UsageError, match="shard must be"):
        Tracker(capacity=16).feed_plan(plan, value)
    with pytest.raises(UsageError, match="shard must be"):
        plan.visits(value)
    with pytest.raises(UsageError, match="shards must be"):
        ShardPlan(b, np.zeros(4, np.uint16), value if not isinstance(value, Liar) else Liar(70000))
    if value is not None and not isinstance(value, (bool, np.bool_)):
        with pytest.raises(UsageError, match="clock must be"):
            ShardPlan(b, np.zeros(4, np.uint16), 2, value if not isinstance(value, Liar) else Liar(-1))


def test_a_plan_is_not_none_and_cannot_be_pickled():
    # a pickled state would be a plan made without any of its checks
    import pickle

    plan = ShardPlan(good(), np.zeros(4, np.uint16), 1)
    with pytest.raises(TypeError):
        Tracker(capacity=16).feed_plan(None, 0)
    with pytest.raises(TypeError):
        pickle.dumps(plan)
    assert not hasattr(plan, "__setstate_cython__")


def test_a_plan_being_made_cannot_be_made_again_meanwhile():
    # a property of the batch lets another thread in while the plan is being made: its
    # own __init__ on the same plan is refused, so the arrays can never be swapped
    entered, release = threading.Event(), threading.Event()
    b = good()

    class SlowBatch:
        snapped, lengths, ts_ns, verdicts, buffer = b.snapped, b.lengths, b.ts_ns, b.verdicts, b.buffer

        @property
        def offsets(self):
            entered.set()
            release.wait(30)
            return b.offsets

    plan = ShardPlan.__new__(ShardPlan)
    th = threading.Thread(target=plan.__init__, args=(SlowBatch(), np.zeros(4, np.uint16), 1))
    th.start()
    try:
        assert entered.wait(30)
        with pytest.raises(UsageError, match="made once"):
            plan.__init__(b, np.zeros(4, np.uint16), 1)
    finally:
        release.set()
        th.join(30)
    tr = Tracker(capacity=16)
    tr.feed_plan(plan, 0)
    assert tr.stats["packets"] == 4


@pytest.mark.parametrize("codes", [np.array([0, 256], np.int64), np.array([0, -256], np.int32),
                                   np.array([0, 2**40], np.int64), np.array([0, 2**64 - 1], np.uint64)])
def test_link_verdicts_of_a_wider_type_are_checked_before_they_are_narrowed(codes):
    # 256 cast to uint8 is 0, FT_OK: the packet would be tracked as a good one
    b = replace(capture_batch([(build(S, D, 1000 + i, 80, flags=0x02), 5.0) for i in range(2)]), verdicts=codes)
    with pytest.raises(UsageError, match=r"packet 1: link verdict -?\d+ is not a fasttcp.Verdict code"):
        ShardPlan(b, np.zeros(2, np.uint16), 2)
    with pytest.raises(UsageError, match=r"packet 1: link verdict -?\d+ is not a fasttcp.Verdict code"):
        Tracker(capacity=16).feed_batch(b)


def test_link_verdicts_of_a_wider_type_within_range_are_taken():
    b = capture_batch([(build(S, D, 1000 + i, 80, flags=0x02), 5.0) for i in range(3)])
    wide = replace(b, verdicts=np.array([0, 0, 1], np.int64))
    narrow = replace(b, verdicts=np.array([0, 0, 1], np.uint8))
    assert Tracker(capacity=16, seed=1).feed_batch(wide).tolist() == \
        Tracker(capacity=16, seed=1).feed_batch(narrow).tolist()
    with pytest.raises(UsageError, match="link verdicts must be integer Verdict codes, got dtype float64"):
        Tracker(capacity=16).feed_batch(replace(b, verdicts=np.zeros(3)))
