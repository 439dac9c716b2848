"""Live capture from an interface through a TPACKET_V3 ring (AF_PACKET, no libpcap).

    with LiveCapture("eth0") as cap:                  # TCP only, both directions
        while (batch := cap.next_batch(timeout=1.0)) is not None:
            tracker.feed_batch(batch)                 # a CaptureBatch, as read_pcap gives
        print(cap.stats.as_dict())

The socket is AF_PACKET/SOCK_RAW with an mmap'd PACKET_RX_RING of TPACKET_V3 blocks
(Documentation/networking/packet_mmap.rst); defaults are Zeek's: a 128 MiB ring of
32 KiB blocks, each handed to us when full or 10 ms after its first packet. The walk of
the blocks is C (fasttcp/capture/ring.pyx, ring_impl.h). See docs/live.md.

Set-up order matters: the socket is made with protocol 0, so nothing is queued until
bind(); the ring and the filter are in place before that, so no packet that the
filter would refuse slips in between (a known gotcha of filters attached after bind),
and fanout comes after bind, as the kernel requires.
"""
from __future__ import annotations

import errno
import math
import os
import select
import socket
import time
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Self

import numpy as np

from fasttcp.capture.bpf import LINK_ETHERNET, LINK_RAW, compile_expression, tcp_program
from fasttcp.capture.reader import CaptureBatch
from fasttcp.capture.ring import RxRing
from fasttcp.errors import UsageError

__all__ = ["Fanout", "LiveCapture", "LiveStats", "FANOUT_MODES"]

FANOUT_MODES = {"hash": 0, "lb": 1, "cpu": 2, "qm": 5}
"""PACKET_FANOUT_* by name: hash (the symmetric flow hash: both directions of a
connection reach one socket), lb (round robin), cpu (the receiving CPU), qm (the
receive queue)."""
MAX_FANOUT_GROUP = 0xFFFF
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
MAX_BLOCK_BYTES = 4 << 20           # the kernel allocates a block as one 2**MAX_PAGE_ORDER run
MAX_RING_BYTES = (1 << 32) - 1       # the kernel refuses block size x count beyond 32 bits
MAX_BLOCK_TIMEOUT_MS = 60_000
MAX_POLL_MS = (1 << 31) - 1
WAIT_SLICE_MS = 100                  # the longest single poll() of a wait (see next_batch)
FRAME_BYTES = 2048                   # tp_frame_size: only checked by the kernel for V3
IFNAMSIZ = 16                        # with the terminating NUL

# ARPHRD_* (include/uapi/linux/if_arp.h): which frames a device gives SOCK_RAW
_ARPHRD_ETHERNET = {1, 772}          # ETHER, LOOPBACK: an Ethernet header at tp_mac
_ARPHRD_RAW_IP = {0xFFFE, 519, 768, 769, 776}   # NONE (tun), RAWIP, TUNNEL, TUNNEL6, SIT


@dataclass(frozen=True)
class Fanout:
    """PACKET_FANOUT settings shared by the sockets of one capture.

    ``LiveCapture(..., fanout="hash")`` (or ``Fanout("hash")``) makes a new group whose
    id the kernel picks (PACKET_FANOUT_FLAG_UNIQUEID), so it cannot collide with another
    running capture; the capture's `fanout` then has the id, and further sockets --
    other worker processes in the same network namespace -- join with it:
    ``LiveCapture(..., fanout=first.fanout)``. The group lives while one socket is in it.
    """

    mode: str = "hash"
    group: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in FANOUT_MODES:
            raise UsageError(f"fanout mode must be one of {sorted(FANOUT_MODES)}, got {self.mode!r}")
        if self.group is not None and (isinstance(self.group, bool) or not isinstance(self.group, int)
                                       or not 0 <= self.group <= MAX_FANOUT_GROUP):
            raise UsageError(f"fanout group must be an int in 0..{MAX_FANOUT_GROUP} or None, got {self.group!r}")


