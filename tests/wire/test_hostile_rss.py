"""Hostile calls into the flow hash and the per-packet shard (toeplitz_hash, flow_hash,
flow_hash_rows, shard_of_hash, shard_of_batch), each in a child process
(tests/probe.py): every bad argument must be a precise UsageError -- never a crash, a
read outside a buffer, or a shard for nonsense."""
import textwrap

import pytest

from tests.probe import INTEGER_SWEEP, expect_ok, expect_raises

PRELUDE = """
from fasttcp import build, flow_hash, flow_hash_rows, shard_of_batch, shard_of_hash, UsageError, FLOW_DTYPE
from fasttcp import CaptureBatch
from fasttcp.wire.rss import toeplitz_hash, RSS_KEY_SYMMETRIC, RSS_KEY_MICROSOFT
PKT = build("198.18.0.1", "198.18.0.2", 40000, 80, seq=1, payload=b"hello")
SRC4 = np.array([[198, 18, 0, 1], [10, 0, 0, 1]], dtype=np.uint8)
DST4 = np.array([[198, 18, 0, 2], [10, 0, 0, 2]], dtype=np.uint8)

def capture_batch(verdicts, n=None):
    n = len(verdicts) if n is None else n
    return CaptureBatch(np.frombuffer(PKT * n, dtype=np.uint8), np.arange(n, dtype=np.int64) * len(PKT),
                        np.full(n, len(PKT), dtype=np.int64), np.zeros(n, dtype=np.int64),
                        np.full(n, len(PKT) + 14, dtype=np.uint32), verdicts, np.zeros(n, dtype=np.uint16),
                        np.arange(1, n + 1, dtype=np.int64), np.zeros(n, dtype=bool))
"""


def P(body: str) -> str:
    """The probe: the prelude, then `body` (an indented block is fine)."""
    return PRELUDE + textwrap.dedent(body)


# ---- shards, reta_size, key ----

@pytest.mark.parametrize("shards", ["0", "-1", "2**16", "2**16 - 1 + 1", "2**64", "float('nan')", "4.0", "True",
                                    "None", "'4'", "np.float64(2)"])
def test_shard_of_batch_refuses_shard_counts_that_are_not_1_to_65535(shards):
    expect_raises(P(f"shard_of_batch(PKT, {shards}, offsets=[0], lengths=[len(PKT)], reta_size=65536)"),
                  "UsageError", match="shards")


def test_shard_of_batch_takes_the_largest_shard_count_and_numpy_integers():
    assert expect_ok(P("""
        a = shard_of_batch(PKT, 65535, reta_size=65536, offsets=[0], lengths=[len(PKT)])
        b = shard_of_batch(PKT, np.uint16(3), reta_size=np.int64(4), offsets=[0], lengths=[len(PKT)])
        outcome((a.dtype.name, int(a[0]) < 65535, int(b[0]) < 3))
    """)) == "('uint16', True, True)"


@pytest.mark.parametrize("reta_size", ["0", "3", "100", "-128", "2**17", "2**64", "float('nan')", "128.0", "True",
                                       "None", "2"])
def test_shard_of_batch_refuses_tables_that_are_not_a_power_of_two_at_least_shards(reta_size):
    expect_raises(P(f"shard_of_batch(PKT, 4, reta_size={reta_size}, offsets=[0], lengths=[len(PKT)])"),
                  "UsageError", match="reta_size")


@pytest.mark.parametrize("key", ["b''", "b'x' * 39", "RSS_KEY_SYMMETRIC[:-1]", "RSS_KEY_SYMMETRIC.hex()", "None",
                                 "40", "np.zeros(40, dtype=np.uint8)", "[0] * 40"])
def test_every_call_refuses_a_key_that_is_not_40_bytes_or_more(key):
    for call in ("shard_of_batch(PKT, 4, key=K, offsets=[0], lengths=[len(PKT)])",
                 "flow_hash('198.18.0.1', '198.18.0.2', 1, 2, key=K)", "flow_hash(SRC4, DST4, [1, 2], [3, 4], key=K)",
                 "flow_hash_rows(np.zeros(1, dtype=FLOW_DTYPE), key=K)", "toeplitz_hash(b'', key=K)"):
        expect_raises(P(f"K = {key}\n{call}"), "UsageError", match="key")


# ---- shard_of_batch's batch ----

