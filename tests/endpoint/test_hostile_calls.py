"""Hostile calls on the endpoint's public surface: Endpoint, Connection, Event and
fasttcp.pipe. Every call answers with a clear exception (UsageError or the right
subclass) or a counted verdict -- never a crash, a hang, silent acceptance of nonsense
or unbounded growth. Each probe runs in a child process (tests/probe.py), so a crash
fails one test instead of pytest; the lifetime and stale-handle tests cannot crash and
run in-process.
"""
from __future__ import annotations

import gc
import re
import sys
import tokenize
import weakref
from pathlib import Path

import numpy as np
import pytest

import fasttcp
from fasttcp import ConnectionStateError, Endpoint, Flags, State, UsageError
from tests.probe import expect_ok, expect_raises

ROOT = Path(__file__).resolve().parents[2]

# a ready endpoint (and a peer) for probes to misuse
EP = """
ep = fasttcp.Endpoint(['198.18.0.1'], capacity=64, seed=1)
peer = fasttcp.Endpoint(['198.18.0.2'], capacity=64, seed=2)
peer.listen(80)
"""

# Evaluates each expression among the caller's names and reports, per expression, the
# exception class and message (or "ok"): a probe that crashes or hangs on any fails.
CALLS_HELPER = """
def each(calls):
    names = sys._getframe(1).f_locals
    seen = {}
    for text in calls:
        try:
            eval(text, globals(), names)
            seen[text] = ("ok", "")
        except Exception as exc:
            seen[text] = (type(exc).__name__, str(exc))
    return seen
"""

# every public entry point of an Endpoint called on `e`
ENDPOINT_CALLS = [
    "e.poll(1.0)", "e.poll_batch(1.0)", "e.receive(b'x' * 40, 1.0)",
    "e.receive_batch(b'x' * 40, [0], [40], 1.0)", "e.next_deadline()",
    "fasttcp.pipe(e, good, 1.0)", "fasttcp.pipe(good, e, 1.0)",
    "e.connect_batch(fasttcp.make_keys([('198.18.0.1', 1000, '198.18.0.2', 80)]), 1.0)",
    "e.close_batch([0], 1.0)", "e.accept()", "e.accept_batch()", "e.listen(80)", "e.unlisten(80)",
    "e.capacity", "len(e)", "e.memory_bytes", "e.stats", "e.pending_transmit", "e.timeouts",
    "e.connect('198.18.0.2', 80, now=1.0)", "e.transmit()", "e.transmit_batch()", "e.events()",
    "e.events_batch()", "e.clear_events()",
]


def _all_refused(seen: dict, exc: str, match: str) -> None:
    bad = {call: got for call, got in seen.items() if got[0] != exc or not re.search(match, got[1])}
    assert not bad, f"expected {exc} matching {match!r}: {bad}"


def _outcomes(body: str) -> dict:
    import ast

    value = expect_ok(CALLS_HELPER + body)
    return ast.literal_eval(value)


# ---- negative indexes under wraparound=False ----


def _negative_constant_subscripts(path: Path) -> list[str]:
    """`x[-1]`, `x[:-2]`, `x[-3:]` in a .pyx/.pxi/.pxd: strings and comments skipped,
    list displays (`[-1, 2]`) told from subscripts by what precedes the bracket."""
    hits = []
    toks = [t for t in tokenize.generate_tokens(path.open().readline)
            if t.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                              tokenize.STRING)]
    stack: list[bool] = []                  # per open bracket: is it a subscript?
    for i, t in enumerate(toks):
        if t.string in "([{" and t.type == tokenize.OP:
            prev = toks[i - 1] if i else None
            subscript = t.string == "[" and prev is not None and (
                (prev.type == tokenize.NAME and prev.string not in ("in", "return", "and", "or", "not", "yield",
                                                                    "else", "if", "for", "cdef", "is"))
                or prev.string in (")", "]"))
            stack.append(subscript)
        elif t.string in ")]}" and t.type == tokenize.OP:
            if stack:
                stack.pop()
        elif (t.string == "-" and stack and stack[-1] and i + 1 < len(toks) and toks[i + 1].type == tokenize.NUMBER
              and toks[i - 1].string in ("[", ":", ",")):
            hits.append(f"{path.name}:{t.start[0]}: {t.line.strip()}")
    return hits


