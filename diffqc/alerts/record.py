"""The quality.alert record of a DEFECT or NOT_INSPECTED verdict (schema protos/avro/quality_alert.avsc)
and its JSON form.

A NOT_INSPECTED alert (``status``) tells the MES that a part could not be inspected and must be checked
by hand: its severity is MAJOR (diffqc.alerts.severity), score and threshold 0, no regions or heatmap,
and ``not_inspected_reason`` says why.

The image and heatmap are links to the gateway's routes of the inspection (``AlertLinks``), never
blob-store paths. The alert id is a uuid5 of the inspection id, which is itself derived from the
frame id and the model version: a redelivered frame gives the same inspection and so the same
alert id, and the bridge and the MES deduplicate on it.
"""

from __future__ import annotations

import uuid
from datetime import UTC

from diffqc.alerts.links import AlertLinks
from diffqc.alerts.severity import NOT_INSPECTED_SEVERITY, severity
from diffqc.core import clock
from diffqc.v1.scoring_pb2 import VERDICT_DEFECT, VERDICT_NOT_INSPECTED, InspectionVerdict

ALERT_NAMESPACE = uuid.UUID("b5d3c2a1-7e4f-5a60-8c19-2f6e0d4b7a31")
# The verdicts that raise an alert, as the record's status.
STATUS = {VERDICT_DEFECT: "DEFECT", VERDICT_NOT_INSPECTED: "NOT_INSPECTED"}


def alert_id(inspection_id: str) -> str:
    return str(uuid.uuid5(ALERT_NAMESPACE, inspection_id))


def region_record(x: int, y: int, width: int, height: int, area_px: int, peak_score: float) -> dict:
    """One element of the record's ``regions``."""
    return {
        "bbox": {"x": x, "y": y, "width": width, "height": height},
        "area_px": area_px,
        "peak_score": peak_score,
    }


def raises_alert(verdict: InspectionVerdict) -> bool:
    """DEFECT and NOT_INSPECTED verdicts raise an alert; a PASS does not."""
    return verdict.verdict in STATUS


def alert_record(verdict: InspectionVerdict, links: AlertLinks) -> dict:
    """The Avro record (a dict for AvroSerializer) of a DEFECT or NOT_INSPECTED verdict, its image and heatmap
    as ``links``; ValueError for any other verdict."""
    if not raises_alert(verdict):
        raise ValueError(f"inspection {verdict.inspection_id} is neither DEFECT nor NOT_INSPECTED; it raises no alert")
    if not verdict.inspection_id:
        raise ValueError("the verdict has no inspection_id; an alert needs one for its id")
    frame = verdict.frame
    regions = [
        region_record(r.bbox.x, r.bbox.y, r.bbox.width, r.bbox.height, r.area_px, r.peak_score) for r in verdict.regions
    ]
    if verdict.verdict == VERDICT_NOT_INSPECTED:
        level = NOT_INSPECTED_SEVERITY
    else:
        level = severity(
            verdict.score,
            verdict.threshold,
            sum(r.area_px for r in verdict.regions),
            frame.shape.height * frame.shape.width,
        )
    return {
        "alert_id": alert_id(verdict.inspection_id),
        "inspection_id": verdict.inspection_id,
        "frame_id": frame.frame_id,
        "plant_id": frame.plant_id,
        "line_id": frame.line_id,
        "station_id": frame.station_id,
        "camera_id": frame.camera_id,
        "product_type": frame.product_type,
        "work_order": frame.work_order or None,
        "lot": frame.lot or None,
        "detected_at": clock.from_timestamp(verdict.decided_at) or clock.now(),
        "severity": str(level),
        "score": verdict.score,
        "threshold": verdict.threshold,
        "model_version": verdict.model.version,
        "regions": regions,
        "heatmap_uri": links.heatmap(verdict.inspection_id) if verdict.heatmap.uri else None,
        "image_uri": links.image(verdict.inspection_id),
        "status": STATUS[verdict.verdict],
        "not_inspected_reason": verdict.not_inspected_reason or None,
    }


def alert_json(record: dict) -> dict:
    """The JSON form of an alert record (the MES webhook body and the outbox payload): times as ISO 8601."""
    detected = record["detected_at"]
    return {**record, "detected_at": detected.astimezone(UTC).isoformat(timespec="milliseconds")}
