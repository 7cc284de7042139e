"""Fail closed through a real broker, schema registry and PostgreSQL: a frame that a stage dead-letters ends as
one NOT_INSPECTED verdict and one alert with the reason, ``diffqc dlq list`` shows its letter, and its replay
after the fix gives the real verdict in place of NOT_INSPECTED.

Each test has dead-letter topics of its own (``DIFFQC_KAFKA_DEAD_LETTER_SUFFIX``), so the letters other tests
leave on the shared broker neither reach its fail-closed stage nor count in its metrics."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

import numpy as np
import pytest
from confluent_kafka import Producer
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from diffqc.alerts import AlertPublisher
from diffqc.alerts.verify import verified_severity
from diffqc.bus.admin import ensure_topics
from diffqc.bus.config import producer_config
from diffqc.cli import app
from diffqc.contracts.topics import FRAMES, INFERENCE_RESULTS, INSPECTIONS, QUALITY_ALERT, dead_letter_topic
from diffqc.scoring import Scorer
from diffqc.scoring.not_inspected import SOURCES, FailClosed
from diffqc.scoring.scorer import inspection_id
from diffqc.settings import KafkaSettings, RegistrySettings, ScoringSettings
from diffqc.store.blobs import FileBlobStore, put_array
from diffqc.store.engine import make_engine
from diffqc.store.inspections import ensure_frame, register_model_version
from diffqc.store.migrate import upgrade
from diffqc.store.models import Inspection, Verdict
from diffqc.store.products import register_product
from diffqc.v1.common_pb2 import ModelRef, Shape
from diffqc.v1.frame_pb2 import Frame
from diffqc.v1.inference_pb2 import InferenceResult
from diffqc.v1.scoring_pb2 import VERDICT_DEFECT, VERDICT_NOT_INSPECTED, InspectionVerdict
from services.scoring.service import VerdictPublisher, fail_closed_stage, stream_stage
from tests.helpers.gateway_stack import wait_until
from tests.helpers.kafka import collect
from tests.helpers.verdicts import LINKS


@pytest.fixture
def product() -> str:
    return f"p-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def engine(postgres_url, product):
    """The product is registered; its model version is not (the cause each test's letters have)."""
    engine = make_engine(postgres_url)
    upgrade(engine)
    with Session(engine) as session, session.begin():
        register_product(session, product, {"height": 64, "width": 64, "channels": 3}, {})
    yield engine
    engine.dispose()


@pytest.fixture
def kafka(kafka_settings) -> KafkaSettings:
    suffix = f".dlq-{uuid.uuid4().hex[:6]}"
    kafka = kafka_settings.model_copy(update={"group_prefix": uuid.uuid4().hex, "dead_letter_suffix": suffix})
    topics = [*SOURCES, INSPECTIONS, QUALITY_ALERT]
    ensure_topics(kafka, [*topics, *(dead_letter_topic(t, kafka) for t in SOURCES)], 2)
    return kafka


@pytest.fixture
def alerts(kafka, schema_registry_url):
    publisher = AlertPublisher(kafka, RegistrySettings(url=schema_registry_url), LINKS)
    publisher.register(10)
    yield publisher
    publisher.close()


@pytest.fixture
def scorer(engine, tmp_path):
    return Scorer(ScoringSettings(), engine, FileBlobStore(tmp_path / "blobs"))


def _frame(product: str) -> Frame:
    frame = Frame(
        frame_id=f"f-{uuid.uuid4().hex[:8]}",
        plant_id="P1",
        line_id="L1",
        station_id="S1",
        camera_id="C1",
        product_type=product,
        shape=Shape(height=64, width=64, channels=3),
    )
    frame.capture_time.FromDatetime(datetime(2026, 4, 1, tzinfo=UTC))
    return frame


def _ingested(engine, frame: Frame) -> Frame:
    """``frame`` with its frame row, as ingestion records it before publishing it."""
    with Session(engine) as session, session.begin():
        ensure_frame(session, frame)
    return frame


def _result(blobs, product: str, score: float) -> InferenceResult:
    amap = np.zeros((64, 64), dtype=np.float32)
    amap[10:20, 30:40] = 4.0
    return InferenceResult(
        frame=_frame(product),
        score=score,
        anomaly_map=put_array(blobs, amap),
        component_scores={"pixel": score},
        model=ModelRef(name="diffqc_detector", version="1"),
    )


def _run(loops) -> tuple[threading.Event, list[threading.Thread]]:
    stop = threading.Event()
    threads = [threading.Thread(target=loop.run, args=(stop,), daemon=True) for loop in loops]
    for thread in threads:
        thread.start()
    return stop, threads


def _stop(stop: threading.Event, threads: list[threading.Thread]) -> None:
    stop.set()
    for thread in threads:
        thread.join(30)


def _cli(kafka: KafkaSettings, *args: str):
    env = {
        "DIFFQC_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "DIFFQC_KAFKA_GROUP_PREFIX": kafka.group_prefix,
        "DIFFQC_KAFKA_DEAD_LETTER_SUFFIX": kafka.dead_letter_suffix,
    }
    return CliRunner().invoke(app, ["dlq", *args], env=env)


def _rows(engine, frame_id: str) -> list[Inspection]:
    with Session(engine) as session:
        return list(session.scalars(select(Inspection).where(Inspection.frame_id == frame_id)))


def test_a_poison_result_is_one_not_inspected_verdict_and_alert_until_its_replay_after_the_fix(
    engine, kafka, alerts, scorer, product
):
    publisher = VerdictPublisher(kafka, alerts)
    result = _result(scorer.blobs, product, 1.5)
    frame_id = _ingested(engine, result.frame).frame_id
    stop, threads = _run([stream_stage(scorer, publisher).worker(kafka), *fail_closed_stage(engine, kafka, publisher)])
    try:
        producer = Producer(producer_config(kafka))
        headers = [("frame_id", frame_id)]
        producer.produce(INFERENCE_RESULTS, key=b"L1", value=result.SerializeToString(), headers=headers)
        assert producer.flush(10) == 0

        # Scoring cannot threshold it (no model version): dead-lettered, then reported as not inspected, once.
        [message] = collect(kafka, INSPECTIONS, {frame_id})[frame_id]
        [alert_message] = collect(kafka, QUALITY_ALERT, {frame_id}, settle_s=0.5)[frame_id]
        verdict = InspectionVerdict.FromString(message.value())
        assert verdict.verdict == VERDICT_NOT_INSPECTED and verdict.frame == result.frame
        assert verdict.not_inspected_reason.startswith(
            f"dead-lettered at scoring: rejected: no model version is registered for product type {product!r}"
        )
        alert = alerts.topic.decode(alert_message.value())
        assert (alert["status"], alert["severity"], alert["inspection_id"], alert_message.key()) == (
            "NOT_INSPECTED",
            "MAJOR",
            verdict.inspection_id,
            b"L1",
        )
        assert alert["not_inspected_reason"] == verdict.not_inspected_reason
        with Session(engine) as session:  # the bridge delivers it: the stored row bears it out
            assert verified_severity(session, alert, LINKS) == "MAJOR"
        [row] = _rows(engine, frame_id)
        assert (row.id, row.verdict) == (verdict.inspection_id, Verdict.NOT_INSPECTED)

        listed = _cli(kafka, "list", "--topic", INFERENCE_RESULTS)
        assert listed.exit_code == 0, listed.output
        [line] = [line for line in listed.stdout.splitlines() if frame_id in line]
        letter_topic, _where, _frame_id, _failed_at, stage, reason = line.split("\t")
        assert (letter_topic, stage) == (dead_letter_topic(INFERENCE_RESULTS, kafka), "scoring")
        assert reason.startswith("rejected: no model version is registered")

        # The fix: the product's model is registered. The replayed result is scored and replaces NOT_INSPECTED.
        with Session(engine) as session, session.begin():
            register_model_version(session, product, "1", "file:///models/1", 1.0, {"region_level": 3.0})
        replayed = _cli(kafka, "replay", "--topic", dead_letter_topic(INFERENCE_RESULTS, kafka), "--frame-id", frame_id)
        assert replayed.exit_code == 0, replayed.output
        assert f"replayed 1 dead letter(s) to {INFERENCE_RESULTS}" in replayed.stdout
        wait_until(lambda: [r.verdict for r in _rows(engine, frame_id)] == [Verdict.DEFECT], 30, "the real verdict")
        verdicts = [InspectionVerdict.FromString(m.value()) for m in collect(kafka, INSPECTIONS, {frame_id})[frame_id]]
        assert [v.verdict for v in verdicts] == [VERDICT_NOT_INSPECTED, VERDICT_DEFECT]  # one line: in order
    finally:
        _stop(stop, threads)
    [row] = _rows(engine, frame_id)
    assert row.id == inspection_id(frame_id, "1") and row.not_inspected_reason is None


def _count(kafka: KafkaSettings, outcome: str) -> float:
    labels = {"topic": dead_letter_topic(FRAMES, kafka), "outcome": outcome}
    return REGISTRY.get_sample_value("diffqc_dead_letters_total", labels) or 0.0


def test_letters_of_inspected_frames_publish_nothing_and_letters_without_a_frame_are_counted(
    engine, kafka, scorer, product
):
    with Session(engine) as session, session.begin():
        register_model_version(session, product, "1", "file:///models/1", 1.0, {"region_level": 3.0})
    inspected = _result(scorer.blobs, product, 0.2)
    scorer.score(inspected)  # its verdict is recorded; then a stage dead-letters the frame anyway
    stranger, marker = _frame(product), _ingested(engine, _frame(product))  # the stranger never passed ingestion
    letters = [  # one line, so one partition: when the marker is reported, the letters before it were handled
        (inspected.frame.frame_id, inspected.frame.SerializeToString()),
        ("garbage", b"\xff\x00 not protobuf"),
        ("dropped", None),  # a letter whose value could not be kept
        (stranger.frame_id, stranger.SerializeToString()),
        (marker.frame_id, marker.SerializeToString()),
    ]
    before = {o: _count(kafka, o) for o in ("not_inspected", "already_inspected", "undecodable", "unknown_frame")}
    producer = Producer(producer_config(kafka))
    for frame_id, value in letters:
        headers = [("frame_id", frame_id), ("dlq.reason", "rejected: broken"), ("dlq.group", f"{kafka.group_prefix}.x")]
        producer.produce(dead_letter_topic(FRAMES, kafka), key=b"L1", value=value, headers=headers)
    assert producer.flush(10) == 0

    published: list[InspectionVerdict] = []
    stop, threads = _run(FailClosed(engine, kafka, published.append).loops())
    try:
        wait_until(lambda: published, 30, "the marker frame's NOT_INSPECTED verdict")
    finally:
        _stop(stop, threads)

    assert [(v.frame.frame_id, v.not_inspected_reason) for v in published] == [
        (marker.frame_id, "dead-lettered at x: rejected: broken")
    ]
    assert [r.verdict for r in _rows(engine, inspected.frame.frame_id)] == [Verdict.PASS]
    assert _rows(engine, stranger.frame_id) == []
    counted = {o: _count(kafka, o) - n for o, n in before.items()}
    assert counted == {"not_inspected": 1, "already_inspected": 1, "undecodable": 2, "unknown_frame": 1}
