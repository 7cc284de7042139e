"""SPC signal acknowledgements: an operator records a signal's cause and corrective action; viewers read them."""

# No "from __future__ import annotations": FastAPI must resolve the route signatures, which refer to locals.
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Security
from pydantic import BaseModel, Field
from sqlalchemy import Engine

from diffqc.security.api_keys import Role
from diffqc.store import db, spc_acks
from diffqc.store.models import SpcAcknowledgement
from services.gateway.auth import Auth, Principal
from services.gateway.errors import ApiError
from services.gateway.schemas import LineId, Problem

_ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": Problem} for status in (401, 403, 422, 503)}


class NewAcknowledgement(BaseModel):
    signal_id: str = Field(
        min_length=1,
        max_length=spc_acks.MAX_SIGNAL_ID_LENGTH,
        description="The signal's id: <line>/<product type>/<rule>/<sample index>, e.g. L1/pcb/nelson2/14",
    )
    cause: str = Field(min_length=1, max_length=spc_acks.MAX_CAUSE_LENGTH, description="What caused the signal")
    corrective_action: str = Field(
        min_length=1, max_length=spc_acks.MAX_CORRECTIVE_ACTION_LENGTH, description="What was done about it"
    )


class AcknowledgementOut(BaseModel):
    signal_id: str
    line_id: str
    product_type: str
    rule: str
    sample_index: int
    cause: str
    corrective_action: str
    acknowledged_by: str = Field(description="Name of the API key that acknowledged the signal")
    acknowledged_at: datetime


def _out(row: SpcAcknowledgement) -> AcknowledgementOut:
    return AcknowledgementOut.model_validate(row, from_attributes=True)


def spc_acks_router(engine: Engine, auth: Auth) -> APIRouter:
    router = APIRouter(responses=_ERRORS, tags=["spc"])
    viewer = Security(auth.require(Role.VIEWER))
    operator = Security(auth.require(Role.OPERATOR))

    @router.post(
        "/api/spc/{line}/signals/ack",
        response_model=AcknowledgementOut,
        status_code=201,
        responses={409: {"model": Problem, "description": "The signal was acknowledged before"}},
    )
    def acknowledge(
        line: LineId, ack: NewAcknowledgement, principal: Annotated[Principal, operator]
    ) -> AcknowledgementOut:
        """Acknowledge one of the line's SPC signals with its cause and corrective action (once per signal)."""
        try:
            with db.session(engine, write=True) as session:
                row = spc_acks.acknowledge(
                    session,
                    line,
                    ack.signal_id,
                    ack.cause,
                    ack.corrective_action,
                    principal.name,
                    {"key_id": principal.key_id},
                )
        except spc_acks.AlreadyAcknowledged as exc:
            raise ApiError(409, str(exc)) from None
        except (spc_acks.InvalidSignalId, spc_acks.SignalNotOfLine, spc_acks.InvalidAcknowledgement) as exc:
            raise ApiError(422, str(exc)) from None
        return _out(row)

    @router.get("/api/spc/{line}/acknowledgements", response_model=list[AcknowledgementOut], dependencies=[viewer])
    def acknowledgements(
        line: LineId,
        product_type: Annotated[str | None, Query(max_length=spc_acks.MAX_ID_LENGTH)] = None,
        limit: Annotated[int, Query(ge=1, le=spc_acks.MAX_LIST)] = 200,
    ) -> list[AcknowledgementOut]:
        """The line's signal acknowledgements, newest first."""
        with db.session(engine) as session:
            return [_out(row) for row in spc_acks.list_by_line(session, line, product_type, limit)]

    return router
