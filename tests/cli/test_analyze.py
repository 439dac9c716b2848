"""`fasttcp analyze CAPTURE`, run as the real command line (``python -m fasttcp analyze``)
in a subprocess.

References, never the code under test:
- Zeek's own conn.log baselines shipped with the captures (``*.expected-conn*.log``;
  how Zeek was run per capture is in tests/zeek_expected.py and MANIFEST.md),
- the tshark oracle of each capture (``*.tshark.jsonl[.gz]``: frame count, frame times;
  schema at the end of tests/data/MANIFEST.md),
- the file bytes themselves (size, record offsets walked with struct),
- `fasttcp.bench.tracker.synth_capture`, whose connection count and shape are known.

Suspected bugs are kept as ``xfail(strict=True)`` tests at the end of the file.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import os
import random
import re
import struct
import subprocess
import sys
from collections import Counter, defaultdict
from decimal import Decimal
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from fasttcp.rows import CSV_FIELDS, ZEEK_FIELDS
from tests import linklayer, zeek_expected

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 300

CAPTURES = linklayer.CAPTURES

# the 15 keys the brief promises in every JSON line
JSON_KEYS = ("ts", "orig_h", "orig_p", "resp_h", "resp_p", "conn_state", "history", "orig_pkts", "resp_pkts",
             "orig_bytes", "resp_bytes", "duration", "state", "rtt_syn_synack", "rtt_synack_ack")
ID_COLUMNS = ("id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p")
# columns of a Zeek baseline compared with ours (the ones present in the baseline)
ZEEK_COMPARED = ("history", "conn_state", "orig_pkts", "resp_pkts", "orig_ip_bytes", "resp_ip_bytes",
                 "duration", "orig_bytes", "resp_bytes", "missed_bytes")
PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d",
               b"\x0a\x0d\x0d\x0a"}


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------

def run(*args: object, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """`python -m fasttcp analyze ARGS`, the in-place build of this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return subprocess.run([sys.executable, "-m", "fasttcp", "analyze", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def capture(name: str) -> Path:
    """A bundled capture (or a file beside it); missing means a broken checkout."""
    path = CAPTURES / name
    assert path.is_file(), f"{name} is not in {CAPTURES}"
    return path


@cache
def oracle(name: str) -> tuple[dict, list[dict], list[dict]]:
    """(meta, packet rows, stream rows) of a capture's tshark oracle."""
    plain = CAPTURES / f"{name}.tshark.jsonl"
    if plain.is_file():
        text = plain.read_text()
    elif plain.with_name(plain.name + ".gz").is_file():
        text = gzip.decompress(plain.with_name(plain.name + ".gz").read_bytes()).decode()
    else:
        raise AssertionError(f"no tshark oracle for {name} in {CAPTURES}")
    recs = [json.loads(line) for line in text.splitlines() if line.strip()]
    meta = recs[0]
    assert meta["type"] == "meta"
    return meta, [r for r in recs if r["type"] == "packet"], [r for r in recs if r["type"] == "stream"]


def json_lines(text: str) -> list[dict]:
    rows = []
    for line in text.splitlines():
        obj = json.loads(line)                       # every line must be JSON
        assert isinstance(obj, dict), line
        rows.append(obj)
    return rows


@cache
def json_run(name: str, *flags: str) -> tuple[list[dict], dict]:
    """Rows (stdout) and JSON summary (stderr) of `--format json --json-summary`."""
    p = run(capture(name), "--format", "json", "--json-summary", *flags)
    assert p.returncode == 0, p.stderr
    err = p.stderr.splitlines()
    assert len(err) == 1, p.stderr                 # the summary only: one JSON object
    return json_lines(p.stdout), json.loads(err[0])


def parse_zeek_log(text: str) -> tuple[list[str], list[str], list[dict[str, str]], list[str]]:
    """(header lines, #fields names, rows, trailer lines) of a conn.log we wrote; checks
    the structure as it goes."""
    lines = text.split("\n")
    assert lines[-1] == "", "the log must end with a newline"
    lines = lines[:-1]
    header = []
    while lines and lines[0].startswith("#") and not lines[0].startswith("#close"):
        header.append(lines.pop(0))
    assert lines and lines[-1].startswith("#close\t"), "the log must end with #close"
    trailer = [lines.pop()]
    fields = None
    for h in header:
        if h.startswith("#fields\t"):
            fields = h.split("\t")[1:]
    assert fields is not None
    rows = []
    for line in lines:
        assert not line.startswith("#"), f"header/trailer line among the rows: {line!r}"
        cells = line.split("\t")
        assert len(cells) == len(fields), line
        rows.append(dict(zip(fields, cells, strict=True)))
    return header, fields, rows, trailer


def pcap_records(data: bytes) -> list[tuple[int, int]]:
    """(offset, caplen) of each record of a little-endian classic pcap."""
    assert data[:4] == b"\xd4\xc3\xb2\xa1"
    out, off = [], 24
    while off + 16 <= len(data):
        caplen = struct.unpack_from("<I", data, off + 8)[0]
        out.append((off, caplen))
        off += 16 + caplen
    assert off == len(data)
    return out


def pcapng_blocks(data: bytes) -> list[tuple[int, int, int]]:
    """(offset, type, total length) of each block of a little-endian pcapng."""
    out, off = [], 0
    while off < len(data):
        btype, blen = struct.unpack_from("<II", data, off)
        out.append((off, btype, blen))
        off += blen
    assert off == len(data)
    return out


def summary_block(text: str) -> dict:
    """The numbers of the human-readable summary (Summary.format)."""
    m = re.search(r"^# (.+): ([\d,]+) packets, ([\d,]+) bytes in ", text, re.M)
    assert m, text
    c = re.search(r"^connections: ([\d,]+)$", text, re.M)
    assert c, text
    states: dict[str, int] = {}
    s = re.search(r"^  by conn_state: (.*)$", text, re.M)
    if s:
        for part in s.group(1).split(", "):
            k, v = part.split(" ")
            states[k] = int(v.replace(",", ""))
    return {"path": m.group(1), "packets": int(m.group(2).replace(",", "")),
            "file_bytes": int(m.group(3).replace(",", "")), "connections": int(c.group(1).replace(",", "")),
            "conn_states": states}


# ---------------------------------------------------------------------------------------
# 1. --format json
# ---------------------------------------------------------------------------------------

def test_json_http_get_matches_zeek_and_tshark():
    cap = capture("zeek-http-get.pcap")
    p = run(cap, "--format", "json")
    assert p.returncode == 0, p.stderr
    rows = json_lines(p.stdout)                    # stdout holds only JSON lines
    assert len(rows) == 1
    row = rows[0]
    for k in JSON_KEYS:
        assert k in row, k
    # the summary went to stderr
    assert "connections: 1" in p.stderr
    assert "connections:" not in p.stdout

    # Zeek's baseline row (zeek -r, checksums verified, HTTP scripts loaded)
    z = zeek_expected.read_conn_log(capture("zeek-http-get.pcap.expected-conn.log"))
    assert len(z) == 1
    z = z[0]
    assert (row["orig_h"], str(row["orig_p"]), row["resp_h"], str(row["resp_p"])) == tuple(z[k] for k in ID_COLUMNS)
    assert row["history"] == z["history"] == "ShADadFf"
    assert row["conn_state"] == z["conn_state"] == "SF"
    for k in ("orig_pkts", "resp_pkts", "orig_bytes", "resp_bytes", "orig_ip_bytes", "resp_ip_bytes",
              "missed_bytes"):
        assert row[k] == int(z[k]), k
    assert f"{row['duration']:.6f}" == z["duration"]

    # tshark: connection start = first frame; RTTs = frame time differences
    _, pkts, _ = oracle("zeek-http-get.pcap")
    orig = (row["orig_h"], row["orig_p"])
    syn = next(q for q in pkts if q["flags"] & 0x12 == 0x02)
    synack = next(q for q in pkts if q["flags"] & 0x12 == 0x12)
    ack = next(q for q in pkts if q["frame"] > synack["frame"] and (q["src"], q["sport"]) == orig
               and q["flags"] & 0x16 == 0x10)
    assert (syn["src"], syn["sport"]) == orig
    assert Decimal(repr(row["ts"])) == Decimal(syn["ts"])
    assert Decimal(repr(row["rtt_syn_synack"])) == Decimal(synack["ts"]) - Decimal(syn["ts"])
    assert Decimal(repr(row["rtt_synack_ack"])) == Decimal(ack["ts"]) - Decimal(synack["ts"])
    assert row["rtt_syn_synack"] == pytest.approx(0.06974, abs=1e-9)
    assert row["rtt_synack_ack"] == pytest.approx(0.000294, abs=1e-9)


@pytest.mark.parametrize("name", ["zeek-ftp-ipv6.pcap", "zeek-wikipedia.pcap", "zeek-echo-connections.pcap"])
def test_json_rtts_equal_tshark_frame_times(name):
    """Every connection with a clean handshake (one SYN, one SYN-ACK in tshark's stream):
    both RTTs are the tshark frame time differences, to the microsecond (µs captures)."""
    capture(name)
    rows, _ = json_run(name, "-C")
    _, pkts, streams = oracle(name)
    by_stream = {s["stream"]: s for s in streams}
    by_pair: dict[frozenset, list[dict]] = defaultdict(list)
    for q in pkts:
        if not q["in_icmp"]:
            by_pair[frozenset({(q["src"], q["sport"]), (q["dst"], q["dport"])})].append(q)
    checked = 0
    for row in rows:
        o, r = (row["orig_h"], row["orig_p"]), (row["resp_h"], row["resp_p"])
        mine = by_pair.get(frozenset({o, r}), [])
        ids = {q["stream"] for q in mine}
        if len(ids) != 1:
            continue
        s = by_stream[ids.pop()]
        if s["syn_count"] != 1 or s["synack_count"] != 1:
            continue
        syn = next(q for q in mine if q["flags"] & 0x12 == 0x02)
        synack = next(q for q in mine if q["flags"] & 0x12 == 0x12)
        assert (syn["src"], syn["sport"]) == o, row
        assert row["rtt_syn_synack"] is not None, row
        assert Decimal(repr(row["rtt_syn_synack"])) == Decimal(synack["ts"]) - Decimal(syn["ts"]), row
        ack = next((q for q in mine if q["frame"] > synack["frame"] and (q["src"], q["sport"]) == o
                    and q["flags"] & 0x16 == 0x10), None)
        if ack is None:
            assert row["rtt_synack_ack"] is None, row
        else:
            assert Decimal(repr(row["rtt_synack_ack"])) == Decimal(ack["ts"]) - Decimal(synack["ts"]), row
        checked += 1
    assert checked >= {"zeek-ftp-ipv6.pcap": 6, "zeek-wikipedia.pcap": 8, "zeek-echo-connections.pcap": 300}[name]


# ---------------------------------------------------------------------------------------
# 2. --format zeek: a conn.log equal to Zeek's baselines
# ---------------------------------------------------------------------------------------

def _zeek_baselines() -> list[tuple[str, str, bool, bool]]:
    """(capture, baseline file, verify checksums, bare) of every conn.log baseline."""
    out = []
    for log in sorted(CAPTURES.glob("*.expected-conn*.log")):
        cap, suffix = log.name.split(".expected-", 1)
        if cap not in zeek_expected.ZEEK_VERIFY:
            continue
        verify, bare = zeek_expected.ZEEK_VERIFY[cap], cap in zeek_expected.ZEEK_BARE
        if suffix == "conn-ignorechecksums.log":
            verify = False          # the same capture with checksums ignored (MANIFEST.md)
        if suffix == "conn-historyflip.log":
            bare = False            # the history-flip btest loads the HTTP scripts: 80 is a likely server port
        out.append((cap, log.name, verify, bare))
    return out


ZEEK_BASELINES = _zeek_baselines()


def test_zeek_baselines_found():
    assert len(ZEEK_BASELINES) >= 23
    with_history = [b for b in ZEEK_BASELINES
                    if any("history" in r for r in zeek_expected.read_conn_log(CAPTURES / b[1]))]
    assert len(with_history) >= 19


@pytest.mark.parametrize("cap,log,verify,bare", ZEEK_BASELINES, ids=[b[1] for b in ZEEK_BASELINES])
def test_zeek_conn_log_equals_zeek(cap, log, verify, bare):
    flags = (["-C"] if not verify else []) + (["--no-server-ports"] if bare else [])
    p = run(capture(cap), "--format", "zeek", *flags)
    assert p.returncode == 0, p.stderr
    header, fields, ours, _ = parse_zeek_log(p.stdout)
    assert header[0] == "#separator \\x09"
    assert header[1] == "#set_separator\t,"
    assert "#path\tconn" in header
    assert any(h.startswith("#open\t") for h in header)
    assert fields == list(ZEEK_FIELDS)
    types = next(h for h in header if h.startswith("#types\t")).split("\t")[1:]
    assert len(types) == len(fields)
    assert types[fields.index("ts")] == "time" and types[fields.index("id.orig_p")] == "port"
    assert len({r["uid"] for r in ours}) == len(ours), "uids must be unique"
    for r in ours:
        assert r["proto"] == "tcp"
        assert r["uid"].startswith("C")
        float(r["ts"])
        # Zeek logs duration and both sizes only when the duration is > 0
        if r["duration"] == "-":
            assert r["orig_bytes"] == r["resp_bytes"] == "-", r
        else:
            assert float(r["duration"]) > 0, r
            int(r["orig_bytes"]), int(r["resp_bytes"])
        for k in ("orig_pkts", "resp_pkts", "orig_ip_bytes", "resp_ip_bytes", "missed_bytes", "id.orig_p",
                  "id.resp_p"):
            int(r[k])

    zeek = zeek_expected.read_conn_log(CAPTURES / log)
    assert len(ours) == len(zeek), (ours, zeek)
    if zeek and all(k in zeek[0] for k in ID_COLUMNS):
        # matched by 4-tuple, in order within a 4-tuple (the logs' row orders differ)
        by_id: dict[tuple, list[dict]] = defaultdict(list)
        for r in ours:
            by_id[tuple(r[k] for k in ID_COLUMNS)].append(r)
        pairs = []
        for z in zeek:
            mine = by_id.get(tuple(z[k] for k in ID_COLUMNS))
            assert mine, f"no connection {tuple(z[k] for k in ID_COLUMNS)} in our log"
            pairs.append((mine.pop(0), z))
    else:
        pairs = list(zip(ours, zeek, strict=True))          # zeek-cut subsets without the 4-tuple
    # (the VLAN baselines log only the VLAN ids: there only the connection count is compared)
    for r, z in pairs:
        for k in ZEEK_COMPARED:
            if k in z:
                assert r[k] == z[k], (k, r, z)


# ---------------------------------------------------------------------------------------
# 3. --format csv
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["zeek-http-get.pcap", "zeek-ftp-ipv6.pcap", "zeek-wikipedia.pcap",
                                  "zeek-tcp-retransmit-fast009.pcap"])
def test_csv_matches_json(name):
    p = run(capture(name), "--format", "csv", "-C")
    assert p.returncode == 0, p.stderr
    assert "connections:" in p.stderr and "connections:" not in p.stdout
    reader = csv.reader(io.StringIO(p.stdout, newline=""))
    table = list(reader)
    assert tuple(table[0]) == CSV_FIELDS
    assert all(len(r) == len(CSV_FIELDS) for r in table[1:])
    rows = [dict(zip(CSV_FIELDS, r, strict=True)) for r in table[1:]]
    jrows, summary = json_run(name, "-C")
    assert len(rows) == len(jrows) == summary["connections"] > 0
    for c, j in zip(rows, jrows, strict=True):
        for k in CSV_FIELDS:
            assert c[k] == ("" if j[k] is None else str(j[k])), (k, c, j)


# ---------------------------------------------------------------------------------------
# 4. table (default), --summary-only, --json-summary
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["zeek-http-get.pcap", "zeek-ftp-ipv6.pcap", "zeek-wikipedia.pcap"])
def test_table_rows_and_summary(name):
    cap = capture(name)
    p = run(cap, "-C")
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    lines = p.stdout.splitlines()
    assert lines[0].split()[:4] == ["orig", "resp", "conn_state", "history"]
    end = next(i for i, line in enumerate(lines) if line.startswith("# "))
    table_rows = [line.split() for line in lines[1:end]]
    s = summary_block("\n".join(lines[end:]))
    meta, _, _ = oracle(name)
    assert s["path"] == str(cap)
    assert s["packets"] == meta["frames_total"]
    assert s["file_bytes"] == cap.stat().st_size
    assert s["connections"] == len(table_rows) == sum(s["conn_states"].values())
    jrows, _ = json_run(name, "-C")
    assert Counter(r["conn_state"] for r in jrows) == Counter(s["conn_states"])
    for t, j in zip(table_rows, jrows, strict=True):
        assert t[0] == f"{j['orig_h']}:{j['orig_p']}"
        assert t[1] == f"{j['resp_h']}:{j['resp_p']}"
        assert t[2:5] == [j["conn_state"], j["history"], j["state"]]
        assert t[5] == f"{j['orig_pkts']}/{j['resp_pkts']}"
        assert t[6] == f"{j['orig_bytes']}/{j['resp_bytes']}"
        rtt = j["rtt_syn_synack"]
        assert t[7] == ("-" if rtt is None else str(round(rtt * 1e3, 3)))