@dataclass
class LiveStats:
    """What a capture has seen. The kernel's counters (PACKET_STATISTICS) are read after
    each batch and at close and summed here, since reading resets them.

    ``packets`` counts what passed the filter, dropped ones included (tp_packets), so
    ``delivered + drops + undelivered == packets`` once the capture is closed; ``drops``
    are packets the ring had no room for (tp_drops), ``freeze_q`` the times the ring was
    full (tp_freeze_q_cnt). ``undelivered`` (set by close): packets the ring took that no
    batch delivered -- in the block the kernel was still filling, or in blocks handed
    over after the last next_batch. ``csum_completed``: locally sent TCP packets whose
    offloaded checksum was completed in place. ``bad_blocks``: blocks whose headers
    pointed outside the block (their walk stopped there; never seen from a sane kernel)."""

    packets: int = 0
    drops: int = 0
    freeze_q: int = 0
    delivered: int = 0
    batches: int = 0
    blocks: int = 0
    csum_completed: int = 0
    bytes: int = 0
    bad_blocks: int = 0
    undelivered: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters by name (for a JSON summary)."""
        return asdict(self)


def _check_int(name: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise UsageError(f"{name} must be an int in {lo}..{hi}, got {value!r}")
    return value


def _check_interface(interface: object) -> str:
    if not isinstance(interface, str):
        raise UsageError(f"interface must be a str, got {type(interface).__name__}")
    try:
        raw = interface.encode()     # as the C half passes it (a lone surrogate cannot be)
    except UnicodeEncodeError:
        raise UsageError(f"{interface!r} is not an interface name (not UTF-8)") from None
    if not 1 <= len(raw) < IFNAMSIZ or interface in (".", "..") or any(c in interface for c in "/\0") \
            or any(c.isspace() for c in interface):
        raise UsageError(f"{interface!r} is not an interface name (1..{IFNAMSIZ - 1} bytes, no '/', "
                         "space or NUL)")
    return interface


def _check_geometry(ring_bytes: object, block_bytes: object, block_timeout_ms: object) -> None:
    _check_int("block_bytes", block_bytes, PAGE_BYTES, MAX_BLOCK_BYTES)
    assert isinstance(block_bytes, int)
    pages = block_bytes // PAGE_BYTES
    if block_bytes % PAGE_BYTES or pages & (pages - 1):
        raise UsageError(f"block_bytes must be a power-of-two multiple of the page size ({PAGE_BYTES}), "
                         f"got {block_bytes}")
    _check_int("ring_bytes", ring_bytes, block_bytes, MAX_RING_BYTES)
    assert isinstance(ring_bytes, int)
    if ring_bytes % block_bytes:
        raise UsageError(f"ring_bytes must be a multiple of block_bytes ({block_bytes}), got {ring_bytes}")
    _check_int("block_timeout_ms", block_timeout_ms, 1, MAX_BLOCK_TIMEOUT_MS)


def _check_fanout(fanout: object) -> Fanout | None:
    if fanout is None or isinstance(fanout, Fanout):
        return fanout
    if isinstance(fanout, str):
        return Fanout(fanout)
    raise UsageError(f"fanout must be None, a mode name or a Fanout, got {type(fanout).__name__}")


def _timeout_ms(timeout: object) -> int:
    """poll()'s timeout: -1 for None (wait), else whole milliseconds, rounded up."""
    if timeout is None:
        return -1
    # (ints compared as ints: math.isfinite cannot take one beyond a float's range)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0 \
            or (isinstance(timeout, float) and not math.isfinite(timeout)):
        raise UsageError(f"timeout must be None or a finite number of seconds >= 0, got {timeout!r}")
    return min(math.ceil(timeout * 1000), MAX_POLL_MS)


