"""Instructions per packet and per handshake, counted by callgrind: a speed figure that
does not move with the machine's load.

    python benchmarks/instructions.py [--packets 120000] [--flows 20000] [--top 12]
                                      [--handshake-flows 16384]

Wall-clock figures on the shared 2-core development machines move by 5-10% between
runs; an instruction count is exact for a given build and input (valgrind counts, it
does not time). The hot paths here run at about 4 instructions per cycle, so the count
tracks their speed closely -- use it to judge a change to the C core, and `fasttcp
bench` for the figures themselves.

It runs three small drivers under `valgrind --tool=callgrind`, the first two collecting
only inside the C entry points:
  * tracker: `Tracker.feed_batch` over a synthetic capture (the `fasttcp bench`
    workload: 12-packet lifecycles, checksums verified) -> instructions per packet;
  * endpoint: batch opens, handshakes, closes and TIME-WAIT expiry between two
    endpoints (`fasttcp bench`'s batch mode) -> instructions per segment (all of a
    connection's work over its 7 segments) and per connection;
  * handshakes: the rounds `fasttcp bench` times for its cache-resident figure
    (connect_batch, the three pipes, accept_batch, with the Python calls between them)
    on a pair of endpoints warmed up by a round -> instructions per handshake. Its
    closes run between the counted rounds: a callgrind client request (a few lines of
    C compiled here, needs a C compiler) zeroes the count before each round and
    dumps it after.
The first two print the total and the functions (inlined code counted where it was
written) that take the most; the third its total. Needs valgrind (Debian's `valgrind`).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TRACKER_DRIVER = """
import sys, fasttcp
from fasttcp.bench.tracker import synth_capture
path, packets = sys.argv[1], int(sys.argv[2])
synth_capture(path, packets, 4000)
batches = list(fasttcp.read_pcap(path))
t = fasttcp.Tracker(packets // 12 + 5000, timeouts="conntrack", verify_checksum=True)
for b in batches:
    t.feed_batch(b)
print(sum(len(b) for b in batches))
"""

ENDPOINT_DRIVER = """
import sys
from fasttcp.bench.handshakes import _pair, flow_keys, _handshakes, _close_all
flows = int(sys.argv[1])
client, server = _pair(flows)
keys = flow_keys(flows)
for r in range(2):
    c, s = _handshakes(client, server, keys, r * 100.0)
    _close_all(client, server, c, s, r * 100.0, 30.0)
print(flows * 2)
"""

HANDSHAKE_DRIVER = """
import ctypes, sys
from fasttcp.bench.handshakes import _pair, flow_keys, _handshakes, _close_all
cg = ctypes.CDLL(sys.argv[1])
flows, rounds = int(sys.argv[2]), int(sys.argv[3])
client, server = _pair(flows)
keys = flow_keys(flows)
for r in range(rounds + 1):                 # round 0 warms the tables up, uncounted
    cg.cg_zero()
    c, s = _handshakes(client, server, keys, r * 100.0)
    if r:
        cg.cg_dump()
    _close_all(client, server, c, s, r * 100.0, 30.0)
print(flows * rounds)
"""
CLIENT_REQUESTS = """
#include <valgrind/callgrind.h>
void cg_zero(void) { CALLGRIND_ZERO_STATS; }
void cg_dump(void) { CALLGRIND_DUMP_STATS; }
"""

TRACKER_ENTRY = "__pyx_f_7fasttcp_7tracker_7tracker__feed"
# A profile-guided build may inline _feed into the feed_batch method: then the method
# is the entry (its per-call argument handling is noise over a whole batch). Never
# both: callgrind toggles collection off again at a nested match.
TRACKER_METHOD_ENTRY = "__pyx_pw_7fasttcp_7tracker_7tracker_7Tracker_*feed_batch"


def tracker_entry() -> str:
    """_feed when the built module has it as a function of its own, else the feed_batch
    method (gcc may inline _feed, or call a clone such as ``_feed.constprop.0`` that
    callgrind does not match by the plain name)."""
    so = next((ROOT / "fasttcp" / "tracker").glob("tracker*.so"), None)
    if so is None or shutil.which("nm") is None:
        return TRACKER_ENTRY
    syms = subprocess.run(["nm", str(so)], capture_output=True, text=True).stdout
    return TRACKER_ENTRY if re.search(rf"\b{TRACKER_ENTRY}$", syms, re.M) else TRACKER_METHOD_ENTRY
# Every C entry of a connection's life: segments in (pipe -> ep_process_batch -> the
# segment pipeline, _pb_run), the opens, the closes and the TIME-WAIT expiry. gcc
# inlines ep_connect_batch into the Python method, so the method's body is the entry
# there (its per-call argument checks are noise over 20,000 flows); a pattern, because
# the method's number in the symbol follows its place in the class. (The driver's
# batches are too short for the pipelines to measure their depth: the count is of the
# work alone.)
ENDPOINT_ENTRIES = ("__pyx_f_7fasttcp_8endpoint_8endpoint__pb_run",
                    "__pyx_pf_7fasttcp_8endpoint_8endpoint_8Endpoint_*connect_batch",
                    "__pyx_pf_7fasttcp_8endpoint_8endpoint_8Endpoint_*close_batch",
                    "__pyx_f_7fasttcp_8endpoint_8endpoint_ep_poll")


# numpy's OpenBLAS starts a worker thread per CPU at import, and they spin for a while
# before sleeping: between two client requests callgrind counts every thread, so their
# spin landed in the first counted handshake round (3,574 instructions a handshake
# reported for 3,100). fasttcp calls no BLAS: one thread, none started.
QUIET_ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


def callgrind(script: str, args: list[str], entries, out: Path) -> str:
    """Run `script` under callgrind collecting inside `entries`; returns its stdout."""
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    cmd += [f"--toggle-collect={e}" for e in entries]
    cmd += [sys.executable, "-c", script, *args]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=True, env=QUIET_ENV)
    return res.stdout


def handshake_count(tmpd: Path, flows: int, rounds: int) -> tuple[int, int] | None:
    """Instructions over `rounds` counted handshake rounds of `flows` each, and the
    handshakes; None when the client-request helper cannot be compiled."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()
    src, lib = tmpd / "cg.c", tmpd / "libcg.so"
    src.write_text(CLIENT_REQUESTS)
    if subprocess.run([*cc, "-O2", "-shared", "-fPIC", "-o", str(lib), str(src)],
                      capture_output=True).returncode != 0:
        return None
    out = tmpd / "handshakes.cg"
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-instr=no",
           sys.executable, "-c", HANDSHAKE_DRIVER, str(lib), str(flows), str(rounds)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=True, env=QUIET_ENV)
    total = 0
    for dump in tmpd.glob("handshakes.cg.*"):        # one file per dump: the counted rounds
        m = re.search(r"^summary:\s*(\d+)", dump.read_text(errors="replace"), re.M)
        total += int(m.group(1)) if m else 0
    return total, int(res.stdout.split()[-1])


