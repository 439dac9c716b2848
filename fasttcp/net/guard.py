"""Keep the local kernel from answering an endpoint's connections with resets.

An Endpoint on an interface sends from an address the kernel owns (the interface's), but
the kernel has no socket for those connections: every SYN-ACK or segment that comes back
would meet a closed port and the kernel would answer RST (RFC 9293 3.10.7.1). The
AF_PACKET tap sees a packet before netfilter's input hook does, so a rule dropping TCP to
the endpoint's address and ports in the input hook hides the packets from the kernel
while the endpoint still gets them:

    with RstGuard(["198.18.0.1"], ports=(1024, 65535)):
        ...                                   # table removed at exit, Ctrl-C, SIGTERM

The rule lives in an nftables table of its own, named uniquely per run, so removing it
never touches anyone else's rules. It is installed with the `nft` command (``nft -f -``,
one atomic transaction per change): pyroute2's nftables support is partial and the nft
syntax is what an administrator reads and checks (``nft list ruleset``). The table goes
away in `close`, at interpreter exit (atexit), on SIGINT (KeyboardInterrupt unwinds
through the ``with``) and on SIGTERM (turned into SystemExit while the guard is up,
unless the program handles SIGTERM itself).
SIGKILL cannot be caught: `remove_stale_tables` deletes tables whose process is gone.
"""
from __future__ import annotations

import atexit
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterable
from types import FrameType, TracebackType
from typing import Any, Self

from fasttcp.errors import UsageError

__all__ = ["RstGuard", "TABLE_PREFIX", "remove_stale_tables"]

TABLE_PREFIX = "fasttcp_guard_"
_NFT_TIMEOUT = 10.0
_INPUT_PRIORITY = -300      # before the usual filter chains (priority 0): no other rule sees them
_TABLE_RE = re.compile(rf"^table inet ({TABLE_PREFIX}(\d+)_[0-9a-f]+)$", re.M)


def _nft(script: str) -> None:
    if shutil.which("nft") is None:
        raise FileNotFoundError("the nft command (package nftables) is needed for the RST guard")
    # in a process group of its own: a Ctrl-C at the terminal goes to the whole
    # foreground group, and an nft killed halfway would leave the guard's state unknown
    out = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True,
                         timeout=_NFT_TIMEOUT, check=False, process_group=0)
    if out.returncode != 0:
        raise PermissionError(out.returncode, f"nft failed: {out.stderr.strip()}")


def _port_range(ports: object) -> tuple[int, int]:
    if ports is None:
        return 1, 65535
    if not isinstance(ports, tuple) or len(ports) != 2:
        raise UsageError("ports is a (first, last) tuple of ints or None")
    lo, hi = ports
    for p in (lo, hi):
        if isinstance(p, bool) or not isinstance(p, int) or not 1 <= p <= 65535:
            raise UsageError(f"a port is an int in 1..65535, not {p!r}")
    if lo > hi:
        raise UsageError(f"port range {lo}-{hi} is empty")
    return lo, hi


