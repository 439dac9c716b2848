# cython: language_level=3
"""Per-packet Python API: `parse`, `parse_tcp`, `build`, `Segment`, `Options`.

A Segment is a parsed C struct (pkt_t) plus a reference to the caller's buffer: header
fields are plain C values, the payload is a zero-copy memoryview of that buffer, and
addresses/options become Python objects only when asked for (then cached).
"""
cimport cython
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from fasttcp.wire.buffers cimport ft_get_bytes
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy, memset

from fasttcp.wire.defs cimport *
from fasttcp.wire.codec cimport (ft_parse_ip, ft_parse_tcp, ft_encode_options,
                                 ft_build_packet, ft_tcp_fill_checksum)
from fasttcp.wire.checksum cimport ft_csum_partial, ft_csum_fold

from fasttcp.wire.address import to_ip as _to_ip
from fasttcp.enums import Flags
from fasttcp.errors import UsageError

include "_errors.pxi"

cdef object _Flags = Flags

from fasttcp.wire.addr cimport addr_bytes as _addr
cdef tuple _BUILD_FIELDS = ("src", "dst", "src_port", "dst_port", "seq", "ack", "flags",
                            "window", "urgent", "options", "payload", "ttl")


# ---- options ----

@cython.final
cdef class Options:
    """Decoded TCP options of a segment (or to give to `build`).

    Attributes: ``mss`` (int or None), ``wscale`` (shift as sent, int or None; RFC 7323
    says use 14 for anything larger -- see `wscale_clamped`), ``sack_permitted`` (bool),
    ``sack`` (list of (left, right) edges), ``timestamp`` ((tsval, tsecr) or None),
    ``unknown`` (list of (kind, data bytes) for kinds not decoded, in wire order).
    Immutable; compare with ``==``.
    """
    cdef tcp_opts_t _o
    cdef tuple _unknown

    def __init__(self, *, mss=None, wscale=None, sack_permitted=False, sack=None,
                 timestamp=None, unknown=()):
        memset(&self._o, 0, sizeof(tcp_opts_t))
        if mss is not None:
            self._o.mss = _check_range(mss, 0xffff, "mss")
            self._o.present |= OPT_HAS_MSS
        if wscale is not None:
            self._o.wscale = _check_range(wscale, 0xff, "wscale")
            self._o.present |= OPT_HAS_WSCALE
        if sack_permitted:
            self._o.present |= OPT_HAS_SACK_PERM
        try:
            self._init_checked(sack, timestamp, unknown)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, UsageError):
                raise
            raise UsageError(f"malformed Options argument: {exc}") from exc

    cdef _init_checked(self, sack, timestamp, unknown):
        if sack:
            blocks = list(sack)
            if len(blocks) > TCP_MAX_SACK_BLOCKS:
                raise UsageError(f"at most {TCP_MAX_SACK_BLOCKS} SACK blocks fit in a TCP header, got {len(blocks)}")
            for k, (left, right) in enumerate(blocks):
                self._o.sack_left[k] = _check_range(left, 0xffffffff, "sack edge")
                self._o.sack_right[k] = _check_range(right, 0xffffffff, "sack edge")
            self._o.sack_count = len(blocks)
            self._o.present |= OPT_HAS_SACK
        if timestamp is not None:
            tsval, tsecr = timestamp
            self._o.tsval = _check_range(tsval, 0xffffffff, "tsval")
            self._o.tsecr = _check_range(tsecr, 0xffffffff, "tsecr")
            self._o.present |= OPT_HAS_TIMESTAMP
        items = []
        for kind, data in unknown:
            kind = _check_range(kind, 0xff, "option kind")
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise UsageError(f"option kind {kind}: data must be bytes, not {type(data).__name__}")
            data = bytes(data)
            if kind in (TCPOPT_EOL, TCPOPT_NOP, TCPOPT_MSS, TCPOPT_WSCALE, TCPOPT_SACK_PERM,
                        TCPOPT_SACK, TCPOPT_TIMESTAMP):
                raise UsageError(f"option kind {kind} is a decoded kind; use its keyword instead")
            if len(data) > TCP_MAX_OPT_BYTES - 2:
                raise UsageError(f"option kind {kind}: {len(data)} data bytes do not fit in 40")
            items.append((kind, data))
        self._unknown = tuple(items)
        if items:
            self._o.present |= OPT_HAS_UNKNOWN
            self._o.unknown_count = len(items)

    @staticmethod
    cdef Options _from_wire(const tcp_opts_t *o, const uint8_t *area, size_t arealen):
        cdef Options self = Options.__new__(Options)
        cdef size_t k, off
        self._o = o[0]
        items = []
        if o.unknown_count:
            for k in range(min(o.unknown_count, TCP_MAX_UNKNOWN_OPTS)):
                off = o.unknown_off[k]
                # the parser validated these lengths in this very area (the Segment's
                # own copy); checked again all the same, as reading past it is the cost
                if off + 2 > arealen or area[off + 1] < 2 or off + area[off + 1] > arealen:
                    break
                items.append((area[off], PyBytes_FromStringAndSize(<char *>area + off + 2, area[off + 1] - 2)))
            if o.unknown_count > TCP_MAX_UNKNOWN_OPTS:
                items.extend(_unknown_tail(area, arealen, TCP_MAX_UNKNOWN_OPTS))
        self._unknown = tuple(items)
        return self

    @property
    def mss(self):
        return self._o.mss if self._o.present & OPT_HAS_MSS else None

    @property
    def wscale(self):
        return self._o.wscale if self._o.present & OPT_HAS_WSCALE else None

    @property
    def wscale_clamped(self):
        """Window scale as a receiver must use it: min(shift, 14) (RFC 7323 2.3)."""
        if not self._o.present & OPT_HAS_WSCALE:
            return None
        return min(self._o.wscale, TCP_WSCALE_MAX)

    @property
    def sack_permitted(self):
        return bool(self._o.present & OPT_HAS_SACK_PERM)

    @property
    def sack(self):
        return [(self._o.sack_left[k], self._o.sack_right[k]) for k in range(self._o.sack_count)]

    @property
    def timestamp(self):
        if self._o.present & OPT_HAS_TIMESTAMP:
            return (self._o.tsval, self._o.tsecr)
        return None

    @property
    def unknown(self):
        return list(self._unknown)

    def __bool__(self):
        return (self._o.present & ~OPT_HAS_EOL) != 0

    def to_bytes(self):
        """Encode as a TCP options area (Linux's layout, padded to a multiple of 4)."""
        return _encode_options(self)

    cdef tuple _key(self):
        return (self.mss, self.wscale, self.sack_permitted, tuple(self.sack), self.timestamp, self._unknown)

    def __eq__(self, other):
        if not isinstance(other, Options):
            return NotImplemented
        return self._key() == (<Options>other)._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        parts = []
        if self.mss is not None:
            parts.append(f"mss={self.mss}")
        if self.wscale is not None:
            parts.append(f"wscale={self.wscale}")
        if self.sack_permitted:
            parts.append("sack_permitted=True")
        if self._o.sack_count:
            parts.append(f"sack={self.sack}")
        if self.timestamp is not None:
            parts.append(f"timestamp={self.timestamp}")
        if self._unknown:
            parts.append(f"unknown={list(self._unknown)}")
        return f"Options({', '.join(parts)})"


