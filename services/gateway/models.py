"""The model registry in the dashboard: versions and their stages, a candidate's trial against production,
and the lifecycle actions (promote, roll back, archive, canaries) for admins, with Triton kept in step."""

# No "from __future__ import annotations": FastAPI must resolve the route signatures, which refer to locals.
import dataclasses
import pathlib
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Security
from fastapi.responses import FileResponse, RedirectResponse
from pydantic import BaseModel, Field
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from diffqc.security.api_keys import Role
from diffqc.serving.lifecycle import apply_change
from diffqc.serving.loader import ModelLoadError
from diffqc.settings import Settings
from diffqc.store import db, model_registry, trials
from diffqc.store.model_registry import RegistryError, Stage
from diffqc.store.models import ModelCanary, ModelVersion
from services.gateway.auth import Auth, Principal
from services.gateway.errors import ApiError
from services.gateway.schemas import LineId, Problem

MODELS_PATH = "/models"
_ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": Problem} for status in (401, 403, 404, 409, 422, 503)}


class VersionOut(BaseModel):
    product_type: str
    version: str
    stage: Literal["candidate", "shadow", "production", "archived"]
    threshold: float
    metrics: dict[str, Any] = Field(description="The calibration's figures (threshold rule, held-out scores ...)")
    parent_version: str | None = Field(description="The production version when this one was registered")
    replaced_version: str | None = Field(description="The production version this one replaced: what rollback restores")
    data_fingerprint: str | None
    trained_by: str | None
    created_at: datetime
    stage_changed_at: datetime | None


class CanaryOut(BaseModel):
    id: int
    product_type: str
    version: str
    line_id: str
    share: float
    max_excess_alarm_rate: float
    min_frames: int
    started_by: str
    started_at: datetime
    ended_at: datetime | None
    end_reason: str | None


class ModelsOut(BaseModel):
    versions: list[VersionOut]
    canaries: list[CanaryOut] = Field(description="Open canaries")


class AlarmRatesOut(BaseModel):
    frames: int
    candidate: float
    production: float


class LabelledOut(BaseModel):
    defective: int = Field(description="Paired frames an inspector labelled defective")
    good: int
    recall: float | None
    false_positive_rate: float | None


class ComparisonOut(BaseModel):
    product: str
    candidate: str
    production_versions: list[str]
    frames: int = Field(description="Frames both versions scored")
    canary_frames: int = Field(description="Of them, frames the candidate judged in a canary")
    agreement: float | None = Field(description="Share of frames where both verdicts agree")
    alarms: AlarmRatesOut
    histogram_edges: list[float] = Field(description="Bin edges of score / threshold (1 = the threshold)")
    candidate_histogram: list[int]
    production_histogram: list[int]
    candidate_labelled: LabelledOut
    production_labelled: LabelledOut
    recommendation: Literal["promote", "reject", "collect"]
    reason: str


class Promotion(BaseModel):
    to: Literal["shadow", "production"] | None = Field(None, description="The stage expected next (refused if not)")


class Rollback(BaseModel):
    version: str | None = Field(None, max_length=64, description="The production version expected (refused if not)")


class NewCanary(BaseModel):
    line: str = Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")
    share: float = Field(0.1, gt=0, le=0.5, description="Share of the line's frames the candidate judges")
    max_excess_alarm_rate: float = Field(
        0.02, ge=0, lt=1, description="Alarm rate above production's (same frames) that rolls the canary back"
    )
    min_frames: int = Field(200, ge=1, le=1_000_000, description="Canary frames before the guard may judge")


def _version(row: ModelVersion) -> VersionOut:
    return VersionOut.model_validate(row, from_attributes=True)


def _canary(row: ModelCanary) -> CanaryOut:
    return CanaryOut.model_validate(row, from_attributes=True)


