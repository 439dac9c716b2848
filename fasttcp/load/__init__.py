"""`fasttcp load`: a connection-rate load generator on an Endpoint on a real interface
(`run_load`, `LoadConfig`, `LoadResult`), with its token bucket and its target policy
(`fasttcp.load.safety`)."""
from fasttcp.load.bucket import TokenBucket
from fasttcp.load.generator import LoadConfig, LoadResult, run_load

__all__ = ["LoadConfig", "LoadResult", "TokenBucket", "run_load"]
