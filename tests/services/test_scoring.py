"""The scoring service against real PostgreSQL, a real broker and a real InfluxDB-protocol store."""

from __future__ import annotations

import http.server
import os
import signal
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import numpy as np
import pytest
from confluent_kafka import Producer
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from diffqc.alerts import AlertPublisher, alert_id
from diffqc.alerts.verify import verified_severity
from diffqc.bus.admin import ensure_topics
from diffqc.bus.config import producer_config
from diffqc.contracts.topics import INFERENCE_RESULTS, INSPECTIONS, QUALITY_ALERT, dead_letter_topic
from diffqc.infra.ports import free_port
from diffqc.infra.timeseries import export_series
from diffqc.runtime.dependencies import DependencyUnavailable
from diffqc.runtime.grpc_server import GrpcServer
from diffqc.scoring import Scorer
from diffqc.scoring.points import point_of
from diffqc.scoring.sink import InfluxScoreSink
from diffqc.settings import InfluxSettings, KafkaSettings, RegistrySettings, ScoringSettings
from diffqc.store.blobs import FileBlobStore, put_array
from diffqc.store.engine import make_engine
from diffqc.store.inspections import register_model_version
from diffqc.store.migrate import upgrade
from diffqc.store.models import Inspection, ProductType
from diffqc.v1 import scoring_pb2, scoring_pb2_grpc
from diffqc.v1.common_pb2 import ModelRef, Shape
from diffqc.v1.frame_pb2 import Frame
from diffqc.v1.inference_pb2 import InferenceResult
from diffqc.v1.scoring_pb2 import VERDICT_DEFECT, VERDICT_PASS, InspectionVerdict
from services.scoring.service import ScoringServicer, VerdictPublisher, points_stage, stream_stage
from tests.helpers.gateway_stack import wait_until
from tests.helpers.kafka import collect
from tests.helpers.verdicts import LINKS

THRESHOLD = 1.0


@pytest.fixture
def engine(postgres_url):
    engine = make_engine(postgres_url)
    upgrade(engine)
    with Session(engine) as session, session.begin():
        session.add(ProductType(name="pcb", nominal_ranges={"oven_temp_c": [230, 250]}))
        session.flush()
        register_model_version(session, "pcb", "1", "file:///models/pcb/1", THRESHOLD, {"region_level": 3.0})
    yield engine
    engine.dispose()


@pytest.fixture
def kafka(kafka_settings, own_broker) -> KafkaSettings:
    # A broker of each test's own: a new group reads qc.inference.v1 from its start, and on the session
    # broker the results of every earlier test (other databases' products, other tests' blobs) come first.
    return kafka_settings.model_copy(update={"bootstrap_servers": own_broker, "group_prefix": uuid.uuid4().hex})


@pytest.fixture
def alerts(kafka, schema_registry_url):
    publisher = AlertPublisher(kafka, RegistrySettings(url=schema_registry_url), LINKS)
    publisher.register(10)
    yield publisher
    publisher.close()


@pytest.fixture
def scorer(engine, tmp_path):
    return Scorer(ScoringSettings(), engine, FileBlobStore(tmp_path / "blobs"))


def _result(blobs, score: float, line="L1", product="pcb") -> InferenceResult:
    capture = Timestamp()
    capture.FromDatetime(datetime(2026, 4, 1, tzinfo=UTC) + timedelta(milliseconds=uuid.uuid4().int % 10**9))
    amap = np.zeros((64, 64), dtype=np.float32)
    amap[10:20, 30:40] = 4.0
    frame = Frame(
        frame_id=f"f-{uuid.uuid4().hex[:8]}",
        plant_id="P1",
        line_id=line,
        station_id="S1",
        camera_id="C1",
        product_type=product,
        capture_time=capture,
        shape=Shape(height=64, width=64, channels=3),
        process_parameters={"oven_temp_c": 240.0},
    )
    return InferenceResult(
        frame=frame,
        score=score,
        anomaly_map=put_array(blobs, amap),
        component_scores={"pixel": score, "structural": 0.0, "concentration": 0.0, "process": 0.0},
        model=ModelRef(name="diffqc_detector", version="1"),
    )


def _produce(kafka, results: list[InferenceResult], raw: list[tuple[str, bytes]] = ()) -> None:
    producer = Producer(producer_config(kafka))
    for result in results:
        producer.produce(
            INFERENCE_RESULTS,
            key=result.frame.line_id.encode(),
            value=result.SerializeToString(),
            headers=[("frame_id", result.frame.frame_id.encode())],
        )
    for frame_id, value in raw:
        producer.produce(INFERENCE_RESULTS, key=b"L1", value=value, headers=[("frame_id", frame_id.encode())])
    assert producer.flush(10) == 0


def _rows(engine, frame_ids) -> list[Inspection]:
    with Session(engine) as session:
        return session.scalars(select(Inspection).where(Inspection.frame_id.in_(frame_ids))).all()


