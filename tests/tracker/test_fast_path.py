"""The tracker's header-prediction path against its general path.

`_ack_fast` and `_fin_fast` (tracker_core.pxi) restate, for an in-window ACK, data
segment or FIN, what `_conntrack` and `_zeek` do with it; `_syn_new` and `_synack_fast`
do the same for a connection's opening SYN and the SYN-ACK that answers it. Every test
here feeds the same packets to two trackers, one with the fast path and one without (`Tracker._set_fast_path(False)`),
and requires the same results to the byte: verdicts, events, live and finished
connection rows, every counter, and the records themselves. The tests of fixed traffic
also check how many packets the fast paths took, so that the comparison is not vacuous
(the random ones mix taken and refused packets; the fixed ones pin the counts).
"""
from __future__ import annotations

import gzip
import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fasttcp
from fasttcp import Flags, Tracker
from fasttcp.bench.tracker import PACKETS_PER_FLOW, synth_capture
from tests import linklayer
from tests.tracker.test_scenarios import (
    CLIENT,
    CLIENT6,
    SERVER,
    SERVER6,
    SERVER_PORT,
    WRAP,
    Packet,
    _corrupt_tcp_checksum,
    _tcp_header_end,
    as_batch,
)


def run(batches, fast: bool, **config):
    """Feed `batches` (feed_batch argument tuples or CaptureBatch objects) to a fresh
    tracker; everything it reports, and how many packets took the fast path."""
    t = Tracker(seed=3, events=True, **config)
    t._set_fast_path(fast)
    verdicts = [t.feed_batch(*b) if isinstance(b, tuple) else t.feed_batch(b) for b in batches]
    out = {
        "verdicts": np.concatenate(verdicts).tobytes() if verdicts else b"",
        "events": t.events().tobytes(),
        "live": t.connections().tobytes(),
        "finished": t.finished().tobytes(),
    }
    stats = t.stats
    hits = stats.pop("fast_path")
    out["stats"] = stats
    # the internal state too: window bounds, conntrack's memory of the last packet,
    # reassembly edges, letter counters, timers -- what only a later packet would show
    out["table records"], out["tracker records"] = t._raw_records()
    out["closed"] = t.close().tobytes()
    return out, hits


def same_both_ways(batches, **config) -> int:
    """Assert the fast and the general path agree; return the fast path's hits."""
    fast, hits = run(batches, True, **config)
    general, none = run(batches, False, **config)
    assert none == 0
    for k in fast:
        assert fast[k] == general[k], k
    return hits


@pytest.mark.parametrize("verify", [True, False])
@pytest.mark.parametrize("liberal", [False, True])
def test_every_capture_gives_the_same_results_both_ways(verify, liberal):
    hits, segments = {}, {}
    for path in linklayer.list_captures(linklayer.CAPTURES):
        batches = list(fasttcp.read_pcap(path))
        hits[path.name] = same_both_ways(batches, verify_checksum=verify, liberal=liberal,
                                         timeouts="zeek")
        segments[path.name] = tcp_segments(path)
    # real traffic: the fast path carries the bulk of the TCP segments (the bound is taken
    # from the captures' own oracles, not a count that holds for one set of them)
    assert 2 * sum(hits.values()) > sum(segments.values()), hits
    # a plain connection (handshake, request, response, a FIN each way): every segment
    assert hits["zeek-http-get.pcap"] == segments["zeek-http-get.pcap"] == 14


def tcp_segments(capture) -> int:
    """How many frames of `capture` tshark dissected as TCP (its oracle's first line)."""
    oracle = linklayer.oracle_path(capture)
    with (gzip.open if oracle.suffix == ".gz" else open)(oracle, "rt", encoding="utf-8") as f:
        return json.loads(f.readline())["tcp_frames"]


