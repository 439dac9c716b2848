# cython: language_level=3
"""FLOW_DTYPE rows to text: a table, JSON lines, CSV or a Zeek conn.log, a batch at a time.

Theory of operation. A batch is checked whole before a byte is written (numpy array of
FLOW_DTYPE, one-dimensional, contiguous; every row's family 4 or 6, its state, conn_state
and end_reason codes naming a value, its history ASCII), so a bad batch leaves the
output as it was. Then one loop without the GIL hands each row to the C writer of the
format (rows_impl.h), which writes its line into a growing buffer: no Python object and
no allocation per row. `RowWriter` sends the buffer to its stream every
`WRITE_CHUNK` bytes; `format_rows` returns it as one bytes object.

The text is the one Python's formatting gives for the same values (str of ints,
repr of float seconds, f"{x:.6f}", json.dumps, the csv module, Zeek's ASCII writer
escapes), byte for byte: the C takes exact integer paths where text_impl.h proves them
equal, and CPython's own float formatter (`_dtoa`, with the GIL) for times beyond them.

Each row also gets a `uid` computed from the connection itself -- family, addresses,
ports and the first packet's microsecond -- so the same connection has the same uid
whatever order rows arrive in or which worker wrote them, and the Community ID v1 of
its 5-tuple (cid_impl.h).
"""
from cpython.buffer cimport PyBuffer_Release
from cpython.exc cimport PyErr_SetString
from libc.stdint cimport uint8_t, uint16_t, uint64_t
from libc.string cimport memcpy, memset, strlen

from fasttcp.wire.buffers cimport ft_get_bytes

import errno
import io
import operator
import time

import numpy as np

from fasttcp.errors import UsageError
from fasttcp.tracker.tracker import FLOW_DTYPE
from fasttcp.tracker.vocabulary import ConnState, EndReason, TrackerState
from fasttcp.wire.address import packed as _packed

__all__ = ["FORMATS", "CSV_FIELDS", "ZEEK_FIELDS", "ZEEK_TYPES", "TABLE_HEADER", "format_rows", "RowWriter",
           "community_id", "community_ids", "uid", "uids"]

cdef extern from "Python.h":
    char *PyOS_double_to_string(double val, char format_code, int precision, int flags, int *ptype)
    void PyMem_Free(void *p)
    int Py_DTSF_ADD_DOT_0

cdef extern from "pybuf_impl.h":
    ctypedef struct ftr_bytes_buf_t:
        void *obj
        char *data
        size_t len
        size_t cap
    int ftr_bb_init(ftr_bytes_buf_t *b, size_t cap) except -1
    int ftr_bb_grow(ftr_bytes_buf_t *b, size_t cap) except -1
    object ftr_bb_finish(ftr_bytes_buf_t *b)
    void ftr_bb_clear(ftr_bytes_buf_t *b)

cdef extern from "rows_impl.h" nogil:
    ctypedef struct ftr_flow_t:
        uint64_t start_us
        uint16_t orig_p
        uint16_t resp_p
        uint8_t family
        uint8_t orig_h[16]
        uint8_t resp_h[16]
    ctypedef char *(*ftr_dtoa_t)(char *p, double x, char mode) noexcept nogil
    ctypedef struct ftr_opts_t:
        int fmt
        int community_id
        uint16_t seed
        ftr_dtoa_t dtoa
    ctypedef struct ftr_field_t "struct { const char *name; size_t offset; }":
        const char *name
        size_t offset
    ftr_field_t ftr_flow_layout[]
    int FTR_FLOW_NFIELDS
    ctypedef struct ftr_name_t:
        char s[16]
        uint8_t n
    const ftr_name_t ftr_state_names[]
    const ftr_name_t ftr_conn_state_names[]
    const ftr_name_t ftr_end_reason_names[]
    int FTR_NSTATES, FTR_NCONN_STATES, FTR_NEND_REASONS
    int FTR_FMT_TABLE, FTR_FMT_JSON, FTR_FMT_CSV, FTR_FMT_ZEEK
    int FTR_ROW_OK, FTR_ROW_BAD_FAMILY, FTR_ROW_BAD_STATE, FTR_ROW_BAD_CONN_STATE
    int FTR_ROW_BAD_END_REASON, FTR_ROW_BAD_HISTORY
    size_t FTR_ROW_MAX
    int FTR_FLOAT_MAX
    int FTR_CID_LEN, FTR_UID_LEN
    int ftr_check_row(const ftr_flow_t *r)
    size_t FTR_STEP_MAX
    char *ftr_rows(char *p, const ftr_flow_t *r, int count, const ftr_opts_t *o)
    char *ftr_uid(char *p, const ftr_flow_t *r)
    char *ftr_row_community_id(char *p, const ftr_flow_t *r, uint16_t seed)
    char *ftr_community_id(char *p, const uint8_t *src, const uint8_t *dst, int alen,
                           uint16_t sport, uint16_t dport, uint8_t proto, uint16_t seed)
    int ftr_sha1_select(int want_ni)
    void ftr_text_init()