cdef list _unknown_tail(const uint8_t *area, size_t arealen, size_t skip):
    """Unknown options past the first `skip` (rare: walk the validated area again)."""
    cdef size_t i = 0, seen = 0
    out = []
    while i < arealen and area[i] != TCPOPT_EOL:
        if area[i] == TCPOPT_NOP:
            i += 1
            continue
        if i + 2 > arealen or area[i + 1] < 2 or i + area[i + 1] > arealen:
            break                     # (a validated area never gets here: no endless walk)
        if area[i] not in (TCPOPT_MSS, TCPOPT_WSCALE, TCPOPT_SACK_PERM, TCPOPT_SACK, TCPOPT_TIMESTAMP):
            if seen >= skip:
                out.append((area[i], PyBytes_FromStringAndSize(<char *>area + i + 2, area[i + 1] - 2)))
            seen += 1
        i += area[i + 1]
    return out


cdef bytes _encode_options(Options opts):
    cdef uint8_t buf[64]
    cdef int n = ft_encode_options(&opts._o, buf, TCP_MAX_OPT_BYTES)
    cdef size_t total
    if n < 0:
        raise UsageError("options do not fit in the 40-byte TCP option space")
    total = n
    for kind, data in opts._unknown:
        if total + 2 + len(data) > TCP_MAX_OPT_BYTES:
            raise UsageError("options do not fit in the 40-byte TCP option space")
        buf[total] = kind
        buf[total + 1] = 2 + len(data)
        memcpy(buf + total + 2, <char *>data, len(data))
        total += 2 + len(data)
    while total % 4:
        buf[total] = TCPOPT_EOL       # RFC 9293 3.2: pad with zeros after End of Option List
        total += 1
    return PyBytes_FromStringAndSize(<char *>buf, total)


