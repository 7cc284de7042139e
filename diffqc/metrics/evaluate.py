"""All the benchmark metrics in one dict, with None where a metric cannot be computed."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from diffqc.metrics.image import f1_max, fpr_at_recall, image_auroc, recall_at_fpr
from diffqc.metrics.pixel import pixel_auroc, pro_score

METRIC_KEYS = ("image_auroc", "pixel_auroc", "pro", "f1_max", "recall_at_fpr_3pct", "fpr_at_recall_98pct")


def evaluate_scores(
    image_scores,
    labels,
    maps: Sequence[np.ndarray] | np.ndarray | None = None,
    masks: Sequence[np.ndarray | None] | np.ndarray | None = None,
) -> dict[str, float | None]:
    """Image metrics from scores and labels; pixel metrics when maps and masks are given.

    ``masks[i]`` may be None for a good image (read as all good). Pixel metrics are None when
    there are no masks, when a defective image has no mask (image-level data sets such as ELPV),
    or when the masks hold no defect pixel; every metric is None when only one class is present.
    """
    labels = np.asarray(labels).ravel()
    scores = np.asarray(image_scores, dtype=np.float64).ravel()
    result: dict[str, float | None] = dict.fromkeys(METRIC_KEYS)
    if labels.size == 0 or np.unique(labels).size < 2:
        return result
    result["image_auroc"] = image_auroc(scores, labels)
    result["f1_max"] = f1_max(scores, labels).f1
    result["recall_at_fpr_3pct"] = recall_at_fpr(scores, labels, 0.03)
    result["fpr_at_recall_98pct"] = fpr_at_recall(scores, labels, 0.98)

    full_masks = _complete_masks(labels, maps, masks)
    if maps is not None and full_masks is not None:  # full_masks is None whenever maps is
        result["pixel_auroc"] = pixel_auroc(maps, full_masks)
        result["pro"] = pro_score(maps, full_masks, max_fpr=0.3)
    return result


def _complete_masks(labels, maps, masks) -> list[np.ndarray] | None:
    """Masks with None filled in for good images, or None when pixel metrics are not computable."""
    if maps is None or masks is None:
        return None
    if not len(maps) == len(masks) == labels.size:
        raise ValueError(f"{labels.size} labels, {len(maps)} maps and {len(masks)} masks: need one each per image")
    full = []
    for label, amap, mask in zip(labels, maps, masks, strict=True):
        if mask is None:
            if label == 1:
                return None  # a defect without a mask: the pixel truth is unknown
            mask = np.zeros(np.asarray(amap).shape[:2], dtype=bool)
        full.append(np.asarray(mask).astype(bool))
    flat = np.concatenate([m.ravel() for m in full])
    if not flat.any() or flat.all():
        return None
    return full
