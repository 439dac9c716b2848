"""fasttcp: TCP connection management at memory speed.

The wire layer: parse and build IPv4/IPv6 TCP packets with every common
option (`parse`, `parse_tcp`, `build`, `parse_batch`), RFC 1071/1624 checksums
(`checksum`, `tcp_checksum`, `checksum_update`) and 32-bit sequence arithmetic
(`fasttcp.seq`). The connection table (`ConnectionTable`) finds a
connection by its 4-tuple and expires it on time. `Endpoint` is a sans-IO TCP
endpoint; `Tracker` watches both directions of real traffic (conntrack states and
window tracking, Zeek's conn_state and history), fed from captures by `read_pcap`;
`RowWriter` writes the connections it finished as a table, JSON, CSV or a Zeek
conn.log, with a per-connection uid and the `community_id`. `analyze` does all of that
for capture files, on every core: `flow_hash` and `shard_of_batch` split traffic into
shards by the symmetric RSS hash a NIC computes, so both directions of a connection
meet in one tracker. The hot paths are Cython over typed C structs, a folder per
layer: fasttcp.wire, fasttcp.table, fasttcp.endpoint, fasttcp.tracker, fasttcp.capture,
fasttcp.rows, fasttcp.analysis (and fasttcp.cli, fasttcp.bench for the command line and
what measures it).
"""
import os as _os
import warnings as _warnings

from fasttcp import _startup  # noqa: F401  (first: the command's BLAS threads, before numpy loads)
from fasttcp._version import __version__
from fasttcp.analysis import AnalyzeConfig, Summary, analyze, analyze_live
from fasttcp.capture.live import Fanout, LiveCapture
from fasttcp.capture.reader import CaptureBatch, CaptureReader, read_pcap, write_pcap
from fasttcp.capture.transmit import Transmitter
from fasttcp.diagram import ladder
from fasttcp.endpoint.endpoint import DROP_REASONS, EVENT_DTYPE, Connection, Endpoint, Event, pipe
from fasttcp.enums import Cause, Flags, OptionBits, State, Verdict
from fasttcp.errors import (
    BadChecksum,
    BadHeader,
    BadOption,
    CaptureError,
    ConnectionStateError,
    FastTcpError,
    MalformedPacket,
    StaleConnection,
    TableFull,
    TruncatedPacket,
    UnsupportedPacket,
    UsageError,
    WorkerError,
)
from fasttcp.rows.writer import RowWriter, community_id
from fasttcp.table.table import (
    CONN_DTYPE,
    EXPIRED_DTYPE,
    KEY_DTYPE,
    ConnectionTable,
    ConnectionView,
    TableStats,
    canonical_keys,
    make_keys,
)
from fasttcp.table.timeouts import Timeouts
from fasttcp.tracker.tracker import FLOW_DTYPE, TRACKER_EVENT_DTYPE, Tracker
from fasttcp.tracker.vocabulary import ConnState, EndReason, TrackerState, TrackerTimeouts, flow_records
from fasttcp.wire import seq
from fasttcp.wire.batch import SEGMENT_DTYPE, parse_batch
from fasttcp.wire.checksum import checksum, checksum_update, tcp_checksum
from fasttcp.wire.rss import flow_hash, flow_hash_rows, shard_of_batch, shard_of_hash
from fasttcp.wire.segment import Options, Segment, build, parse, parse_tcp


def get_include() -> list[str]:
    """The directories a C compiler needs to build a Cython module that cimports fasttcp's
    `.pxd` files (their inline C includes headers from here). Pass them as
    ``Extension(..., include_dirs=fasttcp.get_include() + [numpy.get_include()])``."""
    return [_os.path.join(_os.path.dirname(__file__), "wire")]


# Old names kept for one release (see CHANGELOG.md).
_DEPRECATED = {"ConnectionError_": ("ConnectionStateError", ConnectionStateError)}


def __getattr__(name: str) -> object:
    if name in _DEPRECATED:
        new, value = _DEPRECATED[name]
        _warnings.warn(f"fasttcp.{name} is deprecated: use fasttcp.{new}", DeprecationWarning, stacklevel=2)
        return value
    raise AttributeError(f"module 'fasttcp' has no attribute {name!r}")


__all__ = [
    "__version__",
    "analyze",
    "analyze_live",
    "AnalyzeConfig",
    "Summary",
    "seq",
    "parse",
    "parse_tcp",
    "parse_batch",
    "build",
    "Segment",
    "Options",
    "SEGMENT_DTYPE",
    "Endpoint",
    "Connection",
    "ConnectionStateError",
    "Event",
    "Cause",
    "EVENT_DTYPE",
    "DROP_REASONS",
    "pipe",
    "ConnectionTable",
    "ConnectionView",
    "TableStats",
    "TableFull",
    "StaleConnection",
    "KEY_DTYPE",
    "CONN_DTYPE",
    "EXPIRED_DTYPE",
    "make_keys",
    "Tracker",
    "TrackerState",
    "TrackerTimeouts",
    "ConnState",
    "EndReason",
    "FLOW_DTYPE",
    "TRACKER_EVENT_DTYPE",
    "flow_records",
    "flow_hash",
    "flow_hash_rows",
    "shard_of_batch",
    "shard_of_hash",
    "RowWriter",
    "community_id",
    "read_pcap",
    "write_pcap",
    "CaptureBatch",
    "CaptureReader",
    "Fanout",
    "LiveCapture",
    "CaptureError",
    "WorkerError",
    "canonical_keys",
    "State",
    "Timeouts",
    "checksum",
    "tcp_checksum",
    "checksum_update",
    "Flags",
    "Verdict",
    "OptionBits",
    "FastTcpError",
    "MalformedPacket",
    "TruncatedPacket",
    "BadHeader",
    "BadChecksum",
    "BadOption",
    "UnsupportedPacket",
    "UsageError",
    "get_include",
    "Transmitter",
    "ladder",
]