cdef inline uint64_t _check_range(object value, uint64_t maximum, str name) except? 0xffffffffffffffff:
    # (a bool is an int to isinstance; True as a port or a sequence number is a slip)
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{name} must be an int, not {type(value).__name__}")
    if value < 0 or value > maximum:
        raise UsageError(f"{name} must be in 0..{maximum}, got {value}")
    return <uint64_t>value


# ---- Segment ----

@cython.final
cdef class Segment:
    """One parsed TCP segment (immutable). Create with `parse`, `parse_tcp` or `Segment.replace`.

    Header fields are attributes with the names used everywhere in fasttcp
    (``src_port, dst_port, seq, ack, flags, window, urgent, payload_len``); ``payload``
    is a read-only memoryview of the parsed buffer (no copy: keep the buffer unchanged
    while you use the segment).

    A buffer changed after parsing cannot make a Segment read outside it: header
    fields and options are copied at parse time; ``payload`` shows the buffer's bytes
    as they are now, and `payload`, `to_bytes` and `replace` raise UsageError once the
    buffer has shrunk below the parsed packet (`to_bytes` also when its headers were
    rewritten).
    """
    cdef pkt_t _p
    cdef object _owner          # object exposing the parsed bytes
    cdef object _src_obj, _dst_obj, _opts_obj
    cdef bint _has_addrs        # False for parse_tcp() without addresses
    # The TCP options area as parsed (header_len - 20 bytes): options and replace()
    # read this copy, whose lengths the parser validated, never the caller's buffer,
    # which may have been rewritten since (an option length of 0 or 255 there would
    # walk forever or read past the buffer).
    cdef uint8_t _optarea[TCP_MAX_OPT_BYTES]

    @staticmethod
    cdef Segment _new(object owner, pkt_t *p, bint has_addrs, const uint8_t *buf):
        """A Segment of `p`, parsed from `buf` (the bytes of `owner`, still held)."""
        cdef Segment s = Segment.__new__(Segment)
        s._p = p[0]
        s._owner = owner
        s._has_addrs = has_addrs
        if p.header_len > 20:
            memcpy(s._optarea, buf + p.tcp_off + 20, p.header_len - 20)
        return s

    def __init__(self, *args, **kwargs):
        raise TypeError("create segments with fasttcp.parse(), fasttcp.parse_tcp() or fasttcp.build()")

    @property
    def version(self):
        """4 or 6 (0 for a bare TCP segment parsed without addresses)."""
        return self._p.version

    @property
    def src(self):
        """Source address (ipaddress object, or None if unknown)."""
        if not self._has_addrs:
            return None
        if self._src_obj is None:
            self._src_obj = _to_ip(PyBytes_FromStringAndSize(<char *>self._p.src, 4 if self._p.version == 4 else 16))
        return self._src_obj

    @property
    def dst(self):
        """Destination address from the IP header (ipaddress object, or None if unknown)."""
        if not self._has_addrs:
            return None
        if self._dst_obj is None:
            self._dst_obj = _to_ip(PyBytes_FromStringAndSize(<char *>self._p.dst, 4 if self._p.version == 4 else 16))
        return self._dst_obj

    @property
    def src_port(self):
        return self._p.src_port

    @property
    def dst_port(self):
        return self._p.dst_port

    @property
    def seq(self):
        return self._p.seq

    @property
    def ack(self):
        return self._p.ack

    @property
    def flags(self):
        """`fasttcp.Flags` (an IntFlag: test with ``Flags.SYN in seg.flags``)."""
        return _Flags(self._p.flags)

    @property
    def window(self):
        """Raw 16-bit window field (unscaled)."""
        return self._p.window

    @property
    def urgent(self):
        return self._p.urgent

    @property
    def checksum(self):
        """TCP checksum field as on the wire."""
        return self._p.checksum

    @property
    def checksum_ok(self):
        """True/False if the checksum was verified, None if it was not."""
        return None if self._p.csum_state == 0 else self._p.csum_state == 1

    @property
    def header_len(self):
        """TCP header length in bytes (data offset * 4)."""
        return self._p.header_len

    @property
    def payload_len(self):
        return self._p.payload_len

    @property
    def payload(self):
        """Zero-copy read-only memoryview of the payload (bytes after the TCP header up
        to the IP datagram's end; Ethernet padding is not payload). Raises UsageError if
        the parsed buffer has shrunk below it since."""
        try:
            mv = memoryview(self._owner).toreadonly()
        except (ValueError, BufferError):     # e.g. an mmap closed since
            raise UsageError("the buffer this segment was parsed from is closed") from None
        if <size_t>len(mv) < self._p.payload_off + self._p.payload_len:
            raise UsageError("the buffer this segment was parsed from has shrunk since")
        return mv[self._p.payload_off:self._p.payload_off + self._p.payload_len]

    @property
    def ttl(self):
        """IPv4 TTL or IPv6 hop limit."""
        return self._p.ttl

    @property
    def hop_limit(self):
        """IPv6 hop limit or IPv4 TTL (the same field under its IPv6 name)."""
        return self._p.ttl

    @property
    def options(self):
        """Decoded `Options` (empty Options when the header has none), as parsed: from
        the segment's own copy of the options area, whatever became of the buffer."""
        if self._opts_obj is None:
            self._opts_obj = Options._from_wire(&self._p.opts, self._optarea, self._p.header_len - 20)
        return self._opts_obj

    # ---- re-emitting ----

    def to_bytes(self):
        """The packet as bytes, header fields and options exactly as parsed (IPv4 options
        and IPv6 extension headers kept, Ethernet padding dropped), with fresh IPv4 header
        and TCP checksums. For a bare segment from `parse_tcp`, the TCP bytes; that needs
        the addresses (the pseudo-header), else UsageError.

        Raises UsageError if the parsed buffer has shrunk or its headers or options were
        rewritten since parsing (the result would not be the packet this segment is); a
        rewritten payload is emitted as it now is, as `payload` shows it."""
        cdef Py_buffer view
        cdef size_t start, end
        cdef uint8_t *out
        cdef uint16_t c
        if not self._has_addrs:
            raise UsageError("this segment was parsed without addresses: its checksum cannot be computed")
        _acquire(self._owner, &view, self._p.tcp_off + self._p.tcp_len)
        try:
            start = self._p.ip_off
            end = self._p.tcp_off + self._p.tcp_len
            data = PyBytes_FromStringAndSize(<char *>view.buf + start, end - start)
        finally:
            PyBuffer_Release(&view)
        out = <uint8_t *>PyBytes_AS_STRING(data)
        if self._p.version == 4 and self._p.tcp_off != 0:
            out[10] = 0
            out[11] = 0
            c = <uint16_t>~ft_csum_fold(ft_csum_partial(out, self._p.tcp_off - start, 0))
            memcpy(out + 10, &c, 2)
        ft_tcp_fill_checksum(out + self._p.tcp_off - start, self._p.tcp_len, self._p.version,
                             self._p.src, self._p.csum_dst)
        if not self._same_packet(out, end - start, start):
            raise UsageError("the buffer this segment was parsed from was rewritten since: "
                             "its headers no longer say what they said")
        return data

    cdef bint _same_packet(self, const uint8_t *out, size_t length, size_t start):
        """Does `out` (this segment's bytes re-read from its buffer) parse to the same
        headers and options as when the segment was made?"""
        cdef pkt_t q
        cdef parse_err_t err
        cdef int rc
        cdef size_t alen = 4 if self._p.version == 4 else 16
        if self._p.tcp_off == start:
            rc = ft_parse_tcp(out, length, &q, &err)         # a bare segment (parse_tcp)
        else:
            rc = ft_parse_ip(out, length, &q, &err, False)
            if rc == FT_OK and (q.version != self._p.version or q.ttl != self._p.ttl
                                or memcmp(q.src, self._p.src, alen) != 0
                                or memcmp(q.dst, self._p.dst, alen) != 0
                                or memcmp(q.csum_dst, self._p.csum_dst, alen) != 0):
                return False
        return (rc == FT_OK and q.tcp_off == self._p.tcp_off - start and q.tcp_len == self._p.tcp_len
                and q.header_len == self._p.header_len and q.payload_len == self._p.payload_len
                and q.src_port == self._p.src_port and q.dst_port == self._p.dst_port
                and q.seq == self._p.seq and q.ack == self._p.ack and q.flags == self._p.flags
                and q.window == self._p.window and q.urgent == self._p.urgent
                and memcmp(out + q.tcp_off + 20, self._optarea, q.header_len - 20) == 0)

    def replace(self, **changes):
        """A new Segment with the given fields changed (any of ``src, dst, src_port,
        dst_port, seq, ack, flags, window, urgent, options, payload, ttl``), rebuilt with
        `build` (fresh lengths and checksums; IP options / IPv6 extension headers are not
        carried over). Raises UsageError for unknown fields or bad values, or (as
        `payload` does) if the parsed buffer has shrunk since."""
        for name in changes:
            if name not in _BUILD_FIELDS:
                raise UsageError(f"replace(): unknown field {name!r}; expected one of {', '.join(_BUILD_FIELDS)}")
        if not self._has_addrs and ("src" not in changes or "dst" not in changes):
            raise UsageError("replace() on a segment without addresses needs src= and dst=")
        args = dict(src=self.src, dst=self.dst, src_port=self._p.src_port, dst_port=self._p.dst_port,
                    seq=self._p.seq, ack=self._p.ack, flags=self._p.flags, window=self._p.window,
                    urgent=self._p.urgent, ttl=self._p.ttl)
        if "options" not in changes:
            args["options"] = self._raw_options()
        if "payload" not in changes:
            args["payload"] = self.payload
        args.update(changes)
        src = args.pop("src")
        dst = args.pop("dst")
        sport = args.pop("src_port")
        dport = args.pop("dst_port")
        return parse(build(src, dst, sport, dport, **args), verify_checksum=False)

    cdef bytes _raw_options(self):
        return PyBytes_FromStringAndSize(<char *>self._optarea, self._p.header_len - 20)

    # ---- comparison and display ----

    cdef tuple _key(self):
        cdef size_t alen = 4 if self._p.version == 4 else (16 if self._p.version == 6 else 0)
        return (self._p.version,
                PyBytes_FromStringAndSize(<char *>self._p.src, alen) if self._has_addrs else None,
                PyBytes_FromStringAndSize(<char *>self._p.dst, alen) if self._has_addrs else None,
                self._p.ttl, self._p.src_port, self._p.dst_port, self._p.seq, self._p.ack,
                self._p.flags, self._p.window, self._p.urgent, self.options, bytes(self.payload))

    def __eq__(self, other):
        """Equal when the TCP/IP content is equal: addresses, TTL, every TCP header field,
        decoded options and payload. Checksums and the IPv4 ID are not compared."""
        if not isinstance(other, Segment):
            return NotImplemented
        return self._key() == (<Segment>other)._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        cdef tcp_opts_t *o = &self._p.opts
        if self._has_addrs:
            if self._p.version == 6:
                ends = f"[{self.src}]:{self._p.src_port} -> [{self.dst}]:{self._p.dst_port}"
            else:
                ends = f"{self.src}:{self._p.src_port} -> {self.dst}:{self._p.dst_port}"
        else:
            ends = f":{self._p.src_port} -> :{self._p.dst_port}"
        parts = [f"<Segment {ends} [{_flag_str(self._p.flags)}] seq={self._p.seq}"]
        if self._p.flags & TCP_FLAG_ACK:
            parts.append(f"ack={self._p.ack}")
        parts.append(f"win={self._p.window}")
        if self._p.payload_len:
            parts.append(f"len={self._p.payload_len}")
        if o.present & OPT_HAS_MSS:
            parts.append(f"mss={o.mss}")
        if o.present & OPT_HAS_WSCALE:
            parts.append(f"ws={o.wscale}")
        if o.present & OPT_HAS_SACK_PERM:
            parts.append("sack")
        if o.sack_count:
            parts.append("sack=" + ",".join(f"{o.sack_left[k]}-{o.sack_right[k]}" for k in range(o.sack_count)))
        if o.present & OPT_HAS_TIMESTAMP:
            parts.append(f"ts={o.tsval}/{o.tsecr}")
        if o.unknown_count:
            parts.append(f"opt?={o.unknown_count}")
        return " ".join(parts) + ">"


