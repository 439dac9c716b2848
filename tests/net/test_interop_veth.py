"""The interop scenarios of tests/endpoint/test_interop_linux.py over a real wire: the
endpoint runs in namespace A on an `InterfaceLink` (AF_PACKET) on A's veth end, the Linux
sockets live in namespace B (tests/endpoint/interop_child.py, ``--veth``). The test bodies
are the TUN ones, imported: only the `run` fixture differs."""
import pytest

from tests.endpoint import test_interop_linux as tun_tests
from tests.endpoint.test_interop_linux import (  # noqa: F401  (collected here with the veth `run`)
    test_abort_either_side,
    test_fasttcp_client_closes_first,
    test_half_close_fasttcp_keeps_sending_in_close_wait,
    test_linux_client_handshake_answered_with_a_syn_cookie,
    test_linux_client_megabyte_each_way,
    test_linux_closes_first,
    test_lost_fin_and_lost_last_ack,
    test_lost_syn_is_retransmitted_after_one_second,
    test_refused_both_ways,
    test_thousand_concurrent_linux_clients,
)
from tests.netns import veth  # noqa: F401  (fixture)

pytest.importorskip("pyroute2")


@pytest.fixture
def run(veth):  # noqa: F811
    """run(scenario, tmp_path, timeout=...) with the endpoint on A's veth end."""
    return lambda scenario, tmp_path, timeout=120: tun_tests.run_child(
        veth.a, scenario, tmp_path, extra=("--veth", veth.a_if, veth.b), timeout=timeout)


def test_ipv6_fasttcp_client_closes_first(veth, tmp_path):  # noqa: F811
    """The same exchange over IPv6: neighbour discovery for B's MAC, an ip6 guard rule."""
    r = tun_tests.run_child(veth.a, "fasttcp_client_closes_first", tmp_path,
                            extra=("--veth", veth.a_if, veth.b, "--family", "6"))
    assert r["pumped"] and r["got_response"] and r["state"] == "TIME-WAIT"
    assert r["linux"]["value"] == {"got_request": True, "eof": True}


def test_ipv6_linux_client_handshake_answered_with_a_syn_cookie(veth, tmp_path):  # noqa: F811
    """IPv6's cookie: its own hash input (40 bytes) and MSS table (1220, 1420, 1440, 8940)."""
    r = tun_tests.run_child(veth.a, "linux_client_syn_cookie", tmp_path,
                            extra=("--veth", veth.a_if, veth.b, "--family", "6"))
    assert r["pumped"] and r["cookies"]["syn_cookies_ok"] == 1 and r["causes"][0] == "SYN_COOKIE"
    assert r["got_upload"] and r["linux"]["value"]["got_download"]
    assert r["options"]["mss"] == 1440 and r["options"]["timestamps"]     # Linux's 1440: msstab6[2]


def test_guard_table_is_gone_after_the_child(veth, tmp_path):  # noqa: F811
    tun_tests.run_child(veth.a, "refused_both_ways", tmp_path, extra=("--veth", veth.a_if, veth.b))
    tables = veth.run(veth.a, ["nft", "list", "tables"]).stdout
    assert "fasttcp_guard_" not in tables
