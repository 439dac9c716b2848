"""Hostile segments against the SYN cookie paths, each run in a child process
(tests/probe.py): whatever a peer sends to a listening port -- forged cookie ACKs with
any options, SYNs with any options, truncated and oversized options -- is a counted
verdict, never a crash, and never a connection it did not earn."""
import ast

from tests.probe import expect_ok

# random ACKs (and SYNs) with random options, checksums right, through both paths
_FUZZ = """
import random
from fasttcp import Endpoint, Flags, build
rng = random.Random({seed})
ep = Endpoint(['198.18.0.1'], seed=1, syn_cookies='{mode}', capacity=64, max_events=1024)
ep.listen(80)
pkts = []
for i in range({n}):
    opts = {{}}
    if rng.random() < 0.5:
        opts['timestamp'] = (rng.getrandbits(32), rng.getrandbits(32))
    if rng.random() < 0.3:
        opts['wscale'] = rng.randrange(256)
    if rng.random() < 0.3:
        opts['mss'] = rng.randrange(65536)
    if rng.random() < 0.3:
        opts['sack_permitted'] = True
    flags = rng.choice([Flags.ACK, Flags.ACK | Flags.PSH, Flags.ACK | Flags.FIN, Flags.SYN, Flags.ACK | Flags.RST])
    payload = bytes(rng.randrange(256) for _ in range(rng.choice([0, 0, 1, 100])))
    pkts.append(build('198.18.%d.%d' % (rng.randrange(1, 255), rng.randrange(1, 255)), '198.18.0.1',
                      rng.randrange(1, 65536), 80, seq=rng.getrandbits(32), ack=rng.getrandbits(32),
                      flags=flags, options=opts or None, payload=payload))
half = len(pkts) // 2
for p in pkts[:half]:
    ep.receive(p, 1.0)
    ep.transmit()
buf = b''.join(pkts[half:])
offs, at = [], 0
for p in pkts[half:]:
    offs.append(at)
    at += len(p)
res = ep.receive_batch(buf, offs, [len(p) for p in pkts[half:]], 2.0)
s = ep.stats
outcome(dict(ok=s['syn_cookies_ok'], failed=s['syn_cookies_failed'], sent=s['syn_cookies_sent'],
             conns=len(ep), segs=s['segments_in']))
"""


def test_forged_cookie_acks_with_any_options_never_open_a_connection():
    r = ast.literal_eval(expect_ok(_FUZZ.format(seed=1, mode="always", n=20000)))
    assert r["segs"] == 20000 and r["ok"] == 0 and r["failed"] > 5000 and r["sent"] > 2000
    assert r["conns"] == 0


def test_auto_mode_under_the_same_input_is_counted_too():
    r = ast.literal_eval(expect_ok(_FUZZ.format(seed=2, mode="auto", n=20000)))
    assert r["segs"] == 20000 and r["ok"] == 0 and r["sent"] > 0


def test_truncated_and_bad_option_segments_to_a_cookie_listener():
    out = expect_ok("""
from fasttcp import Endpoint, Flags, build
ep = Endpoint(['198.18.0.1'], seed=1, syn_cookies='always')
ep.listen(80)
syn = build('198.18.0.9', '198.18.0.1', 1000, 80, seq=5, flags=Flags.SYN,
            options={'mss': 1460, 'timestamp': (1, 0), 'wscale': 3})
verdicts = [ep.receive(syn[:n], 1.0) for n in range(len(syn))]
bad = bytearray(syn)
bad[40:44] = b'\\x08\\x30\\x00\\x00'               # a timestamp option claiming 48 bytes
verdicts.append(ep.receive(bytes(bad), 1.0))
outcome((set(verdicts), ep.stats['syn_cookies_sent'], len(ep.transmit())))
""")
    verdicts, sent, transmitted = eval(out)
    assert verdicts == {"malformed"} and sent == 0 and transmitted == 0


def test_minute_offset_hook_sweep():
    out = expect_ok("""
ep = fasttcp.Endpoint(['198.18.0.1'])
r = []
for v in [-1, 0, 2**32 - 1, 2**32, 2**64, True, 1.5, None, '3']:
    try:
        ep._set_cookie_minute_offset(v)
        r.append('ok')
    except fasttcp.UsageError:
        r.append('UsageError')
outcome(r)
""")
    assert eval(out) == ["UsageError", "ok", "ok", "UsageError", "UsageError", "UsageError", "UsageError",
                         "UsageError", "UsageError"]
