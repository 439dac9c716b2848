"""Codec part of `fasttcp bench`: throughput of the wire layer, with peers measured in the same run.

Absolute numbers on a shared machine are noisy, so every figure is the median of
several repeats and is printed next to the peers (dpkt, scapy) measured seconds
before on the same packets: the ratio is the number to trust.
"""
from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from fasttcp.bench.stats import paired_ratio
from fasttcp.bench.workload import Batch, handshake_batch
from fasttcp.wire.batch import SEGMENT_DTYPE, parse_batch
from fasttcp.wire.checksum import checksum
from fasttcp.wire.segment import Options, build, parse

__all__ = ["BenchConfig", "run_codec", "Report", "Figure", "format_report"]


@dataclass
class BenchConfig:
    """What to measure. Defaults take about half a minute on a 2-core machine."""

    flows: int = 200_000          # x3 packets (SYN, SYN-ACK, ACK)
    repeat: int = 5
    family: str = "4"
    peers: bool = True
    peer_packets: int = 20_000    # the peers are ~100x slower; a sample is enough
    cores: int = 1                # processes for the multi-process figure (1: none)
    progress: Callable[[str], None] | None = None


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    spread: float = 0.0           # (max - min) / median of the repeats, the noise seen


@dataclass
class Report:
    config: BenchConfig
    figures: dict[str, Figure] = field(default_factory=dict)
    peers: dict[str, Figure] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    held_open: int = 0
    pipeline: dict | None = None  # the batch figure's endpoints' Endpoint.pipeline
    cores_on_cpu: float | None = None  # --cores: the share of its rounds on a CPU
    burst: int | None = None      # flows a call of the bursts figure (its figure only if < flows)
    # (our figure, peer) -> (our rate, the peer's rate) of each block, the blocks measured
    # in turn: their ratio is the median of the blocks' own ratios (see `ratio`)
    paired: dict[tuple[str, str], tuple[list[float], list[float]]] = field(default_factory=dict)

    def ratio(self, ours: str, peer: str) -> float | None:
        """Our figure `ours` over the peer's figure `peer`: the median of the blocks' own
        ratios where the two were measured in alternating blocks (`paired`), else the
        ratio of the two medians; None when either is missing or the peer measured 0."""
        if (ours, peer) in self.paired:
            mine, theirs = self.paired[(ours, peer)]
            return paired_ratio(theirs, mine)[0] if max(theirs, default=0.0) > 0 else None
        if ours in self.figures and peer in self.peers and self.peers[peer].value:
            return self.figures[ours].value / self.peers[peer].value
        return None

    def as_dict(self) -> dict:
        out: dict = {f.name: f.value for f in self.figures.values()}
        out["spread"] = {f.name: round(f.spread, 3) for f in self.figures.values()}
        out["peers"] = {f.name: f.value for f in self.peers.values()}
        out["ratios"] = {
            "parse_batch_vs_dpkt": self.ratio("parse_batch_pps", "dpkt_parse_pps"),
            "parse_vs_dpkt": self.ratio("parse_pps", "dpkt_parse_pps"),
            "parse_batch_vs_scapy": self.ratio("parse_batch_pps", "scapy_parse_pps"),
            "checksum_vs_scapy": self.ratio("checksum_bytes_per_s", "scapy_checksum_bytes_per_s"),
        }
        if "handshakes_per_s" in self.figures:
            for peer in ("dpkt_handshakes_per_s", "kernel_loopback_connections_per_s"):
                out["ratios"][f"handshakes_vs_{peer.replace('_per_s', '')}"] = self.ratio("handshakes_per_s", peer)
            # the cache-resident figure against the C loops run on the same flows, and the
            # batch figure against them at its own flow count
            for loop in ("bare_c", "lean_c"):
                out["ratios"][f"cache_resident_vs_{loop}"] = self.ratio("handshakes_per_s_cache_resident",
                                                                        f"{loop}_handshakes_per_s")
                out["ratios"][f"batch_vs_{loop}"] = self.ratio("handshakes_per_s", f"{loop}_batch_handshakes_per_s")
            if self.burst is not None:
                out["burst"] = self.burst
            if "handshakes_per_s_bursts" in self.figures:
                # the same flows opened in cache-sized bursts: against the same loops, and
                # against the endpoint's own cache-resident figure
                for loop in ("bare_c", "lean_c"):
                    out["ratios"][f"bursts_vs_{loop}"] = self.ratio("handshakes_per_s_bursts",
                                                                    f"{loop}_batch_handshakes_per_s")
                if "handshakes_per_s_cache_resident" in self.figures:
                    out["ratios"]["bursts_vs_cache_resident"] = (
                        self.figures["handshakes_per_s_bursts"].value
                        / self.figures["handshakes_per_s_cache_resident"].value)
        if "handshakes_per_s_cores" in self.figures:
            # N processes against one, both measured by fasttcp.bench.cores in this run
            out["cores"] = self.config.cores
            out["scaling"] = (self.figures["handshakes_per_s_cores"].value
                              / self.figures["handshakes_per_s_cores_one"].value)
            out["cores_on_cpu"] = self.cores_on_cpu
        if self.paired:
            # the blocks behind the paired ratios, and the noise between them
            out["paired"] = {f"{ours}/{peer}": {"ours": mine, "peer": theirs,
                                                "spread": round(paired_ratio(theirs, mine)[1], 3)}
                             for (ours, peer), (mine, theirs) in self.paired.items()}
        if self.pipeline is not None:
            out["pipeline"] = self.pipeline
        out["flows"] = self.config.flows
        out["held_open"] = self.held_open
        out["packets"] = 3 * self.config.flows
        out["family"] = self.config.family
        out["cpu_count"] = os.cpu_count()
        out["pgo_build"] = pgo_build()
        out["notes"] = self.notes
        return out


