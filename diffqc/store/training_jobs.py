"""Retraining jobs (table ``training_jobs``): an admin asks for one, a training worker runs it.

    request_job  → queued      (the product exists, has a production model, and no job queued or running)
    claim_next   → running     (SELECT ... FOR UPDATE SKIP LOCKED: two workers never take the same job)
    beat         heartbeat, progress, message and log of the running job; answers whether cancel was asked
    finish       → succeeded | failed | cancelled, or back to queued when its worker shuts down mid-job
    request_cancel  a queued job is cancelled at once; a running one is asked to stop at its next step
    fail_stale   → failed      (a running job whose worker stopped heartbeating: it died or lost the database)

A job's log keeps its last ``LOG_MAX_CHARS`` characters. Requests and cancels are audited in their
transaction (diffqc.store.audit); the worker's own writes are the job row's (who asked is on it).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from diffqc.core import clock
from diffqc.core.validation import validate
from diffqc.store import audit
from diffqc.store.model_registry import production_version
from diffqc.store.models import JobStatus, ProductType, TrainingJob
from diffqc.store.products import list_products

# Bounds of one job; candidates for settings (DIFFQC_TRAINING_*) once the lead adds them.
DEFAULT_STEPS = 500  # the shipped PCB model trained at 0.3 s a step on 2 cores (its metadata): 2.5 minutes
MAX_STEPS = 20_000
MIN_IMAGES = 8  # a training set needs images to train on and at least 4 held out for calibration
DEFAULT_MAX_IMAGES = 500
MAX_IMAGES = 5_000
LOG_MAX_CHARS = 64 * 1024
STALE_AFTER_S = 120.0  # a running job without a heartbeat for this long has lost its worker
MAX_LIST = 200
ACTIVE = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)
FINISHED = (JobStatus.SUCCEEDED.value, JobStatus.FAILED.value, JobStatus.CANCELLED.value)
MESSAGE_LENGTH, ERROR_LENGTH = 500, 2000  # the columns' sizes


class TrainingOptions(BaseModel):
    """What an admin may choose for one retraining; everything else is the production model's."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(DEFAULT_STEPS, ge=1, le=MAX_STEPS, description="Fine-tuning steps")
    max_images: int = Field(
        DEFAULT_MAX_IMAGES,
        ge=MIN_IMAGES,
        le=MAX_IMAGES,
        description="Most good frames trained on: every false alarm first, then the newest passed parts",
    )
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Random seed (crops, noise, held-out split)")


class JobRefused(ValueError):
    """The job cannot be requested or changed; the message says why."""


class UnknownProduct(JobRefused):
    """The product type is not registered."""


class InvalidOptions(JobRefused):
    """The options are malformed or out of bounds."""


class JobConflict(JobRefused):
    """The product or the job is not in a state that allows it (a job already active, a finished job)."""


class JobNotFound(LookupError):
    """No job has this id."""


class JobLost(RuntimeError):
    """The job is no longer running on this worker (failed as stale, or finished elsewhere)."""


def parse_options(raw: Mapping[str, Any] | None) -> TrainingOptions:
    """The options of ``raw`` (missing ones take their defaults); InvalidOptions naming each problem."""
    return validate(TrainingOptions, dict(raw or {}), "training options", InvalidOptions)


def _product(session: Session, product: str) -> ProductType:
    """The product type's row, locked for this transaction: requests for one product run one after the other."""
    row = session.scalars(select(ProductType).where(ProductType.name == product).with_for_update()).first()
    if row is None:
        known = ", ".join(p.name for p in list_products(session)) or "none"
        raise UnknownProduct(f"no product type {product!r} is registered (registered: {known})")
    return row


def active_job(session: Session, product: str) -> TrainingJob | None:
    return session.scalars(
        select(TrainingJob).where(TrainingJob.product_type == product, TrainingJob.status.in_(ACTIVE))
    ).first()


