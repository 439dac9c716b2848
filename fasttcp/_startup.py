"""What the `fasttcp` command sets up before numpy loads (imported first by the package).

The command never calls BLAS, but numpy's OpenBLAS starts a thread per CPU when it is
loaded, and each spins on its empty queue for 2**28 cycles (about 0.13 s at 2 GHz,
OpenBLAS's THREAD_TIMEOUT) before it sleeps: CPU time taken from every core at each
start of the command and of each worker process it starts. Measured on 2 CPUs, a
1-worker ``fasttcp analyze`` of the short-connection bench capture used 0.44 s of CPU
against 0.32 s with one BLAS thread (medians of 10 paired runs; the wall time was the
same, the spinning threads yield to runnable ones). So the command, and the processes
it starts, ask for one BLAS thread (no extra one) unless the user chose a count; a
program that imports fasttcp keeps numpy's default.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Sequence

__all__ = ["is_command", "one_blas_thread"]

#: what the console script pip writes for `fasttcp` runs (its entry point)
_ENTRY = b"fasttcp.cli.main"
#: the interpreter's options that take their value as the next argument when it is not
#: attached (`-X dev`, `-W error`, `--check-hash-based-pycs always`)
_SHORT_WITH_VALUE = "XW"
_LONG_WITH_VALUE = ("--check-hash-based-pycs",)
#: how a user chooses OpenBLAS's thread count (OpenBLAS reads them in this order)
_BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")


def _script_runs_command(path: str) -> bool:
    """Whether the script at `path` calls the command's entry point (the console script
    pip installs does; a user's own program that happens to be called fasttcp does not)."""
    try:
        with open(path, "rb") as f:
            return _ENTRY in f.read(4096)
    except (OSError, ValueError):
        return False


def _module_run(orig_argv: Sequence[str]) -> str | None:
    """The module an interpreter command line runs with -m, or None (a script, -c, stdin)."""
    i = 1
    while i < len(orig_argv):
        arg = orig_argv[i]
        if not isinstance(arg, str) or arg in ("-", "--") or not arg.startswith("-"):
            return None                         # a script, stdin, or the end of the options
        if arg.startswith("--"):
            i += 2 if arg in _LONG_WITH_VALUE else 1
            continue
        for j in range(1, len(arg)):            # a cluster of one-letter options: -B, -OOm, -Im
            ch = arg[j]
            if ch == "m":
                rest = arg[j + 1:]
                if rest:
                    return rest
                return orig_argv[i + 1] if i + 1 < len(orig_argv) and isinstance(orig_argv[i + 1], str) else None
            if ch == "c":
                return None
            if ch in _SHORT_WITH_VALUE:
                if j + 1 == len(arg):
                    i += 1                      # its value is the next argument
                break
        i += 1
    return None


def is_command(argv: Sequence[str], orig_argv: Sequence[str]) -> bool:
    """Whether a process with this ``sys.argv`` and ``sys.orig_argv`` is the `fasttcp`
    command: its console script (a script named fasttcp that calls the command's entry
    point), or ``python -m fasttcp``, rather than a program that imports the library."""
    if argv and isinstance(argv[0], str) and os.path.basename(argv[0]) == "fasttcp" \
            and _script_runs_command(argv[0]):
        return True
    return _module_run(orig_argv) in ("fasttcp", "fasttcp.__main__")


def one_blas_thread() -> bool:
    """Set ``OPENBLAS_NUM_THREADS=1`` when this process is the command, numpy is not yet
    loaded (after, it would change nothing) and the user set no thread count. Returns
    whether it set it."""
    if "numpy" in sys.modules or any(v in os.environ for v in _BLAS_THREAD_VARIABLES):
        return False
    if not is_command(getattr(sys, "argv", None) or [], getattr(sys, "orig_argv", None) or []):
        return False
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    return True


one_blas_thread()
