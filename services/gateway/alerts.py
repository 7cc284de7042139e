"""Admin routes for alerts the MES refused for good: list them, re-drive them once the cause is fixed."""

# No "from __future__ import annotations": FastAPI must resolve the route signatures, which refer to locals.
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Security
from pydantic import BaseModel, Field
from sqlalchemy import Engine

from diffqc.security.api_keys import Role
from diffqc.store import db
from diffqc.store.alerts import BadPageToken, failed_alerts, redrive
from diffqc.store.models import Alert
from services.gateway.auth import Auth, Principal
from services.gateway.errors import ApiError
from services.gateway.schemas import PLAIN_TEXT, Problem

MAX_PAGE, MAX_REDRIVE_IDS, MAX_ID_LENGTH = 1000, 1000, 128
_ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": Problem} for status in (401, 403, 422, 503)}


class FailedAlert(BaseModel):
    alert_id: str
    line_id: str
    severity: str
    inspection_id: str | None
    created_at: datetime
    attempts: int
    last_error: str = Field(description="Why the MES refused the alert")


class FailedAlerts(BaseModel):
    alerts: list[FailedAlert] = Field(description="Oldest first")
    next_page_token: str = Field(description="Pass as page_token for the next page; empty on the last page")


class Redrive(BaseModel):
    alert_ids: list[Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=PLAIN_TEXT)]] = Field(
        default_factory=list, max_length=MAX_REDRIVE_IDS, description="Failed alerts to deliver again"
    )
    all: bool = Field(False, description="Deliver every failed alert again (instead of alert_ids)")


class Redriven(BaseModel):
    redriven: list[str] = Field(description="Alerts pending again; the bridge sends them on its next round")
    not_failed: list[str] = Field(description="Given ids that are not failed alerts (unknown, pending or delivered)")


def _failed(row: Alert) -> FailedAlert:
    return FailedAlert(
        alert_id=row.id,
        line_id=row.line_id,
        severity=row.severity,
        inspection_id=row.inspection_id,
        created_at=row.created_at,
        attempts=row.attempts,
        last_error=row.last_error or "",
    )


def alerts_router(engine: Engine, auth: Auth) -> APIRouter:
    router = APIRouter(responses=_ERRORS, tags=["admin"])
    admin = Security(auth.require(Role.ADMIN))

    @router.get("/api/alerts/failed", response_model=FailedAlerts, dependencies=[admin])
    def list_failed(
        line_id: Annotated[
            str | None, Query(max_length=64, pattern=PLAIN_TEXT, description="Only alerts of this line")
        ] = None,
        page_size: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        page_token: Annotated[
            str | None, Query(max_length=512, pattern=PLAIN_TEXT, description="next_page_token of the previous page")
        ] = None,
    ) -> FailedAlerts:
        """Alerts the MES refused for good (a 4xx other than 401/403), oldest first, one page."""
        try:
            with db.session(engine) as session:
                rows, token = failed_alerts(session, line_id or "", page_size, page_token or "")
                return FailedAlerts(alerts=[_failed(row) for row in rows], next_page_token=token)
        except BadPageToken as exc:
            raise ApiError(422, str(exc)) from None

    @router.post("/api/alerts/redrive", response_model=Redriven)
    def redrive_failed(request: Redrive, principal: Annotated[Principal, admin]) -> Redriven:
        """Deliver failed alerts to the MES again (audited under the caller's name): ``alert_ids`` or ``all``.
        Failed line stops are not re-driven: a late stop would halt the line for an old part."""
        if bool(request.alert_ids) == request.all:
            raise ApiError(422, "give alert_ids (one or more) or all, not both")
        with db.session(engine, write=True) as session:
            done, not_failed = redrive(session, None if request.all else request.alert_ids, principal.name)
        return Redriven(redriven=done, not_failed=not_failed)

    return router
