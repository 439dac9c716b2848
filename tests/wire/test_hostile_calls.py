"""Hostile calls into the wire layer's public API (parse, parse_tcp, build, parse_batch,
Segment/Options, the checksums, fasttcp.seq), each in a child process (tests/probe.py):
a crash or a hang fails one test. Every answer must be a clear UsageError or
MalformedPacket, or a counted verdict -- never a crash, a hang or nonsense accepted."""
import textwrap

import pytest

from tests.probe import INTEGER_SWEEP, expect_ok, expect_raises

PRELUDE = """
from fasttcp import parse, parse_tcp, build, parse_batch, Options, UsageError, MalformedPacket, SEGMENT_DTYPE
from fasttcp import checksum, tcp_checksum, checksum_update, seq
S4, D4 = "198.18.0.1", "198.18.0.2"
# a SYN with an option fasttcp does not decode (kind 30, 4 bytes) between MSS and EOL
OPTS = bytes([2, 4, 5, 180, 30, 4, 0xab, 0xcd])
PKT = build(S4, D4, 40000, 80, seq=1, options=OPTS, payload=b"hello")
OPT_LEN_AT = 20 + 20 + 4 + 1          # the unknown option's length byte
"""


def P(body: str) -> str:
    """The probe: the prelude, then `body` (an indented block is fine)."""
    return PRELUDE + textwrap.dedent(body)


# ---- a Segment whose buffer changes after parse ----

@pytest.mark.parametrize("length", [255, 44, 0, 1, 2])
def test_segment_options_do_not_read_a_rewritten_option_length(length):
    # an option length rewritten to 255 used to return 253 bytes read past the buffer;
    # a zero length looped forever
    assert expect_ok(P(f"""
        buf = bytearray(PKT)
        s = parse(buf)
        buf[OPT_LEN_AT] = {length}
        o = s.options
        assert o.mss == 1460 and o.unknown == [(30, b"\\xab\\xcd")], o
        outcome(s.replace(seq=2).options.unknown)
    """)) == "[(30, b'\\xab\\xcd')]"


def test_segment_options_are_the_ones_parsed_after_the_whole_area_is_rewritten():
    assert expect_ok(P("""
        buf = bytearray(PKT)
        s = parse(buf)
        buf[40:48] = bytes([30, 0, 30, 0, 30, 255, 8, 0])
        outcome((s.options.mss, s.options.unknown, s.replace().options == s.options))
    """)) == "(1460, [(30, b'\\xab\\xcd')], True)"


def test_segment_options_of_a_bare_segment_survive_a_rewrite():
    assert expect_ok(P("""
        tcp = bytearray(PKT[20:])
        s = parse_tcp(tcp)
        tcp[25] = 0
        outcome(s.options.unknown)
    """)) == "[(30, b'\\xab\\xcd')]"


@pytest.mark.parametrize("kind", ["bytearray", "numpy"])
def test_segment_accessors_refuse_a_buffer_that_shrank(kind):
    # numpy arrays cannot be resized while a Segment holds them; a bytearray can
    make = {"bytearray": "bytearray(PKT)", "numpy": "np.frombuffer(PKT, dtype=np.uint8).copy()"}[kind]
    shrink = {"bytearray": "del buf[30:]",
              "numpy": "buf.resize(30, refcheck=False)"}[kind]
    out = expect_ok(P(f"""
        buf = {make}
        s = parse(buf)
        try:
            {shrink}
        except (BufferError, ValueError) as e:
            outcome("resize refused: " + type(e).__name__)
        res = []
        for name, call in (("payload", lambda: s.payload), ("to_bytes", lambda: s.to_bytes()),
                           ("replace", lambda: s.replace(seq=9)), ("eq", lambda: s == s)):
            try:
                call()
                res.append(name + " ok")
            except UsageError as e:
                res.append(name + " refused")
        assert s.options.mss == 1460
        outcome(res)
    """))
    assert out in ("['payload refused', 'to_bytes refused', 'replace refused', 'eq refused']",
                   "'resize refused: BufferError'", "'resize refused: ValueError'"), out


