"""Tracker benchmark: a synthetic capture of many concurrent connections, tracked by
`Tracker.feed_batch` from memory and by `fasttcp analyze` end to end, with tshark and
a dpkt dictionary tracker measured on the same packets in the same run; and the
connections it ends written as text in each format by `fasttcp.rows.RowWriter`.

The capture is real pcap: Ethernet frames of IPv4/TCP packets with correct checksums,
each connection a full lifecycle (handshake, a request, a multi-segment response with
ACKs, four-way close), `concurrent` connections interleaved so that about that many are
open at any moment -- the shape of a busy web server's traffic.
"""
from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fasttcp.analysis.run import default_workers
from fasttcp.bench.stats import median_spread, paired_ratio
from fasttcp.capture.reader import read_pcap
from fasttcp.tracker.tracker import Tracker
from fasttcp.wire.segment import build

__all__ = ["TrackerBenchConfig", "synth_capture", "run_tracker_bench", "format_tracker_report", "TrackerReport"]

_ETH_HDR = bytes(6) + bytes([2, 0, 0, 0, 0, 1]) + b"\x08\x00"
_SYN, _ACK, _PSH, _FIN = 0x02, 0x10, 0x08, 0x01
_RESPONSE_SEGMENTS = 3
_MSS = 1400


@dataclass
class TrackerBenchConfig:
    packets: int = 1_000_000            # packets in the feed_batch capture
    concurrent: int = 10_000            # connections open at once
    analyze_bytes: int = 1 << 30        # size of the capture for the end-to-end analyze figure (0 skips)
    repeat: int = 5
    peer_packets: int = 200_000         # packets given to tshark and the dpkt tracker
    peers: bool = True
    short_packets: int = 1_000_000      # packets of the short-connection capture for analyze (0 skips)
    workers: int = 0                    # analyze's workers for the many-core figures (0: the CPUs available)
    cache_dir: str = ""                 # where synthetic captures are kept between runs
    progress: Callable[[str], None] | None = None


def _flow_packets(i: int, t_client: tuple[str, int], server: str) -> list[bytes]:
    """The 12 packets of connection i: handshake, request, 3-segment response with an
    ACK, close from the client, close from the server, last ACK."""
    caddr, cport = t_client
    m = 0xFFFFFFFF                    # sequence numbers wrap (connection 287072's first)
    c, s = (1000 + i * 7919) & m, (5000 + i * 104729) & m
    opts = dict(mss=1460, wscale=7, sack_permitted=True)
    req = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n" + bytes(170)
    out = [
        build(caddr, server, cport, 80, seq=c, flags=_SYN, window=64240, options=opts),
        build(server, caddr, 80, cport, seq=s, ack=(c + 1) & m, flags=_SYN | _ACK, window=65160, options=opts),
        build(caddr, server, cport, 80, seq=(c + 1) & m, ack=(s + 1) & m, flags=_ACK, window=502),
        build(caddr, server, cport, 80, seq=(c + 1) & m, ack=(s + 1) & m, flags=_ACK | _PSH, window=502, payload=req),
    ]
    c1 = (c + 1 + len(req)) & m
    body = bytes(_MSS)
    for k in range(_RESPONSE_SEGMENTS):
        out.append(build(server, caddr, 80, cport, seq=(s + 1 + k * _MSS) & m, ack=c1, flags=_ACK | _PSH, window=509,
                         payload=body))
    s1 = (s + 1 + _RESPONSE_SEGMENTS * _MSS) & m
    out += [
        build(caddr, server, cport, 80, seq=c1, ack=s1, flags=_ACK, window=502),
        build(caddr, server, cport, 80, seq=c1, ack=s1, flags=_FIN | _ACK, window=502),
        build(server, caddr, 80, cport, seq=s1, ack=(c1 + 1) & m, flags=_ACK, window=509),
        build(server, caddr, 80, cport, seq=s1, ack=(c1 + 1) & m, flags=_FIN | _ACK, window=509),
        build(caddr, server, cport, 80, seq=(c1 + 1) & m, ack=(s1 + 1) & m, flags=_ACK, window=502),
    ]
    return out


PACKETS_PER_FLOW = 12

_REQUEST = 50                     # bytes: a short API call
_ANSWER = 200                     # bytes: its short answer


