"""Rows to text: fasttcp.rows (C) against the Python writer it replaced
(tests/reference/rows.py, the oracle of the tests), on the same rows in the same run.

Rows: the connections of the synthetic capture (fasttcp.bench.tracker.synth_capture,
IPv4 web traffic, as `fasttcp bench` uses) and those of the bundled captures (IPv4 and
IPv6, every kind of history). Target: >= 5M rows/s per core in every format.
`RowWriter` into a sink that keeps nothing measures the formatting; `format_rows` also
pays for a fresh bytes object of the whole text (page faults for every 4 KiB).
rows/s = units_per_call / mean. Never asserted: timing belongs here, not in tests.
"""
import numpy as np
import pytest

import fasttcp
from fasttcp.bench.tracker import synth_capture
from fasttcp.rows import RowWriter, format_rows
from tests import linklayer
from tests.reference import rows as oracle

PACKETS = 240_000
CONCURRENT = 4_000
ORACLE_ROWS = 4_000                 # the Python writer takes ~20 us a row
OPTIONS = [("table", None), ("json", None), ("json", False), ("csv", None), ("csv", False), ("zeek", None),
           ("zeek", True)]
IDS = [f"{fmt}-{'cid' if (cid if cid is not None else fmt in ('json', 'csv')) else 'no-cid'}" for fmt, cid in OPTIONS]


class NullSink:
    """Takes every chunk and keeps none."""

    def write(self, b) -> int:
        return len(b)


@pytest.fixture(scope="module")
def synth_rows(tmp_path_factory):
    path = tmp_path_factory.mktemp("rows") / "synth.pcap"
    synth_capture(path, PACKETS, CONCURRENT)
    return oracle.analyze_rows(path)


@pytest.fixture(scope="module")
def capture_rows():
    return np.concatenate([oracle.analyze_rows(p) for p in linklayer.list_captures(linklayer.CAPTURES)])


@pytest.mark.parametrize("fmt, cid", OPTIONS, ids=IDS)
def test_row_writer_synthetic(benchmark, synth_rows, fmt, cid):
    w = RowWriter(NullSink(), fmt, community_id=cid)
    benchmark.pedantic(w.write, args=(synth_rows,), rounds=7, warmup_rounds=1)
    benchmark.extra_info["units_per_call"] = len(synth_rows)


@pytest.mark.parametrize("fmt, cid", OPTIONS, ids=IDS)
def test_row_writer_bundled_captures(benchmark, capture_rows, fmt, cid):
    rows = np.concatenate([capture_rows] * max(1, 50_000 // len(capture_rows)))
    w = RowWriter(NullSink(), fmt, community_id=cid)
    benchmark.pedantic(w.write, args=(rows,), rounds=7, warmup_rounds=1)
    benchmark.extra_info["units_per_call"] = len(rows)


@pytest.mark.parametrize("fmt, cid", OPTIONS, ids=IDS)
def test_format_rows_synthetic(benchmark, synth_rows, fmt, cid):
    benchmark.pedantic(format_rows, args=(synth_rows, fmt), kwargs={"community_id": cid}, rounds=7,
                       warmup_rounds=1)
    benchmark.extra_info["units_per_call"] = len(synth_rows)


@pytest.mark.parametrize("fmt, cid", OPTIONS, ids=IDS)
def test_peer_python_writer_synthetic(benchmark, synth_rows, fmt, cid):
    rows = synth_rows[:ORACLE_ROWS]
    benchmark.pedantic(oracle.oracle_text, args=(rows, fmt), kwargs={"community_id": cid}, rounds=3,
                       warmup_rounds=1)
    benchmark.extra_info["units_per_call"] = len(rows)


def test_community_ids_and_uids(benchmark, synth_rows):
    def both():
        fasttcp.rows.community_ids(synth_rows)
        fasttcp.rows.uids(synth_rows)

    benchmark.pedantic(both, rounds=7, warmup_rounds=1)
    benchmark.extra_info["units_per_call"] = len(synth_rows)
