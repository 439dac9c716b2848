# cython: language_level=3
"""Address coercion on the per-call path of the Python API.

Packed bytes pass straight through; anything else is looked up in a bounded dict
before falling back to fasttcp.wire.address.packed (ipaddress parsing, ~1 us).
"""
from cpython.bytes cimport PyBytes_GET_SIZE

from fasttcp.wire.address import packed as _packed

cdef dict _CACHE = {}


cdef bytes addr_bytes(object a):
    cdef Py_ssize_t n
    if type(a) is bytes:
        n = PyBytes_GET_SIZE(a)
        if n == 4 or n == 16:
            return <bytes>a
    try:
        r = _CACHE.get(a)
    except TypeError:            # unhashable (bytearray, memoryview): no caching
        return _packed(a)
    if r is None:
        r = _packed(a)
        if len(_CACHE) >= 65536:
            _CACHE.clear()
        _CACHE[a] = r
    return <bytes>r
