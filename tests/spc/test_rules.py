"""Each run rule fires where its pattern completes, not one point early, and at its theoretical rate on noise;
the default set (Western Electric 1-4) gives the in-control run length quality engineers expect."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from diffqc.settings import SpcSettings
from diffqc.spc import RULES, evaluate

ALTERNATING_13 = [(-1) ** i * 0.5 for i in range(13)]

# (rule, standardized series, indices where the rule must fire)
CASES = [
    ("nelson1", [0.0, 0.5, -3.2, 0.2, 3.1], [2, 4]),
    ("nelson1", [2.99, -2.99, 3.0, -3.0], []),  # exactly 3 sigma is still inside
    ("nelson2", [0.5] * 9 + [-0.5], [8]),
    ("nelson2", [-0.2] * 10, [8, 9]),
    ("nelson2", [0.5] * 8 + [-0.5] + [0.5] * 8, []),
    ("nelson2", [0.5] * 4 + [0.0] + [0.5] * 4, []),  # a point on the centre line breaks the run
    ("nelson3", [-1.0, -0.6, -0.2, 0.2, 0.6, 1.0], [5]),
    ("nelson3", [1.0, 0.5, 0.0, -0.5, -1.0, -1.5, -2.0], [5, 6]),
    ("nelson3", [-1.0, -0.6, -0.2, 0.2, 0.6, 0.6], []),  # 5 rising points and a tie
    ("nelson3", [-1.0, -0.6, -0.2, 0.2, 0.6, 0.1, 0.3], []),
    ("nelson4", ALTERNATING_13 + [-0.5], [13]),
    ("nelson4", ALTERNATING_13 + [-0.5, 0.5], [13, 14]),
    ("nelson4", ALTERNATING_13, []),
    ("nelson4", ALTERNATING_13[:6] + [0.5] + ALTERNATING_13[6:], []),  # one repeated value breaks it
    ("nelson5", [2.5, 0.0, 2.1], [2]),
    ("nelson5", [2.5, 2.1, 0.0], [1]),  # the point completing the pattern must itself be beyond 2 sigma
    ("nelson5", [0.0, 2.5, 2.1], [2]),
    ("nelson5", [-2.1, 0.5, -2.2], [2]),
    ("nelson5", [2.5, -2.5, 0.0], []),  # opposite sides
    ("nelson5", [2.5, 0.0, 0.0, 2.5], []),  # 2 of 4, not 2 of 3
    ("nelson6", [1.5, 1.2, 0.0, 1.1, 1.3], [4]),
    ("nelson6", [-1.5, -1.2, -1.1, -1.3], [3]),
    ("nelson6", [1.5, 1.2, 0.0, 0.0, 1.3], []),
    ("nelson6", [1.5, -1.5, 1.5, -1.5, 1.5], []),
    ("nelson7", list(np.tile([0.2, -0.3, 0.5], 5)), [14]),
    ("nelson7", list(np.tile([0.2, -0.3], 7)) + [1.2], []),
    ("nelson8", [1.5, -1.5] * 4, [7]),
    ("nelson8", [1.5, -1.5] * 3 + [1.2, 0.5], []),
    ("nelson8", [1.5] * 8, []),  # all on one side is not this rule
    ("nelson8", [1.5] * 7 + [-1.1], [7]),
    ("we4", [0.5] * 8 + [-0.5], [7]),
    ("we4", [-0.2] * 9, [7, 8]),
    ("we4", [0.5] * 7 + [-0.5] + [0.5] * 7, []),
]


@pytest.mark.parametrize(("rule", "z", "expected"), CASES)
def test_a_rule_fires_exactly_where_its_pattern_completes(rule, z, expected):
    assert RULES[rule](z).tolist() == expected


@pytest.mark.parametrize(("western_electric", "nelson"), [("we1", "nelson1"), ("we2", "nelson5"), ("we3", "nelson6")])
def test_western_electric_rules_1_to_3_are_nelson_1_5_6(western_electric, nelson):
    z = np.random.default_rng(3).standard_normal(20_000)
    assert RULES[western_electric](z).tolist() == RULES[nelson](z).tolist()


def test_a_quiet_series_fires_no_rule():
    # On both sides, never 3 steps one way, never 14 zig-zags, never 15 within or 8 outside 1 sigma.
    quiet = np.tile([0.5, 0.3, -0.5, -0.3, 1.5, -1.5], 20)
    every_test = [rule for rule in RULES if rule not in ("we1", "we2", "we3")]  # those are nelson1, 5, 6
    assert {rule: fired.tolist() for rule, fired in evaluate(quiet, every_test).items()} == dict.fromkeys(
        every_test, []
    )


def test_every_rule_has_an_id_and_a_description():
    assert list(RULES) == [f"we{i}" for i in range(1, 5)] + [f"nelson{i}" for i in range(1, 9)]
    assert all(rule.description and rule.window >= 1 for rule in RULES.values())


def test_bad_series_and_unknown_rules_are_refused():
    with pytest.raises(ValueError, match=r"non-finite values \(NaN or inf\) at index \[2\]"):
        evaluate([0.0, 1.0, float("inf")])
    with pytest.raises(ValueError, match=r"unknown SPC rule id\(s\) \['we9'\]"):
        evaluate([0.0, 1.0], ["nelson1", "we9"])
    with pytest.raises(ValueError, match=r"\('we1', 'nelson1'\)\] test the same pattern"):
        evaluate([0.0, 1.0], ["nelson1", "we1"])
    with pytest.raises(ValueError, match=r"test the same pattern"):
        SpcSettings(rules=["we2", "nelson5"])


def _alternating_probability(n: int) -> float:
    """P(n i.i.d. continuous points zig-zag) = 2 E_n / n!, E_n the Euler zigzag number (boustrophedon)."""
    row = [1]
    for _ in range(n):
        nxt = [0]
        for value in reversed(row):
            nxt.append(nxt[-1] + value)
        row = nxt
    return 2 * row[-1] / math.factorial(n)


def _per_point_rates() -> dict[str, float]:
    """The probability that the rule fires at a given point of an in-control N(0, 1) series."""
    p3, p2, p1 = norm.sf(3), norm.sf(2), norm.sf(1)
    return {
        "nelson1": 2 * p3,  # 0.0027
        "nelson2": 2 * 0.5**9,  # 0.0039
        "nelson3": 2 / math.factorial(6),  # 0.0028
        "nelson4": _alternating_probability(14),  # 0.0046
        "nelson5": 2 * p2 * (1 - (1 - p2) ** 2),  # 0.0020: this point and 1 of the 2 before
        "nelson6": 2 * p1 * (4 * p1**3 * (1 - p1) + p1**4),  # 0.0045: this point and 3 of the 4 before
        "nelson7": (1 - 2 * p1) ** 15,  # 0.0033
        "nelson8": (2 * p1) ** 8 - 2 * p1**8,  # 0.0001
        "we4": 2 * 0.5**8,  # 0.0078
    }


def test_the_zigzag_probability_matches_a_count_by_hand():
    assert _alternating_probability(3) == pytest.approx(4 / 6)  # 132, 231, 213, 312 of the 6 permutations
    assert _alternating_probability(4) == pytest.approx(10 / 24)


def test_rule_1_false_alarm_rate_on_noise_is_the_normal_tail():
    n = 200_000
    z = np.random.default_rng(20261101).standard_normal(n)
    rate = RULES["nelson1"](z).size / n
    p = 2 * norm.sf(3)
    assert rate == pytest.approx(p, abs=4 * math.sqrt(p * (1 - p) / n))  # 0.0027 +- 0.00046


@pytest.mark.parametrize("rule", [f"nelson{i}" for i in range(2, 9)] + ["we4"])
def test_false_alarm_rates_on_noise_match_theory(rule):
    """Firings of a run rule cluster (a run of 10 fires twice), so the s.d. comes from 40 batch means."""
    batches, size = 40, (200_000 if rule == "nelson8" else 50_000)  # rule 8 is 40 times rarer
    z = np.random.default_rng(7).standard_normal(batches * size)
    fired = np.zeros(z.size, dtype=bool)
    fired[RULES[rule](z)] = True
    per_batch = fired.reshape(batches, size).mean(axis=1)
    expected = _per_point_rates()[rule]
    tolerance = 4 * per_batch.std(ddof=1) / math.sqrt(batches)
    assert tolerance < 0.3 * expected  # tight enough to tell a rule one point too short or too long
    assert per_batch.mean() == pytest.approx(expected, abs=tolerance)


def _average_run_length(rule_ids, runs: int, seed: int) -> float:
    """Mean index (1-based) of the first signal on in-control N(0, 1) series with known limits."""
    rng = np.random.default_rng(seed)
    lengths = []
    for _ in range(runs):
        z = rng.standard_normal(4000)
        first = min((int(f[0]) for f in evaluate(z, rule_ids).values() if f.size), default=z.size)
        lengths.append(first + 1)
    return float(np.mean(lengths))


def test_the_default_rules_give_about_92_in_control_points_between_false_signals():
    """Western Electric 1-4 together: ARL0 = 91.75 (Champ and Woodall, Technometrics 29(4), 1987);
    all eight Nelson rules signal sooner (about 73 points here), which is one reason they are opt-in."""
    defaults = [r for r in SpcSettings().rules if r in RULES]
    assert defaults == ["we1", "we2", "we3", "we4"]
    arl = _average_run_length(defaults, runs=1500, seed=11)
    assert arl == pytest.approx(91.75, rel=0.08)  # s.e. of 1500 runs ~ 2.4 points
    assert _average_run_length([f"nelson{i}" for i in range(1, 9)], runs=500, seed=11) < 0.9 * arl