def test_score_records_publishes_and_refuses_what_it_cannot_score(scorer, kafka, alerts):
    ensure_topics(kafka, [INSPECTIONS], 2)
    servicer = ScoringServicer(scorer, VerdictPublisher(kafka, alerts))
    server = GrpcServer(
        "scoring",
        lambda s: scoring_pb2_grpc.add_ScoringServiceServicer_to_server(servicer, s),
        ["diffqc.v1.ScoringService"],
    )
    server.start()
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = scoring_pb2_grpc.ScoringServiceStub(channel)
            result = _result(scorer.blobs, 1.5)
            verdict = stub.Score(scoring_pb2.ScoreRequest(result=result)).verdict
            with pytest.raises(grpc.RpcError) as err:
                stub.Score(scoring_pb2.ScoreRequest(result=_result(scorer.blobs, 0.2, product="bolts")))
    finally:
        server.stop(1)
    assert verdict.verdict == VERDICT_DEFECT and verdict.frame.frame_id == result.frame.frame_id
    assert [(r.bbox.x, r.bbox.y, r.bbox.width, r.bbox.height, r.area_px) for r in verdict.regions] == [
        (30, 10, 10, 10, 100)
    ]
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "unknown product type 'bolts'" in err.value.details()
    published = collect(kafka, INSPECTIONS, {result.frame.frame_id}, settle_s=0)
    [msg] = published[result.frame.frame_id]
    assert InspectionVerdict.FromString(msg.value()) == verdict and msg.key() == b"L1"


def test_the_worker_writes_one_inspection_per_frame_and_dead_letters_poison(scorer, kafka, engine, alerts):
    ensure_topics(
        kafka, [INFERENCE_RESULTS, INSPECTIONS, QUALITY_ALERT, dead_letter_topic(INFERENCE_RESULTS, kafka)], 2
    )
    blobs = scorer.blobs
    results = [_result(blobs, s, line=f"L{i % 2}") for i, s in enumerate([0.2, 1.7, 0.9, 3.0])]
    unknown = _result(blobs, 0.5, product="bolts")
    garbage = f"f-{uuid.uuid4().hex[:8]}"
    redelivered = results[1]
    _produce(kafka, [results[0], unknown, *results[1:], redelivered], raw=[(garbage, b"\xff\x00not protobuf")])

    stop, loop = threading.Event(), stream_stage(scorer, VerdictPublisher(kafka, alerts)).worker(kafka)
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    thread.start()
    try:
        verdicts = collect(kafka, INSPECTIONS, {r.frame.frame_id for r in results})
        letters = collect(kafka, dead_letter_topic(INFERENCE_RESULTS, kafka), {unknown.frame.frame_id, garbage})
        defects = [r for r in results if r.score > THRESHOLD]
        # Every verdict is out, and each alert follows its verdict at once: 5 s would show a PASS alert too.
        alert_messages = collect(kafka, QUALITY_ALERT, {r.frame.frame_id for r in results}, timeout_s=5)
    finally:
        stop.set()
        thread.join(30)

    # One alert per DEFECT verdict, keyed by line; the redelivered frame's alert carries the same alert id.
    assert {fid: len(msgs) for fid, msgs in alert_messages.items()} == {
        r.frame.frame_id: 2 if r is redelivered else 1 for r in defects
    }
    for result in defects:
        decoded = [alerts.topic.decode(m.value()) for m in alert_messages[result.frame.frame_id]]
        row_id = _rows(engine, [result.frame.frame_id])[0].id
        assert {(a["alert_id"], a["inspection_id"], a["line_id"]) for a in decoded} == {
            (alert_id(row_id), row_id, result.frame.line_id)
        }
        assert {m.key() for m in alert_messages[result.frame.frame_id]} == {result.frame.line_id.encode()}
        # What scoring sends is what the bridge accepts: the stored inspection bears every field out.
        with Session(engine) as session:
            assert {verified_severity(session, a, LINKS) for a in decoded} == {a["severity"] for a in decoded}
        assert {a["image_uri"].split("?")[0] for a in decoded} == {f"{LINKS.public_url}/api/inspection/{row_id}/image"}

    # One verdict per input message: the redelivered result gets the same verdict again, no new row.
    counts = {fid: len(msgs) for fid, msgs in verdicts.items()}
    assert counts == {r.frame.frame_id: 2 if r is redelivered else 1 for r in results}
    first, second = (InspectionVerdict.FromString(m.value()) for m in verdicts[redelivered.frame.frame_id])
    assert first == second
    rows = {row.frame_id: row for row in _rows(engine, [r.frame.frame_id for r in results])}
    assert len(rows) == len(results)
    for result in results:
        [msg, *_] = verdicts[result.frame.frame_id]
        verdict = InspectionVerdict.FromString(msg.value())
        assert msg.key() == result.frame.line_id.encode()
        assert verdict.verdict == (VERDICT_DEFECT if result.score > THRESHOLD else VERDICT_PASS)
        assert verdict.inspection_id == rows[result.frame.frame_id].id
    reasons = {fid: dict(msgs[0].headers())["dlq.reason"].decode() for fid, msgs in letters.items()}
    assert "unknown product type 'bolts'" in reasons[unknown.frame.frame_id]
    assert reasons[garbage].startswith("undecodable message")
    assert not _rows(engine, [unknown.frame.frame_id])


