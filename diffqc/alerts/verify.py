"""What the bridge trusts of an alert on quality.alert: only what the stored inspection bears out.

Anyone who can produce to the topic could otherwise stop a line (a CRITICAL severity) or send the
MES made-up defects and links. So an alert counts only when its inspection is stored, is a DEFECT,
and every field the alert states about it agrees with the inspection and frame rows; the severity
that decides a line stop is recomputed from the stored score, threshold, regions and frame size.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from diffqc.alerts.links import AlertLinks, heatmap_path, image_path
from diffqc.alerts.record import alert_id, region_record
from diffqc.alerts.severity import Severity, severity
from diffqc.store.models import Frame, Inspection, Verdict

# Avro's timestamp-millis drops the stored decision time's microseconds.
TIME_TOLERANCE = timedelta(milliseconds=1)


class AlertRefused(ValueError):
    """An alert the stored inspection does not bear out; ``reason`` is a metric label."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def verified_severity(session: Session, record: dict[str, Any], links: AlertLinks) -> Severity:
    """The severity of the stored inspection ``record`` names, when the record agrees with it;
    AlertRefused (reason ``unknown_inspection``, ``not_defect`` or ``mismatch``) otherwise."""
    inspection_id = str(record.get("inspection_id"))
    row = session.get(Inspection, inspection_id)
    if row is None:
        raise AlertRefused("unknown_inspection", f"inspection {inspection_id!r} is not in the metadata database")
    if Verdict(row.verdict) is not Verdict.DEFECT:
        raise AlertRefused("not_defect", f"the stored inspection {inspection_id!r} is a {row.verdict} verdict")
    frame = session.get(Frame, row.frame_id)
    if frame is None:  # the foreign key holds this off; a damaged database must not read as a forgery
        raise RuntimeError(f"inspection {inspection_id!r} has no frame row {row.frame_id!r}")
    regions = row.regions or []
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
