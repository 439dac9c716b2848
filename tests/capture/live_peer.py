"""Real Linux TCP traffic for the live-capture tests (run inside a namespace).

    python live_peer.py server PORT SECONDS          # echo server on [::]:PORT (v4 and v6)
    python live_peer.py clients V4 V6 PORT N         # N connections, alternating families
    python live_peer.py syns V4 PORT COUNT BAD       # COUNT raw IPv4 SYNs (BAD: wrong checksum)
    python live_peer.py udp V4 PORT COUNT GAP        # COUNT UDP datagrams, GAP seconds apart

Clients send 100+i bytes, read the echo, half-close and wait for the server's FIN; every
fifth connection goes to PORT+1, where nothing listens (a reset). Prints one JSON line.
"""
from __future__ import annotations

import json
import socket
import struct
import sys
import threading
import time

TIMEOUT = 10.0


def serve(port: int, seconds: float) -> None:
    lst = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    lst.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind(("::", port))
    lst.listen(512)
    lst.settimeout(0.2)
    print(json.dumps({"ready": True}), flush=True)
    accepted = 0

    def echo(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(TIMEOUT)
            while data := conn.recv(65536):
                conn.sendall(data)

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            conn, _ = lst.accept()
        except TimeoutError:
            continue
        accepted += 1
        threading.Thread(target=echo, args=(conn,), daemon=True).start()
    print(json.dumps({"accepted": accepted}), flush=True)


def clients(v4: str, v6: str, port: int, n: int) -> None:
    done = refused = 0
    for i in range(n):
        family, host = (socket.AF_INET, v4) if i % 2 == 0 else (socket.AF_INET6, v6)
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(TIMEOUT)
            if i % 5 == 4:
                try:
                    s.connect((host, port + 1))
                except ConnectionRefusedError:
                    refused += 1
                continue
            s.connect((host, port))
            msg = bytes([i % 251]) * (100 + i)
            s.sendall(msg)
            got = b""
            while len(got) < len(msg):
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
            s.shutdown(socket.SHUT_WR)
            while s.recv(65536):
                pass
            done += got == msg
    print(json.dumps({"done": done, "refused": refused}), flush=True)


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def syns(dst: str, port: int, count: int, bad: bool) -> None:
    """SYNs from this namespace's address to dst:port through a raw socket: the kernel
    fills the IP header's checksum and nothing else (IP_HDRINCL), so these packets carry
    exactly the TCP checksum written here -- right, or off by one when `bad`."""
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    src = socket.inet_aton(_source_for(dst))
    d = socket.inet_aton(dst)
    sent = 0
    for i in range(count):
        tcp = struct.pack("!HHIIBBHHH", 40000 + i % 20000, port, i, 0, 5 << 4, 0x02, 65535, 0, 0)
        c = _csum(src + d + struct.pack("!BBH", 0, 6, len(tcp)) + tcp)
        c = (c + 1) & 0xFFFF if bad else c
        tcp = tcp[:16] + struct.pack("!H", c) + tcp[18:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), i & 0xFFFF, 0, 64, 6, 0, src, d)
        try:
            s.sendto(ip + tcp, (dst, 0))
            sent += 1
        except BlockingIOError:
            pass
    print(json.dumps({"sent": sent}), flush=True)


def udp(dst: str, port: int, count: int, gap: float) -> None:
    """Datagrams nobody receives (the other side answers ICMP port unreachable)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(count):
            s.sendto(i.to_bytes(4, "big"), (dst, port))
            time.sleep(gap)
    print(json.dumps({"sent": count}), flush=True)


def _source_for(dst: str) -> str:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.connect((dst, 9))
    try:
        return probe.getsockname()[0]
    finally:
        probe.close()


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "server":
        serve(int(args[0]), float(args[1]))
    elif cmd == "clients":
        clients(args[0], args[1], int(args[2]), int(args[3]))
    elif cmd == "syns":
        syns(args[0], int(args[1]), int(args[2]), args[3] == "1")
    elif cmd == "udp":
        udp(args[0], int(args[1]), int(args[2]), float(args[3]))
    else:
        raise SystemExit(f"unknown command {cmd!r}")
