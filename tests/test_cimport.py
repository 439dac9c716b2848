"""The `.pxd` files are a C API: another Cython module cimports them and gets the same
answers as the Python face.

A small extension is written into a temporary folder, outside the repository, and built
the way a user of the installed package would build theirs: Cython finds the `.pxd`
files through the installed `fasttcp` package, the C compiler finds the headers they
include through ``fasttcp.get_include()``. It calls the checksum kernels
(fasttcp.wire.checksum), the sequence helpers (fasttcp.wire.seq) and both parsers
(fasttcp.wire.codec: the exported ``ft_parse_ip`` and the inline ``ft_parse_ip_inline``
compiled into the extension) filling the structs of fasttcp.wire.defs, and the flow
hash (fasttcp.wire.rss), on real packets, and every answer is compared with
fasttcp.checksum / tcp_checksum / checksum_update, fasttcp.seq, fasttcp.parse and
fasttcp.flow_hash / shard_of_batch.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import sysconfig
import textwrap

import pytest

import fasttcp
from fasttcp import MalformedPacket
from tests import linklayer

PROBE = "ft_cimport_probe"

PROBE_PYX = '''
# cython: language_level=3
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from fasttcp.wire.checksum cimport (ft_csum_buffer, ft_csum_partial, ft_csum_fold, ft_csum_pseudo4,
                                    ft_csum_pseudo6, ft_csum_replace, ft_htons)
from fasttcp.wire.seq cimport (seq_lt, seq_le, seq_gt, seq_ge, seq_add, seq_diff, seq_between,
                               seq_in_window, seq_acceptable)
from fasttcp.wire.codec cimport ft_parse_ip, ft_parse_ip_inline
from fasttcp.wire.defs cimport pkt_t, parse_err_t, FT_OK, OPT_HAS_MSS, OPT_HAS_WSCALE, OPT_HAS_TIMESTAMP
from fasttcp.wire.rss cimport ft_rss_key_t, ft_rss_key_init, ft_rss_packet_hash, ft_rss_shard_batch, ft_toeplitz
from libc.stdint cimport int64_t
from libc.stdlib cimport malloc, free


def checksum(bytes data):
    return ft_csum_buffer(<const char *>data, len(data))


def tcp_checksum(bytes src, bytes dst, bytes tcp):
    cdef uint64_t s
    if len(src) == 4:
        s = ft_csum_pseudo4(<const uint8_t *><const char *>src, <const uint8_t *><const char *>dst, len(tcp), 6)
    else:
        s = ft_csum_pseudo6(<const uint8_t *><const char *>src, <const uint8_t *><const char *>dst, len(tcp), 6)
    s = ft_csum_partial(<const char *>tcp, len(tcp), s)
    return ft_htons(<uint16_t>~ft_csum_fold(s))


def checksum_update(uint16_t csum, bytes old, bytes new):
    return ft_csum_replace(csum, <const uint8_t *><const char *>old, <const uint8_t *><const char *>new, len(old))


def seq_order(uint32_t a, uint32_t b):
    return seq_lt(a, b), seq_le(a, b), seq_gt(a, b), seq_ge(a, b), seq_diff(a, b)


def seq_ranges(uint32_t a, uint32_t b, uint32_t c, uint32_t d):
    return seq_add(a, b), seq_between(a, b, c), seq_in_window(a, b, c), seq_acceptable(a, b, c, d)


cdef dict _fields(const uint8_t *buf, pkt_t *p):
    cdef int n = 4 if p.version == 4 else 16
    return dict(version=p.version, src=(<const char *>p.src)[:n], dst=(<const char *>p.dst)[:n], src_port=p.src_port,
                dst_port=p.dst_port, seq=p.seq, ack=p.ack, flags=p.flags, window=p.window,
                urgent=p.urgent, checksum=p.checksum, header_len=p.header_len, ttl=p.ttl,
                payload=(<const char *>buf)[p.payload_off:p.payload_off + p.payload_len],
                mss=p.opts.mss if p.opts.present & OPT_HAS_MSS else None,
                wscale=p.opts.wscale if p.opts.present & OPT_HAS_WSCALE else None,
                timestamp=(p.opts.tsval, p.opts.tsecr) if p.opts.present & OPT_HAS_TIMESTAMP else None,
                sack=[(p.opts.sack_left[i], p.opts.sack_right[i]) for i in range(p.opts.sack_count)])


def rss(bytes key, bytes packet):
    """(kind, hash) of one packet by the inline helper, and its shard among 7 by the
    exported batch loop (the default indirection table of 128 entries), under `key`."""
    cdef ft_rss_key_t *k = <ft_rss_key_t *>malloc(sizeof(ft_rss_key_t))
    cdef uint32_t h = 0
    cdef int kind
    cdef int64_t off = 0, length = len(packet)
    cdef uint16_t reta[128]
    cdef uint16_t shard = 0xffff
    for i in range(128):
        reta[i] = i % 7
    ft_rss_key_init(k, <const uint8_t *><const char *>key)
    kind = ft_rss_packet_hash(k, <const uint8_t *><const char *>packet, len(packet), &h)
    ft_rss_shard_batch(k, <const uint8_t *><const char *>packet, len(packet), &off, &length, NULL, 1, reta, 127,
                       &shard)
    free(k)
    return kind, h, shard


def toeplitz(bytes key, bytes data):
    return ft_toeplitz(<const uint8_t *><const char *>key, len(key), <const uint8_t *><const char *>data, len(data))


def parse(bytes packet, bint verify, bint inline):
    """(FT_* code, error offset, fields or None)."""
    cdef const uint8_t *buf = <const uint8_t *><const char *>packet
    cdef pkt_t p
    cdef parse_err_t err
    cdef int rc
    if inline:
        rc = ft_parse_ip_inline(buf, len(packet), &p, &err, verify)
    else:
        rc = ft_parse_ip(buf, len(packet), &p, &err, verify)
    if rc != FT_OK:
        return rc, err.offset, None
    return rc, 0, _fields(buf, &p)
'''

# Runs in a fresh interpreter whose working directory is the temporary folder: nothing
# of this checkout is on its path but what the installed package provides. Cython looks
# for `fasttcp/wire/*.pxd` in the folder that holds the package: site-packages once
# installed (on sys.path, where Cython looks anyway), the checkout for an editable
# install (whose import hook Cython cannot see), so it is named as the include path.
BUILD_PY = f'''
import os, fasttcp, numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

ext = Extension("{PROBE}", ["{PROBE}.pyx"], include_dirs=fasttcp.get_include() + [numpy.get_include()])
home = os.path.dirname(os.path.dirname(fasttcp.__file__))
setup(name="{PROBE}", ext_modules=cythonize([ext], include_path=[home], quiet=True),
      script_args=["build_ext", "--inplace", "--build-temp", "build"])
'''


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cimport")
    (folder / f"{PROBE}.pyx").write_text(textwrap.dedent(PROBE_PYX))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", BUILD_PY], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, f"building a module that cimports fasttcp failed:\n{done.stdout}\n{done.stderr}"
    path = folder / f"{PROBE}{sysconfig.get_config_var('EXT_SUFFIX')}"
    assert path.is_file(), done.stdout
    spec = importlib.util.spec_from_file_location(PROBE, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def real_packets() -> list[bytes]:
    """IP packets from captures (IPv4 and IPv6, options, bad checksums, truncation,
    routing headers, fragments) and built ones with every option fasttcp writes."""
    names = ["zeek-http-get.pcap", "zeek-tcp-options.pcap", "zeek-tcp-option-sack.pcap", "zeek-ftp-ipv6.pcap",
             "zeek-chksums-ip4-tcp-bad-chksum.pcap", "zeek-chksums-ip6-route0-tcp-good-chksum.pcap",
             "zeek-tcp-truncated-header.pcap", "zeek-ipv4-fragmented-syn.pcap", "tcpdump-accecn_handshake.pcap"]
    packets = [f.ip for name in names for f in linklayer.read_frames(linklayer.CAPTURES / name) if f.ip]
    opts = {"mss": 1460, "wscale": 7, "sack_permitted": True, "timestamp": (0xFFFFFFF0, 7)}
    for src, dst in (("198.18.0.1", "198.18.0.2"), ("2001:db8::1", "2001:db8::2")):
        packets.append(fasttcp.build(src, dst, 49500, 80, seq=0xFFFFFFFF, flags=fasttcp.Flags.SYN, options=opts))
        packets.append(fasttcp.build(src, dst, 80, 49500, seq=5, ack=6, flags=fasttcp.Flags.ACK | fasttcp.Flags.PSH,
                                     options={"sack": [(1, 2), (0xFFFFFF00, 3)]}, payload=b"odd-length!"))
    return packets


def expected(packet: bytes, verify: bool) -> tuple[int, int, dict | None]:
    """What fasttcp.parse says, in the probe's shape."""
    try:
        s = fasttcp.parse(packet, verify_checksum=verify)
    except MalformedPacket as e:
        return int(e.verdict), e.offset, None
    o = s.options
    return 0, 0, {"version": s.version, "src": s.src.packed, "dst": s.dst.packed, "src_port": s.src_port,
                  "dst_port": s.dst_port, "seq": s.seq, "ack": s.ack, "flags": int(s.flags), "window": s.window,
                  "urgent": s.urgent, "checksum": s.checksum, "header_len": s.header_len, "ttl": s.ttl,
                  "payload": bytes(s.payload), "mss": o.mss, "wscale": o.wscale, "timestamp": o.timestamp,
                  "sack": o.sack}


