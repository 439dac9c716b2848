"""Endpoint throughput: handshakes and full lifecycles between two
endpoints in one process, every segment built, checksummed, parsed, looked up and run
through the state machine. `fasttcp bench` prints the same figures with peers (dpkt
handshake in Python, Linux kernel loopback connect/accept) measured in the same run.
"""
import pytest

from fasttcp.bench.handshakes import _close_all, _handshakes, _pair, _single_packet, flow_keys

N = 100_000


@pytest.fixture(scope="module")
def pair():
    client, server = _pair(N)
    return client, server, flow_keys(N)


def test_batch_handshakes(benchmark, pair):
    client, server, keys = pair
    state = {"now": 0.0, "open": None}

    def setup():
        if state["open"] is not None:          # close the previous round outside the timing
            _close_all(client, server, *state["open"], state["now"], 30.0)
        state["now"] += 100.0
        return (), {}

    def run():
        state["open"] = _handshakes(client, server, keys, state["now"])

    benchmark.pedantic(run, setup=setup, rounds=5)
    _close_all(client, server, *state["open"], state["now"], 30.0)
    benchmark.extra_info["handshakes_per_call"] = N
    assert len(client) == 0 and len(server) == 0


def test_full_lifecycles(benchmark, pair):
    client, server, keys = pair
    clock = {"now": 10_000.0}

    def run():
        clock["now"] += 100.0
        cids, sids = _handshakes(client, server, keys, clock["now"])
        _close_all(client, server, cids, sids, clock["now"], 30.0)

    benchmark.pedantic(run, rounds=5)
    benchmark.extra_info["lifecycles_per_call"] = N


def test_single_packet_api_handshakes(benchmark):
    rate = benchmark.pedantic(_single_packet, args=(5_000,), rounds=3)
    benchmark.extra_info["handshakes_per_call"] = 5_000
    assert rate > 0
