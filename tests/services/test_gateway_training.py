"""Retraining at the gateway, against the real uvicorn process and Postgres: an admin starts and cancels
training jobs (audited), viewers follow them but may not start or cancel one, and a request the store
refuses answers a 4xx naming why. (The gateway only queues jobs: no trainer runs here.)"""

from __future__ import annotations

import httpx
import pytest

from diffqc.store.engine import make_engine
from diffqc.store.migrate import upgrade
from diffqc.store.training_jobs import DEFAULT_MAX_IMAGES
from tests.helpers.gateway_stack import ADMIN_KEY, VIEWER_KEY, gateway_alone
from tests.helpers.inspections import add_product

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    with gateway_alone(tmp_path_factory.mktemp("gateway-training")) as (url, database_url):
        engine = make_engine(database_url)
        upgrade(engine)
        for product in ("pcb", "gear", "cam"):
            add_product(engine, product)  # in production with version "1"
        engine.dispose()
        yield url


@pytest.fixture(scope="module")
def admin(gateway):
    with httpx.Client(base_url=gateway, timeout=30, headers={"X-API-Key": ADMIN_KEY}) as client:
        yield client


@pytest.fixture(scope="module")
def viewer(gateway):
    with httpx.Client(base_url=gateway, timeout=30, headers={"X-API-Key": VIEWER_KEY}) as client:
        yield client


def _audited(admin: httpx.Client, action: str, subject: str) -> list[dict]:
    rows = admin.get("/api/audit", params={"limit": 1000}).json()
    return [row for row in rows if row["action"] == action and row["subject"] == subject]


def test_an_admin_starts_a_job_viewers_follow_it_and_an_admin_cancels_it(admin, viewer):
    started = admin.post("/api/training-jobs", json={"product": "pcb", "options": {"steps": 50}})
    assert started.status_code == 202, started.text
    job = started.json()
    assert (job["product_type"], job["status"], job["requested_by"], job["progress"]) == (
        "pcb",
        "queued",
        "test-admin",
        0.0,
    )
    assert job["options"] == {"steps": 50, "max_images": DEFAULT_MAX_IMAGES, "seed": 0}
    assert [row["actor"] for row in _audited(admin, "training.start", job["id"])] == ["test-admin"]

    listed = viewer.get("/api/training-jobs", params={"product": "pcb"})
    assert listed.status_code == 200 and [j["id"] for j in listed.json()] == [job["id"]]
    assert viewer.get("/api/training-jobs", params={"product": "gear"}).json() == []
    detail = viewer.get(f"/api/training-jobs/{job['id']}")
    assert detail.status_code == 200 and detail.json()["log"] == "" and detail.json()["message"] == "queued"

    cancelled = admin.post(f"/api/training-jobs/{job['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert (cancelled.json()["status"], cancelled.json()["message"]) == (
        "cancelled",
        "cancelled by test-admin before it started",
    )
    again = admin.post(f"/api/training-jobs/{job['id']}/cancel")  # nothing more to do: answered, not audited
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    assert len(_audited(admin, "training.cancel", job["id"])) == 1
    assert viewer.get("/api/training-jobs", params={"status": "cancelled"}).json()[0]["id"] == job["id"]


def test_a_viewer_may_neither_start_nor_cancel_a_job(admin, viewer):
    refused = viewer.post("/api/training-jobs", json={"product": "gear"})
    assert refused.status_code == 403, refused.text
    assert refused.json()["detail"] == "role admin required: API key 'test-viewer' has role viewer"
    assert admin.get("/api/training-jobs", params={"product": "gear"}).json() == []  # nothing queued
    job = admin.post("/api/training-jobs", json={"product": "gear"}).json()
    assert viewer.post(f"/api/training-jobs/{job['id']}/cancel").status_code == 403
    assert viewer.get(f"/api/training-jobs/{job['id']}").json()["status"] == "queued"


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"product": "rotor"}, 404, "no product type 'rotor' is registered (registered: cam, gear, pcb)"),
        ({"product": "cam", "options": {"steps": 0}}, 422, "options.steps: Input should be greater than or equal to 1"),
        (
            {"product": "cam", "options": {"max_images": 10**6}},
            422,
            "options.max_images: Input should be less than or equal to 5000",
        ),
        ({"product": "cam", "options": {"epochs": 3}}, 422, "options.epochs: Extra inputs are not permitted"),
        ({}, 422, "missing metadata field: product"),
    ],
)
def test_a_bad_request_is_refused_naming_the_problem(admin, body, status, detail):
    response = admin.post("/api/training-jobs", json=body)
    assert (response.status_code, response.json()["detail"]) == (status, detail)


def test_a_second_job_of_a_product_and_cancelling_a_finished_or_unknown_job_are_refused(admin):
    first = admin.post("/api/training-jobs", json={"product": "cam"}).json()
    second = admin.post("/api/training-jobs", json={"product": "cam"})
    assert second.status_code == 409
    assert second.json()["detail"] == (
        f"product type 'cam' already has training job {first['id']} (queued); wait for it or cancel it first"
    )
    unknown = "00000000-0000-0000-0000-000000000000"
    for response in (admin.get(f"/api/training-jobs/{unknown}"), admin.post(f"/api/training-jobs/{unknown}/cancel")):
        assert (response.status_code, response.json()["detail"]) == (404, f"no training job with id '{unknown}'")
    assert admin.get("/api/training-jobs/not-a-job-id").status_code == 422
