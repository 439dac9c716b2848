"""Hostile calls into fasttcp.rows, each in a child process (tests/probe.py): a crash or a
hang fails one test. Every answer is a precise UsageError (naming the row where a row is
at fault) or the documented result -- never a crash, an out-of-bounds read, or text
written for part of a bad batch."""
import textwrap

import pytest

from tests.probe import INTEGER_SWEEP, expect_ok, expect_raises

PRELUDE = """
import io
from fasttcp import FLOW_DTYPE, UsageError
from fasttcp.rows import RowWriter, format_rows, community_id, community_ids, uid, uids

def good_rows(n=4):
    rows = np.zeros(n, dtype=FLOW_DTYPE)
    rows["family"] = 4
    rows["history"] = b"ShADadFf"
    rows["rtt_syn_synack"] = 1234
    return rows
"""


def P(body: str) -> str:
    """The probe: the prelude, then `body`."""
    return PRELUDE + textwrap.dedent(body)


CALLS = {
    "format_rows": "format_rows({rows}, 'json')",
    "RowWriter.write": "RowWriter(io.BytesIO(), 'csv').write({rows})",
    "community_ids": "community_ids({rows})",
    "uids": "uids({rows})",
}


# ---- what is not a batch of rows ----

@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("rows, match", [
    ("np.zeros(2)", "FLOW_DTYPE"), ("[1, 2]", "FLOW_DTYPE"), ("None", "FLOW_DTYPE"), ("b'x' * 176", "FLOW_DTYPE"),
    ("np.zeros(2, dtype=fasttcp.TRACKER_EVENT_DTYPE)", "FLOW_DTYPE"),
    ("np.zeros(2, dtype=FLOW_DTYPE.newbyteorder('>'))", "FLOW_DTYPE"),      # same fields, other byte order
    ("good_rows(4).reshape(2, 2)", "1-D"),
    ("good_rows(4)[0]", "FLOW_DTYPE"),                                      # one np.void row
    ("np.array(good_rows(1)[0])", "1-D"),                                   # a 0-d array
    ("good_rows(8)[::2]", "contiguous"),
    ("good_rows(8)[::-1]", "contiguous"),
])
def test_what_is_not_a_batch_of_rows_is_refused(call, rows, match):
    expect_raises(P(CALLS[call].format(rows=rows)), "UsageError", match=match)


@pytest.mark.parametrize("call", CALLS)
def test_read_only_and_empty_batches_are_fine(call):
    out = expect_ok(P(f"""
        r = good_rows(3)
        r.flags.writeable = False
        assert {CALLS[call].format(rows="r")} is not None
        res = {CALLS[call].format(rows="good_rows(0)")}
        outcome(res if isinstance(res, int) else len(res))     # RowWriter.write returns the count
    """))
    assert out == "0"


# ---- rows the tracker cannot have written ----

@pytest.mark.parametrize("field, value, match", [
    ("family", 0, "row 5: .*family 0 is not 4 or 6"),
    ("family", 5, "row 5: .*family 5 is not 4 or 6"),
    ("state", 10, "row 5: .*state 10 names no TrackerState"),
    ("state", 255, "row 5: .*state 255"),
    ("conn_state", 13, "row 5: .*conn_state 13 names no ConnState"),
    ("end_reason", 5, "row 5: .*end_reason 5 names no EndReason"),
    ("history", "b'Sh\\xffA'", "row 5: .*history .* is not ASCII"),
    ("history", "b'\\x80' * 32", "row 5: .*history"),
])
def test_a_bad_row_is_named_and_nothing_is_written(field, value, match):
    # the bad row is the sixth of eight: a writer that checked as it went would have
    # written five lines already
    expect_raises(P(f"""
        rows = good_rows(8)
        rows[5]["{field}"] = {value}
        out = io.BytesIO()
        w = RowWriter(out, "json")
        try:
            w.write(rows)
        finally:
            assert out.getvalue() == b"" and w.count == 0, (out.getvalue()[:200], w.count)
    """), "UsageError", match=match)
    expect_raises(P(f"""
        rows = good_rows(8)
        rows[5]["{field}"] = {value}
        format_rows(rows, "zeek")
    """), "UsageError", match=match)


