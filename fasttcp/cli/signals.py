"""SIGINT and SIGTERM as a flag the run polls, for the commands that end cleanly on them
(`fasttcp analyze --interface`, `fasttcp load`).

Why not KeyboardInterrupt: Python raises it at whatever bytecode runs next, and that
may be Python code called from C that clears errors -- numpy comparing an array with an
IntEnum member looks up special attributes through the metaclass's Python
``__getattr__`` and drops what it raises, so the Ctrl-C is lost and the run goes on.
A handler that only sets a flag cannot be lost: the run checks it every turn."""
from __future__ import annotations

import signal
import threading
from typing import Any, Self

__all__ = ["StopSignals"]


class StopSignals:
    """While entered (main thread only), SIGINT and SIGTERM set `stop` and the first
    one is remembered in `received`; the previous handlers come back on exit.

    With ``second_raises``, a second signal of either kind raises KeyboardInterrupt at
    once, out of whatever the run is blocked in (a send the link holds up): the way out
    when the flag is not being looked at. The ``with`` blocks it unwinds through still
    clean up, and `received` still says what the first one was (the exit status)."""

    def __init__(self, *, second_raises: bool = False) -> None:
        self.stop = threading.Event()
        self.received: int | None = None
        self.second_raises = second_raises
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is None:
            self.received = signum
        elif self.second_raises:
            raise KeyboardInterrupt
        self.stop.set()

    def __enter__(self) -> Self:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()
