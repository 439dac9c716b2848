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


cdef inline void ft_export_bytes(Py_buffer *view, object owner, void *buf, Py_ssize_t n,
                                 Py_ssize_t *shape, Py_ssize_t *strides) noexcept:
    """Fill `view` for a `__getbuffer__` of `owner`: its `n` bytes at `buf`, writable, as
    one dimension of unsigned bytes. `shape` and `strides` are one-element arrays the
    owner keeps (the view points at them)."""
    shape[0] = n
    strides[0] = 1
    view.buf = buf
    view.obj = owner
    view.len = n
    view.readonly = 0
    view.itemsize = 1
    view.format = "B"
    view.ndim = 1
    view.shape = shape
    view.strides = strides
    view.suboffsets = NULL
    view.internal = NULL
