"""Hostile calls into the connection table's public API, each in a child process
(tests/probe.py): a crash or a hang fails one test. Every answer must be a clear
UsageError (or a documented result), never a crash, a hang or nonsense accepted."""
import textwrap

import pytest

from tests.probe import INTEGER_SWEEP, expect_ok, expect_raises

PRELUDE = """
from fasttcp import ConnectionTable, KEY_DTYPE, make_keys, canonical_keys, Timeouts, UsageError
K4 = ("10.0.0.1", 1000, "10.0.0.2", 80)
K6 = ("2001:db8::1", 1000, "2001:db8::2", 80)
"""


def P(body: str) -> str:
    """The probe: the prelude, then `body` (an indented block is fine)."""
    return PRELUDE + textwrap.dedent(body)


# ---- canonical_keys ----

@pytest.mark.parametrize("keys", [
    "np.zeros(40, dtype=np.uint8)",
    "np.zeros(1000, dtype=np.uint8)",
    "np.zeros(3, dtype=np.uint64)",
    "np.zeros(2, dtype=[('family', 'u1'), ('x', 'u1', (39,))])",
    "make_keys([K4]).astype(KEY_DTYPE.newbyteorder())",
])
def test_canonical_keys_refuses_arrays_of_another_dtype(keys):
    expect_raises(PRELUDE + f"canonical_keys({keys})", "UsageError", match="KEY_DTYPE")


@pytest.mark.parametrize("keys", ["[K4]", "None", "5", "b'x' * 40", "make_keys([K4])[0]",
                                  "np.array(make_keys([K4])[0])"])
def test_canonical_keys_refuses_lists_scalars_and_0d_arrays(keys):
    expect_raises(PRELUDE + f"canonical_keys({keys})", "UsageError", match="KEY_DTYPE")


def test_canonical_keys_refuses_2d_arrays():
    expect_raises(PRELUDE + "canonical_keys(np.zeros((4, 2), dtype=KEY_DTYPE))", "UsageError",
                  match="1-D")


def test_canonical_keys_copies_non_contiguous_and_read_only_arrays():
    assert expect_ok(P("""
        keys = make_keys([("10.0.0.9", 5, "10.0.0.1", 7), K4, ("::9", 1, "::1", 2), K6])
        strided = keys[::2]
        ro = keys.copy(); ro.flags.writeable = False
        a, sa = canonical_keys(strided)
        b, sb = canonical_keys(ro)
        assert a.flags.c_contiguous and list(sa) == [True, True] and list(sb) == [True, False, True, False]
        want = make_keys([("10.0.0.9", 5, "10.0.0.1", 7), K4, ("::9", 1, "::1", 2), K6])
        assert bytes(keys.tobytes()) == bytes(want.tobytes())
        assert (a["lport"] == [7, 2]).all()
        outcome("ok")
    """)) == "'ok'"


@pytest.mark.parametrize("family", [0, 5, 9, 255])
def test_canonical_keys_refuses_rows_that_are_not_keys(family):
    expect_raises(P(f"""
        keys = make_keys([K4, K6])
        keys["family"][1] = {family}
        canonical_keys(keys)
    """), "UsageError", match=r"keys\[1\]: family")


# ---- key validation in the batch calls ----

@pytest.mark.parametrize("call", ["t.insert_batch(keys)", "t.lookup_batch(keys)"])
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("family", [0, 1, 5, 9, 255])
def test_batch_calls_refuse_keys_of_another_family_naming_the_row(call, symmetric, family):
    out = expect_raises(P(f"""
        t = ConnectionTable(8, seed=1, symmetric={symmetric})
        keys = make_keys([K4, K6, ("10.0.0.3", 1, "10.0.0.4", 2)])
        keys["family"][2] = {family}
        try:
            {call}
        finally:
            assert len(t) == 0 and t.stats["inserts"] == 0 and t.check()
    """), "UsageError", match=rf"keys\[2\]: family {family}")
    assert "neither 4" in out.message


def test_insert_batch_of_family_zero_keys_never_runs_past_the_table():
    # family-0 keys used to fill the table with records that look free; the real keys
    # that followed were then placed past its capacity (a segfault)
    assert expect_ok(P("""
        t = ConnectionTable(4, seed=1, when_full="refuse")
        bad = np.zeros(4, dtype=KEY_DTYPE)
        bad["lport"] = np.arange(4)
        try:
            t.insert_batch(bad)
        except UsageError:
            pass
        good = make_keys([("10.0.0.%d" % i, 1, "10.0.0.200", 2) for i in range(1, 20)])
        ids = t.insert_batch(good)
        assert len(t) == 4 and (ids[:4] >= 0).all() and (ids[4:] == -1).all() and t.check()
        outcome(len(t))
    """)) == "4"


