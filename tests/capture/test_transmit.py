"""Transmitter on a real veth: namespace A sends a known batch (tests/capture/tx_child.py
in a child process), a plain AF_PACKET socket in namespace B receives it. The frames
must arrive byte for byte, in order, behind the right Ethernet header, with each
method, through ring wrap-arounds; what cannot be sent is counted, not sent."""
from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest

from fasttcp import build, read_pcap, write_pcap
from fasttcp.capture.transmit import DEFAULT_DST_MAC, format_mac
from tests.netns import VethPair, veth  # noqa: F401  -- the fixture

CHILD = Path(__file__).parent / "tx_child.py"
LINKTYPE_ETHERNET = 1
ETHERTYPE = {4: 0x0800, 6: 0x86DD}
SMALL_RING = 64 << 10          # 32 frames of 2048: a 300-packet batch wraps the ring ~9 times


def known_packets(n: int) -> list[bytes]:
    """n IP packets, IPv4 and IPv6 in turn, of sizes from 40 to 1500 bytes, each with a
    payload that names it (a reordering or a frame overwritten too early shows)."""
    out = []
    for i in range(n):
        size = 40 + (i * 97) % 1400
        payload = (struct.pack("!I", i) * (size // 4 + 1))[:size]
        if i % 2:
            out.append(build("2001:2::1", "2001:2::2", 40000 + i % 1000, 80, seq=i, payload=payload))
        else:
            out.append(build("198.18.0.1", "198.18.0.2", 40000 + i % 1000, 80, seq=i, payload=payload))
    return out


def expected_frames(packets: list[bytes], dst: bytes, src: bytes) -> list[bytes]:
    return [dst + src + struct.pack("!H", ETHERTYPE[p[0] >> 4]) + p for p in packets]


def received(path: Path) -> list[bytes]:
    frames = []
    for b in read_pcap(path):
        for i in range(len(b)):
            # the whole frame: read_pcap strips 14 bytes of untagged Ethernet
            o, n = int(b.offsets[i]) - 14, int(b.lengths[i]) + 14
            frames.append(bytes(b.buffer[o:o + n]))
    return frames


def exchange(net: VethPair, tmp: Path, method: str, kind: str, pcap: Path, expect: int,
             *options: str, dst: str = format_mac(DEFAULT_DST_MAC)) -> tuple[dict, list[bytes]]:
    """Start the receiver in B, send `pcap` from A; (the sender's report, the frames B got)."""
    out = tmp / f"got-{method}.pcap"
    rx = net.popen(net.b, [sys.executable, str(CHILD), "recv", net.b_if, dst, str(expect), "20", str(out)])
    try:
        assert rx.stdout is not None
        assert rx.stdout.readline().strip() == "ready"
        sent = net.run(net.a, [sys.executable, str(CHILD), "send", net.a_if, method, kind, str(pcap), *options])
        stdout, stderr = rx.communicate(timeout=60)
        assert rx.returncode == 0, stderr
    finally:
        if rx.poll() is None:
            rx.kill()
            rx.wait(timeout=10)
    return json.loads(sent.stdout), received(out)


@pytest.mark.parametrize("method", ["ring", "sendmmsg"])
def test_packets_arrive_byte_identical_in_order_behind_our_ethernet_header(veth, tmp_path, method):  # noqa: F811
    packets = known_packets(300)
    pcap = tmp_path / "packets.pcap"
    write_pcap(pcap, packets)
    report, got = exchange(veth, tmp_path, method, "packets", pcap, len(packets), f"ring_bytes={SMALL_RING}",
                           "batch=70")
    src = bytes.fromhex(veth.mac("a").replace(":", ""))
    assert report["src_mac"] == src.hex()
    assert report["returned"] == len(packets)
    assert report["stats"]["sent"] == len(packets)
    assert report["stats"]["bytes"] == sum(len(p) + 14 for p in packets)
    want = expected_frames(packets, DEFAULT_DST_MAC, src)
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, f"frame {i} differs"


@pytest.mark.parametrize("method", ["ring", "sendmmsg"])
def test_qdisc_bypass_delivers_the_same_frames(veth, tmp_path, method):  # noqa: F811
    packets = known_packets(100)
    pcap = tmp_path / "packets.pcap"
    write_pcap(pcap, packets)
    report, got = exchange(veth, tmp_path, method, "packets", pcap, len(packets), "qdisc_bypass=1")
    src = bytes.fromhex(veth.mac("a").replace(":", ""))
    assert report["stats"]["sent"] == len(packets)
    assert got == expected_frames(packets, DEFAULT_DST_MAC, src)


@pytest.mark.parametrize("method", ["ring", "sendmmsg"])
def test_frames_are_sent_as_given(veth, tmp_path, method):  # noqa: F811
    dst, src = bytes.fromhex("02aabbccddee"), bytes.fromhex("02112233445f")    # not A's MAC: as given
    frames = expected_frames(known_packets(120), dst, src)
    pcap = tmp_path / "frames.pcap"
    write_pcap(pcap, frames, linktype=LINKTYPE_ETHERNET)
    report, got = exchange(veth, tmp_path, method, "frames", pcap, len(frames), dst=format_mac(dst))
    assert report["returned"] == len(frames)
    assert got == frames


@pytest.mark.parametrize("method", ["ring", "sendmmsg"])
def test_what_cannot_be_sent_is_counted_and_not_sent(veth, tmp_path, method):  # noqa: F811
    good = known_packets(6)
    not_ip = b"\x50" + good[0][1:]                               # version nibble 5
    too_big = build("198.18.0.1", "198.18.0.2", 1, 2, payload=b"x" * 1461)   # 1501 bytes > the MTU
    at_mtu = build("198.18.0.1", "198.18.0.2", 1, 2, payload=b"y" * 1460)    # exactly 1500: sent
    assert len(too_big) == 1501 and len(at_mtu) == 1500
    packets = [good[0], not_ip, good[1], too_big, good[2], at_mtu, b"", good[3]]
    pcap = tmp_path / "mixed.pcap"
    write_pcap(pcap, packets)
    report, got = exchange(veth, tmp_path, method, "packets", pcap, 5)
    st = report["stats"]
    assert (report["returned"], st["sent"], st["not_ip"], st["too_big"]) == (5, 5, 2, 1)
    src = bytes.fromhex(veth.mac("a").replace(":", ""))
    assert got == expected_frames([good[0], good[1], good[2], at_mtu, good[3]], DEFAULT_DST_MAC, src)


def test_a_ring_frame_too_small_for_the_packet_counts_it_too_big(veth, tmp_path):  # noqa: F811
    # 512-byte frames carry 480 bytes of frame: a 466-byte IP packet fits, 466 + 1 does not
    fits = build("198.18.0.1", "198.18.0.2", 1, 2, payload=b"a" * 426)
    over = build("198.18.0.1", "198.18.0.2", 1, 2, payload=b"b" * 427)
    assert (len(fits), len(over)) == (466, 467)
    pcap = tmp_path / "sizes.pcap"
    write_pcap(pcap, [fits, over, fits])
    report, got = exchange(veth, tmp_path, "ring", "packets", pcap, 2, "frame_bytes=512")
    assert (report["stats"]["sent"], report["stats"]["too_big"]) == (2, 1)
    assert [g[14:] for g in got] == [fits, fits]


PEER_DOWN_PROBE = """
import errno, json, sys, time
import numpy as np
import fasttcp
from fasttcp import Transmitter
p = fasttcp.build("198.18.0.1", "198.18.0.2", 1, 2, payload=b"x" * 100)
buf = np.frombuffer(p * 50, np.uint8)
off, ln = np.arange(50) * len(p), np.full(50, len(p))
with Transmitter(sys.argv[1], method=sys.argv[2]) as tx:
    t0 = time.monotonic()
    n = tx.send_packets(buf, off, ln)
    try:
        tx.flush()
        flushed = "ok"
    except OSError as e:
        flushed = errno.errorcode[e.errno]
    print(json.dumps({"returned": n, "flush": flushed, "seconds": time.monotonic() - t0, "stats": tx.stats}))
"""


@pytest.mark.parametrize("method", ["ring", "sendmmsg"])
def test_a_device_that_refuses_every_frame_is_counted_and_does_not_hang(veth, method):  # noqa: F811
    # B's end down: A's veth refuses each frame (ENOBUFS). sendmmsg: each one dropped and
    # counted. Ring: the kernel keeps a refused frame to send again when its skb is gone
    # already, and drops it silently when not (tpacket_snd), so how many are retried
    # depends on timing; we retry a bounded time and never hang
    veth.run(veth.b, ["ip", "link", "set", veth.b_if, "down"])
    out = json.loads(veth.run(veth.a, [sys.executable, "-c", PEER_DOWN_PROBE, veth.a_if, method],
                              timeout=60).stdout)
    st = out["stats"]
    assert out["returned"] == st["sent"] == 50
    if method == "sendmmsg":
        assert st["dropped"] == 50 and out["flush"] == "ok"
    else:
        assert st["dropped"] == 0 and out["flush"] in ("ok", "ENOBUFS")
        assert out["seconds"] < 30
