# The one place that turns C parse codes (defs.pxd) into Python exceptions.
# Included (not cimported) by the modules that raise, so the map is written once.
from fasttcp.errors import (BadChecksum as _BadChecksum, BadHeader as _BadHeader,
                            BadOption as _BadOption, TruncatedPacket as _TruncatedPacket,
                            UnsupportedPacket as _UnsupportedPacket)

from fasttcp.errors import FIELD_NAMES as _FIELD_NAMES   # indexed by FT_FIELD_*

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
