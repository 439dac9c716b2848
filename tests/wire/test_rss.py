"""The flow hash and the per-packet shard (fasttcp.wire.rss).

Three implementations of the Toeplitz hash are held to one answer: the lookup tables
`flow_hash` and `shard_of_batch` use (two of them for a periodic key), the C bit loop
behind `toeplitz_hash`, and the pure-Python oracle in tests/reference/toeplitz.py. The
oracle in turn is held to the published verification vectors. On the bundled captures,
`shard_of_batch` must keep both directions of every connection together, agree with the
hash of the tracker's FLOW rows, and follow its rule packet by packet.
"""
from __future__ import annotations

import collections
import ipaddress
import os
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fasttcp
from fasttcp import Verdict, flow_hash, flow_hash_rows, parse_batch, shard_of_batch, shard_of_hash
from fasttcp.wire.rss import RSS_KEY_MICROSOFT, RSS_KEY_SYMMETRIC, RssShards, toeplitz_hash
from tests import linklayer
from tests.reference import packets
from tests.reference.toeplitz import queue_of, rss_input, toeplitz

# ---- the verification suite ----

# Microsoft, "Verifying the RSS Hash Calculation" (Windows driver docs, NDIS RSS): the
# hashes of these flows under RSS_KEY_MICROSOFT, with ports (TCP) and without (IP only).
# The same table is Intel's 82599 datasheet 7.1.2.8.3 and DPDK's app/test/test_thash.c.
# Columns: source address, source port, destination address, destination port,
# IP-only hash, TCP hash.
MICROSOFT_IPV4 = [
    ("66.9.149.187", 2794, "161.142.100.80", 1766, 0x323E8FC2, 0x51CCC178),
    ("199.92.111.2", 14230, "65.69.140.83", 4739, 0xD718262A, 0xC626B0EA),
    ("24.19.198.95", 12898, "12.22.207.184", 38024, 0xD2D0A5DE, 0x5C2B394A),
    ("38.27.205.30", 48228, "209.142.163.6", 2217, 0x82989176, 0xAFC7327F),
    ("153.39.163.191", 44251, "202.188.127.2", 1303, 0x5D1809C5, 0x10E828A2),
]
MICROSOFT_IPV6 = [
    ("3ffe:2501:200:1fff::7", 2794, "3ffe:2501:200:3::1", 1766, 0x2CC18CD5, 0x40207D3D),
    ("3ffe:501:8::260:97ff:fe40:efab", 14230, "ff02::1", 4739, 0x0F0C461C, 0xDDE51BBF),
    ("3ffe:1900:4545:3:200:f8ff:fe21:67cf", 44251, "fe80::200:f8ff:fe21:67cf", 38024, 0x4B61E985, 0x02D1FEEF),
]
VECTORS = MICROSOFT_IPV4 + MICROSOFT_IPV6


def test_the_keys_are_the_published_ones():
    assert RSS_KEY_MICROSOFT.hex() == ("6d5a56da255b0ec24167253d43a38fb0d0ca2bcb"
                                       "ae7b30b477cb2da38030f20c6a42b73bbeac01fa")
    assert RSS_KEY_SYMMETRIC.hex() == "6d5a" * 20


@pytest.mark.parametrize("src, sport, dst, dport, ip_hash, tcp_hash", VECTORS)
def test_the_oracle_gives_the_verification_suite_hashes(src, sport, dst, dport, ip_hash, tcp_hash):
    assert toeplitz(rss_input(src, dst), RSS_KEY_MICROSOFT) == ip_hash
    assert toeplitz(rss_input(src, dst, sport, dport), RSS_KEY_MICROSOFT) == tcp_hash


@pytest.mark.parametrize("src, sport, dst, dport, ip_hash, tcp_hash", VECTORS)
def test_toeplitz_hash_gives_the_verification_suite_hashes(src, sport, dst, dport, ip_hash, tcp_hash):
    assert toeplitz_hash(rss_input(src, dst)) == ip_hash
    assert toeplitz_hash(rss_input(src, dst, sport, dport)) == tcp_hash
    assert toeplitz_hash(bytearray(rss_input(src, dst)), key=bytearray(RSS_KEY_MICROSOFT)) == ip_hash


