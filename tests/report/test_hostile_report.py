"""Hostile arguments to the report's Python API, each run in a child process
(tests/probe.py): a precise exception, never a crash."""
from __future__ import annotations

from tests.probe import expect_ok, expect_raises

SMALL = "tests/data/zeek-tcp-syn.pcap"


def test_hostile_report_arguments() -> None:
    ok = f"fasttcp.analyze('{SMALL}', workers=1, report={{}})"
    expect_raises(ok.format("b'/tmp/r.html'"), "UsageError", "report must be a file path")
    expect_raises(ok.format("3"), "UsageError", "report must be a file path")
    expect_raises(ok.format("''"), "UsageError", "report must be a file path")
    expect_raises(ok.format("'/tmp'"), "UsageError", "is a directory")
    expect_raises(ok.format("'/proc/version'"), "OutputError")
    expect_raises("from fasttcp.report import write_report; write_report('/tmp/x.html', None, None)",
                  "UsageError", "Summary and ReportAggregate")


def test_hostile_ladders() -> None:
    made = (f"from fasttcp.report import write_report; s = fasttcp.analyze('{SMALL}', workers=1, "
            "report='/tmp/fasttcp-hostile-report.html'); write_report('/tmp/fasttcp-hostile-report.html', s, "
            "s.report, ladders={})")
    for bad in ("[3]", "'<svg/>'", "[b'<svg/>']", "5"):
        expect_raises(made.format(bad), "UsageError", "ladders must be")


def test_hostile_rows() -> None:
    """Rows made by hand: wrong dtype refused; extreme times and codes folded in."""
    agg = "from fasttcp.report import ReportAggregate; a = ReportAggregate(); "
    expect_raises(agg + "a.add_rows(np.zeros(3))", "UsageError", "FLOW_DTYPE")
    expect_raises(agg + "a.add_rows([1, 2])", "UsageError", "FLOW_DTYPE")
    expect_ok(agg + "r = np.zeros(4, fasttcp.FLOW_DTYPE); r['start_us'] = [0, 2**64 - 1, 5, 2**63]; "
              "r['end_us'] = [2**64 - 1, 0, 4, 2**63 + 1]; r['orig_retrans'] = 3; r['conn_state'] = 255; "
              "r['end_reason'] = 99; r['history'] = b'R' * 32; a.add_rows(r); "
              "outcome(float(a.time.view()[2].sum()))")
