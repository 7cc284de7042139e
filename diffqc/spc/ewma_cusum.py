"""EWMA and tabular CUSUM charts on the standardized scores (Montgomery, *Introduction to Statistical
Quality Control*, §9.1-9.2): charts with memory, which see a small sustained shift (0.5-1.5 sigma)
far sooner than the Shewhart rules.

Both run on z = (x - CL) / sigma of the individuals chart, so they share its Phase I limits and
restart with it. They carry state from point to point: feed them the monitored points in order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

EWMA_RULE = "ewma"
CUSUM_RULE = "cusum"
EWMA_DESCRIPTION = "EWMA of the scores beyond its limits"
CUSUM_DESCRIPTION = "CUSUM of the scores beyond its decision interval"


@dataclass
class Ewma:
    """z_t = lam * x_t + (1 - lam) z_(t-1), from 0; limits +- width * sqrt(lam / (2 - lam) (1 - (1 - lam)^(2t)))."""

    lam: float = 0.2
    width: float = 3.0
    value: float = 0.0
    count: int = 0

    def update(self, z: float) -> tuple[float, float, bool]:
        """(statistic, its limit at this point, beyond it)"""
        self.count += 1
        self.value = self.lam * z + (1 - self.lam) * self.value
        limit = self.width * math.sqrt(self.lam / (2 - self.lam) * (1 - (1 - self.lam) ** (2 * self.count)))
        return self.value, limit, abs(self.value) > limit


@dataclass
class Cusum:
    """C+_t = max(0, z_t - k + C+_(t-1)), C-_t = max(0, -z_t - k + C-_(t-1)); a signal while either exceeds h.

    k = 0.5 tunes it to a 1-sigma shift; h = 5 gives an in-control run length of about 465 points."""

    k: float = 0.5
    h: float = 5.0
    upper: float = 0.0
    lower: float = 0.0

    def update(self, z: float) -> tuple[float, float, bool]:
        """(C+, C-, beyond h)"""
        self.upper = max(0.0, z - self.k + self.upper)
        self.lower = max(0.0, -z - self.k + self.lower)
        return self.upper, self.lower, max(self.upper, self.lower) > self.h
