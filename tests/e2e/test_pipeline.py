"""The whole pipeline as separate processes over a real broker, Triton, Postgres and time-series
store: every frame ends as exactly one inspection row with the detector's own verdict, even when a
service dies mid-stream; frames that cannot be inspected end in the dead-letter topic with the reason."""

from __future__ import annotations

import os
import signal
import time
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from diffqc.bus.producer import Publisher
from diffqc.contracts.topics import FRAMES, dead_letter_topic
from diffqc.data.images import read_image
from diffqc.data.mvtec import list_samples
from diffqc.detector.detector import Detector
from diffqc.infra.pipeline import LocalPipeline
from diffqc.infra.postgres import throwaway_database
from diffqc.infra.timeseries import export_series
from diffqc.serving.repository import stage_version
from diffqc.store.blobs import FileBlobStore
from diffqc.store.engine import make_engine
from diffqc.store.models import Inspection
from diffqc.v1 import ingestion_pb2, ingestion_pb2_grpc
from diffqc.v1.frame_pb2 import Frame
from tests.helpers.kafka import collect
from tests.helpers.models import TINY_PRODUCT

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def pipeline(tiny_artifact, tmp_path_factory, local_stack):
    """One pipeline for the module (a start costs ~18 s): each test sends frames of its own ids, and one that
    kills a service starts it again before it ends."""
    root = tmp_path_factory.mktemp("e2e")
    stage_version(tiny_artifact[0], root / "repo")
    with throwaway_database() as database_url:
        pipeline = LocalPipeline(root / "run", root / "repo", database_url=database_url)
        try:
            pipeline.start()
            yield pipeline
        finally:
            pipeline.stop()


def _requests(data, n: int, lines=("L1", "L2")):
    """``n`` frames of the test split in turn, each with its own capture time (a score point's key)."""
    samples = list_samples(data, "test")
    start = datetime.now(UTC)
    for i in range(n):
        sample = samples[i % len(samples)]
        capture = Timestamp()
        capture.FromDatetime(start + timedelta(milliseconds=i))
        frame = Frame(
            frame_id=f"f-{uuid.uuid4().hex[:10]}",
            plant_id="P1",
            line_id=lines[i % len(lines)],
            station_id="S1",
            camera_id="C1",
            product_type=TINY_PRODUCT,
            work_order="WO-1",
            lot="LOT-1",
            capture_time=capture,
        )
        yield ingestion_pb2.IngestRequest(frame=frame, image_data=sample.path.read_bytes())


def _ingest(pipeline, requests) -> list[str]:
    with grpc.insecure_channel(pipeline.address("ingestion")) as channel:
        acks = list(ingestion_pb2_grpc.IngestionServiceStub(channel).Ingest(iter(requests), timeout=120))
    assert all(a.status == ingestion_pb2.INGEST_STATUS_ACCEPTED for a in acks), [a.detail for a in acks]
    return [a.frame_id for a in acks]


def _inspections(url: str, frame_ids: list[str]) -> dict[str, Inspection]:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            found = session.scalars(select(Inspection).where(Inspection.frame_id.in_(frame_ids)))
            return {row.frame_id: row for row in found}
    finally:
        engine.dispose()