@pytest.mark.parametrize("call", ["community_ids", "uids"])
def test_the_per_row_helpers_need_only_a_family(call):
    out = expect_ok(P(f"""
        rows = good_rows(3)
        rows["state"] = 200                       # not theirs to judge
        rows["history"] = b"\\xff"
        outcome(len({call}(rows)))
    """))
    assert out == "3"
    expect_raises(P(f"""
        rows = good_rows(3)
        rows[2]["family"] = 9
        {call}(rows)
    """), "UsageError", match="row 2: .*family 9")


# ---- options ----

@pytest.mark.parametrize("fmt", ["'xml'", "'JSON'", "None", "b'json'", "3"])
def test_unknown_formats_are_refused(fmt):
    expect_raises(P(f"format_rows(good_rows(), {fmt})"), "UsageError", match="format must be one of")
    expect_raises(P(f"RowWriter(io.BytesIO(), {fmt})"), "UsageError", match="format must be one of")


@pytest.mark.parametrize("cid", ["1", "0", "'yes'", "np.True_"])
def test_community_id_must_be_a_bool_or_none(cid):
    expect_raises(P(f"format_rows(good_rows(), 'json', community_id={cid})"), "UsageError", match="community_id")


def test_the_table_has_no_community_id_column():
    expect_raises(P("RowWriter(io.BytesIO(), 'table', community_id=True)"), "UsageError", match="table")


def test_seeds_outside_16_bits_are_refused():
    out = expect_ok(P(INTEGER_SWEEP + 'outcome(sweep(lambda v: format_rows(good_rows(), "csv", community_id_seed=v)))'))
    assert out == repr(["UsageError", "ok", "ok"] + ["UsageError"] * 8)
    for seed in ("True", "1.0", "'1'", "None"):
        expect_raises(P(f"community_ids(good_rows(), seed={seed})"), "UsageError", match="seed")


# ---- streams ----

def test_a_closed_stream_is_refused_before_anything_is_formatted():
    expect_raises(P("""
        out = io.BytesIO()
        w = RowWriter(out, "json")
        out.close()
        w.write(good_rows())
    """), "UsageError", match="closed")
    expect_raises(P("""
        out = io.StringIO()
        w = RowWriter(out, "zeek")
        out.close()
        w.header()
    """), "UsageError", match="closed")


@pytest.mark.parametrize("out", ["None", "42", "object()", "io.BytesIO().getvalue()"])
def test_an_out_without_write_is_refused(out):
    expect_raises(P(f"RowWriter({out}, 'json')"), "UsageError", match="write")


def test_what_the_stream_raises_propagates():
    expect_raises(P("""
        class Full:
            def write(self, b):
                raise OSError(28, "No space left on device")
        RowWriter(Full(), "csv").write(good_rows())
    """), "OSError", match="No space")


def test_a_stream_that_takes_nothing_is_an_error_not_a_hang():
    expect_raises(P("""
        class Stuck:
            def write(self, b):
                return 0
        RowWriter(Stuck(), "csv").write(good_rows())
    """), "OSError", match="took 0")


def test_rows_changed_by_another_thread_while_writing_never_crash():
    # rows are checked, then formatted without the GIL: a thread scribbling codes and
    # histories in between may garble text, but name lookups stay inside their tables
    out = expect_ok(P("""
        import threading
        rows = good_rows(200_000)
        stop = False
        def scribble():
            rng = np.random.default_rng(1)
            while not stop:
                i = int(rng.integers(0, len(rows)))
                rows[i]["state"] = 255
                rows[i]["conn_state"] = 255
                rows[i]["end_reason"] = 255
                rows[i]["family"] = 77
                rows[i]["history"] = b"\\xff" * 32
        t = threading.Thread(target=scribble)
        t.start()
        try:
            for fmt in ("table", "json", "csv", "zeek"):
                for _ in range(3):
                    try:
                        format_rows(rows, fmt)
                    except UsageError:
                        pass
        finally:
            stop = True
            t.join()
        outcome("done")
    """))
    assert out == "'done'"


