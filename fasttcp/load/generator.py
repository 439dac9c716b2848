"""The connection-rate generator behind `fasttcp load`: an Endpoint on the interface that
leads to the target, opening, measuring and closing connections in batches.

    result = run_load(LoadConfig(host="198.18.0.2", port=80, connections=100_000))

Every connection is a real RFC 9293 client of the sans-IO Endpoint: SYN retransmitted
on the RFC 6298 timer with exponential backoff, refused on RST, given up after the
endpoint's retransmission limit, closed with FIN (TIME-WAIT kept) or RST. Around it:

- a token bucket caps connection attempts at ``rate`` per second (retransmitted SYNs are
  the endpoint's, not new attempts);
- a window caps connections open at once (``concurrency``); a SYN retransmission halves
  it (at most once per second), each completed handshake grows it by one, up to
  ``concurrency`` -- so loss slows the generator down, as TCP's own congestion control
  would (RFC 5681's AIMD, applied to connection attempts);
- source ports cycle through a range outside the kernel's ephemeral ports. A port whose
  last connection is in TIME-WAIT is reused once it has been there 1 s -- Linux's
  ``tcp_tw_reuse`` rule, safe because the endpoint sends timestamps (RFC 7323 5.8,
  RFC 6191): the TIME-WAIT record is dropped (ABORT in TIME-WAIT sends nothing, RFC 9293
  3.10.5) and the new SYN carries a newer timestamp. A port still busy is skipped.

Latency is SYN -> SYN-ACK: the CONNECT event's time to the SYN_ACK_RECEIVED event's,
from the first SYN (what a user waits), so a retransmitted SYN shows as +1 s.

With ``request`` bytes, each connection sends them once open and reads the answer until
the server's FIN, then closes; that needs the endpoint's `Connection` objects (their
send buffers and data retransmission live there), so the link runs its per-packet
path and the run is slower than the batch path of plain connects.
"""
from __future__ import annotations

import errno
import gc
import ipaddress
import math
import resource
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fasttcp.endpoint.endpoint import Endpoint
from fasttcp.enums import Cause, State
from fasttcp.errors import UsageError
from fasttcp.load.bucket import TokenBucket
from fasttcp.table.table import KEY_DTYPE

__all__ = ["LoadConfig", "LoadResult", "run_load", "source_port_range", "MIN_SOURCE_PORTS", "TW_REUSE_AFTER"]

TW_REUSE_AFTER = 1.0          # seconds in TIME-WAIT before the port may carry a new connection
BACKOFF_HOLD = 1.0            # at most one halving of the window per second (one initial RTO)
DRAIN_TIMEOUT = 70.0          # after the last attempt: SYN retries (1+2+4+8+16+32 s) then give up
DEFAULT_DURATION = 10.0       # `fasttcp load HOST:PORT` with neither --connections nor --duration
PROGRESS_EVERY = 1.0
MAX_REQUEST = 1 << 20         # --request: bytes queued per connection at most
_US = 1_000_000
# plain ints, not the enum members, against numpy arrays: for a member numpy looks up
# special attributes through EnumType's Python __getattr__ each time -- slow, and a
# KeyboardInterrupt raised in there is cleared by numpy and lost
_ESTABLISHED, _TIME_WAIT, _CLOSED, _SYN_SENT = (int(State.ESTABLISHED), int(State.TIME_WAIT),
                                                int(State.CLOSED), int(State.SYN_SENT))
_CONNECT, _SYN_ACK_RECEIVED, _RETRANSMIT, _REFUSED = (int(Cause.CONNECT), int(Cause.SYN_ACK_RECEIVED),
                                                      int(Cause.RETRANSMIT), int(Cause.REFUSED))
_RETRANSMIT_LIMIT, _RST_RECEIVED, _ABORT = int(Cause.RETRANSMIT_LIMIT), int(Cause.RST_RECEIVED), int(Cause.ABORT)