@pytest.mark.parametrize("src, sport, dst, dport, ip_hash, tcp_hash", VECTORS)
def test_flow_hash_gives_the_verification_suite_tcp_hash(src, sport, dst, dport, ip_hash, tcp_hash):
    assert flow_hash(src, dst, sport, dport, key=RSS_KEY_MICROSOFT) == tcp_hash
    assert flow_hash(ipaddress.ip_address(src), ipaddress.ip_address(dst).packed, sport, dport,
                     key=RSS_KEY_MICROSOFT) == tcp_hash


@pytest.mark.parametrize("table", [MICROSOFT_IPV4, MICROSOFT_IPV6], ids=["ipv4", "ipv6"])
def test_flow_hash_of_arrays_gives_the_verification_suite_tcp_hashes(table):
    src = np.array([list(ipaddress.ip_address(r[0]).packed) for r in table], dtype=np.uint8)
    dst = np.array([list(ipaddress.ip_address(r[2]).packed) for r in table], dtype=np.uint8)
    got = flow_hash(src, dst, [r[1] for r in table], [r[3] for r in table], key=RSS_KEY_MICROSOFT)
    assert got.dtype == np.uint32
    assert got.tolist() == [r[5] for r in table]


def test_the_microsoft_key_is_not_symmetric_and_the_symmetric_key_is():
    src, sport, dst, dport = MICROSOFT_IPV4[0][:4]
    assert flow_hash(src, dst, sport, dport, key=RSS_KEY_MICROSOFT) != \
        flow_hash(dst, src, dport, sport, key=RSS_KEY_MICROSOFT)
    assert flow_hash(src, dst, sport, dport) == flow_hash(dst, src, dport, sport)


# ---- three implementations, one answer ----

ipv4 = st.binary(min_size=4, max_size=4)
ipv6 = st.binary(min_size=16, max_size=16)
port = st.integers(0, 65535)
# random keys take the per-position tables; periodic ones (16 bits repeated, the
# symmetric key's shape) the two-table fold; and the two named keys
keys = st.one_of(st.just(RSS_KEY_SYMMETRIC), st.just(RSS_KEY_MICROSOFT), st.binary(min_size=40, max_size=40),
                 st.binary(min_size=2, max_size=2).map(lambda w: w * 20))


@st.composite
def flows(draw, n_max=20):
    addr = draw(st.sampled_from([ipv4, ipv6]))
    n = draw(st.integers(1, n_max))
    return ([draw(addr) for _ in range(n)], [draw(addr) for _ in range(n)],
            [draw(port) for _ in range(n)], [draw(port) for _ in range(n)])


def as_array(addresses: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(addresses), dtype=np.uint8).reshape(len(addresses), -1)


@given(flows(), keys)
@settings(max_examples=300)
def test_vector_hash_equals_scalar_hash_equals_bit_loop_equals_oracle(f, key):
    src, dst, sport, dport = f
    vec = flow_hash(as_array(src), as_array(dst), np.array(sport), np.array(dport), key=key)
    for i in range(len(src)):
        data = src[i] + dst[i] + sport[i].to_bytes(2, "big") + dport[i].to_bytes(2, "big")
        want = toeplitz(data, key)
        assert flow_hash(src[i], dst[i], sport[i], dport[i], key=key) == want
        assert toeplitz_hash(data, key=key) == want
        assert int(vec[i]) == want


@given(st.sampled_from([ipv4, ipv6]).flatmap(lambda a: st.tuples(a, a)), port, port)
@settings(max_examples=500)
def test_the_symmetric_key_hashes_both_directions_alike(addresses, pa, pb):
    a, b = addresses
    assert flow_hash(a, b, pa, pb) == flow_hash(b, a, pb, pa)
    arrays = flow_hash(as_array([a, b]), as_array([b, a]), [pa, pb], [pb, pa])
    assert arrays[0] == arrays[1]
    # the address-only (2-tuple) hash too: what non-TCP packets and fragments get
    assert toeplitz(a + b, RSS_KEY_SYMMETRIC) == toeplitz(b + a, RSS_KEY_SYMMETRIC)