FORMATS = ("table", "json", "csv", "zeek")
"""The output formats, by name."""
_FMT_CODES = {"table": FTR_FMT_TABLE, "json": FTR_FMT_JSON, "csv": FTR_FMT_CSV, "zeek": FTR_FMT_ZEEK}

CSV_FIELDS = ("uid", "ts", "orig_h", "orig_p", "resp_h", "resp_p", "proto", "duration", "orig_bytes",
              "resp_bytes", "conn_state", "missed_bytes", "history", "orig_pkts", "orig_ip_bytes",
              "resp_pkts", "resp_ip_bytes", "state", "rtt_syn_synack", "rtt_synack_ack", "orig_retrans",
              "resp_retrans", "end_reason", "community_id")
"""The CSV columns (the last one only with the Community ID, the default)."""
_CSV_FIELDS_BARE = CSV_FIELDS[:len(CSV_FIELDS) - 1]
ZEEK_FIELDS = ("ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "service",
               "duration", "orig_bytes", "resp_bytes", "conn_state", "local_orig", "local_resp",
               "missed_bytes", "history", "orig_pkts", "orig_ip_bytes", "resp_pkts", "resp_ip_bytes",
               "tunnel_parents")
"""Zeek's conn.log fields; ``community_id`` follows them with ``community_id=True``, as
Zeek's community-id package adds it."""
ZEEK_TYPES = ("time", "string", "addr", "port", "addr", "port", "enum", "string", "interval", "count",
              "count", "string", "bool", "bool", "count", "string", "count", "count", "count", "count",
              "set[string]")
"""The Zeek ``#types`` of ZEEK_FIELDS, in order."""
TABLE_HEADER = (f"{'orig':>41} {'resp':>41} {'conn_state':>6} {'history':<12} {'state':<11} "
                f"{'pkts o/r':>13} {'bytes o/r':>21} {'rtt ms':>8}\n")
"""The table's heading line."""

cdef enum:
    # RowWriter.write's bytes per out.write(). The chunk's bytes object (this plus a step's
    # room) stays under glibc malloc's 128 KiB mmap threshold, so each chunk reuses the
    # heap memory the last one freed; 1 MiB chunks were a fresh mmap each, a page fault
    # every 4 KiB of text (a third of the time of a JSON row)
    _WRITE_CHUNK = 96 << 10
    _GUESS_ROW_BYTES = 256            # format_rows' first guess of a line's length
    _MAX_FIRST_GUESS = 64 << 20       # and of the whole text

WRITE_CHUNK = _WRITE_CHUNK
"""`RowWriter.write` hands its stream about this many bytes at a time (a few thousand rows)."""
_MAX_SEED = 0xFFFF
_MAX_PORT = 0xFFFF
_MAX_PROTO = 0xFF
_ROW_PROBLEMS = {
    FTR_ROW_BAD_FAMILY: ("family", "is not 4 or 6"),
    FTR_ROW_BAD_STATE: ("state", "names no TrackerState"),
    FTR_ROW_BAD_CONN_STATE: ("conn_state", "names no ConnState"),
    FTR_ROW_BAD_END_REASON: ("end_reason", "names no EndReason"),
}


# ---- layout: the C struct and name tables must be the dtype's and the enums' ----

