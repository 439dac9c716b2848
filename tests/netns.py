"""Two network namespaces joined by a veth pair, for tests that need a real wire.

    with VethPair() as net:                       # or the `veth` fixture below
        net.run(net.b, ["python3", "-c", "..."])  # a command inside namespace b
        child = net.popen(net.a, [sys.executable, "child.py", net.a_if])

Side A is where fasttcp runs (capturing on or terminating connections through
``a_if``), side B is the Linux peer (``b_if``). Addresses come from the benchmarking
ranges only: 198.18.0.0/15 (RFC 2544) and 2001:2::/48 (RFC 5180). Each pair has names
of its own (tests may run side by side), and `close` deletes both namespaces -- which
removes the veth devices and every socket, route and firewall rule inside them -- even
when the test failed.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pytest

__all__ = ["VethPair", "can_make_namespaces", "child_env", "veth", "needs_namespaces", "wait_for_pcap"]

A_V4, B_V4 = "198.18.0.1", "198.18.0.2"
A_V6, B_V6 = "2001:2::1", "2001:2::2"
PREFIX_V4, PREFIX_V6 = 24, 64


def can_make_namespaces() -> str | None:
    """None, or why this machine cannot make namespaces and veth pairs."""
    if sys.platform != "linux":
        return "network namespaces and veth pairs are Linux only"
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    return None


_REASON = can_make_namespaces()
if _REASON and os.environ.get("CI"):
    raise RuntimeError(f"namespace tests must run in CI: {_REASON}")
needs_namespaces = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


def child_env() -> dict[str, str]:
    """The environment for a child Python that must import the fasttcp under test."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))


def _packets_in(path: Path) -> int:
    from fasttcp.capture.reader import CaptureError, read_pcap
    try:
        return sum(len(b) for b in read_pcap(path))
    except (CaptureError, OSError):             # not even a header yet
        return 0


def wait_for_pcap(path: str | Path, *, at_least: int = 0, quiet: float = 1.0, limit: float = 30.0) -> int:
    """Wait until the capture a running tcpdump writes holds ``at_least`` packets and has
    not grown for ``quiet`` seconds (``limit`` seconds at most); return its packet count.

    On a loaded machine tcpdump lags behind the kernel, and the SIGTERM that ends it drops
    whatever it has not written yet: a reference capture stopped after a fixed pause
    can miss packets the capture under test saw."""
    path = Path(path)
    deadline = time.monotonic() + limit
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        size = path.stat().st_size if path.exists() else 0
        if size != last:
            last, since = size, time.monotonic()
        elif time.monotonic() - since >= quiet and _packets_in(path) >= at_least:
            break
        time.sleep(0.1)
    return _packets_in(path)


class VethPair:
    """Namespaces ``a`` and ``b``, veth ``a_if`` in a and ``b_if`` in b, both up, with
    A_V4/A_V6 on a_if and B_V4/B_V6 on b_if; IPv6 duplicate address detection is off
    so the addresses work at once."""

    def __init__(self, *, mtu: int = 1500) -> None:
        tag = uuid.uuid4().hex[:8]
        self.a, self.b = f"ftA-{tag}", f"ftB-{tag}"
        self.a_if, self.b_if = f"fta{tag}", f"ftb{tag}"     # at most 15 bytes
        self.a_v4, self.b_v4, self.a_v6, self.b_v6 = A_V4, B_V4, A_V6, B_V6
        self._made: list[str] = []
        try:
            for ns in (self.a, self.b):
                self._ip("netns", "add", ns)
                self._made.append(ns)
                self.run(ns, ["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0",
                              "net.ipv6.conf.default.accept_dad=0"])
                self.run(ns, ["ip", "link", "set", "lo", "up"])
            self._ip("link", "add", self.a_if, "netns", self.a, "mtu", str(mtu), "type", "veth",
                     "peer", "name", self.b_if, "netns", self.b, "mtu", str(mtu))
            for ns, dev, v4, v6 in ((self.a, self.a_if, A_V4, A_V6), (self.b, self.b_if, B_V4, B_V6)):
                self.run(ns, ["ip", "addr", "add", f"{v4}/{PREFIX_V4}", "dev", dev])
                self.run(ns, ["ip", "-6", "addr", "add", f"{v6}/{PREFIX_V6}", "dev", dev, "nodad"])
                self.run(ns, ["ip", "link", "set", dev, "up"])
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)

    def mac(self, side: str) -> str:
        """The MAC address of side ``"a"`` or ``"b"``'s veth end."""
        ns, dev = (self.a, self.a_if) if side == "a" else (self.b, self.b_if)
        return self.run(ns, ["cat", f"/sys/class/net/{dev}/address"]).stdout.strip()

    def run(self, ns: str, cmd: list[str], *, timeout: float = 60,
            check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` in namespace ``ns`` and wait (output captured as text)."""
        return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True,
                              timeout=timeout, check=check, env=kw.pop("env", child_env()), **kw)

    def popen(self, ns: str, cmd: list[str], **kw: Any) -> subprocess.Popen[str]:
        """Start ``cmd`` in namespace ``ns`` (pipes for stdout and stderr, text)."""
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        return subprocess.Popen(["ip", "netns", "exec", ns, *cmd], text=True,
                                env=kw.pop("env", child_env()), **kw)

    def close(self) -> None:
        # deleting a namespace removes its devices, sockets, routes and nftables tables
        for ns in self._made:
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True, timeout=30)
        self._made = []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


@pytest.fixture
def veth():
    """A fresh `VethPair` for one test, removed afterwards whatever happened."""
    if _REASON:
        pytest.skip(_REASON)
    with VethPair() as net:
        yield net
