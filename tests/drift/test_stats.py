"""The pure tests behind drift: PSI on the reference's decile bins, the two-sample KS test, and their
combination with the Bonferroni correction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from diffqc.drift import compare, ks_test, psi


def test_psi_is_zero_for_the_same_sample_and_grows_with_the_shift():
    rng = np.random.default_rng(0)
    reference = rng.standard_normal(1000)
    assert psi(reference, reference) == pytest.approx(0.0, abs=1e-12)
    shifts = [psi(reference, rng.standard_normal(1000) + d) for d in (0.0, 0.5, 1.0, 2.0)]
    assert shifts == sorted(shifts)
    assert shifts[0] < 0.05 and shifts[2] > 0.5  # 1 sigma is far past the usual 0.25 "act" line


def test_psi_by_hand_and_with_an_empty_bin():
    # Reference deciles of 0..99 cut at 9.9, 19.8, ...: ten equal bins of 10 values each.
    reference = np.arange(100.0)
    window = np.concatenate([np.full(50, 5.0), np.full(50, 95.0)])  # half in the first bin, half in the last
    expected = 2 * (0.5 - 0.1) * math.log(0.5 / 0.1) + 8 * (1e-4 - 0.1) * math.log(1e-4 / 0.1)
    assert psi(reference, window) == pytest.approx(expected)
    # Beyond the reference's range still counts: the outer bins are open.
    assert psi(reference, np.full(10, 1e6)) == pytest.approx(psi(reference, np.full(10, 99.0)))


def test_psi_of_a_constant_reference_separates_the_same_value_from_others():
    reference = np.zeros(200)  # e.g. the process component when every parameter is in range
    assert psi(reference, np.zeros(50)) == 0.0
    assert psi(reference, np.ones(50)) == 0.0  # at or above the value: the same bin
    assert psi(reference, np.full(50, -1.0)) > 5


@pytest.mark.parametrize(
    ("reference", "window", "message"),
    [
        ([], [1.0], "the reference must be a non-empty 1-D sequence of numbers"),
        ([1.0, 2.0], [], "the window must be a non-empty 1-D sequence of numbers"),
        ([1.0, float("nan")], [1.0], "the reference has non-finite values"),
        ([1.0, 2.0], [float("inf")], "the window has non-finite values"),
        ([[1.0, 2.0]], [1.0], "the reference must be a non-empty 1-D sequence"),
    ],
)
def test_bad_samples_are_refused_naming_the_problem(reference, window, message):
    with pytest.raises(ValueError, match=message):
        psi(reference, window)
    with pytest.raises(ValueError, match=message):
        ks_test(reference, window)


def test_psi_needs_two_bins_and_a_floor_in_range():
    with pytest.raises(ValueError, match="at least 2 bins, got 1"):
        psi([1.0, 2.0], [1.0], bins=1)
    with pytest.raises(ValueError, match=r"empty-bin floor must be in \(0, 1\), got 0"):
        psi([1.0, 2.0], [1.0], floor=0)


def test_ks_test_of_identical_and_separated_samples():
    assert ks_test([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == (0.0, 1.0)
    statistic, p_value = ks_test(np.arange(50.0), np.arange(50.0) + 100)
    assert statistic == 1.0 and p_value < 1e-20


def test_compare_corrects_for_the_quantities_and_needs_both_tests():
    rng = np.random.default_rng(1)
    base = rng.standard_normal(200)
    reference = {"score": base, "pixel": base, "process": np.zeros(200)}
    window = {
        "score": rng.standard_normal(200) + 1.0,
        "pixel": rng.standard_normal(200) + 0.35,
        "process": np.zeros(200),
    }
    tests = {t.quantity: t for t in compare(reference, window, alpha=0.001, psi_threshold=0.25)}
    assert list(tests) == ["score", "pixel", "process"]
    raw = ks_test(base, window["pixel"])[1]
    assert tests["pixel"].p_value == pytest.approx(min(1.0, 3 * raw))  # Bonferroni over the 3 quantities
    assert tests["score"].significant and tests["score"].drifting and tests["score"].psi > 0.25
    assert tests["process"] == ("process", 0.0, 1.0, 0.0, False, False)
    # Significant but small (PSI under the threshold) is not drift.
    small = compare(reference, window, alpha=0.5, psi_threshold=10.0)
    assert all(not t.drifting for t in small) and any(t.significant for t in small)
    # A quantity the window lacks is not tested and does not count in the correction.
    [only] = compare(reference, {"pixel": window["pixel"]}, alpha=0.001, psi_threshold=0.25)
    assert only.quantity == "pixel" and only.p_value == pytest.approx(min(1.0, raw))


def test_compare_refuses_a_bad_alpha_and_disjoint_quantities():
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\), got 1.5"):
        compare({"score": [1.0]}, {"score": [1.0]}, alpha=1.5, psi_threshold=0.25)
    with pytest.raises(ValueError, match="no quantity in common"):
        compare({"score": [1.0]}, {"pixel": [1.0]}, alpha=0.001, psi_threshold=0.25)