def test_summary_only_prints_only_the_summary():
    cap = capture("zeek-wikipedia.pcap")
    full = run(cap, "-C")
    p = run(cap, "-C", "--summary-only")
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    lines = p.stdout.splitlines()
    assert lines[0].startswith(f"# {cap}: ")
    assert lines[1] == "connections: 10"
    assert "141.142.220.118" not in p.stdout          # no connection row
    assert "conn_state history" not in p.stdout        # no table header
    # exactly the summary block of the full run (timing figures aside)
    def strip_timing(text: str) -> list[str]:
        return [re.sub(r" in [\d.]+ s.*$", "", line) for line in text.splitlines()]
    tail = full.stdout.splitlines()[-len(lines):]
    assert strip_timing("\n".join(tail)) == strip_timing(p.stdout)
    # machine formats too: nothing but the summary, on stdout
    for fmt in ("json", "csv", "zeek"):
        q = run(cap, "-C", "--summary-only", "--format", fmt)
        assert q.returncode == 0
        assert q.stderr == ""
        assert strip_timing(q.stdout) == strip_timing(p.stdout), fmt


SUMMARY_CAPTURES = ["zeek-http-get.pcap", "zeek-wikipedia.pcap", "zeek-ftp-ipv6.pcap",
                    "zeek-tcp-retransmit-fast009.pcap", "zeek-tcp-ssh-dups.pcap", "tcpdump-tfo-5c1fa7f9ae91.pcap",
                    "zeek-mixed-vlan-mpls.pcap", "zeek-tcp-syn-then-rst.pcap", "zeek-pcapng-multi-interface.pcapng",
                    "zeek-echo-connections.pcap"]


