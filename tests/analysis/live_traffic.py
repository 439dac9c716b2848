"""Real Linux TCP traffic across a `VethPair`, and the captures of it, for the tests of
`fasttcp analyze --interface`.

A server runs in namespace A (its kernel sockets, so the traffic crosses A's veth end
where the analyzer and tcpdump capture), clients in namespace B. The clients make
every kind of connection the tracker names differently: a request and an answer
after a half-close (shutdown(SHUT_WR), then data the other way), a server that
closes first, an abortive close (SO_LINGER 0: RST), a refused port (A's kernel
answers RST), over IPv4 and IPv6.
"""
from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.netns import VethPair, wait_for_pcap

__all__ = ["ECHO_PORT", "GREET_PORT", "CLOSED_PORT", "HOLD_PORT", "Server", "clients", "Capturer",
           "rows_of_pcap", "row_key", "rows_of_json", "tcpdump", "tcpdump_drops", "analyzer", "summary_of",
           "wait_for", "WHEN_IT_ENDED", "TIMED", "TIME_TOLERANCE_S", "assert_same_rows"]

ECHO_PORT, GREET_PORT, CLOSED_PORT, HOLD_PORT = 7001, 7002, 7003, 7004
KINDS = ("halfclose", "greet", "reset", "refused")
TCPDUMP_KIB = 256 << 10

SERVER = r"""
import socket, socketserver, sys, threading
ECHO, GREET, HOLD = (int(p) for p in sys.argv[1:4])

class Echo(socketserver.BaseRequestHandler):
    # read to the client's FIN, then answer: data after a half-close
    def handle(self):
        n = 0
        try:
            while True:
                b = self.request.recv(65536)
                if not b:
                    break
                n += len(b)
            self.request.sendall(b"a" * (n * 2 + 1))
        except OSError:
            pass          # the client reset it

class Greet(socketserver.BaseRequestHandler):
    # the server closes first
    def handle(self):
        try:
            self.request.sendall(b"hello\n" * 10)
        except OSError:
            pass

class Hold(socketserver.BaseRequestHandler):
    # keep the connection open until the client goes
    def handle(self):
        try:
            while self.request.recv(65536):
                pass
        except OSError:
            pass

class V4(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 512

class V6(V4):
    address_family = socket.AF_INET6

servers = []
for port, handler in ((ECHO, Echo), (GREET, Greet), (HOLD, Hold)):
    for cls, host in ((V4, "0.0.0.0"), (V6, "::")):
        if cls is V6:
            s = cls((host, port), handler, bind_and_activate=False)
            s.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.server_bind(); s.server_activate()
        else:
            s = cls((host, port), handler)
        servers.append(s)
        threading.Thread(target=s.serve_forever, daemon=True).start()
print("ready", flush=True)
sys.stdin.read()      # until the test closes our stdin
"""

CLIENTS = r"""
import json, socket, struct, sys
from concurrent.futures import ThreadPoolExecutor
v4, v6, count, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ECHO, GREET, CLOSED = (int(p) for p in sys.argv[5:8])
KINDS = sys.argv[8].split(",")

def one(i):
    kind = KINDS[i % len(KINDS)]
    fam, host = (socket.AF_INET6, v6) if (i // len(KINDS)) % 2 else (socket.AF_INET, v4)
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        if kind == "refused":
            try:
                s.connect((host, CLOSED))
            except ConnectionRefusedError:
                return kind
            return "unexpected"
        s.connect((host, ECHO if kind != "greet" else GREET))
        if kind == "greet":
            while s.recv(65536):
                pass
            return kind
        s.sendall(b"q" * (1 + i % 300))
        if kind == "reset":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return kind
        s.shutdown(socket.SHUT_WR)
        got = 0
        while True:
            b = s.recv(65536)
            if not b:
                break
            got += len(b)
        return kind
    finally:
        s.close()

with ThreadPoolExecutor(concurrency) as ex:
    done = list(ex.map(one, range(count)))
print(json.dumps({k: done.count(k) for k in set(done)}))
"""