def pgo_build() -> bool:
    """Were the measured extensions (the endpoint, the tracker and the C loops they are
    compared with) compiled with a profile (setup.py's profile-guided build)? Figures
    from a plain build (FASTTCP_PGO=0, or not gcc) are lower."""
    from fasttcp.bench import baseline
    from fasttcp.endpoint import endpoint
    from fasttcp.tracker import tracker

    return bool(endpoint.PGO_BUILD and tracker.PGO_BUILD and baseline.PGO_BUILD)


def _measure(fn: Callable[[], int], repeat: int) -> tuple[float, float]:
    """Run fn `repeat` times; fn returns the work units done. Median rate and spread."""
    rates = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        units = fn()
        rates.append(units / (time.perf_counter() - t0))
    med = statistics.median(rates)
    return med, (max(rates) - min(rates)) / med if med else 0.0


def run_codec(cfg: BenchConfig, rep: Report | None = None) -> Report:
    """Measure the wire layer and its peers into `rep` (a new Report if None)."""
    say = cfg.progress or (lambda _msg: None)
    rep = rep if rep is not None else Report(cfg)
    say(f"codec: building {3 * cfg.flows:,} handshake packets")
    batch = handshake_batch(cfg.flows, family=cfg.family)
    out = np.empty(len(batch), dtype=SEGMENT_DTYPE)

    say("parse_batch (checksums verified)")
    v, s = _measure(lambda: _batch(batch, out, True), cfg.repeat)
    rep.figures["parse_batch_pps"] = Figure("parse_batch_pps", v, "packets/s", s)
    bad = int(np.count_nonzero(out["verdict"]))
    if bad:
        rep.notes.append(f"{bad} synthetic packets did not verify (a bug)")
    say("parse_batch (no checksum)")
    v, s = _measure(lambda: _batch(batch, out, False), cfg.repeat)
    rep.figures["parse_batch_nocsum_pps"] = Figure("parse_batch_nocsum_pps", v, "packets/s", s)

    sample = batch.packets[: min(len(batch), 300_000)]
    say("parse() one packet at a time")
    v, s = _measure(lambda: _parse_each(sample), cfg.repeat)
    rep.figures["parse_pps"] = Figure("parse_pps", v, "packets/s", s)

    say("build()")
    n_build = min(len(batch), 300_000)
    v, s = _measure(lambda: _build_many(n_build), cfg.repeat)
    rep.figures["build_pps"] = Figure("build_pps", v, "packets/s", s)

    say("checksum() on 1500-byte buffers")
    mtu = np.random.default_rng(2).integers(0, 256, 1500, dtype=np.uint8).tobytes()
    v, s = _measure(lambda: _checksum_many(mtu, 200_000), cfg.repeat)
    rep.figures["checksum_bytes_per_s"] = Figure("checksum_bytes_per_s", v, "bytes/s", s)

    if cfg.peers:
        _run_peers(cfg, batch, mtu, rep, say)
    return rep


def _batch(batch: Batch, out: np.ndarray, verify: bool) -> int:
    parse_batch(batch.buffer, batch.offsets, batch.lengths, verify_checksum=verify, out=out)
    return len(batch)


def _parse_each(packets: list[bytes]) -> int:
    p = parse
    for pkt in packets:
        p(pkt)
    return len(packets)


def _build_many(n: int) -> int:
    opts = Options(mss=1460, wscale=7, sack_permitted=True, timestamp=(1, 0))
    b = build
    for i in range(n):
        b("198.18.0.1", "198.19.0.1", 1024 + (i & 0x7FFF), 80, seq=i, options=opts)
    return n


