from __future__ import annotations

import random

from diffqc.core.backoff import backoff_delay


def test_backoff_doubles_up_to_its_cap_with_half_of_each_delay_random():
    rng = random.Random(0)
    for attempt, nominal in [(1, 0.5), (2, 1.0), (3, 2.0), (5, 8.0), (9, 8.0)]:
        delays = [backoff_delay(attempt, 0.5, 8.0, rng) for _ in range(200)]
        assert nominal / 2 <= min(delays) and max(delays) <= nominal
        assert max(delays) - min(delays) > nominal / 4  # jittered: replicas do not retry in lockstep
