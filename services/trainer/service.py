"""The trainer's loop: claim a queued training job, run it, finish it; fail the jobs of dead workers.

One job at a time per process (training takes every core); more workers are more replicas, and two
never take the same job (``diffqc.store.training_jobs.claim_next``). A job:

1. the product's good frames from the line (``diffqc.data.training_frames``), in a temporary folder;
2. its production model fine-tuned on them (``diffqc.detector.retrain``), every step reported: progress,
   message and log land on the job's row, and a cancel request stops training at the next step;
3. the artifact staged into the model repository Triton serves, as its next version (one worker at a
   time: a PostgreSQL advisory lock); a cancel request is honoured up to here, nothing is staged then;
4. registered as a candidate of the product (``diffqc.serving.register``), ``trained_by`` naming the job
   and who asked for it; the job keeps the version and its evaluation, ready for a shadow trial.

A heartbeat thread keeps the job's heartbeat fresh through what reports no steps (calibration), and
every loop round fails the jobs whose heartbeat stopped. On SIGTERM the job in hand stops at its next
step and goes back to the queue, for this worker's successor or another replica.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Gauge
from sqlalchemy import Engine, text

from diffqc.core.errors import DetectorError
from diffqc.data.images import DEFAULT_LIMITS, ImageLimits
from diffqc.data.mvtec import DatasetError
from diffqc.data.training_frames import NotEnoughImages, export_training_set
from diffqc.detector.detector import Detector
from diffqc.detector.retrain import evaluation, retrain_detector
from diffqc.detector.train import TrainingStep
from diffqc.preprocess.spec import SpecError
from diffqc.runtime.dependencies import DependencyUnavailable
from diffqc.serving.register import register_version
from diffqc.serving.repository import artifact_of, stage_version
from diffqc.store import db, training_jobs
from diffqc.store.blobs import BlobStore
from diffqc.store.model_registry import production_version
from diffqc.store.models import JobStatus, TrainingJob
from diffqc.store.training_jobs import JobLost, TrainingOptions

log = logging.getLogger(__name__)

# Candidates for settings (DIFFQC_TRAINER_*) once the lead adds them.
POLL_S = 2.0  # how often an idle worker looks for a queued job
HEARTBEAT_S = 10.0  # well inside training_jobs.STALE_AFTER_S
REPORT_EVERY_S = 2.0  # training steps write progress (and read a cancel request) at most this often
STAGING_LOCK = 0x64716374  # "dqct": the advisory lock that serializes staging into one repository
# Progress of a job: collecting frames up to 5%, training to 85%, calibration, staging and registering after.
EXPORT_END, TRAIN_END, STAGING = 0.05, 0.85, 0.9
# What a job's own data or model can get wrong: the job fails with the message, the worker carries on.
JOB_ERRORS = (NotEnoughImages, DetectorError, DatasetError, SpecError)

JOBS = Counter("diffqc_training_jobs", "Training jobs this worker ended, by outcome", ["outcome"])
RUNNING = Gauge("diffqc_training_job_running", "1 while this worker runs a training job")


class JobCancelled(Exception):
    """An admin cancelled the running job."""


class WorkerStopping(Exception):
    """The worker is shutting down: the job goes back to the queue."""


class JobReporter:
    """Progress, log and cancel of one running job. Training steps write to the job's row at most every
    ``REPORT_EVERY_S`` (a phase at once); each write is a heartbeat and reads whether cancel was asked."""

    def __init__(self, engine: Engine, job_id: str, worker: str, stop: threading.Event):
        self.engine, self.job_id, self.worker, self.stop = engine, job_id, worker, stop
        self.cancelled, self.lost = threading.Event(), threading.Event()
        self.progress, self.message = 0.0, "running"
        self._pending: list[str] = []
        self._last = -float("inf")
        self._lock = threading.Lock()  # the training thread and the heartbeat thread

    def log(self, line: str) -> None:
        log.info("job %s: %s", self.job_id, line)
        with self._lock:
            self._pending.append(line)

    def phase(self, progress: float, message: str) -> None:
        """A new stage of the job, written at once; raises if the job is to stop here."""
        self.note(progress, message)
        self.check()

    def note(self, progress: float, message: str) -> None:
        """Progress written at once, whatever was asked meanwhile (past the point of no return)."""
        self.progress, self.message = progress, message
        self.log(message)
        self.flush()

    def advance(self, progress: float, message: str) -> None:
        """Progress within a stage: written every few seconds; raises if the job is to stop here."""
        self.progress, self.message = progress, message
        if time.monotonic() - self._last >= REPORT_EVERY_S:
            self.flush()
        self.check()

    def step(self, step: TrainingStep) -> None:
        """After each training step (``on_step``): progress within the training share; the last one starts
        calibration, written at once."""
        if step.done >= 1.0:
            self.phase(TRAIN_END, f"calibrating on held-out good frames after {step.step} steps")
        else:
            progress = EXPORT_END + (TRAIN_END - EXPORT_END) * step.done
            self.advance(progress, f"training: step {step.step}, loss {step.loss:.4f}")

    def check(self) -> None:
        if self.stop.is_set():
            raise WorkerStopping(f"worker {self.worker} is shutting down")
        if self.lost.is_set():
            raise JobLost(f"training job {self.job_id} is no longer running on {self.worker}")
        if self.cancelled.is_set():
            raise JobCancelled(f"cancelled at {self.progress:.0%}: {self.message}")

    def flush(self) -> None:
        """Write progress, message and the new log lines (the heartbeat); a database outage is waited out."""
        with self._lock:
            lines, self._pending = self._pending, []
            try:
                with db.session(self.engine, write=True) as session:
                    asked = training_jobs.beat(
                        session, self.job_id, self.worker, progress=self.progress, message=self.message, log=lines
                    )
            except DependencyUnavailable as exc:  # the lines wait for the next write
                self._pending = lines + self._pending
                log.warning("job %s: cannot report progress: %s", self.job_id, exc)
                return
            except JobLost as exc:
                log.error("%s", exc)
                self.lost.set()
                return
            self._last = time.monotonic()
        if asked:
            self.cancelled.set()


@contextmanager
def heartbeating(reporter: JobReporter, every_s: float = HEARTBEAT_S) -> Iterator[None]:
    """Keep the job's heartbeat fresh while the block runs, whatever the training thread is doing."""
    done = threading.Event()

    def beat() -> None:
        while not done.wait(every_s):
            reporter.flush()

    thread = threading.Thread(target=beat, name=f"heartbeat-{reporter.job_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


class TrainingWorker:
    """The trainer's loop (a ``diffqc.runtime.service.Loop``) over one database, blob store and repository."""

    def __init__(
        self,
        engine: Engine,
        blobs: BlobStore,
        repository: Path,
        worker: str,
        limits: ImageLimits = DEFAULT_LIMITS,
        poll_s: float = POLL_S,
    ):
        self.engine, self.blobs, self.repository, self.worker = engine, blobs, Path(repository), worker
        self.limits, self.poll_s = limits, poll_s

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                worked = self.run_once(stop)
            except DependencyUnavailable as exc:  # the database: wait it out
                log.warning("cannot reach the job queue: %s", exc)
                worked = False
            if not worked:
                stop.wait(self.poll_s)

    def run_once(self, stop: threading.Event) -> bool:
        """Fail the jobs of dead workers, then run the oldest queued job; False when there was none."""
        with db.session(self.engine, write=True) as session:
            for stale in training_jobs.fail_stale(session):
                log.error("training job %s failed: %s", stale.id, stale.error)
                JOBS.labels("failed").inc()
        with db.session(self.engine, write=True) as session:
            job = training_jobs.claim_next(session, self.worker)
        if job is None:
            return False
        log.info("running training job %s of %s for %s", job.id, job.product_type, job.requested_by)
        self.run_job(job, stop)
        return True

    def run_job(self, job: TrainingJob, stop: threading.Event) -> None:
        """Run a job this worker claimed to its end: succeeded, failed, cancelled, or back in the queue."""
        reporter = JobReporter(self.engine, job.id, self.worker, stop)
        RUNNING.set(1)
        try:
            with heartbeating(reporter):
                ending = self._run(job, reporter)
            reporter.flush()  # the log lines written since the last report
            if ending is not None:
                status, message, result = ending
                self._finish(job, status, message, **result)
        finally:
            RUNNING.set(0)

    def _run(self, job: TrainingJob, reporter: JobReporter) -> tuple[JobStatus, str, dict[str, Any]] | None:
        """How the job ends: its status, message and result; None when it is no longer this worker's."""
        try:
            version, result = self._train(job, reporter)
        except JobCancelled as exc:
            return JobStatus.CANCELLED, f"{exc}; nothing was registered", {}
        except WorkerStopping as exc:
            return JobStatus.QUEUED, f"{exc}: back in the queue", {}
        except JobLost as exc:
            log.error("%s", exc)
            return None
        except JOB_ERRORS as exc:
            return JobStatus.FAILED, f"failed: {exc}", {"error": str(exc)}
        except Exception as exc:  # a bug must not take the worker down with its job
            log.exception("training job %s failed unexpectedly", job.id)
            problem = f"{exc.__class__.__name__}: {exc}"
            return JobStatus.FAILED, f"failed: {problem}", {"error": problem}
        late = " (the cancel request came after staging)" if reporter.cancelled.is_set() else ""
        message = f"registered version {version} of {job.product_type} as a candidate{late}"
        return JobStatus.SUCCEEDED, message, {"result_version": version, "evaluation": result}

    def _train(self, job: TrainingJob, reporter: JobReporter) -> tuple[str, dict[str, Any]]:
        options = TrainingOptions.model_validate(job.options)
        product = job.product_type
        trained_by = f"training-job {job.id} (requested by {job.requested_by})"
        with tempfile.TemporaryDirectory(prefix="diffqc-training-") as work:
            reporter.phase(0.0, "collecting the product's good frames")
            data = export_training_set(
                self.engine,
                self.blobs,
                product,
                Path(work) / "data",
                max_images=options.max_images,
                min_images=training_jobs.MIN_IMAGES,
                limits=self.limits,
                progress=lambda done, total: reporter.advance(
                    EXPORT_END * done / total, f"collecting good frames: {done} of {total}"
                ),
            )
            left_out = f"; {len(data.left_out)} left out (image gone or unreadable)" if data.left_out else ""
            reporter.log(f"training set: {data.passed} passed parts and {data.false_alarms} false alarms{left_out}")
            with db.session(self.engine) as session:
                base = production_version(session, product)
            if base is None:
                raise DetectorError(f"product type {product!r} has no production model version to retrain")
            reporter.phase(EXPORT_END, f"loading production version {base.version} to fine-tune")
            detector = retrain_detector(
                Detector.load(artifact_of(self.repository, base.version, product)),
                data.root,
                product,
                steps=options.steps,
                seed=options.seed,
                log=reporter.log,
                on_step=reporter.step,
            )
            result = {
                **evaluation(detector, product),
                "base_version": base.version,
                "base_threshold": base.threshold,
                "passed_frames": data.passed,
                "false_alarm_frames": data.false_alarms,
            }
            detector.metadata["trained_by"] = trained_by
            detector.metadata["retraining"].update(job=job.id, base_version=base.version, evaluation=result)
            reporter.phase(STAGING, "staging the new model version")  # a cancel up to here stages nothing
            version_dir = self._stage(detector.save(Path(work) / "model"))
            reporter.note(0.95, f"registering version {version_dir.name} as a candidate")
            register_version(version_dir, self.engine, actor=trained_by, products=[product])
        return version_dir.name, result

    def _stage(self, artifact: Path) -> Path:
        """Stage ``artifact`` as the repository's next version; one worker at a time picks a version number."""
        with db.session(self.engine, write=True) as session:
            if session.get_bind().dialect.name == "postgresql":
                session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": STAGING_LOCK})
            return stage_version(artifact, self.repository)

    def _finish(self, job: TrainingJob, status: JobStatus, message: str, **result: Any) -> None:
        try:
            with db.session(self.engine, write=True) as session:
                training_jobs.finish(session, job.id, self.worker, status, message, **result)
        except (JobLost, DependencyUnavailable) as exc:  # failed as stale meanwhile, or the database is gone
            log.error("training job %s could not be marked %s: %s", job.id, status.value, exc)
            return
        JOBS.labels(status.value).inc()
        log.info("training job %s %s: %s", job.id, status.value, message)