cdef _check_layout():
    cdef int i
    fields = {name: spec[1] for name, spec in FLOW_DTYPE.fields.items()}
    c_fields = {ftr_flow_layout[i].name.decode(): ftr_flow_layout[i].offset for i in range(FTR_FLOW_NFIELDS)}
    if fields != c_fields or FLOW_DTYPE.itemsize != sizeof(ftr_flow_t):
        raise ImportError(f"fasttcp.rows: rows_impl.h's ftr_flow_t does not match FLOW_DTYPE ({c_fields} vs {fields})")
    _check_names(ftr_state_names, FTR_NSTATES, TrackerState)
    _check_names(ftr_conn_state_names, FTR_NCONN_STATES, ConnState)
    _check_names(ftr_end_reason_names, FTR_NEND_REASONS, EndReason)


cdef _check_names(const ftr_name_t *names, int n, enum):
    cdef int i
    got = [names[i].s[:names[i].n].decode() for i in range(n)]
    if got != [e.name for e in enum]:
        raise ImportError(f"fasttcp.rows: the C names {got} are not {enum.__name__}'s")


_check_layout()
ftr_text_init()
SHA1_EXTENSIONS = bool(ftr_sha1_select(1))
"""True when this CPU's SHA extensions compute the Community IDs (else portable C)."""


def _sha1_select(bint want_extensions) -> bool:
    """Use the SHA extensions (when the CPU has them) or the portable C for SHA-1;
    returns whether the extensions are now used. For tests comparing the two."""
    return bool(ftr_sha1_select(want_extensions))


# ---- CPython's float formatting, outside the exact ranges ----

cdef char *_dtoa(char *p, double x, char mode) noexcept nogil:
    # only for times of 8e9 s and more (text_impl.h, FTR_EXACT_US_MAX): rows of real
    # traffic never come here
    with gil:
        return _dtoa_gil(p, x, mode)


cdef char *_dtoa_gil(char *p, double x, char mode) noexcept:
    cdef char *s
    cdef size_t n
    if mode == c'r':
        s = PyOS_double_to_string(x, c'r', 0, Py_DTSF_ADD_DOT_0, NULL)      # float.__repr__
    else:
        s = PyOS_double_to_string(x, c'f', 6, 0, NULL)                      # f"{x:.6f}"
    if s == NULL:
        return NULL                                                          # MemoryError is set
    n = strlen(s)
    if n > <size_t>FTR_FLOAT_MAX:
        # cannot happen: |x| < 2^64 / 1e6 prints in at most 21 bytes ("%.6f") or 19
        # (repr); the row's room was reserved for FTR_FLOAT_MAX
        PyMem_Free(s)
        PyErr_SetString(RuntimeError, b"float text longer than a row has room for")
        return NULL
    memcpy(p, s, n)
    PyMem_Free(s)
    return p + n


# ---- checking a batch ----

cdef const ftr_flow_t *_rows_view(rows, Py_buffer *view, str what, Py_ssize_t *n) except NULL:
    """Check `rows` is a 1-D, contiguous FLOW_DTYPE array and take its buffer (the caller
    releases `view`); `n`: its rows, as the buffer has them -- not `rows.shape` read
    again, which an ndarray subclass can answer differently each time."""
    if not isinstance(rows, np.ndarray) or rows.dtype != FLOW_DTYPE:
        got = f"dtype {rows.dtype}" if isinstance(rows, np.ndarray) else type(rows).__name__
        raise UsageError(f"{what} takes a FLOW_DTYPE array (Tracker.finished(), close(), ...), got {got}")
    if rows.ndim != 1:
        raise UsageError(f"{what} takes a 1-D array of rows, got {rows.ndim} dimensions (shape {rows.shape})")
    cdef Py_ssize_t shown = rows.shape[0]
    ft_get_bytes(rows, view, "rows")
    if view.len != shown * <Py_ssize_t>sizeof(ftr_flow_t):        # a buffer that is not the rows
        PyBuffer_Release(view)
        raise UsageError(f"rows: a {view.len}-byte buffer for {shown} rows")
    n[0] = view.len // <Py_ssize_t>sizeof(ftr_flow_t)
    return <const ftr_flow_t *>view.buf


