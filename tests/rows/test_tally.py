"""`fasttcp.rows.tally_rows`: the counts the analyze summary folds in, in one pass of C.

The oracle is what the summary computed with numpy before (np.unique over conn_state,
np.char.find over the histories, masked RTT copies): the same numbers on random rows --
every field at its extremes, histories with R and r anywhere, NULs inside, strided views
-- and on the rows of every bundled capture."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fasttcp import FLOW_DTYPE, UsageError
from fasttcp.analysis import AnalyzeConfig, Summary, analyze
from fasttcp.rows.tally import tally_rows
from tests.probe import expect_raises

UNSET = 0xFFFFFFFF
DATA = Path(__file__).resolve().parents[1] / "data"


def _numpy_reference(rows: np.ndarray) -> tuple[dict[int, int], int, int, np.ndarray, np.ndarray]:
    codes, counts = np.unique(rows["conn_state"], return_counts=True)
    hist = rows["history"]
    resets = int(np.count_nonzero((np.char.find(hist, b"R") >= 0) | (np.char.find(hist, b"r") >= 0)))
    retrans = int(rows["orig_retrans"].astype(np.uint64).sum() + rows["resp_retrans"].astype(np.uint64).sum())
    r1, r2 = rows["rtt_syn_synack"], rows["rtt_synack_ack"]
    return dict(zip(codes.tolist(), counts.tolist(), strict=True)), resets, retrans, r1[r1 != UNSET], r2[r2 != UNSET]


def _check(rows: np.ndarray) -> None:
    t = tally_rows(rows)
    states, resets, retrans, r1, r2 = _numpy_reference(rows)
    assert t.conn_states.dtype == np.int64 and t.conn_states.shape == (256,)
    assert {int(c): int(t.conn_states[c]) for c in np.flatnonzero(t.conn_states)} == states
    assert (t.resets, t.retransmissions) == (resets, retrans)
    assert t.rtt_syn_synack.dtype == np.uint32 and np.array_equal(t.rtt_syn_synack, r1)
    assert t.rtt_synack_ack.dtype == np.uint32 and np.array_equal(t.rtt_synack_ack, r2)


def _random_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    raw = rng.integers(0, 256, n * FLOW_DTYPE.itemsize, dtype=np.uint8)
    rows = raw.view(FLOW_DTYPE).copy()
    # histories: letters of Zeek's alphabet (R and r among them), NUL-padded, some
    # with a NUL inside and letters after it
    alphabet = np.frombuffer(b"ShADadFfRrTtWwIiQqCcGg^", np.uint8)
    for i in range(n):
        k = int(rng.integers(0, 33))
        h = bytes(rng.choice(alphabet, k)) + b"\0" * (32 - k)
        if k > 2 and rng.random() < 0.2:
            h = h[:1] + b"\0" + h[2:]
        rows["history"][i] = h
    for f in ("rtt_syn_synack", "rtt_synack_ack"):
        rows[f][rng.random(n) < 0.3] = UNSET
    for f in ("orig_retrans", "resp_retrans"):
        rows[f][rng.random(n) < 0.1] = UNSET            # the largest counts: no overflow
    return rows


@pytest.mark.parametrize("seed", range(20))
def test_random_rows_count_as_numpy_counts_them(seed):
    rng = np.random.default_rng(seed)
    rows = _random_rows(rng, int(rng.integers(0, 600)))
    _check(rows)
    _check(rows[::3])                    # a strided view
    _check(rows[::-1])                   # a negative stride
    ro = rows.copy()
    ro.flags.writeable = False
    _check(ro)                           # read-only


def test_every_code_and_extreme_counts():
    rows = np.zeros(512, FLOW_DTYPE)
    rows["conn_state"] = np.arange(512) % 256
    rows["orig_retrans"] = rows["resp_retrans"] = UNSET
    rows["rtt_syn_synack"] = np.arange(512)
    rows["rtt_synack_ack"] = UNSET
    t = tally_rows(rows)
    assert np.array_equal(t.conn_states, np.full(256, 2))
    assert t.retransmissions == 2 * 512 * UNSET
    assert t.resets == 0 and len(t.rtt_synack_ack) == 0
    assert np.array_equal(t.rtt_syn_synack, np.arange(512, dtype=np.uint32))
    _check(rows)


def test_a_reset_is_r_or_R_anywhere_in_the_history():
    rows = np.zeros(6, FLOW_DTYPE)
    rows["history"] = [b"", b"ShADadFf", b"ShR", b"r", b"S" * 31 + b"R", b"ShAD\0\0\0r"]
    assert tally_rows(rows).resets == 4
    _check(rows)


def test_an_empty_batch():
    t = tally_rows(np.zeros(0, FLOW_DTYPE))
    assert not t.conn_states.any() and t.resets == t.retransmissions == 0
    assert len(t.rtt_syn_synack) == len(t.rtt_synack_ack) == 0


@pytest.mark.parametrize("capture", sorted(p.name for p in DATA.iterdir() if p.suffix in (".pcap", ".pcapng")))
def test_the_rows_of_every_bundled_capture(capture):
    s = analyze(DATA / capture, AnalyzeConfig(), keep_rows=True)
    assert len(s.rows) == s.connections
    _check(s.rows)


def test_the_summary_counts_as_the_numpy_fold_did():
    """Summary.add_rows over batches, against the numpy fold it replaced."""
    rng = np.random.default_rng(7)
    rows = _random_rows(rng, 2000)
    rows["conn_state"] %= 13                     # codes that name a ConnState
    s = Summary()
    for part in np.array_split(rows, 7):
        s.add_rows(part)
    states, resets, retrans, r1, r2 = _numpy_reference(rows)
    from fasttcp.tracker.vocabulary import ConnState
    assert dict(s.conn_states) == {ConnState(c).name: n for c, n in states.items()}
    assert (s.resets, s.retransmissions, s.connections) == (resets, retrans, 2000)
    assert s.rtt1.percentiles(1) is not None and s.rtt1.percentiles(1)["n"] == len(r1)
    assert s.rtt2.percentiles(1)["n"] == len(r2)


@pytest.mark.parametrize(("arg", "match"), [
    ("np.zeros(3, np.uint8)", "FLOW_DTYPE array.*got dtype uint8"),
    ("[1, 2]", "FLOW_DTYPE array.*got list"),
    ("None", "FLOW_DTYPE array.*got NoneType"),
    ("np.zeros((2, 2), fasttcp.FLOW_DTYPE)", "1-D array"),
    ("np.zeros((), fasttcp.FLOW_DTYPE)", "1-D array"),
])
def test_what_is_not_a_batch_of_rows_is_refused(arg, match):
    expect_raises(f"from fasttcp.rows.tally import tally_rows\ntally_rows({arg})", "UsageError", match)


def test_an_unknown_conn_state_code_in_the_summary_is_an_error_not_a_count():
    rows = np.zeros(1, FLOW_DTYPE)
    rows["conn_state"] = 200
    with pytest.raises(ValueError):
        Summary().add_rows(rows)


def test_a_batch_that_is_not_rows_leaves_the_summary_as_it_was():
    s = Summary()
    s.add_rows(np.zeros(2, FLOW_DTYPE))
    with pytest.raises(UsageError):
        s.add_rows(np.zeros(3, np.uint8))
    assert s.connections == 2 and sum(s.conn_states.values()) == 2