cdef str _flag_str(uint16_t flags):
    names = []
    for bit, name in ((TCP_FLAG_SYN, "SYN"), (TCP_FLAG_FIN, "FIN"), (TCP_FLAG_RST, "RST"),
                      (TCP_FLAG_PSH, "PSH"), (TCP_FLAG_ACK, "ACK"), (TCP_FLAG_URG, "URG"),
                      (TCP_FLAG_ECE, "ECE"), (TCP_FLAG_CWR, "CWR"), (TCP_FLAG_AE, "AE")):
        if flags & bit:
            names.append(name)
    return ",".join(names) if names else "none"


# ---- parse ----

cdef object _byte_owner(object obj):
    """The object a Segment keeps: itself when it is a flat byte buffer (bytearray,
    1-D uint8 memoryview), else a flat byte memoryview of it, so that payload slices
    count bytes whatever the item size or shape of the caller's buffer."""
    if type(obj) is bytearray:
        return obj
    mv = memoryview(obj)
    if not mv.c_contiguous:
        raise UsageError("packet buffers must be contiguous")
    if mv.ndim == 1 and mv.itemsize == 1 and mv.format in ("B", "b", "c"):
        return obj
    return mv.cast("B")


cdef int _acquire(object owner, Py_buffer *view, size_t need) except -1:
    """Get the bytes of a segment's buffer again, refusing if it shrank since parse
    (the documented contract is to leave it alone; a broken one must not read freed memory)."""
    try:
        PyObject_GetBuffer(owner, view, PyBUF_SIMPLE)
    except (ValueError, BufferError):         # e.g. an mmap closed since
        raise UsageError("the buffer this segment was parsed from is closed") from None
    if <size_t>view.len < need:
        PyBuffer_Release(view)
        raise UsageError("the buffer this segment was parsed from has shrunk since")
    return 0