@pytest.mark.parametrize("name", SUMMARY_CAPTURES)
def test_json_summary_consistent_with_rows(name):
    cap = capture(name)
    p = run(cap, "-C", "--summary-only", "--json-summary")
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    out = p.stdout.splitlines()
    assert len(out) == 1
    s = json.loads(out[0])
    rows, s2 = json_run(name, "-C")
    meta, _, _ = oracle(name)
    volatile = ("seconds", "packets_per_s")
    assert {k: v for k, v in s.items() if k not in volatile} == {k: v for k, v in s2.items() if k not in volatile}

    assert s["capture"] == str(cap)
    assert s["packets"] == meta["frames_total"]
    assert sum(s["verdicts"].values()) == s["packets"]
    assert s["file_bytes"] == cap.stat().st_size
    assert s["error"] is None and s["truncated_tail_bytes"] == 0
    assert s["connections"] == len(rows) == sum(s["conn_states"].values())
    assert s["conn_states"] == dict(Counter(r["conn_state"] for r in rows))
    assert s["connections_with_reset"] == sum(1 for r in rows if "R" in r["history"] or "r" in r["history"])
    assert s["retransmitted_segments"] == sum(r["orig_retrans"] + r["resp_retrans"] for r in rows)
    for key, col in (("rtt_syn_synack_s", "rtt_syn_synack"), ("rtt_synack_ack_s", "rtt_synack_ack")):
        vals = [r[col] for r in rows if r[col] is not None]
        if not vals:
            assert s[key] is None
            continue
        pct = np.percentile(vals, [50, 90, 99])
        assert s[key]["n"] == len(vals)
        assert s[key]["max"] == max(vals)
        assert s[key]["p50"] == pytest.approx(pct[0], rel=1e-9, abs=1e-12)
        assert s[key]["p90"] == pytest.approx(pct[1], rel=1e-9, abs=1e-12)
        assert s[key]["p99"] == pytest.approx(pct[2], rel=1e-9, abs=1e-12)


