"""C-level address coercion (cimport fasttcp._core.addr); no Python-visible names."""
