"""Inference judges each frame with its product's production version in the model registry (real
PostgreSQL, real tritonserver, real broker): a promotion and a rollback take effect within seconds,
with no frame lost or judged twice."""

from __future__ import annotations

import time
import uuid

import pytest
from typer.testing import CliRunner

from diffqc.bus.admin import ensure_topics
from diffqc.cli import app
from diffqc.contracts.topics import INFERENCE_RESULTS, PREPARED_FRAMES
from diffqc.infra.ports import free_port
from diffqc.infra.triton import triton_server
from diffqc.serving.client import TritonDetector
from diffqc.serving.production import ModelRoutes
from diffqc.serving.register import register_version
from diffqc.serving.repository import stage_version
from diffqc.settings import Settings
from diffqc.store import db
from diffqc.store.blobs import FileBlobStore
from diffqc.store.engine import make_engine
from diffqc.store.model_registry import list_versions
from diffqc.v1.inference_pb2 import InferenceResult
from services.inference.service import Inference
from tests.helpers.kafka import collect
from tests.helpers.models import TINY_PRODUCT
from tests.services.test_inference import _images, _prepared, _produce, _run_worker

CACHE_S = 0.5


@pytest.fixture
def two_versions(tiny_artifact, tmp_path, postgres_url):
    """Triton serving versions 1 and 2 of the tiny PCB model; the registry: 1 production, 2 candidate."""
    repo = tmp_path / "repo"
    engine = make_engine(postgres_url)
    for _ in range(2):
        register_version(stage_version(tiny_artifact[0], repo), engine, actor="trainer")
    grpc_port = free_port()
    server = triton_server(repo, free_port(), grpc_port, free_port(), tmp_path, tmp_path / "triton.log").start()
    yield engine, f"127.0.0.1:{grpc_port}"
    server.stop()
    engine.dispose()


def test_promotion_and_rollback_switch_the_judging_version_within_seconds(
    two_versions, tiny_artifact, tmp_path, kafka_settings, postgres_url
):
    engine, grpc_url = two_versions
    with db.session(engine) as session:
        rows = {r.version: r for r in list_versions(session, TINY_PRODUCT)}
    assert {v: r.stage for v, r in rows.items()} == {"1": "production", "2": "candidate"}
    assert (rows["2"].parent_version, rows["2"].trained_by) == ("1", "trainer") and rows["2"].data_fingerprint

    settings = Settings(
        kafka=kafka_settings.model_copy(update={"group_prefix": uuid.uuid4().hex}),
        triton={"grpc_url": grpc_url, "timeout_s": 60},
    )
    detector = TritonDetector(settings.triton)
    detector.wait_until_ready(120)
    inference = Inference(settings, detector, FileBlobStore(tmp_path / "blobs"), ModelRoutes(engine, cache_s=CACHE_S))
    ensure_topics(settings.kafka, [PREPARED_FRAMES, INFERENCE_RESULTS], 2)
    images = _images(tiny_artifact[1], 2)

    def judged() -> list[str]:
        """Frames sent now: each judged once, by one version; returns the versions that judged them."""
        frames = [_prepared(inference.blobs, im) for im in images]
        _produce(settings.kafka, frames)
        results = collect(settings.kafka, INFERENCE_RESULTS, {p.frame.frame_id for p in frames})
        assert {f: len(msgs) for f, msgs in results.items()} == {p.frame.frame_id: 1 for p in frames}
        return [InferenceResult.FromString(msgs[0].value()).model.version for msgs in results.values()]

    def model(*args: str) -> str:
        env = {"DIFFQC_DATABASE_URL": postgres_url, "DIFFQC_TRITON_GRPC_URL": grpc_url}
        done = CliRunner().invoke(app, ["model", *args, "--product", TINY_PRODUCT], env=env)
        assert done.exit_code == 0, done.output
        time.sleep(CACHE_S)  # the service's cache of the registry
        return done.output

    def served() -> set[str]:
        return {m.version for m in detector.client.get_model_repository_index().models if m.state == "READY"}

    stop, thread = _run_worker(inference)
    try:
        assert served() == {"1", "2"}  # what the repository's config lists, at start
        assert judged() == ["1", "1"]
        model("promote", "--version", "2")  # to shadow: production is unchanged
        assert judged() == ["1", "1"]
        assert "now production" in model("promote", "--version", "2")
        assert judged() == ["2", "2"]
        started = time.monotonic()
        assert "version '1' is in production" in model("rollback")
        assert judged() == ["1", "1"]
        assert time.monotonic() - started < 30
        assert served() == {"1"}  # 2 is archived and nothing would restore it: unloaded

        # A version staged later is loaded only when the registry needs it (explicit model control).
        register_version(stage_version(tiny_artifact[0], tmp_path / "repo"), engine)
        assert served() == {"1"} and judged() == ["1", "1"]
        assert "Triton serves versions [1, 3]" in model("promote", "--version", "3")
        assert served() == {"1", "3"}
        model("promote", "--version", "3")
        assert judged() == ["3", "3"]
    finally:
        stop.set()
        thread.join(30)
