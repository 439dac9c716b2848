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


def is_command(argv: Sequence[str], orig_argv: Sequence[str]) -> bool:
    """Whether a process with this ``sys.argv`` and ``sys.orig_argv`` is the `fasttcp`
    command (its console script, or ``python -m fasttcp``) rather than a program that
    imports the library."""
    if argv and os.path.basename(argv[0]) == "fasttcp":
        return True
    i = 1
    while i < len(orig_argv):
        arg = orig_argv[i]
        if arg.startswith("-m"):      # the interpreter's options end at -m MODULE
            module = arg[2:] or (orig_argv[i + 1] if i + 1 < len(orig_argv) else "")
            return module == "fasttcp"
        if arg.startswith("-c") or arg == "-" or not arg.startswith("-"):
            return False              # -c CODE, stdin or a script: not the command
        i += 2 if arg in ("-X", "-W") else 1      # the options that take a separate value
    return False


def one_blas_thread() -> bool:
    """Set ``OPENBLAS_NUM_THREADS=1`` when this process is the command, numpy is not yet
    loaded and the variable is unset. Returns whether it set it."""
    if "numpy" in sys.modules or "OPENBLAS_NUM_THREADS" in os.environ:
        return False
    if not is_command(getattr(sys, "argv", []), getattr(sys, "orig_argv", [])):
        return False
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    return True


one_blas_thread()
