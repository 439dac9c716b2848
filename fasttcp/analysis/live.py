"""`analyze_live`: track every TCP connection seen on a network interface, through
AF_PACKET rings (`fasttcp.capture.live.LiveCapture`), writing each connection's row as
it ends, until told to stop.

One worker runs in this process. N workers are N processes, each with its own ring
in one PACKET_FANOUT group in hash mode -- the kernel hands each socket whole flows,
both directions of a connection to one socket (Documentation/networking/packet_mmap.rst,
"AF_PACKET fanout mode") -- and its own tracker; they send their rows to this process,
the one writer, and their counts, which add up exactly: every connection is tracked by
one worker. Processes rather than the threads of the file path: a ring's packets are
already split by the kernel, so nothing is read twice, and each worker's Python loop
runs on its own core.
"""
from __future__ import annotations

import math
import multiprocessing
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from typing import IO, Any

import numpy as np

from fasttcp.analysis.config import AnalyzeConfig
from fasttcp.analysis.live_worker import (
    POLL_S,
    TICK_S,
    LiveSettings,
    LiveWorker,
    WorkerReport,
    blocked_stop_signals,
    child_main,
)
from fasttcp.analysis.run import _check_config, _check_workers, _to_output, default_workers
from fasttcp.analysis.summary import Summary
from fasttcp.errors import UsageError, WorkerError
from fasttcp.rows.writer import FORMATS, RowWriter
from fasttcp.tracker.tracker import FLOW_DTYPE

__all__ = ["analyze_live", "default_live_workers", "LiveStatus", "worker_pcap_paths", "MAX_DURATION_S"]

#: The longest --duration: a year is more than any capture should be left to run.
MAX_DURATION_S = 365 * 86400.0
#: How long a worker process may take to start and open its ring.
READY_TIMEOUT_S = 60.0
#: How long the workers may take to flush after a stop, before they are killed.
FINISH_TIMEOUT_S = 60.0
#: The smallest ring and block sizes and the longest block timeout accepted here; the
#: kernel checks the rest (a block a multiple of the page size, the ring of blocks).
MIN_RING_BYTES = 1 << 16
MIN_BLOCK_BYTES = 4 << 10
MAX_BLOCK_TIMEOUT_MS = 60_000


#: CPUs per default worker. The packets of a live capture cost CPU time outside the
#: workers -- the kernel copies each into a ring in softirq context on the CPU that
#: received it, and on a machine that also runs what makes the traffic, that too -- and
#: a worker process costs its own start-up and pipe. Measured on two cores
#: (benchmarks/live_analyze.py, docs/performance.md): two workers took 1.5x the CPU time
#: per packet of one, plus 0.4 s to start, and dropped no less (nothing, up to the
#: 450k packets/s the sender reached); one worker used about 0.4 us a packet.
CPUS_PER_WORKER = 2


