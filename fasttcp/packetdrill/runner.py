"""Run a packetdrill script against `Endpoint` on a virtual clock.

packetdrill (run.c) walks the script's events in order: it waits until an event's time,
injects an inbound segment, makes a system call (blocking ones on a thread), or sniffs
the next outbound segment and compares it with the script's. Here the clock is virtual:
"waiting" is firing the endpoint's timers (`Endpoint.next_deadline`/`poll`) up to the
event's time, every segment the endpoint transmits is stamped with the virtual time it
left, and a blocking call is retried after every step until it returns. Nothing sleeps,
so a script of minutes runs in milliseconds, and timing checks are exact up to the
script's tolerance. Failures read like packetdrill's (``script.pkt:12: error handling
packet: live packet field tcp_ack_seq: expected: 101 (0x65) vs actual: 1 (0x1)``).
"""
from __future__ import annotations

import errno as _errno
import math
import os
from dataclasses import asdict, dataclass
from typing import Any

from fasttcp.endpoint.endpoint import Endpoint
from fasttcp.enums import Cause
from fasttcp.errors import FastTcpError, UsageError
from fasttcp.packetdrill import linux
from fasttcp.packetdrill.compare import compare_segment
from fasttcp.packetdrill.script import (
    ABSOLUTE,
    ABSOLUTE_RANGE,
    ANY,
    RELATIVE,
    CommandSpec,
    Event,
    PacketSpec,
    Script,
    ScriptError,
    SyscallSpec,
    parse_script,
)
from fasttcp.packetdrill.segments import (
    Flow,
    actual_from_packets,
    format_actual,
    format_spec,
    inbound_packet,
    parse_outbound,
)
from fasttcp.packetdrill.syscalls import HANDLERS, Sock, SyscallError, Unsupported, Wait

__all__ = ["Result", "run", "run_text", "Run"]

MAX_TIMER_STEPS = 200_000        # timer firings per script: far above any real script's
SEARCH_USECS = 120_000_000       # how far past its time an outbound segment is looked for
_CHECK_FD = ("socket", "accept")  # calls whose result is a new fd (run_system_call.c CHECK_FD)
_KNOWN_OPTIONS = {"tolerance_usecs", "tolerance_percent", "ip_version", "tcp_ts_tick_usecs"}