# ---------------------------------------------------------------------------------------
# 5. -o FILE
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["json", "csv", "zeek", "table"])
def test_output_file_gets_rows_stdout_gets_summary(tmp_path, fmt):
    cap = capture("zeek-ftp-ipv6.pcap")
    out = tmp_path / f"conns.{fmt}"
    p = run(cap, "--format", fmt, "-o", out)
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    s = summary_block(p.stdout)
    assert s["connections"] == 6 and s["packets"] == 136
    assert p.stdout.startswith(f"# {cap}: ")       # stdout: the summary and nothing else
    text = out.read_text()
    if fmt == "json":
        rows = json_lines(text)
        assert [r["history"] for r in rows] == [r["history"] for r in json_run("zeek-ftp-ipv6.pcap")[0]]
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
        assert [r["orig_p"] for r in rows] == [str(r["orig_p"]) for r in json_run("zeek-ftp-ipv6.pcap")[0]]
    elif fmt == "zeek":
        _, _, rows, _ = parse_zeek_log(text)
    else:
        rows = text.splitlines()[1:]
        assert text.splitlines()[0].split()[:2] == ["orig", "resp"]
        assert "connections:" not in text
    assert len(rows) == 6
    # the same run to stdout writes the same rows
    q = run(cap, "--format", fmt)
    if fmt == "zeek":
        strip = lambda t: [x for x in t.splitlines() if not x.startswith(("#open", "#close"))]  # noqa: E731
        assert strip(q.stdout) == strip(text)
    elif fmt == "table":
        assert q.stdout.startswith(text)
    else:
        assert q.stdout == text


