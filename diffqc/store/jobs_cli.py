"""``diffqc jobs start|list|show|cancel``: retraining jobs, against the configured database.

``start`` only queues the job: a trainer (``python -m services.trainer``) runs it and registers the
result as a candidate model version. Starting and cancelling are in the audit log under the caller's
name. Exit codes: 0 done, 1 the database is unavailable or the request is refused (unknown product or
job, a job already active, a finished job), 2 invalid settings or options.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from diffqc.store import db, training_jobs
from diffqc.store.cli import _actor, _database
from diffqc.store.models import JobStatus, TrainingJob
from diffqc.store.training_jobs import InvalidOptions, JobNotFound, JobRefused

jobs_app = typer.Typer(no_args_is_help=True, add_completion=False)
JobId = Annotated[str, typer.Argument(help="The job's id (diffqc jobs list)")]


def _refused(exc: Exception, code: int = 1) -> typer.Exit:
    typer.echo(str(exc), err=True)
    return typer.Exit(code)


def _summary(job: TrainingJob) -> str:
    result = f", version {job.result_version}" if job.result_version else ""
    return f"training job {job.id} of {job.product_type!r}: {job.status} {job.progress:.0%} — {job.message}{result}"


@jobs_app.command("start")
def start(
    product: Annotated[str, typer.Option("--product", help="The product type to retrain")],
    steps: Annotated[int, typer.Option(help="Fine-tuning steps")] = training_jobs.DEFAULT_STEPS,
    max_images: Annotated[
        int, typer.Option(help="Most good frames to train on (false alarms first, then the newest passes)")
    ] = training_jobs.DEFAULT_MAX_IMAGES,
    seed: Annotated[int, typer.Option(help="Random seed")] = 0,
) -> None:
    """Queue a retraining of a product's production model on its recent good frames."""
    with _database() as engine:
        try:
            options = training_jobs.parse_options({"steps": steps, "max_images": max_images, "seed": seed})
            with db.session(engine, write=True) as session:
                job = training_jobs.request_job(session, product, options, _actor())
        except InvalidOptions as exc:
            raise _refused(exc, 2) from None
        except JobRefused as exc:
            raise _refused(exc) from None
    typer.echo(_summary(job))
    typer.echo(job.id)


@jobs_app.command("list")
def list_(
    product: Annotated[str | None, typer.Option("--product", help="Only this product type")] = None,
    status: Annotated[JobStatus | None, typer.Option("--status", help="Only jobs in this state")] = None,
    limit: Annotated[int, typer.Option(min=1, max=training_jobs.MAX_LIST, help="Most jobs shown")] = 50,
) -> None:
    """Training jobs, newest first."""
    with _database() as engine, db.session(engine) as session:
        jobs = training_jobs.list_jobs(session, product, status, limit)
    table = Table("id", "product", "status", "progress", "requested by", "requested", "version", "message")
    for job in jobs:
        table.add_row(
            job.id,
            job.product_type,
            job.status,
            f"{job.progress:.0%}",
            job.requested_by,
            job.requested_at.isoformat(timespec="seconds"),
            job.result_version or "",
            job.message,
        )
    Console(width=200).print(table)


@jobs_app.command("show")
def show(
    job_id: JobId, log: Annotated[bool, typer.Option("--log/--no-log", help="Print the job's log")] = True
) -> None:
    """One job: its state, options, evaluation, error and log."""
    with _database() as engine, db.session(engine) as session:
        try:
            job = training_jobs.get_job(session, job_id)
        except JobNotFound as exc:
            raise _refused(exc) from None
    typer.echo(_summary(job))
    typer.echo(f"requested by {job.requested_by} at {job.requested_at.isoformat(timespec='seconds')}")
    typer.echo(f"options: {job.options}")
    if job.worker:
        typer.echo(f"worker: {job.worker}")
    if job.evaluation:
        typer.echo("evaluation: " + ", ".join(f"{k}={v}" for k, v in job.evaluation.items()))
    if job.error:
        typer.echo(f"error: {job.error}")
    if log and job.log:
        typer.echo(job.log, nl=False)


@jobs_app.command("cancel")
def cancel(job_id: JobId) -> None:
    """Cancel a queued job, or stop a running one at its next step (nothing is registered)."""
    with _database() as engine:
        try:
            with db.session(engine, write=True) as session:
                job = training_jobs.request_cancel(session, job_id, _actor())
        except (JobNotFound, JobRefused) as exc:
            raise _refused(exc) from None
    typer.echo(_summary(job))
