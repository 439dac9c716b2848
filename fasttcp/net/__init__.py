"""An Endpoint on a real interface: where packets go (`lookup_route`: interface, source
address, next hop and its MAC), keeping the local kernel from resetting the endpoint's
connections (`RstGuard`), and the AF_PACKET link that pumps an Endpoint (`InterfaceLink`).
Needs Linux, root (CAP_NET_RAW, CAP_NET_ADMIN) and pyroute2 (``fasttcp[live]``)."""
from fasttcp.net.guard import RstGuard, remove_stale_tables
from fasttcp.net.link import InterfaceLink
from fasttcp.net.route import Route, interface_info, local_addresses, lookup_route

__all__ = ["InterfaceLink", "Route", "RstGuard", "interface_info", "local_addresses", "lookup_route",
           "remove_stale_tables"]
