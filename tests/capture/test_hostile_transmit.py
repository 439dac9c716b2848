"""Hostile calls into Transmitter and its C engine, each in a child process
(tests/probe.py) that joins namespace A of one veth pair: bad arguments, bad batches,
misuse after close. Every answer is a precise UsageError (OSError as the kernel says),
or a counted verdict -- never a crash, and nothing written outside a buffer or a ring
frame."""
from __future__ import annotations

import textwrap

import pytest

from tests.netns import VethPair, can_make_namespaces
from tests.probe import INTEGER_SWEEP, expect_ok, expect_raises

pytestmark = pytest.mark.skipif(can_make_namespaces() is not None, reason=can_make_namespaces() or "")


@pytest.fixture(scope="module")
def net():
    with VethPair() as pair:
        yield pair


def P(net: VethPair, body: str) -> str:
    """The probe: join namespace A (setns), then `body`."""
    return textwrap.dedent(f"""
        import ctypes, os
        _fd = os.open("/var/run/netns/{net.a}", os.O_RDONLY)
        if ctypes.CDLL(None, use_errno=True).setns(_fd, 0x40000000) != 0:   # CLONE_NEWNET
            raise OSError(ctypes.get_errno(), "setns")
        from fasttcp.capture.transmit import Transmitter
        from fasttcp.capture.tx import TxEngine
        from fasttcp import UsageError
        IF = "{net.a_if}"
        PKT = fasttcp.build("198.18.0.1", "198.18.0.2", 1, 2, payload=b"x" * 100)
        BUF = np.frombuffer(PKT * 4, np.uint8)
    """) + textwrap.dedent(body)


@pytest.mark.parametrize("interface,exc", [
    ("nosuchif0", "OSError"), ("", "UsageError"), ("x" * 16, "UsageError"), ("a/b", "UsageError"),
    ("a\0b", "UsageError"), ("\udcff", "UsageError"), (None, "UsageError"), (b"lo", "UsageError"), ("lo", "UsageError"),
])
def test_interfaces_that_cannot_be_used_are_refused(net, interface, exc):
    # "lo" is not Ethernet (ARPHRD_LOOPBACK): frames built for it would be wrong
    expect_raises(P(net, f"Transmitter({interface!r})"), exc)


@pytest.mark.parametrize("kw", [
    "method='tx'", "method=None", "ring_bytes=0", "ring_bytes=-1", "ring_bytes=True", "ring_bytes=2**62",
    "ring_bytes=4096", "ring_bytes=1.5", "frame_bytes=2047", "frame_bytes=0", "frame_bytes=64", "frame_bytes=2**40",
    "frame_bytes=float('nan')", "frame_bytes=False", "dst_mac=b'12345'", "dst_mac='zz:00:00:00:00:00'",
    "dst_mac=12", "src_mac='00:11:22:33:44'", "qdisc_bypass=1",
])
def test_bad_settings_are_usage_errors(net, kw):
    expect_raises(P(net, f"Transmitter(IF, {kw})"), "UsageError")


def test_ring_sizes_sweep_without_a_crash(net):
    # (every value of the sweep is outside 64 KiB..1 GiB)
    out = expect_ok(P(net, INTEGER_SWEEP + textwrap.dedent("""
        def make(v):
            Transmitter(IF, ring_bytes=v).close()
        outcome(sweep(make) + sweep(lambda v: Transmitter(IF, frame_bytes=v).close()))
    """)))
    assert out == repr(["UsageError"] * 22)


@pytest.mark.parametrize("method", ["ring", "sendmmsg"])
@pytest.mark.parametrize("offsets,lengths", [
    ("[0]", "[len(BUF) + 1]"), ("[-1]", "[10]"), ("[len(BUF)]", "[1]"), ("[0]", "[-1]"), ("[2**63 - 1]", "[1]"),
    ("[0, 1]", "[1]"), ("[[0]]", "[[1]]"), ("[0.0]", "[1]"), ("[True]", "[1]"), ("['0']", "[1]"),
])
def test_spans_outside_the_buffer_are_refused_and_nothing_is_sent(net, method, offsets, lengths):
    expect_raises(P(net, f"""
        tx = Transmitter(IF, method={method!r})
        try:
            tx.send_packets(BUF, {offsets}, {lengths})
        finally:
            assert tx.stats["sent"] == 0, tx.stats
    """), "UsageError")


