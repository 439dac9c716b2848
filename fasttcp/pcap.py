"""Deprecated module: use `fasttcp.capture.writer` (kept for one release)."""
import warnings

from fasttcp.capture.writer import *  # noqa: F403
from fasttcp.capture.writer import __all__  # noqa: F401

warnings.warn("fasttcp.pcap is deprecated: use fasttcp.capture.writer", DeprecationWarning, stacklevel=2)
