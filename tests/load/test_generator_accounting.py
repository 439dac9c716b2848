"""The generator's bookkeeping against a peer Endpoint in memory: the client side runs
the batch path (`receive_batch`, raw events) exactly as it does on an interface."""
import ipaddress

import numpy as np

from fasttcp.endpoint.endpoint import Endpoint
from fasttcp.load.generator import LoadConfig, _Run

CLIENT, SERVER = "198.18.0.1", "198.18.0.2"


class _Clock:
    """What `_Run` reads from its link at start: the time."""

    def now(self):
        return 1.0


def _deliver(src, dst, now, *, batch):
    packets = src.transmit()
    if not packets:
        return
    if batch:
        lengths = np.array([len(p) for p in packets], np.int64)
        offsets = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
        dst.receive_batch(np.frombuffer(b"".join(packets), np.uint8), offsets, lengths, now)
    else:
        for p in packets:
            dst.receive(p, now)


def test_reset_in_the_turn_of_the_syn_ack_is_counted_once_with_rst_close():
    # the SYN-ACK and the server's RST reach the endpoint before the generator's next
    # turn: the turn sees SYN_ACK_RECEIVED and RST_RECEIVED together. The RST close must
    # not take the connection off the open count a second time.
    client, server = Endpoint([CLIENT], capacity=1 << 16), Endpoint([SERVER])
    server.listen(80)
    cfg = LoadConfig(host=SERVER, port=80, connections=1, close="rst")
    run = _Run(cfg, client, _Clock(), [ipaddress.ip_address(CLIENT)], ipaddress.ip_address(SERVER), (1024, 2047))
    run._open(1.0)
    _deliver(client, server, 1.0, batch=False)            # SYN
    _deliver(server, client, 1.001, batch=True)           # SYN-ACK; the client ACKs
    _deliver(client, server, 1.001, batch=False)          # ACK: the server has the connection
    server.events()
    accepted = server.accept()
    accepted.abort(now=1.002)
    _deliver(server, client, 1.002, batch=True)           # RST
    run.tick(1.003)
    assert (run.r.connections, run.r.resets, run.active) == (1, 1, 0)
    assert run.done() and run.r.errors == 1


def test_source_ports_stay_outside_the_kernels_ephemeral_range():
    from fasttcp.load.generator import MIN_SOURCE_PORTS, source_port_range
    assert source_port_range((32768, 60999)) == (1024, 32767)     # Linux's default: below
    assert source_port_range((1024, 50000)) == (50001, 65535)     # nothing below: above
    assert source_port_range((5000, 40000)) == (40001, 65535)     # the larger run wins
    assert source_port_range((20000, 65535)) == (1024, 19999)
    first, last = source_port_range()                             # this host's sysctl
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low, high = map(int, f.read().split())
    assert last - first + 1 >= MIN_SOURCE_PORTS and (last < low or first > high)


def test_an_ephemeral_range_that_leaves_too_few_ports_is_refused():
    import pytest

    from fasttcp.errors import UsageError
    from fasttcp.load.generator import source_port_range
    with pytest.raises(UsageError, match="ip_local_port_range"):
        source_port_range((1024, 65535))
    with pytest.raises(UsageError, match="fewer than 1024"):
        source_port_range((1500, 65000))
