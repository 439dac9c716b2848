# cython: language_level=3
"""Getting the bytes of a caller's buffer, for every module that takes one.

PyObject_GetBuffer(PyBUF_SIMPLE) refuses a non-contiguous array (a strided numpy view,
a transposed one) with a ValueError or BufferError that names neither the argument nor
the rule; this says which argument and raises UsageError, as the rest of the API does
for a bad argument. Objects that are no buffer at all keep Python's TypeError.
"""
from cpython.buffer cimport PyObject_GetBuffer, PyBUF_SIMPLE


cdef inline int ft_get_bytes(object obj, Py_buffer *view, str name) except -1:
    try:
        PyObject_GetBuffer(obj, view, PyBUF_SIMPLE)
    except (BufferError, ValueError) as exc:
        from fasttcp.errors import UsageError
        raise UsageError(f"{name} must be a contiguous bytes-like object ({exc})") from None
    return 0
