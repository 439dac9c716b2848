"""Run an `Endpoint` on a real interface: AF_PACKET in, AF_PACKET out, real time.

    route = lookup_route("198.18.0.2")
    with RstGuard([route.source]), InterfaceLink(endpoint, route) as link:
        conn = endpoint.connect("198.18.0.2", 80, now=link.now())
        link.pump(until=lambda: conn.state is State.ESTABLISHED, timeout=5)

Each turn of `pump` waits for packets (up to the endpoint's next deadline), hands them to
the endpoint, runs its timers, lets the application act (``on_tick``), and sends what the
endpoint queued to the next hop's MAC. Time is ``time.monotonic()`` seconds since the
link was made. Two ways through the endpoint:

- ``objects=True`` (default): ``receive``/``poll``/``transmit`` per packet, so `Connection`
  objects, their ``recv()`` and ``Endpoint.events()`` work (applications, interop tests);
- ``objects=False``: ``receive_batch``/``poll_batch``/``transmit_batch`` -- no Python
  object per packet; the caller reads ``events_batch()`` (load generators).

The edge is the TPACKET_V3 ring (`fasttcp.capture.live.LiveCapture`, ``direction="in"``)
and the transmitter (`fasttcp.capture.transmit.Transmitter`) when they are built
(``io="ring"``), or plain packet sockets (``io="socket"``, `fasttcp.net.packet_socket`);
``io="auto"`` takes the rings when they import. The kernel must be kept from resetting the endpoint's connections: see
`fasttcp.net.guard.RstGuard`.
"""
from __future__ import annotations

import select
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import numpy as np

from fasttcp.capture.writer import PcapWriter
from fasttcp.errors import UsageError
from fasttcp.net.packet_socket import PacketSocketCapture, PacketSocketTransmitter
from fasttcp.net.route import Route, interface_info

__all__ = ["InterfaceLink", "IO_KINDS"]

IO_KINDS = ("auto", "ring", "socket")
_MAX_WAIT = 0.005           # a turn waits at most this long, so on_tick runs often
_RING_BYTES = 16 << 20      # RX ring of an endpoint link: a few seconds of SYN-ACKs at 1M/s
_RING_BLOCK_TIMEOUT_MS = 1  # hand a block over after 1 ms: the ring's latency is the RTT's floor

Drop = Callable[[bytes, str], bool]      # (packet, "in" | "out") -> drop it?


def _ring_rx(interface: str) -> Any:
    from fasttcp.capture.live import LiveCapture
    return LiveCapture(interface, ring_bytes=_RING_BYTES, block_timeout_ms=_RING_BLOCK_TIMEOUT_MS,
                       filter="tcp", direction="in")


def _ring_tx(interface: str, dst_mac: bytes) -> Any:
    from fasttcp.capture.transmit import Transmitter  # type: ignore[import-not-found,unused-ignore]
    return Transmitter(interface, dst_mac=dst_mac)


def _open_edge(io: str, interface: str, dst_mac: bytes) -> tuple[Any, Any, str]:
    """(rx, tx, what they are): the rings where built ("ring": both must be), else
    packet sockets, each side on its own ("auto": e.g. "ring+socket")."""
    rx = tx = None
    kinds = []
    try:
        if io != "socket":
            try:
                rx = _ring_rx(interface)
                kinds.append("ring")
            except ImportError:
                if io == "ring":
                    raise
        if rx is None:
            rx = PacketSocketCapture(interface, direction="in")
            kinds.append("socket")
        if io != "socket":
            try:
                tx = _ring_tx(interface, dst_mac)
                kinds.append("ring")
            except ImportError:
                if io == "ring":
                    raise
        if tx is None:
            tx = PacketSocketTransmitter(interface, dst_mac=dst_mac)
            kinds.append("socket")
    except BaseException:
        if rx is not None:
            rx.close()
        raise
    return rx, tx, kinds[0] if kinds[0] == kinds[1] else "+".join(kinds)


