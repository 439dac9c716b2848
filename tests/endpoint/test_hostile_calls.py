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
    "e.events_batch()", "e.clear_events()", "e.pipeline",
]


def _all_refused(seen: dict, exc: str, match: str) -> None:
    bad = {call: got for call, got in seen.items() if got[0] != exc or not re.search(match, got[1])}
    assert not bad, f"expected {exc} matching {match!r}: {bad}"


def _outcomes(body: str) -> dict:
    import ast

    value = expect_ok(CALLS_HELPER + body)
    return ast.literal_eval(value)


# ---- one call at a time: the busy guard ----


def test_a_call_during_a_gil_free_batch_call_raises_instead_of_racing():
    """receive_batch releases the GIL; every call another thread makes meanwhile is
    refused with UsageError (before: transmit() read the arena receive_batch was
    reallocating -- a crash or a hang), and the batch's result is intact."""
    out = expect_ok(EP + """
from fasttcp.bench.handshakes import flow_keys
src = fasttcp.Endpoint(['198.18.0.0/16'], capacity=1 << 17, seed=3)
dst = fasttcp.Endpoint(['198.19.0.1'], capacity=1 << 17, seed=4, syn_cookies="off")   # a record per SYN
dst.listen(80)
held = dst.connect('198.18.200.1', 443, now=0.5)
n = 100_000
src.connect_batch(flow_keys(n), 1.0)
buf, offs, lens = src.transmit_batch()
started, done = threading.Event(), threading.Event()
def worker():
    started.set()
    try:
        dst.receive_batch(buf, offs, lens, 1.0)
    finally:
        done.set()
t = threading.Thread(target=worker)
t.start()
started.wait()
busy = 0
calls = [dst.transmit, dst.events_batch, lambda: dst.poll(2.0), lambda: len(dst), dst.accept_batch,
         lambda: dst.listen(81), lambda: dst.receive_batch(buf, offs[:1], lens[:1], 1.0),
         lambda: fasttcp.pipe(src, dst, 1.0), dst.transmit_batch, lambda: dst.stats,
         lambda: held.send(b'x'), lambda: held.state, held.recv, held.abort]
while not done.is_set():
    for call in calls:
        try:
            call()
        except fasttcp.UsageError as exc:
            busy += 'in use by another call' in str(exc)
t.join()
outcome((busy, len(dst), dst.stats["segments_in"]))
""")
    busy, conns, segments_in = eval(out)
    assert busy, "no call was refused while receive_batch ran"
    # the batch ran to the end; calls that got in before it started may have added a
    # segment (the single-packet batch) or aborted `held`, never removed any of its own
    assert conns >= 100_000 and segments_in >= 100_000


def test_offsets_rewritten_by_another_thread_during_receive_batch_never_crash():
    """receive_batch checks every span, then reads the spans again without the GIL: it
    works on copies of offsets and lengths, so a thread rewriting the caller's arrays
    meanwhile (here to an offset far past the buffer) cannot turn a checked span wild.
    Each call either runs on what it checked or refuses what it saw; none crashes.
    (Reading the caller's arrays, this crashed in the parser within a few calls.)"""
    out = expect_ok(EP + """
from fasttcp.bench.handshakes import flow_keys
n = 100_000
src = fasttcp.Endpoint(['198.18.0.0/16'], capacity=n, seed=3, pipeline_depth=8)
dst = fasttcp.Endpoint(['198.19.0.1'], capacity=n, seed=4, pipeline_depth=8, syn_backlog=n)
dst.listen(80)
src.connect_batch(flow_keys(n), 1.0)
buf, offs, lens = src.transmit_batch()
good = offs.copy()
def rewrite():
    offs[n // 2:] = 1 << 40
    offs[:] = good
ran = refused = 0
with rewriting(rewrite):
    for k in range(30):
        try:
            dst.receive_batch(buf, offs, lens, 1.0 + k)
            ran += 1
        except fasttcp.UsageError:
            refused += 1
outcome((ran, refused))
""")
    ran, refused = eval(out)
    assert ran + refused == 30