@pytest.mark.parametrize("method", ["ring", "sendmmsg"])
def test_non_ip_empty_short_and_oversized_input_is_counted(net, method):
    out = expect_ok(P(net, f"""
        big = np.zeros(70000, np.uint8); big[0] = 0x45
        with Transmitter(IF, method={method!r}) as tx:
            n1 = tx.send_packets(big, [0, 0, 1, 0], [70000, 0, 5, 1501])    # too big, empty, not IP, too big
            n2 = tx.send_frames(big, [0, 0, 0], [13, 0, 65000])              # short, short, too big
            s = tx.stats
        outcome((n1, n2, s["too_big"], s["not_ip"], s["too_short"], s["sent"]))
    """))
    assert out == "(0, 0, 3, 2, 2, 0)"


@pytest.mark.parametrize("buffer,exc", [("None", "TypeError"), ("42", "TypeError"),
                                        ("np.zeros((4, 100), np.uint8)[:, ::2]", "UsageError")])
def test_buffers_that_are_not_contiguous_bytes_are_refused(net, buffer, exc):
    expect_raises(P(net, f"Transmitter(IF).send_packets({buffer}, [0], [1])"), exc)


def test_calls_after_close_are_usage_errors_and_close_is_idempotent(net):
    expect_raises(P(net, """
        tx = Transmitter(IF)
        tx.close(); tx.close()
        tx.send_packets(BUF, [0], [len(PKT)])
    """), "UsageError", "closed")


def test_an_engine_cannot_be_initialised_twice_or_used_uninitialised(net):
    expect_raises(P(net, """
        e = TxEngine.__new__(TxEngine)
        e.send(BUF, [0], [len(PKT)], True)
    """), "UsageError", "closed")
    expect_raises(P(net, """
        tx = Transmitter(IF)
        tx._engine.__init__(3, "ring", b"\\0" * 6, b"\\0" * 6, 1514, block_size=65536, block_nr=1,
                            frame_size=2048)
    """), "UsageError", "once")


def test_a_batch_sent_while_another_thread_rewrites_its_offsets_stays_inside_the_buffer(net):
    # the C loop checks each span again as it reads it: rewritten offsets stop the batch
    out = expect_ok(P(net, """
        n = 200_000
        off = np.zeros(n, np.int64); ln = np.full(n, len(PKT), np.int64)
        stop = threading.Event()
        def vandal():
            while not stop.is_set():
                off[n // 2:] = 2**40
                off[n // 2:] = 0
        t = threading.Thread(target=vandal); t.start()
        seen = set()
        try:
            with Transmitter(IF, method="sendmmsg") as tx:
                for _ in range(3):
                    try:
                        tx.send_packets(BUF, off, ln)
                        seen.add("ok")
                    except UsageError as e:
                        seen.add("rewritten" if "rewritten" in str(e) else "checked")
        finally:
            stop.set(); t.join()
        outcome(sorted(seen))
    """))
    # each round either sent all (the vandal was between writes), was refused up front,
    # or was stopped by the in-loop check: never a crash or a frame from outside BUF
    assert out is not None and out.startswith("[") and set(eval(out)) <= {"ok", "rewritten", "checked"}


def test_a_device_queue_that_drops_everything_is_enobufs_not_a_hang():
    # pfifo limit 0 refuses every frame (ENOBUFS). The kernel puts a refused ring frame
    # back to SEND_REQUEST and retries it at the next send(): retrying at once spun
    # forever without the GIL. The ring gives up with OSError(ENOBUFS) and counts nothing
    # dropped (nothing was: the frames stay queued); sendmmsg's refused packets are gone
    # and counted dropped.
    with VethPair() as own:
        own.run(own.a, ["tc", "qdisc", "replace", "dev", own.a_if, "root", "pfifo", "limit", "0"])
        assert expect_ok(P(own, """
            import errno
            got = {}
            for method in ("ring", "sendmmsg"):
                tx = Transmitter(IF, method=method)
                try:
                    tx.send_packets(BUF, np.zeros(4, np.int64), np.full(4, len(PKT), np.int64))
                    tx.flush()
                    got[method] = ("ok", tx.stats["dropped"])
                except OSError as exc:
                    got[method] = (errno.errorcode[exc.errno], tx.stats["dropped"])
                tx.close()
            outcome(got)
        """)) == "{'ring': ('ENOBUFS', 0), 'sendmmsg': ('ok', 4)}"
