"""A SYN flood does not cost real clients their connections, nor the process its memory.

10 million spoofed SYNs (random sources, ports and sequence numbers, built in numpy)
go through ``receive_batch`` into an endpoint of capacity 65536, with 10,000 real
clients (a second Endpoint) spread through them: every real client completes its
handshake, and the process grows by less than 50 MB. Each run is a child process so
that its peak RSS is its own (fasttcp.bench.synflood has the flood; benchmarks/
syn_flood.py measures its rates). ``FASTTCP_FLOOD_SYNS`` changes the flood's size.
"""
from __future__ import annotations

import ast
import os

from tests.probe import expect_ok

FLOOD_SYNS = int(os.environ.get("FASTTCP_FLOOD_SYNS", 10_000_000))
REAL_CLIENTS = 10_000
RSS_GROWTH_LIMIT_MB = 50
TIMEOUT = 600

# the child's memory: VmRSS now, and the peak since the last reset (Linux
# Documentation/filesystems/proc.rst: writing 5 to clear_refs resets VmHWM)
_MEMORY = """
import os
def _status(field):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 1024
def reset_peak():
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
def rss_mb():
    return _status('VmRSS')
def peak_mb():
    return _status('VmHWM')
"""


def _child(body: str) -> dict:
    from tests.probe import run_probe

    out = run_probe(_MEMORY + body, timeout=TIMEOUT)
    assert out.kind == "ok", f"{out.type}: {out.message}"
    return ast.literal_eval(out.value)


def test_every_real_client_completes_through_the_flood_and_memory_stays_bounded():
    r = _child(f"""
from fasttcp.bench.synflood import run_flood
import fasttcp.bench.synflood   # imports done before the baseline
base = rss_mb()
reset_peak()
r = run_flood({FLOOD_SYNS}, {REAL_CLIENTS})
outcome(dict(spoofed=r.spoofed, real=r.real, client=r.client_established, server=r.server_accepted,
             growth=peak_mb() - base, stats=r.stats))
""")
    assert r["spoofed"] == FLOOD_SYNS and r["real"] == REAL_CLIENTS
    assert r["client"] == REAL_CLIENTS and r["server"] == REAL_CLIENTS, r
    s = r["stats"]
    # the flood filled the SYN backlog and the rest was answered statelessly
    assert s["half_open"] <= 65536 // 2 and s["syn_cookies_sent"] > FLOOD_SYNS // 2
    assert s["syn_cookies_failed"] == 0 and s["evictions"] == 0 and s["drops"]["table_full"] == 0
    assert r["growth"] < RSS_GROWTH_LIMIT_MB, f"grew {r['growth']:.1f} MB"


def test_without_cookies_real_clients_lose_to_the_flood():
    # the same flood against "off": each spoofed SYN evicts the oldest half-open
    # record, the real clients' among them (the behaviour cookies replace)
    r = _child("""
from fasttcp.bench.synflood import run_flood
r = run_flood(200_000, 1000, syn_cookies="off", chunk=65536)
outcome(dict(server=r.server_accepted, evictions=r.stats["evictions"]))
""")
    assert r["evictions"] > 100_000 and r["server"] < 1000


def _undrained(mode: str) -> dict:
    """2M spoofed SYNs through receive_batch into a 64k endpoint whose events and
    transmit queue are never drained."""
    return _child(f"""
import numpy as np
from fasttcp import Endpoint
from fasttcp.bench.synflood import spoofed_syns
rng = np.random.default_rng(1)
base = rss_mb()
reset_peak()
ep = Endpoint(["198.18.0.1"], capacity=65536, seed=1, syn_cookies="{mode}")
ep.listen(80)
for i in range(2_000_000 // 16384 + 1):
    buf, offs, lens = spoofed_syns(16384, rng)
    ep.receive_batch(buf, offs, lens, 1.0 + i / 8)
    ep.poll_batch(1.0 + i / 8)
s = ep.stats
outcome(dict(growth=peak_mb() - base, events=len(ep.events_batch()), tx=ep.pending_transmit, stats=s))
""")


def test_undrained_endpoint_memory_is_bounded_with_cookies_off():
    r = _undrained("off")
    s = r["stats"]
    assert s["evictions"] > 1_900_000
    # events: 2 per connection of capacity (SYN_RECEIVED and EVICTED per SYN would be 4M)
    assert r["events"] == 2 * 65536 and s["events_dropped"] > 3_000_000
    assert s["transmit_dropped"] > 1_000_000 and r["tx"] < 1_000_000
    assert r["growth"] < RSS_GROWTH_LIMIT_MB, f"grew {r['growth']:.1f} MB"


def test_undrained_endpoint_memory_is_bounded_with_cookies_auto():
    r = _undrained("auto")
    s = r["stats"]
    # past the backlog every SYN got a cookie SYN-ACK, queued or (the queue full) dropped
    assert s["half_open"] <= 32768 and s["syn_cookies_sent"] + s["transmit_dropped"] > 1_900_000
    assert s["transmit_dropped"] > 1_000_000
    assert r["growth"] < RSS_GROWTH_LIMIT_MB, f"grew {r['growth']:.1f} MB"


def test_event_bound_follows_capacity():
    value = expect_ok("""
import numpy as np
from fasttcp import Endpoint
from fasttcp.bench.synflood import spoofed_syns
buf, offs, lens = spoofed_syns(300_000, np.random.default_rng(2))
out = []
for cap in (8, 1 << 17):
    ep = Endpoint(["198.18.0.1"], capacity=cap, syn_cookies="off")     # 2 events a SYN
    ep.listen(80)
    ep.receive_batch(buf, offs, lens, 1.0)
    out.append((len(ep.events_batch()), ep.stats["events_dropped"]))
outcome(out)
""")
    (small_kept, small_dropped), (big_kept, big_dropped) = ast.literal_eval(value)
    # a SYN_RECEIVED event per SYN, an EVICTED one per SYN after the first 8 (the table is full)
    assert small_kept == 1 << 16 and small_dropped == 600_000 - 8 - (1 << 16)   # the floor: 65536
    assert big_kept == 2 << 17 and big_dropped > 0                          # 2 per connection of capacity
