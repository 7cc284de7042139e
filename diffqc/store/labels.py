"""Inspection labels: an inspector's judgement of a verdict, the truth that exports and recalibration use.

A defect verdict is labelled ``confirmed_defect`` or ``false_alarm``, a pass ``confirmed_good`` or
``missed_defect`` (a part that passed and was later found bad); any other pairing is refused naming
why, and so is any label of a part that was not inspected (NOT_INSPECTED: there is no verdict to
judge). The part is defective for ``confirmed_defect`` and ``missed_defect``, good for the other two.
A defect label names its ``defect_class``, which becomes a folder name on export, so it must be
``[a-z0-9_]{1,40}`` (and not ``good``). Each inspection has one current label: relabelling replaces
it, and every change is audited in the caller's transaction with the label it replaced, so the
audit log keeps the history (diffqc.store.audit). Writing the same label again changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from diffqc.core import clock
from diffqc.store import audit
from diffqc.store.models import Frame, Inspection, Label, LabelKind, Verdict

DEFECT_CLASS = re.compile(r"[a-z0-9_]{1,40}")
GOOD_FOLDER = "good"  # the MVTec folder of good parts: no defect class may take its name
MAX_NOTE_LENGTH = 1000
MAX_ACTOR_LENGTH = 100  # an API key's name
MAX_LIST = 1000
CONTROL_BUT_LINE_BREAKS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # a note may have lines and tabs

KINDS_OF_VERDICT = {
    Verdict.DEFECT: (LabelKind.CONFIRMED_DEFECT, LabelKind.FALSE_ALARM),
    Verdict.PASS: (LabelKind.MISSED_DEFECT, LabelKind.CONFIRMED_GOOD),
}
DEFECTIVE_KINDS = frozenset({LabelKind.CONFIRMED_DEFECT, LabelKind.MISSED_DEFECT})


class InspectionNotFound(LookupError):
    """No inspection has this inspection id or frame id."""


class InvalidLabel(ValueError):
    """The label does not fit the verdict, or its defect class or note is malformed; the message says which."""


@dataclass(frozen=True)
class LabelledInspection:
    label: Label
    inspection: Inspection
    frame: Frame


@dataclass(frozen=True)
class LabelChange:
    labelled: LabelledInspection
    changed: bool  # False: the same label was there already (nothing written, nothing audited)
    replaced: dict[str, Any] | None  # the label it replaced, as audited


def is_defective(kind: LabelKind) -> bool:
    """The truth a label gives: True when the part is bad."""
    return LabelKind(kind) in DEFECTIVE_KINDS


def _kind(value: LabelKind | str) -> LabelKind:
    try:
        return LabelKind(value)
    except ValueError:
        raise InvalidLabel(f"kind {str(value)[:40]!r} is not one of {', '.join(k.value for k in LabelKind)}") from None


def check_label(
    inspection: Inspection, kind: LabelKind | str, defect_class: str | None, note: str | None
) -> tuple[LabelKind, str | None, str]:
    """The label's kind, defect class and note as stored; InvalidLabel naming the first problem."""
    kind = _kind(kind)
    verdict = Verdict(inspection.verdict)
    if verdict not in KINDS_OF_VERDICT:
        raise InvalidLabel(
            f"inspection {inspection.id!r} was not inspected ({inspection.not_inspected_reason or 'dead-lettered'}): "
            "there is no verdict to label; check the part by hand, and once the cause is fixed replay its dead "
            "letter (diffqc dlq replay) so that it is inspected"
        )
    if kind not in KINDS_OF_VERDICT[verdict]:
        allowed = " or ".join(k.value for k in KINDS_OF_VERDICT[verdict])
        if verdict is Verdict.PASS:
            why = f"passed (score {inspection.score:.4g} <= threshold {inspection.threshold:.4g})"
        else:
            why = f"was judged defective (score {inspection.score:.4g} > threshold {inspection.threshold:.4g})"
        raise InvalidLabel(f"kind {kind.value} does not fit inspection {inspection.id!r}: it {why}; label it {allowed}")
    defect_class = defect_class or None
    if kind in DEFECTIVE_KINDS:
        if defect_class is None:
            raise InvalidLabel(f"a {kind.value} label needs a defect_class (e.g. scratch, missing_part)")
        if not DEFECT_CLASS.fullmatch(defect_class):
            raise InvalidLabel(
                f"defect_class {defect_class[:60]!r} must be 1-40 characters of a-z, 0-9 and _ "
                "(it names a folder of the exported data set)"
            )
        if defect_class == GOOD_FOLDER:
            raise InvalidLabel(f"defect_class {GOOD_FOLDER!r} is the folder of good parts: name the defect")
    elif defect_class is not None:
        raise InvalidLabel(
            f"defect_class is for {' and '.join(k.value for k in sorted(DEFECTIVE_KINDS))} labels: "
            f"a {kind.value} part is good (say what misled the detector in the note)"
        )
    note = (note or "").strip()
    if len(note) > MAX_NOTE_LENGTH:
        raise InvalidLabel(f"note is {len(note)} characters long, over the limit of {MAX_NOTE_LENGTH}")
    if CONTROL_BUT_LINE_BREAKS.search(note):
        raise InvalidLabel("note contains control characters")
    return kind, defect_class, note


