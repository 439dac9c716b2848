"""What a tracker keeps resident: memory grows with the rows and events it buffers, not with
the size of its buffers. Each probe runs in a child process (tests/probe.py), so it starts
from a fresh heap."""
import textwrap

from tests.probe import expect_ok

RSS = """
import os
from fasttcp import Tracker

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
"""


def test_made_and_freed_trackers_leave_no_buffer_resident():
    """The finished-row buffer (65,536 rows, 12 MB) and the event buffer (24 MB at the
    default max_events) were calloc'd. Once a freed one had raised glibc's mmap
    threshold, the next came from the heap and calloc cleared it with memset. Each
    tracker then cost 12 MB resident, and 0.4 ms to make. Mapped zero pages cost neither
    until rows are written."""
    grew = expect_ok(RSS + textwrap.dedent("""
        Tracker(1)
        base = rss()
        for _ in range(4):
            t = Tracker(1)
            e = Tracker(1, events=True)
            del t, e
        keep = [Tracker(1) for _ in range(4)] + [Tracker(1, events=True)]
        outcome(rss() - base)
    """))
    assert int(grew) < 4 << 20, int(grew) / 2 ** 20


def test_rows_written_become_resident_and_are_read_back_whole():
    """The mapped row buffer holds what is written to it: 20,000 connections closed at
    once (a fifth of the buffer's pages) come back as 20,000 rows, each with its own
    ports and packet counts, and the buffer then costs what those rows take."""
    got = expect_ok(RSS + textwrap.dedent("""
        import numpy as np
        from fasttcp import build
        S, D = "198.18.0.1", "198.18.0.2"
        t = Tracker(30_000, seed=1)
        base = rss()
        for i in range(20_000):
            t.feed(build(S, D, 1024 + i % 60_000, 80 + i // 60_000, seq=i), 1.0)
        rows = t.close()
        ports = sorted(int(p) for p in rows["orig_p"])
        outcome((len(rows), ports == sorted(1024 + i % 60_000 for i in range(20_000)),
                 bool((rows["orig_pkts"] == 1).all()), rss() - base < 64 << 20))
    """))
    assert got == "(20000, True, True, True)"


def test_a_first_row_and_event_cost_pages_not_huge_pages():
    """The buffers are written front to back: a huge page would make the first row (or
    event) written cost 2 MiB, resident and cleared -- 4 MiB for a tracker with events
    that saw one packet."""
    grew = expect_ok(RSS + textwrap.dedent("""
        from fasttcp import build
        trackers = [Tracker(64, events=True, seed=1) for _ in range(8)]
        base = rss()
        for t in trackers:
            t.feed(build("198.18.0.1", "198.18.0.2", 1024, 80, seq=1), 1.0)
            t.close()
        outcome(rss() - base)
    """))
    assert int(grew) < 4 << 20, int(grew) / 2 ** 20