def test_keys_rewritten_by_another_thread_during_connect_batch_open_only_what_was_checked():
    """connect_batch checks the keys, then opens them without the GIL. A thread cycling
    every key's remote port meanwhile -- through 81 and 80, then also through 0, a port
    connect_batch refuses -- leaves each call either refused (it saw a port 0) or with
    every key opened under port 80 or 81, each findable by that 4-tuple: connecting both
    variants afterwards finds exactly the ones opened. (Reading the caller's array again
    after the check opened keys with port 0; hashing a key and recording it in two reads
    left records under the other port's hash, which no lookup found: a few hundred a
    call, and a second record for their 4-tuple.)"""
    out = expect_ok(EP + """
from fasttcp.bench.handshakes import flow_keys
n = 50_000
seen = {}
for ports in ((81, 80), (81, 0, 80)):
    opened = found = refused = 0
    for call in range(6):
        e = fasttcp.Endpoint(['198.18.0.0/16'], capacity=3 * n, seed=3, pipeline_depth=8)
        keys = flow_keys(n)
        port80 = keys.copy()
        port81 = keys.copy()
        port81['rport'] = 81
        def cycle():
            for p in ports:
                keys['rport'] = p
        try:
            with rewriting(cycle):
                ids = e.connect_batch(keys, 1.0)
        except fasttcp.UsageError:
            refused += 1
            continue
        opened += int((ids >= 0).sum())
        found += sum(int((e.connect_batch(v, 2.0) == -2).sum()) for v in (port80, port81))
    seen[len(ports)] = (opened, found, refused)
outcome(seen)
""")
    seen = eval(out)
    opened, found, refused = seen[2]
    assert (opened, refused) == (6 * 50_000, 0)
    assert found == opened
    opened, found, refused = seen[3]
    assert opened == (6 - refused) * 50_000
    assert found == opened


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="from 3.12 the collector runs between bytecodes only")
def test_a_call_re_entered_from_a_gc_callback_is_refused():
    """Python code that runs while the endpoint is inside a call -- a finaliser or gc
    callback started by an allocation of the call (here: poll() allocates twice when
    three held connections have events), or another thread it lets in -- cannot
    re-enter it."""
    out = expect_ok(EP + """
cs = [ep.connect('198.18.0.2', 80, local_port=5000 + i, now=1.0) for i in range(3)]
ep.transmit()
seen = []
def cb(phase, info):
    if phase == 'start':
        try:
            seen.append(len(ep.transmit()))
        except fasttcp.UsageError as exc:
            seen.append(str(exc))
gc.collect()
gc.callbacks.append(cb)
gc.set_threshold(1)
ep.poll(2.5)
gc.set_threshold(700)
gc.callbacks.remove(cb)
outcome((seen, len(ep.transmit())))
""")
    seen, queued = eval(out)
    assert any("in use by another call" in str(s) for s in seen), seen
    assert queued + sum(s for s in seen if isinstance(s, int)) == 3       # the SYNs went out once


def test_events_batch_sizes_and_fills_from_one_count():
    """events_batch() copies exactly the events it sized its array for."""
    out = expect_ok(EP + """
ep.connect_batch(fasttcp.make_keys([('198.18.0.1', 1000 + i, '198.18.0.2', 80) for i in range(50)]), 1.0)
a = ep.events_batch()
outcome((len(a), len(ep.events_batch())))
""")
    assert eval(out) == (50, 0)


# ---- an endpoint that is not (fully) initialised ----


