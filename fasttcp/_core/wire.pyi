"""C-level wire codec (cimport fasttcp._core.wire); no Python-visible names."""
