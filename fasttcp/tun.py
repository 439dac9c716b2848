"""Deprecated module: use `fasttcp.capture.tun` (kept for one release)."""
import warnings

from fasttcp.capture.tun import *  # noqa: F403  -- a shim re-exports all of the new module
from fasttcp.capture.tun import __all__ as __all__  # the explicit re-export form type checkers read

warnings.warn("fasttcp.tun is deprecated: use fasttcp.capture.tun", DeprecationWarning, stacklevel=2)
