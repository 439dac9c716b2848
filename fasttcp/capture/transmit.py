"""Send batches of packets out of an interface: `Transmitter`, over an AF_PACKET socket
with a PACKET_TX_RING ("ring") or sendmmsg ("sendmmsg").

The socket is opened with protocol 0, so it receives nothing (a transmit-only socket
is not handed a copy of every packet on the interface), and bound to the interface;
the kernel infers each frame's protocol from its Ethernet header. The hot loop (frame
building, the ring walk, sendmmsg) is C: `fasttcp.capture.tx`.
"""
from __future__ import annotations

import fcntl
import os
import socket
import struct
from types import TracebackType
from typing import Any, Self

from fasttcp.capture.tx import ETH_HEADER_LEN, TxEngine
from fasttcp.errors import UsageError

__all__ = ["Transmitter", "DEFAULT_DST_MAC", "DEFAULT_METHOD", "METHODS", "parse_mac", "format_mac"]

METHODS = ("ring", "sendmmsg")
DEFAULT_METHOD = "sendmmsg"
"""The faster of the two sending frames of one size into a veth (benchmarks/live_transmit.py:
ahead in 5 of 6 comparisons, by 3-17%), level with the ring replaying the bench capture
(benchmarks/live_replay.py); figures in docs/live.md. It also needs no ring memory and
sees every frame the kernel drops (ENOBUFS)."""

DEFAULT_DST_MAC = bytes.fromhex("00005e005300")
"""00:00:5e:00:53:00, the first of the unicast addresses RFC 7042 section 2.1.2 sets
aside for documentation: no host owns it, so a receiving kernel files the frames as
PACKET_OTHERHOST and its IP stack ignores them (no RST answers to replayed segments),
while packet taps (tcpdump, LiveCapture) on the receiving interface still see them."""

ARPHRD_ETHER = 1                       # <linux/if_arp.h>
SIOCGIFMTU = 0x8921                    # <linux/sockios.h>
IFNAMSIZ = 16                          # <linux/if.h>: 15 bytes and a NUL
TPACKET_ALIGNMENT = 16                 # <linux/if_packet.h>: frame sizes are multiples of it
MIN_FRAME_BYTES = 128
MAX_FRAME_BYTES = 1 << 18              # a 64 KiB GSO frame and room to spare
MAX_RING_BYTES = 1 << 30
RING_BLOCK_BYTES = 64 << 10            # ring memory comes in blocks; frames never straddle one
SEND_TIMEOUT = 5.0
"""Seconds a blocking send may wait for the kernel (SO_SNDTIMEO): a full send buffer or
ring frames that never come back (a link that stopped) end the batch there, the rest
counted `would_block`, instead of hanging the caller."""


def parse_mac(value: object, name: str) -> bytes:
    """A MAC address given as 6 bytes or as text "aa:bb:cc:dd:ee:ff" (or with '-').
    Raises UsageError for anything else."""
    if isinstance(value, bytes | bytearray | memoryview):
        mac = bytes(value)
        if len(mac) == 6:
            return mac
        raise UsageError(f"{name} must be 6 bytes, got {len(mac)}")
    if isinstance(value, str):
        parts = value.replace("-", ":").split(":")
        if len(parts) == 6 and all(len(p) == 2 for p in parts):
            try:
                return bytes(int(p, 16) for p in parts)
            except ValueError:
                pass
        raise UsageError(f"{name} must look like aa:bb:cc:dd:ee:ff, got {value!r}")
    raise UsageError(f"{name} must be 6 bytes or a string like aa:bb:cc:dd:ee:ff, got {type(value).__name__}")


def format_mac(mac: bytes) -> str:
    """aa:bb:cc:dd:ee:ff."""
    return ":".join(f"{b:02x}" for b in mac)


