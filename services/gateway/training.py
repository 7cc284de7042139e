"""Retraining from the dashboard: an admin starts a training job of a product or cancels one, viewers follow
its progress and log. The gateway only queues and reads jobs; a trainer process runs them
(services/trainer) and registers the result as a candidate model version."""

# No "from __future__ import annotations": FastAPI must resolve the route signatures, which refer to locals.
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Security
from pydantic import BaseModel, Field
from sqlalchemy import Engine

from diffqc.security.api_keys import Role
from diffqc.store import db, training_jobs
from diffqc.store.models import JobStatus, TrainingJob
from diffqc.store.training_jobs import JobConflict, JobNotFound, TrainingOptions, UnknownProduct
from services.gateway.auth import Auth, Principal
from services.gateway.errors import ApiError
from services.gateway.schemas import PLAIN_TEXT, Problem

JobId = Annotated[str, Path(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
_ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": Problem} for status in (401, 403, 404, 422, 503)}
_CHANGE_ERRORS: dict[int | str, dict[str, Any]] = {**_ERRORS, 409: {"model": Problem}}


class NewTrainingJob(BaseModel):
    product: str = Field(min_length=1, max_length=64, pattern=PLAIN_TEXT, description="The product type to retrain")
    options: TrainingOptions = Field(default_factory=TrainingOptions)


class TrainingJobOut(BaseModel):
    id: str
    product_type: str
    status: JobStatus
    requested_by: str = Field(description="Name of the API key that started it")
    requested_at: datetime
    options: dict[str, Any]
    worker: str | None = Field(description="The trainer running (or that ran) it")
    started_at: datetime | None
    heartbeat_at: datetime | None
    finished_at: datetime | None
    progress: float = Field(description="0..1")
    message: str = Field(description="What the job is doing, or how it ended")
    cancel_requested: bool
    result_version: str | None = Field(description="The candidate model version it registered")
    evaluation: dict[str, Any] = Field(
        description="The candidate's threshold, share of held-out good frames it flags (held_out_fpr), "
        "synthetic-anomaly AUROC when measured, training figures, the production version it was fine-tuned from"
    )
    error: str | None


class TrainingJobDetail(TrainingJobOut):
    log: str = Field(description=f"The job's log, its last {training_jobs.LOG_MAX_CHARS} characters")


def _out(job: TrainingJob) -> TrainingJobOut:
    return TrainingJobOut.model_validate(job, from_attributes=True)


def training_router(engine: Engine, auth: Auth) -> APIRouter:
    router = APIRouter(tags=["training"])
    viewer = Security(auth.require(Role.VIEWER))
    admin = Security(auth.require(Role.ADMIN))

    @router.post("/api/training-jobs", response_model=TrainingJobOut, status_code=202, responses=_CHANGE_ERRORS)
    def start(body: NewTrainingJob, principal: Annotated[Principal, admin]) -> TrainingJobOut:
        """Queue a retraining of the product's production model on its recent good frames (false alarms
        included); a trainer runs it and registers the result as a candidate. Audited. 409 while a job of the
        product is queued or running, or when it has no production model."""
        try:
            with db.session(engine, write=True) as session:
                job = training_jobs.request_job(session, body.product, body.options, principal.name)
        except UnknownProduct as exc:
            raise ApiError(404, str(exc)) from None
        except JobConflict as exc:
            raise ApiError(409, str(exc)) from None
        return _out(job)

    @router.get("/api/training-jobs", response_model=list[TrainingJobOut], responses=_ERRORS, dependencies=[viewer])
    def list_jobs(
        product: Annotated[
            str | None, Query(max_length=64, pattern=PLAIN_TEXT, description="Only this product type")
        ] = None,
        status: Annotated[JobStatus | None, Query(description="Only jobs in this state")] = None,
        limit: Annotated[int, Query(ge=1, le=training_jobs.MAX_LIST)] = 50,
    ) -> list[TrainingJobOut]:
        """Training jobs, newest first (without their logs)."""
        with db.session(engine) as session:
            return [_out(job) for job in training_jobs.list_jobs(session, product, status, limit)]

    @router.get(
        "/api/training-jobs/{job_id}", response_model=TrainingJobDetail, responses=_ERRORS, dependencies=[viewer]
    )
    def get_job(job_id: JobId) -> TrainingJobDetail:
        """One job with its log."""
        try:
            with db.session(engine) as session:
                job = training_jobs.get_job(session, job_id)
        except JobNotFound as exc:
            raise ApiError(404, str(exc)) from None
        return TrainingJobDetail.model_validate(job, from_attributes=True)

    @router.post("/api/training-jobs/{job_id}/cancel", response_model=TrainingJobOut, responses=_CHANGE_ERRORS)
    def cancel(job_id: JobId, principal: Annotated[Principal, admin]) -> TrainingJobOut:
        """Cancel a queued job, or have its trainer stop a running one at its next step (nothing is registered
        then). Audited; a cancelled job stays as it is, a finished one is a 409."""
        try:
            with db.session(engine, write=True) as session:
                job = training_jobs.request_cancel(session, job_id, principal.name)
        except JobNotFound as exc:
            raise ApiError(404, str(exc)) from None
        except JobConflict as exc:
            raise ApiError(409, str(exc)) from None
        return _out(job)

    return router