def request_job(
    session: Session, product: str, options: TrainingOptions | Mapping[str, Any] | None, actor: str
) -> TrainingJob:
    """Queue a retraining of ``product`` for ``actor``; audited. UnknownProduct, InvalidOptions, or JobConflict
    when a job of the product is queued or running or the product has no production model to retrain."""
    chosen = options if isinstance(options, TrainingOptions) else parse_options(options)
    _product(session, product)
    running = active_job(session, product)
    if running is not None:
        raise JobConflict(
            f"product type {product!r} already has training job {running.id} ({running.status}); "
            "wait for it or cancel it first"
        )
    if production_version(session, product) is None:
        raise JobConflict(
            f"product type {product!r} has no production model version to retrain; onboard it first (diffqc onboard)"
        )
    job = TrainingJob(
        id=str(uuid.uuid4()),
        product_type=product,
        status=JobStatus.QUEUED.value,
        requested_by=actor,
        requested_at=clock.now(),
        options=chosen.model_dump(),
        progress=0.0,
        message="queued",
        log="",
        cancel_requested=False,
        evaluation={},
    )
    session.add(job)
    session.flush()
    audit.append(session, actor, "training.start", job.id, {"product_type": product, "options": job.options})
    return job


def get_job(session: Session, job_id: str, lock: bool = False) -> TrainingJob:
    query = select(TrainingJob).where(TrainingJob.id == job_id)
    job = session.scalars(query.with_for_update() if lock else query).first()
    if job is None:
        raise JobNotFound(f"no training job with id {job_id!r}")
    return job


def list_jobs(
    session: Session, product: str | None = None, status: JobStatus | None = None, limit: int = 50
) -> list[TrainingJob]:
    """Jobs, newest request first."""
    query = select(TrainingJob).order_by(TrainingJob.requested_at.desc(), TrainingJob.id)
    if product is not None:
        query = query.where(TrainingJob.product_type == product)
    if status is not None:
        query = query.where(TrainingJob.status == JobStatus(status).value)
    return list(session.scalars(query.limit(max(1, min(limit, MAX_LIST)))))


def request_cancel(session: Session, job_id: str, actor: str) -> TrainingJob:
    """Cancel a queued job now, or ask its worker to stop a running one at its next step (nothing is registered
    then); audited. A cancelled job stays as it is; a succeeded or failed one is a JobConflict."""
    job = get_job(session, job_id, lock=True)
    was = job.status
    if was == JobStatus.CANCELLED:
        return job
    if was in FINISHED:
        raise JobConflict(f"training job {job.id} has {was} already: there is nothing to cancel")
    if was == JobStatus.QUEUED:
        _end(job, JobStatus.CANCELLED, f"cancelled by {actor} before it started")
    else:
        job.cancel_requested = True
        job.message = _clip(f"cancel requested by {actor}; the worker stops at its next step", MESSAGE_LENGTH)
    session.flush()
    audit.append(session, actor, "training.cancel", job.id, {"product_type": job.product_type, "was": was})
    return job


