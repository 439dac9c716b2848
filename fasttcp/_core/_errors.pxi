# The one place that turns C parse codes (defs.pxd) into Python exceptions.
# Included (not cimported) by the modules that raise, so the map is written once.
from fasttcp.errors import (BadChecksum as _BadChecksum, BadHeader as _BadHeader,
                            BadOption as _BadOption, TruncatedPacket as _TruncatedPacket,
                            UnsupportedPacket as _UnsupportedPacket)

# indexed by FT_FIELD_*
_FIELD_NAMES = (
    "none", "ip.version", "ip.ihl", "ip.total_length", "ip.protocol", "ip.fragment",
    "ip.checksum", "ipv6.payload_length", "ipv6.next_header", "ipv6.ext_length",
    "tcp.header", "tcp.data_offset", "tcp.option.kind", "tcp.option.length",
    "tcp.checksum", "ip.header",
)

# indexed by FT_ERR_*: (exception class, message)
_ERRORS = (
    (None, "ok"),
    (_TruncatedPacket, "packet truncated"),
    (_BadHeader, "malformed IP header"),
    (_BadHeader, "malformed TCP header"),
    (_BadOption, "malformed TCP option"),
    (_BadChecksum, "bad TCP checksum"),
    (_UnsupportedPacket, "not a TCP packet"),
    (_UnsupportedPacket, "IP fragment (reassembly is not implemented)"),
    (_UnsupportedPacket, "IP version is neither 4 nor 6"),
    (_BadChecksum, "bad IPv4 header checksum"),
)


cdef object _raise_parse_error(parse_err_t *err):
    cls, msg = _ERRORS[err.code]
    raise cls(msg, field=_FIELD_NAMES[err.field], offset=err.offset, verdict=err.code)
