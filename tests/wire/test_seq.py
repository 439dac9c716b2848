"""fasttcp.seq against the mathematical definitions in tests/reference/oracle.py."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fasttcp import UsageError
from fasttcp import seq as S
from tests.reference import oracle as R

MOD = 2**32
HALF = 2**31

SPECIAL = [0, 1, 2, HALF - 2, HALF - 1, HALF, HALF + 1, HALF + 2, MOD - 2, MOD - 1]
# distances that sit on or next to every boundary of the order
DELTAS = sorted({d % MOD for base in (0, 1, HALF - 1, HALF, HALF + 1, MOD - 1) for d in (base - 1, base, base + 1)})

u32 = st.integers(0, MOD - 1)
seqnum = st.one_of(u32, st.sampled_from(SPECIAL))
near_pair = st.builds(lambda base, d: (base, (base + d) % MOD), seqnum, st.sampled_from(DELTAS))
any_pair = st.one_of(st.tuples(seqnum, seqnum), near_pair, near_pair.map(lambda p: (p[1], p[0])))
window_size = st.one_of(u32, st.sampled_from([0, 1, 2, HALF - 1, HALF, HALF + 1, MOD - 2, MOD - 1]))

PREDICATES = [(S.lt, R.seq_lt), (S.le, R.seq_le), (S.gt, R.seq_gt), (S.ge, R.seq_ge)]

# ---------------------------------------------------------------------------
# scalars
# ---------------------------------------------------------------------------


def test_reference_self_check():
    # the oracle on a few cases written out by hand
    assert R.seq_lt(0, 1) and R.seq_lt(MOD - 1, 0) and R.seq_lt(0, HALF - 1)
    assert not R.seq_lt(0, HALF) and not R.seq_lt(HALF, 0) and not R.seq_lt(5, 5)
    assert R.seq_diff(0, MOD - 1) == 1 and R.seq_diff(MOD - 1, 0) == -1 and R.seq_diff(0, HALF) == -HALF


@given(any_pair)
def test_predicates_match_reference(pair):
    a, b = pair
    for fn, ref in PREDICATES:
        got = fn(a, b)
        assert type(got) is bool
        assert got == ref(a, b), (fn.__name__, a, b)


@pytest.mark.parametrize("a", SPECIAL)
@pytest.mark.parametrize("b", SPECIAL)
def test_predicates_on_special_values(a, b):
    for fn, ref in PREDICATES:
        assert fn(a, b) == ref(a, b), (fn.__name__, a, b)


@given(any_pair)
def test_antisymmetry(pair):
    a, b = pair
    assert not (S.lt(a, b) and S.lt(b, a))
    assert not (S.gt(a, b) and S.gt(b, a))
    assert (S.le(a, b) and S.le(b, a)) == (a == b)
    assert S.lt(a, b) == S.gt(b, a)
    assert S.le(a, b) == S.ge(b, a)
    assert S.le(a, b) == (S.lt(a, b) or a == b)


@given(any_pair)
def test_trichotomy_except_at_half(pair):
    a, b = pair
    if (a - b) % MOD == HALF:
        return
    assert [S.lt(a, b), a == b, S.gt(a, b)].count(True) == 1


@given(seqnum)
def test_exactly_2_31_apart_is_incomparable_all_predicates_false(a):
    b = (a + HALF) % MOD
    for x, y in ((a, b), (b, a)):
        assert not S.lt(x, y)
        assert not S.le(x, y)
        assert not S.gt(x, y)
        assert not S.ge(x, y)
    assert S.diff(a, b) == S.diff(b, a) == -HALF


@pytest.mark.parametrize("d, lt_expected",
                         [(1, True), (HALF - 1, True), (HALF, False), (HALF + 1, False), (MOD - 1, False)])
def test_lt_by_distance(d, lt_expected):
    for a in (0, 12345, HALF, MOD - 1):
        assert S.lt(a, (a + d) % MOD) is lt_expected
        assert S.gt((a + d) % MOD, a) is lt_expected


@given(seqnum, u32)
def test_add_matches_reference(a, n):
    assert S.add(a, n) == R.seq_add(a, n) == (a + n) % MOD


def test_add_wraparound():
    assert S.add(MOD - 1, 1) == 0
    assert S.add(MOD - 1, MOD - 1) == MOD - 2
    assert S.add(HALF, HALF) == 0
    assert S.add(10, MOD - 3) == 7  # stepping back by 3


@given(any_pair)
def test_diff_matches_reference(pair):
    a, b = pair
    d = S.diff(a, b)
    assert type(d) is int
    assert d == R.seq_diff(a, b)
    assert -HALF <= d < HALF
    assert S.add(b, d % MOD) == a


@given(seqnum, st.integers(0, HALF - 1))
def test_diff_inverts_add(a, n):
    assert S.diff(S.add(a, n), a) == n
    assert S.diff(a, S.add(a, n)) == -n


def test_diff_wraparound():
    assert S.diff(0, MOD - 1) == 1
    assert S.diff(MOD - 1, 0) == -1
    assert S.diff(5, MOD - 5) == 10
    assert S.diff(HALF - 1, 0) == HALF - 1
    assert S.diff(HALF, 0) == -HALF


@given(seqnum, seqnum, seqnum)
def test_between_matches_reference(a, b, c):
    assert S.between(a, b, c) == R.seq_between(a, b, c)


@given(seqnum, st.sampled_from(DELTAS), st.sampled_from(DELTAS))
def test_between_near_boundaries(a, db, dc):
    b, c = (a + db) % MOD, (a + dc) % MOD
    assert S.between(a, b, c) == R.seq_between(a, b, c) == (db <= dc)


@given(seqnum, seqnum)
def test_between_endpoints(a, c):
    assert S.between(a, a, c)
    assert S.between(a, c, c)
    assert S.between(a, c, (a - 1) % MOD)  # the arc from a to a-1 is the whole circle


@given(seqnum, seqnum, window_size)
def test_in_window_matches_reference(s, start, size):
    assert S.in_window(s, start, size) == R.seq_in_window(s, start, size)


@given(seqnum, window_size)
def test_in_window_edges(start, size):
    assert S.in_window(start, start, size) == (size > 0)
    if size:
        assert S.in_window((start + size - 1) % MOD, start, size)
    # nothing before the start, nothing at start+size (even for size 2**32-1)
    assert not S.in_window((start - 1) % MOD, start, size)
    assert not S.in_window((start + size) % MOD, start, size)


@given(seqnum, seqnum, st.integers(0, HALF - 1))
def test_in_window_agrees_with_predicates_for_small_windows(s, start, size):
    # for windows below 2**31, start <= s < start+size can be read with le/lt
    by_predicates = S.le(start, s) and S.lt(s, S.add(start, size))
    assert S.in_window(s, start, size) == by_predicates


# ---- RFC 9293 3.10.7.4 acceptability: the four cases ----


@given(seqnum, u32, seqnum, window_size)
def test_acceptable_matches_reference(seg_seq, seg_len, rcv_nxt, rcv_wnd):
    assert S.acceptable(seg_seq, seg_len, rcv_nxt, rcv_wnd) == R.seq_acceptable(seg_seq, seg_len, rcv_nxt, rcv_wnd)


@given(seqnum, st.sampled_from(DELTAS), st.sampled_from([0, 1, 2, 100, HALF - 1, HALF, MOD - 1]),
       st.sampled_from([0, 1, 2, 100, 65535, HALF, MOD - 1]))
def test_acceptable_near_boundaries(rcv_nxt, d, seg_len, rcv_wnd):
    seg_seq = (rcv_nxt + d) % MOD
    assert S.acceptable(seg_seq, seg_len, rcv_nxt, rcv_wnd) == R.seq_acceptable(seg_seq, seg_len, rcv_nxt, rcv_wnd)


@pytest.mark.parametrize("nxt", [0, 1000, HALF - 1, HALF, MOD - 3, MOD - 1])
def test_acceptable_case_len0_wnd0(nxt):
    assert S.acceptable(nxt, 0, nxt, 0) is True
    assert S.acceptable((nxt + 1) % MOD, 0, nxt, 0) is False
    assert S.acceptable((nxt - 1) % MOD, 0, nxt, 0) is False


@pytest.mark.parametrize("nxt", [0, 1000, HALF - 1, HALF, MOD - 3, MOD - 1])
def test_acceptable_case_len0_wnd_positive(nxt):
    wnd = 10
    assert S.acceptable(nxt, 0, nxt, wnd) is True
    assert S.acceptable((nxt + wnd - 1) % MOD, 0, nxt, wnd) is True
    assert S.acceptable((nxt + wnd) % MOD, 0, nxt, wnd) is False
    assert S.acceptable((nxt - 1) % MOD, 0, nxt, wnd) is False


@pytest.mark.parametrize("nxt", [0, 1000, HALF - 1, HALF, MOD - 3, MOD - 1])
def test_acceptable_case_len_positive_wnd0(nxt):
    for seg_seq in (nxt, (nxt - 1) % MOD, (nxt + 1) % MOD):
        for seg_len in (1, 5, 1000):
            assert S.acceptable(seg_seq, seg_len, nxt, 0) is False


@pytest.mark.parametrize("nxt", [0, 1000, HALF - 1, HALF, MOD - 3, MOD - 1])
def test_acceptable_case_len_positive_wnd_positive(nxt):
    wnd = 100
    at = lambda k: (nxt + k) % MOD  # noqa: E731
    assert S.acceptable(at(0), 10, nxt, wnd) is True  # starts at the left edge
    assert S.acceptable(at(-5), 10, nxt, wnd) is True  # old data, last octet inside
    assert S.acceptable(at(-10), 10, nxt, wnd) is False  # ends just before the window
    assert S.acceptable(at(-9), 10, nxt, wnd) is True  # last octet is rcv_nxt
    assert S.acceptable(at(99), 10, nxt, wnd) is True  # first octet is the last in window
    assert S.acceptable(at(100), 10, nxt, wnd) is False  # starts right after the window
    assert S.acceptable(at(50), 1, nxt, wnd) is True


# ---- scalar argument checking ----


@pytest.mark.parametrize(
    "fn, args",
    [
        (S.lt, (-1, 0)), (S.lt, (0, MOD)), (S.le, (MOD, 0)), (S.gt, (0, -5)), (S.ge, (2**64, 0)),
        (S.add, (0, MOD)), (S.add, (-1, 1)), (S.diff, (MOD, 0)),
        (S.between, (0, MOD, 1)), (S.in_window, (0, 0, MOD)), (S.in_window, (-1, 0, 1)),
        (S.acceptable, (0, 0, 0, MOD)), (S.acceptable, (0, -1, 0, 1)),
    ],
)
def test_scalar_out_of_range_is_usage_error(fn, args):
    with pytest.raises(UsageError):
        fn(*args)


def test_half_constant():
    assert S.HALF == HALF


# ---------------------------------------------------------------------------
# numpy arrays: elementwise equal to the scalar versions
# ---------------------------------------------------------------------------

shapes = hnp.array_shapes(min_dims=1, max_dims=2, min_side=0, max_side=12)


def u32_array(shape):
    return hnp.arrays(np.uint32, shape, elements=seqnum)


def _scalar_map(fn, *arrays):
    b = np.broadcast_arrays(*arrays)
    flat = [x.reshape(-1) for x in b]
    return [fn(*(int(x[i]) for x in flat)) for i in range(b[0].size)], b[0].shape


BINARY = [S.lt, S.le, S.gt, S.ge, S.add, S.diff]


@given(shapes.flatmap(lambda sh: st.tuples(u32_array(sh), u32_array(sh))))
def test_binary_arrays_equal_scalars(arrs):
    a, b = arrs
    for fn in BINARY:
        out = fn(a, b)
        expected, shape = _scalar_map(fn, a, b)
        assert isinstance(out, np.ndarray)
        assert out.shape == shape
        assert out.reshape(-1).tolist() == expected, fn.__name__


@given(shapes.flatmap(lambda sh: st.tuples(u32_array(sh), u32_array(sh), u32_array(sh))))
def test_ternary_arrays_equal_scalars(arrs):
    for fn in (S.between, S.in_window):
        out = fn(*arrs)
        expected, shape = _scalar_map(fn, *arrs)
        assert out.shape == shape
        assert out.reshape(-1).tolist() == expected, fn.__name__


@given(shapes.flatmap(lambda sh: st.tuples(*(u32_array(sh) for _ in range(4)))))
def test_acceptable_arrays_equal_scalars(arrs):
    out = S.acceptable(*arrs)
    expected, shape = _scalar_map(S.acceptable, *arrs)
    assert out.shape == shape
    assert out.reshape(-1).tolist() == expected


@given(u32_array(st.integers(0, 30)), seqnum)
def test_broadcast_scalar_with_array(a, k):
    for fn in BINARY:
        left = fn(a, k)
        right = fn(k, a)
        assert left.reshape(-1).tolist() == [fn(int(x), k) for x in a]
        assert right.reshape(-1).tolist() == [fn(k, int(x)) for x in a]
    got = S.in_window(a, k, 1000)
    assert got.tolist() == [R.seq_in_window(int(x), k, 1000) for x in a]
    got = S.acceptable(a, 10, k, 1000)
    assert got.tolist() == [R.seq_acceptable(int(x), 10, k, 1000) for x in a]


@given(st.data())
def test_broadcast_2d_row_and_column(data):
    col = data.draw(u32_array((5, 1)))
    row = data.draw(u32_array((1, 7)))
    for fn in BINARY:
        out = fn(col, row)
        assert out.shape == (5, 7)
        for i in range(5):
            for j in range(7):
                assert out[i, j] == fn(int(col[i, 0]), int(row[0, j]))


def test_result_dtypes():
    a = np.array([1, 2, 3], dtype=np.uint32)
    b = np.array([3, 2, 1], dtype=np.uint32)
    assert S.lt(a, b).dtype == np.bool_
    assert S.add(a, b).dtype == np.uint32
    assert S.diff(a, b).dtype == np.int64
    assert S.diff(a, b).tolist() == [-2, 0, 2]


@pytest.mark.parametrize("dtype",
                         [np.int64, np.uint64, np.int32, np.uint32, np.uint16, np.uint8, np.int8, ">u4", "<i8"])
def test_other_integer_dtypes(dtype):
    top = np.iinfo(np.dtype(dtype)).max
    vals = [0, 1, 5, 100, 127] + [x for x in (HALF - 1, HALF, HALF + 1, MOD - 1) if x <= top]
    a = np.array(vals, dtype=dtype)
    b = np.array(vals[::-1], dtype=dtype)
    for fn in BINARY:
        want = [fn(int(x), int(y)) for x, y in zip(vals, vals[::-1], strict=True)]
        assert fn(a, b).tolist() == want, (fn.__name__, dtype)


def test_int64_wraparound_values():
    a = np.array([MOD - 1, HALF, 0], dtype=np.int64)
    assert S.add(a, 1).tolist() == [0, HALF + 1, 1]
    assert S.lt(a, np.array([0, 0, HALF], dtype=np.int64)).tolist() == [True, False, False]


def test_lists_and_numpy_scalars():
    assert S.lt([1, 2, 3], 2).tolist() == [True, False, False]
    assert bool(S.lt(np.uint32(1), np.uint32(2))) is True
    assert int(S.add(np.uint32(MOD - 1), 2)) == 1


def test_non_contiguous_and_fortran_arrays():
    base = (np.arange(40, dtype=np.uint64).reshape(4, 10) * 123456789 % MOD).astype(np.uint32)
    strided = base[:, ::3]
    fortran = np.asfortranarray(base)
    tr = base.T
    for x in (strided, fortran, tr):
        out = S.diff(x, 1000)
        assert out.shape == x.shape
        for idx in np.ndindex(x.shape):
            assert out[idx] == R.seq_diff(int(x[idx]), 1000)


def test_empty_arrays():
    e = np.zeros(0, dtype=np.uint32)
    assert S.lt(e, e).shape == (0,)
    assert S.acceptable(e, 1, 2, 3).shape == (0,)
    assert S.add(np.zeros((0, 3), dtype=np.uint32), 1).shape == (0, 3)


@pytest.mark.parametrize(
    "bad",
    [
        np.array([0, -1], dtype=np.int64),  # a negative int64 must not wrap to 2**32-1
        np.array([-(2**32) + 5], dtype=np.int64),  # ... nor to 5
        np.array([MOD], dtype=np.int64),
        np.array([2**63 + 5], dtype=np.uint64),
        np.array([[0, 1], [2, -3]], dtype=np.int32),
        np.array([-1], dtype=np.int8),
        np.array([1.0, 2.0]),
        np.array([True, False]),
        np.int64(-1),
        [0, -1],
        [0, 2**40],
    ],
)
def test_array_values_out_of_range_are_usage_error(bad):
    for fn in (S.lt, S.le, S.gt, S.ge, S.add, S.diff):
        with pytest.raises(UsageError):
            fn(bad, 0)
        with pytest.raises(UsageError):
            fn(0, bad)
    with pytest.raises(UsageError):
        S.between(0, bad, 5)
    with pytest.raises(UsageError):
        S.in_window(np.array([1], dtype=np.uint32), 0, bad)
    with pytest.raises(UsageError):
        S.acceptable(0, bad, np.array([1], dtype=np.uint32), 5)


def test_scalar_out_of_range_with_array_is_usage_error():
    a = np.array([1, 2], dtype=np.uint32)
    with pytest.raises(UsageError):
        S.lt(a, -1)
    with pytest.raises(UsageError):
        S.add(a, MOD)


def test_mismatched_shapes_raise_value_error():
    with pytest.raises(ValueError):
        S.lt(np.zeros(3, dtype=np.uint32), np.zeros(2, dtype=np.uint32))


def test_input_arrays_not_modified():
    a = np.array([MOD - 1, 0, 5], dtype=np.int64)
    keep = a.copy()
    S.add(a, 7)
    S.lt(a, a)
    assert (a == keep).all()