@pytest.mark.parametrize("where", ["laddr", "raddr"])
@pytest.mark.parametrize("byte", [4, 15])
@pytest.mark.parametrize("call", ["t.insert_batch(keys)", "t.lookup_batch(keys)"])
def test_batch_calls_refuse_ipv4_keys_with_address_padding(where, byte, call):
    expect_raises(P(f"""
        t = ConnectionTable(8, seed=1)
        keys = make_keys([K6, K4])
        keys["{where}"][1][{byte}] = 1
        try:
            {call}
        finally:
            assert len(t) == 0
    """), "UsageError", match=r"keys\[1\]: an IPv4 key")


def test_ipv4_padding_cannot_make_two_records_for_one_four_tuple():
    expect_raises(P("""
        t = ConnectionTable(8, seed=1)
        keys = make_keys([K4, K4])
        keys["raddr"][1][8] = 7
        try:
            t.insert_batch(keys)
        finally:
            assert len(t) == 0
    """), "UsageError", match=r"keys\[1\]")


def test_ipv6_keys_with_any_address_bytes_are_keys():
    assert expect_ok(P("""
        t = ConnectionTable(8, seed=1)
        keys = make_keys([K6])
        keys["laddr"][0][4:] = 0xff
        ids = t.insert_batch(keys)
        outcome((int(ids[0]), int(t.lookup_batch(keys)[0]), len(t)))
    """)) == "(0, 0, 1)"


def test_key_pad_bytes_are_not_part_of_the_key_and_do_not_reach_the_record():
    # bytes 1..3 of a key sit where a record keeps its state, flags and retransmits
    assert expect_ok(P("""
        for symmetric in (False, True):
            t = ConnectionTable(8, seed=1, symmetric=symmetric)
            keys = make_keys([K4])
            keys["_pad"][0] = [0xff, 0xff, 0xff]
            ids = t.insert_batch(keys)
            v = t[K4]
            assert (v.swapped, v.sack_permitted, v.timestamps, v.retransmits) == (False, False, False, 0)
            assert t.lookup_batch(keys)[0] == ids[0] == v.id
            assert t.check()
        outcome("ok")
    """)) == "'ok'"


@pytest.mark.parametrize("keys", [
    "np.zeros(40, dtype=np.uint8)", "[K4]", "None", "make_keys([K4])[0]",
    "np.zeros((2, 2), dtype=KEY_DTYPE)", "np.zeros(3, dtype=np.uint64)",
])
@pytest.mark.parametrize("call", ["insert_batch", "lookup_batch"])
def test_batch_calls_refuse_what_is_not_a_1d_key_array(keys, call):
    expect_raises(PRELUDE + f"ConnectionTable(4, seed=1).{call}({keys})", "UsageError", match="KEY_DTYPE")


def test_batch_calls_take_non_contiguous_and_read_only_key_arrays():
    assert expect_ok(P("""
        keys = make_keys([("10.0.0.%d" % i, 1, "10.0.0.200", 2) for i in range(1, 9)])
        ro = keys[::2].copy(); ro.flags.writeable = False
        t = ConnectionTable(8, seed=1, symmetric=True)
        a = t.insert_batch(keys[::2])
        b = t.lookup_batch(ro)
        assert (a == b).all() and len(t) == 4 and (t.lookup_batch(keys[1::2]) == -1).all()
        outcome("ok")
    """)) == "'ok'"


def test_insert_batch_rewritten_by_another_thread_never_stores_a_bad_key():
    # A second thread rewrites the caller's key array while insert_batch runs without
    # the GIL: whatever it manages, no record of family 0 (which reads as free) may
    # reach the table, and the call ends with its ids or a UsageError.
    assert expect_ok(P("""
        n = 400_000
        keys = np.zeros(n, dtype=KEY_DTYPE)
        keys["family"] = 4
        keys["lport"] = np.arange(n) & 0xffff
        keys["rport"] = np.arange(n) >> 16
        keys["laddr"][:, 0] = 10
        stop = []
        def scribble():
            while not stop:
                keys["family"][::7] = 0
                keys["family"][::7] = 4
        for attempt in range(3):
            t = ConnectionTable(n, seed=1)
            th = threading.Thread(target=scribble)
            th.start()
            try:
                t.insert_batch(keys)
            except UsageError as e:
                assert "rewritten" in str(e) or "family 0" in str(e), str(e)
            finally:
                stop.append(1)
                th.join()
                stop.clear()
            rows, ids = t.snapshot()
            assert len(t) == len(ids) and (rows["family"] == 4).all() and t.check()
        outcome("ok")
    """)) == "'ok'"


# ---- remove_ids ----

@pytest.mark.parametrize("ids", ["np.array([0.7, 1.2])", "np.array([True])", "['0']", "[2**64]",
                                 "np.array([object()])"])
