"""Hostile calls into LiveCapture and the ring walk, each in a child process (tests/probe.py)
so that a crash fails one test. Arguments are refused before any system call; the kernel's
refusals arrive as the OSError it gave, naming the interface; a ring whose blocks lie
about their contents never makes the walk read or write outside the ring."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.netns import can_make_namespaces
from tests.probe import expect_ok, expect_raises

# the probe runs in a network namespace of its own (unshare), so a capture there sees
# only that namespace's loopback
IN_NEW_NETNS = """
import ctypes, os
CLONE_NEWNET = 0x40000000
assert ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWNET) == 0, os.strerror(ctypes.get_errno())
os.system("ip link set lo up")
"""
needs_root = pytest.mark.skipif(can_make_namespaces() is not None, reason=can_make_namespaces() or "")


@pytest.mark.parametrize("call", [
    "LiveCapture(None)",
    "LiveCapture(b'lo')",
    "LiveCapture('')",
    "LiveCapture('x' * 16)",
    "LiveCapture('a/b')",
    "LiveCapture('a b')",
    "LiveCapture('a\\0b')",
    "LiveCapture('..')",
    "LiveCapture('\\udcff')",
    "LiveCapture('lo', ring_bytes=True)",
    "LiveCapture('lo', ring_bytes=-1)",
    "LiveCapture('lo', ring_bytes=0)",
    "LiveCapture('lo', ring_bytes=2**32)",
    "LiveCapture('lo', ring_bytes=2**64)",
    "LiveCapture('lo', ring_bytes=1.5e6)",
    "LiveCapture('lo', ring_bytes=(32 << 10) * 3 + 1)",
    "LiveCapture('lo', block_bytes=3 * 4096)",
    "LiveCapture('lo', block_bytes=1000)",
    "LiveCapture('lo', block_bytes=8 << 20)",
    "LiveCapture('lo', block_bytes=float('nan'))",
    "LiveCapture('lo', block_timeout_ms=0)",
    "LiveCapture('lo', block_timeout_ms=-1)",
    "LiveCapture('lo', block_timeout_ms=2**32)",
    "LiveCapture('lo', block_timeout_ms=True)",
    "LiveCapture('lo', block_timeout_ms=1.5)",
    "LiveCapture('lo', promiscuous=1)",
    "LiveCapture('lo', promiscuous='yes')",
    "LiveCapture('lo', fanout='nope')",
    "LiveCapture('lo', fanout=3)",
    "LiveCapture('lo', fanout=Fanout('hash', 70000))",
    "LiveCapture('lo', fanout=Fanout('hash', -1))",
    "LiveCapture('lo', fanout=Fanout('hash', True))",
    "LiveCapture('lo', filter='')",
    "LiveCapture('lo', filter=5)",
    "LiveCapture('lo', direction='out')",
    "LiveCapture('lo', direction=None)",
])
def test_bad_arguments_are_refused_before_any_syscall(call):
    # (no namespace needed: nothing is opened)
    expect_raises(f"from fasttcp import LiveCapture, Fanout\n{call}", "UsageError")


@needs_root
def test_a_missing_interface_is_enodev_naming_it():
    out = expect_raises(IN_NEW_NETNS + "fasttcp.LiveCapture('nosuchif0')", "OSError", match="nosuchif0")
    assert "No such device" in out.message


@needs_root
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is not installed")
def test_without_cap_net_raw_the_kernels_permission_error_names_the_interface():
    code = "import fasttcp\ntry:\n    fasttcp.LiveCapture('lo')\nexcept OSError as e:\n" \
           "    print(type(e).__name__, e.errno, e)\n"
    out = subprocess.run(["setpriv", "--bounding-set", "-net_raw", "--inh-caps", "-net_raw",
                          sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("PermissionError 1 ") and "'lo'" in out.stdout


@needs_root
@pytest.mark.parametrize("call", [
    "cap.next_batch(float('nan'))",
    "cap.next_batch(-1)",
    "cap.next_batch(float('inf'))",
    "cap.next_batch('1')",
    "cap.next_batch(True)",
    "cap.next_batch(-10**400)",
    "cap.next_batch(0, copy=1)",
])
def test_bad_next_batch_arguments(call):
    expect_raises(IN_NEW_NETNS + f"cap = fasttcp.LiveCapture('lo', ring_bytes=1 << 16, block_bytes=4096)\n{call}",
                  "UsageError")


@needs_root
def test_a_closed_capture_refuses_and_closes_twice_quietly():
    expect_raises(IN_NEW_NETNS + """