@given(st.binary(max_size=48), st.binary(min_size=52, max_size=52))
@settings(max_examples=200)
def test_toeplitz_hash_takes_any_input_its_key_covers(data, key):
    # a 52-byte key (Intel's E810 size) hashes inputs up to 48 bytes
    assert toeplitz_hash(data, key=key) == toeplitz(data, key)


def test_only_the_first_40_key_bytes_shape_a_flow_hash():
    key = bytes(range(60))
    f = ("2001:db8::1", "2001:db8::2", 1, 2)
    assert flow_hash(*f, key=key) == flow_hash(*f, key=key[:40]) == toeplitz(rss_input(*f), key)


def test_flow_hash_of_no_flows_is_an_empty_array():
    got = flow_hash(np.zeros((0, 16), np.uint8), np.zeros((0, 16), np.uint8), [], [])
    assert got.dtype == np.uint32 and got.shape == (0,)


# ---- FLOW rows and hashes to shards ----

def test_flow_hash_rows_hashes_each_row_by_its_family():
    rows = np.zeros(3, dtype=fasttcp.FLOW_DTYPE)
    flows_ = [("198.18.0.1", "198.19.0.1", 40000, 80), ("2001:db8::1", "2001:db8::2", 5, 6),
              ("10.0.0.2", "10.0.0.1", 443, 50000)]
    for row, (a, b, pa, pb) in zip(rows, flows_, strict=True):
        ra, rb = ipaddress.ip_address(a).packed, ipaddress.ip_address(b).packed
        row["family"] = 4 if len(ra) == 4 else 6
        row["orig_h"][:len(ra)] = list(ra)
        row["resp_h"][:len(rb)] = list(rb)
        row["orig_p"], row["resp_p"] = pa, pb
    assert flow_hash_rows(rows).tolist() == [toeplitz(rss_input(*f), RSS_KEY_SYMMETRIC) for f in flows_]
    assert flow_hash_rows(rows, key=RSS_KEY_MICROSOFT).tolist() == \
        [toeplitz(rss_input(*f), RSS_KEY_MICROSOFT) for f in flows_]


@given(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=50), st.integers(1, 300),
       st.sampled_from([1, 2, 64, 128, 512, 4096]))
def test_shard_of_hash_is_the_default_indirection_table(hashes, shards, reta_size):
    if reta_size < shards:
        reta_size = 512
    got = shard_of_hash(np.array(hashes, dtype=np.uint32), shards, reta_size=reta_size)
    want = [queue_of(h, shards, reta_size) for h in hashes]
    assert got.dtype == np.uint16 and got.tolist() == want
    assert [shard_of_hash(h, shards, reta_size=reta_size) for h in hashes] == want


# ---- packets: the rule, both directions, the tracker's rows ----

CAPTURE_FILES = linklayer.list_captures(linklayer.CAPTURES)
USABLE_DAMAGE = (int(Verdict.TRUNCATED), int(Verdict.BAD_CHECKSUM))


def batches(path):
    return list(fasttcp.read_pcap(path))


def tuple_usable(rows: np.ndarray, link: np.ndarray) -> np.ndarray:
    """The packets whose 4-tuple the tracker keys by (wire.codec ft_tuple_usable)."""
    verdict = rows["verdict"]
    return (link == 0) & ((verdict == 0) | ((rows["header_len"] != 0) & np.isin(verdict, USABLE_DAMAGE)))


def addresses(row) -> tuple[bytes, bytes]:
    n = 4 if row["version"] == 4 else 16
    return bytes(row["src"][:n]), bytes(row["dst"][:n])


def expected_shards(batch, shards: int, key: bytes = RSS_KEY_SYMMETRIC) -> list[int]:
    """The rule restated over parse_batch's rows, hashed by the C bit loop."""
    rows = parse_batch(batch.buffer, batch.offsets, batch.lengths, verify_checksum=False)
    usable = tuple_usable(rows, batch.verdicts)
    out = []
    for i, row in enumerate(rows):
        if batch.verdicts[i] != 0 or row["version"] not in (4, 6):
            out.append(0)
            continue
        a, b = addresses(row)
        data = a + b
        if usable[i]:
            data += int(row["src_port"]).to_bytes(2, "big") + int(row["dst_port"]).to_bytes(2, "big")
        out.append(queue_of(toeplitz_hash(data, key=key), shards))
    return out


