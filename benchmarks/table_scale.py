"""Connection table at scale: lookups/s, bytes per connection and RSS for 100k..10M.

    python benchmarks/table_scale.py [--sizes 100000,1000000,10000000] [--repeat 5]

Prints one line per size: insert and lookup rates (median of repeats, with spread),
probe lengths, memory_bytes per connection and the process RSS growth, plus the
expiry of 1M TIME-WAIT entries. A Python dict lookup rate is measured in the same run
as the peer.
"""
import argparse
import functools
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import fasttcp

sys.path.insert(0, str(Path(__file__).parent))
from tablekeys import random_keys


def rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rate(fn, units, repeat):
    rates = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        rates.append(units / (time.perf_counter() - t0))
    med = statistics.median(rates)
    return med, (max(rates) - min(rates)) / med


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000,10000000")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    sample = random_keys(200_000, seed=9)
    tuples = [(bytes(k["laddr"][:4]), int(k["lport"]), bytes(k["raddr"][:4]), int(k["rport"])) for k in sample]
    d = {t: i for i, t in enumerate(tuples)}
    peer, _ = rate(lambda: [d.get(t) for t in tuples], len(tuples), args.repeat)
    print(f"peer: Python dict of 4-tuples: {peer / 1e6:.2f} M lookups/s")

    for n in sizes:
        keys = random_keys(n)
        before = rss_bytes()
        table = fasttcp.ConnectionTable(n, seed=1)
        t0 = time.perf_counter()
        ids = table.insert_batch(keys, state=fasttcp.State.ESTABLISHED)
        ins = len(table) / (time.perf_counter() - t0)
        grown = rss_bytes() - before
        queries = keys[ids >= 0][np.random.default_rng(2).permutation(int((ids >= 0).sum()))]
        look, spread = rate(functools.partial(table.lookup_batch, queries), len(queries), args.repeat)
        probes = table.probe_lengths()
        print(f"{n:>10,} entries: insert {ins / 1e6:5.2f} M/s  lookup_batch {look / 1e6:6.2f} M/s "
              f"(spread {spread:4.0%}, {look / peer:5.1f}x dict)  probe mean {probes.mean():.2f} max {probes.max()}  "
              f"memory_bytes/conn {table.memory_bytes / n:6.1f}  RSS growth/conn {grown / len(table):6.1f}")
        del table, keys, queries

    n = 1_000_000
    keys = random_keys(n, seed=4)
    out = np.zeros(n, dtype=fasttcp.EXPIRED_DTYPE)
    times = []
    for _ in range(args.repeat):
        table = fasttcp.ConnectionTable(n, seed=1, msl=30)
        table.insert_batch(keys, state=fasttcp.State.TIME_WAIT, now=0.0)
        t0 = time.perf_counter()
        got = table.expire(60.0, out=out)
        times.append(time.perf_counter() - t0)
        assert len(table) == 0
    print(f"expire {len(got):,} TIME-WAIT entries: median {statistics.median(times) * 1e3:.1f} ms "
          f"(min {min(times) * 1e3:.1f}, max {max(times) * 1e3:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
