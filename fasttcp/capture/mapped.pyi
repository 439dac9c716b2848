"""Type stubs for fasttcp.capture.mapped (capture chunks mapped from the page cache)."""
from typing_extensions import Buffer, disjoint_base

__all__ = ["FileMapping", "FaultTally", "PAGE_BYTES", "guard"]

PAGE_BYTES: int

def guard() -> bool:
    """Put the SIGBUS guard back in front if another handler replaced it; True if in place."""

@disjoint_base
class FaultTally:
    """Pages of a group of mappings found past their file's end and mapped as zeros."""
    shrunk: bool
    @property
    def pages(self) -> int: ...

@disjoint_base
class FileMapping(Buffer):
    """`length` bytes of the open file `fd` from `offset`, mapped privately, read-write;
    faults past the file's end are read as zeros and counted in `tally`."""
    def __init__(self, fd: int, offset: int, length: int, tally: FaultTally) -> None: ...
    @property
    def tally(self) -> FaultTally: ...
    @property
    def offset(self) -> int: ...
    def __len__(self) -> int: ...
    def populate(self, start: int, stop: int) -> bool:
        """Fill the page tables of bytes [start, stop) now, without the GIL; False if not done."""