@pytest.mark.parametrize("make", [
    "e = fasttcp.Endpoint.__new__(fasttcp.Endpoint)",
    # refused before anything is allocated
    ("e = fasttcp.Endpoint.__new__(fasttcp.Endpoint)\n"
     "try:\n    e.__init__(['198.18.0.1'], max_events=5)\nexcept fasttcp.UsageError:\n    pass"),
    # failed after it began writing the C state: the table cannot be allocated under
    # an address-space limit a little above what the process uses
    ("import resource\n"
     "e = fasttcp.Endpoint.__new__(fasttcp.Endpoint)\n"
     "soft, hard = resource.getrlimit(resource.RLIMIT_AS)\n"
     "vm = int(open('/proc/self/statm').read().split()[0]) * resource.getpagesize()\n"
     "resource.setrlimit(resource.RLIMIT_AS, (vm + (64 << 20), hard))\n"
     "try:\n    e.__init__(['198.18.0.1'], capacity=1 << 22)\nexcept MemoryError:\n    pass\n"
     "finally:\n    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))\n"
     "assert e._local is not None   # it got past the checks"),
], ids=["never-initialised", "init-refused", "init-failed"])
def test_every_call_on_an_endpoint_that_is_not_initialised_raises(make):
    """Before: poll/receive/receive_batch/poll_batch/next_deadline/pipe segfaulted on
    the NULL table, poll() looped for ever after a failed __init__, connect_batch
    answered [-3]."""
    seen = _outcomes("good = fasttcp.Endpoint(['198.18.0.2'])\n" + make + f"\noutcome(each({ENDPOINT_CALLS!r}))")
    _all_refused(seen, "UsageError", "not initialised")


def test_a_refused_init_leaves_no_local_address_behind():
    """A refused __init__ writes nothing: one refused for its mss used to have stored
    its 16 addresses already, and the next __init__ appended to them -- the endpoint
    took segments for addresses it was never given (and a 17th entry overwrote the
    count of entries)."""
    out = expect_ok("""
e = fasttcp.Endpoint.__new__(fasttcp.Endpoint)
for _ in range(3):
    try:
        e.__init__(['198.18.0.%d' % (i + 1) for i in range(16)], mss=1)
    except fasttcp.UsageError:
        pass
e.__init__(['10.0.0.1'], capacity=16)
e.listen(80)
got = [e.receive(fasttcp.build('198.18.1.1', '198.18.0.%d' % (i + 1), 1000, 80, seq=1, flags=fasttcp.Flags.SYN),
                 1.0) for i in range(16)]
got.append(e.receive(fasttcp.build('198.18.1.1', '10.0.0.1', 1000, 80, seq=1, flags=fasttcp.Flags.SYN), 1.0))
outcome(got)
""")
    assert eval(out) == ["not_local"] * 16 + [None]


def test_an_endpoint_is_initialised_once():
    expect_raises(EP + "ep.__init__(['198.18.0.3'])", "UsageError", match="initialised once")
    assert expect_ok(EP + """
try:
    ep.__init__(['198.18.0.3'])
except fasttcp.UsageError:
    pass
ep.connect('198.18.0.2', 80, now=1.0)
outcome(len(ep.transmit()))
""") == "1"


def test_a_connection_not_made_by_an_endpoint_raises():
    """Connection.__new__ skips __init__: every call on such a handle used to read an
    endpoint through None (a segfault)."""
    seen = _outcomes("""
c = fasttcp.Connection.__new__(fasttcp.Connection)
outcome(each(['c.state', 'c.mss', 'c.tcb', 'c.send(b"x")', 'c.recv()', 'c.close()', 'c.abort()',
              'c.snd_wscale', 'c.rcv_wscale', 'c.sack_permitted', 'c.timestamps']))
""")
    _all_refused(seen, "UsageError", "not made by an Endpoint")
    assert expect_ok("outcome(repr(fasttcp.Connection.__new__(fasttcp.Connection)))")


# ---- ports ----

BAD_PORTS = [-1, 0, 65536, 70000, 2**31, 2**32, 2**40, 2**64, -(2**64), True, False, 80.0, None, "80"]


@pytest.mark.parametrize("port", BAD_PORTS, ids=repr)
def test_unlisten_refuses_ports_outside_16_bits(port):
    """unlisten() had no range check: 70000 wrote past the endpoint struct, 2^40
    segfaulted."""
    expect_raises(EP + f"ep.unlisten({port!r})", "UsageError", match="1..65535")


