"""Ground truth, when a packetdrill binary is at hand: every corpus script also passes
against the real Linux stack (packetdrill's TUN device, inside a network namespace this
test creates), so the corpus says what Linux does, not what the endpoint happens to do.
And upstream's lifecycle scripts, from a checkout the user names, run through
`fasttcp packetdrill` without a crash (their pass/fail table is docs/packetdrill.md).

FASTTCP_PACKETDRILL=/path/to/packetdrill            enables the Linux run
FASTTCP_PACKETDRILL_TOLERANCE=usecs (default 10000) its --tolerance_usecs on a busy host
FASTTCP_PACKETDRILL_UPSTREAM=/path/to/gtests/net/tcp enables the upstream run
"""
from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from fasttcp.packetdrill import run
from tests.netns import can_make_namespaces

SCRIPTS = Path(__file__).resolve().parent / "scripts"
CORPUS = sorted(SCRIPTS.glob("*.pkt"))
PACKETDRILL = os.environ.get("FASTTCP_PACKETDRILL")
UPSTREAM = os.environ.get("FASTTCP_PACKETDRILL_UPSTREAM")
TOLERANCE = os.environ.get("FASTTCP_PACKETDRILL_TOLERANCE", "10000")
# the sysctls of the Linux profile: packetdrill's gtests/net/tcp/common/defaults.sh for the
# ones the corpus depends on, and the RFC 6298 exponential SYN backoff (Linux 6.5+ retries
# SYNs linearly first, tcp_syn_linear_timeouts=4; packetdrill's scripts predate that)
LINUX_PROFILE_SYSCTLS = [
    "net.ipv4.tcp_rmem=4096 540000 15728640", "net.ipv4.tcp_wmem=4096 262144 4194304",
    "net.ipv4.tcp_timestamps=1", "net.ipv4.tcp_sack=1", "net.ipv4.tcp_window_scaling=1",
    "net.ipv4.tcp_syn_retries=5", "net.ipv4.tcp_synack_retries=5", "net.ipv4.tcp_ecn=0",
    "net.ipv4.tcp_syncookies=1",
]
LINEAR_TIMEOUTS = "/proc/sys/net/ipv4/tcp_syn_linear_timeouts"

_why_not = (None if PACKETDRILL else "set FASTTCP_PACKETDRILL=/path/to/packetdrill to check the corpus on Linux")
_why_not = _why_not or can_make_namespaces()
if _why_not is None and not os.access(PACKETDRILL or "", os.X_OK):
    _why_not = f"FASTTCP_PACKETDRILL={PACKETDRILL} is not an executable"


def _apply_profile(name: str) -> None:
    """The profile's sysctls in namespace `name` (again before every script: a script may
    change one with a backquoted sysctl, as syn-cookies.pkt does)."""
    def sh(*cmd: str) -> None:
        subprocess.run(["ip", "netns", "exec", name, *cmd], check=True, timeout=30)
    for assignment in LINUX_PROFILE_SYSCTLS:
        sh("sysctl", "-q", "-w", assignment)
    if os.path.exists(LINEAR_TIMEOUTS):
        sh("sysctl", "-q", "-w", "net.ipv4.tcp_syn_linear_timeouts=0")


@pytest.fixture(scope="module")
def namespace():
    name = f"ftpd-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True, timeout=30)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], timeout=30)


@pytest.mark.skipif(_why_not is not None, reason=_why_not or "")
@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_corpus_script_passes_on_linux(namespace, path):
    _apply_profile(namespace)
    proc = subprocess.run(["ip", "netns", "exec", namespace, PACKETDRILL or "",
                           f"--tolerance_usecs={TOLERANCE}", path.name],
                          cwd=SCRIPTS, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr


_UPSTREAM_DIRS = ("blocking", "close", "shutdown", "syscall_bad_arg", "ts_recent", "validate", "mss")


@pytest.mark.skipif(not UPSTREAM, reason="set FASTTCP_PACKETDRILL_UPSTREAM=/path/to/packetdrill/gtests/net/tcp "
                                         "to run upstream's lifecycle scripts")
def test_upstream_lifecycle_scripts_run_to_a_verdict():
    root = Path(UPSTREAM or "")
    scripts = sorted(p for d in _UPSTREAM_DIRS for p in (root / d).glob("*.pkt"))
    assert scripts, f"no scripts under {root}"
    results = [run(p) for p in scripts]
    for r in results:
        assert r.ok or (r.line is not None and r.error), r
    # the close/ and shutdown/ basics are the floor: they pass (docs/packetdrill.md lists the rest)
    passed = {Path(r.script).name for r in results if r.ok}
    assert {"close-local-close-then-remote-fin.pkt", "close-remote-fin-then-close.pkt",
            "close-on-syn-sent.pkt", "shutdown-rd-close.pkt", "shutdown-wr-close.pkt",
            "shutdown-rdwr-close.pkt", "blocking-accept.pkt", "blocking-connect.pkt"} <= passed
