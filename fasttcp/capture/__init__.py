"""The capture edge: pcap/pcapng reading (the C record scanner in `scanner`, batches in
`reader`), pcap writing (`writer`), live capture from an interface through a TPACKET_V3 ring
(`live`, with the C ring in `ring` and socket filters in `bpf`), transmitting batches out of
an interface through AF_PACKET (`transmit`, its C half in `tx`), and a TUN device adapter (`tun`).
"""
from fasttcp.capture.live import Fanout, LiveCapture, LiveStats
from fasttcp.capture.reader import CaptureBatch, CaptureReader, CaptureStats, read_pcap, write_pcap
from fasttcp.capture.transmit import Transmitter
from fasttcp.errors import CaptureError

__all__ = ["CaptureBatch", "CaptureError", "CaptureReader", "CaptureStats", "Fanout", "LiveCapture",
           "LiveStats", "Transmitter", "read_pcap", "write_pcap"]
