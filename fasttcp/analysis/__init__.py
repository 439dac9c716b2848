"""Track every TCP connection of captures and report: in this process, or in one
worker process per shard of the flows (`analyze(paths, workers=N)`); or of a network
interface, live (`analyze_live`)."""
from fasttcp.analysis.config import AnalyzeConfig
from fasttcp.analysis.live import analyze_live
from fasttcp.analysis.run import MAX_WORKERS, analyze, default_workers
from fasttcp.analysis.summary import RUN_FIELDS, Summary

__all__ = ["AnalyzeConfig", "Summary", "RUN_FIELDS", "analyze", "default_workers", "MAX_WORKERS",
           "analyze_live"]
