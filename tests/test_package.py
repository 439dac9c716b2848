"""The installed package is the compiled one, and its Python and C views agree."""
import importlib.machinery
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fasttcp
from fasttcp import Flags, OptionBits, Verdict, _testing
from fasttcp.bench import baseline
from fasttcp.capture import scanner
from fasttcp.endpoint import endpoint
from fasttcp.table import table
from fasttcp.tracker import tracker
from fasttcp.wire import addr, batch, checksum, codec, rss, segment, seq


@pytest.mark.parametrize("mod", [addr, batch, checksum, codec, rss, segment, seq, table, endpoint, tracker, scanner,
                                 baseline, _testing])
def test_core_modules_are_compiled_extensions(mod):
    assert mod.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)), mod.__file__


def test_segment_dtype_mirrors_the_c_row_struct():
    assert fasttcp.SEGMENT_DTYPE.itemsize == batch.SEGMENT_ROW_SIZE
    # C struct field order is the dtype's order; offsets are increasing and aligned
    offsets = [fasttcp.SEGMENT_DTYPE.fields[n][1] for n in fasttcp.SEGMENT_DTYPE.names]
    assert offsets == sorted(offsets)


def test_verdict_codes_match_the_core():
    # each verdict is produced by the core for a packet crafted to trigger it
    good = fasttcp.build("198.18.0.1", "198.18.0.2", 1, 2, options=dict(mss=1460))
    cases = {
        Verdict.OK: good,
        Verdict.TRUNCATED: good[:30],
        Verdict.BAD_IP_HEADER: bytes([0x44]) + good[1:],
        Verdict.BAD_TCP_HEADER: good[:32] + bytes([0x40]) + good[33:],
        Verdict.BAD_OPTION: good[:41] + bytes([1]) + good[42:],
        Verdict.BAD_CHECKSUM: good[:36] + bytes([good[36] ^ 1]) + good[37:],
        Verdict.NOT_TCP: good[:9] + bytes([17]) + good[10:],
        Verdict.FRAGMENT: good[:6] + bytes([0x20, 0x08]) + good[8:],
        Verdict.BAD_VERSION: bytes([0x55]) + good[1:],
        Verdict.BAD_IP_CHECKSUM: good[:10] + bytes([good[10] ^ 1]) + good[11:],
    }
    assert set(cases) == {v for v in Verdict if v < Verdict.NOT_IP}    # the parse verdicts
    pkts = list(cases.values())
    lengths = np.array([len(p) for p in pkts])
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    rows = fasttcp.parse_batch(b"".join(pkts), offsets, lengths)
    assert [Verdict(v) for v in rows["verdict"]] == list(cases)


def test_link_and_tracker_verdicts_are_produced_by_the_core():
    # the link verdicts come from the capture reader's link-layer decoder...
    from fasttcp.capture.reader import strip_link

    ip = fasttcp.build("198.18.0.1", "198.18.0.2", 1, 2)
    assert strip_link(1, bytes(12) + b"\x08\x06" + bytes(28))[0] == Verdict.NOT_IP          # ARP
    assert strip_link(147, ip)[0] == Verdict.UNSUPPORTED_LINK                               # a user DLT
    assert strip_link(1, bytes(13))[0] == Verdict.LINK_TRUNCATED
    # ...and the rest from the tracker
    syn = fasttcp.build("198.18.0.1", "198.18.0.2", 1000, 80, seq=100, flags=Flags.SYN)
    synack = fasttcp.build("198.18.0.2", "198.18.0.1", 80, 1000, seq=300, ack=101, flags=Flags.SYN | Flags.ACK)
    ack = fasttcp.build("198.18.0.1", "198.18.0.2", 1000, 80, seq=101, ack=301, flags=Flags.ACK)
    t = fasttcp.Tracker(1)
    assert [t.feed(p, 1.0) for p in (syn, synack, ack)] == [Verdict.OK] * 3
    old_syn = fasttcp.build("198.18.0.1", "198.18.0.2", 1000, 80, seq=100, flags=Flags.SYN)
    assert t.feed(old_syn, 1.1) == Verdict.CONNTRACK_IGNORED
    assert t.feed(fasttcp.build("198.18.0.1", "198.18.0.2", 1000, 80, seq=101, flags=Flags.FIN), 1.2) \
        == Verdict.CONNTRACK_INVALID                      # FIN without ACK: not a valid flag set
    assert t.feed(fasttcp.build("198.18.0.3", "198.18.0.2", 1000, 80, seq=1, flags=Flags.SYN), 1.3) \
        == Verdict.TABLE_FULL                             # the only record is established
    strict = fasttcp.Tracker(4, loose=False)
    assert strict.feed(ack, 1.0) == Verdict.UNTRACKED


