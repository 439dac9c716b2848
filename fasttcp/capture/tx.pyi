"""Type stubs for fasttcp.capture.tx (the C half of fasttcp.capture.transmit.Transmitter)."""
from typing import Any

from typing_extensions import disjoint_base

__all__ = ["TxEngine", "ETH_HEADER_LEN", "DATA_OFFSET", "BATCH_MSGS", "STAT_NAMES"]

ETH_HEADER_LEN: int
DATA_OFFSET: int
BATCH_MSGS: int
STAT_NAMES: tuple[str, ...]

@disjoint_base
class TxEngine:
    """The hot half of one transmit socket: a PACKET_TX_RING or the sendmmsg arrays."""
    @property
    def method(self) -> str: ...
    @property
    def frame_nr(self) -> int: ...
    @property
    def max_frame(self) -> int: ...
    def __init__(self, fd: int, method: str, dst_mac: bytes, src_mac: bytes, max_frame: int, *,
                 block_size: int = 0, block_nr: int = 0, frame_size: int = 0, qdisc_bypass: bool = False) -> None: ...
    def send(self, buffer: Any, offsets: Any, lengths: Any, add_header: bool) -> int: ...
    def flush(self) -> None: ...
    def stats(self) -> dict[str, int]: ...
    def close(self) -> None: ...
