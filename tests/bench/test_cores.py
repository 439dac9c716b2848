"""`fasttcp bench --cores N`: the handshake benchmark in N processes at once
(fasttcp.bench.cores). Figures are checked for presence and sense, never for speed."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from fasttcp.bench.cores import MAX_CORES_PER_CPU, allowed_cpus, run_cores, shard_keys
from fasttcp.bench.handshakes import flow_keys


def test_bench_cores_2_reports_the_aggregate_and_the_scaling():
    out = subprocess.run([sys.executable, "-m", "fasttcp", "bench", "--quick", "--json", "--cores", "2",
                          "--flows", "2000", "--many-open", "0", "--single", "0", "--no-peers", "--no-codec",
                          "--no-tracker"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout)
    assert report["cores"] == 2
    assert report["handshakes_per_s_cores"] > 0 and report["handshakes_per_s_cores_one"] > 0
    assert report["scaling"] == pytest.approx(report["handshakes_per_s_cores"] / report["handshakes_per_s_cores_one"])
    assert report["scaling"] > 0
    assert 0 < report["cores_on_cpu"] <= 1
    assert any(n.startswith("2 processes: 2,000 flows each") for n in report["notes"]), report["notes"]


def test_the_shards_are_disjoint_slices_of_the_benchmark_flows():
    shards = [shard_keys(k, 700) for k in range(3)]
    assert np.array_equal(np.concatenate(shards), flow_keys(2100))


def test_every_worker_reports_every_round():
    # (run_cores raises unless every handshake of every round of every worker completed)
    res = run_cores(3, 500, 2)
    assert res.workers == 3 and res.flows == 500
    assert len(res.rounds) == 2 and min(res.rounds) > 0
    assert len(res.per_worker) == 3 and min(res.per_worker) > 0
    assert 0 < res.on_cpu <= 1


def test_a_worker_that_dies_fails_the_run_with_a_message_instead_of_hanging():
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match=r"bench worker 1 died \(exit code 3\)"):
        run_cores(2, 500, 2, _die=1)
    # the survivor was released from its barrier and stopped: nothing waited for a timeout
    assert time.monotonic() - t0 < 60


def test_a_run_that_outlives_its_timeout_fails_with_a_message():
    with pytest.raises(RuntimeError, match="did not finish in time"):
        run_cores(1, 16_384, 10_000, timeout=1.0)


@pytest.mark.parametrize("args", [(0, 10, 1), (1, 0, 1), (1, 10, 0), (-1, 10, 1)])
def test_run_cores_refuses_sizes_below_one(args):
    with pytest.raises(ValueError):
        run_cores(*args)


def test_the_cli_takes_up_to_its_cap_of_processes_per_cpu():
    cap = allowed_cpus() * MAX_CORES_PER_CPU
    out = subprocess.run([sys.executable, "-m", "fasttcp", "bench", "--cores", str(cap + 1), "--quick"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and f"--cores must be 1..{cap}" in out.stderr
