"""The rows of a distributed run to a file: Parquet (with pyarrow, the `parquet`
extra) or the json/csv/zeek/table writers of `fasttcp.rows`."""
from __future__ import annotations

from typing import IO, Any

import numpy as np

from fasttcp.errors import UsageError
from fasttcp.rows.writer import CSV_FIELDS, RowWriter, format_rows

__all__ = ["write_parquet", "write_rows", "PARQUET_SUFFIX"]

PARQUET_SUFFIX = ".parquet"


def _require_pyarrow() -> Any:
    try:
        import pyarrow  # type: ignore[import-untyped]  # pyarrow ships no type information
        import pyarrow.parquet  # type: ignore[import-untyped]
    except ImportError as e:
        raise ImportError("Parquet output needs pyarrow: pip install 'fasttcp[parquet]'") from e
    return pyarrow


def write_parquet(rows: np.ndarray, path: str, *, community_id_seed: int = 0) -> None:
    """Write FLOW_DTYPE `rows` to a Parquet file at `path`, one column per field of the
    CSV format (the same names and text as it, typed: numbers stay numbers)."""
    pa = _require_pyarrow()
    import csv
    import io

    text = format_rows(rows, "csv", community_id=True, community_id_seed=community_id_seed)
    reader = csv.reader(io.StringIO(text.decode() if isinstance(text, bytes) else text))
    header = list(CSV_FIELDS)
    columns: list[list[str]] = [[] for _ in header]
    for record in reader:
        for i, value in enumerate(record):
            columns[i].append(value)
    arrays = [_typed(pa, col) for col in columns]
    pa.parquet.write_table(pa.table(dict(zip(header, arrays, strict=True))), path)


def _typed(pa: Any, values: list[str]) -> Any:
    """A column as int64 or float64 when every value is one, else as text."""
    for kind in (int, float):
        try:
            return pa.array([kind(v) if v != "" else None for v in values],
                            pa.int64() if kind is int else pa.float64())
        except ValueError:
            continue
    return pa.array(values, pa.string())


def write_rows(rows: np.ndarray, out: IO[str] | IO[bytes], fmt: str, *, community_id: bool | None = None,
               community_id_seed: int = 0) -> None:
    """Write `rows` to the stream `out` in `fmt` (one of `fasttcp.rows.FORMATS`)."""
    if not isinstance(rows, np.ndarray):
        raise UsageError(f"rows must be a FLOW_DTYPE array, got {type(rows).__name__}")
    writer = RowWriter(out, fmt, community_id=community_id, community_id_seed=community_id_seed)
    writer.header()
    writer.write(rows)
    writer.footer()
