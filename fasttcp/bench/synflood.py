"""A SYN flood with real clients in it: spoofed SYNs built in numpy, a listening Endpoint
that answers them (with SYN cookies once its backlog is full), and a second Endpoint
whose connections must all complete through the flood.

Used by tests/endpoint/test_syn_flood.py (every real client completes, memory stays
bounded) and benchmarks/syn_flood.py (rates). Everything runs through real segments:
both checksums built and verified, every packet parsed and looked up.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from fasttcp.endpoint.endpoint import Endpoint
from fasttcp.enums import State
from fasttcp.table.table import KEY_DTYPE

__all__ = ["FloodResult", "spoofed_syns", "client_keys", "run_flood", "SERVER_ADDR", "SERVER_PORT"]

SERVER_ADDR = "198.18.0.1"              # RFC 2544 benchmarking range
SERVER_PORT = 80
CLIENT_NET = "198.19.0.0/16"            # the real clients
_CLIENT_OCTETS = (198, 19)
_SYN_LEN = 44                           # IPv4 20 + TCP 20 + MSS option 4
_SYN_TEMPLATE = bytes.fromhex(
    "4500002c00004000" "40060000" "00000000" "00000000"          # IPv4: len 44, DF, TTL 64, TCP
    "00000000" "00000000" "00000000" "6002ffff" "00000000"        # TCP: doff 6, SYN, window 65535
    "020405b4")                                                   # MSS 1460
_IP_DST, _IP_SRC, _TCP = 16, 12, 20
_SPOOF_FIRST_OCTETS = (11, 126)         # sources in 11.0.0.0 .. 126.255.255.255: unicast


def _fold(s: np.ndarray) -> np.ndarray:
    """One's-complement sum of 16-bit words to 16 bits (RFC 1071), inverted."""
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return (~s & 0xFFFF).astype(">u2")


def spoofed_syns(n: int, rng: np.random.Generator, *, dst: str = SERVER_ADDR,
                 dst_port: int = SERVER_PORT) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`n` SYNs (MSS 1460) from random unicast IPv4 sources and ports with random
    sequence numbers, both checksums correct, as one segment batch (buffer, offsets,
    lengths)."""
    pkts = np.empty((n, _SYN_LEN), np.uint8)
    pkts[:] = np.frombuffer(_SYN_TEMPLATE, np.uint8)
    src = rng.integers(0, 1 << 32, n, dtype=np.uint32)
    src_bytes = src.astype(">u4").view(np.uint8).reshape(n, 4).copy()
    src_bytes[:, 0] = rng.integers(_SPOOF_FIRST_OCTETS[0], _SPOOF_FIRST_OCTETS[1] + 1, n, dtype=np.uint8)
    pkts[:, _IP_SRC:_IP_SRC + 4] = src_bytes
    pkts[:, _IP_DST:_IP_DST + 4] = np.frombuffer(bytes(map(int, dst.split("."))), np.uint8)
    ports = rng.integers(1024, 65536, n, dtype=np.uint32).astype(">u2")
    pkts[:, _TCP:_TCP + 2] = ports.view(np.uint8).reshape(n, 2)
    pkts[:, _TCP + 2:_TCP + 4] = np.frombuffer(dst_port.to_bytes(2, "big"), np.uint8)
    pkts[:, _TCP + 4:_TCP + 8] = rng.integers(0, 1 << 32, n, dtype=np.uint32).astype(">u4").view(
        np.uint8).reshape(n, 4)
    words = pkts.view(">u2").astype(np.uint32)              # (n, 22) big-endian 16-bit words
    pkts[:, 10:12] = _fold(words[:, :10].sum(axis=1)).view(np.uint8).reshape(n, 2)
    # TCP: pseudo-header (addresses, protocol 6, TCP length 24) + header with options
    tcp = words[:, 6:10].sum(axis=1) + 6 + (_SYN_LEN - _TCP) + words[:, 10:].sum(axis=1)
    pkts[:, _TCP + 16:_TCP + 18] = _fold(tcp).view(np.uint8).reshape(n, 2)
    offsets = np.arange(n, dtype=np.int64) * _SYN_LEN
    return pkts.reshape(-1), offsets, np.full(n, _SYN_LEN, np.int64)


def client_keys(n: int, *, first_port: int = 1024) -> np.ndarray:
    """KEY_DTYPE keys of `n` distinct real clients in 198.19.0.0/16 to the server."""
    keys = np.zeros(n, KEY_DTYPE)
    i = np.arange(n)
    keys["family"] = 4
    keys["lport"] = first_port + i % (65536 - first_port)
    host = i // (65536 - first_port) + 1
    keys["laddr"][:, 0], keys["laddr"][:, 1] = _CLIENT_OCTETS
    keys["laddr"][:, 2] = host >> 8
    keys["laddr"][:, 3] = host & 255
    keys["raddr"][:, :4] = np.frombuffer(bytes(map(int, SERVER_ADDR.split("."))), np.uint8)
    keys["rport"] = SERVER_PORT
    return keys


@dataclasses.dataclass
class FloodResult:
    spoofed: int = 0                    # spoofed SYNs delivered
    real: int = 0                       # real clients that connected
    client_established: int = 0         # of them, ESTABLISHED at the client
    server_accepted: int = 0            # connections the server's accept queue handed out
    seconds: float = 0.0                # wall time of the whole run (generation included)
    server_seconds: float = 0.0         # of it, in the server's receive_batch
    stats: dict[str, Any] = dataclasses.field(default_factory=dict)


def _to_clients(buf: np.ndarray, offs: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The server's output addressed to the real clients (the rest goes to spoofed
    sources, which nobody answers)."""
    if len(offs) == 0:
        return offs, lens
    mask = (buf[offs + _IP_DST] == _CLIENT_OCTETS[0]) & (buf[offs + _IP_DST + 1] == _CLIENT_OCTETS[1])
    return offs[mask], lens[mask]