MIN_SOURCE_PORTS = 1024       # fewer ports than this outside the kernel's range: refuse
_FIRST_UNPRIVILEGED, _LAST_PORT = 1024, 65535


def source_port_range(ephemeral: tuple[int, int] | None = None) -> tuple[int, int]:
    """The source ports the generator uses: the larger of the two runs of unprivileged
    ports outside the kernel's ephemeral range (net.ipv4.ip_local_port_range, or
    ``ephemeral``), so the guard's drop rule never hides the replies of the host's own
    client connections, and no kernel socket picks a port the endpoint uses. Raises
    UsageError if that leaves fewer than MIN_SOURCE_PORTS ports."""
    if ephemeral is None:
        try:
            with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
                low, high = (int(v) for v in f.read().split()[:2])
        except (OSError, ValueError):
            low, high = 32768, 60999          # the kernel's default range
    else:
        low, high = ephemeral
    below = (_FIRST_UNPRIVILEGED, min(low, _LAST_PORT + 1) - 1)
    above = (max(high + 1, _FIRST_UNPRIVILEGED), _LAST_PORT)
    first, last = max(below, above, key=lambda r: r[1] - r[0])
    if last - first + 1 < MIN_SOURCE_PORTS:
        raise UsageError(
            f"the kernel's ephemeral ports ({low}-{high}, net.ipv4.ip_local_port_range) leave fewer than "
            f"{MIN_SOURCE_PORTS} ports outside them for the generator, whose guard would otherwise hide the "
            f"replies of this host's own connections; narrow the range, e.g. "
            f"sysctl -w net.ipv4.ip_local_port_range='32768 60999'")
    return first, last


@dataclass
class LoadConfig:
    """What to load: ``host``/``port``; ``rate`` (attempts/s, None: no cap);
    ``connections`` (attempts; None: until ``duration``); ``concurrency`` (open at once);
    ``close`` "fin" or "rst"; ``sources`` (None: the route's source address)."""
    host: str
    port: int
    rate: float | None = None
    connections: int | None = None
    concurrency: int = 1000
    duration: float | None = None
    request: int = 0
    close: str = "fin"
    sources: list[str] | None = None
    msl: float = 30.0
    io: str = "auto"
    progress: Callable[[dict[str, Any]], None] | None = None

    def validate(self) -> None:
        """Raises UsageError naming the first bad field."""
        _int_field("port", self.port, 1, 65535)
        if self.connections is not None:
            _int_field("connections", self.connections, 1, 1 << 40)
        _int_field("concurrency", self.concurrency, 1, 1 << 24)
        _int_field("request", self.request, 0, MAX_REQUEST)
        for name in ("rate", "duration"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                                  or not math.isfinite(v) or v <= 0):
                raise UsageError(f"{name} must be a finite number > 0, not {v!r}")
        if self.close not in ("fin", "rst"):
            raise UsageError(f"close is 'fin' or 'rst', not {self.close!r}")
        if isinstance(self.msl, bool) or not isinstance(self.msl, (int, float)) or not 0 < self.msl <= 600:
            raise UsageError(f"msl is seconds in (0, 600], not {self.msl!r}")


