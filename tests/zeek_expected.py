"""Read Zeek's expected outputs shipped with the captures (conn.log baselines and the
'<history>, <conn_state>' lines) and run fasttcp's tracker the way Zeek was run.

How each baseline was produced (with or without -C, i.e. checksum verification) is in
the captures' MANIFEST.md; `ZEEK_VERIFY` restates it per capture.
"""
from __future__ import annotations

from pathlib import Path

import fasttcp
from fasttcp.tracker.vocabulary import flow_records

# True: Zeek verified checksums (no -C); False: zeek -C (or checksums ignored)
ZEEK_VERIFY = {
    "zeek-tcp-syn-bad.pcap": True,
    "zeek-tcp-single-rst.pcap": False,
    "zeek-tcp-syn-then-rst.pcap": False,
    "zeek-tcp-syn-then-ack-then-rst.pcap": False,
    "zeek-tcp-syn-then-stuff-then-rst.pcap": False,
    "zeek-tcp-retransmit-fast009.pcap": False,
    "zeek-wikipedia.pcap": False,
    "zeek-tcp-missing-syn.pcap": False,
    "zeek-tcp-miss_end_data.pcap": True,
    "zeek-tcp-retransmit-timeout.pcapng": False,
    "zeek-tcp-http-on-irc-port-missing-syn.pcapng": True,
    "zeek-pcapng-multi-interface.pcapng": False,
    "zeek-tcp-http-with-padding.pcap": False,
    "zeek-http-get.pcap": True,
    "zeek-http-qinq-0.pcap": True,
    "zeek-http-vlan-0.pcap": True,
    "zeek-mixed-vlan-mpls.pcap": False,
    "zeek-tls-irc-starttls.pcap": False,
    "zeek-tls-pop3-starttls.pcap": False,
    "zeek-tcp-syslog.pcap": False,
    "zeek-ftp-ipv6.pcap": True,
    "zeek-chksums-localhost-bad-chksum.pcap": True,
    "zeek-tcp-one-sided-2745.pcap": False,
    "zeek-tcp-ctu-64702-888.pcap": False,
    "zeek-ssh-client-side-half-duplex.pcap": True,
}


# Baselines made with `zeek -b` (bare mode): no protocol scripts, so Zeek's
# likely_server_ports is empty and only the SYN-ACK rule flips a connection.
ZEEK_BARE = {
    "zeek-tcp-syn-bad.pcap", "zeek-tcp-single-rst.pcap", "zeek-tcp-syn-then-rst.pcap",
    "zeek-tcp-syn-then-ack-then-rst.pcap", "zeek-tcp-syn-then-stuff-then-rst.pcap",
    "zeek-tcp-missing-syn.pcap", "zeek-tcp-miss_end_data.pcap", "zeek-tcp-retransmit-timeout.pcapng",
    "zeek-http-qinq-0.pcap", "zeek-http-vlan-0.pcap", "zeek-tcp-syslog.pcap",
    "zeek-chksums-localhost-bad-chksum.pcap", "zeek-tcp-one-sided-2745.pcap", "zeek-tcp-ctu-64702-888.pcap",
}


def read_conn_log(path: Path) -> list[dict[str, str]]:
    """TCP rows of a Zeek conn.log baseline (full log with #fields, or a zeek-cut subset
    whose first line names the columns)."""
    names: list[str] | None = None
    rows = []
    for line in path.read_text().splitlines():
        if line.startswith("#fields"):
            names = line.split("\t")[1:]
            continue
        if line.startswith("#") or not line.strip():
            continue
        cells = line.split("\t")
        if names is None:
            names = cells
            continue
        row = dict(zip(names, cells, strict=True))
        if row.get("proto", "tcp") == "tcp":
            rows.append(row)
    return rows


def read_history_state(path: Path) -> list[tuple[str, str]]:
    """'<history>, <conn_state>' lines."""
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            h, s = line.split(",")
            out.append((h.strip(), s.strip()))
    return out


def track_capture(path: Path, *, verify: bool, bare: bool = False, timeouts: str = "zeek") -> list[dict]:
    """Every connection of a capture as fasttcp's conn.log records, in the order they ended."""
    t = fasttcp.Tracker(4096, timeouts=timeouts, verify_checksum=verify, seed=1,
                        server_ports=() if bare else None)
    rows = []
    with fasttcp.read_pcap(path) as reader:
        for batch in reader:
            t.feed_batch(batch)
            rows.extend(flow_records(t.finished()))
    rows.extend(flow_records(t.close()))
    return rows
