"""Drift trackers on score streams shaped like the shipped detector's (tests/drift/streams.py): silent on
unchanged good parts, an event within a bounded number of parts of a real shift, one event per episode,
a new reference per model version, the same result live and rebuilt from history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from diffqc.drift import RECALIBRATE, RETRAIN, DriftMonitor, DriftSample, DriftTracker, drift_from_history
from diffqc.settings import DriftSettings
from diffqc.v1.scoring_pb2 import VERDICT_UNSPECIFIED
from tests.drift.streams import T0, good_parts
from tests.helpers.verdicts import verdict

DEFAULTS = DriftSettings()
# The reference, then one full window: the first check runs at the last of these parts.
WARM = DEFAULTS.reference_size + DEFAULTS.window


def _warm(seed: int, settings: DriftSettings = DEFAULTS) -> tuple[DriftTracker, np.random.Generator]:
    rng = np.random.default_rng(seed)
    tracker = DriftTracker("L1", "pcb", settings)
    assert tracker.extend(good_parts(rng, WARM + 50)) == []
    return tracker, rng


def test_no_event_on_2000_unchanged_good_parts_across_20_seeds():
    checks = 0
    for seed in range(20):
        tracker = DriftTracker("L1", "pcb", DEFAULTS)
        events = tracker.extend(good_parts(np.random.default_rng(seed), 2000))
        assert events == [], f"seed {seed}: {events}"
        state = tracker.state()
        assert state.status == "stable" and state.drifting_since is None
        assert [t.quantity for t in state.last_check.tests] == [
            "score",
            "concentration",
            "pixel",
            "process",
            "structural",
        ]
        checks += (2000 - WARM) // DEFAULTS.check_every + 1
    assert checks == 20 * 33


# A 1-sigma shift fills the window by ``window`` parts, a 2-sigma one half of it suffices; then one more check confirms.
BOUNDS = [(1.0, DEFAULTS.window + DEFAULTS.check_every), (2.0, DEFAULTS.window // 2 + DEFAULTS.check_every)]


@pytest.mark.parametrize(("shift", "bound"), BOUNDS)
def test_a_brightness_like_shift_raises_one_event_within_a_bounded_number_of_parts(shift, bound):
    delays = []
    for seed in range(20):
        tracker, rng = _warm(seed)
        start = tracker.sample_count
        events = tracker.extend(good_parts(rng, 1000, start=start, shift=shift))
        assert len(events) == 1, f"seed {seed}: {len(events)} events"  # one per episode, not one per check
        [event] = events
        delays.append(event.sample_index - start + 1)
        assert event.quantity in ("pixel", "score") and "pixel" in event.quantities
        assert event.recommendation == RETRAIN  # a component moved: the parts look different
        assert event.p_value < DEFAULTS.alpha and event.psi > DEFAULTS.psi_threshold
        assert (event.reference_size, event.window_size, event.model_version) == (200, 200, "1")
        assert tracker.state().status == "drifting" and tracker.state().drifting_since == event.time
    assert max(delays) <= bound, delays


def test_one_confirming_check_raises_the_event_a_check_earlier():
    events = {}
    for confirm in (1, 2):
        rng = np.random.default_rng(9)
        tracker = DriftTracker("L1", "pcb", DEFAULTS.model_copy(update={"confirm_checks": confirm}))
        tracker.extend(good_parts(rng, WARM + 50))
        [events[confirm]] = tracker.extend(good_parts(rng, 600, start=tracker.sample_count, shift=2.0))
    assert events[2].sample_index == events[1].sample_index + DEFAULTS.check_every
    with pytest.raises(ValueError, match="confirm_checks"):
        DriftSettings(confirm_checks=0)


def test_a_shift_of_the_score_alone_proposes_recalibration():
    tracker, rng = _warm(3)
    [event] = tracker.extend(good_parts(rng, 400, start=tracker.sample_count, offset=0.75))
    assert event.quantities == ("score",) and event.recommendation == RECALIBRATE


def test_the_state_stays_drifting_until_a_check_finds_the_parts_back_then_a_new_episode_fires_again():
    tracker, rng = _warm(4)
    [first] = tracker.extend(good_parts(rng, 600, start=tracker.sample_count, shift=1.5))
    # Back to normal: the window refills with unshifted parts and a check finds nothing significant.
    assert tracker.extend(good_parts(rng, 400, start=tracker.sample_count)) == []
    assert tracker.state().status == "stable" and tracker.state().drifting_since is None
    [second] = tracker.extend(good_parts(rng, 600, start=tracker.sample_count, shift=1.5))
    assert second.sample_index > first.sample_index and second.event_id != first.event_id
    assert [e.event_id for e in tracker.state().events] == [first.event_id, second.event_id]
    assert first.event_id == f"L1/pcb/drift/{first.sample_index}"


def test_defective_parts_are_neither_reference_nor_window():
    rng = np.random.default_rng(5)
    rows = []
    for i, part in enumerate(good_parts(rng, 1500)):
        rows.append(part)
        if i % 10 == 0:  # a defect with a far higher score every tenth part
            rows.append(part._replace(score=part.score + 5, components={"pixel": 9.0}, verdict="defect"))
    tracker = DriftTracker("L1", "pcb", DEFAULTS)
    assert tracker.extend(rows) == []
    assert tracker.state().good_parts == 1500 and tracker.sample_count == 1650


def test_a_new_model_version_starts_a_new_reference():
    tracker, rng = _warm(6)
    [event] = tracker.extend(good_parts(rng, 400, start=tracker.sample_count, shift=1.5))
    # Version 2 scores on its own scale (here: the shifted one); its first good parts are its reference.
    new = good_parts(rng, 100, start=tracker.sample_count, shift=1.5, version="2")
    assert tracker.extend(new) == []
    state = tracker.state()
    assert (state.model_version, state.status, state.good_parts, state.reference_count) == ("2", "collecting", 100, 100)
    assert state.last_check is None and state.events == (event,)  # the old phase's events stay listed
    assert tracker.extend(good_parts(rng, 1500, start=tracker.sample_count, shift=1.5, version="2")) == []
    assert tracker.state().status == "stable"
    # Rows without a version (an older producer) stay in the current phase.
    tracker.extend(good_parts(rng, 10, start=tracker.sample_count, shift=1.5, version=None))
    assert tracker.state().good_parts == 1610


def test_a_component_most_parts_lack_is_not_tested():
    settings = DriftSettings(reference_size=20, window=20, check_every=10)
    rng = np.random.default_rng(7)
    tracker = DriftTracker("L1", "pcb", settings)
    tracker.extend(good_parts(rng, 20))
    later = [p._replace(components={}) for p in good_parts(rng, 20, start=20)]  # scoring stopped reporting them
    tracker.extend(later)
    assert [t.quantity for t in tracker.state().last_check.tests] == ["score"]


def test_live_one_by_one_and_rebuilt_from_history_agree():
    rng = np.random.default_rng(8)
    rows = good_parts(rng, 700) + good_parts(rng, 400, start=700, shift=1.5)
    monitor = DriftMonitor(DEFAULTS)
    live = [e for row in rows for e in monitor.observe("L1", "pcb", row)]
    rebuilt = drift_from_history("L1", "pcb", [tuple(r) for r in rows], DEFAULTS)
    assert len(live) == 1 and list(rebuilt.events) == live
    assert monitor.state("L1") == [rebuilt.state()]
    assert monitor.state("L1", "other") == [] and monitor.state("L2") == []
    # A restarted process carries on: an ongoing drift raises nothing new.
    restarted = DriftMonitor(DEFAULTS)
    restarted.rebuild("L1", "pcb", rows)
    assert restarted.observe("L1", "pcb", good_parts(rng, 1, start=1100, shift=1.5)[0]) == []


def test_verdicts_of_the_topic_feed_it_with_their_component_scores():
    settings = DriftSettings(reference_size=20, window=20, check_every=10)
    monitor = DriftMonitor(settings)
    events = []
    for i in range(70):  # the reference, 20 unchanged parts, then 30 shifted: two checks in a row see them
        shifted = i >= 40
        v = verdict(
            score=0.5 + 0.01 * (i % 7) + (1.0 if shifted else 0.0), defect=False, captured=T0 + timedelta(seconds=i)
        )
        v.component_scores.update({"pixel": 0.1 * (i % 5) + (2.0 if shifted else 0.0), "process": 0.0})
        events += monitor.observe_verdict(v)
    [event] = events
    assert (event.line_id, event.product_type, event.model_version) == ("L1", "pcb", "1")
    assert set(event.quantities) == {"score", "pixel"} and event.recommendation == RETRAIN
    assert event.inspection_id == v.inspection_id and event.time == T0 + timedelta(seconds=69)
    unspecified = verdict()
    unspecified.verdict = VERDICT_UNSPECIFIED
    with pytest.raises(ValueError, match="has no verdict"):
        monitor.observe_verdict(unspecified)
    no_time = verdict(defect=False)
    no_time.frame.ClearField("capture_time")
    with pytest.raises(ValueError, match="its frame has no capture_time"):
        monitor.observe_verdict(no_time)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (DriftSample(datetime(2026, 1, 1), 1.0, "pass"), "has no time zone"),
        (DriftSample("yesterday", 1.0, "pass"), "sample time must be a datetime"),
        (DriftSample(T0, float("nan"), "pass"), "sample score must be finite"),
        (DriftSample(T0, "1.0", "pass"), "sample score must be a number"),
        (DriftSample(T0, 1.0, "pass", {"pixel": float("inf")}), "component score 'pixel' must be finite"),
        (DriftSample(T0, 1.0, "pass", {"score": 1.0}), "may not be called 'score'"),
        (DriftSample(T0, 1.0, "maybe"), "verdict must be 'defect', 'pass' or a bool"),
    ],
)
def test_a_bad_row_is_refused_naming_the_problem_and_changes_nothing(row, message):
    tracker = DriftTracker("L1", "pcb", DEFAULTS)
    good = DriftSample(datetime(2026, 1, 1, tzinfo=UTC), 1.0, "pass")
    with pytest.raises(ValueError, match=message):
        tracker.extend([good, row])
    assert tracker.sample_count == 0 and tracker.state().reference_count == 0


def test_a_tracker_needs_a_line_and_a_product():
    with pytest.raises(ValueError, match="a tracker needs a line id and a product type"):
        DriftTracker("", "pcb")