def _short_flow_packets(i: int, t_client: tuple[str, int], server: str) -> list[bytes]:
    """The 10 packets of a short connection i -- most connections of real traffic:
    handshake, a 50-byte request, a 200-byte answer (acknowledging the request) and its
    ACK, then a four-way close from the client."""
    caddr, cport = t_client
    m = 0xFFFFFFFF
    c, s = (3000 + i * 7919) & m, (9000 + i * 104729) & m
    opts = dict(mss=1460, wscale=7, sack_permitted=True)
    c1, s1 = (c + 1 + _REQUEST) & m, (s + 1 + _ANSWER) & m
    return [
        build(caddr, server, cport, 443, seq=c, flags=_SYN, window=64240, options=opts),
        build(server, caddr, 443, cport, seq=s, ack=(c + 1) & m, flags=_SYN | _ACK, window=65160, options=opts),
        build(caddr, server, cport, 443, seq=(c + 1) & m, ack=(s + 1) & m, flags=_ACK, window=502),
        build(caddr, server, cport, 443, seq=(c + 1) & m, ack=(s + 1) & m, flags=_ACK | _PSH, window=502,
              payload=bytes(_REQUEST)),
        build(server, caddr, 443, cport, seq=(s + 1) & m, ack=c1, flags=_ACK | _PSH, window=509,
              payload=bytes(_ANSWER)),
        build(caddr, server, cport, 443, seq=c1, ack=s1, flags=_ACK, window=502),
        build(caddr, server, cport, 443, seq=c1, ack=s1, flags=_FIN | _ACK, window=502),
        build(server, caddr, 443, cport, seq=s1, ack=(c1 + 1) & m, flags=_ACK, window=509),
        build(server, caddr, 443, cport, seq=s1, ack=(c1 + 1) & m, flags=_FIN | _ACK, window=509),
        build(caddr, server, cport, 443, seq=(c1 + 1) & m, ack=(s1 + 1) & m, flags=_ACK, window=502),
    ]


#: connection shapes of the synthetic captures: packets of connection i, and how many
SHAPES = {
    "bulk": (_flow_packets, PACKETS_PER_FLOW),           # a request and a 4200-byte response
    "short": (_short_flow_packets, 10),                  # a request and a 200-byte answer
}


