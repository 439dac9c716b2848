"""Pick one connection's packets out of a capture for a ladder.

Connections are numbered from 0 in the order their first packet appears, one number
per 4-tuple (both directions together), as ``tshark``'s ``tcp.stream`` numbers them for
a capture without port reuse. The capture is streamed batch by batch and only the
chosen connection's rows are kept: the work per packet is a vectorised key comparison
(numpy), so a large capture costs a read, not memory. A 4-tuple used again by a later
connection (a new SYN with another ISN after a FIN or RST) ends the ladder there;
``start`` picks a later incarnation.
"""
from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fasttcp.capture.reader import CaptureReader, read_pcap
from fasttcp.diagram.infer import Packet
from fasttcp.diagram.model import short_options
from fasttcp.enums import Flags, OptionBits, Verdict
from fasttcp.errors import FIELD_NAMES, UsageError
from fasttcp.wire.batch import parse_batch

__all__ = ["select_packets", "select_many", "all_connections", "endpoint_text", "parse_flow_filter"]

_PARSED = (Verdict.OK, Verdict.BAD_CHECKSUM)    # rows whose header fields are filled in
_SIDE = 19                      # 16 address bytes, 2 port bytes, 1 sentinel byte
IPV6_HEADER = 40
_LENGTH_FIELDS = (FIELD_NAMES.index("ip.total_length"), FIELD_NAMES.index("ipv6.payload_length"))
MAX_FLOWS_AT_ONCE = 1024         # select_many: each costs a vectorised compare per batch
START_SLACK = 1e-6              # seconds: a start time read back from a row's float
MAX_LADDER_PACKETS = 10_000     # segments one ladder keeps: a longer drawing is unreadable, and
                                # each kept segment costs a Python object (about 1 KB)


def endpoint_text(version: int, addr: np.ndarray, port: int) -> str:
    """``198.18.0.1:80`` or ``[2001:2::1]:80``."""
    raw = bytes(addr)
    if version == 4:
        return f"{ipaddress.IPv4Address(raw[:4])}:{port}"
    return f"[{ipaddress.IPv6Address(raw)}]:{port}"


def parse_flow_filter(text: object) -> tuple[bytes | None, int | None]:
    """``host:port``, ``[v6host]:port``, ``host`` or ``:port`` as (16 address bytes or
    None, port or None). Raises UsageError for anything else."""
    if not isinstance(text, str) or not text:
        raise UsageError(f"filter must be 'host:port', 'host' or ':port', not {text!r}")
    host, port = text, None
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or (close + 1 < len(text) and text[close + 1] != ":"):
            raise UsageError(f"filter {text!r}: an IPv6 host is written [addr]:port")
        host, rest = text[1:close], text[close + 2:]
        port = rest or None
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        addr = _address_bytes(host) if host else None
        number = int(port) if port is not None else None
    except ValueError:
        raise UsageError(f"filter {text!r}: not a host:port") from None
    if number is not None and not 0 < number < 65536:
        raise UsageError(f"filter {text!r}: port must be 1..65535")
    if addr is None and number is None:
        raise UsageError(f"filter {text!r}: give a host, a port or both")
    return addr, number


def _address_bytes(host: str) -> bytes:
    ip = ipaddress.ip_address(host)
    return ip.packed.ljust(16, b"\0")


def _side_keys(addr: np.ndarray, port: np.ndarray) -> np.ndarray:
    """Each row's (address, port) as an (n, _SIDE) byte array: big-endian port, then a
    sentinel byte that keeps numpy's strip of trailing NULs from merging two keys once
    they are viewed as fixed-width bytes."""
    n = addr.shape[0]
    out = np.empty((n, _SIDE), np.uint8)
    out[:, :16] = addr
    out[:, 16] = port >> 8
    out[:, 17] = port & 0xFF
    out[:, 18] = 1
    return out