@dataclass(frozen=True)
class Result:
    """How a script ran. ``ok``; for a failure ``line`` (1-based script line) and
    ``error`` (packetdrill-style text), and for a segment mismatch ``expected`` and
    ``actual`` (the script's segment and the one the endpoint sent)."""

    script: str
    ok: bool
    line: int | None = None
    error: str | None = None
    expected: str | None = None
    actual: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The `--json` object: script, ok, and for a failure line and error (plus
        expected/actual when a segment did not match)."""
        d = {k: v for k, v in asdict(self).items() if v is not None}
        d["ok"] = self.ok
        return d


class _Failure(Exception):
    def __init__(self, line: int, message: str, expected: str | None = None,
                 actual: str | None = None) -> None:
        super().__init__(message)
        self.line, self.message, self.expected, self.actual = line, message, expected, actual


def _errno_text(n: int) -> str:
    return f"{n} ({os.strerror(n)})" if n else "0 (Success)"


class Run:
    """One script's execution state: the endpoint, the virtual clock (integer µs), the
    queue of transmitted segments, the script's sockets and the connection under test."""

    MAX_WRITE = 1 << 24

    def __init__(self, script: Script, settings: dict[str, Any], path: str) -> None:
        self.script, self.path, self.settings = script, path, settings
        self.ep = Endpoint([linux.LOCAL_IP], seed=1, isn_secret=1, **settings)
        self.now_us = 0
        self.queue: list[tuple[int, bytes]] = []          # (time sent, packet)
        self.socks: dict[int, Sock] = {}
        self.under_test: Flow | str | None = None         # None, "init", "listening", a Flow
        self.next_remote_port = linux.FIRST_EPHEMERAL_PORT
        self.next_local = linux.LOCAL_EPHEMERAL_PORT
        self.steps = 0
        self.last_event: Event | None = None
        self.last_event_us = 0
        self.blocked: tuple[Event, SyscallSpec, Wait, int, int] | None = None   # ..., end, start
        self.current: Event | None = None                  # the event being run
        self.tolerance = int(float(script.options.get("tolerance_usecs", linux.TOLERANCE_USECS)))
        self.tolerance_pct = float(script.options.get("tolerance_percent", linux.TOLERANCE_PERCENT))
        self.ts_tick = int(float(script.options.get("tcp_ts_tick_usecs", 0)))

    # ---- what the syscall handlers use ----

    @property
    def now_s(self) -> float:
        """The virtual time in seconds (the endpoint's clock)."""
        return self.now_us / 1e6

    def new_sock(self) -> Sock:
        """A socket on the lowest free descriptor from 3 up (as the kernel allocates)."""
        fd = linux.FIRST_FD
        while fd in self.socks:
            fd += 1
        self.socks[fd] = Sock(fd)
        return self.socks[fd]

    def sock(self, fd: Any) -> Sock:
        """The socket a script's fd argument names; SyscallError (EBADF) if none."""
        if isinstance(fd, int) and fd in self.socks:
            return self.socks[fd]
        raise SyscallError(f"bad file descriptor {fd!r}: Expected result 0 but got -1 with errno "
                           f"{_errno_text(_errno.EBADF)}")

    def forget(self, sock: Sock) -> None:
        """close(): the descriptor is free again."""
        self.socks.pop(sock.fd, None)

    def next_local_port(self) -> int:
        """Our port for the next connect()."""
        self.next_local += 1
        return self.next_local - 1

    def drain(self, sock: Sock) -> None:
        """Move what the connection received into the socket's read buffer."""
        if sock.conn is not None:
            data = sock.conn.recv()
            if data:
                sock.rbuf += data

    def collect(self) -> None:
        """Stamp what the endpoint sent with the clock, apply its events to the sockets,
        and let a blocked call return if it now can."""
        for packet in self.ep.transmit():
            self.queue.append((self.now_us, packet))
        for ev in self.ep.events():
            self._on_event(ev.connection.id, ev.cause)
        for sock in self.socks.values():
            self.drain(sock)
        self._try_blocked()

    def _on_event(self, conn_id: int, cause: Cause) -> None:
        for sock in self.socks.values():
            if sock.conn is None or sock.conn.id != conn_id:
                continue
            if cause is Cause.PEER_FIN:
                sock.peer_fin = True
            elif cause is Cause.REFUSED:
                sock.error, sock.was_reset = _errno.ECONNREFUSED, True
            elif cause is Cause.RST_RECEIVED:
                sock.error, sock.was_reset = _errno.ECONNRESET, True
            elif cause is Cause.RETRANSMIT_LIMIT:
                sock.error, sock.was_reset = _errno.ETIMEDOUT, True

    # ---- the clock ----

    def advance(self, to_us: int, until: Any = None) -> None:
        """Fire timers in order up to `to_us` (or until `until()` is true); the clock
        ends at `to_us` unless stopped early. Bounded by MAX_TIMER_STEPS."""
        polled_at = -1
        while True:
            if until is not None and until():
                return                   # stopped early: the clock stays where it got to
            deadline = self.ep.next_deadline()
            if deadline is None:
                break
            at = max(math.ceil(deadline * 1e6 - 1e-3), self.now_us)
            if at > to_us:
                break
            self.steps += 1
            if self.steps > MAX_TIMER_STEPS:
                raise _Failure(self.last_event.line if self.last_event else 1,
                               f"more than {MAX_TIMER_STEPS} timer firings: runaway timers")
            if at == polled_at:
                at += 1                  # a deadline between two microseconds: step past it
            polled_at = self.now_us = at
            self.ep.poll(at / 1e6)
            self.collect()
        self.now_us = max(self.now_us, to_us)

    def _tolerance(self, script_us: int) -> int:
        delta = script_us - self.last_event_us
        return max(self.tolerance, int(self.tolerance_pct / 100.0 * delta))

    def _verify_time(self, ev: Event, start: int, end: int | None, actual: int, what: str,
                     last_us: int | None = None) -> None:
        """run.c verify_time(): `actual` within tolerance of `start` (or start..end)."""
        if ev.time.kind == ANY:
            return
        delta = start - (self.last_event_us if last_us is None else last_us)
        tol = max(self.tolerance, int(self.tolerance_pct / 100.0 * delta))
        if end is not None:
            if actual < start - tol or actual > end + tol:
                raise _Failure(ev.line, f"timing error: expected {what} in time range "
                               f"{start / 1e6:.6f}~{end / 1e6:.6f} sec but happened at {actual / 1e6:.6f} sec")
            return
        if actual < start - tol or actual > start + tol:
            raise _Failure(ev.line, f"timing error: expected {what} at {start / 1e6:.6f} sec but "
                           f"happened at {actual / 1e6:.6f} sec; tolerance {tol / 1e6:.6f} sec")

    def _schedule(self, ev: Event) -> tuple[int, int | None, int]:
        """(start, range end, offset) of an event in absolute script µs, as
        run.c adjust_relative_event_times() computes them."""
        t = ev.time
        if t.kind in (ABSOLUTE, ABSOLUTE_RANGE):
            return t.usecs, t.end_usecs, 0
        both_inbound = (self.last_event is not None and _is_inbound(self.last_event) and _is_inbound(ev))
        offset = self.last_event_us if both_inbound else self.now_us
        end = None if t.end_usecs is None else t.end_usecs + offset
        return t.usecs + offset, end, offset

    # ---- events ----

    def execute(self) -> None:
        """Run every event; raises _Failure at the first that does not go as scripted."""
        for ev in self.script.events:
            self.current = ev
            start, end, offset = self._schedule(ev)
            action = ev.action
            if isinstance(action, PacketSpec) and action.direction == ">":
                self._outbound(ev, action, start, end)
            else:
                self._wait_blocked(ev)
                if start > self.now_us:
                    self.advance(start)
                else:
                    self._verify_time(ev, start, None, self.now_us,
                                      "inbound packet" if isinstance(action, PacketSpec)
                                      else "system call start")
                if isinstance(action, PacketSpec):
                    self._inbound(ev, action)
                elif isinstance(action, SyscallSpec):
                    self._syscall(ev, action, start, offset)
                else:
                    self._command(ev, action)
            self.last_event, self.last_event_us = ev, (start if ev.time.kind != ANY else self.now_us)
        self._wait_blocked(None)

    def _command(self, ev: Event, cmd: CommandSpec) -> None:
        changed = dict(self.settings)
        why = linux.apply_command(cmd.text, changed)
        if why is None and changed != self.settings:
            why = "a sysctl between events would change the running endpoint's settings"
        if why:
            raise _Failure(ev.line, f"unsupported: {why}")

    def _inbound(self, ev: Event, spec: PacketSpec) -> None:
        flow = self.under_test
        if not isinstance(flow, Flow):
            # run_packet.c handle_listen_for_script_packet: a child socket for this peer
            flow = Flow(local_port=linux.BIND_PORT, remote_port=self.next_remote_port, passive=True,
                        phase="passive_received", remote_isn=spec.seq)
            self.next_remote_port += 1
            self.under_test = flow
        elif flow.phase == "synack_sent" and spec.ack is not None:
            flow.phase = "synack_acked"
        elif flow.phase == "active_syn_sent" and {"SYN", "ACK"} <= spec.flags:
            flow.remote_isn, flow.phase = spec.seq, "active_syn_acked"
        try:
            packet = inbound_packet(spec, flow, linux.LOCAL_IP, linux.REMOTE_IP)
        except (LookupError, ValueError) as e:
            raise _Failure(ev.line, f"error handling packet: {e}") from None
        self.ep.receive(packet, self.now_s)
        self.collect()

    def _sniff(self, flow: Flow, want_len: int, deadline: int) -> list[tuple[int, Any]]:
        """The next outbound segments of the flow (several when their payloads add up to
        the script's, as packetdrill aggregates TSO-sized segments); [] if none by
        `deadline`. Segments of other connections are passed over, as a sniffer bound
        to the socket under test does."""
        got: list[tuple[int, Any]] = []
        total = 0

        def ready() -> bool:
            nonlocal total
            while self.queue:
                at, packet = self.queue.pop(0)
                seg = parse_outbound(packet)
                if (seg.src_port, seg.dst_port) != (flow.local_port, flow.remote_port):
                    continue
                got.append((at, seg))
                total += seg.payload_len
                if total >= want_len:
                    return True
            return False
        if not ready():
            self.advance(deadline, until=ready)
        return got

    def _outbound(self, ev: Event, spec: PacketSpec, start: int, end: int | None) -> None:
        flow = self.under_test
        if not isinstance(flow, Flow):
            raise _Failure(ev.line, "error handling packet: no matching socket for script packet")
        tol = self._tolerance(start)
        deadline = (end if end is not None else start) + tol + SEARCH_USECS
        if flow.phase == "passive_received" and {"SYN", "ACK"} <= spec.flags:
            flow.script_local_isn = spec.seq
        got = self._sniff(flow, spec.payload_len, deadline)
        expected = format_spec(spec, start)
        if not got:
            raise _Failure(ev.line, f"error handling packet: timed out waiting for outbound packet "
                           f"(expected at {start / 1e6:.6f} sec, none by {deadline / 1e6:.6f} sec)",
                           expected=expected)
        first = got[0][1]
        if flow.phase == "passive_received" and {"SYN", "ACK"} <= spec.flags:
            flow.live_local_isn, flow.phase = first.seq, "synack_sent"
        elif flow.phase == "active_connecting" and "SYN" in spec.flags:
            flow.script_local_isn, flow.live_local_isn = spec.seq, first.seq
            flow.phase = "active_syn_sent"
        ts = [o for o in spec.options or () if o.name == "TS"]
        actual = actual_from_packets(got, flow, bool(ts), ts[0].values[0] if ts else None)
        actual_text = format_actual(actual)
        # the TS tolerance counts from the script's start, not the last event
        ts_tol = max(self.tolerance, int(self.tolerance_pct / 100.0 * start))
        why = compare_segment(spec, actual, self.ts_tick, ts_tol)
        if why:
            raise _Failure(ev.line, f"error handling packet: {why}", expected, actual_text)
        try:
            self._verify_time(ev, start, end, actual.time_us, "outbound packet")
        except _Failure as e:
            raise _Failure(e.line, f"error handling packet: {e.message}", expected, actual_text) from None
        self.now_us = max(self.now_us, actual.time_us)

    # ---- system calls ----

    def _syscall(self, ev: Event, call: SyscallSpec, start: int, offset: int) -> None:
        handler = HANDLERS.get(call.name)
        if handler is None:
            raise _Failure(ev.line, f"unsupported: system call {call.name}()")
        try:
            wait = handler(self, call.args)
        except Unsupported as e:
            raise _Failure(ev.line, f"unsupported: {e}") from None
        except SyscallError as e:
            raise _Failure(ev.line, f"runtime error in {call.name} call: {e}") from None
        except FastTcpError as e:
            raise _Failure(ev.line, f"runtime error in {call.name} call: the endpoint refused: {e}") from None
        outcome = wait()
        if call.end_usecs is None:
            if outcome is None:
                raise _Failure(ev.line, f"runtime error in {call.name} call: the call would block "
                               "but the script gives it no ...end time")
            self._check_result(ev, call, outcome)
            return
        end = call.end_usecs + (offset if ev.time.kind == RELATIVE else 0)
        self.blocked = (ev, call, wait, end, start)
        if outcome is not None:
            self._finish_blocked(outcome)

    def _try_blocked(self) -> None:
        if self.blocked is not None:
            outcome = self.blocked[2]()
            if outcome is not None:
                self._finish_blocked(outcome)

    def _finish_blocked(self, outcome: tuple[int, int]) -> None:
        assert self.blocked is not None
        ev, call, _, end, start = self.blocked
        self.blocked = None
        self._check_result(ev, call, outcome)
        # run_system_call.c: the return time, with the call's start as the last event
        self._verify_time(ev, end, None, self.now_us, "system call return", last_us=start)

    def _wait_blocked(self, next_ev: Event | None) -> None:
        """packetdrill's main thread waits for a blocking call before the next call (and
        at the end): the clock runs until it returns."""
        if self.blocked is None:
            return
        if next_ev is not None and not isinstance(next_ev.action, SyscallSpec):
            return
        ev, call, _, end, _ = self.blocked
        self.advance(end + SEARCH_USECS, until=lambda: self.blocked is None)
        if self.blocked is not None:
            raise _Failure(ev.line, f"runtime error in {call.name} call: blocking call never "
                           f"returned (expected at {end / 1e6:.6f} sec)")

    def _check_result(self, ev: Event, call: SyscallSpec, outcome: tuple[int, int]) -> None:
        actual, err = outcome
        expected = call.result
        if expected is ...:
            return
        if not isinstance(expected, int):
            raise _Failure(ev.line, f"unsupported: {call.name} result {expected!r}")
        where = f"runtime error in {call.name} call"
        if call.name in _CHECK_FD and expected >= 0:
            if actual < 0:
                raise _Failure(ev.line, f"{where}: Expected non-negative result but got {actual} "
                               f"with errno {_errno_text(err)}")
            sock = self.socks.pop(actual)             # the script's fd names this socket
            sock.fd = expected
            self.socks[expected] = sock
        elif actual != expected:
            raise _Failure(ev.line, f"{where}: Expected result {expected} but got {actual} "
                           f"with errno {_errno_text(err)}")
        if call.errno is not None:
            want = getattr(_errno, call.errno, None)
            if not isinstance(want, int):
                raise _Failure(ev.line, f"unsupported: errno {call.errno}")
            if want != err:
                raise _Failure(ev.line, f"{where}: Expected errno {_errno_text(want)} but got {_errno_text(err)}")