def test_no_negative_constant_index_in_code_compiled_without_wraparound(tmp_path):
    """setup.py compiles every module with wraparound=False: `touched[-1]` in the
    endpoint read the slot before a list's items whenever one call produced events for
    two or more held connections. No negative constant subscript anywhere."""
    sources = sorted(p for ext in ("pyx", "pxi", "pxd") for p in (ROOT / "fasttcp").glob(f"*/*.{ext}"))
    assert len(sources) > 10
    hits = [h for p in sources for h in _negative_constant_subscripts(p)]
    assert not hits, "\n".join(hits)
    # the scanner finds what it is for, and not list displays or docstrings
    probe = tmp_path / "probe.pyx"
    probe.write_text('cdef f(list touched):\n    """[-2^31, 2^31)"""\n    x = [-1, 2]  # a[-1]\n'
                     '    return touched[-1] is None and touched[1:-2] and (x)[-3] and touched[i - 1]\n')
    assert [h.split(": ", 1)[0][-2:] for h in _negative_constant_subscripts(probe)] == [":4"] * 3


def test_one_call_with_events_for_several_held_connections():
    """The path that read touched[-1]: one poll() retransmits the SYNs of three held
    connections, each flushed once."""
    out = expect_ok(EP + """
cs = [ep.connect('198.18.0.2', 80, local_port=5000 + i, now=1.0) for i in range(3)]
for c in cs:
    c.send(b'queued until ESTABLISHED')
ep.transmit(); ep.events()
ep.poll(2.5)
sent = [fasttcp.parse(p) for p in ep.transmit()]
outcome((sorted(s.src_port for s in sent), [e.cause.name for e in ep.events()], [c.pending for c in cs]))
""")
    ports, causes, pending = eval(out)
    assert ports == [5000, 5001, 5002] and causes == ["RETRANSMIT"] * 3 and pending == [24] * 3


# ---- stale handles ----


def test_a_stale_handle_never_acts_on_the_connection_that_reused_its_record():
    """A handle compared only the record's 8-bit generation: after 256 reuses of its
    record, abort() on an old closed connection reset an unrelated live one. The
    4-tuple is compared too."""
    ep = Endpoint(["198.18.0.1"], capacity=1, seed=1)
    old = ep.connect("198.18.0.2", 80, local_port=1000, now=1.0)
    # its end is reported to the batch path only (the handle never sees it)
    ep.close_batch([old.id], 1.0)
    ep.clear_events()
    assert len(ep) == 0
    ep.transmit()
    for i in range(300):
        key = fasttcp.make_keys([("198.18.0.1", 2000 + i, "198.18.0.3", 443)])
        assert ep.connect_batch(key, 1.0)[0] == old.id          # the same record, reused
        with pytest.raises(ConnectionStateError, match="closed connection"):
            old.abort()
        assert old.state is State.CLOSED and old.tcb is None
        assert len(ep) == 1 and [fasttcp.parse(p).flags for p in ep.transmit()] == [Flags.SYN]
        ep.close_batch([old.id], 1.0)
        ep.clear_events()
        assert len(ep) == 0


def test_a_reused_record_is_not_handed_to_the_handle_of_its_old_connection():
    """Events of a new connection in a reused record went to the old handle when the
    generations matched, and accept() returned the old handle with the old 4-tuple."""
    server = Endpoint(["198.18.0.2"], capacity=1, seed=2)
    server.listen(80)

    def syn(port, seq=7):
        return fasttcp.build("198.18.0.9", "198.18.0.2", port, 80, seq=seq, flags=Flags.SYN)

    def rst(port, seq=8):
        return fasttcp.build("198.18.0.9", "198.18.0.2", port, 80, seq=seq, flags=Flags.RST)

    def batch(*packets):
        buf = b"".join(packets)
        lens = [len(p) for p in packets]
        server.receive_batch(buf, np.cumsum([0] + lens[:-1]), lens, 1.0)

    assert server.receive(syn(1000), 1.0) is None              # single path: a held handle
    old = server.events()[0].connection
    batch(rst(1000))                                           # its end, to the batch path only
    gen = int(server.events_batch()["gen"][-1])
    port = 2000
    while True:                                                # reuse until the next one has its generation
        batch(syn(port))
        new_gen = int(server.events_batch()["gen"][-1])
        batch(rst(port))
        server.events_batch()
        port += 1
        if (new_gen + 1) % 256 == gen:
            break
    server.transmit()
    assert server.receive(syn(port, seq=100), 1.0) is None
    (ev,) = server.events()
    assert ev.connection is not old and ev.connection.key[3] == port
    synack = fasttcp.parse(server.transmit()[0])
    ack = fasttcp.build("198.18.0.9", "198.18.0.2", port, 80, seq=101, ack=synack.seq + 1, flags=Flags.ACK)
    assert server.receive(ack, 1.0) is None
    accepted = server.accept()
    assert accepted is ev.connection and accepted.key[3] == port and accepted.state is State.ESTABLISHED
    assert old.state is State.CLOSED


