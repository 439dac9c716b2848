"""Deprecated module: use `fasttcp.capture.writer` (kept for one release)."""
import warnings

from fasttcp.capture.writer import *  # noqa: F403  -- a shim re-exports all of the new module
from fasttcp.capture.writer import __all__ as __all__  # the explicit re-export form type checkers read

warnings.warn("fasttcp.pcap is deprecated: use fasttcp.capture.writer", DeprecationWarning, stacklevel=2)