def test_flag_and_option_bits_match_wire_positions():
    seg = fasttcp.parse(fasttcp.build("198.18.0.1", "198.18.0.2", 1, 2, flags=0x1FF))
    assert seg.flags == (Flags.FIN | Flags.SYN | Flags.RST | Flags.PSH | Flags.ACK | Flags.URG | Flags.ECE | Flags.CWR
                         | Flags.AE)
    pkt = fasttcp.build("198.18.0.1", "198.18.0.2", 1, 2,
                        options=dict(mss=1, wscale=2, sack_permitted=True, sack=[(1, 2)], timestamp=(3, 4),
                                     unknown=[(30, b"")]))
    row = fasttcp.parse_batch(pkt, [0], [len(pkt)])[0]
    assert OptionBits(int(row["opt_flags"])) == (OptionBits.MSS | OptionBits.WSCALE | OptionBits.SACK_PERMITTED
                                            | OptionBits.SACK | OptionBits.TIMESTAMP | OptionBits.UNKNOWN
                                            | OptionBits.EOL)


def test_pxd_and_stub_files_ship_with_the_package():
    from importlib.resources import files

    shipped = {
        "wire": ("defs.pxd", "seq.pxd", "checksum.pxd", "codec.pxd", "batch.pxd", "spans.pxd", "addr.pxd",
                 "buffers.pxd", "rss.pxd",
                 "csum_impl.h", "mem_impl.h", "seq.pyi", "checksum.pyi", "segment.pyi", "batch.pyi", "codec.pyi",
                 "addr.pyi", "rss.pyi"),
        "table": ("table.pxd", "keyhash.pxd", "ops.pxd", "table.pyi"),
        "endpoint": ("endpoint.pxd", "endpoint.pyi"),
        "tracker": ("tracker.pxd", "tracker.pyi"),
        "capture": ("scanner.pyi",),
        "bench": ("baseline.pyi",),
    }
    for layer, names in shipped.items():
        for name in names:
            assert files(f"fasttcp.{layer}").joinpath(name).is_file(), f"{layer}/{name}"
    assert files("fasttcp").joinpath("py.typed").is_file()