# ---------------------------------------------------------------------------------------
# 6. exit status and messages
# ---------------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    missing = tmp_path / "no-such-capture.pcap"
    for fmt in ("table", "json", "zeek"):
        p = run(missing, "--format", fmt)
        assert p.returncode == 2
        assert p.stdout == ""
        assert str(missing) in p.stderr
        assert "no such file" in p.stderr
        assert "Traceback" not in p.stderr


def test_empty_file(tmp_path):
    f = tmp_path / "empty.pcap"
    f.write_bytes(b"")
    p = run(f, "--format", "zeek")
    assert p.returncode == 2
    assert p.stdout == ""
    assert str(f) in p.stderr and "empty" in p.stderr
    assert "Traceback" not in p.stderr


def test_random_bytes(tmp_path):
    data = random.Random(20240607).randbytes(4096)
    assert data[:4] not in PCAP_MAGICS
    f = tmp_path / "random.bin"
    f.write_bytes(data)
    p = run(f, "--format", "json")
    assert p.returncode == 2
    assert p.stdout == ""
    assert "not a pcap or pcapng" in p.stderr
    assert str(f) in p.stderr
    assert "Traceback" not in p.stderr


def test_directory(tmp_path):
    p = run(tmp_path)
    assert p.returncode == 2
    assert p.stdout == ""
    assert str(tmp_path) in p.stderr and "directory" in p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize("cut", ["payload", "record-header"])
