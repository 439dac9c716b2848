"""C-level wire codec (cimport fasttcp.wire.codec); no Python-visible names."""
