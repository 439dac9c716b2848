"""Hostile arguments to the load generator, the guard, the route lookup and the link:
each is a precise exception (UsageError for misuse, OSError as the system says), raised
before anything is installed or sent, in a child process so a crash fails one test."""
import subprocess
import sys

import pytest

from tests.probe import expect_raises

pytest.importorskip("pyroute2")

CFG = "from fasttcp.load.generator import LoadConfig\n"


@pytest.mark.parametrize("field, value", [
    ("port", "0"), ("port", "65536"), ("port", "True"), ("port", "'80'"),
    ("connections", "0"), ("connections", "-5"), ("connections", "2**64"), ("connections", "1.5"),
    ("concurrency", "0"), ("concurrency", "None"), ("rate", "float('nan')"), ("rate", "-1.0"),
    ("rate", "float('inf')"), ("rate", "True"), ("duration", "0"), ("duration", "float('nan')"),
    ("close", "'linger'"), ("msl", "0"), ("msl", "1e9"),
])
def test_bad_config_fields(field, value):
    expect_raises(f"{CFG}kw = dict(host='198.18.0.2', port=80)\nkw[{field!r}] = {value}\n"
                  "LoadConfig(**kw).validate()", "UsageError", field)


@pytest.mark.parametrize("value", ["-1", "2**20 + 1", "2**64", "True", "1.0", "'100'"])
def test_bad_request_sizes(value):
    expect_raises(f"{CFG}LoadConfig(host='198.18.0.2', port=80, request={value}).validate()", "UsageError",
                  "request")


@pytest.mark.parametrize("host", ["example.com", "", "1.2.3.4.5", "::ffff:zz"])
def test_host_that_is_not_an_address(host):
    expect_raises(f"from fasttcp.load import run_load, LoadConfig\nrun_load(LoadConfig(host={host!r}, port=80))",
                  "UsageError")


@pytest.mark.parametrize("target", ["8.8.8.8", "1.1.1.1", "2001:4860::8888", "224.0.0.1", "0.0.0.0", "::"])
def test_foreign_or_odd_targets_refused(target):
    expect_raises(f"from fasttcp.load import run_load, LoadConfig\nrun_load(LoadConfig(host={target!r}, port=80))",
                  "UsageError")


@pytest.mark.parametrize("args", [
    "[]", "['not-an-ip']", "[b'\\x00']", "[1234]",
])
def test_guard_bad_addresses(args):
    expect_raises(f"from fasttcp.net import RstGuard\nRstGuard({args})", "UsageError")


@pytest.mark.parametrize("ports", ["(0, 10)", "(10, 5)", "(1, 70000)", "(True, 5)", "[1, 2]", "(1,)", "'80'"])
def test_guard_bad_ports(ports):
    expect_raises(f"from fasttcp.net import RstGuard\nRstGuard(['198.18.0.1'], ports={ports})", "UsageError")


def test_guard_peer_of_another_family():
    expect_raises("from fasttcp.net import RstGuard\nRstGuard(['198.18.0.1'], peer=('2001:2::2', 80))",
                  "UsageError", "one IP version")


@pytest.mark.parametrize("address", ["'nonsense'", "None", "12", "True", "b'1234'"])
def test_route_lookup_bad_address(address):
    expect_raises(f"from fasttcp.net import lookup_route\nlookup_route({address})", "UsageError")


@pytest.mark.parametrize("name", ["'no-such-if0'", "''", "'x' * 40", "'a/b'", "None", "7"])
def test_link_bad_interface(name):
    expect_raises("import fasttcp\nfrom fasttcp.net import InterfaceLink\n"
                  f"InterfaceLink(fasttcp.Endpoint(['198.18.0.1']), {name}, next_hop_mac=bytes(6))", "UsageError")


@pytest.mark.parametrize("kw", ["io='dpdk'", "next_hop_mac=b'12'", "next_hop_mac='aa:bb'"])
def test_link_bad_options(kw):
    expect_raises("import fasttcp\nfrom fasttcp.net import InterfaceLink\n"
                  f"InterfaceLink(fasttcp.Endpoint(['198.18.0.1']), 'lo', {kw})", "UsageError")


@pytest.mark.parametrize("rate", ["float('nan')", "0", "-3", "True", "'10'"])
def test_token_bucket_bad_rate(rate):
    expect_raises(f"from fasttcp.load import TokenBucket\nTokenBucket({rate})", "UsageError")


@pytest.mark.parametrize("ids", ["[[1]]", "'x'", "[1.5]", "None"])
def test_abort_batch_bad_ids(ids):
    expect_raises(f"import fasttcp\nfasttcp.Endpoint(['198.18.0.1']).abort_batch({ids}, 0.0)", "UsageError")


def test_abort_batch_skips_out_of_range_ids():
    from tests.probe import expect_ok
    assert expect_ok("import fasttcp\noutcome(fasttcp.Endpoint(['198.18.0.1']).abort_batch("
                     "[-1, 0, 2**40, 2**63 - 1, -2**63], 0.0))") == "0"


@pytest.mark.parametrize("argv", [
    ["198.18.0.2"], ["198.18.0.2:0"], ["198.18.0.2:99999"], ["host.example:80"], ["198.18.0.2:80", "--rate", "nan"],
    ["198.18.0.2:80", "--rate", "-5"], ["198.18.0.2:80", "--connections", "0"], ["198.18.0.2:80", "--connections",
                                                                                  "1e3"],
    ["198.18.0.2:80", "--duration", "inf"], ["198.18.0.2:80", "--close", "maybe"], ["198.18.0.2:80", "--io", "x"],
    ["2001:2::2:80"], ["[2001:2::2]"], ["[2001:2::2]:65536"],
])
def test_cli_rejects_bad_arguments(argv):
    out = subprocess.run([sys.executable, "-m", "fasttcp", "load", *argv], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2 and "fasttcp load" in out.stderr and out.stdout == ""


@pytest.mark.parametrize("text", ["2001:2::2:80", "::ffff:198.18.0.2:80", "2001:2::80"])
def test_cli_unbracketed_ipv6_target_is_ambiguous(text):
    # rpartition(":") would take the last group for the port: a target the user did
    # not type (2001:2::2:80 is a whole address, too)
    import argparse

    from fasttcp.cli.load import _target
    with pytest.raises(argparse.ArgumentTypeError, match="brackets"):
        _target(text)


@pytest.mark.parametrize(("text", "parsed"), [("[2001:2::2]:80", ("2001:2::2", 80)),
                                              ("198.18.0.2:8080", ("198.18.0.2", 8080))])
def test_cli_target_forms(text, parsed):
    from fasttcp.cli.load import _target
    assert _target(text) == parsed