# ---- connect_batch keys ----

KEY_DAMAGE = {
    "family 0": "k['family'][2] = 0",
    "family 9": "k['family'][2] = 9",
    "pad byte": "k['_pad'][2, 1] = 1",
    "IPv4 local padding": "k['laddr'][2, 4] = 1",
    "IPv4 remote padding": "k['raddr'][2, 15] = 7",
    "local port 0": "k['lport'][2] = 0",
    "remote port 0": "k['rport'][2] = 0",
    "multicast remote": "k['raddr'][2, :4] = (224, 0, 0, 1)",
    "unspecified remote": "k['raddr'][2, :4] = 0",
    "broadcast remote": "k['raddr'][2, :4] = 255",
}


@pytest.mark.parametrize("damage", list(KEY_DAMAGE.values()), ids=list(KEY_DAMAGE))
def test_connect_batch_refuses_malformed_keys_naming_the_first_bad_row(damage):
    """connect_batch took keys with family 0 or 9 (0 marks a free record), IPv4 keys
    with non-zero padding and port 0 (which connect() refuses). The whole call is
    refused, naming the row, and nothing is opened."""
    out = expect_ok(EP + f"""
k = fasttcp.make_keys([('198.18.0.1', 1000 + i, '198.18.0.2', 80) for i in range(5)])
{damage}
try:
    ep.connect_batch(k, 1.0)
    outcome('accepted')
except fasttcp.UsageError as exc:
    outcome((str(exc), len(ep), ep.transmit(), len(ep.events_batch())))
""")
    assert out != "'accepted'"
    msg, opened, sent, events = eval(out)
    assert msg.startswith("keys[2]: ") and (opened, sent, events) == (0, [], 0), msg


def test_connect_batch_refuses_arrays_that_are_not_1d_key_arrays():
    seen = _outcomes(EP + """
k = fasttcp.make_keys([('198.18.0.1', 1000, '198.18.0.2', 80)])
outcome(each(['ep.connect_batch(k.reshape(1, 1), 1.0)', 'ep.connect_batch(k.view(np.uint8), 1.0)',
              'ep.connect_batch([k[0]], 1.0)', 'ep.connect_batch(None, 1.0)', 'ep.connect_batch(k, -1.0)']))
""")
    _all_refused(seen, "UsageError", "KEY_DTYPE|now must be")


def test_connect_batch_takes_keys_make_keys_made_and_reports_the_rest_per_row():
    out = expect_ok(EP + """
k = fasttcp.make_keys([('198.18.0.1', 1000, '198.18.0.2', 80), ('198.18.0.1', 1000, '198.18.0.2', 80),
                       ('198.18.0.7', 1000, '198.18.0.2', 80), ('2001:db8::1', 1000, '2001:db8::2', 80)])
k2 = np.zeros(8, fasttcp.KEY_DTYPE)
k2[::2] = k
k = k2[::2]                            # not contiguous: copied
outcome(ep.connect_batch(k, 1.0).tolist())
""")
    assert out == "[0, -2, -3, -3]"


# ---- EVENT_DTYPE ----


def test_event_dtype_names_its_time_unit():
    assert "time_us" in fasttcp.EVENT_DTYPE.names and "time" not in fasttcp.EVENT_DTYPE.names
    one, raw = Endpoint(["198.18.0.1"], seed=1), Endpoint(["198.18.0.1"], seed=1)
    one.connect("198.18.0.2", 80, local_port=1000, now=1.5)
    raw.connect_batch(fasttcp.make_keys([("198.18.0.1", 1000, "198.18.0.2", 80)]), 1.5)
    (ev,) = one.events()
    assert raw.events_batch()["time_us"].tolist() == [1_500_000] and ev.time == 1.5
