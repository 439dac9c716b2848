"""A plain AF_PACKET socket with the faces of `LiveCapture` (RX) and `Transmitter` (TX):
one system call per packet, for hosts where the ring modules are not built, and as the
reference the rings are measured against.

Both are ``SOCK_DGRAM`` packet sockets (packet(7)): the kernel strips the link header on
receive and builds it on send from the destination MAC we pass, so what crosses this
edge is IP packets, as for the rings. ``direction="in"`` skips PACKET_OUTGOING, the
copies of what this host sends.
"""
from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import numpy as np

from fasttcp.capture.transmit import SEND_TIMEOUT
from fasttcp.errors import UsageError
from fasttcp.wire.checksum import tcp_checksum

__all__ = ["SocketBatch", "PacketSocketCapture", "PacketSocketTransmitter"]

ETH_P_ALL = 0x0003          # include/uapi/linux/if_ether.h
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
PACKET_OUTGOING = 4         # include/uapi/linux/if_packet.h: sll_pkttype of our own sends
_RCVBUF = 32 << 20          # SO_RCVBUFFORCE: room for a burst of SYN-ACKs between reads
_SNAP = 65536
_BATCH_BYTES = 4 << 20      # one batch's buffer: at most this many bytes are read per call
SOL_PACKET = 263
PACKET_AUXDATA = 8          # struct tpacket_auxdata with every packet: tp_status first
TP_STATUS_CSUMNOTREADY = 1 << 3   # the local stack left the checksum to offload (veth, lo)
_AUXDATA_SPACE = socket.CMSG_SPACE(20)
_IPPROTO_TCP = 6


@dataclass
class SocketBatch:
    """What `PacketSocketCapture.next_batch` returns: IP packets in one buffer."""
    buffer: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray

    def __len__(self) -> int:
        return int(self.offsets.shape[0])


def _check_interface(interface: object) -> str:
    if not isinstance(interface, str) or not interface or len(interface.encode()) >= 16:
        raise UsageError(f"not an interface name: {interface!r}")
    return interface


def _checksum_not_ready(ancillary: list[tuple[int, int, bytes]]) -> bool:
    for level, kind, data in ancillary:
        if level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= 4:
            return bool(struct.unpack_from("=I", data)[0] & TP_STATUS_CSUMNOTREADY)
    return False


def _complete_tcp_checksum(pkt: memoryview) -> bool:
    """Write the full TCP checksum into a packet the sending stack left to offload (its
    field holds only the pseudo-header sum); True if it was TCP and is now complete."""
    n = len(pkt)
    if n < 20:
        return False
    src: ipaddress.IPv4Address | ipaddress.IPv6Address
    dst: ipaddress.IPv4Address | ipaddress.IPv6Address
    version = pkt[0] >> 4
    if version == 4:
        ihl = (pkt[0] & 0x0F) * 4
        total = min(n, (pkt[2] << 8) | pkt[3])
        if pkt[9] != _IPPROTO_TCP or ihl < 20 or total < ihl + 20:
            return False
        src, dst = ipaddress.IPv4Address(bytes(pkt[12:16])), ipaddress.IPv4Address(bytes(pkt[16:20]))
        start = ihl
    elif version == 6 and n >= 60:
        if pkt[6] != _IPPROTO_TCP:            # extension headers: left as they are
            return False
        total = min(n, 40 + ((pkt[4] << 8) | pkt[5]))
        src, dst = ipaddress.IPv6Address(bytes(pkt[8:24])), ipaddress.IPv6Address(bytes(pkt[24:40]))
        start = 40
    else:
        return False
    if total < start + 20:
        return False
    pkt[start + 16] = 0
    pkt[start + 17] = 0
    csum = tcp_checksum(src, dst, pkt[start:total])
    pkt[start + 16] = csum >> 8
    pkt[start + 17] = csum & 0xFF
    return True


