"""Wait for a dependency at start-up with bounded retries: a clear error, never a hang."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from diffqc.core.backoff import backoff_delay

log = logging.getLogger(__name__)


class DependencyUnavailable(RuntimeError):
    """A dependency (broker, database, Triton ...) did not answer within its timeout.

    The consume loop retries a message that failed this way until the dependency is back (the
    message is not at fault, so it never goes to the dead-letter topic).
    """


def wait_for(name: str, address: str, check: Callable[[], object], timeout_s: float) -> None:
    """Call ``check`` (which raises while ``name`` is unreachable) with backoff until it passes.

    Raises DependencyUnavailable naming the dependency, its address and the last error once
    ``timeout_s`` has passed.
    """
    deadline = time.monotonic() + timeout_s
    attempts = 0
    while True:
        attempts += 1
        try:
            check()
            return
        except Exception as exc:  # each dependency's client raises its own kind
            last = f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DependencyUnavailable(
                f"{name} at {address} is unavailable after {attempts} attempts over {timeout_s:g} s ({last})"
            )
        log.warning("waiting for %s at %s (%s); retrying", name, address, last)
        time.sleep(min(backoff_delay(attempts, 0.2, 2.0), remaining))
