"""A threshold proposal from labelled verdicts: the inspectors' truth against the scores the parts got.

Truth comes from the labels (diffqc.store.labels): defective for confirmed_defect and missed_defect,
good for false_alarm and confirmed_good. On those scores two operating points are proposed, with
their recall, FPR, precision and counts on the labelled set:

- ``f1_max``: the threshold of the best F1 (ties: the higher recall, a miss costing more than an alarm);
- ``at_target_recall``: the highest threshold whose recall reaches the target (default 0.98), i.e. the
  fewest false alarms that still catch that share of the labelled defects.

Verdicts are ``score > threshold``. An operating point flags the labelled parts scoring at least some
labelled score s; its threshold lies halfway between s and the next lower labelled score, the lowest
score it flags and the highest it passes, so a new part is not decided by a hair's breadth from either.
With fewer than ``min_per_class`` labelled parts of either class there is no proposal but the answer
"not enough labels", saying how many there are: a few labels make a threshold that fits them alone.
The labelled set is what inspectors chose to look at, so its rates describe it, not the whole line.
Numpy only (the sweep of ``sklearn.metrics.roc_curve``): the gateway runs on the base install, which
has no scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_PER_CLASS = 10
TARGET_RECALL = 0.98
EPS = 1e-12


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float  # defect when score > threshold
    recall: float
    fpr: float
    precision: float | None  # None when nothing is flagged
    f1: float
    true_positives: int  # labelled defective, flagged
    false_positives: int  # labelled good, flagged
    false_negatives: int  # labelled defective, passed
    true_negatives: int  # labelled good, passed


@dataclass(frozen=True)
class Proposal:
    defective: int
    good: int
    min_per_class: int
    target_recall: float
    enough_labels: bool
    reason: str | None  # why there is no proposal ("not enough labels: ...")
    current: OperatingPoint | None  # the threshold in use, on the labelled set
    f1_max: OperatingPoint | None
    at_target_recall: OperatingPoint | None


def _point(threshold: float, tp: int, fp: int, positives: int, negatives: int) -> OperatingPoint:
    fn, tn = positives - tp, negatives - fp
    return OperatingPoint(
        threshold=float(threshold),
        recall=tp / positives,
        fpr=fp / negatives,
        precision=tp / (tp + fp) if tp + fp else None,
        f1=2 * tp / (2 * tp + fp + fn),
        true_positives=tp,
        false_positives=fp,
        false_negatives=fn,
        true_negatives=tn,
    )


def evaluate_threshold(scores, defective, threshold: float) -> OperatingPoint:
    """The operating point of ``threshold`` (defect when score > threshold) on labelled scores."""
    s, truth = _inputs(scores, defective)
    flagged = s > threshold
    return _point(
        threshold, int(np.sum(flagged & truth)), int(np.sum(flagged & ~truth)), int(truth.sum()), int((~truth).sum())
    )


def _inputs(scores, defective) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    truth = np.asarray(defective, dtype=bool).ravel()
    if s.shape != truth.shape:
        raise ValueError(f"{s.size} scores but {truth.size} labels")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinite values")
    if not truth.any() or truth.all():
        raise ValueError("need labelled defective and labelled good parts")
    return s, truth


def propose_threshold(
    scores,
    defective,
    current_threshold: float | None = None,
    target_recall: float = TARGET_RECALL,
    min_per_class: int = MIN_PER_CLASS,
) -> Proposal:
    """Proposed thresholds from labelled scores (``defective[i]``: the labels say part i is bad)."""
    if not 0 < target_recall <= 1:
        raise ValueError(f"target_recall must be in (0, 1], got {target_recall}")
    if min_per_class < 1:
        raise ValueError(f"min_per_class must be at least 1, got {min_per_class}")
    truth = np.asarray(defective, dtype=bool).ravel()
    positives, negatives = int(truth.sum()), int((~truth).sum())
    if positives < min_per_class or negatives < min_per_class:
        reason = (
            f"not enough labels: {positives} defective and {negatives} good labelled parts, "
            f"need at least {min_per_class} of each"
        )
        return Proposal(positives, negatives, min_per_class, target_recall, False, reason, None, None, None)
    s, truth = _inputs(scores, truth)
    # The ROC sweep (as sklearn.metrics.roc_curve, which the services' base install lacks): descending
    # scores, one point per distinct score, flagging every part that scores at least that much.
    order = np.argsort(-s, kind="stable")
    ranked, ranked_truth = s[order], truth[order]
    tp_cum, fp_cum = np.cumsum(ranked_truth), np.cumsum(~ranked_truth)
    ends = np.r_[np.flatnonzero(np.diff(ranked)), ranked.size - 1]  # the last part of each distinct score
    points = []
    for end in ends:
        below = ranked[end + 1] if end + 1 < ranked.size else None
        cut = (ranked[end] + below) / 2 if below is not None else ranked[end]
        if cut >= ranked[end]:  # no part below, or two adjacent floats: just below the lowest one flagged
            cut = np.nextafter(ranked[end], -np.inf)
        points.append(_point(cut, int(tp_cum[end]), int(fp_cum[end]), positives, negatives))
    best_f1 = max(points, key=lambda p: (p.f1, p.recall))
    reaching = next(p for p in points if p.recall >= target_recall - EPS)  # the highest such threshold
    current = None if current_threshold is None else evaluate_threshold(s, truth, current_threshold)
    return Proposal(positives, negatives, min_per_class, target_recall, True, None, current, best_f1, reaching)
