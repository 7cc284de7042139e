"""Frame rows (one per frame id, written by ingestion) and the plant's equipment they mention.

``record_frame`` is an idempotent insert keyed by the frame id (``INSERT ... ON CONFLICT DO
NOTHING`` on PostgreSQL and SQLite): a re-sent frame, or two requests racing on the same id, leave
exactly one row, and the caller learns whether its call wrote it. ``frame_from_row`` turns a row
back into the ``diffqc.v1.Frame`` message that was published for it.

Equipment (plants, lines, stations, cameras) is registered lazily: ``ensure_equipment`` inserts the
rows a frame names unless they exist. The frame ids are the plant's own strings and the frame row
keeps them whatever the equipment tables hold, so a new camera needs no set-up step; the first
frame that names an id decides its parent (a later frame claiming another parent changes nothing).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from diffqc.core import clock
from diffqc.store.dialect import dialect_insert
from diffqc.store.models import Camera, Line, Plant, Station
from diffqc.store.models import Frame as FrameRow
from diffqc.v1.common_pb2 import BlobRef, Priority, Shape
from diffqc.v1.frame_pb2 import Frame


def record_frame(session: Session, frame: Frame, image_ref: BlobRef | None = None) -> bool:
    """Insert the row of ``frame`` unless its frame id exists; True when this call inserted it.

    The image reference is ``image_ref``, or ``frame.image`` when None. ``frame.capture_time``,
    ``frame.shape`` and the image's uri and sha256 must be set (ingestion validates them); the row's
    ``received_at`` is ``frame.ingest_time`` (now when unset). An existing row is never changed.
    On PostgreSQL a concurrent insert of the same id waits for the other transaction and returns
    False once it committed. The caller commits.
    """
    image = image_ref if image_ref is not None else frame.image
    if not frame.frame_id:
        raise ValueError("record_frame: the frame has no frame_id")
    if not frame.HasField("capture_time"):
        raise ValueError(f"record_frame: frame {frame.frame_id!r} has no capture_time")
    if not image.uri or not image.sha256:
        raise ValueError(f"record_frame: frame {frame.frame_id!r} has no stored image (uri and sha256)")
    received = clock.to_datetime(frame.ingest_time) if frame.HasField("ingest_time") else clock.now()
    return insert_frame_row(session, frame, image, clock.to_datetime(frame.capture_time), received)


def insert_frame_row(
    session: Session, frame: Frame, image: BlobRef, captured_at: datetime, received_at: datetime
) -> bool:
    """``INSERT ... ON CONFLICT DO NOTHING`` of the frame's row; True if this call inserted it."""
    stmt = (
        dialect_insert(session, FrameRow)
        .values(
            id=frame.frame_id,
            plant_id=frame.plant_id,
            line_id=frame.line_id,
            station_id=frame.station_id,
            camera_id=frame.camera_id,
            product_type=frame.product_type,
            work_order=frame.work_order or None,
            lot=frame.lot or None,
            captured_at=captured_at,
            process_parameters=dict(frame.process_parameters),
            image_uri=image.uri,
            image_sha256=image.sha256,
            height=frame.shape.height,
            width=frame.shape.width,
            channels=frame.shape.channels,
            priority=int(frame.priority),
            received_at=received_at,
        )
        .on_conflict_do_nothing(index_elements=["id"])
        .returning(FrameRow.id)
    )
    return session.execute(stmt).first() is not None


def get_frame(session: Session, frame_id: str) -> FrameRow | None:
    """The row of ``frame_id``, or None."""
    return session.get(FrameRow, frame_id)


def frame_from_row(row: FrameRow) -> Frame:
    """The ``diffqc.v1.Frame`` of a stored row.

    The schema keeps the image's uri and sha256 but not its media type or size, so ``image``
    carries only those two fields.
    """
    return Frame(
        frame_id=row.id,
        plant_id=row.plant_id,
        line_id=row.line_id,
        station_id=row.station_id,
        camera_id=row.camera_id,
        product_type=row.product_type,
        work_order=row.work_order or "",
        lot=row.lot or "",
        process_parameters={k: float(v) for k, v in (row.process_parameters or {}).items()},
        image=BlobRef(uri=row.image_uri, sha256=row.image_sha256),
        shape=Shape(height=row.height, width=row.width, channels=row.channels),
        priority=Priority.Name(row.priority),
        capture_time=clock.to_timestamp(row.captured_at),
        ingest_time=clock.to_timestamp(row.received_at),
    )


def ensure_equipment(session: Session, plant_id: str, line_id: str, station_id: str, camera_id: str) -> None:
    """Register the plant, line, station and camera a frame names, each unless it exists (named by its id).

    Idempotent and safe against concurrent callers; the caller commits. Rows that exist are left
    as they are, so a line keeps the plant of the first frame that named it.
    """
    rows = [
        (Plant, {"id": plant_id, "name": plant_id}),
        (Line, {"id": line_id, "plant_id": plant_id, "name": line_id}),
        (Station, {"id": station_id, "line_id": line_id, "name": station_id}),
        (Camera, {"id": camera_id, "station_id": station_id}),
    ]
    for model, values in rows:  # parents first: the foreign keys hold at every step
        session.execute(dialect_insert(session, model).values(**values).on_conflict_do_nothing(index_elements=["id"]))
