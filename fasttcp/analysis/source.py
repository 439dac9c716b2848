"""Several capture files read one after another as one capture (a rotated trace:
``tcpdump -C``/``-G`` files), batch by batch."""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from fasttcp.capture.mapped import FaultTally
from fasttcp.capture.reader import CaptureBatch, CaptureError, CaptureReader, cut_message, read_pcap
from fasttcp.errors import UsageError
from fasttcp.wire.rss import RssShards

__all__ = ["CaptureChain"]


class CaptureChain:
    """Iterate the batches of `paths` in order. The first capture may be given as a
    `CaptureReader` already open on it (a pipe can be opened only once); the others are
    opened when reached, so any number of files costs one descriptor at a time.

    With ``buffers=k`` (see `read_pcap`) a batch is valid until k more are read. A
    capture given open keeps its own reader's buffers: UsageError if that reader
    reuses fewer than k (its batches would be overwritten while still in use). Files
    opened here get `fill_buffers` more, for chunks read ahead (`fill_ahead`), and
    compute each packet's shard as they scan it when given `shards` (an `RssShards`;
    `sharded` says whether the batch just yielded carries them).

    A capture that is corrupt part-way, or a later file that cannot be read, ends the
    iteration and is kept in `error` (what was read before stays valid), as a corrupt
    record ends a single capture."""

    def __init__(self, paths: Sequence[str | Path | CaptureReader], batch_bytes: int, buffers: int = 0,
                 fill_buffers: int = 0, shards: RssShards | None = None) -> None:
        self.paths = list(paths)
        for p in self.paths:
            if isinstance(p, CaptureReader) and 0 < p.buffers < buffers:
                raise UsageError(f"{p.path}: a CaptureReader read here needs buffers=0 or at least {buffers} "
                                 f"(a batch is tracked while the next is read), got buffers={p.buffers}")
        self.batch_bytes = batch_bytes
        self.buffers = buffers
        self.fill_buffers = fill_buffers
        self.shards = shards
        self.bytes_done = 0              # file bytes consumed, all files so far
        self.total_bytes = 0             # sizes of the files opened so far (for progress)
        self.truncated_tail = 0
        self.truncated: list[tuple[str, int]] = []     # (capture, bytes) of each cut-short last record
        self.error: str | None = None
        #: called with each batch before it is yielded (the report counts packet times)
        self.on_batch: Callable[[CaptureBatch], None] | None = None
        self._reader: CaptureReader | None = None
        # (capture, fault tally) of every file read, for `check_unchanged`: the tallies
        # only, not the readers, whose last chunk would stay in memory with them
        self._tallies: list[tuple[str, FaultTally]] = []
        self._yielded = 0                # batches yielded, all files so far
        self._reader_first = 0           # of those, the ones before the current file's

    @property
    def names(self) -> list[str]:
        return [str(p.path if isinstance(p, CaptureReader) else p) for p in self.paths]

    def _open(self, p: str | Path | CaptureReader) -> CaptureReader:
        return p if isinstance(p, CaptureReader) else read_pcap(
            p, batch_bytes=self.batch_bytes, buffers=self.buffers + self.fill_buffers if self.buffers else 0,
            shards=self.shards)

    @property
    def sharded(self) -> bool:
        """The batches of the capture being read carry the shards of `shards` (a capture
        given open may have been opened with another sharding, or none)."""
        reader = self._reader
        return self.shards is not None and reader is not None and reader.shards == self.shards

    def __iter__(self) -> Iterator[CaptureBatch]:
        for p in self.paths:
            try:
                reader = self._open(p)
            except (OSError, CaptureError) as e:
                if p is self.paths[0]:
                    raise                # nothing read yet: the capture cannot be read at all
                self.error = f"{p}: {e.strerror if isinstance(e, OSError) else e}"
                return
            self._reader_first = self._yielded
            self._reader = reader
            if reader.fault_tally is not None:
                self._tallies.append((str(reader.path), reader.fault_tally))
            base = self.bytes_done
            self.total_bytes += reader.size
            with reader:
                while True:
                    try:
                        batch = reader.read_batch()
                    except CaptureError as e:
                        self.error = str(e)
                        self.bytes_done = base + reader.stats.bytes
                        return
                    self.bytes_done = base + reader.stats.bytes
                    if batch is None:
                        break
                    if self.on_batch is not None:
                        self.on_batch(batch)
                    self._yielded += 1
                    yield batch
            if reader.stats.truncated_tail:
                self.truncated_tail += reader.stats.truncated_tail
                self.truncated.append((str(reader.path), reader.stats.truncated_tail))
            self._reader = None

    def check_unchanged(self) -> None:
        """Set `error` (unless already set) if a file was cut shorter while its mapped
        chunks were read -- by the reader or, later, by whoever tracked its batches: what
        was read past the cut was zeros (`CaptureReader.fault_tally`)."""
        if self.error is None:
            for path, tally in self._tallies:
                message = cut_message(tally)
                if message is not None:
                    self.error = f"{path}: {message}"
                    return

    def release(self, batches: int) -> None:
        """The first `batches` batches yielded are no longer used (`CaptureReader.release`)."""
        reader, first = self._reader, self._reader_first
        if reader is not None and batches > first:
            reader.release(batches - first)

    def fill_ahead(self, limit: int) -> bool:
        """Read ahead into the current file's released buffers, in the calling thread
        (`CaptureReader.fill_ahead`); False if there was nothing to do."""
        reader = self._reader
        return reader is not None and reader.fill_ahead(limit)

    def close(self) -> None:
        """Close the file being read (an iteration stopped early)."""
        for p in [self._reader, *self.paths]:
            if isinstance(p, CaptureReader):
                p.close()
