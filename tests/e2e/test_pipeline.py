"""The whole pipeline as separate processes over a real broker, Triton, Postgres and time-series
store: every frame ends as exactly one inspection row, even when a service dies mid-stream."""

from __future__ import annotations

import os
import signal
import time
import uuid
from datetime import UTC, datetime

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from diffqc.data.mvtec import list_samples
from diffqc.infra.pipeline import LocalPipeline
from diffqc.serving.repository import stage_version
from diffqc.store.engine import make_engine
from diffqc.store.models import Inspection
from diffqc.v1 import ingestion_pb2, ingestion_pb2_grpc
from diffqc.v1.frame_pb2 import Frame
from tests.conftest import TINY_PRODUCT

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def pipeline(tiny_artifact, tmp_path, postgres_url, local_stack):
    stage_version(tiny_artifact[0], tmp_path / "repo")
    pipeline = LocalPipeline(tmp_path / "run", tmp_path / "repo", database_url=postgres_url)
    try:
        pipeline.start()
        yield pipeline
    finally:
        pipeline.stop()


def _requests(data, n: int, lines=("L1", "L2")):
    samples = list_samples(data, "test")
    capture = Timestamp()
    capture.FromDatetime(datetime.now(UTC))
    for i in range(n):
        sample = samples[i % len(samples)]
        frame = Frame(frame_id=f"f-{uuid.uuid4().hex[:10]}", plant_id="P1", line_id=lines[i % len(lines)],
                      station_id="S1", camera_id="C1", product_type=TINY_PRODUCT, work_order="WO-1", lot="LOT-1",
                      capture_time=capture)
        yield ingestion_pb2.IngestRequest(frame=frame, image_data=sample.path.read_bytes())


def _ingest(pipeline, requests) -> list[str]:
    with grpc.insecure_channel(pipeline.address("ingestion")) as channel:
        acks = list(ingestion_pb2_grpc.IngestionServiceStub(channel).Ingest(iter(requests), timeout=120))
    assert all(a.status == ingestion_pb2.INGEST_STATUS_ACCEPTED for a in acks), [a.detail for a in acks]
    return [a.frame_id for a in acks]


def _inspection_counts(url: str, frame_ids: list[str], timeout_s: float = 240) -> dict[str, int]:
    engine = make_engine(url)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            with Session(engine) as session:
                rows = session.execute(select(Inspection.frame_id, func.count()).where(
                    Inspection.frame_id.in_(frame_ids)).group_by(Inspection.frame_id)).all()
            counts = dict(rows)
            if len(counts) == len(frame_ids) or time.monotonic() > deadline:
                return counts
            time.sleep(0.5)
    finally:
        engine.dispose()


def test_every_frame_ends_as_one_inspection(pipeline, tiny_artifact):
    frame_ids = _ingest(pipeline, _requests(tiny_artifact[1], 8))
    counts = _inspection_counts(pipeline.database_url, frame_ids)
    assert counts == dict.fromkeys(frame_ids, 1), pipeline.log_tails()


@pytest.mark.parametrize("victim", ["preprocessing", "inference", "scoring"])
def test_a_service_killed_mid_stream_loses_and_duplicates_nothing(pipeline, tiny_artifact, victim):
    first = _ingest(pipeline, _requests(tiny_artifact[1], 6))
    os.killpg(pipeline.processes[victim].pid, signal.SIGKILL)  # no graceful shutdown, no commit
    pipeline.processes.pop(victim)
    second = _ingest(pipeline, _requests(tiny_artifact[1], 6))
    pipeline.start_service(victim)
    frame_ids = first + second
    counts = _inspection_counts(pipeline.database_url, frame_ids)
    assert counts == dict.fromkeys(frame_ids, 1), pipeline.log_tails()
