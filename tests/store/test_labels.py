"""Inspection labels on PostgreSQL (and SQLite): one current label per inspection, stored with who and
when and audited with the label it replaced; a kind must fit the verdict and a defect class must be a
safe folder name, and bad input is refused naming the problem, leaving nothing behind."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from diffqc.store import audit, db, labels
from diffqc.store.engine import make_engine
from diffqc.store.migrate import upgrade
from diffqc.store.models import AuditEntry, Label, LabelKind
from tests.helpers.inspections import add_inspection, add_product


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request, tmp_path):
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else f"sqlite:///{tmp_path}/qc.db"
    engine = make_engine(url)
    upgrade(engine)
    add_product(engine, "pcb")
    add_product(engine, "can")
    add_inspection(engine, None, "i-defect", 0.8, index=1)  # threshold 0.5: a defect verdict
    add_inspection(engine, None, "i-pass", 0.3, index=2)
    yield engine
    engine.dispose()


def _label(engine, inspection: str, kind: str, defect_class: str | None = None, note: str = "", actor: str = "anna"):
    with db.session(engine, write=True) as session:
        return labels.set_label(session, inspection, kind, defect_class, note, actor, {"key_id": "k1"})


def _count(engine, model) -> int:
    with db.session(engine) as session:
        return session.scalar(select(func.count()).select_from(model))


def _audited(engine) -> list[AuditEntry]:
    with db.session(engine) as session:
        assert audit.verify_chain(session)[1] is None
        return list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


def test_a_label_is_stored_with_who_and_when_and_audited(engine):
    change = _label(engine, "i-defect", "confirmed_defect", "scratch", "  deep scratch near J3\n")
    label = change.labelled.label
    assert (label.inspection_id, label.kind, label.defect_class, label.note) == (
        "i-defect",
        LabelKind.CONFIRMED_DEFECT,
        "scratch",
        "deep scratch near J3",
    )
    assert (label.labelled_by, label.labelled_at.tzinfo is not None, change.changed, change.replaced) == (
        "anna",
        True,
        True,
        None,
    )
    (entry,) = _audited(engine)
    assert (entry.actor, entry.action, entry.subject) == ("anna", "inspection.label", "i-defect")
    assert entry.details == {
        "key_id": "k1",
        "kind": "confirmed_defect",
        "defect_class": "scratch",
        "note": "deep scratch near J3",
        "frame_id": "frame-i-defect",
        "line_id": "L1",
        "product_type": "pcb",
        "verdict": "defect",
        "score": 0.8,
        "threshold": 0.5,
        "model_version": "1",
        "replaced": None,
    }


def test_relabelling_replaces_the_label_and_the_audit_log_keeps_the_one_it_replaced(engine):
    first = _label(engine, "i-defect", "confirmed_defect", "scratch").labelled.label
    second = _label(engine, "frame-i-defect", "false_alarm", None, "dust on the lens", actor="ben")  # by frame id
    assert second.replaced == {
        "kind": "confirmed_defect",
        "defect_class": "scratch",
        "note": "",
        "labelled_by": "anna",
        "labelled_at": first.labelled_at.isoformat(),
    }
    with db.session(engine) as session:
        (label,) = session.scalars(select(Label)).all()
        assert (label.kind, label.defect_class, label.note, label.labelled_by) == (
            LabelKind.FALSE_ALARM,
            None,
            "dust on the lens",
            "ben",
        )
    assert [e.details["kind"] for e in _audited(engine)] == ["confirmed_defect", "false_alarm"]

    again = _label(engine, "i-defect", "false_alarm", None, "dust on the lens", actor="carl")  # the same label
    assert (again.changed, again.labelled.label.labelled_by) == (False, "ben")
    assert _count(engine, AuditEntry) == 2


@pytest.mark.parametrize(
    "inspection, kind, problem",
    [
        (
            "i-pass",
            "false_alarm",
            "kind false_alarm does not fit inspection 'i-pass': it passed (score 0.3 <= "
            "threshold 0.5); label it missed_defect or confirmed_good",
        ),
        ("i-pass", "confirmed_defect", "label it missed_defect or confirmed_good"),
        (
            "i-defect",
            "missed_defect",
            "kind missed_defect does not fit inspection 'i-defect': it was judged "
            "defective (score 0.8 > threshold 0.5); label it confirmed_defect or false_alarm",
        ),
        ("i-defect", "confirmed_good", "label it confirmed_defect or false_alarm"),
        (
            "i-defect",
            "looks_fine",
            "kind 'looks_fine' is not one of confirmed_defect, false_alarm, missed_defect, confirmed_good",
        ),
    ],
)
def test_a_kind_that_does_not_fit_the_verdict_is_refused_naming_why(engine, inspection, kind, problem):
    with pytest.raises(labels.InvalidLabel) as refused:
        _label(engine, inspection, kind, "scratch")
    assert problem in str(refused.value)
    assert (_count(engine, Label), _count(engine, AuditEntry)) == (0, 0)


@pytest.mark.parametrize(
    "kind, defect_class, note, problem",
    [
        ("confirmed_defect", None, "", "a confirmed_defect label needs a defect_class"),
        ("confirmed_defect", "", "", "a confirmed_defect label needs a defect_class"),
        ("confirmed_defect", "Scratch", "", "defect_class 'Scratch' must be 1-40 characters of a-z, 0-9 and _"),
        ("confirmed_defect", "../../etc", "", "defect_class '../../etc' must be 1-40 characters"),
        ("confirmed_defect", "bent pin", "", "defect_class 'bent pin' must be 1-40 characters"),
        ("confirmed_defect", "x" * 41, "", "must be 1-40 characters"),
        ("confirmed_defect", "scr\x00", "", "must be 1-40 characters"),
        ("confirmed_defect", "good", "", "defect_class 'good' is the folder of good parts"),
        ("false_alarm", "dust", "", "defect_class is for confirmed_defect and missed_defect labels"),
        ("false_alarm", None, "n" * 1001, "note is 1001 characters long, over the limit of 1000"),
        ("false_alarm", None, "bell\x07", "note contains control characters"),
    ],
)
def test_a_bad_defect_class_or_note_is_refused_naming_it(engine, kind, defect_class, note, problem):
    with pytest.raises(labels.InvalidLabel) as refused:
        _label(engine, "i-defect", kind, defect_class, note)
    assert problem in str(refused.value)
    assert (_count(engine, Label), _count(engine, AuditEntry)) == (0, 0)


def test_an_unknown_inspection_is_named(engine):
    with pytest.raises(labels.InspectionNotFound, match="no inspection with inspection id or frame id 'nope'"):
        _label(engine, "nope", "false_alarm")
    with db.session(engine) as session, pytest.raises(labels.InspectionNotFound):
        labels.get_label(session, "nope")


def test_labels_are_listed_newest_first_by_line_product_and_inspection(engine):
    add_inspection(engine, None, "i-L2", 0.9, line="L2", index=3)
    add_inspection(engine, None, "i-can", 0.1, product="can", index=4)
    _label(engine, "i-defect", "false_alarm")
    _label(engine, "i-L2", "confirmed_defect", "dent")
    _label(engine, "i-can", "missed_defect", "dent")
    with db.session(engine) as session:
        assert labels.get_label(session, "i-pass") is None
        assert labels.get_label(session, "i-can").label.kind is LabelKind.MISSED_DEFECT

        def ids(**filters) -> list[str]:
            return [row.inspection.id for row in labels.list_labels(session, **filters)]

        assert ids() == ["i-can", "i-L2", "i-defect"]
        assert ids(line_id="L1") == ["i-can", "i-defect"]
        assert ids(product_type="pcb") == ["i-L2", "i-defect"]
        assert ids(inspection_ids=["i-defect", "i-pass", "i-L2"]) == ["i-L2", "i-defect"]
        assert ids(limit=1) == ["i-can"]
        assert labels.newest_labelled_model_version(session, "can") == "1"
        assert labels.newest_labelled_model_version(session, "nothing") is None


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)  # SQLite serializes every write
def test_concurrent_labels_of_one_inspection_leave_one_label_and_an_unbroken_history(engine):
    barrier, errors = threading.Barrier(2), []

    def label(kind: str, actor: str) -> None:
        barrier.wait()
        try:
            _label(engine, "i-defect", kind, "scratch" if kind == "confirmed_defect" else None, actor=actor)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=label, args=a) for a in (("confirmed_defect", "anna"), ("false_alarm", "ben"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    first, second = _audited(engine)
    assert first.details["replaced"] is None
    assert second.details["replaced"]["kind"] == first.details["kind"]  # the second saw the first
    with db.session(engine) as session:
        (label,) = session.scalars(select(Label)).all()
    assert label.kind.value == second.details["kind"]
