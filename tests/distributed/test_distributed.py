"""fasttcp.distributed on a real Dask LocalCluster of two worker processes: the rows
and counts of one process (`fasttcp.analyze`), over the bundled captures, captures
split by `editcap -c` (connections and timeouts across files), a worker killed
mid-run, corrupt and missing files."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

import fasttcp  # noqa: E402
from fasttcp.analysis import analyze  # noqa: E402
from fasttcp.bench.tracker import synth_capture  # noqa: E402
from fasttcp.capture.reader import CaptureBatch, read_pcap, write_pcap  # noqa: E402
from fasttcp.distributed import analyze as analyze_distributed  # noqa: E402
from fasttcp.distributed.clock import TICK_SHIFT, carry_instants, local_clock  # noqa: E402
from fasttcp.errors import CaptureError  # noqa: E402
from fasttcp.tracker.tracker import Tracker  # noqa: E402
from fasttcp.tracker.vocabulary import EndReason  # noqa: E402
from fasttcp.wire.rss import shard_of_batch  # noqa: E402
from tests import linklayer  # noqa: E402

# the set of rows without `id` (a row's slot in its own tracker's table), and the counts
from tests.analysis.test_workers import _canonical, _traffic  # noqa: E402

CAPTURES = linklayer.list_captures(linklayer.CAPTURES)
SMALL_CHUNK = 1 << 16                 # the smallest chunk: many chunks from small files
TASK_TIMEOUT = 120                    # seconds any one run may take here


@pytest.fixture(scope="module")
def client():
    """A real cluster: two worker processes (each under a nanny), one thread each."""
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=":0", silence_logs=40)
    c = distributed.Client(cluster, timeout=60)
    try:
        c.wait_for_workers(2, timeout=60)
        yield c
    finally:
        c.close()
        cluster.close()


def _assert_same(paths, client, **kw) -> fasttcp.Summary:
    one = analyze(paths, keep_rows=True)
    dist = analyze_distributed(paths, client=client, **kw)
    assert _traffic(dist) == _traffic(one)
    assert _canonical(dist.rows) == _canonical(one.rows)
    return dist


def test_bundled_captures_give_one_process_rows_and_counts(client):
    for path in CAPTURES:
        dist = _assert_same(path, client, shards=3, chunk_bytes=SMALL_CHUNK)
        assert dist.workers == 2


def test_captures_without_packets(client, tmp_path):
    empty = tmp_path / "empty.pcap"
    write_pcap(empty, [])
    dist = _assert_same([empty], client, shards=2)
    assert dist.packets == 0 and dist.file_bytes == 24
    _assert_same([empty, CAPTURES[0], empty], client, shards=2)


def test_all_bundled_captures_as_one_rotated_trace(client):
    dist = _assert_same(CAPTURES, client, shards=5, chunk_bytes=SMALL_CHUNK)
    assert dist.connections > 500 and dist.error is None


def _timeout_capture(path: Path, attempts: int = 400) -> None:
    """Background connections (a packet every 0.4 ms, so every tick has packets of
    other shards) and `attempts` SYNs each retried once, 5 s (Zeek's attempt timeout)
    plus a few hundred microseconds either side of its deadline later: whether the
    retry opens a new connection depends on the tracker's expiry instants to the
    tick. The last attempts are still open at the end (flushed, not timed out)."""
    packets: list[tuple[float, bytes]] = []
    t0, span = 1.7e9, 8.0
    server = "198.19.0.1"
    for k in range(int(span / 4e-3)):
        t = t0 + k * 4e-3
        c, port = f"198.18.{(k >> 8) & 255}.{k & 255}", 20_000 + k % 40_000
        for j, (src, dst, sp, dp, flags) in enumerate((
                (c, server, port, 80, 0x002), (server, c, 80, port, 0x012), (c, server, port, 80, 0x010),
                (c, server, port, 80, 0x011), (server, c, 80, port, 0x011), (c, server, port, 80, 0x010))):
            seq, ack = (1000, 0) if j == 0 else (1001 if src == c else 5001, 5001 if src == c else 1001)
            packets.append((t + j * 4e-4, fasttcp.build(src, dst, sp, dp, seq=seq, ack=ack, flags=flags)))
    offsets_us = (-900, -300, -50, 0, 40, 200, 500, 1000, 1500, 2100)
    for a in range(attempts):
        t = t0 + 0.5 + a * (span - 1.0) / attempts
        c, port = f"198.18.200.{a & 255}", 40_000 + a
        syn = fasttcp.build(c, server, port, 80, seq=7, flags=0x002)
        packets.append((t, syn))
        retry = t + 5.0 + offsets_us[a % len(offsets_us)] * 1e-6
        if retry < t0 + span:
            packets.append((retry, syn))
    packets.sort(key=lambda p: p[0])
    write_pcap(path, [p for _, p in packets], [t for t, _ in packets])


def _editcap_split(src: Path, folder: Path, per_file: int) -> list[Path]:
    """`editcap -c per_file`: consecutive files of `per_file` packets, in time order."""
    folder.mkdir()
    subprocess.run(["editcap", "-F", "pcap", "-c", str(per_file), str(src), str(folder / "part.pcap")],
                   check=True, timeout=120, capture_output=True)
    return sorted(folder.iterdir())


def _own_packets_only(paths: list[Path], shards: int) -> list[tuple]:
    """The rows of `shards` trackers each fed only its own packets -- the clock of the
    other shards' packets left out -- to show the capture depends on that clock."""
    from fasttcp.analysis.shards import reta_size

    trackers = [Tracker(1_000_000, timeouts="zeek") for _ in range(shards)]
    rows = []
    for p in paths:
        for b in read_pcap(p):
            shard = shard_of_batch(b, shards, reta_size=reta_size(shards))
            for k, tr in enumerate(trackers):
                keep = np.flatnonzero(shard == k)
                tr.feed_batch(CaptureBatch(b.buffer, b.offsets[keep], b.lengths[keep], b.ts_ns[keep],
                                           b.wire_lengths[keep], b.verdicts[keep], b.interfaces[keep],
                                           b.frames[keep], b.snapped[keep]))
                rows.append(tr.finished())
    rows += [tr.close() for tr in trackers]
    return _canonical(np.concatenate(rows))


def test_timeouts_across_files_split_by_editcap(client, tmp_path):
    whole = tmp_path / "timeouts.pcap"
    _timeout_capture(whole)
    parts = _editcap_split(whole, tmp_path / "parts", 1500)
    assert len(parts) > 5
    dist = _assert_same(parts, client, shards=4, chunk_bytes=SMALL_CHUNK)
    reasons = np.bincount(dist.rows["end_reason"], minlength=len(EndReason))
    assert reasons[EndReason.TIMEOUT] > 100 and reasons[EndReason.FLUSHED] > 0
    # the answer is the whole capture's: one file gives the same rows
    assert _canonical(analyze(whole, keep_rows=True).rows) == _canonical(dist.rows)
    # and it needs the whole stream's clock: trackers fed only their own packets differ
    assert _own_packets_only(parts, 4) != _canonical(dist.rows)


def test_generated_bench_capture_split_in_files(client, tmp_path):
    whole = tmp_path / "short.pcap"
    synth_capture(whole, 60_000, 500, shape="short")
    parts = _editcap_split(whole, tmp_path / "parts", 7_000)
    dist = _assert_same(parts, client, shards=6, chunk_bytes=256 << 10)
    assert dist.connections == 6000


def test_instants_after_a_carried_clock():
    # a chunk split alone sees the clock from 0; the reduce corrects it with the clock
    # the chunks before left: stream = before + chunk must give the same instants
    rng = np.random.default_rng(7)
    ts = np.sort(rng.integers(1_000_000_000, 1_000_050_000, 400)) * 1000
    ts[200:210] = ts[150]                            # a clock that stands still, and
    ts[300] = ts[10]                                 # one packet back in time
    whole_clock, whole_instants = local_clock(ts, 0)
    for cut in (1, 150, 205, 301, 399):
        head_clock, head_instants = local_clock(ts[:cut], 0)
        tail_clock, tail_instants = local_clock(ts[cut:], 0)
        carry = int(head_clock[-1])
        got = np.concatenate([head_instants, carry_instants(tail_instants, carry)])
        assert np.array_equal(got, whole_instants), cut
        assert np.array_equal(np.maximum(tail_clock, carry), whole_clock[cut:])
    assert len(whole_instants) == len(np.unique(whole_clock >> TICK_SHIFT))


def test_without_mmap_the_pieces_and_rows_are_the_same(tmp_path, monkeypatch):
    # a file system that cannot map files (some FUSE ones): the split reads its chunk
    # and the reduce its piece files instead -- the same bytes, the same rows
    import mmap

    from fasttcp.analysis.config import AnalyzeConfig
    from fasttcp.analysis.shards import reta_size
    from fasttcp.distributed.index import index_file
    from fasttcp.distributed.reduce import track_shard
    from fasttcp.distributed.split import split_chunk

    whole = tmp_path / "short.pcap"
    synth_capture(whole, 6_000, 100, shape="short")
    index = index_file(str(whole), 0, 64 << 10)
    assert len(index.chunks) > 3
    cfg = AnalyzeConfig()

    def run(folder: Path) -> tuple[list, list]:
        folder.mkdir()
        pieces = [split_chunk(c, index.pcap_header, 4, reta_size(4), str(folder)) for c in index.chunks]
        return pieces, [track_shard(k, pieces, cfg, -(-cfg.capacity // 4)) for k in range(4)]

    mapped_pieces, mapped = run(tmp_path / "mapped")

    def cannot_map(*args, **kwargs):
        raise OSError(19, "No such device")          # ENODEV: what mmap says there

    monkeypatch.setattr(mmap, "mmap", cannot_map)
    # and reads come back short, as Linux cuts any one read at 0x7ffff000 bytes (a
    # pcapng file's piece, one chunk however large, passes that) and as a network file
    # system may: a short read is not the end of the file
    real_preadv = os.preadv

    def short_preadv(fd, buffers, offset):
        (view,) = buffers
        return real_preadv(fd, [memoryview(view)[:4096]], offset)

    monkeypatch.setattr(os, "preadv", short_preadv)
    read_pieces, read = run(tmp_path / "read")
    for a, b in zip(mapped_pieces, read_pieces, strict=True):
        assert Path(a.path).read_bytes() == Path(b.path).read_bytes()
    for a, b in zip(mapped, read, strict=True):
        assert _canonical(a.rows) == _canonical(b.rows) and a.packets == b.packets and a.verdicts == b.verdicts
    assert sum(r.packets for r in read) == 6000 and sum(len(r.rows) for r in read) == analyze(whole).connections


def test_worker_killed_mid_run_answer_unchanged(client, tmp_path):
    whole = tmp_path / "short.pcap"
    synth_capture(whole, 200_000, 800, shape="short")
    parts = _editcap_split(whole, tmp_path / "parts", 25_000)
    expected = analyze(parts, keep_rows=True)
    pids = list(client.run(os.getpid).values())
    killed = threading.Event()

    def kill_when_busy() -> None:
        deadline = time.monotonic() + TASK_TIMEOUT
        while time.monotonic() < deadline:
            if any(client.processing().values()):    # tasks are running on the workers
                os.kill(pids[0], 9)
                killed.set()
                return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_when_busy, daemon=True)
    killer.start()
    dist = analyze_distributed(parts, client=client, shards=4, chunk_bytes=SMALL_CHUNK)
    killer.join(TASK_TIMEOUT)
    assert killed.is_set()
    assert _traffic(dist) == _traffic(expected)
    assert _canonical(dist.rows) == _canonical(expected.rows)
    client.wait_for_workers(2, timeout=60)           # the nanny restarted it
    assert pids[0] not in client.run(os.getpid).values()


def _corrupt_copy(src: Path, dst: Path, at_packet: int) -> None:
    """`src` with the length field of record `at_packet` made impossible."""
    data = bytearray(src.read_bytes())
    pos = 24
    for _ in range(at_packet):
        pos += 16 + int.from_bytes(data[pos + 8: pos + 12], "little")
    data[pos + 8: pos + 12] = (0x7FFFFFF0).to_bytes(4, "little")
    dst.write_bytes(bytes(data))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fasttcp", "analyze", "--summary-only", "--json-summary", *args],
                          capture_output=True, text=True, timeout=TASK_TIMEOUT)


@pytest.fixture(scope="module")
def short_parts(tmp_path_factory):
    """The short-connection bench capture (20k packets) in five files."""
    folder = tmp_path_factory.mktemp("short")
    whole = folder / "short.pcap"
    synth_capture(whole, 20_000, 100, shape="short")
    return _editcap_split(whole, folder / "parts", 4_000)


# a chunk smaller than the files (they are indexed) and one larger (each is one chunk
# whose split task finds the corrupt or cut-short record itself)
CHUNK_SIZES = (SMALL_CHUNK, 64 << 20)


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
def test_cut_short_last_records_reported_as_one_process(client, tmp_path, short_parts, chunk):
    parts = [tmp_path / p.name for p in short_parts]
    for src, dst in zip(short_parts, parts, strict=True):
        data = src.read_bytes()
        dst.write_bytes(data[:-7] if src in (short_parts[1], short_parts[-1]) else data)
    dist = _assert_same(parts, client, shards=3, chunk_bytes=chunk)
    assert [p for p, _ in dist.truncated] == [str(parts[1]), str(parts[-1])]


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
def test_corrupt_file_same_error_and_status_as_one_process(client, tmp_path, short_parts, chunk):
    parts = [tmp_path / p.name for p in short_parts]
    for src, dst in zip(short_parts, parts, strict=True):
        shutil.copy(src, dst)
    _corrupt_copy(parts[2], parts[2], 1234)
    expected = analyze(parts, keep_rows=True)
    assert expected.error and str(parts[2]) in expected.error
    dist = _assert_same(parts, client, shards=3, chunk_bytes=chunk)
    assert dist.error == expected.error
    if chunk != SMALL_CHUNK:
        return
    files = [str(p) for p in parts]
    one, many = _cli(*files), _cli("--scheduler", "local:2", *files)
    assert one.returncode == many.returncode == 1
    assert one.stderr.splitlines()[-1] == many.stderr.splitlines()[-1] == f"fasttcp analyze: {expected.error}"


def test_first_file_not_a_capture(client, tmp_path):
    bad = tmp_path / "notes.pcap"
    bad.write_bytes(b"hello, this is not a capture at all")
    with pytest.raises(CaptureError, match=r"notes\.pcap"):
        analyze_distributed([bad], client=client)
    one, many = _cli(str(bad)), _cli("--scheduler", "local:1", str(bad))
    assert one.returncode == many.returncode == 2
    assert one.stderr == many.stderr


def test_missing_file_fails_before_any_work(client, tmp_path):
    good = CAPTURES[0]
    missing = tmp_path / "gone.pcap"
    shuffle = tmp_path / "shuffle"
    shuffle.mkdir()
    with distributed.get_task_stream(client) as failed, pytest.raises(FileNotFoundError, match=r"gone\.pcap"):
        analyze_distributed([good, missing], client=client, shuffle_dir=str(shuffle))
    with distributed.get_task_stream(client) as ran:
        analyze_distributed([good], client=client, shuffle_dir=str(shuffle))
    assert not failed.data and not any(shuffle.iterdir())
    assert ran.data                                      # the stream does see a run's tasks
    many = _cli("--scheduler", "local:1", str(good), str(missing))
    assert many.returncode == 2 and "gone.pcap: no such file" in many.stderr


def test_parquet_output_has_every_row(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "conn.parquet"
    path = linklayer.CAPTURES / "zeek-wikipedia.pcap"
    r = subprocess.run([sys.executable, "-m", "fasttcp", "analyze", "--scheduler", "local:2", "-q",
                        "-o", str(out), str(path)], capture_output=True, text=True, timeout=TASK_TIMEOUT)
    assert r.returncode == 0, r.stderr
    table = pq.read_table(out)
    one = analyze(path, keep_rows=True)
    assert table.num_rows == len(one.rows) > 0
    assert sorted(table.column("orig_p").to_pylist()) == sorted(int(p) for p in one.rows["orig_p"])


def test_import_fasttcp_needs_no_dask(tmp_path):
    (tmp_path / "distributed.py").write_text("raise ImportError('not installed in this test')\n")
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    code = ("import fasttcp, fasttcp.distributed\n"
            "try:\n    fasttcp.distributed.analyze(['x.pcap'])\n"
            "except ImportError as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "pip install 'fasttcp[distributed]'" in r.stdout
    assert shutil.which("editcap")


def test_samples_merged_give_the_percentiles_of_all():
    from fasttcp.analysis.summary import Samples

    rng = np.random.default_rng(3)
    parts = [rng.integers(0, 5000, n).astype(np.uint32) for n in (0, 1, 999, 20_000)]
    merged, whole = Samples(), Samples()
    for p in parts:
        one = Samples()
        one.add(p)
        merged.merge(one)
        whole.add(p)
    assert merged.percentiles(1.0) == whole.percentiles(1.0)
    everything = np.concatenate(parts)
    assert merged.percentiles(1.0)["p90"] == pytest.approx(float(np.percentile(everything, 90)))


def test_run_folder_removed_with_all_its_pieces(tmp_path):
    # the piece files go several at once (threads), then the folder, leftovers included
    from fasttcp.distributed.run import _remove_run_dir
    run = tmp_path / "fasttcp-shuffle-x"
    run.mkdir()
    for i in range(9):
        (run / f"{i:06d}-00000000.pieces").write_bytes(b"\0" * 4096)
    (run / "sub").mkdir()
    (run / "sub" / "stray").write_bytes(b"x")
    _remove_run_dir(str(run))
    assert not run.exists()
    _remove_run_dir(str(run))                       # gone already: nothing to do, no error


def _big_packet_capture(path: Path, connections: int = 40) -> None:
    """Connections whose data segments run from a few bytes to 60 KB (IPv4's limit,
    minus headers), interleaved: one shard's records of one chunk fill several of the
    split's pack blocks, and records of every size straddle the blocks' edges."""
    packets: list[tuple[float, bytes]] = []
    t0 = 1.7e9
    rng = np.random.default_rng(11)
    server = "198.19.0.2"
    for c in range(connections):
        client_ip, port, t = f"198.18.1.{c + 1}", 30_000 + c, t0 + c * 1e-3
        seq = 1001
        packets.append((t, fasttcp.build(client_ip, server, port, 80, seq=1000, flags=0x002)))
        packets.append((t + 1e-4, fasttcp.build(server, client_ip, 80, port, seq=5000, ack=1001, flags=0x012)))
        for j in range(12):
            size = int(rng.choice([1, 100, 1460, 9000, 32_000, 65_000]))
            payload = bytes([c & 255]) * size
            packets.append((t + 2e-4 + j * 5e-2, fasttcp.build(client_ip, server, port, 80, seq=seq, ack=5001,
                                                                flags=0x018, payload=payload)))
            seq += size
        packets.append((t + 0.9, fasttcp.build(client_ip, server, port, 80, seq=seq, ack=5001, flags=0x011)))
    packets.sort(key=lambda p: p[0])
    write_pcap(path, [p for _, p in packets], [t for t, _ in packets])


def test_records_across_pack_blocks(client, tmp_path):
    # one large chunk, few shards: each shard's segment is many 1 MiB blocks
    from fasttcp.distributed.split import PACK_BLOCK_BYTES

    whole = tmp_path / "big.pcap"
    _big_packet_capture(whole)
    assert whole.stat().st_size > 8 * PACK_BLOCK_BYTES
    for shards in (1, 2):
        dist = _assert_same([whole], client, shards=shards, chunk_bytes=64 << 20)
        assert dist.connections == 40
    _assert_same([whole], client, shards=3, chunk_bytes=SMALL_CHUNK)
    # the largest bundled capture, as one chunk
    biggest = max(CAPTURES, key=lambda p: Path(p).stat().st_size)
    _assert_same([biggest], client, shards=2, chunk_bytes=64 << 20)