def test_the_parsers_through_cimport_equal_fasttcp_parse(probe):
    packets = real_packets()
    outcomes = set()
    for i, packet in enumerate(packets):
        for verify in (True, False):
            want = expected(packet, verify)
            outcomes.add(want[0])
            for inline in (False, True):
                assert probe.parse(packet, verify, inline) == want, (i, verify, inline)
    # the packets reach more than the happy path: bad checksums, truncation, fragments
    assert {0, int(fasttcp.Verdict.BAD_CHECKSUM), int(fasttcp.Verdict.TRUNCATED)} <= outcomes, outcomes


def test_the_checksum_kernels_through_cimport_equal_fasttcp(probe):
    summed = 0
    for packet in real_packets():
        for data in (packet, packet[:-1], packet[:1], b""):          # odd lengths too
            assert probe.checksum(data) == fasttcp.checksum(data)
        # the TCP segment as the IP header delimits it (the test's own decoder)
        info = linklayer.ip_info(packet)
        if info.proto != 6 or info.fragment or info.claimed_len is None or len(packet) < info.claimed_len:
            continue
        tcp = packet[info.header_len:info.claimed_len]
        if len(tcp) < 20:
            continue
        src, dst = (packet[12:16], packet[16:20]) if info.version == 4 else (packet[8:24], packet[24:40])
        assert probe.tcp_checksum(src, dst, tcp) == fasttcp.tcp_checksum(src, dst, tcp)
        # RFC 1624: the ports swapped, the stored checksum updated to match
        stored, old, new = int.from_bytes(tcp[16:18], "big"), tcp[:4], tcp[2:4] + tcp[:2]
        assert probe.checksum_update(stored, old, new) == fasttcp.checksum_update(stored, old, new)
        summed += 1
    assert summed > 50


