"""ShutdownSignal with real signals sent to this process."""

from __future__ import annotations

import os
import signal

import pytest

from diffqc.runtime.shutdown import ShutdownSignal


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_sets_the_event_and_restore_puts_the_old_handler_back(sig):
    before = signal.getsignal(sig)
    shutdown = ShutdownSignal()
    try:
        assert not shutdown.is_set() and not shutdown.wait(0.01)
        os.kill(os.getpid(), sig)
        assert shutdown.wait(5)
        assert shutdown.received == sig and shutdown.event.is_set()
        os.kill(os.getpid(), sig)  # a second signal is harmless
        assert shutdown.received == sig
    finally:
        shutdown.restore()
    assert signal.getsignal(sig) is before