def test_segment_buffer_cannot_shrink_while_its_payload_is_viewed():
    assert expect_ok(P("""
        buf = bytearray(PKT)
        s = parse(buf)
        p = s.payload
        try:
            del buf[30:]
        except BufferError:
            outcome(bytes(p))
        outcome("shrank")
    """)) == "b'hello'"


@pytest.mark.parametrize("where, value", [(2, 0xff), (9, 17), (40 - 8, 0xf0), (20 + 12, 0x20), (20 + 12, 0xf0),
                                         (20, 0x12), (26, 0xff)])
def test_segment_to_bytes_refuses_headers_rewritten_after_parse(where, value):
    # total length, protocol, TCP data offset, source port, ...: the bytes are no longer
    # the packet the segment describes
    expect_raises(P(f"""
        buf = bytearray(PKT)
        s = parse(buf)
        buf[{where}] = {value}
        s.to_bytes()
    """), "UsageError", match="rewritten")


def test_segment_to_bytes_refuses_options_rewritten_after_parse():
    expect_raises(P("""
        buf = bytearray(PKT)
        s = parse(buf)
        buf[OPT_LEN_AT] = 255
        s.to_bytes()
    """), "UsageError", match="rewritten")


def test_segment_to_bytes_of_a_rewritten_payload_is_a_valid_packet_of_it():
    assert expect_ok(P("""
        buf = bytearray(PKT)
        s = parse(buf)
        buf[-5:] = b"HELLO"
        out = s.to_bytes()
        p = parse(out)
        outcome((bytes(p.payload), bytes(s.payload), p.options == s.options))
    """)) == "(b'HELLO', b'HELLO', True)"


def test_parse_tcp_refuses_a_segment_longer_than_an_ipv4_length_can_say():
    expect_raises(P("""
        seg = bytearray(PKT[20:]) + bytearray(70000)
        parse_tcp(seg, src=S4, dst=D4)
    """), "UsageError", match="IPv4")


# ---- parse_batch ----

@pytest.mark.parametrize("offsets, lengths", [
    ("[-1]", "[10]"), ("[0]", "[-1]"), ("[2**31]", "[1]"), ("[2**32]", "[1]"), ("[2**63 - 1]", "[1]"),
    ("np.array([2**64 - 1], dtype=np.uint64)", "[1]"), ("[0]", "[2**63 - 1]"), ("[10]", "[len(PKT)]"),
    ("[len(PKT) + 1]", "[0]"),
])
def test_parse_batch_refuses_spans_outside_the_buffer(offsets, lengths):
    expect_raises(PRELUDE + f"parse_batch(PKT, {offsets}, {lengths})", "UsageError", match="packet 0")


@pytest.mark.parametrize("offsets", ["[0.5]", "np.array([0.0])", "[float('nan')]", "['0']", "[True]",
                                     "[2**64]", "[None]"])
def test_parse_batch_refuses_offsets_that_are_not_integers(offsets):
    expect_raises(PRELUDE + f"parse_batch(PKT, {offsets}, [len(PKT)])", "UsageError", match="integers")


@pytest.mark.parametrize("offsets, lengths", [("[[0]]", "[[len(PKT)]]"), ("0", "len(PKT)"), ("[0, 0]", "[len(PKT)]")])
def test_parse_batch_refuses_shapes_that_are_not_one_row_per_packet(offsets, lengths):
    expect_raises(PRELUDE + f"parse_batch(PKT, {offsets}, {lengths})", "UsageError", match="1-D")


