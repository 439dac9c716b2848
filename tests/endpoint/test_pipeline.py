"""The batch calls' pipelines: every depth gives the same results, and an endpoint
measures its depth on a table larger than the CPU's private cache (the rule in
endpoint_core.pxi, "batch pipelines and their depth")."""
from __future__ import annotations

import numpy as np
import pytest

from fasttcp.bench.handshakes import CLIENT_NET, SERVER_ADDR, SERVER_PORT, flow_keys
from fasttcp.endpoint.endpoint import PIPELINE_DEPTHS, Endpoint

# a table this large (its index alone is 14 MB) is bigger than any CPU's private cache,
# so every large batch on it is one the endpoint may measure its depth on
BIG = 1 << 20
# a batch must be at least four times the measurement (5 depths x 4 chunks x 512)
MEASURED_BATCH = 60_000


def _pair(depth, capacity=BIG):
    client = Endpoint([CLIENT_NET], capacity=capacity, seed=1, pipeline_depth=depth)
    server = Endpoint([SERVER_ADDR], capacity=capacity, seed=2, pipeline_depth=depth)
    server.listen(SERVER_PORT)
    return client, server


def _hostile(buf, offs, lens):
    """The SYN batch with every 97th packet damaged (a bit of its TCP checksum flipped)
    and every 101st delivered twice: drops and duplicates inside the pipeline."""
    buf = buf.copy()
    buf[offs[::97] + 36] ^= 0x10
    dup = np.arange(0, len(offs), 101)
    order = np.sort(np.concatenate([np.arange(len(offs)), dup]), kind="stable")
    return buf, offs[order], lens[order]


def _handshakes(depth, flows):
    """Everything two endpoints at `depth` say and do over `flows` handshakes."""
    client, server = _pair(depth)
    seen = [client.connect_batch(flow_keys(flows), 0.0)]
    seen.append(server.receive_batch(*_hostile(*client.transmit_batch()), 0.001))
    synacks = server.transmit_batch()
    seen += [*synacks, server.events_batch()]
    seen.append(client.receive_batch(*synacks, 0.002))
    acks = client.transmit_batch()
    seen += [*acks, client.events_batch()]
    seen.append(server.receive_batch(*acks, 0.003))
    seen += [server.events_batch(), server.accept_batch()]
    return seen, (client.stats, server.stats), (client.pipeline, server.pipeline)


@pytest.mark.parametrize("flows", [1, 2, 3, 7, 31, 33, 100])
def test_short_batches_come_out_the_same_at_every_depth(flows):
    # batches shorter than the pipeline: only its fill and drain run
    want, stats, _ = _handshakes(8, flows)
    for depth in PIPELINE_DEPTHS:
        got, got_stats, _ = _handshakes(depth, flows)
        assert all(np.array_equal(a, b) for a, b in zip(want, got, strict=True)), depth
        assert got_stats == stats, depth


def test_a_measured_batch_comes_out_the_same_as_at_any_fixed_depth():
    want, stats, _ = _handshakes(8, MEASURED_BATCH)
    damaged = len(range(0, MEASURED_BATCH, 97))
    # the damaged SYNs (those that are also duplicated, twice) were dropped; the rest accepted
    assert stats[1]["drops"]["malformed"] == damaged + len(range(0, MEASURED_BATCH, 97 * 101))
    assert len(want[-1]) == MEASURED_BATCH - damaged
    for depth in (*PIPELINE_DEPTHS, None):
        got, got_stats, pipes = _handshakes(depth, MEASURED_BATCH)
        assert all(np.array_equal(a, b) for a, b in zip(want, got, strict=True)), depth
        assert got_stats == stats, depth
        counts = [(p["connects"]["calibrations"], p["segments"]["calibrations"]) for p in pipes]
        if depth is None:
            # the first large batch of each pipeline was measured: the client's connects
            # and SYN-ACKs, the server's SYNs; not its ACKs (its table has grown from
            # 14 to 21 MB since, not twofold)
            if pipes[0]["cache_bytes"] <= 8 << 20:
                assert counts == [(1, 1), (0, 1)]
        else:
            assert counts == [(0, 0), (0, 0)]
            assert all(not p["auto"] and p["segments"]["depth"] == p["connects"]["depth"] == depth for p in pipes)


def test_the_depth_kept_is_the_fastest_measured():
    client, server = _pair(None)
    before = client.pipeline
    assert before["auto"] and before["segments"] == {"depth": 8, "calibrations": 0, "ns_per_item": {}}
    if before["cache_bytes"] > 8 << 20:
        pytest.skip(f"a private cache of {before['cache_bytes']} bytes holds this table's index")
    client.connect_batch(flow_keys(MEASURED_BATCH), 0.0)
    conn = client.pipeline["connects"]
    assert conn["calibrations"] == 1
    ns = conn["ns_per_item"]
    assert sorted(ns) == list(PIPELINE_DEPTHS) and min(ns.values()) > 0
    # the shallowest depth whose median time per key is within 3% of the lowest
    fastest = min(ns.values())
    assert conn["depth"] == min(d for d in PIPELINE_DEPTHS if ns[d] * 100 <= fastest * 103)
    assert client.pipeline["segments"]["calibrations"] == 0       # no segment batch yet


def test_the_depth_is_measured_again_when_the_table_has_doubled():
    client, _ = _pair(None)
    if client.pipeline["cache_bytes"] > 8 << 20:
        pytest.skip("a private cache this large holds the table's index")
    counts = []
    for k in range(4):
        # the index (14 MB) and the records handed out (6.7 MB a batch): 14, 21, 27, 34 MB
        client.connect_batch(flow_keys(MEASURED_BATCH, offset=k * MEASURED_BATCH), 0.0)
        counts.append(client.pipeline["connects"]["calibrations"])
    assert counts == [1, 1, 1, 2]


def test_small_batches_and_small_tables_are_not_measured():
    client, _ = _pair(None)
    client.connect_batch(flow_keys(MEASURED_BATCH // 4), 0.0)           # too short a batch
    assert client.pipeline["connects"]["calibrations"] == 0
    cache = client.pipeline["cache_bytes"]
    if cache == 0:
        pytest.skip("the CPU's private cache size is unknown here: every table counts as large")
    # an empty table whose index (13.3 bytes a connection) fits the private cache: its
    # depth stays what it started with, however large the batch
    small = Endpoint([CLIENT_NET], capacity=cache // 16, seed=1)
    small.connect_batch(flow_keys(MEASURED_BATCH), 0.0)
    assert small.pipeline["connects"] == {"depth": 8, "calibrations": 0, "ns_per_item": {}}


def test_the_depth_is_measured_again_after_a_period_of_work():
    # a table that is full (each connect evicts the oldest embryonic one) no longer
    # grows: its depth is measured again once 2^22 items went through since the last time
    client = Endpoint([CLIENT_NET], capacity=200_000, seed=1)
    if client.pipeline["cache_bytes"] > 2 << 20:
        pytest.skip("a private cache this large holds the table's index")
    batch, sent, full_at = 0, 0, None
    while full_at is None or sent - full_at < (1 << 22) + MEASURED_BATCH:
        client.connect_batch(flow_keys(MEASURED_BATCH, offset=batch * MEASURED_BATCH), float(batch))
        client.transmit_batch()
        client.clear_events()
        batch += 1
        sent += MEASURED_BATCH
        if full_at is None and len(client) == client.capacity:
            full_at, measured = sent, client.pipeline["connects"]["calibrations"]
    assert client.pipeline["connects"]["calibrations"] == measured + 1
