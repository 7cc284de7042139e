"""SpcMonitor: baseline, live signals, the SpcState it reports, and a rebuild from stored history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from scipy.stats import norm

from diffqc.settings import SpcSettings
from diffqc.spc import Observation, SpcMonitor, chart_from_history
from diffqc.v1.bridge_pb2 import SpcState
from diffqc.v1.frame_pb2 import Frame
from diffqc.v1.scoring_pb2 import InspectionVerdict, Verdict

T0 = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
BASELINE = 30


def rows(scores, defects=None, lots=None, start=0):
    defects = defects if defects is not None else [False] * len(scores)
    lots = lots if lots is not None else [None] * len(scores)
    return [
        Observation(
            T0 + timedelta(seconds=start + i), float(score), "defect" if defect else "pass", lot, f"insp-{start + i}"
        )
        for i, (score, defect, lot) in enumerate(zip(scores, defects, lots, strict=True))
    ]


def shifted_series(seed: int, after: int = 40, shift: float = 2.0) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(BASELINE + after)
    noise[BASELINE:] += shift
    return 0.5 + 0.1 * noise  # scores around 0.5 with sigma 0.1: the shift is +2 sigma


def test_no_signal_before_the_baseline_is_complete_then_limits_are_fixed():
    monitor = SpcMonitor(SpcSettings(baseline_size=BASELINE))
    scores = 0.5 + 0.1 * np.random.default_rng(3).standard_normal(BASELINE)
    scores[5] = 5.0  # an outlier inside the baseline is not judged
    signals = [s for row in rows(scores) for s in monitor.observe("line-1", "pcb", row)]
    assert signals == []
    [state] = monitor.state("line-1")
    assert state.limits_fixed and state.sample_count == BASELINE and state.baseline_size == BASELINE
    assert state.center_line == pytest.approx(scores.mean())
    assert state.sigma == pytest.approx(np.abs(np.diff(scores)).mean() / 1.128)
    assert state.upper_control_limit == pytest.approx(state.center_line + 3 * state.sigma)
    assert state.moving_range_ucl == pytest.approx(3.267 * state.moving_range_mean)


def test_a_2_sigma_shift_is_signalled_by_rule_2_at_the_ninth_shifted_point():
    monitor = SpcMonitor(SpcSettings(baseline_size=BASELINE, rules=[f"nelson{i}" for i in range(1, 9)]))
    signals = [s for row in rows(shifted_series(seed=11)) for s in monitor.observe("line-1", "pcb", row)]
    nelson2 = [s for s in signals if s.rule == "nelson2"]
    assert nelson2, "a +2 sigma shift for 40 points went unnoticed by rule 2"
    first = nelson2[0]
    assert first.sample_index >= BASELINE + 8  # 9 points are needed
    assert first.sample_index <= BASELINE + 20
    assert first.value > first.center_line and first.ucl > first.center_line > first.lcl
    assert first.inspection_id == f"insp-{first.sample_index}"
    assert first.time == T0 + timedelta(seconds=first.sample_index)
    assert first.signal_id == f"line-1/pcb/nelson2/{first.sample_index}"
    assert first.detail == "9 points in a row on the same side of the centre line"
    # No signal of any rule in the baseline, and none on the monitored points before the shift could show.
    assert min(s.sample_index for s in signals) >= BASELINE


def test_rule_2_detects_a_2_sigma_shift_after_the_average_run_length_of_theory():
    """Run until 9 in a row above the centre line, each with p = P(z > -2) = 0.977:
    ARL = (1 - p^9) / ((1 - p) p^9) = 10.1 points (estimated limits add a little spread)."""
    p = norm.cdf(2.0)
    expected = (1 - p**9) / ((1 - p) * p**9)
    delays = []
    for seed in range(300):
        chart = chart_from_history(
            "line-1",
            "pcb",
            rows(shifted_series(seed, after=80)),
            SpcSettings(baseline_size=BASELINE, rules=["nelson2"]),
        )
        first = min(s.sample_index for s in chart.signals if s.sample_index >= BASELINE)
        delays.append(first - BASELINE + 1)
    assert min(delays) == 9
    assert np.mean(delays) == pytest.approx(expected, abs=1.0)


def test_rebuilding_from_history_gives_the_same_chart_as_live_monitoring():
    scores = shifted_series(seed=5, after=70)
    defects = [i % 7 == 0 or 60 <= i < 70 for i in range(scores.size)]  # lot-6 all defective
    lots = [f"lot-{i // 10}" for i in range(scores.size)]
    history = rows(scores, defects, lots)
    settings = SpcSettings(baseline_size=BASELINE, p_baseline_lots=3, rules=["nelson1", "nelson2", "ewma", "pchart"])
    live = SpcMonitor(settings)
    per_row = [live.observe("line-1", "pcb", row) for row in history]
    live_signals = [s for signals in per_row for s in signals]

    rebuilt = chart_from_history("line-1", "pcb", history, settings)
    assert rebuilt.state() == live.state("line-1", "pcb")[0]
    assert list(rebuilt.signals) == live_signals
    assert {s.rule for s in live_signals} >= {"nelson1", "nelson2", "ewma", "pchart"}

    # A restarted bridge rebuilds, then carries on exactly as if it had never stopped.
    restarted = SpcMonitor(settings)
    restarted.rebuild("line-1", "pcb", history[:75])
    carried_on = [s for row in history[75:] for s in restarted.observe("line-1", "pcb", row)]
    assert carried_on == [s for signals in per_row[75:] for s in signals]
    assert carried_on
    assert restarted.state("line-1") == live.state("line-1")


def versioned(history, version):
    return [row._replace(model_version=version) for row in history]


def test_defective_parts_never_enter_the_baseline():
    scores = 0.5 + 0.1 * np.random.default_rng(4).standard_normal(BASELINE + 10)
    defects = [i < 10 for i in range(scores.size)]  # the first 10 parts judged defective
    scores[:10] = 3.0
    chart = chart_from_history("line-1", "pcb", rows(scores, defects), SpcSettings(baseline_size=BASELINE))
    assert chart.limits is not None and chart.limits.baseline_size == BASELINE
    assert chart.limits.center_line == pytest.approx(scores[10:].mean())
    assert not any(p.monitored for p in chart.points) and chart.signals.maxlen and not chart.signals


def test_a_new_model_version_starts_a_new_baseline():
    """A promotion changes the score scale: the old limits would flag every part of the new model."""
    settings = SpcSettings(baseline_size=BASELINE, rules=["we1", "we2", "we3", "we4", "ewma", "cusum"])
    old = 0.5 + 0.1 * np.random.default_rng(8).standard_normal(60)
    new = 2.0 + 0.3 * np.random.default_rng(9).standard_normal(60)  # another model, another scale
    history = versioned(rows(old), "v1") + versioned(rows(new, start=60), "v2")
    live = SpcMonitor(settings)
    signals = [s for row in history for s in live.observe("line-1", "pcb", row)]
    chart = live.chart("line-1", "pcb")
    assert (chart.model_version, chart.phase_start, chart.sample_count) == ("v2", 60, 120)
    assert chart.limits is not None and chart.limits.center_line == pytest.approx(new[:BASELINE].mean())
    assert [p.monitored for p in chart.points][60 : 60 + BASELINE] == [False] * BASELINE  # the new baseline
    assert not [s for s in signals if 60 <= s.sample_index < 60 + BASELINE]
    assert len(signals) <= 3, "in control under both models: at most a rare false signal"
    rebuilt = chart_from_history("line-1", "pcb", history, settings)
    assert rebuilt.state() == chart.state() and list(rebuilt.signals) == signals
    # A rollback is a change of version too.
    back = versioned(rows(old[:5], start=120), "v1")
    live.chart("line-1", "pcb").extend(back)
    assert chart.model_version == "v1" and chart.limits is None and chart.phase_start == 120


@pytest.mark.parametrize("rule", ["ewma", "cusum"])
def test_ewma_and_cusum_see_a_1_sigma_shift_long_before_the_3_sigma_limit(rule):
    """Montgomery §9: a 1 sigma shift takes ~44 points to cross 3 sigma, ~10 for CUSUM (k 0.5, h 5) and
    EWMA (lambda 0.2, L 3)."""
    delays = {rule: [], "we1": []}
    for seed in range(60):
        for r in delays:
            chart = chart_from_history(
                "line-1",
                "pcb",
                rows(shifted_series(seed, after=300, shift=1.0)),
                SpcSettings(baseline_size=BASELINE, rules=[r]),
            )
            fired = [s.sample_index for s in chart.signals if s.rule == r and s.sample_index >= BASELINE]
            delays[r].append((min(fired) if fired else BASELINE + 300) - BASELINE + 1)
    assert np.median(delays[rule]) < 16 and np.median(delays["we1"]) > 2 * np.median(delays[rule])
    point = chart.points[-1]
    assert point.monitored and point.ewma is not None and point.cusum_upper is not None and point.ewma_limit > 0


def test_violations_are_the_rules_firing_now_with_when_their_streak_began():
    monitor = SpcMonitor(SpcSettings(baseline_size=BASELINE, rules=["nelson2"]))
    shifted = rows(shifted_series(seed=11, after=20))
    signals = [s for row in shifted for s in monitor.observe("line-1", "pcb", row)]
    [violation] = monitor.state("line-1")[0].violations
    assert violation.rule == "nelson2" and violation.detail.startswith("9 points")
    assert violation.sample_index == signals[0].sample_index
    assert violation.detected_at.ToDatetime(tzinfo=UTC) == signals[0].time
    assert all(s.rule == "nelson2" for s in signals) and signals[-1].sample_index == BASELINE + 19
    for row in rows([0.2] * 3, start=len(shifted)):  # back below the centre line
        monitor.observe("line-1", "pcb", row)
    assert list(monitor.state("line-1")[0].violations) == []


def test_a_lot_beyond_its_p_chart_limit_is_signalled_when_the_next_lot_starts():
    monitor = SpcMonitor(SpcSettings(baseline_size=BASELINE, p_baseline_lots=5))
    scores = 0.5 + 0.1 * np.random.default_rng(1).standard_normal(800)
    defects = [i % 50 == 0 for i in range(500)] + [i % 5 == 0 for i in range(100)] + [False] * 200
    lots = [f"lot-{i // 100}" for i in range(600)] + ["lot-6"] * 200
    p_signals = [
        s for row in rows(scores, defects, lots) for s in monitor.observe("line-1", "pcb", row) if s.rule == "pchart"
    ]
    # Baseline: 5 lots of 100 with 2 defects each -> p-bar = 0.02, UCL(100) = 0.02 + 3 sqrt(0.02 * 0.98 / 100) = 0.062
    [signal] = p_signals
    assert (signal.lot, signal.value, signal.sample_index) == ("lot-5", 0.2, 599)
    assert signal.center_line == pytest.approx(0.02)
    assert signal.ucl == pytest.approx(0.062)
    assert signal.lcl == 0.0
    assert "lot-5 20/100 defective" in signal.detail
    [state] = monitor.state("line-1")
    assert state.defect_rate_center_line == pytest.approx(0.02)
    lot5, lot6 = state.lots[5], state.lots[6]
    assert (lot5.lot, lot5.inspected, lot5.defective, lot5.closed) == ("lot-5", 100, 20, True)
    assert lot5.upper_control_limit == pytest.approx(0.062)
    assert (lot6.inspected, lot6.closed) == (200, False)
    assert lot6.upper_control_limit == pytest.approx(0.02 + 3 * np.sqrt(0.02 * 0.98 / 200))


def test_observe_verdict_charts_an_inspection_of_the_topic():
    monitor = SpcMonitor(SpcSettings(baseline_size=2))
    for i, score in enumerate([0.40, 0.50, 0.45, 5.0]):
        frame = Frame(frame_id=f"f{i}", line_id="line-2", product_type="pcb", work_order="wo-7")
        frame.capture_time.FromDatetime(T0 + timedelta(seconds=i))
        verdict = InspectionVerdict(
            inspection_id=f"i{i}",
            frame=frame,
            score=score,
            threshold=1.0,
            verdict=Verdict.VERDICT_DEFECT if score > 1 else Verdict.VERDICT_PASS,
        )
        signals = monitor.observe_verdict(verdict)
    assert [(s.rule, s.sample_index, s.inspection_id, s.lot) for s in signals] == [("we1", 3, "i3", "wo-7")]
    [state] = monitor.state("line-2", "pcb")
    assert isinstance(state, SpcState)
    assert (state.sample_count, state.last_score, state.lots[0].defective) == (4, 5.0, 1)
    assert state.updated_at.ToDatetime(tzinfo=UTC) == T0 + timedelta(seconds=3)
    with pytest.raises(ValueError, match="has no verdict"):
        monitor.observe_verdict(InspectionVerdict(inspection_id="bad", frame=frame, score=0.5))
    assert monitor.state("line-2")[0].sample_count == 4


def test_one_chart_per_product_type_and_state_filters():
    monitor = SpcMonitor(SpcSettings(baseline_size=2))
    for product in ("pcb", "brushed_metal"):
        for row in rows([0.1, 0.2, 0.3]):
            monitor.observe("line-1", product, row)
    monitor.observe("line-9", "pcb", rows([0.1])[0])
    assert [s.product_type for s in monitor.state("line-1")] == ["brushed_metal", "pcb"]
    assert [s.product_type for s in monitor.state("line-1", "pcb")] == ["pcb"]
    assert monitor.state("line-1", "") == monitor.state("line-1")
    assert monitor.state("no-such-line") == []
    assert not monitor.state("line-9")[0].limits_fixed


def test_a_bad_row_is_refused_by_name_and_changes_nothing():
    chart = chart_from_history("line-1", "pcb", rows([0.1, 0.3, 0.2]), SpcSettings(baseline_size=2))
    before = chart.state()
    good = rows([0.25], start=3)[0]
    for bad, message in [
        (good._replace(score=float("nan")), "score must be a finite number"),
        (good._replace(score="0.3"), "score must be a finite number"),
        (good._replace(time=T0.replace(tzinfo=None)), "has no time zone"),
        (good._replace(time="2026-11-02"), "time must be a datetime"),
        (good._replace(verdict="maybe"), "verdict must be 'defect', 'pass' or a bool"),
    ]:
        with pytest.raises(ValueError, match=message):
            chart.extend([good, bad])  # the good row before it is not taken either
        assert chart.state() == before
    with pytest.raises(ValueError, match="needs a line id and a product type"):
        SpcMonitor().observe("", "pcb", good)


def test_a_constant_baseline_is_extended_until_the_scores_vary():
    chart = chart_from_history("line-1", "pcb", rows([0.3] * 5 + [0.4, 0.3]), SpcSettings(baseline_size=5))
    assert chart.limits is not None and chart.limits.baseline_size == 6
    assert chart.limits.center_line == pytest.approx(1.9 / 6)


def test_only_the_enabled_rules_signal_and_the_history_is_bounded():
    settings = SpcSettings(baseline_size=BASELINE, rules=["nelson1"], history_size=40)
    chart = chart_from_history("line-1", "pcb", rows(shifted_series(seed=2, after=100)), settings)
    assert {s.rule for s in chart.signals} == {"nelson1"}
    assert len(chart.points) == 40 and chart.points[-1].sample_index == BASELINE + 99
    assert chart.sample_count == BASELINE + 100


def test_a_rebase_replaces_the_limits_from_its_effective_time_live_and_rebuilt_alike():
    from diffqc.spc import IndividualsChart, Rebase

    settings = SpcSettings(baseline_size=BASELINE, rules=["we1", "we2", "we3", "we4"])
    scores = 0.5 + 0.1 * np.random.default_rng(12).standard_normal(120)
    scores[60:] += 0.5  # the process moved; an engineer accepts the new level from sample 80 on
    history = versioned(rows(scores), "v1")
    new_level = IndividualsChart(center_line=1.0, sigma=0.1, moving_range_mean=0.1128, baseline_size=40)
    rebase = Rebase("v1", new_level, T0 + timedelta(seconds=80))
    other_version = Rebase("v0", IndividualsChart(9.0, 1.0, 1.128, 40), T0 + timedelta(seconds=70))
    live = SpcMonitor(settings)
    signals = [s for row in history[:75] for s in live.observe("line-1", "pcb", row)]
    live.rebase("line-1", "pcb", rebase)  # read by the bridge before the point it first judges
    live.rebase("line-1", "pcb", other_version)  # another model version's: never applied
    signals += [s for row in history[75:] for s in live.observe("line-1", "pcb", row)]
    chart = live.chart("line-1", "pcb")
    assert chart.limits == new_level and chart.rebased_at == 80 and chart.rebases == []
    assert any(60 <= s.sample_index < 80 for s in signals), "the shift is signalled against the old limits"
    assert not [s for s in signals if s.sample_index >= 80 and s.ucl != new_level.ucl]
    rebuilt = chart_from_history("line-1", "pcb", history, settings, [other_version, rebase])
    assert list(rebuilt.signals) == signals and rebuilt.state() == chart.state()
