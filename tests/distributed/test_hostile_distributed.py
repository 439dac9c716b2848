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


@pytest.fixture(scope="module")
def one_piece(tmp_path_factory):
    """A chunk's piece file (2 shards, one unit) and its ChunkPieces, pickled."""
    import pickle

    from fasttcp.analysis.shards import reta_size
    from fasttcp.distributed.index import index_file
    from fasttcp.distributed.split import split_chunk

    folder = tmp_path_factory.mktemp("piece")
    index = index_file(GOOD, 0, 1 << 30)
    piece = split_chunk(index.chunks[0], index.pcap_header, 2, reta_size(2), str(folder))
    assert piece.units == 1
    (folder / "piece.pkl").write_bytes(pickle.dumps(piece))
    return folder / "piece.pkl"


# (unit table or segment table of shard 0, field, value): the footer is the unit
# table (instants at, count, last clock), then each shard's (offset, packets, bytes)
CORRUPT = [("unit", 0, -8), ("unit", 1, -1), ("unit", 1, 2**61),
           ("segment", 0, -1), ("segment", 0, 1), ("segment", 0, 2**62),
           ("segment", 1, -1), ("segment", 1, 1), ("segment", 2, -1), ("segment", 2, 0), ("segment", 2, 17),
           ("segment", 2, -2**63), ("cut", 0, 1), ("cut", 0, 80)]


@pytest.mark.parametrize("table, field, value", CORRUPT)
def test_piece_file_changed_before_the_reduce(one_piece, table, field, value):
    # a clear OSError naming the piece file, never a read outside the map nor rows
    # from garbage (negative counts and offsets would slice from the map's end)
    expect_raises(f"""
    import os, pickle
    from fasttcp.analysis.config import AnalyzeConfig
    from fasttcp.distributed.reduce import track_shard
    piece = pickle.loads(open({str(one_piece)!r}, "rb").read())
    data = bytearray(open(piece.path, "rb").read())
    if {table!r} == "cut":
        del data[len(data) - {value}:]
    else:
        at = piece.footer + 8 * {field} + (8 * 3 if {table!r} == "segment" else 0)
        data[at: at + 8] = np.int64({value}).tobytes()
    piece.path += ".changed"
    open(piece.path, "wb").write(data)
    track_shard(0, [piece], AnalyzeConfig(), 10_000)
""", "OSError", "piece file (corrupt|cut short)")