def _checksum_many(buf: bytes, n: int) -> int:
    c = checksum
    for _ in range(n):
        c(buf)
    return n * len(buf)


# ---- peers ----

def _run_peers(cfg: BenchConfig, batch: Batch, mtu: bytes, rep: Report, say) -> None:
    sample = batch.packets[: cfg.peer_packets]
    try:
        import dpkt  # type: ignore[import-untyped]  # dpkt ships no type information
    except ImportError:
        rep.notes.append("dpkt not installed: no dpkt peer figure (pip install 'fasttcp[test]')")
    else:
        say(f"peer: dpkt on {len(sample):,} packets")
        v, s = _measure(lambda: _dpkt_parse(dpkt, sample), max(1, cfg.repeat // 2))
        rep.peers["dpkt_parse_pps"] = Figure("dpkt_parse_pps", v, "packets/s", s)
    try:
        import logging

        logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
        from scapy.layers.inet import IP, TCP
        from scapy.utils import checksum as scapy_checksum
    except ImportError:
        rep.notes.append("scapy not installed: no scapy peer figure (pip install 'fasttcp[test]')")
    else:
        small = sample[: max(1, cfg.peer_packets // 10)]
        say(f"peer: scapy on {len(small):,} packets")
        v, s = _measure(lambda: _scapy_parse(IP, TCP, small), max(1, cfg.repeat // 2))
        rep.peers["scapy_parse_pps"] = Figure("scapy_parse_pps", v, "packets/s", s)
        v, s = _measure(lambda: _scapy_checksum(scapy_checksum, mtu, 5_000), max(1, cfg.repeat // 2))
        rep.peers["scapy_checksum_bytes_per_s"] = Figure("scapy_checksum_bytes_per_s", v, "bytes/s", s)


def _dpkt_parse(dpkt, packets: list[bytes]) -> int:
    # the same work as ours: IP + TCP header fields, options decoded, checksum verified
    ip_cls = dpkt.ip.IP
    for pkt in packets:
        ip = ip_cls(pkt)
        tcp = ip.data
        dpkt.tcp.parse_opts(tcp.opts)
        raw = bytes(tcp)
        pseudo = ip.src + ip.dst + bytes((0, 6)) + len(raw).to_bytes(2, "big")
        dpkt.in_cksum(pseudo + raw)
    return len(packets)


def _scapy_parse(IP, TCP, packets: list[bytes]) -> int:
    for pkt in packets:
        p = IP(pkt)
        t = p[TCP]
        _ = (t.sport, t.dport, t.seq, t.ack, t.flags, t.window, t.options)
    return len(packets)


def _scapy_checksum(fn, buf: bytes, n: int) -> int:
    for _ in range(n):
        fn(buf)
    return n * len(buf)


# ---- text output ----

def _fmt_rate(f: Figure) -> str:
    if f.unit == "bytes/s":
        return f"{f.value / 1e9:8.2f} GB/s"
    return f"{f.value / 1e6:8.2f} M{f.unit}"


_LABELS = {
    "parse_batch_pps": "parse_batch, checksums verified",
    "parse_batch_nocsum_pps": "parse_batch, no checksum",
    "parse_pps": "parse(), one Segment per packet",
    "build_pps": "build(), options + checksums",
    "checksum_bytes_per_s": "checksum(), 1500-byte buffers",
    "dpkt_parse_pps": "dpkt parse + checksum",
    "scapy_parse_pps": "scapy parse",
    "scapy_checksum_bytes_per_s": "scapy checksum, 1500-byte buffers",
}


def format_report(rep: Report) -> str:
    lines = [f"fasttcp bench: wire layer, {3 * rep.config.flows:,} IPv{rep.config.family} handshake packets, "
             f"median of {rep.config.repeat} (spread = (max-min)/median)"]
    for f in rep.figures.values():
        lines.append(f"  {_LABELS[f.name]:36s} {_fmt_rate(f)}   spread {f.spread:5.1%}")
    if rep.peers:
        lines.append("peers, same run, same packets:")
        for f in rep.peers.values():
            lines.append(f"  {_LABELS[f.name]:36s} {_fmt_rate(f)}   spread {f.spread:5.1%}")
        for label, ours, peer in (("parse_batch / dpkt", "parse_batch_pps", "dpkt_parse_pps"),
                                  ("parse() / dpkt", "parse_pps", "dpkt_parse_pps"),
                                  ("parse_batch / scapy", "parse_batch_pps", "scapy_parse_pps"),
                                  ("checksum / scapy", "checksum_bytes_per_s", "scapy_checksum_bytes_per_s")):
            r = rep.ratio(ours, peer)
            if r is not None:
                lines.append(f"  ratio {label:30s} {r:10.0f}x")
    for note in rep.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)
