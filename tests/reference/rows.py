"""The row writer as it was in Python (fasttcp analyze's `_Writer` and `flow_records`),
kept as the oracle the C writer (fasttcp/rows) is compared with byte for byte.

Changed from that writer only where the output was meant to change:
- the uid is a hash of the connection (`uid`), no longer of the output position;
- JSON and CSV end with the Community ID v1 (`community_id`, over hashlib.sha1) by
  default, and Zeek's log with ``community_id=True``;
- an IPv4-mapped IPv6 address is written ::ffff:a.b.c.d (RFC 5952 section 5; Python's
  ipaddress does so from 3.13 on, 3.11 writes ::ffff:102:304);
- Zeek string fields are escaped as Zeek's ASCII writer escapes them (`zeek_str`);
- CSV quotes a field holding '\\r' on every Python (see `_csv_line`).

Slow and plain on purpose: a dict per row, the standard library's json, csv, hashlib.
"""
from __future__ import annotations

import base64
import csv
import hashlib
import io
import ipaddress
import json
import time
from pathlib import Path
from typing import IO, Any

import numpy as np

from fasttcp.tracker.vocabulary import ConnState, EndReason, TrackerState

__all__ = ["FORMATS", "CSV_FIELDS", "ZEEK_FIELDS", "OracleWriter", "oracle_text", "record", "uid",
           "community_id", "address", "zeek_str", "analyze_rows"]

FORMATS = ("table", "json", "csv", "zeek")
ZEEK_FIELDS = ("ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "service",
               "duration", "orig_bytes", "resp_bytes", "conn_state", "local_orig", "local_resp",
               "missed_bytes", "history", "orig_pkts", "orig_ip_bytes", "resp_pkts", "resp_ip_bytes",
               "tunnel_parents")
_ZEEK_TYPES = ("time", "string", "addr", "port", "addr", "port", "enum", "string", "interval", "count",
               "count", "string", "bool", "bool", "count", "string", "count", "count", "count", "count",
               "set[string]")
CSV_FIELDS = ("uid", "ts", "orig_h", "orig_p", "resp_h", "resp_p", "proto", "duration", "orig_bytes",
              "resp_bytes", "conn_state", "missed_bytes", "history", "orig_pkts", "orig_ip_bytes",
              "resp_pkts", "resp_ip_bytes", "state", "rtt_syn_synack", "rtt_synack_ack", "orig_retrans",
              "resp_retrans", "end_reason", "community_id")
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_M64 = (1 << 64) - 1


# ---- the fields of a row ----

def address(family: int, raw: bytes) -> str:
    """RFC 5952 text of a packed address (IPv4 in the first 4 bytes for family 4)."""
    if family == 4:
        return str(ipaddress.IPv4Address(raw[:4]))
    a = ipaddress.IPv6Address(raw)
    if a.ipv4_mapped is not None:                 # RFC 5952 section 5
        return f"::ffff:{a.ipv4_mapped}"
    return str(a)


def _mix64(x: int) -> int:
    """splitmix64's finaliser."""
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & _M64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def uid(family: int, orig_h: bytes, orig_p: int, resp_h: bytes, resp_p: int, start_us: int) -> str:
    """'C' and 17 base62 digits: 11 of lane A, then 6 of lane B, least significant first.
    The lanes fold six 64-bit words (family | orig_p << 8 | resp_p << 24, the two
    addresses as little-endian halves -- an IPv4 address zero-padded to 16 bytes -- and
    start_us) with splitmix64's finaliser, from two seeds and two steps."""
    n = 4 if family == 4 else 16
    oh, rh = orig_h[:n].ljust(16, b"\0"), resp_h[:n].ljust(16, b"\0")
    words = [family | orig_p << 8 | resp_p << 24,
             int.from_bytes(oh[:8], "little"), int.from_bytes(oh[8:], "little"),
             int.from_bytes(rh[:8], "little"), int.from_bytes(rh[8:], "little"), start_us]
    a, b = 0x243F6A8885A308D3, 0x13198A2E03707344
    for w in words:
        a = _mix64(a ^ w)
        b = _mix64((b + w * 0x9E3779B97F4A7C15) & _M64)
    out = "C"
    for _ in range(11):
        a, r = divmod(a, 62)
        out += _B62[r]
    for _ in range(6):
        b, r = divmod(b, 62)
        out += _B62[r]
    return out