def _address(a: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address given as text or ipaddress (an int or bytes is refused: too easy to pass
    by mistake, and ipaddress would read either as an address)."""
    if isinstance(a, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return a
    if not isinstance(a, str):
        raise UsageError(f"a guard address is a str or ipaddress, not {type(a).__name__}")
    try:
        return ipaddress.ip_address(a)
    except ValueError as exc:
        raise UsageError(f"guard address: {exc}") from exc


def _peer(peer: object) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    if not isinstance(peer, tuple) or len(peer) != 2:
        raise UsageError("peer is an (address, port) tuple")
    address = _address(peer[0])
    _port_range((peer[1], peer[1]))
    return address, peer[1]


class RstGuard:
    """An nftables input rule dropping TCP to ``addresses`` with a destination port in
    ``ports`` (a (first, last) range; None = every port) -- only from ``peer`` (address,
    port) when given, the narrowest rule a client needs --, so the kernel neither sees nor
    resets the endpoint's connections. Installed by `install` (or entering the ``with``),
    removed by `close` and at exit. Raises UsageError for bad addresses or ports,
    FileNotFoundError without `nft`, PermissionError when nft refuses (not root)."""

    def __init__(self, addresses: Iterable[object], *, ports: tuple[int, int] | None = None,
                 peer: tuple[object, int] | None = None) -> None:
        if isinstance(addresses, (str, bytes)):
            addresses = [addresses]
        self.addresses = [_address(a) for a in addresses]
        if not self.addresses:
            raise UsageError("the guard needs at least one address")
        self.ports = _port_range(ports)
        self.peer = None if peer is None else _peer(peer)
        if self.peer is not None and any(a.version != self.peer[0].version for a in self.addresses):
            raise UsageError("the guard's addresses and its peer must be of one IP version")
        self.table = f"{TABLE_PREFIX}{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self.installed = False
        self._old_term: Any = None
        self._lock = threading.Lock()

    def _rules(self) -> str:
        lo, hi = self.ports
        dport = f"{lo}-{hi}" if lo != hi else str(lo)
        lines = []
        for a in self.addresses:
            family = "ip" if a.version == 4 else "ip6"
            match = "" if self.peer is None else f"{family} saddr {self.peer[0]} tcp sport {self.peer[1]} "
            lines.append(f"    {match}{family} daddr {a} tcp dport {dport} drop")
        return "\n".join(lines)

    def install(self) -> Self:
        """Add the table (idempotent). Returns self."""
        with self._lock:
            if self.installed:
                return self
            # marked installed (and to be closed at exit) before nft runs: a signal's
            # exception while nft commits must not leave a table nobody removes; only
            # nft's own failure (nothing was added) unmarks it
            self.installed = True
            atexit.register(self.close)
            try:
                _nft(f"table inet {self.table} {{\n  chain input {{\n"
                     f"    type filter hook input priority {_INPUT_PRIORITY}; policy accept;\n"
                     f"{self._rules()}\n  }}\n}}\n")
            except Exception:
                self.installed = False
                atexit.unregister(self.close)
                raise
        # SIGTERM's default would end the process with the table left behind; a program
        # with a SIGTERM handler of its own ends its run its own way (and the ``with``
        # or atexit removes the table), so the guard leaves that handler alone
        if threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            self._old_term = signal.signal(signal.SIGTERM, self._on_sigterm)
        return self

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        # only raise: the ``with`` or atexit removes the table. Removing it here could
        # run inside close() itself (the signal landing during its nft), whose lock this
        # thread holds: a deadlock
        raise SystemExit(128 + signum)

    def close(self) -> None:
        """Remove the table if it is installed (idempotent; never raises for a table that
        someone else already deleted). When nft does not remove it (killed, refused,
        timed out) the guard stays installed and the close at exit tries again."""
        with self._lock:
            if not self.installed:
                return
            try:
                _nft(f"delete table inet {self.table}\n")
            except FileNotFoundError:
                pass                                          # no nft: nothing can remove it
            except PermissionError as e:
                if "No such file or directory" not in str(e):  # (gone already: nothing to undo)
                    return                                    # still there: the close at exit tries again
            except subprocess.TimeoutExpired:
                return
            # (only now: an exception while nft runs -- a signal's -- leaves the table
            # to the close at exit as well)
            self.installed = False
        atexit.unregister(self.close)
        if self._old_term is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._old_term)
            self._old_term = None

    def __enter__(self) -> Self:
        return self.install()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<RstGuard {self.table} {'installed' if self.installed else 'removed'}>"


def guard_tables() -> list[str]:
    """Names of the guard tables in this namespace's ruleset."""
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True,
                         timeout=_NFT_TIMEOUT, check=False)
    return [m.group(1) for m in _TABLE_RE.finditer(out.stdout)]


def remove_stale_tables() -> list[str]:
    """Delete guard tables whose process no longer runs (left by a SIGKILL); returns
    their names."""
    removed = []
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True,
                         timeout=_NFT_TIMEOUT, check=False)
    for m in _TABLE_RE.finditer(out.stdout):
        if not os.path.exists(f"/proc/{m.group(2)}"):
            _nft(f"delete table inet {m.group(1)}\n")
            removed.append(m.group(1))
    return removed