def test_listen_and_connect_refuse_ports_outside_1_to_65535():
    calls = [f"ep.listen({p!r})" for p in BAD_PORTS]
    calls += [f"ep.connect('198.18.0.2', {p!r}, now=1.0)" for p in BAD_PORTS]
    calls += [f"ep.connect('198.18.0.2', 80, local_port={p!r}, now=1.0)" for p in BAD_PORTS if p is not None]
    seen = _outcomes(EP + f"outcome(each({calls!r}))")
    _all_refused(seen, "UsageError", "1..65535")
    # and nothing was opened or listened to on the way
    assert expect_ok(EP + CALLS_HELPER + f"each({calls!r})\noutcome((len(ep), ep.transmit()))") == "(0, [])"


def test_ports_read_from_numpy_arrays_are_ports():
    assert expect_ok(EP + """
ep.listen(np.int64(81)); ep.unlisten(np.uint16(81))
c = ep.connect('198.18.0.2', np.int32(80), local_port=np.uint16(4000), now=1.0)
outcome(c.key[1:4:2])
""") == "(4000, 80)"


def test_unlisten_of_a_port_that_is_not_listening_raises():
    expect_raises(EP + "ep.unlisten(80)", "UsageError", match="not listening on port 80")
    expect_ok(EP + "ep.listen(80); ep.unlisten(80); ep.listen(80)")


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


# ---- lifetime: nothing keeps a dropped endpoint alive ----


def _endpoints_with_everything_held():
    client = Endpoint(["198.18.0.1"], capacity=1 << 12, seed=1)
    server = Endpoint(["198.18.0.2"], capacity=1 << 12, seed=2)
    server.listen(80)
    conns = [client.connect("198.18.0.2", 80, now=0.0) for _ in range(3)]
    conns[0].send(b"queued")                            # a connection in _pending too
    for p in client.transmit():
        server.receive(p, 0.0)                         # half-open: SYN-RECEIVED, never accepted
    # the server's events stay undrained: each refers to a Connection in its _conns
    assert len(server) == 3
    return client, server, conns


def test_an_endpoint_with_held_connections_half_open_peers_and_undrained_events_is_freed():
    """Event -> Connection -> Endpoint -> _conns -> Connection was a cycle through
    no_gc objects: such endpoints were never freed (20 of capacity 2^20 kept 182 MB).
    A connection holds its endpoint weakly now, so dropping the endpoint frees it at
    once -- without waiting for the cycle collector."""
    client, server, conns = _endpoints_with_everything_held()
    events = client.events()
    assert events and events[0].connection is conns[0]
    refs = [weakref.ref(client), weakref.ref(server)]
    was = gc.isenabled()
    gc.disable()
    try:
        del client, server
        assert [r() for r in refs] == [None, None]        # by reference counting alone
    finally:
        if was:
            gc.enable()
    gc.collect()
    assert [r() for r in refs] == [None, None]
    # what the caller still holds answers or says why it cannot
    assert conns[0].key[3] == 80 and conns[0].pending == 6 and conns[0].recv() == b""
    with pytest.raises(UsageError, match="no longer exists"):
        _ = conns[0].state
    assert "endpoint gone" in repr(events[0])


def test_endpoints_dropped_with_everything_held_are_all_freed():
    refs = []
    for _ in range(20):
        client, server, conns = _endpoints_with_everything_held()
        refs += [weakref.ref(client), weakref.ref(server)]
        del client, server, conns
    gc.collect()
    assert sum(r() is not None for r in refs) == 0


def test_a_connection_outliving_its_endpoint_raises_usage_error():
    seen = _outcomes(EP + """
c = ep.connect('198.18.0.2', 80, now=1.0)
c.send(b'abc')
del ep
gc.collect()
outcome(each(['c.state', 'c.mss', 'c.tcb', 'c.snd_wscale', 'c.rcv_wscale', 'c.sack_permitted',
              'c.timestamps', 'c.send(b"x")', 'c.close()', 'c.abort()', 'c.close(now=2.0)']))
""")
    _all_refused(seen, "UsageError", "no longer exists")
    out = expect_ok(EP + """
c = ep.connect('198.18.0.2', 80, now=1.0)
c.send(b'abc')
del ep
gc.collect()
outcome((c.key[1] > 0, c.id, c.pending, c.recv(), c.rto, c.srtt, c.bytes_sent, repr(c)))
""")
    assert "(endpoint gone)" in out and "b''" in out


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
        server.receive_batch(buf, np.cumsum([0, *lens[:-1]]), lens, 1.0)

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