def parse(packet, *, bint verify_checksum=True):
    """Parse one IPv4 or IPv6 packet carrying TCP (no link-layer header).

    IPv6 extension headers (hop-by-hop, routing, destination options, AH) are walked.
    Bytes after the IP datagram's end (Ethernet padding) are ignored.

    Returns a `Segment` viewing `packet` (bytes-like; keep it unchanged meanwhile).
    Raises `TruncatedPacket`, `BadHeader`, `BadOption`, `BadChecksum` (when
    ``verify_checksum``) or `UnsupportedPacket` (not IPv4/IPv6, not TCP, a fragment) --
    all `MalformedPacket` and `ValueError` -- with ``.field`` and ``.offset``.
    """
    cdef pkt_t p
    cdef parse_err_t err
    cdef int rc
    cdef Py_buffer view
    if type(packet) is bytes:
        rc = ft_parse_ip(<const uint8_t *>PyBytes_AS_STRING(packet), PyBytes_GET_SIZE(packet),
                         &p, &err, verify_checksum)
        if rc != FT_OK:
            _raise_parse_error(&err)
        return Segment._new(packet, &p, True, <const uint8_t *>PyBytes_AS_STRING(packet))
    packet = _byte_owner(packet)
    ft_get_bytes(packet, &view, "packet")
    try:
        rc = ft_parse_ip(<const uint8_t *>view.buf, view.len, &p, &err, verify_checksum)
        if rc != FT_OK:
            _raise_parse_error(&err)
        return Segment._new(packet, &p, True, <const uint8_t *>view.buf)
    finally:
        PyBuffer_Release(&view)


