"""The model lifecycle end to end on a stream (real PostgreSQL, tritonserver, broker, schema registry and
time-series store): a candidate is trained and registered, shadowed, split in as a canary (and rolled back
by the guard), promoted, then rolled back. Every inspection row names the version that judged it, and no
frame is lost or judged twice."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import torch
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import select, update
from typer.testing import CliRunner

from diffqc.alerts import AlertPublisher
from diffqc.bus.admin import ensure_topics
from diffqc.cli import app
from diffqc.contracts.topics import INFERENCE_RESULTS, INSPECTIONS, PREPARED_FRAMES, QUALITY_ALERT
from diffqc.infra.ports import free_port
from diffqc.infra.triton import triton_server
from diffqc.scoring import Scorer
from diffqc.serving.client import TritonDetector
from diffqc.serving.production import ModelRoutes, in_share
from diffqc.serving.register import register_version
from diffqc.serving.repository import stage_version
from diffqc.settings import RegistrySettings, ScoringSettings, Settings
from diffqc.store import db
from diffqc.store.blobs import FileBlobStore
from diffqc.store.engine import make_engine
from diffqc.store.models import Inspection, ModelCanary, ModelVersion, TrialScore, Verdict
from diffqc.v1.common_pb2 import Shape
from diffqc.v1.frame_pb2 import Frame
from services.inference.service import Inference
from services.inference.service import stream_stage as inference_stage
from services.scoring.service import VerdictPublisher
from services.scoring.service import stream_stage as scoring_stage
from tests.helpers.kafka import collect
from tests.helpers.models import TINY_PRODUCT, train_tiny
from tests.helpers.verdicts import LINKS
from tests.services.test_inference import _images, _prepared, _produce

CACHE_S = 0.5
LINE = "L1"
SHARE = 0.5


def _canary_ids(n: int, inside: bool) -> list[str]:
    """Frame ids that fall inside (or outside) a canary's share."""
    ids: list[str] = []
    while len(ids) < n:
        frame_id = f"f-{uuid.uuid4().hex[:10]}"
        if in_share(frame_id, SHARE) == inside:
            ids.append(frame_id)
    return ids


@pytest.fixture
def lifecycle(tiny_artifact, tmp_path, postgres_url, kafka_settings, schema_registry_url):
    """Version 1 (production, passes every part) and a freshly trained candidate 2 (flags every part),
    both served by Triton; inference and scoring workers on a fresh consumer group."""
    repo, engine = tmp_path / "repo", make_engine(postgres_url)
    register_version(stage_version(tiny_artifact[0], repo), engine, actor="onboarding")
    torch.manual_seed(7)
    candidate = train_tiny(TINY_PRODUCT, tmp_path / "candidate")[0]
    register_version(stage_version(candidate, repo), engine, actor="retraining")
    with db.session(engine, write=True) as session:  # thresholds that make each version's verdict obvious
        for version, threshold in (("1", 1e6), ("2", -1e6)):
            session.execute(
                update(ModelVersion)
                .where(ModelVersion.product_type == TINY_PRODUCT, ModelVersion.version == version)
                .values(threshold=threshold)
            )
    grpc_port = free_port()
    server = triton_server(repo, free_port(), grpc_port, free_port(), tmp_path, tmp_path / "triton.log").start()
    settings = Settings(
        kafka=kafka_settings.model_copy(update={"group_prefix": uuid.uuid4().hex}),
        triton={"grpc_url": f"127.0.0.1:{grpc_port}", "timeout_s": 60},
    )
    detector = TritonDetector(settings.triton)
    detector.wait_until_ready(120)
    blobs = FileBlobStore(tmp_path / "blobs")
    inference = Inference(settings, detector, blobs, ModelRoutes(engine, cache_s=CACHE_S))
    alerts = AlertPublisher(settings.kafka, RegistrySettings(url=schema_registry_url), LINKS)
    alerts.register(10)
    scorer = Scorer(ScoringSettings(), engine, blobs)
    ensure_topics(settings.kafka, [PREPARED_FRAMES, INFERENCE_RESULTS, INSPECTIONS, QUALITY_ALERT], 2)
    stop = threading.Event()
    loops = [
        inference_stage(inference).worker(settings.kafka),
        scoring_stage(scorer, VerdictPublisher(settings.kafka, alerts)).worker(settings.kafka),
    ]
    threads = [threading.Thread(target=loop.run, args=(stop,), daemon=True) for loop in loops]
    for thread in threads:
        thread.start()
    yield settings, engine, inference, f"127.0.0.1:{grpc_port}"
    stop.set()
    for thread in threads:
        thread.join(30)
    alerts.close()
    server.stop()
    engine.dispose()


