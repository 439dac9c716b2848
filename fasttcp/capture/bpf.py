"""Classic BPF programs for a live capture's socket filter (SO_ATTACH_FILTER).

A program is a list of ``(code, jt, jf, k)`` instructions, the kernel's struct sock_filter
(Documentation/networking/filter.rst). Two sources:

- `tcp_program`, written here: "TCP only", for an Ethernet or a raw-IP link. It accepts
  IPv4 with protocol 6 and IPv6 whose next header is 6, also behind one in-band
  802.1Q/802.1ad tag. Most devices' tags never reach the filter: the kernel moves the
  outer tag into the packet's metadata (the ring reports it in tp_vlan_tci) before any
  tap sees the frame, so the filter reads the inner EtherType at offset 12 -- the tag
  test is for a second, inner tag and for devices that keep tags in the frame. IPv6
  extension headers are not walked (the filter sees TCP only straight after the fixed
  header: what a TCP stack sends; tcpdump's "tcp" also takes it only after a fragment
  header). IPv4 fragments after the first pass too (protocol 6), as tcpdump's "ip
  proto 6" would; the tracker counts them.
- `compile_expression`: any other expression, compiled by ``tcpdump -ddd`` for the
  link type, so its meaning is exactly tcpdump's.

`check_program` validates either kind before the kernel sees it (the kernel checks too).
"""
from __future__ import annotations

import shutil
import subprocess

from fasttcp.errors import UsageError

__all__ = ["tcp_program", "compile_expression", "check_program", "BPF_MAX_INSNS", "ACCEPT_BYTES"]

BPF_MAX_INSNS = 4096                 # the kernel's BPF_MAXINSNS
ACCEPT_BYTES = 262144                # "accept, up to this many bytes" (tcpdump's default snap)
TCPDUMP_TIMEOUT = 30                 # seconds: compiling one expression
MAX_EXPRESSION = 8192                # characters: longer is not a filter someone typed

# classic BPF opcodes (include/uapi/linux/bpf_common.h: class | size | mode or op | source)
BPF_LD_H_ABS = 0x28                  # A = 16 bits at [k]
BPF_LD_B_ABS = 0x30                  # A = 8 bits at [k]
BPF_ALU_AND_K = 0x54                 # A &= k
BPF_JEQ_K = 0x15                     # pc += (A == k) ? jt : jf
BPF_RET_K = 0x06                     # accept k bytes (0: drop)
BPF_JA = 0x05                        # pc += k
BPF_CLASS_MASK, BPF_CLASS_JMP, BPF_CLASS_RET = 0x07, 0x05, 0x06

ETH_TYPE = 12                        # EtherType in an untagged Ethernet header
ETH_HDR = 14
VLAN_TAG = 4
ETHERTYPE_IPV4, ETHERTYPE_IPV6 = 0x0800, 0x86DD
ETHERTYPE_8021Q, ETHERTYPE_8021AD = 0x8100, 0x88A8
IPV4_PROTO = 9                       # offsets in the IP header
IPV6_NEXT = 6
PROTO_TCP = 6

LINK_ETHERNET, LINK_RAW = 1, 101     # pcap LINKTYPE_* numbers
_TCPDUMP_DLT = {LINK_ETHERNET: "EN10MB", LINK_RAW: "RAW"}

# every opcode of classic BPF (net/core/filter.c's bpf_check_classic accepts these)
# an assembler line: (label, code, k) or (label, jump code, k, label if true, label if false)
_Line = tuple[str | None, int, int] | tuple[str | None, int, int, str, str]

_VALID_CODES = frozenset((
    0x00, 0x20, 0x28, 0x30, 0x40, 0x48, 0x50, 0x60, 0x61, 0x80, 0x81, 0xB1,    # loads
    0x02, 0x03,                                                                # st, stx
    0x04, 0x0C, 0x14, 0x1C, 0x24, 0x2C, 0x34, 0x3C, 0x44, 0x4C, 0x54, 0x5C,    # alu
    0x64, 0x6C, 0x74, 0x7C, 0x84, 0x94, 0x9C, 0xA4, 0xAC,
    0x05, 0x15, 0x1D, 0x25, 0x2D, 0x35, 0x3D, 0x45, 0x4D,                      # jumps
    0x06, 0x0E, 0x16,                                                          # ret k/x/a
    0x07, 0x87,                                                                # tax, txa
))


def _assemble(lines: list[_Line]) -> list[tuple[int, int, int, int]]:
    """Instructions with symbolic jump targets -> (code, jt, jf, k). A line is
    ``(label, code, k)`` or ``(label, BPF_JEQ_K, k, true_label, false_label)``."""
    where = {line[0]: i for i, line in enumerate(lines) if line[0]}
    out = []
    for i, line in enumerate(lines):
        if len(line) == 5:
            _, code, k, yes, no = line  # type: ignore[misc]
            out.append((code, where[yes] - i - 1, where[no] - i - 1, k))
        else:
            out.append((line[1], 0, 0, line[2]))
    return out


def _tcp_after_ip(at: int, label: str) -> list[_Line]:
    """IPv4 then IPv6 tests with the EtherType in A and the IP header at `at`."""
    return [
        (label, BPF_JEQ_K, ETHERTYPE_IPV4, f"{label}v4", f"{label}not4"),
        (f"{label}not4", BPF_JEQ_K, ETHERTYPE_IPV6, f"{label}v6", f"{label}next"),
        (f"{label}v4", BPF_LD_B_ABS, at + IPV4_PROTO),
        (None, BPF_JEQ_K, PROTO_TCP, "accept", "drop"),
        (f"{label}v6", BPF_LD_B_ABS, at + IPV6_NEXT),
        (None, BPF_JEQ_K, PROTO_TCP, "accept", "drop"),
    ]


