"""Type stubs for fasttcp.rows.writer (FLOW_DTYPE rows to text, in C)."""
import ipaddress
from typing import IO, Any, TypeAlias

import numpy as np
from typing_extensions import disjoint_base

__all__ = ["FORMATS", "CSV_FIELDS", "ZEEK_FIELDS", "ZEEK_TYPES", "TABLE_HEADER", "format_rows", "RowWriter",
           "community_id", "community_ids", "uid", "uids"]

_Address: TypeAlias = str | bytes | ipaddress.IPv4Address | ipaddress.IPv6Address

FORMATS: tuple[str, ...]
"""The output formats: "table", "json", "csv", "zeek"."""
CSV_FIELDS: tuple[str, ...]
"""The CSV columns (the last, community_id, only with the Community ID, the default)."""
ZEEK_FIELDS: tuple[str, ...]
"""Zeek's conn.log fields; community_id follows them with community_id=True."""
ZEEK_TYPES: tuple[str, ...]
"""The Zeek #types of ZEEK_FIELDS."""
TABLE_HEADER: str
"""The table's heading line."""
WRITE_CHUNK: int
"""RowWriter.write hands its stream about this many bytes at a time."""
SHA1_EXTENSIONS: bool
"""True when this CPU's SHA extensions compute the Community IDs (else portable C)."""

def format_rows(rows: np.ndarray, fmt: str, *, community_id: bool | None = None,
                community_id_seed: int = 0) -> bytes:
    """The text of a batch of FLOW_DTYPE rows in format `fmt`, one line a row, without
    the format's header. `community_id`: None for the format's default (a column in
    json and csv, none in zeek and table). Raises UsageError for an unknown format or
    option, rows that are not a 1-D contiguous FLOW_DTYPE array, or a row the tracker
    cannot have written (naming it)."""

@disjoint_base
class RowWriter:
    """Writes batches of FLOW_DTYPE rows to a binary or text stream in one of FORMATS:
    header() once, write(rows) per batch, footer() at the end."""
    @property
    def fmt(self) -> str:
        """The format's name."""
    @property
    def community_id(self) -> bool:
        """Whether lines carry the Community ID column."""
    @property
    def community_id_seed(self) -> int:
        """The Community ID seed."""
    def __init__(self, out: IO[str] | IO[bytes] | Any, fmt: str, *, community_id: bool | None = None,
                 community_id_seed: int = 0) -> None: ...
    @property
    def count(self) -> int:
        """Rows written so far."""
    def header(self) -> None:
        """Write the format's header (JSON lines have none)."""
    def footer(self) -> None:
        """Write the format's footer (Zeek's #close line; the others have none)."""
    def write(self, rows: np.ndarray) -> int:
        """Write a batch of FLOW_DTYPE rows; returns len(rows). The batch is checked
        whole first: a bad one (UsageError) writes nothing, nor does a closed stream."""
    def _header_text(self) -> str: ...
    def _check_open(self) -> None: ...
    def _emit(self, data: bytes) -> None: ...

def community_id(src: _Address, dst: _Address, sport: int, dport: int, proto: int = 6, seed: int = 0) -> str:
    """The Community ID v1 of a flow: "1:" and the base64 SHA-1 of the seed and the
    ordered 5-tuple. ICMP's type/code mapping is not done here. Raises UsageError for a
    bad address, mixed versions or a number out of range."""

def community_ids(rows: np.ndarray, seed: int = 0) -> np.ndarray:
    """The Community ID of each FLOW_DTYPE row (orig -> resp, TCP), dtype S30."""

def uids(rows: np.ndarray) -> np.ndarray:
    """The uid of each FLOW_DTYPE row, dtype S18."""

def uid(orig_h: _Address, orig_p: int, resp_h: _Address, resp_p: int, start_us: int) -> str:
    """The uid of a connection: "C" and 17 base62 digits of a hash of (family, orig_h,
    orig_p, resp_h, resp_p, start_us)."""

def _sha1_select(want_extensions: bool) -> bool:
    """Use the SHA extensions (when the CPU has them) or portable C; returns which."""
