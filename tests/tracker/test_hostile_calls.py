"""Hostile calls into the passive tracker's public API (Tracker, TrackerTimeouts), each in
a child process (tests/probe.py): a crash or a hang fails one test. Every answer must be
a clear UsageError or a counted verdict -- never a crash, a hang or nonsense accepted."""
import textwrap
import warnings

import pytest

from tests.probe import INTEGER_SWEEP, expect_ok, expect_raises

PRELUDE = """
import time, warnings
from fasttcp import Tracker, TrackerTimeouts, build, UsageError, read_pcap, write_pcap
S, D = "198.18.0.1", "198.18.0.2"
SYN = build(S, D, 40000, 80, seq=1)

def syn_batch(n):
    # n SYNs of n connections in one buffer: (buffer, offsets, lengths)
    pkts = [build(S, D, 1024 + i % 60000, 80 + i // 60000, seq=i) for i in range(n)]
    lens = np.array([len(p) for p in pkts], dtype=np.int64)
    offs = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
    return np.frombuffer(b"".join(pkts), dtype=np.uint8), offs, lens
"""


def P(body: str) -> str:
    """The probe: the prelude, then `body` (an indented block is fine)."""
    return PRELUDE + textwrap.dedent(body)


# ---- times ----

@pytest.mark.parametrize("ts", ["9.5e9", "9223372037", "2**63", "2**64", "1e300", "float('inf')", "float('nan')",
                                "-1", "-1e-9", "True", "'1'", "None"])
def test_feed_refuses_times_whose_nanoseconds_overflow_or_that_are_not_times(ts):
    # 9.5e9 s used to be accepted and recorded start_us=0: its ns overflow int64
    expect_raises(P(f"""
        t = Tracker(16, seed=1)
        try:
            t.feed(SYN, {ts})
        finally:
            assert len(t) == 0 and t.stats["packets"] == 0
    """), "UsageError", match="ts must be a time")


def test_feed_at_the_last_representable_second_records_it():
    assert expect_ok(P("""
        t = Tracker(16, seed=1)
        t.feed(SYN, 9_223_372_036)
        outcome(int(t.close()["start_us"][0]))
    """)) == str(9_223_372_036 * 10**6)


@pytest.mark.parametrize("now", ["9.5e9", "2**64", "float('nan')", "float('inf')", "-1", "True", "None", "'5'"])
def test_tracker_expire_refuses_times_that_are_not_times(now):
    expect_raises(P(f"Tracker(16, seed=1).expire({now})"), "UsageError", match="now must be a time")


def test_tracker_expire_behind_its_clock_finishes_only_what_is_due():
    assert expect_ok(P("""
        t = Tracker(16, seed=1)
        t.feed(SYN, 1000.0)
        assert len(t.expire(0)) == 0 and len(t.expire(500.0)) == 0 and len(t) == 1
        outcome(len(t.expire(1000.0 + 121)))
    """)) == "1"


@pytest.mark.parametrize("ts", ["[-1]", "[-2**63]", "np.array([2**64 - 1], dtype=np.uint64)",
                                "np.array([2**63], dtype=np.uint64)"])
def test_feed_batch_refuses_timestamps_outside_int64_nanoseconds(ts):
    expect_raises(P(f"""
        t = Tracker(16, seed=1)
        buf = np.frombuffer(SYN, dtype=np.uint8)
        try:
            t.feed_batch(buf, [0], [len(SYN)], {ts})
        finally:
            assert len(t) == 0 and t.stats["packets"] == 0
    """), "UsageError", match="packet 0: ts_ns")


@pytest.mark.parametrize("ts", ["[1.5]", "np.array([1e18])", "[float('nan')]", "['1']", "[True]", "[2**64]"])
def test_feed_batch_refuses_timestamps_that_are_not_integers(ts):
    expect_raises(P(f"""
        t = Tracker(16, seed=1)
        t.feed_batch(np.frombuffer(SYN, dtype=np.uint8), [0], [len(SYN)], {ts})
    """), "UsageError", match="ts_ns must be an array of integers")


def test_feed_batch_takes_the_largest_int64_timestamp():
    assert expect_ok(P("""
        t = Tracker(16, seed=1)
        v = t.feed_batch(np.frombuffer(SYN, dtype=np.uint8), [0], [len(SYN)], [2**63 - 1])
        outcome((int(v[0]), int(t.close()["start_us"][0])))
    """)) == f"(0, {(2**63 - 1) // 1000})"


