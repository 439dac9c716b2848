"""Move packets between an `Endpoint` and a Linux TUN device (an edge: I/O only).

    with Tun("fttun0") as tun:                    # IFF_TUN | IFF_NO_PI: raw IP packets
        pump(endpoint, tun, until=lambda: done(), timeout=5.0)

`pump` is a small event loop with real time: it reads what the kernel routes to the
device, feeds it to `Endpoint.receive`, runs `Endpoint.poll` at `next_deadline`, writes
`Endpoint.transmit()` back to the device, and can drop chosen packets (loss tests) and
record everything to a pcap. Written with the standard library only (fcntl ioctl on
/dev/net/tun): a TUN device is two system calls, not worth a dependency. Linux only.
"""
from __future__ import annotations

import fcntl
import os
import select
import struct
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

from fasttcp.capture.writer import PcapWriter

__all__ = ["Tun", "pump"]

_TUNSETIFF = 0x400454CA
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000


class Tun:
    """A TUN device opened (or created) by name in the current network namespace."""

    def __init__(self, name: str) -> None:
        if len(name.encode()) >= 16:
            raise ValueError("interface names are at most 15 bytes")
        self.name = name
        self.fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        try:
            fcntl.ioctl(self.fd, _TUNSETIFF, struct.pack("16sH", name.encode(), _IFF_TUN | _IFF_NO_PI))
        except OSError:
            os.close(self.fd)
            raise

    def fileno(self) -> int:
        return self.fd

    def read_all(self) -> list[bytes]:
        """Every packet waiting on the device (non-blocking)."""
        out = []
        while True:
            try:
                out.append(os.read(self.fd, 65536))
            except BlockingIOError:
                return out

    def write(self, packet: bytes) -> None:
        os.write(self.fd, packet)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


Drop = Callable[[bytes, str], bool]     # (packet, "in" | "out") -> drop it?


def pump(endpoint, tun: Tun, *, until: Callable[[], bool], timeout: float,
         on_tick: Callable[[float], None] | None = None, drop: Drop | None = None,
         pcap: PcapWriter | None = None, clock: Callable[[], float] = time.monotonic,
         epoch: float | None = None) -> bool:
    """Run the endpoint against the device until `until()` is true (returns True) or
    `timeout` seconds pass (returns False). `on_tick(now)` runs every turn (the
    application: accept, send, recv, close). Time given to the endpoint is seconds
    since `epoch` (default: when pump starts)."""
    start = clock()
    epoch = start if epoch is None else epoch
    while True:
        now = clock() - epoch
        if until():
            return True
        if clock() - start > timeout:
            return False
        deadline = endpoint.next_deadline()
        wait = 0.005 if deadline is None else max(0.0, min(0.005, deadline - now))
        ready, _, _ = select.select([tun], [], [], wait)
        now = clock() - epoch
        if ready:
            for pkt in tun.read_all():
                if pcap is not None:
                    pcap.write(pkt, now)
                if drop is not None and drop(pkt, "in"):
                    continue
                endpoint.receive(pkt, now)
        endpoint.poll(now)
        if on_tick is not None:
            on_tick(now)
        for pkt in endpoint.transmit():
            if drop is not None and drop(pkt, "out"):
                continue
            if pcap is not None:
                pcap.write(pkt, now)
            tun.write(pkt)
