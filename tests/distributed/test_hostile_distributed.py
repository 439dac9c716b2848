"""Hostile arguments to fasttcp.distributed: each a precise UsageError (or the OS's
error) before any cluster is asked for, in a child process so a crash fails one test."""
from __future__ import annotations

import pytest

from tests.linklayer import CAPTURES
from tests.probe import expect_raises

pytest.importorskip("distributed")

GOOD = str(CAPTURES / "zeek-wikipedia.pcap")
CALL = "from fasttcp.distributed import analyze\nanalyze({paths}, {args})\n"


@pytest.mark.parametrize("shards", ["0", "-1", "10**9", "2**64", "True", "False", "float('nan')", "2.0", "'4'"])
def test_bad_shard_counts(shards):
    expect_raises(CALL.format(paths=repr([GOOD]), args=f"shards={shards}"), "UsageError", "shards")


@pytest.mark.parametrize("chunk", ["0", "-1", "100", "2**40", "True", "float('inf')", "None"])
def test_bad_chunk_sizes(chunk):
    expect_raises(CALL.format(paths=repr([GOOD]), args=f"chunk_bytes={chunk}"), "UsageError", "chunk_bytes")


@pytest.mark.parametrize("paths", ["[]", "b'x.pcap'", "42", "[None]", "[3.5]", "'x'.encode()"])
def test_bad_paths(paths):
    expect_raises(CALL.format(paths=paths, args=""), "UsageError")


def test_bad_config_progress_and_shuffle_dir(tmp_path):
    expect_raises(CALL.format(paths=repr([GOOD]), args="cfg='fast'"), "UsageError", "AnalyzeConfig")
    expect_raises(CALL.format(paths=repr([GOOD]), args="progress=5"), "UsageError", "progress")
    expect_raises(CALL.format(paths=repr([GOOD]), args=f"shuffle_dir={str(tmp_path / 'nope')!r}"),
                  "UsageError", "shuffle_dir")
    expect_raises("from fasttcp.analysis import AnalyzeConfig\nfrom fasttcp.distributed import analyze\n"
                  f"analyze([{GOOD!r}], AnalyzeConfig(capacity=0))\n", "UsageError", "capacity")


def test_not_a_client():
    expect_raises(CALL.format(paths=repr([GOOD]), args="client='tcp://127.0.0.1:1'"), "UsageError", "Client")


def test_missing_and_unreadable_files(tmp_path):
    expect_raises(CALL.format(paths=repr([GOOD, str(tmp_path / "gone.pcap")]), args=""),
                  "FileNotFoundError", "gone.pcap")
    expect_raises(CALL.format(paths=repr([str(tmp_path)]), args=""), "IsADirectoryError")


@pytest.mark.parametrize("scheduler", ["bogus", "local:0", "local:-1", "local:1.5", "local:99999999", "local:",
                                       "tcp://", "tcp://host:0", "tcp://host:70000", "tcp://a b:1",
                                       "tcp://host:80/x", "http://host:80", "5", "None"])
def test_bad_scheduler_strings(scheduler):
    arg = scheduler if scheduler in ("5", "None") else repr(scheduler)
    expect_raises(f"from fasttcp.distributed import connect\nconnect({arg})\n", "UsageError", "scheduler|local")


def test_cli_bad_distributed_options(tmp_path):
    import subprocess
    import sys

    for args, needle in ((["--scheduler", "local:0"], "--scheduler"), (["--scheduler", "x"], "--scheduler"),
                         (["--scheduler", "local:1", "--shards", "0"], "--shards"),
                         (["--scheduler", "local:1", "--shards", "999999"], "--shards"),
                         (["--scheduler", "local:1", "--chunk-mb", "0"], "--chunk-mb"),
                         (["--scheduler", "local:1", "--chunk-mb", "4096"], "--chunk-mb"),
                         (["--scheduler", "local:1", "--workers", "2"], "--workers")):
        r = subprocess.run([sys.executable, "-m", "fasttcp", "analyze", *args, GOOD], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 2 and needle in r.stderr, (args, r.stderr)