# ---- time ----

BAD_TIMES = ["float('nan')", "float('inf')", "-float('inf')", "-1", "-1e-9", "2**64", "1e300", "True", "'1'",
             "b'1'", "1j", "np.int64(1)"]


def test_every_call_taking_now_refuses_what_is_not_a_time():
    calls = []
    for t in BAD_TIMES:
        calls += [f"ep.receive(syn, {t})", f"ep.receive_batch(syn, [0], [len(syn)], {t})", f"ep.poll({t})",
                  f"ep.poll_batch({t})", f"ep.connect('198.18.0.2', 80, now={t})", f"ep.connect_batch(keys, {t})",
                  f"ep.close_batch([0], {t})", f"fasttcp.pipe(ep, peer, {t})", f"c.send(b'x', now={t})",
                  f"c.close(now={t})", f"c.abort(now={t})"]
    calls += ["ep.receive(syn, None)", "ep.poll(None)", "ep.connect('198.18.0.2', 80, now=None)"]
    seen = _outcomes(EP + f"""
syn = fasttcp.build('198.18.0.2', '198.18.0.1', 40000, 80, seq=1, flags=fasttcp.Flags.SYN)
keys = fasttcp.make_keys([('198.18.0.1', 1000, '198.18.0.2', 80)])
c = ep.connect('198.18.0.2', 80, now=1.0)
outcome(each({calls!r}))
""")
    _all_refused(seen, "UsageError", "must be a time in seconds")


def test_time_running_backwards_is_taken_as_the_latest_and_counted():
    """An RTT sample across a backwards step was ~2^64 us: the RTO stuck at its 60 s
    ceiling. The clock holds at the latest time instead, and the step is counted."""
    client, server = Endpoint(["198.18.0.1"], seed=1), Endpoint(["198.18.0.2"], seed=2)
    server.listen(80)
    c = client.connect("198.18.0.2", 80, now=10.0)
    for p in client.transmit():
        server.receive(p, 10.0)
    for p in server.transmit():
        client.receive(p, 10.0)
    for p in client.transmit():
        server.receive(p, 10.0)
    c.send(b"x" * 100, now=10.0)
    for p in client.transmit():
        server.receive(p, 10.0)
    for p in server.transmit():
        client.receive(p, 9.0)                       # the ACK, "before" the data left
    assert c.pending == 0 and c.rto == 1.0           # a zero sample, not 2^64 us: RTO 1 s (RFC 6298 2.4)
    assert client.stats["time_backwards"] == 1 and server.stats["time_backwards"] == 0
    c.close(now=8.0)
    (ev,) = [e for e in client.events() if e.cause.name == "CLOSE"]
    assert ev.time == 10.0 and client.stats["time_backwards"] == 2


# ---- buffers ----


def test_receive_takes_any_contiguous_byte_buffer():
    out = expect_ok(EP + """
syn = fasttcp.build('198.18.0.2', '198.18.0.1', 40000, 80, seq=1, flags=fasttcp.Flags.SYN)
ro = np.frombuffer(syn, np.uint8)
got = [ep.receive(b, 1.0) for b in (syn, bytearray(syn), memoryview(syn), ro, np.array(ro), memoryview(ro))]
got.append(ep.receive_batch(ro, [0], [len(syn)], 1.0).tolist())
got.append(ep.receive_batch(memoryview(b'xx' + syn)[2:], np.array([0], np.int32), np.array([len(syn)], np.uint16),
                            1.0).tolist())
outcome(got)
""")
    assert out == "['no_listener', 'no_listener', 'no_listener', 'no_listener', 'no_listener', 'no_listener', [2], [2]]"


def test_receive_and_receive_batch_refuse_what_is_not_a_contiguous_byte_buffer():
    bad = ["'a str'", "None", "5", "[1, 2]", "np.zeros(80, np.uint8)[::2]", "np.zeros(20, np.uint32)",
           "memoryview(b'x' * 40).cast('I')", "np.zeros((4, 20), np.uint8)[:, :10]"]
    calls = [f"ep.receive({b}, 1.0)" for b in bad] + [f"ep.receive_batch({b}, [0], [1], 1.0)" for b in bad]
    seen = _outcomes(EP + f"outcome(each({calls!r}))")
    _all_refused(seen, "UsageError", "bytes-like|1-byte items")