def test_parse_batch_takes_non_contiguous_and_read_only_index_arrays():
    assert expect_ok(P("""
        buf = PKT * 4
        offs = np.arange(8, dtype=np.int64)[::2] * len(PKT) // 2
        lens = np.full(4, len(PKT)); lens.flags.writeable = False
        rows = parse_batch(np.frombuffer(buf, dtype=np.uint8), offs, lens)
        outcome(rows["verdict"].tolist())
    """)) == "[0, 0, 0, 0]"


@pytest.mark.parametrize("out", ["np.zeros(1, dtype=SEGMENT_DTYPE)[::1][:0]", "ro",
                                 "np.zeros(4, dtype=SEGMENT_DTYPE)[::2]", "np.zeros(2, dtype=np.uint8)",
                                 "np.zeros((2, 1), dtype=SEGMENT_DTYPE)"])
def test_parse_batch_refuses_an_out_array_it_cannot_fill(out):
    expect_raises(P(f"""
        ro = np.zeros(2, dtype=SEGMENT_DTYPE); ro.flags.writeable = False
        parse_batch(PKT * 2, [0, len(PKT)], [len(PKT)] * 2, out={out})
    """), "UsageError", match="out")


def test_parse_batch_with_offsets_rewritten_by_another_thread_stays_in_the_buffer():
    # the spans are checked before the loop; a second thread rewriting the arrays while
    # the loop runs without the GIL must not make it read outside the buffer
    assert expect_ok(P("""
        n = 2_000_000
        buf = np.frombuffer(PKT, dtype=np.uint8)
        offs = np.zeros(n, dtype=np.int64)
        lens = np.full(n, len(PKT), dtype=np.int64)
        def scribble():
            offs[::97] = 1 << 40
            offs[::97] = 0
        refused = 0
        with rewriting(scribble):
            for _ in range(5):
                try:
                    rows = parse_batch(buf, offs, lens)
                except UsageError as e:
                    assert "packet" in str(e)
                    refused += 1
        outcome("ok")
    """)) == "'ok'"


def test_parse_batch_buffer_cannot_shrink_under_the_loop():
    assert expect_ok(P("""
        buf = bytearray(PKT * 200_000)
        n = 200_000
        offs = np.arange(n, dtype=np.int64) * len(PKT)
        lens = np.full(n, len(PKT), dtype=np.int64)
        res = {}
        def shrink():
            try:
                for _ in range(200):
                    del buf[len(buf) // 2:]
                    buf.extend(bytes(len(buf)))
            except BufferError:
                res["blocked"] = True
        th = threading.Thread(target=shrink)
        th.start()
        for _ in range(20):
            try:
                parse_batch(buf, offs, lens)
            except UsageError:
                pass
        th.join()
        outcome("ok")
    """)) == "'ok'"


# ---- build ----

@pytest.mark.parametrize("field, value", [
    ("src_port", "-1"), ("src_port", "65536"), ("dst_port", "2**64"), ("seq", "-1"), ("seq", "2**32"),
    ("ack", "2**64"), ("flags", "512"), ("window", "2**31"), ("urgent", "-1"), ("ttl", "256"),
    ("seq", "1.5"), ("seq", "None"), ("seq", "'1'"),
])
def test_build_refuses_fields_outside_their_bits(field, value):
    kw = {"src_port": "40000", "dst_port": "80"}
    if field in kw:
        kw[field] = value
        call = f"build(S4, D4, {kw['src_port']}, {kw['dst_port']})"
    else:
        call = f"build(S4, D4, 1, 2, {field}={value})"
    expect_raises(PRELUDE + call, "UsageError", match=field)


@pytest.mark.parametrize("options", ["b'\\x01' * 41", "{'mss': 2**16}", "{'wscale': 256}", "{'sack': [(0, 1)] * 5}",
                                     "{'timestamp': (2**32, 0)}", "{'unknown': [(30, b'x' * 39)]}",
                                     "{'unknown': [(2, b'xx')]}", "{'bogus': 1}", "5", "{'sack': [(1,)]}",
                                     "{'timestamp': 5}", "{'unknown': [(300, b'')]}"])
