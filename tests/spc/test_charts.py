"""Control limits against cases computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from diffqc.spc import ChartError, individuals_chart, moving_ranges, p_chart


def test_individuals_chart_limits_match_a_hand_computed_baseline():
    # mean = 61 / 5 = 12.2; moving ranges 2, 1, 4, 2 -> MRbar = 2.25; sigma = 2.25 / 1.128 = 1.994681
    chart = individuals_chart([10, 12, 11, 15, 13])
    assert chart.center_line == pytest.approx(12.2)
    assert chart.moving_range_mean == pytest.approx(2.25)
    assert chart.sigma == pytest.approx(1.9946809)
    assert chart.ucl == pytest.approx(18.1840426)  # 12.2 + 3 * 1.994681
    assert chart.lcl == pytest.approx(6.2159574)
    assert chart.moving_range_ucl == pytest.approx(7.35075)  # 3.267 * 2.25
    assert chart.baseline_size == 5
    assert moving_ranges([10, 12, 11, 15, 13]).tolist() == [2, 1, 4, 2]
    assert chart.standardize([12.2, 18.1840426]) == pytest.approx([0.0, 3.0])


def test_sigma_comes_from_the_moving_range_not_the_standard_deviation():
    # A slow linear drift: the standard deviation is large, the moving ranges are all 1.
    chart = individuals_chart(np.arange(30.0))
    assert chart.sigma == pytest.approx(1 / 1.128)
    assert np.std(np.arange(30.0), ddof=1) > 8


def test_p_chart_limits_follow_each_subgroup_size():
    # p-bar = (10 + 30 + 5) / (100 + 200 + 50) = 45 / 350 = 0.128571;
    # n = 100: sd = sqrt(0.128571 * 0.871429 / 100) = 0.0334725 -> 0.228989 / 0.028154
    # n = 200: sd = 0.0236686 -> 0.199577 / 0.057566;  n = 50: sd = 0.0473373 -> 0.270583 / 0 (clipped)
    chart = p_chart([10, 30, 5], [100, 200, 50])
    assert chart.p_bar == pytest.approx(0.1285714)
    assert chart.proportions == pytest.approx([0.10, 0.15, 0.10])
    assert chart.ucl == pytest.approx([0.2289889, 0.1995773, 0.2705832])
    assert chart.lcl == pytest.approx([0.0281539, 0.0575655, 0.0], rel=1e-5)
    assert chart.out_of_control.tolist() == []


def test_p_chart_flags_a_subgroup_beyond_its_own_limit_with_a_fixed_p_bar():
    chart = p_chart([2, 12, 0], [100, 100, 400], p_bar=0.04)
    # n = 100: 0.04 + 3 sqrt(0.04 * 0.96 / 100) = 0.098788; n = 400: LCL = 0.04 - 0.0293939 = 0.010606 > 0
    assert chart.ucl[1] == pytest.approx(0.0987878)
    assert chart.lcl[2] == pytest.approx(0.0106061, rel=1e-5)
    assert chart.out_of_control.tolist() == [1, 2]  # 12 % too high, 0 % of 400 below the lower limit


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: individuals_chart([1.0]), "at least 2"),
        (lambda: individuals_chart([4.0] * 30), "all equal"),
        (lambda: individuals_chart([1.0, float("nan"), 2.0]), "non-finite values (NaN or inf) at index [1]"),
        (lambda: individuals_chart([[1.0, 2.0]]), "flat sequence"),
        (lambda: p_chart([1, 2], [10]), "one entry per subgroup"),
        (lambda: p_chart([11], [10]), "0 <= defectives <= size"),
        (lambda: p_chart([0], [0]), "size > 0"),
        (lambda: p_chart([], []), "at least one subgroup"),
        (lambda: p_chart([1], [10], p_bar=1.5), "p_bar must lie in [0, 1]"),
    ],
)
def test_bad_input_is_refused_with_a_message_naming_the_problem(call, message):
    with pytest.raises(ChartError) as error:
        call()
    assert message in str(error.value)