def tcp_program(linktype: int) -> list[tuple[int, int, int, int]]:
    """The built-in "tcp" filter for frames of `linktype` (LINKTYPE_ETHERNET or
    LINKTYPE_RAW); UsageError for another."""
    lines: list[_Line]
    if linktype == LINK_ETHERNET:
        lines = [(None, BPF_LD_H_ABS, ETH_TYPE)]
        lines += _tcp_after_ip(ETH_HDR, "untagged")
        lines += [
            ("untaggednext", BPF_JEQ_K, ETHERTYPE_8021Q, "tagged", "ad"),
            ("ad", BPF_JEQ_K, ETHERTYPE_8021AD, "tagged", "drop"),
            ("tagged", BPF_LD_H_ABS, ETH_TYPE + VLAN_TAG),
        ]
        lines += _tcp_after_ip(ETH_HDR + VLAN_TAG, "inner")
        lines += [("innernext", BPF_RET_K, 0)]
    elif linktype == LINK_RAW:
        lines = [
            (None, BPF_LD_B_ABS, 0),
            (None, BPF_ALU_AND_K, 0xF0),                  # the version nibble
            (None, BPF_JEQ_K, 0x40, "v4", "not4"),
            ("not4", BPF_JEQ_K, 0x60, "v6", "drop"),
            ("v4", BPF_LD_B_ABS, IPV4_PROTO),
            (None, BPF_JEQ_K, PROTO_TCP, "accept", "drop"),
            ("v6", BPF_LD_B_ABS, IPV6_NEXT),
            (None, BPF_JEQ_K, PROTO_TCP, "accept", "drop"),
        ]
    else:
        raise UsageError(f"the built-in 'tcp' filter knows Ethernet and raw IP links, not link type {linktype}"
                         " (use filter=None)")
    lines += [("accept", BPF_RET_K, ACCEPT_BYTES), ("drop", BPF_RET_K, 0)]
    return check_program(_assemble(lines))


def compile_expression(expression: str, linktype: int) -> list[tuple[int, int, int, int]]:
    """A tcpdump filter expression compiled for `linktype` by ``tcpdump -ddd``.

    Raises UsageError when tcpdump is not on PATH, when the link type has no tcpdump
    name here, and with tcpdump's own message for an expression it rejects."""
    if not isinstance(expression, str) or not expression.strip() or len(expression) > MAX_EXPRESSION \
            or "\0" in expression:
        raise UsageError(f"a filter expression is a non-empty string of at most {MAX_EXPRESSION} "
                         f"characters, got {expression!r:.80}")
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        raise UsageError(f"filter {expression!r}: compiling a tcpdump expression needs tcpdump on PATH "
                         "(the built-in filters are 'tcp' and None)")
    if linktype not in _TCPDUMP_DLT:
        raise UsageError(f"filter {expression!r}: no tcpdump link type for link type {linktype}")
    try:
        # (whatever tcpdump prints is decoded with replacement: bytes that are not text
        # then fail parse_ddd as UsageError, not as UnicodeDecodeError)
        done = subprocess.run([tcpdump, "-ddd", "-y", _TCPDUMP_DLT[linktype], "--", expression],
                              capture_output=True, encoding="utf-8", errors="replace",
                              timeout=TCPDUMP_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise UsageError(f"filter {expression!r}: tcpdump did not compile it in {TCPDUMP_TIMEOUT} s") from None
    if done.returncode != 0:
        why = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise UsageError(f"filter {expression!r}: {why[0]}")
    return check_program(parse_ddd(done.stdout))


def parse_ddd(text: str) -> list[tuple[int, int, int, int]]:
    """``tcpdump -ddd`` output (a count, then "code jt jf k" per line) as instructions;
    UsageError for anything else."""
    rows = text.split("\n")
    try:
        count = int(rows[0])
        program = [tuple(int(x) for x in row.split()) for row in rows[1:] if row.strip()]
    except ValueError:
        raise UsageError(f"tcpdump -ddd gave output that is not a BPF program: {text[:80]!r}") from None
    if count != len(program) or any(len(ins) != 4 for ins in program):
        raise UsageError(f"tcpdump -ddd announced {count} instructions and gave {len(program)}")
    return program  # type: ignore[return-value]


def check_program(program: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """`program` if it is a classic BPF program the kernel can take: 1..BPF_MAX_INSNS
    instructions of known opcodes, fields in range, jumps inside the program, a return
    last. UsageError naming the first bad instruction otherwise."""
    if not isinstance(program, list) or not 1 <= len(program) <= BPF_MAX_INSNS:
        raise UsageError(f"a BPF program has 1..{BPF_MAX_INSNS} instructions")
    n = len(program)
    for i, ins in enumerate(program):
        if not isinstance(ins, tuple) or len(ins) != 4 or not all(
                isinstance(x, int) and not isinstance(x, bool) for x in ins):
            raise UsageError(f"BPF instruction {i} is not four integers: {ins!r}")
        code, jt, jf, k = ins
        if code not in _VALID_CODES:
            raise UsageError(f"BPF instruction {i}: unknown opcode {code:#x}")
        if not (0 <= jt <= 0xFF and 0 <= jf <= 0xFF and 0 <= k <= 0xFFFFFFFF):
            raise UsageError(f"BPF instruction {i}: a field is out of range: {ins!r}")
        if code & BPF_CLASS_MASK == BPF_CLASS_JMP and i + 1 + (k if code == BPF_JA else max(jt, jf)) >= n:
            raise UsageError(f"BPF instruction {i}: jumps past the end of the program")
    if program[-1][0] & BPF_CLASS_MASK != BPF_CLASS_RET:
        raise UsageError("a BPF program must end with a return")
    return program
