"""Deprecated module: `Cause` lives in `fasttcp.enums`, `Event` in `fasttcp.endpoint`
(both are exported from `fasttcp`). Kept for one release."""
import warnings

from fasttcp.endpoint.endpoint import Event
from fasttcp.enums import Cause

__all__ = ["Cause", "Event"]

warnings.warn("fasttcp.events is deprecated: import Cause and Event from fasttcp",
              DeprecationWarning, stacklevel=2)
