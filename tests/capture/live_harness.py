"""Drive the live-capture children: LiveCapture in namespace A (live_child.py), Linux
traffic from namespace B (live_peer.py), tcpdump beside it for comparison."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from tests.netns import VethPair, wait_for_pcap

HERE = Path(__file__).parent
CHILD = HERE / "live_child.py"
PEER = HERE / "live_peer.py"
PORT = 5201
TIMEOUT = 60
TCPDUMP_KIB = 256 << 10          # tcpdump's capture buffer (-B): 1024 frames of 256 KiB


def _json_line(proc: subprocess.Popen[str], key: str) -> dict:
    """The next stdout line of `proc`, which must be JSON with `key` (the child's stderr
    in the failure message otherwise)."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise AssertionError(f"child ended without {key!r}:\n{proc.communicate(timeout=TIMEOUT)[1][-3000:]}")
    got = json.loads(line)
    assert key in got, got
    return got[key]


class Capture:
    """LiveCapture(s) running in namespace A: `go()` ends a pause, `finish()` the run."""

    def __init__(self, net: VethPair, captures: dict[str, dict], *, pause: bool = False) -> None:
        cfg = {"interface": net.a_if, "captures": captures, "pause": pause}
        self.proc = net.popen(net.a, [sys.executable, str(CHILD), json.dumps(cfg)], stdin=subprocess.PIPE)
        self.groups = _json_line(self.proc, "ready")

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def finish(self) -> dict:
        out, err = self.proc.communicate(input="", timeout=TIMEOUT)
        assert self.proc.returncode == 0, err[-3000:]
        return json.loads(out.strip().splitlines()[-1])["result"]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=TIMEOUT)


class Tcpdump:
    """tcpdump -w in namespace A, started before the traffic and stopped after it."""

    def __init__(self, net: VethPair, path: Path, expression: str = "tcp") -> None:
        self.path = path
        # immediate mode makes libpcap use a ring of frames each as large as the snap
        # length: with tcpdump's default 2 MiB buffer that is 8 frames, and a tcpdump the
        # scheduler keeps waiting drops the ninth packet. -B (KiB) gives it 1024 frames.
        cmd = ["tcpdump", "-i", net.a_if, "-n", "-U", "--immediate-mode", "-Z", "root", "-s", "262144",
               "-B", str(TCPDUMP_KIB), "-w", str(path), expression]
        self.proc = net.popen(net.a, cmd, stdout=subprocess.DEVNULL)
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()        # "listening on ...": the socket is bound
        assert "listening" in line, line + self.proc.stderr.read()

    def stop(self, at_least: int = 0) -> str:
        """End tcpdump once it has caught up (SIGTERM drops what it has not written yet)
        and check that the kernel dropped none of its packets: it is the reference."""
        wait_for_pcap(self.path, at_least=at_least)
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=TIMEOUT)
        assert "0 packets dropped by kernel" in err.splitlines(), err
        return err


def server(net: VethPair, seconds: float = 30) -> subprocess.Popen[str]:
    """The echo server in namespace A (Linux), listening once this returns."""
    proc = net.popen(net.a, [sys.executable, str(PEER), "server", str(PORT), str(seconds)])
    _json_line(proc, "ready")
    return proc


def clients(net: VethPair, n: int) -> dict:
    """n connections from namespace B, alternating IPv4 and IPv6 (every fifth refused)."""
    done = net.run(net.b, [sys.executable, str(PEER), "clients", net.a_v4, net.a_v6, str(PORT), str(n)],
                   timeout=TIMEOUT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def syns(net: VethPair, count: int, *, bad: bool, port: int = PORT + 2) -> int:
    """count raw IPv4 SYNs from B to A (to a port nobody listens on)."""
    done = net.run(net.b, [sys.executable, str(PEER), "syns", net.a_v4, str(port), str(count), "1" if bad else "0"],
                   timeout=TIMEOUT)
    return int(json.loads(done.stdout.strip().splitlines()[-1])["sent"])


def digests(rows: list) -> Counter:
    """The multiset of packet digests of a child's rows."""
    return Counter(r[0] for r in rows)


def pcap_digests(path: Path) -> tuple[Counter, int]:
    """(multiset of digests, IP bytes) of the TCP packets in a tcpdump file, digested
    as the child digests what it saw."""
    import fasttcp
    from tests.capture.live_child import describe

    seen: Counter = Counter()
    total = 0
    for batch in fasttcp.read_pcap(path):
        for i in range(len(batch)):
            if batch.verdicts[i] == 0:
                seen[describe(batch.packet(i))[0]] += 1
                total += int(batch.lengths[i])
    return seen, total


def udp(net: VethPair, count: int, gap: float) -> subprocess.Popen[str]:
    """Start count UDP datagrams from B to A, gap seconds apart (not TCP: for filters)."""
    return net.popen(net.b, [sys.executable, str(PEER), "udp", net.a_v4, str(PORT + 3), str(count), str(gap)])
