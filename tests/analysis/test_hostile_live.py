"""Hostile arguments to `fasttcp.analyze_live`: each is a precise exception raised
before any ring is opened (UsageError), or the OS's own error for an interface that
is not there -- never a crash, a hang, or a capture that runs on a bad setting. Each
call runs in a child process (tests/probe.py)."""
from __future__ import annotations

import pytest

from tests.probe import expect_raises

CALL = "fasttcp.analyze_live({iface}, {args})"


@pytest.mark.parametrize("args, match", [
    ("workers=0", "workers"), ("workers=-1", "workers"), ("workers=True", "workers"), ("workers=2**64", "workers"),
    ("workers=1.5", "workers"),
    ("duration=0", "duration"), ("duration=-1", "duration"), ("duration=float('nan')", "duration"),
    ("duration=float('inf')", "duration"), ("duration=True", "duration"), ("duration='3'", "duration"),
    ("duration=1e300", "duration"),
    ("ring_bytes=-1", "ring_bytes"), ("ring_bytes=0", "ring_bytes"), ("ring_bytes=2**70", "ring_bytes"),
    ("ring_bytes=True", "ring_bytes"), ("ring_bytes=1.5e6", "ring_bytes"),
    ("block_bytes=0", "block_bytes"), ("block_bytes=2**64", "block_bytes"),
    ("block_bytes=1 << 22, ring_bytes=1 << 20", "larger than ring_bytes"),
    ("block_timeout_ms=0", "block_timeout_ms"), ("block_timeout_ms=-5", "block_timeout_ms"),
    ("block_timeout_ms=2**40", "block_timeout_ms"),
    ("promiscuous=1", "promiscuous"), ("filter=6", "filter"), ("fmt='xml'", "format"),
    ("stop='now'", "stop"), ("write_pcap=5", "write_pcap"), ("cfg=5", "cfg"),
])
def test_bad_arguments_are_usage_errors(args, match):
    expect_raises(CALL.format(iface="'lo'", args=args), "UsageError", match)


@pytest.mark.parametrize("iface", ["''", "'a' * 16", "'../x'", "'lo\\0'", "5", "None", "b'lo'"])
def test_bad_interface_names_are_usage_errors(iface):
    expect_raises(CALL.format(iface=iface, args=""), "UsageError", "interface")


def test_a_missing_interface_is_the_os_error():
    # the name is well formed; the kernel says there is no such device
    expect_raises(CALL.format(iface="'nosuchif0'", args="duration=1"), "OSError")
