"""The gateway as a real uvicorn process in front of the whole local pipeline (broker, Triton serving
the tiny detector, Postgres, ingestion, preprocessing, inference, scoring), for the gateway's API
tests (tests/services/test_gateway*.py) and the dashboard tests (tests/dashboard)."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from diffqc.infra.errors import InfraError
from diffqc.infra.pipeline import LocalPipeline
from diffqc.infra.ports import free_port
from diffqc.infra.postgres import throwaway_database
from diffqc.infra.process import ServerProcess
from diffqc.infra.services import gateway_process
from diffqc.security.api_keys import BootstrapKey, Role, hash_key, new_key
from diffqc.serving.repository import stage_version
from tests.helpers.env import require
from tests.helpers.models import TINY_PRODUCT


def _keys() -> tuple[dict[Role, str], list[str]]:
    """One key per role, and their DIFFQC_GATEWAY_API_KEYS entries (salted hashes)."""
    keys, entries = {}, []
    for role in Role:
        prefix, keys[role] = new_key()
        entries.append(BootstrapKey(role, f"test-{role.value}", prefix, hash_key(keys[role])).entry())
    return keys, entries


KEYS, KEY_ENTRIES = _keys()
VIEWER_KEY, API_KEY, ADMIN_KEY = KEYS[Role.VIEWER], KEYS[Role.OPERATOR], KEYS[Role.ADMIN]  # API_KEY uploads
LINK_SECRET = uuid.uuid4().hex
SESSION_SECRET = uuid.uuid4().hex
UPLOAD = "/api/inspection/upload"
# The dashboard tests' gateway: a short SPC baseline, and a small drift reference and window, so that a few
# dozen stored parts give a line its chart and make it drift.
SPC_BASELINE = 5
DRIFT = {"reference_size": 20, "window": 20, "check_every": 5}
DASHBOARD_ENV = {"DIFFQC_SPC_BASELINE_SIZE": str(SPC_BASELINE)} | {
    f"DIFFQC_DRIFT_{k.upper()}": str(v) for k, v in DRIFT.items()
}


@dataclass
class GatewayStack:
    pipeline: LocalPipeline
    gateway: ServerProcess
    url: str

    def client(self, api_key: str | None = API_KEY, **kwargs) -> httpx.Client:
        """A client of the gateway sending ``api_key`` (default: the operator's, who may read and upload)."""
        headers = {**({"X-API-Key": api_key} if api_key else {}), **kwargs.pop("headers", {})}
        return httpx.Client(base_url=self.url, timeout=90, headers=headers, **kwargs)

    def log_tails(self) -> dict[str, str]:
        return {**self.pipeline.log_tails(), "gateway": self.gateway.log_tail()}


@contextmanager
def gateway_stack(
    root: Path, artifact: Path, service_env: dict[str, str] | None = None, gateway_env: dict[str, str] | None = None
) -> Iterator[GatewayStack]:
    """The pipeline (services configured with ``service_env`` too) and the gateway in front of it."""
    require(shutil.which("victoria-metrics") is not None, "needs victoria-metrics: apt-get install victoria-metrics")
    try:
        with throwaway_database() as database_url:
            stage_version(artifact, root / "repo")
            pipeline = LocalPipeline(
                root / "run", root / "repo", database_url=database_url, service_env=service_env or {}
            )
            gateway = None
            try:
                pipeline.start()
                port = free_port()
                env = {
                    **pipeline.env,
                    "DIFFQC_GATEWAY_INGESTION_URL": pipeline.address("ingestion"),
                    "DIFFQC_GATEWAY_API_KEYS": json.dumps(KEY_ENTRIES),
                    "DIFFQC_GATEWAY_LINK_SECRET": LINK_SECRET,
                    "DIFFQC_GATEWAY_SESSION_SECRET": SESSION_SECRET,
                    **(gateway_env or {}),
                }
                gateway = gateway_process(port, env, root / "run" / "logs" / "gateway.log").start()
                yield GatewayStack(pipeline, gateway, f"http://127.0.0.1:{port}")
            finally:
                if gateway is not None:
                    gateway.stop()
                pipeline.stop()
    except InfraError as exc:
        if "cannot create a test database" in str(exc):
            require(False, str(exc))
        raise


def form(line: str, frame_id: str | None = None, capture_time: datetime | None = None, **fields) -> dict[str, str]:
    """Upload metadata of one frame of the tiny product (every required field set)."""
    values = {
        "plant_id": "P1",
        "line_id": line,
        "station_id": "S1",
        "camera_id": "C1",
        "product_type": TINY_PRODUCT,
        "frame_id": frame_id or f"gw-{uuid.uuid4().hex[:12]}",
        "lot": "LOT-1",
        "work_order": "WO-1",
        "capture_time": (capture_time or datetime.now(UTC)).isoformat(),
    }
    values.update(fields)
    return {name: value for name, value in values.items() if value is not None}


def upload(
    client: httpx.Client, image: bytes, line: str, wait: bool = False, api_key: str | None = API_KEY, **fields
) -> httpx.Response:
    headers = {"X-API-Key": api_key} if api_key is not None else {}
    return client.post(
        UPLOAD,
        params={"wait": str(wait).lower()},
        headers=headers,
        files={"image": ("frame.png", image, "image/png")},
        data=form(line, **fields),
    )


def capture_times(n: int, start: datetime | None = None) -> list[datetime]:
    """Distinct, increasing capture times (the control chart runs in capture order)."""
    start = start or datetime.now(UTC)
    return [start + timedelta(seconds=i) for i in range(n)]


def wait_until(check, timeout_s: float = 60, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout_s} s")
        time.sleep(0.2)


def parts_by_verdict(client: httpx.Client, images: list[bytes], line: str, passing: int = 2) -> tuple[list, list]:
    """(passed, flagged): images sent on ``line`` until ``passing`` of them passed, split by the verdict.

    The tiny test detector judges some good parts defective, and a control chart's baseline takes good
    parts only: a test that wants a baseline of two alternating parts picks two that pass."""
    passed: list[bytes] = []
    flagged: list[bytes] = []
    for image, when in zip(images, capture_times(len(images)), strict=True):
        inspection = upload(client, image, line, wait=True, capture_time=when).json()["inspection"]
        (passed if inspection["verdict"] == "pass" else flagged).append(image)
        if len(passed) == passing:
            return passed, flagged
    raise AssertionError(f"the tiny detector passed {len(passed)} of {len(images)} good parts, fewer than {passing}")


@contextmanager
def gateway_alone(root: Path, env: dict[str, str] | None = None) -> Iterator[tuple[str, str]]:
    """(URL, database URL): the gateway process alone over a throwaway database, its ingestion address
    answering nobody, for routes that touch only the database. ``env`` adds settings."""
    try:
        with throwaway_database() as database_url:
            environment = {
                "DIFFQC_DATABASE_URL": database_url,
                "DIFFQC_DATA_DIR": str(root),
                "DIFFQC_BLOB_ROOT": str(root / "blobs"),
                "DIFFQC_GATEWAY_INGESTION_URL": "127.0.0.1:1",
                "DIFFQC_GATEWAY_API_KEYS": json.dumps(KEY_ENTRIES),
                "DIFFQC_GATEWAY_SESSION_SECRET": SESSION_SECRET,
                **(env or {}),
            }
            port = free_port()
            server = gateway_process(port, environment, root / "gateway.log").start()
            try:
                yield f"http://127.0.0.1:{port}", database_url
            finally:
                server.stop()
    except InfraError as exc:
        if "cannot create a test database" in str(exc):
            require(False, str(exc))
        raise