cdef int _check_rows(const ftr_flow_t *rows, Py_ssize_t n, bint family_only) except -1:
    """UsageError naming the first row the tracker cannot have written."""
    cdef Py_ssize_t i
    cdef int why = FTR_ROW_OK
    with nogil:
        for i in range(n):
            if family_only:
                if rows[i].family != 4 and rows[i].family != 6:
                    why = FTR_ROW_BAD_FAMILY
                    break
            else:
                why = ftr_check_row(&rows[i])
                if why != FTR_ROW_OK:
                    break
    if why == FTR_ROW_OK:
        return 0
    r = (<const uint8_t *>&rows[i])[:sizeof(ftr_flow_t)]
    row = np.frombuffer(r, dtype=FLOW_DTYPE)[0]
    if why == FTR_ROW_BAD_HISTORY:
        raise UsageError(f"row {i}: not a row the tracker wrote: history {bytes(row['history'])!r} is not ASCII")
    field, problem = _ROW_PROBLEMS[why]
    raise UsageError(f"row {i}: not a row the tracker wrote: {field} {int(row[field])} {problem}")


cdef ftr_opts_t _options(fmt, community_id, seed) except *:
    cdef ftr_opts_t o
    if not isinstance(fmt, str) or fmt not in _FMT_CODES:
        raise UsageError(f"format must be one of {FORMATS}, got {fmt!r}")
    if community_id is not None and not isinstance(community_id, bool):
        raise UsageError(f"community_id must be True, False or None (the format's default), got {community_id!r}")
    if community_id is None:
        community_id = fmt in ("json", "csv")
    elif community_id and fmt == "table":
        raise UsageError("the table format has no community_id column")
    o.fmt = _FMT_CODES[fmt]
    o.community_id = community_id
    o.seed = _uint(seed, "community_id_seed", _MAX_SEED)
    o.dtoa = _dtoa
    return o


cdef object _as_int(v, str name, str what):
    """`v` as a plain int (numpy integers too: a row's fields read back are those), or
    UsageError: converted first (operator.index), then compared -- an int subclass
    answers comparisons itself -- and never a bool."""
    if isinstance(v, (bool, np.bool_)):
        raise UsageError(f"{name} must be {what}, got {v!r}")
    try:
        return operator.index(v)
    except TypeError:
        raise UsageError(f"{name} must be {what}, got {v!r}") from None


cdef int _uint(v, str name, int top) except -1:
    n = _as_int(v, name, f"an integer in 0..{top}")
    if not 0 <= n <= top:
        raise UsageError(f"{name} must be an integer in 0..{top}, got {v!r}")
    return n


# ---- formatting a batch ----

cdef Py_ssize_t _format(ftr_bytes_buf_t *b, const ftr_opts_t *o, const ftr_flow_t *rows, Py_ssize_t i,
                        Py_ssize_t n, size_t limit) noexcept nogil:
    """Append the lines of rows[i:n] to b, two rows a step, while it has room for a step
    and holds less than `limit` bytes; returns the next row to write, or -1 when
    CPython's float formatter failed (its exception is set)."""
    cdef char *end
    cdef int k
    while i < n and b.len < limit and b.cap - b.len >= FTR_STEP_MAX:
        k = 2 if n - i >= 2 else 1
        end = ftr_rows(b.data + b.len, &rows[i], k, o)
        if end == NULL:
            return -1
        b.len = end - b.data
        i += k
    return i


cdef Py_ssize_t _format_into(ftr_bytes_buf_t *b, const ftr_opts_t *o, const ftr_flow_t *rows, Py_ssize_t i,
                             Py_ssize_t n, size_t limit) except -1:
    """_format, growing b (doubling) until the rows or `limit` bytes are written."""
    while True:
        with nogil:
            i = _format(b, o, rows, i, n, limit)
        if i < 0:
            return -1                 # CPython's formatter set the exception
        if i == n or b.len >= limit:
            return i
        ftr_bb_grow(b, max(2 * b.cap, b.len + FTR_STEP_MAX))


