"""Turn SIGTERM (Kubernetes, systemd, docker stop) and SIGINT (Ctrl-C) into a threading.Event."""

from __future__ import annotations

import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class ShutdownSignal:
    """Installs SIGTERM/SIGINT handlers that set ``event``; construct it in the main thread.

    The handlers only set the event, so the main thread decides how to drain; a repeated signal
    changes nothing (shutdown is already under way and bounded by its grace period).
    ``restore()`` puts the previous handlers back.
    """

    def __init__(self, signals: tuple[signal.Signals, ...] = SIGNALS):
        self.event = threading.Event()
        self.received: signal.Signals | None = None
        # signal.signal raises ValueError outside the main thread: fail loudly rather than never stop.
        self._previous = {sig: signal.signal(sig, self._handle) for sig in signals}

    def _handle(self, signum: int, _frame) -> None:
        # No logging here: the handler may run while the main thread is inside a logging call.
        if self.received is None:
            self.received = signal.Signals(signum)
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a signal arrives (or ``timeout`` passes); True if one did."""
        return self.event.wait(timeout)

    def restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