def test_feed_batch_times_going_backwards_do_not_move_the_clock_back():
    assert expect_ok(P("""
        t = Tracker(16, seed=1)
        buf, offs, lens = syn_batch(3)
        t.feed_batch(buf, offs, lens, [5 * 10**9, 1 * 10**9, 0])
        rows = t.close()
        outcome(sorted(int(x) for x in rows["start_us"]))
    """)) == "[5000000, 5000000, 5000000]"


# ---- index arrays ----

@pytest.mark.parametrize("offsets, lengths", [("[-1]", "[10]"), ("[0]", "[-1]"), ("[2**32]", "[1]"),
                                              ("np.array([2**64 - 1], dtype=np.uint64)", "[1]"),
                                              ("[1]", "[len(SYN)]"), ("[0]", "[2**63 - 1]")])
def test_feed_batch_refuses_spans_outside_the_buffer(offsets, lengths):
    expect_raises(P(f"""
        t = Tracker(16, seed=1)
        t.feed_batch(np.frombuffer(SYN, dtype=np.uint8), {offsets}, {lengths}, [0])
    """), "UsageError", match="packet 0")


@pytest.mark.parametrize("offsets, lengths, ts", [("[0.0]", "[len(SYN)]", "[0]"), ("[0]", "[float(len(SYN))]", "[0]"),
                                                  ("[[0]]", "[[len(SYN)]]", "[[0]]"), ("0", "len(SYN)", "0"),
                                                  ("[0, 0]", "[len(SYN)]", "[0]"), ("None", "[1]", "[0]")])
def test_feed_batch_refuses_index_arrays_that_are_not_one_integer_per_packet(offsets, lengths, ts):
    expect_raises(P(f"""
        t = Tracker(16, seed=1)
        t.feed_batch(np.frombuffer(SYN, dtype=np.uint8), {offsets}, {lengths}, {ts})
    """), "UsageError")


def test_feed_batch_takes_non_contiguous_and_read_only_arrays():
    assert expect_ok(P("""
        buf, offs, lens = syn_batch(8)
        ts = np.arange(16, dtype=np.int64)[::2] * 1000
        offs.flags.writeable = False
        t = Tracker(16, seed=1)
        v = t.feed_batch(buf, offs[::2], lens[::2], ts[::2])
        outcome((v.tolist(), len(t)))
    """)) == "([0, 0, 0, 0], 4)"


def test_feed_batch_refuses_a_non_contiguous_buffer():
    expect_raises(P("""
        t = Tracker(16, seed=1)
        buf = np.frombuffer(SYN * 2, dtype=np.uint8)[::2]
        t.feed_batch(buf, [0], [len(SYN) // 2], [0])
    """), "UsageError", match="contiguous")


@pytest.mark.parametrize("code", [17, 99, 255])
def test_feed_batch_refuses_link_verdicts_that_are_not_verdicts(code):
    expect_raises(P(f"""
        import tempfile, os
        path = os.path.join(tempfile.mkdtemp(), "c.pcap")
        write_pcap(path, [SYN, SYN], [1.0, 2.0])
        batch = next(iter(read_pcap(path)))
        batch.verdicts[1] = {code}
        Tracker(16, seed=1).feed_batch(batch)
    """), "UsageError", match="packet 1: link verdict")


def test_feed_batch_with_offsets_rewritten_by_another_thread_stays_in_the_buffer():
    assert expect_ok(P("""
        buf, offs, lens = syn_batch(60_000)
        big = np.tile(offs, 10)
        bl = np.tile(lens, 10)
        ts = np.zeros(len(big), dtype=np.int64)
        stop = []
        def scribble():
            while not stop:
                big[::101] = 1 << 40
                big[::101] = 0
        th = threading.Thread(target=scribble)
        th.start()
        try:
            for _ in range(4):
                t = Tracker(100_000, seed=1)
                try:
                    t.feed_batch(buf, big, bl, ts)
                except UsageError as e:
                    assert "packet" in str(e), str(e)
        finally:
            stop.append(1)
            th.join()
        outcome("ok")
    """)) == "'ok'"


