"""`fasttcp bench`: the main job. Two endpoints in one process open (and close) many
connections through real segments, with peers measured in the same run.

Every segment is built with both checksums, parsed, verified, looked up in the
connection table and run through the RFC 9293 state machine -- no shortcut a packet
processor could not take; only the copy of each packet into a Python object is skipped
on the batch path (fasttcp.endpoint.endpoint.pipe is the in-memory wire). Figures are
medians of several rounds after a warm-up round; the spread (max-min)/median shows the
noise of the machine. Peers: the same handshake written with dpkt in Python, the
Linux kernel's loopback connect/accept rate, and two C handshake loops on the
cache-resident table's flows: "bare" (build, checksum, parse, verify and a keyed-hash
lookup per segment, nothing else) and "lean" (the same plus the endpoint's timers,
eviction list, events, accept queue and RFC 9293 checks).
"""
from __future__ import annotations

import math
import os
import socket
import statistics
import time

import numpy as np

from fasttcp.bench.codec import BenchConfig, Figure, Report, pgo_build, run_codec
from fasttcp.bench.stats import median_spread as _median
from fasttcp.endpoint.endpoint import Endpoint, pipe
from fasttcp.table.table import KEY_DTYPE

__all__ = ["BenchConfig", "run", "format_report"]

CLIENT_NET = "198.18.0.0/16"      # RFC 2544 benchmarking range
SERVER_ADDR = "198.19.0.1"
SERVER_PORT = 80
CACHE_RESIDENT_FLOWS = 16_384     # two tables of this size and their queues (~4 MB) stay in L3
MSL = 30.0                        # the endpoints' MSL: closes wait 2 MSL in TIME-WAIT
_BUSY_ON_CPU = 0.9                # --cores workers on a CPU less of their rounds than this:
                                  # they waited for one (measured: 0.95-1.0 on an idle host)


def flow_keys(n: int, offset: int = 0) -> np.ndarray:
    """n distinct client keys: 198.18.a.b:port -> 198.19.0.1:80 (KEY_DTYPE, client view)."""
    i = np.arange(offset, offset + n, dtype=np.int64)
    host = i // 60000
    if host.max(initial=0) >= 65534:
        raise ValueError("too many flows for the 198.18.0.0/16 client range")
    keys = np.zeros(n, dtype=KEY_DTYPE)
    keys["family"] = 4
    keys["lport"] = 1024 + i % 60000
    keys["rport"] = SERVER_PORT
    keys["laddr"][:, 0] = 198
    keys["laddr"][:, 1] = 18
    keys["laddr"][:, 2] = (host + 1) >> 8
    keys["laddr"][:, 3] = (host + 1) & 255
    keys["raddr"][:, :4] = (198, 19, 0, 1)
    return keys


def _pair(capacity: int) -> tuple[Endpoint, Endpoint]:
    client = Endpoint([CLIENT_NET], capacity=capacity, seed=1)
    # the bench opens the whole table in one burst: every SYN gets its SYN-RECEIVED record
    # (the handshake path it measures), none a SYN cookie (benchmarks/syn_flood.py)
    server = Endpoint([SERVER_ADDR], capacity=capacity, seed=2, syn_backlog=capacity)
    server.listen(SERVER_PORT)
    return client, server


