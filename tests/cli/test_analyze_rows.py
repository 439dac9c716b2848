"""`fasttcp analyze --format ...` as the real command line, against the Python writer it
replaced (tests/reference/rows.py) over the same rows, and its Community ID options.
One worker: the oracle's rows come from one tracker, in its order (with N workers the
order is per batch and shard: tests/cli/test_analyze_workers.py)."""
from __future__ import annotations

import csv
import io
import json
import re

import pytest

from tests.cli.test_analyze import capture, parse_zeek_log, run
from tests.reference import rows as oracle

NAMES = ["zeek-http-get.pcap", "zeek-ftp-ipv6.pcap", "zeek-wikipedia.pcap"]


def without_times(text: str) -> str:
    return re.sub(r"^#(open|close)\t.*$", r"#\1\t-", text, flags=re.M)


def oracle_file(name: str, fmt: str, **opts) -> str:
    out = io.StringIO()
    w = oracle.OracleWriter(fmt, out, **opts)
    w.header()
    w.rows(oracle.analyze_rows(capture(name)))
    w.footer()
    return out.getvalue()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("fmt", ["json", "csv", "zeek"])
def test_analyze_writes_what_the_python_writer_wrote(name, fmt):
    p = run("--workers", "1", capture(name), "--format", fmt, "-q")
    assert p.returncode == 0, p.stderr
    assert without_times(p.stdout) == without_times(oracle_file(name, fmt))


@pytest.mark.parametrize("name", NAMES)
def test_analyze_table_is_the_python_writers_before_the_summary(name):
    p = run("--workers", "1", capture(name), "-q")
    assert p.returncode == 0, p.stderr
    want = oracle_file(name, "table")
    assert p.stdout.startswith(want)
    assert p.stdout[len(want):].startswith("# ")             # then the summary block


def test_analyze_to_a_file_is_the_same_text(tmp_path):
    out = tmp_path / "conn.csv"
    p = run("--workers", "1", capture("zeek-http-get.pcap"), "--format", "csv", "-o", out, "-q")
    assert p.returncode == 0, p.stderr
    assert out.read_text() == oracle_file("zeek-http-get.pcap", "csv")


def test_community_id_adds_zeeks_field():
    name = "zeek-ftp-ipv6.pcap"
    p = run("--workers", "1", capture(name), "--format", "zeek", "--community-id", "-q")
    assert p.returncode == 0, p.stderr
    header, fields, rows, _ = parse_zeek_log(p.stdout)
    assert fields[-1] == "community_id"
    types = next(h for h in header if h.startswith("#types\t")).split("\t")[1:]
    assert types[-1] == "string"
    assert rows and all(r["community_id"].startswith("1:") for r in rows)
    assert without_times(p.stdout) == without_times(oracle_file(name, "zeek", community_id=True))
    plain = run("--workers", "1", capture(name), "--format", "zeek", "-q")
    assert "community_id" not in plain.stdout


def test_community_id_seed_changes_the_ids():
    name = "zeek-http-get.pcap"
    ids = {}
    for seed in ("0", "1", "65535"):
        p = run("--workers", "1", capture(name), "--format", "json", "--community-id-seed", seed, "-q")
        assert p.returncode == 0, p.stderr
        ids[seed] = [json.loads(line)["community_id"] for line in p.stdout.splitlines()]
        assert p.stdout == oracle_file(name, "json", seed=int(seed))
    assert ids["0"] != ids["1"] != ids["65535"]
    p = run("--workers", "1", capture(name), "--format", "csv", "--community-id-seed", "7", "-q")
    table = list(csv.reader(io.StringIO(p.stdout, newline="")))
    assert [r[-1] for r in table[1:]] == [json.loads(line)["community_id"] for line in
                                          oracle_file(name, "json", seed=7).splitlines()]


@pytest.mark.parametrize("args, match", [
    (["--community-id-seed", "-1"], "--community-id-seed must be 0..65535"),
    (["--community-id-seed", "65536"], "--community-id-seed must be 0..65535"),
    (["--community-id-seed", str(2**64)], "--community-id-seed must be 0..65535"),
    (["--community-id-seed", "x"], "invalid int value"),
    (["--community-id", "--format", "table"], "table format has no community_id"),
])
def test_bad_community_id_options_exit_2_with_a_message(args, match):
    p = run("--workers", "1", capture("zeek-http-get.pcap"), *args)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr
    assert match in p.stderr, p.stderr
    assert p.stdout == ""