def test_remove_ids_refuses_what_is_not_integer_ids(ids):
    expect_raises(P(f"""
        t = ConnectionTable(4, seed=1)
        t.insert(K4); t.insert(K6)
        try:
            t.remove_ids({ids})
        finally:
            assert len(t) == 2
    """), "UsageError", match="integers")


@pytest.mark.parametrize("ids", ["[-1, 2**31, 2**32, 2**63 - 1, -2**63]", "np.array([2**64 - 1], dtype=np.uint64)",
                                 "[]", "np.array([], dtype=np.float64)", "np.array([[0]])"])
def test_remove_ids_skips_ids_out_of_range(ids):
    out = expect_ok(P(f"""
        t = ConnectionTable(4, seed=1)
        t.insert(K4); t.insert(K6)
        outcome((t.remove_ids({ids}), len(t)))
    """))
    assert out in ("(0, 2)", "(1, 1)")


# ---- integers, times and configuration ----

@pytest.mark.parametrize("capacity", [0, -1, 2**31 + 1, 2**32, 2**40, 2**64, True, 1.0, "8", None])
def test_table_capacity_outside_one_to_two_to_the_31_is_refused(capacity):
    expect_raises(PRELUDE + f"ConnectionTable({capacity!r})", "UsageError", match="capacity")


@pytest.mark.parametrize("capacity", [1, 2])
def test_tiny_tables_fill_and_refuse_without_crashing(capacity):
    assert expect_ok(P(f"""
        t = ConnectionTable({capacity}, seed=1, when_full="refuse")
        keys = make_keys([("10.0.0.%d" % i, 1, "10.0.0.200", 2) for i in range(1, 6)])
        ids = t.insert_batch(keys)
        assert (ids[:{capacity}] >= 0).all() and (ids[{capacity}:] == -1).all()
        assert t.stats["refusals"] == 5 - {capacity} and len(t.expire(1e9)) == {capacity} and len(t) == 0
        outcome("ok")
    """)) == "'ok'"


BAD_TIMES = ["-1", "float('nan')", "float('inf')", "-float('inf')", "2**64", "1e300", "True", "'1'", "None",
             "1.9e13"]
TIME_CALLS = ["t.insert(K6, now={now})", "t.insert_batch(make_keys([K6]), now={now})", "t.expire({now})",
              "t.set_state(K4, 4, now={now})", "t.set_deadline(K4, {now})"]


@pytest.mark.parametrize("call, now", [(c, t) for c in TIME_CALLS for t in BAD_TIMES
                                       if not (t == "None" and c.startswith("t.set_deadline"))])  # None cancels
def test_table_times_must_be_finite_seconds(call, now):
    expect_raises(P(f"""
        t = ConnectionTable(4, seed=1)
        t.insert(K4)
        try:
            {call.format(now=now)}
        finally:
            assert len(t) == 1 and K6 not in t
    """), "UsageError")


def test_table_times_going_backwards_expire_nothing_new():
    assert expect_ok(P("""
        t = ConnectionTable(4, seed=1)
        t.insert(K4, now=100.0)
        assert len(t.expire(50.0)) == 0 and len(t.expire(0)) == 0 and K4 in t
        t.set_deadline(K4, 10.0)                 # behind the clock: due at the next expire
        assert len(t.expire(5.0)) == 0             # ... that reaches it
        outcome(len(t.expire(20.0)))
    """)) == "1"


@pytest.mark.parametrize("field", ["msl", "syn_sent", "established", "listen"])
@pytest.mark.parametrize("value", ["float('nan')", "float('inf')", "-1", "-0.5", "True", "False", "'30'",
                                   "None", "1e300", "2**64"])
def test_timeouts_refuse_nan_inf_negative_and_bools(field, value):
    expect_raises(PRELUDE + f"Timeouts({field}={value})", "UsageError", match=field)


@pytest.mark.parametrize("msl", ["float('nan')", "float('inf')", "-1", "0", "True"])
def test_table_msl_is_checked_like_timeouts(msl):
    expect_raises(PRELUDE + f"ConnectionTable(4, msl={msl})", "UsageError", match="msl")


@pytest.mark.parametrize("state", ["-1", "11", "2**32", "2**64", "True", "2.0", "'SYN_SENT'"])
def test_table_states_outside_the_enum_are_refused(state):
    expect_raises(P(f"""
        t = ConnectionTable(4, seed=1)
        try:
            t.insert_batch(make_keys([K4]), state={state})
        finally:
            assert len(t) == 0
    """), "UsageError")


@pytest.mark.parametrize("value", ["-1", "2**32", "2**64", "True", "1.0"])
def test_table_tcb_fields_outside_32_bits_are_refused(value):
    expect_raises(PRELUDE + f"ConnectionTable(4, seed=1).insert(K4, iss={value})", "UsageError", match="iss")


