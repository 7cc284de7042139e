"""The alert outbox of the MES bridge: one row per alert id, its delivery state and schedule.

The bridge inserts a row for each alert it consumes (``INSERT ... ON CONFLICT DO NOTHING`` on the
alert id, so a redelivered message adds nothing) and commits the Kafka offset only after the row
committed; the delivery loops then work the rows until the MES acknowledged them.

A delivery loop leases a due row (``lease_next_due``: locked ``FOR UPDATE SKIP LOCKED`` in a short
transaction, its attempt counted and ``next_attempt_at`` moved to the lease's end, committed), sends
with no transaction open, and records the outcome only while the lease is still its own
(``leased_row``), so bridge replicas never send one alert concurrently and a crashed sender's alert is
sent again once its lease ran out. Failed deliveries are listed (``failed_alerts``) and re-driven
(``redrive``, audited); delivered rows are pruned after the retention (``prune_delivered``).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Select, delete, func, or_, select, tuple_
from sqlalchemy.orm import Session

from diffqc.store import audit
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


LINE_STOP_PENDING = Alert.line_stop_state == LineStop.PENDING.value
# The MES hears of a line-stopping alert once its stop is settled: the two never share a lease.
MES_PENDING = (Alert.delivery_state == DeliveryState.PENDING) & or_(
    Alert.line_stop_state.is_(None), Alert.line_stop_state != LineStop.PENDING.value
)


@dataclass(frozen=True)
class Lease:
    """A due alert a delivery loop holds until ``until``: what it sends, and what proves the lease is still its own."""

    alert_id: str
    line_id: str
    inspection_id: str | None
    payload: dict
    attempts: int
    until: datetime


def lease_next_due(session: Session, now: datetime, until: datetime, line_stops: bool) -> Lease | None:
    """Lease the oldest due alert with a line stop (``line_stops``) or else an MES delivery to do until ``until``:
    rows another replica has locked are skipped, the attempt is counted. The caller commits at once."""
    row = session.scalars(
        select(Alert)
        .where(LINE_STOP_PENDING if line_stops else MES_PENDING)
        .where(or_(Alert.next_attempt_at.is_(None), Alert.next_attempt_at <= now))
        .order_by(Alert.created_at, Alert.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).first()
    if row is None:
        return None
    row.attempts += 1
    row.next_attempt_at = until
    return Lease(row.id, row.line_id, row.inspection_id, dict(row.payload), row.attempts, until)


def leased_row(session: Session, lease: Lease) -> Alert | None:
    """The alert, locked, if ``lease`` still holds it (no other loop re-leased it after it ran out); else None."""
    return session.scalars(
        select(Alert)
        .where(Alert.id == lease.alert_id, Alert.attempts == lease.attempts, Alert.next_attempt_at == lease.until)
        .with_for_update()
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


def _page(
    session: Session, state: DeliveryState, line_id: str, page_size: int, page_token: str
) -> tuple[list[Alert], str]:
    query = select(Alert).where(Alert.delivery_state == state)
    if line_id:
        query = query.where(Alert.line_id == line_id)
    if page_token:
        query = query.where(tuple_(Alert.created_at, Alert.id) > _after(page_token))
    rows = session.scalars(query.order_by(Alert.created_at, Alert.id).limit(page_size + 1)).all()
    page = list(rows[:page_size])
    return page, _token(page[-1]) if len(rows) > page_size else ""


def undelivered_alerts(
    session: Session, line_id: str = "", page_size: int = 100, page_token: str = ""
) -> tuple[list[Alert], str]:
    """Alerts the MES has not acknowledged yet, oldest first, one page; returns (rows, next page token)."""
    return _page(session, DeliveryState.PENDING, line_id, page_size, page_token)


def failed_alerts(
    session: Session, line_id: str = "", page_size: int = 100, page_token: str = ""
) -> tuple[list[Alert], str]:
    """Alerts the MES refused for good (``last_error`` says why), oldest first, one page; (rows, next page token)."""
    return _page(session, DeliveryState.FAILED, line_id, page_size, page_token)


def redrive(session: Session, alert_ids: list[str] | None, actor: str) -> tuple[list[str], list[str]]:
    """Deliver failed alerts again (``alert_ids``, or every failed one for None): back to pending, due now, attempts
    reset, one audit row each (``alert.redrive``, by ``actor``). Returns (re-driven ids, given ids that are not
    failed alerts). A failed line stop is not re-driven: a late stop would halt the line for an old part."""
    query = select(Alert).where(Alert.delivery_state == DeliveryState.FAILED)
    if alert_ids is not None:
        query = query.where(Alert.id.in_(alert_ids))
    rows = session.scalars(query.order_by(Alert.created_at, Alert.id).with_for_update()).all()
    for row in rows:
        audit.append(session, actor, "alert.redrive", row.id, {"line_id": row.line_id, "last_error": row.last_error})
        row.delivery_state, row.attempts, row.next_attempt_at = DeliveryState.PENDING, 0, None
    done = [row.id for row in rows]
    return done, [i for i in dict.fromkeys(alert_ids or []) if i not in set(done)]


def delivered_before(older_than: datetime) -> Select:
    """The ids of the alerts ``prune_delivered`` deletes."""
    settled = or_(Alert.line_stop_state.is_(None), Alert.line_stop_state != LineStop.PENDING.value)
    return select(Alert.id).where(
        Alert.delivery_state == DeliveryState.DELIVERED, Alert.delivered_at < older_than, settled
    )


def prune_delivered(session: Session, older_than: datetime, limit: int | None = None) -> int:
    """Delete alerts the MES acknowledged before ``older_than`` (their line stop, if any, settled), at most
    ``limit`` of them; returns how many. The caller commits."""
    query = delivered_before(older_than)
    if limit is not None:
        query = query.limit(limit)
    statement = delete(Alert).where(Alert.id.in_(query.scalar_subquery()))
    return cast(CursorResult[Any], session.execute(statement)).rowcount