class InterfaceLink:
    """Pumps ``endpoint`` through interface ``route.interface`` (a `Route` from
    `lookup_route`) or through the interface named ``route`` with ``next_hop_mac``.
    Raises UsageError for a bad argument or an unknown interface, PermissionError when
    not root (AF_PACKET needs CAP_NET_RAW), ImportError for ``io="ring"`` when the ring
    modules are not built."""

    def __init__(self, endpoint: Any, route: Route | str, *, next_hop_mac: bytes | None = None,
                 io: str = "auto", objects: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if io not in IO_KINDS:
            raise UsageError(f"io is one of {', '.join(IO_KINDS)}, not {io!r}")
        hop: bytes | None
        if isinstance(route, Route):
            interface, hop = route.interface, route.next_hop_mac if next_hop_mac is None else next_hop_mac
        elif isinstance(route, str):
            interface, hop = route, next_hop_mac
            interface_info(interface)                       # UsageError if it does not exist
        else:
            raise UsageError(f"route is a Route or an interface name, not {type(route).__name__}")
        if not isinstance(hop, bytes) or len(hop) != 6:
            raise UsageError("next_hop_mac is 6 bytes (or give a Route)")
        self.endpoint = endpoint
        self.interface = interface
        self.next_hop_mac = hop
        self.objects = bool(objects)
        self._clock = clock
        self._epoch = clock()
        self.rx, self.tx, self.io = _open_edge(io, interface, hop)
        self.packets_in = 0
        self.packets_out = 0
        self.send_failed = 0

    def now(self) -> float:
        """The endpoint's clock: seconds since the link was made."""
        return self._clock() - self._epoch

    # ---- one turn ----

    def _wait(self, wait: float) -> Any:
        return self.rx.next_batch(timeout=wait)

    def _receive(self, batch: Any, now: float, drop: Drop | None, pcap: PcapWriter | None) -> None:
        if batch is None or len(batch) == 0:
            return
        offsets, lengths = batch.offsets, batch.lengths
        verdicts = getattr(batch, "verdicts", None)
        if verdicts is not None and verdicts.any():           # link verdicts: non-IP frames
            keep = verdicts == 0
            offsets, lengths = offsets[keep], lengths[keep]
        self.packets_in += len(offsets)
        if self.objects or drop is not None or pcap is not None:
            buf = memoryview(batch.buffer).cast("B")
            for o, n in zip(offsets.tolist(), lengths.tolist(), strict=True):
                pkt = bytes(buf[o:o + n])
                if pcap is not None:
                    pcap.write(pkt, now)
                if drop is not None and drop(pkt, "in"):
                    continue
                if self.objects:
                    self.endpoint.receive(pkt, now)
                else:
                    self.endpoint.receive_batch(pkt, np.zeros(1, np.int64), np.array([n], np.int64), now)
        else:
            self.endpoint.receive_batch(batch.buffer, offsets, lengths, now)

    def _send(self, now: float, drop: Drop | None, pcap: PcapWriter | None) -> None:
        if self.objects or drop is not None or pcap is not None:
            packets = self.endpoint.transmit() if self.objects else _split(*self.endpoint.transmit_batch())
            kept = [p for p in packets if drop is None or not drop(p, "out")]
            if pcap is not None:
                for p in kept:
                    pcap.write(p, now)
            if not kept:
                return
            buf = np.frombuffer(b"".join(kept), np.uint8)
            lengths = np.array([len(p) for p in kept], np.int64)
            offsets = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
        else:
            buf, offsets, lengths = self.endpoint.transmit_batch()
            if len(offsets) == 0:
                return
        sent = self.tx.send_packets(buf, offsets, lengths)
        self.packets_out += sent
        self.send_failed += len(offsets) - sent

    def step(self, *, wait: float = _MAX_WAIT, on_tick: Callable[[float], None] | None = None,
             drop: Drop | None = None, pcap: PcapWriter | None = None) -> None:
        """One turn: wait up to ``wait`` seconds (less if a timer is due) for packets, feed
        them in, run the timers, call ``on_tick(now)``, send what is queued."""
        deadline = self.endpoint.next_deadline()
        now = self.now()
        if deadline is not None:
            wait = max(0.0, min(wait, deadline - now))
        if self.endpoint.pending_transmit:
            wait = 0.0
        batch = self._wait(wait)
        now = self.now()
        self._receive(batch, now, drop, pcap)
        if self.objects:
            self.endpoint.poll(now)
        else:
            self.endpoint.poll_batch(now)
        if on_tick is not None:
            on_tick(now)
        self._send(now, drop, pcap)
        self.tx.flush()

    def pump(self, *, until: Callable[[], bool], timeout: float,
             on_tick: Callable[[float], None] | None = None, drop: Drop | None = None,
             pcap: PcapWriter | None = None) -> bool:
        """Turn until ``until()`` is true (returns True) or ``timeout`` seconds pass
        (returns False). ``drop(packet, "in"|"out")`` discards chosen packets (loss
        tests); ``pcap`` records every packet in and out."""
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0:
            raise UsageError(f"timeout is seconds >= 0, not {timeout!r}")
        start = self._clock()
        while True:
            if until():
                return True
            if self._clock() - start > timeout:
                return False
            self.step(on_tick=on_tick, drop=drop, pcap=pcap)

    def fileno(self) -> int:
        return int(self.rx.fileno())

    def readable(self, wait: float) -> bool:
        """Whether packets are waiting (after up to ``wait`` seconds)."""
        return bool(select.select([self.rx], [], [], wait)[0])

    @property
    def stats(self) -> dict[str, Any]:
        """Packets in and out, sends the kernel refused, and the edge's own counters."""
        out: dict[str, Any] = {"io": self.io, "packets_in": self.packets_in, "packets_out": self.packets_out,
                               "send_failed": self.send_failed, "tx": dict(self.tx.stats)}
        rx_stats = getattr(self.rx, "stats", None)
        if rx_stats is not None:
            out["rx"] = rx_stats.as_dict() if hasattr(rx_stats, "as_dict") else rx_stats
        return out

    def close(self) -> None:
        """Close both sockets (the endpoint stays as it is)."""
        self.rx.close()
        self.tx.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _split(buf: np.ndarray, offsets: np.ndarray, lengths: np.ndarray) -> list[bytes]:
    raw = buf.tobytes()
    return [raw[o:o + n] for o, n in zip(offsets.tolist(), lengths.tolist(), strict=True)]
