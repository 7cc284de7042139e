"""Image-level metrics: one score per image, label 1 = defective. Higher score = more anomalous."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_auc_score, roc_curve

from diffqc.metrics._checks import binary_inputs


def image_auroc(scores, labels) -> float:
    """Area under the ROC curve of image scores."""
    scores, labels = binary_inputs(scores, labels)
    return float(roc_auc_score(labels, scores))


class F1Max(NamedTuple):
    f1: float
    threshold: float  # an image is defective when score >= threshold


def f1_max(scores, labels) -> F1Max:
    """Best F1 over all thresholds and that threshold (an image is defective when score >= threshold)."""
    scores, labels = binary_inputs(scores, labels)
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    # The last (precision=1, recall=0) point has no threshold.
    precision, recall = precision[:-1], recall[:-1]
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    best = int(np.argmax(f1))
    return F1Max(float(f1[best]), float(thresholds[best]))


def _roc(scores, labels):
    scores, labels = binary_inputs(scores, labels)
    # Every threshold is kept: the operating points below must be reachable, not interpolated.
    return roc_curve(labels, scores, drop_intermediate=False)


def recall_at_fpr(scores, labels, max_fpr: float = 0.03) -> float:
    """Highest recall reachable by a threshold whose false-positive rate is <= max_fpr."""
    if not 0 <= max_fpr <= 1:
        raise ValueError(f"max_fpr must be in [0, 1], got {max_fpr}")
    fpr, tpr, _ = _roc(scores, labels)
    return float(tpr[fpr <= max_fpr + 1e-12].max())


def fpr_at_recall(scores, labels, min_recall: float = 0.98) -> float:
    """Lowest false-positive rate of a threshold that reaches recall >= min_recall."""
    if not 0 <= min_recall <= 1:
        raise ValueError(f"min_recall must be in [0, 1], got {min_recall}")
    fpr, tpr, _ = _roc(scores, labels)
    return float(fpr[tpr >= min_recall - 1e-12].min())
