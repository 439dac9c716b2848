"""The two sides of the transmit tests, each run inside a namespace (`ip netns exec`).

    tx_child.py recv IFACE DST_MAC COUNT TIMEOUT OUT
        a plain AF_PACKET socket on IFACE: prints "ready", then writes every frame sent
        to DST_MAC (in arrival order) to the pcap OUT until COUNT came or TIMEOUT
        seconds passed; prints how many.
    tx_child.py send IFACE METHOD KIND PCAP [key=value ...]
        sends the packets of the raw-IP pcap PCAP (KIND "packets") or the Ethernet
        frames of an Ethernet pcap (KIND "frames") with a Transmitter (keyword
        arguments as key=value: ring_bytes, frame_bytes, qdisc_bypass, dst_mac,
        batch); prints the returned count and the stats as one JSON line.
"""
from __future__ import annotations

import json
import select
import socket
import sys
import time

import numpy as np

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
LINKTYPE_ETHERNET = 1


def receive(iface: str, dst_mac: str, count: int, timeout: float, out: str) -> None:
    from fasttcp import write_pcap

    want = bytes.fromhex(dst_mac.replace(":", ""))
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
    s.bind((iface, 0))
    print("ready", flush=True)
    frames: list[bytes] = []
    end = time.monotonic() + timeout
    while len(frames) < count and time.monotonic() < end:
        if not select.select([s], [], [], 0.2)[0]:
            continue
        data, addr = s.recvfrom(1 << 16)
        if addr[2] != PACKET_OUTGOING and data[:6] == want:
            frames.append(data)
    s.close()
    write_pcap(out, frames, [0.0] * len(frames), linktype=LINKTYPE_ETHERNET)
    print(len(frames), flush=True)


def send(iface: str, method: str, kind: str, path: str, options: list[str]) -> None:
    from fasttcp import read_pcap
    from fasttcp.capture.transmit import Transmitter

    kw: dict[str, object] = {}
    batch = 0
    for opt in options:
        key, value = opt.split("=", 1)
        if key == "batch":
            batch = int(value)
        elif key == "dst_mac":
            kw[key] = value
        elif key == "qdisc_bypass":
            kw[key] = value == "1"
        else:
            kw[key] = int(value)
    bufs, offs, lens = [], [], []
    for b in read_pcap(path):
        bufs.append(b.buffer)
        offs.append(b.offsets)
        lens.append(b.lengths)
    with Transmitter(iface, method=method, **kw) as tx:   # type: ignore[arg-type]
        total = 0
        for buf, off, ln in zip(bufs, offs, lens, strict=True):
            if kind == "frames":
                # read_pcap strips the link layer: the frame starts 14 bytes earlier
                off, ln = off - 14, ln + 14
            step = batch or len(off)
            for i in range(0, len(off), step):
                fn = tx.send_frames if kind == "frames" else tx.send_packets
                total += fn(buf, off[i:i + step], ln[i:i + step])
        tx.flush()
        print(json.dumps({"returned": total, "stats": tx.stats, "src_mac": tx.src_mac.hex()}), flush=True)


if __name__ == "__main__":
    np.seterr(all="raise")
    if sys.argv[1] == "recv":
        receive(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), sys.argv[6])
    else:
        send(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:])
