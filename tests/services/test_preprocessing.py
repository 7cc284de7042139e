"""The preprocessing service against real PostgreSQL and a real broker."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import uuid

import grpc
import numpy as np
import pytest
from confluent_kafka import Producer
from PIL import Image
from sqlalchemy.orm import Session

from diffqc.bus.admin import ensure_topics
from diffqc.bus.config import producer_config
from diffqc.contracts.topics import FRAMES, PREPARED_FRAMES, dead_letter_topic
from diffqc.data.images import ImageLimits
from diffqc.infra.ports import free_port
from diffqc.preprocess import Preprocessor
from diffqc.runtime.grpc_server import GrpcServer
from diffqc.settings import IngestionSettings, KafkaSettings
from diffqc.store.blobs import FileBlobStore, get_array
from diffqc.store.engine import make_engine
from diffqc.store.migrate import upgrade
from diffqc.store.models import ProductType
from diffqc.v1 import preprocessing_pb2, preprocessing_pb2_grpc
from diffqc.v1.frame_pb2 import Frame
from diffqc.v1.preprocessing_pb2 import PreparedFrame
from services.preprocessing.service import PreprocessingServicer, stream_stage
from tests.helpers.kafka import collect
from tests.security.corpus import png_bomb, tiff_bomb

SPEC = {"height": 64, "width": 64, "channels": 3, "tile": 48, "overlap": 16}


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _frame(blobs, line="L1", product="pcb", data: bytes | None = None) -> Frame:
    if data is None:
        data = _png((np.random.default_rng(0).random((96, 128, 3)) * 255).astype(np.uint8))
    return Frame(
        frame_id=f"f-{uuid.uuid4().hex[:8]}", line_id=line, product_type=product, image=blobs.put(data, "image/png")
    )


@pytest.fixture
def engine(postgres_url):
    engine = make_engine(postgres_url)
    upgrade(engine)
    with Session(engine) as session, session.begin():
        session.add(ProductType(name="pcb", preprocessing=SPEC))
        session.add(ProductType(name="unset", preprocessing={}))
    yield engine
    engine.dispose()


@pytest.fixture
def preprocessor(engine, tmp_path):
    # The limits the service runs with: ingestion's defaults (a 1 GiB memory budget).
    return Preprocessor(engine, FileBlobStore(tmp_path / "blobs"), limits=ImageLimits.of(IngestionSettings()))


@pytest.fixture
def kafka(kafka_settings, own_broker) -> KafkaSettings:
    # A broker of each test's own: a new group reads qc.frames.v1 from its start, and on the session broker
    # the frames of every earlier test come first.
    return kafka_settings.model_copy(update={"bootstrap_servers": own_broker, "group_prefix": uuid.uuid4().hex})


@pytest.fixture
def stub(preprocessor):
    servicer = PreprocessingServicer(preprocessor)
    server = GrpcServer(
        "preprocessing",
        lambda s: preprocessing_pb2_grpc.add_PreprocessingServiceServicer_to_server(servicer, s),
        ["diffqc.v1.PreprocessingService"],
    )
    server.start()
    with grpc.insecure_channel(server.address) as channel:
        yield preprocessing_pb2_grpc.PreprocessingServiceStub(channel)
    server.stop(1)


def test_prepare_returns_the_tiles_and_bad_frames_get_clear_statuses(stub, preprocessor):
    blobs = preprocessor.blobs
    frame = _frame(blobs)
    prepared = stub.Prepare(preprocessing_pb2.PrepareRequest(frame=frame)).prepared
    assert prepared.frame.frame_id == frame.frame_id
    assert prepared.scale == 0.5 and (prepared.pad_left, prepared.pad_top) == (0, 8)  # 128x96 -> 64x48 in 64x64
    assert len(prepared.tiles) == 4 and get_array(blobs, prepared.tiles[3].tensor).shape == (3, 48, 48)

    cases = [
        (_frame(blobs, data=b"GIF89a but not really"), grpc.StatusCode.INVALID_ARGUMENT, "GIF images are not"),
        (_frame(blobs, product="bolts"), grpc.StatusCode.NOT_FOUND, "unknown product type 'bolts'"),
        (_frame(blobs, product="unset"), grpc.StatusCode.FAILED_PRECONDITION, "preprocessing spec: empty"),
    ]
    for bad, code, message in cases:
        with pytest.raises(grpc.RpcError) as err:
            stub.Prepare(preprocessing_pb2.PrepareRequest(frame=bad))
        assert err.value.code() == code and message in err.value.details()


def test_a_bomb_planted_past_ingestion_is_refused_from_its_header_within_the_memory_budget(stub, preprocessor):
    # 8000x8000 RGB is within max_pixels (64 Mpx) but would take ~1.5 GiB as float32.
    for bomb in (png_bomb(8000, 8000), tiff_bomb(8000, 8000)):
        frame = _frame(preprocessor.blobs, data=bomb)
        with pytest.raises(grpc.RpcError) as err:
            stub.Prepare(preprocessing_pb2.PrepareRequest(frame=frame))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"cannot read image {frame.image.uri}: " in err.value.details()
        assert "8000x8000 = 64000000 pixels, which exceeds the limit of 27531841 pixels" in err.value.details()
        assert "the memory budget of 1024 MiB" in err.value.details()


def _produce(kafka, frames: list[Frame]) -> None:
    producer = Producer(producer_config(kafka))
    for frame in frames:
        producer.produce(
            FRAMES,
            key=frame.line_id.encode(),
            value=frame.SerializeToString(),
            headers=[("frame_id", frame.frame_id.encode())],
        )
    assert producer.flush(10) == 0


def test_the_worker_prepares_each_frame_once_and_dead_letters_what_it_cannot_prepare(preprocessor, kafka):
    ensure_topics(kafka, [FRAMES, PREPARED_FRAMES, dead_letter_topic(FRAMES, kafka)], 2)
    blobs = preprocessor.blobs
    good = [_frame(blobs, line=f"L{i % 2}") for i in range(4)]
    not_an_image = _frame(blobs, data=b"\x89PNG\r\n\x1a\n truncated")
    unknown = _frame(blobs, product="bolts")
    _produce(kafka, [good[0], not_an_image, good[1], unknown, *good[2:]])

    stop, loop = threading.Event(), stream_stage(preprocessor).worker(kafka)
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    thread.start()
    try:
        outputs = collect(kafka, PREPARED_FRAMES, {f.frame_id for f in good})
        letters = collect(kafka, dead_letter_topic(FRAMES, kafka), {not_an_image.frame_id, unknown.frame_id})
    finally:
        stop.set()
        thread.join(30)

    assert {fid: len(msgs) for fid, msgs in outputs.items()} == {f.frame_id: 1 for f in good}
    for frame in good:
        [msg] = outputs[frame.frame_id]
        assert msg.key() == frame.line_id.encode()
        prepared = PreparedFrame.FromString(msg.value())
        assert prepared.frame.frame_id == frame.frame_id and len(prepared.tiles) == 4
        get_array(blobs, prepared.tiles[0].tensor)  # the tensors are in the blob store
    reasons = {fid: dict(msgs[0].headers())["dlq.reason"].decode() for fid, msgs in letters.items()}
    assert "corrupt or truncated PNG image data" in reasons[not_an_image.frame_id]
    assert "unknown product type 'bolts'" in reasons[unknown.frame_id]
    assert all(len(msgs) == 1 for msgs in letters.values())


def test_the_service_process_prepares_the_stream_and_stops_cleanly_on_sigterm(postgres_url, engine, kafka, tmp_path):
    blobs = FileBlobStore(tmp_path / "blobs")
    ensure_topics(kafka, [FRAMES, PREPARED_FRAMES], 2)
    env = {
        **os.environ,
        "DIFFQC_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "DIFFQC_KAFKA_GROUP_PREFIX": kafka.group_prefix,
        "DIFFQC_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "DIFFQC_DATABASE_URL": postgres_url,
        "DIFFQC_BLOB_ROOT": str(tmp_path / "blobs"),
        "DIFFQC_SERVICE_GRPC_PORT": str(free_port()),
        "DIFFQC_SERVICE_METRICS_PORT": "0",
        "DIFFQC_SERVICE_STREAM_WORKERS": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.preprocessing"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        frame = _frame(blobs)
        _produce(kafka, [frame])
        outputs = collect(kafka, PREPARED_FRAMES, {frame.frame_id}, settle_s=0)
        assert frame.frame_id in outputs
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr[-3000:]
    assert '"service": "preprocessing"' in stderr