def _plant_corrupt_frames(pipeline, data) -> dict[str, str]:
    """Frames that passed ingestion but cannot be inspected, produced straight onto qc.frames.v1 as a
    misbehaving producer (or a blob damaged in storage) would: frame id -> what the reason must say."""
    blobs = FileBlobStore(pipeline.root / "blobs")
    png = list_samples(data, "test")[0].path.read_bytes()
    cases = {
        "truncated": (blobs.put(png[: len(png) // 2], "image/png"), TINY_PRODUCT, "truncated"),
        "not-an-image": (blobs.put(b"not an image at all", "image/png"), TINY_PRODUCT, "not a recognised image"),
        "unknown-product": (blobs.put(png, "image/png"), "bolts", "bolts"),
    }
    publisher, planted = Publisher(pipeline.settings.kafka), {}
    for name, (image, product, reason) in cases.items():
        frame = Frame(
            frame_id=f"corrupt-{name}-{uuid.uuid4().hex[:6]}",
            plant_id="P1",
            line_id="L1",
            station_id="S1",
            camera_id="C1",
            product_type=product,
            image=image,
        )
        publisher.send(FRAMES, frame)
        planted[frame.frame_id] = reason
    publisher.close()
    return planted


def _inspection_counts(url: str, frame_ids: list[str], timeout_s: float = 240) -> dict[str, int]:
    engine = make_engine(url)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            with Session(engine) as session:
                rows = session.execute(
                    select(Inspection.frame_id, func.count())
                    .where(Inspection.frame_id.in_(frame_ids))
                    .group_by(Inspection.frame_id)
                ).all()
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


def test_a_hundred_frames_give_a_hundred_inspections_with_the_detectors_verdicts(pipeline, tiny_artifact):
    artifact, data = tiny_artifact
    lines = (f"L1-{uuid.uuid4().hex[:4]}", f"L2-{uuid.uuid4().hex[:4]}")
    requests = list(_requests(data, 100, lines))
    planted = _plant_corrupt_frames(pipeline, data)
    frame_ids = _ingest(pipeline, requests)

    counts = _inspection_counts(pipeline.database_url, frame_ids)
    assert counts == dict.fromkeys(frame_ids, 1), pipeline.log_tails()

    # The same verdicts and scores as the detector run in-process on the same images.
    detector = Detector.load(artifact)
    samples = list_samples(data, "test")
    images = np.stack([read_image(samples[i % len(samples)].path) for i in range(100)]).transpose(0, 3, 1, 2)
    scores = detector.predict(images, TINY_PRODUCT).score
    expected = {
        r.frame.frame_id: ("defect" if v == "defect" else "pass")
        for r, v in zip(requests, detector.verdicts(scores, TINY_PRODUCT), strict=True)
    }
    rows = _inspections(pipeline.database_url, frame_ids)
    assert {fid: row.verdict.value for fid, row in rows.items()} == expected
    assert {"pass", "defect"} <= set(expected.values())  # the comparison covers both verdicts
    np.testing.assert_allclose([rows[r.frame.frame_id].score for r in requests], scores, rtol=1e-4, atol=1e-5)

    # One score point per frame in the time-series store.
    series = [
        s
        for s in export_series(pipeline.env["DIFFQC_INFLUX_URL"], "anomaly_score", "score")
        if s["metric"].get("line") in lines
    ]
    assert sum(len(s["values"]) for s in series) == 100
    assert sorted(v for s in series for v in s["values"]) == pytest.approx(sorted(scores), rel=1e-4, abs=1e-5)

    # The corrupt frames are in the dead-letter topic with their reasons, and nowhere else: planted past
    # ingestion, they have no frame row, so the fail-closed stage cannot report them (diffqc.scoring.not_inspected).
    dead = collect(pipeline.settings.kafka, dead_letter_topic(FRAMES, pipeline.settings.kafka), set(planted))
    assert set(dead) == set(planted)
    for frame_id, reason in planted.items():
        (msg,) = dead[frame_id]
        told = dict(msg.headers())["dlq.reason"].decode()
        assert reason in told, (frame_id, told)
    assert _inspections(pipeline.database_url, list(planted)) == {}


def test_ingestion_killed_mid_stream_a_camera_that_resends_loses_and_duplicates_nothing(pipeline, tiny_artifact):
    requests = list(_requests(tiny_artifact[1], 12))
    acked = []

    def stream():
        for i, request in enumerate(requests):
            if i == 6:  # half the stream is out: the service dies without warning
                os.killpg(pipeline.processes.pop("ingestion").pid, signal.SIGKILL)
            yield request

    with grpc.insecure_channel(pipeline.address("ingestion")) as channel, pytest.raises(grpc.RpcError):
        for ack in ingestion_pb2_grpc.IngestionServiceStub(channel).Ingest(stream(), timeout=120):
            acked.append(ack.frame_id)
    assert len(acked) < len(requests)
    pipeline.start_service("ingestion")
    # The camera does not know which frames made it: it sends the whole batch again.
    with grpc.insecure_channel(pipeline.address("ingestion")) as channel:
        acks = list(ingestion_pb2_grpc.IngestionServiceStub(channel).Ingest(iter(requests), timeout=120))
    statuses = {a.frame_id: a.status for a in acks}
    assert all(statuses[fid] == ingestion_pb2.INGEST_STATUS_DUPLICATE for fid in acked)
    assert set(statuses.values()) <= {ingestion_pb2.INGEST_STATUS_ACCEPTED, ingestion_pb2.INGEST_STATUS_DUPLICATE}
    frame_ids = [r.frame.frame_id for r in requests]
    counts = _inspection_counts(pipeline.database_url, frame_ids)
    assert counts == dict.fromkeys(frame_ids, 1), pipeline.log_tails()