def _check_int(value: object, name: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise UsageError(f"{name} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise UsageError(f"{name} must be {low}..{high}, got {value}")
    return value


def _check_interface(interface: object) -> str:
    if not isinstance(interface, str):
        raise UsageError(f"interface must be a str, got {type(interface).__name__}")
    try:
        raw = interface.encode()     # as socket.bind passes it (a lone surrogate cannot be)
    except UnicodeEncodeError:
        raise UsageError(f"interface must be an interface name in UTF-8, got {interface!r}") from None
    if not 0 < len(raw) < IFNAMSIZ or "\0" in interface or "/" in interface:
        raise UsageError(f"interface must be an interface name of 1..{IFNAMSIZ - 1} bytes, got {interface!r}")
    return interface


def ring_geometry(ring_bytes: int, frame_bytes: int) -> tuple[int, int]:
    """(block_size, block_nr) of a TX ring of about `ring_bytes` of `frame_bytes` frames:
    blocks are whole pages (packet_mmap.rst) of at least RING_BLOCK_BYTES. Raises
    UsageError when not even one block fits in ring_bytes."""
    page = os.sysconf("SC_PAGE_SIZE")
    block = max(RING_BLOCK_BYTES, -(-frame_bytes // page) * page)
    if ring_bytes < block:
        raise UsageError(f"ring_bytes must be at least one ring block ({block} bytes for {frame_bytes}-byte "
                         f"frames), got {ring_bytes}")
    return block, ring_bytes // block


class Transmitter:
    """Packets out of `interface` (an Ethernet-like interface; root or CAP_NET_RAW).

    `method` "sendmmsg" (the default) sends up to 1024 frames per system call; "ring"
    fills a PACKET_TX_RING of `ring_bytes` in `frame_bytes` frames and kicks the kernel
    with one send() per batch. `send_packets` prepends an Ethernet header (source `src_mac`, default
    the interface's; destination `dst_mac`, default `DEFAULT_DST_MAC`); `send_frames`
    sends frames as given. `qdisc_bypass` sets PACKET_QDISC_BYPASS (the driver is called
    directly; taps on this host no longer see the frames).

    Raises UsageError for bad arguments or a non-Ethernet interface, PermissionError
    without the privilege, OSError(ENODEV) for an interface that does not exist."""

    def __init__(self, interface: str, *, method: str = DEFAULT_METHOD, ring_bytes: int = 4 << 20,
                 frame_bytes: int = 2048, src_mac: bytes | str | None = None, dst_mac: bytes | str | None = None,
                 qdisc_bypass: bool = False) -> None:
        self.interface = _check_interface(interface)
        if method not in METHODS:
            raise UsageError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        _check_int(ring_bytes, "ring_bytes", 1, MAX_RING_BYTES)
        _check_int(frame_bytes, "frame_bytes", MIN_FRAME_BYTES, MAX_FRAME_BYTES)
        if frame_bytes % TPACKET_ALIGNMENT:
            raise UsageError(f"frame_bytes must be a multiple of {TPACKET_ALIGNMENT}, got {frame_bytes}")
        if not isinstance(qdisc_bypass, bool):
            raise UsageError(f"qdisc_bypass must be a bool, got {type(qdisc_bypass).__name__}")
        # (checked for either method: a setting that is wrong is wrong whichever is used)
        block, blocks = ring_geometry(ring_bytes, frame_bytes)
        dst = DEFAULT_DST_MAC if dst_mac is None else parse_mac(dst_mac, "dst_mac")
        src = None if src_mac is None else parse_mac(src_mac, "src_mac")
        self.method = method
        self._engine: TxEngine | None = None
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                                  struct.pack("ll", int(SEND_TIMEOUT), 0))
            self._sock.bind((interface, 0))
            name = self._sock.getsockname()
            if name[3] != ARPHRD_ETHER:
                raise UsageError(f"{interface} is not an Ethernet interface (ARPHRD {name[3]})")
            self.ifindex = socket.if_nametoindex(interface)
            self.mtu = self._read_mtu()
            self.src_mac = src if src is not None else bytes(name[4][:6])
            self.dst_mac = dst
            self._engine = TxEngine(self._sock.fileno(), method, self.dst_mac, self.src_mac,
                                    self.mtu + ETH_HEADER_LEN, block_size=block, block_nr=blocks,
                                    frame_size=frame_bytes, qdisc_bypass=qdisc_bypass)
        except BaseException:
            self._sock.close()
            raise
        self.frame_bytes = frame_bytes
        self.frames = self._engine.frame_nr

    def _read_mtu(self) -> int:
        ifreq = struct.pack(f"{IFNAMSIZ}si", self.interface.encode(), 0)
        return int(struct.unpack(f"{IFNAMSIZ}si", fcntl.ioctl(self._sock.fileno(), SIOCGIFMTU, ifreq))[1])

    @property
    def max_frame(self) -> int:
        """The largest frame sent, Ethernet header included (the MTU plus 14, or what a
        ring frame holds: frame_bytes - DATA_OFFSET); longer ones are counted too_big."""
        return int(self._live().max_frame)

    def _live(self) -> TxEngine:
        if self._engine is None:
            raise UsageError("the transmitter is closed")
        return self._engine

    def send_packets(self, buffer: Any, offsets: Any, lengths: Any) -> int:
        """Send IP packets (IPv4 or IPv6, e.g. `Endpoint.transmit_batch()`'s) each behind an
        Ethernet header of ours, the ethertype from the IP version. Returns how many were
        handed to the kernel; the rest are counted in `stats` (not_ip, too_big,
        would_block). Raises UsageError for a bad batch (nothing is sent), OSError as the
        kernel says."""
        return int(self._live().send(buffer, offsets, lengths, True))

    def send_frames(self, buffer: Any, offsets: Any, lengths: Any) -> int:
        """Send whole Ethernet frames as given; as `send_packets` otherwise (frames shorter
        than an Ethernet header are counted too_short)."""
        return int(self._live().send(buffer, offsets, lengths, False))

    def flush(self) -> None:
        """Wait until the kernel has sent everything handed to it. Raises OSError as send()
        does (ETIMEDOUT: frames still in flight after SEND_TIMEOUT seconds)."""
        self._live().flush()

    @property
    def stats(self) -> dict[str, int]:
        """sent (handed to the kernel), bytes, too_big, too_short, not_ip, dropped (of the
        sent, reported dropped on the way: sendmmsg), wrong_format, would_block, syscalls,
        ring_full, retried (ring frames the device refused and the kernel kept to send
        again)."""
        return dict(self._live().stats())

    def close(self) -> None:
        """Send what is queued, unmap the ring and close the socket. Idempotent."""
        if self._engine is None:
            return
        try:
            self._engine.flush()
        except OSError:
            pass                          # the interface went away: nothing left to send to
        finally:
            self._engine.close()
            self._engine = None
            self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._engine is None else f"{self.stats['sent']} sent"
        return f"<Transmitter {self.interface} {self.method} {state}>"