class PacketSocketCapture:
    """IP packets arriving on ``interface`` (``direction`` "in" or "both")."""

    def __init__(self, interface: str, *, direction: str = "in") -> None:
        self.interface = _check_interface(interface)
        if direction not in ("in", "both"):
            raise UsageError(f"direction is 'in' or 'both', not {direction!r}")
        self._incoming_only = direction == "in"
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        try:
            try:
                self._sock.setsockopt(socket.SOL_SOCKET, 33, _RCVBUF)      # SO_RCVBUFFORCE (root)
            except OSError:
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
            self._sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            self._sock.bind((self.interface, ETH_P_ALL))
        except OSError:
            self._sock.close()
            raise
        self._buf = np.empty(_BATCH_BYTES + _SNAP, dtype=np.uint8)
        self.packets = 0
        self.csum_completed = 0

    def fileno(self) -> int:
        return self._sock.fileno()

    def next_batch(self, timeout: float | None = None) -> SocketBatch | None:
        """Every IP packet waiting (after waiting up to ``timeout`` seconds for the first);
        None if none came. The batch owns its memory."""
        self._sock.settimeout(timeout)
        view = memoryview(self._buf)     # type: ignore[arg-type]
        offsets: list[int] = []
        lengths: list[int] = []
        used = 0
        while used < _BATCH_BYTES:
            try:
                flags = socket.MSG_DONTWAIT if offsets else 0
                n, anc, _, addr = self._sock.recvmsg_into([view[used:used + _SNAP]], _AUXDATA_SPACE, flags)
            except (BlockingIOError, TimeoutError):
                break
            if addr[1] not in (ETH_P_IP, ETH_P_IPV6) or (self._incoming_only and addr[2] == PACKET_OUTGOING):
                continue
            if _checksum_not_ready(anc) and _complete_tcp_checksum(view[used:used + n]):
                self.csum_completed += 1
            offsets.append(used)
            lengths.append(n)
            used += n
        if not offsets:
            return None
        self.packets += len(offsets)
        return SocketBatch(self._buf[:used].copy(), np.array(offsets, np.int64), np.array(lengths, np.int64))

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class PacketSocketTransmitter:
    """Sends IP packets out of ``interface`` to ``dst_mac`` (the kernel adds the
    Ethernet header; the ethertype follows each packet's IP version)."""

    def __init__(self, interface: str, *, dst_mac: bytes | None = None, **_ignored: Any) -> None:
        self.interface = _check_interface(interface)
        if not isinstance(dst_mac, bytes) or len(dst_mac) != 6:
            raise UsageError("dst_mac is 6 bytes")
        self.dst_mac = dst_mac
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
        # a link that stopped sending (a full queue that never drains) must not hold
        # a send for ever: as the ring transmitter, the kernel gives up after
        # SEND_TIMEOUT (SO_SNDTIMEO) and the rest of the batch is counted failed
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", int(SEND_TIMEOUT), 0))
        self.stats = {"sent": 0, "bytes": 0, "failed": 0, "not_ip": 0}

    def send_packets(self, buffer: Any, offsets: Any, lengths: Any) -> int:
        """Send each packet; returns how many the kernel took (the others are counted in
        stats["failed"] or stats["not_ip"]; after a send the kernel held up for
        SEND_TIMEOUT, every packet left in the batch is failed)."""
        view = memoryview(buffer).cast("B")
        sent = 0
        spans = list(zip(np.asarray(offsets).tolist(), np.asarray(lengths).tolist(), strict=True))
        for i, (off, ln) in enumerate(spans):
            pkt = view[off:off + ln]
            version = pkt[0] >> 4 if ln else 0
            if version not in (4, 6):
                self.stats["not_ip"] += 1
                continue
            proto = ETH_P_IP if version == 4 else ETH_P_IPV6
            try:
                self._sock.sendto(pkt, (self.interface, proto, 0, 0, self.dst_mac))
            except BlockingIOError:                     # EAGAIN: SEND_TIMEOUT passed
                self.stats["failed"] += len(spans) - i
                break
            except OSError:
                self.stats["failed"] += 1
                continue
            sent += 1
            self.stats["bytes"] += ln
        self.stats["sent"] += sent
        return sent

    def flush(self) -> None:
        """Nothing is held back: each packet went out in its own system call."""

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