def parse_tcp(segment, *, src=None, dst=None, verify_checksum=None):
    """Parse a bare TCP header + payload (no IP header).

    With ``src`` and ``dst`` (str, bytes or ipaddress; same family) the segment knows its
    addresses and the checksum is verified unless ``verify_checksum=False``; without them
    it cannot be (``verify_checksum=True`` then raises UsageError).
    Raises the `MalformedPacket` family like `parse`.
    """
    cdef pkt_t p
    cdef parse_err_t err
    cdef int rc
    cdef Py_buffer view
    cdef bytes s, d
    cdef bint has_addrs = src is not None or dst is not None
    cdef uint64_t sum
    if has_addrs:
        if src is None or dst is None:
            raise UsageError("parse_tcp() needs both src and dst, or neither")
        s = _addr(src)
        d = _addr(dst)
        if len(s) != len(d):
            raise UsageError("src and dst must be the same address family")
    elif verify_checksum:
        raise UsageError("verifying a TCP checksum needs src= and dst= (the pseudo-header)")
    if type(segment) is not bytes:
        segment = _byte_owner(segment)
    ft_get_bytes(segment, &view, "segment")
    try:
        # the segment's length goes into 32-bit fields, and into the 16-bit length of
        # an IPv4 pseudo-header (RFC 9293 3.1): a longer one is no TCP segment
        if view.len > (0xffff if has_addrs and len(s) == 4 else 0xffffffff):
            raise UsageError(f"a TCP segment of {view.len} bytes is longer than its "
                             f"{'IPv4' if has_addrs and len(s) == 4 else 'length'} field can say")
        rc = ft_parse_tcp(<const uint8_t *>view.buf, view.len, &p, &err)
        if rc == FT_OK and has_addrs:
            p.version = 4 if len(s) == 4 else 6
            memcpy(p.src, <char *>s, len(s))
            memcpy(p.dst, <char *>d, len(d))
            memcpy(p.csum_dst, <char *>d, len(d))
            if verify_checksum is None or verify_checksum:
                sum = _pseudo(&p)
                sum = ft_csum_partial(view.buf, view.len, sum)
                p.csum_state = 1 if ft_csum_fold(sum) == 0xffff else 2
                if p.csum_state == 2:
                    rc = FT_ERR_BAD_CHECKSUM
                    err.code = rc
                    err.field = FT_FIELD_TCP_CHECKSUM
                    err.offset = 16
        if rc != FT_OK:
            _raise_parse_error(&err)
        return Segment._new(segment, &p, has_addrs, <const uint8_t *>view.buf)
    finally:
        PyBuffer_Release(&view)