def format_rows(rows, fmt, *, community_id=None, community_id_seed=0) -> bytes:
    """The text of a batch of FLOW_DTYPE rows in format `fmt` (one of FORMATS), one line
    a row, without the format's header.

    `community_id`: None for the format's default (a ``community_id`` column in json and
    csv, none in zeek and table), True or False to choose (True with "table" is an
    error); `community_id_seed`: its seed, 0..65535.

    Raises UsageError for an unknown format or option, for `rows` that are not a 1-D,
    contiguous FLOW_DTYPE array, and for a row the tracker cannot have written (family
    not 4 or 6, a state, conn_state or end_reason code that names nothing, a history
    that is not ASCII), naming the row."""
    cdef ftr_opts_t o = _options(fmt, community_id, community_id_seed)
    cdef Py_buffer view
    cdef Py_ssize_t n
    cdef const ftr_flow_t *p = _rows_view(rows, &view, "format_rows", &n)
    cdef ftr_bytes_buf_t b
    b.obj = NULL
    try:
        _check_rows(p, n, False)
        # a first guess of the size (the lines of fasttcp's own captures average 120
        # to 480 bytes); growing is a realloc, not a copy
        ftr_bb_init(&b, min(n * _GUESS_ROW_BYTES, _MAX_FIRST_GUESS) + FTR_STEP_MAX)
        _format_into(&b, &o, p, 0, n, <size_t>-1)
        return ftr_bb_finish(&b)
    finally:
        ftr_bb_clear(&b)
        PyBuffer_Release(&view)


# ---- streaming to a file ----

cdef enum:
    _OUT_BINARY = 0                   # out.write(bytes)
    _OUT_TEXT_BUFFER = 1              # a text stream over an ASCII-compatible binary one: its .buffer
    _OUT_TEXT = 2                     # a text stream without one: out.write(str)

_ASCII = bytes(range(128))


def _stream_mode(out) -> int:
    if not callable(getattr(out, "write", None)):
        raise UsageError(f"out must be a stream with a write() method, got {type(out).__name__}")
    if not isinstance(out, io.TextIOBase) and not hasattr(out, "encoding"):
        return _OUT_BINARY
    buffer, encoding = getattr(out, "buffer", None), getattr(out, "encoding", None)
    try:
        ascii_compatible = isinstance(encoding, str) and _ASCII.decode("ascii").encode(encoding) == _ASCII
    except LookupError:
        ascii_compatible = False
    if ascii_compatible and callable(getattr(buffer, "write", None)):
        return _OUT_TEXT_BUFFER
    return _OUT_TEXT


def _write_all(write, data: bytes, bint raw) -> None:
    # a raw (unbuffered) binary stream may take part of what it is given; `raw`: the
    # stream is one (io.RawIOBase), whose write() returns None when it would block (a
    # non-blocking file or socket) -- nothing was written then, where a file-like
    # object of the caller's that returns None took it all
    view = memoryview(data)
    while view:
        n = write(view)
        if n is None and raw:
            raise BlockingIOError(errno.EAGAIN, f"the output stream is non-blocking and took none of "
                                  f"{len(view)} bytes ({len(data) - len(view)} of {len(data)} written): "
                                  f"write the rows to a blocking stream")
        if not isinstance(n, int) or n >= len(view):
            return
        if n <= 0:
            raise OSError(f"the output stream took {n} of {len(view)} bytes")
        view = view[n:]