def community_id(src: bytes, dst: bytes, sport: int, dport: int, proto: int = 6, seed: int = 0) -> str:
    """Community ID v1, straight from the spec's pseudo code, with hashlib."""
    if not (src < dst or (src == dst and sport < dport)):
        src, dst, sport, dport = dst, src, dport, sport
    data = (seed.to_bytes(2, "big") + src + dst + bytes([proto, 0]) + sport.to_bytes(2, "big")
            + dport.to_bytes(2, "big"))
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode()


def zeek_str(s: str, empty: str = "(empty)") -> str:
    """A string field as Zeek's ASCII writer writes it: `empty` for "", the first byte
    of "-" or "(empty)" as \\xNN, non-printable bytes as \\xNN, a backslash doubled."""
    if not s:
        return empty
    head = ""
    if s in ("-", "(empty)"):
        head, s = f"\\x{ord(s[0]):02x}", s[1:]
    out = []
    for c in s:
        if ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\x{ord(c):02x}")
        elif c == "\\":
            out.append("\\\\")
        else:
            out.append(c)
    return head + "".join(out)


def _rtt(us: int) -> float | None:
    return None if us == 0xFFFFFFFF else us / 1e6


def record(r: np.void, *, cid: bool = True, seed: int = 0) -> dict[str, Any]:
    """One FLOW_DTYPE row as the dict flow_records made, with "uid" (and "community_id")
    after its keys. ValueError for a code that names nothing or a non-ASCII history."""
    fam = int(r["family"])
    if fam not in (4, 6):
        raise ValueError(f"family {fam}")
    start, end = int(r["start_us"]), int(r["end_us"])
    n = 4 if fam == 4 else 16
    oh, rh = bytes(r["orig_h"]), bytes(r["resp_h"])
    rec = {
        "ts": start / 1e6,
        "orig_h": address(fam, oh),
        "orig_p": int(r["orig_p"]),
        "resp_h": address(fam, rh),
        "resp_p": int(r["resp_p"]),
        "proto": "tcp",
        "duration": (end - start) / 1e6,
        "orig_bytes": int(r["orig_bytes"]),
        "resp_bytes": int(r["resp_bytes"]),
        "conn_state": ConnState(int(r["conn_state"])).name,
        "missed_bytes": int(r["missed_bytes"]),
        "history": r["history"].decode("ascii"),
        "orig_pkts": int(r["orig_pkts"]),
        "orig_ip_bytes": int(r["orig_ip_bytes"]),
        "resp_pkts": int(r["resp_pkts"]),
        "resp_ip_bytes": int(r["resp_ip_bytes"]),
        "state": TrackerState(int(r["state"])).name,
        "rtt_syn_synack": _rtt(int(r["rtt_syn_synack"])),
        "rtt_synack_ack": _rtt(int(r["rtt_synack_ack"])),
        "orig_retrans": int(r["orig_retrans"]),
        "resp_retrans": int(r["resp_retrans"]),
        "end_reason": EndReason(int(r["end_reason"])).name,
        "uid": uid(fam, oh, int(r["orig_p"]), rh, int(r["resp_p"]), start),
    }
    if cid:
        rec["community_id"] = community_id(oh[:n], rh[:n], int(r["orig_p"]), int(r["resp_p"]), 6, seed)
    return rec


def _dash(v: Any) -> str:
    return "-" if v is None else str(v)


def _csv_line(values: list) -> str:
    # The csv module quotes a field holding '\r' with lineterminator "\n" only from
    # CPython 3.11.9/3.12.3 (gh-67044). With lineterminator "\r\n" every version quotes
    # both characters, and the rest of the line is the same: write so, end with "\n".
    f = io.StringIO()
    csv.writer(f, lineterminator="\r\n").writerow(values)
    return f.getvalue()[:-2] + "\n"


# ---- the writer ----

