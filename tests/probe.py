"""Run hostile calls through the public API in a child process, so that a crash or a hang
fails one test instead of killing pytest.

A probe is a few lines of Python that end by calling ``outcome(...)`` with what happened;
`expect_raises` and `expect_ok` wrap the common shapes:

    expect_raises("fasttcp.Endpoint(['198.18.0.1']).unlisten(70000)", "UsageError")

The child prints one JSON line: the exception's class name and message, or the value the
probe returned. A signal (SIGSEGV, SIGABRT), a timeout, a non-zero exit or a stray line
on stdout is a failure with the child's stderr attached.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = float(os.environ.get("FASTTCP_PROBE_TIMEOUT", "60"))

_PRELUDE = """\
import contextlib, gc, json, sys, threading
import numpy as np
import fasttcp

def outcome(value=None):
    print(json.dumps({{"kind": "ok", "value": repr(value)}}), flush=True)
    sys.exit(0)

@contextlib.contextmanager
def rewriting(step):
    # another thread calling step() over and over while the block runs: a caller
    # rewriting its arrays during the calls in it
    stop = []
    def loop():
        while not stop:
            step()
    th = threading.Thread(target=loop)
    th.start()
    try:
        yield
    finally:
        stop.append(True)
        th.join()

def _run():
{body}

try:
    _run()
    outcome(None)
except BaseException as exc:
    if isinstance(exc, SystemExit):
        raise
    print(json.dumps({{"kind": "raised", "type": type(exc).__name__,
                      "mro": [c.__name__ for c in type(exc).__mro__], "message": str(exc)}}), flush=True)
    sys.exit(0)
"""


# Probe code sweeping one integer argument over the values that break C conversions:
# ``sweep(fn)`` calls fn(v) for each and lists "ok" or the name of the fasttcp exception.
INTEGER_SWEEP = """
VALUES = [-1, 0, 1, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64, -2**63]
def sweep(fn):
    out = []
    for v in VALUES:
        try:
            fn(v)
            out.append("ok")
        except fasttcp.FastTcpError as e:       # UsageError, MalformedPacket, CaptureError
            out.append(type(e).__name__)
    return out
"""


@dataclass
class Outcome:
    """What a probe did: ``kind`` is "ok" (with ``value``) or "raised" (with ``type``,
    ``mro`` and ``message``)."""

    kind: str
    value: str | None = None
    type: str | None = None
    mro: tuple[str, ...] = ()
    message: str = ""


def run_probe(body: str, *, timeout: float = TIMEOUT) -> Outcome:
    """Run `body` (statements; may call ``outcome(value)``) in a fresh interpreter.
    Fails the calling test on a crash, a hang or anything but one outcome line."""
    import pytest

    code = _PRELUDE.format(body=textwrap.indent(textwrap.dedent(body).strip() or "pass", "    "))
    env = dict(os.environ, PYTHONFAULTHANDLER="1")
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                              cwd=ROOT, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail(f"probe hung for {timeout} s:\n{textwrap.dedent(body)}")
    if proc.returncode != 0:
        how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit status {proc.returncode}"
        pytest.fail(f"probe died ({how}):\n{textwrap.dedent(body)}\n--- stderr ---\n{proc.stderr[-4000:]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if len(lines) != 1:
        pytest.fail(f"probe printed {len(lines)} outcome lines:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    d = json.loads(lines[0])
    if d["kind"] == "ok":
        return Outcome("ok", value=d["value"])
    return Outcome("raised", type=d["type"], mro=tuple(d["mro"]), message=d["message"])


def expect_raises(body: str, exc: str, match: str | None = None) -> Outcome:
    """The probe must raise `exc` (a class name; a subclass counts), its message matching
    the regular expression `match` if given. A probe that returns is silent acceptance."""
    import re

    import pytest

    out = run_probe(body)
    if out.kind != "raised":
        pytest.fail(f"accepted silently (returned {out.value}), expected {exc}:\n{textwrap.dedent(body)}")
    if exc not in out.mro:
        pytest.fail(f"raised {out.type}({out.message!r}), expected {exc}:\n{textwrap.dedent(body)}")
    if match is not None and not re.search(match, out.message):
        pytest.fail(f"{out.type} message {out.message!r} does not match {match!r}")
    return out


def expect_ok(body: str) -> str | None:
    """The probe must run to its ``outcome(value)`` (or its end); returns repr(value)."""
    import pytest

    out = run_probe(body)
    if out.kind != "ok":
        pytest.fail(f"raised {out.type}({out.message!r}):\n{textwrap.dedent(body)}")
    return out.value