@pytest.mark.parametrize("path", [p for p in CAPTURE_FILES if p.stat().st_size < 1 << 20], ids=lambda p: p.name)
def test_shard_of_batch_follows_its_rule_on_every_capture(path):
    for batch in batches(path):
        for shards in (1, 3, 8):
            got = shard_of_batch(batch, shards)
            assert got.dtype == np.uint16 and got.shape == (len(batch),)
            assert got.tolist() == expected_shards(batch, shards)


def test_shard_of_batch_follows_its_rule_under_another_key():
    batch = batches(linklayer.CAPTURES / "zeek-ftp-ipv6.pcap")[0]
    assert shard_of_batch(batch, 5, key=RSS_KEY_MICROSOFT).tolist() == \
        expected_shards(batch, 5, key=RSS_KEY_MICROSOFT)


def connection_shards(paths, shards: int) -> dict:
    """{(file, unordered 4-tuple): {shards its packets got}} over the usable TCP packets,
    with a count of the connections seen in both directions."""
    groups: dict = collections.defaultdict(set)
    directions: dict = collections.defaultdict(set)
    for path in paths:
        for batch in batches(path):
            got = shard_of_batch(batch, shards)
            rows = parse_batch(batch.buffer, batch.offsets, batch.lengths, verify_checksum=False)
            for i in np.flatnonzero(tuple_usable(rows, batch.verdicts)):
                a, b = addresses(rows[i])
                ends = sorted([(a, int(rows[i]["src_port"])), (b, int(rows[i]["dst_port"]))])
                conn = (path.name, *ends)
                groups[conn].add(int(got[i]))
                directions[conn].add((a, int(rows[i]["src_port"])))
    return groups, sum(len(d) == 2 for d in directions.values())


@pytest.mark.parametrize("shards", [2, 4, 7])
def test_both_directions_of_every_connection_get_one_shard(shards):
    groups, two_way = connection_shards(CAPTURE_FILES, shards)
    split = {conn: s for conn, s in groups.items() if len(s) != 1}
    assert not split
    assert two_way > 500                           # the property had both directions to hold for
    assert len({next(iter(s)) for s in groups.values()}) == shards


def test_the_tracker_rows_hash_to_the_shard_of_their_packets():
    checked = 0
    for path in CAPTURE_FILES:
        tracker = fasttcp.Tracker()
        shard_of: dict = collections.defaultdict(set)
        finished = []
        for batch in batches(path):
            tracker.feed_batch(batch)
            finished.append(tracker.finished())
            got = shard_of_batch(batch, 4)
            rows = parse_batch(batch.buffer, batch.offsets, batch.lengths, verify_checksum=False)
            for i in np.flatnonzero(tuple_usable(rows, batch.verdicts)):
                a, b = addresses(rows[i])
                shard_of[frozenset([(a, int(rows[i]["src_port"])), (b, int(rows[i]["dst_port"]))])].add(int(got[i]))
        flows_ = np.concatenate([*finished, tracker.close()])
        want = shard_of_hash(flow_hash_rows(flows_), 4)
        for row, shard in zip(flows_, want, strict=True):
            n = 4 if row["family"] == 4 else 16
            ends = frozenset([(bytes(row["orig_h"][:n]), int(row["orig_p"])), (bytes(row["resp_h"][:n]),
                                                                                int(row["resp_p"]))])
            assert shard_of[ends] == {int(shard)}, (path.name, row)
            checked += 1
    assert checked > 500


def test_one_shard_takes_every_packet():
    for path in CAPTURE_FILES[:20]:
        for batch in batches(path):
            assert not shard_of_batch(batch, 1).any()


def test_a_buffer_with_offsets_and_lengths_equals_its_capture_batch():
    batch = batches(linklayer.CAPTURES / "zeek-tcp-truncated-header.pcap")[0]
    plain = shard_of_batch(batch.buffer.tobytes(), 6, offsets=batch.offsets, lengths=batch.lengths.tolist())
    # (a capture batch also knows its link verdicts: every packet of this one is IP)
    assert (batch.verdicts == 0).all()
    assert plain.tolist() == shard_of_batch(batch, 6).tolist()