def test_cli_version_and_help():
    out = subprocess.run([sys.executable, "-m", "fasttcp", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"fasttcp {fasttcp.__version__}"
    out = subprocess.run([sys.executable, "-m", "fasttcp", "--help"], capture_output=True, text=True, check=True)
    assert "bench" in out.stdout


def test_cli_bench_json_reports_figures_and_peers():
    import json

    out = subprocess.run([sys.executable, "-m", "fasttcp", "bench", "--quick", "--json", "--flows", "5000",
                          "--many-open", "3000", "--single", "500", "--cores", "1"],
                         capture_output=True, text=True, check=True, timeout=300)
    report = json.loads(out.stdout)
    assert "scaling" not in report and "handshakes_per_s_cores" not in report      # --cores 1: none
    for key in ("handshakes_per_s", "handshakes_per_s_cache_resident", "lifecycles_per_s",
                "handshakes_per_s_many_open", "handshakes_per_s_python_api", "bytes_per_connection",
                "parse_batch_pps", "parse_pps", "build_pps", "checksum_bytes_per_s"):
        assert report[key] > 0, key
    assert report["flows"] == 5000
    # every synthetic packet verified; every handshake and close completed (else it raises)
    assert not [n for n in report["notes"] if "did not verify" in n]
    assert report["peers"]["dpkt_handshakes_per_s"] > 0
    assert report["peers"]["kernel_loopback_connections_per_s"] > 0
    assert report["peers"]["dpkt_parse_pps"] > 0
    assert report["ratios"]["handshakes_vs_dpkt_handshakes"] > 1
    # the bare and lean C loops on the cache-resident flows and on the batch figure's, in
    # blocks taking turns with the endpoint's, and the ratios to each: the median of the
    # blocks' own ratios
    paired = report["paired"]

    def blocks_ratio(ours, peer):
        pair = paired[f"{ours}/{peer}"]
        assert len(pair["ours"]) == len(pair["peer"]) in (3, 12)   # --quick: 3 rounds, 12 cache-resident
        assert min(pair["ours"]) > 0 and min(pair["peer"]) > 0
        return statistics.median(a / b for a, b in zip(pair["ours"], pair["peer"], strict=True))

    for loop in ("bare_c", "lean_c"):
        assert report["peers"][f"{loop}_handshakes_per_s"] > 0
        assert report["ratios"][f"cache_resident_vs_{loop}"] == pytest.approx(
            blocks_ratio("handshakes_per_s_cache_resident", f"{loop}_handshakes_per_s"))
        assert report["peers"][f"{loop}_batch_handshakes_per_s"] > 0
        assert report["ratios"][f"batch_vs_{loop}"] == pytest.approx(
            blocks_ratio("handshakes_per_s", f"{loop}_batch_handshakes_per_s"))
        # the batch blocks are its rounds: the figure is their median
        assert report["handshakes_per_s"] == pytest.approx(
            statistics.median(paired[f"handshakes_per_s/{loop}_batch_handshakes_per_s"]["ours"]))
    # the batch flows again in cache-sized bursts, against the same loops and its own
    # cache-resident figure -- when the flows take more than one burst (5,000 do below a
    # ~14 MiB private cache); else no figure, and a note says why
    burst = report["burst"]
    assert 64 <= burst <= 65536 and burst & (burst - 1) == 0
    if burst < 5000:
        assert report["handshakes_per_s_bursts"] > 0
        for loop in ("bare_c", "lean_c"):
            assert report["ratios"][f"bursts_vs_{loop}"] == pytest.approx(
                blocks_ratio("handshakes_per_s_bursts", f"{loop}_batch_handshakes_per_s"))
        assert report["ratios"]["bursts_vs_cache_resident"] == pytest.approx(
            report["handshakes_per_s_bursts"] / report["handshakes_per_s_cache_resident"])
    else:
        assert "handshakes_per_s_bursts" not in report and "bursts_vs_bare_c" not in report["ratios"]
        assert any(n.startswith("no bursts figure") for n in report["notes"])
    # the depth the batch figure's endpoints ran their pipelines at, and how it was chosen
    for side in ("client", "server"):
        pipe = report["pipeline"][side]
        assert pipe["auto"] is True and pipe["segments"]["depth"] in (2, 4, 8, 16, 32)


def test_bare_handshake_loop_completes_every_handshake_and_verifies_checksums():
    # the bench's bare C peer must do the work it claims: every handshake completes on
    # clean segments, and a SYN damaged after its checksum was written is dropped (its
    # handshake never completes), which only a loop that verifies can do
    from fasttcp.bench.baseline import bare_handshakes_run

    for lean in (False, True):
        ns, est = bare_handshakes_run(5000, 3, lean=lean)
        assert est == 5000 and len(ns) == 3 and min(ns) > 0
        # damaged SYNs alternate between the TCP header (only its checksum covers the
        # window-scale byte) and the IP header (only its checksum covers the TTL): with
        # every 2nd SYN damaged, all IP-damaged ones fall on i = 2, 6, 10, ... The lean
        # loop also checks its own books (events, accept queue, timers, embryonic list,
        # drops) against the handshakes that completed, raising if they disagree.
        for every in (1, 2, 7, 1000):
            damaged = len(range(0, 3000, every))
            assert bare_handshakes_run(3000, 1, every, lean=lean)[1] == 3000 - damaged, (lean, every)
    # the lean loop's check of its books is live: one timer too many fails it
    with pytest.raises(RuntimeError, match="bookkeeping"):
        bare_handshakes_run(3000, 1, lean=True, _stray_timer=True)
    with pytest.raises(RuntimeError, match="bookkeeping"):
        bare_handshakes_run(3000, 1, 7, lean=True, _stray_timer=True)
    for bad in ((0, 1), (10, 0), (1 << 23, 1), (10, 1, -1), (2 ** 40, 1)):
        with pytest.raises(ValueError):
            bare_handshakes_run(*bad)


def test_cli_bench_runs_without_the_test_extras_and_says_which_peers_are_missing(tmp_path):
    # `pip install . && fasttcp bench` (README's first command) has neither dpkt, scapy
    # nor tshark: modules that fail to import stand in for the missing packages, and
    # PATH holds no tshark
    import json

    for name in ("dpkt", "scapy"):
        (tmp_path / f"{name}.py").write_text("raise ImportError('not installed in this test')\n")
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               PATH=str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "fasttcp", "bench", "--quick", "--json", "--flows", "2000",
                          "--many-open", "3000", "--single", "500", "--tracker-packets", "24000",
                          "--analyze-bytes", "0"],
                         capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout)
    assert report["handshakes_per_s"] > 0 and report["tracker"]["tracker_feed_batch_pps"] > 0
    assert "dpkt_handshakes_per_s" not in report["peers"] and "dpkt_dict_pps" not in report["tracker"]
    assert "tshark_pps" not in report["tracker"]
    notes = report["notes"] + report["tracker"]["notes"]
    for missing in ("dpkt not installed: no dpkt peer", "scapy not installed", "dpkt not installed: no dpkt tracker",
                    "tshark not found"):
        assert any(n.startswith(missing) for n in notes), (missing, notes)


