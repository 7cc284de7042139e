"""Run rules of a Shewhart chart, vectorised over a standardized series: the Western Electric rules
1-4 (Western Electric, *Statistical Quality Control Handbook*, 1956; the default set) and the eight
Nelson rules (L. S. Nelson, "The Shewhart control chart — tests for special causes", Journal of
Quality Technology 16(4), 1984; opt-in).

Together the Western Electric rules give an in-control average run length of about 92 points;
all eight Nelson rules about 50 (docs/spc.md, ``benchmarks/spc_arl.py``), which on a line that
inspects a part a second is a false signal every minute.

Each rule takes z = (x - centre line) / sigma and returns the indices i at which the pattern
that ends at point i is complete; a point that continues the pattern fires again (a run of 10
on one side fires rule 2 at its 9th and 10th point). Where a rule counts "k of m" points, the
point that fires must itself be one of the k (the convention of Minitab and of qcc), so a
point inside the limits never carries a zone signal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from diffqc.spc.charts import _finite_array


def _window_count(mask: np.ndarray, width: int) -> np.ndarray:
    """counts[i] = how many of mask[max(0, i-width+1) .. i] are True (near the start the window is shorter:
    the first two points both beyond 2 sigma are already "2 of 3")."""
    cumulative = np.concatenate(([0], np.cumsum(mask, dtype=np.int64)))
    starts = np.maximum(0, np.arange(mask.size) + 1 - width)
    return cumulative[1:] - cumulative[starts]


def _runs(mask: np.ndarray, length: int) -> np.ndarray:
    """Indices where the last ``length`` entries of ``mask`` are all True."""
    return np.flatnonzero(_window_count(mask, length) == length)


def beyond_3_sigma(z: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.abs(z) > 3)


def nine_on_one_side(z: np.ndarray) -> np.ndarray:
    return np.union1d(_runs(z > 0, 9), _runs(z < 0, 9))


def eight_on_one_side(z: np.ndarray) -> np.ndarray:
    return np.union1d(_runs(z > 0, 8), _runs(z < 0, 8))


def six_trending(z: np.ndarray) -> np.ndarray:
    steps = np.diff(z)  # steps[j] = z[j+1] - z[j]: 5 steps in one direction make 6 points
    return np.union1d(_runs(steps > 0, 5), _runs(steps < 0, 5)) + 1


def fourteen_alternating(z: np.ndarray) -> np.ndarray:
    direction = np.sign(np.diff(z))
    flips = direction[:-1] * direction[1:] < 0  # flips[j]: z[j], z[j+1], z[j+2] zig-zag
    return _runs(flips, 12) + 2  # 12 flips = 13 alternating steps = 14 points


def _k_of_m_same_side(z: np.ndarray, level: float, k: int, m: int) -> np.ndarray:
    fired = [np.flatnonzero(side & (_window_count(side, m) >= k)) for side in (z > level, z < -level)]
    return np.union1d(*fired)


def two_of_three_beyond_2_sigma(z: np.ndarray) -> np.ndarray:
    return _k_of_m_same_side(z, 2.0, 2, 3)


def four_of_five_beyond_1_sigma(z: np.ndarray) -> np.ndarray:
    return _k_of_m_same_side(z, 1.0, 4, 5)


def fifteen_within_1_sigma(z: np.ndarray) -> np.ndarray:
    return _runs(np.abs(z) < 1, 15)


def eight_outside_1_sigma_both_sides(z: np.ndarray) -> np.ndarray:
    runs = _runs(np.abs(z) > 1, 8)
    above = _window_count(z > 1, 8)[runs]
    return runs[(above > 0) & (above < 8)]  # a run entirely on one side is rules 2/6's business


@dataclass(frozen=True)
class Rule:
    """A run rule: its id (we1 .. we4, nelson1 .. nelson8), what it means, the points it looks back on."""

    id: str
    description: str
    window: int
    detect: Callable[[np.ndarray], np.ndarray]

    def __call__(self, z) -> np.ndarray:
        return self.detect(standardized(z))


WESTERN_ELECTRIC = (
    Rule("we1", "1 point beyond 3 sigma of the centre line", 1, beyond_3_sigma),
    Rule("we2", "2 of 3 points in a row beyond 2 sigma on the same side", 3, two_of_three_beyond_2_sigma),
    Rule("we3", "4 of 5 points in a row beyond 1 sigma on the same side", 5, four_of_five_beyond_1_sigma),
    Rule("we4", "8 points in a row on the same side of the centre line", 8, eight_on_one_side),
)
NELSON = (
    Rule("nelson1", "1 point beyond 3 sigma of the centre line", 1, beyond_3_sigma),
    Rule("nelson2", "9 points in a row on the same side of the centre line", 9, nine_on_one_side),
    Rule("nelson3", "6 points in a row steadily increasing or decreasing", 6, six_trending),
    Rule("nelson4", "14 points in a row alternating up and down", 14, fourteen_alternating),
    Rule("nelson5", "2 of 3 points in a row beyond 2 sigma on the same side", 3, two_of_three_beyond_2_sigma),
    Rule("nelson6", "4 of 5 points in a row beyond 1 sigma on the same side", 5, four_of_five_beyond_1_sigma),
    Rule("nelson7", "15 points in a row within 1 sigma of the centre line", 15, fifteen_within_1_sigma),
    Rule(
        "nelson8",
        "8 points in a row beyond 1 sigma, on both sides of the centre line",
        8,
        eight_outside_1_sigma_both_sides,
    ),
)
RULES: dict[str, Rule] = {rule.id: rule for rule in (*WESTERN_ELECTRIC, *NELSON)}
# Rules that test the same pattern under two names: enabling both would report every signal twice.
SAME_TEST = (("we1", "nelson1"), ("we2", "nelson5"), ("we3", "nelson6"))
MAX_WINDOW = max(rule.window for rule in RULES.values())


def standardized(z) -> np.ndarray:
    return _finite_array(z, "the standardized series")  # a ChartError is a ValueError


def rules_by_id(ids: Iterable[str]) -> list[Rule]:
    """The rules named by ``ids``, in the given order; an unknown id is an error that lists the known ones."""
    ids = list(ids)
    unknown = [rule_id for rule_id in ids if rule_id not in RULES]
    if unknown:
        raise ValueError(f"unknown SPC rule id(s) {unknown}; known: {sorted(RULES)}")
    twice = [pair for pair in SAME_TEST if set(pair) <= set(ids)]
    if twice:
        raise ValueError(f"SPC rules {twice} test the same pattern; enable one of each pair")
    return [RULES[rule_id] for rule_id in ids]


DEFAULT_RULES = tuple(rule.id for rule in WESTERN_ELECTRIC)


def evaluate(z, rule_ids: Iterable[str] = DEFAULT_RULES) -> dict[str, np.ndarray]:
    """Every selected rule over the whole series: rule id -> indices where it fires."""
    series = standardized(z)
    return {rule.id: rule.detect(series) for rule in rules_by_id(rule_ids)}
