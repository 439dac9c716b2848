"""Deprecated module: use `fasttcp.tracker.vocabulary` (kept for one release)."""
import warnings

from fasttcp.tracker.vocabulary import *  # noqa: F403  -- a shim re-exports all of the new module
from fasttcp.tracker.vocabulary import __all__ as __all__  # the explicit re-export form type checkers read

warnings.warn("fasttcp.tracking is deprecated: use fasttcp.tracker.vocabulary", DeprecationWarning, stacklevel=2)
