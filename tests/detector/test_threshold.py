import numpy as np
import pytest
from scipy import stats

from diffqc.detector.threshold import fit_threshold

TARGET = 0.03
# Good-image scores are skewed and heavy-tailed in practice; each rule must hold on all of these.
SHAPES = {"normal": stats.norm(), "lognormal": stats.lognorm(0.5), "student t5": stats.t(5)}


def _fresh_fpr(shape, method: str, n: int, repeats: int, seed: int = 0) -> np.ndarray:
    """The FPR each threshold gives on the whole good population (exact, from the distribution)."""
    rng = np.random.default_rng(seed)
    return np.array(
        [shape.sf(fit_threshold(shape.rvs(n, random_state=rng), TARGET, method).threshold) for _ in range(repeats)]
    )


@pytest.mark.parametrize("name", SHAPES)
def test_the_fitted_tail_threshold_meets_its_fpr_on_new_good_parts(name):
    fpr = _fresh_fpr(SHAPES[name], "gpd", n=400, repeats=200)
    assert abs(fpr.mean() - TARGET) < 0.003, f"{name}: mean FPR on new parts {fpr.mean():.4f}"
    # 400 held-out scores keep nine in ten calibrations within 1.5 points of the target.
    assert np.mean(np.abs(fpr - TARGET) <= 0.015) >= 0.9


@pytest.mark.parametrize("name", SHAPES)
def test_the_fitted_tail_varies_less_between_calibrations_than_one_order_statistic(name):
    gpd, empirical = (_fresh_fpr(SHAPES[name], method, n=150, repeats=200) for method in ("gpd", "empirical"))
    assert gpd.std() < empirical.std()
    assert empirical.mean() > TARGET, "the empirical rule's known bias: (allowed + 1) / (n + 1)"


def test_conformal_promises_rank_over_n_plus_one_and_keeps_it():
    fpr = _fresh_fpr(SHAPES["lognormal"], "conformal", n=150, repeats=300)
    threshold = fit_threshold(np.arange(150.0), TARGET, "conformal")
    assert threshold.expected_fpr == pytest.approx(4 / 151) and threshold.threshold == 146.0
    assert fpr.mean() == pytest.approx(4 / 151, abs=0.003) and fpr.mean() <= TARGET


def test_too_few_scores_for_a_tail_fall_back_to_conformal_and_say_so():
    few = fit_threshold(np.arange(30.0), TARGET, "gpd")
    assert few.method == "conformal"
    assert few.threshold == 29.0 and few.fpr == 0.0  # 30 scores cannot place 3%: above every good one
    assert few.expected_fpr == pytest.approx(1 / 31)


@pytest.mark.parametrize(
    ("scores", "target", "message"),
    [
        (np.array([]), TARGET, "no good images"),
        (np.array([1.0, np.nan, 2.0]), TARGET, "NaN or infinity"),
        (np.arange(10.0), 0.0, "target FPR"),
        (np.arange(10.0), 1.5, "target FPR"),
    ],
)
def test_bad_calibration_input_is_named(scores, target, message):
    with pytest.raises(ValueError, match=message):
        fit_threshold(scores, target, "gpd")
