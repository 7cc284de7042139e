"""Retraining on a real PostgreSQL and blob store with the tiny detector: the trainer runs a job in its own
process into a candidate version whose lineage names the job; the training set holds the false alarms and
no defective part; a cancel stops training and registers nothing; a dead worker's job is failed; a job
on too few good frames fails saying so; a worker that shuts down puts its job back in the queue; the trainer
will not start without a model repository it can write."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select, update
from typer.testing import CliRunner

from diffqc.cli import app
from diffqc.core import clock
from diffqc.core.artifact import read_metadata
from diffqc.data.label_export import file_stem
from diffqc.data.mvtec import list_samples
from diffqc.data.training_frames import export_training_set
from diffqc.infra.ports import free_port
from diffqc.infra.services import service_process
from diffqc.serving.register import register_version
from diffqc.serving.repository import MODEL_NAME, artifact_of, stage_version, versions
from diffqc.store import db, labels, training_jobs
from diffqc.store.blobs import FileBlobStore
from diffqc.store.engine import make_engine
from diffqc.store.model_registry import list_versions, production_version
from diffqc.store.models import AuditEntry, LabelKind, ProductType, TrainingJob
from diffqc.store.training_jobs import JobLost
from services.trainer.service import TrainingWorker
from tests.helpers.gateway_stack import wait_until
from tests.helpers.inspections import add_inspection
from tests.helpers.models import TINY_PRODUCT

pytestmark = pytest.mark.timeout(300)

PASSING, FLAGGED = 0.2, 0.9  # scores of the stored verdicts (threshold 0.5)


@dataclass
class Plant:
    """A product in production (the tiny PCB model, version 1) with judged and labelled frames on the line."""

    database_url: str
    engine: object
    blobs: FileBlobStore
    blob_root: Path
    repo: Path
    passed: list[str]  # inspection ids of passed good parts


def _plant(database_url: str, root: Path, tiny_artifact, good: int) -> Plant:
    engine = make_engine(database_url)
    repo = root / "repo"
    register_version(stage_version(tiny_artifact[0], repo), engine, actor="onboarding")
    blobs = FileBlobStore(root / "blobs")
    data = tiny_artifact[1]
    passed = []
    for i, sample in enumerate(list_samples(data, "train")[:good]):
        passed.append(add_inspection(engine, blobs, f"pass-{i}", PASSING, image=sample.path.read_bytes(), index=i))
    test = list_samples(data, "test")
    good_part = next(s for s in test if s.label == 0).path.read_bytes()
    defective = [s.path.read_bytes() for s in test if s.label == 1]
    add_inspection(engine, blobs, "false-alarm", FLAGGED, image=good_part, index=100)
    add_inspection(engine, blobs, "confirmed", FLAGGED, image=defective[0], index=101)
    add_inspection(engine, blobs, "missed", PASSING, image=defective[1], index=102)
    add_inspection(engine, None, "blob-gone", PASSING, index=103)  # its image is not in the blob store
    with db.session(engine, write=True) as session:
        labels.set_label(session, "false-alarm", LabelKind.FALSE_ALARM, None, "glare on the pads", "inspector")
        labels.set_label(session, "confirmed", LabelKind.CONFIRMED_DEFECT, "scratch", "", "inspector")
        labels.set_label(session, "missed", LabelKind.MISSED_DEFECT, "scratch", "found at test", "inspector")
    return Plant(database_url, engine, blobs, root / "blobs", repo, passed)


@pytest.fixture
def plant(postgres_url, tmp_path, tiny_artifact):
    plant = _plant(postgres_url, tmp_path, tiny_artifact, good=14)
    yield plant
    plant.engine.dispose()


def _request(plant: Plant, **options) -> TrainingJob:
    with db.session(plant.engine, write=True) as session:
        return training_jobs.request_job(session, TINY_PRODUCT, options, "test-admin")


def _job(plant: Plant, job_id: str) -> TrainingJob:
    with db.session(plant.engine) as session:
        return training_jobs.get_job(session, job_id)


def _versions(plant: Plant) -> dict[str, str]:
    with db.session(plant.engine) as session:
        return {row.version: row.stage for row in list_versions(session, TINY_PRODUCT)}


def test_the_training_set_is_the_good_frames_with_the_false_alarms_and_no_defective_part(plant, tmp_path):
    found = export_training_set(plant.engine, plant.blobs, TINY_PRODUCT, tmp_path / "set", max_images=100, min_images=8)
    names = {path.stem for path in (tmp_path / "set" / "train" / "good").iterdir()}
    assert names == {file_stem(i) for i in [*plant.passed, "false-alarm"]}  # not "confirmed", "missed"
    assert (found.passed, found.false_alarms) == (14, 1)
    assert [m["frame_id"] for m in found.left_out] == ["frame-blob-gone"]
    with Image.open(next((tmp_path / "set" / "train" / "good").iterdir())) as image:
        assert image.size == (64, 64)  # normalized to the product's spec, as the detector sees frames
    # A bound keeps every false alarm and the newest passed parts; a frame left out makes room for the next.
    few = export_training_set(plant.engine, plant.blobs, TINY_PRODUCT, tmp_path / "few", max_images=9, min_images=8)
    assert (few.false_alarms, few.passed) == (1, 8)


def test_a_job_runs_in_the_trainer_process_and_registers_a_candidate_whose_lineage_names_the_job(plant, tmp_path):
    ranges = {"oven_temp_c": [230.0, 250.0]}  # the product's process window: registering keeps it
    with db.session(plant.engine, write=True) as session:
        session.get(ProductType, TINY_PRODUCT).nominal_ranges = ranges
    port = free_port()
    env = {
        "DIFFQC_DATABASE_URL": plant.database_url,
        "DIFFQC_BLOB_ROOT": str(plant.blob_root),
        "DIFFQC_DATA_DIR": str(tmp_path),
        "MODEL_REPOSITORY": str(plant.repo),
    }
    trainer = service_process("trainer", port, env, tmp_path / "trainer.log").start()
    pid = trainer.pid
    try:
        database = {"DIFFQC_DATABASE_URL": plant.database_url}
        started = CliRunner().invoke(app, ["jobs", "start", "--product", TINY_PRODUCT, "--steps", "3"], env=database)
        assert started.exit_code == 0, started.output
        job_id = started.output.strip().splitlines()[-1]
        finished = wait_until(
            lambda: (job := _job(plant, job_id)).status in training_jobs.FINISHED and job,
            timeout_s=240,
            what="the job's end",
        )
    finally:
        trainer.stop()
    assert finished.status == "succeeded", (finished.error, trainer.log_tail())
    assert (finished.result_version, finished.progress, finished.worker.split(":")[-1]) == ("2", 1.0, str(pid))
    with db.session(plant.engine) as session:
        rows = {row.version: row for row in list_versions(session, TINY_PRODUCT)}
        assert production_version(session, TINY_PRODUCT).version == "1"  # a candidate, ready for shadow
        assert session.get(ProductType, TINY_PRODUCT).nominal_ranges == ranges
        registered = session.scalars(select(AuditEntry).where(AuditEntry.action == "model.register")).all()
    candidate = rows["2"]
    trained_by = f"training-job {job_id} (requested by {finished.requested_by})"
    assert (candidate.stage, candidate.parent_version, candidate.trained_by) == ("candidate", "1", trained_by)
    assert candidate.data_fingerprint == finished.evaluation["data_fingerprint"]
    assert candidate.threshold == pytest.approx(finished.evaluation["threshold"])
    assert [(e.actor, e.subject) for e in registered][-1] == (trained_by, f"{TINY_PRODUCT}/2")
    evaluation = finished.evaluation
    assert (evaluation["base_version"], evaluation["passed_frames"], evaluation["false_alarm_frames"]) == ("1", 14, 1)
    assert evaluation["steps"] == 3 and 0.0 <= evaluation["held_out_fpr"] <= 1.0 and evaluation["held_out_images"] >= 4
    meta = read_metadata(artifact_of(plant.repo, "2", TINY_PRODUCT))  # staged where Triton loads versions from
    assert (meta["trained_by"], meta["retraining"]["job"], meta["retraining"]["base_version"]) == (
        trained_by,
        job_id,
        "1",
    )
    assert "training set: 14 passed parts and 1 false alarms; 1 left out" in finished.log
    assert "calibrated 'pcb'" in finished.log and finished.log.rstrip().endswith("as a candidate")
    shown = CliRunner().invoke(app, ["jobs", "show", job_id], env=database)
    assert shown.exit_code == 0 and "succeeded 100%" in shown.output and "version 2" in shown.output


def test_a_cancel_stops_a_running_job_at_its_next_step_and_registers_nothing(plant):
    job = _request(plant, steps=training_jobs.MAX_STEPS)  # far longer than the test may take
    with db.session(plant.engine, write=True) as session:
        claimed = training_jobs.claim_next(session, "worker-test")
    worker = TrainingWorker(plant.engine, plant.blobs, plant.repo, "worker-test")
    running = threading.Thread(target=worker.run_job, args=(claimed, threading.Event()))
    running.start()
    try:
        wait_until(lambda: _job(plant, job.id).message.startswith("training: step"), timeout_s=120, what="training")
        with db.session(plant.engine, write=True) as session:
            training_jobs.request_cancel(session, job.id, "test-admin")
    finally:
        running.join()
    cancelled = _job(plant, job.id)
    assert cancelled.status == "cancelled", cancelled.log
    assert cancelled.message.startswith("cancelled at") and "training: step" in cancelled.message
    assert cancelled.message.endswith("nothing was registered") and cancelled.result_version is None
    assert _versions(plant) == {"1": "production"} and versions(plant.repo / MODEL_NAME) == [1]


def test_a_job_whose_worker_stopped_heartbeating_is_failed_by_another_worker(plant):
    job = _request(plant)
    with db.session(plant.engine, write=True) as session:
        training_jobs.claim_next(session, "dead-worker")
        long_ago = clock.now() - timedelta(seconds=training_jobs.STALE_AFTER_S + 1)
        session.execute(update(TrainingJob).where(TrainingJob.id == job.id).values(heartbeat_at=long_ago))
    live = TrainingWorker(plant.engine, plant.blobs, plant.repo, "live-worker")
    assert live.run_once(threading.Event()) is False  # it failed the job, and found none queued
    failed = _job(plant, job.id)
    assert failed.status == "failed" and "worker dead-worker stopped heartbeating" in failed.error
    with pytest.raises(JobLost), db.session(plant.engine, write=True) as session:
        training_jobs.beat(session, job.id, "dead-worker", progress=0.5)


def test_a_job_on_too_few_good_frames_fails_naming_what_it_found(postgres_url, tmp_path, tiny_artifact):
    plant = _plant(postgres_url, tmp_path, tiny_artifact, good=3)
    try:
        job = _request(plant)
        assert TrainingWorker(plant.engine, plant.blobs, plant.repo, "worker-test").run_once(threading.Event())
        failed = _job(plant, job.id)
        assert failed.status == "failed"
        assert failed.error.startswith(
            "product type 'pcb' has 4 usable good frame(s) (3 passed, 1 labelled false_alarm; 1 left out, e.g. "
        )
        assert failed.error.endswith("retraining needs at least 8")
        assert _versions(plant) == {"1": "production"}
    finally:
        plant.engine.dispose()


def test_a_worker_that_shuts_down_puts_its_job_back_in_the_queue(plant):
    job = _request(plant)
    with db.session(plant.engine, write=True) as session:
        claimed = training_jobs.claim_next(session, "worker-test")
    stopping = threading.Event()
    stopping.set()  # SIGTERM arrived
    TrainingWorker(plant.engine, plant.blobs, plant.repo, "worker-test").run_job(claimed, stopping)
    back = _job(plant, job.id)
    assert (back.status, back.worker) == ("queued", None)
    assert "worker-test is shutting down: back in the queue" in back.log


def test_the_trainer_will_not_start_without_a_model_repository_it_can_write(postgres_url, tmp_path):
    missing = tmp_path / "missing"
    env = {**os.environ, "DIFFQC_DATABASE_URL": postgres_url, "MODEL_REPOSITORY": str(missing)}
    done = subprocess.run([sys.executable, "-m", "services.trainer"], env=env, capture_output=True, text=True)
    assert done.returncode == 1
    assert f"the model repository {missing} (MODEL_REPOSITORY) is not a folder" in done.stderr + done.stdout
