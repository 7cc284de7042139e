"""The two-sample tests behind drift: the KS test and the population stability index (PSI).

    psi(reference, window)                       # 0: same shape; > 0.25: a large shift (common rule of thumb)
    ks_test(reference, window)                   # (KS statistic, p-value)
    compare({"score": ref, ...}, {"score": win, ...}, alpha=0.001, psi_threshold=0.25)

A quantity drifts when both agree: its KS p-value, Bonferroni-corrected for the number of
quantities tested together, is below ``alpha`` (the shift is real, not noise) and its PSI is above
``psi_threshold`` (the shift is large enough to matter). The KS test alone flags shifts too small
to act on once windows are large; the PSI alone has no error rate.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
from scipy.stats import ks_2samp

PSI_BINS = 10  # deciles of the reference
PSI_FLOOR = 1e-4  # the share given to an empty bin, so that log(0) never happens


class QuantityTest(NamedTuple):
    """One quantity of one drift check."""

    quantity: str
    ks_statistic: float
    p_value: float  # Bonferroni-corrected over the quantities of the check, at most 1
    psi: float
    significant: bool  # p_value < alpha
    drifting: bool  # significant and psi > psi_threshold


def _values(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"the {name} must be a non-empty 1-D sequence of numbers, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"the {name} has non-finite values")
    return array


def _shares(values: np.ndarray, edges: np.ndarray, floor: float) -> np.ndarray:
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=edges.size + 1)
    return np.maximum(counts / values.size, floor)


def psi(
    reference: Sequence[float] | np.ndarray,
    window: Sequence[float] | np.ndarray,
    bins: int = PSI_BINS,
    floor: float = PSI_FLOOR,
) -> float:
    """Population stability index of ``window`` against ``reference``: sum((w - r) * ln(w / r)) over
    the bins cut at the reference's quantiles (equal shares of the reference). The outer bins are
    open, so a window beyond the reference's range still counts; ties in the reference merge bins
    (a constant reference leaves two: below its value, and at or above it)."""
    if bins < 2:
        raise ValueError(f"psi needs at least 2 bins, got {bins}")
    if not 0 < floor < 1:
        raise ValueError(f"the empty-bin floor must be in (0, 1), got {floor}")
    ref, win = _values(reference, "reference"), _values(window, "window")
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    r, w = _shares(ref, edges, floor), _shares(win, edges, floor)
    return float(np.sum((w - r) * np.log(w / r)))


def ks_test(reference: Sequence[float] | np.ndarray, window: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """The two-sample Kolmogorov-Smirnov test (two-sided): (statistic, p-value)."""
    ref, win = _values(reference, "reference"), _values(window, "window")
    with warnings.catch_warnings():  # ties: scipy falls back to the asymptotic p-value, which is what we want
        warnings.filterwarnings("ignore", "ks_2samp: Exact calculation unsuccessful", RuntimeWarning)
        result = ks_2samp(ref, win)
    return float(result.statistic), float(result.pvalue)


def compare(
    reference: Mapping[str, Sequence[float] | np.ndarray],
    window: Mapping[str, Sequence[float] | np.ndarray],
    alpha: float,
    psi_threshold: float,
) -> list[QuantityTest]:
    """Test every quantity of ``reference`` that ``window`` has, in the reference's order; the KS
    p-values are multiplied by the number of quantities tested (Bonferroni), so the chance that a
    check of an unchanged stream finds any quantity significant stays below ``alpha``."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    names = [name for name in reference if name in window]
    if not names:
        raise ValueError("the reference and the window have no quantity in common")
    tests = []
    for name in names:
        statistic, p_value = ks_test(reference[name], window[name])
        corrected = min(1.0, p_value * len(names))
        index = psi(reference[name], window[name])
        significant = corrected < alpha
        tests.append(
            QuantityTest(name, statistic, corrected, index, significant, significant and index > psi_threshold)
        )
    return tests
