"""SYN cookies: Linux's layout, made and checked by the endpoint's C core.

The oracle (tests/reference/syncookies.py) is Linux's formula written from the kernel
source; the endpoint's cookies and cookie timestamps must be the values it computes from
the same secrets and minute counter, and every cookie must come back as the connection
it stands for -- or be refused when it is stale, forged, for another 4-tuple, or replayed.
"""
from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

import fasttcp
from fasttcp import Cause, Flags, State
from fasttcp.endpoint.endpoint import DROP_REASONS, Endpoint, _secret_words
from fasttcp.errors import UsageError
from tests.reference import syncookies as linux

SECRET = 0x5EC12E7
SERVERS = {4: "198.18.0.2", 6: "2001:2::2"}
CLIENTS = {4: "198.18.0.1", 6: "2001:2::1"}
PORT = 80
MINUTE = 60.0
T0 = 10.0                           # inside minute 0 of the endpoint's clock: minute = now // 60 s


def _keys(secret: int = SECRET) -> tuple[tuple[int, int], tuple[int, int]]:
    """The two SipHash keys an Endpoint(isn_secret=secret) derives (words 6..9)."""
    w = _secret_words(secret, 10)
    return (w[6], w[7]), (w[8], w[9])


def _server(family: int = 4, mode: str = "always", **kw) -> Endpoint:
    ep = Endpoint([SERVERS[family]], seed=7, isn_secret=SECRET, syn_cookies=mode, **kw)
    ep.listen(PORT)
    return ep


def _syn(family, sport, seq, *, mss=1460, wscale=None, sack=False, ts=None):
    opts = {"mss": mss}
    if wscale is not None:
        opts["wscale"] = wscale
    if sack:
        opts["sack_permitted"] = True
    if ts is not None:
        opts["timestamp"] = ts
    return fasttcp.build(CLIENTS[family], SERVERS[family], sport, PORT, seq=seq, flags=Flags.SYN, options=opts)


def _ack(family, sport, seq, ack, *, ts=None, payload=b"", flags=Flags.ACK):
    return fasttcp.build(CLIENTS[family], SERVERS[family], sport, PORT, seq=seq % 2**32, ack=ack % 2**32,
                         flags=flags, options={"timestamp": ts} if ts is not None else None, payload=payload)


def _one(ep: Endpoint) -> fasttcp.Segment:
    out = ep.transmit()
    assert len(out) == 1, out
    return fasttcp.parse(out[0])


def _handshake(ep, family=4, sport=40000, seq=1000, now=T0, **syn_kw):
    """SYN -> cookie SYN-ACK; returns the SYN-ACK segment."""
    assert ep.receive(_syn(family, sport, seq, **syn_kw), now) is None
    return _one(ep)


# ---- layout: the oracle agrees ----