def _handshakes(client: Endpoint, server: Endpoint, keys: np.ndarray, now: float,
                burst: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """SYN -> SYN-ACK -> ACK for every key; returns the client's and the server's record
    ids (raises if any handshake did not complete). `burst`: that many keys a call, one
    burst after another (the connections of the earlier ones stay open); 0: all at once."""
    step = burst if burst > 0 else max(1, len(keys))
    ids, established = [], []
    for i in range(0, max(1, len(keys)), step):
        ids.append(client.connect_batch(keys[i:i + step], now))
        pipe(client, server, now)          # SYNs
        pipe(server, client, now)          # SYN-ACKs
        pipe(client, server, now)          # ACKs
        established.append(server.accept_batch())   # what a server does with new connections
        client.clear_events()
        server.clear_events()
    # (one call: its arrays as they are, no copy inside the timed span)
    cids = ids[0] if len(ids) == 1 else np.concatenate(ids)
    sids = established[0] if len(established) == 1 else np.concatenate(established)
    if len(sids) != len(keys) or (cids < 0).any():
        raise RuntimeError(f"only {len(sids)} of {len(keys)} handshakes completed")
    return cids, sids


def burst_size(cache_bytes: int, handshake_bytes: float) -> int:
    """Flows a call for the bursts figure: the largest power of two (64..65536) whose
    handshakes' working set -- `handshake_bytes` each: two records, the segments in
    flight, the events -- takes at most half the core's private cache (`cache_bytes`,
    `Endpoint.pipeline`; 1 MiB assumed when it is unknown, 0, or not a size). Each
    record is touched again by the next segment of its handshake while still in that
    cache. A working set that is not a positive finite size counts as 1 byte."""
    cache = cache_bytes if isinstance(cache_bytes, int) and 0 < cache_bytes < 1 << 50 else 1 << 20
    per = handshake_bytes if math.isfinite(handshake_bytes) and handshake_bytes >= 1.0 else 1.0
    fit = int(cache / 2 / per)
    return max(64, min(65536, 1 << max(0, fit.bit_length() - 1)))


def _close_all(client: Endpoint, server: Endpoint, cids, sids, now: float, msl: float) -> None:
    """Four-way close (client first) and TIME-WAIT expiry after 2 MSL."""
    client.close_batch(cids, now)
    pipe(client, server, now)          # FIN
    pipe(server, client, now)          # ACK          (client FIN-WAIT-2, server CLOSE-WAIT)
    server.close_batch(sids, now)
    pipe(server, client, now)          # FIN          (client TIME-WAIT)
    pipe(client, server, now)          # ACK          (server CLOSED)
    client.poll_batch(now + 2 * msl)   # TIME-WAIT ends
    client.clear_events()
    server.clear_events()
    if len(client) or len(server):
        raise RuntimeError(f"{len(client)} + {len(server)} connections left after the close")


def _rounds(client: Endpoint, server: Endpoint, keys: np.ndarray, rounds: int, now: float, msl: float,
            burst: int = 0):
    """Open and close every key `rounds` times after one warm-up round (it brings the
    memory in), `burst` keys a call (0: all at once). Returns the handshakes/s and
    lifecycles/s of each measured round, and the clock after the last one."""
    hs, life = [], []
    for rnd in range(rounds + 1):
        t0 = time.perf_counter()
        cids, sids = _handshakes(client, server, keys, now, burst)
        t1 = time.perf_counter()
        _close_all(client, server, cids, sids, now, msl)
        t2 = time.perf_counter()
        now += 2 * msl + 1
        if rnd:
            hs.append(len(keys) / (t1 - t0))
            life.append(len(keys) / (t2 - t0))
    return hs, life, now


def _c_loops(cfg: BenchConfig, rep: Report, flows: int) -> tuple[bool, ...]:
    """The C handshake loops (peers: the work no handshake can skip, in plain C; see
    bare_handshake.h) to run on `flows` flows, as `lean` flags: bare and lean, or none
    without peers or beyond the loops' MAX_FLOWS (a note says so).

    They are measured in blocks taking turns with the endpoint's, each C loop's block
    after a warm-up round of its own, and their ratios to the endpoint are the medians
    of the blocks' own ratios (`Report.paired`): the host's speed drifts by a third
    within a run, and figures measured seconds apart would carry that drift into the
    ratio. So the endpoints' tables and a C loop's are allocated at once: at the batch
    figure's size ~260 bytes a flow of the endpoints' and ~600 of the loop's (1.3 GB at
    1M flows)."""
    from fasttcp.bench.baseline import MAX_FLOWS

    if not cfg.peers:
        return ()
    if flows > MAX_FLOWS:
        rep.notes.append(f"no C loops at {flows:,} flows: they take at most {MAX_FLOWS:,}")
        return ()
    return (False, True)


def _c_loop_rates(flows: int, rounds: int, lean: bool) -> list[float]:
    """Handshakes/s of each of `rounds` timed rounds of a C loop (after its warm-up)."""
    from fasttcp.bench.baseline import bare_handshakes_run

    ns, est = bare_handshakes_run(flows, rounds, lean=lean)
    if est != flows:
        raise RuntimeError(f"{'lean' if lean else 'bare'} C loop: {est} of {flows} handshakes completed")
    return [1e9 / t for t in ns]


def _c_loop_figures(rep: Report, suffix: str, rates: dict[bool, list[float]], blocks: dict[bool, list[float]],
                    ours: dict[str, list[float]]) -> None:
    """The C loops' figures (`rates`: every round; `blocks`: each block's median) and
    their pairing with our figures (`ours`: figure name -> each block's median)."""
    for lean, values in rates.items():
        name = f"{'lean' if lean else 'bare'}_c{suffix}_handshakes_per_s"
        v, s = _median(values)
        rep.peers[name] = Figure(name, v, "handshakes/s", s)
        for figure, mine in ours.items():
            if mine:
                rep.paired[(figure, name)] = (mine, blocks[lean])


def run(cfg: BenchConfig, *, codec: bool = True, many_open: int = 1_000_000, single: int = 20_000) -> Report:
    """Measure handshakes/s (batch, cache-resident, in `cfg.cores` processes, single-packet,
    many open), full lifecycles/s and memory per connection, then the peers and
    (``codec``) the wire-layer figures."""
    rep = Report(cfg)
    # each with the C loops (peers) measured in turn with it: see _c_loops
    _batch_figures(cfg, rep)
    _cache_resident_figures(cfg, rep)
    if cfg.cores > 1:
        _cores_figures(cfg, rep)
    if many_open:
        _many_open_figure(cfg, rep, many_open)
    if single:
        _single_packet_figure(cfg, rep, single)
    if cfg.peers:
        _python_and_kernel_peers(cfg, rep)
    if codec:
        run_codec(cfg, rep)
    return rep


def _say(cfg: BenchConfig, msg: str) -> None:
    if cfg.progress is not None:
        cfg.progress(msg)


def _batch_figures(cfg: BenchConfig, rep: Report) -> None:
    """The batch figure: cfg.flows handshakes a round (and their lifecycles), the same
    flows opened in bursts, and the C loops on as many flows; a block of one round of
    each in turn, cfg.repeat blocks."""
    n = cfg.flows
    client, server = _pair(n)
    keys = flow_keys(n)
    # the same table, opened in bursts that fit the private cache: all n connections
    # still open at the end of a round, but each handshake's records and segments are
    # touched again while cached -- as a packet processor fed bursts from a NIC ring
    # touches them -- where one call streams every stage's n segments through memory
    # before the next stage reads them
    burst = rep.burst = burst_size(server.pipeline["cache_bytes"], _handshake_bytes(server))
    loops = _c_loops(cfg, rep, n)
    _say(cfg, f"batch: {n:,} handshakes x {cfg.repeat} rounds"
         + (f", and in bursts of {burst:,}" if burst < n else "") + (", and the C loops" if loops else ""))
    hs: list[float] = []
    life: list[float] = []
    bursts: list[float] = []
    rates: dict[bool, list[float]] = {lean: [] for lean in loops}
    now = 0.0
    for rnd in range(cfg.repeat):
        # each measured round after a warm-up round, as each C loop's: the C loops run
        # between them, and a large last-level cache holds a useful part of a round of
        # 200k flows (on a Xeon, five runs without the warm-up read 0.68-0.82x the
        # cache-resident figure, five with it 0.73-0.87x; it costs the bench < 1 s)
        h, lc, now = _rounds(client, server, keys, 1, now, MSL)
        hs += h
        life += lc
        if burst < n:
            h, _, now = _rounds(client, server, keys, 1, now, MSL, burst)
            bursts += h
        for lean in loops if rnd % 2 == 0 else loops[::-1]:
            rates[lean] += _c_loop_rates(n, 1, lean)
    v, s = _median(hs)
    rep.figures["handshakes_per_s"] = Figure("handshakes_per_s", v, "handshakes/s", s)
    v, s = _median(life)
    rep.figures["lifecycles_per_s"] = Figure("lifecycles_per_s", v, "lifecycles/s", s)
    rep.figures["bytes_per_connection"] = Figure("bytes_per_connection", server.memory_bytes / n, "bytes")
    if bursts:
        v, s = _median(bursts)
        rep.figures["handshakes_per_s_bursts"] = Figure("handshakes_per_s_bursts", v, "handshakes/s", s)
    else:
        rep.notes.append(f"no bursts figure: {n:,} flows fit in one burst of {burst:,}")
    _c_loop_figures(rep, "_batch", rates, rates, {"handshakes_per_s": hs, "handshakes_per_s_bursts": bursts})
    # the prefetch depth each endpoint measured for its table on this machine
    rep.pipeline = {"client": client.pipeline, "server": server.pipeline}
    seg = server.pipeline["segments"]
    how = "measured" if seg["calibrations"] else "not measured: the table fits the private cache or batches are short"
    rep.notes.append(f"batch pipeline depth {seg['depth']} (server, {how})")


def _handshake_bytes(ep: Endpoint) -> float:
    """The memory one handshake works in: a record and its index share at each end, the
    three segments with their offsets and lengths (an options-bearing SYN or SYN-ACK
    is 60-80 bytes), two events at each end: ~810 bytes at 200k flows, more in a
    small table (its fixed part spread over fewer records)."""
    from fasttcp.endpoint.endpoint import EVENT_DTYPE

    return 2 * ep.memory_bytes / max(ep.capacity, 1) + 3 * (80 + 16) + 4 * EVENT_DTYPE.itemsize


def _cache_resident_figures(cfg: BenchConfig, rep: Report) -> None:
    """The same with a table that stays in the cache (the condition the 10 M/s target is
    stated for): few enough flows per round that both tables and the segment queues
    (~4 MB) fit in the L3 cache, and more rounds: 4 * cfg.repeat blocks of one round
    (after a warm-up round), the C loops' blocks on the same flows in turn. A round takes
    milliseconds: blocks that short pair rounds the host ran at the same speed."""
    small = _cache_resident(cfg)
    rounds, nblocks = 1, 4 * cfg.repeat
    loops = _c_loops(cfg, rep, small)
    _say(cfg, f"batch, cache-resident table: {small:,} handshakes x {rounds * nblocks} rounds"
         + (", and the C loops" if loops else ""))
    client, server = _pair(small)
    keys = flow_keys(small)
    hs: list[float] = []
    ours: list[float] = []
    rates: dict[bool, list[float]] = {lean: [] for lean in loops}
    blocks: dict[bool, list[float]] = {lean: [] for lean in loops}
    now = 0.0
    for b in range(nblocks):
        h, _, now = _rounds(client, server, keys, rounds, now, MSL)
        hs += h
        ours.append(statistics.median(h))
        for lean in loops if b % 2 == 0 else loops[::-1]:
            r = _c_loop_rates(small, rounds, lean)
            rates[lean] += r
            blocks[lean].append(statistics.median(r))
    v, s = _median(hs)
    rep.figures["handshakes_per_s_cache_resident"] = Figure("handshakes_per_s_cache_resident", v, "handshakes/s", s)
    rep.notes.append(f"cache-resident: {small:,} flows per round, median of {rounds * nblocks} rounds"
                     + (", each with a round of each C loop in turn" if loops else ""))
    _c_loop_figures(rep, "", rates, blocks, {"handshakes_per_s_cache_resident": ours})


def _cache_resident(cfg: BenchConfig) -> int:
    return min(cfg.flows, CACHE_RESIDENT_FLOWS)


def _cores_figures(cfg: BenchConfig, rep: Report) -> None:
    """The cache-resident benchmark in cfg.cores processes at once, each on its own
    slice of the flow keys, and in one process by the same means (fasttcp.bench.cores)."""
    from fasttcp.bench.cores import run_cores

    small, rounds = _cache_resident(cfg), 4 * cfg.repeat
    _say(cfg, f"one process: {small:,} handshakes x {rounds} rounds")
    one = run_cores(1, small, rounds)
    _say(cfg, f"{cfg.cores} processes at once: {small:,} handshakes each x {rounds} rounds")
    many = run_cores(cfg.cores, small, rounds)
    rep.figures["handshakes_per_s_cores_one"] = Figure("handshakes_per_s_cores_one", one.handshakes_per_s,
                                                       "handshakes/s", one.spread)
    rep.figures["handshakes_per_s_cores"] = Figure("handshakes_per_s_cores", many.handshakes_per_s,
                                                   "handshakes/s", many.spread)
    rep.cores_on_cpu = many.on_cpu
    each = ", ".join(f"{r / 1e6:.2f}" for r in many.per_worker)
    rep.notes.append(f"{cfg.cores} processes: {small:,} flows each per round, median of {rounds} rounds; "
                     f"each process in its own rounds: {each} M/s; on a CPU {many.on_cpu:.0%} of the rounds' "
                     "spans" + ("" if many.on_cpu >= _BUSY_ON_CPU else
                                " (other processes competed for the CPUs: the aggregate understates)"))


def _many_open_figure(cfg: BenchConfig, rep: Report, many_open: int) -> None:
    """Handshakes while `many_open` connections are held open in the same tables."""
    n = cfg.flows
    _say(cfg, f"many open: {many_open:,} connections held, then {n:,} more handshakes")
    client, server = _pair(many_open + n)
    _handshakes(client, server, flow_keys(many_open), 0.0)
    extra = flow_keys(n, offset=many_open)
    rates = []
    for rnd in range(cfg.repeat):
        t0 = time.perf_counter()
        cids, sids = _handshakes(client, server, extra, 1.0 + rnd * 100)
        rates.append(n / (time.perf_counter() - t0))
        for ep, ids in ((client, cids), (server, sids)):
            ep.close_batch(ids, 1.0 + rnd * 100)
        # reset the extra flows so the next round can reopen them
        _drain_reset(client, server, cids, sids, 1.0 + rnd * 100)
    v, s = _median(rates)
    rep.figures["handshakes_per_s_many_open"] = Figure("handshakes_per_s_many_open", v, "handshakes/s", s)
    rep.notes.append(f"many-open: {len(server):,} server connections held while measuring")
    rep.held_open = many_open


def _single_packet_figure(cfg: BenchConfig, rep: Report, single: int) -> None:
    _say(cfg, f"single-packet Python API: {single:,} handshakes")
    rates = [_single_packet(single) for _ in range(max(1, cfg.repeat // 2))]
    v, s = _median(rates)
    rep.figures["handshakes_per_s_python_api"] = Figure("handshakes_per_s_python_api", v, "handshakes/s", s)


def _python_and_kernel_peers(cfg: BenchConfig, rep: Report) -> None:
    _say(cfg, "peer: the same handshake with dpkt in Python")
    try:
        v = _dpkt_handshakes(min(cfg.flows, 20_000))
        rep.peers["dpkt_handshakes_per_s"] = Figure("dpkt_handshakes_per_s", v, "handshakes/s")
    except ImportError:
        rep.notes.append("dpkt not installed: no dpkt peer (pip install 'fasttcp[test]')")
    _say(cfg, "peer: Linux kernel loopback connect/accept")
    v = _kernel_loopback(2.0)
    rep.peers["kernel_loopback_connections_per_s"] = Figure("kernel_loopback_connections_per_s", v, "connections/s")


def _drain_reset(client: Endpoint, server: Endpoint, cids, sids, now: float) -> None:
    """Finish the close of the extra flows started in the many-open rounds."""
    pipe(client, server, now)
    pipe(server, client, now)
    pipe(client, server, now)
    pipe(server, client, now)
    client.poll_batch(now + 61)
    server.poll_batch(now + 61)
    client.clear_events()
    server.clear_events()


def _single_packet(n: int) -> float:
    """Handshakes through the per-packet Python API: connect, receive, transmit, accept."""
    client = Endpoint([CLIENT_NET], capacity=n, seed=3)
    server = Endpoint([SERVER_ADDR], capacity=n, seed=4, syn_backlog=n)     # as _pair
    server.listen(SERVER_PORT)
    # the client's addresses, as a load generator would hold them (60000 ports each)
    addrs = [f"198.18.{1 + h // 256}.{1 + h % 256}" for h in range(n // 60000 + 1)]
    t0 = time.perf_counter()
    for i in range(n):
        client.connect(SERVER_ADDR, SERVER_PORT, local_port=1024 + i % 60000,
                       local_addr=addrs[i // 60000], now=0.0)
        for p in client.transmit():
            server.receive(p, 0.0)
        for p in server.transmit():
            client.receive(p, 0.0)
        for p in client.transmit():
            server.receive(p, 0.0)
        server.accept()
        client.events()                  # an application drains its events as it goes
        server.events()
    dt = time.perf_counter() - t0
    if len(server) != n:
        raise RuntimeError(f"single-packet path: {len(server)} of {n} handshakes completed")
    return n / dt


def _dpkt_handshakes(n: int) -> float:
    """Peer: a Python handshake with dpkt (build, parse, verify checksum, dict state)."""
    import dpkt  # type: ignore[import-untyped]  # dpkt ships no type information

    def build(src, dst, sport, dport, seq, ack, flags):
        tcp = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, win=65535,
                           opts=b"\x02\x04\x05\xb4")
        ip = dpkt.ip.IP(src=src, dst=dst, p=6, ttl=64, data=tcp)
        ip.len = len(ip)
        return bytes(ip)

    def parse(pkt):
        ip = dpkt.ip.IP(pkt)
        tcp = ip.data
        raw = bytes(tcp)
        if dpkt.in_cksum(ip.src + ip.dst + b"\x00\x06" + len(raw).to_bytes(2, "big") + raw) != 0:
            raise ValueError("checksum")
        dpkt.tcp.parse_opts(tcp.opts)
        return ip, tcp

    srv = bytes((198, 19, 0, 1))
    client_state: dict = {}
    server_state: dict = {}
    t0 = time.perf_counter()
    for i in range(n):
        cli = bytes((198, 18, 1 + i // 60000, 1))
        port = 1024 + i % 60000
        syn = build(cli, srv, port, 80, 1000, 0, dpkt.tcp.TH_SYN)
        client_state[(cli, port, srv, 80)] = "SYN-SENT"
        ip, tcp = parse(syn)
        server_state[(ip.dst, tcp.dport, ip.src, tcp.sport)] = "SYN-RECEIVED"
        synack = build(ip.dst, ip.src, tcp.dport, tcp.sport, 5000, tcp.seq + 1, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK)
        ip, tcp = parse(synack)
        client_state[(ip.dst, tcp.dport, ip.src, tcp.sport)] = "ESTABLISHED"
        ack = build(ip.dst, ip.src, tcp.dport, tcp.sport, tcp.ack, tcp.seq + 1, dpkt.tcp.TH_ACK)
        ip, tcp = parse(ack)
        server_state[(ip.dst, tcp.dport, ip.src, tcp.sport)] = "ESTABLISHED"
    return n / (time.perf_counter() - t0)


def _kernel_loopback(seconds: float) -> float:
    """Peer: Linux's own TCP, connect + accept + close on 127.0.0.1, one core, bounded time."""
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1024)
    addr = lsock.getsockname()
    count = 0
    deadline = time.perf_counter() + seconds
    t0 = time.perf_counter()
    try:
        while time.perf_counter() < deadline and count < 200_000:
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            # RST on close instead of TIME-WAIT, so the run does not exhaust ports
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            c.connect(addr)
            a, _ = lsock.accept()
            a.close()
            c.close()
            count += 1
    finally:
        lsock.close()
    return count / (time.perf_counter() - t0)


# ---- text output ----

_LABELS = {
    "handshakes_per_s": "handshakes/s, batch (C loop)",
    "handshakes_per_s_cache_resident": "handshakes/s, batch, cache-resident table",
    "handshakes_per_s_bursts": "handshakes/s, batch flows, N a call",
    "handshakes_per_s_cores": "handshakes/s, N processes, cache-resident",
    "handshakes_per_s_cores_one": "handshakes/s, 1 process, same way",
    "lifecycles_per_s": "full lifecycles/s (open+close+2MSL)",
    "handshakes_per_s_many_open": "handshakes/s with N held open",
    "handshakes_per_s_python_api": "handshakes/s, single-packet API",
    "bytes_per_connection": "bytes per connection (table)",
    "dpkt_handshakes_per_s": "dpkt handshake in Python",
    "kernel_loopback_connections_per_s": "Linux kernel loopback connect/accept",
    "bare_c_handshakes_per_s": "bare C handshake loop (no events, timers)",
    "lean_c_handshakes_per_s": "lean C loop (+ events, timers, lists)",
    "bare_c_batch_handshakes_per_s": "bare C loop, batch figure's flows",
    "lean_c_batch_handshakes_per_s": "lean C loop, batch figure's flows",
}
_FIGURES = ("handshakes_per_s", "handshakes_per_s_bursts", "handshakes_per_s_cache_resident", "handshakes_per_s_cores",
            "handshakes_per_s_cores_one", "lifecycles_per_s", "handshakes_per_s_many_open",
            "handshakes_per_s_python_api", "bytes_per_connection")
# the C loops, and the endpoint figure each is compared with (same flows, same run)
_C_LOOPS = {"bare_c_handshakes_per_s": "handshakes_per_s_cache_resident",
            "lean_c_handshakes_per_s": "handshakes_per_s_cache_resident",
            "bare_c_batch_handshakes_per_s": "handshakes_per_s",
            "lean_c_batch_handshakes_per_s": "handshakes_per_s"}


def format_report(rep: Report) -> str:
    """The handshake figures, the peers and the ratios to them, then the codec figures
    and the notes, as text."""
    from fasttcp.bench.codec import format_report as codec_report

    cfg = rep.config
    lines = [f"fasttcp bench: {cfg.flows:,} flows per round, median of {cfg.repeat} rounds after a warm-up "
             f"(spread = (max-min)/median), pid {os.getpid()}, "
             f"{'profile-guided' if pgo_build() else 'plain (no profile)'} build"]
    for name in _FIGURES:
        f = rep.figures.get(name)
        if f is None:
            continue
        label = _LABELS[name].replace("N held", f"{rep.held_open:,} held").replace("N proc", f"{cfg.cores} proc")
        if name == "handshakes_per_s_bursts":
            label = label.replace("N a call", f"{rep.burst:,} a call")
        val = f"{f.value:10.1f} bytes" if f.unit == "bytes" else f"{f.value / 1e6:8.2f} M/s"
        lines.append(f"  {label:40s} {val}   spread {f.spread:5.1%}")
    scaling = rep.as_dict().get("scaling")
    if scaling is not None:
        lines.append(f"  {'scaling, ' + str(cfg.cores) + ' processes / 1 process':40s} {scaling:8.2f}x")
    lines += _peer_lines(rep)
    codec = {k: v for k, v in rep.figures.items() if k not in _LABELS}
    if codec:
        sub = Report(cfg, codec, {k: v for k, v in rep.peers.items() if k not in _LABELS}, [])
        lines.append(codec_report(sub))
    for note in rep.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def _peer_lines(rep: Report) -> list[str]:
    hs_peers = [p for p in rep.peers.values() if p.name in _LABELS and p.name not in _C_LOOPS]
    loops = [rep.peers[name] for name in _C_LOOPS if name in rep.peers]
    if not hs_peers and not loops:
        return []
    lines = ["peers, same run:"]
    for f in hs_peers:
        lines.append(f"  {_LABELS[f.name]:40s} {f.value / 1e3:8.1f} k/s")
    for f in loops:
        lines.append(f"  {_LABELS[f.name]:40s} {f.value / 1e6:8.2f} M/s   spread {f.spread:5.1%}")
    ours = rep.figures["handshakes_per_s"].value
    for f in hs_peers:
        lines.append(f"  ratio batch handshakes / {_LABELS[f.name]:24s} {ours / f.value:8.0f}x")
    for f in loops:
        r = rep.ratio(_C_LOOPS[f.name], f.name)
        if r is not None:
            which = "batch" if _C_LOOPS[f.name] == "handshakes_per_s" else "cache-resident"
            lines.append(f"  ratio {which} handshakes / {f.name.split('_')[0]} C loop {r:{34 - len(which)}.2f}x")
        if _C_LOOPS[f.name] == "handshakes_per_s":
            r = rep.ratio("handshakes_per_s_bursts", f.name)
            if r is not None:
                lines.append(f"  ratio bursts handshakes / {f.name.split('_')[0]} C loop {r:28.2f}x")
    return lines