HOLDER = r"""
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.sendall(b"still here")
print("connected", flush=True)
time.sleep(float(sys.argv[3]))
"""


def wait_for(path: Path, text: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    """Wait until `text` appears in the file `path` (a process's stderr), bounded."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode} before {text!r}: {path.read_text(errors='replace')}")
        time.sleep(0.05)
    raise AssertionError(f"no {text!r} within {timeout} s: {path.read_text(errors='replace')}")


class Server:
    """The servers in namespace A (echo after half-close, greeter, holder)."""

    def __init__(self, net: VethPair) -> None:
        self.proc = net.popen(net.a, [sys.executable, "-c", SERVER, str(ECHO_PORT), str(GREET_PORT),
                                      str(HOLD_PORT)], stdin=subprocess.PIPE)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", (line, self.proc.stderr.read() if self.proc.stderr else "")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=30)


def clients(net: VethPair, count: int, *, concurrency: int = 16, kinds: tuple[str, ...] = KINDS) -> dict:
    """`count` connections from namespace B to the server, kinds and families in turn;
    how many of each kind completed as expected."""
    p = net.run(net.b, [sys.executable, "-c", CLIENTS, net.a_v4, net.a_v6, str(count), str(concurrency),
                        str(ECHO_PORT), str(GREET_PORT), str(CLOSED_PORT), ",".join(kinds)], timeout=120)
    done = json.loads(p.stdout)
    assert sum(done.get(k, 0) for k in kinds) == count, done
    return done


class Capturer:
    """A capture process in namespace A with its stderr in a file: started, waited for
    until it says it listens, stopped by a signal."""

    def __init__(self, net: VethPair, cmd: list[str], stderr: Path, ready: str, stdout: Path | None = None) -> None:
        self.stderr_path, self.stdout_path = stderr, stdout
        self._err = open(stderr, "w")                       # noqa: SIM115  -- closed in wait()
        self._out = open(stdout, "w") if stdout else subprocess.DEVNULL   # noqa: SIM115
        self.proc = net.popen(net.a, cmd, stdout=self._out, stderr=self._err)
        try:
            wait_for(stderr, ready, self.proc)
        except BaseException:
            self.kill()
            raise

    def send(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._err.close()
            if self._out is not subprocess.DEVNULL:
                self._out.close()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.send(sig)
        return self.wait()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


class TcpdumpCapturer(Capturer):
    """A `Capturer` running tcpdump -w: `stop` first waits until tcpdump has written what
    the kernel handed it (SIGTERM drops the rest, and on a loaded machine it lags)."""

    def __init__(self, net: VethPair, cmd: list[str], stderr: Path, ready: str, path: Path) -> None:
        super().__init__(net, cmd, stderr, ready)
        self.path = path

    def stop(self, sig: int = signal.SIGTERM) -> int:
        wait_for_pcap(self.path)
        return super().stop(sig)


def tcpdump(net: VethPair, path: Path, tmp: Path) -> TcpdumpCapturer:
    """tcpdump -w `path` on A's interface: the reference capture. Nanosecond timestamps
    (the ring's), whole frames, every packet written as it comes (--immediate-mode: none
    left in an open block at the end) and a buffer (-B, KiB) no burst here fills: the
    reference must not drop what the analyzer is compared against."""
    return TcpdumpCapturer(net, ["tcpdump", "-i", net.a_if, "-n", "-U", "--immediate-mode", "-s", "0", "-B",
                                 str(TCPDUMP_KIB), "--time-stamp-precision", "nano", "-w", str(path), "tcp"],
                           tmp / "tcpdump.err", "listening on", path)


def tcpdump_drops(cap: Capturer) -> int:
    """The drops tcpdump reported when it ended ("N packets dropped by kernel")."""
    for line in cap.stderr.splitlines():
        if line.endswith("packets dropped by kernel"):
            return int(line.split()[0])
    raise AssertionError(f"tcpdump said nothing of drops: {cap.stderr}")


def analyzer(net: VethPair, out: Path, tmp: Path, *args: str) -> Capturer:
    """`fasttcp analyze --interface` on A's interface, JSON rows to `out`, the JSON
    summary on its standard output (`summary_of`)."""
    return Capturer(net, [sys.executable, "-m", "fasttcp", "analyze", "--interface", net.a_if, "--format", "json",
                          "-o", str(out), "--json-summary", *args], tmp / "analyze.err", "listening on",
                    stdout=tmp / "analyze.out")


def summary_of(cap: Capturer) -> dict:
    """The JSON summary an `analyzer` printed (after it ended)."""
    assert cap.stdout_path is not None
    text = cap.stdout_path.read_text()
    assert text.strip(), cap.stderr
    return json.loads(text)


def rows_of_json(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def rows_of_pcap(path: Path | str, *extra: str) -> list[dict]:
    """The rows `fasttcp analyze` gives for a capture file (checksums not verified:
    tcpdump keeps the partial checksums the veth's offload leaves, which the live ring
    completes)."""
    p = subprocess.run([sys.executable, "-m", "fasttcp", "analyze", str(path), "--format", "json", "-C",
                        "-w", "1", "-q", *extra], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=os.pathsep.join(q for q in sys.path if q)))
    assert p.returncode == 0, p.stderr
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


#: A connection's row names how it ended: "timeout" or "flushed" depends on whether the
#: capture ran past its idle timeout, not on the packets, so it is left out of the
#: comparison; everything the packets decide is compared.
WHEN_IT_ENDED = ("end_reason",)
#: The fields computed from timestamps. Two packet sockets read the clock each for
#: itself when the skb carries no receive timestamp of its own (tpacket_rcv: a TCP
#: segment from the peer namespace keeps its sender's monotonic departure time, which is
#: not a capture time), so tcpdump's ring and the analyzer's stamp a packet apart: a
#: few hundred nanoseconds, or as long as the CPU is taken away between the two reads
#: (an interrupt, the hypervisor running another guest: 222 us seen on a busy 2-vCPU
#: KVM guest). These are compared within TIME_TOLERANCE_S -- far below what a time in
#: the wrong unit or from another connection's packets would be off by -- and the uid
#: (a hash of the first packet's microsecond) only between two readings of one
#: capture.
TIMED = ("ts", "duration", "rtt_syn_synack", "rtt_synack_ack", "uid")
TIME_TOLERANCE_S = 5e-3


def row_key(row: dict, exact_times: bool = True) -> tuple:
    """A row as a comparable tuple (every field but WHEN_IT_ENDED, and without TIMED
    unless `exact_times`)."""
    skip = WHEN_IT_ENDED if exact_times else WHEN_IT_ENDED + TIMED
    return tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in row.items() if k not in skip))


def assert_same_rows(got: list[dict], want: list[dict], exact_times: bool = True) -> None:
    """The same connections with the same packet-decided fields; timestamps exactly or
    (two captures of the same packets) within TIME_TOLERANCE_S."""
    got_keys = collections.Counter(row_key(r, exact_times) for r in got)
    want_keys = collections.Counter(row_key(r, exact_times) for r in want)
    assert got_keys == want_keys, (f"only live: {list((got_keys - want_keys).items())[:3]}; "
                                   f"only reference: {list((want_keys - got_keys).items())[:3]}")
    if exact_times:
        return

    def order(rows: list[dict]) -> list[dict]:
        return sorted(rows, key=lambda r: (row_key(r, False), r["ts"]))

    for a, b in zip(order(got), order(want), strict=True):
        for f in TIMED[:-1]:
            if a[f] is None or b[f] is None:
                assert a[f] is None and b[f] is None, (f, a, b)
            else:
                assert abs(a[f] - b[f]) <= TIME_TOLERANCE_S, (f, a, b)
