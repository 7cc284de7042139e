"""What the gateway reads from the metadata database: inspections with their frames, per line."""

from __future__ import annotations

from sqlalchemy import Engine, func, or_, select

from diffqc.store import db
from diffqc.store.models import Frame, Inspection, Verdict
from services.gateway.schemas import InspectionResult, LineSummary, Region


def inspection_url(inspection_id: str) -> str:
    return f"/api/inspection/result/{inspection_id}"


def result_of(row: Inspection, frame: Frame) -> InspectionResult:
    return InspectionResult(
        inspection_id=row.id,
        frame_id=row.frame_id,
        plant_id=frame.plant_id,
        line_id=frame.line_id,
        station_id=frame.station_id,
        camera_id=frame.camera_id,
        product_type=frame.product_type,
        work_order=frame.work_order,
        lot=frame.lot,
        captured_at=frame.captured_at,
        inspected_at=row.inspected_at,
        model_version=row.model_version,
        verdict=Verdict(row.verdict).value,
        not_inspected_reason=row.not_inspected_reason,
        score=row.score,
        threshold=row.threshold,
        components=dict(row.component_scores),
        regions=[Region(**region) for region in row.regions or []],
        latency_ms=row.latency_ms,
        heatmap_url=f"/api/inspection/{row.id}/heatmap.png" if row.heatmap_uri else None,
        image_url=f"/api/inspection/{row.id}/image",
        reconstruction_url=None
        if row.verdict == Verdict.NOT_INSPECTED
        else f"/api/inspection/{row.id}/reconstruction.png",
    )


class Store:
    """Read-only queries; each raises DependencyUnavailable while the database does not answer."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def inspection(self, id_or_frame_id: str) -> tuple[Inspection, Frame] | None:
        """The inspection with this inspection id, or of the frame with this frame id."""
        with db.session(self.engine) as session:
            found = session.execute(
                select(Inspection, Frame)
                .join(Frame, Frame.id == Inspection.frame_id)
                .where(or_(Inspection.id == id_or_frame_id, Inspection.frame_id == id_or_frame_id))
            ).first()
            return (found[0], found[1]) if found else None

    def frame_exists(self, frame_id: str) -> bool:
        with db.session(self.engine) as session:
            return session.get(Frame, frame_id) is not None

    def result(self, id_or_frame_id: str) -> InspectionResult | None:
        found = self.inspection(id_or_frame_id)
        return result_of(*found) if found else None

    def recent(self, line: str | None, limit: int) -> list[InspectionResult]:
        """The newest inspections first (of one line, or of all)."""
        query = select(Inspection, Frame).join(Frame, Frame.id == Inspection.frame_id)
        if line:
            query = query.where(Frame.line_id == line)
        query = query.order_by(Inspection.inspected_at.desc(), Inspection.id).limit(limit)
        with db.session(self.engine) as session:
            return [result_of(row, frame) for row, frame in session.execute(query)]

    def lines(self) -> list[LineSummary]:
        defects = func.count().filter(Inspection.verdict == Verdict.DEFECT)
        query = (
            select(Frame.line_id, func.count(), defects, func.max(Inspection.inspected_at))
            .join(Frame, Frame.id == Inspection.frame_id)
            .group_by(Frame.line_id)
            .order_by(Frame.line_id)
        )
        with db.session(self.engine) as session:
            return [
                LineSummary(line_id=line, inspections=n, defects=int(d or 0), last_inspected_at=last)
                for line, n, d, last in session.execute(query)
            ]
