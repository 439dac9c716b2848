"""Which targets `fasttcp load` may hit without ``--i-own-this-network``.

A connection-rate generator pointed at someone else's host is an attack. Without the flag
the target must be this machine or a benchmarking network:

- an address of one of this host's interfaces: in this network namespace, or in a named
  one (``ip netns``; `fasttcp.net.route.local_addresses`) that this namespace reaches
  directly (a route without a gateway, e.g. over a veth) -- an address that a namespace
  here owns but that routes out through a gateway would go to whoever holds it outside,
  so it needs the flag; a namespace made by a container runtime without a name is not
  seen, so its addresses need the flag too;
- the benchmarking ranges: 198.18.0.0/15 (RFC 2544 C.2.2) and 2001:2::/48 (RFC 5180 8);
- loopback (127.0.0.0/8, ::1) -- allowed by policy, but refused by `fasttcp load` for a
  technical reason, see `LOOPBACK_REASON`.

The check runs before any packet is sent (the route lookup's neighbour probe included).
"""
from __future__ import annotations

import ipaddress

from fasttcp.errors import UsageError

__all__ = ["BENCHMARK_NETWORKS", "LOOPBACK_REASON", "check_target"]

BENCHMARK_NETWORKS = (ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("2001:2::/48"))
LOOPBACK_REASON = ("loopback is not supported: on lo the AF_PACKET tap sees each packet twice (as sent "
                   "and as received) and the generator's SYNs would come back to its own endpoint; "
                   "use an address on an Ethernet-like interface (a veth pair works)")


def check_target(address: ipaddress.IPv4Address | ipaddress.IPv6Address, *, i_own_this_network: bool,
                 local: set[ipaddress.IPv4Address | ipaddress.IPv6Address] | None = None) -> str:
    """Why ``address`` may be targeted ("benchmarking range", "this host", "owned by the
    user"); raises UsageError saying why not. ``local`` (the host's addresses) is looked
    up only when needed and only if not given; a given set is trusted as it is."""
    if address.is_loopback:
        raise UsageError(LOOPBACK_REASON)
    if address.is_multicast or address.is_unspecified or (address.version == 4 and address == ipaddress.IPv4Address(
            "255.255.255.255")):
        raise UsageError(f"{address} is not a unicast address")
    if any(address in net for net in BENCHMARK_NETWORKS if net.version == address.version):
        return "benchmarking range"
    if local is None:
        from fasttcp.net.route import local_addresses, on_link
        if address in local_addresses(all_namespaces=False):
            return "this host"
        if address in local_addresses(all_namespaces=True) and on_link(address):
            return "this host"
    elif address in local:
        return "this host"
    if i_own_this_network:
        return "owned by the user"
    raise UsageError(
        f"refusing to load {address}: it is not an address of this host (in this network namespace, or in a "
        f"named one reached without a gateway) "
        f"nor in the benchmarking ranges 198.18.0.0/15 or 2001:2::/48. A connection-rate load on a host you "
        f"do not run is an attack; if the network and the target are yours, add --i-own-this-network")