def test_the_service_process_scores_the_stream_and_stops_cleanly_on_sigterm(
    postgres_url, engine, kafka, tmp_path, schema_registry_url
):
    blobs = FileBlobStore(tmp_path / "blobs")
    ensure_topics(kafka, [INFERENCE_RESULTS, INSPECTIONS, QUALITY_ALERT], 2)
    points = tmp_path / "points.lp"
    env = {
        **os.environ,
        "DIFFQC_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "DIFFQC_KAFKA_GROUP_PREFIX": kafka.group_prefix,
        "DIFFQC_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "DIFFQC_DATABASE_URL": postgres_url,
        "DIFFQC_BLOB_ROOT": str(tmp_path / "blobs"),
        "DIFFQC_SCORING_LINE_PROTOCOL_FILE": str(points),
        "DIFFQC_SERVICE_GRPC_PORT": str(free_port()),
        "DIFFQC_SERVICE_METRICS_PORT": "0",
        "DIFFQC_SERVICE_STREAM_WORKERS": "1",
        "DIFFQC_REGISTRY_URL": schema_registry_url,
    }
    proc = subprocess.Popen([sys.executable, "-m", "services.scoring"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        line = f"L-{uuid.uuid4().hex[:6]}"
        result = _result(blobs, 2.0, line=line)
        _produce(kafka, [result])
        assert result.frame.frame_id in collect(kafka, INSPECTIONS, {result.frame.frame_id}, settle_s=0)
        assert result.frame.frame_id in collect(kafka, QUALITY_ALERT, {result.frame.frame_id}, settle_s=0)
        wait_until(lambda: points.exists() and f"line={line}," in points.read_text(), 60, "the score point")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr[-3000:]
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Inspection)) == 1
    [point] = [p for p in points.read_text().splitlines() if f"line={line}," in p]
    assert "verdict=1i" in point


def _run(loop) -> tuple[threading.Event, threading.Thread]:
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    thread.start()
    return stop, thread


def test_an_influxdb_outage_delays_only_the_score_points(scorer, kafka, alerts, timeseries_url):
    """Verdicts and alerts flow while InfluxDB is down; the points wait in qc.inspections.v1 and are written
    once it is back."""
    ensure_topics(kafka, [INFERENCE_RESULTS, INSPECTIONS, QUALITY_ALERT], 2)
    scoring = _run(stream_stage(scorer, VerdictPublisher(kafka, alerts)).worker(kafka))
    dead = InfluxScoreSink(InfluxSettings(url=f"http://127.0.0.1:{free_port()}", token="test"), timeout_ms=500)
    outage = _run(points_stage(dead).worker(kafka))
    line = f"L-{uuid.uuid4().hex[:6]}"
    results = [_result(scorer.blobs, score, line=line) for score in (0.2, 2.0)]
    try:
        _produce(kafka, results)
        ids = {r.frame.frame_id for r in results}
        assert set(collect(kafka, INSPECTIONS, ids, settle_s=0)) == ids
        # The PASS frame never gets an alert: listen 5 s for one rather than the default 60.
        assert set(collect(kafka, QUALITY_ALERT, ids, timeout_s=5)) == {results[1].frame.frame_id}
    finally:
        for stop, thread in (scoring, outage):
            stop.set()
            thread.join(30)
    assert _points(timeseries_url, line) == 0
    live = InfluxScoreSink(InfluxSettings(url=timeseries_url, token="test"))
    recovered = _run(points_stage(live).worker(kafka))
    try:
        wait_until(lambda: _points(timeseries_url, line) == 2, 60, "both score points after the outage")
    finally:
        recovered[0].set()
        recovered[1].join(30)
        live.close()


def _points(timeseries_url: str, line: str) -> int:
    series = [s for s in export_series(timeseries_url, "anomaly_score", "score") if s["metric"].get("line") == line]
    return sum(len(s["values"]) for s in series)


def test_a_refused_token_is_an_alarm_and_the_point_waits():
    """HTTP 401 from InfluxDB (a rotated token) raises DependencyUnavailable (retried, never dead-lettered)
    and counts diffqc_credentials_refused."""

    class Refusing(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"code":"unauthorized","message":"unauthorized access"}')

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sink = InfluxScoreSink(InfluxSettings(url=f"http://127.0.0.1:{server.server_port}", token="rotated"))
    before = REGISTRY.get_sample_value("diffqc_credentials_refused_total", {"dependency": "influxdb"}) or 0
    try:
        with pytest.raises(DependencyUnavailable, match="HTTP 401"):
            sink.write(point_of(InspectionVerdict(frame=Frame(frame_id="f", line_id="L1"), score=1.0)))
    finally:
        sink.close()
        server.shutdown()
    assert REGISTRY.get_sample_value("diffqc_credentials_refused_total", {"dependency": "influxdb"}) == before + 1
