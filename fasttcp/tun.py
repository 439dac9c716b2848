"""Deprecated module: use `fasttcp.capture.tun` (kept for one release)."""
import warnings

from fasttcp.capture.tun import *  # noqa: F403
from fasttcp.capture.tun import __all__  # noqa: F401

warnings.warn("fasttcp.tun is deprecated: use fasttcp.capture.tun", DeprecationWarning, stacklevel=2)
