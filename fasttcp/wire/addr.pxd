# cython: language_level=3
# Address coercion for the Python-facing API (bounded cache in front of ipaddress).
cdef bytes addr_bytes(object a)