def test_capture_cut_in_its_last_record(tmp_path, cut):
    src = capture("zeek-http-get.pcap")
    data = src.read_bytes()
    recs = pcap_records(data)
    last_off, last_cap = recs[-1]
    end = last_off + 16 + last_cap // 2 if cut == "payload" else last_off + 7
    f = tmp_path / "cut.pcap"
    f.write_bytes(data[:end])
    p = run(f, "--format", "json", "--json-summary")
    assert p.returncode == 0, p.stderr
    rows = json_lines(p.stdout)
    s = json.loads(p.stderr.splitlines()[0])
    assert s["packets"] == len(recs) - 1
    assert s["truncated_tail_bytes"] == end - last_off
    assert s["file_bytes"] == last_off
    assert s["error"] is None
    assert len(rows) == 1
    assert rows[0]["orig_pkts"] + rows[0]["resp_pkts"] == len(recs) - 1
    warn = [line for line in p.stderr.splitlines() if "warning" in line]
    assert len(warn) == 1
    assert str(f) in warn[0] and "cut short" in warn[0] and str(end - last_off) in warn[0]
    # the human summary says it too
    q = run(f, "--summary-only")
    assert q.returncode == 0
    assert summary_block(q.stdout)["packets"] == len(recs) - 1
    assert "cut short" in q.stdout and "cut short" in q.stderr