def test_cli_bench_rejects_bad_arguments():
    out = subprocess.run([sys.executable, "-m", "fasttcp", "bench", "--flows", "0"], capture_output=True, text=True)
    assert out.returncode == 2 and "--flows" in out.stderr


def test_field_names_match_the_reference_written_from_defs_pxd():
    from fasttcp.errors import FIELD_NAMES
    from tests.reference.oracle import FIELD_NAMES as REFERENCE

    assert FIELD_NAMES == REFERENCE


@pytest.mark.skipif(os.environ.get("FASTTCP_EXPECT_PGO") != "1",
                    reason="set FASTTCP_EXPECT_PGO=1 where the build must be profile-guided (CI does)")
def test_the_build_is_profile_guided():
    # setup.py falls back to a plain build when the profile run fails; CI must notice
    # that instead of publishing lower figures (a plain build is ~10% slower)
    assert endpoint.PGO_BUILD is True and tracker.PGO_BUILD is True
    assert baseline.PGO_BUILD is True        # the bench compares the endpoint with it


def test_bench_reports_the_kind_of_build():
    # the JSON key and the text report's first line name the build the figures came from
    from fasttcp.bench.codec import BenchConfig, Report
    from fasttcp.bench.handshakes import format_report

    pgo = endpoint.PGO_BUILD and tracker.PGO_BUILD and baseline.PGO_BUILD
    rep = Report(BenchConfig())
    assert rep.as_dict()["pgo_build"] is pgo
    head = format_report(rep).splitlines()[0]
    assert head.endswith("profile-guided build" if pgo else "plain (no profile) build"), head


def test_every_package_folder_is_shipped():
    """A folder with an __init__.py that pyproject.toml does not list is missing from the
    wheel: the editable install still imports it, so only this test notices."""
    import tomllib
    root = Path(__file__).resolve().parent.parent
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(root).parts) for p in (root / "fasttcp").rglob("__init__.py")}
    assert found == listed
