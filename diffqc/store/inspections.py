"""Store helpers of the scoring path: model versions, the frame row, the idempotent inspection row.

Writes keyed by the frame id are ``INSERT ... ON CONFLICT DO NOTHING`` (PostgreSQL and SQLite), so
a redelivered message, or two replicas racing on the same frame after a rebalance, leave exactly
one row; the caller reads back the row that won and reports that one. The one row a later write
replaces is a NOT_INSPECTED one (``discard_not_inspected``): a replayed frame that is then inspected
gets its real verdict.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from diffqc.core import clock
from diffqc.store.dialect import dialect_insert
from diffqc.store.frames import insert_frame_row
from diffqc.store.model_registry import Stage, make_production
from diffqc.store.models import Alert, Frame, Inspection, ModelVersion, Verdict
from diffqc.v1 import frame_pb2

# -- products and model versions ----------------------------------------------------------------


def register_model_version(
    session: Session,
    product: str,
    version: str,
    artifact_uri: str,
    threshold: float,
    metrics: dict[str, Any] | None = None,
    activate: bool = True,
    lineage: dict[str, str | None] | None = None,
) -> ModelVersion:
    """Add (or update) ``version`` of ``product``'s model; with ``activate`` it becomes the production (active)
    one and the one it replaces is archived, else a new version is a candidate and an existing one keeps its stage.

    ``metrics`` may carry ``region_level`` (the anomaly-map level that outlines a defect region; see
    ``diffqc.core.artifact.artifact_registration``), which scoring uses for regions and heatmaps.
    ``lineage`` sets ``parent_version``, ``data_fingerprint`` and ``trained_by`` of a new row.
    The caller commits (and audits: diffqc.serving.register does).
    """
    row = model_version(session, product, version)
    if row is None:
        row = ModelVersion(
            product_type=product,
            version=version,
            artifact_uri=artifact_uri,
            threshold=threshold,
            metrics=dict(metrics or {}),
            active=False,
            stage=Stage.CANDIDATE.value,
            stage_changed_at=clock.now(),
            **(lineage or {}),
        )
        session.add(row)
    else:
        row.artifact_uri, row.threshold, row.metrics = artifact_uri, float(threshold), dict(metrics or {})
    session.flush()
    if activate and row.stage != Stage.PRODUCTION:
        rows = session.scalars(select(ModelVersion).where(ModelVersion.product_type == product)).all()
        make_production(session, list(rows), row)
    return row


def model_version(session: Session, product: str, version: str) -> ModelVersion | None:
    return session.scalars(
        select(ModelVersion).where(ModelVersion.product_type == product, ModelVersion.version == version)
    ).first()


def active_model_version(session: Session, product: str) -> ModelVersion | None:
    """The active model version of ``product`` (the newest, should several be marked active), or None."""
    return session.scalars(
        select(ModelVersion)
        .where(ModelVersion.product_type == product, ModelVersion.active.is_(True))
        .order_by(ModelVersion.created_at.desc(), ModelVersion.id.desc())
    ).first()


# -- frames and inspections ---------------------------------------------------------------------


def ensure_frame(session: Session, frame: frame_pb2.Frame) -> bool:
    """Insert the frame row from the message unless it exists (ingestion normally wrote it); True if inserted.

    Lets a result be scored even when its frame row is missing (a replay, a direct gRPC Score
    call), without ever overwriting what ingestion recorded.
    """
    captured = clock.from_timestamp(frame.capture_time) or clock.from_timestamp(frame.ingest_time) or clock.now()
    received = clock.from_timestamp(frame.ingest_time) or clock.now()
    return insert_frame_row(session, frame, frame.image, captured, received)


def get_inspection(session: Session, frame_id: str) -> Inspection | None:
    return session.scalars(select(Inspection).where(Inspection.frame_id == frame_id)).first()


def record_inspection(
    session: Session,
    *,
    id: str,
    frame_id: str,
    model_version: str,
    component_scores: dict[str, float],
    score: float,
    threshold: float,
    verdict: Verdict,
    latency_ms: float,
    heatmap_uri: str | None = None,
    regions: list[dict] | None = None,
    inspected_at: datetime | None = None,
    not_inspected_reason: str | None = None,
) -> tuple[Inspection, bool]:
    """Write the inspection of ``frame_id`` unless one exists; return (the stored row, whether this call wrote it).

    One row per frame id whatever happens: the insert does nothing on a conflict (same inspection
    id or same frame id), and the row returned is the one in the database, so a caller that lost
    a race reports what the winner stored. The caller commits.
    """
    stmt = (
        dialect_insert(session, Inspection)
        .values(
            id=id,
            frame_id=frame_id,
            model_version=model_version,
            component_scores=dict(component_scores),
            score=float(score),
            threshold=float(threshold),
            verdict=verdict,
            heatmap_uri=heatmap_uri,
            regions=list(regions or []),
            latency_ms=float(latency_ms),
            inspected_at=inspected_at or clock.now(),
            not_inspected_reason=not_inspected_reason,
        )
        .on_conflict_do_nothing()
        .returning(Inspection.__table__.c.id)
    )
    created = session.execute(stmt).first() is not None
    row = get_inspection(session, frame_id)
    if row is None:  # a conflict on the id alone: the same id was used for another frame
        raise RuntimeError(f"inspection id {id!r} already belongs to another frame than {frame_id!r}")
    return row, created


def discard_not_inspected(session: Session, frame_id: str) -> str | None:
    """Delete the frame's NOT_INSPECTED inspection, so that its real one can take its place in the same
    transaction; the id of the row deleted, or None when the frame has none.

    The alert that told the MES about it stays in the outbox (delivered or not), detached from the row:
    its payload still names the inspection. The caller commits.
    """
    not_inspected = (Inspection.frame_id == frame_id, Inspection.verdict == Verdict.NOT_INSPECTED)
    row_id = session.scalar(select(Inspection.id).where(*not_inspected))
    if row_id is None:
        return None
    session.execute(update(Alert).where(Alert.inspection_id == row_id).values(inspection_id=None))
    session.execute(delete(Inspection).where(Inspection.id == row_id, *not_inspected))
    return row_id


def _history(
    session: Session,
    columns: tuple,
    line_id: str | None,
    product_type: str | None,
    since: datetime | None = None,
) -> Iterator[tuple]:
    """(line, product, capture time, score, verdict value, *columns) of the stored verdicts in capture order
    (captured at ``since`` or later, when given); parts that were not inspected have no score and are left
    out."""
    query = (
        select(Frame.line_id, Frame.product_type, Frame.captured_at, Inspection.score, Inspection.verdict, *columns)
        .join(Frame, Frame.id == Inspection.frame_id)
        .where(Inspection.verdict != Verdict.NOT_INSPECTED)
        .order_by(Frame.captured_at, Frame.id)
    )
    if line_id:
        query = query.where(Frame.line_id == line_id)
    if product_type:
        query = query.where(Frame.product_type == product_type)
    if since is not None:
        query = query.where(Frame.captured_at >= since)
    for line, product, captured, score, verdict, *rest in session.execute(query):
        yield line, product, captured, score, Verdict(verdict).value, *rest


def score_history(
    session: Session,
    line_id: str | None = None,
    product_type: str | None = None,
    since: datetime | None = None,
) -> dict[tuple[str, str], list[tuple]]:
    """Stored verdicts as control charts read them: (line, product) -> rows (capture time, score, verdict,
    lot, inspection id, model version) in capture order, captured at ``since`` or later when it is given.
    The lot a part counts in is its lot, else its work order."""
    columns = (Frame.lot, Frame.work_order, Inspection.id, Inspection.model_version)
    history: dict[tuple[str, str], list[tuple]] = {}
    for line, product, captured, score, verdict, lot, work_order, inspection, version in _history(
        session, columns, line_id, product_type, since
    ):
        history.setdefault((line, product), []).append(
            (captured, score, verdict, lot or work_order or None, inspection, version)
        )
    return history


def drift_history(
    session: Session, line_id: str | None = None, product_type: str | None = None
) -> dict[tuple[str, str], list[tuple]]:
    """Stored verdicts as drift trackers read them: (line, product) -> rows (capture time, score, verdict,
    component scores, inspection id, model version) in capture order."""
    columns = (Inspection.component_scores, Inspection.id, Inspection.model_version)
    history: dict[tuple[str, str], list[tuple]] = {}
    for line, product, captured, score, verdict, components, inspection, version in _history(
        session, columns, line_id, product_type
    ):
        history.setdefault((line, product), []).append(
            (captured, score, verdict, dict(components or {}), inspection, version)
        )
    return history