def test_the_bench_capture_takes_a_fast_path_for_every_segment(tmp_path):
    # 12 packets per connection: SYN, SYN-ACK, ACK, request, 3 response segments, ACK,
    # FIN, ACK, FIN, ACK. The SYN that opens the connection and the SYN-ACK that answers
    # it take the opening's fast paths (NONE -> SYN_SENT -> SYN_RECV); every ACK-class
    # segment (8) takes header prediction: the one that completes the handshake
    # (SYN_RECV -> ESTABLISHED), the request, the response and its ACK, and the two
    # that acknowledge the FINs (-> CLOSE_WAIT, -> TIME_WAIT); so do both FINs
    # (ESTABLISHED -> FIN_WAIT, CLOSE_WAIT -> LAST_ACK).
    path = tmp_path / "synth.pcap"
    flows = synth_capture(path, 120 * PACKETS_PER_FLOW, 40)
    hits = same_both_ways(list(fasttcp.read_pcap(path)), timeouts="conntrack")
    assert hits == PACKETS_PER_FLOW * flows == 12 * flows


# ---- random established traffic ----

FUZZ_EXAMPLES = max(200, int(os.environ.get("FASTTCP_FUZZ_EXAMPLES", 2000)) // 10)

# a step: who sends, what, and how far from what a well-behaved sender would put there.
# Most steps are well-behaved (they take the fast path); the rest perturb one or more
# fields, so that the fast path's every exit is taken next to its every update.
clean_step = st.tuples(
    st.booleans(),                                                          # client -> server?
    st.sampled_from([0, 1]),                                                # which connection
    st.sampled_from(["data", "ack", "data", "ack", "fin"]),                 # (FINs take the fast path too)
    st.just(0), st.just(0),                                                 # seq, ack offsets
    st.sampled_from([1, 100, 1460]),                                       # payload
    st.sampled_from([65535, 502]),                                          # window
    st.sampled_from(["", "", "sack-old", "ts"]),                            # options
    st.sampled_from([0.0, 0.001]),                                          # time step
    st.just(""),
)
odd_step = st.tuples(
    st.booleans(),
    st.sampled_from([0, 1]),
    st.sampled_from(["data", "ack", "fin", "rst", "syn", "urg"]),
    st.sampled_from([0, 0, -1, 1, -100, 500, -70000, 70000, 1 << 31]),
    st.sampled_from([0, 0, -1, 1, -1000, 1000, -70000, 1 << 31]),
    st.sampled_from([0, 1, 100, 512, 1460]),
    st.sampled_from([65535, 502, 1, 0]),
    st.sampled_from(["", "sack", "sack-old", "ts"]),
    st.sampled_from([0.0, 0.001, 0.5, 30.0, 400.0, 8000.0]),
    st.sampled_from(["", "", "badsum", "cut"]),
)
# runs of well-behaved steps, each followed by at most one odd one
steps_strategy = st.lists(st.tuples(st.lists(clean_step, min_size=1, max_size=12), st.lists(odd_step, max_size=1)),
                          min_size=1, max_size=8).map(lambda runs: [x for clean, odd in runs for x in clean + odd])
opening = st.tuples(
    st.sampled_from([100, WRAP - 300, 0x7FFFFF00]),                         # client ISN
    st.sampled_from([5000, WRAP - 700, 0xFFFFFFFF]),                        # server ISN
    st.sampled_from([None, 0, 7, 14]),                                      # window scale
    st.booleans(),                                                          # SACK permitted
    # how the connections open: a whole handshake, no third ACK, data in place of the
    # third ACK, the SYN-ACK first (the roles flip), or nothing seen (midstream)
    st.sampled_from(["full", "full", "no-ack", "data", "synack-first", "midstream"]),
)


def established_traffic(family: int, opening, steps) -> list[Packet]:
    """Two connections opened (in one of `opening`'s ways), then `steps`: mostly what a
    well-behaved sender would send next, sometimes retransmissions, gaps, old or
    unsent ACKs, zero windows, SACK blocks, FIN/RST/SYN, bad checksums, cut packets."""
    c_isn, s_isn, wscale, sack, how = opening
    c, s = (CLIENT, SERVER) if family == 4 else (CLIENT6, SERVER6)
    ports = (40000, 40001)
    nxt = {(k, d): ((c_isn if d else s_isn) + 1) % WRAP for k in (0, 1) for d in (True, False)}
    out, t = [], 1000.0
    opts = {}
    if wscale is not None:
        opts["wscale"] = wscale
    if sack:
        opts["sack_permitted"] = True

    def emit(c2s, k, **kw):
        src, dst, sp, dp = (c, s, ports[k], SERVER_PORT) if c2s else (s, c, SERVER_PORT, ports[k])
        return fasttcp.build(src, dst, sp, dp, **kw)

    if how != "midstream":
        for k in (0, 1):
            syn = Packet(emit(True, k, seq=c_isn, flags=Flags.SYN, window=64240, options=opts), t, "syn")
            synack = Packet(emit(False, k, seq=s_isn, ack=(c_isn + 1) % WRAP, flags=Flags.SYN | Flags.ACK,
                                 window=65160, options=opts), t + 0.01, "synack")
            out += [synack] if how == "synack-first" else [syn, synack]
            if how in ("full", "synack-first"):
                out.append(Packet(emit(True, k, seq=(c_isn + 1) % WRAP, ack=(s_isn + 1) % WRAP, flags=Flags.ACK,
                                       window=502), t + 0.02, "ack"))
            elif how == "data":
                out.append(Packet(emit(True, k, seq=(c_isn + 1) % WRAP, ack=(s_isn + 1) % WRAP,
                                       flags=Flags.ACK | Flags.PSH, window=502, payload=bytes(300)), t + 0.02, "data"))
                nxt[(k, True)] = (c_isn + 301) % WRAP
        t += 0.02
    for c2s, k, kind, dseq, dack, n, win, o, dt, mutation in steps:
        t += dt
        seq = (nxt[(k, c2s)] + dseq) % WRAP
        ack = (nxt[(k, not c2s)] + dack) % WRAP
        flags = {"data": Flags.ACK | Flags.PSH, "ack": Flags.ACK, "fin": Flags.FIN | Flags.ACK,
                 "rst": Flags.RST | Flags.ACK, "syn": Flags.SYN, "urg": Flags.ACK | Flags.URG}[kind]
        payload = bytes(n if kind in ("data", "urg", "fin") else 0)
        options = None
        if o == "sack":
            options = dict(sack=[((ack + 100) % WRAP, (ack + 600) % WRAP)])
        elif o == "sack-old":
            options = dict(sack=[((ack - 3000) % WRAP, (ack - 1000) % WRAP)])
        elif o == "ts":
            options = dict(timestamp=(int(t * 1000) % WRAP, 1))
        pkt = emit(c2s, k, seq=seq, ack=ack, flags=flags, window=win, options=options, payload=payload)
        if mutation == "badsum":
            pkt = _corrupt_tcp_checksum(pkt)
        elif mutation == "cut":
            pkt = pkt[:_tcp_header_end(pkt)]
        out.append(Packet(pkt, t, kind))
        if mutation != "badsum" and abs(dseq) < 1000:
            end = (seq + len(payload) + (kind in ("fin", "syn"))) % WRAP
            if 0 < (end - nxt[(k, c2s)]) % WRAP < 1 << 31:
                nxt[(k, c2s)] = end
    return out


@pytest.mark.fuzz
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(family=st.sampled_from([4, 6]), opening=opening, steps=steps_strategy,
       liberal=st.booleans(), verify=st.booleans(), loose=st.booleans(),
       timeouts=st.sampled_from(["conntrack", "zeek"]))
def test_random_established_traffic_gives_the_same_results_both_ways(family, opening, steps, liberal,
                                                                     verify, loose, timeouts):
    packets = established_traffic(family, opening, steps)
    same_both_ways([as_batch(packets)], liberal=liberal, verify_checksum=verify, loose=loose, timeouts=timeouts)


def test_well_behaved_traffic_takes_the_fast_path_every_time():
    # after a handshake, in-window data and ACKs in both directions on two connections:
    # every one of them is the common case, in midstream pickups too
    for how in ("full", "midstream"):
        steps = [(i % 3 != 0, i % 2, "data" if i % 4 else "ack", 0, 0, 100, 65535, "", 0.001, "")
                 for i in range(200)]
        packets = established_traffic(4, (100, 5000, 7, True, how), steps)
        hits = same_both_ways([as_batch(packets)])
        # with the handshake, its three segments on each connection too; midstream, each
        # side's first packet on each connection sets its Zeek endpoint up (general path)
        assert hits == (200 + 2 * 3 if how == "full" else 200 - 4)


CLOSES = {
    # (client->server?, kind, payload) after the handshake and some data
    "client-first": [(True, "fin", 0), (False, "ack", 0), (False, "fin", 0), (True, "ack", 0)],
    "server-first": [(False, "fin", 0), (True, "ack", 0), (True, "fin", 0), (False, "ack", 0)],
    "simultaneous": [(True, "fin", 0), (False, "fin", 0), (True, "ack", 0), (False, "ack", 0)],
    "fin-with-data": [(True, "fin", 300), (False, "fin", 1460), (True, "ack", 0), (False, "ack", 0)],
    "half-close": [(True, "fin", 0), (False, "data", 100), (True, "ack", 0), (False, "data", 100),
                   (True, "ack", 0), (False, "fin", 0), (True, "ack", 0)],
    "fin-retransmitted": [(True, "fin", 0), ("again", "fin", 0), (False, "ack", 0), (False, "fin", 0),
                          ("again", "fin", 0), (True, "ack", 0)],
    "fin-then-rst": [(True, "fin", 0), (False, "rst", 0), (True, "fin", 0)],
}


@pytest.mark.parametrize("how", sorted(CLOSES))
@pytest.mark.parametrize("opening_kind", ["full", "midstream", "no-ack"])
def test_every_way_to_close_gives_the_same_results_both_ways(how, opening_kind):
    # FINs take the fast path: the close of every connection, in every order
    steps = [(i % 2 == 0, 0, "data", 0, 0, 100, 65535, "", 0.001, "") for i in range(4)]
    last = None
    for c2s, kind, n in CLOSES[how]:
        if c2s == "again":
            # the previous segment once more: its sender's next-sequence moved past it
            c2s, kind, n = last
            dseq = -(n + 1)
        else:
            dseq = 0
        steps.append((c2s, 0, kind, dseq, 0, n, 65535, "", 0.001, ""))
        last = (c2s, kind, n)
    steps.append((True, 0, "ack", 0, 0, 0, 65535, "", 30.0, ""))     # timers as the close left them
    packets = established_traffic(4, (100, 5000, 7, True, opening_kind), steps)
    hits = same_both_ways([as_batch(packets)], timeouts="conntrack")
    assert hits > 0


# every single perturbation, placed between runs of well-behaved traffic: each of the
# fast path's exits next to the state its updates leave (hypothesis above mixes them)
ODD_FIELDS = {
    "kind": ["fin", "rst", "syn", "urg"],
    "dseq": [-1, 1, -100, 500, -70000, 70000, 1 << 31],
    "dack": [-1, 1, -1000, 1000, -70000, 1 << 31],
    "win": [1, 0],
    "opt": ["sack", "sack-old", "ts"],
    "mutation": ["badsum", "cut"],
}
SINGLE_ODD = [(field, value) for field, values in ODD_FIELDS.items() for value in values]


@pytest.mark.parametrize("wscale", [None, 7])
@pytest.mark.parametrize("field,value", SINGLE_ODD, ids=[f"{f}={v}" for f, v in SINGLE_ODD])
def test_each_single_perturbation_gives_the_same_results_both_ways(field, value, wscale):
    def clean(i, c2s):
        return (c2s, 0, "data" if i % 2 else "ack", 0, 0, 100, 65535, "", 0.001, "")

    odd = dict(kind="data", dseq=0, dack=0, win=65535, opt="", mutation="")
    odd[field] = value
    for c2s in (True, False):
        steps = [clean(i, i % 2 == 0) for i in range(4)]
        steps.append((c2s, 0, odd["kind"], odd["dseq"], odd["dack"], 100, odd["win"], odd["opt"], 0.001,
                      odd["mutation"]))
        steps += [clean(i, i % 2 == 1) for i in range(4)]
        # then a pause longer than CLOSE's timeout and shorter than ESTABLISHED's: a timer
        # left as the perturbation set it shows up as a connection that ended, or did not
        steps.append((True, 0, "ack", 0, 0, 0, 65535, "", 30.0, ""))
        steps += [clean(i, i % 2 == 0) for i in range(3)]
        packets = established_traffic(4, (100, 5000, wscale, True, "full"), steps)
        same_both_ways([as_batch(packets)], timeouts="conntrack")


# ---- random openings ----
#
# `_syn_new` and `_synack_fast` restate what the general path does with a connection's
# first SYN and the SYN-ACK that answers it. Here each of two connections on one
# 4-tuple pair goes through a random opening: the usual SYN, SYN-ACK, ACK mixed with
# what each of their exits must leave to the general path (SYN retransmitted or with
# a new ISN, data on a SYN or SYN-ACK, zero windows, URG, ECN flags, SACK blocks on a
# SYN-ACK, an ACK outside the window, the SYN-ACK first or twice, a responder's SYN
# for a simultaneous open, RSTs, bad checksums, cut packets, one-sided options), then
# a little data and a close, and sometimes the 4-tuple reused later.

opening_step = st.tuples(
    st.sampled_from(["syn", "syn", "synack", "synack", "ack", "rst", "syn-from-server", "synack-from-client",
                     "data"]),
    st.sampled_from([0, 0, 0, 1, -1, 1000, 1 << 31]),                      # seq offset (new ISN)
    st.sampled_from([0, 0, 0, 1, -1, 2, -70000, 1 << 31]),                  # ack offset
    st.sampled_from([0, 0, 0, 20]),                                         # payload
    st.sampled_from([64240, 64240, 0, 1]),                                  # window
    st.sampled_from(["", "", "urg", "ece", "psh"]),                         # extra flags
    st.sampled_from(["both", "both", "none", "wscale", "sack", "mss", "sack-block", "ts"]),
    st.sampled_from([0.0, 0.001, 1.0, 200.0]),                              # time step
    st.sampled_from(["", "", "", "badsum", "cut"]),
)


def random_openings(family: int, isns, openings, then_reuse: bool, client_above: bool = False) -> list[Packet]:
    c, s = (CLIENT, SERVER) if family == 4 else (CLIENT6, SERVER6)
    if client_above:
        c, s = s, c           # the client's address sorts above the server's: the key is stored swapped
    out, t = [], 1000.0
    extra = {"": 0, "urg": Flags.URG, "ece": Flags.ECE | Flags.CWR, "psh": Flags.PSH}
    for rnd in range(2 if then_reuse else 1):
        for k, steps in enumerate(openings):
            c_isn, s_isn = ((isns[0] + rnd * 100_000) % WRAP, (isns[1] + rnd * 100_000) % WRAP)
            port = 40000 + k
            for kind, dseq, dack, n, win, more, opts, dt, mutation in steps:
                t += dt
                from_client = kind in ("syn", "ack", "rst", "synack-from-client", "data")
                src, dst, sp, dp = (c, s, port, SERVER_PORT) if from_client else (s, c, SERVER_PORT, port)
                flags = {"syn": Flags.SYN, "synack": Flags.SYN | Flags.ACK, "ack": Flags.ACK,
                         "rst": Flags.RST | Flags.ACK, "syn-from-server": Flags.SYN,
                         "synack-from-client": Flags.SYN | Flags.ACK, "data": Flags.ACK | Flags.PSH}[kind]
                own, other = (c_isn, s_isn) if from_client else (s_isn, c_isn)
                syn = bool(flags & Flags.SYN)
                seq = (own + dseq + (0 if syn else 1)) % WRAP
                ack = (other + 1 + dack) % WRAP if flags & Flags.ACK else 0
                options = {}
                if syn and opts in ("both", "wscale"):
                    options["wscale"] = 7
                if syn and opts in ("both", "sack"):
                    options["sack_permitted"] = True
                if syn and opts in ("both", "mss"):
                    options["mss"] = 1460
                if opts == "sack-block":
                    options["sack"] = [((other + 100) % WRAP, (other + 600) % WRAP)]
                if opts == "ts":
                    options["timestamp"] = (int(t * 1000) % WRAP, 0)
                pkt = fasttcp.build(src, dst, sp, dp, seq=seq, ack=ack, flags=flags | extra[more], window=win,
                                    options=options or None, payload=bytes(n if kind != "rst" else 0))
                if mutation == "badsum":
                    pkt = _corrupt_tcp_checksum(pkt)
                elif mutation == "cut":
                    pkt = pkt[:_tcp_header_end(pkt)]
                out.append(Packet(pkt, t, kind))
            # then data both ways and a client-first close, all well-behaved
            t += 0.01
            close = ((True, Flags.ACK | Flags.PSH, 1, 1, 100), (False, Flags.ACK | Flags.PSH, 1, 101, 300),
                     (True, Flags.FIN | Flags.ACK, 101, 301, 0), (False, Flags.FIN | Flags.ACK, 301, 102, 0),
                     (True, Flags.ACK, 102, 302, 0))
            for from_client, flags, dseq, dack, n in close:
                src, dst, sp, dp = (c, s, port, SERVER_PORT) if from_client else (s, c, SERVER_PORT, port)
                own, other = (c_isn, s_isn) if from_client else (s_isn, c_isn)
                out.append(Packet(fasttcp.build(src, dst, sp, dp, seq=(own + dseq) % WRAP, ack=(other + dack) % WRAP,
                                                flags=flags, window=65535, payload=bytes(n)), t, "close"))
                t += 0.001
        t += 300.0          # past TIME_WAIT (conntrack's 120 s): the 4-tuple is free again
    return out


@pytest.mark.fuzz
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(family=st.sampled_from([4, 6]),
       isns=st.tuples(st.sampled_from([100, WRAP - 1, 0x7FFFFFFF]), st.sampled_from([5000, WRAP - 2, 0])),
       openings=st.lists(st.lists(opening_step, min_size=1, max_size=6), min_size=1, max_size=2),
       then_reuse=st.booleans(), client_above=st.booleans(), liberal=st.booleans(), verify=st.booleans(),
       loose=st.booleans(), timeouts=st.sampled_from(["conntrack", "zeek"]), full=st.booleans())
def test_random_openings_give_the_same_results_both_ways(family, isns, openings, then_reuse, client_above, liberal,
                                                          verify, loose, timeouts, full):
    packets = random_openings(family, isns, openings, then_reuse, client_above)
    # `full`: a table of one connection, so that a new SYN evicts (closed connections
    # first, then unanswered attempts) before the record it gets is set up
    extra = {"capacity": 1} if full else {}
    same_both_ways([as_batch(packets)], liberal=liberal, verify_checksum=verify, loose=loose, timeouts=timeouts,
                   **extra)


@pytest.mark.parametrize("client_above", [False, True])
@pytest.mark.parametrize("family", [4, 6])
def test_a_clean_opening_takes_the_fast_paths(family, client_above):
    # SYN, SYN-ACK (one-sided or no options too), then the handshake's ACK: each on its fast path
    for opts in ("both", "none", "wscale", "sack", "mss", "ts"):
        steps = [("syn", 0, 0, 0, 64240, "", opts, 0.0, ""), ("synack", 0, 0, 0, 64240, "", opts, 0.001, ""),
                 ("ack", 0, 0, 0, 64240, "", "", 0.001, "")]
        packets = random_openings(family, (100, 5000), [steps, steps], False, client_above)
        hits = same_both_ways([as_batch(packets)], timeouts="conntrack")
        # the three opening segments of two connections, and their close's ACK-class
        # segments (data, data, FIN, FIN, ACK)
        assert hits == 2 * (3 + 5), opts


@pytest.mark.parametrize("acked", [1, 3, 21])
def test_a_synack_acknowledging_data_the_capture_cut_from_the_syn_leaves_the_same_gap(acked):
    # A SYN carrying 20 bytes (Fast Open) that the snap length cut: its data never
    # crossed the capture point. The SYN-ACK acknowledges `acked` - 1 of those bytes and
    # takes the fast path, which must account the content gap (Zeek's 'G',
    # missed_bytes) exactly as the general path does.
    steps = [("syn", 0, 0, 20, 64240, "", "both", 0.0, "cut"),
             ("synack", 0, acked - 1, 0, 64240, "", "both", 0.001, ""),
             ("ack", 0, 0, 0, 64240, "", "", 0.001, "")]
    packets = random_openings(4, (100, 5000), [steps], False)
    t = Tracker(seed=3)
    t.feed_batch(*as_batch(packets[:2]))
    (row,) = t.connections()
    assert row["missed_bytes"] == acked - 1
    # the SYN (data) goes the general path, the SYN-ACK the fast one
    assert same_both_ways([as_batch(packets[:2])], timeouts="conntrack") == 1
    same_both_ways([as_batch(packets)], timeouts="conntrack")