def test_a_candidate_is_shadowed_canaried_promoted_and_rolled_back_on_a_stream(lifecycle, tiny_artifact, postgres_url):
    settings, engine, inference, grpc_url = lifecycle
    image = _images(tiny_artifact[1], 1)[0]
    judged_ids: list[str] = []

    def judge(frame_ids: list[str]) -> dict[str, tuple[str, Verdict]]:
        """Send frames with these ids; each gets exactly one verdict and one inspection row: (version, verdict)."""
        frames = [_prepared(inference.blobs, image, line=LINE) for _ in frame_ids]
        for prepared, frame_id in zip(frames, frame_ids, strict=True):
            capture = Timestamp()
            capture.GetCurrentTime()
            prepared.frame.MergeFrom(
                Frame(frame_id=frame_id, plant_id="P1", station_id="S1", camera_id="C1", capture_time=capture)
            )
            prepared.frame.shape.CopyFrom(Shape(height=64, width=64, channels=3))
        _produce(settings.kafka, frames)
        verdicts = collect(settings.kafka, INSPECTIONS, set(frame_ids))
        assert {f: len(m) for f, m in verdicts.items()} == dict.fromkeys(frame_ids, 1)
        judged_ids.extend(frame_ids)
        with db.session(engine) as session:
            rows = session.scalars(select(Inspection).where(Inspection.frame_id.in_(frame_ids))).all()
        return {r.frame_id: (r.model_version, Verdict(r.verdict)) for r in rows}

    def trials(frame_ids: list[str]) -> list[TrialScore]:
        with db.session(engine) as session:
            return session.scalars(select(TrialScore).where(TrialScore.frame_id.in_(frame_ids))).all()

    def model(*args: str) -> str:
        env = {"DIFFQC_DATABASE_URL": postgres_url, "DIFFQC_TRITON_GRPC_URL": grpc_url}
        done = CliRunner().invoke(app, ["model", *args, "--product", TINY_PRODUCT], env=env)
        assert done.exit_code == 0, done.output
        time.sleep(CACHE_S)  # inference's cache of the registry
        return done.output

    production, flagged = ("1", Verdict.PASS), ("2", Verdict.DEFECT)

    # A candidate judges nothing and scores nothing.
    ids = _canary_ids(2, True) + _canary_ids(2, False)
    assert set(judge(ids).values()) == {production} and trials(ids) == []

    # In shadow it scores every frame beside production; only production's verdict counts.
    model("promote", "--version", "2")
    ids = _canary_ids(3, True) + _canary_ids(3, False)
    assert set(judge(ids).values()) == {production}
    shadow = trials(ids)
    assert sorted(t.frame_id for t in shadow) == sorted(ids)
    assert {
        (t.production_version, t.production_defect, t.candidate_version, t.candidate_defect, t.canary) for t in shadow
    } == {("1", False, "2", True, False)}
    assert "recommendation: collect" in model("compare", "--version", "2")

    # As a canary it judges its share of the line; the guard rolls it back after min_frames.
    model("canary", "--version", "2", "--line", LINE, "--share", str(SHARE), "--min-frames", "2", "--max-excess", "0.1")
    inside, outside = _canary_ids(2, True), _canary_ids(2, False)
    verdicts = judge(inside + outside)
    assert {verdicts[f] for f in inside} == {flagged} and {verdicts[f] for f in outside} == {production}
    assert {t.canary for t in trials(inside)} == {True}
    with db.session(engine) as session:
        canary = session.scalars(select(ModelCanary)).one()
    assert canary.ended_at is not None and canary.end_reason.startswith("automatic rollback")
    time.sleep(CACHE_S)
    ids = _canary_ids(2, True)
    assert set(judge(ids).values()) == {production}  # the share is back with production

    # Promoted, the candidate judges every frame; rolled back, production does again.
    assert "now production" in model("promote", "--version", "2")
    assert set(judge(_canary_ids(2, True) + _canary_ids(2, False)).values()) == {flagged}
    model("rollback")
    assert set(judge(_canary_ids(2, True) + _canary_ids(2, False)).values()) == {production}

    with db.session(engine) as session:
        rows = session.scalars(select(Inspection).where(Inspection.frame_id.in_(judged_ids))).all()
    assert len(rows) == len(judged_ids) == len(set(judged_ids))  # none lost, none judged twice
