"""The decision threshold from good images' scores, so that it holds on parts it never saw.

Three rules, all on scores of held-out good images (verdict: score > threshold):

- ``empirical``: the lowest threshold with FPR <= target on these scores. Its expected FPR on new
  parts is (allowed + 1) / (n + 1), above the target, and it swings with the few highest scores.
- ``conformal``: split-conformal: the r-th highest score with r = floor(target * (n + 1)). For
  exchangeable scores the FPR on a new part is r / (n + 1) <= target in expectation, whatever the
  score distribution; its spread is still that of one order statistic.
- ``gpd``: the tail above the 80th percentile fitted with a generalized Pareto distribution
  (peaks over threshold, the extreme-value model of any smooth tail), the threshold where the
  fitted tail holds ``target``. It uses every tail score rather than one, so it varies less from
  one calibration set to the next; with fewer than ``MIN_EXCEEDANCES`` tail scores it falls back
  to ``conformal``.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import numpy as np

ThresholdMethod = Literal["empirical", "conformal", "gpd"]
TAIL_FRACTION = 0.2  # the scores above the 80th percentile make the fitted tail
MIN_EXCEEDANCES = 20  # fewer tail scores than this cannot fit a shape and a scale


class Threshold(NamedTuple):
    threshold: float
    method: ThresholdMethod  # the rule that set it (gpd falls back to conformal on few scores)
    expected_fpr: float  # the FPR that rule promises on new good parts
    fpr: float  # the false-positive rate it gives on the good scores it was set on


def _sorted_scores(good_scores: np.ndarray) -> np.ndarray:
    s = np.sort(np.asarray(good_scores, dtype=np.float64).ravel())[::-1]
    if s.size == 0:
        raise ValueError("no good images to calibrate the threshold on")
    if not np.isfinite(s).all():
        raise ValueError("good-image scores contain NaN or infinity: the detector's maps are broken")
    return s


def _result(s: np.ndarray, threshold: float, method: ThresholdMethod, expected: float) -> Threshold:
    return Threshold(float(threshold), method, float(expected), float(np.mean(s > threshold)))


def empirical_threshold(good_scores: np.ndarray, target_fpr: float) -> Threshold:
    s = _sorted_scores(good_scores)
    allowed = min(int(math.floor(target_fpr * s.size + 1e-9)), s.size - 1)
    return _result(s, s[allowed], "empirical", (allowed + 1) / (s.size + 1))


def conformal_threshold(good_scores: np.ndarray, target_fpr: float) -> Threshold:
    s = _sorted_scores(good_scores)
    rank = int(math.floor(target_fpr * (s.size + 1) + 1e-9))
    if rank < 1:  # too few scores for this target: nothing but "above every good score" is safe
        return _result(s, s[0], "conformal", 1 / (s.size + 1))
    return _result(s, s[rank - 1], "conformal", rank / (s.size + 1))


def gpd_threshold(good_scores: np.ndarray, target_fpr: float) -> Threshold:
    from scipy.stats import genpareto

    s = _sorted_scores(good_scores)
    n_tail = int(math.floor(TAIL_FRACTION * s.size))
    if n_tail < MIN_EXCEEDANCES or target_fpr >= TAIL_FRACTION:
        return conformal_threshold(s, target_fpr)
    level = s[n_tail]  # the tail's base: n_tail scores lie above it
    shape, _, scale = genpareto.fit(s[:n_tail] - level, floc=0.0)
    tail_probability = n_tail / s.size
    # P(score > x) = p_u * (1 + shape (x - u) / scale) ** (-1 / shape) = target, solved for x.
    ratio = tail_probability / target_fpr
    excess = scale * math.log(ratio) if abs(shape) < 1e-6 else scale / shape * (ratio**shape - 1)
    return _result(s, level + excess, "gpd", target_fpr)


RULES = {"empirical": empirical_threshold, "conformal": conformal_threshold, "gpd": gpd_threshold}


def fit_threshold(good_scores: np.ndarray, target_fpr: float, method: ThresholdMethod = "gpd") -> Threshold:
    if not 0 < target_fpr < 1:
        raise ValueError(f"target FPR must lie in (0, 1), got {target_fpr}")
    return RULES[method](good_scores, target_fpr)