# ---- the scalar helpers ----

@pytest.mark.parametrize("args, match", [
    ("'1.2.3.4', '::1', 1, 2", "same IP version"),
    ("'1.2.3.4', 'nope', 1, 2", "not an IP address"),
    ("b'\\x01\\x02\\x03', '1.2.3.4', 1, 2", "4 or 16 bytes"),
    ("1234, '1.2.3.4', 1, 2", "address must be"),
    ("'1.2.3.4', '5.6.7.8', 70000, 2", "sport"),
    ("'1.2.3.4', '5.6.7.8', 1, -1", "dport"),
    ("'1.2.3.4', '5.6.7.8', 1, 2, 256", "proto"),
    ("'1.2.3.4', '5.6.7.8', 1, 2, 6, 65536", "seed"),
    ("'1.2.3.4', '5.6.7.8', True, 2", "sport"),
    ("'1.2.3.4', '5.6.7.8', 1.0, 2", "sport"),
])
def test_community_id_refuses_bad_arguments(args, match):
    expect_raises(P(f"community_id({args})"), "UsageError", match=match)


def test_community_id_port_sweep():
    out = expect_ok(P(INTEGER_SWEEP + 'outcome(sweep(lambda v: community_id("1.2.3.4", "5.6.7.8", v, 80)))'))
    assert out == repr(["UsageError", "ok", "ok"] + ["UsageError"] * 8)


def test_uid_refuses_bad_arguments():
    out = expect_ok(P(INTEGER_SWEEP + 'outcome(sweep(lambda v: uid("1.2.3.4", 1, "5.6.7.8", 2, v)))'))
    assert out == repr(["UsageError", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "UsageError", "UsageError"])
    for args, match in (("'1.2.3.4', 1, '::1', 2, 0", "same IP version"), ("'1.2.3.4', 65536, '5.6.7.8', 2, 0",
                                                                            "orig_p"),
                        ("'1.2.3.4', 1, '5.6.7.8', 2, 1.5", "start_us"), ("'1.2.3.4', 1, '5.6.7.8', 2, True",
                                                                         "start_us")):
        expect_raises(P(f"uid({args})"), "UsageError", match=match)


def test_rows_rewritten_by_another_thread_while_written_still_give_ascii_lines():
    """The writers check a batch, then format the caller's rows, which another thread
    may rewrite meanwhile (here every history, to bytes the check refuses and back):
    each call is refused (UsageError) or writes only ASCII lines, each history as one
    read of it, a byte >= 0x80 as '?'; a text stream never meets a byte it cannot
    decode. (Formatting from a second read of the history wrote the raw bytes: lines
    no checked row can give, and writes to a UTF-16 text stream that died half way.)"""
    out = expect_ok(P("""
        rows = good_rows(20_000)
        def rewrite():
            rows["history"] = b"\\xff\\xff\\"\\\\\\x80"
            rows["history"] = b"ShADadFf"
        lines = not_ascii = refused = 0
        with rewriting(rewrite):
            for k in range(20):
                for fmt in ("json", "csv", "zeek", "table"):
                    try:
                        text = format_rows(rows, fmt)
                    except UsageError:
                        refused += 1
                        continue
                    lines += text.count(b"\\n")
                    not_ascii += not text.isascii()
                    try:
                        RowWriter(io.TextIOWrapper(io.BytesIO(), encoding="utf-16"), fmt).write(rows)
                    except UsageError:
                        pass
        outcome((lines, not_ascii, refused))
    """))
    lines, not_ascii, refused = eval(out)
    assert not_ascii == 0
    assert lines == (80 - refused) * 20_000


# ---- an array that answers its shape differently each time ----