def test_receive_batch_refuses_offsets_and_lengths_that_are_not_byte_spans():
    """Float offsets were truncated to other offsets, and an offset past int64 raised
    OverflowError; the first span outside the buffer is named; nothing is processed."""
    cases = {
        "[0.5], [40]": "integers", "[0], [40.0]": "integers", "[True], [40]": "integers",
        "[[0]], [[40]]": "1-D", "[0, 40], [40]": "same length", "[2**64], [40]": "integers",
        "np.array([2**63], np.uint64), [40]": "fit int64", "[-1], [40]": "outside", "[70], [40]": "outside",
        "[0], [-40]": "outside", "[0], [2**63 - 1]": "outside", "'ab', [1]": "1-D", "None, None": "1-D",
        "5, 40": "1-D",
    }
    calls = [f"ep.receive_batch(syn, {args}, 1.0)" for args in cases]
    seen = _outcomes(EP + f"""
syn = fasttcp.build('198.18.0.2', '198.18.0.1', 40000, 80, seq=1, flags=fasttcp.Flags.SYN) + bytes(40)
r = each({calls!r})
r['segments_in'] = ('ok', str(ep.stats['segments_in']))
outcome(r)
""")
    assert seen.pop("segments_in") == ("ok", "0")
    for want, call in zip(cases.values(), calls, strict=True):
        assert seen[call][0] == "UsageError" and want in seen[call][1], (call, seen[call])


def test_close_batch_refuses_non_integer_ids_and_counts_what_it_closed():
    seen = _outcomes(EP + "outcome(each(['ep.close_batch([1.5], 1.0)', 'ep.close_batch([[0]], 1.0)', "
                          "'ep.close_batch(None, 1.0)', 'ep.close_batch([2**64], 1.0)']))")
    _all_refused(seen, "UsageError", "ids must be")
    assert expect_ok(EP + """
c = ep.connect('198.18.0.2', 80, now=1.0)
outcome((ep.close_batch([-1, 2**40, 63, c.id, c.id], 1.0), len(ep)))
""") == "(1, 0)"


# ---- the rest of the surface ----

BAD_CONSTRUCTIONS = {
    "capacity=0": "capacity", "capacity=-1": "capacity", "capacity=2**31 + 1": "capacity",
    "capacity=2**40": "capacity", "capacity=2**64": "capacity", "capacity=True": "capacity",
    "capacity=1.5": "capacity", "capacity=None": "capacity", "mss=0": "mss", "mss=2**32": "mss",
    "window=0": "window", "window=2**31": "window", "window=70000, wscale=None": "window",
    "wscale=True": "wscale", "wscale=15": "wscale", "wscale=-1": "wscale", "wscale='7'": "wscale",
    "ttl=0": "ttl", "ttl=256": "ttl", "max_events=5": "max_events", "max_events=2**64": "max_events",
    "max_events=True": "max_events", "max_transmit_bytes=-1": "max_transmit_bytes",
    "max_transmit_bytes=2**64": "max_transmit_bytes", "seed=-1": "seed", "seed='x'": "seed",
    "seed=1.5": "seed", "seed=True": "seed", "isn_secret=-5": "isn_secret", "isn_secret=1.5": "isn_secret",
    "sack='no'": "sack", "sack=2": "sack", "timestamps=None": "timestamps", "msl=float('nan')": "msl",
    "msl=-1": "msl", "msl=0": "msl", "msl=1e300": "msl",
    "pipeline_depth=0": "pipeline_depth", "pipeline_depth=1": "pipeline_depth", "pipeline_depth=3": "pipeline_depth",
    "pipeline_depth=-8": "pipeline_depth", "pipeline_depth=64": "pipeline_depth",
    "pipeline_depth=2**64": "pipeline_depth", "pipeline_depth=True": "pipeline_depth",
    "pipeline_depth=8.0": "pipeline_depth", "pipeline_depth='8'": "pipeline_depth",
    "syn_cookies='sometimes'": "syn_cookies", "syn_cookies=1": "syn_cookies", "syn_cookies=None": "syn_cookies",
    "syn_cookies=True": "syn_cookies", "syn_cookies=b'auto'": "syn_cookies", "syn_backlog=0": "syn_backlog",
    "syn_backlog=-1": "syn_backlog", "syn_backlog=True": "syn_backlog", "syn_backlog=2**64": "syn_backlog",
    "syn_backlog=1.5": "syn_backlog", "max_events=None, syn_backlog='1'": "syn_backlog",
}