cap = fasttcp.LiveCapture('lo', ring_bytes=1 << 16, block_bytes=4096)
assert cap.next_batch(0) is None
cap.close(); cap.close()
assert cap.stats.packets == 0
cap.next_batch(0)
""", "UsageError", match="closed")


@needs_root
def test_batch_views_outlive_the_capture_safely():
    # a view of the ring held past close keeps the mapping: reading it must not crash
    assert expect_ok(IN_NEW_NETNS + """
import socket, time
cap = fasttcp.LiveCapture('lo', ring_bytes=1 << 16, block_bytes=4096)
srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen()
c = socket.create_connection(srv.getsockname()); c.close()
batch = None
for _ in range(100):
    batch = cap.next_batch(0.05)
    if batch is not None:
        break
cap.close()
del cap
gc.collect()
outcome(int(batch.buffer.sum()) > 0 and len(batch) > 0)
""") == "True"


WALK_FUZZ = """
from fasttcp.capture.ring import walk_blocks
import struct
rng = np.random.default_rng(SEED)
BB = 4096
DESC, HDR = 48, 48
bad_total = rows_total = 0
for trial in range(400):
    nblocks = int(rng.integers(1, 4))
    ring = rng.integers(0, 256, size=BB * nblocks, dtype=np.uint8)
    for b in range(nblocks):
        base = b * BB
        # descriptor: version, offset_to_priv, block_status, num_pkts, offset_to_first_pkt
        npk = int(rng.choice([0, 1, 3, 50, 2**32 - 1]))
        first = int(rng.choice([0, 47, 48, 4095, 4096, 2**31, int(rng.integers(0, 2**32))]))
        struct.pack_into("<IIIII", ring, base, 3, 0, 1, npk, first)
        if rng.random() < 0.5:
            # some plausible headers: next, sec, nsec, snaplen, len, status, mac, net
            off = 48
            for _ in range(int(rng.integers(1, 6))):
                if off + HDR > BB:
                    break
                mac = int(rng.choice([HDR, 68, 80, 2**16 - 1]))
                snap = int(rng.choice([0, 14, 60, 2000, 2**32 - 1]))
                nxt = int(rng.choice([0, 8, 48, 128, 4096, 2**32 - 8]))
                status = int(rng.choice([1, 1 | 8, 1 | 8 | 16]))
                struct.pack_into("<IIIIIIHH", ring, base + off, nxt, 1, 2, snap, snap, status, mac,
                                 min(mac + int(rng.choice([0, 14, 9000])), 2**16 - 1))
                off += max(nxt, 48) if nxt % 8 == 0 else 48
    (offs, lens, ts, wl, vd, sn, fr), bad, done = walk_blocks(ring, BB)
    assert np.all(offs >= 0) and np.all(lens >= 0) and np.all(offs + lens <= len(ring)), trial
    # each packet lies inside one block
    assert np.all(offs // BB == np.maximum(offs + lens - 1, offs) // BB), trial
    bad_total += bad
    rows_total += len(offs)
outcome((bad_total > 0, rows_total > 0))
"""


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_lying_blocks_never_take_the_walk_outside_the_ring(seed):
    assert expect_ok(WALK_FUZZ.replace("SEED", str(seed))) == "(True, True)"


def test_walk_blocks_refuses_a_buffer_of_the_wrong_shape():
    for call in ("walk_blocks(np.zeros(4095, np.uint8), 4096)", "walk_blocks(np.zeros(8192, np.uint8), 3000)",
                 "walk_blocks(np.zeros(0, np.uint8), 4096)", "walk_blocks(b'x' * 4096, 4096)",
                 "walk_blocks(np.zeros(4096, np.int64)[::2], 4096)"):
        expect_raises(f"from fasttcp.capture.ring import walk_blocks\n{call}", "UsageError")


@needs_root
def test_close_from_another_thread_while_reading():
    # a reader thread in next_batch, the main thread closes: the reader ends with
    # UsageError (closed) or None, never a crash on unmapped memory
    assert expect_ok(IN_NEW_NETNS + """
import socket, time
cap = fasttcp.LiveCapture('lo', ring_bytes=1 << 20, block_bytes=4096, block_timeout_ms=1)
srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen(128)
ended = []
def reader():
    try:
        while True:
            batch = cap.next_batch(0.01)
            if batch is not None:
                batch.buffer[batch.offsets[-1]]
    except fasttcp.UsageError as exc:
        ended.append("closed" in str(exc))
t = threading.Thread(target=reader)
t.start()
for _ in range(50):
    socket.create_connection(srv.getsockname()).close()
cap.close()
t.join(10)
outcome(ended)
""") == "[True]"


@needs_root
def test_close_from_another_thread_ends_a_wait_without_timeout():
    # closing a socket does not wake a poll() on it: a reader waiting with timeout=None
    # must still end (UsageError, closed) instead of waiting for a packet forever
    assert expect_ok(IN_NEW_NETNS + """
import time
cap = fasttcp.LiveCapture('lo', ring_bytes=1 << 16, block_bytes=4096)
ended = []
def reader():
    try:
        ended.append(cap.next_batch(None))
    except fasttcp.UsageError as exc:
        ended.append("closed" in str(exc))
t = threading.Thread(target=reader, daemon=True)
t.start()
time.sleep(0.3)
cap.close()
t.join(10)
outcome((t.is_alive(), ended))
""") == "(False, [True])"


@needs_root
def test_an_interface_going_down_is_enetdown_once_then_the_capture_goes_on():
    # the kernel sets ENETDOWN on the socket (packet_notifier) and poll() says POLLERR
    # until it is read: next_batch must raise it, not spin on poll until its deadline
    assert expect_ok(IN_NEW_NETNS + """
import errno, os, socket
cap = fasttcp.LiveCapture('lo', ring_bytes=1 << 16, block_bytes=4096, block_timeout_ms=1)
os.system("ip link set lo down")
try:
    got = ("none", cap.next_batch(30.0))
except OSError as exc:
    got = (errno.errorcode[exc.errno], "'lo'" in str(exc))
os.system("ip link set lo up")
srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen()
c = socket.create_connection(srv.getsockname()); c.close()
seen = 0
for _ in range(100):
    batch = cap.next_batch(0.05)
    seen += 0 if batch is None else len(batch)
    if seen >= 3:
        break
outcome((got, seen >= 3))
""") == "(('ENETDOWN', True), True)"


@needs_root
@pytest.mark.parametrize("geometry", ["4096, 2, 0", "0, 0, 0", "4096, 0, 2048", "0, 2, 2048", "4096, 2, 3000"])
def test_rx_ring_geometry_the_kernel_refuses_is_einval_not_a_crash(geometry):
    # RxRing is the C half LiveCapture validates for; called directly, a frame size of 0
    # divided by zero (SIGFPE) before the kernel could refuse it
    out = expect_raises(IN_NEW_NETNS + f"""
from fasttcp.capture.ring import RxRing
r = RxRing('lo')
r.open()
r.set_ring({geometry}, 1, 1, False)
""", "OSError", match="PACKET_RX_RING")
    assert "Invalid argument" in out.message


@needs_root
def test_packets_still_in_the_ring_at_close_are_counted_undelivered():
    # a block is handed over when full or after block_timeout_ms: closing before that
    # leaves its packets in the kernel's count (tp_packets) and in no batch -- they must
    # show up as undelivered, or delivered + drops falls short of packets
    assert expect_ok(IN_NEW_NETNS + """
import socket
cap = fasttcp.LiveCapture('lo', ring_bytes=1 << 16, block_bytes=4096, block_timeout_ms=60_000)
srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen()
socket.create_connection(srv.getsockname()).close()
assert cap.next_batch(0.2) is None
cap.close()
st = cap.stats
outcome((st.packets > 0, st.delivered, st.drops, st.undelivered == st.packets,
         st.as_dict()["undelivered"] == st.packets))
""") == "(True, 0, 0, True, True)"