def test_build_refuses_options_that_do_not_fit_or_are_not_options(options):
    expect_raises(PRELUDE + f"build(S4, D4, 1, 2, options={options})", "UsageError")


@pytest.mark.parametrize("dst", ["'2001:db8::2'", "'198.18.0.256'", "None", "5", "b'abc'"])
def test_build_refuses_addresses_that_are_not_one_family(dst):
    expect_raises(PRELUDE + f"build(S4, {dst}, 1, 2)", "UsageError")


@pytest.mark.parametrize("src, dst", [("S4", "D4"), ("'2001:db8::1'", "'2001:db8::2'")])
def test_build_refuses_a_payload_longer_than_an_ip_packet(src, dst):
    expect_raises(PRELUDE + f"build({src}, {dst}, 1, 2, payload=bytes(65536))", "UsageError", match="fit")


# ---- checksums ----

@pytest.mark.parametrize("call", ["checksum_update(-1, 1, 2)", "checksum_update(2**16, 1, 2)",
                                  "checksum_update(0, -1, 2)", "checksum_update(0, 2**16, 2)",
                                  "checksum_update(0, 1, 2, size=0)", "checksum_update(0, 1, 2, size=2**64)",
                                  "checksum_update(0, b'ab', b'abc')", "checksum_update(0, 1, b'ab')",
                                  "checksum_update(True, 1, 2)", "checksum_update(0, 1, 2, size=True)",
                                  "checksum_update(0.5, 1, 2)"])
def test_checksum_update_refuses_values_that_are_not_fields(call):
    expect_raises(PRELUDE + call, "UsageError")


@pytest.mark.parametrize("data", ["np.arange(10, dtype=np.uint8)[::2]", "np.zeros((4, 4), dtype=np.uint8).T"])
def test_checksums_refuse_non_contiguous_buffers(data):
    expect_raises(PRELUDE + f"checksum({data})", "UsageError", match="contiguous")
    expect_raises(PRELUDE + f"tcp_checksum(S4, D4, {data})", "UsageError", match="contiguous")


def test_checksums_of_read_only_and_wide_buffers_count_bytes():
    assert expect_ok(P("""
        a = np.frombuffer(bytes(range(16)), dtype=np.uint16)
        outcome(checksum(a) == checksum(bytes(range(16))) == checksum(memoryview(bytes(range(16)))))
    """)) == "True"


# ---- fasttcp.seq ----

@pytest.mark.parametrize("call", ["seq.lt(-1, 0)", "seq.lt(0, 2**32)", "seq.add(0, 2**64)", "seq.diff(2**64, 0)",
                                  "seq.lt(np.array([-1]), 0)", "seq.lt(np.array([2**32]), 0)",
                                  "seq.add(np.array([2**64 - 1], dtype=np.uint64), 0)",
                                  "seq.lt(np.array([0.5]), 0)", "seq.lt(True, 0)", "seq.lt(np.array([True]), 0)",
                                  "seq.lt('1', 0)", "seq.lt(None, 0)", "seq.between(0, 1, 2**32)",
                                  "seq.acceptable(0, 0, 0, -1)", "seq.in_window(0, 0, 2**32)",
                                  "seq.lt(np.zeros(3, np.uint32), np.zeros(4, np.uint32))",
                                  "seq.lt(np.array([object()]), 0)", "seq.lt(1.0, 2)"])
def test_seq_refuses_what_is_not_a_32_bit_sequence_number(call):
    expect_raises(PRELUDE + call, "UsageError")


def test_seq_takes_non_contiguous_and_read_only_arrays():
    assert expect_ok(P("""
        a = np.arange(10, dtype=np.uint32)[::2]
        b = np.full(5, 2**32 - 1, dtype=np.int64); b.flags.writeable = False
        outcome((seq.lt(a, b).tolist(), seq.add(b, a).tolist()))
    """)) == "([False, False, False, False, False], [4294967295, 1, 3, 5, 7])"


