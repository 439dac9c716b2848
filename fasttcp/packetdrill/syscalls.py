"""The socket calls of a script, on `Endpoint` connections (run_system_call.c's subset).

Each handler does what the call does at once and returns a ``wait`` function: it gives
the call's (result, errno) when the call can return, or None while it would block. A
blocking call (``...T`` in the script) is retried by the runner after every step of
virtual time until it returns. Linux's errno numbers are used (asm-generic/errno*.h).
"""
from __future__ import annotations

import contextlib
import errno as _errno
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fasttcp.endpoint.endpoint import Connection
from fasttcp.enums import State
from fasttcp.errors import ConnectionStateError, UsageError
from fasttcp.packetdrill import linux
from fasttcp.packetdrill.segments import Flow

if TYPE_CHECKING:
    from fasttcp.packetdrill.runner import Run

__all__ = ["Sock", "Unsupported", "SyscallError", "HANDLERS", "Outcome", "Wait"]

Outcome = tuple[int, int]                 # (result, errno); errno 0 on success
Wait = Callable[[], "Outcome | None"]

# Linux's values for the constants scripts use (include/uapi)
O_RDWR, O_NONBLOCK = 0x2, 0x800
LINUX_TCP_STATES = {                       # include/net/tcp_states.h
    State.ESTABLISHED: 1, State.SYN_SENT: 2, State.SYN_RECEIVED: 3, State.FIN_WAIT_1: 4,
    State.FIN_WAIT_2: 5, State.TIME_WAIT: 6, State.CLOSED: 7, State.CLOSE_WAIT: 8,
    State.LAST_ACK: 9, State.LISTEN: 10, State.CLOSING: 11}
TCP_STATE_NAMES = {f"TCP_{s.name}": v for s, v in LINUX_TCP_STATES.items()}
TCP_STATE_NAMES.update({"TCP_SYN_RECV": 3, "TCP_CLOSE": 7})
_SENDABLE = (State.ESTABLISHED, State.CLOSE_WAIT)
_PEER_FINISHED = (State.CLOSE_WAIT, State.LAST_ACK, State.CLOSING, State.TIME_WAIT)


class Unsupported(Exception):
    """A call (or an argument of one) this runner cannot perform."""


class SyscallError(Exception):
    """A call the script makes wrongly (a bad fd, a wrong argument count)."""


@dataclass
class Sock:
    """One file descriptor of the script."""

    fd: int
    nonblock: bool = False
    linger_abort: bool = False          # SO_LINGER {onoff=1, linger=0}: close() resets
    listening: bool = False
    conn: Connection | None = None
    rbuf: bytearray = field(default_factory=bytearray)
    shut_rd: bool = False
    shut_wr: bool = False
    peer_fin: bool = False
    error: int = 0                      # pending so_error (ECONNRESET, ECONNREFUSED, ...)
    was_reset: bool = False


def _want_args(args: tuple[Any, ...], n: int | tuple[int, ...], name: str) -> None:
    counts = (n,) if isinstance(n, int) else n
    if len(args) not in counts:
        raise SyscallError(f"Expected {counts[0]} args but got {len(args)}")


def _words(expr: Any) -> set[str]:
    if isinstance(expr, str):
        return {expr}
    if isinstance(expr, tuple) and expr and expr[0] == "|":
        return set(expr[1])
    return set()


def _int_arg(expr: Any, what: str) -> int:
    if isinstance(expr, list) and len(expr) == 1:
        expr = expr[0]
    if isinstance(expr, int) and not isinstance(expr, bool):
        return expr
    raise Unsupported(f"{what} {expr!r} is not an integer")


def _done(result: int, err: int = 0) -> Wait:
    return lambda: (result, err)


def sys_socket(run: Run, args: tuple[Any, ...]) -> Wait:
    _want_args(args, 3, "socket")
    if args[0] is not ... and args[0] != "AF_INET":
        raise Unsupported(f"socket domain {args[0]!r} (only AF_INET)")
    if "SOCK_STREAM" not in _words(args[1]) or _words(args[1]) - {"SOCK_STREAM", "SOCK_NONBLOCK"}:
        raise Unsupported(f"socket type {args[1]!r} (only SOCK_STREAM)")
    if args[2] not in (..., "IPPROTO_TCP", 0):
        raise Unsupported(f"socket protocol {args[2]!r}")
    sock = run.new_sock()
    sock.nonblock = "SOCK_NONBLOCK" in _words(args[1])
    run.under_test = "init"
    return _done(sock.fd)