def per_function(out: Path, c_file: Path) -> tuple[int, Counter]:
    """Total instructions, and instructions per source-level function of `c_file`
    (inlined code is attributed to the function it was written in)."""
    ann = subprocess.run(["callgrind_annotate", "--auto=yes", "--context=0", "--threshold=100",
                          "--show-percs=no", str(out)], capture_output=True, text=True, cwd=ROOT,
                         check=True).stdout
    total = int(re.search(r"^\s*([\d,]+)\s+\(?[\d.%]*\)?\s*PROGRAM TOTALS", ann, re.M).group(1).replace(",", ""))
    src = c_file.read_text(errors="replace").splitlines()
    func_at, cur = [None] * (len(src) + 2), None
    head = re.compile(r"^(?:static |CYTHON_INLINE |inline )*[A-Za-z_][\w \*]*?\b(\w+)\(.*\)\s*\{\s*$")
    for i, line in enumerate(src, 1):
        m = head.match(line)
        if m:
            cur = m.group(1)
        func_at[i] = cur
    counts: Counter = Counter()
    inside, line_no = False, None
    for line in ann.splitlines():
        if line.startswith("-- Auto-annotated source:"):
            inside, line_no = line.strip().endswith(c_file.name), None
            continue
        if not inside:
            continue
        m = re.match(r"-- line (\d+) -+", line.strip())
        if m:
            line_no = int(m.group(1))
            continue
        if "events annotated" in line:
            continue                  # callgrind_annotate's per-file summary, not a source line
        m = re.match(r"\s*([\d,]+|\.)\s", line)
        if m and line_no is not None and "=>" not in line:
            if m.group(1) != "." and line_no < len(func_at) and func_at[line_no]:
                name = re.sub(r"^__pyx_f_7fasttcp_\d+\w+?_\d+\w+?_(?=_?[a-z])", "", func_at[line_no])
                counts[name] += int(m.group(1).replace(",", ""))
            line_no += 1
    return total, counts


def report(title: str, total: int, units: int, unit: str, counts: Counter, top: int) -> None:
    print(f"{title}: {total / units:,.0f} instructions per {unit} ({total:,} over {units:,})")
    for name, n in counts.most_common(top):
        print(f"  {n / units:8.1f}  {name}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packets", type=int, default=120_000, help="tracker capture size (default 120000)")
    ap.add_argument("--flows", type=int, default=20_000, help="endpoint flows per round (default 20000)")
    ap.add_argument("--top", type=int, default=12, help="functions listed per figure")
    ap.add_argument("--handshake-flows", type=int, default=16_384,
                    help="flows per counted handshake round (default 16384, the bench's cache-resident figure)")
    args = ap.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_annotate") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    pkg = ROOT / "fasttcp"
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        n = int(callgrind(TRACKER_DRIVER, [str(tmpd / "t.pcap"), str(args.packets)], [tracker_entry()],
                          tmpd / "tracker.cg").split()[-1])
        total, counts = per_function(tmpd / "tracker.cg", pkg / "tracker" / "tracker.c")
        report("tracker feed_batch", total, n, "packet", counts, args.top)
        handshakes = int(callgrind(ENDPOINT_DRIVER, [str(args.flows)], ENDPOINT_ENTRIES,
                                   tmpd / "endpoint.cg").split()[-1])
        total, counts = per_function(tmpd / "endpoint.cg", pkg / "endpoint" / "endpoint.c")
        segments = 7 * handshakes          # SYN, SYN-ACK, ACK, FIN, ACK, FIN, ACK
        print()
        report("endpoint batch (open, handshake, close, TIME-WAIT expiry)", total, segments, "segment",
               counts, args.top)
        print(f"  = {total / handshakes:,.0f} instructions per full connection")
        counted = handshake_count(tmpd, args.handshake_flows, 2)
        print()
        if counted is None:
            print("handshakes: not counted (no C compiler for the callgrind client requests)")
        else:
            print(f"handshakes, the bench's rounds at {args.handshake_flows:,} flows: "
                  f"{counted[0] / counted[1]:,.0f} instructions per handshake")
    return 0


if __name__ == "__main__":
    if not (ROOT / "fasttcp" / "tracker" / "tracker.c").exists():
        sys.exit("build the package in place first (pip install -e .)")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    sys.exit(main())
