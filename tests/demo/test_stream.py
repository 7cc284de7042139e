"""The demo's camera (``send_frames``) against a real ingestion process that is SIGKILLed mid-stream."""

from __future__ import annotations

import io
import os
import signal
import threading
import uuid

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session

from diffqc.bus.admin import ensure_topics
from diffqc.contracts.topics import FRAMES
from diffqc.demo.line import Part
from diffqc.demo.stream import send_frames
from diffqc.infra.ports import free_port
from diffqc.infra.process import ServerProcess
from diffqc.infra.services import service_process
from diffqc.settings import GrpcSettings
from diffqc.store.engine import make_engine
from diffqc.store.migrate import upgrade
from diffqc.store.models import Frame as FrameRow
from diffqc.store.products import register_product
from diffqc.v1.frame_pb2 import Frame
from diffqc.v1.ingestion_pb2 import IngestRequest
from tests.helpers.kafka import collect

PRODUCT = "pcb"


def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def _line(n: int) -> list[tuple[IngestRequest, Part]]:
    line = f"L-{uuid.uuid4().hex[:6]}"
    frames = []
    for i in range(n):
        frame = Frame(
            frame_id=f"cam-{uuid.uuid4().hex[:10]}",
            plant_id="P1",
            line_id=line,
            station_id="S1",
            camera_id="C1",
            product_type=PRODUCT,
        )
        frame.capture_time.GetCurrentTime()
        frames.append((IngestRequest(frame=frame, image_data=_png(i)), Part(frame.frame_id, line, PRODUCT, "good", "")))
    return frames


@pytest.mark.timeout(180)
def test_a_camera_resends_what_a_killed_ingestion_never_acked_and_each_frame_is_stored_once(
    kafka_settings, postgres_url, tmp_path
):
    ensure_topics(kafka_settings, [FRAMES], 2)
    engine = make_engine(postgres_url)
    upgrade(engine)
    with Session(engine) as session, session.begin():
        register_product(session, PRODUCT, {"height": 64, "width": 64, "channels": 3}, {})
    env = {
        "DIFFQC_KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "DIFFQC_DATABASE_URL": postgres_url,
        "DIFFQC_BLOB_ROOT": str(tmp_path / "blobs"),
    }
    port = free_port()
    running: list[ServerProcess] = [service_process("ingestion", port, env, tmp_path / "ingestion.log").start()]
    frames = _line(12)
    resends: list[int] = []
    restart = threading.Thread(
        target=lambda: running.append(service_process("ingestion", port, env, tmp_path / "ingestion.log").start())
    )

    def camera():
        for i, item in enumerate(frames):
            if i == 6:  # half the line is out: ingestion dies without warning and comes back on its port
                victim = running.pop()
                assert victim.pid is not None
                os.killpg(victim.pid, signal.SIGKILL)
                restart.start()
            yield item

    try:
        accepted, parts = send_frames(
            f"127.0.0.1:{port}",
            GrpcSettings(),
            camera(),
            on_resend=lambda error, unacked, delay_s: resends.append(unacked),
            give_up_after_s=60,
        )
    finally:
        if restart.is_alive():
            restart.join()
        for process in running:
            process.stop()
    frame_ids = [request.frame.frame_id for request, _ in frames]
    assert resends, "the kill must have cut the stream"
    assert sorted(accepted) == sorted(frame_ids) and set(parts) == set(frame_ids)
    with Session(engine) as session:
        stored = session.scalars(select(FrameRow.id).where(FrameRow.id.in_(frame_ids))).all()
    engine.dispose()
    assert sorted(stored) == sorted(frame_ids)
    assert set(collect(kafka_settings, FRAMES, set(frame_ids))) == set(frame_ids)  # every frame published
