"""LiveCapture on a real veth: Linux TCP traffic from namespace B, the ring in namespace A.

What the ring delivers is compared with what tcpdump (libpcap's own ring) wrote at the
same time; the checksum-offload, drop and fanout behaviour is checked against the
kernel's own counters and the packets themselves.
"""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest

from fasttcp import Verdict
from tests.capture.live_harness import Capture, Tcpdump, clients, digests, pcap_digests, server, syns
from tests.netns import veth  # noqa: F401  (the fixture)


def _tracker_count(result: dict, verdict: Verdict) -> int:
    """How many packets a child's tracker gave `verdict` (the stats key is its name)."""
    return int(result["tracker"].get(verdict.name, 0))


def test_live_capture_sees_what_tcpdump_sees(veth, tmp_path):  # noqa: F811
    srv = server(veth)
    dump = Tcpdump(veth, tmp_path / "tcpdump.pcap")
    cap = Capture(veth, {"all": {}})
    try:
        peer = clients(veth, 30)
    finally:
        result = cap.finish()["all"]
        dump.stop(at_least=len(result["packets"]))
        srv.kill()
    assert peer == {"done": 24, "refused": 6}
    rows = result["packets"]
    theirs, their_bytes = pcap_digests(tmp_path / "tcpdump.pcap")
    assert len(rows) == sum(theirs.values()) > 24 * 8          # every connection: >= 8 packets
    assert digests(rows) == theirs
    assert sum(r[1] for r in rows) == their_bytes == result["stats"]["bytes"] - 14 * len(rows)
    assert {r[2] for r in rows} == {int(Verdict.OK)} and not any(r[3] for r in rows)
    flows = {r[4] for r in rows}
    assert sum("198.18.0" in f for f in flows) == 15 and sum("2001:2::" in f for f in flows) == 15
    st = result["stats"]
    assert st["delivered"] == st["packets"] == len(rows) and st["drops"] == 0
    assert st["batches"] >= 1 and st["blocks"] >= st["batches"] and st["bad_blocks"] == 0


def test_offloaded_checksums_are_completed_and_bad_ones_still_counted(veth):  # noqa: F811
    # veth offloads transmit checksums by default: the local stack leaves TCP checksums
    # partial (TP_STATUS_CSUMNOTREADY) on both ends' packets
    features = veth.run(veth.a, ["ethtool", "-k", veth.a_if]).stdout
    assert "tx-checksumming: on" in features
    srv = server(veth)
    cap = Capture(veth, {"all": {}})
    try:
        clients(veth, 10)
        good = syns(veth, 7, bad=False)
        bad = syns(veth, 5, bad=True)
    finally:
        result = cap.finish()["all"]
        srv.kill()
    assert (good, bad) == (7, 5)
    assert result["stats"]["csum_completed"] > 40                 # the connections' packets
    # only the five SYNs with a wrong checksum, sent through a raw socket with no offload
    assert _tracker_count(result, Verdict.BAD_CHECKSUM) == 5
    assert sum(r[5] == int(Verdict.BAD_CHECKSUM) for r in result["packets"]) == 5


def test_drops_are_counted_and_match_the_kernel(veth):  # noqa: F811
    # a 4-block ring that nobody reads while B sends thousands of SYNs: the kernel drops
    cap = Capture(veth, {"tiny": {"ring_bytes": 4 * 4096, "block_bytes": 4096}}, pause=True)
    try:
        sent = syns(veth, 3000, bad=False)
        cap.go()
    finally:
        result = cap.finish()["tiny"]
    st = result["stats"]
    rows = result["packets"]
    assert sent == 3000
    assert st["drops"] > 0 and st["freeze_q"] >= 0
    assert st["delivered"] == len(rows) > 0
    assert st["delivered"] + st["drops"] == st["packets"]
    # what was delivered is intact: whole packets whose checksums verify
    assert all(r[2] == int(Verdict.OK) and not r[3] for r in rows)
    assert _tracker_count(result, Verdict.BAD_CHECKSUM) == 0
    assert _tracker_count(result, Verdict.TRUNCATED) == 0
    assert len(digests(rows)) == len(rows)                     # no packet twice


def test_fanout_hash_splits_by_flow_and_groups_are_unique(veth):  # noqa: F811
    srv = server(veth)
    cap = Capture(veth, {"all": {}, "one": {"fanout": "hash"}, "two": {"fanout": "join:one"},
                         "other": {"fanout": "hash"}})
    try:
        clients(veth, 40)
    finally:
        result = cap.finish()
        srv.kill()
    groups = cap.groups
    assert groups["all"] is None and groups["one"] == groups["two"] == result["one"]["group"]
    assert groups["other"] != groups["one"]
    one, two, every = (digests(result[n]["packets"]) for n in ("one", "two", "all"))
    assert one + two == every and not (set(one) & set(two))
    assert digests(result["other"]["packets"]) == every         # a group of its own sees all
    flows_one = {r[4] for r in result["one"]["packets"]}
    flows_two = {r[4] for r in result["two"]["packets"]}
    assert flows_one and flows_two and not (flows_one & flows_two)   # whole flows per socket
    assert len(flows_one | flows_two) == 40


