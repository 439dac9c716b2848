"""Several capture files read one after another as one capture (a rotated trace:
``tcpdump -C``/``-G`` files), batch by batch."""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from fasttcp.capture.reader import CaptureBatch, CaptureError, CaptureReader, read_pcap

__all__ = ["CaptureChain"]


class CaptureChain:
    """Iterate the batches of `paths` in order. The first capture may be given as a
    `CaptureReader` already open on it (a pipe can be opened only once); the others are
    opened when reached, so any number of files costs one descriptor at a time.

    A capture that is corrupt part-way, or a later file that cannot be read, ends the
    iteration and is kept in `error` (what was read before stays valid), as a corrupt
    record ends a single capture."""

    def __init__(self, paths: Sequence[str | Path | CaptureReader], batch_bytes: int) -> None:
        self.paths = list(paths)
        self.batch_bytes = batch_bytes
        self.bytes_done = 0              # file bytes consumed, all files so far
        self.total_bytes = 0             # sizes of the files opened so far (for progress)
        self.truncated_tail = 0
        self.error: str | None = None
        self._reader: CaptureReader | None = None

    @property
    def names(self) -> list[str]:
        return [str(p.path if isinstance(p, CaptureReader) else p) for p in self.paths]

    def _open(self, p: str | Path | CaptureReader) -> CaptureReader:
        return p if isinstance(p, CaptureReader) else read_pcap(p, batch_bytes=self.batch_bytes)

    def __iter__(self) -> Iterator[CaptureBatch]:
        for p in self.paths:
            try:
                reader = self._open(p)
            except (OSError, CaptureError) as e:
                if p is self.paths[0]:
                    raise                # nothing read yet: the capture cannot be read at all
                self.error = f"{p}: {e.strerror if isinstance(e, OSError) else e}"
                return
            self._reader = reader
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
                    yield batch
            self.truncated_tail += reader.stats.truncated_tail
            self._reader = None

    def close(self) -> None:
        """Close the file being read (an iteration stopped early)."""
        for p in [self._reader, *self.paths]:
            if isinstance(p, CaptureReader):
                p.close()


def regular_files(paths: Sequence[str | Path | CaptureReader]) -> bool:
    """True if every capture is a regular file: N workers can each read it (a pipe,
    a FIFO or a terminal can be read once)."""
    import stat

    for p in paths:
        try:
            st = os.stat(p.path if isinstance(p, CaptureReader) else p)
        except OSError:
            return False
        if not stat.S_ISREG(st.st_mode):
            return False
    return True