def default_live_workers() -> int:
    """Workers `analyze_live` runs by default: one per CPUS_PER_WORKER CPUs this process
    may use, at least one."""
    return max(1, default_workers() // CPUS_PER_WORKER)


class LiveStatus:
    """What the status line shows: packets/s over the last interval, connections
    open, and the kernel's drops so far (all workers)."""

    __slots__ = ("drops", "open_connections", "packets", "packets_per_s")

    def __init__(self, packets: int, packets_per_s: float, open_connections: int, drops: int) -> None:
        self.packets = packets
        self.packets_per_s = packets_per_s
        self.open_connections = open_connections
        self.drops = drops

    def __repr__(self) -> str:
        return (f"LiveStatus(packets={self.packets}, packets_per_s={self.packets_per_s:.0f}, "
                f"open_connections={self.open_connections}, drops={self.drops})")


def worker_pcap_paths(path: str, workers: int) -> list[str]:
    """The files `--write-pcap PATH` writes: PATH with one worker, PATH.0 .. PATH.N-1
    with N (each holds the whole flows its worker saw)."""
    return [path] if workers == 1 else [f"{path}.{k}" for k in range(workers)]


def _check_positive_int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UsageError(f"{name} must be an int in {low}..{high}, got {value!r}")
    return value


def _check_settings(settings: LiveSettings) -> None:
    if not isinstance(settings.interface, str) or not settings.interface or len(settings.interface) > 15 \
            or "/" in settings.interface or "\0" in settings.interface:
        # IFNAMSIZ is 16 with the terminating NUL (include/uapi/linux/if.h)
        raise UsageError(f"interface must be an interface name (1..15 characters), got {settings.interface!r}")
    _check_positive_int("ring_bytes", settings.ring_bytes, MIN_RING_BYTES, 1 << 40)
    _check_positive_int("block_bytes", settings.block_bytes, MIN_BLOCK_BYTES, 1 << 31)
    _check_positive_int("block_timeout_ms", settings.block_timeout_ms, 1, MAX_BLOCK_TIMEOUT_MS)
    if settings.block_bytes > settings.ring_bytes:
        raise UsageError(f"block_bytes ({settings.block_bytes}) is larger than ring_bytes ({settings.ring_bytes})")
    if not isinstance(settings.promiscuous, bool):
        raise UsageError(f"promiscuous must be a bool, got {settings.promiscuous!r}")
    if settings.filter is not None and not isinstance(settings.filter, str):
        raise UsageError(f"filter must be a string or None, got {settings.filter!r}")


def _check_duration(duration: object) -> float | None:
    if duration is None:
        return None
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not math.isfinite(duration) \
            or not 0 < duration <= MAX_DURATION_S:
        raise UsageError(f"duration must be a number of seconds in (0, {MAX_DURATION_S:.0f}], got {duration!r}")
    return float(duration)


def analyze_live(interface: str, cfg: AnalyzeConfig | None = None, *, workers: int | None = 1,
                 fmt: str = "table", out: IO[str] | IO[bytes] | None = None, duration: float | None = None,
                 write_pcap: str | None = None, stop: threading.Event | None = None,
                 promiscuous: bool = False, filter: str | None = "tcp", ring_bytes: int = 128 << 20,
                 block_bytes: int = 32 << 10, block_timeout_ms: int = 10, keep_rows: bool = False,
                 status: Callable[[LiveStatus], None] | None = None, ready: Callable[[], None] | None = None,
                 community_id: bool | None = None, community_id_seed: int = 0) -> Summary:
    """Track every TCP connection seen on `interface` until `stop` is set or `duration`
    seconds have passed, and summarise them.

    Each connection is written to `out` in `fmt` (as `fasttcp.analyze` writes them) when
    it ends: closed or reset and then quiet for the timeout of its state, idle past the
    inactivity timeout (on the packets' clock, and on the wall clock while the interface
    is quiet), or flushed at the end, when every connection still open is written.
    ``workers``: capture processes in one PACKET_FANOUT group (hash mode: whole flows
    per worker), each with its own ring of `ring_bytes` and tracker (None:
    `default_live_workers`, half the CPUs this process may use); the rows are written by
    this process. ``write_pcap``: keep the
    IP packets seen (LINKTYPE_RAW, nanosecond timestamps) in that file, or with N
    workers in ``write_pcap.0`` .. ``.N-1`` (`worker_pcap_paths`). ``status`` is called
    about once a second with a `LiveStatus`; ``ready`` once every ring is open (packets
    before that are not seen). `promiscuous`, `filter` ("tcp": the built-in BPF program;
    None: every frame; else a tcpdump expression), `ring_bytes`, `block_bytes`,
    `block_timeout_ms` go to each `LiveCapture`.

    The summary carries the kernel's counters in ``summary.capture`` (packets it
    passed to the rings, drops, freeze_q: `LiveStats`, summed over the workers).

    Raises UsageError for bad arguments, OSError as opening the ring does (no such
    interface: OSError ENODEV; not root: PermissionError), OutputError when `out`
    cannot be written, WorkerError when a worker fails (``e.summary`` holds what was
    counted). On KeyboardInterrupt the open connections are flushed and written, and
    the exception carries the summary (``summary.interrupted``)."""
    if fmt not in FORMATS:
        raise UsageError(f"format must be one of {FORMATS}, got {fmt!r}")
    if stop is not None and not hasattr(stop, "is_set"):
        raise UsageError(f"stop must be a threading.Event (or None), got {type(stop).__name__}")
    cfg = _check_config(cfg)
    n = default_live_workers() if workers is None else _check_workers(workers)
    deadline_s = _check_duration(duration)
    if write_pcap is not None and not isinstance(write_pcap, str):
        raise UsageError(f"write_pcap must be a path (str) or None, got {write_pcap!r}")
    settings = LiveSettings(interface, ring_bytes=ring_bytes, block_bytes=block_bytes,
                            block_timeout_ms=block_timeout_ms, promiscuous=promiscuous, filter=filter)
    _check_settings(settings)
    writer = RowWriter(out, fmt, community_id=community_id, community_id_seed=community_id_seed) \
        if out is not None else None
    summary = Summary(path=interface, workers=n)
    summary.capture = {}
    kept: list[np.ndarray] = []

    def emit(rows: np.ndarray) -> None:
        summary.add_rows(rows)
        if writer is not None:
            _to_output(writer.write, rows)
        if keep_rows:
            kept.append(rows.copy())

    run = _Run(settings, cfg, n, write_pcap, stop, deadline_s, status, ready, emit)
    t0 = time.perf_counter()
    try:
        run.start()                            # the rings first: a bad interface writes nothing
        t0 = time.perf_counter()
        if writer is not None:
            _to_output(writer.header)
        run.loop()
        if writer is not None:
            _to_output(writer.footer)
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt):
            summary.interrupted = True
        e.summary = summary                    # type: ignore[attr-defined]  # what was done
        raise
    finally:
        run.close()
        summary.seconds = time.perf_counter() - t0
        run.fold(summary)
        if keep_rows:
            summary.rows = np.concatenate(kept) if kept else np.empty(0, FLOW_DTYPE)
    return summary


