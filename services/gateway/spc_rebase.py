"""Re-basing a line's control chart: an admin fixes its limits from a chosen window of good parts."""

# No "from __future__ import annotations": FastAPI must resolve the route signatures, which refer to locals.
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Security
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import Engine

from diffqc.security.api_keys import Role
from diffqc.settings import SpcSettings
from diffqc.store import db, spc_rebases
from services.gateway.auth import Auth, Principal
from services.gateway.errors import ApiError
from services.gateway.schemas import LineId, Problem

_ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": Problem} for status in (401, 403, 422, 503)}


class NewRebase(BaseModel):
    window_start: AwareDatetime = Field(description="First capture time of the baseline window (with a time zone)")
    window_end: AwareDatetime = Field(description="Last capture time of the baseline window")
    reason: str = Field(min_length=1, max_length=spc_rebases.MAX_REASON_LENGTH, description="Why the limits change")


class RebaseOut(BaseModel):
    line_id: str
    product_type: str
    model_version: str = Field(description="The model version whose good parts fixed the limits")
    center_line: float
    sigma: float
    baseline_size: int = Field(description="Good parts in the window")
    window_start: datetime
    window_end: datetime
    effective_from: datetime = Field(description="Points captured from then on are judged against these limits")
    reason: str
    rebased_by: str
    rebased_at: datetime


def spc_rebase_router(engine: Engine, settings: SpcSettings, auth: Auth) -> APIRouter:
    router = APIRouter(responses=_ERRORS, tags=["spc"])
    admin = Security(auth.require(Role.ADMIN))

    @router.post("/api/spc/{line}/{product_type}/rebase", response_model=RebaseOut, status_code=201)
    def rebase(
        line: LineId, product_type: LineId, body: NewRebase, principal: Annotated[Principal, admin]
    ) -> RebaseOut:
        """Fix the chart's limits (Phase I) from the good parts of its current model version captured in the
        window; the rules start afresh against them a few seconds later (DIFFQC_SPC_REBASE_DELAY_S). Audited."""
        try:
            with db.session(engine, write=True) as session:
                row = spc_rebases.rebase_chart(
                    session,
                    line,
                    product_type,
                    (body.window_start, body.window_end),
                    body.reason,
                    principal.name,
                    settings,
                )
        except spc_rebases.RebaseRefused as exc:
            raise ApiError(422, str(exc)) from None
        return RebaseOut.model_validate(row, from_attributes=True)

    return router
