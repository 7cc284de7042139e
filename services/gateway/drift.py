"""A line's drift state for the API: ``diffqc.drift.drift_from_history`` over its stored inspections.

The gateway does not see the bridge's live trackers; it rebuilds each (line, product type) tracker
from the line's whole stored history in capture order, which is the tracker the bridge built from
the same rows (same reference, same checks, same events), as ``services.gateway.spc`` does for
the control charts.
"""

# No "from __future__ import annotations": FastAPI must resolve the route signatures, which refer to locals.
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Security
from pydantic import BaseModel, Field
from sqlalchemy import Engine

from diffqc.drift import DriftEvent, DriftState, drift_from_history
from diffqc.security.api_keys import Role
from diffqc.settings import DriftSettings
from diffqc.store import db
from diffqc.store.inspections import drift_history
from services.gateway.auth import Auth
from services.gateway.errors import ApiError
from services.gateway.schemas import LineId, Problem

_ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": Problem} for status in (401, 403, 404, 422, 503)}


class QuantityTestOut(BaseModel):
    quantity: str = Field(description="score, or a component score (pixel, structural, concentration, process)")
    ks_statistic: float
    p_value: float = Field(description="KS p-value, Bonferroni-corrected for the quantities of the check")
    psi: float = Field(description="Population stability index on the reference's decile bins")
    significant: bool = Field(description="p_value < alpha")
    drifting: bool = Field(description="significant and psi > psi_threshold")


class DriftCheckOut(BaseModel):
    time: datetime = Field(description="Capture time of the part whose arrival ran the check")
    sample_index: int
    tests: list[QuantityTestOut]


class DriftEventOut(BaseModel):
    event_id: str = Field(description="line/product/drift/sample_index, as published on quality.drift")
    model_version: str | None
    quantity: str = Field(description="The drifting quantity with the largest PSI")
    quantities: list[str] = Field(description="Every drifting quantity")
    ks_statistic: float
    p_value: float
    psi: float
    reference_size: int
    window_size: int
    time: datetime
    sample_index: int
    recommendation: str = Field(description="recalibrate (only the score scale moved) or retrain")
    inspection_id: str | None = None


class DriftOut(BaseModel):
    line_id: str
    product_type: str
    model_version: str | None = Field(description="The model version whose good parts are the reference")
    status: str = Field(description="collecting (reference or first window incomplete), stable or drifting")
    good_parts: int = Field(description="Good parts judged by the current model version")
    reference_count: int = Field(description="Good parts in the reference so far")
    reference_size: int
    window: int
    drifting_since: datetime | None = Field(description="Capture time of the check that found the drift")
    recommendation: str | None = Field(description="While drifting: the event's recalibrate or retrain")
    last_check: DriftCheckOut | None
    events: list[DriftEventOut] = Field(description="The most recent drift events, oldest first")


class LineDrift(BaseModel):
    line_id: str
    products: list[DriftOut] = Field(description="One entry per product type seen on the line")


def event_out(event: DriftEvent) -> DriftEventOut:
    return DriftEventOut(
        event_id=event.event_id,
        model_version=event.model_version,
        quantity=event.quantity,
        quantities=list(event.quantities),
        ks_statistic=event.ks_statistic,
        p_value=event.p_value,
        psi=event.psi,
        reference_size=event.reference_size,
        window_size=event.window_size,
        time=event.time,
        sample_index=event.sample_index,
        recommendation=event.recommendation,
        inspection_id=event.inspection_id,
    )


def drift_out(state: DriftState) -> DriftOut:
    check = state.last_check
    current = state.events[-1] if state.status == "drifting" and state.events else None
    return DriftOut(
        line_id=state.line_id,
        product_type=state.product_type,
        model_version=state.model_version,
        status=state.status,
        good_parts=state.good_parts,
        reference_count=state.reference_count,
        reference_size=state.reference_size,
        window=state.window,
        drifting_since=state.drifting_since,
        recommendation=current.recommendation if current else None,
        last_check=DriftCheckOut(
            time=check.time,
            sample_index=check.sample_index,
            tests=[QuantityTestOut(**t._asdict()) for t in check.tests],
        )
        if check
        else None,
        events=[event_out(e) for e in state.events],
    )


def line_drift(engine: Engine, settings: DriftSettings, line: str, product_type: str | None = None) -> LineDrift:
    with db.session(engine) as session:
        history = drift_history(session, line, product_type)
    products = [
        drift_out(drift_from_history(line, product, rows, settings).state())
        for (_, product), rows in sorted(history.items())
    ]
    return LineDrift(line_id=line, products=products)


def drift_router(engine: Engine, settings: DriftSettings, auth: Auth) -> APIRouter:
    router = APIRouter(responses=_ERRORS, tags=["lines"])
    viewer = Security(auth.require(Role.VIEWER))

    @router.get("/api/lines/{line}/drift", response_model=LineDrift, dependencies=[viewer])
    def drift(line: LineId, product_type: Annotated[str | None, Query(max_length=64)] = None) -> LineDrift:
        """Whether the good parts' score and component scores drifted from the reference of the model version
        judging them (KS and PSI), per product type, with the recent drift events."""
        state = line_drift(engine, settings, line, product_type)
        if not state.products:
            raise ApiError(
                404,
                f"line {line!r} has no inspections" + (f" of product type {product_type!r}" if product_type else ""),
            )
        return state

    return router
