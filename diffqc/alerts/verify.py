"""What the bridge trusts of an alert on quality.alert: only what the stored inspection bears out.

Anyone who can produce to the topic could otherwise stop a line (a CRITICAL severity) or send the
MES made-up defects and links. So an alert counts only when its inspection is stored with the
alert's status (a DEFECT, or NOT_INSPECTED) and every field the alert states about it agrees with
the inspection and frame rows; the severity that decides a line stop is recomputed from the stored
score, threshold, regions and frame size (NOT_INSPECTED: always MAJOR).

A NOT_INSPECTED alert whose row is gone because the replayed frame has been inspected since (its
real verdict replaced the row) is superseded: ``AlertSuperseded``, neither delivered nor refused.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from diffqc.alerts.links import AlertLinks, heatmap_path, image_path
from diffqc.alerts.record import alert_id, region_record
from diffqc.alerts.severity import NOT_INSPECTED_SEVERITY, Severity, severity
from diffqc.store.models import Frame, Inspection, Verdict

# Avro's timestamp-millis drops the stored decision time's microseconds.
TIME_TOLERANCE = timedelta(milliseconds=1)


class AlertRefused(ValueError):
    """An alert the stored inspection does not bear out; ``reason`` is a metric label."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class AlertSuperseded(Exception):
    """A NOT_INSPECTED alert about a frame that has been inspected since: there is nothing to deliver."""


def verified_severity(session: Session, record: dict[str, Any], links: AlertLinks) -> Severity:
    """The severity of the stored inspection ``record`` names, when the record agrees with it;
    AlertRefused (reason ``unknown_inspection``, ``not_defect`` or ``mismatch``) or AlertSuperseded otherwise."""
    inspection_id = str(record.get("inspection_id"))
    not_inspected = record.get("status") == "NOT_INSPECTED"
    row = session.get(Inspection, inspection_id)
    if row is None:
        if not_inspected:
            _superseded(session, str(record.get("frame_id")), inspection_id)
        raise AlertRefused("unknown_inspection", f"inspection {inspection_id!r} is not in the metadata database")
    stored = Verdict(row.verdict)
    if not_inspected and stored is not Verdict.NOT_INSPECTED:
        raise AlertRefused("mismatch", f"its status NOT_INSPECTED disagrees with the stored {stored} inspection")
    if not not_inspected and stored is not Verdict.DEFECT:
        raise AlertRefused("not_defect", f"the stored inspection {inspection_id!r} is a {row.verdict} verdict")
    frame = session.get(Frame, row.frame_id)
    if frame is None:  # the foreign key holds this off; a damaged database must not read as a forgery
        raise RuntimeError(f"inspection {inspection_id!r} has no frame row {row.frame_id!r}")
    regions = row.regions or []
    if not_inspected:
        level = NOT_INSPECTED_SEVERITY
    else:
        level = severity(row.score, row.threshold, sum(r["area_px"] for r in regions), frame.height * frame.width)
    stated = {
        "alert_id": alert_id(row.id),
        "frame_id": frame.id,
        "plant_id": frame.plant_id,
        "line_id": frame.line_id,
        "station_id": frame.station_id,
        "camera_id": frame.camera_id,
        "product_type": frame.product_type,
        "work_order": frame.work_order or None,
        "lot": frame.lot or None,
        "severity": str(level),
        "score": row.score,
        "threshold": row.threshold,
        "model_version": row.model_version,
        "not_inspected_reason": row.not_inspected_reason or None,
        "regions": [
            region_record(r["x"], r["y"], r["width"], r["height"], r["area_px"], r["peak_score"]) for r in regions
        ],
    }
    wrong = [name for name, value in stated.items() if record.get(name) != value]
    detected = record.get("detected_at")
    if not isinstance(detected, datetime) or abs(detected - row.inspected_at) >= TIME_TOLERANCE:
        wrong.append("detected_at")
    if not links.is_link(str(record.get("image_uri")), image_path(row.id)):
        wrong.append("image_uri")
    heatmap = record.get("heatmap_uri")
    if (heatmap is None) == bool(row.heatmap_uri) or (
        heatmap is not None and not links.is_link(heatmap, heatmap_path(row.id))
    ):
        wrong.append("heatmap_uri")
    if wrong:
        raise AlertRefused("mismatch", f"its {', '.join(wrong)} disagree with the stored inspection {inspection_id!r}")
    return level


def _superseded(session: Session, frame_id: str, inspection_id: str) -> None:
    """Raise AlertSuperseded when the frame's NOT_INSPECTED row ``inspection_id`` gave way to a real verdict."""
    verdict = session.scalar(select(Inspection.verdict).where(Inspection.frame_id == frame_id))
    if verdict is not None and Verdict(verdict) is not Verdict.NOT_INSPECTED:
        raise AlertSuperseded(
            f"frame {frame_id!r} was not inspected (inspection {inspection_id!r}) but has been since: {verdict}"
        )
