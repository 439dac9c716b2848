"""fasttcp-built packets as real tshark reads them (tshark runs here, on a pcap we write).

The oracle files in tests/data check our parser against tshark; this checks the
other direction: what `fasttcp.build` emits, tshark decodes field for field, with both
checksums verified good.
"""
import json
import os
import shutil
import struct
import subprocess

import pytest

import fasttcp
from fasttcp import Flags, Options

TSHARK = shutil.which("tshark")
if TSHARK is None and os.environ.get("CI"):
    raise RuntimeError("tshark must be installed in CI (.ci/run installs it)")
pytestmark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")

LINKTYPE_RAW = 101


def write_pcap(path, packets):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_RAW))
        for i, p in enumerate(packets):
            f.write(struct.pack("<IIII", 1_700_000_000 + i, 0, len(p), len(p)))
            f.write(p)


CASES = [
    dict(src="198.18.0.1", dst="198.18.0.2", sport=49500, dport=80, seq=0xFFFFFFF0, ack=0, flags=Flags.SYN,
         options=Options(mss=1460, wscale=7, sack_permitted=True, timestamp=(12345, 0))),
    dict(src="198.18.0.2", dst="198.18.0.1", sport=80, dport=49500, seq=7, ack=0xFFFFFFF1,
         flags=Flags.SYN | Flags.ACK, options=Options(mss=536, wscale=14, sack_permitted=True, timestamp=(1, 12345))),
    dict(src="198.18.0.1", dst="198.18.0.2", sport=49500, dport=80, seq=5, ack=8, flags=Flags.ACK | Flags.PSH,
         options=Options(timestamp=(2, 1), sack=[(100, 200), (300, 400), (500, 600)]), payload=b"x" * 1001),
    dict(src="2001:2::1", dst="2001:2::2", sport=1, dport=65535, seq=1, ack=2, flags=Flags.FIN | Flags.ACK,
         options=Options(unknown=[(30, b"\x01\x02\x03")]), payload=b"odd"),
    dict(src="2001:2::2", dst="2001:2::1", sport=65535, dport=1, seq=3, ack=4,
         flags=Flags.RST | Flags.ACK | Flags.ECE | Flags.CWR | Flags.AE, options=None),
]


def test_tshark_decodes_what_build_emits(tmp_path):
    packets = [fasttcp.build(c["src"], c["dst"], c["sport"], c["dport"], seq=c["seq"], ack=c["ack"],
                             flags=c["flags"], options=c["options"], payload=c.get("payload", b""))
               for c in CASES]
    pcap = tmp_path / "built.pcap"
    write_pcap(pcap, packets)
    fields = ["ip.src", "ipv6.src", "tcp.srcport", "tcp.dstport", "tcp.seq_raw", "tcp.ack_raw", "tcp.flags",
              "tcp.len", "tcp.options.mss_val", "tcp.options.wscale.shift", "tcp.options.sack_perm",
              "tcp.options.timestamp.tsval", "tcp.options.timestamp.tsecr", "tcp.options.sack_le",
              "tcp.checksum.status", "ip.checksum.status", "tcp.option_kind"]
    cmd = [TSHARK, "-n", "-r", str(pcap), "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
           "-o", "tcp.relative_sequence_numbers:FALSE", "-T", "json"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    rows = [r["_source"]["layers"] for r in json.loads(out.stdout)]
    assert len(rows) == len(CASES)
    for case, row, pkt in zip(CASES, rows, packets, strict=True):
        def get(k, row=row):
            return row.get(k, [None])[0]

        assert get("ip.src") == case["src"] or get("ipv6.src") == case["src"]
        assert int(get("tcp.srcport")) == case["sport"] and int(get("tcp.dstport")) == case["dport"]
        assert int(get("tcp.seq_raw")) == case["seq"] and int(get("tcp.ack_raw")) == case["ack"]
        assert int(get("tcp.flags"), 16) & 0x1FF == int(case["flags"])
        assert int(get("tcp.len")) == len(case.get("payload", b""))
        assert get("tcp.checksum.status") == "1", f"tshark says the TCP checksum is not good: {row}"
        if ":" not in case["src"]:
            assert get("ip.checksum.status") == "1"          # Wireshark: 0 bad, 1 good, 2 unverified
        opts = case["options"]
        if opts is not None and opts.mss is not None:
            assert int(get("tcp.options.mss_val")) == opts.mss
        if opts is not None and opts.wscale is not None:
            assert int(get("tcp.options.wscale.shift")) == opts.wscale
        if opts is not None and opts.timestamp is not None:
            assert (int(get("tcp.options.timestamp.tsval")), int(get("tcp.options.timestamp.tsecr"))) == opts.timestamp
        if opts is not None and opts.sack:
            assert [int(x) for x in row["tcp.options.sack_le"]] == [left for left, _ in opts.sack]
        if opts is not None and opts.unknown:
            assert str(opts.unknown[0][0]) in row["tcp.option_kind"]
        # and our own parser agrees with what we built
        seg = fasttcp.parse(pkt)
        assert seg.checksum_ok and seg.seq == case["seq"]