def _is_inbound(ev: Event) -> bool:
    return isinstance(ev.action, PacketSpec) and ev.action.direction == "<"


def _unsupported_lines(script: Script, settings: dict[str, Any]) -> list[tuple[int, str]]:
    """Lines this runner cannot run, found before anything runs (so all are listed)."""
    found: list[tuple[int, str]] = []
    for name, value in script.options.items():
        if name not in _KNOWN_OPTIONS or (name == "ip_version" and value != "ipv4"):
            found.append((script.option_lines[name], f"option --{name}={value}"))
    for line, cmd in script.commands:
        why = linux.apply_command(cmd.text, settings)
        if why:
            found.append((line, why))
    for ev in script.events:
        if isinstance(ev.action, SyscallSpec) and ev.action.name not in HANDLERS:
            found.append((ev.line, f"system call {ev.action.name}()"))
    return found


def _check_options(script: Script) -> None:
    for name, limit in (("tolerance_usecs", 10**9), ("tolerance_percent", 1000),
                        ("tcp_ts_tick_usecs", 10**9)):
        if name in script.options:
            text = script.options[name]
            try:
                value = float(text)
            except ValueError:
                value = math.nan
            if not 0 <= value <= limit:
                raise ScriptError(script.option_lines[name], f"--{name}={text} is not a number in 0..{limit}")


