"""Retraining jobs on a real PostgreSQL: requests refused naming why, two workers never claim the same job,
cancel, heartbeats, a dead worker's job failed, the log bounded, every request and cancel audited, and
`diffqc jobs`."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from diffqc.cli import app
from diffqc.core import clock
from diffqc.store import db, training_jobs
from diffqc.store.engine import make_engine
from diffqc.store.migrate import upgrade
from diffqc.store.models import AuditEntry, JobStatus, ProductType, TrainingJob
from diffqc.store.training_jobs import InvalidOptions, JobConflict, JobLost, UnknownProduct
from tests.helpers.inspections import add_product


@pytest.fixture
def engine(postgres_url):
    engine = make_engine(postgres_url)
    upgrade(engine)
    for product in ("pcb", "gear", "cam", "bolt"):
        add_product(engine, product)  # each with production version "1"
    yield engine
    engine.dispose()


def _request(engine, product: str = "pcb", options: dict | None = None, actor: str = "alice") -> TrainingJob:
    with db.session(engine, write=True) as session:
        return training_jobs.request_job(session, product, options, actor)


def _job(engine, job_id: str) -> TrainingJob:
    with db.session(engine) as session:
        return training_jobs.get_job(session, job_id)


def _audited(engine, action: str) -> list[AuditEntry]:
    with db.session(engine) as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


def test_a_request_queues_the_job_with_its_options_and_is_audited(engine):
    job = _request(engine, options={"steps": 40})
    assert (job.status, job.product_type, job.requested_by, job.progress) == ("queued", "pcb", "alice", 0.0)
    assert job.options == {"steps": 40, "max_images": training_jobs.DEFAULT_MAX_IMAGES, "seed": 0}
    (entry,) = _audited(engine, "training.start")
    assert (entry.actor, entry.subject, entry.details["product_type"]) == ("alice", job.id, "pcb")


def test_requests_are_refused_naming_the_problem(engine):
    with pytest.raises(UnknownProduct, match=r"no product type 'rotor' is registered \(registered: bolt, cam, gear"):
        _request(engine, "rotor")
    with pytest.raises(InvalidOptions, match=r"training options: steps: Input should be less than or equal to 20000"):
        _request(engine, options={"steps": training_jobs.MAX_STEPS + 1})
    with pytest.raises(InvalidOptions, match=r"max_images: Input should be greater than or equal to 8"):
        _request(engine, options={"max_images": 2})
    with pytest.raises(InvalidOptions, match=r"minutes: Extra inputs are not permitted"):
        _request(engine, options={"minutes": 5})
    with db.session(engine, write=True) as session:
        session.add(ProductType(name="new", preprocessing={}, nominal_ranges={}))
    with pytest.raises(JobConflict, match="'new' has no production model version to retrain; onboard it first"):
        _request(engine, "new")
    first = _request(engine)
    with pytest.raises(JobConflict, match=f"'pcb' already has training job {first.id} \\(queued\\)"):
        _request(engine)
    assert len(_audited(engine, "training.start")) == 1  # refusals change nothing


def test_two_workers_never_claim_the_same_job(engine):
    jobs = {_request(engine, product).id for product in ("pcb", "gear")}
    # A claim holds its row until it commits; the other worker skips it instead of waiting or taking it.
    with db.session(engine, write=True) as first, db.session(engine, write=True) as second:
        a = training_jobs.claim_next(first, "worker-a")
        b = training_jobs.claim_next(second, "worker-b")
        assert a is not None and b is not None and a.id != b.id
        assert {a.id, b.id} == jobs
    with db.session(engine, write=True) as session:
        assert training_jobs.claim_next(session, "worker-c") is None
    assert {(j.id, j.worker) for j in map(lambda i: _job(engine, i), jobs)} == {(a.id, "worker-a"), (b.id, "worker-b")}

    # Many workers at once on more jobs: each job claimed exactly once.
    queued = {_request(engine, product).id for product in ("cam", "bolt")}
    with db.session(engine, write=True) as session:  # two more of the same products: finish the first two
        for job_id, worker in ((a.id, "worker-a"), (b.id, "worker-b")):
            training_jobs.finish(session, job_id, worker, JobStatus.SUCCEEDED, "done")
    queued |= {_request(engine, product).id for product in ("pcb", "gear")}
    claims: list[tuple[str, str]] = []
    start = threading.Barrier(6)

    def work(worker: str) -> None:
        start.wait()
        while True:
            with db.session(engine, write=True) as session:
                job = training_jobs.claim_next(session, worker)
                if job is None:
                    return
                claims.append((job.id, worker))

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(job_id for job_id, _ in claims) == sorted(queued)
    assert all(_job(engine, job_id).worker == worker for job_id, worker in claims)


def test_cancel_ends_a_queued_job_and_asks_a_running_one_to_stop(engine):
    queued = _request(engine, "pcb")
    with db.session(engine, write=True) as session:
        cancelled = training_jobs.request_cancel(session, queued.id, "bob")
    assert (cancelled.status, cancelled.message) == ("cancelled", "cancelled by bob before it started")
    assert cancelled.finished_at is not None

    running = _request(engine, "gear")
    with db.session(engine, write=True) as session:
        training_jobs.claim_next(session, "worker-a")
    with db.session(engine, write=True) as session:
        assert training_jobs.beat(session, running.id, "worker-a", progress=0.3) is False
        asked = training_jobs.request_cancel(session, running.id, "bob")
        assert (asked.status, asked.cancel_requested) == ("running", True)
    with db.session(engine, write=True) as session:
        assert training_jobs.beat(session, running.id, "worker-a", progress=0.4) is True  # the worker learns of it
        training_jobs.finish(session, running.id, "worker-a", JobStatus.CANCELLED, "cancelled at step 7")
        again = training_jobs.request_cancel(session, running.id, "carol")  # a cancelled job stays as it is
    assert (again.status, again.message, again.result_version) == ("cancelled", "cancelled at step 7", None)
    assert [(e.actor, e.subject, e.details["was"]) for e in _audited(engine, "training.cancel")] == [
        ("bob", queued.id, "queued"),
        ("bob", running.id, "running"),
    ]

    done = _request(engine, "cam")
    with db.session(engine, write=True) as session:
        training_jobs.claim_next(session, "worker-a")
        training_jobs.finish(session, done.id, "worker-a", JobStatus.SUCCEEDED, "registered", result_version="2")
    with (
        pytest.raises(JobConflict, match=f"training job {done.id} has succeeded already"),
        db.session(engine, write=True) as session,
    ):
        training_jobs.request_cancel(session, done.id, "bob")


def test_a_worker_that_stops_heartbeating_has_its_job_failed_and_cannot_report_again(engine):
    job = _request(engine)
    fresh = _request(engine, "gear")
    with db.session(engine, write=True) as session:
        training_jobs.claim_next(session, "dead-worker")
        training_jobs.claim_next(session, "live-worker")
    later = clock.now() + timedelta(seconds=training_jobs.STALE_AFTER_S + 1)
    with db.session(engine, write=True) as session:  # the live worker heartbeats at "later", the dead one does not
        session.execute(update(TrainingJob).where(TrainingJob.id == fresh.id).values(heartbeat_at=later))
    with db.session(engine, write=True) as session:
        failed = training_jobs.fail_stale(session, now=later)
    assert [j.id for j in failed] == [job.id]
    stale = _job(engine, job.id)
    assert stale.status == "failed" and stale.finished_at is not None
    assert "worker dead-worker stopped heartbeating" in stale.error and "start the job again" in stale.error
    assert stale.error in stale.log
    assert _job(engine, fresh.id).status == "running"
    with (
        pytest.raises(JobLost, match="is failed on dead-worker, not running on dead-worker"),
        db.session(engine, write=True) as session,
    ):
        training_jobs.beat(session, job.id, "dead-worker", progress=0.5)


def test_a_job_goes_back_to_the_queue_when_its_worker_shuts_down(engine):
    job = _request(engine)
    with db.session(engine, write=True) as session:
        training_jobs.claim_next(session, "worker-a")
        training_jobs.beat(session, job.id, "worker-a", progress=0.5, message="training")
        training_jobs.finish(session, job.id, "worker-a", JobStatus.QUEUED, "worker-a is shutting down")
    back = _job(engine, job.id)
    assert (back.status, back.worker, back.started_at, back.progress) == ("queued", None, None, 0.0)
    with db.session(engine, write=True) as session:
        assert training_jobs.claim_next(session, "worker-b").id == job.id


def test_the_log_keeps_its_last_lines_within_the_bound(engine):
    job = _request(engine)
    with db.session(engine, write=True) as session:
        training_jobs.claim_next(session, "worker-a")
    for batch in range(40):
        lines = [f"batch {batch} line {i} " + "x" * 80 for i in range(25)]
        with db.session(engine, write=True) as session:
            training_jobs.beat(session, job.id, "worker-a", log=lines)
    log = _job(engine, job.id).log
    assert len(log) <= training_jobs.LOG_MAX_CHARS
    assert log.rstrip().endswith("batch 39 line 24 " + "x" * 80)
    assert "batch 0 line 0 " not in log
    assert log.splitlines()[0].split(" ", 1)[1].startswith("batch ")  # it starts at a whole line


def test_diffqc_jobs_start_list_show_cancel(engine, postgres_url):
    database = {"DIFFQC_DATABASE_URL": postgres_url}

    def jobs(*args: str):
        return CliRunner().invoke(app, ["jobs", *args], env=database)

    started = jobs("start", "--product", "gear", "--steps", "30")
    assert started.exit_code == 0, started.output
    job_id = started.output.strip().splitlines()[-1]
    assert f"training job {job_id} of 'gear': queued 0%" in started.output
    assert _job(engine, job_id).options["steps"] == 30
    listed = jobs("list", "--product", "gear")
    assert listed.exit_code == 0 and job_id in listed.output and "queued" in listed.output
    shown = jobs("show", job_id)
    assert shown.exit_code == 0 and "options: {'steps': 30" in shown.output
    cancelled = jobs("cancel", job_id)
    assert cancelled.exit_code == 0 and "cancelled 0%" in cancelled.output
    assert _audited(engine, "training.cancel")[0].actor.startswith("cli")

    bad = jobs("start", "--product", "gear", "--steps", "0")
    assert bad.exit_code == 2 and "training options: steps: Input should be greater than or equal to 1" in bad.output
    unknown = jobs("start", "--product", "rotor")
    assert unknown.exit_code == 1 and "no product type 'rotor' is registered" in unknown.output
    missing = jobs("show", "00000000-0000-0000-0000-000000000000")
    assert missing.exit_code == 1 and "no training job with id" in missing.output
