"""Compare an outbound segment with the script's, field by field, as packetdrill does.

The order and wording follow run_packet.c (verify_tcp, verify_outbound_live_tcp_options):
payload length, then the data offset (so a missing or extra option shows up there first,
unless the script wrote ``<...>``), the flags one by one, seq, ack, window (only if the
script gave ``win``), then each option. A TS val is not compared (packetdrill checks it
only with --tcp_ts_tick_usecs) and neither is a TS ecr we send.
"""
from __future__ import annotations

from fasttcp.packetdrill.script import PacketSpec
from fasttcp.packetdrill.segments import (
    TCPOPT_EOL,
    TCPOPT_NOP,
    TCPOPT_TS,
    Actual,
    decode_options,
    encode_option,
    option_text,
)

__all__ = ["compare_segment"]

TCP_HDR_WORDS = 5
TS_DATA_LEN = 8                  # TSval + TSecr
MASK32 = 0xFFFFFFFF
_FLAG_FIELDS = (("tcp_fin", "FIN"), ("tcp_syn", "SYN"), ("tcp_rst", "RST"), ("tcp_psh", "PSH"),
                ("tcp_ack", "ACK"), ("tcp_urg", "URG"), ("tcp_ece", "ECE"), ("tcp_cwr", "CWR"))


def _field(name: str, expected: int, actual: int) -> str | None:
    if expected == actual:
        return None
    return (f"live packet field {name}: expected: {expected} (0x{expected:x}) "
            f"vs actual: {actual} (0x{actual:x})")


def _options_len(options: list[tuple[int, bytes]]) -> int:
    n = sum(1 if k in (TCPOPT_EOL, TCPOPT_NOP) else len(d) + 2 for k, d in options)
    return n + (-n % 4)


def compare_segment(spec: PacketSpec, actual: Actual, ts_tick_usecs: int = 0,
                    ts_tolerance_usecs: int = 0) -> str | None:
    """None if `actual` is what `spec` expects, else packetdrill's error text. With
    `ts_tick_usecs` (--tcp_ts_tick_usecs) a TS val must be within `ts_tolerance_usecs`
    of the script's, counted in ticks (verify_outbound_tcp_option)."""
    if spec.payload_len != actual.payload_len:
        return (f"live packet payload: expected {spec.payload_len} bytes vs "
                f"actual {actual.payload_len} bytes")
    actual_words = TCP_HDR_WORDS + _options_len(actual.options) // 4
    if spec.options is None:
        script_words = actual_words                          # tcp_options_allowance()
    else:
        script_raw = b"".join(encode_option(o, None, False) for o in spec.options)
        script_words = TCP_HDR_WORDS + (len(script_raw) + 3) // 4
    checks = [("tcp_data_offset", script_words, actual_words)]
    checks += [(name, int(flag in spec.flags), int(flag in actual.flags)) for name, flag in _FLAG_FIELDS]
    checks.append(("tcp_seq", spec.seq, actual.seq))
    checks.append(("tcp_ack_seq", spec.ack or 0, actual.ack if "ACK" in actual.flags else 0))
    if spec.window is not None:
        checks.append(("tcp_window", spec.window, actual.window))
    for name, want, got in checks:
        why = _field(name, want, got)
        if why:
            return why
    if spec.options is None:
        return None
    return _compare_options(spec, actual, ts_tick_usecs, ts_tolerance_usecs)


def _compare_options(spec: PacketSpec, actual: Actual, tick: int, tolerance: int) -> str | None:
    assert spec.options is not None
    script = decode_options(b"".join(encode_option(o, None, False) for o in spec.options))
    if len(script) != len(actual.options):
        return "bad outbound TCP options"
    for (skind, sdata), (akind, adata) in zip(script, actual.options, strict=False):
        if skind != akind:
            return "bad outbound TCP options"
        if akind == TCPOPT_TS and tick and len(sdata) == len(adata) == TS_DATA_LEN:
            drift = (int.from_bytes(adata[:4], "big") - int.from_bytes(sdata[:4], "big")) & MASK32
            drift = drift - (1 << 32) if drift >= 1 << 31 else drift      # as an s32
            if abs(drift) * tick > tolerance:
                return f"bad outbound TCP timestamp value, tolerance {tolerance}"
        if akind in (TCPOPT_EOL, TCPOPT_NOP, TCPOPT_TS):
            continue
        if sdata != adata:
            kind = "bad length" if len(sdata) != len(adata) else "bad value"
            return (f"{kind} in outbound TCP option (kind={skind}): expected: "
                    f"{option_text(skind, sdata)} actual: {option_text(akind, adata)}")
    return None