NUMBERS = [0, 1, 100, 0x7FFFFFFF, 0x80000000, 0x80000001, 0xFFFFFFF0, 0xFFFFFFFF]


def test_the_sequence_helpers_through_cimport_equal_fasttcp_seq(probe):
    seq = fasttcp.seq
    for a in NUMBERS:
        for b in NUMBERS:
            assert probe.seq_order(a, b) == (seq.lt(a, b), seq.le(a, b), seq.gt(a, b), seq.ge(a, b), seq.diff(a, b))
            for c in NUMBERS:
                for d in (0, 1, 65535):
                    assert probe.seq_ranges(a, b, c, d) == (seq.add(a, b), seq.between(a, b, c),
                                                            seq.in_window(a, b, c), seq.acceptable(a, b, c, d))


def test_the_flow_hash_through_cimport_equals_fasttcp(probe):
    from fasttcp.wire.rss import RSS_KEY_MICROSOFT, RSS_KEY_SYMMETRIC, toeplitz_hash

    kinds = set()
    for key in (RSS_KEY_SYMMETRIC, RSS_KEY_MICROSOFT):
        for packet in real_packets():
            kind, h, shard = probe.rss(key, packet)
            kinds.add(kind)
            assert shard == int(fasttcp.shard_of_batch(packet, 7, key=key, offsets=[0], lengths=[len(packet)])[0])
            if kind == 2:                 # the 4-tuple: the packet's own, as parse_batch reads it
                row = fasttcp.parse_batch(packet, [0], [len(packet)], verify_checksum=False)[0]
                n = 4 if row["version"] == 4 else 16
                assert h == fasttcp.flow_hash(bytes(row["src"][:n]), bytes(row["dst"][:n]), int(row["src_port"]),
                                              int(row["dst_port"]), key=key)
                assert shard == int(fasttcp.shard_of_hash(h, 7))
        assert probe.toeplitz(key, packet[:36]) == toeplitz_hash(packet[:36], key=key)
    assert kinds == {1, 2}, kinds          # fragments and damaged headers take the address pair
