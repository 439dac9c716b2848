"""The names `fasttcp analyze` was built from, where older code imports them: the run
itself is `fasttcp.analysis`, the row formats `fasttcp.rows`, the command line
`fasttcp.cli.main`."""
from fasttcp.analysis import AnalyzeConfig, Summary, analyze
from fasttcp.errors import OutputError
from fasttcp.rows.writer import CSV_FIELDS, FORMATS, ZEEK_FIELDS

__all__ = ["AnalyzeConfig", "Summary", "analyze", "OutputError", "FORMATS", "ZEEK_FIELDS", "CSV_FIELDS"]