def test_pcapng_cut_in_its_last_block(tmp_path):
    src = capture("zeek-tcp-http-on-irc-port-missing-syn.pcapng")
    data = src.read_bytes()
    blocks = pcapng_blocks(data)
    off, btype, blen = blocks[-1]
    assert btype == 6
    f = tmp_path / "cut.pcapng"
    f.write_bytes(data[:off + blen // 2])
    p = run(f, "--summary-only", "--json-summary")
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert s["packets"] == sum(1 for b in blocks if b[1] == 6) - 1
    assert s["truncated_tail_bytes"] == blen // 2
    assert "cut short" in p.stderr and str(f) in p.stderr


def _corrupt_pcap(tmp_path: Path) -> tuple[Path, int, int]:
    """zeek-http-get.pcap with record 8's caplen set to 0x7fffffff: (file, packets
    before it, file offset of the bad length field)."""
    data = bytearray(capture("zeek-http-get.pcap").read_bytes())
    recs = pcap_records(bytes(data))
    bad = 7
    off = recs[bad][0]
    struct.pack_into("<I", data, off + 8, 0x7FFFFFFF)
    f = tmp_path / "corrupt.pcap"
    f.write_bytes(bytes(data))
    return f, bad, off + 8


def test_corrupt_record_length_in_the_middle(tmp_path):
    f, before, field_at = _corrupt_pcap(tmp_path)
    p = run(f, "--format", "json", "--json-summary")
    assert p.returncode == 1, p.stderr
    rows = json_lines(p.stdout)
    s = json.loads(p.stderr.splitlines()[0])
    assert s["packets"] == before
    assert s["error"] and f"at byte {field_at}" in s["error"]
    assert len(rows) == 1
    assert rows[0]["orig_pkts"] + rows[0]["resp_pkts"] == before
    assert rows[0]["history"].startswith("ShAD")
    err = [line for line in p.stderr.splitlines()[1:] if line.startswith("fasttcp analyze:")]
    assert len(err) == 1
    assert str(f) in err[0] and "corrupt" in err[0] and f"at byte {field_at}" in err[0]
    # a conn.log of what was read is still complete (#close)
    q = run(f, "--format", "zeek")
    assert q.returncode == 1
    _, _, zrows, _ = parse_zeek_log(q.stdout)
    assert len(zrows) == 1 and int(zrows[0]["orig_pkts"]) + int(zrows[0]["resp_pkts"]) == before
    # and the human summary
    t = run(f, "--summary-only")
    assert t.returncode == 1
    assert summary_block(t.stdout)["packets"] == before
    assert f"at byte {field_at}" in t.stderr


def test_corrupt_pcapng_block_length_in_the_middle(tmp_path):
    data = bytearray(capture("zeek-tcp-http-on-irc-port-missing-syn.pcapng").read_bytes())
    epbs = [b for b in pcapng_blocks(bytes(data)) if b[1] == 6]
    off = epbs[5][0]
    struct.pack_into("<I", data, off + 4, 0x7FFFFFFF)
    f = tmp_path / "corrupt.pcapng"
    f.write_bytes(bytes(data))
    p = run(f, "--summary-only", "--json-summary")
    assert p.returncode == 1
    s = json.loads(p.stdout)
    assert s["packets"] == 5
    assert f"at byte {off + 4}" in p.stderr and str(f) in p.stderr


def test_bad_capacity():
    p = run(capture("zeek-http-get.pcap"), "--capacity", "0")
    assert p.returncode == 2
    assert p.stdout == "" and "--capacity" in p.stderr


# ---------------------------------------------------------------------------------------
# 7. -C on a capture whose checksums are all bad
# ---------------------------------------------------------------------------------------

def test_no_verify_checksum_changes_the_result_like_zeek():
    name = "zeek-chksums-localhost-bad-chksum.pcap"
    cap = capture(name)
    bare = ["--no-server-ports"] if name in zeek_expected.ZEEK_BARE else []

    def conns(*flags):
        p = run(cap, "--format", "zeek", *bare, *flags)
        assert p.returncode == 0, p.stderr
        return parse_zeek_log(p.stdout)[2]

    verified, ignored = conns(), conns("-C")
    assert [(r["history"], r["conn_state"]) for r in verified] == [("C", "OTH"), ("HcADF", "SH")]
    assert [(r["history"], r["conn_state"]) for r in ignored] == [("ShADadFf", "SF")]
    # and column for column as Zeek's two baselines
    for rows, log in ((verified, "expected-conn.log"), (ignored, "expected-conn-ignorechecksums.log")):
        z = zeek_expected.read_conn_log(capture(f"{name}.{log}"))
        assert len(z) == len(rows)
        for r, zr in zip(rows, z, strict=True):
            for k in ID_COLUMNS + ZEEK_COMPARED:
                assert r[k] == zr[k], (log, k, r, zr)
    # the verdicts say why
    s_ver = json.loads(run(cap, "--summary-only", "--json-summary").stdout)
    s_ign = json.loads(run(cap, "--summary-only", "--json-summary", "-C").stdout)
    assert s_ver["verdicts"].get("BAD_CHECKSUM", 0) > 0
    assert "BAD_CHECKSUM" not in s_ign["verdicts"]


# ---------------------------------------------------------------------------------------
# 8. --timeouts
# ---------------------------------------------------------------------------------------

def test_timeouts_conntrack_vs_zeek():
    name = "zeek-tcp-retransmit-timeout.pcapng"
    capture(name)
    zeek_rows, zs = json_run(name, "-C", "--no-server-ports")
    ct_rows, cs = json_run(name, "-C", "--no-server-ports", "--timeouts", "conntrack")
    assert len(zeek_rows) == zs["connections"] == 2
    assert len(ct_rows) == cs["connections"] == 1
    # Zeek: the data segment 5 minutes later starts a new connection (Zeek's baseline)
    z = zeek_expected.read_conn_log(capture(f"{name}.expected-conn.log"))
    assert [(r["history"], r["orig_pkts"], r["resp_pkts"]) for r in zeek_rows] == \
           [(r["history"], int(r["orig_pkts"]), int(r["resp_pkts"])) for r in z]
    # conntrack: one connection; the second copy of the segment is a retransmission
    (c,) = ct_rows
    assert (c["orig_pkts"], c["resp_pkts"]) == (2, 1)
    assert "T" in c["history"] and c["orig_retrans"] == 1
    assert c["duration"] == pytest.approx(300.00001, abs=1e-6)
    assert cs["packets"] == zs["packets"] == 3
    # the default is zeek
    default = run(capture(name), "-C", "--no-server-ports", "--summary-only", "--json-summary")
    assert json.loads(default.stdout)["connections"] == 2


# ---------------------------------------------------------------------------------------
# 9. memory is bounded by the table, not the file
# ---------------------------------------------------------------------------------------

_MAXRSS = """
import json, resource, subprocess, sys
p = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(json.dumps({"rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr,
                  "maxrss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def _analyze_peak_rss(path: Path) -> tuple[dict, int]:
    """The JSON summary and the peak RSS (bytes) of one `fasttcp analyze` process."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, "-c", _MAXRSS, sys.executable, "-m", "fasttcp", "analyze", str(path),
           "--summary-only", "--timeouts", "conntrack", "--capacity", "8000", "--json-summary", "-q"]
    w = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert w.returncode == 0, w.stderr
    r = json.loads(w.stdout)
    assert r["rc"] == 0, r["stderr"]
    return json.loads(r["stdout"]), r["maxrss_kb"] * 1024


def test_memory_bounded_by_table_not_file(tmp_path):
    from fasttcp.bench.tracker import PACKETS_PER_FLOW, synth_capture

    big, small = tmp_path / "big.pcap", tmp_path / "small.pcap"
    n_big = synth_capture(big, 400_000, 2_000)
    n_small = synth_capture(small, 100_000, 2_000)
    assert PACKETS_PER_FLOW == 12
    assert n_big == 400_000 // 12 and n_small == 100_000 // 12
    assert big.stat().st_size > 3.9 * small.stat().st_size

    s_small, rss_small = _analyze_peak_rss(small)
    s_big, rss_big = _analyze_peak_rss(big)
    for s, n, path in ((s_small, n_small, small), (s_big, n_big, big)):
        assert s["packets"] == n * 12
        assert s["connections"] == n
        assert s["conn_states"] == {"SF": n}
        assert s["verdicts"] == {"OK": n * 12}
        assert s["file_bytes"] == path.stat().st_size
        assert s["error"] is None
        # SYN -> SYN-ACK is one round of the 2000 interleaved slots: 2000 µs
        assert s["rtt_syn_synack_s"]["n"] == n and s["rtt_syn_synack_s"]["max"] == pytest.approx(0.002)
    assert s_big["packets"] == 400_000 - (400_000 % 12)
    # 4x the file, about the same peak memory
    assert rss_big - rss_small < 30 * 2**20, (rss_small, rss_big)
    assert rss_big < big.stat().st_size, (rss_big, big.stat().st_size)


# ---------------------------------------------------------------------------------------
# 10. --help
# ---------------------------------------------------------------------------------------

def test_help_mentions_every_option():
    p = run("--help")
    assert p.returncode == 0
    text = p.stdout
    assert text.startswith("usage: fasttcp analyze")
    expected = ["--format", "-o", "--output", "--summary-only", "-C", "--no-verify-checksum", "--timeouts",
                "--no-server-ports", "--capacity", "--json-summary", "-q", "--quiet", "capture"]
    for opt in expected:
        assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text), opt
    for choice in ("table,json,csv,zeek", "zeek,conntrack"):
        assert choice in text
    # and whatever the parser itself defines
    from fasttcp.cli.main import _parser

    sub = next(a for a in _parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    for action in sub.choices["analyze"]._actions:
        for opt in action.option_strings or [action.dest]:
            assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text), opt
        if action.help and action.dest not in ("help", "capture"):
            assert action.help.split()[0] in text, action.dest