@pytest.mark.parametrize("call", [*CALLS, "tally_rows"])
def test_a_shape_that_grows_after_the_check_is_not_read_past(call):
    """An ndarray subclass whose `shape` grows after the first look, over 256 rows
    followed by a page nothing may read: the rows are counted from the buffer taken,
    so every call formats the 256 rows (or refuses them) and reads nothing after them.
    (Counting from `shape` read a second time, the writers read the next page: SIGSEGV.)"""
    expr = "int(tally_rows(liar).conn_states.sum())" if call == "tally_rows" else CALLS[call].format(rows="liar")
    out = expect_ok(P(f"""
        import ctypes, mmap
        from fasttcp.rows import tally_rows
        class Liar(np.ndarray):
            calls = 0
            @property
            def shape(self):
                Liar.calls += 1
                real = np.ndarray.shape.__get__(self)
                return real if Liar.calls <= 1 else (real[0] + 1000,)
        size = 256 * FLOW_DTYPE.itemsize
        page = mmap.PAGESIZE
        span = -(-size // page) * page
        m = mmap.mmap(-1, span + page)
        buf = np.frombuffer(m, np.uint8)
        start = span - size                             # the rows end where the page does
        assert ctypes.CDLL(None).mprotect(ctypes.c_void_p(buf.ctypes.data + span), ctypes.c_size_t(page), 0) == 0
        rows = buf[start:span].view(FLOW_DTYPE)
        rows[:] = good_rows(256)
        liar = rows.view(Liar)
        res = {expr}
        outcome(len(res.splitlines()) if isinstance(res, bytes) else (res if isinstance(res, int) else len(res)))
    """))
    assert out == "256"                                 # rows formatted, written or counted


def test_a_raw_non_blocking_stream_that_would_block_is_an_error_not_a_short_count():
    """A raw (unbuffered) stream returns None from write() when it would block: nothing
    was written. The writer raises BlockingIOError, not a count of rows it did not write
    (it took None as "all of it")."""
    out = expect_ok(P("""
        import os
        r, w = os.pipe()
        os.set_blocking(w, False)
        wr = RowWriter(open(w, "wb", buffering=0), "json")
        try:
            wr.write(good_rows(20_000))
        except BlockingIOError as e:
            outcome(("blocked", e.errno, "non-blocking" in str(e)))
        outcome(("returned", wr.count))
    """))
    assert eval(out) == ("blocked", 11, True)


def test_a_callers_file_like_that_returns_none_took_it_all():
    out = expect_ok(P("""
        class Sink:
            def __init__(self):
                self.n = 0
            def write(self, b):
                self.n += len(b)
        s = Sink()
        RowWriter(s, "csv").write(good_rows(3000))
        outcome(s.n == len(format_rows(good_rows(3000), "csv")))
    """))
    assert out == "True"


def test_numpy_integers_are_taken_as_the_ints_they_hold():
    # a row's fields read back are numpy integers: community_id(), uid() and the seed
    # take them as their values (bools and floats are still refused)
    out = expect_ok(P("""
        row = good_rows(1)[0]
        a = community_id("198.18.0.1", "198.18.0.2", np.uint16(80), np.int64(443), proto=np.uint8(6),
                         seed=np.uint16(7))
        b = community_id("198.18.0.1", "198.18.0.2", 80, 443, proto=6, seed=7)
        u = uid("198.18.0.1", np.uint16(1), "198.18.0.2", np.uint16(2), np.uint64(10**15))
        v = uid("198.18.0.1", 1, "198.18.0.2", 2, 10**15)
        f = format_rows(good_rows(2), "json", community_id_seed=np.int32(5)) == \\
            format_rows(good_rows(2), "json", community_id_seed=5)
        refused = []
        for bad in (np.bool_(True), 80.0, np.float64(80)):
            try:
                community_id("198.18.0.1", "198.18.0.2", bad, 443)
            except UsageError:
                refused.append(True)
        outcome((a == b, u == v, f, refused))
    """))
    assert eval(out) == (True, True, True, [True, True, True])