def test_expire_into_a_read_only_or_non_contiguous_array_is_refused():
    for out in ("ro", "np.zeros(8, dtype=fasttcp.EXPIRED_DTYPE)[::2]", "np.zeros((2, 2), dtype=fasttcp.EXPIRED_DTYPE)"):
        expect_raises(P(f"""
            t = ConnectionTable(4, seed=1)
            t.insert(K4)
            ro = np.zeros(4, dtype=fasttcp.EXPIRED_DTYPE); ro.flags.writeable = False
            t.expire(1e9, out={out})
        """), "UsageError", match="out")


# ---- views after remove, uninitialised tables ----

def test_connection_view_after_remove_raises_stale_connection():
    out = expect_raises(P("""
        t = ConnectionTable(4, seed=1)
        v = t.insert(K4)
        t.remove(K4)
        t.insert(K6)
        v.state
    """), "StaleConnection")
    assert "UsageError" in out.mro


def test_connection_view_after_expire_raises_stale_connection():
    expect_raises(P("""
        t = ConnectionTable(4, seed=1)
        v = t.insert(K4)
        assert len(t.expire(1e9)) == 1
        v.snd_nxt
    """), "StaleConnection")


def test_a_table_made_without_init_is_refused_not_dereferenced():
    for call in ("len(t)", "t.lookup_batch(make_keys([K4]))", "t.insert_batch(make_keys([K4]))",
                 "t.expire(1.0)", "t.remove_ids([0])", "t.snapshot()", "list(t)"):
        expect_raises(PRELUDE + f"t = ConnectionTable.__new__(ConnectionTable)\n{call}", "UsageError",
                      match="not initialised")


@pytest.mark.parametrize("seed", ["-1", "True", "1.5", "'1'"])
def test_table_seed_must_be_a_non_negative_int(seed):
    expect_raises(P(f"ConnectionTable(4, seed={seed})"), "UsageError", match="seed")


@pytest.mark.parametrize("key", ["('10.0.0.1', True, '10.0.0.2', 2)", "('10.0.0.1', 1, '10.0.0.2', 2**64)",
                                 "('10.0.0.1', -1, '10.0.0.2', 2)", "('10.0.0.1', 1, '::2', 2)"])
def test_scalar_keys_refuse_ports_that_are_not_ports(key):
    expect_raises(P(f"make_keys([{key}])"), "UsageError")
    expect_raises(P(f"ConnectionTable(4, seed=1).insert({key})"), "UsageError")


# ---- every integer argument: negative, zero, 2^31, 2^32, 2^63, 2^64 ----

SWEEP = INTEGER_SWEEP + """
t = ConnectionTable(8, seed=1)
t.insert(K4)
"""


@pytest.mark.parametrize("call", [
    "ConnectionTable(v if v < 2**31 - 1 else v + 2**31)", "ConnectionTable(4, seed=v)",
    "ConnectionTable(8).insert(K6, state=v)", "ConnectionTable(8).insert(K6, iss=v)",
    "ConnectionTable(8).insert(K6, mss=v)", "ConnectionTable(8).insert(K6, now=v)",
    "t.insert(('10.0.0.1', v, '10.0.0.2', 1))", "t.set_state(K4, v, now=0)", "t.set_state(K4, 4, now=v)",
    "t.set_deadline(K4, v)", "t.expire(v)", "t.remove_ids([v])", "t.insert_batch(make_keys([K6]), state=v)",
    "t.insert_batch(make_keys([K6]), now=v)", "make_keys([('::1', v, '::2', 1)])",
])
def test_table_integer_arguments_never_crash_and_raise_only_fasttcp_errors(call):
    out = expect_ok(P(SWEEP + f"outcome(sweep(lambda v: {call}))"))
    assert "ok" in out or "UsageError" in out, out


def test_ids_rewritten_by_another_thread_during_remove_ids_never_crash():
    """remove_ids keeps the ids within the record pool, then removes them: it works on a
    copy, so a thread rewriting the caller's ids meanwhile (every other one to an id far
    past the pool and back) cannot slip one past the check. (Masking and selecting from
    the caller's array -- numpy lets other threads run in between -- crashed within a
    few calls.)"""
    out = expect_ok(P("""
        from fasttcp.bench.handshakes import flow_keys
        n = 100_000
        t = ConnectionTable(n, seed=1)
        t.insert_batch(flow_keys(n))
        ids = np.zeros(1_000_000, np.int64)
        def rewrite():
            # one non-zero byte: a copy torn mid-write still reads 0 or this id
            ids[::2] = 0x7F000000
            ids[::2] = 0
        removed = 0
        with rewriting(rewrite):
            for k in range(100):
                removed += t.remove_ids(ids)
        outcome((removed, len(t)))
    """))
    removed, left = eval(out)
    assert removed == 1 and left == 100_000 - 1
