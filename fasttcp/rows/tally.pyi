"""Type stubs for fasttcp.rows.tally (counts over FLOW_DTYPE rows, in C)."""
import numpy as np

__all__ = ["RowTally", "tally_rows"]

class RowTally:
    """What `tally_rows` counted in a batch of rows."""

    conn_states: np.ndarray
    resets: int
    retransmissions: int
    rtt_syn_synack: np.ndarray
    rtt_synack_ack: np.ndarray
    def __init__(self, conn_states: np.ndarray, resets: int, retransmissions: int,
                 rtt_syn_synack: np.ndarray, rtt_synack_ack: np.ndarray) -> None: ...

def tally_rows(rows: np.ndarray) -> RowTally:
    """Count a batch of finished connections (a 1-D FLOW_DTYPE array, any stride)."""
