"""One worker of `fasttcp.analysis.live.analyze_live`: a `LiveCapture` feeding a
`Tracker`, rows handed on as connections end.

The same loop runs in the caller's process (one worker) or in each of N worker
processes joined in one PACKET_FANOUT group (`child_main`), which send their rows and
counts to the parent over a pipe. The loop never blocks longer than POLL_S, so a stop
request is seen within that time; rows leave the tracker after every batch
(`Tracker.finished`) and, when the interface is quiet, on the wall clock
(`Tracker.expire`), so a connection's row does not wait for the next packet.
"""
from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from fasttcp.analysis.config import AnalyzeConfig
from fasttcp.analysis.run import make_tracker
from fasttcp.capture.writer import LINKTYPE_RAW, PcapWriter
from fasttcp.enums import Verdict

__all__ = ["LiveSettings", "LiveWorker", "WorkerReport", "child_main", "blocked_stop_signals", "POLL_S",
           "TICK_S"]

#: How long one wait for packets lasts: the longest a stop request goes unseen.
POLL_S = 0.1
#: How often a worker expires idle connections on the wall clock and reports its counts.
TICK_S = 1.0
#: A packet waits in the ring's open block up to the block retire timeout before the
#: kernel hands it over (Documentation/networking/packet_mmap.rst, TPACKET_V3), and then
#: for this process to be scheduled. Expiring on the wall clock this far behind "now"
#: keeps a connection whose next packet is still in an open block from being ended.
WALL_CLOCK_LAG_S = 1.0
# a plain int against numpy arrays: an IntEnum member sends numpy through EnumType's
# Python __getattr__ for its special attributes (5x slower per compare)
_VERDICT_OK = int(Verdict.OK)
#: Reads after a stop request, to take what the kernel already captured (a read takes
#: every block handed over, so one or two suffice; the bound keeps a flood from
#: holding the stop up).
DRAIN_READS = 4
#: Ethernet header bytes: what the ring's frame length has beyond the IP packet.
ETH_HLEN = 14

Rows = np.ndarray
Emit = Callable[[Rows], None]


@dataclass(frozen=True)
class LiveSettings:
    """How each worker opens its capture (`LiveCapture`'s arguments) and where it keeps
    the packets it saw (``write_pcap``: this worker's file, or None)."""

    interface: str
    ring_bytes: int = 128 << 20
    block_bytes: int = 32 << 10
    block_timeout_ms: int = 10
    promiscuous: bool = False
    filter: str | None = "tcp"
    write_pcap: str | None = None

    def open(self, fanout: Any) -> Any:
        """The `LiveCapture` (in `fanout`'s group: a `Fanout`, a mode name for a new
        group, or None)."""
        from fasttcp.capture.live import LiveCapture

        return LiveCapture(self.interface, ring_bytes=self.ring_bytes, block_bytes=self.block_bytes,
                           block_timeout_ms=self.block_timeout_ms, promiscuous=self.promiscuous,
                           fanout=fanout, filter=self.filter)


@dataclass
class WorkerReport:
    """What one worker counted (picklable: it crosses the pipe from a worker process)."""

    packets: int = 0                          # packets the tracker took
    verdicts: dict[str, int] = field(default_factory=dict)
    memory_bytes: int = 0
    open_connections: int = 0
    capture: dict[str, int] = field(default_factory=dict)   # LiveStats.as_dict()
    kept: int = 0                             # packets written to the worker's pcap


