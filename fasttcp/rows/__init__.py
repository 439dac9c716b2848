"""The rows edge: finished connections (FLOW_DTYPE rows) to text, in C a batch at a time.

`format_rows` turns a batch into the lines of a format (a table, JSON lines, CSV or a
Zeek conn.log); `RowWriter` streams batches to a file with the format's header and
footer. Every line carries a `uid` computed from the connection itself and, by default
in JSON and CSV, its Community ID v1 (`community_id`, `community_ids`). `tally_rows`
counts a batch (by conn_state, resets, retransmissions, handshake RTTs) for a summary.
"""
from fasttcp.rows.tally import RowTally, tally_rows
from fasttcp.rows.writer import (
    CSV_FIELDS,
    FORMATS,
    TABLE_HEADER,
    ZEEK_FIELDS,
    ZEEK_TYPES,
    RowWriter,
    community_id,
    community_ids,
    format_rows,
    uid,
    uids,
)

__all__ = ["FORMATS", "CSV_FIELDS", "ZEEK_FIELDS", "ZEEK_TYPES", "TABLE_HEADER", "format_rows", "RowWriter",
           "RowTally", "community_id", "community_ids", "tally_rows", "uid", "uids"]
