"""The capture edge: pcap/pcapng reading (the C record scanner in `scanner`, batches in
`reader`), pcap writing (`writer`), a TUN device adapter (`tun`), and transmitting batches out of an
interface through AF_PACKET (`transmit`, its C half in `tx`).
"""
from fasttcp.capture.reader import CaptureBatch, CaptureReader, CaptureStats, read_pcap, write_pcap
from fasttcp.capture.transmit import Transmitter
from fasttcp.errors import CaptureError

__all__ = ["CaptureBatch", "CaptureError", "CaptureReader", "CaptureStats", "read_pcap", "write_pcap",
           "Transmitter"]