@pytest.mark.parametrize("kwargs", list(BAD_CONSTRUCTIONS), ids=list(BAD_CONSTRUCTIONS))
def test_constructor_refuses_bad_arguments(kwargs):
    expect_raises(f"fasttcp.Endpoint(['198.18.0.1'], {kwargs})", "UsageError", match=BAD_CONSTRUCTIONS[kwargs])


def test_constructor_refuses_addresses_that_are_not_local_networks():
    bad = ["None", "5", "[]", "[5]", "['300.1.1.1']", "[b'12345']", "[None]", "['198.18.0.%d' % i for i in range(17)]",
           "iter(int, 1)", "{'a': 1}", "['198.18.0.1/40']", "[True]"]
    seen = _outcomes(f"outcome(each([f'fasttcp.Endpoint({{b}})' for b in {bad!r}]))")
    _all_refused(seen, "UsageError", "address|network")


def test_a_connection_evicted_by_connect_is_told():
    """At capacity (here 1) connect() evicts the oldest embryonic connection, whose
    record it then reuses: the evicted handle used to be replaced in the endpoint's
    books before its EVICTED event was read, so it never got it (reset_cause None)."""
    out = expect_ok("""
ep = fasttcp.Endpoint(['198.18.0.1'], capacity=1)
a = ep.connect('198.18.0.2', 80, now=1.0)
ep.events()
b = ep.connect('198.18.0.2', 81, now=1.0)
evs = [(e.connection is a, e.connection is b, e.cause.name) for e in ep.events()]
outcome((len(ep), a.state.name, a.reset_cause and a.reset_cause.name, b.state.name, evs))
""")
    assert eval(out) == (1, "CLOSED", "EVICTED", "SYN_SENT", [(True, False, "EVICTED"), (False, True, "CONNECT")])


def test_connect_refuses_addresses_it_cannot_connect():
    cases = {
        "ep.connect('224.0.0.1', 80, now=1.0)": "unicast", "ep.connect('0.0.0.0', 80, now=1.0)": "unicast",
        "ep.connect('255.255.255.255', 80, now=1.0)": "unicast", "ep.connect('::', 80, now=1.0)": "unicast|IPv6",
        "ep.connect('ff02::1', 80, now=1.0)": "unicast|IPv6", "ep.connect(None, 80, now=1.0)": "address",
        "ep.connect(5, 80, now=1.0)": "address", "ep.connect('198.18.0.2', 80, local_addr='198.18.0.9', now=1.0)":
        "not one of", "ep.connect('198.18.0.2', 80, local_addr='::1', now=1.0)": "families",
        "ep.connect('2001:db8::1', 80, now=1.0)": "IPv6",
    }
    seen = _outcomes(EP + f"r = each({list(cases)!r})\nr['n'] = ('ok', str(len(ep)))\noutcome(r)")
    assert seen.pop("n") == ("ok", "0")
    for call, want in cases.items():
        assert seen[call][0] == "UsageError" and re.search(want, seen[call][1]), (call, seen[call])


def test_connection_methods_refuse_wrong_types():
    seen = _outcomes(EP + """
c = ep.connect('198.18.0.2', 80, now=1.0)
outcome(each(['c.send("a str")', 'c.send(5)', 'c.send([1, 2])', 'c.send(None)', 'c.send(np.zeros(8, np.uint8)[::2])',
              'c.recv(1.5)', 'c.recv("a")', 'c.recv(True)', 'c.recv(b"1")']))
""")
    _all_refused(seen, "UsageError", "bytes-like|max_bytes")