cdef class RowWriter:
    """Writes batches of FLOW_DTYPE rows to `out` in format `fmt` (one of FORMATS).

    `out` is a binary stream, or a text stream: over a binary one with an
    ASCII-compatible encoding (a file opened "w", sys.stdout) the rows go to its
    ``buffer`` after the text layer is flushed, else they are written as str. The
    options are `format_rows`'s. Call `header()` once, `write(rows)` per batch, and
    `footer()` at the end (only Zeek's log has a footer: its #close line).

    `write` hands `out` whole lines, about `WRITE_CHUNK` bytes at a time, each chunk a
    new bytes object that nothing else holds; batches written from several threads at
    once may interleave, chunk by chunk, but no line is cut.

    Raises UsageError for an unknown format or option, or an `out` without write()."""

    cdef object _out
    cdef int _mode
    cdef ftr_opts_t _o
    cdef Py_ssize_t _count
    cdef readonly str fmt
    """The format's name."""
    cdef readonly bint community_id
    """Whether lines carry the Community ID column."""
    cdef readonly int community_id_seed
    """The Community ID seed."""

    def __init__(self, out, fmt, *, community_id=None, community_id_seed=0):
        self._o = _options(fmt, community_id, community_id_seed)
        self._mode = _stream_mode(out)
        self._out = out
        self.fmt = fmt
        self.community_id = self._o.community_id
        self.community_id_seed = self._o.seed

    @property
    def count(self) -> int:
        """Rows written so far."""
        return self._count

    def header(self) -> None:
        """Write the format's header: Zeek's #separator ... #types lines, the CSV column
        names, or the table's heading (JSON lines have none)."""
        self._emit(self._header_text().encode("ascii"))

    def footer(self) -> None:
        """Write the format's footer: Zeek's #close line (the others have none)."""
        if self.fmt == "zeek":
            self._emit(f"#close\t{time.strftime('%Y-%m-%d-%H-%M-%S')}\n".encode("ascii"))

    def write(self, rows) -> int:
        """Write a batch of FLOW_DTYPE rows; returns how many (len(rows)).

        The whole batch is checked first, so a bad one writes nothing: UsageError as
        `format_rows` raises it, or for a closed stream. What the stream raises (OSError
        for a full disk) propagates, with the rows before the failing chunk written; a
        raw non-blocking stream that would block raises BlockingIOError."""
        cdef Py_buffer view
        cdef Py_ssize_t n
        cdef const ftr_flow_t *p = _rows_view(rows, &view, "RowWriter.write", &n)
        cdef Py_ssize_t i = 0, nxt
        cdef ftr_bytes_buf_t b
        b.obj = NULL
        try:
            _check_rows(p, n, False)
            self._check_open()
            while i < n:
                # a fresh bytes object a chunk, formatted in place and handed to out
                # as is: nothing to copy, and nothing out keeps can change under it
                ftr_bb_init(&b, _WRITE_CHUNK + FTR_STEP_MAX)
                nxt = _format_into(&b, &self._o, p, i, n, _WRITE_CHUNK)
                self._emit(ftr_bb_finish(&b))
                self._count += nxt - i
                i = nxt
        finally:
            ftr_bb_clear(&b)
            PyBuffer_Release(&view)
        return n

    def _header_text(self) -> str:
        if self.fmt == "table":
            return TABLE_HEADER
        if self.fmt == "csv":
            return ",".join(CSV_FIELDS if self.community_id else _CSV_FIELDS_BARE) + "\n"
        if self.fmt == "json":
            return ""
        extra = ("community_id",) if self.community_id else ()
        fields = "\t".join(ZEEK_FIELDS + extra)
        types = "\t".join(ZEEK_TYPES + (("string",) if self.community_id else ()))
        return ("#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n"
                f"#open\t{time.strftime('%Y-%m-%d-%H-%M-%S')}\n#fields\t{fields}\n#types\t{types}\n")

    def _check_open(self) -> None:
        if getattr(self._out, "closed", False) is True:
            raise UsageError("RowWriter: the output stream is closed")

    def _emit(self, bytes data) -> None:
        if not data:
            return
        self._check_open()
        out = self._out
        if self._mode == _OUT_BINARY:
            _write_all(out.write, data, isinstance(out, io.RawIOBase))
        elif self._mode == _OUT_TEXT_BUFFER:
            out.flush()                   # what was written as text goes first
            _write_all(out.buffer.write, data, isinstance(out.buffer, io.RawIOBase))
        else:
            out.write(data.decode("ascii"))


# ---- Community ID and uid on their own ----