@pytest.mark.parametrize("offsets, lengths", [
    ("[-1]", "[10]"), ("[0]", "[-1]"), ("[2**31]", "[1]"), ("[2**63 - 1]", "[1]"),
    ("np.array([2**64 - 1], dtype=np.uint64)", "[1]"), ("[0]", "[2**63 - 1]"), ("[10]", "[len(PKT)]"),
    ("[len(PKT) + 1]", "[0]"),
])
def test_shard_of_batch_refuses_spans_outside_the_buffer(offsets, lengths):
    expect_raises(P(f"shard_of_batch(PKT, 4, offsets={offsets}, lengths={lengths})"), "UsageError",
                  match="packet 0")


@pytest.mark.parametrize("offsets", ["[0.5]", "np.array([0.0])", "[float('nan')]", "['0']", "[True]", "[2**64]",
                                     "[None]"])
def test_shard_of_batch_refuses_offsets_that_are_not_integers(offsets):
    expect_raises(P(f"shard_of_batch(PKT, 4, offsets={offsets}, lengths=[len(PKT)])"), "UsageError",
                  match="integers")


@pytest.mark.parametrize("offsets, lengths", [("[[0]]", "[[len(PKT)]]"), ("0", "len(PKT)"),
                                              ("[0, 0]", "[len(PKT)]")])
def test_shard_of_batch_refuses_shapes_that_are_not_one_row_per_packet(offsets, lengths):
    expect_raises(P(f"shard_of_batch(PKT, 4, offsets={offsets}, lengths={lengths})"), "UsageError", match="1-D")


@pytest.mark.parametrize("call", ["shard_of_batch(PKT, 4)", "shard_of_batch(PKT, 4, offsets=[0])",
                                  "shard_of_batch(PKT, 4, lengths=[1])", "shard_of_batch(None, 4)"])
def test_shard_of_batch_refuses_a_batch_that_is_neither_form(call):
    expect_raises(P(call), "UsageError", match="shard_of_batch")


@pytest.mark.parametrize("buffer", ["np.frombuffer(PKT * 2, dtype=np.uint8)[::2]",
                                    "np.frombuffer(PKT * 2, dtype=np.uint8).reshape(2, -1).T"])
def test_shard_of_batch_refuses_a_non_contiguous_buffer(buffer):
    expect_raises(P(f"shard_of_batch({buffer}, 4, offsets=[0], lengths=[len(PKT)])"), "UsageError",
                  match="contiguous")


@pytest.mark.parametrize("verdicts", ["np.array([0, 13], dtype=np.uint8)", "np.array([0, 255], dtype=np.uint8)",
                                      "np.array([0, -1])", "np.array([0, 2**40])", "np.array([0.0, 1.0])",
                                      "np.array([False, True])", "np.zeros(3, dtype=np.uint8), n=2"])
def test_shard_of_batch_refuses_link_verdicts_that_are_not_codes(verdicts):
    expect_raises(P(f"shard_of_batch(capture_batch({verdicts}), 4)"), "UsageError", match="link verdict")


def test_shard_of_batch_takes_non_contiguous_read_only_arrays_and_wider_verdicts():
    assert expect_ok(P("""
        buf = np.frombuffer(PKT * 4, dtype=np.uint8)           # read-only
        offs = (np.arange(8, dtype=np.int64) * len(PKT))[::2] // 2
        lens = np.full(4, len(PKT)); lens.flags.writeable = False
        a = shard_of_batch(buf, 16, offsets=offs, lengths=lens)
        b = shard_of_batch(capture_batch(np.array([0, 10, 0, 0], dtype=np.int64)), 16)
        outcome((len(set(a.tolist())), int(b[1]), b[0] == a[0]))
    """)) == "(1, 0, np.True_)"


def test_shard_of_batch_with_offsets_rewritten_by_another_thread_stays_in_the_buffer():
    # the spans are checked before the loop; a second thread rewriting the arrays while
    # the loop runs without the GIL must not make it read outside the buffer
    assert expect_ok(P("""
        n = 2_000_000
        buf = np.frombuffer(PKT, dtype=np.uint8)
        offs = np.zeros(n, dtype=np.int64)
        lens = np.full(n, len(PKT), dtype=np.int64)
        stop = []
        def scribble():
            while not stop:
                offs[::97] = 1 << 40
                offs[::97] = 0
        th = threading.Thread(target=scribble)
        th.start()
        try:
            for _ in range(5):
                try:
                    shard_of_batch(buf, 8, offsets=offs, lengths=lens)
                except UsageError as e:
                    assert "packet" in str(e)
        finally:
            stop.append(1)
            th.join()
        outcome("ok")
    """)) == "'ok'"