def test_a_second_thread_is_refused_while_feed_batch_runs():
    # feed_batch releases the GIL; while it runs, every call from another thread is
    # refused with UsageError and changes nothing
    assert expect_ok(P("""
        buf, offs, lens = syn_batch(60_000)
        big_o, big_l = np.tile(offs, 20), np.tile(lens, 20)
        ts = np.zeros(len(big_o), dtype=np.int64)
        ops = (("feed", lambda: t.feed(SYN, 1.0)),
               ("feed_batch", lambda: t.feed_batch(buf, offs[:1], lens[:1], ts[:1])),
               ("expire", lambda: t.expire(1e6)), ("close", lambda: t.close()),
               ("connections", lambda: t.connections()), ("stats", lambda: t.stats),
               ("finished", lambda: t.finished()))
        def busy():
            try:
                len(t)
            except UsageError as e:
                assert "in use" in str(e), str(e)
                return True
            return False
        for attempt in range(10):
            t = Tracker(100_000, seed=1)
            th = threading.Thread(target=t.feed_batch, args=(buf, big_o, big_l, ts))
            th.start()
            while th.is_alive() and not busy():
                time.sleep(0.0002)
            refused = set()
            for name, call in ops:
                try:
                    call()
                except UsageError as e:
                    assert "in use" in str(e), str(e)
                    refused.add(name)
            still = busy()
            th.join()
            if still:
                break                  # every call above ran while the batch held the tracker
        else:
            raise AssertionError("never caught feed_batch running")
        assert len(refused) == len(ops), refused
        assert len(t) == 60_000 and t.stats["packets"] == len(big_o), (len(t), t.stats)
        outcome("ok")
    """)) == "'ok'"


# ---- configuration ----

@pytest.mark.parametrize("kw", ["capacity=0", "capacity=-1", "capacity=2**31 + 1", "capacity=2**64", "capacity=True",
                                "capacity=1.0", "capacity=None", "max_events=-1", "max_events=True",
                                "max_events=2**40", "max_events=1.5", "server_ports=[80.9]", "server_ports=['80']",
                                "server_ports=[70000]", "server_ports=[-1]", "server_ports=80", "server_ports='80'",
                                "server_ports=[True]", "timeouts='bogus'", "timeouts=5", "timeouts=np.zeros(3)",
                                "seed=-1", "seed=True", "seed=1.5", "verify_checksum='yes'",
                                "verify_checksum=0", "loose=None", "liberal=1", "events='no'"])
def test_tracker_refuses_configuration_that_is_not_one(kw):
    expect_raises(P(f"Tracker({kw})"), "UsageError")


def test_tracker_switches_take_numpy_bools():
    assert expect_ok(P("""
        t = Tracker(16, verify_checksum=np.False_, loose=np.True_, liberal=np.False_, events=np.bool_(True))
        t.feed(SYN, 1.0)
        outcome(t.stats["packets"])
    """)) == "1"


@pytest.mark.parametrize("ports, match", [
    ("range(10**12)", "got 65536"),                             # stops at the first bad value
    ("itertools.count(70000)", "got 70000"),
    ("itertools.repeat(80)", "more than 1048576 values"),       # endless, every value a port
])
def test_server_ports_are_read_in_bounded_memory(ports, match):
    """A huge or endless iterable of ports is refused as it is read, not listed first
    (a range of 10**9 took 24 GB before). The limit is 512 MiB above what the process
    has mapped: a sanitizer's shadow memory is mapped already."""
    expect_raises(P(f"""
        import itertools, resource
        vm = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (vm + (512 << 20), resource.getrlimit(resource.RLIMIT_AS)[1]))
        Tracker(4, server_ports={ports})
    """), "UsageError", match=match)



@pytest.mark.parametrize("field", ["msl", "none", "established", "retrans"])
@pytest.mark.parametrize("value", ["float('nan')", "float('inf')", "-1", "True", "False", "None", "'60'", "1e300"])
def test_tracker_timeouts_refuse_nan_inf_negative_and_bools(field, value):
    expect_raises(P(f"TrackerTimeouts({field}={value})"), "UsageError", match=field)


# ---- stats, close, use after close ----

def test_tracker_stats_is_a_property_like_the_table_and_endpoint():
    assert expect_ok(P("""
        t = Tracker(16, seed=1)
        t.feed(SYN, 1.0)
        st = t.stats
        assert isinstance(st, dict) and st["packets"] == 1 and st["created"] == 1
        import inspect
        for cls in (Tracker, fasttcp.ConnectionTable, fasttcp.Endpoint):
            assert inspect.isdatadescriptor(cls.__dict__["stats"]), cls
        outcome(sorted(st))
    """)) == repr(sorted(["packets", "verdicts", "created", "reused", "evicted", "timed_out", "out_of_window",
                          "rtt_samples", "live", "events_dropped", "fast_path", "other_shard"]))


