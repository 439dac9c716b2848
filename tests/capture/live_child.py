"""Run LiveCapture inside a namespace and report what it saw as one JSON line.

    python live_child.py '{"interface": "eth0", "captures": {"all": {}}, "pause": false}'

`captures` names the captures to open, each with LiveCapture keyword arguments; a
"fanout" of "join:NAME" joins the group of capture NAME (opened earlier in the dict).
The child prints ``{"ready": {...fanout groups...}}`` once every capture is open, then
reads (after a "go" line on stdin when `pause` is set: the ring fills meanwhile) until
stdin reaches its end, drains what is left, closes, and prints the result: per capture
its stats, and per packet [digest, ip_len, link verdict, snapped, flow, tracker verdict,
source address].
The digest is of the IP packet with its TCP checksum zeroed (a partial checksum the
capture completed in place would differ from a copy taken elsewhere).
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import select
import sys

import fasttcp
from fasttcp import Fanout, LiveCapture, Tracker

DRAIN_EMPTY_ROUNDS = 5
MAX_SECONDS = 60


def describe(pkt: bytes) -> tuple[str, str]:
    """(digest with the TCP checksum zeroed, the flow as sorted endpoints)."""
    return _describe(pkt)[:2]


def source(pkt: bytes) -> str:
    """The packet's source address ("" when it is not IP)."""
    return _describe(pkt)[2]


def _describe(pkt: bytes) -> tuple[str, str, str]:
    b = bytearray(pkt)
    version = b[0] >> 4 if b else 0
    if version == 4 and len(b) >= 20:
        ihl = (b[0] & 15) * 4
        src, dst, proto, tcp = ipaddress.ip_address(bytes(b[12:16])), ipaddress.ip_address(bytes(b[16:20])), b[9], ihl
    elif version == 6 and len(b) >= 40:
        src, dst, proto, tcp = ipaddress.ip_address(bytes(b[8:24])), ipaddress.ip_address(bytes(b[24:40])), b[6], 40
    else:
        return hashlib.sha1(b).hexdigest()[:20], "not-ip", ""
    if proto != 6 or len(b) < tcp + 20:
        return hashlib.sha1(b).hexdigest()[:20], "not-tcp", str(src)
    sport, dport = int.from_bytes(b[tcp:tcp + 2], "big"), int.from_bytes(b[tcp + 2:tcp + 4], "big")
    b[tcp + 16:tcp + 18] = b"\0\0"
    flow = "|".join(sorted([f"{src}.{sport}", f"{dst}.{dport}"]))
    return hashlib.sha1(b).hexdigest()[:20], flow, str(src)


def stdin_line(timeout: float) -> str | None:
    """A line from stdin ("" at its end), or None if none came within timeout."""
    ready, _, _ = select.select([sys.stdin], [], [], timeout)
    return sys.stdin.readline() if ready else None


def main() -> None:
    cfg = json.loads(sys.argv[1])
    caps: dict[str, LiveCapture] = {}
    for name, kw in cfg["captures"].items():
        kw = dict(kw)
        if isinstance(kw.get("fanout"), str) and kw["fanout"].startswith("join:"):
            kw["fanout"] = caps[kw["fanout"][5:]].fanout
        elif isinstance(kw.get("fanout"), list):
            kw["fanout"] = Fanout(*kw["fanout"])
        caps[name] = LiveCapture(cfg["interface"], **kw)
    print(json.dumps({"ready": {n: (c.fanout.group if c.fanout else None) for n, c in caps.items()}}), flush=True)
    if cfg.get("pause"):
        stdin_line(MAX_SECONDS)
    seen: dict[str, list] = {n: [] for n in caps}
    trackers = {n: Tracker() for n in caps}

    def read_round(timeout: float) -> int:
        got = 0
        for name, cap in caps.items():
            batch = cap.next_batch(timeout)
            if batch is None:
                continue
            got += len(batch)
            verdicts = trackers[name].feed_batch(batch)
            for i in range(len(batch)):
                digest, flow, src = _describe(batch.packet(i))
                seen[name].append([digest, int(batch.lengths[i]), int(batch.verdicts[i]),
                                   bool(batch.snapped[i]), flow, int(verdicts[i]), src])
        return got

    for _ in range(MAX_SECONDS * 20):
        read_round(0.02)
        if stdin_line(0) in ("", "stop\n"):
            break
    empty = 0
    while empty < DRAIN_EMPTY_ROUNDS:
        empty = 0 if read_round(0.05) else empty + 1
    out = {}
    for name, cap in caps.items():
        cap.close()
        out[name] = {"stats": cap.stats.as_dict(), "packets": seen[name],
                     "tracker": {str(k): v for k, v in trackers[name].stats["verdicts"].items()},
                     "group": cap.fanout.group if cap.fanout else None}
    print(json.dumps({"result": out, "version": fasttcp.__version__}), flush=True)


if __name__ == "__main__":
    main()
