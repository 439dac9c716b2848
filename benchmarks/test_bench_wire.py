"""Wire-layer throughput, each figure next to a peer doing the same work on the same packets.

pytest-benchmark reports time per call; the `extra_info` of each benchmark carries
packets/s (or bytes/s) so the peer ratio can be read off the JSON output
(`--benchmark-json`). Targets: parse_batch with checksums >= 20M
packets/s (>= 200x dpkt), parse() >= 2M/s, checksum >= 10 GB/s on 1500 bytes,
build() >= 1.5M/s. Never asserted: timing belongs here, not in tests.
"""
import numpy as np
import pytest

import fasttcp
from fasttcp import Options

PEER_SAMPLE = 5_000


def _rate(benchmark, units):
    benchmark.extra_info["units_per_call"] = units


def test_parse_batch_verified(benchmark, handshakes):
    out = np.empty(len(handshakes), dtype=fasttcp.SEGMENT_DTYPE)
    benchmark(fasttcp.parse_batch, handshakes.buffer, handshakes.offsets, handshakes.lengths,
              verify_checksum=True, out=out)
    _rate(benchmark, len(handshakes))
    assert not out["verdict"].any()


def test_parse_batch_unverified(benchmark, handshakes):
    out = np.empty(len(handshakes), dtype=fasttcp.SEGMENT_DTYPE)
    benchmark(fasttcp.parse_batch, handshakes.buffer, handshakes.offsets, handshakes.lengths,
              verify_checksum=False, out=out)
    _rate(benchmark, len(handshakes))


def test_parse_each(benchmark, handshakes):
    packets = handshakes.packets[:PEER_SAMPLE]
    parse = fasttcp.parse

    def run():
        for p in packets:
            parse(p)

    benchmark(run)
    _rate(benchmark, len(packets))


def test_peer_dpkt_parse(benchmark, handshakes):
    dpkt = pytest.importorskip("dpkt")
    packets = handshakes.packets[:PEER_SAMPLE]

    def run():
        for p in packets:
            ip = dpkt.ip.IP(p)
            tcp = ip.data
            dpkt.tcp.parse_opts(tcp.opts)
            raw = bytes(tcp)
            dpkt.in_cksum(ip.src + ip.dst + b"\x00\x06" + len(raw).to_bytes(2, "big") + raw)

    benchmark(run)
    _rate(benchmark, len(packets))


def test_peer_scapy_parse(benchmark, handshakes):
    pytest.importorskip("scapy")
    from scapy.layers.inet import IP, TCP

    packets = handshakes.packets[:500]

    def run():
        for p in packets:
            t = IP(p)[TCP]
            _ = (t.sport, t.dport, t.seq, t.ack, t.flags, t.options)

    benchmark(run)
    _rate(benchmark, len(packets))


def test_build(benchmark):
    opts = Options(mss=1460, wscale=7, sack_permitted=True, timestamp=(1, 0))
    build = fasttcp.build

    def run():
        for i in range(PEER_SAMPLE):
            build("198.18.0.1", "198.19.0.1", 1024, 80, seq=i, options=opts)

    benchmark(run)
    _rate(benchmark, PEER_SAMPLE)


def test_checksum_1500(benchmark, mtu_buffer):
    benchmark(fasttcp.checksum, mtu_buffer)
    _rate(benchmark, len(mtu_buffer))


def test_peer_scapy_checksum_1500(benchmark, mtu_buffer):
    pytest.importorskip("scapy")
    from scapy.utils import checksum

    benchmark(checksum, mtu_buffer)
    _rate(benchmark, len(mtu_buffer))


def test_seq_lt_vector(benchmark):
    rng = np.random.default_rng(3)
    a = rng.integers(0, 2**32, 1_000_000, dtype=np.uint32)
    b = rng.integers(0, 2**32, 1_000_000, dtype=np.uint32)
    benchmark(fasttcp.seq.lt, a, b)
    _rate(benchmark, len(a))