def _int_field(name: str, v: object, lo: int, hi: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise UsageError(f"{name} must be an int in {lo}..{hi}, not {v!r}")


@dataclass
class LoadResult:
    """The counters of one run (see `as_dict` for the JSON keys)."""
    attempts: int = 0
    connections: int = 0
    refused: int = 0
    timeouts: int = 0
    resets: int = 0
    syn_retransmits: int = 0
    connect_failed: int = 0
    unfinished: int = 0
    time_wait_reused: int = 0
    reset_kinds: dict[str, int] = field(default_factory=dict)
    time_wait_resets: int = 0
    answered: int = 0
    answer_bytes: int = 0
    ports_busy: int = 0
    backoffs: int = 0
    elapsed: float = 0.0
    cpu_s: float = 0.0
    latencies_us: list[np.ndarray] = field(default_factory=list)
    connect_times_us: list[np.ndarray] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return self.refused + self.timeouts + self.resets + self.connect_failed + self.unfinished

    def max_attempts_in_window(self, window_s: float = 1.0) -> int:
        """The most CONNECT events (attempts, from the Endpoint's event times) in any
        interval of ``window_s`` seconds."""
        t = np.sort(np.concatenate(self.connect_times_us)) if self.connect_times_us else np.empty(0, np.uint64)
        if len(t) == 0:
            return 0
        ends = np.searchsorted(t, t + np.uint64(int(window_s * _US)), side="left")
        return int((ends - np.arange(len(t))).max())

    def as_dict(self) -> dict[str, Any]:
        lat = np.concatenate(self.latencies_us) / 1000.0 if self.latencies_us else np.empty(0)

        def pct(q: float) -> float | None:
            return round(float(np.percentile(lat, q)), 3) if len(lat) else None
        out = {"connections": self.connections, "connects_per_s": round(self.connections / self.elapsed, 1)
               if self.elapsed > 0 else 0.0, "refused": self.refused, "timeouts": self.timeouts,
               "resets": self.resets, "syn_retransmits": self.syn_retransmits,
               "handshake_p50_ms": pct(50), "handshake_p90_ms": pct(90), "handshake_p99_ms": pct(99),
               "handshake_max_ms": round(float(lat.max()), 3) if len(lat) else None,
               "attempts": self.attempts, "errors": self.errors, "connect_failed": self.connect_failed,
               "unfinished": self.unfinished, "reset_kinds": self.reset_kinds,
               "time_wait_resets": self.time_wait_resets,
               "answered": self.answered, "answer_bytes": self.answer_bytes, "time_wait_reused": self.time_wait_reused,
               "ports_busy": self.ports_busy, "backoffs": self.backoffs,
               "max_attempts_in_1s": self.max_attempts_in_window(1.0),
               "elapsed_s": round(self.elapsed, 3), "client_cpu_s": round(self.cpu_s, 3),
               "cpu_us_per_connection": round(self.cpu_s * _US / self.connections, 2) if self.connections else None}
        out.update(self.info)
        return out


class _Ports:
    """Source (address, port) slots: which record holds each, and since when it is in
    TIME-WAIT. Slot s is source s % nsources, port first + s // nsources: consecutive
    attempts take turns over the sources."""

    def __init__(self, sources: list[ipaddress.IPv4Address | ipaddress.IPv6Address], first: int, last: int,
                 capacity: int) -> None:
        self.first, self.nports, self.nsources = first, last - first + 1, len(sources)
        self.total = self.nports * self.nsources
        self.attempts = np.zeros(self.nsources, np.int64)
        self.record = np.full(self.total, -1, np.int64)      # record id holding the slot, -1 free
        self.tw_since = np.zeros(self.total, np.uint64)      # TIME-WAIT entry (us), 0 not in TIME-WAIT
        self.slot_of = np.full(capacity, -1, np.int64)       # record id -> slot
        self.cursor = 0
        self.laddr = np.zeros((len(sources), 16), np.uint8)
        for i, s in enumerate(sources):
            self.laddr[i, :len(s.packed)] = np.frombuffer(s.packed, np.uint8)

    def pick(self, want: int, now_us: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Up to ``want`` slots from the cursor on: (free slots, TIME-WAIT slots old
        enough to reuse, busy slots passed over)."""
        span = min(self.total, max(4096, 4 * want))
        idx = (self.cursor + np.arange(span)) % self.total
        free = self.record[idx] < 0
        tw = self.tw_since[idx]
        reusable = (tw > 0) & (tw + np.uint64(int(TW_REUSE_AFTER * _US)) <= np.uint64(now_us))
        ok = np.flatnonzero(free | reusable)[:want]
        if len(ok) == 0:
            return idx[:0], idx[:0], 0
        passed = int(ok[-1]) + 1
        self.cursor = int((self.cursor + passed) % self.total)
        chosen = idx[ok]
        is_tw = ~free[ok]
        return chosen[~is_tw], chosen[is_tw], passed - len(ok)

    def release(self, ids: np.ndarray) -> None:
        slots = self.slot_of[ids]
        slots = slots[slots >= 0]
        self.record[slots] = -1
        self.tw_since[slots] = 0
        self.slot_of[ids] = -1


class _Run:
    """One load run over an open InterfaceLink; `tick` is the link's on_tick."""

    def __init__(self, cfg: LoadConfig, ep: Endpoint, link: Any, sources: list[Any], remote: Any,
                 ports: tuple[int, int]) -> None:
        self.cfg, self.ep, self.link = cfg, ep, link
        self.family = remote.version
        self.ports = _Ports(sources, ports[0], ports[1], ep.capacity)
        self.raddr = np.zeros(16, np.uint8)
        self.raddr[:len(remote.packed)] = np.frombuffer(remote.packed, np.uint8)
        self.r = LoadResult()
        self.syn_us = np.zeros(ep.capacity, np.uint64)
        self.active = 0                      # records neither closed nor in TIME-WAIT
        self.window = float(cfg.concurrency)
        self.last_backoff = -math.inf
        self.bucket = TokenBucket(cfg.rate, now=link.now())
        self.stop_opening = False
        self.start = link.now()
        self.now = self.start
        self.objects = cfg.request > 0
        self.request_bytes = b"x" * cfg.request
        self.handles: dict[int, Any] = {}        # record id -> Connection, handshake just done
        self.waiting: dict[int, Any] = {}        # record id -> Connection, request sent

    # ---- events ----

    def _event_arrays(self) -> tuple[np.ndarray, ...] | None:
        """(cause, conn, new, old, time_us) of the events since the last tick; with
        requests (the per-connection path) from the Event objects, whose connections
        are kept for the ones that completed their handshake."""
        if not self.objects:
            ev = self.ep.events_batch()
            if len(ev) == 0:
                return None
            return (ev["cause"], ev["conn"].astype(np.int64), ev["new_state"], ev["old_state"],
                    ev["time_us"])
        evs = self.ep.events()
        if not evs:
            return None
        for e in evs:
            if e.cause is Cause.SYN_ACK_RECEIVED:
                self.handles[e.connection.id] = e.connection
        return (np.array([int(e.cause) for e in evs], np.uint8), np.array([e.connection.id for e in evs], np.int64),
                np.array([int(e.new) for e in evs], np.uint8), np.array([int(e.old) for e in evs], np.uint8),
                np.array([round(e.time * _US) for e in evs], np.uint64))

    def _events(self) -> None:
        arrays = self._event_arrays()
        if arrays is None:
            return
        cause, conn, new, old, t = arrays
        m = cause == _CONNECT
        if m.any():
            self.syn_us[conn[m]] = t[m]
            self.r.connect_times_us.append(t[m].copy())
        m = cause == _SYN_ACK_RECEIVED
        if m.any():
            ids = conn[m]
            self.r.latencies_us.append((t[m] - self.syn_us[ids]).astype(np.int64))
            self.r.connections += len(ids)
            self.window = min(float(self.cfg.concurrency), self.window + len(ids))
            if self.objects:
                self._send_requests(ids)
            else:
                self._close(ids)
        m = (cause == _RETRANSMIT) & (old == _SYN_SENT)
        if m.any():
            self.r.syn_retransmits += int(m.sum())
            self._back_off(self.now)
        self.r.refused += int((cause == _REFUSED).sum())
        self.r.timeouts += int(((cause == _RETRANSMIT_LIMIT) & (old == _SYN_SENT)).sum())
        # a RST in TIME-WAIT comes after both FINs: the connection had completed (RFC 1337)
        self.r.time_wait_resets += int(((cause == _RST_RECEIVED) & (old == _TIME_WAIT)).sum())
        m = ((cause == _RST_RECEIVED) | (cause == _RETRANSMIT_LIMIT)) & (old != _SYN_SENT) \
            & (old != _TIME_WAIT)
        if m.any():
            self.r.resets += int(m.sum())
            for c, o in zip(cause[m].tolist(), old[m].tolist(), strict=True):
                k = f"{Cause(c).name} in {State(o)}"
                self.r.reset_kinds[k] = self.r.reset_kinds.get(k, 0) + 1
        # ABORT events are the generator's own: their bookkeeping was done at the call
        mine = cause == _ABORT
        m = (new == _TIME_WAIT) & ~mine & (old != _TIME_WAIT)
        if m.any():
            slots = self.ports.slot_of[conn[m]]
            ok = slots >= 0
            self.ports.tw_since[slots[ok]] = t[m][ok]
            self.active -= int(m.sum())
        m = (new == _CLOSED) & ~mine
        if m.any():
            self.active -= int((old[m] != _TIME_WAIT).sum())
            self.ports.release(conn[m])

    # ---- requests (the per-connection path) ----

    def _send_requests(self, ids: np.ndarray) -> None:
        for i in ids.tolist():
            conn = self.handles.pop(i, None)
            if conn is not None:
                conn.send(self.request_bytes, now=self.now)
                self.waiting[i] = conn

    def _read_answers(self) -> None:
        """The answer is what arrives until the server's FIN (CLOSE-WAIT): then close.
        A connection reset or given up while waiting is counted by its event."""
        finished, answered = [], []
        for i, conn in self.waiting.items():
            data = conn.recv()
            if data:
                self.r.answer_bytes += len(data)
            state = conn.state
            if state is State.CLOSE_WAIT:
                answered.append(i)
            elif state is State.CLOSED:           # reset or given up: its event counted it
                finished.append(i)
        for i in finished + answered:
            del self.waiting[i]
        if answered:
            self.r.answered += len(answered)
            self._close(np.array(answered, np.int64))

    def _back_off(self, now: float) -> None:
        if now - self.last_backoff >= BACKOFF_HOLD:
            self.window = max(1.0, self.window / 2)
            self.last_backoff = now
            self.r.backoffs += 1

    def _close(self, ids: np.ndarray) -> None:
        now = self.now
        if self.cfg.close == "fin":
            self.ep.close_batch(ids, now)
        else:
            # a connection the peer reset in the same turn as its SYN-ACK is closed
            # already (its CLOSED event counts it): only what abort_batch aborted leaves here
            self.active -= self.ep.abort_batch(ids, now)
            self.ports.release(ids)

    # ---- opening ----

    def _want(self, now: float) -> int:
        if self.stop_opening:
            return 0
        left = int(self.window) - self.active
        if self.cfg.connections is not None:
            left = min(left, self.cfg.connections - self.r.attempts)
        if self.cfg.duration is not None and now - self.start >= self.cfg.duration:
            left = 0
        if left <= 0:
            if (self.cfg.connections is not None and self.r.attempts >= self.cfg.connections) or \
                    (self.cfg.duration is not None and now - self.start >= self.cfg.duration):
                self.stop_opening = True
            return 0
        return left

    def _open(self, now: float) -> None:
        want = self._want(now)
        if want <= 0:
            return
        now_us = int(now * _US)
        free, reuse, busy = self.ports.pick(want, now_us)
        self.r.ports_busy += busy
        n = self.bucket.take(now, len(free) + len(reuse))
        if n == 0:
            return
        if len(reuse) > n - min(n, len(free)):
            reuse = reuse[:max(0, n - len(free))]
        free = free[:n - len(reuse)] if len(free) > n - len(reuse) else free
        if len(reuse):
            self.ep.abort_batch(self.ports.record[reuse], now)    # TIME-WAIT: no RST, the record goes
            self.ports.release(self.ports.record[reuse])
            self.r.time_wait_reused += len(reuse)
        slots = np.concatenate((free, reuse))
        keys = np.zeros(len(slots), KEY_DTYPE)
        keys["family"] = self.family
        keys["lport"] = self.ports.first + slots // self.ports.nsources
        keys["rport"] = self.cfg.port
        keys["laddr"] = self.ports.laddr[slots % self.ports.nsources]
        self.ports.attempts += np.bincount(slots % self.ports.nsources, minlength=self.ports.nsources)
        keys["raddr"] = self.raddr
        ids = self.ep.connect_batch(keys, now)
        ok = ids >= 0
        self.r.connect_failed += int((~ok).sum())
        self.ports.record[slots[ok]] = ids[ok]
        self.ports.slot_of[ids[ok]] = slots[ok]
        self.active += int(ok.sum())
        self.r.attempts += len(ids)

    def tick(self, now: float) -> None:
        """The link's on_tick: events in, closes and new connections out (all at `now`:
        the endpoint's clock must not run backwards between its calls)."""
        self.now = now
        self._events()
        if self.objects:
            self._read_answers()
        self._open(now)

    def done(self) -> bool:
        return self.stop_opening and self.active == 0


def _progress_line(run: _Run, now: float) -> dict[str, Any]:
    r = run.r
    el = max(1e-9, now - run.start)
    return {"elapsed_s": round(el, 1), "connections": r.connections, "connects_per_s": round(r.connections / el),
            "open": run.active, "refused": r.refused, "timeouts": r.timeouts, "resets": r.resets,
            "syn_retransmits": r.syn_retransmits}


def _cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def _sources(cfg: LoadConfig, remote: Any) -> list[Any]:
    """The --source addresses, checked: of the target's version and owned by this
    namespace (the kernel answers ARP/ND only for its own addresses: replies to any
    other would never come)."""
    from fasttcp.net import local_addresses
    try:
        sources = [ipaddress.ip_address(s) for s in cfg.sources] if cfg.sources else []
    except ValueError as exc:
        raise UsageError(f"--source: {exc}") from exc
    if any(s.version != remote.version for s in sources):
        raise UsageError("every --source must be of the target's IP version")
    if sources:
        here = local_addresses(all_namespaces=False)
        foreign = [str(s) for s in sources if s not in here]
        if foreign:
            raise UsageError(f"--source {', '.join(foreign)}: not an address of this network namespace")
    return sources


def _drive(run: _Run, link: Any, cfg: LoadConfig, stop: threading.Event | None) -> bool:
    """Turn the link until the run is done, the drain after the last attempt times out
    or `stop` is set; progress lines every second. True if stopped or interrupted
    (Ctrl-C)."""
    next_progress = PROGRESS_EVERY
    last_attempt_at: float | None = None
    try:
        while not run.done():
            if stop is not None and stop.is_set():
                return True
            link.step(on_tick=run.tick)
            now = link.now()
            if run.stop_opening and last_attempt_at is None:
                last_attempt_at = now
            if last_attempt_at is not None and now - last_attempt_at > DRAIN_TIMEOUT:
                break
            if cfg.progress is not None and now - run.start >= next_progress:
                cfg.progress(_progress_line(run, now))
                next_progress += PROGRESS_EVERY
    except KeyboardInterrupt:
        return True                  # report what was counted; the guard goes on the way out
    return False


def run_load(cfg: LoadConfig, *, i_own_this_network: bool = False,
             stop: threading.Event | None = None) -> LoadResult:
    """Run the load described by ``cfg`` (validated; the target checked by
    `fasttcp.load.safety.check_target` before anything is sent). Installs the RST guard
    for the run and removes it at exit, KeyboardInterrupt and SIGTERM included.
    Setting ``stop`` (from a signal handler or another thread) ends the run within a
    turn of the link (milliseconds; up to `SEND_TIMEOUT` when the link holds a send up):
    what was counted is returned, ``interrupted``. Raises UsageError for bad settings
    or a refused target, OSError as the system says (no route, no neighbour, not root),
    InterruptedError when ``stop`` is set before the run starts (nothing was sent)."""
    from fasttcp.load.safety import check_target
    from fasttcp.net import InterfaceLink, RstGuard, lookup_route
    cfg.validate()
    if cfg.connections is None and cfg.duration is None:
        cfg.duration = DEFAULT_DURATION
    try:
        remote = ipaddress.ip_address(cfg.host)
    except ValueError as exc:
        raise UsageError(f"HOST must be an IP address, not {cfg.host!r}") from exc
    why = check_target(remote, i_own_this_network=i_own_this_network)
    sources = _sources(cfg, remote)
    first, last = source_port_range()
    route = lookup_route(remote, source=sources[0] if sources else None, stop=stop)
    if stop is not None and stop.is_set():
        # (before anything is installed: nothing to undo, nothing was sent)
        raise InterruptedError(errno.EINTR, "stopped before the run started")
    sources = sources or [route.source]
    capacity = 1 << max(16, math.ceil(math.log2(2 * (last - first + 1) * len(sources) + 2 * cfg.concurrency)))
    ep = Endpoint([str(s) for s in sources], capacity=capacity, msl=cfg.msl)
    result: LoadResult | None = None
    try:
        with RstGuard(sources, ports=(first, last), peer=(remote, cfg.port)), \
                InterfaceLink(ep, route, io=cfg.io, objects=cfg.request > 0) as link:
            result = _run_on(cfg, ep, link, sources, remote, (first, last), route, why, stop)
    except KeyboardInterrupt:
        if result is None:
            raise
        # a Ctrl-C while the link and the guard were closing, after the run: its counts
        # stand (a guard table the close did not get to goes at exit)
    assert result is not None           # (the with's body set it, or the interrupt is raised)
    return result


def _run_on(cfg: LoadConfig, ep: Endpoint, link: Any, sources: list[Any], remote: Any, ports: tuple[int, int],
            route: Any, why: str, stop: threading.Event | None) -> LoadResult:
    """The run itself, guard and link in place: its counts and what it ran on."""
    first, last = ports
    run = _Run(cfg, ep, link, sources, remote, (first, last))
    cpu0, t0 = _cpu(), time.monotonic()
    # the drive loop makes a few short-lived containers a turn, and each cyclic
    # collection would walk every object the imports left: park those outside it
    gc.freeze()
    try:
        interrupted = _drive(run, link, cfg, stop)
    finally:
        gc.unfreeze()
        run.r.elapsed = time.monotonic() - t0
        run.r.cpu_s = _cpu() - cpu0
        run.r.unfinished = run.active
    result = run.r
    result.info = {"target": f"{remote}:{cfg.port}", "target_allowed": why, "interface": route.interface,
                   "sources": [str(s) for s in sources],
                   "attempts_per_source": run.ports.attempts.tolist(), "source_ports": f"{first}-{last}",
                   "next_hop_mac": route.next_hop_mac.hex(":"), "io": link.io, "rate_limit": cfg.rate,
                   "close": cfg.close, "time_wait_policy": f"reuse after {TW_REUSE_AFTER:g} s in TIME-WAIT",
                   "time_wait_at_end": max(0, len(ep) - run.active), "link": link.stats,
                   "endpoint": {k: v for k, v in ep.stats.items() if k != "drops"},
                   "interrupted": interrupted}
    return result


def print_progress(line: dict[str, Any]) -> None:
    """A progress line on stderr, overwritten in place (for a terminal)."""
    sys.stderr.write("\r{elapsed_s:>6}s  {connections:>10} conns  {connects_per_s:>8}/s  open {open:>6}  "
                     "refused {refused}  timeouts {timeouts}  resets {resets}  syn-rtx {syn_retransmits}   "
                     .format(**line))
    sys.stderr.flush()
