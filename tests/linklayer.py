"""Test-only capture reader: pcap/pcapng frames -> IP packets for `fasttcp.parse`.

fasttcp parses IP packets; captures hold link-layer frames. This helper strips the
link layer so the capture tests can feed fasttcp exactly the bytes a real capture
reader would. It is deliberately small and strict: anything it does not understand
becomes ``ip=None`` with a human-readable reason instead of a guess, so a test can
tell "the link layer is exotic" apart from "fasttcp rejected the packet".

The product's own capture reader comes later; nothing in fasttcp imports this.
"""
from __future__ import annotations

import struct
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple

import dpkt

__all__ = [
    "CAPTURES",
    "Frame",
    "IpInfo",
    "ip_info",
    "list_captures",
    "oracle_path",
    "read_frames",
    "strip_link_layer",
]

# Every public capture the tests use, with its tshark oracle and the upstream tools'
# expected outputs (sources, licenses and the oracle schema: LICENSES.md and MANIFEST.md
# there). All of them live in the repository, so a fresh clone runs the same capture
# tests as CI and no expectation depends on what happens to lie beside the checkout.
CAPTURES = Path(__file__).resolve().parent / "data"


def list_captures(folder: Path) -> list[Path]:
    """Capture files (pcap/pcapng) in `folder`, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.suffix in (".pcap", ".pcapng") and p.is_file())


# ---- frames ----


class Frame(NamedTuple):
    number: int            # 1-based, as Wireshark/tshark number frames
    ts: Decimal            # seconds since the epoch, exact to the file's resolution
    linktype: int          # LINKTYPE_* of the frame's interface (low 16 bits)
    ip: bytes | None       # the IP packet (trailing link padding kept), or None
    reason: str            # why `ip` is None ("" when it is set)
    caplen: int            # captured bytes of the whole frame


# LINKTYPE_* values (https://www.tcpdump.org/linktypes.html)
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW_DLT12 = 12       # DLT_RAW on most BSDs, written as-is by old libpcap
LINKTYPE_RAW_DLT14 = 14       # DLT_RAW on OpenBSD
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108           # OpenBSD loopback: like NULL, family always big-endian
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
ETH_P_8021Q = 0x8100
ETH_P_8021AD = 0x88A8
ETH_P_QINQ_OLD = 0x9100       # pre-802.1ad QinQ outer tag still seen in the wild
ETH_P_MPLS_UC = 0x8847
ETH_P_MPLS_MC = 0x8848
ETH_P_PPPOE_DISC = 0x8863
ETH_P_PPPOE_SESS = 0x8864

_VLAN_TPIDS = (ETH_P_8021Q, ETH_P_8021AD, ETH_P_QINQ_OLD)
_MPLS_TYPES = (ETH_P_MPLS_UC, ETH_P_MPLS_MC)
_PPP_IPV4 = 0x0021
_PPP_IPV6 = 0x0057
# BSD address families for IPv6 differ by OS: 24 NetBSD/OpenBSD, 28 FreeBSD, 30 macOS
_AF_INET = 2
_AF_INET6 = (24, 28, 30)
# bound on stacked tags/labels: a crafted frame must not make the loop run long
_MAX_ENCAPS = 16


def _ip_by_version(buf: bytes, off: int, what: str) -> tuple[bytes | None, str]:
    """No type field says what follows (MPLS, raw IP): use the IP version nibble."""
    if off >= len(buf):
        return None, f"{what}: frame ends before the IP header"
    version = buf[off] >> 4
    if version in (4, 6):
        return buf[off:], ""
    return None, f"{what}: payload is not IP (version nibble {version})"


def _from_ethertype(etype: int, buf: bytes, off: int) -> tuple[bytes | None, str]:
    """Follow an EtherType chain (VLAN tags, MPLS, PPPoE) from buf[off] to IP."""
    for _ in range(_MAX_ENCAPS):
        if etype in (ETH_P_IP, ETH_P_IPV6):
            if off >= len(buf):
                return None, "frame ends before the IP header"
            return buf[off:], ""
        if etype in _VLAN_TPIDS:
            # 802.1Q/802.1ad tag: 2 bytes TCI, then the next EtherType
            if off + 4 > len(buf):
                return None, "truncated VLAN tag"
            etype = struct.unpack_from("!H", buf, off + 2)[0]
            off += 4
            continue
        if etype in _MPLS_TYPES:
            # label stack entries of 4 bytes; bit 8 of the third byte is bottom-of-stack.
            # MPLS carries no payload type, so guess from the version nibble after it.
            for _ in range(_MAX_ENCAPS):
                if off + 4 > len(buf):
                    return None, "truncated MPLS label stack"
                bottom = buf[off + 2] & 0x01
                off += 4
                if bottom:
                    return _ip_by_version(buf, off, "MPLS")
            return None, f"MPLS label stack deeper than {_MAX_ENCAPS}"
        if etype == ETH_P_PPPOE_SESS:
            # PPPoE header (ver/type, code, session id, length) then the PPP protocol
            if off + 8 > len(buf):
                return None, "truncated PPPoE header"
            proto = struct.unpack_from("!H", buf, off + 6)[0]
            off += 8
            if proto in (_PPP_IPV4, _PPP_IPV6):
                if off >= len(buf):
                    return None, "frame ends before the IP header"
                return buf[off:], ""
            return None, f"PPPoE session carries PPP protocol 0x{proto:04x}, not IP"
        if etype == ETH_P_PPPOE_DISC:
            return None, "PPPoE discovery frame"
        if etype < 0x0600:
            return None, f"802.3 length field {etype} (LLC frame), not an EtherType"
        return None, f"EtherType 0x{etype:04x} is not IP"
    return None, f"more than {_MAX_ENCAPS} stacked VLAN tags"


def strip_link_layer(linktype: int, frame: bytes) -> tuple[bytes | None, str]:
    """Return (IP packet, "") or (None, reason) for one frame of the given link type."""
    if linktype == LINKTYPE_ETHERNET:
        if len(frame) < 14:
            return None, f"frame of {len(frame)} bytes is shorter than an Ethernet header"
        return _from_ethertype(struct.unpack_from("!H", frame, 12)[0], frame, 14)
    if linktype == LINKTYPE_LINUX_SLL:
        # packet type, ARPHRD type, address length, 8 address bytes, protocol
        if len(frame) < 16:
            return None, "truncated Linux cooked (SLL) header"
        return _from_ethertype(struct.unpack_from("!H", frame, 14)[0], frame, 16)
    if linktype == LINKTYPE_LINUX_SLL2:
        # protocol first, then reserved, ifindex, ARPHRD type, packet type, addr len, addr
        if len(frame) < 20:
            return None, "truncated Linux cooked v2 (SLL2) header"
        return _from_ethertype(struct.unpack_from("!H", frame, 0)[0], frame, 20)
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if len(frame) < 4:
            return None, "truncated loopback header"
        if linktype == LINKTYPE_LOOP:
            family = struct.unpack_from("!I", frame, 0)[0]
        else:
            # DLT_NULL writes the family in the capturing host's byte order; families
            # are small, so whichever order gives a value < 65536 is the right one
            family = struct.unpack_from("<I", frame, 0)[0]
            if family >= 0x10000:
                family = struct.unpack_from(">I", frame, 0)[0]
        if family == _AF_INET or family in _AF_INET6:
            if len(frame) <= 4:
                return None, "frame ends before the IP header"
            return frame[4:], ""
        return None, f"loopback address family {family} is not IP"
    if linktype in (LINKTYPE_RAW, LINKTYPE_RAW_DLT12, LINKTYPE_RAW_DLT14):
        return _ip_by_version(frame, 0, "raw IP")
    if linktype in (LINKTYPE_IPV4, LINKTYPE_IPV6):
        want = 4 if linktype == LINKTYPE_IPV4 else 6
        if not frame:
            return None, "empty frame"
        if frame[0] >> 4 != want:
            return None, f"LINKTYPE_IPV{want} frame has IP version nibble {frame[0] >> 4}"
        return frame, ""
    return None, f"link type {linktype} is not supported by the test reader"


# ---- file formats ----


def _split_linktype(raw: int) -> tuple[int, int]:
    """pcap's 32-bit link type field: low 16 bits are the LINKTYPE, bits 28-31 the FCS
    length in 16-bit words, valid only when bit 26 (P) is set. Returns (type, fcs bytes)."""
    fcs = ((raw >> 28) & 0xF) * 2 if raw & 0x04000000 else 0
    return raw & 0xFFFF, fcs


def _make_frame(number: int, ts: Decimal, linktype: int, data: bytes, fcs: int) -> Frame:
    caplen = len(data)
    if fcs and len(data) >= fcs:
        data = data[:-fcs]
    ip, reason = strip_link_layer(linktype, data)
    return Frame(number, ts, linktype, ip, reason, caplen)


_USEC = Decimal("0.000001")


def _read_pcap(f) -> Iterator[Frame]:
    reader = dpkt.pcap.Reader(f)
    linktype, fcs = _split_linktype(reader.datalink())
    for number, (ts, data) in enumerate(reader, 1):
        # dpkt gives a Decimal for nanosecond files and a float for microsecond ones;
        # round the float back to the microseconds the file stores
        if not isinstance(ts, Decimal):
            ts = Decimal(ts).quantize(_USEC)
        yield _make_frame(number, ts, linktype, bytes(data), fcs)


class _Interface(NamedTuple):
    linktype: int
    fcs: int
    divisor: int          # timestamp units per second
    offset: int           # seconds added to every timestamp (if_tsoffset)


_PCAPNG_OPT_IF_TSRESOL = 9
_PCAPNG_OPT_IF_FCSLEN = 13
_PCAPNG_OPT_IF_TSOFFSET = 14


def _interface(idb, endian: str) -> _Interface:
    divisor, offset, fcs = 10 ** 6, 0, 0
    for opt in idb.opts:
        if opt.code == _PCAPNG_OPT_IF_TSRESOL:
            v = opt.data[0]
            divisor = 2 ** (v & 0x7F) if v & 0x80 else 10 ** (v & 0x7F)
        elif opt.code == _PCAPNG_OPT_IF_TSOFFSET:
            offset = struct.unpack(endian + "q", opt.data[:8])[0]
        elif opt.code == _PCAPNG_OPT_IF_FCSLEN:
            fcs = opt.data[0]
    return _Interface(idb.linktype, fcs, divisor, offset)


def _read_pcapng(f) -> Iterator[Frame]:
    """Walk pcapng blocks ourselves: dpkt.pcapng.Reader only honours the first
    Interface Description Block, so with several interfaces it would give every packet
    the first interface's link type and timestamp resolution. dpkt's block classes
    still do the decoding."""
    png = dpkt.pcapng
    interfaces: list[_Interface] = []
    endian = "<"
    number = 0
    while True:
        head = f.read(8)
        if len(head) < 8:
            return
        btype = struct.unpack("<I", head[:4])[0]
        if btype == png.PCAPNG_BT_SHB:
            # a new section: byte order is set by its byte-order magic, interfaces reset
            bom = f.read(4)
            endian = "<" if bom == struct.pack("<I", png.BYTE_ORDER_MAGIC) else ">"
            blen = struct.unpack(endian + "I", head[4:])[0]
            f.read(blen - 12)
            interfaces = []
            continue
        btype, blen = struct.unpack(endian + "II", head)
        body = head + f.read(blen - 8)
        le = endian == "<"
        if btype == png.PCAPNG_BT_IDB:
            idb = (png.InterfaceDescriptionBlockLE if le else png.InterfaceDescriptionBlock)(body)
            interfaces.append(_interface(idb, endian))
            continue
        if btype in (png.PCAPNG_BT_EPB, png.PCAPNG_BT_PB):
            if btype == png.PCAPNG_BT_EPB:
                blk = (png.EnhancedPacketBlockLE if le else png.EnhancedPacketBlock)(body)
            else:
                blk = (png.PacketBlockLE if le else png.PacketBlock)(body)
            iface = interfaces[blk.iface_id]
            units = (blk.ts_high << 32) | blk.ts_low
            data = bytes(blk.pkt_data)
        elif btype == png.PCAPNG_BT_SPB:
            # Simple Packet Block: interface 0, no timestamp; original length then data
            iface = interfaces[0]
            units = 0
            orig_len = struct.unpack(endian + "I", body[8:12])[0]
            data = body[12:12 + min(orig_len, blen - 16)]
        else:
            continue                  # statistics, name resolution, custom blocks...
        number += 1
        ts = Decimal(units) / Decimal(iface.divisor) + iface.offset
        yield _make_frame(number, ts, iface.linktype, data, iface.fcs)


_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"


def read_frames(path: Path | str) -> list[Frame]:
    """Every frame of a pcap or pcapng file (format from the magic, not the name)."""
    with open(path, "rb") as f:
        magic = f.read(4)
        f.seek(0)
        if magic == _PCAPNG_MAGIC:
            return list(_read_pcapng(f))
        return list(_read_pcap(f))


# ---- the tshark oracle next to each capture ----


def oracle_path(capture: Path) -> Path | None:
    for suffix in (".tshark.jsonl", ".tshark.jsonl.gz"):
        p = capture.with_name(capture.name + suffix)
        if p.is_file():
            return p
    return None


# ---- an independent look at IP headers (not fasttcp's parser) ----


class IpInfo(NamedTuple):
    version: int | None
    # bytes before the upper-layer header (IPv6: with extension headers); None if not captured
    header_len: int | None
    proto: int | None          # upper-layer protocol, None if not reached
    claimed_len: int | None    # datagram length the IP header claims (None: unknown, e.g. jumbogram)
    fragment: bool             # part of a fragmented datagram: MF set or nonzero offset
    first_fragment: bool       # offset 0 and MF set

    def truncated(self, ip: bytes) -> bool:
        """The capture holds fewer bytes than the IP header says the datagram has."""
        return self.header_len is None or (self.claimed_len is not None and len(ip) < self.claimed_len)


_IPV6_EXT_8 = (0, 43, 60)      # hop-by-hop, routing, destination options: (len + 1) * 8 bytes
_IPPROTO_AH = 51
_IPPROTO_FRAGMENT = 44
_IPPROTO_TCP = 6


def ip_info(ip: bytes) -> IpInfo:
    version = ip[0] >> 4 if ip else None
    if version == 4:
        if len(ip) < 20:
            return IpInfo(4, None, None, None, False, False)
        total = struct.unpack_from("!H", ip, 2)[0] or len(ip)   # 0: TSO / BIG TCP, length is the buffer's
        frag = struct.unpack_from("!H", ip, 6)[0]
        offset, more = frag & 0x1FFF, bool(frag & 0x2000)
        return IpInfo(4, (ip[0] & 0x0F) * 4, ip[9], total, more or offset != 0, more and offset == 0)
    if version == 6:
        if len(ip) < 40:
            return IpInfo(6, None, None, None, False, False)
        plen = struct.unpack_from("!H", ip, 4)[0]
        claimed = None if plen == 0 and ip[6] == 0 else 40 + plen
        nh, off, fragment, first = ip[6], 40, False, False
        while nh in _IPV6_EXT_8 or nh in (_IPPROTO_AH, _IPPROTO_FRAGMENT):
            if off + 8 > len(ip):
                return IpInfo(6, None, None, claimed, fragment, first)
            if nh == _IPPROTO_FRAGMENT:
                fo = struct.unpack_from("!H", ip, off + 2)[0]
                offset, more = fo & 0xFFF8, bool(fo & 1)
                fragment, first = more or offset != 0, more and offset == 0
                size = 8
            elif nh == _IPPROTO_AH:
                size = (ip[off + 1] + 2) * 4
            else:
                size = (ip[off + 1] + 1) * 8
            nh = ip[off]
            off += size
        return IpInfo(6, off, nh, claimed, fragment, first)
    return IpInfo(version, None, None, None, False, False)