def community_id(src, dst, sport, dport, proto=6, seed=0) -> str:
    """The Community ID v1 of a flow (https://github.com/corelight/community-id-spec):
    ``"1:"`` and the base64 SHA-1 of the seed and the 5-tuple, endpoints ordered so that
    both directions give the same ID.

    `src`, `dst`: addresses as str, packed bytes (4 or 16) or ipaddress objects, of one
    IP version; `sport`, `dport` 0..65535; `proto` 0..255 (6 TCP, 17 UDP, 132 SCTP);
    `seed` 0..65535. ICMP's mapping of type and code to ports (and its one-way types) is
    not done here: pass the ports the spec derives from them. Raises UsageError for a bad
    address, mixed versions or a number out of range."""
    cdef bytes a = _packed(src)
    cdef bytes b = _packed(dst)
    cdef char out[32]
    if len(a) != len(b):
        raise UsageError(f"src and dst must be the same IP version, got {src!r} and {dst!r}")
    cdef int sp = _uint(sport, "sport", _MAX_PORT), dp = _uint(dport, "dport", _MAX_PORT)
    cdef int pr = _uint(proto, "proto", _MAX_PROTO), sd = _uint(seed, "seed", _MAX_SEED)
    ftr_community_id(out, <const uint8_t *><char *>a, <const uint8_t *><char *>b, len(a), sp, dp, pr, sd)
    return out[:FTR_CID_LEN].decode("ascii")


def community_ids(rows, seed=0) -> np.ndarray:
    """The Community ID of each FLOW_DTYPE row (orig -> resp, TCP), as an array of
    dtype S30. Raises UsageError for `rows` that are not a 1-D, contiguous FLOW_DTYPE
    array, a family not 4 or 6 (naming the row), or a seed outside 0..65535."""
    cdef uint16_t sd = _uint(seed, "seed", _MAX_SEED)
    return _per_row(rows, "community_ids", FTR_CID_LEN, sd, True)


def uids(rows) -> np.ndarray:
    """The uid of each FLOW_DTYPE row (see `uid`), as an array of dtype S18. Raises
    UsageError as `community_ids` does."""
    return _per_row(rows, "uids", FTR_UID_LEN, 0, False)


def uid(orig_h, orig_p, resp_h, resp_p, start_us) -> str:
    """The uid `format_rows` writes for a connection: "C" and 17 base62 digits of a
    ~100-bit hash of (family, orig_h, orig_p, resp_h, resp_p, start_us) -- the connection
    and the microsecond of its first packet, not its place in the output. The same
    connection always gets the same uid (any order of rows, any number of workers); two
    different ones share a uid only by a hash collision (about n^2 / 2^101 for n
    connections). Raises UsageError for a bad address, mixed versions, or a port or
    start_us out of range."""
    cdef bytes a = _packed(orig_h)
    cdef bytes b = _packed(resp_h)
    cdef ftr_flow_t r
    cdef char out[32]
    if len(a) != len(b):
        raise UsageError(f"orig_h and resp_h must be the same IP version, got {orig_h!r} and {resp_h!r}")
    start = _as_int(start_us, "start_us", "an integer in 0..2^64-1")
    if not 0 <= start < 1 << 64:
        raise UsageError(f"start_us must be an integer in 0..2^64-1, got {start_us!r}")
    memset(&r, 0, sizeof(r))
    r.family = 4 if len(a) == 4 else 6
    memcpy(r.orig_h, <char *>a, len(a))
    memcpy(r.resp_h, <char *>b, len(b))
    r.orig_p = _uint(orig_p, "orig_p", _MAX_PORT)
    r.resp_p = _uint(resp_p, "resp_p", _MAX_PORT)
    r.start_us = start
    ftr_uid(out, &r)
    return out[:FTR_UID_LEN].decode("ascii")


cdef _per_row(rows, str what, int width, uint16_t seed, bint cid):
    cdef Py_buffer view
    cdef Py_ssize_t n, i
    cdef const ftr_flow_t *p = _rows_view(rows, &view, what, &n)
    cdef uint8_t[::1] dst
    cdef char *q
    try:
        _check_rows(p, n, True)
        res = np.zeros(n, dtype=f"S{width}")
        if n == 0:
            return res
        dst = res.view(np.uint8)
        q = <char *>&dst[0]
        with nogil:
            for i in range(n):
                if cid:
                    ftr_row_community_id(q + i * width, &p[i], seed)
                else:
                    ftr_uid(q + i * width, &p[i])
        return res
    finally:
        PyBuffer_Release(&view)
