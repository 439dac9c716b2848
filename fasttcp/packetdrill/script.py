"""Parse a packetdrill script into events (the subset connection-lifecycle tests use).

The grammar is packetdrill's (gtests/net/packetdrill/parser.y), read and re-written as a
small line-oriented recursive-descent parser: a script is ``--option=value`` lines, then
events, one per statement. A statement runs to the end of its line unless a bracket,
brace, parenthesis or backquote is still open (a multi-line ``getsockopt`` struct or a
backquoted shell block). An event is a time and an action:

    time    := '*' | ['+']T ['~' ['+']T] ;  T seconds, e.g. 0, +.1, 1.250
    action  := ('<' | '>') flags start:end(len) [ack N] [win N] [<options> | <...>]
             | [...T] name(args) = result [ERRNO [(text)]]
             | `shell command`

Everything this module cannot represent is a `ScriptError` naming the line; everything
it can represent but the runner cannot run is the runner's "unsupported" verdict.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ScriptError", "TimeSpec", "TcpOption", "PacketSpec", "SyscallSpec",
           "CommandSpec", "Event", "Script", "parse_script", "MAX_SCRIPT_BYTES",
           "MAX_SCRIPT_SECONDS", "MAX_NESTING"]

MAX_SCRIPT_BYTES = 1 << 20       # upstream's longest script is ~20 kB: a megabyte is not a script
MAX_SCRIPT_SECONDS = 1_000_000   # an event time past ~11.5 days of virtual time is a typo
MAX_NESTING = 32                 # brackets in a syscall argument (parser.y has no limit; we need one)
MAX_DIGITS = 40                  # longer numbers are refused before conversion
MAX_SEQ = 0xFFFFFFFF             # sequence, ack and TS fields are 32 bits (RFC 9293 3.1)
MAX_WINDOW = 0xFFFF              # the 16-bit window field
USEC_PER_SEC = 1_000_000

# time kinds (packetdrill's enum event_time_t)
ABSOLUTE, RELATIVE, ANY, ABSOLUTE_RANGE, RELATIVE_RANGE = (
    "absolute", "relative", "any", "absolute_range", "relative_range")

# packetdrill's tcp flag letters (lexer.l); '.' is ACK
FLAG_LETTERS = {"F": "FIN", "S": "SYN", "R": "RST", "P": "PSH", ".": "ACK",
                "U": "URG", "E": "ECE", "W": "CWR"}


class ScriptError(ValueError):
    """A script that is not valid packetdrill (or not the subset read here). ``line``
    is the 1-based script line; ``str()`` reads ``line N: why``; ``unsupported`` is True
    for packetdrill that is valid but outside this subset (TFO, MD5, ECN, python blocks)."""

    def __init__(self, line: int, message: str, *, unsupported: bool = False) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message
        self.unsupported = unsupported   # valid packetdrill outside the subset read here


@dataclass(frozen=True)
class TimeSpec:
    """When an event happens: ``kind`` is one of absolute/relative/any/absolute_range/
    relative_range; ``usecs`` and ``end_usecs`` (ranges) are integer microseconds."""

    kind: str
    usecs: int = 0
    end_usecs: int | None = None


@dataclass(frozen=True)
class TcpOption:
    """One option of a script segment: ``name`` is mss/nop/eol/sackOK/wscale/TS/sack;
    ``values`` its numbers (TS: val, ecr; sack: left, right pairs flattened)."""

    name: str
    values: tuple[int, ...] = ()


@dataclass(frozen=True)
class PacketSpec:
    """A ``<`` (inbound) or ``>`` (outbound) TCP segment in script space. ``options``
    None means ``<...>`` (not checked); ``window`` None means no ``win`` (not checked
    outbound, packetdrill's FLAG_WIN_NOCHECK)."""

    direction: str
    flags: frozenset[str]
    flags_text: str
    seq: int
    end_seq: int
    payload_len: int
    ack: int | None
    window: int | None
    options: tuple[TcpOption, ...] | None


@dataclass(frozen=True)
class SyscallSpec:
    """``name(args) = result [errno]``; ``end_usecs`` is the ``...T`` of a blocking call
    (None: must return at once); args are parsed expressions (see `_Expr`)."""

    name: str
    args: tuple[Any, ...]
    result: Any
    errno: str | None
    end_usecs: int | None


@dataclass(frozen=True)
class CommandSpec:
    """A backquoted shell command (the runner maps the few it knows; it runs none)."""

    text: str


@dataclass(frozen=True)
class Event:
    """One timed script line: ``line`` (1-based), ``time``, ``action``."""

    line: int
    time: TimeSpec
    action: PacketSpec | SyscallSpec | CommandSpec
    text: str


@dataclass
class Script:
    """A parsed script: ``options`` from ``--name=value`` lines (name -> value text),
    ``commands`` the backquoted blocks outside events, ``events`` in order."""

    options: dict[str, str] = field(default_factory=dict)
    option_lines: dict[str, int] = field(default_factory=dict)
    commands: list[tuple[int, CommandSpec]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


# ---- statements: comments out, lines joined while a bracket is open ----

_OPENERS = {"(": ")", "[": "]", "{": "}"}


def _strip_comments(text: str) -> str:
    """Blank out // and /* */ comments outside strings and backquotes, keeping newlines
    so line numbers stay right."""
    out: list[str] = []
    i, n = 0, len(text)
    quote = ""
    while i < n:
        c = text[i]
        if quote:
            out.append(c)
            if c == quote:
                quote = ""
            i += 1
        elif c in "\"`":
            quote = c
            out.append(c)
            i += 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            if j < 0:
                # packetdrill's lexer takes a comment only with its */: an open one is
                # not a comment that swallows the rest of the script
                raise ScriptError(text.count("\n", 0, i) + 1, "/* comment not closed")
            out.append("\n" * text.count("\n", i, j + 2))
            i = j + 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _statements(text: str) -> list[tuple[int, str]]:
    """(first line, text) of each statement; raises ScriptError for a bracket or quote
    left open at the end or nested past MAX_NESTING."""
    stmts: list[tuple[int, str]] = []
    buf: list[str] = []
    start = 0
    depth: list[str] = []
    quote = ""
    in_code = False
    for lineno, line in enumerate(text.split("\n"), 1):
        if in_code or (not buf and "%{" in line):
            # a %{ python }% block (packetdrill runs it after the script): kept whole
            if not buf:
                start = lineno
            buf.append(line)
            in_code = "}%" not in line
            if not in_code:
                stmts.append((start, "\n".join(buf).strip()))
                buf = []
            continue
        if not buf:
            if not line.strip():
                continue
            start = lineno
        buf.append(line)
        for c in line:
            if quote:
                if c == quote:
                    quote = ""
            elif c in "\"`":
                quote = c
            elif c in _OPENERS:
                depth.append(_OPENERS[c])
                if len(depth) > MAX_NESTING:
                    raise ScriptError(lineno, f"brackets nested deeper than {MAX_NESTING}")
            elif c in ")]}" and (not depth or depth.pop() != c):
                raise ScriptError(lineno, f"unbalanced {c!r}")
        if quote == '"':
            raise ScriptError(lineno, "unterminated string")
        if not depth and not quote:
            stmts.append((start, "\n".join(buf).strip()))
            buf = []
    if buf:
        what = "%{ block" if in_code else "backquote" if quote else "bracket"
        raise ScriptError(start, f"unterminated {what}")
    return stmts


# ---- times ----

_T = r"(?:[0-9]+\.[0-9]+|[0-9]+|\.[0-9]+)"
_TIME_RE = re.compile(
    rf"(?P<any>\*)|(?P<rel>\+)?(?P<t>{_T})(?:~(?P<rel2>\+)?(?P<t2>{_T}))?")
_END_RE = re.compile(rf"\s*\.\.\.\s*(?P<end>{_T})")


def _usecs(text: str, line: int) -> int:
    value = float(text)
    if not value <= MAX_SCRIPT_SECONDS:
        raise ScriptError(line, f"time {text} is beyond {MAX_SCRIPT_SECONDS} seconds")
    return round(value * USEC_PER_SEC)


def _parse_time(stmt: str, line: int) -> tuple[TimeSpec, str]:
    m = _TIME_RE.match(stmt)
    if not m:
        raise ScriptError(line, f"expected an event time, got {stmt.split()[0]!r}")
    rest = stmt[m.end():]
    if m.group("any"):
        return TimeSpec(ANY), rest
    t = _usecs(m.group("t"), line)
    if m.group("t2") is None:
        return TimeSpec(RELATIVE if m.group("rel") else ABSOLUTE, t), rest
    t2 = _usecs(m.group("t2"), line)
    if bool(m.group("rel")) != bool(m.group("rel2")):
        raise ScriptError(line, "a time range is both ends relative (+a~+b) or both absolute")
    if t2 < t:
        raise ScriptError(line, "time range is backwards")
    return TimeSpec(RELATIVE_RANGE if m.group("rel") else ABSOLUTE_RANGE, t, t2), rest


# ---- packets ----

_SEG_RE = re.compile(r"([0-9]+):([0-9]+)\(([0-9]+)\)")


def _int_field(text: str, line: int, what: str, limit: int) -> int:
    if not re.fullmatch(r"[0-9]+", text):
        raise ScriptError(line, f"{what} must be a non-negative integer, got {text!r}")
    if len(text) > MAX_DIGITS:                 # int() of thousands of digits is refused (and slow)
        raise ScriptError(line, f"{what} {text[:12]}... does not fit its field (max {limit})")
    value = int(text)
    if value > limit:
        raise ScriptError(line, f"{what} {value} does not fit its field (max {limit})")
    return value


def _parse_flags(text: str, line: int) -> frozenset[str]:
    bad = [c for c in text if c not in FLAG_LETTERS]
    if bad or not text:
        raise ScriptError(line, f"TCP flags {text!r}", unsupported=True)
    return frozenset(FLAG_LETTERS[c] for c in text)


def _parse_option(text: str, line: int) -> TcpOption:
    words = text.split()
    if not words:
        raise ScriptError(line, "empty TCP option")
    name, args = words[0], words[1:]
    if name in ("nop", "eol", "sackOK") and not args:
        return TcpOption(name)
    if name == "mss" and len(args) == 1:
        return TcpOption(name, (_int_field(args[0], line, "mss", MAX_WINDOW),))
    if name == "wscale" and len(args) == 1:
        return TcpOption(name, (_int_field(args[0], line, "wscale", 0xFF),))
    if name == "TS" and len(args) == 4 and args[0] == "val" and args[2] == "ecr":
        return TcpOption(name, (_int_field(args[1], line, "TS val", MAX_SEQ),
                                _int_field(args[3], line, "TS ecr", MAX_SEQ)))
    if name == "sack" and args:
        values: list[int] = []
        for block in args:
            m = re.fullmatch(r"([0-9]+):([0-9]+)", block)
            if not m:
                raise ScriptError(line, f"sack block {block!r} is not left:right")
            values += [_int_field(m.group(1), line, "sack", MAX_SEQ),
                       _int_field(m.group(2), line, "sack", MAX_SEQ)]
        if len(values) > 8:
            raise ScriptError(line, "more than 4 sack blocks do not fit the options")
        return TcpOption(name, tuple(values))
    raise ScriptError(line, f"TCP option {text.strip()!r}", unsupported=True)


def _parse_options(text: str, line: int) -> tuple[TcpOption, ...] | None:
    inner = text.strip()
    if inner == "...":
        return None
    return tuple(_parse_option(part, line) for part in inner.split(","))


def _parse_packet(direction: str, rest: str, line: int) -> PacketSpec:
    opts_text = None
    if "<" in rest:
        head, _, tail = rest.partition("<")
        if not tail.rstrip().endswith(">"):
            raise ScriptError(line, "TCP options are not closed by '>'")
        opts_text = tail.rstrip()[:-1]
        rest = head
    words = rest.split()
    if len(words) < 2:
        raise ScriptError(line, "a packet needs flags and start:end(len)")
    flags_text = words[0]
    flags = _parse_flags(flags_text, line)
    m = _SEG_RE.fullmatch(words[1])
    if not m:
        raise ScriptError(line, f"expected start:end(len), got {words[1]!r}")
    seq, end, plen = (_int_field(g, line, "sequence number", MAX_SEQ) for g in m.groups())
    if (end - seq) & MAX_SEQ != plen:
        raise ScriptError(line, f"inconsistent segment lengths: {words[1]}")
    if plen > MAX_WINDOW:
        raise ScriptError(line, f"payload of {plen} bytes does not fit an IP packet")
    ack = window = None
    i = 2
    while i < len(words):
        key = words[i]
        if key in ("ack", "win") and i + 1 < len(words):
            if key == "ack":
                ack = _int_field(words[i + 1], line, "ack", MAX_SEQ)
            else:
                window = _int_field(words[i + 1], line, "win", MAX_WINDOW)
            i += 2
        else:
            raise ScriptError(line, f"packet field {key!r}", unsupported=True)
    if window is None and direction == "<":
        raise ScriptError(line, "window must be specified for inbound packets")   # tcp_packet.c
    options = () if opts_text is None else _parse_options(opts_text, line)
    return PacketSpec(direction, flags, flags_text, seq, end, plen, ack, window, options)


# ---- syscalls ----

_TOKEN_RE = re.compile(r"""\s*(?:(?P<ellipsis>\.\.\.)|(?P<num>-?(?:0x[0-9a-fA-F]+|[0-9]+))
    |(?P<str>"[^"]*")|(?P<word>[A-Za-z_][A-Za-z0-9_.]*)|(?P<punct>[()\[\]{},=|]))""", re.X)


class _Tokens:
    """The tokens of one syscall statement, with a cursor."""

    def __init__(self, text: str, line: int) -> None:
        self.items: list[tuple[str, Any]] = []
        self.line = line
        pos = 0
        text = text.rstrip()
        while pos < len(text):
            m = _TOKEN_RE.match(text, pos)
            if not m or m.end() == pos:
                raise ScriptError(line, f"unexpected text {text[pos:pos + 20].strip()!r}")
            pos = m.end()
            kind = m.lastgroup or ""
            value: Any = m.group(kind)
            if kind == "num":
                if len(value) > MAX_DIGITS:
                    raise ScriptError(line, f"number {value[:12]}... is too large")
                # decimal with any leading zeros, as packetdrill's lexer reads them
                # (atoll: "03" is 3), or hexadecimal after 0x
                value = int(value, 16) if "x" in value else int(value, 10)
            elif kind == "str":
                value = value[1:-1]
            self.items.append((kind, value))
        self.i = 0

    def peek(self) -> tuple[str, Any]:
        return self.items[self.i] if self.i < len(self.items) else ("end", None)

    def take(self, kind: str | None = None, value: Any = None) -> Any:
        k, v = self.peek()
        if k == "end" or (kind and k != kind) or (value is not None and v != value):
            want = value if value is not None else kind
            raise ScriptError(self.line, f"expected {want!r}, got {v if k != 'end' else 'end of line'!r}")
        self.i += 1
        return v


def _expr(tok: _Tokens, depth: int = 0) -> Any:
    """One argument: ``...`` (Ellipsis), an int, a WORD or WORD|WORD (a tuple
    ('|', words)), a "string", [list], {field=value, ...} (a dict) or f(args)."""
    if depth > MAX_NESTING:
        raise ScriptError(tok.line, f"expression nested deeper than {MAX_NESTING}")
    kind, value = tok.peek()
    if kind == "ellipsis":
        tok.take()
        return ...
    if kind == "num":
        return tok.take()
    if kind == "str":
        tok.take()
        if tok.peek()[0] == "ellipsis":
            tok.take()
        return ("str", value)
    if kind == "word":
        tok.take()
        if tok.peek() == ("punct", "("):
            return ("call", value, tuple(_list(tok, "(", ")", depth + 1)))
        words = [value]
        while tok.peek() == ("punct", "|"):
            tok.take()
            words.append(tok.take("word"))
        return value if len(words) == 1 else ("|", tuple(words))
    if (kind, value) == ("punct", "["):
        return list(_list(tok, "[", "]", depth + 1))
    if (kind, value) == ("punct", "{"):
        return _struct(tok, depth + 1)
    raise ScriptError(tok.line, f"unexpected {value!r} in an argument")


def _list(tok: _Tokens, open_: str, close: str, depth: int) -> list[Any]:
    tok.take("punct", open_)
    items: list[Any] = []
    if tok.peek() == ("punct", close):
        tok.take()
        return items
    while True:
        items.append(_expr(tok, depth))
        if tok.peek() == ("punct", close):
            tok.take()
            return items
        tok.take("punct", ",")


def _struct(tok: _Tokens, depth: int) -> dict[str, Any]:
    tok.take("punct", "{")
    fields: dict[str, Any] = {}
    while tok.peek() != ("punct", "}"):
        if tok.peek()[0] != "word":               # {...} or a positional value
            fields[f"#{len(fields)}"] = _expr(tok, depth)
        else:
            name = tok.take("word")
            if tok.peek() == ("punct", "("):      # msg_name(...)=... in a msghdr
                _list(tok, "(", ")", depth + 1)
            tok.take("punct", "=")
            fields[name] = _expr(tok, depth)
        if tok.peek() == ("punct", ","):
            tok.take()
    tok.take("punct", "}")
    return fields


_RESULT_RE = re.compile(r"\s*=\s*(?P<result>\S+?)(?:\s+(?P<errno>[A-Z][A-Z0-9_]*))?"
                        r"\s*(?:\((?P<note>[^\n]*)\))?\s*$")


def _args_end(text: str, line: int) -> int:
    """Index just past the parenthesised argument list that starts text."""
    depth, quote = 0, ""
    for i, c in enumerate(text):
        if quote:
            quote = "" if c == quote else quote
        elif c == '"':
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                return i + 1
    raise ScriptError(line, "unterminated argument list")


def _parse_syscall(rest: str, line: int) -> SyscallSpec:
    end_usecs = None
    m = _END_RE.match(rest)
    if m:
        end_usecs = _usecs(m.group("end"), line)
        rest = rest[m.end():]
    rest = rest.strip()
    name_m = re.match(r"[A-Za-z_][A-Za-z0-9_]*", rest)
    if not name_m or not rest[name_m.end():].startswith("("):
        raise ScriptError(line, f"expected a system call, got {rest[:20]!r}")
    cut = name_m.end() + _args_end(rest[name_m.end():], line)
    tok = _Tokens(rest[name_m.end():cut], line)
    args = tuple(_list(tok, "(", ")", 1))
    # "= result [ERRNO] [(note)]": the note is strerror() text or a comment, not checked
    r = _RESULT_RE.match(rest[cut:])
    if not r:
        raise ScriptError(line, f"expected '= result' after {name_m.group()}(...)")
    result_tok = _Tokens(r.group("result"), line)
    result = _expr(result_tok)
    if result_tok.peek()[0] != "end":
        raise ScriptError(line, f"bad result {r.group('result')!r}")
    return SyscallSpec(name_m.group(), args, result, r.group("errno"), end_usecs)


# ---- the script ----

def _parse_event(line: int, stmt: str) -> Event:
    time, rest = _parse_time(stmt, line)
    body = rest.strip()
    if not rest[:1].isspace() and not rest.startswith("...") and body:
        raise ScriptError(line, f"expected a space after the event time, got {rest[:10]!r}")
    if body.startswith("%{"):
        raise ScriptError(line, "%{ python }% block", unsupported=True)
    if body[:1] in ("<", ">"):
        action: PacketSpec | SyscallSpec | CommandSpec = _parse_packet(body[0], body[1:], line)
    elif body.startswith("`"):
        if not body.endswith("`") or len(body) < 2:
            raise ScriptError(line, "unterminated backquote")
        action = CommandSpec(body[1:-1])
    elif body:
        action = _parse_syscall(rest.lstrip() if not rest.startswith("...") else rest, line)
    else:
        raise ScriptError(line, "an event time with no action")
    if time.kind == ANY and not (isinstance(action, PacketSpec) and action.direction == ">"):
        raise ScriptError(line, "event time <star> can only be used with outbound packets")
    if time.kind in (ABSOLUTE_RANGE, RELATIVE_RANGE) and not (
            isinstance(action, PacketSpec) and action.direction == ">"):
        raise ScriptError(line, "event time range can only be used with outbound packets")
    return Event(line, time, action, stmt)


def parse_script(text: str) -> Script:
    """Parse packetdrill source text. Raises ScriptError (with the line) for anything
    that is not valid in the subset: it never returns a half-read script."""
    if not isinstance(text, str):
        raise TypeError("script text must be str")
    if len(text) > MAX_SCRIPT_BYTES:
        raise ScriptError(1, f"script is larger than {MAX_SCRIPT_BYTES} bytes")
    if "\x00" in text:
        raise ScriptError(text.count("\n", 0, text.index("\x00")) + 1, "NUL byte in script")
    script = Script()
    for line, stmt in _statements(_strip_comments(text)):
        if stmt.startswith("--"):
            if script.events:
                raise ScriptError(line, "options come before the first event")
            name, _, value = stmt[2:].partition("=")
            script.options[name.strip()] = value.strip()
            script.option_lines[name.strip()] = line
        elif stmt.startswith("`"):
            if not stmt.endswith("`") or len(stmt) < 2:
                raise ScriptError(line, "unterminated backquote")
            script.commands.append((line, CommandSpec(stmt[1:-1])))
        else:
            script.events.append(_parse_event(line, stmt))
    return script