def test_an_empty_batch_has_no_shards():
    assert shard_of_batch(b"", 4, offsets=[], lengths=[]).shape == (0,)


# ---- what gets which hash ----

A4, B4 = "198.18.0.1", "198.19.0.2"
A6, B6 = "2001:db8::1", "2001:db8:ffff::2"


def shard_of_packets(pkts: list[bytes], shards: int = 64, reta_size: int = 128) -> list[int]:
    offsets = np.cumsum([0] + [len(p) for p in pkts[:-1]])
    return shard_of_batch(b"".join(pkts), shards, reta_size=reta_size, offsets=offsets,
                          lengths=[len(p) for p in pkts]).tolist()


def two_tuple_shard(a, b, shards: int = 64) -> int:
    return queue_of(toeplitz(rss_input(a, b), RSS_KEY_SYMMETRIC), shards)


def four_tuple_shard(a, b, pa, pb, shards: int = 64) -> int:
    return queue_of(toeplitz(rss_input(a, b, pa, pb), RSS_KEY_SYMMETRIC), shards)


@pytest.mark.parametrize("a, b", [(A4, B4), (A6, B6)])
def test_a_tcp_packet_takes_its_four_tuple_and_its_reply_the_same(a, b):
    syn = packets.tcp_segment(a, b, 40000, 443)
    synack = packets.tcp_segment(b, a, 443, 40000, flags=0x12)
    make = packets.ipv4_packet if ":" not in a else packets.ipv6_packet
    got = shard_of_packets([make(a, b, syn), make(b, a, synack)])
    assert got == [four_tuple_shard(a, b, 40000, 443)] * 2


@pytest.mark.parametrize("a, b", [(A4, B4), (A6, B6)])
def test_a_tcp_packet_with_a_bad_checksum_keeps_its_four_tuple(a, b):
    seg = packets.tcp_segment(a, b, 40000, 443, checksum=0x1234)
    make = packets.ipv4_packet if ":" not in a else packets.ipv6_packet
    assert shard_of_packets([make(a, b, seg)]) == [four_tuple_shard(a, b, 40000, 443)]


# the option layouts the hash reads straight from the bytes (Linux's), and others it
# leaves to the parser: each with no damage, and with random bytes of its IP and TCP
# headers and options overwritten
_OPTIONS = [None, {"timestamp": (1, 2)}, {"mss": 1460, "sack_permitted": True, "timestamp": (5, 0), "wscale": 7},
            {"mss": 1460}, {"mss": 536, "wscale": 2}, {"sack_permitted": True}, b"\x01\x01\x08\x0a" + bytes(8),
            b"\x02\x04\x05\xb4\x00", b"\x08\x0a" + bytes(8) + b"\x01\x01", b"\x1e\x03\x00"]


@pytest.mark.parametrize("seed", range(4))
def test_damaged_ipv4_tcp_headers_are_hashed_by_the_rule(seed):
    # the hash of the common IPv4 shapes reads the bytes itself rather than parse the
    # packet: on every damage the parser would see (version and header length, the
    # total length, the protocol, fragment bits, the data offset, the options) its
    # choice between the 4-tuple, the 2-tuple and nothing must stay the parser's
    rng = np.random.default_rng(seed)
    pkts = []
    for i in range(1500):
        opts = _OPTIONS[i % len(_OPTIONS)]
        pkt = bytearray(fasttcp.build(A4, B4, 1024 + i, 443, flags=0x10, seq=i, options=opts,
                                      payload=bytes(int(rng.integers(0, 30)))))
        for _ in range(int(rng.integers(0, 3))):
            at = int(rng.choice([0, 2, 3, 6, 7, 9, 32, 33, *range(40, min(len(pkt), 60))]))
            if at < len(pkt):
                pkt[at] = int(rng.integers(0, 256))
        if rng.random() < 0.1:
            pkt = pkt[:int(rng.integers(1, len(pkt) + 1))]
        pkts.append(bytes(pkt))
    offsets = np.cumsum([0] + [len(p) for p in pkts[:-1]]).astype(np.int64)
    lengths = np.array([len(p) for p in pkts], dtype=np.int64)
    buf = np.frombuffer(b"".join(pkts), dtype=np.uint8)
    batch = fasttcp.CaptureBatch(buf, offsets, lengths, np.zeros(len(pkts), np.int64), lengths.copy(),
                                 np.zeros(len(pkts), np.uint8), np.zeros(len(pkts), np.uint32),
                                 np.zeros(len(pkts), np.uint8), np.ones(len(pkts), bool))
    for shards in (3, 64):
        assert shard_of_batch(batch, shards).tolist() == expected_shards(batch, shards)


