"""Input checks shared by the metrics: clear messages instead of scikit-learn's deep tracebacks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def binary_inputs(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """1-D float scores and 0/1 labels of equal length, with both classes present."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"{scores.size} scores but {labels.size} labels")
    if scores.size == 0:
        raise ValueError("no scores given")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or infinite values")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"labels must be 0 (good) or 1 (defective); got values {np.unique(labels)[:5]}")
    labels = labels.astype(np.int8)
    if labels.min() == labels.max():
        raise ValueError("need both good (0) and defective (1) samples; got only one class")
    return scores, labels


def stack_pixels(maps: Sequence[np.ndarray] | np.ndarray, masks: Sequence[np.ndarray] | np.ndarray):
    """Pairs of HxW score maps and bool masks (same shape per pair; sizes may differ between pairs)."""
    if len(maps) != len(masks):
        raise ValueError(f"{len(maps)} anomaly maps but {len(masks)} masks")
    if len(maps) == 0:
        raise ValueError("no anomaly maps given")
    pairs = []
    for i, (amap, mask) in enumerate(zip(maps, masks, strict=True)):
        amap = np.asarray(amap, dtype=np.float64)
        mask = np.asarray(mask)
        if amap.ndim == 3 and amap.shape[-1] == 1:
            amap = amap[..., 0]
        if mask.ndim == 3 and mask.shape[-1] == 1:
            mask = mask[..., 0]
        if amap.ndim != 2 or amap.shape != mask.shape:
            raise ValueError(f"map {i}: shape {amap.shape} does not match mask shape {mask.shape} (need HxW)")
        if not np.all(np.isfinite(amap)):
            raise ValueError(f"map {i} contains NaN or infinite values")
        pairs.append((amap, mask.astype(bool)))
    return pairs