def models_router(engine: Engine, settings: Settings, auth: Auth, static: pathlib.Path) -> APIRouter:
    router = APIRouter(responses=_ERRORS, tags=["models"])
    viewer = Security(auth.require(Role.VIEWER))
    admin = Security(auth.require(Role.ADMIN))

    explicit = settings.triton.model_control == "explicit"

    def change(apply: Callable[[Session], VersionOut]) -> VersionOut:
        """A lifecycle change with Triton in step; refused → 409 naming why, Triton failing → 503."""
        try:
            return apply_change(engine, settings, apply, triton=explicit)
        except RegistryError as exc:
            raise ApiError(409, str(exc)) from None
        except ModelLoadError as exc:
            raise ApiError(503, str(exc)) from None

    @router.get("/api/models", response_model=ModelsOut)
    def models(
        _: Annotated[Principal, viewer],
        product: Annotated[str | None, Query(max_length=64, description="Only this product type")] = None,
    ) -> ModelsOut:
        """Every registered model version with its stage and lineage, and the open canaries."""
        with db.session(engine) as session:
            rows = model_registry.list_versions(session, product)
            products = sorted({r.product_type for r in rows})
            canaries = [c for p in products for c in trials.open_canaries(session, p)]
            return ModelsOut(versions=[_version(r) for r in rows], canaries=[_canary(c) for c in canaries])

    @router.get("/api/models/{product}/{version}/comparison", response_model=ComparisonOut)
    def comparison(product: LineId, version: LineId, _: Annotated[Principal, viewer]) -> ComparisonOut:
        """The version against production on the same live frames (shadow and canary), with a recommendation."""
        try:
            with db.session(engine) as session:
                result = trials.compare(session, product, version)
        except RegistryError as exc:
            raise ApiError(404, str(exc)) from None
        return ComparisonOut.model_validate(dataclasses.asdict(result))

    @router.post("/api/models/{product}/{version}/promote", response_model=VersionOut)
    def promote(
        product: LineId, version: LineId, body: Promotion, principal: Annotated[Principal, admin]
    ) -> VersionOut:
        """Move the version one stage on (candidate → shadow → production; the production one it replaces is
        archived). Triton loads what the change needs first. Audited."""
        to = Stage(body.to) if body.to else None
        return change(lambda s: _version(model_registry.promote(s, product, version, principal.name, to)))

    @router.post("/api/models/{product}/rollback", response_model=VersionOut)
    def rollback(product: LineId, body: Rollback, principal: Annotated[Principal, admin]) -> VersionOut:
        """Archive the production version and restore the one it replaced; returns the restored one. Audited."""
        return change(lambda s: _version(model_registry.rollback(s, product, principal.name, body.version)[0]))

    @router.post("/api/models/{product}/{version}/archive", response_model=VersionOut)
    def archive(product: LineId, version: LineId, principal: Annotated[Principal, admin]) -> VersionOut:
        """Retire a candidate or shadow version. Audited."""
        return change(lambda s: _version(model_registry.archive(s, product, version, principal.name)))

    @router.post("/api/models/{product}/{version}/canary", response_model=CanaryOut, status_code=201)
    def canary(product: LineId, version: LineId, body: NewCanary, principal: Annotated[Principal, admin]) -> CanaryOut:
        """Let a shadow version judge a share of one line's frames; the guard rolls it back when it raises
        more alarms than production on the same frames by more than the margin. Audited."""
        try:
            with db.session(engine, write=True) as session:
                row = trials.start_canary(
                    session,
                    product,
                    version,
                    body.line,
                    body.share,
                    principal.name,
                    body.max_excess_alarm_rate,
                    body.min_frames,
                )
                return _canary(row)
        except RegistryError as exc:
            raise ApiError(409, str(exc)) from None

    @router.post("/api/models/{product}/canaries/{line}/stop", response_model=CanaryOut)
    def stop_canary(product: LineId, line: LineId, principal: Annotated[Principal, admin]) -> CanaryOut:
        """End the line's canary: all its frames go back to production. Audited."""
        try:
            with db.session(engine, write=True) as session:
                return _canary(trials.stop_canary(session, product, line, principal.name))
        except RegistryError as exc:
            raise ApiError(409, str(exc)) from None

    @router.get(MODELS_PATH, include_in_schema=False, response_model=None)
    def models_page(
        key: Annotated[str | None, Security(auth.header)], session: Annotated[str | None, Security(auth.cookie)]
    ) -> FileResponse | RedirectResponse:
        """The models page for a logged-in person; the login page for anyone else."""
        return auth.page(key, session, static / "models.html")

    return router
