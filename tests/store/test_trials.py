"""Trials of a candidate beside production on a real PostgreSQL: paired scores, the comparison and its
recommendation, labelled recall/FPR, canaries and their guard."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from diffqc.store import db, model_registry, trials
from diffqc.store.engine import make_engine
from diffqc.store.inspections import register_model_version
from diffqc.store.labels import set_label
from diffqc.store.migrate import upgrade
from diffqc.store.model_registry import RegistryError
from diffqc.store.models import AuditEntry, LabelKind, ModelCanary
from tests.helpers.inspections import add_inspection, add_product

PRODUCT = "pcb"


@pytest.fixture
def engine(postgres_url):
    engine = make_engine(postgres_url)
    upgrade(engine)
    add_product(engine, PRODUCT, "1")  # production
    with db.session(engine, write=True) as session:
        register_model_version(session, PRODUCT, "2", "file:///models/pcb/2", 0.5, activate=False)
        model_registry.promote(session, PRODUCT, "2", "alice")  # shadow
    yield engine
    engine.dispose()


def _pairs(engine, flags: list[tuple[bool, bool]], canary: bool = False, line: str = "L1", start: int = 0) -> None:
    """Paired scores of frames ``start``..: (production flags it, candidate flags it) per frame."""
    with db.session(engine, write=True) as session:
        trials.record(
            session,
            [
                {
                    "frame_id": f"frame-i{start + i}",
                    "product_type": PRODUCT,
                    "line_id": line,
                    "production_version": "1",
                    "production_score": 0.9 if prod else 0.1,
                    "production_defect": prod,
                    "candidate_version": "2",
                    "candidate_score": 0.9 if cand else 0.1,
                    "candidate_defect": cand,
                    "canary": canary,
                }
                for i, (prod, cand) in enumerate(flags)
            ],
        )


def _compare(engine) -> trials.Comparison:
    with db.session(engine) as session:
        return trials.compare(session, PRODUCT, "2")


def test_the_comparison_pairs_frames_and_recommends_by_alarm_rate(engine):
    _pairs(engine, [(False, False)] * 50 + [(True, True)] * 2)
    few = _compare(engine)
    assert (few.frames, few.recommendation) == (52, "collect")
    _pairs(engine, [(False, False)] * 50, start=52)
    _pairs(engine, [(False, False)] * 50, start=52)  # a redelivered frame's pair is stored once
    same = _compare(engine)
    assert (same.frames, same.agreement, same.recommendation) == (102, 1.0, "promote")
    assert sum(same.candidate_histogram) == sum(same.production_histogram) == 102
    # Scores over the threshold 0.5: 0.1 -> 0.2 (bin [0.2, 0.3)), 0.9 -> 1.8 (bin [1.8, 1.9)).
    assert same.candidate_histogram[2] == 100 and same.candidate_histogram[18] == 2
    _pairs(engine, [(False, True)] * 3, start=102)
    noisy = _compare(engine)
    assert noisy.recommendation == "reject" and "more alarms" in noisy.reason
    assert noisy.alarms.candidate == pytest.approx(5 / 105) and noisy.alarms.production == pytest.approx(2 / 105)
    assert noisy.agreement == pytest.approx(102 / 105)


def test_labels_give_recall_and_fpr_and_a_candidate_that_misses_labelled_defects_is_rejected(engine):
    # Inspections judged by production; inspectors labelled two real defects and one false alarm.
    for i, score in enumerate([0.9, 0.9, 0.9]):
        add_inspection(engine, None, f"i{i}", score, version="1", index=i)
    with db.session(engine, write=True) as session:
        set_label(session, "i0", LabelKind.CONFIRMED_DEFECT, "scratch", None, "qe")
        set_label(session, "i1", LabelKind.CONFIRMED_DEFECT, "scratch", None, "qe")
        set_label(session, "i2", LabelKind.FALSE_ALARM, None, None, "qe")
    _pairs(engine, [(True, True), (True, False), (True, False)] + [(False, False)] * 100)
    result = _compare(engine)
    assert (result.production_labelled.recall, result.production_labelled.false_positive_rate) == (1.0, 1.0)
    assert (result.candidate_labelled.recall, result.candidate_labelled.false_positive_rate) == (0.5, 0.0)
    assert (result.candidate_labelled.defective, result.candidate_labelled.good) == (2, 1)
    assert result.recommendation == "reject" and "fewer labelled defects" in result.reason


def test_a_canary_needs_a_shadow_version_and_one_per_line(engine):
    with db.session(engine, write=True) as session:
        with pytest.raises(RegistryError, match="'1' of 'pcb' is production: only a shadow version"):
            trials.start_canary(session, PRODUCT, "1", "L1", 0.1, "alice")
        with pytest.raises(RegistryError, match=r"share must be in \(0, 0.5\]"):
            trials.start_canary(session, PRODUCT, "2", "L1", 0.9, "alice")
        trials.start_canary(session, PRODUCT, "2", "L1", 0.1, "alice")
        trials.start_canary(session, PRODUCT, "2", "L2", 0.2, "alice")
        with pytest.raises(RegistryError, match="line 'L1' already runs a canary"):
            trials.start_canary(session, PRODUCT, "2", "L1", 0.1, "alice")
    with db.session(engine, write=True) as session:
        assert trials.stop_canary(session, PRODUCT, "L1", "bob").version == "2"
        assert [c.line_id for c in trials.open_canaries(session, PRODUCT)] == ["L2"]
        with pytest.raises(RegistryError, match="line 'L1' runs no canary"):
            trials.stop_canary(session, PRODUCT, "L1", "bob")
    with db.session(engine, write=True) as session:  # a promotion ends every canary of the product
        model_registry.promote(session, PRODUCT, "2", "alice")
        assert trials.open_canaries(session, PRODUCT) == []
        actions = session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()
    assert actions.count("model.canary.start") == 2 and "model.canary.stop" in actions


def test_the_guard_rolls_back_a_canary_that_raises_too_many_alarms_only_after_min_frames(engine):
    with db.session(engine, write=True) as session:
        trials.start_canary(session, PRODUCT, "2", "L1", 0.1, "alice", max_excess_alarm_rate=0.06, min_frames=20)

    def guard() -> ModelCanary | None:
        with db.session(engine, write=True) as session:
            return trials.guard_canary(session, PRODUCT, "L1")

    _pairs(engine, [(False, True)] * 5 + [(False, False)] * 10, canary=True)
    assert guard() is None  # 15 frames: too few to judge
    _pairs(engine, [(False, False)] * 80, canary=True, start=15)
    _pairs(engine, [(False, True)] * 50, line="L2", start=95)  # another line's shadow pairs do not count
    assert guard() is None  # 5 of 95 (5.3 %) against 0 %: within the margin of 6 points
    _pairs(engine, [(False, True)] * 5, canary=True, start=145)
    ended = guard()
    assert ended is not None and ended.end_reason.startswith("automatic rollback: the candidate raised alarms on 10.0%")
    with db.session(engine) as session:
        assert trials.open_canaries(session, PRODUCT) == []
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "model.canary.rollback")).one()
    assert entry.actor == trials.GUARD and entry.details["frames"] == 100
