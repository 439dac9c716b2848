"""C-level address coercion (cimport fasttcp.wire.addr); no Python-visible names."""
