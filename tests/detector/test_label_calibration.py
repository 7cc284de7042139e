"""The threshold proposal from labelled verdicts, on hand-worked numbers: the F1-max and target-recall
operating points, their thresholds halfway between labelled scores, the current threshold on the same
set, and "not enough labels" as an answer instead of a number."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from diffqc.detector.label_calibration import evaluate_threshold, propose_threshold

# Ten labelled defective parts (one missed at 0.3) and ten good ones (a false alarm at 0.52), descending:
# 0.9 D .85 D .8 D .75 D .7 D .65 D .6 D .55 D | .52 G | .5 D | .45 G .4 G .35 G | .3 D | .25 G ... .02 G
DEFECTIVE = [0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.5, 0.3]
GOOD = [0.52, 0.45, 0.4, 0.35, 0.25, 0.2, 0.15, 0.1, 0.05, 0.02]
SCORES = DEFECTIVE + GOOD
TRUTH = [True] * 10 + [False] * 10


def test_the_f1_max_and_target_recall_points_on_known_numbers():
    proposal = propose_threshold(SCORES, TRUTH, current_threshold=0.6, target_recall=0.98)
    assert (proposal.enough_labels, proposal.reason, proposal.defective, proposal.good) == (True, None, 10, 10)

    # F1-max flags the scores >= 0.5: 9 of 10 defects and the false alarm at 0.52, F1 = 18 / 20.
    best = proposal.f1_max
    assert best.threshold == pytest.approx(0.475)  # halfway between 0.5 (flagged) and 0.45 (passed)
    assert (best.true_positives, best.false_positives, best.false_negatives, best.true_negatives) == (9, 1, 1, 9)
    assert (best.recall, best.fpr, best.precision, best.f1) == pytest.approx((0.9, 0.1, 0.9, 0.9))

    # Recall 0.98 of 10 defects needs all 10: down to the miss at 0.3, which lets 4 good parts through.
    reach = proposal.at_target_recall
    assert reach.threshold == pytest.approx(0.275)
    assert (reach.true_positives, reach.false_positives) == (10, 4)
    assert (reach.recall, reach.fpr, reach.precision) == pytest.approx((1.0, 0.4, 10 / 14))

    # The current threshold 0.6 (defect when score > 0.6): 0.6 itself passes, so 6 defects caught, no alarm.
    current = proposal.current
    assert (current.threshold, current.true_positives, current.false_positives) == (0.6, 6, 0)
    assert (current.recall, current.fpr, current.precision) == pytest.approx((0.6, 0.0, 1.0))


def test_the_target_recall_point_is_the_highest_threshold_reaching_it():
    reach = propose_threshold(SCORES, TRUTH, target_recall=0.9).at_target_recall
    assert (reach.threshold, reach.recall, reach.fpr) == pytest.approx((0.475, 0.9, 0.1))
    reach = propose_threshold(SCORES, TRUTH, target_recall=0.5).at_target_recall
    assert (reach.threshold, reach.recall, reach.fpr) == pytest.approx((0.675, 0.5, 0.0))  # between 0.7 and 0.65


def test_a_proposed_threshold_gives_on_the_labelled_scores_what_it_promises():
    proposal = propose_threshold(SCORES, TRUTH)
    for point in (proposal.f1_max, proposal.at_target_recall):
        assert evaluate_threshold(SCORES, TRUTH, point.threshold) == point


def test_equal_f1_goes_to_the_higher_recall():
    # 5 defects high, 10 good parts, 5 defects low: flagging the top 5 or everything both give F1 2/3.
    scores = [0.9, 0.89, 0.88, 0.87, 0.86] + [0.8 - i / 100 for i in range(10)] + [0.5, 0.49, 0.48, 0.47, 0.46]
    truth = [True] * 5 + [False] * 10 + [True] * 5
    best = propose_threshold(scores, truth).f1_max
    assert best.f1 == pytest.approx(2 / 3)
    assert (best.recall, best.fpr) == (1.0, 1.0)
    assert best.threshold < 0.46  # just below the lowest score: every part flagged


def test_tied_scores_of_both_classes_are_one_point():
    scores = [0.7] * 10 + [0.7] * 2 + [0.1] * 8
    truth = [True] * 10 + [False] * 10
    best = propose_threshold(scores, truth).f1_max
    assert (best.threshold, best.true_positives, best.false_positives) == pytest.approx((0.4, 10, 2))


def test_the_points_are_those_of_sklearns_roc_curve():
    rng = np.random.default_rng(3)
    scores = np.round(np.r_[rng.normal(1, 0.5, 40), rng.normal(0, 0.5, 60)], 2)  # rounded: ties happen
    truth = np.r_[np.ones(40, bool), np.zeros(60, bool)]
    fpr, tpr, thresholds = roc_curve(truth, scores, drop_intermediate=False)
    proposal = propose_threshold(scores, truth, target_recall=0.95)
    i = next(i for i in range(1, len(tpr)) if tpr[i] >= 0.95)
    reach = proposal.at_target_recall
    assert (reach.recall, reach.fpr) == pytest.approx((tpr[i], fpr[i]))
    assert np.all((scores > reach.threshold) == (scores >= thresholds[i]))  # the same parts flagged


@pytest.mark.parametrize(
    "truth, problem",
    [
        (
            [True] * 9 + [False] * 11,
            "not enough labels: 9 defective and 11 good labelled parts, need at least 10 of each",
        ),
        ([True] * 20, "not enough labels: 20 defective and 0 good labelled parts, need at least 10 of each"),
        ([], "not enough labels: 0 defective and 0 good labelled parts, need at least 10 of each"),
    ],
)
def test_too_few_labels_of_a_class_is_an_answer_not_a_number(truth, problem):
    proposal = propose_threshold(np.linspace(0, 1, len(truth)), truth, current_threshold=0.5)
    assert (proposal.enough_labels, proposal.reason) == (False, problem)
    assert (proposal.f1_max, proposal.at_target_recall, proposal.current) == (None, None, None)


def test_bad_input_is_refused_naming_it():
    with pytest.raises(ValueError, match="target_recall must be in"):
        propose_threshold(SCORES, TRUTH, target_recall=0)
    with pytest.raises(ValueError, match="20 scores but 19 labels"):
        propose_threshold(SCORES, TRUTH[:-1], min_per_class=1)
    with pytest.raises(ValueError, match="NaN or infinite"):
        propose_threshold([*SCORES[:-1], float("nan")], TRUTH)