def test_calling_tracker_stats_still_works_with_a_deprecation_warning():
    assert expect_ok(P("""
        t = Tracker(16, seed=1)
        t.feed(SYN, 1.0)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            st = t.stats()
        assert [x.category for x in w] == [DeprecationWarning] and "property" in str(w[0].message)
        assert w[0].filename.endswith("<string>")        # points at the caller
        outcome(st["packets"])
    """)) == "1"


def test_tracker_stays_usable_after_close():
    assert expect_ok(P("""
        t = Tracker(16, seed=1)
        t.feed(SYN, 1.0)
        assert len(t.close()) == 1 and len(t.close()) == 0 and len(t) == 0
        t.feed(SYN, 2.0)
        outcome((len(t), len(t.connections()), len(t.close()), t.stats["packets"]))
    """)) == "(1, 1, 1, 2)"


def test_a_tracker_made_without_init_is_refused_not_dereferenced():
    for call in ("t.feed(SYN, 1.0)", "t.feed_batch(np.zeros(1, np.uint8), [0], [1], [0])", "t.close()",
                 "t.connections()", "t.expire(1.0)", "t.stats", "len(t)", "t.finished()", "t.events()"):
        expect_raises(P(f"t = Tracker.__new__(Tracker)\n{call}"), "UsageError", match="not initialised")


def test_tracker_full_of_connections_counts_refusals_instead_of_growing():
    assert expect_ok(P("""
        t = Tracker(4, seed=1)
        buf, offs, lens = syn_batch(20)
        v = t.feed_batch(buf, offs, lens, np.arange(20, dtype=np.int64))
        outcome((len(t), int(t.memory_bytes > 0), sorted(set(v.tolist()))))
    """)).startswith("(4, 1,")


def test_stats_property_for_the_in_process_callers():
    from fasttcp import Tracker, build

    t = Tracker(16, seed=1)
    t.feed(build("198.18.0.1", "198.18.0.2", 1, 2), 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert t.stats["packets"] == 1
    with pytest.warns(DeprecationWarning):
        assert t.stats()["packets"] == 1


# ---- every integer argument: negative, zero, 2^31, 2^32, 2^63, 2^64 ----

SWEEP = INTEGER_SWEEP + """
t = Tracker(16, seed=1)
BUF = np.frombuffer(SYN, dtype=np.uint8)
"""


@pytest.mark.parametrize("call", [
    "Tracker(v if v < 2**31 - 1 else v + 2**31)", "Tracker(4, max_events=v if v < 2**28 else v, events=True)",
    "Tracker(4, seed=v)", "Tracker(4, server_ports=[v])", "t.feed(SYN, v)", "t.expire(v)",
    "t.feed_batch(BUF, [v], [len(SYN)], [0])", "t.feed_batch(BUF, [0], [v], [0])",
    "t.feed_batch(BUF, [0], [len(SYN)], [v])",
    "t.feed_batch(BUF, [0], [len(SYN)], np.array([v % 2**64], dtype=np.uint64))",
    "TrackerTimeouts(established=v)", "TrackerTimeouts(msl=v)",
])
def test_tracker_integer_arguments_never_crash_and_raise_only_fasttcp_errors(call):
    out = expect_ok(P(SWEEP + f"outcome(sweep(lambda v: {call}))"))
    assert "ok" in out or "UsageError" in out, out


@pytest.mark.parametrize("rows", ["np.zeros(2)", "[1, 2]", "None", "np.zeros(2, dtype=fasttcp.TRACKER_EVENT_DTYPE)"])
def test_flow_records_refuses_what_is_not_flow_rows_at_the_call(rows):
    expect_raises(P(f"fasttcp.flow_records({rows})"), "UsageError", match="FLOW_DTYPE")


@pytest.mark.parametrize("field, value", [("conn_state", 99), ("state", 200), ("end_reason", 7),
                                          ("history", "b'\\xff\\xfe'")])
def test_flow_records_refuses_rows_the_tracker_cannot_have_written(field, value):
    expect_raises(P(f"""
        rows = np.zeros(1, dtype=fasttcp.FLOW_DTYPE)
        rows["family"] = 4
        rows["{field}"] = {value}
        list(fasttcp.flow_records(rows))
    """), "UsageError", match="not a row")
