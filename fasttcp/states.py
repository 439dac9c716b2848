"""Deprecated module: `State` lives in `fasttcp.enums`, `Timeouts` in `fasttcp.table.timeouts`
(both are exported from `fasttcp`). Kept for one release."""
import warnings

from fasttcp.enums import State
from fasttcp.table.timeouts import Timeouts

__all__ = ["State", "Timeouts"]

warnings.warn("fasttcp.states is deprecated: import State and Timeouts from fasttcp",
              DeprecationWarning, stacklevel=2)