@pytest.mark.parametrize("family", [4, 6])
def test_cookie_isn_and_tsval_are_linux_formula(family):
    ep = _server(family)
    keys = _keys()
    tab = linux.MSSTAB4 if family == 4 else linux.MSSTAB6
    rng = random.Random(family)
    for i, mss in enumerate([100, *tab, 65000]):
        seq = rng.getrandbits(32)
        now = T0 + 1000 * i + rng.random()             # several minute counters
        sa = _handshake(ep, family, 40000 + i, seq, now, mss=mss, wscale=3, sack=True, ts=(77, 0))
        count = int(now // MINUTE)
        want = linux.make(keys, CLIENTS[family], SERVERS[family], 40000 + i, PORT, seq, count,
                          linux.mss_index(mss, family == 6))
        assert sa.seq == want and sa.ack == (seq + 1) % 2**32
        assert sa.options.timestamp == (linux.init_timestamp(int(now * 1000), 3, True), 77)
        # and the oracle's check takes it back to the same MSS index
        assert linux.check(keys, CLIENTS[family], SERVERS[family], 40000 + i, PORT, seq + 1, sa.seq + 1,
                           count) == linux.mss_index(mss, family == 6)


def test_siphash_oracle_matches_reference_vectors():
    # SipHash-2-4 paper, appendix A (key 00..0f; message 00..0e), and the empty message
    k = (int.from_bytes(bytes(range(8)), "little"), int.from_bytes(bytes(range(8, 16)), "little"))
    assert linux.siphash24(k, bytes(range(15))) == 0xA129CA6149BE45E5
    assert linux.siphash24(k, b"") == 0x726FDB47DD0E0E31


# ---- round trips ----

WSCALES = [None, *range(15)]


@pytest.mark.parametrize("family", [4, 6])
def test_every_mss_wscale_sack_timestamp_combination_round_trips(family):
    ep = _server(family)
    tab = linux.MSSTAB4 if family == 4 else linux.MSSTAB6
    ports = itertools.count(20000)
    n = 0
    for mss, wscale, sack, ts in itertools.product(tab, WSCALES, (False, True), (False, True)):
        sport = next(ports)
        seq = (sport * 2654435761) % 2**32
        sa = _handshake(ep, family, sport, seq, mss=mss, wscale=wscale, sack=sack, ts=(1000 + sport, 0) if ts else None)
        assert sa.flags == Flags.SYN | Flags.ACK and sa.options.mss == 1460
        # without timestamps the cookie has no room for window scale and SACK: not offered
        assert sa.options.wscale == (7 if ts and wscale is not None else None)
        assert sa.options.sack_permitted == (ts and sack)
        if ts:                                        # Linux's decoder reads the options back
            assert linux.decode_timestamp(sa.options.timestamp[0]) == (wscale, sack)
        echo = (2000 + sport, sa.options.timestamp[0]) if ts else None
        assert ep.receive(_ack(family, sport, seq + 1, sa.seq + 1, ts=echo), T0 + 1) is None
        conn = ep.accept()
        assert conn is not None and conn.state is State.ESTABLISHED and conn.key[3] == sport
        assert conn.mss == min(mss, 1460)
        assert conn.timestamps == ts and conn.sack_permitted == (ts and sack)
        assert conn.snd_wscale == (wscale if ts and wscale is not None else 0)
        assert conn.rcv_wscale == (7 if ts and wscale is not None else 0)
        tcb = conn.tcb
        assert tcb["iss"] == (sa.seq) and tcb["snd_una"] == tcb["snd_nxt"] == (sa.seq + 1) % 2**32
        assert tcb["irs"] == seq and tcb["rcv_nxt"] == (seq + 1) % 2**32
        n += 1
    s = ep.stats
    assert s["syn_cookies_sent"] == s["syn_cookies_ok"] == n == len(ep) and s["syn_cookies_failed"] == 0
    assert s["half_open"] == 0                       # no record was made for any SYN


@pytest.mark.parametrize("offered", [15, 255])
def test_window_scale_above_14_is_carried_as_14(offered):
    # RFC 7323 2.3: a shift above 14 MUST be used as 14 (Linux's tcp_parse_options); the
    # cookie's 4 bits must not read 15, which means "no window scaling"
    ep = _server(4)
    sa = _handshake(ep, 4, 40000, 99, ts=(5, 0), wscale=offered)
    assert linux.decode_timestamp(sa.options.timestamp[0]) == (14, False)
    assert ep.receive(_ack(4, 40000, 100, sa.seq + 1, ts=(6, sa.options.timestamp[0])), T0) is None
    assert ep.accept().snd_wscale == 14


def test_mss_below_and_between_table_entries_round_down():
    ep = _server(4)
    for sport, (mss, got) in enumerate([(100, 536), (1299, 536), (1300, 1300), (1459, 1440), (9000, 1460)]):
        sa = _handshake(ep, 4, 30000 + sport, 5, mss=mss)
        assert ep.receive(_ack(4, 30000 + sport, 6, sa.seq + 1), T0) is None
        assert ep.accept().mss == got


def test_syn_without_mss_option_gets_the_default_mss():
    ep = _server(4)
    syn = fasttcp.build(CLIENTS[4], SERVERS[4], 30000, PORT, seq=5, flags=Flags.SYN)
    ep.receive(syn, T0)
    sa = _one(ep)
    ep.receive(_ack(4, 30000, 6, sa.seq + 1), T0)
    assert ep.accept().mss == 536                    # RFC 9293 3.7.1 default = msstab[0]


# ---- refusals ----

def _refused(ep, pkt, now):
    before = ep.stats
    assert ep.receive(pkt, now) == "bad_cookie"
    rst = _one(ep)
    assert rst.flags & Flags.RST                    # answered as any ACK to LISTEN (Linux)
    after = ep.stats
    assert after["syn_cookies_failed"] == before["syn_cookies_failed"] + 1
    assert after["drops"]["bad_cookie"] == before["drops"]["bad_cookie"] + 1
    assert len(ep) == after["connections"] == before["connections"] and ep.accept() is None


def test_cookie_is_valid_for_the_next_minute_and_stale_after():
    ep = _server(4)
    a = _handshake(ep, 4, 40000, 99, now=T0)                       # minute 0
    b = _handshake(ep, 4, 40001, 99, now=T0)
    c = _handshake(ep, 4, 40002, 99, now=T0)
    assert ep.receive(_ack(4, 40000, 100, a.seq + 1), T0 + MINUTE) is None   # minute 1: still good
    assert ep.accept().state is State.ESTABLISHED
    _refused(ep, _ack(4, 40001, 100, b.seq + 1), T0 + 2 * MINUTE)  # minute 2: too old
    _refused(ep, _ack(4, 40002, 100, c.seq + 1), T0 + 3 * MINUTE)  # minute 3
    assert ep.stats["syn_cookies_ok"] == 1 and len(ep) == 1


def test_minute_counter_wraps():
    ep = _server(4)
    ep._set_cookie_minute_offset(2**32 - 1)          # the counter reads 0xffffffff in minute 0
    sa = _handshake(ep, 4, 40000, 99, now=T0)
    assert ep.receive(_ack(4, 40000, 100, sa.seq + 1), T0 + MINUTE) is None   # ... and 0 in minute 1
    assert ep.stats["syn_cookies_ok"] == 1


def test_forged_cookies_are_refused():
    ep = _server(4)
    sa = _handshake(ep, 4, 40000, 99)
    _refused(ep, _ack(4, 40000, 100, sa.seq + 1 + (1 << 10)), T0)    # hash bits off: MSS index >= 4
    _refused(ep, _ack(4, 40000, 100, sa.seq + 1 + (1 << 24)), T0)    # minute bits off
    # another sequence number: SEG.SEQ is added into the cookie, so a different one moves
    # the hash bits (a step of a few only moves the MSS index: Linux's layout checks 22 bits)
    _refused(ep, _ack(4, 40000, 100 + (1 << 12), sa.seq + 1), T0)
    rng = random.Random(5)
    for i in range(300):                                             # blind guesses, other ports
        _refused(ep, _ack(4, 41000 + i, rng.getrandbits(32), rng.getrandbits(32)), T0)


@pytest.mark.parametrize("family", [4, 6])
def test_cookie_for_another_four_tuple_is_refused(family):
    ep = _server(family)
    sa = _handshake(ep, family, 40000, 99)
    _refused(ep, _ack(family, 40001, 100, sa.seq + 1), T0)          # another source port
    other = fasttcp.build("198.18.0.3" if family == 4 else "2001:2::3", SERVERS[family], 40000, PORT,
                          seq=100, ack=(sa.seq + 1) % 2**32, flags=Flags.ACK)
    _refused(ep, other, T0)                                          # another source address


def test_secret_keys_the_cookie():
    a, b = _server(4), Endpoint([SERVERS[4]], seed=7, isn_secret=SECRET + 1, syn_cookies="always")
    b.listen(PORT)
    sa = _handshake(a, 4, 40000, 99)
    _refused(b, _ack(4, 40000, 100, sa.seq + 1), T0)


def test_replayed_cookie_does_not_open_a_second_connection():
    ep = _server(4)
    sa = _handshake(ep, 4, 40000, 99)
    ack = _ack(4, 40000, 100, sa.seq + 1)
    assert ep.receive(ack, T0) is None
    conn = ep.accept()
    assert ep.receive(ack, T0) is None               # a duplicate ACK for the connection: no new one
    assert ep.receive(_ack(4, 40000, 100, sa.seq + 1, payload=b"hello"), T0) is None
    ep.transmit()
    # after data the replay is an old segment: refused by the connection (RFC 9293 3.10.7.4)
    assert ep.receive(ack, T0) == "unacceptable"
    assert ep.stats["syn_cookies_ok"] == 1 and len(ep) == 1 and ep.accept() is None
    assert conn.recv() == b"hello"


# ---- what the connection does afterwards ----

def test_cookie_ack_with_data_delivers_it_and_events_say_syn_cookie():
    ep = _server(4)
    sa = _handshake(ep, 4, 40000, 99, ts=(500, 0), wscale=2, sack=True)
    ep.events()
    ack = _ack(4, 40000, 100, sa.seq + 1, ts=(501, sa.options.timestamp[0]), payload=b"GET /",
               flags=Flags.ACK | Flags.PSH)
    assert ep.receive(ack, T0) is None
    evs = ep.events()
    assert [(e.old, e.new, e.cause) for e in evs if e.cause is not Cause.DATA] == [
        (State.LISTEN, State.ESTABLISHED, Cause.SYN_COOKIE)]
    conn = ep.accept()
    assert evs[0].connection is conn and conn.recv() == b"GET /"
    reply = _one(ep)                                 # the data is ACKed, with our timestamp
    assert reply.ack == 105 and reply.options.timestamp[1] == 501
    conn.send(b"200 OK", now=T0)
    out = _one(ep)
    assert out.payload == b"200 OK" and out.seq == (sa.seq + 1) % 2**32
    assert out.window == 65535 >> 7                  # our window, scaled by our shift 7


def test_figure_handshake_between_two_endpoints_with_a_cookie():
    # RFC 9293 figure 6, with the server's ISN a cookie and no SYN-RECEIVED record:
    #   1. A --> <SEQ=C><CTL=SYN>                         --> B  (B: LISTEN, no record)
    #   2. A <-- <SEQ=cookie><ACK=C+1><CTL=SYN,ACK>       <-- B  (B: still LISTEN)
    #   3. A --> <SEQ=C+1><ACK=cookie+1><CTL=ACK>         --> B  (B: ESTABLISHED)
    #   4. A --> <SEQ=C+1><ACK=cookie+1><DATA>            --> B
    client = Endpoint([CLIENTS[4]], seed=1)
    server = _server(4)
    conn = client.connect(SERVERS[4], PORT, now=T0)
    fasttcp.pipe(client, server, T0)                       # 1
    assert len(server) == 0 and server.stats["syn_cookies_sent"] == 1
    fasttcp.pipe(server, client, T0)                       # 2
    assert conn.state is State.ESTABLISHED
    conn.send(b"abc", now=T0)
    for p in client.transmit():                            # 3 and 4 (receive(): the data to recv())
        assert server.receive(p, T0) is None
    srv = server.accept()
    assert srv.state is State.ESTABLISHED and srv.recv() == b"abc"
    assert srv.timestamps and srv.sack_permitted and srv.snd_wscale == 7
    srv.close(now=T0 + 1)
    fasttcp.pipe(server, client, T0 + 1)
    conn.close(now=T0 + 1)
    fasttcp.pipe(client, server, T0 + 1)
    fasttcp.pipe(server, client, T0 + 1)
    assert srv.state is State.TIME_WAIT and conn.state is State.CLOSED     # the server closed first


# ---- modes ----

def test_auto_sends_cookies_only_once_the_backlog_is_full():
    ep = _server(4, "auto", syn_backlog=4)
    for i in range(4):
        _handshake(ep, 4, 40000 + i, 10 * i)
    assert ep.stats["half_open"] == 4 and ep.stats["syn_cookies_sent"] == 0
    sa = _handshake(ep, 4, 40100, 77)                 # the fifth: a cookie, no record
    assert ep.stats["half_open"] == 4 and ep.stats["syn_cookies_sent"] == 1 and len(ep) == 4
    assert ep.receive(_ack(4, 40100, 78, sa.seq + 1), T0) is None
    assert ep.accept().key[3] == 40100
    assert ep.stats["syn_cookies_ok"] == 1 and ep.stats["evictions"] == 0


def test_valid_cookie_into_a_table_full_of_established_is_dropped_and_counted():
    ep = _server(4, capacity=2)
    sas = [_handshake(ep, 4, 40000 + i, 99) for i in range(3)]
    for i in range(2):
        assert ep.receive(_ack(4, 40000 + i, 100, sas[i].seq + 1), T0) is None
    ep.transmit()
    assert ep.receive(_ack(4, 40002, 100, sas[2].seq + 1), T0) == "table_full"
    s = ep.stats
    assert s["drops"]["table_full"] == 1 and s["syn_cookies_ok"] == 2 and s["syn_cookies_failed"] == 0
    assert len(ep) == 2 and ep.transmit() == []           # no RST: the peer's retransmission may fit


def test_cookie_returned_after_unlisten_is_reset_unchecked():
    ep = _server(4)
    sa = _handshake(ep, 4, 40000, 99)
    ep.unlisten(PORT)
    assert ep.receive(_ack(4, 40000, 100, sa.seq + 1), T0) == "no_listener"
    assert _one(ep).flags & Flags.RST and ep.stats["syn_cookies_failed"] == 0 and len(ep) == 0


def test_auto_backlog_counts_only_syn_received_not_our_own_connects():
    # Linux's request queue holds the listener's SYN-RECEIVED requests; connections this
    # endpoint opens (SYN-SENT) are not in it and must not turn on cookies
    ep = _server(4, "auto", syn_backlog=2)
    for i in range(3):
        ep.connect("198.18.0.9", 443, local_port=50000 + i, now=T0)
    ep.transmit()
    assert ep.stats["half_open"] == 0
    _handshake(ep, 4, 40000, 99)
    assert ep.stats["syn_cookies_sent"] == 0 and ep.stats["half_open"] == 1 and len(ep) == 4
    _handshake(ep, 4, 40001, 99)
    _handshake(ep, 4, 40002, 99)                    # the third SYN-RECEIVED: the backlog is full
    assert ep.stats["syn_cookies_sent"] == 1 and ep.stats["half_open"] == 2


def test_half_open_follows_records_through_eviction_establishment_and_reset():
    ep = _server(4, "off", capacity=4)
    sas = [_handshake(ep, 4, 40000 + i, 10 * i) for i in range(6)]    # the first two evicted
    assert ep.stats["half_open"] == 4 and ep.stats["evictions"] == 2
    assert ep.receive(_ack(4, 40005, 51, sas[5].seq + 1), T0) is None  # ESTABLISHED
    assert ep.stats["half_open"] == 3
    assert ep.receive(_ack(4, 40004, 41, 0, flags=Flags.RST), T0) is None   # back to LISTEN
    assert ep.stats["half_open"] == 2 and len(ep) == 3


def test_auto_without_recent_cookies_resets_a_bare_ack_without_checking():
    ep = _server(4, "auto")
    assert ep.receive(_ack(4, 40000, 1, 2), T0) == "no_listener"
    assert _one(ep).flags & Flags.RST and ep.stats["syn_cookies_failed"] == 0


def test_auto_table_full_of_established_answers_with_cookies_instead_of_refusing():
    ep = _server(4, "auto", capacity=4, syn_backlog=4)
    for i in range(4):
        sa = _handshake(ep, 4, 40000 + i, 10 * i)
        ep.receive(_ack(4, 40000 + i, 10 * i + 1, sa.seq + 1), T0)
    assert len(ep) == 4 and ep.stats["half_open"] == 0
    _handshake(ep, 4, 40100, 7)
    assert ep.stats["syn_cookies_sent"] == 1


def test_off_evicts_the_oldest_half_open_connection_as_before():
    ep = _server(4, "off", capacity=4)
    for i in range(6):
        _handshake(ep, 4, 40000 + i, 10 * i)
    s = ep.stats
    assert s["syn_cookies_sent"] == 0 and s["evictions"] == 2 and s["half_open"] == 4
    assert ep.syn_cookies == "off"
    # and an ACK to LISTEN is never taken for a cookie
    assert ep.receive(_ack(4, 41000, 1, 2), T0) == "no_listener"


def test_timestamps_off_refuses_a_cookie_ack_that_carries_them():
    ep = _server(4, timestamps=False)
    sa = _handshake(ep, 4, 40000, 99, ts=(5, 0), sack=True, wscale=3)
    assert sa.options.timestamp is None and sa.options.wscale is None and not sa.options.sack_permitted
    _refused(ep, _ack(4, 40000, 100, sa.seq + 1, ts=(6, 0x13)), T0)     # Linux: no timestamps here
    assert ep.receive(_ack(4, 40000, 100, sa.seq + 1), T0) is None


def test_a_cookie_syn_ack_the_transmit_bound_drops_is_not_counted_as_sent():
    ep = _server(4, max_transmit_bytes=1024)
    for i in range(100):
        assert ep.receive(_syn(4, 40000 + i, i), T0) is None
    s = ep.stats
    assert s["syn_cookies_sent"] == ep.pending_transmit == 100 - s["transmit_dropped"] > 0
    assert s["transmit_dropped"] > 0 and s["half_open"] == 0


# ---- the batch path ----

def test_batch_path_makes_and_checks_the_same_cookies():
    one, many = _server(6), _server(6)
    syns = [_syn(6, 50000 + i, i * 7919, mss=1400 + i, ts=(i, 0), wscale=i % 15, sack=bool(i & 1)) for i in range(64)]
    for p in syns:
        one.receive(p, T0)
    buf = b"".join(syns)
    offs = np.cumsum([0] + [len(p) for p in syns[:-1]])
    res = many.receive_batch(buf, offs, [len(p) for p in syns], T0)
    assert (res == -1).all()
    a, b = one.transmit(), many.transmit()
    assert a == b
    synacks = [fasttcp.parse(p) for p in a]
    acks = [_ack(6, 50000 + i, i * 7919 + 1, sa.seq + 1, ts=(i + 1, sa.options.timestamp[0]))
            for i, sa in enumerate(synacks)]
    acks.append(_ack(6, 51000, 1, 12345))           # a forged one among them
    buf = b"".join(acks)
    offs = np.cumsum([0] + [len(p) for p in acks[:-1]])
    res = many.receive_batch(buf, offs, [len(p) for p in acks], T0 + 1)
    assert list(res[:-1]) == [-1] * 64 and DROP_REASONS[res[-1]] == "bad_cookie"
    assert len(many) == 64 and len(many.accept_batch()) == 64
    ev = many.events_batch()
    assert (ev["cause"] == Cause.SYN_COOKIE).sum() == 64
    assert set(ev["old_state"][ev["cause"] == Cause.SYN_COOKIE]) == {State.LISTEN}


def _random_listener_traffic(rng, family, synacks, n):
    """SYNs with any options, ACKs returning cookies (some stale, some with FIN, RST or
    SYN set, some with timestamps echoing the cookie's) and blind ACKs, no payload (the
    batch path reports data at buffer offsets instead of queueing it, so windows differ)."""
    out = []
    for _ in range(n):
        sport, r = 40000 + rng.randrange(500), rng.random()
        if r < 0.4:
            out.append(_syn(family, sport, rng.getrandbits(32), mss=rng.choice([100, 536, 1300, 1460, 9000]),
                            ts=(rng.getrandbits(32), 0) if rng.random() < 0.5 else None,
                            wscale=rng.choice([None, 0, 7, 14, 15]), sack=rng.random() < 0.5))
        elif r < 0.8:
            sa, sport, seq = rng.choice(synacks)
            ts = (rng.getrandbits(32), sa.options.timestamp[0]) if sa.options.timestamp else None
            out.append(_ack(family, sport, seq + 1, sa.seq + 1 + rng.choice([0, 0, 0, 1 << 24]), ts=ts,
                            flags=Flags.ACK | rng.choice([0, 0, Flags.FIN, Flags.RST, Flags.SYN])))
        else:
            out.append(_ack(family, sport, rng.getrandbits(32), rng.getrandbits(32)))
    return out


@pytest.mark.parametrize("family,mode", list(itertools.product([4, 6], ["always", "auto"])))
def test_batch_and_single_paths_agree_on_random_listener_traffic(family, mode):
    rng = random.Random(family * 10 + len(mode))
    one, many = _server(family, mode, capacity=128, syn_backlog=8), _server(family, mode, capacity=128, syn_backlog=8)
    issuer = _server(family, "always")               # same secret: its cookies are theirs
    synacks = []
    for i in range(300):
        seq = rng.getrandbits(32)
        sa = _handshake(issuer, family, 40000 + i, seq, ts=(1, 0) if i % 2 else None, wscale=i % 16, sack=bool(i & 2))
        synacks.append((sa, 40000 + i, seq))
    for rnd in range(3):
        pkts = _random_listener_traffic(rng, family, synacks, 3000)
        single = [one.receive(p, T0 + rnd) for p in pkts]
        lens = [len(p) for p in pkts]
        res = many.receive_batch(b"".join(pkts), np.cumsum([0, *lens[:-1]]), lens, T0 + rnd)
        assert [None if r < 0 else DROP_REASONS[r] for r in res] == single
        assert one.transmit() == many.transmit()
        assert one.stats == many.stats and one.stats["syn_cookies_ok"] > 0
        assert len(one.events()) == len(many.events_batch())


# ---- arguments ----

def test_minute_offset_hook_checks_its_argument():
    ep = _server(4)
    for bad in (-1, 2**32, True, 1.5, "1"):
        with pytest.raises(UsageError):
            ep._set_cookie_minute_offset(bad)