class _Run:
    """The workers of one `analyze_live` call: in this process (one) or processes (N)."""

    def __init__(self, settings: LiveSettings, cfg: AnalyzeConfig, n: int, write_pcap: str | None,
                 stop: threading.Event | None, duration: float | None,
                 status: Callable[[LiveStatus], None] | None, ready: Callable[[], None] | None,
                 emit: Callable[[np.ndarray], None]) -> None:
        self.settings, self.cfg, self.n = settings, cfg, n
        self.paths = worker_pcap_paths(write_pcap, n) if write_pcap is not None else [None] * n
        self.stop_flag, self.duration, self.status, self.ready, self.emit = stop, duration, status, ready, emit
        self.capacity = -(-cfg.capacity // n)
        self.reports: list[WorkerReport | None] = [None] * n
        self.local: LiveWorker | None = None
        self.procs: list[Any] = []
        self.conns: list[Connection] = []
        self.stop_event: Any = None
        self.deadline = math.inf
        self._last = (time.monotonic(), 0)

    def _settings(self, k: int) -> LiveSettings:
        from dataclasses import replace

        return replace(self.settings, write_pcap=self.paths[k])

    def _stopping(self) -> bool:
        return (self.stop_flag is not None and self.stop_flag.is_set()) or time.monotonic() >= self.deadline

    # ---- start ----

    def start(self) -> None:
        """Open every ring (fanout group first), then call `ready`."""
        if self.n == 1:
            self.local = LiveWorker(self._settings(0), self.cfg, self.capacity, None)
        else:
            self._start_processes()
        if self.duration is not None:
            self.deadline = time.monotonic() + self.duration
        self._last = (time.monotonic(), 0)
        if self.ready is not None:
            self.ready()

    def _start_processes(self) -> None:
        """Worker 0 makes the fanout group (a fresh id, see LiveCapture); the others
        join it. A flow moves between members while the group grows, so `ready`
        waits until all have joined."""
        ctx = multiprocessing.get_context("spawn")   # no fork of a caller's threads
        self.stop_event = ctx.Event()
        fanout: Any = "hash"
        for k in range(self.n):
            ours, theirs = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=child_main, name=f"fasttcp-live-{k}", daemon=True,
                               args=(theirs, self._settings(k), self.cfg, self.capacity, fanout, self.stop_event))
            with blocked_stop_signals():
                proc.start()
            theirs.close()
            self.procs.append(proc)
            self.conns.append(ours)
            got = self._await_ready(k)
            if k == 0:
                fanout = got

    def _await_ready(self, k: int) -> Any:
        conn = self.conns[k]
        if not conn.poll(READY_TIMEOUT_S):
            raise WorkerError(k, self.n, f"did not open its capture within {READY_TIMEOUT_S:.0f} s")
        try:
            kind, payload = conn.recv()
        except EOFError:
            raise WorkerError(k, self.n, f"exited (status {self.procs[k].exitcode}) before its capture opened") \
                from None
        if kind == "error":
            raise _rebuild(k, self.n, payload)
        return payload

    # ---- run ----

    def loop(self) -> None:
        """Run until stopped, then collect every worker's flushed rows."""
        if self.local is not None:
            report = self.local.run(self._stopping, self.emit, self._tick_local)
            self.reports[0] = report
            return
        self._loop_processes()

    def _tick_local(self, report: WorkerReport) -> None:
        self.reports[0] = report
        self._status()

    def _loop_processes(self) -> None:
        assert self.stop_event is not None
        live = dict(enumerate(self.conns))
        next_status = time.monotonic() + TICK_S
        try:
            while live:
                if not self.stop_event.is_set() and self._stopping():
                    self.stop_event.set()
                for k in self._ready(live):
                    if self._receive(k):
                        del live[k]
                if time.monotonic() >= next_status:
                    self._status()
                    next_status = time.monotonic() + TICK_S
        except KeyboardInterrupt:
            # the workers ignore SIGINT: stop them and write what they flush, then report
            self.stop_event.set()
            self._collect_after_interrupt(live)
            raise

    def _collect_after_interrupt(self, live: dict[int, Connection]) -> None:
        end = time.monotonic() + FINISH_TIMEOUT_S
        while live and time.monotonic() < end:
            for k in self._ready(live):
                try:
                    if self._receive(k):
                        del live[k]
                except WorkerError:
                    del live[k]

    def _ready(self, live: dict[int, Connection]) -> list[int]:
        """The workers of `live` with a message waiting (within POLL_S)."""
        ready = wait(list(live.values()), timeout=POLL_S)
        return [k for k, conn in live.items() if conn in ready]

    def _receive(self, k: int) -> bool:
        """Handle one message of worker k; True when it has finished."""
        try:
            kind, payload = self.conns[k].recv()
        except EOFError:
            raise WorkerError(k, self.n, f"exited (status {self.procs[k].exitcode}) without its last rows") \
                from None
        if kind == "rows":
            self.emit(np.frombuffer(payload, dtype=FLOW_DTYPE))
        elif kind == "tick":
            self.reports[k] = payload
        elif kind == "done":
            self.reports[k] = payload
            return True
        elif kind == "error":
            raise _rebuild(k, self.n, payload)
        return False

    def _status(self) -> None:
        """Call `status` with the rates since the last call."""
        if self.status is None:
            return
        reports = [r for r in self.reports if r is not None]
        packets = sum(r.packets for r in reports)
        now = time.monotonic()
        t, before = self._last
        self._last = (now, packets)
        self.status(LiveStatus(packets, (packets - before) / (now - t) if now > t else 0.0,
                               sum(r.open_connections for r in reports),
                               sum(r.capture.get("drops", 0) for r in reports)))

    # ---- end ----

    def close(self) -> None:
        """Flush and close the local worker; stop the worker processes (killed if they
        do not end within FINISH_TIMEOUT_S)."""
        if self.local is not None:
            self.reports[0] = self.local.finish(self.emit)
        if self.stop_event is not None:
            self.stop_event.set()
        for proc in self.procs:
            proc.join(FINISH_TIMEOUT_S)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        for conn in self.conns:
            conn.close()

    def fold(self, summary: Summary) -> None:
        """Add the workers' counts to `summary`."""
        capture: dict[str, int] = {}
        for r in self.reports:
            if r is None:
                continue
            summary.packets += r.packets
            summary.verdicts.update(r.verdicts)
            summary.memory_bytes += r.memory_bytes
            for key, value in r.capture.items():
                capture[key] = capture.get(key, 0) + value
        summary.capture = capture
        summary.file_bytes = capture.get("bytes", 0)


def _rebuild(k: int, n: int, payload: tuple[str, int | None, str]) -> BaseException:
    """A worker's exception, as the caller would have got it from one worker: OSError
    (its errno picks the subclass), UsageError, else WorkerError naming the worker."""
    name, errno, message = payload
    if errno is not None:
        return OSError(errno, message)
    if name == "UsageError":
        return UsageError(message)
    return WorkerError(k, n, f"{name}: {message}")
