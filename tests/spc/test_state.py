"""A chart's state as JSON: stopped anywhere, stored and restored, a chart goes on exactly as the chart that
never stopped (the same signals, the same state to the bit), whatever phase, lot, rule streak or re-base it
was in."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from diffqc.settings import SpcSettings
from diffqc.spc import IndividualsChart, Observation, Rebase, SpcChart, chart_from_history
from diffqc.spc.state import chart_state, compatible, restore_chart

T0 = datetime(2026, 5, 4, 6, 0, tzinfo=UTC)
SETTINGS = {
    "western electric, ewma, cusum, p-chart": SpcSettings(
        baseline_size=20,
        p_baseline_lots=3,
        history_size=40,  # full deques: what falls out of them must fall out of the restored ones too
        rules=["we1", "we2", "we3", "we4", "ewma", "cusum", "pchart"],
    ),
    "all nelson rules": SpcSettings(baseline_size=15, history_size=15, rules=[f"nelson{i}" for i in range(1, 9)]),
}


def stream(seed: int, n: int = 400) -> tuple[list[Observation], list[Rebase]]:
    """A line's rows with everything a chart carries from point to point: a shift, defective parts (kept out
    of baselines), lots of random length, a promotion to v2 and a rollback to v1, parts captured at the same
    instant, and a re-base of each version."""
    rng = np.random.default_rng(seed)
    scores = 0.5 + 0.1 * rng.standard_normal(n)
    scores[n // 4 : n // 3] += rng.choice([0.1, 0.3])
    versions = np.where((np.arange(n) >= n // 2) & (np.arange(n) < 3 * n // 4), "v2", "v1")
    scores[versions == "v2"] = 2.0 + 0.3 * rng.standard_normal(int((versions == "v2").sum()))
    defects = rng.random(n) < 0.08
    lots = np.cumsum(rng.random(n) < 0.1)
    steps = rng.choice([0, 1, 1, 2], size=n)  # 0: captured at the same instant as the part before
    times = [T0 + timedelta(seconds=int(s)) for s in np.cumsum(steps)]
    rows = [
        Observation(times[i], float(scores[i]), bool(defects[i]), f"lot-{lots[i]}", f"i-{seed}-{i:04d}", versions[i])
        for i in range(n)
    ]
    rebases = [
        Rebase("v1", IndividualsChart(0.52, 0.09, 0.09 * 1.128, 25), times[n // 3] + timedelta(microseconds=1)),
        Rebase("v2", IndividualsChart(2.1, 0.25, 0.25 * 1.128, 30), times[2 * n // 3]),
    ]
    return rows, rebases


def same_chart(restored: SpcChart, uninterrupted: SpcChart) -> None:
    """Every attribute equal (so a field the state forgot to carry fails here)."""
    mine, theirs = vars(restored), vars(uninterrupted)
    assert mine.keys() == theirs.keys()
    for name, value in theirs.items():
        if isinstance(value, np.ndarray):
            assert np.array_equal(mine[name], value) and mine[name].dtype == value.dtype, name
        else:
            assert mine[name] == value, name


@pytest.mark.parametrize("name", list(SETTINGS))
@pytest.mark.parametrize("seed", range(5))
def test_a_chart_stored_and_restored_anywhere_goes_on_exactly_as_the_uninterrupted_one(name, seed):
    settings = SETTINGS[name]
    rows, rebases = stream(seed)
    uninterrupted = chart_from_history("L1", "pcb", [], settings, rebases)
    signals, rebased = [], set()
    for row in rows:
        signals.append(uninterrupted.extend([row]))
        rebased.add(uninterrupted.rebased_at)
    assert sum(map(len, signals)) > 5 and len(rebased) == 3  # signals, and both re-bases came into force

    for split in np.random.default_rng(100 + seed).choice(np.arange(1, len(rows)), size=8, replace=False):
        first = chart_from_history("L1", "pcb", rows[:split], settings, rebases)
        stored = json.loads(json.dumps(chart_state(first), allow_nan=False))  # what PostgreSQL keeps
        assert compatible(stored, settings)
        restored = restore_chart(stored, settings, rebases)
        same_chart(restored, first)
        assert [restored.extend([row]) for row in rows[split:]] == signals[split:], f"split at {split}"
        same_chart(restored, uninterrupted)
        assert chart_state(restored) == chart_state(uninterrupted)
        assert restored.state() == uninterrupted.state()


def test_a_restored_chart_takes_a_batch_as_the_uninterrupted_one_takes_rows_one_by_one():
    settings = SETTINGS["western electric, ewma, cusum, p-chart"]
    rows, rebases = stream(seed=7)
    uninterrupted = chart_from_history("L1", "pcb", rows, settings, rebases)
    half = chart_from_history("L1", "pcb", rows[:150], settings, rebases)
    restored = restore_chart(json.loads(json.dumps(chart_state(half))), settings, rebases)
    restored.extend(rows[150:])
    same_chart(restored, uninterrupted)


def test_a_state_made_under_other_chart_settings_or_another_format_is_not_continued():
    settings = SpcSettings(baseline_size=20)
    state = chart_state(chart_from_history("L1", "pcb", stream(seed=1)[0][:50], settings))
    assert compatible(state, settings)
    assert compatible(state, settings.model_copy(update={"rebase_delay_s": 60.0}))  # acts through spc_rebases only
    for changed in ({"baseline_size": 30}, {"rules": ["we1"]}, {"cusum_h": 4.0}, {"history_size": 100}):
        assert not compatible(state, settings.model_copy(update=changed)), changed
    assert not compatible({**state, "format": 0}, settings)


def test_follows_orders_rows_by_capture_time_and_knows_the_parts_captured_at_the_newest_instant():
    chart = SpcChart("L1", "pcb", SpcSettings(baseline_size=2))
    first = Observation(T0, 0.5, "pass", None, "a")
    assert chart.follows(first)
    chart.extend([first, Observation(T0 + timedelta(seconds=1), 0.6, "pass", None, "b")])
    assert not chart.follows(Observation(T0, 0.4, "pass", None, "late"))  # captured before the newest point
    assert not chart.follows(Observation(T0 + timedelta(seconds=1), 0.6, "pass", None, "b"))  # charted already
    same_instant = Observation(T0 + timedelta(seconds=1), 0.7, "pass", None, "c")
    assert chart.follows(same_instant)
    chart.extend([same_instant])
    assert chart.last_ids == ["b", "c"] and not chart.follows(same_instant)
    assert chart.follows(Observation(T0 + timedelta(seconds=2), 0.5, "pass", None, "b"))
