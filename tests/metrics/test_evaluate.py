"""evaluate_scores: the benchmark's dict, with None exactly where a metric is not computable."""

from __future__ import annotations

import numpy as np
import pytest

from diffqc.metrics import (
    METRIC_KEYS,
    evaluate_scores,
    f1_max,
    fpr_at_recall,
    image_auroc,
    pixel_auroc,
    pro_score,
    recall_at_fpr,
)

KEYS = {"image_auroc", "pixel_auroc", "pro", "f1_max", "recall_at_fpr_3pct", "fpr_at_recall_98pct"}
rng = np.random.default_rng(0)
LABELS = np.array([0] * 6 + [1] * 4)
SCORES = rng.random(10) + LABELS * 0.5
MASKS = [np.zeros((16, 16), bool) for _ in range(10)]
for m in MASKS[6:]:
    m[4:9, 5:10] = True
MAPS = [rng.random((16, 16)) + m for m in MASKS]


def test_all_metrics_with_masks_agree_with_the_functions():
    result = evaluate_scores(SCORES, LABELS, MAPS, MASKS)
    assert set(result) == KEYS == set(METRIC_KEYS)
    assert result["image_auroc"] == image_auroc(SCORES, LABELS)
    assert result["f1_max"] == f1_max(SCORES, LABELS)[0]
    assert result["recall_at_fpr_3pct"] == recall_at_fpr(SCORES, LABELS, 0.03)
    assert result["fpr_at_recall_98pct"] == fpr_at_recall(SCORES, LABELS, 0.98)
    assert result["pixel_auroc"] == pixel_auroc(MAPS, MASKS)
    assert result["pro"] == pro_score(MAPS, MASKS, 0.3)
    assert all(isinstance(v, float) for v in result.values())


def test_good_images_may_have_no_mask():
    masks = [None] * 6 + MASKS[6:]
    assert evaluate_scores(SCORES, LABELS, MAPS, masks) == evaluate_scores(SCORES, LABELS, MAPS, MASKS)


def test_pixel_metrics_none_without_masks():
    for maps, masks in ((None, None), (MAPS, None), (MAPS, [None] * 10), (MAPS, [None] * 6 + [None] + MASKS[7:])):
        result = evaluate_scores(SCORES, LABELS, maps, masks)
        assert result["pixel_auroc"] is None and result["pro"] is None
        assert result["image_auroc"] == image_auroc(SCORES, LABELS)


def test_pixel_metrics_none_when_masks_are_empty():
    result = evaluate_scores(SCORES, LABELS, MAPS, [np.zeros((16, 16), bool)] * 10)
    assert result["pixel_auroc"] is None and result["pro"] is None


@pytest.mark.parametrize("labels", [np.zeros(10, int), np.ones(10, int), np.array([], int)])
def test_everything_none_with_one_class(labels):
    scores = SCORES[: labels.size]
    assert evaluate_scores(scores, labels, MAPS[: labels.size], MASKS[: labels.size]) == dict.fromkeys(KEYS)


def test_count_mismatch_is_explained():
    with pytest.raises(ValueError, match="10 labels, 9 maps"):
        evaluate_scores(SCORES, LABELS, MAPS[:9], MASKS[:9])
