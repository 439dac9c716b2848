"""Where a packet to an address leaves: interface, source address, next hop and the next
hop's MAC, read from the kernel's routing and neighbour tables over rtnetlink.

    route = lookup_route("198.18.0.2")        # Route(interface="eth0", source=..., next_hop_mac=...)

Uses pyroute2 (the ``fasttcp[live]`` extra), imported when first needed: three rtnetlink
requests (RTM_GETROUTE, RTM_GETLINK, RTM_GETNEIGH) and their attribute parsing are what it
saves, and the netlink dump/ack/error handling written by hand would be more code than the
rest of fasttcp.net together, for calls made once per run, not per packet.

A next hop that is not in the neighbour table yet is resolved by the kernel itself: a UDP
datagram to the next hop's discard port (9, RFC 863) from a kernel socket makes the kernel
send the ARP request (RFC 826) or neighbour solicitation (RFC 4861 7.2.2) and fill the
table; we then poll the table. The datagram's answer, if any, is an ICMP port unreachable
the kernel swallows. Rolling our own ARP/NS would need the ring to read the reply before
the endpoint runs, for no gain.
"""
from __future__ import annotations

import errno
import ipaddress
import os
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any

from fasttcp.errors import UsageError

__all__ = ["Route", "lookup_route", "interface_info", "local_addresses", "on_link", "require_pyroute2"]

_ARPHRD_ETHER = 1          # include/uapi/linux/if_arp.h
_ARPHRD_LOOPBACK = 772
_DISCARD_PORT = 9          # RFC 863: the probe that makes the kernel resolve the neighbour
_NUD_USABLE = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80   # REACHABLE STALE DELAY PROBE NOARP PERMANENT
_NEIGHBOUR_WAIT = 3.0      # seconds to wait for ARP/ND (the kernel retries 3 times, 1 s apart)
_NETNS_DIR = "/run/netns"  # where `ip netns add` keeps named namespaces


def require_pyroute2() -> Any:
    """The pyroute2 module; raises ModuleNotFoundError saying which extra installs it."""
    try:
        import pyroute2  # type: ignore[import-untyped]
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError("fasttcp.net needs pyroute2: pip install 'fasttcp[live]'") from exc
    return pyroute2


@dataclass(frozen=True)
class Route:
    """How a packet to ``destination`` leaves this host."""
    destination: ipaddress.IPv4Address | ipaddress.IPv6Address
    interface: str
    ifindex: int
    source: ipaddress.IPv4Address | ipaddress.IPv6Address   # the kernel's preferred source
    next_hop: ipaddress.IPv4Address | ipaddress.IPv6Address  # the gateway, or the destination
    next_hop_mac: bytes          # 6 bytes; zeros on loopback
    mac: bytes                   # the interface's own MAC
    mtu: int
    loopback: bool


def _mac(text: str | None) -> bytes:
    return bytes.fromhex((text or "00:00:00:00:00:00").replace(":", ""))


