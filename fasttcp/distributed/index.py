"""Index: cut a capture file into record-aligned chunks (the first step of a
distributed run).

A pcap cannot be cut at arbitrary bytes -- a record's length lives in its header --
so the C record scanner (`fasttcp.read_pcap`) walks the file once, a chunk's worth
of bytes at a time, and each batch it returns is a chunk: ``[start, end)`` file bytes
holding whole records. The walk also finds what one process would stop at: a corrupt
record (the file's chunks end before it, its message is kept) and a cut-short last
record.

Only a pcap larger than a chunk is indexed: a smaller one is one chunk, which its
split task reads to the end (finding a corrupt or cut-short record itself), so the
common case -- rotated files of a chunk or less -- reads each byte once.

pcapng: a chunk must be read with the section and interface blocks in force at its
start (byte order, each interface's link type and timestamp resolution), which may
sit anywhere before it. A pcapng file is therefore one chunk, read whole by one split
task -- in batches, so a task's memory is bounded by the batch, but its work is not
divided. Rotated captures (many files) spread anyway; one huge pcapng file does not
(convert it with ``editcap -F pcap`` to divide it).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from fasttcp.capture.reader import CaptureError, read_pcap
from fasttcp.capture.scanner import MAX_PACKETS

__all__ = ["Chunk", "FileIndex", "index_file", "PCAP_HEADER_BYTES"]

#: the pcap file header (magic, version, thiszone, sigfigs, snaplen, linktype)
PCAP_HEADER_BYTES = 24
#: the smallest pcap record: a 16-byte header with no data
MIN_RECORD_BYTES = 16


@dataclass(frozen=True)
class Chunk:
    """Record-aligned bytes ``[start, end)`` of file number `file_no` of a run (its
    `seq`-th chunk), `packets` records. A `whole` chunk is a file not indexed (a pcap
    no larger than a chunk, or a pcapng): its split task reads it to the end and
    finds what the index would have (a corrupt or cut-short last record)."""

    path: str
    file_no: int
    seq: int
    start: int
    end: int
    packets: int
    whole: bool = False


@dataclass
class FileIndex:
    """One file's chunks, and what reading it ended with."""

    path: str
    format: str
    pcap_header: tuple[bool, bool, int, int] | None     # (big-endian, nanosecond, linktype, snaplen)
    chunks: list[Chunk] = field(default_factory=list)
    bytes: int = 0                    # file bytes consumed (as `CaptureReader.stats.bytes`)
    truncated_tail: int = 0
    error: str | None = None          # a corrupt record: the chunks stop before it


def index_file(path: str, file_no: int, chunk_bytes: int) -> FileIndex:
    """Cut the pcap at `path` into chunks of about `chunk_bytes` bytes of whole
    records. Raises what `read_pcap` raises for a file that cannot be opened or has no
    capture header (the client checks those before any work starts); a corrupt
    record later is kept in ``error``, as `fasttcp.analyze` keeps it in
    ``summary.error``."""
    reader = read_pcap(path, batch_bytes=chunk_bytes, batch_packets=min(MAX_PACKETS, chunk_bytes // MIN_RECORD_BYTES),
                       buffers=1)
    with reader:
        if reader.format != "pcap":
            raise CaptureError("index_file cuts pcap files only (a pcapng file is one chunk)", path=path)
        index = FileIndex(path, reader.format, (reader.big_endian, reader.nanosecond, reader.linktypes[0],
                                                reader.snaplen))
        start = PCAP_HEADER_BYTES
        while True:
            try:
                batch = reader.read_batch()
            except CaptureError as e:
                index.error = str(e)
                break
            if batch is None:
                break
            index.chunks.append(Chunk(path, file_no, len(index.chunks), start, reader.stats.bytes, len(batch)))
            start = reader.stats.bytes
        index.bytes = reader.stats.bytes
        index.truncated_tail = reader.stats.truncated_tail
    return index