def test_other_protocols_and_fragments_take_the_address_pair():
    udp = (40000).to_bytes(2, "big") + (53).to_bytes(2, "big") + (8).to_bytes(2, "big") + b"\0\0"
    seg = packets.tcp_segment(A4, B4, 40000, 443, payload=b"x" * 40)
    seg6 = packets.tcp_segment(A6, B6, 40000, 443, payload=b"x" * 40)
    pkts = [
        packets.ipv4_packet(A4, B4, udp, protocol=packets.IPPROTO_UDP),
        packets.ipv4_packet(B4, A4, udp, protocol=packets.IPPROTO_UDP),
        # RSS hashes every fragment by its addresses, the first one too (NDIS_HASH_IPV4)
        packets.ipv4_packet(A4, B4, seg[:32], flags_frag=0x2000, total_length=52),
        packets.ipv4_packet(B4, A4, seg[32:], flags_frag=4),
        packets.ipv6_packet(A6, B6, udp, upper_protocol=packets.IPPROTO_UDP),
        packets.ipv6_packet(A6, B6, seg6[:32], ext_headers=[(packets.IPPROTO_FRAGMENT,
                                                             packets.fragment_header(more=True))]),
        packets.ipv6_packet(B6, A6, seg6[32:], ext_headers=[(packets.IPPROTO_FRAGMENT,
                                                             packets.fragment_header(offset=4))]),
        # a TCP header with a data offset below 5: no ports to trust
        packets.ipv4_packet(A4, B4, packets.tcp_segment(A4, B4, 1, 2, data_offset=4)),
    ]
    v4, v6 = two_tuple_shard(A4, B4), two_tuple_shard(A6, B6)
    assert shard_of_packets(pkts) == [v4, v4, v4, v4, v6, v6, v6, v4]
    # (the pairs' shards are not their 4-tuples', so the rows above tell the two apart)
    assert v4 not in (four_tuple_shard(A4, B4, 40000, 53), four_tuple_shard(A4, B4, 40000, 443),
                      four_tuple_shard(A4, B4, 1, 2))
    assert v6 not in (four_tuple_shard(A6, B6, 40000, 53), four_tuple_shard(A6, B6, 40000, 443))


def test_what_is_not_ip_goes_to_shard_zero():
    good = packets.ipv4_packet(A4, B4, packets.tcp_segment(A4, B4, 40000, 443))
    assert four_tuple_shard(A4, B4, 40000, 443) != 0          # (so a 0 below says something)
    pkts = [b"", b"\x45", bytes([0x55]) + good[1:], good[:19], bytes(40), good]
    assert shard_of_packets(pkts) == [0, 0, 0, 0, 0, four_tuple_shard(A4, B4, 40000, 443)]


def test_a_bad_link_verdict_goes_to_shard_zero_whatever_the_bytes():
    batch = batches(linklayer.CAPTURES / "zeek-wikipedia.pcap")[0]
    before = shard_of_batch(batch, 8)
    assert before[::2].any() and before[1::2].any()
    verdicts = batch.verdicts.copy()
    verdicts[::2] = int(Verdict.NOT_IP)
    damaged = fasttcp.CaptureBatch(batch.buffer, batch.offsets, batch.lengths, batch.ts_ns, batch.wire_lengths,
                                   verdicts, batch.interfaces, batch.frames, batch.snapped)
    after = shard_of_batch(damaged, 8)
    assert not after[::2].any()
    assert after[1::2].tolist() == before[1::2].tolist()


