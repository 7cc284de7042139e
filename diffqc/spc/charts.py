"""Control limits: the individuals / moving-range chart of scores and the p-chart of defect rates.

Individuals chart (Montgomery, *Introduction to Statistical Quality Control*, §6.4): the centre
line is the baseline mean, sigma is estimated from the mean moving range of consecutive points,
MRbar / d2 with d2 = 1.128 for ranges of two, which is robust to a slow drift inside the baseline.
p-chart (ibid. §7.2): p-bar = total defectives / total inspected, and each subgroup of size n gets
its own limits p-bar +- 3 sqrt(p-bar (1 - p-bar) / n), clipped to [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

D2 = 1.128  # E[range of 2 normal points] / sigma
D4 = 3.267  # upper limit factor of the moving-range chart (D3 = 0: its lower limit is 0)
SIGMA_LIMIT = 3.0


class ChartError(ValueError):
    """The data cannot give control limits; the message says why."""


@dataclass(frozen=True)
class IndividualsChart:
    """Limits of an individuals chart with its moving-range chart."""

    center_line: float
    sigma: float
    moving_range_mean: float
    baseline_size: int

    @property
    def ucl(self) -> float:
        return self.center_line + SIGMA_LIMIT * self.sigma

    @property
    def lcl(self) -> float:
        return self.center_line - SIGMA_LIMIT * self.sigma

    @property
    def moving_range_ucl(self) -> float:
        return D4 * self.moving_range_mean

    def standardize(self, values) -> np.ndarray:
        """Distance of each value from the centre line in sigmas (the input of the Nelson rules)."""
        return (np.asarray(values, dtype=float) - self.center_line) / self.sigma


def _finite_array(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise ChartError(f"{name} must be a flat sequence of numbers, got shape {array.shape}")
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise ChartError(f"{name} has non-finite values (NaN or inf) at index {bad.tolist()[:5]}")
    return array


def moving_ranges(values) -> np.ndarray:
    """|x[i] - x[i-1]| for i >= 1."""
    return np.abs(np.diff(_finite_array(values, "values")))


def individuals_chart(baseline: Sequence[float]) -> IndividualsChart:
    """Fix the limits from a baseline window of in-control scores (at least 2, with some variation)."""
    scores = _finite_array(baseline, "baseline")
    if scores.size < 2:
        raise ChartError(f"a baseline needs at least 2 scores to estimate sigma, got {scores.size}")
    mr_bar = float(moving_ranges(scores).mean())
    if mr_bar <= 0:
        raise ChartError(f"the {scores.size} baseline scores are all equal ({scores[0]}): sigma would be 0")
    return IndividualsChart(
        center_line=float(scores.mean()), sigma=mr_bar / D2, moving_range_mean=mr_bar, baseline_size=int(scores.size)
    )


@dataclass(frozen=True)
class PChart:
    """A p-chart: one proportion and one pair of limits per subgroup (lot or work order)."""

    p_bar: float
    sizes: np.ndarray
    proportions: np.ndarray
    ucl: np.ndarray
    lcl: np.ndarray

    @property
    def out_of_control(self) -> np.ndarray:
        """Indices of the subgroups whose defect rate lies outside its limits."""
        return np.flatnonzero((self.proportions > self.ucl) | (self.proportions < self.lcl))


def p_limits(p_bar: float, sizes) -> tuple[np.ndarray, np.ndarray]:
    """Per-subgroup 3-sigma limits of a proportion with centre ``p_bar`` for subgroup sizes ``sizes``."""
    n = np.asarray(sizes, dtype=float)
    half_width = SIGMA_LIMIT * np.sqrt(p_bar * (1.0 - p_bar) / n)
    return np.minimum(1.0, p_bar + half_width), np.maximum(0.0, p_bar - half_width)


def p_chart(defectives: Sequence[int], sizes: Sequence[int], p_bar: float | None = None) -> PChart:
    """p-chart of ``defectives[i]`` out of ``sizes[i]``; p-bar from the data unless given (a fixed baseline)."""
    d = _finite_array(defectives, "defectives")
    n = _finite_array(sizes, "sizes")
    if d.shape != n.shape:
        raise ChartError(f"defectives ({d.size}) and sizes ({n.size}) must have one entry per subgroup each")
    if d.size == 0:
        raise ChartError("a p-chart needs at least one subgroup")
    if np.any(n <= 0) or np.any(d < 0) or np.any(d > n):
        raise ChartError("each subgroup needs size > 0 and 0 <= defectives <= size")
    if p_bar is None:
        p_bar = float(d.sum() / n.sum())
    elif not 0.0 <= p_bar <= 1.0:
        raise ChartError(f"p_bar must lie in [0, 1], got {p_bar}")
    ucl, lcl = p_limits(p_bar, n)
    return PChart(p_bar=float(p_bar), sizes=n.astype(int), proportions=d / n, ucl=ucl, lcl=lcl)
