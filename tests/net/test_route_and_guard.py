"""`lookup_route` and `RstGuard` in namespace A of a veth pair (each call in a child
process inside the namespace: routes, neighbours and nftables are per namespace)."""
import json
import signal
import sys
import textwrap

import pytest

from tests.netns import veth  # noqa: F401  (fixture)

pytest.importorskip("pyroute2")


def in_a(net, code, timeout=30):
    """Run `code` (which prints one JSON line) with python in namespace A."""
    out = net.run(net.a, [sys.executable, "-c", textwrap.dedent(code)], timeout=timeout, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


ROUTE = """
import json
from fasttcp.net import lookup_route
try:
    r = lookup_route({dst!r})
    print(json.dumps({{"interface": r.interface, "source": str(r.source), "next_hop": str(r.next_hop),
                      "mac": r.next_hop_mac.hex(":"), "own": r.mac.hex(":"), "mtu": r.mtu}}))
except OSError as e:
    print(json.dumps({{"errno": e.errno, "message": str(e)}}))
"""


@pytest.mark.parametrize("family", [4, 6])
def test_route_to_the_peer_resolves_its_mac(veth, family):  # noqa: F811
    dst = veth.b_v4 if family == 4 else veth.b_v6
    r = in_a(veth, ROUTE.format(dst=dst))
    assert r["interface"] == veth.a_if and r["next_hop"] == dst and r["mtu"] == 1500
    assert r["source"] == (veth.a_v4 if family == 4 else veth.a_v6)
    assert r["mac"] == veth.mac("b") and r["own"] == veth.mac("a")


def test_silent_neighbour_is_host_unreachable(veth):  # noqa: F811
    r = in_a(veth, ROUTE.format(dst="198.18.0.77"))     # on the link, nobody answers ARP
    assert r["errno"] == 113 and "198.18.0.77" in r["message"]


def test_no_route_is_network_unreachable(veth):  # noqa: F811
    r = in_a(veth, ROUTE.format(dst="198.19.5.5"))      # no default route in A
    assert r["errno"] == 101


GUARD = """
import json, subprocess
from fasttcp.net import RstGuard
g = RstGuard([{addr!r}], ports=({port}, {port}))
with g:
    inside = subprocess.run(["nft", "list", "table", "inet", g.table], capture_output=True, text=True).stdout
    print(inside, file=__import__("sys").stderr)
    import time
    open({ready!r}, "w").close()
    time.sleep({hold})
after = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
print(json.dumps({{"rule": "tcp dport {port} drop" in inside, "after": g.table in after}}))
"""


def _connect_from_b(net, port, timeout=1.5):
    code = (f"import socket\ns = socket.socket()\ns.settimeout({timeout})\n"
            f"try:\n    s.connect(({net.a_v4!r}, {port})); print('connected')\n"
            "except ConnectionRefusedError: print('refused')\nexcept OSError: print('timeout')\n")
    return net.run(net.b, [sys.executable, "-c", code], timeout=30).stdout.strip()


def test_guard_hides_the_port_from_the_kernel_and_goes_away(veth, tmp_path):  # noqa: F811
    port = 4444
    assert _connect_from_b(veth, port) == "refused"         # the kernel's RST: no socket there
    ready = tmp_path / "ready"
    child = veth.popen(veth.a, [sys.executable, "-c", GUARD.format(addr=veth.a_v4, port=port, ready=str(ready),
                                                                   hold=4)])
    try:
        for _ in range(100):
            if ready.exists():
                break
            __import__("time").sleep(0.05)
        assert _connect_from_b(veth, port) == "timeout"     # dropped in A's input hook: no RST
        assert _connect_from_b(veth, port + 1) == "refused"  # other ports untouched
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    r = json.loads(out.strip().splitlines()[-1])
    assert r == {"rule": True, "after": False}, err
    assert _connect_from_b(veth, port) == "refused"


GUARD_UNTIL_SIGTERM = """
import json, signal, subprocess, sys, time
from fasttcp.net import RstGuard
stopped = []
if {own_handler}:
    signal.signal(signal.SIGTERM, lambda s, f: stopped.append(s))
g = RstGuard([{addr!r}])
with g:
    open({ready!r}, "w").close()
    deadline = time.monotonic() + 20
    while not stopped and time.monotonic() < deadline:
        time.sleep(0.01)
    during = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
after = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
print(json.dumps({{"stopped": stopped, "during": g.table in during, "after": g.table in after}}))
"""


@pytest.mark.parametrize("own_handler", [False, True])
def test_sigterm_removes_the_table_and_respects_a_handler(veth, tmp_path, own_handler):  # noqa: F811
    # No handler of the program's: SIGTERM ends it as SystemExit(143) with the table
    # removed. A handler of its own: the guard leaves it in place, the program ends its
    # run its own way, and the ``with`` removes the table.
    ready = tmp_path / "ready"
    child = veth.popen(veth.a, [sys.executable, "-c", GUARD_UNTIL_SIGTERM.format(
        addr=veth.a_v4, ready=str(ready), own_handler=own_handler)])
    try:
        for _ in range(200):
            if ready.exists():
                break
            __import__("time").sleep(0.05)
        assert ready.exists(), child.stderr.read() if child.poll() is not None else "not ready"
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert "fasttcp_guard_" not in veth.run(veth.a, ["nft", "list", "tables"]).stdout
    if own_handler:
        assert child.returncode == 0, err
        assert json.loads(out.strip().splitlines()[-1]) == {"stopped": [15], "during": True, "after": False}
    else:
        assert child.returncode == 143 and out == "", err


SIGTERM_WHILE_CLOSING = """
import json, os, signal, subprocess, time
from fasttcp.net import RstGuard
g = RstGuard([{addr!r}]).install()
raised = None
g._lock.acquire()                 # as when SIGTERM lands while close() runs its nft
try:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(1)
except SystemExit as e:
    raised = e.code
finally:
    g._lock.release()
during = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
g.close()
after = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
print(json.dumps({{"raised": raised, "during": g.table in during, "after": g.table in after}}))
"""


def test_sigterm_while_the_guard_closes_does_not_deadlock(veth):  # noqa: F811
    # the handler only raises: the with or atexit removes the table (removing it in the
    # handler would wait for the lock its own thread holds)
    r = in_a(veth, SIGTERM_WHILE_CLOSING.format(addr=veth.a_v4))
    assert r == {"raised": 143, "during": True, "after": False}


NFT_INTERRUPTED = """
import json, subprocess
import fasttcp.net.guard as G
real = G._nft
def interrupted(script):
    if {when!r} == "install":
        real(script)              # nft committed the table, then the signal's exception
    raise KeyboardInterrupt if {when!r} == "install" else PermissionError(-2, "nft failed: ")
g = G.RstGuard([{addr!r}])
if {when!r} == "install":
    G._nft = interrupted
    try:
        g.install()
    except KeyboardInterrupt:
        pass
else:
    g.install()
    G._nft = interrupted          # as an nft killed by the signal halfway
    g.close()
G._nft = real
during = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
print(json.dumps({{"installed": g.installed, "during": g.table in during}}))
"""


@pytest.mark.parametrize("when", ["install", "close"])
def test_a_table_nft_may_have_left_is_removed_at_exit(veth, when):  # noqa: F811
    # an exception while nft runs (a signal's, or nft killed) leaves the guard marked
    # installed, so the close at interpreter exit removes what is there
    r = in_a(veth, NFT_INTERRUPTED.format(addr=veth.a_v4, when=when))
    assert r == {"installed": True, "during": True}
    assert "fasttcp_guard_" not in veth.run(veth.a, ["nft", "list", "tables"]).stdout


def test_stale_table_of_a_killed_process_is_removed(veth):  # noqa: F811
    code = ("import os\nfrom fasttcp.net import RstGuard\n"
            f"RstGuard([{veth.a_v4!r}]).install()\nos._exit(0)\n")      # no atexit: as if killed
    veth.run(veth.a, [sys.executable, "-c", code])
    assert "fasttcp_guard_" in veth.run(veth.a, ["nft", "list", "tables"]).stdout
    r = in_a(veth, "import json\nfrom fasttcp.net import remove_stale_tables\nprint(json.dumps(remove_stale_tables()))")
    assert len(r) == 1 and "fasttcp_guard_" not in veth.run(veth.a, ["nft", "list", "tables"]).stdout


def test_local_addresses_include_other_named_namespaces(veth):  # noqa: F811
    r = in_a(veth, "import json\nfrom fasttcp.net import local_addresses\n"
                   "print(json.dumps(sorted(map(str, local_addresses()))))")
    assert veth.a_v4 in r and veth.b_v4 in r                # B's address, seen from A


PEER_CHECK = """
import ipaddress, json
from fasttcp.errors import UsageError
from fasttcp.load.safety import check_target
from fasttcp.net import local_addresses
out = {"local": sorted(map(str, local_addresses())), "verdicts": {}}
for far in ("203.0.113.7", "2001:db8::7"):
    try:
        out["verdicts"][far] = check_target(ipaddress.ip_address(far), i_own_this_network=False)
    except UsageError:
        out["verdicts"][far] = "refused"
print(json.dumps(out))
"""


def test_far_end_of_a_point_to_point_address_is_not_local(veth):  # noqa: F811
    # `ip addr add LOCAL peer REMOTE`: rtnetlink reports REMOTE as IFA_ADDRESS; it is
    # someone else's host and must stay refused without --i-own-this-network. Only
    # the check runs: nothing is sent to the documentation addresses (RFC 5737, 3849).
    veth.run(veth.a, ["ip", "link", "add", "ptp0", "type", "veth", "peer", "name", "ptp1"])
    veth.run(veth.a, ["ip", "addr", "add", "198.18.7.1", "peer", "203.0.113.7/32", "dev", "ptp0"])
    veth.run(veth.a, ["ip", "-6", "addr", "add", "2001:2::7:1", "peer", "2001:db8::7/128", "dev", "ptp0"])
    r = in_a(veth, PEER_CHECK)
    assert "198.18.7.1" in r["local"] and "2001:2::7:1" in r["local"]
    assert "203.0.113.7" not in r["local"] and "2001:db8::7" not in r["local"]
    assert r["verdicts"] == {"203.0.113.7": "refused", "2001:db8::7": "refused"}


NAMESPACE_CHECK = """
import ipaddress, json
from fasttcp.errors import UsageError
from fasttcp.load.safety import check_target
out = {}
for far in ("192.0.2.9", "203.0.113.9"):
    try:
        out[far] = check_target(ipaddress.ip_address(far), i_own_this_network=False)
    except UsageError:
        out[far] = "refused"
print(json.dumps(out))
"""


def test_address_of_another_namespace_counts_only_on_link(veth):  # noqa: F811
    # Both addresses belong to namespace B. 192.0.2.9 is on B's side of the veth, on a
    # subnet A reaches directly: the load would go to B, this host. 203.0.113.9 is
    # routed from A through a gateway: a packet for it leaves through whatever that
    # gateway is, so owning the address in some namespace proves nothing. Only the
    # check runs: nothing is sent (documentation addresses, RFC 5737).
    veth.run(veth.a, ["ip", "addr", "add", "192.0.2.8/24", "dev", veth.a_if])
    veth.run(veth.b, ["ip", "addr", "add", "192.0.2.9/24", "dev", veth.b_if])
    veth.run(veth.b, ["ip", "addr", "add", "203.0.113.9/32", "dev", "lo"])
    veth.run(veth.a, ["ip", "route", "add", "203.0.113.9/32", "via", "192.0.2.9"])
    assert in_a(veth, NAMESPACE_CHECK) == {"192.0.2.9": "this host", "203.0.113.9": "refused"}
