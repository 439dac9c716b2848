"""Deprecated module: use `fasttcp.tracker.vocabulary` (kept for one release)."""
import warnings

from fasttcp.tracker.vocabulary import *  # noqa: F403
from fasttcp.tracker.vocabulary import __all__  # noqa: F401

warnings.warn("fasttcp.tracking is deprecated: use fasttcp.tracker.vocabulary", DeprecationWarning, stacklevel=2)
