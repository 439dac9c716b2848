"""Script segments <-> wire packets: packetdrill's sequence, ack and TS mapping.

packetdrill (run_packet.c, socket.h) keeps two spaces per connection under test. A script
writes the peer's numbers relative to the ISN of the peer's SYN (`remote_isn`) and ours
relative to the ISN our stack chose (`live_local_isn`, learned from its SYN or SYN-ACK);
a SYN's own sequence number and a SYN-ACK's ack are absolute. A TS ecr the peer sends is
the script's TS val of one of our earlier segments, mapped to the value we really sent.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from fasttcp.enums import Flags
from fasttcp.packetdrill.script import PacketSpec, TcpOption
from fasttcp.wire.segment import Segment, build, parse

__all__ = ["Flow", "Actual", "encode_options", "option_text", "decode_options",
           "inbound_packet", "actual_from_packets", "format_spec", "format_actual"]

MASK32 = 0xFFFFFFFF
TCPOPT_EOL, TCPOPT_NOP, TCPOPT_MSS, TCPOPT_WSCALE, TCPOPT_SACK_PERM, TCPOPT_SACK, TCPOPT_TS = (
    0, 1, 2, 3, 4, 5, 8)
_FLAG_BITS = {"FIN": Flags.FIN, "SYN": Flags.SYN, "RST": Flags.RST, "PSH": Flags.PSH,
              "ACK": Flags.ACK, "URG": Flags.URG, "ECE": Flags.ECE, "CWR": Flags.CWR}
_FLAG_LETTERS = (("SYN", "S"), ("FIN", "F"), ("RST", "R"), ("PSH", "P"), ("URG", "U"),
                 ("ECE", "E"), ("CWR", "W"), ("ACK", "."))


@dataclass
class Flow:
    """packetdrill's ``struct socket`` for the connection under test: its ports, how it
    was opened, and the ISN and TS-val mappings between script and live values."""

    local_port: int
    remote_port: int
    passive: bool
    phase: str                      # passive_received, synack_sent, active_syn_sent, ...
    live_local_isn: int = 0
    script_local_isn: int = 0
    remote_isn: int = 0
    ts_map: dict[int, int] = field(default_factory=dict)   # script TS val -> live TS val
    first_ts: tuple[int, int] | None = None                 # (script val, live val)


@dataclass
class Actual:
    """An outbound segment (or an aggregate of consecutive ones) in script space."""

    time_us: int
    flags: frozenset[str]
    seq: int
    ack: int
    window: int
    payload_len: int
    options: list[tuple[int, bytes]]          # (kind, data) in wire order
    live_ts_val: int | None
    ports: tuple[int, int]


def encode_option(opt: TcpOption, flow: Flow | None, has_ack: bool) -> bytes:
    """Wire bytes of one script option (inbound); TS ecr mapped as map_inbound_packet does.
    Raises LookupError when an ecr matches no outbound TS val (packetdrill's error)."""
    v = opt.values
    if opt.name == "nop":
        return bytes([TCPOPT_NOP])
    if opt.name == "eol":
        return bytes([TCPOPT_EOL])
    if opt.name == "sackOK":
        return bytes([TCPOPT_SACK_PERM, 2])
    if opt.name == "mss":
        return struct.pack("!BBH", TCPOPT_MSS, 4, v[0])
    if opt.name == "wscale":
        return struct.pack("!BBB", TCPOPT_WSCALE, 3, v[0])
    if opt.name == "TS":
        ecr = v[1]
        if has_ack and flow is not None:
            if ecr in flow.ts_map:
                ecr = flow.ts_map[ecr]
            else:
                raise LookupError(f"unable to infer live TS ecr for script TS ecr {ecr};  "
                                  "no matching or preceding outbound TS val")
        return struct.pack("!BBII", TCPOPT_TS, 10, v[0], ecr)
    # sack blocks: ack-space numbers, moved like the ack field (offset_sack_blocks)
    off = flow.live_local_isn if flow is not None else 0
    blocks = b"".join(struct.pack("!I", (x + off) & MASK32) for x in v)
    return bytes([TCPOPT_SACK, 2 + len(blocks)]) + blocks


def encode_options(options: tuple[TcpOption, ...], flow: Flow | None, has_ack: bool) -> bytes:
    """All options, padded with EOL to a multiple of 4 bytes (as packetdrill does)."""
    raw = b"".join(encode_option(o, flow, has_ack) for o in options)
    if len(raw) > 40:
        raise ValueError(f"TCP options take {len(raw)} bytes; the header holds 40")
    return raw + bytes(-len(raw) % 4)


def decode_options(raw: bytes) -> list[tuple[int, bytes]]:
    """(kind, data) of each option in raw header bytes; trailing EOL padding dropped."""
    out: list[tuple[int, bytes]] = []
    i = 0
    while i < len(raw):
        kind = raw[i]
        if kind == TCPOPT_EOL:
            if any(raw[i:]):
                out.append((kind, b""))
                i += 1
                continue
            break
        if kind == TCPOPT_NOP:
            out.append((kind, b""))
            i += 1
            continue
        length = raw[i + 1] if i + 1 < len(raw) else 0
        if length < 2 or i + length > len(raw):
            out.append((kind, raw[i + 2:]))
            break
        out.append((kind, raw[i + 2:i + length]))
        i += length
    return out


def option_text(kind: int, data: bytes, sack_offset: int = 0) -> str:
    """packetdrill's spelling of one option (for failure messages)."""
    if kind == TCPOPT_NOP:
        return "nop"
    if kind == TCPOPT_EOL:
        return "eol"
    if kind == TCPOPT_MSS and len(data) == 2:
        return f"mss {struct.unpack('!H', data)[0]}"
    if kind == TCPOPT_WSCALE and len(data) == 1:
        return f"wscale {data[0]}"
    if kind == TCPOPT_SACK_PERM and not data:
        return "sackOK"
    if kind == TCPOPT_TS and len(data) == 8:
        val, ecr = struct.unpack("!II", data)
        return f"TS val {val} ecr {ecr}"
    if kind == TCPOPT_SACK and len(data) % 8 == 0:
        edges = [(x - sack_offset) & MASK32 for x in struct.unpack(f"!{len(data) // 4}I", data)]
        return "sack " + " ".join(f"{a}:{b}" for a, b in zip(edges[::2], edges[1::2], strict=False))
    return f"kind {kind} len {len(data) + 2}"


def flags_text(flags: frozenset[str]) -> str:
    """packetdrill's letters for a flag set ('S.', 'F.', 'P.', 'R', '.')."""
    return "".join(letter for name, letter in _FLAG_LETTERS if name in flags)


def inbound_packet(spec: PacketSpec, flow: Flow, local_ip: str, remote_ip: str) -> bytes:
    """The wire packet of a ``<`` line (map_inbound_packet): seq moved by remote_isn
    unless a SYN, ack by the local ISN mapping, TS ecr by the outbound TS vals seen."""
    is_syn = "SYN" in spec.flags
    seq = (spec.seq + (0 if is_syn else flow.remote_isn)) & MASK32
    ack_off = (flow.live_local_isn - flow.script_local_isn) if is_syn else flow.live_local_isn
    ack = ((spec.ack or 0) + ack_off) & MASK32 if spec.ack is not None else 0
    bits = 0
    for name in spec.flags:
        bits |= _FLAG_BITS[name]
    if spec.ack is not None:
        bits |= Flags.ACK     # parser.y: an ack number sets the ACK bit
    opts = encode_options(spec.options or (), flow, "ACK" in spec.flags or spec.ack is not None)
    return build(remote_ip, local_ip, flow.remote_port, flow.local_port, seq=seq, ack=ack,
                 flags=int(bits), window=spec.window or 0, options=opts or None,
                 payload=bytes(spec.payload_len))


def _segment_flags(seg: Segment) -> frozenset[str]:
    return frozenset(name for name, bit in _FLAG_BITS.items() if seg.flags & bit)


def actual_from_packets(packets: list[tuple[int, Segment]], flow: Flow, script_has_ts: bool,
                        script_ts_val: int | None) -> Actual:
    """Map consecutive outbound segments (aggregated like do_outbound_script_packet) into
    script space: seq by the local ISN, ack by remote_isn, TS val by the first TS seen."""
    t, first = packets[0]
    is_syn = bool(first.flags & Flags.SYN)
    seq_off = (flow.live_local_isn - flow.script_local_isn) if is_syn else flow.live_local_isn
    ack_off = 0 if is_syn else flow.remote_isn
    flags: set[str] = set()
    for _, seg in packets:
        flags |= _segment_flags(seg)
    options = decode_options(raw_options(first))
    live_ts = None
    for i, (kind, data) in enumerate(options):
        if kind == TCPOPT_TS and len(data) == 8:
            live_ts, ecr = struct.unpack("!II", data)
            if script_has_ts and script_ts_val is not None:
                flow.ts_map[script_ts_val] = live_ts
                if flow.first_ts is None:
                    flow.first_ts = (script_ts_val, live_ts)
                base_script, base_live = flow.first_ts
                options[i] = (kind, struct.pack("!II", (base_script + live_ts - base_live) & MASK32, ecr))
    return Actual(time_us=t, flags=frozenset(flags), seq=(first.seq - seq_off) & MASK32,
                  ack=(first.ack - ack_off) & MASK32 if first.flags & Flags.ACK else first.ack,
                  window=first.window, payload_len=sum(s.payload_len for _, s in packets),
                  options=options, live_ts_val=live_ts, ports=(first.src_port, first.dst_port))


def raw_options(seg: Segment) -> bytes:
    """The option bytes of a parsed segment (between the fixed header and the payload)."""
    wire = seg.to_bytes()
    tcp_start = len(wire) - seg.payload_len - seg.header_len
    return wire[tcp_start + 20:tcp_start + seg.header_len]


def parse_outbound(packet: bytes) -> Segment:
    """Parse a packet the endpoint sent (its checksums are verified: a bad one is a bug)."""
    return parse(packet, verify_checksum=True)


def format_spec(spec: PacketSpec, time_us: int) -> str:
    """A script segment as packetdrill prints it: ``0.100000 S. 0:0(0) ack 1 <...>``."""
    text = f"{time_us / 1e6:.6f} {spec.flags_text} {spec.seq}:{spec.end_seq}({spec.payload_len})"
    if spec.ack is not None:
        text += f" ack {spec.ack}"
    if spec.window is not None:
        text += f" win {spec.window}"
    if spec.options is None:
        text += " <...>"
    elif spec.options:
        text += " <" + ",".join(" ".join([o.name, *_opt_values(o)]) for o in spec.options) + ">"
    return text


def _opt_values(o: TcpOption) -> list[str]:
    if o.name == "TS":
        return [f"val {o.values[0]} ecr {o.values[1]}"]
    if o.name == "sack":
        return [f"{a}:{b}" for a, b in zip(o.values[::2], o.values[1::2], strict=False)]
    return [str(v) for v in o.values]


def format_actual(a: Actual, sack_offset: int = 0) -> str:
    """An outbound segment in script space, spelled like `format_spec`."""
    end = (a.seq + a.payload_len) & MASK32
    text = f"{a.time_us / 1e6:.6f} {flags_text(a.flags)} {a.seq}:{end}({a.payload_len})"
    if "ACK" in a.flags:
        text += f" ack {a.ack}"
    text += f" win {a.window}"
    if a.options:
        text += " <" + ",".join(option_text(k, d, sack_offset) for k, d in a.options) + ">"
    return text