def test_connection_send_takes_any_contiguous_buffer_and_recv_any_count():
    out = expect_ok(EP + """
c = ep.connect('198.18.0.2', 80, now=1.0)
for d in (b'ab', bytearray(b'cd'), memoryview(b'ef'), np.frombuffer(b'gh', np.uint8), np.array([1], np.uint16)):
    c.send(d)
outcome((c.pending, c.recv(-5), c.recv(2**64), c.recv(0), c.recv(None)))
""")
    assert out == "(10, b'', b'', b'', b'')"


def test_sending_into_a_full_transmit_queue_returns_and_the_data_still_arrives():
    """A data segment that does not fit max_transmit_bytes is dropped (counted), as if
    lost on the wire: send() used to offer the same segment again forever (SND.NXT
    stayed put), a hang holding the GIL -- reachable from receive() too, when a
    SYN-ACK or an ACK flushes queued data. The retransmission timer resends it."""
    out = expect_ok("""
cli = fasttcp.Endpoint(['198.18.0.1'], seed=1, max_transmit_bytes=4096)
srv = fasttcp.Endpoint(['198.18.0.2'], seed=2)
srv.listen(80)
c = cli.connect('198.18.0.2', 80, now=1.0)
def wire(t):
    for _ in range(2):
        for p in cli.transmit():
            srv.receive(p, t)
        for p in srv.transmit():
            cli.receive(p, t)
wire(1.0)
s = srv.accept()
data = bytes(range(256)) * 100
c.send(data, now=1.0)                 # 18 segments, room for 2
dropped = cli.stats['transmit_dropped']
t, got = 1.0, b''
for _ in range(500):
    wire(t)
    got += s.recv()
    if len(got) >= len(data):
        break
    t = max(t, cli.next_deadline() or t + 0.1)
    cli.poll(t)
outcome((dropped > 0, got == data, c.pending))
""")
    assert out == "(True, True, 0)"


def test_event_constructor_refuses_nonsense():
    seen = _outcomes("""
S = fasttcp.State.ESTABLISHED; C = fasttcp.Cause.CONNECT
outcome(each(['fasttcp.Event(float("nan"), None, S, S, C)', 'fasttcp.Event(-1, None, S, S, C)',
              'fasttcp.Event("1", None, S, S, C)', 'fasttcp.Event(1.0, None, 99, S, C)',
              'fasttcp.Event(1.0, None, S, True, C)', 'fasttcp.Event(1.0, None, S, S, 1000)',
              'fasttcp.Event(1.0, None, S, S, C, -1)', 'fasttcp.Event(1.0, None, S, S, C, 2**32)',
              'fasttcp.Event(1.0, None, S, S, C, 1.5)']))
""")
    _all_refused(seen, "UsageError", "must be")
    assert "value=5" in expect_ok("outcome(repr(fasttcp.Event(1.0, None, 4, 4, 16, 5)))")
    assert expect_ok("outcome(repr(fasttcp.Event.__new__(fasttcp.Event)))")


def test_pipe_refuses_what_is_not_two_endpoints():
    """pipe() typed its arguments as Endpoint, which lets None through: it read the
    C state of None and stored the time into the memory after it."""
    seen = _outcomes(EP + "ep.connect('198.18.0.2', 80, now=1.0)\n"
                          "outcome(each(['fasttcp.pipe(ep, None, 1.0)', 'fasttcp.pipe(None, ep, 1.0)', "
                          "'fasttcp.pipe(ep, ep, 1.0)', 'fasttcp.pipe(ep, object(), 1.0)']))")
    _all_refused(seen, "UsageError", "Endpoint|two endpoints")


def test_handles_cannot_be_copied_or_pickled():
    """A copied Endpoint or Connection would share (and free twice) the C state."""
    seen = _outcomes(EP + """
import copy, pickle
c = ep.connect('198.18.0.2', 80, now=1.0)
outcome(each(['copy.copy(ep)', 'copy.copy(c)', 'pickle.dumps(ep)', 'pickle.dumps(c)']))
""")
    _all_refused(seen, "TypeError", "pickl|reduce")
