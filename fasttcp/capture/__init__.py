"""The capture edge: pcap/pcapng reading (the C record scanner in `scanner`, batches in
`reader`), pcap writing (`writer`), and a TUN device adapter (`tun`).
"""
from fasttcp.capture.reader import CaptureBatch, CaptureReader, CaptureStats, read_pcap, write_pcap
from fasttcp.errors import CaptureError

__all__ = ["CaptureBatch", "CaptureError", "CaptureReader", "CaptureStats", "read_pcap", "write_pcap"]
