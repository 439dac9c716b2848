"""Connection table throughput.

Targets on one core: >= 50M lookups/s at 100k entries, >= 15M/s at 10M with batch
prefetch (benchmarks/table_scale.py measures 10M: too big for a default run), <= 128
bytes per connection, expiring 1M TIME-WAIT entries <= 100 ms. The peer in the same
run is a Python dict keyed by 4-tuples (what a pure-Python flow tracker uses).
"""
import numpy as np
import pytest

import fasttcp
from tablekeys import random_keys


@pytest.fixture(scope="module", params=[100_000, 1_000_000], ids=["100k", "1M"])
def filled(request):
    n = request.param
    table = fasttcp.ConnectionTable(n, seed=1)
    keys = random_keys(n)
    ids = table.insert_batch(keys, state=fasttcp.State.ESTABLISHED)
    keys = keys[ids >= 0]
    queries = keys[np.random.default_rng(2).permutation(len(keys))]
    return table, queries


def test_lookup_batch(benchmark, filled):
    table, queries = filled
    out = benchmark(table.lookup_batch, queries)
    benchmark.extra_info["lookups_per_call"] = len(queries)
    benchmark.extra_info["bytes_per_connection"] = table.memory_bytes / table.capacity
    assert (out >= 0).all()


def test_peer_python_dict_lookup(benchmark, filled):
    _, queries = filled
    sample = queries[:100_000]
    tuples = [(bytes(k["laddr"][:4]), int(k["lport"]), bytes(k["raddr"][:4]), int(k["rport"])) for k in sample]
    d = {t: i for i, t in enumerate(tuples)}

    def run():
        get = d.get
        for t in tuples:
            get(t)

    benchmark(run)
    benchmark.extra_info["lookups_per_call"] = len(tuples)


def test_insert_batch(benchmark):
    keys = random_keys(100_000, seed=3)

    def setup():
        return (fasttcp.ConnectionTable(100_000, seed=1), keys), {}

    benchmark.pedantic(lambda t, k: t.insert_batch(k, state=fasttcp.State.SYN_RECEIVED),
                       setup=setup, rounds=10)
    benchmark.extra_info["inserts_per_call"] = len(keys)


def test_expire_1m_time_wait(benchmark):
    n = 1_000_000
    keys = random_keys(n, seed=4)
    out = np.zeros(n, dtype=fasttcp.EXPIRED_DTYPE)     # preallocated: the hot-path way

    def setup():
        table = fasttcp.ConnectionTable(n, seed=1, msl=30)
        table.insert_batch(keys, state=fasttcp.State.TIME_WAIT, now=0.0)
        return (table,), {}

    def run(table):
        return table.expire(60.0, out=out)

    expired = benchmark.pedantic(run, setup=setup, rounds=3)
    benchmark.extra_info["expired_per_call"] = len(expired)
