"""`fasttcp.analyze_live` through the Python API, on a veth pair: the rows and the
summary it returns are those `fasttcp.analyze` gives for tcpdump's capture of the same
real Linux traffic, with one worker and with two (the workers' counts merged exactly),
the status callback runs while it captures, and a stop Event ends it."""
from __future__ import annotations

import collections
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import fasttcp
from tests.analysis.live_traffic import (
    TIME_TOLERANCE_S,
    WHEN_IT_ENDED,
    Server,
    clients,
    tcpdump,
    tcpdump_drops,
    wait_for,
)
from tests.netns import needs_namespaces, veth  # noqa: F401  -- the fixture

pytestmark = needs_namespaces

CHILD = r"""
import json, pickle, sys, threading
import fasttcp
stop = threading.Event()
statuses = []
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
s = fasttcp.analyze_live(sys.argv[1], workers=int(sys.argv[2]), keep_rows=True, stop=stop,
                         ready=lambda: print("listening on", file=sys.stderr, flush=True),
                         status=statuses.append)
with open(sys.argv[3], "wb") as f:
    pickle.dump({"summary": s.as_dict(), "rows": s.rows, "capture": s.capture,
                 "statuses": [(st.packets, st.packets_per_s, st.open_connections, st.drops) for st in statuses]}, f)
"""


#: FLOW_DTYPE's fields read from timestamps: two captures stamp a packet apart (see
#: tests/analysis/live_traffic.py, TIMED), so they are compared within TIME_TOLERANCE_S.
TIME_FIELDS = ("start_us", "end_us", "rtt_syn_synack", "rtt_synack_ack")


#: The tracker's own number for a connection (its table slot): per tracker, so it
#: differs between one tracker and N.
SLOT = ("id",)


def _untimed(rows: np.ndarray) -> list[tuple]:
    """Each row's fields but WHEN_IT_ENDED, TIME_FIELDS, SLOT and the padding."""
    skip = WHEN_IT_ENDED + TIME_FIELDS + SLOT
    names = [n for n in rows.dtype.names if n not in skip and not n.startswith("_")]
    return [tuple(r[n].tobytes() if hasattr(r[n], "tobytes") else r[n] for n in names) for r in rows]


def assert_same_connections(got: np.ndarray, want: np.ndarray) -> None:
    a, b = _untimed(got), _untimed(want)
    assert collections.Counter(a) == collections.Counter(b)
    for f in TIME_FIELDS:
        x = np.array([v for _, _, v in sorted(zip(a, got["start_us"], got[f], strict=True))], np.int64)
        y = np.array([v for _, _, v in sorted(zip(b, want["start_us"], want[f], strict=True))], np.int64)
        assert np.abs(x - y).max() <= TIME_TOLERANCE_S * 1e6, f


@pytest.mark.parametrize("workers", [1, 2])
def test_analyze_live_returns_what_analyze_gives_for_tcpdumps_capture(veth, tmp_path, workers):  # noqa: F811
    import pickle

    server = Server(veth)
    dump = tcpdump(veth, tmp_path / "dump.pcap", tmp_path)
    err = tmp_path / "child.err"
    with open(err, "w") as errf:
        child = veth.popen(veth.a, [sys.executable, "-c", CHILD, veth.a_if, str(workers), str(tmp_path / "out.pkl")],
                           stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errf)
        try:
            wait_for(err, "listening on", child)
            clients(veth, 200)
            time.sleep(1.5)                    # a status tick, and the last packets handed over
            child.stdin.close()                # the child sets its stop Event
            assert child.wait(timeout=60) == 0, err.read_text()
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(timeout=30)
            dump.stop(signal.SIGTERM)
            server.close()
    assert tcpdump_drops(dump) == 0
    with open(tmp_path / "out.pkl", "rb") as f:
        got = pickle.load(f)
    want = fasttcp.analyze(str(tmp_path / "dump.pcap"), fasttcp.AnalyzeConfig(verify_checksum=False),
                           keep_rows=True)
    assert len(got["rows"]) == got["summary"]["connections"] == want.connections >= 200
    assert_same_connections(got["rows"], want.rows)
    # the workers' summaries add up to the one summary of the whole capture
    same = ("packets", "connections", "conn_states", "connections_with_reset", "retransmitted_segments")
    wd = want.as_dict()
    assert {k: got["summary"][k] for k in same} == {k: wd[k] for k in same}
    assert got["summary"]["workers"] == workers
    assert got["capture"]["packets"] == want.packets and got["capture"]["drops"] == 0
    assert json.dumps(got["summary"]["capture_stats"]) == json.dumps(dict(sorted(got["capture"].items())))
    assert got["statuses"], "no status while capturing"
    assert max(s[0] for s in got["statuses"]) > 0
