"""The training run of the profile-guided build (setup.py, ``FASTTCP_PGO``).

setup.py compiles the extensions once with gcc's ``-fprofile-generate``, runs this
module against that build (``python -m fasttcp.bench.pgo``), and compiles them again with
``-fprofile-use``: gcc then lays out each hot loop for the branches real traffic takes
and moves what it never saw out of the way. What gcc learns is only as good as what
it saw, so this is deliberately wider than the benchmark: endpoint lifecycles over
IPv4 and IPv6 with every SYN given its record (as the benchmark opens them), smaller
bursts half past the SYN backlog (so SYN cookies are made and checked too, as a share
of the traffic a flood would be, not half of every handshake), SYNs retransmitted
until the connect gives up, SYNs refused with a RST,
data with loss and retransmission, a lost FIN, aborts, the single-packet API; the
tracker (IPv4: the synthetic capture is) over a clean capture and over damaged copies
(bad checksums, losses, duplicates) with both timeout presets; the codec over IPv4 and
IPv6 -- besides the shapes `fasttcp bench` measures. Code the run never reaches is
compiled as if there were no profile (``-fprofile-partial-training``), never worse.

It only has to exercise, not to check: the tests do that. It needs numpy and
nothing else, takes a few seconds on the instrumented build, touches no network and
writes only to a temporary directory.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np


def _endpoint_rounds(family: int, flows: int, rounds: int, depth: int | None = None, *,
                     flood: bool = False) -> None:
    """Batch handshakes and whole lifecycles, as `fasttcp bench` runs them (`depth`: the
    batch pipelines' depth, None = as the endpoint measures it; `flood`: the server's
    SYN backlog at its default, half the burst, so the other half gets SYN cookies)."""
    from fasttcp.bench.handshakes import _close_all, _handshakes, flow_keys
    from fasttcp.endpoint.endpoint import Endpoint, pipe
    from fasttcp.table.table import KEY_DTYPE

    backlog = None if flood else flows
    if family == 4:
        client = Endpoint(["198.18.0.0/16"], capacity=flows, seed=1, pipeline_depth=depth)
        server = Endpoint(["198.19.0.1"], capacity=flows, seed=2, pipeline_depth=depth, syn_backlog=backlog)
        keys = flow_keys(flows)
    else:
        client = Endpoint(["2001:db8:1::/64"], capacity=flows, seed=1, pipeline_depth=depth)
        server = Endpoint(["2001:db8:2::1"], capacity=flows, seed=2, pipeline_depth=depth, syn_backlog=backlog)
        keys = np.zeros(flows, dtype=KEY_DTYPE)
        i = np.arange(flows)
        keys["family"] = 6
        keys["lport"] = 1024 + i % 60000
        keys["rport"] = 80
        keys["laddr"][:, :4] = (0x20, 0x01, 0x0D, 0xB8)
        keys["laddr"][:, 5] = 1
        keys["laddr"][:, 14] = (i // 60000) >> 8
        keys["laddr"][:, 15] = 1 + (i // 60000) & 0xFF
        keys["raddr"][:, :4] = (0x20, 0x01, 0x0D, 0xB8)
        keys["raddr"][:, 5] = 2
        keys["raddr"][:, 15] = 1
    server.listen(80)
    now = 0.0
    for _ in range(rounds):
        cids, sids = _handshakes(client, server, keys, now)
        _close_all(client, server, cids, sids, now, 30.0)
        now += 61.0
    # SYNs into the void: retransmitted with backoff until the client gives up
    client.connect_batch(keys[: flows // 4], now)
    for k in range(8):
        client.poll_batch(now + 2.0 ** k)
    client.transmit_batch()
    now += 300.0
    # SYNs to a port nobody listens on: the server answers RST, the client is refused
    closed = keys[flows // 4: flows // 2].copy()
    closed["rport"] = 81
    client.connect_batch(closed, now)
    pipe(client, server, now)
    pipe(server, client, now)
    client.clear_events()
    server.clear_events()


def _endpoint_python_api(n: int) -> None:
    """The per-packet API: handshakes, data both ways with a lost segment, half-close,
    close, abort."""
    from fasttcp.endpoint.endpoint import Endpoint

    client = Endpoint(["198.18.0.0/16"], capacity=n, seed=3)
    server = Endpoint(["198.19.0.1"], capacity=n, seed=4)
    server.listen(80)

    def carry(src, dst, now, drop_first=False):
        for k, p in enumerate(src.transmit()):
            if drop_first and k == 0:
                continue                  # lost: later segments arrive out of order
            dst.receive(p, now)

    now = 0.0
    for i in range(n):
        c = client.connect("198.19.0.1", 80, local_port=1024 + i % 60000, now=now)
        carry(client, server, now)
        carry(server, client, now)
        carry(client, server, now)
        s = server.accept()
        if s is None:
            continue
        c.send(b"x" * (200 + i % 3000), now=now)
        s.send(b"y" * (100 + i % 1500), now=now)
        carry(client, server, now, drop_first=i % 5 == 0)
        carry(server, client, now)
        now += 1.5
        client.poll(now)
        server.poll(now)
        carry(client, server, now)
        carry(server, client, now)
        s.recv()
        c.recv()
        if i % 7 == 0:
            c.abort(now=now)
            carry(client, server, now)
        else:
            c.close(now=now)
            carry(client, server, now)
            carry(server, client, now)
            s.close(now=now)
            carry(server, client, now, drop_first=i % 4 == 0)     # the FIN lost: resent
            carry(client, server, now)
        client.events()
        server.events()
    client.poll(now + 300.0)
    server.poll(now + 300.0)


def _tracker(folder: Path) -> None:
    """feed_batch over a synthetic capture as `fasttcp bench` measures it, then over a
    damaged copy (bad checksums, losses, duplicates) with both timeout presets, and
    `analyze` end to end."""
    from fasttcp.analysis import AnalyzeConfig, analyze
    from fasttcp.bench.tracker import PACKETS_PER_FLOW, synth_capture
    from fasttcp.capture.reader import read_pcap
    from fasttcp.tracker.tracker import Tracker

    path = folder / "train.pcap"
    synth_capture(path, 60_000, 2_000)
    batches = list(read_pcap(path, batch_bytes=2 << 20))
    n = sum(len(b) for b in batches)
    tr = Tracker(n // PACKETS_PER_FLOW + 4096, timeouts="conntrack", verify_checksum=True)
    for _ in range(3):
        for b in batches:
            tr.feed_batch(b)
        tr.close()
    rng = np.random.default_rng(1)
    for b in batches:
        buf = np.frombuffer(b.buffer, dtype=np.uint8).copy()
        offs = np.asarray(b.offsets, dtype=np.int64)
        lens = np.asarray(b.lengths, dtype=np.int64)
        ts = np.asarray(b.ts_ns, dtype=np.int64)
        m = len(offs)
        bad = rng.random(m) < 0.01
        buf[offs[bad] + 30] ^= 0x5A                       # a corrupted byte: bad checksum
        keep = np.sort(np.concatenate([np.flatnonzero(rng.random(m) >= 0.02),
                                       np.flatnonzero(rng.random(m) < 0.02)]))   # losses, duplicates
        for timeouts, verify in (("conntrack", True), ("zeek", False)):
            t2 = Tracker(m + 1024, timeouts=timeouts, verify_checksum=verify, events=True)
            t2.feed_batch(buf, offs[keep], lens[keep], ts[keep])
            t2.events()
            t2.expire(int(ts[-1]) / 1e9 + 600.0)
            t2.finished()
    analyze(path, AnalyzeConfig(timeouts="conntrack", capacity=8192))


def _codec() -> None:
    """parse_batch, parse/build one packet at a time, checksums of every size."""
    from fasttcp.bench.codec import BenchConfig, run_codec

    for family in ("4", "6"):
        run_codec(BenchConfig(flows=5_000, repeat=1, family=family, peers=False))


def _bare_handshakes() -> None:
    """The bench's bare and lean C peers, built with a profile as the endpoint they are
    compared with."""
    from fasttcp.bench.baseline import bare_handshakes_run

    bare_handshakes_run(16_384, 3)
    bare_handshakes_run(16_384, 3, lean=True)


def main() -> int:
    from fasttcp.endpoint.endpoint import PIPELINE_DEPTHS

    with tempfile.TemporaryDirectory(prefix="fasttcp-pgo-") as tmp:
        _endpoint_rounds(4, 20_000, 3)
        _endpoint_rounds(6, 5_000, 2)
        # the pipelines at every depth a table may measure as its best (each depth's
        # loop is a copy of its own: see endpoint_core.pxi's _pb_steady)
        for depth in PIPELINE_DEPTHS:
            _endpoint_rounds(4, 8_000, 1, depth)
        # SYN floods: past the backlog, SYN cookies answer (a few percent of the SYNs here)
        _endpoint_rounds(4, 8_000, 1, flood=True)
        _endpoint_rounds(6, 2_000, 1, flood=True)
        _endpoint_python_api(1_500)
        _tracker(Path(tmp))
        _codec()
        _bare_handshakes()
    return 0


if __name__ == "__main__":
    sys.exit(main())
