"""Pixel-level metrics: anomaly maps (HxW scores) against bool defect masks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from diffqc.metrics._checks import stack_pixels

# 8-connectivity, as in the MVTec AD evaluation code: diagonal neighbours form one defect region.
_EIGHT = np.ones((3, 3), dtype=bool)


def pixel_auroc(maps: Sequence[np.ndarray] | np.ndarray, masks: Sequence[np.ndarray] | np.ndarray) -> float:
    """ROC AUC over all pixels of all images pooled."""
    pairs = stack_pixels(maps, masks)
    scores = np.concatenate([m.ravel() for m, _ in pairs])
    truth = np.concatenate([k.ravel() for _, k in pairs])
    if truth.all() or not truth.any():
        raise ValueError("pixel AUROC needs both defective and good pixels in the masks")
    return float(roc_auc_score(truth, scores))


class ProCurve(NamedTuple):
    fpr: np.ndarray  # increasing, from 0 to 1
    pro: np.ndarray


def pro_curve(maps, masks) -> ProCurve:
    """The per-region-overlap curve: (fpr, pro) at every distinct threshold, from (0, 0) to (1, 1).

    PRO at a threshold is the mean, over every connected defect region of every image, of the
    fraction of that region scored >= threshold; FPR is the fraction of good pixels scored so.
    Each region counts equally, so small defects weigh as much as large ones.
    """
    pairs = stack_pixels(maps, masks)
    scores = np.concatenate([m.ravel() for m, _ in pairs])
    region_weight = np.zeros(scores.size)
    good = np.concatenate([~k.ravel() for _, k in pairs])
    n_regions, offset = 0, 0
    for amap, mask in pairs:
        labelled, n = ndimage.label(mask, structure=_EIGHT)
        if n:
            sizes = np.bincount(labelled.ravel())  # sizes[0] counts background
            flat = labelled.ravel()
            inside = flat > 0
            region_weight[offset + np.flatnonzero(inside)] = 1.0 / sizes[flat[inside]]
        n_regions += n
        offset += amap.size
    n_good = int(good.sum())
    if n_regions == 0:
        raise ValueError("PRO needs at least one defect region in the masks")
    if n_good == 0:
        raise ValueError("PRO needs good pixels in the masks to measure false positives")

    # One sort, then cumulative sums: each pixel adds its region's share when the threshold
    # passes below its score. O(P log P) for P pixels instead of one pass per threshold.
    order = np.argsort(-scores)  # ties are grouped below, so stability is not needed
    sorted_scores = scores[order]
    pro = np.cumsum(region_weight[order]) / n_regions
    fpr = np.cumsum(good[order]) / n_good
    # Tied scores cannot be separated by a threshold: keep the last point of each tie group.
    last = np.r_[np.flatnonzero(np.diff(sorted_scores) != 0), sorted_scores.size - 1]
    return ProCurve(np.r_[0.0, fpr[last]], np.r_[0.0, pro[last]])


def pro_score(maps, masks, max_fpr: float = 0.3) -> float:
    """Area under the PRO curve for FPR in [0, max_fpr], divided by max_fpr (1.0 = perfect)."""
    if not 0 < max_fpr <= 1:
        raise ValueError(f"max_fpr must be in (0, 1], got {max_fpr}")
    fpr, pro = pro_curve(maps, masks)
    # Cut the curve at max_fpr, interpolating the PRO value there (the curve ends at fpr = 1).
    k = int(np.searchsorted(fpr, max_fpr, side="right"))
    x, y = fpr[:k], pro[:k]
    if x[-1] < max_fpr:
        x1, x2, y1, y2 = fpr[k - 1], fpr[k], pro[k - 1], pro[k]
        y_end = y1 + (y2 - y1) * (max_fpr - x1) / (x2 - x1)
        x, y = np.r_[x, max_fpr], np.r_[y, y_end]
    area = np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2)  # trapezoids (np.trapz is gone in numpy 2)
    return float(area / max_fpr)