def _keys(rows: np.ndarray) -> np.ndarray:
    """The canonical 4-tuple key of every row (the lower endpoint first) as fixed-width
    bytes, built in one buffer: no Python object per packet."""
    n = rows.shape[0]
    a = _side_keys(rows["src"], rows["src_port"])
    b = _side_keys(rows["dst"], rows["dst_port"])
    a_first = (a.view(f"S{_SIDE}").reshape(n) <= b.view(f"S{_SIDE}").reshape(n))[:, None]
    out = np.empty((n, 1 + 2 * _SIDE), np.uint8)
    out[:, 0] = rows["version"]
    out[:, 1:1 + _SIDE] = np.where(a_first, a, b)
    out[:, 1 + _SIDE:] = np.where(a_first, b, a)
    return out.view(f"S{1 + 2 * _SIDE}").reshape(n)


def _key_ports(key: bytes) -> tuple[int, int]:
    """The two ports of a key made by `_keys` (the sentinel may have been stripped)."""
    raw = key.ljust(1 + 2 * _SIDE, b"\0")
    return (raw[17] << 8 | raw[18], raw[17 + _SIDE] << 8 | raw[18 + _SIDE])


def _batches(source: Any, verify_checksum: bool = True) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(parsed rows, capture times in seconds) of each batch."""
    reader = source if isinstance(source, CaptureReader) else read_pcap(source)
    try:
        for batch in reader:
            rows = parse_batch(batch.buffer, batch.offsets, batch.lengths, verify_checksum=verify_checksum)
            rows["verdict"][batch.verdicts != Verdict.OK] = batch.verdicts[batch.verdicts != Verdict.OK]
            _accept_snapped(rows, batch)
            yield rows, batch.ts_ns / 1e9
    finally:
        if reader is not source:
            reader.close()


def _accept_snapped(rows: np.ndarray, batch: Any) -> None:
    """Count a packet the capture's snap length cut as parsed when its headers are whole
    (parsing stopped at the IP length, as the tracker does), its payload length taken
    from that IP length rather than from the bytes captured. A packet that was short on
    the wire (not snapped) keeps its TRUNCATED verdict: its length fields lie."""
    cut = ((rows["verdict"] == Verdict.TRUNCATED) & batch.snapped
           & np.isin(rows["error_field"], _LENGTH_FIELDS))
    if not cut.any():
        return
    idx = np.flatnonzero(cut)
    start = batch.offsets[idx]
    buf = batch.buffer
    v6 = rows["version"][idx] == 6
    at = start + np.where(v6, 4, 2)                  # IPv6 payload length / IPv4 total length
    ip_len = (buf[at].astype(np.int64) << 8) | buf[at + 1]
    ip_len = np.where(v6, ip_len + IPV6_HEADER, ip_len)
    headers = rows["payload_offset"][idx].astype(np.int64) - start
    rows["payload_len"][idx] = np.clip(ip_len - headers, 0, None)
    rows["verdict"][idx] = Verdict.OK


def _check_args(conn: object, flow: object, start: object) -> None:
    if conn is not None and (isinstance(conn, bool) or not isinstance(conn, int) or conn < 0):
        raise UsageError(f"conn must be an int >= 0, not {conn!r}")
    if conn is not None and flow is not None:
        raise UsageError("give conn or flow, not both")
    if start is not None and (isinstance(start, bool) or not isinstance(start, (int, float))
                              or not math.isfinite(start)):
        raise UsageError(f"start must be a finite time in seconds, not {start!r}")


def _flow_mask(rows: np.ndarray, flow: Any) -> np.ndarray:
    """Rows matching a filter string or an exact (src, sport, dst, dport) tuple."""
    if isinstance(flow, tuple):
        if len(flow) != 4:
            raise UsageError("flow must be 'host:port' or (src, sport, dst, dport)")
        src, sport, dst, dport = flow
        try:
            sa, da = _address_bytes(str(src)), _address_bytes(str(dst))
        except ValueError:
            raise UsageError(f"flow {flow!r}: not addresses") from None
        for p in (sport, dport):
            if isinstance(p, bool) or not isinstance(p, int) or not 0 < p < 65536:
                raise UsageError(f"flow {flow!r}: ports must be ints 1..65535")
        fwd = _match(rows["src"], rows["src_port"], sa, sport) & _match(rows["dst"], rows["dst_port"], da, dport)
        rev = _match(rows["src"], rows["src_port"], da, dport) & _match(rows["dst"], rows["dst_port"], sa, sport)
        return fwd | rev
    addr, port = parse_flow_filter(flow)
    return _match(rows["src"], rows["src_port"], addr, port) | _match(rows["dst"], rows["dst_port"], addr, port)


def _match(addrs: np.ndarray, ports: np.ndarray, addr: bytes | None, port: int | None) -> np.ndarray:
    ok = np.ones(addrs.shape[0], bool)
    if addr is not None:
        ok &= (addrs == np.frombuffer(addr, np.uint8)).all(axis=1)
    if port is not None:
        ok &= ports == port
    return ok


def select_packets(source: str | Path | CaptureReader, *, conn: int | None = None, flow: Any = None,
                   start: float | None = None, verify_checksum: bool = True) -> list[Packet]:
    """The packets of one connection: number `conn` (default 0), or the first matching
    `flow` (a ``host:port`` filter or an exact 4-tuple), from `start` (seconds since
    the epoch) on if given; at most MAX_LADDER_PACKETS + 1 of them (reading stops
    there: one more than the cap says the connection was longer).
    ``verify_checksum=False`` takes every checksum as good (a capture taken where the
    NIC computes them on transmit, as Zeek's -C). Raises
    UsageError for bad arguments or when nothing matches; OSError and CaptureError as
    `read_pcap` does."""
    _check_args(conn, flow, start)
    if not isinstance(verify_checksum, bool):
        raise UsageError(f"verify_checksum must be a bool, not {type(verify_checksum).__name__}")
    want = 0 if conn is None and flow is None else conn
    seen: dict[bytes, int] = {}                 # 4-tuple key -> its number
    target: bytes | None = None
    picked: list[np.ndarray] = []
    times: list[np.ndarray] = []
    kept = 0
    for rows, ts in _batches(source, verify_checksum):
        ok = np.isin(rows["verdict"], _PARSED)
        if start is not None:
            ok &= ts >= start - START_SLACK
        if target is None:
            keys = _keys(rows[ok])
            if flow is not None:
                hits = np.flatnonzero(_flow_mask(rows[ok], flow))
                if hits.size:
                    target = bytes(keys[hits[0]])
            else:
                uniq, first = np.unique(keys, return_index=True)
                for key in uniq[np.argsort(first)].tolist():      # in order of first packet
                    number = seen.setdefault(key, len(seen))
                    if number == want:
                        target = key
                        break
            if target is None:
                continue
        p1, p2 = _key_ports(target)             # a cheap port test first, keys for those only
        sp, dp = rows["src_port"], rows["dst_port"]
        cand = np.flatnonzero(ok & (((sp == p1) & (dp == p2)) | ((sp == p2) & (dp == p1))))
        sel = cand[_keys(rows[cand]) == np.bytes_(target)][:MAX_LADDER_PACKETS + 1 - kept]
        picked.append(rows[sel].copy())
        times.append(ts[sel])
        kept += sel.size
        if kept > MAX_LADDER_PACKETS:        # one past the cap tells the caller it was cut
            break
    if target is None:
        if flow is not None:
            raise UsageError(f"no TCP connection matches {flow!r}")
        raise UsageError(f"no connection {want}: the capture has {len(seen)} TCP connection(s)")
    return _first_incarnation(_packets(np.concatenate(picked), np.concatenate(times)))


def select_many(source: str | Path | CaptureReader, flows: list[tuple[Any, float | None]], *,
                verify_checksum: bool = True) -> list[list[Packet]]:
    """The packets of several connections in one pass over the capture: each of `flows`
    is an exact ``((src, sport, dst, dport), start)`` pair (`start` in seconds since the
    epoch, or None), as a report that picked connections from its rows has them. An
    entry nothing matches gets an empty list. Raises UsageError for a malformed entry."""
    if not isinstance(flows, list) or len(flows) > MAX_FLOWS_AT_ONCE:
        raise UsageError(f"flows must be a list of at most {MAX_FLOWS_AT_ONCE} (tuple, start) pairs")
    for entry in flows:
        if not isinstance(entry, tuple) or len(entry) != 2 or not isinstance(entry[0], tuple):
            raise UsageError(f"each flow must be ((src, sport, dst, dport), start), not {entry!r}")
        _check_args(None, entry[0], entry[1])
    if not isinstance(verify_checksum, bool):
        raise UsageError(f"verify_checksum must be a bool, not {type(verify_checksum).__name__}")
    picked: list[list[np.ndarray]] = [[] for _ in flows]
    times: list[list[np.ndarray]] = [[] for _ in flows]
    for rows, ts in _batches(source, verify_checksum):
        ok = np.isin(rows["verdict"], _PARSED)
        for j, (flow, start) in enumerate(flows):
            mask = ok & _flow_mask(rows, flow)
            if start is not None:
                mask &= ts >= start - START_SLACK
            idx = np.flatnonzero(mask)
            if idx.size:
                picked[j].append(rows[idx].copy())
                times[j].append(ts[idx])
    return [_first_incarnation(_packets(np.concatenate(p), np.concatenate(t))) if p else []
            for p, t in zip(picked, times, strict=True)]


def all_connections(source: str | Path | CaptureReader, *, verify_checksum: bool = True) -> list[list[Packet]]:
    """Every connection's packets, numbered as `select_packets` numbers them, in one
    pass. It holds the whole capture's parsed rows: for small captures (tests, a
    notebook); `select_packets` streams."""
    rows_list, ts_list = [], []
    for rows, ts in _batches(source, verify_checksum):
        ok = np.isin(rows["verdict"], _PARSED)
        rows_list.append(rows[ok].copy())
        ts_list.append(ts[ok])
    if not rows_list:
        return []
    rows, ts = np.concatenate(rows_list), np.concatenate(ts_list)
    _, first, inverse = np.unique(_keys(rows), return_index=True, return_inverse=True)
    return [_first_incarnation(_packets(rows[inverse == k], ts[inverse == k])) for k in np.argsort(first)]


def _packets(rows: np.ndarray, ts: np.ndarray) -> list[Packet]:
    out = []
    for r, t in zip(rows, ts, strict=True):
        version = int(r["version"])
        bits = OptionBits(int(r["opt_flags"]))
        wscale = int(r["wscale"]) if bits & OptionBits.WSCALE else None
        opts = short_options(int(r["mss"]) if bits & OptionBits.MSS else None, wscale,
                             bool(bits & OptionBits.SACK_PERMITTED), bool(bits & OptionBits.TIMESTAMP))
        out.append(Packet(
            t=float(t), src=endpoint_text(version, r["src"], int(r["src_port"])),
            dst=endpoint_text(version, r["dst"], int(r["dst_port"])), seq=int(r["seq"]), ack=int(r["ack"]),
            flags=int(r["flags"]), win=int(r["window"]), len=int(r["payload_len"]), options=opts, wscale=wscale,
            bad_checksum=int(r["verdict"]) == Verdict.BAD_CHECKSUM))
    return out


def _first_incarnation(packets: list[Packet]) -> list[Packet]:
    """Cut where the 4-tuple starts a new connection: a SYN without ACK with another
    sequence number than the first one, after a FIN or RST was seen."""
    syn_seq: int | None = None
    ended = False
    for i, p in enumerate(packets):
        if p.bad_checksum:
            continue
        f = Flags(p.flags)
        if f & Flags.SYN and not f & Flags.ACK:
            if syn_seq is None:
                syn_seq = p.seq
            elif ended and p.seq != syn_seq:
                return packets[:i]
        if f & (Flags.FIN | Flags.RST):
            ended = True
    return packets
