"""Synthetic traffic for benchmarks and tests: realistic handshake packets, as one batch.

Every packet is really built by `fasttcp.build` (checksums included), so what the
benchmarks parse is what a packet processor would see on the wire.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import numpy as np

from fasttcp.enums import Flags
from fasttcp.wire.segment import Options, build

__all__ = ["Batch", "handshake_batch"]

# RFC 2544 / RFC 6815 benchmarking range: never routed, safe for synthetic traffic
_V4_CLIENTS = ipaddress.IPv4Network("198.18.0.0/16")
_V4_SERVER = ipaddress.IPv4Address("198.19.0.1")
_V6_CLIENTS = ipaddress.IPv6Network("2001:2::/64")       # RFC 5180 benchmarking range
_V6_SERVER = ipaddress.IPv6Address("2001:2:0:1::1")


@dataclass(frozen=True)
class Batch:
    """A segment batch in the shape every batch call takes: one buffer + offsets/lengths."""

    buffer: bytes
    offsets: np.ndarray
    lengths: np.ndarray
    packets: list[bytes]

    def __len__(self) -> int:
        return len(self.packets)


def handshake_batch(flows: int, *, family: str = "4", seed: int = 1) -> Batch:
    """3 packets per flow (SYN with Linux's SYN options, SYN-ACK, ACK with timestamps),
    distinct 4-tuples, random ISNs. ``family`` is "4", "6" or "mixed"."""
    rng = np.random.default_rng(seed)
    isns = rng.integers(0, 2**32, size=(flows, 2), dtype=np.uint64)
    packets: list[bytes] = []
    syn_opts = Options(mss=1460, wscale=7, sack_permitted=True, timestamp=(1, 0))
    client: ipaddress.IPv4Address | ipaddress.IPv6Address
    server: ipaddress.IPv4Address | ipaddress.IPv6Address
    for i in range(flows):
        v6 = family == "6" or (family == "mixed" and i % 2)
        if v6:
            client = _V6_CLIENTS[1 + i]
            server = _V6_SERVER
        else:
            client = _V4_CLIENTS[1 + (i // 64511) % 65534]
            server = _V4_SERVER
        cport = 1024 + i % 64511
        c_isn, s_isn = int(isns[i, 0]), int(isns[i, 1])
        ts = 1000 + i
        packets.append(build(client, server, cport, 80, seq=c_isn, flags=Flags.SYN, window=64240,
                             options=syn_opts))
        packets.append(build(server, client, 80, cport, seq=s_isn, ack=(c_isn + 1) % 2**32,
                             flags=Flags.SYN | Flags.ACK, window=65160,
                             options=Options(mss=1460, wscale=7, sack_permitted=True, timestamp=(ts, 1))))
        packets.append(build(client, server, cport, 80, seq=(c_isn + 1) % 2**32, ack=(s_isn + 1) % 2**32,
                             flags=Flags.ACK, window=502, options=Options(timestamp=(2, ts))))
    lengths = np.fromiter((len(p) for p in packets), dtype=np.int64, count=len(packets))
    offsets = np.zeros(len(packets), dtype=np.int64)
    np.cumsum(lengths[:-1], out=offsets[1:])
    return Batch(b"".join(packets), offsets, lengths, packets)