def _found(session: Session, id_or_frame_id: str, lock: bool = False) -> tuple[Inspection, Frame]:
    query = (
        select(Inspection, Frame)
        .join(Frame, Frame.id == Inspection.frame_id)
        .where(or_(Inspection.id == id_or_frame_id, Inspection.frame_id == id_or_frame_id))
    )
    if lock:  # serializes label writes of one inspection on PostgreSQL (SQLite serializes all writes)
        query = query.with_for_update(of=Inspection)
    row = session.execute(query).first()
    if row is None:
        raise InspectionNotFound(f"no inspection with inspection id or frame id {id_or_frame_id!r}")
    return row[0], row[1]


def _as_audited(label: Label) -> dict[str, Any]:
    return {
        "kind": LabelKind(label.kind).value,
        "defect_class": label.defect_class,
        "note": label.note,
        "labelled_by": label.labelled_by,
        "labelled_at": label.labelled_at.isoformat(),
    }


def set_label(
    session: Session,
    id_or_frame_id: str,
    kind: LabelKind | str,
    defect_class: str | None,
    note: str | None,
    actor: str,
    audit_details: dict[str, Any] | None = None,
) -> LabelChange:
    """Label the inspection (by inspection id or frame id) as ``actor``, replacing its label; audited in
    the caller's transaction. InspectionNotFound, or InvalidLabel naming the problem."""
    if not 0 < len(actor) <= MAX_ACTOR_LENGTH:
        raise ValueError(f"actor {actor[:MAX_ACTOR_LENGTH]!r} must be 1-{MAX_ACTOR_LENGTH} characters")
    inspection, frame = _found(session, id_or_frame_id, lock=True)
    kind, defect_class, note = check_label(inspection, kind, defect_class, note)
    label = session.get(Label, inspection.id, populate_existing=True)
    if label is not None and (LabelKind(label.kind), label.defect_class, label.note) == (kind, defect_class, note):
        return LabelChange(LabelledInspection(label, inspection, frame), changed=False, replaced=None)
    replaced = _as_audited(label) if label is not None else None
    if label is None:
        label = Label(inspection_id=inspection.id)
        session.add(label)
    label.kind, label.defect_class, label.note = kind, defect_class, note
    label.labelled_by, label.labelled_at = actor, clock.now()
    session.flush()
    details = {
        **(audit_details or {}),
        "kind": kind.value,
        "defect_class": defect_class,
        "note": note,
        "frame_id": frame.id,
        "line_id": frame.line_id,
        "product_type": frame.product_type,
        "verdict": Verdict(inspection.verdict).value,
        "score": inspection.score,
        "threshold": inspection.threshold,
        "model_version": inspection.model_version,
        "replaced": replaced,
    }
    audit.append(session, actor, "inspection.label", inspection.id, details)
    return LabelChange(LabelledInspection(label, inspection, frame), changed=True, replaced=replaced)


def get_label(session: Session, id_or_frame_id: str) -> LabelledInspection | None:
    """The inspection's current label, or None when it has none; InspectionNotFound for an unknown id."""
    inspection, frame = _found(session, id_or_frame_id)
    label = session.get(Label, inspection.id)
    return None if label is None else LabelledInspection(label, inspection, frame)


def list_labels(
    session: Session,
    line_id: str | None = None,
    product_type: str | None = None,
    inspection_ids: Sequence[str] | None = None,
    model_version: str | None = None,
    limit: int | None = MAX_LIST,
) -> list[LabelledInspection]:
    """Labels with their inspections and frames, newest label first; ``limit=None`` for all of them."""
    query = (
        select(Label, Inspection, Frame)
        .join(Inspection, Inspection.id == Label.inspection_id)
        .join(Frame, Frame.id == Inspection.frame_id)
    )
    if line_id is not None:
        query = query.where(Frame.line_id == line_id)
    if product_type is not None:
        query = query.where(Frame.product_type == product_type)
    if inspection_ids is not None:
        query = query.where(Inspection.id.in_(list(inspection_ids)))
    if model_version is not None:
        query = query.where(Inspection.model_version == model_version)
    query = query.order_by(Label.labelled_at.desc(), Label.inspection_id)
    if limit is not None:
        query = query.limit(max(1, min(limit, MAX_LIST)))
    return [LabelledInspection(label, inspection, frame) for label, inspection, frame in session.execute(query)]


def newest_labelled_model_version(session: Session, product_type: str) -> str | None:
    """The model version of the product's most recently labelled inspection (None: nothing labelled)."""
    query = (
        select(Inspection.model_version)
        .join(Label, Label.inspection_id == Inspection.id)
        .join(Frame, Frame.id == Inspection.frame_id)
        .where(Frame.product_type == product_type)
        .order_by(Label.labelled_at.desc())
        .limit(1)
    )
    return session.scalar(query)