class OracleWriter:
    """Streams records in one of FORMATS (the old `_Writer`)."""

    def __init__(self, fmt: str, out: IO[str], *, community_id: bool | None = None, seed: int = 0) -> None:
        self.fmt = fmt
        self.out = out
        self.cid = fmt in ("json", "csv") if community_id is None else community_id
        self.seed = seed
        self.n = 0

    def header(self) -> None:
        if self.fmt == "zeek":
            sep = "\t"
            fields = ZEEK_FIELDS + (("community_id",) if self.cid else ())
            types = _ZEEK_TYPES + (("string",) if self.cid else ())
            self.out.write("#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n"
                           f"#path\tconn\n#open\t{time.strftime('%Y-%m-%d-%H-%M-%S')}\n"
                           f"#fields{sep}{sep.join(fields)}\n#types{sep}{sep.join(types)}\n")
        elif self.fmt == "csv":
            self.out.write(_csv_line(list(CSV_FIELDS if self.cid else CSV_FIELDS[:-1])))
        elif self.fmt == "table":
            self.out.write(f"{'orig':>41} {'resp':>41} {'conn_state':>6} {'history':<12} {'state':<11} "
                           f"{'pkts o/r':>13} {'bytes o/r':>21} {'rtt ms':>8}\n")

    def rows(self, rows: np.ndarray) -> None:
        for r in rows:
            rec = record(r, cid=self.cid, seed=self.seed)
            self.n += 1
            self.out.write(self._line(rec))

    def _line(self, rec: dict[str, Any]) -> str:
        if self.fmt == "json":
            return json.dumps(rec, separators=(",", ":")) + "\n"
        if self.fmt == "csv":
            fields = CSV_FIELDS if self.cid else CSV_FIELDS[:-1]
            return _csv_line(["" if rec[k] is None else rec[k] for k in fields])
        if self.fmt == "zeek":
            logged = rec["duration"] > 0          # Zeek logs bytes/duration only then
            vals = [f"{rec['ts']:.6f}", rec["uid"], rec["orig_h"], rec["orig_p"], rec["resp_h"], rec["resp_p"],
                    "tcp", "-", f"{rec['duration']:.6f}" if logged else "-",
                    rec["orig_bytes"] if logged else "-", rec["resp_bytes"] if logged else "-",
                    rec["conn_state"], "-", "-", rec["missed_bytes"], zeek_str(rec["history"], empty="-"),
                    rec["orig_pkts"], rec["orig_ip_bytes"], rec["resp_pkts"], rec["resp_ip_bytes"], "-"]
            if self.cid:
                vals.append(rec["community_id"])
            return "\t".join(str(v) for v in vals) + "\n"
        rtt = rec["rtt_syn_synack"]
        orig = f"{rec['orig_h']}:{rec['orig_p']}"
        resp = f"{rec['resp_h']}:{rec['resp_p']}"
        return (f"{orig:>41} {resp:>41} {rec['conn_state']:>6} {rec['history']:<12} "
                f"{rec['state']:<11} {rec['orig_pkts']:>6}/{rec['resp_pkts']:<6} "
                f"{rec['orig_bytes']:>10}/{rec['resp_bytes']:<10} "
                f"{_dash(None if rtt is None else round(rtt * 1e3, 3)):>8}\n")

    def footer(self) -> None:
        if self.fmt == "zeek":
            self.out.write(f"#close\t{time.strftime('%Y-%m-%d-%H-%M-%S')}\n")


def oracle_text(rows: np.ndarray, fmt: str, *, community_id: bool | None = None, seed: int = 0) -> str:
    """The lines of `rows` (no header), as format_rows should write them."""
    out = io.StringIO()
    OracleWriter(fmt, out, community_id=community_id, seed=seed).rows(rows)
    return out.getvalue()


def analyze_rows(path: str | Path, *, verify_checksum: bool = True) -> np.ndarray:
    """The FLOW_DTYPE rows `fasttcp analyze` writes for a capture with its default
    options, in its order: the Tracker fed batch by batch, finished() after each, close()
    at the end; a corrupt record ends the reading, as it ends analyze's."""
    from fasttcp.capture.reader import CaptureError, read_pcap
    from fasttcp.tracker.tracker import Tracker

    tracker = Tracker(1_000_000, timeouts="zeek", verify_checksum=verify_checksum)
    out = []
    with read_pcap(path, batch_bytes=8 << 20) as reader:
        while True:
            try:
                batch = reader.read_batch()
            except CaptureError:
                break
            if batch is None:
                break
            tracker.feed_batch(batch)
            out.append(tracker.finished())
    out.append(tracker.close())
    return np.concatenate(out)