class LiveCapture:
    """Capture packets from `interface` into `CaptureBatch` objects.

    Arguments (each validated before any system call; UsageError otherwise):

    - ring_bytes, block_bytes, block_timeout_ms: the ring's size, its block size (a
      power-of-two multiple of the page size, up to 4 MiB; ring_bytes a multiple of it,
      under 4 GiB) and how long the kernel keeps a block with packets in it before
      handing it over anyway.
    - promiscuous: also take frames for other MACs (undone when the socket closes).
    - fanout: None, a mode ("hash", "qm", "cpu", "lb": a new group of its own) or the
      `Fanout` of another capture to join its group (see `Fanout`).
    - filter: "tcp" (a built-in classic BPF program: IPv4 and IPv6 TCP), None (every
      frame) or a tcpdump expression, compiled with ``tcpdump -ddd`` (UsageError when
      tcpdump is missing or rejects it, with its message).
    - direction: "both", or "in" to leave out what this host sends
      (PACKET_IGNORE_OUTGOING): an endpoint on the interface sees only its peer.

    Raises the OSError the kernel gives, naming the interface: PermissionError without
    CAP_NET_RAW, OSError(ENODEV) for an interface that does not exist, ENOMEM for a ring
    the kernel cannot allocate.

    Attributes: `interface`, `ifindex`, `mac` (6 bytes), `linktype` (the pcap link type
    of the frames: LINKTYPE_ETHERNET, or LINKTYPE_RAW for interfaces without a link
    header), `fanout` (the `Fanout` joined, with its group id, or None), `stats`.
    Not for sharing across fork(): each process opens its own (fanout joins them).
    """

    def __init__(self, interface: str, *, ring_bytes: int = 128 << 20, block_bytes: int = 32 << 10,
                 block_timeout_ms: int = 10, promiscuous: bool = False,
                 fanout: Fanout | str | None = None, filter: str | None = "tcp",
                 direction: str = "both") -> None:
        self.interface = _check_interface(interface)
        _check_geometry(ring_bytes, block_bytes, block_timeout_ms)
        if not isinstance(promiscuous, bool):
            raise UsageError(f"promiscuous must be a bool, got {promiscuous!r}")
        want_fanout = _check_fanout(fanout)
        if filter is not None and (not isinstance(filter, str) or not filter.strip()):
            raise UsageError(f"filter must be None, 'tcp' or a tcpdump expression, got {filter!r}")
        if direction not in ("both", "in"):
            raise UsageError(f"direction must be 'both' or 'in', got {direction!r}")
        self.ring_bytes, self.block_bytes, self.block_timeout_ms = ring_bytes, block_bytes, block_timeout_ms
        self.direction = direction
        self.filter = filter
        self.fanout: Fanout | None = None
        self._stats = LiveStats()
        self._ring = RxRing(interface)
        self._closed = False
        try:
            self._open(want_fanout, promiscuous)
        except BaseException:
            self._ring.close()
            self._closed = True
            raise
        self._poll = select.poll()
        self._poll.register(self._ring.fileno(), select.POLLIN | select.POLLERR)

    def _open(self, want_fanout: Fanout | None, promiscuous: bool) -> None:
        ring = self._ring
        arphrd, self.mac = ring.open()
        try:
            self.ifindex = socket.if_nametoindex(self.interface)
        except OSError:
            raise OSError(errno.ENODEV, f"{os.strerror(errno.ENODEV)}: interface {self.interface!r}") from None
        if arphrd in _ARPHRD_ETHERNET:
            self.linktype, from_net = LINK_ETHERNET, False
        elif arphrd in _ARPHRD_RAW_IP:
            self.linktype, from_net = LINK_RAW, True
        elif self.filter is not None:
            raise UsageError(f"interface {self.interface!r} has link type ARPHRD {arphrd}, for which only "
                             "filter=None is available")
        else:
            # the kernel's network-header offset (tp_net), checked for an IP version
            self.linktype, from_net = LINK_RAW, True
        program = None
        if self.filter == "tcp":
            program = tcp_program(self.linktype)
        elif self.filter is not None:
            program = compile_expression(self.filter, self.linktype)
        ring.set_ring(self.block_bytes, self.ring_bytes // self.block_bytes, FRAME_BYTES,
                      self.block_timeout_ms, self.linktype, from_net)
        if program is not None:
            ring.attach_filter(program)
        if self.direction == "in":
            ring.ignore_outgoing()
        if promiscuous:
            ring.promiscuous(self.ifindex)
        ring.bind(self.ifindex)
        if want_fanout is not None:
            # the kernel requires a bound socket (packet(7))
            unique = want_fanout.group is None
            group = ring.fanout(FANOUT_MODES[want_fanout.mode], unique, want_fanout.group or 0)
            self.fanout = Fanout(want_fanout.mode, group)

    def next_batch(self, timeout: float | None = None, *, copy: bool = False) -> CaptureBatch | None:
        """The packets of every block the kernel has handed over, waiting up to `timeout`
        seconds (None: until one comes) for the first; None if none came.

        Without `copy` the batch's buffer is a view of the ring (zero copy; offsets are
        absolute in the ring), valid until the next `next_batch` or `close`, which give
        its blocks back to the kernel; use ``copy=True`` (a compact buffer of its own,
        blocks returned at once) or ``batch.copy()`` to keep a batch longer. Link
        verdicts and wire lengths are as `fasttcp.read_pcap` gives them (wire lengths
        without a VLAN tag the kernel took off); frames count from 1 over the capture.
        Raises UsageError once closed (also by another thread during the wait), or for a
        bad timeout; OSError(ENETDOWN) once when the interface went down or away."""
        if self._closed:
            raise UsageError(f"interface {self.interface!r}: next_batch on a closed LiveCapture")
        if not isinstance(copy, bool):
            raise UsageError(f"copy must be a bool, got {copy!r}")
        wait_ms = _timeout_ms(timeout)
        deadline = None if wait_ms < 0 else time.monotonic() + wait_ms / 1000
        got = self._ring.walk(copy)
        while got is None:
            # poll in slices: closing the socket in another thread does not wake a poll()
            # on it, so the wait checks for that (walk raises UsageError once closed)
            left = WAIT_SLICE_MS if deadline is None else max(0, math.ceil((deadline - time.monotonic()) * 1000))
            events = self._poll.poll(min(left, WAIT_SLICE_MS))
            if any(ev & select.POLLERR for _, ev in events):
                self._raise_pending_error()
            got = self._ring.walk(copy)
            if got is None and deadline is not None and time.monotonic() >= deadline:
                return None
        buf, off, ln, ts, wl, vd, snapped, frames = got
        self._stats.batches += 1
        self._stats.delivered += len(off)
        self._read_counters()
        return CaptureBatch(buf, off, ln, ts, wl, vd, np.zeros(len(off), np.uint16), frames, snapped)

    def _raise_pending_error(self) -> None:
        """Raise the socket's pending error (reading it clears it, as recv() would): without
        this a POLLERR stays set and the wait for a block spins."""
        err = self._ring.take_error()
        if err:
            raise OSError(err, f"{os.strerror(err)}: interface {self.interface!r}")

    def _read_counters(self) -> None:
        ring, st = self._ring, self._stats
        ring.read_stats()
        st.packets, st.drops, st.freeze_q = ring.packets, ring.drops, ring.freeze_q
        st.blocks, st.csum_completed, st.bytes = ring.blocks, ring.csum_completed, ring.bytes
        st.bad_blocks = ring.bad_blocks

    @property
    def stats(self) -> LiveStats:
        """The counters so far (a live object, updated by each batch and by close)."""
        return self._stats

    @property
    def closed(self) -> bool:
        return self._closed

    def fileno(self) -> int:
        """The socket, for poll()/select() (readable when a block is handed over)."""
        return int(self._ring.fileno())

    def close(self) -> None:
        """Read the kernel's last counters, give the blocks back and close the socket.
        A batch view still held keeps the ring's memory mapped (its packets may be stale)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._read_counters()
            # (the ring's packets are either walked or still in it: the kernel cannot be
            # made to hand over the block it is filling, so they are counted, not lost)
            st = self._stats
            st.undelivered = max(0, st.packets - st.drops - st.delivered)
        finally:
            self._ring.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"ifindex={self.ifindex}"
        return f"LiveCapture({self.interface!r}, {state}, filter={self.filter!r}, fanout={self.fanout})"

