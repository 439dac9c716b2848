"""Shard trackers in tests: a feed_batch call with a hostile shard argument, probed in a
subprocess -- it must raise the named exception before tracking anything (see
tests/probe.py) -- and the end state of a set of shard trackers, to compare two ways of
feeding them."""
from tests.probe import expect_raises


def expect_refused_before_tracking(keyword: str, value: str, match: str) -> None:
    """feed_batch(..., keyword=value) on three SYNs raises UsageError matching `match`,
    and the tracker has tracked nothing."""
    expect_raises(f"""
        import numpy as np
        from fasttcp import Tracker, build
        pkts = [build("198.18.0.1", "198.19.0.1", 1000 + i, 80, seq=1) for i in range(3)]
        buf = np.frombuffer(b"".join(pkts), dtype=np.uint8)
        lens = np.array([len(p) for p in pkts], dtype=np.int64)
        offs = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
        tr = Tracker(16)
        try:
            tr.feed_batch(buf, offs, lens, np.arange(3, dtype=np.int64), {keyword}={value})
        finally:
            assert tr.stats["packets"] == 0 and len(tr) == 0
    """, "UsageError", match)


def close_all(trackers: list, got: list[list]) -> None:
    """Append each tracker's rows at close, then its stats, to its list in `got`."""
    for k, tr in enumerate(trackers):
        got[k].append(tr.close().tobytes())
        got[k].append(tr.stats)
