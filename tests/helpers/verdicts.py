"""DEFECT and PASS verdicts as scoring publishes them, and their rows, for the alert and bridge tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy.orm import Session

from diffqc.alerts import AlertLinks
from diffqc.store.inspections import ensure_frame, record_inspection
from diffqc.store.models import Verdict
from diffqc.store.products import find_product_type, register_product
from diffqc.v1.common_pb2 import BlobRef, BoundingBox, ModelRef, Shape
from diffqc.v1.frame_pb2 import Frame
from diffqc.v1.scoring_pb2 import VERDICT_DEFECT, VERDICT_PASS, DefectRegion, InspectionVerdict

DECIDED = datetime(2026, 11, 3, 8, 15, 42, 123000, tzinfo=UTC)
# The gateway links of the tests' alerts (signed); a bridge under test is given the same.
LINKS = AlertLinks("http://gateway.test:8080", b"test-link-secret", 3600.0)


def verdict(
    score: float = 1.5,
    threshold: float = 1.0,
    line: str = "L1",
    defect: bool = True,
    area_px: int = 20,
    lot: str = "LOT-7",
    captured: datetime = DECIDED,
) -> InspectionVerdict:
    decided, capture = Timestamp(), Timestamp()
    decided.FromDatetime(DECIDED)
    capture.FromDatetime(captured)
    frame_id = f"f-{uuid.uuid4().hex[:10]}"
    frame = Frame(
        frame_id=frame_id,
        plant_id="P1",
        line_id=line,
        station_id="S1",
        camera_id="C1",
        product_type="pcb",
        work_order="WO-42",
        lot=lot,
        shape=Shape(height=100, width=100, channels=3),
        capture_time=capture,
        image=BlobRef(uri=f"file:///blobs/{frame_id}.png", media_type="image/png"),
    )
    regions = [DefectRegion(bbox=BoundingBox(x=30, y=10, width=10, height=10), area_px=area_px, peak_score=4.5)]
    return InspectionVerdict(
        inspection_id=str(uuid.uuid4()),
        frame=frame,
        verdict=VERDICT_DEFECT if defect else VERDICT_PASS,
        score=score,
        threshold=threshold,
        regions=regions if defect else [],
        heatmap=BlobRef(uri=f"file:///blobs/{frame_id}-heatmap.png", media_type="image/png"),
        model=ModelRef(name="diffqc_detector", version="1"),
        decided_at=decided,
    )


def store_inspections(engine, verdicts: list[InspectionVerdict]) -> None:
    """The product, frame and inspection rows behind ``verdicts``, as scoring stores them (the bridge checks
    alerts against them)."""
    with Session(engine) as session, session.begin():
        if find_product_type(session, "pcb") is None:
            register_product(session, "pcb", {"height": 100, "width": 100, "channels": 3}, {})
        for v in verdicts:
            ensure_frame(session, v.frame)
            record_inspection(
                session,
                id=v.inspection_id,
                frame_id=v.frame.frame_id,
                model_version=v.model.version,
                component_scores=dict(v.component_scores),
                score=v.score,
                threshold=v.threshold,
                verdict=Verdict.DEFECT if v.verdict == VERDICT_DEFECT else Verdict.PASS,
                latency_ms=1.0,
                heatmap_uri=v.heatmap.uri or None,
                regions=[
                    {
                        "x": r.bbox.x,
                        "y": r.bbox.y,
                        "width": r.bbox.width,
                        "height": r.bbox.height,
                        "area_px": r.area_px,
                        "peak_score": r.peak_score,
                    }
                    for r in v.regions
                ],
                inspected_at=v.decided_at.ToDatetime(tzinfo=UTC),
            )
