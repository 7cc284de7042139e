"""The alert outbox of the MES bridge: one row per alert id, its delivery state and schedule.

The bridge inserts a row for each alert it consumes (``INSERT ... ON CONFLICT DO NOTHING`` on the
alert id, so a redelivered message adds nothing) and commits the Kafka offset only after the row
committed; the delivery loop then works the rows until the MES acknowledged them. Delivery rows are
claimed with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so bridge replicas never send one alert
concurrently.
"""

from __future__ import annotations

import base64
from datetime import datetime

from sqlalchemy import func, or_, select, tuple_
from sqlalchemy.orm import Session

from diffqc.store.dialect import dialect_insert
from diffqc.store.models import Alert, DeliveryState, LineStop


def record_alert(session: Session, body: dict, line_stop: bool) -> bool:
    """Add the alert ``body`` (the JSON the MES receives) unless its id is known; True if this call added it.

    ``line_stop``: the alert's severity asks for a line stop (the request is then pending). The caller commits.
    """
    stmt = (
        dialect_insert(session, Alert)
        .values(
            id=body["alert_id"],
            inspection_id=body.get("inspection_id"),
            line_id=body["line_id"],
            severity=body["severity"],
            payload=body,
            delivery_state=DeliveryState.PENDING,
            attempts=0,
            line_stop_state=LineStop.PENDING.value if line_stop else None,
        )
        .on_conflict_do_nothing()
        .returning(Alert.__table__.c.id)
    )
    return session.execute(stmt).first() is not None


def _due(now: datetime):
    work_left = or_(Alert.delivery_state == DeliveryState.PENDING, Alert.line_stop_state == LineStop.PENDING.value)
    return work_left, or_(Alert.next_attempt_at.is_(None), Alert.next_attempt_at <= now)


def claim_next_due(session: Session, now: datetime) -> Alert | None:
    """The oldest alert with a delivery or line stop still to do whose attempt is due, locked for this
    transaction (rows another replica holds are skipped)."""
    return session.scalars(
        select(Alert).where(*_due(now)).order_by(Alert.created_at, Alert.id).limit(1).with_for_update(skip_locked=True)
    ).first()


def count_undelivered(session: Session) -> int:
    return (
        session.scalar(select(func.count()).select_from(Alert).where(Alert.delivery_state == DeliveryState.PENDING))
        or 0
    )


class BadPageToken(ValueError):
    """A page token that this listing did not hand out."""


def _token(row: Alert) -> str:
    return base64.urlsafe_b64encode(f"{row.created_at.isoformat()}|{row.id}".encode()).decode()


def _after(token: str) -> tuple[datetime, str]:
    try:
        created, alert_id = base64.urlsafe_b64decode(token.encode()).decode().split("|", 1)
        return datetime.fromisoformat(created), alert_id
    except ValueError as exc:
        raise BadPageToken(f"invalid page token {token!r}") from exc


def undelivered_alerts(
    session: Session, line_id: str = "", page_size: int = 100, page_token: str = ""
) -> tuple[list[Alert], str]:
    """Alerts the MES has not acknowledged yet, oldest first, one page; returns (rows, next page token)."""
    query = select(Alert).where(Alert.delivery_state == DeliveryState.PENDING)
    if line_id:
        query = query.where(Alert.line_id == line_id)
    if page_token:
        query = query.where(tuple_(Alert.created_at, Alert.id) > _after(page_token))
    rows = session.scalars(query.order_by(Alert.created_at, Alert.id).limit(page_size + 1)).all()
    page = list(rows[:page_size])
    return page, _token(page[-1]) if len(rows) > page_size else ""
