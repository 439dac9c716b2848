"""Flow hash and per-packet shard throughput, each next to peers on the same inputs.

- `flow_hash` over 1M IPv4 and 1M IPv6 flows, under the symmetric key (periodic: the
  input folds to one 16-bit word, two table lookups a flow) and under a key that differs
  from it in its last byte only (not periodic: a table lookup per input byte, 12 or 36);
  peer: the pure-Python bit-by-bit oracle (tests/reference/toeplitz.py) on a sample.
- `shard_of_batch` over the 300k-packet handshake batch (IPv4 and IPv6); peers:
  `parse_batch` without checksums on the same batch (the parse it is built on) and the
  oracle per packet on a sample.

Each benchmark's `extra_info["units_per_call"]` gives hashes/s or packets/s from its
time (``--benchmark-json``); compare figures of one run only. Never asserted.
"""
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

import fasttcp
from fasttcp.bench.workload import handshake_batch
from fasttcp.wire.rss import RSS_KEY_SYMMETRIC

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # tests/reference: the oracle
from tests.reference.toeplitz import queue_of, toeplitz

FLOWS = 1_000_000
ORACLE_SAMPLE = 2_000
# the symmetric key but for its last byte: the same work per input byte, no fold
KEY_TABLES = RSS_KEY_SYMMETRIC[:-1] + b"\x5b"
SHARDS = 4


def _rate(benchmark, units):
    benchmark.extra_info["units_per_call"] = units


@pytest.fixture(scope="module", params=[4, 16], ids=["ipv4", "ipv6"])
def flows(request):
    rng = np.random.default_rng(11)
    width = request.param
    return (rng.integers(0, 256, (FLOWS, width), dtype=np.uint8), rng.integers(0, 256, (FLOWS, width), dtype=np.uint8),
            rng.integers(0, 65536, FLOWS, dtype=np.uint16), rng.integers(0, 65536, FLOWS, dtype=np.uint16))


@pytest.fixture(scope="module")
def mixed_handshakes():
    """100k flows x 3 packets, IPv4 and IPv6 alternating."""
    return handshake_batch(100_000, family="mixed")


@pytest.mark.parametrize("key", [RSS_KEY_SYMMETRIC, KEY_TABLES], ids=["fold", "tables"])
def test_flow_hash(benchmark, flows, key):
    out = benchmark(fasttcp.flow_hash, *flows, key=key)
    _rate(benchmark, FLOWS)
    assert out.shape == (FLOWS,)


def test_peer_oracle_flow_hash(benchmark, flows):
    src, dst, sport, dport = (a[:ORACLE_SAMPLE] for a in flows)
    inputs = [bytes(src[i]) + bytes(dst[i]) + struct.pack(">HH", sport[i], dport[i]) for i in range(ORACLE_SAMPLE)]

    def run():
        return [toeplitz(data, RSS_KEY_SYMMETRIC) for data in inputs]

    got = benchmark(run)
    _rate(benchmark, ORACLE_SAMPLE)
    assert got == fasttcp.flow_hash(src, dst, sport, dport).tolist()


def test_shard_of_batch(benchmark, mixed_handshakes):
    b = mixed_handshakes
    out = benchmark(fasttcp.shard_of_batch, b.buffer, SHARDS, offsets=b.offsets, lengths=b.lengths)
    _rate(benchmark, len(b))
    assert np.bincount(out, minlength=SHARDS).min() > 0


def test_shard_of_batch_tables(benchmark, mixed_handshakes):
    b = mixed_handshakes
    benchmark(fasttcp.shard_of_batch, b.buffer, SHARDS, key=KEY_TABLES, offsets=b.offsets, lengths=b.lengths)
    _rate(benchmark, len(b))


def test_peer_parse_batch(benchmark, mixed_handshakes):
    b = mixed_handshakes
    out = np.empty(len(b), dtype=fasttcp.SEGMENT_DTYPE)
    benchmark(fasttcp.parse_batch, b.buffer, b.offsets, b.lengths, verify_checksum=False, out=out)
    _rate(benchmark, len(b))


def test_peer_oracle_shards(benchmark, mixed_handshakes):
    """The rule in Python for plain TCP packets: fields sliced from the headers (IPv4
    without options, IPv6 without extension headers: what the workload builds)."""
    b = mixed_handshakes
    packets = b.packets[:ORACLE_SAMPLE]

    def run():
        out = []
        for p in packets:
            if p[0] >> 4 == 4:
                ihl = (p[0] & 0x0F) * 4
                data = p[12:20] + p[ihl:ihl + 4]
            else:
                data = p[8:40] + p[40:44]
            out.append(queue_of(toeplitz(data, RSS_KEY_SYMMETRIC), SHARDS))
        return out

    got = benchmark(run)
    _rate(benchmark, len(packets))
    assert got == fasttcp.shard_of_batch(b.buffer, SHARDS, offsets=b.offsets[:ORACLE_SAMPLE],
                                         lengths=b.lengths[:ORACLE_SAMPLE]).tolist()
