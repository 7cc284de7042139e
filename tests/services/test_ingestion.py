"""The ingestion service against a real broker and a real PostgreSQL: acks, storage, events, bad input."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import uuid
import zlib
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
import pytest
from confluent_kafka import Consumer
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from diffqc.bus.admin import ensure_topics
from diffqc.bus.config import consumer_config
from diffqc.contracts.topics import FRAMES
from diffqc.infra.ports import free_port
from diffqc.infra.services import PROJECT_ROOT, grpc_is_serving
from diffqc.runtime.grpc_server import GrpcServer
from diffqc.settings import Settings
from diffqc.store.blobs import FileBlobStore
from diffqc.store.engine import make_engine
from diffqc.store.frames import frame_from_row, get_frame
from diffqc.store.migrate import upgrade
from diffqc.store.models import Frame as FrameRow
from diffqc.store.products import register_product
from diffqc.v1 import ingestion_pb2_grpc
from diffqc.v1.common_pb2 import BlobRef
from diffqc.v1.frame_pb2 import Frame
from diffqc.v1.ingestion_pb2 import (
    INGEST_STATUS_ACCEPTED,
    INGEST_STATUS_DUPLICATE,
    INGEST_STATUS_REJECTED,
    IngestRequest,
)
from services.ingestion.service import SERVICE_NAME, Ingestion, IngestionServicer, grpc_options

ACCEPTED, DUPLICATE, REJECTED = INGEST_STATUS_ACCEPTED, INGEST_STATUS_DUPLICATE, INGEST_STATUS_REJECTED
SPEC = {"height": 64, "width": 64, "channels": 3}
RNG = np.random.default_rng(0)


# -- images ---------------------------------------------------------------------------------------


def encode(fmt: str, height=48, width=64, mode="RGB", flat=False, **save) -> bytes:
    """Random pixels (incompressible), or a flat image with ``flat``."""
    if flat:
        im = Image.new(mode, (width, height))
    elif mode == "I;16":
        im = Image.fromarray(RNG.integers(0, 65535, (height, width), dtype=np.uint16))
    elif mode == "P":
        im = Image.fromarray(RNG.integers(0, 255, (height, width, 3), dtype=np.uint8)).convert("P")
    else:
        shape = (height, width) if mode in ("L", "LA") else (height, width, 3)
        im = Image.fromarray(RNG.integers(0, 255, shape, dtype=np.uint8))
        if mode == "LA":
            im = Image.merge("LA", (im, im))
    buffer = io.BytesIO()
    im.save(buffer, fmt, **save)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with one tiny IDAT: a decompression bomb's shape."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


# -- the service under test ---------------------------------------------------------------------


def _frame(line: str, frame_id: str | None = None, product="pcb", **fields) -> Frame:
    frame = Frame(
        frame_id=f"f-{uuid.uuid4().hex[:10]}" if frame_id is None else frame_id,
        plant_id="P1",
        line_id=line,
        station_id="S1",
        camera_id="C1",
        product_type=product,
        **fields,
    )
    frame.capture_time.GetCurrentTime()
    return frame


def request(line: str, data: bytes, **fields) -> IngestRequest:
    return IngestRequest(frame=_frame(line, **fields), image_data=data)


@pytest.fixture
def make_settings(kafka_settings, postgres_url, tmp_path):
    kafka = kafka_settings.model_copy(update={"group_prefix": uuid.uuid4().hex})
    ensure_topics(kafka, [FRAMES], 2)
    engine = make_engine(postgres_url)
    upgrade(engine)
    with Session(engine) as session, session.begin():
        register_product(session, "pcb", SPEC, {})
    engine.dispose()

    def make(**ingestion) -> Settings:
        return Settings(
            kafka=kafka,
            database={"url": postgres_url},
            blob_root=tmp_path / "blobs",
            ingestion={"produce_timeout_s": 5, **ingestion},
        )

    return make


@contextmanager
def serving_channel(settings: Settings):
    """An Ingestion behind a real gRPC server (with the service's message-size options and threads: grpc_workers
    plus one per stream); yields (a channel to it, the ingestion)."""
    engine = make_engine(settings.database.url)
    ingestion = Ingestion(settings, engine, FileBlobStore(settings.blob_root))
    servicer = IngestionServicer(ingestion)
    server = GrpcServer(
        "ingestion",
        lambda s: ingestion_pb2_grpc.add_IngestionServiceServicer_to_server(servicer, s),
        [SERVICE_NAME],
        workers=settings.service.grpc_workers + settings.ingestion.max_streams,
        options=grpc_options(settings),
    )
    server.start()
    try:
        with grpc.insecure_channel(server.address) as channel:
            yield channel, ingestion
    finally:
        server.stop(1)
        ingestion.close()
        engine.dispose()


@contextmanager
def serving(settings: Settings):
    """As serving_channel; yields (an IngestionService stub, the ingestion)."""
    with serving_channel(settings) as (channel, ingestion):
        yield ingestion_pb2_grpc.IngestionServiceStub(channel), ingestion


def published(kafka, lines: set[str], last: set[str], timeout_s=60.0) -> dict[str, list]:
    """Every qc.frames.v1 message keyed by one of ``lines``, per line in order, read until ``last`` frame ids were seen.

    One line's events share a partition in order, so once a line's last frame arrived, any duplicate
    of an earlier one would have arrived before it.
    """
    consumer = Consumer(consumer_config(kafka, f"reader-{uuid.uuid4().hex[:6]}"))
    consumer.subscribe([FRAMES])
    by_line: dict[str, list] = {line: [] for line in lines}
    seen: set[str] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while not last <= seen and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None or msg.error() or msg.key().decode() not in lines:
                continue
            by_line[msg.key().decode()].append(msg)
            seen.add(dict(msg.headers())["frame_id"].decode())
    finally:
        consumer.close()
    assert last <= seen, f"frames never published: {sorted(last - seen)}"
    return by_line


def ids(messages) -> list[str]:
    return [dict(m.headers())["frame_id"].decode() for m in messages]


def rows(settings: Settings) -> int:
    engine = make_engine(settings.database.url)
    with Session(engine) as session:
        count = session.scalar(select(func.count()).select_from(FrameRow))
    engine.dispose()
    return count


def blob_files(settings: Settings) -> list[Path]:
    return [p for p in (settings.blob_root / "sha256").rglob("*") if p.is_file()] if settings.blob_root.exists() else []


# -- tests ----------------------------------------------------------------------------------------


def test_a_stream_of_good_frames_is_acked_in_order_stored_and_published_by_line(make_settings):
    settings = make_settings()
    a, b = f"LA-{uuid.uuid4().hex[:6]}", f"LB-{uuid.uuid4().hex[:6]}"
    images = [
        (a, encode("PNG"), "image/png", (48, 64, 3)),
        (b, encode("JPEG", mode="L", height=40, width=30), "image/jpeg", (40, 30, 1)),
        (a, encode("BMP", height=17, width=23), "image/bmp", (17, 23, 3)),
        (b, encode("TIFF", mode="I;16"), "image/tiff", (48, 64, 1)),
        (a, encode("PNG", mode="P"), "image/png", (48, 64, 3)),
        (b, encode("TIFF", compression="tiff_lzw"), "image/tiff", (48, 64, 3)),
    ]
    requests = [request(line, data) for line, data, _, _ in images]
    requests[2].frame.frame_id = ""  # no id: ingestion assigns one
    requests[1].frame.process_parameters["oven_temp_c"] = 241.5
    with serving(settings) as (stub, _):
        acks = list(stub.Ingest(iter(requests)))

    assert [ack.status for ack in acks] == [ACCEPTED] * 6
    assert [ack.frame_id for ack in acks][:2] == [r.frame.frame_id for r in requests][:2]
    assert uuid.UUID(acks[2].frame_id)  # the assigned id
    events = published(settings.kafka, {a, b}, {acks[-2].frame_id, acks[-1].frame_id})
    assert ids(events[a]) == [acks[i].frame_id for i in (0, 2, 4)]  # per line, in the order sent
    assert ids(events[b]) == [acks[i].frame_id for i in (1, 3, 5)]

    blobs = FileBlobStore(settings.blob_root)
    engine = make_engine(settings.database.url)
    by_id = {m_id: m for line in (a, b) for m_id, m in zip(ids(events[line]), events[line], strict=True)}
    for ack, (line, data, media_type, shape) in zip(acks, images, strict=True):
        msg = by_id[ack.frame_id]
        frame = Frame.FromString(msg.value())
        assert msg.key() == line.encode() and frame.line_id == line and frame.frame_id == ack.frame_id
        assert frame.image == ack.image
        assert (frame.image.media_type, frame.image.size_bytes) == (media_type, len(data))
        assert frame.image.sha256 == hashlib.sha256(data).hexdigest()
        assert blobs.get(frame.image) == data
        assert (frame.shape.height, frame.shape.width, frame.shape.channels) == shape
        assert frame.HasField("ingest_time") and frame.ingest_time.ToDatetime() >= frame.capture_time.ToDatetime()
        with Session(engine) as session:
            stored = frame_from_row(get_frame(session, ack.frame_id))
        expected = Frame()
        expected.CopyFrom(frame)
        expected.image.ClearField("media_type")
        expected.image.ClearField("size_bytes")
        assert stored == expected
    assert Frame.FromString(by_id[acks[1].frame_id].value()).process_parameters["oven_temp_c"] == 241.5
    engine.dispose()


def test_a_full_house_of_camera_streams_leaves_probes_and_single_frames_answered(make_settings):
    """max_streams open streams hold their threads; health probes and IngestOne still answer on the service's own
    workers, and one stream more is refused with RESOURCE_EXHAUSTED instead of queueing."""
    streams = 100  # the plant fan-in the chart sizes ingestion for
    settings = make_settings(max_streams=streams)
    settings.service.grpc_workers = 2
    line, image = f"LF-{uuid.uuid4().hex[:6]}", encode("PNG", height=16, width=16)
    hold = threading.Event()

    def camera():
        # A frame of a product nobody registered: answered (REJECTED) without publishing anything, so the
        # 100 streams leave no backlog in qc.frames.v1 for later tests.
        yield request(line, image, product="unregistered")
        hold.wait(60)  # the camera keeps its stream open, as a line camera does

    with serving_channel(settings) as (channel, _):
        stub = ingestion_pb2_grpc.IngestionServiceStub(channel)
        calls = [stub.Ingest(camera()) for _ in range(streams)]
        try:
            assert {next(call).status for call in calls} == {REJECTED}  # every stream is served at once
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            assert stub.IngestOne(request(line, image), timeout=30).status == ACCEPTED
            with pytest.raises(grpc.RpcError) as refused:
                next(stub.Ingest(camera(), timeout=30))
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "serves 100 camera streams already (DIFFQC_INGESTION_MAX_STREAMS)" in refused.value.details()
        finally:
            hold.set()
            for call in calls:
                call.cancel()


def test_a_repeated_frame_id_is_acked_duplicate_and_published_once(make_settings):
    settings = make_settings()
    line = f"L-{uuid.uuid4().hex[:6]}"
    first, second, third = (request(line, encode("PNG")) for _ in range(3))
    resent = IngestRequest()
    resent.CopyFrom(first)
    resent.image_data = encode("PNG")  # even other bytes: the frame id decides
    with serving(settings) as (stub, _):
        acks = list(stub.Ingest(iter([first, second, resent, third, first])))
        one = stub.IngestOne(second)
        last = stub.IngestOne(request(line, encode("PNG")))

    assert [ack.status for ack in acks] == [ACCEPTED, ACCEPTED, DUPLICATE, ACCEPTED, DUPLICATE]
    assert acks[2].frame_id == first.frame.frame_id and acks[2].detail == ""
    assert acks[2].image.uri == acks[0].image.uri and acks[2].image.sha256 == acks[0].image.sha256
    assert (one.status, one.image.uri) == (DUPLICATE, acks[1].image.uri)
    assert last.status == ACCEPTED
    events = published(settings.kafka, {line}, {last.frame_id})
    assert ids(events[line]) == [first.frame.frame_id, second.frame.frame_id, third.frame.frame_id, last.frame_id]
    assert rows(settings) == 4
    assert len(blob_files(settings)) == 4  # the re-sent bytes were never stored


def test_each_bad_frame_is_rejected_with_its_reason_and_the_stream_goes_on(make_settings):
    settings = make_settings(max_image_bytes=200_000, max_pixels=250_000)
    line = f"L-{uuid.uuid4().hex[:6]}"
    good = encode("PNG")
    truncated_jpeg = encode("JPEG", height=200, width=200, quality=95)
    no_line = request(line, good)
    no_line.frame.line_id = ""
    several = request(line, good)
    several.frame.ClearField("capture_time")
    several.frame.camera_id = " "
    not_finite = request(line, good)
    not_finite.frame.process_parameters["oven_temp_c"] = float("nan")
    too_long = request(line, good)
    too_long.frame.lot = "x" * 65
    dangling = request(line, b"")
    dangling.frame.image.CopyFrom(BlobRef(uri=(settings.blob_root / "sha256" / "00" / ("0" * 64)).as_uri()))
    cases = [
        (request(line, b"\x00" + os.urandom(2000)), "unsupported image format: the data is not a recognised image"),
        (request(line, good[:8] + os.urandom(500)), "corrupt"),
        (request(line, good[: len(good) // 2]), "corrupt or truncated PNG image data"),
        (request(line, truncated_jpeg[: len(truncated_jpeg) // 2]), "corrupt or truncated JPEG image data"),
        (request(line, encode("GIF", mode="L")), "GIF images are not supported; expected PNG, JPEG, BMP or TIFF"),
        (
            request(line, encode("BMP", height=300, width=300)),
            f"image is {300 * 300 * 3 + 54} bytes, over the limit of 200000 bytes",
        ),
        (
            request(line, encode("PNG", mode="L", height=600, width=600, flat=True)),
            "PNG image is 600x600 = 360000 pixels, which exceeds the limit of 250000 pixels",
        ),
        (request(line, png_header_only(50_000, 50_000)), "refused as a decompression bomb"),
        (request(line, png_header_only(1000, 1000)), "1000x1000 = 1000000 pixels, which exceeds the limit"),
        (request(line, encode("PNG", mode="LA")), "unsupported pixel mode 'LA'"),
        (no_line, "missing required metadata: line_id"),
        (several, "missing required metadata: camera_id, capture_time"),
        (request(line, good, product="bolts"), "unknown product type 'bolts'"),
        (request(line, b""), "no image: image_data is empty"),
        (dangling, "frame.image references no stored blob"),
        (not_finite, "process parameter 'oven_temp_c' is nan, not a finite number"),
        (too_long, "lot is 65 characters long, over the limit of 64"),
    ]
    first, last = request(line, good), request(line, encode("JPEG"))
    stream = [first, *(req for req, _ in cases), last]
    with serving(settings) as (stub, _):
        acks = list(stub.Ingest(iter(stream)))
        single = stub.IngestOne(cases[0][0])  # the unary call answers the same way

    assert len(acks) == len(stream)
    assert acks[0].status == ACCEPTED and acks[-1].status == ACCEPTED
    for ack, (req, reason) in zip(acks[1:-1], cases, strict=True):
        assert (ack.frame_id, ack.status) == (req.frame.frame_id, REJECTED), ack
        assert reason in ack.detail, (reason, ack.detail)
        assert not ack.HasField("image")
    assert (single.status, single.detail) == (REJECTED, acks[1].detail)
    # Nothing of a rejected frame was stored or published.
    events = published(settings.kafka, {line}, {last.frame.frame_id})
    assert ids(events[line]) == [first.frame.frame_id, last.frame.frame_id]
    assert rows(settings) == 2
    assert sorted(p.name for p in blob_files(settings)) == sorted([acks[0].image.sha256, acks[-1].image.sha256])


def test_the_memory_budget_lowers_the_pixel_limit_by_channel_count(make_settings):
    settings = make_settings(memory_budget_bytes=64 * 1024 * 1024)  # RGB: 64 MiB / (3 x 4 x 3.25) = 1720740 px
    line = f"L-{uuid.uuid4().hex[:6]}"
    rgb = request(line, encode("PNG", height=1300, width=1400, flat=True))  # 1.82 Mpx
    gray = request(line, encode("PNG", mode="L", height=1300, width=1400, flat=True))
    gray.frame.shape.height, gray.frame.shape.width, gray.frame.shape.channels = 1300, 1400, 1  # declared right
    with serving(settings) as (stub, _):
        refused, accepted = stub.IngestOne(rgb), stub.IngestOne(gray)
    assert refused.status == REJECTED
    assert "1400x1300 = 1820000 pixels, which exceeds the limit of 1720740 pixels" in refused.detail
    assert "the memory budget of 64 MiB / (3 channel(s) x 4 bytes x 3.25 working copies)" in refused.detail
    assert accepted.status == ACCEPTED, accepted.detail


def test_metadata_over_its_byte_limit_is_rejected_naming_the_largest_field(make_settings):
    settings = make_settings(max_metadata_bytes=2048)
    line = f"L-{uuid.uuid4().hex[:6]}"
    parameters, lot = request(line, encode("PNG")), request(line, encode("PNG"))
    parameters.frame.process_parameters.update({f"sensor_{i:03d}": 1.0 for i in range(200)})
    lot.frame.lot = "L" * 3000
    fits = request(line, encode("PNG"))
    fits.frame.process_parameters.update({f"sensor_{i:03d}": 1.0 for i in range(50)})
    with serving(settings) as (stub, _):
        acks = list(stub.Ingest(iter([parameters, lot, fits])))
    assert [a.status for a in acks] == [REJECTED, REJECTED, ACCEPTED], acks[2].detail
    assert f"frame metadata is {parameters.frame.ByteSize()} bytes, over the limit of 2048 bytes" in acks[0].detail
    assert "the largest field is process_parameters (" in acks[0].detail and "200 entries)" in acks[0].detail
    assert "the largest field is lot (3003 bytes)" in acks[1].detail
    assert rows(settings) == 1


def test_frames_without_an_id_are_refused_when_ids_are_required(make_settings):
    settings = make_settings(require_frame_id=True)
    with serving(settings) as (stub, _):
        ack = stub.IngestOne(request("L1", encode("PNG"), frame_id=""))
    assert (ack.status, ack.frame_id) == (REJECTED, "")
    assert "missing required metadata: frame_id" in ack.detail


def test_a_frame_can_reference_a_blob_the_gateway_uploaded(make_settings):
    settings = make_settings()
    line = f"L-{uuid.uuid4().hex[:6]}"
    data = encode("TIFF")
    uploaded = FileBlobStore(settings.blob_root).put(data, "image/tiff")
    by_ref = request(line, b"")
    by_ref.frame.image.CopyFrom(uploaded)
    wrong_hash = request(line, data)
    wrong_hash.frame.image.sha256 = "0" * 64
    with serving(settings) as (stub, _):
        ack = stub.IngestOne(by_ref)
        mismatch = stub.IngestOne(wrong_hash)
    assert ack.status == ACCEPTED and ack.image == uploaded
    assert mismatch.status == REJECTED and "does not match the image's SHA-256" in mismatch.detail
    events = published(settings.kafka, {line}, {by_ref.frame.frame_id})
    assert Frame.FromString(events[line][0].value()).shape.channels == 3


def test_a_blob_reference_outside_the_store_or_over_the_limit_is_rejected_unread(make_settings, tmp_path):
    settings = make_settings(max_image_bytes=200_000)
    line = f"L-{uuid.uuid4().hex[:6]}"
    blobs = FileBlobStore(settings.blob_root)
    small, other = blobs.put(encode("PNG"), "image/png"), blobs.put(encode("TIFF"), "image/tiff")
    big = blobs.put(encode("BMP", height=300, width=300), "image/bmp")
    (tmp_path / "canary.png").write_bytes(encode("PNG", height=20, width=20))

    def by_ref(**ref) -> IngestRequest:
        req = request(line, b"")
        req.frame.image.CopyFrom(BlobRef(**ref))  # no size_bytes: a camera's claim is no bound
        return req

    cases = [
        (by_ref(uri=f"{blobs.root.as_uri()}/../../dev/zero"), "frame.image is refused: 'file://"),
        (by_ref(uri=f"{blobs.root.as_uri()}/../canary.png"), "is not a blob URI of the store"),
        (by_ref(uri=(tmp_path / "canary.png").as_uri()), "is not a blob URI of the store"),
        (by_ref(uri=small.uri.replace("file://", "file://camera.example", 1)), "names host 'camera.example'"),
        (by_ref(uri=small.uri, sha256=other.sha256), f"does not name the blob of its sha256 {other.sha256}"),
        (by_ref(uri=big.uri, sha256=big.sha256), f"is {big.size_bytes} bytes, over the limit of 200000 bytes"),
    ]
    with serving(settings) as (stub, _):
        acks = [stub.IngestOne(req) for req, _ in cases]
        by_digest = stub.IngestOne(by_ref(sha256=small.sha256))
    for ack, (_, reason) in zip(acks, cases, strict=True):
        assert ack.status == REJECTED and reason in ack.detail, (reason, ack.detail)
    assert (by_digest.status, by_digest.image.sha256) == (ACCEPTED, small.sha256), by_digest.detail


def test_a_frame_above_grpcs_default_message_size_goes_through(make_settings):
    settings = make_settings()  # the default limits: 64 MiB
    data = encode("BMP", height=1100, width=1400)  # 4.6 MB, above gRPC's default 4 MiB
    assert len(data) > 4 * 1024 * 1024
    with serving(settings) as (stub, _):
        ack = stub.IngestOne(request("L-big", data))
    assert ack.status == ACCEPTED and ack.image.size_bytes == len(data)


def test_a_frame_whose_event_failed_leaves_no_row_and_its_resend_is_published(make_settings):
    live = make_settings()
    dead = live.model_copy(
        update={
            "kafka": live.kafka.model_copy(update={"bootstrap_servers": f"127.0.0.1:{free_port()}"}),
            "ingestion": live.ingestion.model_copy(update={"produce_timeout_s": 1.0}),
        }
    )
    line = f"L-{uuid.uuid4().hex[:6]}"
    frames = [request(line, encode("PNG")) for _ in range(2)]
    with serving(dead) as (stub, _), pytest.raises(grpc.RpcError) as failed:
        list(stub.Ingest(iter(frames)))
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert f"frame {frames[0].frame.frame_id!r} was not acknowledged: re-send it" in failed.value.details()
    assert rows(live) == 0  # the row is committed only after the event is durable
    with serving(live) as (stub, _):
        acks = list(stub.Ingest(iter(frames)))  # the client re-sends what has no ack
    assert [ack.status for ack in acks] == [ACCEPTED, ACCEPTED]
    events = published(live.kafka, {line}, {frames[1].frame.frame_id})
    assert ids(events[line]) == [f.frame.frame_id for f in frames]


def _service_env(settings: Settings, tmp_path: Path, **extra) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(PROJECT_ROOT),
        "DIFFQC_SERVICE_METRICS_PORT": "0",
        "DIFFQC_KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "DIFFQC_KAFKA_GROUP_PREFIX": settings.kafka.group_prefix,
        "DIFFQC_DATABASE_URL": settings.database.url,
        "DIFFQC_BLOB_ROOT": str(tmp_path / "service-blobs"),
        **extra,
    }


@pytest.mark.timeout(60)
def test_the_service_refuses_to_start_without_a_broker(make_settings, tmp_path):
    dead = f"127.0.0.1:{free_port()}"
    env = _service_env(
        make_settings(),
        tmp_path,
        DIFFQC_KAFKA_BOOTSTRAP_SERVERS=dead,
        DIFFQC_SERVICE_STARTUP_TIMEOUT_S="2",
        DIFFQC_SERVICE_GRPC_PORT="0",
    )
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "services.ingestion"],
        env=env,
        capture_output=True,
        text=True,
        timeout=50,
        cwd=PROJECT_ROOT,
    )
    assert proc.returncode == 1, proc.stderr
    assert f"Kafka broker at {dead} is unavailable after" in proc.stderr
    assert time.monotonic() - started < 30


@pytest.mark.timeout(120)
def test_the_service_process_ingests_and_stops_cleanly(make_settings, tmp_path):
    settings = make_settings()
    port = free_port()
    env = _service_env(settings, tmp_path, DIFFQC_SERVICE_GRPC_PORT=str(port))
    log_path = tmp_path / "ingestion.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.ingestion"],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=PROJECT_ROOT,
        )
    try:
        deadline = time.monotonic() + 60
        while not grpc_is_serving(f"127.0.0.1:{port}") and time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text()
            time.sleep(0.2)
        line = f"L-{uuid.uuid4().hex[:6]}"
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            ack = ingestion_pb2_grpc.IngestionServiceStub(channel).IngestOne(request(line, encode("PNG")), timeout=30)
        assert ack.status == ACCEPTED, ack.detail
        assert Path(ack.image.uri.removeprefix("file://")).is_relative_to(tmp_path / "service-blobs")
        published(settings.kafka, {line}, {ack.frame_id})
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0, log_path.read_text()