def test_shard_of_batch_buffer_cannot_shrink_under_the_loop():
    assert expect_ok(P("""
        buf = bytearray(PKT * 200_000)
        offs = np.arange(200_000, dtype=np.int64) * len(PKT)
        lens = np.full(200_000, len(PKT), dtype=np.int64)
        def shrink():
            try:
                for _ in range(200):
                    del buf[len(buf) // 2:]
                    buf.extend(bytes(len(buf)))
            except BufferError:
                pass
        th = threading.Thread(target=shrink)
        th.start()
        for _ in range(20):
            try:
                shard_of_batch(buf, 4, offsets=offs, lengths=lens)
            except UsageError:
                pass
        th.join()
        outcome("ok")
    """)) == "'ok'"


# ---- flow_hash, flow_hash_rows, shard_of_hash, toeplitz_hash ----

@pytest.mark.parametrize("src, dst", [
    ("SRC4.astype(np.int64)", "DST4"), ("SRC4", "DST4.astype(np.int8)"), ("SRC4.astype(float)", "DST4"),
    ("SRC4[:, :3]", "DST4[:, :3]"), ("np.zeros((2, 5), np.uint8)", "np.zeros((2, 5), np.uint8)"),
    ("SRC4.ravel()", "DST4.ravel()"), ("SRC4[None]", "DST4[None]"), ("[[1, 2, 3, 4]] * 2", "DST4"),
    ("SRC4", "np.zeros((2, 16), np.uint8)"), ("SRC4", "DST4[:1]"), ("SRC4", "None"),
])
def test_flow_hash_refuses_addresses_that_are_not_n_by_4_or_16_bytes(src, dst):
    expect_raises(P(f"flow_hash({src}, {dst}, [1, 2], [3, 4])"), "UsageError", match="src|dst")


@pytest.mark.parametrize("ports", ["[1, -1]", "[1, 65536]", "[1, 2**64]", "np.array([1, 2**40])", "[1.0, 2.0]",
                                   "[1, float('nan')]", "[True, False]", "['1', '2']", "[1]", "[[1, 2]]", "7",
                                   "None", "[1, None]"])
def test_flow_hash_refuses_ports_that_are_not_one_port_per_flow(ports):
    expect_raises(P(f"flow_hash(SRC4, DST4, {ports}, [3, 4])"), "UsageError", match="sport")
    expect_raises(P(f"flow_hash(SRC4, DST4, [3, 4], {ports})"), "UsageError", match="dport")


def test_flow_hash_takes_non_contiguous_and_read_only_arrays():
    assert expect_ok(P("""
        src = np.repeat(SRC4, 2, axis=0)[::2]; src.flags.writeable = False
        dst = np.asfortranarray(DST4)
        sp = np.array([1, 0, 2, 0], dtype=np.int64)[::2]
        want = [flow_hash("198.18.0.1", "198.18.0.2", 1, 3), flow_hash("10.0.0.1", "10.0.0.2", 2, 4)]
        outcome(flow_hash(src, dst, sp, np.array([3, 4], dtype=np.uint8)).tolist() == want)
    """)) == "True"


@pytest.mark.parametrize("args", [
    "'198.18.0.1', '2001:db8::1', 1, 2", "'198.18.0.1', 'not.an.address', 1, 2", "'198.18.0.1', None, 1, 2",
    "b'\\x01\\x02\\x03', b'\\x01\\x02\\x03', 1, 2", "'198.18.0.1', '198.18.0.2', True, 2",
    "'198.18.0.1', '198.18.0.2', 1.0, 2", "'198.18.0.1', '198.18.0.2', 1, float('nan')",
    "'198.18.0.1', '198.18.0.2', 1, '2'", "'198.18.0.1', '198.18.0.2', [1], 2",
])
def test_flow_hash_of_one_flow_refuses_what_is_not_one_flow(args):
    expect_raises(P(f"flow_hash({args})"), "UsageError")


