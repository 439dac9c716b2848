"""fasttcp: TCP connection management at memory speed.

The wire layer: parse and build IPv4/IPv6 TCP packets with every common
option (`parse`, `parse_tcp`, `build`, `parse_batch`), RFC 1071/1624 checksums
(`checksum`, `tcp_checksum`, `checksum_update`) and 32-bit sequence arithmetic
(`fasttcp.seq`). The connection table (`ConnectionTable`) finds a
connection by its 4-tuple and expires it on time. `Endpoint` is a sans-IO TCP
endpoint; `Tracker` watches both directions of real traffic (conntrack states and
window tracking, Zeek's conn_state and history), fed from captures by `read_pcap`.
The hot paths are Cython over typed C structs (fasttcp._core).
"""
from fasttcp._core import seq
from fasttcp._core.batch import SEGMENT_DTYPE, parse_batch
from fasttcp._core.csum import checksum, checksum_update, tcp_checksum
from fasttcp._core.segment import Options, Segment, build, parse, parse_tcp
from fasttcp._core.endpoint import (
    DROP_REASONS,
    EVENT_DTYPE,
    Connection,
    ConnectionError_,
    Endpoint,
    Event,
    pipe,
)
from fasttcp._core.table import (
    CONN_DTYPE,
    EXPIRED_DTYPE,
    KEY_DTYPE,
    ConnectionTable,
    StaleConnection,
    TableFull,
    TableStats,
    canonical_keys,
    make_keys,
)
from fasttcp._core.table import Connection as ConnectionView
from fasttcp._core.tracker import FLOW_DTYPE, TRACKER_EVENT_DTYPE, Tracker
from fasttcp._version import __version__
from fasttcp.capture import CaptureBatch, CaptureError, CaptureReader, read_pcap, write_pcap
from fasttcp.tracking import ConnState, EndReason, TrackerState, TrackerTimeouts, flow_records
from fasttcp.enums import Flags, OptionBits, Verdict
from fasttcp.events import Cause
from fasttcp.states import State, Timeouts
from fasttcp.errors import (
    BadChecksum,
    BadHeader,
    BadOption,
    FastTcpError,
    MalformedPacket,
    TruncatedPacket,
    UnsupportedPacket,
    UsageError,
)

__all__ = [
    "__version__",
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
    "ConnectionError_",
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
    "read_pcap",
    "write_pcap",
    "CaptureBatch",
    "CaptureReader",
    "CaptureError",
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
]
