"""The wire layer: IPv4/IPv6/TCP parse and build, options, RFC 1071/1624 checksums,
32-bit sequence arithmetic, batch parsing. Knows nothing of connections.

Compiled modules: `codec` (the C parsers and builders, cimport-only), `segment` (the
`Segment` view and `parse`/`build`), `batch` (`parse_batch`), `checksum`, `seq`, `addr`.
Their `.pxd` files are the C API another Cython module can cimport (see `fasttcp.get_include`).
"""
