"""The Toeplitz hash of receive-side scaling, bit by bit (test oracle only, no fasttcp).

Written from Microsoft's definition ("RSS hashing functions", ComputeHash): for each bit
of the input from the left, if the bit is 1, XOR the leftmost 32 bits of the key into
the result; then shift the key left by one bit. The key is one big integer here, the
window a shift and a mask.
"""
from __future__ import annotations

import ipaddress

WINDOW_BITS = 32
MASK32 = (1 << WINDOW_BITS) - 1


def toeplitz(data: bytes, key: bytes) -> int:
    """The 32-bit Toeplitz hash of `data` under `key` (which needs len(data) + 4 bytes)."""
    key_bits = 8 * len(key)
    if 8 * len(data) + WINDOW_BITS > key_bits:
        raise ValueError(f"{len(data)} input bytes need a key of {len(data) + 4}")
    k = int.from_bytes(key, "big")
    result = 0
    for i in range(8 * len(data)):
        if (data[i // 8] >> (7 - i % 8)) & 1:
            # the 32 key bits starting at bit i, bit 0 being the key's most significant
            result ^= (k >> (key_bits - WINDOW_BITS - i)) & MASK32
    return result


def rss_input(src, dst, sport: int | None = None, dport: int | None = None) -> bytes:
    """What a NIC hashes (Microsoft, "RSS hashing types"): source address, destination
    address and, for TCP, source port and destination port, in network byte order."""
    raw = ipaddress.ip_address(src).packed + ipaddress.ip_address(dst).packed
    if sport is None:
        return raw
    return raw + sport.to_bytes(2, "big") + dport.to_bytes(2, "big")


def default_reta(shards: int, size: int) -> list[int]:
    """A NIC's indirection table before anyone sets one: entry i holds queue i % shards
    (Linux ethtool_rxfh_indir_default)."""
    return [i % shards for i in range(size)]


def queue_of(hash_value: int, shards: int, size: int = 128) -> int:
    """The queue a NIC picks: the hash's low bits index the indirection table."""
    return default_reta(shards, size)[hash_value & (size - 1)]