# ---- every integer argument: negative, zero, 2^31, 2^32, 2^63, 2^64 ----

SWEEP = INTEGER_SWEEP + """
SEG = parse(PKT)
"""


@pytest.mark.parametrize("call", [
    "build(S4, D4, v, 80)", "build(S4, D4, 1, v)", "build(S4, D4, 1, 2, seq=v)", "build(S4, D4, 1, 2, ack=v)",
    "build(S4, D4, 1, 2, flags=v)", "build(S4, D4, 1, 2, window=v)", "build(S4, D4, 1, 2, urgent=v)",
    "build(S4, D4, 1, 2, ttl=v)", "build(S4, D4, 1, 2, options={'mss': v})",
    "build(S4, D4, 1, 2, options={'timestamp': (v, 0)})", "build(S4, D4, 1, 2, options={'sack': [(v, 0)]})",
    "build(S4, D4, 1, 2, options={'unknown': [(v, b'')]})", "SEG.replace(seq=v)", "SEG.replace(src_port=v)",
    "parse_batch(PKT, [v], [len(PKT)])", "parse_batch(PKT, [0], [v])",
    "parse_batch(PKT, np.array([v % 2**64], dtype=np.uint64), [1])", "checksum_update(v, 1, 2)",
    "checksum_update(0, v, 2, size=4)", "checksum_update(0, 1, 2, size=v)", "seq.add(v, 1)", "seq.lt(1, v)",
    "seq.diff(np.array([v % 2**64], dtype=np.uint64), 0)", "seq.acceptable(0, v, 0, 10)",
    "seq.in_window(v, 0, 10)", "Options(wscale=v)", "parse(PKT[:max(0, min(v, len(PKT)))])",
])
def test_wire_integer_arguments_never_crash_and_raise_only_fasttcp_errors(call):
    out = expect_ok(P(SWEEP + f"outcome(sweep(lambda v: {call}))"))
    assert "ok" in out or "UsageError" in out or "Truncated" in out, out


def test_checksum_of_a_large_buffer_cannot_be_shrunk_under_it_by_another_thread():
    # checksum releases the GIL from 64 KiB on; the buffer stays exported meanwhile, so
    # a second thread's resize is refused instead of freeing the bytes being summed
    assert expect_ok(P("""
        buf = bytearray(b"\\x01\\x02" * (8 << 20))
        res = {"blocked": 0, "shrunk": 0}
        stop = []
        def shrink():
            while not stop:
                try:
                    del buf[1 << 20:]
                    buf.extend(b"\\x01\\x02" * ((16 << 20) - len(buf) >> 1))
                    res["shrunk"] += 1
                except BufferError:
                    res["blocked"] += 1
        th = threading.Thread(target=shrink)
        th.start()
        try:
            for _ in range(20):
                checksum(buf)             # of whatever the buffer holds while exported
        finally:
            stop.append(1)
            th.join()
        outcome("ok")
    """)) == "'ok'"


def test_segment_of_an_mmap_closed_since_parse_refuses_its_accessors():
    # a Segment keeps a reference, not an export: the mmap can be closed (unmapped)
    assert expect_ok(P("""
        import mmap
        m = mmap.mmap(-1, len(PKT))
        m[:] = PKT
        s = parse(m)
        m.close()
        res = []
        for name, call in (("payload", lambda: s.payload), ("to_bytes", s.to_bytes),
                           ("replace", lambda: s.replace(seq=1))):
            try:
                call()
                res.append(name + " ok")
            except UsageError as e:
                assert "closed" in str(e), str(e)
                res.append(name + " refused")
        outcome((res, s.options.mss))
    """)) == "(['payload refused', 'to_bytes refused', 'replace refused'], 1460)"