def synth_capture(path: str | Path, packets: int, concurrent: int, *, start_ts: float = 1_700_000_000.0,
                  shape: str = "bulk") -> int:
    """Write a pcap of `packets` packets (whole connections of `shape`, one of
    `SHAPES`) with `concurrent` connections interleaved; returns the number of
    connections."""
    flow_packets, per_flow = SHAPES[shape]
    flows = max(1, packets // per_flow)
    concurrent = max(1, min(concurrent, flows))
    server = "198.19.0.1"
    # each slot runs its connections one after another; slots are interleaved packet by
    # packet, so `concurrent` connections are open at any moment
    per_slot = -(-flows // concurrent)
    us = 0
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for rnd in range(per_slot):
            first = rnd * concurrent
            group = range(first, min(first + concurrent, flows))
            pkts = [flow_packets(i, (f"198.18.{(i // 60000) % 256}.{1 + (i // 60000) // 256}",
                                     1024 + i % 60000), server) for i in group]
            chunks = []
            for k in range(per_flow):
                for fp in pkts:
                    frame = _ETH_HDR + fp[k]
                    t = start_ts + us / 1e6
                    sec = int(t)
                    chunks.append(struct.pack("<IIII", sec, us % 1_000_000, len(frame), len(frame)))
                    chunks.append(frame)
                    us += 1
            f.write(b"".join(chunks))
    return flows


@dataclass
class TrackerReport:
    figures: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)      # e.g. a peer that is not installed

    def as_dict(self) -> dict:
        out = dict(self.figures)
        if self.notes:
            out["notes"] = list(self.notes)
        return out


def _cached_capture(cfg: TrackerBenchConfig, packets: int, concurrent: int, shape: str = "bulk") -> Path:
    folder = Path(cfg.cache_dir or os.path.join(tempfile.gettempdir(), "fasttcp-bench"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"synth-{shape}-{packets}-{concurrent}.pcap"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        synth_capture(tmp, packets, concurrent, shape=shape)
        tmp.replace(path)
    return path


def _prefix_capture(src: Path, dst: Path, packets: int) -> None:
    """The first `packets` records of a little-endian pcap."""
    with open(src, "rb") as f, open(dst, "wb") as g:
        g.write(f.read(24))
        for _ in range(packets):
            hdr = f.read(16)
            if len(hdr) < 16:
                break
            n = struct.unpack("<I", hdr[8:12])[0]
            g.write(hdr + f.read(n))


def dpkt_tracker(path: Path) -> tuple[int, float]:
    """The peer: a Python dict keyed by the 4-tuple, packets parsed with dpkt, conntrack
    style state from the flags. Returns (packets, seconds)."""
    import dpkt  # type: ignore[import-untyped]  # dpkt ships no type information

    t0 = time.perf_counter()
    table: dict = {}
    n = 0
    with open(path, "rb") as f:
        for _ts, buf in dpkt.pcap.Reader(f):
            n += 1
            eth = dpkt.ethernet.Ethernet(buf)
            ip = eth.data
            if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.tcp.TCP):
                continue
            tcp = ip.data
            a, b = (ip.src, tcp.sport), (ip.dst, tcp.dport)
            key = (a, b) if a < b else (b, a)
            st = table.get(key)
            fl = tcp.flags
            if st is None:
                table[key] = st = {"state": "SYN_SENT" if fl & _SYN else "ESTABLISHED", "pkts": 0, "bytes": 0}
            st["pkts"] += 1
            st["bytes"] += len(tcp.data)
            if fl & _SYN and fl & _ACK:
                st["state"] = "SYN_RECV"
            elif fl & _FIN:
                st["state"] = "FIN_WAIT" if st["state"] == "ESTABLISHED" else "LAST_ACK"
            elif fl & _ACK and st["state"] == "SYN_RECV":
                st["state"] = "ESTABLISHED"
            elif fl & _ACK and st["state"] == "LAST_ACK":
                st["state"] = "TIME_WAIT"
    return n, time.perf_counter() - t0


def tshark_tracker(path: Path) -> tuple[int, float] | None:
    """tshark following every TCP conversation (`-z conv,tcp`): (packets, seconds)."""
    exe = shutil.which("tshark")
    if exe is None:
        return None
    t0 = time.perf_counter()
    out = subprocess.run([exe, "-n", "-r", str(path), "-q", "-z", "conv,tcp"], capture_output=True, text=True,
                         check=True, timeout=3600)
    secs = time.perf_counter() - t0
    n = 0
    with open(path, "rb") as f:
        f.read(24)
        while True:
            hdr = f.read(16)
            if len(hdr) < 16:
                break
            f.seek(struct.unpack("<I", hdr[8:12])[0], 1)
            n += 1
    if "TCP Conversations" not in out.stdout:
        raise RuntimeError("tshark did not report TCP conversations")
    return n, secs


def run_tracker_bench(cfg: TrackerBenchConfig) -> TrackerReport:
    """Measure; every figure is a median of `cfg.repeat` rounds (peers: one round)."""
    rep = TrackerReport()
    say = cfg.progress or (lambda msg: None)
    say("tracker: synthesising the capture")
    path = _cached_capture(cfg, cfg.packets, cfg.concurrent)
    batches = list(read_pcap(path, batch_bytes=8 << 20))
    n = sum(len(b) for b in batches)
    rates, open_at = [], []
    # one tracker, as in a long-running process: round 0 touches its pages for the
    # first time (the kernel zeroes them), later rounds reuse them; close() between
    # rounds ends every connection so each round starts empty
    tr = Tracker(n // PACKETS_PER_FLOW + cfg.concurrent + 1024, timeouts="conntrack", verify_checksum=True)
    finished = []
    for r in range(cfg.repeat + 1):
        say(f"tracker: feed_batch round {r}")
        if r == 0:
            # the warm-up round also counts connections open (not yet TIME_WAIT/CLOSE)
            # mid-capture, and keeps the rows of the connections, for the row writer figures
            for k, b in enumerate(batches):
                tr.feed_batch(b)
                finished.append(tr.finished())
                if k == len(batches) // 2:
                    open_at.append(int(np.count_nonzero(tr.connections()["state"] < 7)))
            finished.append(tr.close())
            continue
        t0 = time.perf_counter()
        out = [tr.feed_batch(b) for b in batches]
        dt = time.perf_counter() - t0
        rates.append(n / dt)
        from fasttcp.enums import Verdict

        counts = np.bincount(np.concatenate(out), minlength=len(Verdict))
        verdicts = {Verdict(i).name: int(c) for i, c in enumerate(counts) if c}      # this round's
        tr.close()
    m, spread = median_spread(rates)
    rep.figures["tracker_feed_batch_pps"] = round(m)
    rep.figures["tracker_feed_batch_spread"] = round(spread, 3)
    rep.figures["tracker_packets"] = n
    rep.figures["tracker_open_connections"] = open_at[0] if open_at else 0      # mid-capture, not TIME_WAIT/CLOSE
    rep.figures["tracker_verdicts"] = verdicts
    rep.figures["tracker_bytes_per_connection"] = round(tr.memory_bytes / tr.capacity, 1)
    del batches
    workers = cfg.workers or default_workers()
    say("tracker: rows to text")
    rep.figures.update(_rows_figures(np.concatenate(finished), cfg.repeat))
    if cfg.analyze_bytes:
        per_packet = os.path.getsize(path) / max(n, 1)
        big = _cached_capture(cfg, int(cfg.analyze_bytes / per_packet), cfg.concurrent)
        _analyze_figures(rep, cfg, big, "analyze", workers, ("summary",))
        rep.figures["analyze_file_bytes"] = os.path.getsize(big)
    if cfg.short_packets:
        short = _cached_capture(cfg, cfg.short_packets, cfg.concurrent, shape="short")
        _analyze_figures(rep, cfg, short, "analyze_short", workers, ("summary", "json"))
        rep.figures["analyze_short_file_bytes"] = os.path.getsize(short)
        if cfg.peers:
            say("tracker: tshark on the short-connection capture")
            ts = tshark_tracker(short)
            if ts is not None:
                f = rep.figures
                f["analyze_short_tshark_pps"] = round(ts[0] / ts[1])
                for fig in [x for x in ("json_pps", "json_workers_pps") if f"analyze_short_{x}" in f]:
                    f[f"analyze_short_{fig[:-4]}_vs_tshark"] = round(f[f"analyze_short_{fig}"] / (ts[0] / ts[1]), 1)
    if cfg.peers:
        with tempfile.TemporaryDirectory() as tmp:
            prefix = Path(tmp) / "prefix.pcap"
            _prefix_capture(path, prefix, cfg.peer_packets)
            say("tracker: tshark peer")
            ts = tshark_tracker(prefix)
            if ts is not None:
                rep.figures["tshark_pps"] = round(ts[0] / ts[1])
                rep.figures["feed_batch_vs_tshark"] = round(rep.figures["tracker_feed_batch_pps"] / (ts[0] / ts[1]), 1)
            else:
                rep.notes.append("tshark not found: no tshark peer (Debian: apt-get install tshark)")
            say("tracker: dpkt peer")
            try:
                dp = dpkt_tracker(prefix)
            except ImportError:
                # the peers are test extras: `pip install fasttcp && fasttcp bench` runs without them
                rep.notes.append("dpkt not installed: no dpkt tracker peer (pip install 'fasttcp[test]')")
            else:
                rep.figures["dpkt_dict_pps"] = round(dp[0] / dp[1])
                rep.figures["feed_batch_vs_dpkt"] = round(rep.figures["tracker_feed_batch_pps"] / (dp[0] / dp[1]), 1)
    return rep


def _analyze_figures(rep: TrackerReport, cfg: TrackerBenchConfig, capture: Path, name: str, workers: int,
                     outputs: tuple[str, ...]) -> None:
    """`fasttcp.analyze` end to end on `capture`, in-process (the figure excludes Python's
    start-up, includes the workers'): packets/s with one worker and with `workers`, for
    the summary only and for each output format in `outputs` ("json": JSON lines to
    /dev/null). Rounds alternate the variants, in turn forwards and backwards, so the
    machine's drift hits all alike; the scaling is the median of each round's own ratio
    (`paired_ratio`), as the host's share of the two vCPUs moves between minutes."""
    from fasttcp.analysis import AnalyzeConfig, analyze

    acfg = AnalyzeConfig(timeouts="conntrack", capacity=4 * cfg.concurrent + 1024)
    variants = [(o, w) for o in outputs for w in sorted({1, workers})]
    rates: dict[tuple[str, int], list[float]] = {v: [] for v in variants}
    packets = 0
    with open(os.devnull, "wb") as null:
        for r in range(max(3, cfg.repeat) + 1):
            if cfg.progress:
                cfg.progress(f"tracker: {name} round {r}")
            for out, w in (variants if r % 2 else variants[::-1]):
                s = analyze(capture, acfg, workers=w, fmt="table" if out == "summary" else out,
                            out=None if out == "summary" else null)
                packets = s.packets
                if r:                     # round 0 warms the page cache
                    rates[(out, w)].append(s.packets / s.seconds)
    f = rep.figures
    f[f"{name}_packets"] = packets
    f[f"{name}_workers"] = workers
    for (out, w), xs in rates.items():
        m, spread = median_spread(xs)
        key = name + ("" if out == "summary" else f"_{out}") + ("_workers" if w > 1 else "")
        f[f"{key}_pps"] = round(m)
        f[f"{key}_spread"] = round(spread, 3)
    for out in outputs:
        key = name + ("" if out == "summary" else f"_{out}")
        if workers > 1:
            f[f"{key}_scaling"], spread = paired_ratio(rates[(out, 1)], rates[(out, workers)])
            f[f"{key}_scaling"] = round(f[f"{key}_scaling"], 2)
            f[f"{key}_scaling_spread"] = round(spread, 3)
        if out != "summary":
            # how much writing every row costs: time with rows / time with the summary only
            f[f"{key}_vs_summary_time"] = round(f[f"{name}_pps"] / f[f"{key}_pps"], 2)
class _NullSink:
    """A stream that takes every chunk and keeps none: the row figures measure formatting."""

    def write(self, b: bytes) -> int:
        return len(b)


def _rows_figures(rows: np.ndarray, repeat: int) -> dict:
    """rows/s of RowWriter.write in each format (its default columns: the Community ID in
    json and csv), median of `repeat` rounds over the capture's rows."""
    from fasttcp.rows import FORMATS, RowWriter

    per_s, spread = {}, {}
    for fmt in FORMATS:
        w = RowWriter(_NullSink(), fmt)
        w.write(rows)                             # warm: its chunk memory, the code
        rates = []
        for _ in range(max(1, repeat)):
            t0 = time.perf_counter()
            w.write(rows)
            rates.append(len(rows) / (time.perf_counter() - t0))
        m, sp = median_spread(rates)
        per_s[fmt], spread[fmt] = round(m), round(sp, 3)
    return {"rows_per_s": per_s, "rows_spread": spread, "rows_count": len(rows)}


def format_tracker_report(rep: TrackerReport) -> str:
    f = rep.figures
    lines = [f"tracker feed_batch (from memory, checksums verified): "
             f"{f['tracker_feed_batch_pps'] / 1e6:.2f} M packets/s"
             f"  (spread {f['tracker_feed_batch_spread']:.0%}; {f['tracker_packets']:,} packets, "
             f"~{f['tracker_open_connections']:,} connections open, {f['tracker_bytes_per_connection']} B/connection)"]
    if "rows_per_s" in f:
        lines.append(f"rows to text (RowWriter, {f['rows_count']:,} connections of the capture): "
                     + ", ".join(f"{fmt} {v / 1e6:.2f} M/s" for fmt, v in f["rows_per_s"].items())
                     + " (json and csv with the Community ID)")
    if "analyze_pps" in f:
        lines.append(f"fasttcp analyze end to end ({f['analyze_file_bytes'] / 2**30:.2f} GiB pcap): "
                     f"{f['analyze_pps'] / 1e6:.2f} M packets/s (spread {f['analyze_spread']:.0%})"
                     + _workers_text(f, "analyze"))
    if "analyze_short_pps" in f:
        lines.append(f"fasttcp analyze, short connections ({f['analyze_short_packets']:,} packets of 10-packet "
                     f"connections): summary only {f['analyze_short_pps'] / 1e6:.2f} M packets/s"
                     + _workers_text(f, "analyze_short"))
        lines.append(f"  with JSON rows: {f['analyze_short_json_pps'] / 1e6:.2f} M packets/s "
                     f"({f['analyze_short_json_vs_summary_time']}x the summary-only time)"
                     + _workers_text(f, "analyze_short_json"))
        if "analyze_short_tshark_pps" in f:
            lines.append(f"  peer tshark -z conv,tcp: {f['analyze_short_tshark_pps'] / 1e3:.0f}k packets/s -> "
                         f"analyze --format json is {f['analyze_short_json_vs_tshark']}x with one worker"
                         + (f", {f['analyze_short_json_workers_vs_tshark']}x with {f['analyze_short_workers']}"
                            if "analyze_short_json_workers_vs_tshark" in f else ""))
    if "tshark_pps" in f:
        lines.append(f"  peer tshark -z conv,tcp: {f['tshark_pps'] / 1e3:.0f}k packets/s -> feed_batch is "
                     f"{f['feed_batch_vs_tshark']}x")
    if "dpkt_dict_pps" in f:
        lines.append(f"  peer dpkt + dict tracker: {f['dpkt_dict_pps'] / 1e3:.0f}k packets/s -> feed_batch is "
                     f"{f['feed_batch_vs_dpkt']}x")
    lines += [f"note: {n}" for n in rep.notes]
    return "\n".join(lines)


def _workers_text(f: dict, key: str) -> str:
    if f"{key}_workers_pps" not in f:
        return ""
    return (f"; {f[f'{key}_workers_pps'] / 1e6:.2f} M/s with {f[key.split('_json')[0] + '_workers']} workers "
            f"({f[f'{key}_scaling']}x)")