def claim_next(session: Session, worker: str) -> TrainingJob | None:
    """The oldest queued job, now running on ``worker``; None when none is queued. Rows another worker is
    claiming are skipped, not waited for (PostgreSQL; SQLite runs one writer at a time)."""
    job = session.scalars(
        select(TrainingJob)
        .where(TrainingJob.status == JobStatus.QUEUED.value)
        .order_by(TrainingJob.requested_at, TrainingJob.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).first()
    if job is None:
        return None
    now = clock.now()
    job.status, job.worker, job.started_at, job.heartbeat_at = JobStatus.RUNNING.value, worker, now, now
    job.progress, job.message = 0.0, f"claimed by {worker}"
    job.log = _bounded(job.log + _line(now, f"claimed by worker {worker}"))
    session.flush()
    return job


def beat(
    session: Session,
    job_id: str,
    worker: str,
    *,
    progress: float | None = None,
    message: str | None = None,
    log: list[str] | None = None,
) -> bool:
    """Heartbeat of ``worker``'s running job, with its progress (0..1), message and new log lines when given.
    Returns whether a cancel was requested; JobLost when the job is no longer running on this worker."""
    job = _running(session, job_id, worker)
    now = clock.now()
    job.heartbeat_at = now
    if progress is not None:
        job.progress = min(1.0, max(job.progress, progress))
    if message is not None:
        job.message = _clip(message, MESSAGE_LENGTH)
    if log:
        job.log = _bounded(job.log + "".join(_line(now, entry) for entry in log))
    session.flush()
    return bool(job.cancel_requested)


def finish(
    session: Session,
    job_id: str,
    worker: str,
    status: JobStatus,
    message: str,
    *,
    error: str | None = None,
    result_version: str | None = None,
    evaluation: dict[str, Any] | None = None,
) -> TrainingJob:
    """End ``worker``'s running job as ``status`` (succeeded, failed, cancelled), or put it back in the queue
    (queued: its worker shuts down; another one starts it afresh). JobLost when it is not running here."""
    job = _running(session, job_id, worker)
    now = clock.now()
    job.log = _bounded(job.log + _line(now, message))
    if status == JobStatus.QUEUED:
        job.status, job.worker, job.started_at, job.heartbeat_at = status.value, None, None, None
        job.progress, job.message = 0.0, _clip(message, MESSAGE_LENGTH)
    else:
        _end(job, status, message, error)
        job.result_version = result_version
        job.evaluation = dict(evaluation or {})
    session.flush()
    return job


def fail_stale(
    session: Session, stale_after_s: float = STALE_AFTER_S, now: datetime | None = None
) -> list[TrainingJob]:
    """Fail every running job whose last heartbeat is older than ``stale_after_s``: its worker died (or lost the
    database) mid-job. Rows another transaction holds are left for the next round."""
    now = now or clock.now()
    jobs = list(
        session.scalars(
            select(TrainingJob)
            .where(
                TrainingJob.status == JobStatus.RUNNING.value,
                TrainingJob.heartbeat_at < now - timedelta(seconds=stale_after_s),
            )
            .with_for_update(skip_locked=True)
        )
    )
    for job in jobs:
        seen = job.heartbeat_at.isoformat(timespec="seconds") if job.heartbeat_at else "never"
        error = (
            f"worker {job.worker} stopped heartbeating (last at {seen}, over {stale_after_s:.0f} s ago): it died or "
            "lost the database mid-job; nothing was registered, start the job again"
        )
        job.log = _bounded(job.log + _line(now, error))
        _end(job, JobStatus.FAILED, "failed: its worker stopped", error)
    session.flush()
    return jobs


def _running(session: Session, job_id: str, worker: str) -> TrainingJob:
    job = get_job(session, job_id, lock=True)
    if job.status != JobStatus.RUNNING or job.worker != worker:
        raise JobLost(f"training job {job_id} is {job.status} on {job.worker or 'no worker'}, not running on {worker}")
    return job


def _end(job: TrainingJob, status: JobStatus, message: str, error: str | None = None) -> None:
    job.status, job.finished_at = status.value, clock.now()
    job.message = _clip(message, MESSAGE_LENGTH)
    job.error = _clip(error, ERROR_LENGTH) if error else None
    if status == JobStatus.SUCCEEDED:
        job.progress = 1.0


def _line(at: datetime, text: str) -> str:
    return f"{at.isoformat(timespec='seconds')} {text.rstrip()}\n"


def _bounded(log: str) -> str:
    """The last LOG_MAX_CHARS characters of ``log``, from a line's start."""
    if len(log) <= LOG_MAX_CHARS:
        return log
    tail = log[-LOG_MAX_CHARS:]
    return tail[tail.find("\n") + 1 :] if "\n" in tail[:-1] else tail


def _clip(text: str, length: int) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"
