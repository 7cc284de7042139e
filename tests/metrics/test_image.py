"""Image-level metrics against scikit-learn and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from diffqc.metrics import f1_max, fpr_at_recall, image_auroc, recall_at_fpr

# 10 good parts scored 0.0 ... 0.9 and 5 defective ones.
GOOD = [round(0.1 * i, 1) for i in range(10)]
BAD = [0.95, 0.85, 0.5, 0.05, 0.99]
SCORES = np.array(GOOD + BAD)
LABELS = np.array([0] * 10 + [1] * 5)


def test_auroc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    scores = np.round(rng.random(300), 2)  # many ties
    labels = (rng.random(300) < 0.3).astype(int)
    assert image_auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_auroc_by_hand():
    # (good, bad) pairs ranked right: 0.95, 0.99 beat all 10 goods; 0.85 beats 9; 0.5 beats 5 and ties
    # one (half a pair); 0.05 beats 1.
    assert image_auroc(SCORES, LABELS) == pytest.approx((10 + 10 + 9 + 5.5 + 1) / 50)
    assert image_auroc([0.1, 0.2, 0.9], [0, 0, 1]) == 1.0
    assert image_auroc([0.5, 0.5], [0, 1]) == 0.5  # a tie counts half


def test_f1_max_by_hand():
    f1, threshold = f1_max([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    # threshold 0.35 flags {0.35, 0.4, 0.8}: precision 2/3, recall 1, F1 0.8 (the best threshold)
    assert f1 == pytest.approx(0.8) and threshold == pytest.approx(0.35)


def test_f1_max_is_the_best_sklearn_f1_over_thresholds():
    rng = np.random.default_rng(1)
    scores, labels = rng.random(200), (rng.random(200) < 0.4).astype(int)
    best = max(f1_score(labels, scores >= t) for t in np.unique(scores))
    f1, threshold = f1_max(scores, labels)
    assert f1 == pytest.approx(best) and f1_score(labels, scores >= threshold) == pytest.approx(f1)


def test_recall_at_fpr_by_hand():
    # one false positive allowed (good 0.9): threshold 0.85 catches 0.85, 0.95, 0.99
    assert recall_at_fpr(SCORES, LABELS, 0.1) == pytest.approx(0.6)
    assert recall_at_fpr(SCORES, LABELS, 0.03) == pytest.approx(0.4)  # no false positive: above 0.9 only
    assert recall_at_fpr(SCORES, LABELS, 1.0) == 1.0


def test_fpr_at_recall_by_hand():
    # four of five defects need threshold 0.5, which also flags goods 0.5 ... 0.9
    assert fpr_at_recall(SCORES, LABELS, 0.8) == pytest.approx(0.5)
    # all five need 0.05, which flags every good but 0.0
    assert fpr_at_recall(SCORES, LABELS, 0.98) == pytest.approx(0.9)


def test_operating_points_are_reachable_thresholds():
    rng = np.random.default_rng(2)
    scores, labels = rng.random(500), (rng.random(500) < 0.5).astype(int)
    recall = recall_at_fpr(scores, labels, 0.03)
    ok = [t for t in np.unique(scores) if (scores[labels == 0] >= t).mean() <= 0.03]
    assert recall == pytest.approx(max((scores[labels == 1] >= t).mean() for t in ok))
    fpr = fpr_at_recall(scores, labels, 0.98)
    ok = [t for t in np.unique(scores) if (scores[labels == 1] >= t).mean() >= 0.98]
    assert fpr == pytest.approx(min((scores[labels == 0] >= t).mean() for t in ok))


@pytest.mark.parametrize(
    ("scores", "labels", "message"),
    [
        ([0.1, 0.2], [0, 0], "only one class"),
        ([0.1, 0.2], [0, 1, 1], "2 scores but 3 labels"),
        ([0.1, np.nan], [0, 1], "NaN"),
        ([0.1, 0.2], [0, 2], "labels must be 0"),
        ([], [], "no scores"),
    ],
)
def test_bad_input_is_explained(scores, labels, message):
    for fn in (image_auroc, f1_max, recall_at_fpr, fpr_at_recall):
        with pytest.raises(ValueError, match=message):
            fn(scores, labels)


def test_bad_rates_are_refused():
    with pytest.raises(ValueError, match="max_fpr"):
        recall_at_fpr(SCORES, LABELS, 1.5)
    with pytest.raises(ValueError, match="min_recall"):
        fpr_at_recall(SCORES, LABELS, -0.1)
