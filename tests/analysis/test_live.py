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
from tests.analysis.live_traffic import WHEN_IT_ENDED, Server, clients, tcpdump, tcpdump_drops, wait_for
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


def _rows(rows: np.ndarray) -> collections.Counter:
    """Rows as a multiset of their fields, but WHEN_IT_ENDED (and the padding)."""
    names = [n for n in rows.dtype.names if n not in WHEN_IT_ENDED and not n.startswith("_")]
    return collections.Counter(tuple(r[n].tobytes() if hasattr(r[n], "tobytes") else r[n] for n in names)
                               for r in rows)


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
    assert _rows(got["rows"]) == _rows(want.rows)
    # the workers' summaries add up to the one summary of the whole capture
    same = ("packets", "connections", "conn_states", "connections_with_reset", "retransmitted_segments",
            "rtt_syn_synack_s", "rtt_synack_ack_s")
    wd = want.as_dict()
    assert {k: got["summary"][k] for k in same} == {k: wd[k] for k in same}
    assert got["summary"]["workers"] == workers
    assert got["capture"]["packets"] == want.packets and got["capture"]["drops"] == 0
    assert json.dumps(got["summary"]["capture_stats"]) == json.dumps(dict(sorted(got["capture"].items())))
    assert got["statuses"], "no status while capturing"
    assert max(s[0] for s in got["statuses"]) > 0