def sys_fcntl(run: Run, args: tuple[Any, ...]) -> Wait:
    _want_args(args, (2, 3), "fcntl")
    sock = run.sock(args[0])
    if args[1] == "F_GETFL" and len(args) == 2:
        return _done(O_RDWR | (O_NONBLOCK if sock.nonblock else 0))
    if args[1] == "F_SETFL" and len(args) == 3:
        flags = _words(args[2])
        if flags - {"O_RDWR", "O_NONBLOCK"} or not flags:
            raise Unsupported(f"fcntl flags {args[2]!r}")
        sock.nonblock = "O_NONBLOCK" in flags
        return _done(0)
    raise Unsupported(f"fcntl command {args[1]!r}")


def sys_setsockopt(run: Run, args: tuple[Any, ...]) -> Wait:
    _want_args(args, 5, "setsockopt")
    sock = run.sock(args[0])
    level, name, value = args[1], args[2], args[3]
    if level == "SOL_SOCKET" and name == "SO_REUSEADDR":
        return _done(0)          # no 4-tuple is reserved across runs: nothing to relax
    if level in ("IPPROTO_TCP", "SOL_TCP") and name == "TCP_NODELAY":
        return _done(0)          # the engine has no Nagle: every write goes out at once
    if level == "SOL_SOCKET" and name == "SO_LINGER" and isinstance(value, dict):
        onoff = value.get("onoff", value.get("l_onoff"))
        linger = value.get("linger", value.get("l_linger"))
        if onoff == 1 and linger == 0:
            sock.linger_abort = True            # close() sends RST (SO_LINGER, socket(7))
            return _done(0)
        if onoff == 0:
            sock.linger_abort = False
            return _done(0)
    raise Unsupported(f"setsockopt {level} {name}")


def sys_getsockopt(run: Run, args: tuple[Any, ...]) -> Wait:
    _want_args(args, 5, "getsockopt")
    sock = run.sock(args[0])
    level, name, value = args[1], args[2], args[3]
    if level == "SOL_SOCKET" and name == "SO_ERROR":
        actual, sock.error = sock.error, 0
        expected = _int_arg(value, "SO_ERROR value")
        if actual != expected:
            raise SyscallError(f"Bad getsockopt optval: expected: {expected} actual: {actual}")
        return _done(0)
    if level in ("IPPROTO_TCP", "SOL_TCP") and name == "TCP_INFO" and isinstance(value, dict):
        if set(value) != {"tcpi_state"}:
            raise Unsupported(f"TCP_INFO fields {sorted(value)} (only tcpi_state)")
        want = value["tcpi_state"]
        want = TCP_STATE_NAMES.get(want, want) if isinstance(want, str) else want
        state = State.LISTEN if sock.listening else sock.conn.state if sock.conn else State.CLOSED
        actual = LINUX_TCP_STATES[state]
        if actual != want:
            raise SyscallError(f"Bad getsockopt TCP_INFO tcpi_state: expected: {want} actual: {actual}")
        return _done(0)
    raise Unsupported(f"getsockopt {level} {name}")


def sys_bind(run: Run, args: tuple[Any, ...]) -> Wait:
    _want_args(args, 3, "bind")
    sock = run.sock(args[0])
    if any(other.listening for other in run.socks.values() if other is not sock):
        return _done(-1, _errno.EADDRINUSE)  # packetdrill binds every socket to live_bind_port
    return _done(0)


def sys_listen(run: Run, args: tuple[Any, ...]) -> Wait:
    _want_args(args, 2, "listen")
    sock = run.sock(args[0])
    if not sock.listening:
        run.ep.listen(linux.BIND_PORT)
        sock.listening = True
    run.under_test = "listening"
    return _done(0)


def sys_accept(run: Run, args: tuple[Any, ...]) -> Wait:
    _want_args(args, 3, "accept")
    sock = run.sock(args[0])
    if not sock.listening:
        return _done(-1, _errno.EINVAL)

    def wait() -> Outcome | None:
        conn = run.ep.accept()
        if conn is None:
            return (-1, _errno.EAGAIN) if sock.nonblock else None
        child = run.new_sock()
        child.conn = conn
        run.drain(child)
        return (child.fd, 0)
    return wait


def sys_connect(run: Run, args: tuple[Any, ...]) -> Wait:
    _want_args(args, 3, "connect")
    sock = run.sock(args[0])
    if sock.conn is not None:
        return _done(-1, _errno.EISCONN if sock.conn.state.synchronized else _errno.EALREADY)
    port = run.next_local_port()
    sock.conn = run.ep.connect(linux.REMOTE_IP, linux.CONNECT_PORT, local_port=port,
                               local_addr=linux.LOCAL_IP, now=run.now_s)
    run.under_test = Flow(local_port=port, remote_port=linux.CONNECT_PORT, passive=False,
                          phase="active_connecting")
    run.collect()
    if sock.nonblock:
        return _done(-1, _errno.EINPROGRESS)

    def wait() -> Outcome | None:
        conn = sock.conn
        if sock.error:
            err, sock.error = sock.error, 0
            return (-1, err)
        if conn is not None and conn.state.synchronized:
            return (0, 0)
        return None
    return wait


