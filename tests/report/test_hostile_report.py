"""Hostile arguments to the report's Python API, each run in a child process
(tests/probe.py): a precise exception, never a crash."""
from __future__ import annotations

from tests.probe import expect_raises

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