@pytest.mark.parametrize("rows", [
    "np.zeros(2, dtype=np.uint8)", "np.zeros((2, 2), dtype=FLOW_DTYPE)", "np.zeros(2, dtype=FLOW_DTYPE)[0]",
    "np.zeros(2, dtype=[('family', 'u1'), ('orig_h', 'u1', (16,)), ('resp_h', 'u1', (16,)), ('orig_p', 'u2')])",
    "np.zeros(2, dtype=[('family', 'u1'), ('orig_h', 'u1', (4,)), ('resp_h', 'u1', (4,)), ('orig_p', 'u2'), "
    "('resp_p', 'u2')])",
    "np.zeros(2, dtype=[('family', 'u1'), ('orig_h', 'u1', (16,)), ('resp_h', 'u1', (16,)), ('orig_p', 'i8'), "
    "('resp_p', 'u2')])",
    "[1, 2]", "None", "bad_family",
])
def test_flow_hash_rows_refuses_what_are_not_flow_rows(rows):
    expect_raises(P(f"""
        bad_family = np.zeros(3, dtype=FLOW_DTYPE); bad_family["family"] = [4, 6, 5]
        flow_hash_rows({rows})
    """), "UsageError", match="rows|row 2")


@pytest.mark.parametrize("hashes", ["-1", "2**32", "2**64", "1.5", "float('nan')", "True", "[-1]", "[2**32]",
                                    "np.array([1.0])", "['1']", "None"])
def test_shard_of_hash_refuses_what_is_not_a_32_bit_hash(hashes):
    expect_raises(P(f"shard_of_hash({hashes}, 4)"), "UsageError", match="hash")


@pytest.mark.parametrize("call, exc", [
    ("toeplitz_hash(bytes(37))", "UsageError"), ("toeplitz_hash(bytes(49), key=bytes(52))", "UsageError"),
    ("toeplitz_hash(np.zeros(8, np.uint8)[::2])", "UsageError"), ("toeplitz_hash('abcd')", "TypeError"),
    ("toeplitz_hash(None)", "TypeError"),
])
def test_toeplitz_hash_refuses_input_its_key_does_not_cover(call, exc):
    expect_raises(P(call), exc)


def test_toeplitz_hash_takes_the_longest_input_its_key_covers():
    assert expect_ok(P("outcome((toeplitz_hash(bytes(36)), toeplitz_hash(b'\\xff' * 48, key=bytes(52))))")) == "(0, 0)"


# ---- every integer argument: negative, zero, 2^31, 2^32, 2^63, 2^64 ----

@pytest.mark.parametrize("call", [
    "shard_of_batch(PKT, v, reta_size=65536, offsets=[0], lengths=[len(PKT)])",
    "shard_of_batch(PKT, 1, reta_size=v, offsets=[0], lengths=[len(PKT)])",
    "shard_of_batch(PKT, 4, offsets=[v], lengths=[1])", "shard_of_batch(PKT, 4, offsets=[0], lengths=[v])",
    "shard_of_batch(PKT, 4, offsets=np.array([v % 2**64], dtype=np.uint64), lengths=[1])",
    "flow_hash('198.18.0.1', '198.18.0.2', v, 2)", "flow_hash('::1', '::2', 1, v)",
    "flow_hash(SRC4, DST4, [v, 1], [1, 1])", "flow_hash(SRC4, DST4, np.array([v % 2**64, 1], dtype=np.uint64), [1, 1])",
    "shard_of_hash(v, 4)", "shard_of_hash([v], 4)", "shard_of_hash(1, v)", "shard_of_hash(1, 1, reta_size=v)",
    "toeplitz_hash(bytes(max(0, min(v, 64))))",
])
def test_rss_integer_arguments_never_crash_and_raise_only_usage_errors(call):
    out = expect_ok(P(INTEGER_SWEEP + f"outcome(sweep(lambda v: {call}))"))
    assert "ok" in out and "UsageError" in out, out


# ---- RssShards: a sharding a reader computes as it scans ----

@pytest.mark.parametrize("args, match", [("0", "shards"), ("2**16", "shards"), ("True", "shards"), ("2.0", "shards"),
                                         ("None", "shards"), ("4, reta_size=2", "smaller than shards"),
                                         ("4, reta_size=96", "power of two"), ("4, key=b'short'", "key"),
                                         ("4, key=None", "key")])
def test_rss_shards_refuses_what_shard_of_batch_refuses(args, match):
    expect_raises(P(f"from fasttcp.wire.rss import RssShards\nRssShards({args})"), "UsageError", match)