def run_flood(spoofed: int, real: int, *, chunk: int = 16384, capacity: int = 65536,
              syn_cookies: Literal["auto", "always", "off"] = "auto", seed: int = 0, flood_rate: float = 1e5,
              on_chunk: Callable[[int], Any] | None = None) -> FloodResult:
    """Deliver `spoofed` SYNs in chunks to a listening server of `capacity`, with `real`
    clients' SYNs spread evenly through them; answer the real clients' SYN-ACKs (from
    a second Endpoint) and deliver their ACKs. The clock advances as at `flood_rate`
    SYNs a second (timers polled every chunk). The server's events are never asked for:
    what it keeps of them is its bound. `on_chunk(i)` is called after each chunk."""
    rng = np.random.default_rng(seed)
    server = Endpoint([SERVER_ADDR], capacity=capacity, seed=seed + 2, syn_cookies=syn_cookies)
    server.listen(SERVER_PORT)
    client = Endpoint([CLIENT_NET], capacity=max(real, 1), seed=seed + 1)
    keys = client_keys(real)
    nchunks = max(1, -(-spoofed // chunk))
    r = FloodResult()
    now = 1.0
    t0 = time.perf_counter()
    for i in range(nchunks):
        n = min(chunk, spoofed - i * chunk)
        sbuf, soffs, slens = spoofed_syns(n, rng)
        part = keys[i * real // nchunks:(i + 1) * real // nchunks]
        if len(part):
            ids = client.connect_batch(part, now)
            r.real += int((ids >= 0).sum())
        cbuf, coffs, clens = client.transmit_batch()
        # the real SYNs spread evenly through the spoofed ones
        at = np.linspace(0, n, len(coffs), endpoint=False).astype(np.int64)
        buf = np.concatenate([sbuf, cbuf])
        offs = np.insert(soffs, at, coffs + len(sbuf))
        lens = np.insert(slens, at, clens)
        ts = time.perf_counter()
        server.receive_batch(buf, offs, lens, now)
        r.server_seconds += time.perf_counter() - ts
        r.spoofed += n
        out, ooffs, olens = server.transmit_batch()        # SYN-ACKs (most to nobody)
        ooffs, olens = _to_clients(out, ooffs, olens)
        if len(ooffs):
            client.receive_batch(out, ooffs, olens, now)
        abuf, aoffs, alens = client.transmit_batch()        # the clients' ACKs
        if len(aoffs):
            ts = time.perf_counter()
            server.receive_batch(abuf, aoffs, alens, now)
            r.server_seconds += time.perf_counter() - ts
        r.server_accepted += len(server.accept_batch())
        server.transmit_batch()
        ev = client.events_batch()
        r.client_established += int((ev["new_state"] == State.ESTABLISHED).sum())
        now += n / flood_rate
        server.poll_batch(now)
        client.poll_batch(now)
        if on_chunk is not None:
            on_chunk(i)
    r.seconds = time.perf_counter() - t0
    r.stats = server.stats
    return r
