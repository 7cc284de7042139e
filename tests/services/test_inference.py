"""The inference service against a real tritonserver and a real broker."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid

import grpc
import numpy as np
import pytest
from confluent_kafka import Producer

from diffqc.bus.admin import ensure_topics
from diffqc.bus.config import producer_config
from diffqc.contracts.topics import INFERENCE_RESULTS, PREPARED_FRAMES, dead_letter_topic
from diffqc.data.images import read_image
from diffqc.data.mvtec import list_samples
from diffqc.detector.detector import Detector
from diffqc.infra.ports import free_port
from diffqc.infra.triton import triton_server
from diffqc.runtime.grpc_server import GrpcServer
from diffqc.serving.client import TritonDetector
from diffqc.serving.repository import stage_version
from diffqc.settings import Settings
from diffqc.store.blobs import FileBlobStore, get_array, put_array
from diffqc.v1 import inference_pb2, inference_pb2_grpc
from diffqc.v1.common_pb2 import Shape
from diffqc.v1.frame_pb2 import Frame
from diffqc.v1.inference_pb2 import InferenceResult
from diffqc.v1.preprocessing_pb2 import PreparedFrame, Tile
from services.inference.service import Inference, InferenceServicer, stream_stage
from tests.helpers.kafka import collect
from tests.helpers.models import TINY_PRODUCT


def _images(data, n):
    return [read_image(s.path).transpose(2, 0, 1).astype(np.float32) for s in list_samples(data, "test")[:n]]


def _prepared(blobs, image: np.ndarray, product=TINY_PRODUCT, line="L1") -> PreparedFrame:
    _, h, w = image.shape
    frame = Frame(frame_id=f"f-{uuid.uuid4().hex[:8]}", line_id=line, product_type=product)
    tile = Tile(index=0, x=0, y=0, width=w, height=h, tensor=put_array(blobs, image))
    return PreparedFrame(frame=frame, normalized_shape=Shape(height=h, width=w, channels=3), tiles=[tile])


@pytest.fixture
def inference(triton, tmp_path, kafka_settings):
    settings = Settings(triton=triton[0], kafka=kafka_settings.model_copy(update={"group_prefix": uuid.uuid4().hex}))
    return Inference(settings, TritonDetector(settings.triton), FileBlobStore(tmp_path / "blobs"))


@pytest.fixture
def stub(inference):
    servicer = InferenceServicer(inference)
    server = GrpcServer(
        "inference",
        lambda s: inference_pb2_grpc.add_InferenceServiceServicer_to_server(servicer, s),
        ["diffqc.v1.InferenceService"],
    )
    server.start()
    with grpc.insecure_channel(server.address) as channel:
        yield inference_pb2_grpc.InferenceServiceStub(channel)
    server.stop(1)


def test_detect_returns_the_detectors_scores_and_stores_the_map(stub, inference, tiny_artifact):
    image = _images(tiny_artifact[1], 1)[0]
    prepared = _prepared(inference.blobs, image)
    result = stub.Detect(inference_pb2.DetectRequest(prepared=prepared)).result
    expected = Detector.load(tiny_artifact[0]).predict(image[None], TINY_PRODUCT)
    assert result.frame.frame_id == prepared.frame.frame_id
    assert result.score == pytest.approx(float(expected.score[0]), abs=1e-5)
    assert result.component_scores["pixel"] == pytest.approx(float(expected.components[0, 0]), abs=1e-5)
    assert np.abs(get_array(inference.blobs, result.anomaly_map) - expected.anomaly_map[0, 0]).max() <= 1e-5
    assert result.model.version == "1"


def test_tiles_are_stitched_into_one_map_of_the_normalized_frame(stub, inference, tiny_artifact):
    a, b = _images(tiny_artifact[1], 2)
    blobs = inference.blobs
    prepared = _prepared(blobs, a)
    prepared.normalized_shape.width = 112  # two 64-px tiles overlapping by 16 px
    prepared.tile_overlap = 16
    prepared.tiles.append(Tile(index=1, x=48, y=0, width=64, height=64, tensor=put_array(blobs, b)))
    result = stub.Detect(inference_pb2.DetectRequest(prepared=prepared)).result
    stitched = get_array(blobs, result.anomaly_map)
    expected = Detector.load(tiny_artifact[0]).predict(np.stack([a, b]), TINY_PRODUCT)
    amap, score = expected.anomaly_map, expected.score
    assert stitched.shape == (64, 112)
    np.testing.assert_allclose(stitched[:, :48], amap[0, 0, :, :48], atol=1e-5)  # only tile 0 covers it
    np.testing.assert_allclose(stitched[:, 64:], amap[1, 0, :, 16:], atol=1e-5)  # only tile 1 covers it
    assert result.score == pytest.approx(float(score.max()), abs=1e-5)


def test_bad_requests_name_the_problem(stub, inference, tiny_artifact):
    image = _images(tiny_artifact[1], 1)[0]
    with pytest.raises(grpc.RpcError) as unknown:
        stub.Detect(inference_pb2.DetectRequest(prepared=_prepared(inference.blobs, image, product="bolts")))
    assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown product type 'bolts'" in unknown.value.details()
    missing = _prepared(inference.blobs, image)
    missing.tiles[0].tensor.uri = missing.tiles[0].tensor.uri[:-4] + "0000"
    with pytest.raises(grpc.RpcError) as absent:
        stub.Detect(inference_pb2.DetectRequest(prepared=missing))
    assert absent.value.code() == grpc.StatusCode.NOT_FOUND


def _run_worker(inference):
    stop = threading.Event()
    loop = stream_stage(inference).worker(inference.settings.kafka)
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    thread.start()
    return stop, thread


def _produce(kafka, frames: list[PreparedFrame]) -> None:
    producer = Producer(producer_config(kafka))
    for prepared in frames:
        producer.produce(
            PREPARED_FRAMES,
            key=prepared.frame.line_id.encode(),
            value=prepared.SerializeToString(),
            headers=[("frame_id", prepared.frame.frame_id.encode())],
        )
    assert producer.flush(10) == 0


def test_stream_stage_publishes_results_by_line_and_dead_letters_bad_frames(inference, tiny_artifact):
    kafka = inference.settings.kafka
    ensure_topics(kafka, [PREPARED_FRAMES, INFERENCE_RESULTS, dead_letter_topic(PREPARED_FRAMES, kafka)], 2)
    images = _images(tiny_artifact[1], 3)
    good = [_prepared(inference.blobs, im, line=f"L{i}") for i, im in enumerate(images)]
    bad = _prepared(inference.blobs, images[0], product="bolts")
    _produce(kafka, [good[0], bad, *good[1:]])
    stop, thread = _run_worker(inference)
    try:
        results = collect(kafka, INFERENCE_RESULTS, {p.frame.frame_id for p in good})
        letters = collect(kafka, dead_letter_topic(PREPARED_FRAMES, kafka), {bad.frame.frame_id})
    finally:
        stop.set()
        thread.join(30)
    assert len(results) == 3
    for prepared in good:
        [msg] = results[prepared.frame.frame_id]
        assert msg.key() == prepared.frame.line_id.encode()
        assert InferenceResult.FromString(msg.value()).frame.frame_id == prepared.frame.frame_id
    reason = dict(letters[bad.frame.frame_id][0].headers())["dlq.reason"].decode()
    assert "unknown product type 'bolts'" in reason


def test_frames_wait_while_triton_is_down_and_none_is_lost(tiny_artifact, tmp_path, kafka_settings):
    stage_version(tiny_artifact[0], tmp_path / "repo")
    ports = (free_port(), free_port(), free_port())

    def start_triton():
        return triton_server(tmp_path / "repo", *ports, tmp_path, tmp_path / "triton.log").start()

    server = start_triton()
    settings = Settings(
        kafka=kafka_settings.model_copy(update={"group_prefix": uuid.uuid4().hex}),
        triton={"grpc_url": f"127.0.0.1:{ports[1]}", "timeout_s": 30},
    )
    detector = TritonDetector(settings.triton, backoff_s=0.2, backoff_max_s=0.5)
    inference = Inference(settings, detector, FileBlobStore(tmp_path / "blobs"))
    server.stop()  # Triton goes away before the frames arrive

    frames = [_prepared(inference.blobs, im) for im in _images(tiny_artifact[1], 3)]
    ensure_topics(settings.kafka, [PREPARED_FRAMES, INFERENCE_RESULTS], 2)
    _produce(settings.kafka, frames)
    stop, thread = _run_worker(inference)
    try:
        time.sleep(4)  # the worker is retrying against a dead Triton meanwhile
        server = start_triton()
        results = collect(settings.kafka, INFERENCE_RESULTS, {p.frame.frame_id for p in frames})
    finally:
        stop.set()
        thread.join(30)
        server.stop()
    assert {frame_id: len(msgs) for frame_id, msgs in results.items()} == {p.frame.frame_id: 1 for p in frames}


def test_the_service_refuses_to_start_without_a_ready_model(kafka_settings):
    env = {
        **os.environ,
        "DIFFQC_KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "DIFFQC_TRITON_GRPC_URL": f"127.0.0.1:{free_port()}",
        "DIFFQC_SERVICE_STARTUP_TIMEOUT_S": "2",
        "DIFFQC_SERVICE_GRPC_PORT": "0",
        "DIFFQC_SERVICE_METRICS_PORT": "0",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "services.inference"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1
    assert "Triton at 127.0.0.1:" in proc.stderr and "is unavailable after" in proc.stderr