def _parse_address(address: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if isinstance(address, bool) or not isinstance(address, (str, ipaddress.IPv4Address, ipaddress.IPv6Address)):
        raise UsageError(f"an IP address is a str, not {type(address).__name__}")
    try:
        return ipaddress.ip_address(address)
    except ValueError as exc:
        raise UsageError(f"not an IP address: {address!r}") from exc


def interface_info(name: str) -> dict[str, Any]:
    """``ifindex``, ``mac`` (bytes), ``mtu``, ``loopback`` and ``ethernet`` of interface
    ``name`` in this namespace. Raises UsageError if there is no such interface."""
    if not isinstance(name, str) or not name or len(name.encode()) >= 16 or "/" in name:
        raise UsageError(f"not an interface name: {name!r}")
    require_pyroute2()
    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        links = ipr.link_lookup(ifname=name)
        if not links:
            raise UsageError(f"no interface {name!r} in this network namespace")
        link = ipr.link("get", index=links[0])[0]
    return {"ifindex": links[0], "mac": _mac(link.get("IFLA_ADDRESS")), "mtu": int(link.get("IFLA_MTU")),
            "loopback": link["ifi_type"] == _ARPHRD_LOOPBACK, "ethernet": link["ifi_type"] == _ARPHRD_ETHER}


def _neighbour(ipr: Any, ifindex: int, address: str, family: int) -> bytes | None:
    for entry in ipr.neigh("dump", family=family):
        if entry["ifindex"] == ifindex and entry.get("NDA_DST") == address and entry["state"] & _NUD_USABLE:
            lladdr = entry.get("NDA_LLADDR")
            if lladdr:
                return _mac(lladdr)
    return None


def _provoke_resolution(next_hop: str, family: int, ifname: str) -> None:
    """One UDP datagram to the next hop's discard port: the kernel resolves its MAC."""
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
            s.sendto(b"", (next_hop, _DISCARD_PORT))
        except OSError:
            pass          # resolution may still happen; the table decides below


def resolve_neighbour(ipr: Any, ifindex: int, ifname: str, next_hop: str, family: int,
                      wait: float = _NEIGHBOUR_WAIT, stop: threading.Event | None = None) -> bytes:
    """The MAC of ``next_hop`` on interface ``ifindex``, resolving it if needed. Raises
    OSError(EHOSTUNREACH) when ARP/ND gets no answer within ``wait`` seconds,
    InterruptedError when ``stop`` is set meanwhile."""
    mac = _neighbour(ipr, ifindex, next_hop, family)
    deadline = time.monotonic() + wait
    probes = 0
    while mac is None:
        if stop is not None and stop.is_set():
            raise InterruptedError(errno.EINTR, f"stopped while resolving {next_hop} on {ifname}")
        if time.monotonic() > deadline:
            raise OSError(113, f"no ARP/ND answer from {next_hop} on {ifname}")   # EHOSTUNREACH
        if probes % 10 == 0:
            _provoke_resolution(next_hop, family, ifname)
        probes += 1
        time.sleep(0.02)
        mac = _neighbour(ipr, ifindex, next_hop, family)
    return mac


def lookup_route(destination: object, *, source: object | None = None,
                 stop: threading.Event | None = None) -> Route:
    """The route a packet to ``destination`` (str or ipaddress) takes in this network
    namespace, with the next hop's MAC resolved. Raises UsageError for something that is
    not an address, OSError(ENETUNREACH) when there is no route, OSError(EHOSTUNREACH)
    when the neighbour does not answer (InterruptedError if ``stop`` is set while
    waiting for it), ModuleNotFoundError without pyroute2."""
    dst = _parse_address(destination)
    src = None if source is None else _parse_address(source)
    require_pyroute2()
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]
    family = socket.AF_INET if dst.version == 4 else socket.AF_INET6
    with IPRoute() as ipr:
        try:
            query = {"dst": str(dst)} if src is None else {"dst": str(dst), "src": str(src)}
            answer = ipr.route("get", family=family, **query)[0]
        except NetlinkError as exc:
            raise OSError(exc.code, f"no route to {dst}: {os.strerror(exc.code)}") from exc
        ifindex = int(answer.get("RTA_OIF"))
        link = ipr.link("get", index=ifindex)[0]
        ifname = link.get("IFLA_IFNAME")
        loopback = link["ifi_type"] == _ARPHRD_LOOPBACK
        chosen = answer.get("RTA_PREFSRC") or (str(src) if src is not None else None)
        if chosen is None:
            raise OSError(99, f"no source address for {dst} on {ifname}")      # EADDRNOTAVAIL
        next_hop = answer.get("RTA_GATEWAY") or str(dst)
        if loopback:
            hop_mac = bytes(6)
        elif link["ifi_type"] != _ARPHRD_ETHER:
            raise UsageError(f"{ifname} is not an Ethernet-like interface (ARPHRD {link['ifi_type']})")
        else:
            hop_mac = resolve_neighbour(ipr, ifindex, ifname, next_hop, family, stop=stop)
    return Route(destination=dst, interface=ifname, ifindex=ifindex, source=ipaddress.ip_address(chosen),
                 next_hop=ipaddress.ip_address(next_hop), next_hop_mac=hop_mac,
                 mac=_mac(link.get("IFLA_ADDRESS")), mtu=int(link.get("IFLA_MTU")), loopback=loopback)


def on_link(destination: object) -> bool:
    """Whether this namespace reaches ``destination`` directly: a route with no gateway,
    out of an interface that is not loopback. Looks at the routing table only: nothing
    is sent (no neighbour probe). False when there is no route."""
    dst = _parse_address(destination)
    require_pyroute2()
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError
    family = socket.AF_INET if dst.version == 4 else socket.AF_INET6
    with IPRoute() as ipr:
        try:
            answer = ipr.route("get", family=family, dst=str(dst))[0]
        except NetlinkError:
            return False
        link = ipr.link("get", index=int(answer.get("RTA_OIF")))[0]
    return answer.get("RTA_GATEWAY") is None and link["ifi_type"] != _ARPHRD_LOOPBACK


def _addresses_here() -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    # IFA_LOCAL is the interface's own address; on a point-to-point link (`ip addr add
    # LOCAL peer REMOTE`) IFA_ADDRESS is the far end's, which is not this host's
    # (include/uapi/linux/if_addr.h); an address without a peer may come with IFA_ADDRESS only.
    require_pyroute2()
    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        own = (a.get("IFA_LOCAL") or a.get("IFA_ADDRESS") for a in ipr.addr("dump"))
        return {ipaddress.ip_address(a.split("%")[0]) for a in own if a}


def _addresses_in_namespace(name: str) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    out = subprocess.run(["ip", "-n", name, "-o", "addr", "show"], capture_output=True, text=True,
                         timeout=10, check=False)
    found = set()
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] in ("inet", "inet6"):
            found.add(ipaddress.ip_address(parts[3].split("/")[0].split("%")[0]))
    return found


def local_addresses(*, all_namespaces: bool = True) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses of this host's interfaces: this network namespace's, and with
    ``all_namespaces`` those of every named namespace (``ip netns``, /run/netns). Unnamed
    namespaces (a container runtime's) are not seen: an address there counts as foreign."""
    found = _addresses_here()
    if all_namespaces and os.path.isdir(_NETNS_DIR):
        for name in sorted(os.listdir(_NETNS_DIR)):
            found |= _addresses_in_namespace(name)
    return found