def _take_error(sock: Sock) -> Outcome | None:
    if sock.error:
        err, sock.error = sock.error, 0
        return (-1, err)
    return None


def sys_write(run: Run, args: tuple[Any, ...]) -> Wait:
    _want_args(args, (3, 4), "write")
    sock = run.sock(args[0])
    n = _int_arg(args[2], "length")
    if len(args) == 4 and args[3] != 0:
        raise Unsupported(f"send flags {args[3]!r}")
    if not 0 <= n <= run.MAX_WRITE:
        raise Unsupported(f"write of {n} bytes (this runner writes up to {run.MAX_WRITE})")
    err = _take_error(sock)
    if err:
        return _done(*err)
    conn = sock.conn
    if conn is None or sock.shut_wr or sock.was_reset:
        return _done(-1, _errno.EPIPE)
    if conn.state not in _SENDABLE:
        if conn.state in (State.SYN_SENT, State.SYN_RECEIVED):
            return _done(-1, _errno.EAGAIN) if sock.nonblock else _done(-1, _errno.EPIPE)
        return _done(-1, _errno.EPIPE)
    try:
        conn.send(bytes(n), now=run.now_s)
    except ConnectionStateError:
        return _done(-1, _errno.EPIPE)
    run.collect()
    return _done(n)


def sys_read(run: Run, args: tuple[Any, ...]) -> Wait:
    _want_args(args, (3, 4), "read")
    sock = run.sock(args[0])
    n = _int_arg(args[2], "length")
    if len(args) == 4 and args[3] != 0:
        raise Unsupported(f"recv flags {args[3]!r}")
    if n < 0:
        return _done(-1, _errno.EINVAL)
    if sock.conn is None and not sock.listening:
        return _done(-1, _errno.ENOTCONN)

    def wait() -> Outcome | None:
        run.drain(sock)
        if sock.rbuf:
            k = min(n, len(sock.rbuf))
            del sock.rbuf[:k]
            return (k, 0)
        err = _take_error(sock)
        if err:
            return err
        if sock.peer_fin or sock.shut_rd or sock.was_reset or n == 0:
            return (0, 0)
        return (-1, _errno.EAGAIN) if sock.nonblock else None
    return wait


def sys_shutdown(run: Run, args: tuple[Any, ...]) -> Wait:
    _want_args(args, 2, "shutdown")
    sock = run.sock(args[0])
    how = args[1]
    if how not in ("SHUT_RD", "SHUT_WR", "SHUT_RDWR", 0, 1, 2):
        return _done(-1, _errno.EINVAL)
    conn = sock.conn
    if conn is None or (not conn.state.synchronized and conn.state is not State.SYN_SENT):
        return _done(-1, _errno.ENOTCONN)
    if how in ("SHUT_RD", "SHUT_RDWR", 0, 2):
        sock.shut_rd = True
    if how in ("SHUT_WR", "SHUT_RDWR", 1, 2) and not sock.shut_wr:
        sock.shut_wr = True
        _close_conn(run, conn)
    return _done(0)


def _close_conn(run: Run, conn: Connection) -> None:
    with contextlib.suppress(ConnectionStateError, UsageError):   # closed by the peer or a reset
        conn.close(now=run.now_s)
    run.collect()


def sys_close(run: Run, args: tuple[Any, ...]) -> Wait:
    _want_args(args, 1, "close")
    sock = run.sock(args[0])
    if sock.listening:
        run.ep.unlisten(linux.BIND_PORT)
    conn = sock.conn
    if conn is not None and conn.state is not State.CLOSED:
        run.drain(sock)
        if sock.linger_abort or sock.rbuf:
            # SO_LINGER 0, or unread data (RFC 2525 2.17, Linux tcp_close): reset
            with contextlib.suppress(ConnectionStateError):
                conn.abort(now=run.now_s)
            run.collect()
        elif not sock.shut_wr:
            _close_conn(run, conn)
    run.forget(sock)
    return _done(0)


HANDLERS: dict[str, Callable[[Run, tuple[Any, ...]], Wait]] = {
    "socket": sys_socket, "fcntl": sys_fcntl, "setsockopt": sys_setsockopt,
    "getsockopt": sys_getsockopt, "bind": sys_bind, "listen": sys_listen,
    "accept": sys_accept, "connect": sys_connect, "write": sys_write, "send": sys_write,
    "read": sys_read, "recv": sys_read, "shutdown": sys_shutdown, "close": sys_close,
}
"""The calls a script may make, by name."""