def test_a_snapped_first_fragment_is_hashed_as_the_tracker_keys_it():
    # a first fragment whose TCP header arrived whole but whose payload the snap length
    # cut: the tracker keys it by its 4-tuple, so the shard follows the 4-tuple too
    seg = packets.tcp_segment(A4, B4, 40000, 443, payload=b"x" * 40)
    first = packets.ipv4_packet(A4, B4, seg[:32], flags_frag=0x2000, total_length=52)
    assert shard_of_packets([first[:44]]) == [four_tuple_shard(A4, B4, 40000, 443)]
    assert shard_of_packets([first]) == [two_tuple_shard(A4, B4)]


# ---- spread ----

@pytest.fixture(scope="module")
def synthetic_capture(tmp_path_factory):
    from fasttcp.bench.tracker import synth_capture

    path = tmp_path_factory.mktemp("rss") / "synth.pcap"
    flows_ = synth_capture(path, 24_000, 100)
    return path, flows_


@pytest.mark.parametrize("shards", [2, 4])
@pytest.mark.parametrize("source", ["synthetic", "zeek-echo-connections.pcap"])
def test_many_flows_spread_evenly(source, shards, synthetic_capture):
    path = synthetic_capture[0] if source == "synthetic" else linklayer.CAPTURES / source
    counts = np.zeros(shards, dtype=np.int64)
    for batch in batches(path):
        counts += np.bincount(shard_of_batch(batch, shards), minlength=shards)
    share = counts / counts.sum() * shards
    assert share.min() > 0.9 and share.max() < 1.1, counts


@pytest.mark.parametrize("path", CAPTURE_FILES, ids=lambda p: p.name)
def test_the_scanner_shards_as_shard_of_batch_does_on_every_capture(path):
    """read_pcap(shards=RssShards(...)) computes each packet's shard as it scans the
    record: the same values as shard_of_batch over the batch, for any sharding, with a
    fresh or reused array per batch."""
    specs = [(RssShards(2), {}), (RssShards(3, reta_size=256), {"reta_size": 256}),
             (RssShards(8, key=RSS_KEY_MICROSOFT), {"key": RSS_KEY_MICROSOFT})]
    for spec, kw in specs:
        for buffers in (0, 3):
            n = 0
            for batch in fasttcp.read_pcap(path, batch_bytes=1 << 14, buffers=buffers, shards=spec):
                assert batch.shards is not None and batch.shards.dtype == np.uint16
                assert batch.shards.tolist() == shard_of_batch(batch, spec.shards, **kw).tolist()
                n += len(batch)
            assert n == sum(len(b) for b in fasttcp.read_pcap(path))


def test_the_scanner_shards_a_pipe_as_a_file():
    path = linklayer.CAPTURES / "zeek-ftp-ipv6.pcap"
    r, w = os.pipe()
    data = path.read_bytes()
    t = threading.Thread(target=lambda: (os.write(w, data), os.close(w)))
    t.start()
    try:
        got = [b.shards.copy() for b in fasttcp.read_pcap(f"/dev/fd/{r}", batch_bytes=4096, buffers=2,
                                                          shards=RssShards(4))]
    finally:
        t.join(30)
        os.close(r)
    want = [shard_of_batch(b, 4) for b in fasttcp.read_pcap(path, batch_bytes=4096)]
    assert np.array_equal(np.concatenate(got), np.concatenate(want))


def test_a_batch_without_a_sharding_has_none_and_a_copy_keeps_them():
    path = CAPTURE_FILES[0]
    assert all(b.shards is None for b in fasttcp.read_pcap(path))
    for b in fasttcp.read_pcap(path, buffers=2, shards=RssShards(5)):
        c = b.copy()
        assert np.array_equal(c.shards, b.shards) and not np.shares_memory(c.shards, b.shards)


def test_rss_shards_are_equal_when_their_arguments_are():
    assert RssShards(4) == RssShards(4, reta_size=128, key=RSS_KEY_SYMMETRIC)
    assert len({RssShards(4), RssShards(4)}) == 1
    assert RssShards(4) != RssShards(4, reta_size=256)
    assert RssShards(4) != RssShards(4, key=RSS_KEY_MICROSOFT)
    assert RssShards(4) != RssShards(5)
    assert RssShards(4) != 4
    assert (RssShards(3).shards, RssShards(3).reta_size) == (3, 128)
    assert RssShards(3).reta.tolist() == [i % 3 for i in range(128)]