def test_direction_in_leaves_out_what_the_host_sends(veth):  # noqa: F811
    srv = server(veth)
    cap = Capture(veth, {"in": {"direction": "in"}, "both": {}})
    try:
        clients(veth, 6)
    finally:
        result = cap.finish()
        srv.kill()
    inbound = Counter(r[0] for r in result["in"]["packets"])
    assert inbound and sum(inbound.values()) < len(result["both"]["packets"])
    assert not inbound - digests(result["both"]["packets"])
    assert {r[6] for r in result["in"]["packets"]} == {veth.b_v4, veth.b_v6}
    assert {r[6] for r in result["both"]["packets"]} == {veth.a_v4, veth.a_v6, veth.b_v4, veth.b_v6}


VIEW_AND_COPY = """
import json, sys
from fasttcp import LiveCapture
cap = LiveCapture(sys.argv[1], ring_bytes=1 << 20, block_bytes=1 << 16)
print("ready", flush=True)
batch = None
for _ in range(200):
    batch = cap.next_batch(timeout=0.05)
    if batch is not None:
        break
view_len, first = len(batch.buffer), batch.packet(0)
kept = batch.copy()
copied = None
for _ in range(200):
    copied = cap.next_batch(timeout=0.05, copy=True)
    if copied is not None:
        break
cap.close()
print(json.dumps({"view_len": view_len, "kept_same": kept.packet(0) == first,
                  "kept_len": len(kept.buffer), "kept_sum": int(kept.lengths.sum()),
                  "copy_len": len(copied.buffer), "copy_sum": int(copied.lengths.sum()),
                  "copy_first_offset": int(copied.offsets[0]), "frames": [int(batch.frames[0]), int(copied.frames[0])],
                  "after_close": len(batch.buffer)}))
"""


def test_a_batch_is_a_view_of_the_ring_or_a_copy(veth):  # noqa: F811
    child = veth.popen(veth.a, [sys.executable, "-c", VIEW_AND_COPY, veth.a_if])
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        syns(veth, 3, bad=False)
        veth.run(veth.b, ["sleep", "0.2"])
        syns(veth, 3, bad=False)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0, err
    r = json.loads(out.strip().splitlines()[-1])
    assert r["view_len"] == 1 << 20 == r["after_close"]          # the ring, kept mapped by the view
    assert r["kept_same"] and r["kept_len"] == r["kept_sum"]
    assert r["copy_len"] == r["copy_sum"] and r["copy_first_offset"] == 0
    assert r["frames"][0] == 1 and r["frames"][1] > r["frames"][0]


@pytest.mark.parametrize("mode", ["qm", "cpu", "lb"])
def test_other_fanout_modes_deliver_everything_once(veth, mode):  # noqa: F811
    srv = server(veth)
    cap = Capture(veth, {"all": {}, "one": {"fanout": mode}, "two": {"fanout": "join:one"}})
    try:
        clients(veth, 6)
    finally:
        result = cap.finish()
        srv.kill()
    one, two, every = (digests(result[n]["packets"]) for n in ("one", "two", "all"))
    assert every and one + two == every


def test_tcpdump_is_there():
    # the comparison above needs it; CI installs it (.ci/run)
    assert subprocess.run(["tcpdump", "--version"], capture_output=True, timeout=30).returncode == 0


PROMISC = """
import sys
from fasttcp import LiveCapture
IFF_PROMISC = 0x100
def flags():
    return int(open(f"/sys/class/net/{sys.argv[1]}/flags").read(), 16)
before = flags() & IFF_PROMISC
with LiveCapture(sys.argv[1], promiscuous=True, ring_bytes=1 << 16, block_bytes=4096):
    during = flags() & IFF_PROMISC
after = flags() & IFF_PROMISC
print(before, during, after)
"""


def test_promiscuous_is_on_while_open_and_off_after(veth):  # noqa: F811
    assert veth.run(veth.a, [sys.executable, "-c", PROMISC, veth.a_if]).stdout.split() == ["0", "256", "0"]


TUN_CHILD = """
import json, socket, subprocess, sys
from fasttcp import LiveCapture
from fasttcp.capture.tun import Tun
with Tun("fttun0") as tun:
    subprocess.run(["ip", "addr", "add", "198.19.0.1/24", "dev", "fttun0"], check=True)
    subprocess.run(["ip", "link", "set", "fttun0", "up"], check=True)
    cap = LiveCapture("fttun0", ring_bytes=1 << 16, block_bytes=4096)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:   # not TCP: filtered out
        u.sendto(b"x", ("198.19.0.2", 9))
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex(("198.19.0.2", 80))                             # a SYN out of the TUN device
    rows = []
    for _ in range(100):
        batch = cap.next_batch(0.05)
        if batch is not None:
            rows += [(int(batch.verdicts[i]), batch.packet(i)[0] >> 4, batch.packet(i)[9])
                     for i in range(len(batch))]
            break
    cap.close()
    print(json.dumps({"linktype": cap.linktype, "rows": rows}))
"""


def test_a_raw_ip_interface_gives_ip_packets(veth):  # noqa: F811
    # a TUN device has no link header: frames start at the IP header, the "tcp" program
    # is the raw-IP one
    out = json.loads(veth.run(veth.a, [sys.executable, "-c", TUN_CHILD]).stdout)
    assert out["linktype"] == 101
    assert out["rows"] and all(r == [int(Verdict.OK), 4, 6] for r in out["rows"])
