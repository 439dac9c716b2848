"""`StopSignals`: SIGINT and SIGTERM as a flag, a second one raising when asked to."""
import os
import signal
import time

import pytest

from fasttcp.cli.signals import StopSignals


def _deliver(sig):
    os.kill(os.getpid(), sig)
    time.sleep(0.05)                      # the handler runs at the next bytecode


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_sets_the_flag_and_is_remembered(sig):
    before = signal.getsignal(sig)
    with StopSignals() as s:
        assert not s.stop.is_set() and s.received is None
        _deliver(sig)
        assert s.stop.is_set() and s.received == sig
        _deliver(signal.SIGTERM if sig == signal.SIGINT else signal.SIGINT)
        assert s.received == sig          # the first one counts
    assert signal.getsignal(sig) is before


@pytest.mark.parametrize("second, raised", [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, SystemExit)])
def test_a_second_signal_raises_when_asked_to(second, raised):
    with pytest.raises(raised) as e, StopSignals(second_raises=True) as s:
        _deliver(signal.SIGINT)
        assert s.stop.is_set()
        _deliver(second)
    if raised is SystemExit:
        assert e.value.code == 143
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
