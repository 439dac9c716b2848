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


@pytest.mark.parametrize("first", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("second", [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_raises_when_asked_to(first, second):
    s = StopSignals(second_raises=True)
    with pytest.raises(KeyboardInterrupt), s:
        _deliver(first)
        assert s.stop.is_set()
        _deliver(second)
    assert s.received == first                      # the exit status follows the first
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