# ---------------------------------------------------------------------------------------
# suspected bugs
# ---------------------------------------------------------------------------------------

def test_corrupt_record_message_shows_the_length_value(tmp_path):
    f, _, _ = _corrupt_pcap(tmp_path)
    p = run(f, "--summary-only")
    assert p.returncode == 1
    assert "0x7fffffff" in p.stderr or str(0x7FFFFFFF) in p.stderr, p.stderr


def test_unwritable_output_is_blamed_on_the_output(tmp_path):
    cap = capture("zeek-http-get.pcap")
    out = tmp_path / "missing-dir" / "conns.json"
    p = run(cap, "--format", "json", "-o", out)
    assert p.returncode == 2
    assert str(out) in p.stderr, p.stderr
    assert f"{cap}: no such file" not in p.stderr, p.stderr


def test_unreadable_capture_leaves_output_file_alone(tmp_path):
    out = tmp_path / "results.json"
    out.write_text("earlier results\n")
    p = run(tmp_path / "missing.pcap", "--format", "json", "-o", out)
    assert p.returncode == 2
    assert out.read_text() == "earlier results\n"


def _run_with_stdout(stdout: object, *args: object) -> subprocess.CompletedProcess:
    """`run`, but with standard output the given file (or closed: `>&-`)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, "-m", "fasttcp", "analyze", *map(str, args)]
    if stdout == "closed":
        cmd = ["sh", "-c", '"$@" >&-', "sh", *cmd]
        stdout = None
    return subprocess.run(cmd, cwd=REPO, env=env, stdout=stdout, stderr=subprocess.PIPE, text=True,
                          timeout=TIMEOUT)


@pytest.mark.parametrize("args", [["--summary-only"], ["--summary-only", "--json-summary"],
                                  ["--format", "table", "-q"], ["--format", "json", "--json-summary"]])
def test_a_full_standard_output_exits_2(tmp_path, args):
    """A report that could not be written is not a success (it was exit 1 with a
    traceback when only the summary was to go there)."""
    with open("/dev/full", "w") as full:
        p = _run_with_stdout(full, capture("zeek-http-get.pcap"), *args)
    assert p.returncode == 2, p.stderr
    assert "cannot write standard output: No space left on device" in p.stderr
    assert "Traceback" not in p.stderr and "Exception ignored" not in p.stderr, p.stderr


@pytest.mark.parametrize("args", [["--format", "json"], ["--summary-only"]])
def test_a_closed_standard_output_exits_2(args):
    """Started with `>&-`, the rows and summary had nowhere to go and it exited 0."""
    p = _run_with_stdout("closed", capture("zeek-http-get.pcap"), *args, "--workers", "2")
    assert p.returncode == 2, p.stderr
    assert "cannot write standard output: it is closed" in p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize("extra", [[], ["--workers", "2"]])
def test_output_that_is_a_capture_is_refused(tmp_path, extra):
    """-o naming the capture emptied it as the run read it: the capture was lost and
    the run reported a few packets of its own output, with exit status 0."""
    cap = tmp_path / "trace.pcap"
    cap.write_bytes(capture("zeek-wikipedia.pcap").read_bytes())
    other = tmp_path / "other.pcap"
    other.write_bytes(capture("zeek-http-get.pcap").read_bytes())
    before = cap.read_bytes()
    for args in ([cap, "-o", cap], [other, cap, "-o", tmp_path / "." / "trace.pcap"]):
        p = run(*args, "--format", "json", *extra)
        assert p.returncode == 2, p.stderr
        assert "is the capture" in p.stderr and "Traceback" not in p.stderr
        assert cap.read_bytes() == before
    assert run(cap, "-o", cap, "--summary-only", *extra).returncode == 0     # nothing written to -o