from fasttcp.wire.checksum cimport ft_csum_pseudo4, ft_csum_pseudo6

cdef inline uint64_t _pseudo(pkt_t *p) noexcept:
    if p.version == 4:
        return ft_csum_pseudo4(p.src, p.csum_dst, p.tcp_len, 6)
    return ft_csum_pseudo6(p.src, p.csum_dst, p.tcp_len, 6)


# ---- build ----

def build(src, dst, src_port, dst_port, *, seq=0, ack=0, flags=0x002, window=65535,
          urgent=0, options=None, payload=b"", ttl=64):
    """Build a complete IPv4 or IPv6 packet (family from the addresses) carrying one TCP
    segment, with lengths, option padding and both checksums filled.

    ``options``: an `Options`, a dict of its keywords, raw option bytes (padded to 4 with
    EOL), or None. ``payload``: any bytes-like. Returns bytes.
    Raises UsageError for out-of-range values, mixed families or options over 40 bytes.
    """
    cdef bytes s = _addr(src)
    cdef bytes d = _addr(dst)
    cdef bytes opt_bytes
    cdef Py_buffer pv
    cdef Py_ssize_t n
    cdef size_t total
    cdef int version
    if len(s) != len(d):
        raise UsageError("src and dst must be the same address family")
    version = 4 if len(s) == 4 else 6
    cdef uint16_t c_sport = <uint16_t>_check_range(src_port, 0xffff, "src_port")
    cdef uint16_t c_dport = <uint16_t>_check_range(dst_port, 0xffff, "dst_port")
    cdef uint32_t c_seq = <uint32_t>_check_range(seq, 0xffffffff, "seq")
    cdef uint32_t c_ack = <uint32_t>_check_range(ack, 0xffffffff, "ack")
    cdef uint16_t c_flags = <uint16_t>_check_range(flags, 0x1ff, "flags")
    cdef uint16_t c_window = <uint16_t>_check_range(window, 0xffff, "window")
    cdef uint16_t c_urgent = <uint16_t>_check_range(urgent, 0xffff, "urgent")
    cdef uint8_t c_ttl = <uint8_t>_check_range(ttl, 0xff, "ttl")
    if options is None:
        opt_bytes = b""
    elif isinstance(options, Options):
        opt_bytes = _encode_options(<Options>options)
    elif isinstance(options, dict):
        try:
            o = Options(**options)
        except TypeError as exc:          # a key that is no Options keyword
            raise UsageError(f"options: {exc}") from None
        opt_bytes = _encode_options(<Options>o)
    elif isinstance(options, (bytes, bytearray, memoryview)):
        opt_bytes = bytes(options)
        if len(opt_bytes) > TCP_MAX_OPT_BYTES:
            raise UsageError(f"raw options are {len(opt_bytes)} bytes; at most 40 fit")
        if len(opt_bytes) % 4:
            opt_bytes += b"\x00" * (4 - len(opt_bytes) % 4)
    else:
        raise UsageError(f"options must be Options, dict, bytes or None, not {type(options).__name__}")
    ft_get_bytes(payload, &pv, "payload")
    try:
        total = (20 if version == 4 else 40) + 20 + len(opt_bytes) + pv.len
        if total - (0 if version == 4 else 40) > 0xffff:
            raise UsageError(f"payload of {pv.len} bytes does not fit in one IP packet")
        out = PyBytes_FromStringAndSize(NULL, total)
        n = ft_build_packet(<uint8_t *>PyBytes_AS_STRING(out), total, version,
                            <const uint8_t *><char *>s, <const uint8_t *><char *>d, c_ttl,
                            c_sport, c_dport, c_seq, c_ack, c_flags,
                            c_window, c_urgent, <const uint8_t *><char *>opt_bytes, len(opt_bytes),
                            <const uint8_t *>pv.buf, pv.len)
    finally:
        PyBuffer_Release(&pv)
    if n < 0:
        raise UsageError("packet does not fit")
    return out