def run_text(text: str, *, name: str = "<script>", profile: str = "linux") -> Result:
    """Run script source `text` (see `run`); `name` stands for its path in messages.
    Raises UsageError for a `text` that is not str or an unknown profile."""
    if not isinstance(text, str) or not isinstance(name, str):
        raise UsageError("run_text() takes the script as str (and its name as str)")
    settings = linux.endpoint_settings(profile)
    try:
        script = parse_script(text)
        _check_options(script)
    except ScriptError as e:
        kind = "unsupported" if e.unsupported else "syntax error"
        return Result(name, False, e.line, f"{name}:{e.line}: {kind}: {e.message}")
    bad = _unsupported_lines(script, settings)
    if bad:
        listing = "; ".join(f"line {line}: {why}" for line, why in bad)
        return Result(name, False, bad[0][0], f"{name}:{bad[0][0]}: unsupported: {listing}")
    runner = Run(script, settings, name)
    try:
        runner.execute()
    except _Failure as e:
        return Result(name, False, e.line, f"{name}:{e.line}: {e.message}", e.expected, e.actual)
    except FastTcpError as e:
        # the endpoint refused something the script made it do (a malformed segment it
        # sent would be here too): the event's line and the endpoint's reason
        line = runner.current.line if runner.current else 1
        return Result(name, False, line, f"{name}:{line}: the endpoint refused: {type(e).__name__}: {e}")
    return Result(name, True)


def run(path: str | os.PathLike[str], *, profile: str = "linux") -> Result:
    """Run the packetdrill script at `path` against a fresh `Endpoint` set up as
    `profile` ("linux": see fasttcp.packetdrill.linux). Returns a Result; a script that
    cannot be read, parsed or run is a failed Result naming the line, never an
    exception (UsageError only for a path that is not str/PathLike or an unknown
    profile)."""
    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        raise UsageError(f"path must be str or os.PathLike, got {type(path).__name__}")
    linux.endpoint_settings(profile)
    name = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_READ + 1)
    except OSError as e:
        return Result(name, False, None, f"{name}: cannot read: {e.strerror or e}")
    if len(raw) > MAX_READ:
        return Result(name, False, 1, f"{name}:1: syntax error: script is larger than {MAX_READ} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        return Result(name, False, line, f"{name}:{line}: syntax error: not UTF-8 text")
    return run_text(text, name=name, profile=profile)


MAX_READ = 1 << 20
