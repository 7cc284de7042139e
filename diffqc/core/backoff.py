"""Exponential backoff with jitter: the one retry schedule of every loop that waits on something.

Jitter spreads the retries of many replicas that failed together (a broker restart, a database
failover), so they do not all come back in the same instant ("equal jitter": half of each delay
is random).
"""

from __future__ import annotations

import random


def backoff_delay(attempt: int, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry ``attempt`` (1 = the first retry): ``base_s * 2**(attempt - 1)``
    capped at ``max_s``, of which the upper half is random."""
    delay = min(base_s * 2 ** max(attempt - 1, 0), max_s)
    return float(delay / 2 + (rng or random).uniform(0, delay / 2))