class LiveWorker:
    """A capture and its tracker: `run` until `stop()` says so, then flush every open
    connection. Opening the capture happens here, so errors (no such interface, no
    permission) surface before anything runs."""

    def __init__(self, settings: LiveSettings, cfg: AnalyzeConfig, capacity: int, fanout: Any) -> None:
        self.settings = settings
        self.capture = settings.open(fanout)
        self.keeper: PcapWriter | None = None
        try:
            self.tracker = make_tracker(cfg, capacity)
            if settings.write_pcap is not None:
                # the ring strips the link layer: the IP packets are kept (LINKTYPE_RAW),
                # with the ring's nanosecond timestamps
                self.keeper = PcapWriter(settings.write_pcap, linktype=LINKTYPE_RAW, nanosecond=True)
        except BaseException:
            self.capture.close()
            raise
        self._finished = False

    @property
    def fanout(self) -> Any:
        """The capture's fanout group (None without fanout)."""
        return self.capture.fanout

    def run(self, stop: Callable[[], bool], emit: Emit, tick: Callable[[WorkerReport], None] | None = None
            ) -> WorkerReport:
        """Track packets until `stop()` is true, calling `emit` with the rows of the
        connections that ended (never empty) and `tick` with the counts so far about
        every TICK_S; then drain what was already captured and flush every open
        connection (`finish`). A KeyboardInterrupt propagates; call `finish` then."""
        next_tick = time.monotonic() + TICK_S
        while not stop():
            self._read(emit, POLL_S)
            now = time.monotonic()
            if now >= next_tick:
                self._expire_on_wall_clock(emit)
                if tick is not None:
                    tick(self.report())
                next_tick = now + TICK_S
        for _ in range(DRAIN_READS):
            if not self._read(emit, 2 * self.settings.block_timeout_ms / 1000):
                break
        return self.finish(emit)

    def _read(self, emit: Emit, timeout: float) -> bool:
        """Track one read's packets; False if none came within `timeout`."""
        batch = self.capture.next_batch(timeout=timeout)
        if batch is None or not len(batch):
            return False
        self.tracker.feed_batch(batch)
        if self.keeper is not None:
            self._keep(batch)
        _emit(emit, self.tracker.finished())
        return True

    def _keep(self, batch: Any) -> None:
        """Write the batch's IP packets (the frames whose link layer was understood)
        while the ring still holds them. A frame the snap length cut keeps its IP
        length on the wire: the frame's length less the Ethernet header."""
        assert self.keeper is not None
        ip = np.asarray(batch.verdicts) == _VERDICT_OK
        lengths = np.asarray(batch.lengths, dtype=np.int64)
        wire = np.where(np.asarray(batch.snapped), np.asarray(batch.wire_lengths, dtype=np.int64) - ETH_HLEN,
                        lengths)
        self.keeper.write_batch(batch.buffer, batch.offsets, lengths, batch.ts_ns, np.maximum(wire, lengths), ip)

    def _expire_on_wall_clock(self, emit: Emit) -> None:
        """End connections idle past their timeout by the wall clock, which the ring's
        timestamps follow (CLOCK_REALTIME), so rows do not wait for the next packet."""
        _emit(emit, self.tracker.expire(max(0.0, time.time() - WALL_CLOCK_LAG_S)))

    def report(self) -> WorkerReport:
        """The counts so far."""
        st = self.tracker.stats
        return WorkerReport(packets=st["packets"], verdicts=dict(st["verdicts"]),
                            memory_bytes=self.tracker.memory_bytes, open_connections=len(self.tracker),
                            capture=self.capture.stats.as_dict(),
                            kept=self.keeper.count if self.keeper is not None else 0)

    def finish(self, emit: Emit) -> WorkerReport:
        """Flush every open connection (their rows go to `emit`), close the capture and
        the kept pcap, and return the final counts. Again: the same counts."""
        if not self._finished:
            self._finished = True
            try:
                _emit(emit, self.tracker.close())
            finally:
                # closing reads the kernel's last counters (LiveStats stays readable)
                self.capture.close()
                if self.keeper is not None:
                    self.keeper.close()
                self._final = self.report()
        return self._final


def _emit(emit: Emit, rows: Rows) -> None:
    if len(rows):
        emit(rows)


# ---- a worker process ----

def child_main(conn: Connection, settings: LiveSettings, cfg: AnalyzeConfig, capacity: int, fanout: Any,
               stop_event: Any) -> None:
    """A worker process: open the capture in `fanout`'s group, say ("ready", fanout),
    then send ("rows", bytes of FLOW_DTYPE rows), ("tick", WorkerReport) and at the
    end ("done", WorkerReport) -- or ("error", (type name, errno, message)) -- until
    `stop_event` is set or the parent is gone.

    Signals are the parent's business: Ctrl-C reaches the whole process group, and a
    worker that died of it would lose its open connections, so the worker ignores
    SIGINT and SIGTERM and stops when the parent says so."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # the parent started this process with both blocked (`blocked_stop_signals`), so a
    # Ctrl-C during its start-up could not kill it before they were ignored
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    parent = os.getppid()
    try:
        worker = LiveWorker(settings, cfg, capacity, fanout)
    except BaseException as e:
        conn.send(("error", describe(e)))
        return
    try:
        conn.send(("ready", worker.fanout))

        def stop() -> bool:
            return stop_event.is_set() or os.getppid() != parent

        report = worker.run(stop, lambda rows: conn.send(("rows", rows.tobytes())),
                            lambda report: conn.send(("tick", report)))
        conn.send(("done", report))
    except (BrokenPipeError, EOFError):
        pass                                  # the parent is gone: nobody to report to
    except BaseException as e:
        with contextlib.suppress(OSError):
            conn.send(("error", describe(e)))
    finally:
        worker.finish(lambda rows: None)


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextlib.contextmanager
def blocked_stop_signals() -> Iterator[None]:
    """SIGINT and SIGTERM held back in this thread (and in the processes it starts,
    which inherit the mask) for the duration; delivered at the end if they came."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def describe(e: BaseException) -> tuple[str, int | None, str]:
    """An exception as (class name, errno, message): what crosses the pipe."""
    if isinstance(e, OSError) and e.errno is not None:
        return type(e).__name__, e.errno, e.strerror or str(e)
    return type(e).__name__, None, str(e)
